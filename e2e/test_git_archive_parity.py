"""The artifact built straight from fetched Git objects is byte-identical to the one built from a
checkout on disk, and trees the direct path cannot handle (symlinks) fall back to the disk."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tide.controllers.source import builder, git, refs
from tide.shared.api.source import GitRepositoryRef

pytestmark = pytest.mark.e2e

CASES = {
    "many-apps": ({f"app-{i}/{k}.yaml": f"kind: {k}\n" for i in range(20) for k in ("a", "b")}, None),
    "mixed": (
        {
            "README.md": "x\n", "img.png": "png", ".github/workflows/ci.yml": "on: push\n",
            "deep/a/b/c.yaml": "c: 1\n", "deep/.sourceignore": "*.txt\n!keep.txt\n", "deep/x.txt": "x",
            "deep/keep.txt": "k", "ünïcode/ß.yaml": "u: 1\n", "apps/.sops.yaml": "s", "Zed/a.yaml": "z",
            "a-b/x": "1", "a/x": "2", "a.b": "3", "run.sh": "#!/bin/sh\n",
        },
        None,
    ),
    "spec-ignore": ({"a/x.yaml": "1", "a/y.json": "2", "b/z.yaml": "3"}, "*.json\n/b/\n"),
    "root-sourceignore": ({".sourceignore": "secret/\n", "secret/k": "k", "ok/y": "y"}, None),
}  # fmt: skip


def resolve(url: str, auth: git.GitAuth) -> object:
    ref = GitRepositoryRef(branch="main")
    with git.Remote(url, auth, 60) as remote:
        return refs.choose(ref, remote.ls_remote(refs.ref_prefixes(ref)))


@pytest.mark.parametrize("case", sorted(CASES))
def test_direct_archive_equals_checkout_archive(git_server, tmp_path: Path, case: str):
    files, ignore = CASES[case]
    repo = git_server.create_repo(f"parity-{case}", files, sign=False)
    if case == "mixed":
        os.chmod(repo.work / "run.sh", 0o755)
        repo.git("add", "-A")
        repo.git("commit", "-q", "-m", "exec")
        repo.push()
    auth = git.GitAuth(username=git_server.user, password=git_server.password)
    target = resolve(repo.http_url, auth)

    direct = builder.DirectArchive(ignore, tmp_path / "direct.tar.gz", 0)
    _, done = builder.checkout(
        repo.http_url, auth, 60.0, target, tmp_path / "unused", git.CheckoutOptions(), direct
    )
    assert done is not None and not (tmp_path / "unused").exists()

    builder.checkout(repo.http_url, auth, 60.0, target, tmp_path / "tree", git.CheckoutOptions())
    disk = builder.archive(tmp_path / "tree", [], ignore, tmp_path / "disk.tar.gz", 0)
    assert done.archive == disk
    assert (tmp_path / "direct.tar.gz").read_bytes() == (tmp_path / "disk.tar.gz").read_bytes()


def test_symlinks_fall_back_to_a_checkout_on_disk(git_server, tmp_path: Path):
    repo = git_server.create_repo("parity-links", {"a/x": "1"}, sign=False)
    os.symlink("a/x", repo.work / "l")
    repo.git("add", "-A")
    repo.git("commit", "-q", "-m", "link")
    repo.push()
    auth = git.GitAuth(username=git_server.user, password=git_server.password)
    target = resolve(repo.http_url, auth)
    direct = builder.DirectArchive(None, tmp_path / "d.tar.gz", 0)
    _, done = builder.checkout(
        repo.http_url, auth, 60.0, target, tmp_path / "tree", git.CheckoutOptions(), direct
    )
    assert done is None
    assert (tmp_path / "tree" / "l").is_symlink()
