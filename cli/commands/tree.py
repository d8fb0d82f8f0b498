"""`tide tree kustomization NAME`: the objects a Kustomization applied (its inventory) as a tree,
recursing into the Kustomizations (and HelmReleases with an inventory) it manages."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import yaml

from tide.cli.errors import EXIT_OK, EXIT_USAGE, CliError
from tide.cli.kinds import BY_KIND, KUSTOMIZATION
from tide.cli.session import Session

FLUX_GROUPS = {
    "source.toolkit.fluxcd.io",
    "kustomize.toolkit.fluxcd.io",
    "helm.toolkit.fluxcd.io",
    "notification.toolkit.fluxcd.io",
}


@dataclass
class Node:
    kind: str
    name: str
    namespace: str = ""
    group: str = ""
    children: list[Node] = field(default_factory=list)

    def label(self) -> str:
        return f"{self.kind}/{self.namespace}/{self.name}" if self.namespace else f"{self.kind}/{self.name}"

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"resource": {"kind": self.kind, "name": self.name}}
        if self.namespace:
            out["resource"]["namespace"] = self.namespace
        if self.group:
            out["resource"]["group"] = self.group
        if self.children:
            out["resources"] = [c.to_dict() for c in self.children]
        return out


def render(node: Node) -> str:
    lines = [node.label()]

    def walk(children: list[Node], prefix: str) -> None:
        for i, child in enumerate(children):
            last = i == len(children) - 1
            lines.append(f"{prefix}{'└── ' if last else '├── '}{child.label()}")
            walk(child.children, prefix + ("    " if last else "│   "))

    walk(node.children, "")
    return "\n".join(lines)


def parse_entry(entry_id: str) -> tuple[str, str, str, str]:
    """Inventory id `<namespace>_<name>_<group>_<kind>` (`:` in names stored as `__`)."""
    from tide.shared.inventory import ObjectRef

    ref = ObjectRef.parse(entry_id)
    return ref.namespace, ref.name, ref.group, ref.kind


async def build_tree(
    session: Session,
    kind: str,
    name: str,
    namespace: str,
    compact: bool,
    seen: set[tuple[str, str, str]] | None = None,
) -> Node:
    seen = seen if seen is not None else set()
    kube = await session.kube()
    fkind = BY_KIND[kind]
    node = Node(kind, name, namespace, fkind.group)
    key = (kind, namespace, name)
    if key in seen:  # a Kustomization that applies itself (flux-system) or a cycle
        return node
    seen.add(key)
    obj = await kube.get(fkind.api_version, kind, name, namespace)
    if obj is None:
        return node
    for entry in ((obj.get("status") or {}).get("inventory") or {}).get("entries") or []:
        ns, child_name, group, child_kind = parse_entry(entry["id"])
        if child_kind in ("Kustomization", "HelmRelease") and group in FLUX_GROUPS:
            node.children.append(await build_tree(session, child_kind, child_name, ns, compact, seen))
        elif not compact or group in FLUX_GROUPS:
            node.children.append(Node(child_kind, child_name, ns, group))
    return node


async def run(session: Session) -> int:
    args = session.args
    kube = await session.kube()
    if await kube.get(KUSTOMIZATION.api_version, KUSTOMIZATION.kind, args.name, session.namespace) is None:
        raise CliError(
            f"Kustomization {args.name} not found in {session.namespace} namespace",
            "list them with `tide get ks -A`",
            EXIT_USAGE,
        )
    tree = await build_tree(session, "Kustomization", args.name, session.namespace, args.compact)
    if args.output == "json":
        session.write(json.dumps(tree.to_dict(), indent=2))
    elif args.output == "yaml":
        session.write(yaml.safe_dump(tree.to_dict(), sort_keys=False))
    else:
        session.write(render(tree))
    return EXIT_OK
