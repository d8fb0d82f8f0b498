"""Hostile repositories against the kustomize controller: each build fails with BuildFailed and the
controller goes on with the others."""

from __future__ import annotations

from pathlib import Path

import pytest

from e2e.fixtures.kustomize import get_obj, git_source, kustomization, wait_ks
from e2e.fixtures.source import apply, condition

pytestmark = pytest.mark.e2e


def configmap(name: str, **data: str) -> str:
    lines = "".join(f'  {k}: "{v}"\n' for k, v in data.items())
    return f"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\ndata:\n{lines}"


ALIAS_BOMB = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "hostile" / "alias-bomb.yaml"


def test_hostile_builds_fail_and_the_controller_keeps_working(  # type: ignore[no-untyped-def]
    git_server, flux_controllers, kubectl, namespace
) -> None:
    """An alias bomb hits the build memory limit; a generator reading a file of the controller's host
    is refused by kustomize's root-only loading; a good Kustomization in the same controller applies."""
    leak = (
        "resources: [cm.yaml]\ngenerators:\n- |\n  apiVersion: builtin\n  kind: SecretGenerator\n"
        "  metadata:\n    name: leak\n  files:\n  - /etc/passwd\n"
    )
    repo = git_server.create_repo(f"hostile-{namespace}", {
        "bomb/kustomization.yaml": "resources: [bomb.yaml]\n",
        "bomb/bomb.yaml": ALIAS_BOMB.read_text(),
        "leak/kustomization.yaml": leak,
        "leak/cm.yaml": configmap("leak-cm", v="1"),
        "ok/cm.yaml": configmap("ok", v="1"),
    })  # fmt: skip
    flux_controllers(f"--build-memory-limit={256 << 20}")
    apply(kubectl, namespace, git_source("repo", repo.public_http_url),
          kustomization("bomb", path="./bomb", targetNamespace=namespace),
          kustomization("leak", path="./leak", targetNamespace=namespace))  # fmt: skip
    ks = wait_ks(kubectl, namespace, "bomb", status="False", contains="memory limit of 256 MiB")
    assert condition(ks, "Ready")["reason"] == "BuildFailed"
    ks = wait_ks(kubectl, namespace, "leak", status="False", contains="/etc/passwd")
    assert condition(ks, "Ready")["reason"] == "BuildFailed"
    apply(kubectl, namespace, kustomization("ok", path="./ok", targetNamespace=namespace))
    wait_ks(kubectl, namespace, "ok")
    assert get_obj(kubectl, namespace, "configmap", "ok")["data"] == {"v": "1"}
