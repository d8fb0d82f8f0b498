"""`tide create/get/reconcile/suspend/resume/tree/diff/build/events` with the real controllers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.e2e


def configmap(name: str, **data: str) -> str:
    lines = "".join(f'  {k}: "{v}"\n' for k, v in data.items())
    return f"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\ndata:\n{lines}"


def test_full_cycle(git_server, flux_controllers, tide, kubectl, namespace, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    repo = git_server.create_repo(f"cli-{namespace}", {
        "deploy/a.yaml": configmap("a", color="blue"),
        "deploy/b.yaml": configmap("b", greeting="${greeting:=hello}"),
    })  # fmt: skip
    flux_controllers()
    ns = ["-n", namespace, "--timeout", "90s"]
    res = tide(*ns, "create", "source", "git", "repo", "--url", repo.public_http_url, "--branch", "main")
    assert "is ready" in res.stderr
    res = tide(
        *ns,
        "create",
        "kustomization",
        "app",
        "--source",
        "repo",
        "--path",
        "./deploy",
        "--prune",
        "--target-namespace",
        namespace,
    )
    assert "is ready" in res.stderr
    head = f"main@sha1:{repo.head()}"
    row = tide(*ns, "get", "ks", "app").stdout.splitlines()[1].split()
    assert row[:4] == ["app", head, "False", "True"]
    assert head in tide(*ns, "get", "sources", "git").stdout

    # a new commit, reconciled on demand with its source
    repo.commit({"deploy/a.yaml": configmap("a", color="green")})
    res = tide(*ns, "reconcile", "ks", "app", "--with-source")
    new_head = f"main@sha1:{repo.head()}"
    assert f"fetched revision {new_head}" in res.stderr and f"applied revision {new_head}" in res.stderr
    cm = json.loads(kubectl("-n", namespace, "get", "configmap", "a", "-o", "json").stdout)
    assert cm["data"] == {"color": "green"}

    # the inventory as a tree
    out = tide(*ns, "tree", "ks", "app").stdout.splitlines()
    assert out[0] == f"Kustomization/{namespace}/app"
    assert sorted(line[4:] for line in out[1:]) == [f"ConfigMap/{namespace}/a", f"ConfigMap/{namespace}/b"]

    # a local build like the controller's, then a diff of a local change against the cluster
    local = tmp_path / "deploy"
    local.mkdir()
    (local / "a.yaml").write_text(configmap("a", color="green"))
    (local / "b.yaml").write_text(configmap("b", greeting="${greeting:=hello}"))
    built = list(yaml.safe_load_all(tide(*ns, "build", "ks", "app", "--path", str(local)).stdout))
    assert {d["metadata"]["name"]: d["metadata"]["namespace"] for d in built} == {
        "a": namespace,
        "b": namespace,
    }
    assert built[0]["metadata"]["labels"]["kustomize.toolkit.fluxcd.io/name"] == "app"
    tide(*ns, "diff", "ks", "app", "--path", str(local), code=0)
    (local / "a.yaml").write_text(configmap("a", color="red"))
    (local / "b.yaml").unlink()
    (local / "c.yaml").write_text(configmap("c", x="1"))
    res = tide(*ns, "diff", "ks", "app", "--path", str(local), code=1)
    assert "-  color: green" in res.stdout and "+  color: red" in res.stdout
    assert f"ConfigMap/{namespace}/a drifted" in res.stderr
    assert f"ConfigMap/{namespace}/c created" in res.stderr
    assert f"ConfigMap/{namespace}/b deleted" in res.stderr

    # suspend, then resume waits for Ready
    tide(*ns, "suspend", "ks", "app")
    assert tide(*ns, "get", "ks", "app").stdout.splitlines()[1].split()[2] == "True"
    res = tide(*ns, "resume", "ks", "app")
    assert "reconciliation completed" in res.stderr

    # a broken commit: reconcile exits 1 and says why
    repo.commit({"deploy/kustomization.yaml": "resources:\n- a.yaml\n- missing.yaml\n"})
    res = tide(*ns, "reconcile", "ks", "app", "--with-source", code=1)
    assert "reconciliation failed" in res.stderr and "tide events" in res.stderr
    assert "False" in tide(*ns, "get", "ks", "--status-selector", "ready=false").stdout
    assert "Kustomization/app" in tide(*ns, "events", "--for", "Kustomization/app").stdout


def test_create_receiver_prints_webhook(notification_controller, tide, kubectl, namespace) -> None:  # type: ignore[no-untyped-def]
    endpoints = notification_controller()
    kubectl("-n", namespace, "create", "secret", "generic", "token", "--from-literal=token=s3cret")
    res = tide(
        "-n", namespace, "--timeout", "60s", "create", "receiver", "push", "--type", "generic",
        "--resource", "GitRepository/flux-system", "--secret-ref", "token",
    )  # fmt: skip
    assert "generated webhook URL /hook/" in res.stderr
    path = res.stderr.split("generated webhook URL ")[1].split()[0]
    assert endpoints.receiver_url
    assert path.startswith("/hook/") and len(path) == len("/hook/") + 64
