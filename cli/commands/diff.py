"""`tide diff kustomization NAME --path DIR`: server-side dry-run of a local build against the cluster.

Exit 0 when nothing would change, 1 when something would, 2 or more on errors (Flux's contract).
Secret values are never printed: they are masked, and a changed value shows as a changed mask.
"""

from __future__ import annotations

import copy
import difflib
import hashlib
from typing import Any

import yaml

from tide.cli.errors import EXIT_FAILED, EXIT_OK
from tide.cli.localbuild import build_local, load_kustomization
from tide.cli.session import Session

Obj = dict[str, Any]
MANAGER = "kustomize-controller"  # the controller's field manager: the diff shows what it would change

_SERVER_FIELDS = ("managedFields", "resourceVersion", "uid", "generation", "creationTimestamp", "selfLink")


def mask_secret(obj: Obj, other: Obj | None = None) -> Obj:
    """Replace Secret values with a mask; a value that differs from `other` gets a different mask."""
    if obj.get("kind") != "Secret" or obj.get("apiVersion") != "v1":
        return obj
    out = copy.deepcopy(obj)
    for field in ("data", "stringData"):
        values = out.get(field) or {}
        theirs = (other or {}).get(field) or {}
        for key, value in values.items():
            changed = other is not None and theirs.get(key) != value
            values[key] = (
                "*** (after)"
                if changed and other is not None and key in theirs
                else ("*** (new)" if other is not None and key not in theirs else "***")
            )
            if not changed:
                values[key] = "***"
    return out


def comparable(obj: Obj | None) -> Obj | None:
    if obj is None:
        return None
    out = copy.deepcopy(obj)
    out.pop("status", None)
    meta = out.get("metadata") or {}
    for f in _SERVER_FIELDS:
        meta.pop(f, None)
    annotations = meta.get("annotations") or {}
    annotations.pop("kubectl.kubernetes.io/last-applied-configuration", None)
    if not annotations:
        meta.pop("annotations", None)
    return out


def describe(obj: Obj) -> str:
    meta = obj.get("metadata") or {}
    ns = meta.get("namespace")
    return f"{obj.get('kind')}/{ns}/{meta.get('name')}" if ns else f"{obj.get('kind')}/{meta.get('name')}"


def unified(live: Obj, desired: Obj, label: str) -> str:
    if live.get("kind") == "Secret":
        secret_live, secret_desired = mask_secret(live), mask_secret(desired, live)
        for f in ("data", "stringData"):  # mark changed values on the live side too
            for key, value in (secret_desired.get(f) or {}).items():
                if value == "*** (after)":
                    secret_live[f][key] = "*** (before)"
        live, desired = secret_live, secret_desired
    a = yaml.safe_dump(live, sort_keys=True).splitlines()
    b = yaml.safe_dump(desired, sort_keys=True).splitlines()
    return "\n".join(difflib.unified_diff(a, b, f"{label} (cluster)", f"{label} (local)", lineterm=""))


def _digest(obj: Obj) -> str:
    return hashlib.sha256(yaml.safe_dump(obj, sort_keys=True).encode()).hexdigest()


async def run(session: Session) -> int:
    args = session.args
    kube = await session.kube()
    printer = session.printer
    ks = await load_kustomization(kube, args.name, session.namespace, args.kustomization_file)
    objects = await build_local(
        kube, ks, args.path, strict=args.strict_substitute, build_seconds=session.timeout
    )
    changed = False
    desired_ids = set()
    for obj in objects:
        info = await kube.resource(obj["apiVersion"], obj["kind"])
        meta = obj.setdefault("metadata", {})
        if info.namespaced:
            meta.setdefault("namespace", "default")
        else:
            meta.pop("namespace", None)
        label = describe(obj)
        desired_ids.add(
            (
                obj["apiVersion"].split("/")[0] if "/" in obj["apiVersion"] else "",
                obj["kind"],
                meta.get("namespace", ""),
                meta["name"],
            )
        )
        live = comparable(await kube.get(obj["apiVersion"], obj["kind"], meta["name"], meta.get("namespace")))
        dry = comparable(await kube.apply(obj, MANAGER, force=True, dry_run=True))
        if live is None:
            printer.action(f"{label} created")
            changed = True
        elif dry is not None and _digest(dry) != _digest(live):
            printer.action(f"{label} drifted")
            session.write(unified(live, dry, label))
            changed = True
    # objects in the inventory the build no longer has: pruned when prune is on
    if (ks.get("spec") or {}).get("prune"):
        from tide.shared.inventory import Inventory

        for entry in Inventory.from_status((ks.get("status") or {}).get("inventory")):
            ref = entry.ref
            if (ref.group, ref.kind, ref.namespace, ref.name) not in desired_ids:
                printer.action(f"{ref.display()} deleted")
                changed = True
    if not changed:
        printer.success("no changes")
        return EXIT_OK
    return EXIT_FAILED
