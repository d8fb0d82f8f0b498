"""HelmRelease through `tide create|get|tree|reconcile hr`, from an OCI HelmRepository
(the chart pushed to the real docker-registry with the real `helm push`), values from a watched Secret,
a releaseName change, and `upgrade.strategy.name: RetryOnFailure`. Reuses test_helm_release's
chart, controllers and helpers."""

from __future__ import annotations

import json
from typing import Any

import pytest

from e2e import test_helm_release as release
from e2e.fixtures.helm_repo import helm
from e2e.fixtures.source import apply, condition, get, wait_for
from e2e.test_helm_release import HR, helm_list, wait_released
from e2e.test_helm_sources import helm_repository

pytestmark = pytest.mark.e2e

# test_helm_release's fixtures, used here by name.
app_chart = release.app_chart
helm_controllers = release.helm_controllers


def values_secret(name: str, text: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "labels": {"reconcile.fluxcd.io/watch": "Enabled"}},
        "stringData": {"values.yaml": text},
    }


def test_cli_release_from_an_oci_helm_repository_values_secret_rename_and_retry(  # type: ignore[no-untyped-def]
    cluster, app_chart, chart_repo, oci_registry, helm_controllers, tide, kubectl, namespace, tmp_path
):
    registry = oci_registry.plain
    helm("push", str(app_chart), f"oci://{registry.host}/{namespace}", "--plain-http", home=chart_repo.home)
    helm_controllers()
    apply(
        kubectl,
        namespace,
        helm_repository("oci-charts", f"oci://{registry.host}/{namespace}", type="oci", insecure=True),
        # Replicas 0 until the last step: Helm's waits need no Pods.
        values_secret("app-values", "replicas: 0\n"),
    )
    local_values = tmp_path / "values.yaml"
    local_values.write_text("nodeSelector: {}\n")
    ns = ["-n", namespace]
    # An hour's interval: only the Secret's watch label can bring the values change in.
    created = tide(
        *ns, "create", "hr", "app", "--source=HelmRepository/oci-charts", "--chart=app",
        "--chart-version=1.0.0", "--values-from=Secret/app-values", f"--values={local_values}",
        "--interval=1h",
    )  # fmt: skip
    assert "HelmRelease app is ready" in created.stdout + created.stderr
    hr = wait_released(kubectl, namespace, "app", 1)
    assert hr["spec"]["valuesFrom"] == [{"kind": "Secret", "name": "app-values"}]
    chart = get(kubectl, namespace, f"{namespace}-app", "helmchart")
    assert chart["spec"]["sourceRef"] == {"kind": "HelmRepository", "name": "oci-charts"}
    assert chart["status"]["artifact"]["revision"] == "1.0.0"
    assert get(kubectl, namespace, "app", "deployment")["spec"]["replicas"] == 0

    [row] = tide(*ns, "get", "hr").stdout.splitlines()[1:]
    assert row.split()[:4] == ["app", "1.0.0", "False", "True"], row
    tree = tide(*ns, "tree", "hr", "app").stdout.splitlines()
    assert tree[0] == f"HelmRelease/{namespace}/app"
    # status.inventory, as helm-controller writes it: the chart's crds/ included.
    assert {line.split(" ", 1)[-1] for line in tree[1:]} == {
        f"CustomResourceDefinition/widgets.{namespace}.tide.dev",
        f"Deployment/{namespace}/app",
        f"Service/{namespace}/app",
    }

    # A change in the watched Secret upgrades the release.
    apply(
        kubectl,
        namespace,
        values_secret("app-values", "replicas: 0\nnodeSelector: {tide.dev/from: secret}\n"),
    )
    hr = wait_released(kubectl, namespace, "app", 2)
    pod_spec = get(kubectl, namespace, "app", "deployment")["spec"]["template"]["spec"]
    assert pod_spec["nodeSelector"] == {"tide.dev/from": "secret"}

    reconciled = tide(*ns, "reconcile", "hr", "app", "--with-source")
    said = reconciled.stdout + reconciled.stderr
    annotated = [said.index(f"{kind} annotated") for kind in ("HelmRepository", "HelmChart", "HelmRelease")]
    assert annotated == sorted(annotated), said
    # A new releaseName uninstalls `app` and installs `renamed`.
    kubectl("patch", HR, "app", *ns, "--type=merge", "-p", '{"spec":{"releaseName":"renamed"}}')
    wait_for(
        kubectl,
        namespace,
        "app",
        lambda o: bool(
            (o.get("status") or {}).get("history")
            and o["status"]["history"][0]["name"] == "renamed"
            and (condition(o, "Ready") or {}).get("status") == "True"
            and o["status"].get("observedGeneration") == o["metadata"]["generation"]
        ),
        180,
        "release renamed Ready",
        HR,
    )
    assert [(r["name"], r["revision"]) for r in helm_list(cluster, namespace, tmp_path)] == [("renamed", "1")]
    assert get(kubectl, namespace, "renamed", "deployment")["spec"]["replicas"] == 0
    assert not get(kubectl, namespace, "app", "deployment")

    # RetryOnFailure: a Deployment that can never become ready fails every upgrade; none is rolled back,
    # and the next attempt comes after retryInterval (the HelmRelease's interval is 1h).
    retry = {
        "upgrade": {"timeout": "3s", "strategy": {"name": "RetryOnFailure", "retryInterval": "2s"}},
        "values": {"replicas": 1, "nodeSelector": {"tide.dev/none": "true"}},
    }
    kubectl("patch", HR, "app", *ns, "--type=merge", "-p", json.dumps({"spec": retry}))
    hr = wait_for(
        kubectl,
        namespace,
        "app",
        # Between attempts: during one, Ready is Unknown (its progress), as in Flux.
        lambda o: int((o.get("status") or {}).get("upgradeFailures") or 0) >= 2
        and (condition(o, "Ready") or {}).get("status") == "False",
        120,
        "two failed upgrades",
        HR,
    )
    assert (condition(hr, "Stalled") or {}).get("status") != "True"
    assert condition(hr, "Remediated") is None
    assert condition(hr, "Released")["reason"] == "UpgradeFailed"  # type: ignore[index]
    # Helm's storage: the first release still deployed, then failed upgrades, no rollback among them.
    secrets = json.loads(kubectl("get", "secret", *ns, "-l", "owner=helm,name=renamed", "-o", "json").stdout)[
        "items"
    ]
    statuses = sorted(
        (int(s["metadata"]["labels"]["version"]), s["metadata"]["labels"]["status"]) for s in secrets
    )
    assert statuses[0] == (1, "deployed") and len(statuses) >= 3, statuses
    assert all(status == "failed" for _, status in statuses[1:]), statuses
    events = json.loads(kubectl("get", "events", *ns, "-o", "json").stdout)["items"]
    reasons = {e["reason"] for e in events if e["involvedObject"]["kind"] == "HelmRelease"}
    assert "UpgradeFailed" in reasons and "RollbackSucceeded" not in reasons
