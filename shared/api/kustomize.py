"""kustomize.toolkit.fluxcd.io/v1: Kustomization."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field

from .meta import (
    CommonMetadata,
    CustomHealthCheck,
    DependencyReference,
    Duration,
    FluxModel,
    Image,
    KubeConfigReference,
    KubeObject,
    LocalObjectReference,
    NamespacedObjectKindReference,
    ObjectStatus,
    Patch,
    ResourceInventory,
    Selector,
    Spec,
    crd_default,
    parse_duration,
)

GROUP = "kustomize.toolkit.fluxcd.io"
MIN_TIMEOUT_SECONDS = 30.0


class CrossNamespaceSourceReference(FluxModel):
    """The source whose artifact holds the manifests."""

    api_version: str | None = None
    kind: Literal["OCIRepository", "GitRepository", "Bucket", "ExternalArtifact"]
    name: str
    namespace: str | None = None


class Decryption(FluxModel):
    """How to decrypt SOPS-encrypted manifests."""

    provider: Literal["sops"]
    secret_ref: LocalObjectReference | None = None
    service_account_name: str | None = None


class SubstituteReference(FluxModel):
    """A ConfigMap or Secret whose data are variables for post-build substitution."""

    kind: Literal["Secret", "ConfigMap"]
    name: str = Field(min_length=1, max_length=253)
    optional: bool | None = crd_default(False)


class PostBuild(FluxModel):
    """Variable substitution applied to the built manifests."""

    substitute: dict[str, str] | None = None
    substitute_from: list[SubstituteReference] | None = None
    substitute_strategy: Literal["WithVariables", "Always"] | None = None


class IgnoreRule(FluxModel):
    """JSON pointers to ignore in drift detection, for the objects matching target."""

    paths: list[str]
    target: Selector | None = None


class KustomizationSpec(Spec):
    common_metadata: CommonMetadata | None = None
    depends_on: list[DependencyReference] | None = None
    """Objects that must be Ready before this one is reconciled."""
    decryption: Decryption | None = None
    """How to decrypt SOPS-encrypted Secrets and files."""
    interval: Duration
    """How often the object is reconciled (Go duration, e.g. 5m)."""
    retry_interval: Duration | None = None
    """How long to wait before retrying a failed reconcile; defaults to interval."""
    kube_config: KubeConfigReference | None = None
    """Reconcile on a remote cluster with this kubeconfig."""
    path: str | None = None
    """Path inside the artifact to build; defaults to its root."""
    post_build: PostBuild | None = None
    """Variable substitution applied to the built manifests."""
    prune: bool
    """Delete the objects that were applied before and are no longer in the source."""
    deletion_policy: Literal["MirrorPrune", "Delete", "WaitForTermination", "Orphan"] | None = None
    health_checks: list[NamespacedObjectKindReference] | None = None
    """Objects whose readiness is checked after apply."""
    health_check_exprs: list[CustomHealthCheck] | None = None
    name_prefix: str | None = Field(default=None, min_length=1, max_length=200)
    name_suffix: str | None = Field(default=None, min_length=1, max_length=200)
    patches: list[Patch] | None = None
    """Strategic merge or JSON6902 patches applied to the built objects."""
    images: list[Image] | None = None
    """Image name, tag or digest overrides."""
    service_account_name: str | None = None
    """ServiceAccount to impersonate or to get workload identity credentials from."""
    source_ref: CrossNamespaceSourceReference
    """The source whose artifact is used."""
    suspend: bool | None = None
    """Stop reconciling this object until it is set back to false."""
    target_namespace: str | None = Field(default=None, min_length=1, max_length=63)
    """Namespace set on every applied object."""
    timeout: Duration | None = None
    """Timeout of the reconcile's remote operations."""
    force: bool | None = crd_default(False)
    """Recreate objects whose immutable fields changed."""
    wait: bool | None = None
    """Wait for every applied object to be ready (kstatus)."""
    components: list[str] | None = None
    ignore_missing_components: bool | None = None
    ignore: list[IgnoreRule] | None = None
    build_metadata: list[Literal["originAnnotations", "transformerAnnotations"]] | None = None

    def interval_seconds(self) -> float:
        return parse_duration(self.interval)

    def retry_interval_seconds(self) -> float:
        """retryInterval, else interval (Flux's GetRetryInterval)."""
        return parse_duration(self.retry_interval) if self.retry_interval else self.interval_seconds()

    def timeout_seconds(self) -> float:
        """timeout, else interval minus 30s; never below 30s (Flux's GetTimeout)."""
        if self.timeout:
            seconds = parse_duration(self.timeout)
        else:
            seconds = self.interval_seconds() - MIN_TIMEOUT_SECONDS
        return max(seconds, MIN_TIMEOUT_SECONDS)

    def effective_deletion_policy(self) -> str:
        return self.deletion_policy or "MirrorPrune"


class Snapshot(FluxModel):
    """One reconciliation of a distinct build output (history entry)."""

    digest: str
    first_reconciled: str | None = Field(default=None, json_schema_extra={"format": "date-time"})
    last_reconciled: str | None = Field(default=None, json_schema_extra={"format": "date-time"})
    last_reconciled_duration: str | None = None
    last_reconciled_status: str | None = None
    total_reconciliations: int | None = Field(default=None, json_schema_extra={"format": "int64"})
    metadata: dict[str, str] | None = None


class KustomizationStatus(ObjectStatus):
    last_applied_revision: str | None = None
    last_applied_origin_revision: str | None = None
    last_attempted_revision: str | None = None
    inventory: ResourceInventory | None = None
    history: list[Snapshot] | None = None


class Kustomization(KubeObject):
    """Build a path of a source's artifact with kustomize and apply it to the cluster."""

    group: ClassVar[str] = GROUP
    version: ClassVar[str] = "v1"
    kind: ClassVar[str] = "Kustomization"
    plural: ClassVar[str] = "kustomizations"
    singular: ClassVar[str] = "kustomization"
    short_names: ClassVar[tuple[str, ...]] = ("ks",)

    spec: KustomizationSpec
    status: KustomizationStatus = Field(default_factory=KustomizationStatus)
