"""The post-render fork server and Helm's relay to it, as real processes: the relay's answer is the
plugin's own, failures come back as failures (with the plugin's error file), and without a server
the relay renders by itself."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tide.controllers.helm.postrender import PostRenderSpec, error_file, kustomizations
from tide.controllers.helm.sdk import plugin_manifest, postrender_server_command, postrender_socket
from tide.shared.api.helm import PostRenderer
from tide.shared.kustomize.build import find_kustomize

MANIFESTS = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: app\ndata:\n  a: b\n"
FORGED = "apiVersion: v1\nkind: Secret\nmetadata:\n  name: sh.helm.release.v1.app.v9\n"


def relay_command(home: Path) -> list[str]:
    """What Helm runs: plugin.yaml's command and args (the spec path is appended per call)."""
    site_dirs = os.pathsep.join(sys.path)
    manifest = yaml.safe_load(plugin_manifest(sys.executable, site_dirs, postrender_socket(home)))
    command = manifest["runtimeConfig"]["platformCommand"][0]
    return [command["command"], *command["args"]]


@pytest.fixture
def home(tmp_path: Path) -> Iterator[Path]:
    server = subprocess.Popen(postrender_server_command(tmp_path), stdin=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 30  # a guard against hanging, not a timing assertion
        while not postrender_socket(tmp_path).exists():
            assert server.poll() is None and time.monotonic() < deadline
            time.sleep(0.01)
        yield tmp_path
    finally:
        assert server.stdin is not None
        server.stdin.close()  # the server exits at the end of its stdin
        assert server.wait(30) == 0


def render(
    home: Path, manifests: str, name: str = "app", spec: PostRenderSpec | None = None
) -> subprocess.CompletedProcess[str]:
    spec_file = home / f"{name}.json"
    spec = spec or PostRenderSpec(name=name, namespace="apps", labels={"team": "a"})
    spec_file.write_text(spec.to_json())
    return subprocess.run(
        [*relay_command(home), str(spec_file)], input=manifests, capture_output=True, text=True, timeout=60
    )


def test_the_relay_answers_what_the_plugin_renders(home: Path) -> None:
    done = render(home, MANIFESTS)
    assert done.returncode == 0, done.stderr
    labels = yaml.safe_load(done.stdout)["metadata"]["labels"]
    assert labels == {
        "team": "a",
        "helm.toolkit.fluxcd.io/name": "app",
        "helm.toolkit.fluxcd.io/namespace": "apps",
    }


def test_each_post_render_runs_in_a_child_of_its_own(home: Path) -> None:
    # A failure in one leaves the server serving the next.
    refused = render(home, MANIFESTS + "---\n" + FORGED, name="forged")
    assert refused.returncode == 1
    assert "reserved for Helm's release storage" in refused.stderr
    assert "reserved for Helm's release storage" in error_file(str(home / "forged.json")).read_text()
    assert render(home, MANIFESTS).returncode == 0


def test_a_kustomize_post_renderer_runs_in_the_servers_child(home: Path) -> None:
    images = [PostRenderer.model_validate({"kustomize": {"images": [{"name": "nginx", "newTag": "1.27"}]}})]
    spec = PostRenderSpec(
        "app", "apps", kustomize=kustomizations(images), kustomize_binary=find_kustomize(), timeout=60.0
    )
    deployment = (
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: app}\nspec:\n  template:\n"
        "    spec:\n      containers: [{name: app, image: 'nginx:1.25'}]\n"
    )
    done = render(home, deployment, spec=spec)
    assert done.returncode == 0, done.stderr
    containers = yaml.safe_load(done.stdout)["spec"]["template"]["spec"]["containers"]
    assert containers[0]["image"] == "nginx:1.27"


def test_without_the_server_the_relay_renders_by_itself(tmp_path: Path) -> None:
    done = render(tmp_path, MANIFESTS)
    assert done.returncode == 0, done.stderr
    assert yaml.safe_load(done.stdout)["metadata"]["labels"]["helm.toolkit.fluxcd.io/name"] == "app"
    refused = render(tmp_path, MANIFESTS + "---\n" + FORGED, name="forged")
    assert refused.returncode == 1


def test_the_socket_is_the_engines_only(home: Path) -> None:
    assert postrender_socket(home).stat().st_mode & 0o777 == 0o600
