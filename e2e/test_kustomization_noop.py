"""The differentiator: a no-op reconcile costs (almost) no API requests, and drift is still corrected."""

from __future__ import annotations

import json
import time

import pytest

from e2e.fixtures.kustomize import (
    api_requests,
    app_package,
    get_obj,
    git_source,
    kustomization,
    reconcile_count,
    scrape,
    wait_ks,
    wait_until,
)
from e2e.fixtures.source import apply

pytestmark = pytest.mark.e2e


def test_noop_reconcile_makes_at_most_two_requests(git_server, flux_controllers, kubectl, namespace) -> None:  # type: ignore[no-untyped-def]
    files: dict[str, str] = {}
    for i in range(5):
        files.update(app_package(f"app{i}"))  # 5 x 4 = 20 objects
    repo = git_server.create_repo(f"noop-{namespace}", files)
    controllers = flux_controllers()
    apply(kubectl, namespace, git_source("repo", repo.public_http_url),
          kustomization("apps", interval="2s", targetNamespace=namespace, wait=True))  # fmt: skip
    ks = wait_ks(kubectl, namespace, "apps", revision=f"main@sha1:{repo.head()}")
    assert len(ks["status"]["inventory"]["entries"]) == 20

    url = controllers.kustomize.metrics_url
    # Let the first reconciles after the apply settle (Deployment status updates, caches filled).
    wait_until(lambda: reconcile_count(scrape(url), namespace, "apps") >= 4, 60, "reconciles")
    before = scrape(url)
    time.sleep(12)
    after = scrape(url)
    reconciles = reconcile_count(after, namespace, "apps") - reconcile_count(before, namespace, "apps")
    requests = {verb: n - api_requests(before).get(verb, 0) for verb, n in api_requests(after).items()}
    total = sum(requests.values())
    print(f"no-op: {reconciles:.0f} reconciles, requests by verb {requests}")
    assert reconciles >= 3
    assert total / reconciles <= 2, f"{total} requests in {reconciles} reconciles: {requests}"

    # A manual change is still corrected at the next interval.
    kubectl("scale", "deployment", "app3", "-n", namespace, "--replicas=2")
    kubectl("patch", "service", "app1", "-n", namespace, "--type=json",
            "-p", json.dumps([{"op": "replace", "path": "/spec/ports/0/targetPort",
                               "value": 9999}]))  # fmt: skip
    wait_until(lambda: get_obj(kubectl, namespace, "deployment", "app3")["spec"]["replicas"] == 0, 30,
               "replicas reverted")  # fmt: skip
    wait_until(lambda: get_obj(kubectl, namespace, "service", "app1")["spec"]["ports"][0]["targetPort"]
               == "http",
               30, "service targetPort reverted")  # fmt: skip
