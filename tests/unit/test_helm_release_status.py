"""The HelmRelease decisions around the release loop: refusals, dependencies, force/reset
requests, failure resets, Ready summary; and the chart source: the HelmChart template, when it is
applied again, source readiness, the chart in an artifact, the OCI version suffix."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml

from tide.controllers.helm.chart_source import (
    AppliedChart,
    ChartInvalid,
    ChartSourceNotReady,
    chart_directory,
    chart_metadata,
    chart_needs_apply,
    chart_source_artifact,
    helm_chart_object,
    oci_chart_version,
    ready_artifact,
    set_chart_version,
    versioned_by_digest,
)
from tide.controllers.helm.release_status import (
    Ending,
    attempt_changed,
    cross_namespace_ref,
    dependency_not_ready,
    ending,
    external_artifact_denied,
    ready_from,
    requests,
    spec_observed,
    unsupported,
)
from tide.controllers.helm.state import Outcome
from tide.shared.api.helm import HelmRelease

CHART = {
    "spec": {"chart": "app", "version": "1.x", "sourceRef": {"kind": "HelmRepository", "name": "charts"}}
}


def release(**spec) -> HelmRelease:
    return HelmRelease.model_validate(
        {
            "apiVersion": "helm.toolkit.fluxcd.io/v2",
            "kind": "HelmRelease",
            "metadata": {"name": "app", "namespace": "apps", "generation": 2},
            "spec": {"interval": "5m", **({"chart": CHART} if "chartRef" not in spec else {}), **spec},
        }
    )


@pytest.mark.parametrize(
    ("spec", "refused"),
    [
        ({}, None),
        ({"driftDetection": {"mode": "disabled"}}, None),
        ({"install": {"crds": "Skip"}, "upgrade": {"crds": "Skip"}}, None),
        ({"driftDetection": {"mode": "enabled", "ignore": [{"paths": ["/spec/replicas"]}]}}, None),
        ({"driftDetection": {"mode": "warn"}}, None),
        ({"postRenderers": [{"kustomize": {"images": [{"name": "a", "newTag": "1"}]}}]}, None),
        ({"serviceAccountName": "sa"}, None),
        ({"kubeConfig": {"secretRef": {"name": "kc", "key": "value.yaml"}}}, None),
        ({"kubeConfig": {"configMapRef": {"name": "cloud"}}}, "spec.kubeConfig.configMapRef"),
        ({"kubeConfig": {}}, "needs a secretRef"),
        ({"install": {"crds": "CreateReplace"}, "upgrade": {"crds": "CreateReplace"}}, None),
        ({"upgrade": {"crds": "Create"}}, None),
        ({"waitStrategy": {"name": "legacy"}}, None),
        ({"healthCheckExprs": [{"apiVersion": "v1", "kind": "X", "current": "true"}]}, None),
        ({"chartRef": {"kind": "ExternalArtifact", "name": "x"}}, None),
    ],
)
def test_unsupported_fields_are_said(spec, refused) -> None:
    why = unsupported(release(**spec))
    assert (why is None) if refused is None else (refused in (why or ""))


def ready(status: str, generation: int = 1, observed: int = 1) -> dict:
    return {
        "metadata": {"generation": generation},
        "status": {"observedGeneration": observed, "conditions": [{"type": "Ready", "status": status}]},
    }


def test_dependency_ready_at_its_generation() -> None:
    key = ("apps", "db")
    assert dependency_not_ready(None, key) == "dependency 'apps/db' not found"
    assert dependency_not_ready(ready("False"), key) == "dependency 'apps/db' is not ready"
    assert dependency_not_ready(ready("True", generation=2), key) == "dependency 'apps/db' is not ready"
    assert dependency_not_ready(ready("True"), key) is None


def test_force_and_reset_count_once_and_only_with_requested_at() -> None:
    asked = {"reconcile.fluxcd.io/requestedAt": "t1", "reconcile.fluxcd.io/forceAt": "t1"}
    assert requests(asked, None, None).force == "t1"
    assert requests(asked, "t1", None).force is None
    assert requests({**asked, "reconcile.fluxcd.io/requestedAt": "t2"}, None, None).force is None
    reset = {"reconcile.fluxcd.io/requestedAt": "t3", "reconcile.fluxcd.io/resetAt": "t3"}
    assert requests(reset, None, None) == type(requests(reset, None, None))(None, "t3")


def test_failures_reset_on_a_new_attempt() -> None:
    hr = release()
    hr.status.last_attempted_generation = 2
    hr.status.last_attempted_revision = "1.0.0"
    hr.status.last_attempted_config_digest = "sha256:a"
    assert not attempt_changed(hr, "1.0.0", "sha256:a")
    assert attempt_changed(hr, "1.0.1", "sha256:a")
    assert attempt_changed(hr, "1.0.0", "sha256:b")
    hr.metadata.generation = 3
    assert attempt_changed(hr, "1.0.0", "sha256:a")


def cond(type_: str, status: str, reason: str) -> dict:
    return {"type": type_, "status": status, "reason": reason, "message": f"{reason} message"}


@pytest.mark.parametrize(
    ("conditions", "tests", "expected"),
    [
        ([], False, None),
        ([cond("Released", "True", "InstallSucceeded")], False, ("True", "InstallSucceeded")),
        ([cond("Released", "False", "UpgradeFailed")], False, ("False", "UpgradeFailed")),
        (
            [cond("Released", "True", "InstallSucceeded"), cond("TestSuccess", "True", "TestSucceeded")],
            True,
            ("True", "TestSucceeded"),
        ),
        (
            [cond("Released", "True", "InstallSucceeded"), cond("TestSuccess", "False", "TestFailed")],
            True,
            ("False", "TestFailed"),
        ),
        (
            [cond("Released", "True", "InstallSucceeded"), cond("TestSuccess", "False", "TestFailed")],
            False,
            ("True", "InstallSucceeded"),
        ),
        (
            [cond("Released", "False", "UpgradeFailed"), cond("Remediated", "True", "RollbackSucceeded")],
            False,
            ("False", "RollbackSucceeded"),
        ),
    ],
)
def test_ready_summary(conditions, tests, expected) -> None:
    summary = ready_from(conditions, tests)
    assert (summary[:2] if summary else None) == expected


def test_helm_chart_template() -> None:
    hr = release(chart={**CHART, "metadata": {"labels": {"team": "a"}}})
    obj = helm_chart_object(hr)
    assert obj["metadata"] == {
        "name": "apps-app",
        "namespace": "apps",
        "labels": {
            "team": "a",
            "helm.toolkit.fluxcd.io/name": "app",
            "helm.toolkit.fluxcd.io/namespace": "apps",
        },
    }
    assert obj["spec"] == {
        "chart": "app",
        "version": "1.x",
        "sourceRef": {"kind": "HelmRepository", "name": "charts"},
        "interval": "5m",
        "reconcileStrategy": "ChartVersion",
    }
    other = {
        "spec": {**CHART["spec"], "sourceRef": {"kind": "HelmRepository", "name": "c", "namespace": "flux"}}
    }
    assert helm_chart_object(release(chart=other))["metadata"]["namespace"] == "flux"


def _chart_as_served(wanted: dict, generation: int = 2, **meta: object) -> dict:
    metadata = {**wanted["metadata"], "generation": generation, "resourceVersion": "9", **meta}
    return {**wanted, "metadata": metadata, "spec": {**wanted["spec"], "valuesFiles": []}}


WANTED = helm_chart_object(release(chart={**CHART, "metadata": {"annotations": {"a": "1"}}}))
CHANGED = helm_chart_object(release(chart={**CHART, "spec": {**CHART["spec"], "version": "2.x"}}))


@pytest.mark.parametrize(
    ("last", "cached", "needed"),
    [
        (None, _chart_as_served(WANTED), True),  # not applied by this process yet (a restart)
        (AppliedChart(WANTED, 2), None, True),  # gone, or not in the cache yet
        (AppliedChart(WANTED, 2), _chart_as_served(WANTED), False),  # as applied: no write
        (AppliedChart(CHANGED, 2), _chart_as_served(WANTED), True),  # the release's template changed
        (AppliedChart(WANTED, 2), _chart_as_served(WANTED, generation=3), True),  # someone edited its spec
        (AppliedChart(WANTED, 2), _chart_as_served(WANTED, labels={}), True),  # a label removed
        (AppliedChart(WANTED, 2), _chart_as_served(WANTED, annotations={"a": "2"}), True),
        (AppliedChart(WANTED, 2), _chart_as_served(WANTED, deletionTimestamp="2026-12-01T00:00:00Z"), True),
    ],
)
def test_the_helm_chart_is_applied_again_only_when_it_may_differ(last, cached, needed) -> None:
    assert chart_needs_apply(WANTED, last, cached) is needed


def source(ready_status: str = "True", observed: int = 1, artifact: bool = True) -> dict:
    status = {
        "observedGeneration": observed,
        "conditions": [{"type": "Ready", "status": ready_status, "message": "m"}],
    }
    if artifact:
        status["artifact"] = {"url": "http://x/a.tgz", "digest": "sha256:" + "a" * 64, "revision": "1.0.0"}
    return {"metadata": {"generation": 1}, "status": status}


def test_source_ready_at_its_generation_with_an_artifact() -> None:
    assert ready_artifact(source(), "HelmChart 'a/b'")["revision"] == "1.0.0"
    for bad in (source("False"), source(observed=0), source(artifact=False)):
        with pytest.raises(ChartSourceNotReady, match="HelmChart 'a/b' is not ready"):
            ready_artifact(bad, "HelmChart 'a/b'")


def test_an_external_artifact_needs_only_its_artifact() -> None:
    """Flux: an ExternalArtifact's producer reports no generation or Ready; its artifact is enough."""
    bare = {"metadata": {"generation": 3}, "status": {"artifact": source()["status"]["artifact"]}}
    assert chart_source_artifact("ExternalArtifact", bare, "ExternalArtifact 'a/b'")["revision"] == "1.0.0"
    with pytest.raises(ChartSourceNotReady, match="does not have an artifact"):
        chart_source_artifact("ExternalArtifact", {"status": {}}, "ExternalArtifact 'a/b'")
    with pytest.raises(ChartSourceNotReady, match="latest generation"):
        chart_source_artifact("OCIRepository", bare, "OCIRepository 'a/b'")


