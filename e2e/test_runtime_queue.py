"""The work queue on the real control plane: events coalesce into one reconcile per object, failures
back off exponentially, retryInterval overrides the backoff."""

from __future__ import annotations

import time
from itertools import pairwise

import pytest

from e2e.fixtures.runtime import (
    condition,
    create_probe,
    is_ready,
    patch_probe,
    request_reconcile,
    status_of,
    wait_probe,
)

pytestmark = pytest.mark.e2e


def test_events_during_a_reconcile_coalesce(start_probe, kubectl, namespace) -> None:
    start_probe()
    create_probe(kubectl, "slow", namespace, sleepSeconds=3)
    # While the first reconcile sleeps, twenty changes arrive.
    wait_probe(
        kubectl,
        "slow",
        namespace,
        lambda o: (condition(o, "Reconciling") or {}).get("status") == "True",
        what="first reconcile running",
    )
    for i in range(20):
        request_reconcile(kubectl, "slow", namespace, f"t{i}")
    obj = wait_probe(
        kubectl,
        "slow",
        namespace,
        lambda o: status_of(o).get("lastHandledReconcileAt") == "t19" and is_ready(o),
        timeout=60,
        what="last request handled",
    )
    time.sleep(1)
    count = status_of(obj)["reconcileCount"]
    # The first reconcile, then at most one more per change seen while it ran (one queue entry).
    assert count <= 3, f"{count} reconciles for 21 events"


def test_failures_back_off_exponentially(start_probe, kubectl, namespace) -> None:
    start_probe()
    create_probe(kubectl, "flaky", namespace, mode="fail")
    obj = wait_probe(
        kubectl,
        "flaky",
        namespace,
        lambda o: len(status_of(o).get("attemptTimes") or []) >= 5,
        timeout=60,
        what="five attempts",
    )
    times = status_of(obj)["attemptTimes"]
    gaps = [b - a for a, b in pairwise(times)]
    # 750ms, 1.5s, 3s, 6s: each wait about twice the one before.
    for before, after in pairwise(gaps):
        assert after > before * 1.5, gaps
    assert condition(obj, "Ready")["reason"] == "ProbeFailed"  # type: ignore[index]


def test_retry_interval_replaces_the_backoff(start_probe, kubectl, namespace) -> None:
    start_probe()
    create_probe(kubectl, "retry", namespace, mode="fail", retryInterval="1s")
    obj = wait_probe(
        kubectl,
        "retry",
        namespace,
        lambda o: len(status_of(o).get("attemptTimes") or []) >= 5,
        timeout=60,
        what="five attempts",
    )
    times = status_of(obj)["attemptTimes"]
    gaps = [b - a for a, b in pairwise(times)]
    assert max(gaps) < 2 * min(gaps) + 0.5, f"steady retries every retryInterval: {gaps}"


def test_success_resets_the_backoff(start_probe, kubectl, namespace) -> None:
    start_probe()
    create_probe(kubectl, "heal", namespace, mode="fail")
    wait_probe(
        kubectl,
        "heal",
        namespace,
        lambda o: len(status_of(o).get("attemptTimes") or []) >= 3,
        what="three failures",
    )
    patch_probe(kubectl, "heal", namespace, {"spec": {"mode": "succeed", "interval": "1s"}})
    obj = wait_probe(kubectl, "heal", namespace, is_ready)
    count = status_of(obj)["reconcileCount"]
    wait_probe(
        kubectl,
        "heal",
        namespace,
        lambda o: status_of(o).get("reconcileCount", 0) >= count + 2,
        what="regular interval reconciles after recovery",
    )
