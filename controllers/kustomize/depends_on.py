"""spec.dependsOn: wait until each dependency is Ready at its latest generation; report cycles."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from tide.shared.runtime.conditions import is_ready

Key = tuple[str, str]  # (namespace, name)


def dependency_keys(obj: Mapping[str, Any]) -> list[Key]:
    namespace = (obj.get("metadata") or {}).get("namespace") or ""
    return [
        (dep.get("namespace") or namespace, dep["name"])
        for dep in (obj.get("spec") or {}).get("dependsOn") or []
        if dep.get("name")
    ]


def source_key(obj: Mapping[str, Any]) -> tuple[str, str, str]:
    """(kind, namespace, name) of the source a Kustomization reads."""
    src = (obj.get("spec") or {}).get("sourceRef") or {}
    ns = src.get("namespace") or (obj.get("metadata") or {}).get("namespace") or ""
    return (src.get("kind", ""), ns, src.get("name", ""))


def source_keys(obj: Mapping[str, Any]) -> list[tuple[str, str, str]]:
    """The source index of the Kustomizations' cache: which read a source's artifact."""
    return [source_key(obj)]


def _same_source(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    return source_key(a) == source_key(b)


def dependency_not_ready(
    obj: Mapping[str, Any], dep_key: Key, dep: Mapping[str, Any] | None, revision: str | None
) -> str | None:
    """None when the dependency is ready, else why not (the DependencyNotReady message)."""
    name = f"'{dep_key[0]}/{dep_key[1]}'"
    if dep is None:
        return f"dependency {name} not found"
    meta = dep.get("metadata") or {}
    status = dep.get("status") or {}
    if meta.get("deletionTimestamp"):
        return f"dependency {name} is being deleted"
    if meta.get("generation") != status.get("observedGeneration"):
        return f"dependency {name} is not ready: reconciliation of its latest generation is in progress"
    if not is_ready(dep):
        return f"dependency {name} is not ready"
    if revision and _same_source(obj, dep) and status.get("lastAppliedRevision") != revision:
        return f"dependency {name} is not ready: revision {revision} is not applied yet"
    return None


def depends_on_edges(lookup: Callable[[Key], Mapping[str, Any] | None]) -> Callable[[Key], list[Key]]:
    """The dependsOn edges of each Kustomization `lookup` finds (none for one it does not)."""

    def edges(key: Key) -> list[Key]:
        obj = lookup(key)
        return dependency_keys(obj) if obj is not None else []

    return edges


def find_cycle(start: Key, edges: Callable[[Key], Iterable[Key]]) -> list[Key] | None:
    """The dependency cycle through start, as a path start -> ... -> start, or None. Only what is
    reachable from start is visited (a lookup each), not every Kustomization."""
    path: list[Key] = [start]
    on_path = {start}
    visited: set[Key] = set()

    def visit(node: Key) -> list[Key] | None:
        for nxt in edges(node):
            if nxt == start:
                return [*path, start]
            if nxt in on_path or nxt in visited:
                continue
            path.append(nxt)
            on_path.add(nxt)
            found = visit(nxt)
            if found:
                return found
            path.pop()
            on_path.discard(nxt)
            visited.add(nxt)
        return None

    return visit(start)


def format_cycle(cycle: list[Key]) -> str:
    return " -> ".join(f"{ns}/{name}" for ns, name in cycle)
