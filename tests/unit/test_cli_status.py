"""How the CLI reads Flux status: table rows, --status-selector, and when a requested reconcile is done."""

from __future__ import annotations

import pytest

from tide.cli import status


def ks(conditions=None, generation=1, observed=1, handled=None, suspend=False, revision="main@sha1:abc"):
    st = {"observedGeneration": observed, "conditions": conditions or [], "lastAppliedRevision": revision}
    if handled:
        st["lastHandledReconcileAt"] = handled
    return {
        "apiVersion": "kustomize.toolkit.fluxcd.io/v1",
        "kind": "Kustomization",
        "metadata": {"name": "apps", "namespace": "flux-system", "generation": generation},
        "spec": {"suspend": suspend},
        "status": st,
    }


READY = {
    "type": "Ready",
    "status": "True",
    "reason": "ReconciliationSucceeded",
    "message": "Applied revision: x",
}
FAILED = {"type": "Ready", "status": "False", "reason": "BuildFailed", "message": "kustomize build failed"}
RECONCILING = {"type": "Reconciling", "status": "True", "reason": "Progressing", "message": "building"}


def test_row_like_flux() -> None:
    assert status.row(ks([READY])) == ["apps", "main@sha1:abc", "False", "True", "Applied revision: x"]
    assert status.row(ks([READY]), with_namespace=True)[0] == "flux-system"
    assert status.row(ks([]), "kustomization/")[3:] == ["Unknown", "waiting to be reconciled"]
    assert status.row(ks([]))[0] == "apps"


def test_static_kinds_have_no_readiness() -> None:
    alert = {"kind": "Alert", "metadata": {"name": "a"}, "spec": {}}
    assert status.row(alert) == ["a", "", "False", "-", ""]


def test_revision_per_kind() -> None:
    git = {"kind": "GitRepository", "status": {"artifact": {"revision": "main@sha1:1"}}}
    hr = {"kind": "HelmRelease", "status": {"history": [{"chartVersion": "6.0.0"}]}}
    assert status.revision(git) == "main@sha1:1"
    assert status.revision(hr) == "6.0.0"
    assert status.revision({"kind": "GitRepository"}) == ""


def test_status_selector() -> None:
    assert status.matches_status_selector(ks([READY]), "ready=true")
    assert not status.matches_status_selector(ks([READY]), "ready=false")
    assert status.matches_status_selector(ks([]), "ready=unknown")
    assert status.matches_status_selector(ks([READY, RECONCILING]), "Ready=True,reconciling=true")
    assert status.matches_status_selector(ks([READY]), "")
    with pytest.raises(ValueError):
        status.matches_status_selector(ks([READY]), "ready")


def test_progress_waits_for_the_request_to_be_handled() -> None:
    p = status.reconcile_progress(ks([READY], handled="old"), "new")
    assert not p.done and not p.failed and "pick up" in p.message
    assert status.reconcile_progress(ks([READY], handled="new"), "new").done


def test_progress_waits_for_the_generation() -> None:
    p = status.reconcile_progress(ks([READY], generation=2, observed=1), None)
    assert not p.done and not p.failed


def test_progress_reconciling_then_failure() -> None:
    assert not status.reconcile_progress(ks([RECONCILING]), None).done
    failed = status.reconcile_progress(ks([FAILED]), None)
    assert failed.failed and failed.message == "kustomize build failed"
    retrying = {**RECONCILING, "reason": "ProgressingWithRetry"}
    assert status.reconcile_progress(ks([FAILED, retrying]), None).failed
    stalled = {"type": "Stalled", "status": "True", "reason": "InvalidPath", "message": "bad path"}
    assert status.reconcile_progress(ks([FAILED, stalled]), None).failed


def test_progress_deleted_object_fails() -> None:
    obj = ks([READY])
    obj["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    assert status.reconcile_progress(obj, None).failed
