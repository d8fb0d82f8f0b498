"""Watches survive the API server going away: the informer retries the dropped connection and resumes
(or relists), and the controller keeps reconciling without a restart."""

from __future__ import annotations

import pytest

from e2e.fixtures.runtime import create_probe, is_ready, patch_probe, status_of, wait_probe

pytestmark = pytest.mark.e2e


def test_watch_resumes_after_api_server_restart(start_probe, kubectl, namespace, restart_apiserver) -> None:
    controller = start_probe()
    create_probe(kubectl, "before", namespace)
    wait_probe(kubectl, "before", namespace, is_ready)

    restart_apiserver()

    # A change made after the restart is seen through the resumed watch.
    patch_probe(kubectl, "before", namespace, {"spec": {"message": "after restart"}})
    obj = wait_probe(
        kubectl,
        "before",
        namespace,
        lambda o: is_ready(o) and o["metadata"]["generation"] == 2,
        timeout=90,
        what="generation 2 reconciled",
    )
    assert status_of(obj)["lastGeneration"] == 2
    create_probe(kubectl, "after", namespace)
    wait_probe(kubectl, "after", namespace, is_ready, timeout=60)
    assert controller.running(), "a lost connection is retried, not fatal"
    assert any("interrupted" in str(entry.get("msg", "")) for entry in controller.log_entries())
