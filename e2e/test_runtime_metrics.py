"""Metrics and health: a real Prometheus scrapes the controller and PromQL finds the test object's
gotk_reconcile_duration_seconds; controller-runtime's counters, queue depth and API requests by verb."""

from __future__ import annotations

import urllib.request

import pytest

from e2e.fixtures.runtime import create_probe, is_ready, wait_for, wait_probe

pytestmark = pytest.mark.e2e


def test_prometheus_scrapes_reconcile_duration(start_probe, kubectl, namespace, prometheus) -> None:
    controller = start_probe()
    create_probe(kubectl, "measured", namespace)
    wait_probe(kubectl, "measured", namespace, is_ready)
    server = prometheus([f"127.0.0.1:{controller.metrics_port}"])
    query = f'gotk_reconcile_duration_seconds_count{{kind="Probe",name="measured",namespace="{namespace}"}}'
    result = wait_for(lambda: server.query(query), timeout=60, what="PromQL result")
    assert len(result) == 1
    assert float(result[0]["value"][1]) >= 1
    buckets = server.query(
        f'gotk_reconcile_duration_seconds_bucket{{name="measured",namespace="{namespace}"}}'
    )
    assert len(buckets) == 11, "Flux's 10 buckets plus +Inf"


def test_controller_metrics_and_health_endpoints(start_probe, kubectl, namespace) -> None:
    controller = start_probe()
    create_probe(kubectl, "counted", namespace)
    wait_probe(kubectl, "counted", namespace, is_ready)
    wait_for(
        lambda: (controller.metric("controller_runtime_reconcile_total", controller="probe") or 0) >= 1,
        what="reconcile counted",
    )
    assert controller.metric("workqueue_depth", name="probe") is not None
    assert controller.metric("controller_runtime_max_concurrent_reconciles", controller="probe") == 4
    assert (controller.metric("tide_kube_api_requests_total", verb="patch", code="200") or 0) >= 1
    assert (controller.metric("tide_kube_api_requests_total", verb="watch", code="200") or 0) >= 1
    assert (controller.metric("rest_client_requests_total", method="GET", code="200") or 0) >= 1
    for path in ("/healthz", "/readyz"):
        with urllib.request.urlopen(controller.health_url + path, timeout=5) as resp:
            assert resp.status == 200
