"""helm.toolkit.fluxcd.io/v2 (v2beta2 and v2beta1 also served): HelmRelease."""

from __future__ import annotations

import hashlib
import json
from typing import Any, ClassVar, Literal

from pydantic import Field, model_validator
from pydantic.config import JsonDict

from .meta import (
    CommonMetadata,
    CustomHealthCheck,
    DependencyReference,
    Duration,
    FluxModel,
    Image,
    KubeConfigReference,
    KubeObject,
    ObjectStatus,
    Patch,
    ResourceInventory,
    Selector,
    Spec,
    cel_rules,
    crd_default,
    parse_duration,
)
from .source import OCIRepositoryVerification

GROUP = "helm.toolkit.fluxcd.io"
DEFAULT_TIMEOUT = "5m"
DEFAULT_MAX_HISTORY = 5
MAX_RELEASE_NAME_LENGTH = 53
PRESERVE_UNKNOWN: JsonDict = {"x-kubernetes-preserve-unknown-fields": True}
TARGET_PATH_PATTERN = r"^([a-zA-Z0-9_\-.\\\/]|\[[0-9]{1,5}\])+$"
CHART_XOR_CHART_REF = "(has(self.chart) && !has(self.chartRef)) || (!has(self.chart) && has(self.chartRef))"

CRDsPolicy = Literal["Skip", "Create", "CreateReplace"]


def shorten_release_name(name: str) -> str:
    """Helm release names are at most 53 characters; longer ones keep 40 plus a hash (Flux)."""
    if len(name) <= MAX_RELEASE_NAME_LENGTH:
        return name
    return f"{name[:40]}-{hashlib.sha256(name.encode()).hexdigest()[:12]}"


class CrossNamespaceObjectReference(FluxModel):
    """The source of a chart template: a HelmRepository, GitRepository or Bucket."""

    api_version: str | None = None
    kind: Literal["HelmRepository", "GitRepository", "Bucket"]
    name: str = Field(min_length=1, max_length=253)
    namespace: str | None = Field(default=None, min_length=1, max_length=63)


class CrossNamespaceSourceReference(FluxModel):
    """A ready-made chart source: an OCIRepository, HelmChart or ExternalArtifact."""

    api_version: str | None = None
    kind: Literal["OCIRepository", "HelmChart", "ExternalArtifact"]
    name: str = Field(min_length=1, max_length=253)
    namespace: str | None = Field(default=None, min_length=1, max_length=63)


class HelmChartTemplateSpec(FluxModel):
    """The HelmChart the controller creates for this release."""

    chart: str = Field(min_length=1, max_length=2048)
    version: str | None = crd_default("*")
    source_ref: CrossNamespaceObjectReference
    interval: Duration | None = None
    reconcile_strategy: Literal["ChartVersion", "Revision"] | None = crd_default("ChartVersion")
    values_files: list[str] | None = None
    values_file: str | None = None
    """Deprecated (v2beta1): use valuesFiles."""
    ignore_missing_values_files: bool | None = None
    verify: OCIRepositoryVerification | None = None


class HelmChartTemplateObjectMeta(FluxModel):
    labels: dict[str, str] | None = None
    annotations: dict[str, str] | None = None


class HelmChartTemplate(FluxModel):
    metadata: HelmChartTemplateObjectMeta | None = None
    spec: HelmChartTemplateSpec


class ValuesReference(FluxModel):
    """A Secret or ConfigMap key holding values to merge."""

    kind: Literal["Secret", "ConfigMap"]
    name: str = Field(min_length=1, max_length=253)
    values_key: str | None = Field(default=None, max_length=253, pattern=r"^[\-._a-zA-Z0-9]+$")
    target_path: str | None = Field(default=None, max_length=250, pattern=TARGET_PATH_PATTERN)
    optional: bool | None = None
    literal: bool | None = None

    def key(self) -> str:
        return self.values_key or "values.yaml"


class Remediation(FluxModel):
    retries: int | None = None
    """Retries before giving up; negative means infinite."""
    ignore_test_failures: bool | None = None
    remediate_last_failure: bool | None = None


    def effective_retries(self) -> int:
        return self.retries or 0

    def must_ignore_test_failures(self, default: bool) -> bool:
        """ignoreTestFailures, else the given default (test.ignoreFailures)."""
        return default if self.ignore_test_failures is None else self.ignore_test_failures

    def retries_exhausted(self, failures: int) -> bool:
        retries = self.effective_retries()
        return retries >= 0 and failures > retries


