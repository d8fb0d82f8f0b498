"""The control plane is real: the scheduler, kwok, the garbage and namespace controllers all act."""

from __future__ import annotations

import json
import time

import pytest

pytestmark = pytest.mark.e2e

CRD = """
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: widgets.probe.tide.dev
spec:
  group: probe.tide.dev
  scope: Namespaced
  names: {plural: widgets, singular: widget, kind: Widget}
  versions:
    - name: v1
      served: true
      storage: true
      schema:
        openAPIV3Schema:
          type: object
          properties:
            spec:
              type: object
              properties:
                size: {type: integer, minimum: 1}
"""


def wait_for(check, timeout: float = 60, interval: float = 0.5):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        time.sleep(interval)


def test_deployment_becomes_available_on_a_fake_node(kubectl, namespace):
    kubectl("-n", namespace, "create", "deployment", "web", "--image=registry.invalid/web:1", "--replicas=2")
    kubectl("-n", namespace, "wait", "deployment/web", "--for=condition=Available", "--timeout=60s")
    pods = json.loads(kubectl("-n", namespace, "get", "pods", "-o", "json").stdout)["items"]
    assert len(pods) == 2
    assert all(p["status"]["phase"] == "Running" and p["spec"]["nodeName"] for p in pods)


def test_custom_resource_is_served_and_namespace_deletion_removes_it(kubectl, namespace):
    kubectl("apply", "--server-side", "-f", "-", input=CRD)
    kubectl("wait", "crd/widgets.probe.tide.dev", "--for=condition=Established", "--timeout=30s")
    kubectl(
        "-n",
        namespace,
        "apply",
        "-f",
        "-",
        input="apiVersion: probe.tide.dev/v1\nkind: Widget\nmetadata: {name: w1}\nspec: {size: 3}\n",
    )
    got = json.loads(kubectl("-n", namespace, "get", "widget", "w1", "-o", "json").stdout)
    assert got["spec"]["size"] == 3
    invalid = kubectl(
        "-n",
        namespace,
        "apply",
        "-f",
        "-",
        check=False,
        input="apiVersion: probe.tide.dev/v1\nkind: Widget\nmetadata: {name: w2}\nspec: {size: 0}\n",
    )
    assert invalid.returncode != 0 and "spec.size" in invalid.stderr

    kubectl("delete", "namespace", namespace, "--wait=true", "--timeout=60s")
    gone = kubectl("get", "namespace", namespace, check=False)
    assert gone.returncode != 0 and "NotFound" in gone.stderr


# kube-controller-manager's default --node-monitor-grace-period: a node silent for longer is NotReady
# when the node lifecycle controller runs.
NODE_MONITOR_GRACE_SECONDS = 50


def test_deployments_recover_after_kwok_misses_heartbeats_past_the_grace_period(empty_control_plane):
    """kwok stopped (as under CPU load) until its node has been silent for longer than the grace period:
    once kwok runs again, Deployments are Available (a new pod too), never stuck with Ready=False pods."""
    import datetime

    from e2e.cluster import NODE_NAME
    from e2e.fixtures.cluster import run_kubectl

    plane = empty_control_plane

    def kubectl(*args: str):  # type: ignore[no-untyped-def]
        return run_kubectl(plane.kubeconfig, *args)

    def silent_for() -> float:
        node = json.loads(kubectl("get", "node", NODE_NAME, "-o", "json").stdout)
        ready = next(c for c in node["status"]["conditions"] if c["type"] == "Ready")
        beat = datetime.datetime.fromisoformat(ready["lastHeartbeatTime"].replace("Z", "+00:00"))
        return (datetime.datetime.now(datetime.UTC) - beat).total_seconds()

    kubectl("create", "deployment", "web", "--image=registry.invalid/web:1", "--replicas=1")
    kubectl("wait", "deployment/web", "--for=condition=Available", "--timeout=60s")
    plane.pause("kwok")
    try:
        kubectl("scale", "deployment", "web", "--replicas=2")  # a pod kwok must start after it resumes
        wait_for(lambda: silent_for() > NODE_MONITOR_GRACE_SECONDS + 5, timeout=120, interval=1)
    finally:
        plane.resume("kwok")
    kubectl("wait", "deployment/web", "--for=condition=Available", "--timeout=90s")
    wait_for(lambda: json.loads(kubectl("get", "deployment", "web", "-o", "json").stdout)["status"]
             .get("readyReplicas") == 2, timeout=90)  # fmt: skip
    pods = json.loads(kubectl("get", "pods", "-o", "json").stdout)["items"]
    assert len(pods) == 2
    for pod in pods:
        ready = next(c for c in pod["status"]["conditions"] if c["type"] == "Ready")
        assert ready["status"] == "True", pod["status"]["conditions"]
