"""Where a HelmRelease's Helm release lives: its name, target and storage namespaces (Flux's rules)."""

from __future__ import annotations

from dataclasses import dataclass

from tide.shared.api.helm import HelmRelease, shorten_release_name


@dataclass(frozen=True)
class ReleaseTarget:
    """The Helm release a HelmRelease manages: changing any field means a new release."""

    name: str
    """The Helm release name: spec.releaseName, else `[<targetNamespace>-]<name>`, at most 53 chars."""
    namespace: str
    """Where the chart's objects go: spec.targetNamespace, else the HelmRelease's namespace."""
    storage_namespace: str
    """Where Helm's release Secrets are kept: spec.storageNamespace, else the HelmRelease's namespace."""


def release_target(hr: HelmRelease) -> ReleaseTarget:
    spec, own_namespace, own_name = hr.spec, hr.metadata.namespace or "default", hr.metadata.name or ""
    name = spec.release_name or (
        f"{spec.target_namespace}-{own_name}" if spec.target_namespace else own_name
    )
    return ReleaseTarget(
        name=shorten_release_name(name),
        namespace=spec.target_namespace or own_namespace,
        storage_namespace=spec.storage_namespace or own_namespace,
    )
