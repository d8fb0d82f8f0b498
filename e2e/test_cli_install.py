"""`tide install` then `tide check`, with the chart's manifests, against the real control plane."""

from __future__ import annotations

import json

import pytest
import yaml

pytestmark = pytest.mark.e2e


def test_export_is_the_chart(tide) -> None:
    docs = [d for d in yaml.safe_load_all(tide("install", "--export").stdout) if d]
    kinds = {d["kind"] for d in docs}
    assert {"Namespace", "CustomResourceDefinition", "Deployment", "Service", "ClusterRole"} <= kinds
    assert docs[0]["kind"] == "Namespace" and docs[1]["kind"] == "CustomResourceDefinition"
    crds_only = [d for d in yaml.safe_load_all(tide("install", "--export", "--crds-only").stdout) if d]
    assert {d["kind"] for d in crds_only} == {"Namespace", "CustomResourceDefinition"}
    assert len(crds_only) == len([d for d in docs if d["kind"] in ("Namespace", "CustomResourceDefinition")])


def test_check_pre(tide) -> None:
    res = tide("check", "--pre")
    assert ">=1.33.0" in res.stderr and "prerequisites checks passed" in res.stderr


def test_check_fails_without_controllers(tide, namespace) -> None:
    res = tide("-n", namespace, "check", code=1)
    assert "source-controller: not found" in res.stderr and "tide install" in res.stderr
    tide("-n", namespace, "check", "--crds-only")


def test_install_then_check(tide, namespace, kubectl) -> None:
    res = tide("-n", namespace, "install", "--timeout", "2m")
    assert "install finished" in res.stderr
    for name in ("source-controller", "kustomize-controller", "notification-controller", "helm-controller"):
        d = json.loads(kubectl("-n", namespace, "get", "deployment", name, "-o", "json").stdout)
        assert d["status"].get("readyReplicas") == 1
    res = tide("-n", namespace, "check")
    assert "all checks passed" in res.stderr
    assert "gitrepositories.source.toolkit.fluxcd.io" in res.stderr
    versions = json.loads(tide("-n", namespace, "version", "-o", "json").stdout)
    assert set(versions) == {
        "tide", "source-controller", "kustomize-controller", "notification-controller", "helm-controller"
    }  # fmt: skip
    # installing again changes nothing and succeeds
    tide("-n", namespace, "install", "--timeout", "2m")
    res = tide("-n", namespace, "uninstall", "--dry-run")
    assert f"Deployment/{namespace}/source-controller deleted (dry run)" in res.stderr
    tide("-n", namespace, "uninstall", code=2)  # asks for confirmation; no terminal here
    kubectl("delete", "clusterrolebinding,clusterrole", "-l", f"app.kubernetes.io/instance={namespace}")
