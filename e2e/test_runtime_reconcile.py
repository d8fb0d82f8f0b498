"""Flux's reconcile semantics through the runtime, with the probe controller on the real control plane:
status transitions, finalizer, suspend, requestedAt, stalled and invalid objects, event dedup."""

from __future__ import annotations

import json

import pytest

from e2e.fixtures.runtime import (
    condition,
    create_probe,
    get_probe,
    is_ready,
    patch_probe,
    request_reconcile,
    status_of,
    wait_for,
    wait_probe,
    wait_reconciled_again,
)

pytestmark = pytest.mark.e2e


def test_status_transitions(start_probe, kubectl, namespace) -> None:
    start_probe()
    create_probe(kubectl, "app", namespace, interval="1s")
    obj = wait_probe(kubectl, "app", namespace, is_ready, what="Ready")
    status = status_of(obj)
    assert status["observedGeneration"] == 1
    assert condition(obj, "Reconciling") is None and condition(obj, "Stalled") is None
    ready = condition(obj, "Ready")
    assert ready is not None and ready["reason"] == "Succeeded" and ready["observedGeneration"] == 1
    first_transition = ready["lastTransitionTime"]
    shown = json.loads(
        kubectl("get", "probe", "app", "-n", namespace, "-o", "json", "--show-managed-fields").stdout
    )
    managers = {(m["manager"], m.get("subresource", "")) for m in shown["metadata"]["managedFields"]}
    assert ("gotk-runtime-probe-controller", "status") in managers

    # Reconciled again on its interval and still Ready: the transition time does not move.
    count = status["reconcileCount"]
    obj = wait_probe(
        kubectl,
        "app",
        namespace,
        lambda o: status_of(o).get("reconcileCount", 0) >= count + 2,
        what="two more reconciles on the 1s interval",
    )
    assert condition(obj, "Ready")["lastTransitionTime"] == first_transition  # type: ignore[index]

    # A requested reconcile is new work: Ready goes Unknown (Progressing) while it runs, then True.
    request_reconcile(kubectl, "app", namespace, "one")
    obj = wait_probe(
        kubectl,
        "app",
        namespace,
        lambda o: status_of(o).get("lastHandledReconcileAt") == "one" and is_ready(o),
    )

    # Failing: Ready=False with the reconciler's reason, Reconciling ProgressingWithRetry, new transition.
    patch_probe(kubectl, "app", namespace, {"spec": {"mode": "fail", "message": "cannot do it"}})
    obj = wait_probe(
        kubectl,
        "app",
        namespace,
        lambda o: (condition(o, "Ready") or {}).get("status") == "False",
        what="Ready=False",
    )
    ready, reconciling = condition(obj, "Ready"), condition(obj, "Reconciling")
    assert ready is not None and ready["reason"] == "ProbeFailed" and ready["message"] == "cannot do it"
    assert ready["lastTransitionTime"] >= first_transition
    assert reconciling is not None and reconciling["status"] == "True"
    assert reconciling["reason"] == "ProgressingWithRetry"
    assert status_of(obj)["observedGeneration"] == 1, "observedGeneration moves only on success or stall"

    # Stalled: Stalled=True, Ready=False, Reconciling gone, observedGeneration caught up, no retries.
    patch_probe(kubectl, "app", namespace, {"spec": {"mode": "stall", "message": "give up"}})
    obj = wait_probe(
        kubectl,
        "app",
        namespace,
        lambda o: (condition(o, "Stalled") or {}).get("status") == "True",
        what="Stalled",
    )
    assert condition(obj, "Reconciling") is None
    assert condition(obj, "Ready")["reason"] == "ProbeStalled"  # type: ignore[index]
    assert status_of(obj)["observedGeneration"] == obj["metadata"]["generation"]
    count = status_of(obj)["reconcileCount"]
    # Evidence the window was long enough: a sibling on the same 1s interval reconciles twice in it.
    create_probe(kubectl, "witness", namespace, interval="1s")
    wait_reconciled_again(kubectl, "witness", namespace)
    assert status_of(get_probe(kubectl, "app", namespace))["reconcileCount"] == count, "no retry when stalled"

    # Recovering clears Stalled.
    patch_probe(kubectl, "app", namespace, {"spec": {"mode": "succeed"}})
    obj = wait_probe(kubectl, "app", namespace, is_ready)
    assert condition(obj, "Stalled") is None


def test_logs_are_json_with_the_object_and_reconcile_id(start_probe, kubectl, namespace) -> None:
    controller = start_probe()
    create_probe(kubectl, "logged", namespace)
    wait_probe(kubectl, "logged", namespace, is_ready)
    finished = wait_for(
        lambda: [
            e for e in controller.log_entries() if str(e.get("msg", "")).startswith("Reconciliation finished")
        ],
        what="reconcile log line",
    )
    entry = finished[0]
    assert entry["name"] == "logged" and entry["namespace"] == namespace
    assert entry["controllerKind"] == "Probe" and entry["Probe"] == {"name": "logged", "namespace": namespace}
    assert len(entry["reconcileID"]) == 36 and entry["level"] == "info" and entry["ts"]


def test_finalizer_added_first_and_finalize_runs_on_delete(start_probe, kubectl, namespace) -> None:
    start_probe()
    create_probe(kubectl, "fin", namespace)
    obj = wait_probe(kubectl, "fin", namespace, is_ready)
    assert "finalizers.fluxcd.io" in obj["metadata"]["finalizers"]
    kubectl("delete", "probe", "fin", "-n", namespace, "--wait=false")
    wait_for(lambda: get_probe(kubectl, "fin", namespace) is None, what="probe deleted")
    finalized = json.loads(kubectl("get", "configmap", "fin-finalized", "-n", namespace, "-o", "json").stdout)
    assert finalized["data"]["by"]


