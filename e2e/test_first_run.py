"""A new user's first command, each on a control plane of its own that has never seen Tide's CRDs
(the session's cluster has every CRD installed by a fixture, so it cannot show a first-run failure):
`make demo` (twice, then `make demo-down`), `tide install`, and `tide bootstrap` with the controllers
started before the CRDs exist."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from e2e.cluster import ROOT, ControlPlane, free_port
from e2e.fixtures.cli import run_tide
from e2e.fixtures.cluster import run_kubectl
from e2e.fixtures.controllers import ControllerProcess

pytestmark = pytest.mark.e2e


def demo(command: str, *args: str, home: Path, timeout: float = 420) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "demo", command, *args],
        cwd=ROOT, capture_output=True, text=True, timeout=timeout,
        env={**os.environ, "TIDE_DEMO_HOME": str(home)},
    )  # fmt: skip


def wait_until(check, timeout: float, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out after {timeout:.0f}s waiting for {what}"
        time.sleep(0.3)


def test_make_demo_on_a_fresh_machine(tmp_path: Path) -> None:
    """`make demo` starts its own control plane (none runs), converges, takes a push at once; a second
    `make demo` on the same plane converges again; `make demo-down` stops everything."""
    home, plane_dir = tmp_path / "demo", tmp_path / "plane"
    cluster = ["--cluster-dir", str(plane_dir)]
    kubeconfig = plane_dir / "kubeconfig"

    def kubectl(*args: str) -> dict:  # type: ignore[type-arg]
        return json.loads(run_kubectl(kubeconfig, *args, "-o", "json").stdout)  # type: ignore[no-any-return]

    try:
        first = demo("up", *cluster, home=home)
        assert first.returncode == 0, first.stdout + first.stderr
        assert "converged from Git" in first.stdout
        assert kubectl("-n", "demo", "get", "deploy", "web")["spec"]["replicas"] == 1
        settings = kubectl("-n", "demo", "get", "cm", "web-settings")
        assert settings["data"] == {"greeting": "Hello from Tide", "cluster": "local"}
        # The HelmRelease from the demo's own chart repository (nginx), released by the helm controller.
        hello = kubectl("-n", "demo", "get", "helmrelease", "hello")
        ready = [c for c in hello["status"]["conditions"] if c["type"] == "Ready"]
        assert ready and ready[0]["status"] == "True", hello["status"]
        assert hello["status"]["history"][0]["chartVersion"] == "1.0.0"
        assert kubectl("-n", "demo", "get", "cm", "hello")["data"] == {"greeting": "Hello from Helm"}
        assert kubectl("-n", "demo", "get", "deploy", "hello")["spec"]["replicas"] == 1
        logs = home / "logs"
        for name in ("source", "kustomize", "helm", "notification"):
            log = (logs / f"{name}-controller.log").read_text()
            assert "is not installed" not in log and "no resource for" not in log, f"{name}:\n{log[-3000:]}"

        repo = home / "repo"
        manifest = repo / "apps/demo/deployment.yaml"
        manifest.write_text(manifest.read_text().replace("replicas: 1", "replicas: 3"))
        subprocess.run(["git", "-C", str(repo), "commit", "-qam", "Scale web to 3"], check=True)
        subprocess.run(["git", "-C", str(repo), "push", "-q"], check=True, timeout=60)
        # The post-receive hook calls the Receiver: no interval to wait out (the apps interval is 10m).
        wait_until(lambda: kubectl("-n", "demo", "get", "deploy", "web")["spec"]["replicas"] == 3, 90,
                   "the pushed replica count in the cluster")  # fmt: skip

        # Again on the same plane: a new Git server and repository replace the first demo's.
        second = demo("up", *cluster, home=home)
        assert second.returncode == 0, second.stdout + second.stderr
        assert "converged from Git" in second.stdout
        assert kubectl("-n", "demo", "get", "deploy", "web")["spec"]["replicas"] == 1
    finally:
        down = demo("down", *cluster, home=home)
    assert down.returncode == 0, down.stdout + down.stderr
    assert not home.exists() and not plane_dir.exists()
    assert not ControlPlane(state=plane_dir, kubeconfig=kubeconfig).running()


def test_tide_install_on_an_empty_control_plane(empty_control_plane: ControlPlane) -> None:
    kubeconfig = empty_control_plane.kubeconfig
    res = run_tide(kubeconfig, "install", "--timeout", "3m")
    assert "CRDs established" in res.stderr and "install finished" in res.stderr
    for name in ("source-controller", "kustomize-controller", "notification-controller", "helm-controller"):
        got = run_kubectl(kubeconfig, "-n", "flux-system", "get", "deploy", name, "-o", "json")
        deploy = json.loads(got.stdout)
        assert deploy["status"].get("readyReplicas") == 1
    assert "all checks passed" in run_tide(kubeconfig, "check").stderr


def test_tide_bootstrap_with_controllers_started_before_the_crds(
    empty_control_plane: ControlPlane, git_server: Any, tmp_path: Path
) -> None:
    """Controllers started on a cluster without Tide's CRDs say which CRD is missing (one log line
    each, and /readyz), then `tide bootstrap --crds-only` installs them and everything converges."""
    kubeconfig = empty_control_plane.kubeconfig
    storage = f"127.0.0.1:{free_port()}"
    common = [f"--kubeconfig={kubeconfig}", "--watch-all-namespaces=true"]
    controllers = {
        "source": ControllerProcess("source", [*common, f"--storage-path={tmp_path / 'storage'}",
                                               f"--storage-addr={storage}", f"--storage-adv-addr={storage}"],
                                    tmp_path / "source.log"),
        "kustomize": ControllerProcess("kustomize", [*common, f"--source-storage-addr={storage}"],
                                       tmp_path / "kustomize.log"),
    }  # fmt: skip
    missing = {
        "source": "gitrepositories.source.toolkit.fluxcd.io",
        "kustomize": "kustomizations.kustomize.toolkit.fluxcd.io",
    }
    try:
        for controller in controllers.values():
            controller.spawn()
        for name, controller in controllers.items():
            wait_until(lambda c=controller, n=name: missing[n] in (c.readyz() or ""), 60,
                       f"the {name} controller's /readyz to name {missing[name]}")  # fmt: skip
            assert "tide install --crds-only" in (controller.readyz() or "")

        app = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: hello\n  namespace: default\n"
        repo = git_server.create_repo(f"first-run-{free_port()}", {"clusters/dev/apps/hello.yaml": app})
        res = run_tide(kubeconfig, "--timeout", "3m", "bootstrap", "git", "--url", repo.http_url,
                       "--branch", "main", "--path", "clusters/dev", "-u", git_server.user,
                       "-p", git_server.password, "--crds-only")  # fmt: skip
        assert "bootstrap finished" in res.stderr
        run_kubectl(kubeconfig, "-n", "default", "get", "configmap", "hello")
        for name, controller in controllers.items():
            assert controller.readyz() is None, f"{name}: {controller.readyz()}"
            log = controller.log()
            said = [json.loads(line)["msg"] for line in log.splitlines() if "is not installed" in line]
            # One line per missing CRD (a controller also watches other kinds), never a stream.
            assert any(missing[name] in msg for msg in said), f"{name}:\n{log[-3000:]}"
            assert len(said) == len(set(said)), f"{name} repeated itself:\n{log[-3000:]}"
            assert "no resource for" not in log and "interrupted" not in log, f"{name}:\n{log[-3000:]}"
    finally:
        # Suspended first: deleting flux-system must not prune the CRDs while the controllers run.
        run_kubectl(kubeconfig, "-n", "flux-system", "patch", "kustomization", "flux-system",
                    "--type=merge", "-p", '{"spec":{"suspend":true}}', check=False)  # fmt: skip
        for controller in controllers.values():
            controller.stop()
        if any(c.proc and c.proc.returncode not in (0, None) for c in controllers.values()):
            for name, controller in controllers.items():
                print(f"--- {name} controller log ---\n{controller.log()[-6000:]}")
