"""`make demo` end to end: the demo converges, and a pushed replica count reaches the cluster at once."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from e2e.cluster import ROOT

pytestmark = pytest.mark.e2e


def demo(command: str, *args: str, home: Path, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "demo", command, *args],
        cwd=ROOT, capture_output=True, text=True, timeout=timeout,
        env={**os.environ, "TIDE_DEMO_HOME": str(home)},
    )  # fmt: skip


def test_demo_converges_and_a_push_scales_the_deployment(cluster, kubectl, tmp_path):
    home = tmp_path / "demo"
    try:
        up = demo("up", f"--kubeconfig={cluster.kubeconfig}", home=home)
        assert up.returncode == 0, up.stdout + up.stderr
        assert "converged from Git" in up.stdout
        deploy = json.loads(kubectl("-n", "demo", "get", "deploy", "web", "-o", "json").stdout)
        assert deploy["spec"]["replicas"] == 1
        settings = json.loads(kubectl("-n", "demo", "get", "cm", "web-settings", "-o", "json").stdout)
        assert settings["data"] == {"greeting": "Hello from Tide", "cluster": "local"}

        repo = home / "repo"
        manifest = repo / "apps/demo/deployment.yaml"
        manifest.write_text(manifest.read_text().replace("replicas: 1", "replicas: 3"))
        subprocess.run(["git", "-C", str(repo), "commit", "-qam", "Scale web to 3"], check=True)
        subprocess.run(["git", "-C", str(repo), "push", "-q"], check=True, timeout=60)
        # The post-receive hook calls the Receiver: no interval to wait out (the apps interval is 10m).
        deadline = time.monotonic() + 60
        while json.loads(kubectl("-n", "demo", "get", "deploy", "web", "-o", "json").stdout)["spec"][
            "replicas"
        ] != 3:
            assert time.monotonic() < deadline, "the pushed replica count did not reach the cluster"
            time.sleep(0.3)
        kubectl("-n", "demo", "wait", "deploy/web", "--for=condition=Available", "--timeout=60s")
    finally:
        # Suspended first, so deleting flux-system does not prune the CRDs it applied from Git.
        kubectl("-n", "flux-system", "patch", "kustomization", "flux-system", "--type=merge",
                "-p", '{"spec":{"suspend":true}}', check=False)  # fmt: skip
        kubectl("-n", "flux-system", "delete", "kustomization", "apps", "--timeout=60s", check=False)
        kubectl("-n", "flux-system", "delete", "kustomizations,gitrepositories,receivers", "--all",
                "--wait=true", "--timeout=60s", check=False)  # fmt: skip
        demo("down", "--keep-cluster", home=home)
        kubectl("delete", "namespace", "flux-system", "demo", "--wait=false", check=False)
