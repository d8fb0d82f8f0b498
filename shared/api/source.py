"""source.toolkit.fluxcd.io/v1: GitRepository, OCIRepository, HelmRepository, HelmChart, Bucket,
ExternalArtifact."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field, model_validator

from .meta import (
    AGE,
    READY,
    STATUS,
    AccessFrom,
    Artifact,
    Duration,
    FluxModel,
    KubeObject,
    LocalObjectReference,
    NamespacedObjectKindReference,
    ObjectStatus,
    PrinterColumn,
    ShortDuration,
    Spec,
    cel_rules,
    crd_default,
    parse_duration,
)

GROUP = "source.toolkit.fluxcd.io"
SOURCE_CATEGORIES = ("all", "fluxcd", "fluxcd-sources")
NO_SUBSTITUTION = {"kustomize.toolkit.fluxcd.io/substitute": "disabled"}
URL_COLUMN = PrinterColumn("URL", ".spec.url")
DEFAULT_TIMEOUT = "60s"


def _timeout_seconds(timeout: str | None) -> float:
    return parse_duration(timeout or DEFAULT_TIMEOUT)


class SourceStatus(ObjectStatus):
    """Status common to all sources: the artifact produced by the last successful reconcile."""

    artifact: Artifact | None = None


# GitRepository


class GitRepositoryRef(FluxModel):
    """The Git reference to check out; precedence branch < tag < semver < name < commit."""

    branch: str | None = None
    tag: str | None = None
    semver: str | None = None
    name: str | None = None
    """A full Git reference, e.g. refs/heads/main or refs/pull/420/head."""
    commit: str | None = None


class GitRepositoryVerification(FluxModel):
    """Verify the signature of the commit and/or tag with the keys in secretRef."""

    mode: Literal["head", "HEAD", "Tag", "TagAndHEAD"] | None = crd_default("HEAD")
    secret_ref: LocalObjectReference


class GitRepositoryInclude(FluxModel):
    """The artifact of another GitRepository to include in this one."""

    repository: LocalObjectReference
    from_path: str | None = None
    to_path: str | None = None


class GitRepositorySpec(Spec):
    model_config = cel_rules(
        (
            "!has(self.serviceAccountName) || "
            "(has(self.provider) && (self.provider == 'azure' || self.provider == 'aws'))",
            "serviceAccountName can only be set when provider is 'azure' or 'aws'",
        )
    )

    url: str = Field(pattern=r"^(http|https|ssh)://.*$")
    """The repository URL: http(s) or ssh (no scp-like syntax)."""
    secret_ref: LocalObjectReference | None = None
    """Secret in the same namespace holding the credentials."""
    provider: Literal["generic", "aws", "azure", "github"] | None = crd_default("generic")
    """Authentication provider; generic uses the credentials in secretRef."""
    interval: Duration
    """How often the object is reconciled (Go duration, e.g. 5m)."""
    timeout: ShortDuration | None = crd_default(DEFAULT_TIMEOUT)
    """Timeout of the reconcile's remote operations."""
    ref: GitRepositoryRef | None = None
    verify: GitRepositoryVerification | None = None
    proxy_secret_ref: LocalObjectReference | None = None
    """Secret with the proxy address (and optional username/password)."""
    ignore: str | None = None
    """Extra .sourceignore patterns, applied last."""
    suspend: bool | None = None
    """Stop reconciling this object until it is set back to false."""
    recurse_submodules: bool | None = None
    include: list[GitRepositoryInclude] | None = None
    sparse_checkout: list[str] | None = None
    service_account_name: str | None = None
    """ServiceAccount to impersonate or to get workload identity credentials from."""

    @model_validator(mode="after")
    def _service_account_needs_cloud_provider(self) -> GitRepositorySpec:
        if self.service_account_name and self.provider not in ("azure", "aws"):
            raise ValueError("serviceAccountName can only be set when provider is 'azure' or 'aws'")
        return self

    def timeout_seconds(self) -> float:
        return _timeout_seconds(self.timeout)

    def effective_provider(self) -> str:
        return self.provider or "generic"


