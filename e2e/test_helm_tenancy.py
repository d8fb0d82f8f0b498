"""HelmReleases of a tenant, as Flux's multi-tenancy has them: Helm acts as the release's
ServiceAccount (impersonated through the API server, every request of the real Helm), so RBAC
decides what a chart may install; kubeconfig Secrets that would run commands are refused."""

from __future__ import annotations

import base64
from typing import Any

import pytest
import yaml

from e2e.fixtures.helm_repo import write_chart
from e2e.fixtures.source import apply, condition
from e2e.test_helm_release import helm_controllers, helm_list, wait_condition, wait_released  # noqa: F401
from e2e.test_helm_sources import served_repository

pytestmark = pytest.mark.e2e

CLUSTER_ROLE = """apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata:
  name: {{ .Release.Namespace }}-escalate
rules: []
"""

EXEC_KUBECONFIG = """apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "https://127.0.0.1:1"}}]
users: [{name: u, user: {exec: {apiVersion: client.authentication.k8s.io/v1, command: /bin/sh,
  args: ["-c", "touch /tmp/pwned"]}}}]
contexts: [{name: c, context: {cluster: c, user: u}}]
current-context: c
"""


def kubeconfig_secret(name: str, kubeconfig: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name},
        "data": {"value": base64.b64encode(kubeconfig.encode()).decode()},
    }


def release(name: str, chart: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "helm.toolkit.fluxcd.io/v2",
        "kind": "HelmRelease",
        "metadata": {"name": name},
        "spec": {
            "interval": "10m",
            "timeout": "1m",
            "chart": {"spec": {"chart": chart, "sourceRef": {"kind": "HelmRepository", "name": "charts"}}},
            **spec,
        },
    }


def tenant_rbac(namespace: str) -> list[dict[str, Any]]:
    """What `flux create tenant --cluster-role=admin` gives a tenant in its namespace."""
    return [
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "tenant"}},
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": {"name": "tenant-reconciler"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "admin"},
            "subjects": [{"kind": "ServiceAccount", "name": "tenant", "namespace": namespace}],
        },
    ]


def test_tenant_releases_act_as_their_service_account(  # type: ignore[no-untyped-def]
    cluster, chart_repo, chart_server, helm_controllers, kubectl, namespace, tmp_path  # noqa: F811
):
    chart_repo.package(write_chart(tmp_path / "src", "tenantapp", "1.0.0"))
    chart_repo.package(
        write_chart(tmp_path / "src", "clusterwide", "1.0.0", templates={"role.yaml": CLUSTER_ROLE})
    )
    # Releases that name no ServiceAccount act as the tenant's (Flux's lockdown).
    helm_controllers("--default-service-account=tenant")
    apply(
        kubectl,
        namespace,
        *tenant_rbac(namespace),
        *served_repository(chart_server, chart_repo),
        kubeconfig_secret("hostile", EXEC_KUBECONFIG),
        # The cluster's own admin kubeconfig (embedded certificates) stands in for a remote one:
        # Helm's requests go out on the Secret's connection, impersonating the tenant there.
        kubeconfig_secret("remote", cluster.kubeconfig.read_text()),
        release("app", "tenantapp", serviceAccountName="tenant"),
        release("escalate", "clusterwide"),
        release("remote", "tenantapp", kubeConfig={"secretRef": {"name": "remote", "key": "value"}}),
        release("exec", "tenantapp", kubeConfig={"secretRef": {"name": "hostile"}}),
    )
    # Installed into the tenant's namespace as the tenant: the release's objects and its storage.
    wait_released(kubectl, namespace, "app", 1)
    cm = yaml.safe_load(kubectl("get", "configmap", "app-cm", "-n", namespace, "-o", "yaml").stdout)
    assert cm["data"]["color"] == "blue"
    wait_released(kubectl, namespace, "remote", 1)
    releases = helm_list(cluster, namespace, tmp_path)
    assert sorted((r["name"], r["status"]) for r in releases) == [("app", "deployed"), ("remote", "deployed")]

    # A ClusterRole is beyond the tenant's RBAC (the default ServiceAccount's): the API server's
    # Forbidden, naming it.
    hr = wait_condition(kubectl, namespace, "escalate", "Ready", status="False", reason="InstallFailed")
    message = condition(hr, "Ready")["message"]  # type: ignore[index]
    assert "forbidden" in message and f"{namespace}-escalate" in message, message
    assert f"system:serviceaccount:{namespace}:tenant" in message, message
    found = kubectl("get", "clusterrole", f"{namespace}-escalate", "--ignore-not-found", "-o", "name")
    assert found.stdout.strip() == ""

    # A kubeconfig Secret that would run a command in the controller is refused.
    hr = wait_condition(kubectl, namespace, "exec", "Ready", status="False", reason="RESTClientError")
    message = condition(hr, "Ready")["message"]  # type: ignore[index]
    assert "exec credential plugin" in message and "--insecure-kubeconfig-exec" in message, message
    assert not hr["status"].get("history")
