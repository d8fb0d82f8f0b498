"""The kustomize controller's settings, read once from its flags (see main.py)."""

from __future__ import annotations

from dataclasses import dataclass, field

from tide.shared.artifact import DEFAULT_MAX_ENTRIES
from tide.shared.kube.kubeconfig_secret import KubeconfigPolicy
from tide.shared.kustomize.build import DEFAULT_MEMORY_LIMIT


@dataclass(frozen=True)
class KustomizeOptions:
    requeue_dependency: float = 30.0
    """Seconds before a Kustomization waiting on its source or dependencies is looked at again."""
    no_cross_namespace_refs: bool = False
    no_remote_bases: bool = False
    concurrent_ssa: int = 4
    artifact_cache_revisions: int = 8
    sops_age_secret: str = ""
    """A Secret in runtime_namespace whose age keys decrypt for every Kustomization."""
    runtime_namespace: str = "flux-system"
    override_managers: tuple[str, ...] = ()
    build_memory_limit: int = DEFAULT_MEMORY_LIMIT
    """Bytes each kustomize build may use (0: no limit)."""
    feature_gates: dict[str, bool] = field(default_factory=dict)
    artifact_max_entries: int = DEFAULT_MAX_ENTRIES
    http_retry: int = 9
    """Retries of an artifact download that fails with a connection error or a 5xx answer."""
    source_storage: tuple[str, ...] = ("source-controller.flux-system.svc.cluster.local.",)
    """The source controllers' storage addresses: artifacts are downloaded only from there."""
    default_service_account: str = ""
    """Impersonated when a Kustomization sets no serviceAccountName (--default-service-account)."""
    kubeconfig_policy: KubeconfigPolicy = field(default_factory=KubeconfigPolicy)
    """What a spec.kubeConfig Secret may ask (--insecure-kubeconfig-exec, --insecure-kubeconfig-tls)."""
    drift_correction: bool = True
    """Reconcile a Kustomization as soon as an object it applied drifts (--realtime-drift-correction)."""