class InstallRemediation(Remediation):
    def must_remediate_last_failure(self) -> bool:
        return bool(self.remediate_last_failure)

    def effective_strategy(self) -> str:
        return "uninstall"


class UpgradeRemediation(Remediation):
    strategy: Literal["rollback", "uninstall"] | None = None

    def must_remediate_last_failure(self) -> bool:
        if self.remediate_last_failure is None:
            return self.effective_retries() > 0
        return self.remediate_last_failure

    def effective_strategy(self) -> str:
        return self.strategy or "rollback"


class ActionStrategy(FluxModel):
    name: Literal["RemediateOnFailure", "RetryOnFailure"]
    retry_interval: Duration | None = None


class Install(FluxModel):
    timeout: Duration | None = None
    remediation: InstallRemediation | None = None
    strategy: ActionStrategy | None = None
    disable_wait: bool | None = None
    disable_wait_for_jobs: bool | None = None
    disable_hooks: bool | None = None
    disable_open_api_validation: bool | None = Field(default=None, alias="disableOpenAPIValidation")
    disable_schema_validation: bool | None = None
    disable_take_ownership: bool | None = None
    replace: bool | None = None
    skip_crds: bool | None = Field(default=None, alias="skipCRDs")
    """Deprecated: use crds."""
    crds: CRDsPolicy | None = None
    create_namespace: bool | None = None
    server_side_apply: bool | None = None

    def crds_policy(self) -> str:
        if self.crds:
            return self.crds
        return "Skip" if self.skip_crds else "Create"


class Upgrade(FluxModel):
    timeout: Duration | None = None
    remediation: UpgradeRemediation | None = None
    strategy: ActionStrategy | None = None
    disable_wait: bool | None = None
    disable_wait_for_jobs: bool | None = None
    disable_hooks: bool | None = None
    disable_open_api_validation: bool | None = Field(default=None, alias="disableOpenAPIValidation")
    disable_schema_validation: bool | None = None
    disable_take_ownership: bool | None = None
    force: bool | None = None
    preserve_values: bool | None = None
    cleanup_on_fail: bool | None = None
    crds: CRDsPolicy | None = None
    server_side_apply: Literal["enabled", "disabled", "auto"] | None = None
    chart_name_change_strategy: Literal["Reinstall", "InPlaceUpdate"] | None = None

    def crds_policy(self) -> str:
        return self.crds or "Skip"


class Filter(FluxModel):
    name: str = Field(min_length=1, max_length=253)
    exclude: bool | None = None


class Test(FluxModel):
    enable: bool | None = None
    timeout: Duration | None = None
    ignore_failures: bool | None = None
    filters: list[Filter] | None = None


class Rollback(FluxModel):
    timeout: Duration | None = None
    disable_wait: bool | None = None
    disable_wait_for_jobs: bool | None = None
    disable_hooks: bool | None = None
    recreate: bool | None = None
    force: bool | None = None
    cleanup_on_fail: bool | None = None
    server_side_apply: Literal["enabled", "disabled", "auto"] | None = None


class Uninstall(FluxModel):
    timeout: Duration | None = None
    disable_hooks: bool | None = None
    keep_history: bool | None = None
    disable_wait: bool | None = None
    deletion_propagation: Literal["background", "foreground", "orphan"] | None = crd_default("background")


class IgnoreRule(FluxModel):
    paths: list[str]
    target: Selector | None = None


class DriftDetection(FluxModel):
    mode: Literal["enabled", "warn", "disabled"] | None = None
    ignore: list[IgnoreRule] | None = None

    def effective_mode(self) -> str:
        return self.mode or "disabled"


class JSON6902(FluxModel):
    op: Literal["test", "remove", "add", "replace", "move", "copy"]
    path: str
    from_: str | None = Field(default=None, alias="from")
    value: Any = Field(default=None, json_schema_extra=PRESERVE_UNKNOWN)


class JSON6902Patch(FluxModel):
    patch: list[JSON6902]
    target: Selector


