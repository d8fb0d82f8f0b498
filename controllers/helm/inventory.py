"""status.inventory as helm-controller writes it: the objects of the release Helm just stored (its
manifest, hooks left out, a namespaced object without a namespace put in the release's namespace)
followed by the objects of the chart's crds/ files, as `<namespace>_<name>_<group>_<kind>` entries
with their version. Flux builds it whenever an install, upgrade or rollback writes a release to
storage and clears it when its Uninstall action succeeds (deletion, a moved release; the uninstall
remediation leaves it to the install that follows); an in-sync release leaves it as it is.

The building is pure (`release_inventory`, table-tested); the scopes of the kinds come from
discovery, which the action runner asks for `unscoped_kinds`."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import yaml

from tide.controllers.helm.drift import manifest_objects, yaml_copy
from tide.shared.inventory import Inventory

HOOK_ANNOTATION = "helm.sh/hook"
BUILD_FAILED_REASON = "InventoryBuildFailed"
NAMESPACE_CHECK_SKIPPED_REASON = "NamespaceCheckSkipped"

Kind = tuple[str, str]
"""(apiVersion, kind)."""


class InventoryBuildFailed(Exception):
    """The release manifest or a CRD file could not be read into objects."""


@dataclass(frozen=True)
class Built:
    inventory: Inventory
    warnings: list[str]
    """Kinds whose scope is unknown (their objects keep no namespace), Flux's NamespaceCheckSkipped."""


def release_manifest_objects(manifest: str) -> list[dict[str, Any]]:
    """The manifest's objects without hooks (Helm keeps hooks apart; a hook in the manifest still
    is not part of the release's inventory)."""
    try:
        objects = manifest_objects(manifest)
    except yaml.YAMLError as err:
        raise InventoryBuildFailed(f"failed to parse manifest: {err}") from err
    return [o for o in objects if HOOK_ANNOTATION not in (o["metadata"].get("annotations") or {})]


def unscoped_kinds(objects: Sequence[Mapping[str, Any]]) -> list[Kind]:
    """The kinds of the objects that name no namespace: the ones whose scope must be looked up."""
    kinds = {(str(o["apiVersion"]), str(o["kind"])) for o in objects if not o["metadata"].get("namespace")}
    return sorted(kinds)


def release_inventory(
    objects: Sequence[Mapping[str, Any]],
    release_namespace: str,
    namespaced: Mapping[Kind, bool | str],
    crd_files: Sequence[Mapping[str, str]],
) -> Built:
    """The inventory of a release's objects (from `release_manifest_objects`) and its chart's CRD
    files. `namespaced` says per kind whether it is namespaced, or why that is unknown."""
    placed: list[dict[str, Any]] = []
    warnings: list[str] = []
    for obj in objects:
        copy = yaml_copy(obj)
        meta = copy["metadata"]
        if not meta.get("namespace"):
            kind = (str(copy["apiVersion"]), str(copy["kind"]))
            scope = namespaced.get(kind, f"no matches for kind {kind[1]} in version {kind[0]}")
            if scope is True:
                meta["namespace"] = release_namespace
            elif scope is not False:
                warning = f"failed to determine if {kind[1]} is namespace scoped, skipping namespace: {scope}"
                warnings += [] if warning in warnings else [warning]
        placed.append(copy)
    for file in crd_files:
        try:
            placed += manifest_objects(str(file.get("data", "")))
        except yaml.YAMLError as err:
            raise InventoryBuildFailed(f"failed to parse CRD {file.get('name')}: {err}") from err
    return Built(Inventory.from_objects(placed), warnings)
