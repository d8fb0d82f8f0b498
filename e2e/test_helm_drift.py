"""Drift detection and CRD policies of HelmReleases with the real Helm on the real control plane,
with test_helm_release.py's chart and controllers: a Deployment scaled by hand and a deleted
Service are corrected with `mode: enabled` (DriftCorrected), only reported with `warn`
(DriftDetected), and an ignore rule on /spec/replicas leaves the scale alone while the deleted
Service still comes back; and a new chart version whose CRD changed lands with `upgrade.crds:
CreateReplace`. One release installs with `waitStrategy: legacy` (Helm v3's waiting)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from e2e.fixtures.helm_repo import ChartRepo
from e2e.fixtures.source import apply, condition, get, request_reconcile, wait_for
from e2e.test_helm_release import (  # noqa: F401 (app_chart, helm_controllers: fixtures)
    HR,
    app_chart,
    crd,
    helm_controllers,
    helm_release,
    publish_app,
    wait_released,
)
from e2e.test_helm_sources import served_repository

pytestmark = pytest.mark.e2e


def release(name: str, version: str | None = None, **spec: Any) -> dict[str, Any]:
    """A HelmRelease of the test's chart, pinned to `version` if given (a later version does not
    upgrade it); its uninstall at teardown does not wait for the objects to go."""
    hr = helm_release(name, uninstall={"disableWait": True}, **spec)
    if version:
        hr["spec"]["chart"]["spec"]["version"] = version
    return hr


def events_of(kubectl: Any, namespace: str, name: str) -> list[dict[str, Any]]:
    out = kubectl("get", "events", "-n", namespace, "-o", "json").stdout
    return [
        e
        for e in json.loads(out)["items"]
        if e["involvedObject"].get("kind") == "HelmRelease" and e["involvedObject"].get("name") == name
    ]


def wait_event(kubectl: Any, namespace: str, name: str, reason: str, timeout: float = 60) -> dict[str, Any]:
    found: list[dict[str, Any]] = []

    def ok(_: dict[str, Any]) -> bool:
        found[:] = [e for e in events_of(kubectl, namespace, name) if e["reason"] == reason]
        return bool(found)

    wait_for(kubectl, namespace, name, ok, timeout, f"{reason} event", HR)
    return found[-1]


def replicas(kubectl: Any, namespace: str, name: str) -> int:
    return int(get(kubectl, namespace, name, "deployment")["spec"]["replicas"])


def test_drift_and_crd_policies(  # type: ignore[no-untyped-def]
    app_chart,  # noqa: F811
    chart_repo,
    chart_server,
    helm_controllers,  # noqa: F811
    kubectl,
    namespace,
):
    """One controller pair and namespace for all four releases, to keep the e2e time down."""
    group = f"{namespace}.tide.dev"
    helm_controllers()
    ignore_replicas = [{"paths": ["/spec/replicas"], "target": {"kind": "Deployment"}}]
    apply(
        kubectl,
        namespace,
        *served_repository(chart_server, chart_repo),
        release("fix", "1.0.0", driftDetection={"mode": "enabled"}),
        # Also Helm v3's waiting (waitStrategy legacy) for its install.
        release("warn", "1.0.0", driftDetection={"mode": "warn"}, waitStrategy={"name": "legacy"}),
        release("keep", "1.0.0", driftDetection={"mode": "enabled", "ignore": ignore_replicas}),
        release("crd", upgrade={"crds": "CreateReplace"}),
    )
    wait_released(kubectl, namespace, "crd", 1)
    for name in ("fix", "warn", "keep"):
        hr = wait_released(kubectl, namespace, name, 1)
        drifted = condition(hr, "Drifted") or {}
        assert (drifted.get("status"), drifted.get("reason")) == ("False", "NoDriftDetected")

    # By hand: every Deployment scaled to 3, every Service deleted.
    for name in ("fix", "warn", "keep"):
        kubectl("scale", "deployment", name, "-n", namespace, "--replicas=3")
        kubectl("delete", "service", name, "-n", namespace)
        request_reconcile(kubectl, namespace, name, kind=HR)

    # enabled: both corrected, by patch and create, and said so.
    corrected = wait_event(kubectl, namespace, "fix", "DriftCorrected")
    assert f"Deployment/{namespace}/fix configured" in corrected["message"]
    assert f"Service/{namespace}/fix created" in corrected["message"]
    assert replicas(kubectl, namespace, "fix") == 1
    service = get(kubectl, namespace, "fix", "service")
    assert service["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "Helm"
    detected = wait_event(kubectl, namespace, "fix", "DriftDetected")
    assert f"Deployment/{namespace}/fix changed (0 additions, 1 changes, 0 removals)" in detected["message"]
    assert f"Service/{namespace}/fix removed" in detected["message"]

    # warn: reported (Event and Drifted condition), nothing corrected.
    warned = wait_event(kubectl, namespace, "warn", "DriftDetected")
    assert "has drifted from the desired state" in warned["message"]
    hr = get(kubectl, namespace, "warn", HR)
    assert (condition(hr, "Drifted") or {}).get("status") == "True"
    assert (condition(hr, "Ready") or {}).get("status") == "True"
    assert replicas(kubectl, namespace, "warn") == 3
    assert not get(kubectl, namespace, "warn", "service")
    assert not [e for e in events_of(kubectl, namespace, "warn") if e["reason"] == "DriftCorrected"]

    # ignore rule: the Service comes back (the evidence a reconcile ran), the scale stays.
    kept = wait_event(kubectl, namespace, "keep", "DriftCorrected")
    assert kept["message"].splitlines()[1:] == [f"Service/{namespace}/keep created"]
    assert replicas(kubectl, namespace, "keep") == 3
    # No Helm upgrade did any of it.
    for name in ("fix", "warn", "keep"):
        assert get(kubectl, namespace, name, HR)["status"]["history"][0]["version"] == 1

    # upgrade.crds CreateReplace: 1.1.0's CRD gains a short name, and the upgrade (of the one
    # release that follows the latest version) replaces the CRD before Helm runs.
    created = json.loads(kubectl("get", "crd", f"widgets.{group}", "-o", "json").stdout)
    assert "shortNames" not in created["spec"]["names"]
    publish_changed_crd(chart_repo, "1.1.0", group)
    request_reconcile(kubectl, namespace, "charts", kind="helmrepository")
    hr = wait_released(kubectl, namespace, "crd", 2)
    assert hr["status"]["history"][0]["chartVersion"] == "1.1.0"
    upgraded = json.loads(
        kubectl("get", "crd", f"widgets.{group}", "-o", "json", "--show-managed-fields").stdout
    )
    assert upgraded["spec"]["names"]["shortNames"] == ["wdg"]
    assert upgraded["metadata"]["labels"]["helm.toolkit.fluxcd.io/name"] == "crd"
    assert "helm-controller" in {f["manager"] for f in upgraded["metadata"]["managedFields"]}


def publish_changed_crd(repo: ChartRepo, version: str, group: str) -> Path:
    changed = crd(group).replace("singular: widget}", "singular: widget, shortNames: [wdg]}")
    assert changed != crd(group)
    return publish_app(repo, version, group, crd_text=changed)
