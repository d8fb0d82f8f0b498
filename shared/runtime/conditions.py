"""kstatus conditions on Flux objects, as plain dicts (metav1.Condition on the wire).

lastTransitionTime moves only when a condition's status changes, compared with what is stored on
the object; Reconciling and Stalled are abnormal-true (present only while True).
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

READY = "Ready"
RECONCILING = "Reconciling"
STALLED = "Stalled"
HEALTHY = "Healthy"

# Flux's reasons (fluxcd/pkg/apis/meta and the controllers' APIs), and the runtime's own.
PROGRESSING_REASON = "Progressing"
PROGRESSING_WITH_RETRY_REASON = "ProgressingWithRetry"
SUCCEEDED_REASON = "Succeeded"
FAILED_REASON = "Failed"
INVALID_OBJECT_REASON = "InvalidObject"
RECONCILIATION_SUCCEEDED_REASON = "ReconciliationSucceeded"
RECONCILIATION_FAILED_REASON = "ReconciliationFailed"
DEPENDENCY_NOT_READY_REASON = "DependencyNotReady"
ACCESS_DENIED_REASON = "AccessDenied"
ARTIFACT_FAILED_REASON = "ArtifactFailed"
BUILD_FAILED_REASON = "BuildFailed"
PRUNE_FAILED_REASON = "PruneFailed"
HEALTH_CHECK_FAILED_REASON = "HealthCheckFailed"
HEALTH_CHECK_CANCELED_REASON = "HealthCheckCanceled"
INVALID_CEL_EXPRESSION_REASON = "InvalidCELExpression"
VALIDATION_FAILED_REASON = "ValidationFailed"
TOKEN_NOT_FOUND_REASON = "TokenNotFound"
FINALIZE_FAILED_REASON = "FinalizeFailed"

MESSAGE_LIMIT = 32768
_ORDER = {READY: 0, STALLED: 1, RECONCILING: 2}

Condition = dict[str, Any]


_clock_cache: tuple[int, str] = (0, "")


def now_rfc3339() -> str:
    """Now at second precision (metav1.Time), formatted once per second."""
    global _clock_cache
    second = int(time.time())
    if _clock_cache[0] != second:
        _clock_cache = (second, datetime.fromtimestamp(second, UTC).strftime("%Y-%m-%dT%H:%M:%SZ"))
    return _clock_cache[1]


def valid_reason(reason: str) -> str:
    """metav1.Condition's reason pattern (CamelCase, no spaces): the API server rejects others."""
    cleaned = re.sub(r"[^A-Za-z0-9_,:]", "", reason).rstrip(",:")
    cleaned = cleaned.lstrip("0123456789_,:")
    return cleaned[:1024]


def find(conditions: list[Condition], type_: str) -> Condition | None:
    return next((c for c in conditions if c.get("type") == type_), None)


def is_true(conditions: list[Condition], type_: str) -> bool:
    found = find(conditions, type_)
    return found is not None and found.get("status") == "True"


# --- on a raw object (a dict from the API server or a watch cache) ------------------------------


def conditions_of(obj: Mapping[str, Any] | None) -> list[Condition]:
    status = (obj or {}).get("status")
    found = status.get("conditions") if isinstance(status, Mapping) else None
    return [c for c in found or [] if isinstance(c, dict)]


def condition_of(obj: Mapping[str, Any] | None, type_: str) -> Condition | None:
    return find(conditions_of(obj), type_)


def is_condition_true(obj: Mapping[str, Any] | None, type_: str) -> bool:
    return is_true(conditions_of(obj), type_)


def is_ready(obj: Mapping[str, Any] | None) -> bool:
    """Ready=True on the object."""
    return is_condition_true(obj, READY)


def _sorted(conditions: list[Condition]) -> list[Condition]:
    return sorted(conditions, key=lambda c: (_ORDER.get(str(c.get("type")), 3), str(c.get("type"))))


def set_condition(
    conditions: list[Condition],
    type_: str,
    status: str,
    reason: str,
    message: str,
    observed_generation: int | None = None,
    stored: list[Condition] | None = None,
    now: str | None = None,
) -> list[Condition]:
    """A new list with type_ set; lastTransitionTime kept from `stored` (else the current list)
    when the status did not change."""
    if status not in ("True", "False", "Unknown"):
        raise ValueError(f"condition status must be True, False or Unknown, not {status!r}")
    previous = find(stored if stored is not None else conditions, type_)
    if previous is not None and previous.get("status") == status and previous.get("lastTransitionTime"):
        transition = str(previous["lastTransitionTime"])
    else:
        transition = now or now_rfc3339()
    condition: Condition = {"type": type_, "status": status}
    if observed_generation is not None:
        condition["observedGeneration"] = observed_generation
    condition["lastTransitionTime"] = transition
    condition["reason"] = valid_reason(reason) or status
    condition["message"] = message[:MESSAGE_LIMIT]
    return _sorted([c for c in conditions if c.get("type") != type_] + [condition])


def remove_condition(conditions: list[Condition], type_: str) -> list[Condition]:
    return [c for c in conditions if c.get("type") != type_]


def mark_reconciling(
    conditions: list[Condition],
    message: str,
    generation: int | None,
    stored: list[Condition] | None = None,
    now: str | None = None,
) -> list[Condition]:
    """Reconciling=True and Ready=Unknown, both Progressing with the step as message."""
    conditions = set_condition(
        conditions, RECONCILING, "True", PROGRESSING_REASON, message, generation, stored, now
    )
    return set_condition(conditions, READY, "Unknown", PROGRESSING_REASON, message, generation, stored, now)


def mark_stalled(
    conditions: list[Condition],
    reason: str,
    message: str,
    generation: int | None,
    stored: list[Condition] | None = None,
    now: str | None = None,
) -> list[Condition]:
    """Stalled=True and Ready=False with the same reason; Reconciling dropped (no retry)."""
    conditions = remove_condition(conditions, RECONCILING)
    conditions = set_condition(conditions, STALLED, "True", reason, message, generation, stored, now)
    return set_condition(conditions, READY, "False", reason, message, generation, stored, now)


def finish_success(
    conditions: list[Condition],
    generation: int | None,
    stored: list[Condition] | None = None,
    now: str | None = None,
) -> list[Condition]:
    """After a successful reconcile: Reconciling and Stalled dropped; Ready=True unless the
    reconciler set its own Ready."""
    conditions = remove_condition(remove_condition(conditions, RECONCILING), STALLED)
    ready = find(conditions, READY)
    if ready is None or ready.get("status") == "Unknown":
        conditions = set_condition(
            conditions, READY, "True", SUCCEEDED_REASON, "Reconciliation succeeded", generation, stored, now
        )
    return conditions


def finish_failure(
    conditions: list[Condition],
    reason: str,
    message: str,
    generation: int | None,
    stored: list[Condition] | None = None,
    now: str | None = None,
) -> list[Condition]:
    """After a failed reconcile that will be retried: Ready=False, Reconciling=True
    ProgressingWithRetry, Stalled dropped."""
    conditions = remove_condition(conditions, STALLED)
    conditions = set_condition(conditions, READY, "False", reason, message, generation, stored, now)
    return set_condition(
        conditions, RECONCILING, "True", PROGRESSING_WITH_RETRY_REASON, message, generation, stored, now
    )
