"""What goes into a GitRepository artifact: ignore rules, includes, sparse checkout, submodules,
the size limit; read back through the shared artifact client from the real artifact server."""

from __future__ import annotations

from pathlib import Path

import pytest

from e2e.fixtures.source import (
    apply,
    condition,
    gitrepository,
    request_reconcile,
    wait_failing,
    wait_for,
    wait_ready,
)
from tide.shared.artifact import ArtifactDigestMismatch, ArtifactNotFound, fetch_artifact

pytestmark = pytest.mark.e2e


def files(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*") if not p.is_dir()}


async def artifact_files(obj: dict, dest: Path) -> set[str]:
    artifact = obj["status"]["artifact"]
    return files(await fetch_artifact(artifact["url"], artifact["digest"], dest))


TREE = {
    "deploy/app.yaml": "kind: ConfigMap\n",
    "deploy/notes.md": "notes\n",
    "deploy/logo.png": b"\x89PNG",
    ".github/workflows/ci.yaml": "on: push\n",
    "src/main.go": "package main\n",
    "src/.sourceignore": "*.go\n",
    "README.md": "# readme\n",
}


async def test_ignore_include_and_sparse(git_server, source_controller, kubectl, namespace, tmp_path):
    lib = git_server.create_repo(f"lib-{namespace}", {"deploy/base/lib.yaml": "lib: 1\n", "other.txt": "x\n"})
    app = git_server.create_repo(f"app-{namespace}", TREE)
    source_controller()
    apply(
        kubectl,
        namespace,
        gitrepository("lib", lib.public_http_url),
        gitrepository("defaults", app.public_http_url),
        gitrepository("spec-ignore", app.public_http_url, ignore="/*\n!/deploy\n/deploy/**/*.md\n"),
        gitrepository(
            "include",
            app.public_http_url,
            ignore="src/\n",
            include=[{"repository": {"name": "lib"}, "fromPath": "deploy", "toPath": "vendor/lib"}],
        ),
        gitrepository("sparse", app.public_http_url, sparseCheckout=["deploy"]),
        gitrepository(
            "bad-include",
            app.public_http_url,
            include=[{"repository": {"name": "lib"}, "toPath": "../../escape"}],
        ),
        gitrepository("missing-include", app.public_http_url, include=[{"repository": {"name": "nope"}}]),
    )
    # Defaults drop CI config and images, but a .sourceignore (in src/) replaces the defaults.
    obj = wait_ready(kubectl, namespace, "defaults")
    got = await artifact_files(obj, tmp_path / "defaults")
    assert got == {
        "deploy/app.yaml",
        "deploy/notes.md",
        "deploy/logo.png",
        ".github/workflows/ci.yaml",
        "src/.sourceignore",
        "README.md",
    }
    obj = wait_ready(kubectl, namespace, "spec-ignore")
    assert await artifact_files(obj, tmp_path / "spec") == {"deploy/app.yaml", "deploy/logo.png"}
    assert obj["status"]["observedIgnore"] == "/*\n!/deploy\n/deploy/**/*.md\n"

    obj = wait_ready(kubectl, namespace, "include")
    got = await artifact_files(obj, tmp_path / "include")
    assert "vendor/lib/base/lib.yaml" in got and "vendor/lib/other.txt" not in got
    assert not any(p.startswith("src/") for p in got)
    lib_obj = wait_ready(kubectl, namespace, "lib")
    assert obj["status"]["includedArtifacts"][0]["digest"] == lib_obj["status"]["artifact"]["digest"]

    obj = wait_ready(kubectl, namespace, "sparse")
    assert await artifact_files(obj, tmp_path / "sparse") == {"deploy/app.yaml", "deploy/notes.md"}

    obj = wait_for(
        kubectl,
        namespace,
        "bad-include",
        lambda o: (condition(o, "Stalled") or {}).get("status") == "True",
        what="Stalled",
    )
    assert "invalid toPath '../../escape'" in condition(obj, "Stalled")["message"]
    obj = wait_failing(
        kubectl,
        namespace,
        "missing-include",
        "IncludeUnavailable",
        "True",
        contains="could not get resource for include 'nope'",
    )

    # A new artifact of the included repository rebuilds the including one (no request needed).
    lib.commit({"deploy/base/lib.yaml": "lib: 2\n"}, "lib 2")
    request_reconcile(kubectl, namespace, "lib")
    lib_obj = wait_ready(kubectl, namespace, "lib", f"main@sha1:{lib.head()}")
    wait_for(
        kubectl,
        namespace,
        "include",
        lambda o: o["status"]["includedArtifacts"][0]["digest"] == lib_obj["status"]["artifact"]["digest"],
        what="include refreshed",
    )


async def test_submodules_and_size_limit(git_server, source_controller, kubectl, namespace, tmp_path):
    sub = git_server.create_repo(f"sub-{namespace}", {"sub.yaml": "sub: 1\n"})
    parent = git_server.create_repo(f"parent-{namespace}", {"big.bin": b"x" * 4000})
    parent.git(
        "-c", "protocol.file.allow=always", "submodule", "add", "-q", sub.public_http_url, "modules/sub"
    )
    parent.git("commit", "-q", "-m", "add submodule")
    parent.push()
    source_controller("--artifact-max-size=3000")
    apply(
        kubectl,
        namespace,
        gitrepository("with-submodules", parent.public_http_url, recurseSubmodules=True, ignore="*.bin\n"),
        gitrepository("without-submodules", parent.public_http_url, ignore="*.bin\n"),
        gitrepository("too-big", parent.public_http_url),
    )
    obj = wait_ready(kubectl, namespace, "with-submodules")
    assert "modules/sub/sub.yaml" in await artifact_files(obj, tmp_path / "with")
    assert obj["status"]["observedRecurseSubmodules"] is True
    obj = wait_ready(kubectl, namespace, "without-submodules")
    assert "modules/sub/sub.yaml" not in await artifact_files(obj, tmp_path / "without")
    obj = wait_failing(kubectl, namespace, "too-big", contains="exceeds the limit of 3000 bytes")


async def test_artifact_client_errors(git_server, source_controller, kubectl, namespace, tmp_path):
    repo = git_server.create_repo(f"client-{namespace}")
    controller = source_controller()
    apply(kubectl, namespace, gitrepository("app", repo.public_http_url))
    artifact = wait_ready(kubectl, namespace, "app")["status"]["artifact"]
    with pytest.raises(ArtifactNotFound):
        await fetch_artifact(
            controller.artifact_url("gitrepository/none/none/x.tar.gz"), artifact["digest"], tmp_path / "a"
        )
    with pytest.raises(ArtifactDigestMismatch):
        await fetch_artifact(artifact["url"], "sha256:" + "0" * 64, tmp_path / "b")
    assert not (tmp_path / "b").exists()
    assert files(await fetch_artifact(artifact["url"], artifact["digest"], tmp_path / "c")) == {"README.md"}