def test_suspend_stops_reconciling(start_probe, kubectl, namespace) -> None:
    controller = start_probe()
    create_probe(kubectl, "sus", namespace)
    wait_probe(kubectl, "sus", namespace, is_ready)

    def skipped() -> int:
        """Reconciles of the object that found it suspended (the runtime logs each)."""
        return sum(
            1
            for e in controller.log_entries()
            if e.get("name") == "sus" and e.get("msg") == "Reconciliation is suspended for this object"
        )

    patch_probe(kubectl, "sus", namespace, {"spec": {"suspend": True}})
    wait_for(lambda: skipped() >= 1, what="the suspend handled")
    before, seen = status_of(get_probe(kubectl, "sus", namespace)), skipped()
    # One patch, one event: a requested reconcile and a spec change while suspended.
    patch_probe(kubectl, "sus", namespace, {
        "metadata": {"annotations": {"reconcile.fluxcd.io/requestedAt": "while-suspended"}},
        "spec": {"message": "changed while suspended"},
    })  # fmt: skip
    wait_for(lambda: skipped() > seen, what="the change handled while suspended")
    during = status_of(get_probe(kubectl, "sus", namespace))
    assert during.get("reconcileCount") == before.get("reconcileCount")
    assert during.get("lastHandledReconcileAt") != "while-suspended"

    patch_probe(kubectl, "sus", namespace, {"spec": {"suspend": False}})
    obj = wait_probe(kubectl, "sus", namespace, is_ready, what="reconciled after resume")
    assert status_of(obj)["reconcileCount"] > during["reconcileCount"]


def test_requested_at_triggers_a_reconcile_and_is_recorded(start_probe, kubectl, namespace) -> None:
    start_probe()
    create_probe(kubectl, "req", namespace)
    obj = wait_probe(kubectl, "req", namespace, is_ready)
    count = status_of(obj)["reconcileCount"]
    request_reconcile(kubectl, "req", namespace, "2026-01-01T00:00:00Z")
    obj = wait_probe(
        kubectl,
        "req",
        namespace,
        lambda o: status_of(o).get("lastHandledReconcileAt") == "2026-01-01T00:00:00Z",
    )
    obj = wait_probe(kubectl, "req", namespace, lambda o: status_of(o).get("reconcileCount", 0) > count)
    assert status_of(obj)["reconcileCount"] == count + 1


def test_invalid_object_is_stalled_and_others_keep_reconciling(start_probe, kubectl, namespace) -> None:
    start_probe()
    create_probe(kubectl, "bad", namespace, interval="one hour")
    create_probe(kubectl, "good", namespace, interval="1s")
    bad = wait_probe(
        kubectl,
        "bad",
        namespace,
        lambda o: (condition(o, "Stalled") or {}).get("status") == "True",
        what="bad stalled",
    )
    stalled = condition(bad, "Stalled")
    assert stalled is not None and stalled["reason"] == "InvalidObject"
    assert "interval" in stalled["message"]
    assert condition(bad, "Ready")["status"] == "False"  # type: ignore[index]
    # The good object keeps being reconciled every second.
    wait_reconciled_again(kubectl, "good", namespace)
    # Fixing the bad object makes it reconcile.
    patch_probe(kubectl, "bad", namespace, {"spec": {"interval": "1h"}})
    fixed = wait_probe(kubectl, "bad", namespace, is_ready)
    assert condition(fixed, "Stalled") is None
    events = json.loads(
        kubectl(
            "get", "events", "-n", namespace, "-o", "json", "--field-selector", "involvedObject.name=bad"
        ).stdout
    )["items"]
    assert any(e["reason"] == "InvalidObject" and e["type"] == "Warning" for e in events)


def test_crash_in_reconciler_is_a_failure_of_that_object(start_probe, kubectl, namespace) -> None:
    controller = start_probe()
    create_probe(kubectl, "boom", namespace, mode="crash", message="unexpected")
    obj = wait_probe(
        kubectl, "boom", namespace, lambda o: (condition(o, "Ready") or {}).get("status") == "False"
    )
    assert "RuntimeError: unexpected" in condition(obj, "Ready")["message"]  # type: ignore[index]
    assert controller.running()


def test_repeated_event_increments_count(start_probe, kubectl, namespace) -> None:
    start_probe()
    create_probe(kubectl, "ev", namespace)
    wait_probe(kubectl, "ev", namespace, is_ready)
    for token in ("a", "b", "c"):
        request_reconcile(kubectl, "ev", namespace, token)
        wait_probe(
            kubectl,
            "ev",
            namespace,
            lambda o, t=token: status_of(o).get("lastHandledReconcileAt") == t and is_ready(o),
        )

    def reconciled_events() -> list[dict]:
        items = json.loads(
            kubectl(
                "get", "events", "-n", namespace, "-o", "json", "--field-selector", "involvedObject.name=ev"
            ).stdout
        )["items"]
        return [e for e in items if e["reason"] == "Reconciled"]

    events = wait_for(
        lambda: [e for e in reconciled_events() if e.get("count", 1) >= 4] and reconciled_events(),
        what="one Reconciled event with count 4",
    )
    assert len(events) == 1
    event = events[0]
    assert event["type"] == "Normal" and event["message"] == "probe reconciled"
    assert event["source"]["component"] == "runtime-probe-controller"
    assert event["involvedObject"]["kind"] == "Probe"
    assert event["metadata"]["annotations"] == {"runtime.tide.test/revision": "probe"}