@pytest.mark.parametrize(
    ("kind", "revision", "versioned"),
    [
        ("OCIRepository", "1.0.0@sha256:" + "a" * 64, True),
        ("ExternalArtifact", "latest@sha256:" + "a" * 64, True),
        ("ExternalArtifact", "sha256:" + "a" * 64, True),
        ("ExternalArtifact", "1.2.3", False),
        ("HelmChart", "1.2.3", False),
    ],
)
def test_which_chart_versions_carry_the_source_digest(kind, revision, versioned) -> None:
    assert versioned_by_digest(kind, revision) is versioned


def test_the_external_artifact_feature_gate() -> None:
    ea = release(chartRef={"kind": "ExternalArtifact", "name": "chart"})
    assert external_artifact_denied(ea, enabled=True) is None
    assert "ExternalArtifact/apps/chart', ExternalArtifact feature gate is disabled" in (
        external_artifact_denied(ea, enabled=False) or ""
    )
    assert external_artifact_denied(release(), enabled=False) is None


def test_v2beta1_values_file_goes_first_in_values_files() -> None:
    """v2beta1/v2beta2's spec.chart.spec.valuesFile (gone in v2) is merged before valuesFiles."""
    chart = {"spec": {**CHART["spec"], "valuesFile": "base.yaml", "valuesFiles": ["prod.yaml"]}}
    assert helm_chart_object(release(chart=chart))["spec"]["valuesFiles"] == ["base.yaml", "prod.yaml"]
    chart = {"spec": {**CHART["spec"], "valuesFile": "base.yaml", "valuesFiles": ["base.yaml"]}}
    assert helm_chart_object(release(chart=chart))["spec"]["valuesFiles"] == ["base.yaml"]


