"""`tide tree kustomization|helmrelease NAME`: the objects a Kustomization applied (its inventory) as a
tree, recursing into the Kustomizations and HelmReleases it manages. A HelmRelease's objects are its
inventory when the controller wrote one, else, as `flux tree` does, the manifest of its latest release
read from Helm's storage."""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass, field
from typing import Any

import yaml

from tide.cli.errors import EXIT_OK, EXIT_USAGE, CliError
from tide.cli.kinds import BY_KIND, HELM_RELEASE, KUSTOMIZATION
from tide.cli.session import Session
from tide.shared.helm_storage import decode_release_json, release_secret_name

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
    inventory = ((obj.get("status") or {}).get("inventory") or {}).get("entries")
    if inventory is not None or kind != HELM_RELEASE.kind:
        refs = [parse_entry(entry["id"]) for entry in inventory or []]
    else:
        refs = await _release_objects(session, obj)
    for ns, child_name, group, child_kind in refs:
        if child_kind in ("Kustomization", "HelmRelease") and group in FLUX_GROUPS:
            node.children.append(await build_tree(session, child_kind, child_name, ns, compact, seen))
        elif not compact or group in FLUX_GROUPS:
            node.children.append(Node(child_kind, child_name, ns, group))
    return node


# Kinds a chart commonly renders that have no namespace (`flux tree` asks the RESTMapper).
CLUSTER_SCOPED = frozenset(
    {
        "Namespace", "CustomResourceDefinition", "ClusterRole", "ClusterRoleBinding", "PersistentVolume",
        "StorageClass", "PriorityClass", "IngressClass", "RuntimeClass", "APIService",
        "ValidatingWebhookConfiguration", "MutatingWebhookConfiguration", "ValidatingAdmissionPolicy",
        "ValidatingAdmissionPolicyBinding",
    }
)  # fmt: skip


def manifest_refs(manifest: str, release_namespace: str) -> list[tuple[str, str, str, str]]:
    """(namespace, name, group, kind) of each object in a release manifest, as Helm applied it."""
    refs = []
    for doc in yaml.safe_load_all(manifest):
        if not isinstance(doc, dict) or not doc.get("kind"):
            continue
        meta = doc.get("metadata") or {}
        group = str(doc.get("apiVersion") or "").rpartition("/")[0]
        kind = str(doc["kind"])
        ns = "" if kind in CLUSTER_SCOPED else str(meta.get("namespace") or release_namespace)
        refs.append((ns, str(meta.get("name") or ""), group, kind))
    return refs


async def _release_objects(session: Session, release: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    """The objects of the latest release in `status.history`, read from its storage Secret."""
    status = release.get("status") or {}
    history = status.get("history") or []
    if not history:
        return []
    latest = history[0]
    storage_ns = status.get("storageNamespace") or release["metadata"]["namespace"]
    kube = await session.kube()
    secret_name = release_secret_name(latest["name"], latest["version"])
    secret = await kube.get("v1", "Secret", secret_name, storage_ns)
    encoded = ((secret or {}).get("data") or {}).get("release")
    if not encoded:
        return []
    try:
        record = decode_release_json(base64.b64decode(encoded))
    except (binascii.Error, OSError, EOFError, ValueError):
        return []  # not a release Helm wrote: nothing to show rather than a crash
    if not isinstance(record, dict):
        return []
    return manifest_refs(str(record.get("manifest") or ""), str(record.get("namespace") or ""))


async def run(session: Session) -> int:
    args = session.args
    kube = await session.kube()
    kind = HELM_RELEASE if args.tree_what in ("helmrelease", "hr") else KUSTOMIZATION
    if await kube.get(kind.api_version, kind.kind, args.name, session.namespace) is None:
        raise CliError(
            f"{kind.kind} {args.name} not found in {session.namespace} namespace",
            f"list them with `tide get {kind.words[-1]} -A`",
            EXIT_USAGE,
        )
    tree = await build_tree(session, kind.kind, args.name, session.namespace, args.compact)
    if args.output == "json":
        session.write(json.dumps(tree.to_dict(), indent=2))
    elif args.output == "yaml":
        session.write(yaml.safe_dump(tree.to_dict(), sort_keys=False))
    else:
        session.write(render(tree))
    return EXIT_OK
