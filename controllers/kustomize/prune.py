"""Garbage collection: delete what left the build (spec.prune) and, on deletion, the whole inventory."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from tide.controllers.kustomize.apply import Applier, Change, ChangeSet, owned_by, prune_disabled
from tide.shared.inventory import Entry, Inventory
from tide.shared.kube.errors import KubeApiError

DELETION_POLICIES = ("MirrorPrune", "Delete", "WaitForTermination", "Orphan")


def should_delete_on_finalize(policy: str | None, prune: bool, suspended: bool) -> bool:
    """Flux: delete the inventory when not suspended and MirrorPrune with prune, Delete or
    WaitForTermination; Orphan keeps everything."""
    if suspended:
        return False
    policy = policy or "MirrorPrune"
    if policy == "MirrorPrune":
        return prune
    return policy in ("Delete", "WaitForTermination")


async def delete_entries(
    applier: Applier, entries: list[Entry], owner_name: str, owner_namespace: str
) -> tuple[ChangeSet, list[Entry], list[str]]:
    """Delete each entry that is still ours; returns (deleted change set, entries kept, errors)."""
    changes = ChangeSet()
    kept: list[Entry] = []
    errors: list[str] = []
    for entry in entries:
        ref = entry.ref
        probe = {
            "apiVersion": entry.api_version,
            "kind": ref.kind,
            "metadata": {"name": ref.name, **({"namespace": ref.namespace} if ref.namespace else {})},
        }
        try:
            live = await applier.live(probe, owned_only=True)
        except KubeApiError as err:
            if err.status == 404:  # the kind itself is gone (CRD deleted)
                continue
            kept.append(entry)
            errors.append(f"{ref.display()} prune failed: {err}")
            continue
        if live is None:
            continue
        if not owned_by(live, owner_name, owner_namespace) or prune_disabled(live):
            continue
        applier.forget(entry.api_version, ref)
        try:
            await applier.kube.delete(entry.api_version, ref.kind, ref.name, ref.namespace or None)
            changes.add(Change(ref, "deleted", entry.api_version))
        except KubeApiError as err:
            if err.status != 404:
                kept.append(entry)
                errors.append(f"{ref.display()} delete failed: {err}")
    return changes, kept, errors


async def wait_terminated(applier: Applier, entries: list[Entry], limit: float) -> list[str]:
    """WaitForTermination: names of objects still present after timeout."""
    deadline = time.monotonic() + limit
    remaining = list(entries)
    while remaining and time.monotonic() < deadline:
        still = []
        for entry in remaining:
            got: Any = await applier.kube.get(
                entry.api_version, entry.ref.kind, entry.ref.name, entry.ref.namespace or None
            )
            if got is not None:
                still.append(entry)
        remaining = still
        if remaining:
            await asyncio.sleep(1.0)
    return [e.ref.display() for e in remaining]


def stale_entries(old: Inventory, new: Inventory) -> list[Entry]:
    return old.stale(new)
