"""Submodules a repository names are hostile: the parent's credentials go only to the parent's
host, and nesting stops at MAX_SUBMODULE_DEPTH (a repository can name itself)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from dulwich.objects import Blob, Commit, Tree
from dulwich.repo import MemoryRepo

from tide.controllers.source import git
from tide.controllers.source.git import (
    MAX_SUBMODULE_DEPTH,
    CheckoutOptions,
    GitAuth,
    SubmoduleDepthExceeded,
    submodule_auth,
)
from tide.controllers.source.refs import Target

CREDS = GitAuth(username="u", password="p", bearer_token="t", cert_pem=b"c", key_pem=b"k", ca_pem=b"ca")


@pytest.mark.parametrize(
    ("url", "keeps"),
    [
        ("https://git.example.com/org/sub.git", True),
        ("https://GIT.example.com:443/other.git", True),
        ("https://evil.example/steal.git", False),
        ("https://git.example.com.evil.example/x.git", False),
        ("https://git.example.com:8443/x.git", False),
        ("http://git.example.com/x.git", False),
    ],
)
def test_credentials_go_only_to_the_parents_host(url: str, keeps: bool) -> None:
    auth = submodule_auth("https://git.example.com/org/app.git", CREDS, url)
    if keeps:
        assert auth is CREDS
    else:
        assert (auth.username, auth.password, auth.bearer_token, auth.cert_pem, auth.key_pem) == (None,) * 5
        assert auth.ca_pem == b"ca"


def _self_referencing_repo(url: str) -> tuple[MemoryRepo, Commit]:
    """A commit whose submodule 'sub' is (a commit of) a repository at url."""
    repo = MemoryRepo()
    gitmodules = Blob.from_string(f'[submodule "sub"]\n\tpath = sub\n\turl = {url}\n'.encode())
    tree = Tree()
    tree.add(b".gitmodules", 0o100644, gitmodules.id)
    tree.add(b"sub", 0o160000, b"1" * 40)
    commit = Commit()
    commit.tree, commit.message = tree.id, b"loop"
    commit.author = commit.committer = b"t <t@t>"
    commit.commit_time = commit.author_time = 0
    commit.commit_timezone = commit.author_timezone = 0
    for obj in (gitmodules, tree, commit):
        repo.object_store.add_object(obj)
    return repo, commit


class FakeRemote:
    opened: list[tuple[str, GitAuth]] = []

    def __init__(self, url: str, auth: GitAuth | None = None, timeout: float = 60.0) -> None:
        self.url, self.auth, self.timeout, self.round_trips = url, auth or GitAuth(), timeout, 0
        FakeRemote.opened.append((url, self.auth))

    def __enter__(self) -> FakeRemote:
        return self

    def __exit__(self, *exc: object) -> None:
        pass


def test_submodule_recursion_is_bounded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    url = "https://evil.example/loop.git"

    def fetch_commit(remote: Any, target: Any) -> tuple[MemoryRepo, Commit, None]:
        repo, commit = _self_referencing_repo(url)
        return repo, commit, None

    FakeRemote.opened = []
    monkeypatch.setattr(git, "Remote", FakeRemote)
    monkeypatch.setattr(git, "fetch_commit", fetch_commit)
    parent = FakeRemote("https://git.example.com/app.git", CREDS)
    with pytest.raises(SubmoduleDepthExceeded, match=f"more than {MAX_SUBMODULE_DEPTH} levels"):
        git.clone(
            parent,
            Target("branch", "main", "", ""),
            tmp_path / "co",
            CheckoutOptions(recurse_submodules=True),
        )
    nested = FakeRemote.opened[1:]
    assert len(nested) == MAX_SUBMODULE_DEPTH
    assert all(auth.password is None and auth.username is None for _, auth in nested)