class GitRepositoryStatus(SourceStatus):
    included_artifacts: list[Artifact] | None = None
    observed_ignore: str | None = None
    observed_recurse_submodules: bool | None = None
    observed_include: list[GitRepositoryInclude] | None = None
    observed_sparse_checkout: list[str] | None = None
    source_verification_mode: str | None = None


class GitRepository(KubeObject):
    """A Git repository whose content is fetched and served as an artifact."""

    group: ClassVar[str] = GROUP
    version: ClassVar[str] = "v1"
    kind: ClassVar[str] = "GitRepository"
    categories: ClassVar[tuple[str, ...]] = SOURCE_CATEGORIES
    crd_annotations: ClassVar[dict[str, str]] = NO_SUBSTITUTION
    plural: ClassVar[str] = "gitrepositories"
    singular: ClassVar[str] = "gitrepository"
    short_names: ClassVar[tuple[str, ...]] = ("gitrepo",)
    printer_columns: ClassVar[tuple[PrinterColumn, ...]] = (URL_COLUMN, AGE, READY, STATUS)

    spec: GitRepositorySpec
    status: GitRepositoryStatus = Field(default_factory=GitRepositoryStatus)


# OCIRepository


class OCIRepositoryRef(FluxModel):
    """The OCI reference to pull; precedence tag < semver < digest."""

    digest: str | None = None
    semver: str | None = None
    semver_filter: str | None = None
    tag: str | None = None


class OCILayerSelector(FluxModel):
    """Which layer of the artifact to use, and whether to extract it or copy it as-is."""

    media_type: str | None = None
    operation: Literal["extract", "copy"] | None = None


class OIDCIdentityMatch(FluxModel):
    """Regular expressions the Fulcio certificate's issuer and subject must match (keyless)."""

    issuer: str
    subject: str


class OCIRepositoryVerification(FluxModel):
    """Verify the artifact signature with cosign or notation."""

    provider: Literal["cosign", "notation"] | None = crd_default("cosign")
    secret_ref: LocalObjectReference | None = None
    match_oidc_identity: list[OIDCIdentityMatch] | None = Field(default=None, alias="matchOIDCIdentity")
    trusted_root_secret_ref: LocalObjectReference | None = None


class OCIRepositorySpec(Spec):
    url: str = Field(pattern=r"^oci://.*$")
    ref: OCIRepositoryRef | None = None
    layer_selector: OCILayerSelector | None = None
    provider: Literal["generic", "aws", "azure", "gcp"] | None = crd_default("generic")
    """Authentication provider; generic uses the credentials in secretRef."""
    secret_ref: LocalObjectReference | None = None
    """Secret in the same namespace holding the credentials."""
    verify: OCIRepositoryVerification | None = None
    service_account_name: str | None = None
    """ServiceAccount to impersonate or to get workload identity credentials from."""
    cert_secret_ref: LocalObjectReference | None = None
    """Secret with ca.crt and/or tls.crt and tls.key for TLS."""
    proxy_secret_ref: LocalObjectReference | None = None
    """Secret with the proxy address (and optional username/password)."""
    interval: Duration
    """How often the object is reconciled (Go duration, e.g. 5m)."""
    timeout: ShortDuration | None = crd_default(DEFAULT_TIMEOUT)
    """Timeout of the reconcile's remote operations."""
    ignore: str | None = None
    insecure: bool | None = None
    """Allow plain HTTP connections."""
    suspend: bool | None = None
    """Stop reconciling this object until it is set back to false."""

    def timeout_seconds(self) -> float:
        return _timeout_seconds(self.timeout)


class OCIRepositoryStatus(SourceStatus):
    url: str | None = None
    observed_ignore: str | None = None
    observed_layer_selector: OCILayerSelector | None = None