def test_chart_in_artifact(tmp_path: Path) -> None:
    (tmp_path / "app").mkdir()
    (tmp_path / "app" / "Chart.yaml").write_text("apiVersion: v2\nname: app\nversion: 1.2.3\n")
    assert chart_metadata(chart_directory(tmp_path)) == ("app", "1.2.3")
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "Chart.yaml").write_text("name: other\n")
    with pytest.raises(ChartInvalid):
        chart_directory(tmp_path)
    with pytest.raises(ChartInvalid, match="no name or version"):
        chart_metadata(tmp_path / "other")


def test_oci_version_carries_the_digest() -> None:
    digest = "sha256:" + "0123456789ab" + "c" * 52
    assert oci_chart_version("1.0.0", f"1.0.0@{digest}") == ("1.0.0+0123456789ab", digest)
    assert oci_chart_version("1.0.0", digest) == ("1.0.0+0123456789ab", digest)
    # A tag that is no version: Flux records the whole revision as the digest.
    assert oci_chart_version("1.0.0", f"latest@{digest}") == ("1.0.0+0123456789ab", f"latest@{digest}")
    assert oci_chart_version("1.0.0", f"v1.0@{digest}")[1] == digest  # semver, loosely
    assert oci_chart_version("1.0.0+build", f"1.0.0_other@{digest}")[0] == "1.0.0+0123456789ab"
    with pytest.raises(ChartInvalid, match="does not match"):
        oci_chart_version("1.0.0", f"v2.0.0@{digest}")
    with pytest.raises(ChartInvalid, match="does not match"):
        oci_chart_version("1.0.0", f"2.0.0@{digest}")
    with pytest.raises(ChartInvalid):
        oci_chart_version("1.0.0", "latest")


