"""The labels that mark an object as applied by a Kustomization (Flux's owner labels)."""

from __future__ import annotations

from typing import Any

NAME_LABEL = "kustomize.toolkit.fluxcd.io/name"
NAMESPACE_LABEL = "kustomize.toolkit.fluxcd.io/namespace"


def set_owner_labels(obj: dict[str, Any], name: str, namespace: str) -> None:
    meta = obj.setdefault("metadata", {})
    meta["labels"] = {**(meta.get("labels") or {}), NAME_LABEL: name, NAMESPACE_LABEL: namespace}