class KustomizePostRenderer(FluxModel):
    patches: list[Patch] | None = None
    patches_strategic_merge: list[dict[str, Any]] | None = Field(
        default=None, json_schema_extra={"items": {"type": "object", **PRESERVE_UNKNOWN}}
    )
    """Deprecated (v2beta1, v2beta2; gone in v2): use patches."""
    patches_json6902: list[JSON6902Patch] | None = None
    """Deprecated (v2beta1, v2beta2; gone in v2): use patches."""
    images: list[Image] | None = None

    def all_patches(self) -> list[Patch]:
        """spec.patches with the deprecated forms mapped into it, in the order kustomize applies a
        kustomization holding all three: strategic merge patches, then patches, then JSON6902
        patches (each a JSON array of operations with its target)."""
        merged = [Patch(patch=json.dumps(p)) for p in self.patches_strategic_merge or []]
        merged += self.patches or []
        for p in self.patches_json6902 or []:
            ops = [op.model_dump(mode="json", by_alias=True, exclude_unset=True) for op in p.patch]
            merged.append(Patch(patch=json.dumps(ops), target=p.target))
        return merged


class PostRenderer(FluxModel):
    kustomize: KustomizePostRenderer | None = None


class WaitStrategy(FluxModel):
    name: Literal["poller", "legacy"]


class HelmReleaseSpec(Spec):
    chart: HelmChartTemplate | None = None
    chart_ref: CrossNamespaceSourceReference | None = None
    interval: Duration
    """How often the object is reconciled (Go duration, e.g. 5m)."""
    kube_config: KubeConfigReference | None = None
    """Reconcile on a remote cluster with this kubeconfig."""
    suspend: bool | None = None
    """Stop reconciling this object until it is set back to false."""
    release_name: str | None = Field(default=None, min_length=1, max_length=53)
    target_namespace: str | None = Field(default=None, min_length=1, max_length=63)
    """Namespace set on every applied object."""
    storage_namespace: str | None = Field(default=None, min_length=1, max_length=63)
    depends_on: list[DependencyReference] | None = None
    """Objects that must be Ready before this one is reconciled."""
    timeout: Duration | None = None
    """Timeout of the reconcile's remote operations."""
    max_history: int | None = None
    service_account_name: str | None = Field(default=None, min_length=1, max_length=253)
    """ServiceAccount to impersonate or to get workload identity credentials from."""
    persistent_client: bool | None = None
    drift_detection: DriftDetection | None = None
    install: Install | None = None
    upgrade: Upgrade | None = None
    test: Test | None = None
    rollback: Rollback | None = None
    uninstall: Uninstall | None = None
    values_from: list[ValuesReference] | None = None
    """ConfigMaps and Secrets holding Helm values, merged in order."""
    values: dict[str, Any] | None = Field(default=None, json_schema_extra=PRESERVE_UNKNOWN)
    """Inline Helm values (merged last, after valuesFrom)."""
    post_renderers: list[PostRenderer] | None = None
    post_render_strategy: Literal["nohooks", "combined", "separate"] | None = None
    """How post-renderers treat hooks; Flux's default is combined."""
    common_metadata: CommonMetadata | None = None
    health_check_exprs: list[CustomHealthCheck] | None = None
    wait_strategy: WaitStrategy | None = None

    model_config = cel_rules((CHART_XOR_CHART_REF, "either chart or chartRef must be set"))

    @model_validator(mode="after")
    def _chart_xor_chart_ref(self) -> HelmReleaseSpec:
        if (self.chart is None) == (self.chart_ref is None):
            raise ValueError("either chart or chartRef must be set")
        return self

    def timeout_seconds(self) -> float:
        return parse_duration(self.timeout or DEFAULT_TIMEOUT)

    def effective_max_history(self) -> int:
        return DEFAULT_MAX_HISTORY if self.max_history is None else self.max_history

    def use_persistent_client(self) -> bool:
        return True if self.persistent_client is None else self.persistent_client

    def effective_install(self) -> Install:
        return self.install or Install()

    def install_remediation(self) -> InstallRemediation:
        return self.effective_install().remediation or InstallRemediation()

    def upgrade_remediation(self) -> UpgradeRemediation:
        return self.effective_upgrade().remediation or UpgradeRemediation()

    def effective_drift_detection_mode(self) -> str:
        return self.drift_detection.effective_mode() if self.drift_detection else "disabled"

    def effective_upgrade(self) -> Upgrade:
        return self.upgrade or Upgrade()