def test_cross_namespace_references() -> None:
    assert cross_namespace_ref(release()) is None
    assert cross_namespace_ref(release(dependsOn=[{"name": "db", "namespace": "apps"}])) is None
    other = {
        "spec": {**CHART["spec"], "sourceRef": {"kind": "HelmRepository", "name": "c", "namespace": "flux"}}
    }
    assert "HelmRepository 'c' in namespace 'flux'" in (cross_namespace_ref(release(chart=other)) or "")
    assert "dependency 'db'" in (
        cross_namespace_ref(release(dependsOn=[{"name": "db", "namespace": "x"}])) or ""
    )
    chart_ref = {"kind": "OCIRepository", "name": "o", "namespace": "x"}
    assert "OCIRepository 'o'" in (cross_namespace_ref(release(chartRef=chart_ref)) or "")
    external = {"kind": "ExternalArtifact", "name": "ea", "namespace": "x"}
    assert "ExternalArtifact 'ea' in namespace 'x'" in (cross_namespace_ref(release(chartRef=external)) or "")


FAILED = ("False", "UpgradeFailed", "upgrade failed")


@pytest.mark.parametrize(
    ("outcome", "summary", "stall", "expected"),
    [
        (Outcome.DONE, ("True", "UpgradeSucceeded", "ok"), ("", ""), Ending()),
        (Outcome.REQUEUE, FAILED, ("", ""), Ending(requeue_after=1.0)),
        (Outcome.RETRY_AFTER_INTERVAL, FAILED, ("", ""), Ending(requeue_after=60.0)),
        (Outcome.ERROR, FAILED, ("", ""), Ending(error=("UpgradeFailed", "upgrade failed"))),
        (Outcome.ERROR, None, ("", ""), Ending(error=("ReconciliationFailed", "release failed"))),
        (
            Outcome.STALLED,
            FAILED,
            ("RetriesExceeded", "cannot remediate failed release"),
            Ending(stall=("RetriesExceeded", "cannot remediate failed release: upgrade failed")),
        ),
        (Outcome.STALLED, None, ("", ""), Ending(stall=("RetriesExceeded", "retries exhausted"))),
    ],
)
def test_how_a_reconcile_ends(outcome, summary, stall, expected) -> None:
    assert ending(outcome, summary, *stall, retry_interval=60.0) == expected


async def test_the_reconciler_refuses_cross_namespace_references_when_locked_down() -> None:
    """--no-cross-namespace-refs stalls the HelmRelease before anything is read or installed."""
    from types import SimpleNamespace

    from tide.controllers.helm.reconciler import HelmReleaseReconciler
    from tide.shared.runtime.result import StalledError

    obj = release(dependsOn=[{"name": "db", "namespace": "ops"}])
    ctx = SimpleNamespace(options=SimpleNamespace(no_cross_namespace_refs=True), namespace="apps", kube=None)
    with pytest.raises(StalledError, match="dependency 'db' in namespace 'ops'") as refused:
        await HelmReleaseReconciler().reconcile(obj, ctx)  # type: ignore[arg-type]
    assert refused.value.reason == "AccessDenied"


@pytest.mark.parametrize(
    ("outcome", "summary", "observed"),
    [
        (Outcome.DONE, ("True", "UpgradeSucceeded", "ok"), True),
        (Outcome.DONE, ("False", "UpgradeFailed", "kustomize build failed"), False),
        (Outcome.DONE, None, False),
        (Outcome.ERROR, ("False", "InstallFailed", "post-renderer failed"), False),
        (Outcome.REQUEUE, ("True", "UpgradeSucceeded", "ok"), False),
    ],
)
def test_observed_digests_follow_the_spec_once_ready(outcome, summary, observed) -> None:
    assert spec_observed(outcome, summary) is observed


def test_the_digest_version_replaces_chart_yaml_and_leaves_the_cached_chart_alone(tmp_path: Path) -> None:
    """The chart a release reads is a hard-linked copy of the controller's cached chart: the
    version rewrite must not write through the link into the cache (nor into other copies)."""
    cached, copy = tmp_path / "cache" / "app", tmp_path / "copy" / "app"
    cached.mkdir(parents=True)
    copy.mkdir(parents=True)
    (cached / "Chart.yaml").write_text("apiVersion: v2\nname: app\nversion: 1.0.0\n")
    os.link(cached / "Chart.yaml", copy / "Chart.yaml")
    set_chart_version(copy, "1.0.0+0123456789ab")
    assert yaml.safe_load((copy / "Chart.yaml").read_text())["version"] == "1.0.0+0123456789ab"
    assert yaml.safe_load((cached / "Chart.yaml").read_text())["version"] == "1.0.0"
    assert sorted(p.name for p in copy.iterdir()) == ["Chart.yaml"]
