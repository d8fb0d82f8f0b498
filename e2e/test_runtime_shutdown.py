"""SIGTERM: in-flight reconciles finish within the grace period, or are cancelled after it."""

from __future__ import annotations

import signal
import time

import pytest

from e2e.fixtures.runtime import condition, create_probe, get_probe, status_of, wait_probe

pytestmark = pytest.mark.e2e


def reconciling(obj: dict) -> bool:
    return (condition(obj, "Reconciling") or {}).get("status") == "True"


def test_in_flight_reconcile_finishes_on_sigterm(start_probe, kubectl, namespace) -> None:
    controller = start_probe("--graceful-shutdown-timeout=30s")
    create_probe(kubectl, "slow", namespace, sleepSeconds=3)
    wait_probe(kubectl, "slow", namespace, reconciling, what="reconcile in flight")
    assert controller.stop(signal.SIGTERM) == 0
    obj = get_probe(kubectl, "slow", namespace)
    ready = condition(obj, "Ready")
    assert ready is not None and ready["status"] == "True", "the reconcile finished and wrote its status"
    assert status_of(obj)["observedGeneration"] == 1


def test_reconcile_past_the_grace_period_is_cancelled(start_probe, kubectl, namespace) -> None:
    controller = start_probe("--graceful-shutdown-timeout=1s")
    create_probe(kubectl, "stuck", namespace, sleepSeconds=300)
    wait_probe(kubectl, "stuck", namespace, reconciling, what="reconcile in flight")
    started = time.monotonic()
    assert controller.stop(signal.SIGTERM, timeout=30) == 0
    assert time.monotonic() - started < 20, "did not wait for the 300s reconcile"
