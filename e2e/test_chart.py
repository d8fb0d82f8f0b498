"""The Helm chart: `helm lint` passes; its rendering applies to the real control plane (SSA dry-run)."""

from __future__ import annotations

import subprocess

import pytest
import yaml

from e2e.cluster import BIN, ROOT

pytestmark = pytest.mark.e2e

CHART = ROOT / "charts" / "tide"
HELM = BIN / "helm"


def helm(*args: str) -> str:
    if not HELM.exists():
        pytest.fail(f"{HELM} is missing: run `tools/build.sh helm`")
    res = subprocess.run([str(HELM), *args], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, f"helm {' '.join(args)} failed:\n{res.stdout}\n{res.stderr}"
    return res.stdout


VARIANTS = {
    "defaults": [],
    "everything": [
        "--set",
        "helmController.enabled=true",
        "--set",
        "sourceController.persistence.enabled=true",
        "--set",
        "serviceMonitor.enabled=true",
        "--set",
        "createNamespace=true",
        "--set",
        "commonLabels.team=platform",
        "--set",
        "image.tag=dev",
    ],
    "minimal": [
        "--set",
        "networkPolicy.enabled=false",
        "--set",
        "notificationController.enabled=false",
        "--set",
        "kustomizeController.clusterAdmin=false",
        "--set",
        "leaderElection=false",
    ],
}


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_helm_lint(variant: str) -> None:
    out = helm("lint", str(CHART), *VARIANTS[variant])
    assert "0 chart(s) failed" in out


def render(namespace: str, *extra: str) -> list[dict]:
    out = helm("template", "tide", str(CHART), "--namespace", namespace, *extra)
    return [d for d in yaml.safe_load_all(out) if d]


def test_rendering_applies_server_side(namespace, kubectl) -> None:
    docs = render(namespace)
    kinds = sorted({d["kind"] for d in docs})
    assert kinds == [
        "ClusterRole",
        "ClusterRoleBinding",
        "Deployment",
        "NetworkPolicy",
        "Role",
        "RoleBinding",
        "Service",
        "ServiceAccount",
    ]
    text = "".join("---\n" + yaml.safe_dump(d) for d in docs)
    res = kubectl("apply", "--server-side", "--dry-run=server", "--field-manager=flux", "-f", "-", input=text)
    assert res.stdout.count("serverside-applied") == len(docs), res.stdout


def test_everything_variant_applies_except_servicemonitor(namespace, kubectl) -> None:
    """ServiceMonitor needs the Prometheus Operator CRDs, which the test cluster does not have."""
    docs = [
        d
        for d in render(namespace, *VARIANTS["everything"])
        if d["kind"] not in ("ServiceMonitor", "Namespace")
    ]
    text = "".join("---\n" + yaml.safe_dump(d) for d in docs)
    kubectl("apply", "--server-side", "--dry-run=server", "-f", "-", input=text)


def test_deployments_carry_flux_flags_probes_and_least_privilege(namespace) -> None:
    docs = render(namespace)
    deployments = {d["metadata"]["name"]: d for d in docs if d["kind"] == "Deployment"}
    assert set(deployments) == {
        "source-controller", "kustomize-controller", "notification-controller", "helm-controller"
    }  # fmt: skip
    for name, d in deployments.items():
        c = d["spec"]["template"]["spec"]["containers"][0]
        assert c["command"] == [f"tide-{name}"]
        assert "--enable-leader-election" in c["args"] and "--health-addr=:9440" in c["args"]
        assert c["livenessProbe"]["httpGet"]["path"] == "/healthz"
        assert c["readinessProbe"]["httpGet"]["path"] == "/readyz"
        assert c["securityContext"]["readOnlyRootFilesystem"] is True
        assert c["resources"]["limits"]["memory"]
        assert d["spec"]["template"]["spec"]["serviceAccountName"] == name
    src_args = deployments["source-controller"]["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "--storage-adv-addr=source-controller.$(RUNTIME_NAMESPACE).svc.cluster.local." in src_args
    services = {d["metadata"]["name"]: d["spec"]["ports"][0] for d in docs if d["kind"] == "Service"}
    assert (
        services["source-controller"]["port"] == 80 and services["source-controller"]["targetPort"] == "http"
    )
    assert services["webhook-receiver"]["targetPort"] == "http-webhook"
    assert services["notification-controller"]["targetPort"] == "http"
    # only the kustomize and helm controllers are bound to cluster-admin, as Flux's
    admin = [d for d in docs if d["kind"] == "ClusterRoleBinding" and d["roleRef"]["name"] == "cluster-admin"]
    assert {s["name"] for d in admin for s in d["subjects"]} == {"kustomize-controller", "helm-controller"}
    source_role = next(
        d for d in docs if d["kind"] == "ClusterRole" and d["metadata"]["name"].startswith("source-")
    )
    groups = {g for r in source_role["rules"] for g in r["apiGroups"]}
    assert "kustomize.toolkit.fluxcd.io" not in groups and "*" not in groups
