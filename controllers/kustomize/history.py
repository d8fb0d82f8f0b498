"""status.history: the last distinct build outputs and how their reconciliations ended, newest first
(Flux keeps five). A reconcile of the same output with the same outcome updates its entry."""

from __future__ import annotations

from typing import Any

MAX_HISTORY = 5


def upsert_history(
    history: list[dict[str, Any]] | None,
    digest: str,
    now: str,
    duration: str,
    status: str,
    metadata: dict[str, str],
) -> list[dict[str, Any]]:
    entries = [dict(e) for e in history or []]
    for i, entry in enumerate(entries):
        if entry.get("digest") == digest and entry.get("lastReconciledStatus") == status:
            entry.update(
                lastReconciled=now,
                lastReconciledDuration=duration,
                totalReconciliations=int(entry.get("totalReconciliations") or 0) + 1,
                metadata=metadata,
            )
            return [entry, *entries[:i], *entries[i + 1 :]]
    entry = {
        "digest": digest,
        "firstReconciled": now,
        "lastReconciled": now,
        "lastReconciledDuration": duration,
        "lastReconciledStatus": status,
        "totalReconciliations": 1,
        "metadata": metadata,
    }
    return [entry, *entries][:MAX_HISTORY]
