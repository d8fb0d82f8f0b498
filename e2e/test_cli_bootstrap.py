"""`tide bootstrap git` against the real Git server and control plane, twice (the second changes nothing)."""

from __future__ import annotations

import json

import pytest
import yaml

pytestmark = pytest.mark.e2e


def test_bootstrap_twice_is_idempotent(git_server, flux_controllers, tide, kubectl, namespace) -> None:  # type: ignore[no-untyped-def]
    app = (
        f"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: hello\n  namespace: {namespace}\n"
        "data:\n  greeting: hi\n"
    )
    repo = git_server.create_repo(f"boot-{namespace}", {"clusters/dev/apps/hello.yaml": app})
    flux_controllers()
    before = repo.head()
    argv = [
        "-n",
        namespace,
        "--timeout",
        "2m",
        "bootstrap",
        "git",
        "--url",
        repo.http_url,
        "--branch",
        "main",
        "--path",
        "clusters/dev",
        "-u",
        git_server.user,
        "-p",
        git_server.password,
        "--crds-only",
    ]
    try:
        res = tide(*argv)
        print(res.stderr)  # what a person reads (shown with -s)
        assert "committed and pushed" in res.stderr and "bootstrap finished" in res.stderr
        check_bootstrapped(repo, before, tide, kubectl, namespace, argv)
    finally:
        # Deleting the test namespace deletes the flux-system Kustomization, whose prune would delete the
        # CRDs it applied (as Flux's would): suspend it first so the rest of the suite keeps its CRDs.
        tide("-n", namespace, "suspend", "ks", "flux-system", code=None)


def check_bootstrapped(repo, before, tide, kubectl, namespace, argv) -> None:  # type: ignore[no-untyped-def]
    repo.git("pull", "-q", "origin", "main")
    head = repo.head()
    assert head != before
    files = sorted(p.name for p in (repo.work / "clusters" / "dev" / "flux-system").iterdir())
    assert files == ["gotk-components.yaml", "gotk-sync.yaml", "kustomization.yaml"]
    sync = list(yaml.safe_load_all((repo.work / "clusters/dev/flux-system/gotk-sync.yaml").read_text()))
    assert sync[0]["spec"]["interval"] == "1m0s" and sync[0]["spec"]["secretRef"] == {"name": "flux-system"}
    assert sync[1]["spec"] | {} == {
        "interval": "10m0s",
        "path": "./clusters/dev",
        "prune": True,
        "sourceRef": {"kind": "GitRepository", "name": "flux-system"},
    }
    components = list(
        yaml.safe_load_all((repo.work / "clusters/dev/flux-system/gotk-components.yaml").read_text())
    )
    assert {d["kind"] for d in components if d} == {"Namespace", "CustomResourceDefinition"}

    ks = json.loads(kubectl("-n", namespace, "get", "kustomization", "flux-system", "-o", "json").stdout)
    assert ks["status"]["lastAppliedRevision"] == f"main@sha1:{head}"
    assert json.loads(kubectl("-n", namespace, "get", "configmap", "hello", "-o", "json").stdout)["data"] == {
        "greeting": "hi"
    }
    ids = {e["id"] for e in ks["status"]["inventory"]["entries"]}
    assert f"{namespace}_flux-system_kustomize.toolkit.fluxcd.io_Kustomization" in ids

    # again: nothing to commit, same objects, Ready at the same commit
    res = tide(*argv)
    assert "already up to date" in res.stderr
    repo.git("pull", "-q", "origin", "main")
    assert repo.head() == head
    assert "Kustomization/" in tide("-n", namespace, "tree", "ks", "flux-system").stdout


def test_bootstrap_over_ssh(git_server, flux_controllers, tide, kubectl, namespace, tmp_path) -> None:  # type: ignore[no-untyped-def]
    repo = git_server.create_repo(f"boot-ssh-{namespace}")
    key = tmp_path / "identity"
    key.write_bytes(git_server.ssh_identity)
    key.chmod(0o600)
    flux_controllers()
    argv = ["-n", namespace, "--timeout", "2m", "bootstrap", "git", "--url", repo.ssh_url, "--branch", "main",
            "--path", "clusters/ssh", "--private-key-file", str(key), "--crds-only"]  # fmt: skip
    try:
        res = tide(*argv)
        assert "committed and pushed" in res.stderr and "bootstrap finished" in res.stderr
        secret = json.loads(kubectl("-n", namespace, "get", "secret", "flux-system", "-o", "json").stdout)
        assert set(secret["data"]) == {"identity", "known_hosts"}
        assert "already up to date" in tide(*argv).stderr
    finally:
        tide("-n", namespace, "suspend", "ks", "flux-system", code=None)