class OCIRepository(KubeObject):
    """An OCI artifact whose content is pulled and served as an artifact."""

    group: ClassVar[str] = GROUP
    version: ClassVar[str] = "v1"
    kind: ClassVar[str] = "OCIRepository"
    categories: ClassVar[tuple[str, ...]] = SOURCE_CATEGORIES
    crd_annotations: ClassVar[dict[str, str]] = NO_SUBSTITUTION
    plural: ClassVar[str] = "ocirepositories"
    singular: ClassVar[str] = "ocirepository"
    short_names: ClassVar[tuple[str, ...]] = ("ocirepo",)
    printer_columns: ClassVar[tuple[PrinterColumn, ...]] = (URL_COLUMN, READY, STATUS, AGE)

    spec: OCIRepositorySpec
    status: OCIRepositoryStatus = Field(default_factory=OCIRepositoryStatus)


# HelmRepository


class HelmRepositorySpec(Spec):
    url: str = Field(pattern=r"^(http|https|oci)://.*$")
    secret_ref: LocalObjectReference | None = None
    """Secret in the same namespace holding the credentials."""
    cert_secret_ref: LocalObjectReference | None = None
    """Secret with ca.crt and/or tls.crt and tls.key for TLS."""
    pass_credentials: bool | None = None
    interval: Duration | None = None
    """Defaults to 1m; OCI repositories are not reconciled."""
    insecure: bool | None = None
    """Allow plain HTTP connections."""
    timeout: ShortDuration | None = None
    """Timeout of the reconcile's remote operations."""
    suspend: bool | None = None
    """Stop reconciling this object until it is set back to false."""
    access_from: AccessFrom | None = None
    type: Literal["default", "oci"] | None = None
    provider: Literal["generic", "aws", "azure", "gcp"] | None = crd_default("generic")
    """Authentication provider; generic uses the credentials in secretRef."""

    def timeout_seconds(self) -> float:
        return _timeout_seconds(self.timeout)


class HelmRepositoryStatus(SourceStatus):
    url: str | None = None


class HelmRepository(KubeObject):
    """A Helm chart repository whose index is fetched and served as an artifact."""

    group: ClassVar[str] = GROUP
    version: ClassVar[str] = "v1"
    kind: ClassVar[str] = "HelmRepository"
    categories: ClassVar[tuple[str, ...]] = SOURCE_CATEGORIES
    crd_annotations: ClassVar[dict[str, str]] = NO_SUBSTITUTION
    plural: ClassVar[str] = "helmrepositories"
    singular: ClassVar[str] = "helmrepository"
    short_names: ClassVar[tuple[str, ...]] = ("helmrepo",)
    printer_columns: ClassVar[tuple[PrinterColumn, ...]] = (URL_COLUMN, AGE, READY, STATUS)
    default_interval: ClassVar[str | None] = "1m"

    spec: HelmRepositorySpec
    status: HelmRepositoryStatus = Field(default_factory=HelmRepositoryStatus)

    def is_oci(self) -> bool:
        return self.spec.type == "oci"


# HelmChart


class LocalHelmChartSourceReference(FluxModel):
    """The source of a chart, in the same namespace."""

    api_version: str | None = None
    kind: Literal["HelmRepository", "GitRepository", "Bucket"]
    name: str


class HelmChartSpec(Spec):
    chart: str
    """The chart name in a HelmRepository, or its path in a GitRepository or Bucket."""
    version: str | None = crd_default("*")
    source_ref: LocalHelmChartSourceReference
    """The source whose artifact is used."""
    interval: Duration
    """How often the object is reconciled (Go duration, e.g. 5m)."""
    reconcile_strategy: Literal["ChartVersion", "Revision"] | None = crd_default("ChartVersion")
    values_files: list[str] | None = None
    values_file: str | None = None
    """Deprecated: use valuesFiles (merged before them)."""
    ignore_missing_values_files: bool | None = None
    suspend: bool | None = None
    """Stop reconciling this object until it is set back to false."""
    access_from: AccessFrom | None = None
    verify: OCIRepositoryVerification | None = None

    def all_values_files(self) -> list[str]:
        """valuesFile (deprecated) followed by valuesFiles, in merge order."""
        return ([self.values_file] if self.values_file else []) + list(self.values_files or [])


