"""PGP verification of commits and tags signed by the real gpg."""

from __future__ import annotations

import pytest

from e2e.fixtures.source import (
    apply,
    condition,
    get,
    gitrepository,
    request_reconcile,
    secret,
    wait_failing,
    wait_ready,
)

pytestmark = pytest.mark.e2e


def test_signed_commits_and_tags(git_server, source_controller, kubectl, namespace):
    repo = git_server.create_repo(f"signed-{namespace}", {"a.yaml": "a: 1\n"}, sign=True)
    signed = repo.head()
    repo.tag("v1.0.0", "signed release", sign=True)
    repo.tag("v1.0.1", "unsigned release")
    source_controller()
    keys = secret("keys", {"author.asc": git_server.gpg_public_key})
    other = secret("other-keys", {"other.asc": git_server.other_gpg_public_key()})
    verify = lambda mode, sec="keys": {"verify": {"mode": mode, "secretRef": {"name": sec}}}  # noqa: E731
    apply(
        kubectl,
        namespace,
        keys,
        other,
        gitrepository("head", repo.public_http_url, **verify("HEAD")),
        gitrepository("tag", repo.public_http_url, {"tag": "v1.0.0"}, **verify("Tag")),
        gitrepository("tag-and-head", repo.public_http_url, {"tag": "v1.0.0"}, **verify("TagAndHEAD")),
        gitrepository("unsigned-tag", repo.public_http_url, {"tag": "v1.0.1"}, **verify("Tag")),
        gitrepository("wrong-key", repo.public_http_url, **verify("HEAD", "other-keys")),
    )
    for name, rev in (
        ("head", f"main@sha1:{signed}"),
        ("tag", f"v1.0.0@sha1:{signed}"),
        ("tag-and-head", f"v1.0.0@sha1:{signed}"),
    ):
        obj = wait_ready(kubectl, namespace, name, rev)
        verified = condition(obj, "SourceVerified")
        assert verified["status"] == "True" and verified["reason"] == "Succeeded"
        assert git_server.gpg_fingerprint in verified["message"]
    assert get(kubectl, namespace, "tag-and-head")["status"]["sourceVerificationMode"] == "TagAndHEAD"

    obj = wait_failing(kubectl, namespace, "unsigned-tag", "SourceVerified", contains="tag is not signed")
    assert "artifact" not in obj["status"]
    obj = wait_failing(kubectl, namespace, "wrong-key", "SourceVerified", contains="signature verification")
    assert "artifact" not in obj["status"]

    # a new unsigned commit on the branch: verification fails, no new artifact is published
    repo.commit({"a.yaml": "a: 2\n"}, "unsigned change")
    request_reconcile(kubectl, namespace, "head")
    obj = wait_failing(kubectl, namespace, "head", "SourceVerified", contains="commit is not signed")
    assert obj["status"]["artifact"]["revision"] == f"main@sha1:{signed}"
    assert condition(obj, "Ready")["status"] == "False"
