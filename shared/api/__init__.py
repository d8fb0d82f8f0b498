"""The Flux-compatible API: one pydantic model per kind, the source of truth for the CRDs.

    repo = GitRepository.from_dict(obj)         # any dict from the API server or a YAML file
    repo.spec.secret_ref.name                   # snake_case attributes, camelCase on the wire
    repo.interval_seconds(), repo.is_suspended()
    repo.status.artifact = Artifact(...)        # status is always there, mutated in place
    repo.to_dict()                              # by alias, without unset (None) fields

Class facts for the runtime: `group`, `version` (storage), `served_versions`, `kind`, `plural`,
`has_interval()`, `has_retry_interval()`, `has_suspend()`, `status_model()` (None for the static
Alert and Provider), `api_versions()`. Unset optional fields are None; Flux's defaults live in the
CRDs (the API server fills them in) and in getters such as `spec.timeout_seconds()`.
CRDs: `python -m tide.shared.api.crdgen` (or `make crds`) writes charts/tide/crds/.
"""

from typing import Any

from .artifact_generator import ArtifactGenerator
from .helm import HelmRelease
from .kustomize import Kustomization
from .meta import (
    Artifact,
    Condition,
    KubeObject,
    LocalObjectReference,
    NamespacedObjectReference,
    ObjectMeta,
    ObjectStatus,
    format_duration,
    parse_duration,
)
from .notification import Alert, Provider, Receiver
from .source import Bucket, ExternalArtifact, GitRepository, HelmChart, HelmRepository, OCIRepository

ALL_KINDS: tuple[type[KubeObject], ...] = (
    GitRepository,
    OCIRepository,
    HelmRepository,
    HelmChart,
    Bucket,
    ExternalArtifact,
    ArtifactGenerator,
    Kustomization,
    HelmRelease,
    Provider,
    Alert,
    Receiver,
)


def model_for(api_version: str, kind: str) -> type[KubeObject] | None:
    """The model serving this apiVersion and kind, None for kinds Tide does not know."""
    return next((m for m in ALL_KINDS if m.kind == kind and api_version in m.api_versions()), None)


def load(obj: dict[str, Any]) -> KubeObject:
    """Parse any Flux object dict into its model; ValueError for unknown kinds."""
    model = model_for(str(obj.get("apiVersion")), str(obj.get("kind")))
    if model is None:
        raise ValueError(f"unknown kind {obj.get('apiVersion')}/{obj.get('kind')}")
    loaded: KubeObject = model.model_validate(obj)
    return loaded


__all__ = [
    "ALL_KINDS",
    "Alert",
    "Artifact",
    "ArtifactGenerator",
    "Bucket",
    "Condition",
    "ExternalArtifact",
    "GitRepository",
    "HelmChart",
    "HelmRelease",
    "HelmRepository",
    "KubeObject",
    "Kustomization",
    "LocalObjectReference",
    "NamespacedObjectReference",
    "OCIRepository",
    "ObjectMeta",
    "ObjectStatus",
    "Provider",
    "Receiver",
    "format_duration",
    "load",
    "model_for",
    "parse_duration",
]