class HelmChartStatus(SourceStatus):
    observed_source_artifact_revision: str | None = None
    observed_chart_name: str | None = None
    observed_values_files: list[str] | None = None
    url: str | None = None


class HelmChart(KubeObject):
    """A Helm chart fetched (or packaged) from a source and served as an artifact."""

    group: ClassVar[str] = GROUP
    version: ClassVar[str] = "v1"
    kind: ClassVar[str] = "HelmChart"
    categories: ClassVar[tuple[str, ...]] = SOURCE_CATEGORIES
    plural: ClassVar[str] = "helmcharts"
    singular: ClassVar[str] = "helmchart"
    short_names: ClassVar[tuple[str, ...]] = ("hc",)
    printer_columns: ClassVar[tuple[PrinterColumn, ...]] = (
        PrinterColumn("Chart", ".spec.chart"),
        PrinterColumn("Version", ".spec.version"),
        PrinterColumn("Source Kind", ".spec.sourceRef.kind"),
        PrinterColumn("Source Name", ".spec.sourceRef.name"),
        AGE,
        READY,
        STATUS,
    )

    spec: HelmChartSpec
    status: HelmChartStatus = Field(default_factory=HelmChartStatus)


# Bucket


class BucketSTSSpec(FluxModel):
    """A Security Token Service to get temporary credentials from."""

    provider: Literal["aws", "ldap"]
    """Authentication provider; generic uses the credentials in secretRef."""
    endpoint: str = Field(pattern=r"^(http|https)://.*$")
    secret_ref: LocalObjectReference | None = None
    """Secret in the same namespace holding the credentials."""
    cert_secret_ref: LocalObjectReference | None = None
    """Secret with ca.crt and/or tls.crt and tls.key for TLS."""


class BucketSpec(Spec):
    model_config = cel_rules(
        (
            "self.provider == 'aws' || self.provider == 'generic' || !has(self.sts)",
            "STS configuration is only supported for the 'aws' and 'generic' Bucket providers",
        ),
        (
            "self.provider != 'aws' || !has(self.sts) || self.sts.provider == 'aws'",
            "'aws' is the only supported STS provider for the 'aws' Bucket provider",
        ),
        (
            "self.provider != 'generic' || !has(self.sts) || self.sts.provider == 'ldap'",
            "'ldap' is the only supported STS provider for the 'generic' Bucket provider",
        ),
        (
            "!has(self.sts) || self.sts.provider != 'aws' || !has(self.sts.secretRef)",
            "spec.sts.secretRef is not required for the 'aws' STS provider",
        ),
        (
            "!has(self.sts) || self.sts.provider != 'aws' || !has(self.sts.certSecretRef)",
            "spec.sts.certSecretRef is not required for the 'aws' STS provider",
        ),
        (
            "self.provider != 'generic' || !has(self.serviceAccountName)",
            "ServiceAccountName is not supported for the 'generic' Bucket provider",
        ),
        (
            "!has(self.secretRef) || !has(self.serviceAccountName)",
            "cannot set both .spec.secretRef and .spec.serviceAccountName",
        ),
    )

    provider: Literal["generic", "aws", "gcp", "azure"] | None = crd_default("generic")
    """Authentication provider; generic uses the credentials in secretRef."""
    bucket_name: str
    endpoint: str
    sts: BucketSTSSpec | None = None
    insecure: bool | None = None
    """Allow plain HTTP connections."""
    region: str | None = None
    prefix: str | None = None
    secret_ref: LocalObjectReference | None = None
    """Secret in the same namespace holding the credentials."""
    cert_secret_ref: LocalObjectReference | None = None
    """Secret with ca.crt and/or tls.crt and tls.key for TLS."""
    proxy_secret_ref: LocalObjectReference | None = None
    """Secret with the proxy address (and optional username/password)."""
    service_account_name: str | None = None
    """ServiceAccount to impersonate or to get workload identity credentials from."""
    interval: Duration
    """How often the object is reconciled (Go duration, e.g. 5m)."""
    timeout: ShortDuration | None = crd_default(DEFAULT_TIMEOUT)
    """Timeout of the reconcile's remote operations."""
    ignore: str | None = None
    suspend: bool | None = None
    """Stop reconciling this object until it is set back to false."""

    @model_validator(mode="after")
    def _sts_and_credentials_match_provider(self) -> BucketSpec:
        provider = self.provider or "generic"
        if self.sts is not None:
            if provider not in ("aws", "generic"):
                raise ValueError(
                    "STS configuration is only supported for the 'aws' and 'generic' Bucket providers"
                )
            expected = "aws" if provider == "aws" else "ldap"
            if self.sts.provider != expected:
                raise ValueError(f"'{expected}' is the only supported STS provider for '{provider}' buckets")
        if self.service_account_name and (provider == "generic" or self.secret_ref is not None):
            raise ValueError("serviceAccountName needs a cloud provider and no secretRef")
        return self

    def timeout_seconds(self) -> float:
        return _timeout_seconds(self.timeout)

    def effective_provider(self) -> str:
        return self.provider or "generic"


