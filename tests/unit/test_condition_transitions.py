"""Conditions: lastTransitionTime moves only on a status transition; Flux's Ready/Reconciling/Stalled."""

from tide.shared.runtime import conditions as cond
from tide.shared.runtime.context import keep_transition_times

T0 = "2026-01-01T00:00:00Z"
T1 = "2026-01-01T00:05:00Z"


def test_same_status_keeps_transition_time_even_when_reason_changes() -> None:
    first = cond.set_condition([], "Ready", "True", "Succeeded", "ok", 1, now=T0)
    second = cond.set_condition(first, "Ready", "True", "Other", "still ok", 2, now=T1)
    ready = cond.find(second, "Ready")
    assert ready is not None
    assert ready["lastTransitionTime"] == T0
    assert ready["reason"] == "Other" and ready["message"] == "still ok" and ready["observedGeneration"] == 2


def test_status_change_moves_transition_time() -> None:
    first = cond.set_condition([], "Ready", "True", "Succeeded", "ok", 1, now=T0)
    second = cond.set_condition(first, "Ready", "False", "Failed", "broken", 1, now=T1)
    assert cond.find(second, "Ready")["lastTransitionTime"] == T1  # type: ignore[index]


def test_transition_is_relative_to_the_stored_object() -> None:
    stored = cond.set_condition([], "Ready", "True", "Succeeded", "ok", 1, now=T0)
    # within one reconcile: Unknown while working, then True again
    working = cond.mark_reconciling(stored, "working", 1, stored=stored, now=T1)
    assert cond.find(working, "Ready")["status"] == "Unknown"  # type: ignore[index]
    done = cond.finish_success(working, 1, stored=stored, now=T1)
    # reconciler did not set Ready: the runtime's default replaces Unknown, compared with stored True
    ready = cond.find(done, "Ready")
    assert ready is not None and ready["status"] == "True" and ready["lastTransitionTime"] == T0
    assert cond.find(done, "Reconciling") is None


def test_keep_transition_times_at_patch_time() -> None:
    stored = [{"type": "Ready", "status": "True", "reason": "A", "message": "", "lastTransitionTime": T0}]
    new = [
        {"type": "Ready", "status": "True", "reason": "B", "message": "x", "lastTransitionTime": T1},
        {"type": "Healthy", "status": "False", "reason": "C", "message": "", "lastTransitionTime": ""},
    ]
    out = keep_transition_times(new, stored, T1)
    assert out[0]["lastTransitionTime"] == T0
    assert out[1]["lastTransitionTime"] == T1


def test_failure_marks_ready_false_and_reconciling_with_retry() -> None:
    working = cond.mark_reconciling([], "working", 3, now=T0)
    failed = cond.finish_failure(working, "BuildFailed", "kustomize build failed", 3, now=T1)
    ready, reconciling = cond.find(failed, "Ready"), cond.find(failed, "Reconciling")
    assert ready is not None and ready["status"] == "False" and ready["reason"] == "BuildFailed"
    assert reconciling is not None and reconciling["reason"] == "ProgressingWithRetry"
    assert reconciling["lastTransitionTime"] == T0


def test_stalled_drops_reconciling_and_sets_ready_false() -> None:
    working = cond.mark_reconciling([], "working", 1, now=T0)
    stalled = cond.mark_stalled(working, "InvalidObject", "bad interval", 1, now=T1)
    assert [c["type"] for c in stalled] == ["Ready", "Stalled"]
    assert all(c["reason"] == "InvalidObject" for c in stalled)


def test_success_keeps_the_reconcilers_ready_and_clears_stalled() -> None:
    conditions = cond.mark_stalled([], "X", "y", 1, now=T0)
    conditions = cond.set_condition(
        conditions, "Ready", "True", "ReconciliationSucceeded", "Applied", 2, now=T1
    )
    done = cond.finish_success(conditions, 2, now=T1)
    assert [c["type"] for c in done] == ["Ready"]
    assert done[0]["reason"] == "ReconciliationSucceeded"


def test_conditions_are_ordered_ready_first() -> None:
    conditions = cond.set_condition([], "ArtifactInStorage", "True", "Succeeded", "", 1, now=T0)
    conditions = cond.set_condition(conditions, "Reconciling", "True", "Progressing", "", 1, now=T0)
    conditions = cond.set_condition(conditions, "Ready", "Unknown", "Progressing", "", 1, now=T0)
    assert [c["type"] for c in conditions] == ["Ready", "Reconciling", "ArtifactInStorage"]


def test_invalid_status_is_rejected() -> None:
    try:
        cond.set_condition([], "Ready", "Yes", "R", "m")
    except ValueError:
        return
    raise AssertionError("expected ValueError")
