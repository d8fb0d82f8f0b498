"""The Kustomization's inventory in Flux's entry format: `<namespace>_<name>_<group>_<kind>` and `v`."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, order=True)
class ObjectRef:
    """One Kubernetes object by identity; the version is carried but is not part of identity."""

    group: str
    kind: str
    namespace: str
    name: str

    @property
    def id(self) -> str:
        # `:` is legal in some names (ClusterRole system:foo) but is Flux's separator-safe `__`.
        return f"{self.namespace}_{self.name.replace(':', '__')}_{self.group}_{self.kind}"

    @classmethod
    def parse(cls, entry_id: str) -> ObjectRef:
        parts = entry_id.split("_")
        if len(parts) < 4:
            raise ValueError(f"invalid inventory entry id '{entry_id}'")
        namespace, kind, group = parts[0], parts[-1], parts[-2]
        name = "_".join(parts[1:-2]).replace("__", ":")
        return cls(group=group, kind=kind, namespace=namespace, name=name)

    @classmethod
    def of(cls, obj: Mapping[str, Any]) -> ObjectRef:
        group, _ = split_api_version(obj.get("apiVersion", ""))
        meta = obj.get("metadata") or {}
        return cls(
            group=group,
            kind=obj.get("kind", ""),
            namespace=meta.get("namespace") or "",
            name=meta.get("name", ""),
        )

    def display(self) -> str:
        """Flux's change set naming: `Kind/namespace/name` or `Kind/name` for cluster-scoped objects."""
        return f"{self.kind}/{self.namespace}/{self.name}" if self.namespace else f"{self.kind}/{self.name}"


def split_api_version(api_version: str) -> tuple[str, str]:
    if "/" in api_version:
        group, version = api_version.split("/", 1)
        return group, version
    return "", api_version


def api_version_of(group: str, version: str) -> str:
    return f"{group}/{version}" if group else version


@dataclass(frozen=True)
class Entry:
    ref: ObjectRef
    version: str

    @property
    def api_version(self) -> str:
        return api_version_of(self.ref.group, self.version)

    def to_status(self) -> dict[str, str]:
        return {"id": self.ref.id, "v": self.version}


class Inventory:
    """Ordered set of applied objects; order is the apply order so prune can reverse it."""

    def __init__(self, entries: Iterable[Entry] = ()) -> None:
        self._entries: dict[ObjectRef, Entry] = {}
        for entry in entries:
            self._entries[entry.ref] = entry

    @classmethod
    def from_objects(cls, objects: Iterable[Mapping[str, Any]]) -> Inventory:
        return cls(Entry(ObjectRef.of(o), split_api_version(o.get("apiVersion", ""))[1]) for o in objects)

    @classmethod
    def from_status(cls, inventory: Mapping[str, Any] | None) -> Inventory:
        if not inventory:
            return cls()
        return cls(Entry(ObjectRef.parse(e["id"]), e.get("v", "")) for e in inventory.get("entries") or [])

    def to_status(self) -> dict[str, list[dict[str, str]]]:
        return {"entries": [e.to_status() for e in self._entries.values()]}

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(self._entries.values())

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, ref: object) -> bool:
        return ref in self._entries

    def refs(self) -> list[ObjectRef]:
        return list(self._entries)

    def stale(self, newer: Inventory) -> list[Entry]:
        """Objects in this (older) inventory that the newer one no longer has, in reverse apply order."""
        return [e for e in reversed(list(self._entries.values())) if e.ref not in newer]
