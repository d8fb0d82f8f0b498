"""notification.toolkit.fluxcd.io: Provider and Alert (v1beta3), Receiver (v1)."""

from __future__ import annotations

import hashlib
from typing import ClassVar, Literal, get_args

from pydantic import Field, model_validator

from .meta import (
    AGE,
    Duration,
    FluxModel,
    KubeObject,
    LocalObjectReference,
    ObjectStatus,
    PrinterColumn,
    ShortDuration,
    Spec,
    cel_rules,
    crd_default,
    parse_duration,
)

GROUP = "notification.toolkit.fluxcd.io"
NOTIFICATION_CATEGORIES = ("all", "fluxcd", "fluxcd-notifications")

ProviderType = Literal[
    "slack", "discord", "msteams", "rocket", "generic", "generic-hmac", "github", "gitlab", "gitea",
    "bitbucketserver", "bitbucket", "azuredevops", "googlechat", "googlepubsub", "webex", "sentry",
    "azureeventhub", "telegram", "lark", "matrix", "opsgenie", "alertmanager", "grafana",
    "githubdispatch", "pagerduty", "datadog", "nats", "githubpullrequestcomment",
    "gitlabmergerequestcomment", "giteapullrequestcomment", "zulip", "otel", "zoom", "incident.io",
]  # fmt: skip

ReceiverType = Literal[
    "generic", "generic-hmac", "generic-oidc", "github", "gitlab", "bitbucket", "harbor", "dockerhub",
    "quay", "gcr", "nexus", "acr", "cdevents",
]  # fmt: skip

PROVIDER_TYPES: tuple[str, ...] = get_args(ProviderType)
RECEIVER_TYPES: tuple[str, ...] = get_args(ReceiverType)

EventSourceKind = Literal[
    "Bucket", "GitRepository", "Kustomization", "HelmRelease", "HelmChart", "HelmRepository",
    "ImageRepository", "ImagePolicy", "ImageUpdateAutomation", "OCIRepository", "ArtifactGenerator",
    "ExternalArtifact",
]  # fmt: skip

COMMIT_STATUS_TYPES = ("github", "gitlab", "gitea", "bitbucketserver", "bitbucket", "azuredevops")


class CrossNamespaceObjectReference(FluxModel):
    """Flux objects an Alert listens to or a Receiver triggers; name `*` with matchLabels selects many."""

    api_version: str | None = None
    kind: EventSourceKind
    name: str = Field(min_length=1, max_length=253)
    namespace: str | None = Field(default=None, min_length=1, max_length=253)
    match_labels: dict[str, str] | None = None


class ProviderSpec(Spec):
    model_config = cel_rules(
        (
            "".join(f"self.type == '{t}' || " for t in COMMIT_STATUS_TYPES) + "!has(self.commitStatusExpr)",
            "spec.commitStatusExpr is only supported for the "
            + ", ".join(f"'{t}'" for t in COMMIT_STATUS_TYPES)
            + " provider types",
        )
    )

    type: ProviderType
    interval: Duration | None = None
    """Deprecated, ignored."""
    channel: str | None = Field(default=None, max_length=2048)
    username: str | None = Field(default=None, max_length=2048)
    address: str | None = Field(default=None, max_length=2048)
    timeout: ShortDuration | None = None
    """Timeout of the reconcile's remote operations."""
    proxy: str | None = Field(default=None, max_length=2048, pattern=r"^(http|https)://.*$")
    """Deprecated: use proxySecretRef."""
    secret_ref: LocalObjectReference | None = None
    """Secret in the same namespace holding the credentials."""
    cert_secret_ref: LocalObjectReference | None = None
    """Secret with ca.crt and/or tls.crt and tls.key for TLS."""
    proxy_secret_ref: LocalObjectReference | None = None
    """Secret with the proxy address (and optional username/password)."""
    service_account_name: str | None = None
    """ServiceAccount to impersonate or to get workload identity credentials from."""
    commit_status_expr: str | None = None
    suspend: bool | None = None
    """Stop reconciling this object until it is set back to false."""

    @model_validator(mode="after")
    def _commit_status_expr_only_for_git_providers(self) -> ProviderSpec:
        if self.commit_status_expr and self.type not in COMMIT_STATUS_TYPES:
            types = ", ".join(COMMIT_STATUS_TYPES)
            raise ValueError(f"spec.commitStatusExpr is only supported for the {types} provider types")
        return self

    def timeout_seconds(self) -> float:
        return parse_duration(self.timeout) if self.timeout else 15.0


