"""References against a real server: branch, tag, semver, name, commit, and the missing ones."""

from __future__ import annotations

import pytest

from e2e.fixtures.source import apply, condition, gitrepository, wait_failing, wait_ready

pytestmark = pytest.mark.e2e


def test_each_reference_kind(git_server, source_controller, kubectl, namespace):
    repo = git_server.create_repo(f"refs-{namespace}", {"v.yaml": "v: 1\n"})
    first = repo.commit({"v.yaml": "v: 1.0\n"}, "release 1.0")
    repo.tag("v1.0.0", "annotated 1.0.0")
    second = repo.commit({"v.yaml": "v: 1.1\n"}, "release 1.1")
    repo.tag("v1.1.0")  # lightweight
    repo.tag("v2.0.0-rc.1", ref=second)
    repo.checkout_branch("feature")
    feature = repo.commit({"feature.yaml": "f: 1\n"}, "feature work")
    repo.git("push", "-q", "origin", "HEAD:refs/pull/7/head")
    repo.checkout_branch("main", create=False)
    head = repo.commit({"v.yaml": "v: 2-dev\n"}, "development")
    source_controller()
    apply(
        kubectl,
        namespace,
        gitrepository("branch", repo.public_http_url, {"branch": "feature"}),
        gitrepository("tag", repo.public_http_url, {"tag": "v1.0.0"}),
        gitrepository("semver", repo.public_http_url, {"semver": ">=1.0.0 <2.0.0"}),
        gitrepository("name", repo.public_http_url, {"name": "refs/pull/7/head"}),
        gitrepository("commit", repo.public_http_url, {"commit": first}),
        gitrepository("branch-commit", repo.public_http_url, {"branch": "main", "commit": second}),
        gitrepository(
            "precedence", repo.public_http_url, {"branch": "main", "tag": "v1.0.0", "semver": "1.1.x"}
        ),
    )
    wait_ready(kubectl, namespace, "branch", f"feature@sha1:{feature}")
    wait_ready(kubectl, namespace, "tag", f"v1.0.0@sha1:{first}")
    wait_ready(kubectl, namespace, "semver", f"v1.1.0@sha1:{second}")
    wait_ready(kubectl, namespace, "name", f"refs/pull/7/head@sha1:{feature}")
    wait_ready(kubectl, namespace, "commit", f"sha1:{first}")
    wait_ready(kubectl, namespace, "branch-commit", f"main@sha1:{second}")
    wait_ready(kubectl, namespace, "precedence", f"v1.1.0@sha1:{second}")
    assert head != second


def test_missing_references(git_server, source_controller, kubectl, namespace):
    repo = git_server.create_repo(f"norefs-{namespace}")
    repo.tag("v0.1.0")
    source_controller()
    apply(
        kubectl,
        namespace,
        gitrepository("no-branch", repo.public_http_url, {"branch": "nope"}),
        gitrepository("no-tag", repo.public_http_url, {"tag": "v9.9.9"}),
        gitrepository("no-semver", repo.public_http_url, {"semver": ">=1.0.0"}),
    )
    obj = wait_failing(kubectl, namespace, "no-branch", contains="couldn't find remote ref 'refs/heads/nope'")
    assert condition(obj, "Ready")["reason"] == "GitOperationFailed"
    assert condition(obj, "FetchFailed")["status"] == "True"
    wait_failing(kubectl, namespace, "no-tag", contains="couldn't find remote ref 'refs/tags/v9.9.9'")
    wait_failing(kubectl, namespace, "no-semver", contains="no match found for semver: >=1.0.0")
