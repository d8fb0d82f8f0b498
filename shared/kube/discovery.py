"""Which resource serves an apiVersion/kind: the API server's discovery documents, cached per
group/version and refreshed once on a miss (a CRD installed after start)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class ResourceInfo:
    api_version: str
    kind: str
    plural: str
    namespaced: bool
    verbs: tuple[str, ...] = ()
    short_names: tuple[str, ...] = ()
    subresources: tuple[str, ...] = field(default=())

    @property
    def group(self) -> str:
        return self.api_version.rpartition("/")[0]

    @property
    def version(self) -> str:
        return self.api_version.rpartition("/")[2]

    @property
    def has_status(self) -> bool:
        return "status" in self.subresources

    def base_path(self) -> str:
        return f"/api/{self.api_version}" if "/" not in self.api_version else f"/apis/{self.api_version}"

    def path(
        self, namespace: str | None = None, name: str | None = None, subresource: str | None = None
    ) -> str:
        parts = [self.base_path()]
        if self.namespaced and namespace:
            parts.append(f"namespaces/{namespace}")
        parts.append(self.plural)
        if name:
            parts.append(name)
            if subresource:
                parts.append(subresource)
        return "/".join(parts)


def group_version_path(api_version: str) -> str:
    return f"/api/{api_version}" if "/" not in api_version else f"/apis/{api_version}"


def parse_resource_list(api_version: str, document: dict[str, Any]) -> dict[str, ResourceInfo]:
    """Resources of one APIResourceList by kind (subresources folded into their parent)."""
    subresources: dict[str, list[str]] = {}
    for resource in document.get("resources", []):
        parent, sep, sub = str(resource.get("name", "")).partition("/")
        if sep:
            subresources.setdefault(parent, []).append(sub)
    by_kind: dict[str, ResourceInfo] = {}
    for resource in document.get("resources", []):
        name = str(resource.get("name", ""))
        if "/" in name:
            continue
        kind = str(resource.get("kind", ""))
        by_kind.setdefault(
            kind,
            ResourceInfo(
                api_version=api_version,
                kind=kind,
                plural=name,
                namespaced=bool(resource.get("namespaced")),
                verbs=tuple(resource.get("verbs") or ()),
                short_names=tuple(resource.get("shortNames") or ()),
                subresources=tuple(subresources.get(name, ())),
            ),
        )
    return by_kind


def preferred_group_versions(core: dict[str, Any], groups: dict[str, Any]) -> list[str]:
    """Each API group's preferred version from the `/api` and `/apis` documents, in the server's
    order with the core group first: the order kubectl resolves a kind named without a group."""
    found = [str(v) for v in (core.get("versions") or [])[:1]]
    for group in groups.get("groups") or []:
        preferred = (group.get("preferredVersion") or {}).get("groupVersion")
        if not preferred and group.get("versions"):
            preferred = group["versions"][0].get("groupVersion")
        if preferred:
            found.append(str(preferred))
    return found