class Provider(KubeObject):
    """Where and how to send notifications (Slack, generic webhook, Git commit status, ...)."""

    group: ClassVar[str] = GROUP
    version: ClassVar[str] = "v1beta3"
    kind: ClassVar[str] = "Provider"
    categories: ClassVar[tuple[str, ...]] = NOTIFICATION_CATEGORIES
    plural: ClassVar[str] = "providers"
    singular: ClassVar[str] = "provider"
    printer_columns: ClassVar[tuple[PrinterColumn, ...]] = (AGE,)
    has_status: ClassVar[bool] = False

    spec: ProviderSpec

    def interval_seconds(self) -> float | None:
        return None


class AlertSpec(Spec):
    provider_ref: LocalObjectReference
    event_severity: Literal["info", "error"] | None = crd_default("info")
    event_sources: list[CrossNamespaceObjectReference]
    event_metadata: dict[str, str] | None = None
    inclusion_list: list[str] | None = None
    exclusion_list: list[str] | None = None
    summary: str | None = Field(default=None, max_length=255)
    """Deprecated: use eventMetadata."""
    suspend: bool | None = None
    """Stop reconciling this object until it is set back to false."""

    def severity(self) -> str:
        return self.event_severity or "info"


class Alert(KubeObject):
    """Which events of which objects go to which Provider."""

    group: ClassVar[str] = GROUP
    version: ClassVar[str] = "v1beta3"
    kind: ClassVar[str] = "Alert"
    categories: ClassVar[tuple[str, ...]] = NOTIFICATION_CATEGORIES
    plural: ClassVar[str] = "alerts"
    singular: ClassVar[str] = "alert"
    printer_columns: ClassVar[tuple[PrinterColumn, ...]] = (AGE,)
    has_status: ClassVar[bool] = False

    spec: AlertSpec


class OIDCVariable(FluxModel):
    """A named CEL expression over the token claims, exposed as vars.<name>."""

    name: str
    expression: str


class OIDCValidation(FluxModel):
    """A CEL boolean expression the token claims must satisfy."""

    expression: str
    message: str


class OIDCProvider(FluxModel):
    """An OIDC issuer trusted by a generic-oidc Receiver."""

    issuer_url: str = Field(alias="issuerURL", pattern=r"^https?://")
    audience: str | None = None
    variables: list[OIDCVariable] | None = None
    validations: list[OIDCValidation] = Field(min_length=1)

    def effective_audience(self) -> str:
        return self.audience or "notification-controller"


class ReceiverSpec(Spec):
    model_config = cel_rules(
        (
            "self.type != 'generic-oidc' || (has(self.oidcProviders) && size(self.oidcProviders) > 0)",
            "generic-oidc receivers must define at least one oidcProvider",
        ),
        (
            "self.type == 'generic-oidc' || !has(self.oidcProviders) || size(self.oidcProviders) == 0",
            "oidcProviders can only be set when type is generic-oidc",
        ),
        (
            "self.type == 'generic-oidc' || has(self.secretRef)",
            "secretRef is required when type is not generic-oidc",
        ),
    )

    type: ReceiverType
    interval: Duration | None = crd_default("10m")
    """How often the object is reconciled (Go duration, e.g. 5m)."""
    events: list[str] | None = None
    resources: list[CrossNamespaceObjectReference]
    resource_filter: str | None = None
    """CEL expression on `res` selecting which resources to annotate."""
    secret_ref: LocalObjectReference | None = None
    """Secret in the same namespace holding the credentials."""
    oidc_providers: list[OIDCProvider] | None = Field(
        default=None,
        alias="oidcProviders",
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["issuerURL"]},
    )
    suspend: bool | None = None
    """Stop reconciling this object until it is set back to false."""

    @model_validator(mode="after")
    def _credentials_match_type(self) -> ReceiverSpec:
        if self.type == "generic-oidc" and not self.oidc_providers:
            raise ValueError("generic-oidc receivers must define at least one oidcProvider")
        if self.type != "generic-oidc" and self.oidc_providers:
            raise ValueError("oidcProviders can only be set when type is generic-oidc")
        if self.type != "generic-oidc" and self.secret_ref is None:
            raise ValueError("secretRef is required when type is not generic-oidc")
        return self


class ReceiverStatus(ObjectStatus):
    webhook_path: str | None = None


class Receiver(KubeObject):
    """A webhook endpoint that asks Flux objects to reconcile now."""

    group: ClassVar[str] = GROUP
    version: ClassVar[str] = "v1"
    kind: ClassVar[str] = "Receiver"
    categories: ClassVar[tuple[str, ...]] = NOTIFICATION_CATEGORIES
    plural: ClassVar[str] = "receivers"
    singular: ClassVar[str] = "receiver"
    default_interval: ClassVar[str | None] = "10m"

    spec: ReceiverSpec
    status: ReceiverStatus = Field(default_factory=ReceiverStatus)

    def webhook_path(self, token: str) -> str:
        """`/hook/` + hex sha256 of token + name + namespace, as Flux computes it."""
        digest = hashlib.sha256(f"{token}{self.name}{self.namespace}".encode()).hexdigest()
        return f"/hook/{digest}"