class BucketStatus(SourceStatus):
    url: str | None = None
    observed_ignore: str | None = None


class Bucket(KubeObject):
    """An S3-compatible, GCS or Azure bucket whose objects are served as an artifact."""

    group: ClassVar[str] = GROUP
    version: ClassVar[str] = "v1"
    kind: ClassVar[str] = "Bucket"
    categories: ClassVar[tuple[str, ...]] = SOURCE_CATEGORIES
    plural: ClassVar[str] = "buckets"
    singular: ClassVar[str] = "bucket"
    printer_columns: ClassVar[tuple[PrinterColumn, ...]] = (
        PrinterColumn("Endpoint", ".spec.endpoint"),
        AGE,
        READY,
        STATUS,
    )

    spec: BucketSpec
    status: BucketStatus = Field(default_factory=BucketStatus)


# ExternalArtifact


class ExternalArtifactSpec(Spec):
    source_ref: NamespacedObjectKindReference | None = None
    """The object the artifact is generated for (an ArtifactGenerator for Tide's own)."""


class ExternalArtifact(KubeObject):
    """An artifact produced outside the source kinds (by an ArtifactGenerator or a third party)."""

    group: ClassVar[str] = GROUP
    version: ClassVar[str] = "v1"
    kind: ClassVar[str] = "ExternalArtifact"
    categories: ClassVar[tuple[str, ...]] = SOURCE_CATEGORIES
    crd_annotations: ClassVar[dict[str, str]] = NO_SUBSTITUTION
    plural: ClassVar[str] = "externalartifacts"
    singular: ClassVar[str] = "externalartifact"
    short_names: ClassVar[tuple[str, ...]] = ("ea",)
    printer_columns: ClassVar[tuple[PrinterColumn, ...]] = (
        AGE,
        READY,
        STATUS,
        PrinterColumn("Source", ".spec.sourceRef.name"),
    )

    spec: ExternalArtifactSpec = Field(default_factory=ExternalArtifactSpec)
    status: SourceStatus = Field(default_factory=SourceStatus)


SOURCE_KINDS: tuple[type[KubeObject], ...] = (
    GitRepository,
    OCIRepository,
    HelmRepository,
    HelmChart,
    Bucket,
    ExternalArtifact,
)
