"""Objects `tide create` builds, Go durations, export cleaning, and the YAML format."""

from __future__ import annotations

import pytest
import yaml

from tide.cli import objects
from tide.shared.api.meta import parse_duration


@pytest.mark.parametrize(
    ("text", "go"),
    [
        ("1m", "1m0s"),
        ("90s", "1m30s"),
        ("10m", "10m0s"),
        ("2h", "2h0m0s"),
        ("1h30m", "1h30m0s"),
        ("500ms", "500ms"),
        ("0", "0s"),
        ("1.5s", "1.5s"),
    ],
)
def test_go_duration(text: str, go: str) -> None:
    assert objects.go_duration(text) == go


def test_bad_duration() -> None:
    for bad in ("1x", "m", "1m 2s", "-1s"):
        with pytest.raises(ValueError):
            parse_duration(bad, go=True)


def test_git_repository_ref_and_url() -> None:
    obj = objects.git_repository("a", "ns", "https://x/y.git", tag="v1", secret_ref="creds")
    assert obj["spec"]["ref"] == {"tag": "v1"} and obj["spec"]["secretRef"] == {"name": "creds"}
    assert objects.git_repository("a", "ns", "ssh://git@x/y.git")["spec"]["ref"] == {"branch": "master"}
    with pytest.raises(ValueError, match="scp-like"):
        objects.git_repository("a", "ns", "git@github.com:x/y.git")


def test_oci_repository_ref_and_url() -> None:
    assert objects.oci_repository("a", "ns", "oci://r/app")["spec"]["ref"] == {"tag": "latest"}
    obj = objects.oci_repository("a", "ns", "oci://r/a", semver=">=1.0.0", insecure=True, secret_ref="creds")
    assert obj["kind"] == "OCIRepository" and obj["spec"]["ref"] == {"semver": ">=1.0.0"}
    assert obj["spec"]["insecure"] is True and obj["spec"]["secretRef"] == {"name": "creds"}
    with pytest.raises(ValueError, match="oci://"):
        objects.oci_repository("a", "ns", "https://r/app")


def test_helm_repository_and_chart_as_flux_creates_them() -> None:
    repo = objects.helm_repository("charts", "ns", "https://charts.example.com", secret_ref="auth",
                                   pass_credentials=True)  # fmt: skip
    assert repo["kind"] == "HelmRepository" and "type" not in repo["spec"]
    assert repo["spec"]["secretRef"] == {"name": "auth"} and repo["spec"]["passCredentials"] is True
    assert objects.helm_repository("o", "ns", "oci://ghcr.io/x")["spec"]["type"] == "oci"
    with pytest.raises(ValueError, match="oci://"):
        objects.helm_repository("a", "ns", "ftp://x")
    chart = objects.helm_chart("app", "ns", "HelmRepository/charts", "app", version=">=1.0.0",
                               values_files=["values.yaml", "prod.yaml"])  # fmt: skip
    assert chart["spec"]["sourceRef"] == {"kind": "HelmRepository", "name": "charts"}
    assert chart["spec"]["version"] == ">=1.0.0" and chart["spec"]["valuesFiles"] == [
        "values.yaml",
        "prod.yaml",
    ]
    git = objects.helm_chart("app", "ns", "gitrepository/src", "./charts/app", reconcile_strategy="Revision")
    assert (
        git["spec"]["sourceRef"]["kind"] == "GitRepository" and git["spec"]["reconcileStrategy"] == "Revision"
    )
    with pytest.raises(ValueError, match="<kind>/<name>"):
        objects.helm_chart("a", "ns", "charts", "app")


def test_kustomization_source_refs_and_dependencies() -> None:
    obj = objects.kustomization(
        "apps",
        "flux-system",
        "OCIRepository/podinfo.other",
        depends_on=["infra", "ops/db"],
        health_checks=["Deployment/web.default"],
        wait=True,
        target_namespace="apps",
    )
    spec = obj["spec"]
    assert spec["sourceRef"] == {"kind": "OCIRepository", "name": "podinfo", "namespace": "other"}
    assert spec["dependsOn"] == [{"name": "infra"}, {"name": "db", "namespace": "ops"}]
    assert spec["healthChecks"] == [
        {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web", "namespace": "default"}
    ]
    assert spec["wait"] is True and spec["targetNamespace"] == "apps" and spec["prune"] is False
    same_ns = objects.kustomization("a", "flux-system", "podinfo.flux-system")["spec"]["sourceRef"]
    assert same_ns == {"kind": "GitRepository", "name": "podinfo"}


def test_git_secret() -> None:
    s = objects.git_secret("c", "ns", "https://x", username="u", password="p")
    assert s["stringData"] == {"username": "u", "password": "p"}
    s = objects.git_secret("c", "ns", "ssh://git@x/y", private_key="KEY", known_hosts="x ssh-ed25519 AAA")
    assert s["stringData"] == {"identity": "KEY", "known_hosts": "x ssh-ed25519 AAA"}
    with pytest.raises(ValueError):
        objects.git_secret("c", "ns", "ssh://git@x/y")
    with pytest.raises(ValueError):
        objects.git_secret("c", "ns", "https://x")


def test_exported_drops_server_fields() -> None:
    live = {
        "apiVersion": "v1",
        "kind": "X",
        "metadata": {
            "name": "a",
            "namespace": "n",
            "uid": "u",
            "resourceVersion": "1",
            "generation": 3,
            "managedFields": [{}],
            "labels": {"l": "v"},
            "annotations": {
                "kubectl.kubernetes.io/last-applied-configuration": "{}",
                "reconcile.fluxcd.io/requestedAt": "t",
                "keep": "me",
            },
        },
        "spec": {"interval": "1m0s"},
        "status": {"conditions": []},
    }
    assert objects.exported(live) == {
        "apiVersion": "v1",
        "kind": "X",
        "metadata": {"name": "a", "namespace": "n", "labels": {"l": "v"}, "annotations": {"keep": "me"}},
        "spec": {"interval": "1m0s"},
    }


def test_to_yaml_documents_start_with_separator() -> None:
    text = objects.to_yaml([{"a": 1}, {"b": 2}])
    assert text.startswith("---\n") and text.count("---\n") == 2
    assert list(yaml.safe_load_all(text)) == [{"a": 1}, {"b": 2}]


def test_labels() -> None:
    assert objects.parse_labels(["a=b,c=d", "e=f"]) == {"a": "b", "c": "d", "e": "f"}
    with pytest.raises(ValueError):
        objects.parse_labels(["nope"])


def test_tree_reads_a_release_manifest_as_helm_applied_it() -> None:
    from tide.cli.commands.tree import manifest_refs

    manifest = (
        "---\n# Source: app/templates/svc.yaml\napiVersion: v1\nkind: Service\nmetadata:\n  name: web\n"
        "---\napiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\n  namespace: other\n"
        "---\napiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata:\n  name: reader\n"
        "---\n# empty\n"
    )
    assert manifest_refs(manifest, "apps") == [
        ("apps", "web", "", "Service"),
        ("other", "web", "apps", "Deployment"),
        ("", "reader", "rbac.authorization.k8s.io", "ClusterRole"),
    ]