class TestHookStatus(FluxModel):
    last_started: str | None = None
    last_completed: str | None = None
    phase: str | None = None


class ReleaseSnapshot(FluxModel):
    """One Helm release revision, as recorded in status.history (newest first)."""

    api_version: str | None = None
    digest: str
    name: str
    namespace: str
    version: int
    status: str
    chart_name: str
    chart_version: str
    app_version: str | None = None
    config_digest: str
    first_deployed: str = Field(json_schema_extra={"format": "date-time"})
    last_deployed: str = Field(json_schema_extra={"format": "date-time"})
    deleted: str | None = Field(default=None, json_schema_extra={"format": "date-time"})
    test_hooks: dict[str, TestHookStatus] | None = None
    oci_digest: str | None = None
    action: str | None = None


class HelmReleaseStatus(ObjectStatus):
    helm_chart: str | None = None
    """The `<namespace>/<name>` of the HelmChart created from spec.chart."""
    storage_namespace: str | None = None
    history: list[ReleaseSnapshot] | None = None
    last_attempted_generation: int | None = Field(default=None, json_schema_extra={"format": "int64"})
    last_attempted_revision: str | None = None
    last_attempted_revision_digest: str | None = None
    last_attempted_values_checksum: str | None = None
    last_attempted_config_digest: str | None = None
    last_attempted_release_action: Literal["install", "upgrade"] | None = None
    last_attempted_release_action_duration: str | None = None
    last_applied_revision: str | None = None
    """Deprecated (v2beta1)."""
    last_release_revision: int | None = None
    failures: int | None = Field(default=None, json_schema_extra={"format": "int64"})
    install_failures: int | None = Field(default=None, json_schema_extra={"format": "int64"})
    upgrade_failures: int | None = Field(default=None, json_schema_extra={"format": "int64"})
    last_handled_force_at: str | None = None
    last_handled_reset_at: str | None = None
    observed_post_renderers_digest: str | None = None
    observed_common_metadata_digest: str | None = None
    inventory: ResourceInventory | None = None


class HelmRelease(KubeObject):
    """A Helm release installed, upgraded, tested and remediated from a chart source."""

    group: ClassVar[str] = GROUP
    version: ClassVar[str] = "v2"
    served_versions: ClassVar[tuple[str, ...]] = ("v2beta2", "v2beta1")
    kind: ClassVar[str] = "HelmRelease"
    plural: ClassVar[str] = "helmreleases"
    singular: ClassVar[str] = "helmrelease"
    short_names: ClassVar[tuple[str, ...]] = ("hr",)

    spec: HelmReleaseSpec
    status: HelmReleaseStatus = Field(default_factory=HelmReleaseStatus)

    def release_name(self) -> str:
        """spec.releaseName, else `[targetNamespace-]name`, shortened to 53 characters."""
        if self.spec.release_name:
            return self.spec.release_name
        name = self.name
        if self.spec.target_namespace:
            name = f"{self.spec.target_namespace}-{name}"
        return shorten_release_name(name)

    def release_namespace(self) -> str:
        return self.spec.target_namespace or self.namespace

    def storage_namespace(self) -> str:
        return self.spec.storage_namespace or self.namespace

    def helm_chart_name(self) -> str:
        """Name of the HelmChart generated from spec.chart (in the source's namespace)."""
        return f"{self.namespace}-{self.name}"

    def active_remediation(self) -> InstallRemediation | UpgradeRemediation | None:
        """The remediation settings of the last attempted action (Flux's GetActiveRemediation)."""
        if self.status.last_attempted_release_action == "install":
            return self.spec.install_remediation()
        if self.status.last_attempted_release_action == "upgrade":
            return self.spec.upgrade_remediation()
        return None

    def helm_chart_namespace(self) -> str:
        if self.spec.chart and self.spec.chart.spec.source_ref.namespace:
            return self.spec.chart.spec.source_ref.namespace
        return self.namespace

