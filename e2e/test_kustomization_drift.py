"""Drift corrected in real time: with a 1h interval and no reconcile requested, a manual edit and a
deletion of applied objects are undone; writers on fields Tide does not own are left alone; a writer
fighting over a field Tide owns gets one Warning event and backoff instead of a hot loop."""

from __future__ import annotations

import json
from typing import Any

import pytest

from e2e.fixtures.kustomize import (
    deployment,
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

CONFIGMAP = 'apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings\ndata:\n  v: "1"\n'
DRIFT_ANNOTATION = "kustomize.toolkit.fluxcd.io/drift-correction"


def unscaled(name: str) -> str:
    """A Deployment whose replicas Git does not set (an HPA's to own)."""
    return deployment(name).replace("  replicas: 1\n", "")


def replicas(kubectl: Any, namespace: str, name: str) -> int:
    return int(get_obj(kubectl, namespace, "deployment", name).get("spec", {}).get("replicas", -1))


def set_replicas(kubectl: Any, namespace: str, name: str, count: int, manager: str) -> None:
    kubectl("patch", "deployment", name, "-n", namespace, "--type=merge", f"--field-manager={manager}",
            "-p", json.dumps({"spec": {"replicas": count}}))  # fmt: skip


def test_edits_and_deletions_are_corrected_without_waiting_for_the_interval(
    git_server, flux_controllers, kubectl, namespace
) -> None:  # type: ignore[no-untyped-def]
    repo = git_server.create_repo(f"drift-{namespace}", {
        "app/web.yaml": deployment("web"),
        "app/settings.yaml": CONFIGMAP,
        "app/autoscaled.yaml": unscaled("autoscaled"),
        "other/other.yaml": deployment("other"),
    })  # fmt: skip
    flux_controllers()
    apply(kubectl, namespace, git_source("repo", repo.public_http_url, interval="1h"),
          kustomization("app", path="./app", interval="1h", targetNamespace=namespace),
          kustomization("other", path="./other", interval="1h", targetNamespace=namespace))  # fmt: skip
    wait_ks(kubectl, namespace, "app", revision=f"main@sha1:{repo.head()}")
    wait_ks(kubectl, namespace, "other", revision=f"main@sha1:{repo.head()}")

    # An HPA-style writer on a field Git does not set: written first, so the corrections below are
    # evidence that a reconcile ran after it.
    set_replicas(kubectl, namespace, "autoscaled", 3, "hpa-controller")

    kubectl("scale", "deployment", "web", "-n", namespace, "--replicas=5")
    wait_until(lambda: replicas(kubectl, namespace, "web") == 1, 30, "manual scale undone")
    kubectl("delete", "configmap", "settings", "-n", namespace)
    wait_until(
        lambda: get_obj(kubectl, namespace, "configmap", "settings"), 30, "deleted ConfigMap recreated"
    )
    assert replicas(kubectl, namespace, "autoscaled") == 3

    # Opted out: drift waits for the interval, as in Flux. "other" is corrected meanwhile (the
    # controller saw both changes, in order, on the same watch).
    kubectl("annotate", "kustomization", "app", "-n", namespace, f"{DRIFT_ANNOTATION}=disabled")
    wait_until(lambda: get_obj(kubectl, namespace, "kustomization", "app")["metadata"]["annotations"]
               .get(DRIFT_ANNOTATION) == "disabled", 10, "annotation set")  # fmt: skip
    kubectl("scale", "deployment", "web", "-n", namespace, "--replicas=4")
    kubectl("scale", "deployment", "other", "-n", namespace, "--replicas=6")
    wait_until(lambda: replicas(kubectl, namespace, "other") == 1, 30, "other's scale undone")
    assert replicas(kubectl, namespace, "web") == 4


def backoff_events(kubectl: Any, namespace: str) -> list[dict[str, Any]]:
    out = kubectl("get", "events", "-n", namespace, "--field-selector", "reason=DriftCorrectionBackoff",
                  "-o", "json")  # fmt: skip
    return [e for e in json.loads(out.stdout)["items"] if e["involvedObject"]["kind"] == "Kustomization"]


def test_a_writer_fighting_over_an_owned_field_gets_a_warning_and_backoff(
    git_server, flux_controllers, kubectl, namespace
) -> None:  # type: ignore[no-untyped-def]
    repo = git_server.create_repo(f"fight-{namespace}", {"web.yaml": deployment("web")})
    controllers = flux_controllers()
    apply(kubectl, namespace, git_source("repo", repo.public_http_url, interval="1h"),
          kustomization("app", interval="1h", targetNamespace=namespace))  # fmt: skip
    wait_ks(kubectl, namespace, "app", revision=f"main@sha1:{repo.head()}")

    writes = 0
    while not backoff_events(kubectl, namespace):
        assert writes < 60, "no DriftCorrectionBackoff event after 60 competing writes"
        set_replicas(kubectl, namespace, "web", 2 + writes % 2, "fighter")
        writes += 1
    events = backoff_events(kubectl, namespace)
    assert len(events) == 1 and events[0]["type"] == "Warning"
    assert "'fighter'" in events[0]["message"]

    before = reconcile_count(scrape(controllers.kustomize.metrics_url), namespace, "app")
    for i in range(12):
        set_replicas(kubectl, namespace, "web", 2 + i % 2, "fighter")
    after = reconcile_count(scrape(controllers.kustomize.metrics_url), namespace, "app")
    assert after - before <= 6, f"{after - before} reconciles for 12 competing writes: no backoff"
    assert len(backoff_events(kubectl, namespace)) == 1
