"""Reading Flux status: conditions, the row `tide get` prints, and whether a reconcile is done."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tide.shared.runtime.conditions import condition_of, conditions_of

Obj = dict[str, Any]


def ready(obj: Obj) -> tuple[str, str, str]:
    """(status, reason, message) of Ready; Unknown with 'waiting to be reconciled' when absent."""
    c = condition_of(obj, "Ready")
    if c is None:
        return "Unknown", "", "waiting to be reconciled"
    return str(c.get("status", "Unknown")), str(c.get("reason", "")), str(c.get("message", ""))


def suspended(obj: Obj) -> bool:
    return bool((obj.get("spec") or {}).get("suspend", False))


def revision(obj: Obj) -> str:
    status = obj.get("status") or {}
    kind = obj.get("kind", "")
    if kind == "Kustomization":
        return str(status.get("lastAppliedRevision") or "")
    if kind == "HelmRelease":
        history = status.get("history") or []
        if history:
            return str(history[0].get("chartVersion") or "")
        return str(status.get("lastAttemptedRevision") or "")
    artifact = status.get("artifact") or {}
    return str(artifact.get("revision") or "")


STATIC_KINDS = ("Alert", "Provider")  # notification v1beta3: configuration only, no status to report


def row(obj: Obj, name_prefix: str = "", with_namespace: bool = False) -> list[str]:
    meta = obj.get("metadata") or {}
    status, _, message = ready(obj)
    if obj.get("kind") in STATIC_KINDS and condition_of(obj, "Ready") is None:
        status, message = "-", ""
    cells = [f"{name_prefix}{meta.get('name', '')}", revision(obj), str(suspended(obj)), status, message]
    if with_namespace:
        cells.insert(0, str(meta.get("namespace", "")))
    return cells


HEADERS = ["NAME", "REVISION", "SUSPENDED", "READY", "MESSAGE"]


def headers(with_namespace: bool = False) -> list[str]:
    return (["NAMESPACE"] if with_namespace else []) + HEADERS


def matches_status_selector(obj: Obj, selector: str) -> bool:
    """Flux's --status-selector: `type=status` pairs joined by commas, e.g. `ready=false`."""
    if not selector:
        return True
    for part in selector.split(","):
        part = part.strip()
        if not part:
            continue
        if "=" not in part:
            raise ValueError(
                f"invalid status selector {part!r}: expected <condition>=<status>, e.g. ready=false"
            )
        type_, want = (s.strip().lower() for s in part.split("=", 1))
        c = next((c for c in conditions_of(obj) if str(c.get("type", "")).lower() == type_), None)
        have = str(c.get("status", "")).lower() if c else ("unknown" if type_ == "ready" else "")
        if have != want:
            return False
    return True


@dataclass
class Progress:
    """Where a requested reconcile stands: done (Ready True), failed, or still going with a message."""

    done: bool
    failed: bool
    message: str
    unhandled: bool = False
    """No controller has handled the request (or the generation) yet."""


def reconcile_progress(obj: Obj, requested_at: str | None) -> Progress:
    """Flux's wait: lastHandledReconcileAt caught up with our request, kstatus Current, then Ready=True.

    Stalled, or Ready=False once the request was handled and nothing is still reconciling, is a failure.
    """
    meta = obj.get("metadata") or {}
    status = obj.get("status") or {}
    if meta.get("deletionTimestamp"):
        return Progress(False, True, "object is being deleted")
    if requested_at is not None and status.get("lastHandledReconcileAt") != requested_at:
        return Progress(False, False, "waiting for the controller to pick up the request", unhandled=True)
    observed = status.get("observedGeneration")
    if observed is None or observed != meta.get("generation"):
        return Progress(
            False, False, "waiting for the controller to observe the latest generation", unhandled=True
        )
    stalled = condition_of(obj, "Stalled")
    if stalled and stalled.get("status") == "True":
        return Progress(False, True, str(stalled.get("message", "stalled")))
    reconciling = condition_of(obj, "Reconciling")
    ready_status, _, message = ready(obj)
    if reconciling and reconciling.get("status") == "True":
        if reconciling.get("reason") == "ProgressingWithRetry" and ready_status == "False":
            return Progress(False, True, message)
        return Progress(False, False, str(reconciling.get("message") or message))
    if ready_status == "True":
        return Progress(True, False, message)
    if ready_status == "False":
        return Progress(False, True, message)
    return Progress(False, False, message)
