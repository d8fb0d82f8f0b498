"""GitRepository end to end: real git http-backend, real control plane, the real controller process."""

from __future__ import annotations

import hashlib
import time
import urllib.request
from pathlib import Path

import pytest

from e2e.fixtures.source import (
    apply,
    condition,
    get,
    gitrepository,
    request_reconcile,
    secret,
    wait_for,
    wait_handled,
    wait_ready,
)

pytestmark = pytest.mark.e2e


def download(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=10) as resp:
        return bytes(resp.read())


def test_basic_auth_publishes_new_revisions_and_collects_garbage(
    git_server, source_controller, kubectl, namespace
):
    repo = git_server.create_repo(f"basic-{namespace}", {"deploy/app.yaml": "kind: ConfigMap\n"})
    first = repo.head()
    controller = source_controller("--artifact-retention-records=2", "--artifact-retention-ttl=1h")
    apply(
        kubectl,
        namespace,
        secret("basic", {"username": git_server.user, "password": git_server.password}),
        gitrepository("app", repo.http_url, secret="basic"),
    )

    obj = wait_ready(kubectl, namespace, "app", f"main@sha1:{first}")
    artifact = obj["status"]["artifact"]
    assert artifact["path"] == f"gitrepository/{namespace}/app/{first}.tar.gz"
    assert artifact["url"] == controller.artifact_url(artifact["path"])
    body = download(artifact["url"])
    assert artifact["digest"] == "sha256:" + hashlib.sha256(body).hexdigest()
    assert artifact["size"] == len(body)
    assert condition(obj, "ArtifactInStorage")["status"] == "True"
    assert condition(obj, "Ready")["message"] == f"stored artifact for revision 'main@sha1:{first}'"
    events = kubectl("get", "events", "-n", namespace, "-o", "jsonpath={.items[*].reason}").stdout
    assert "NewArtifact" in events

    # A push plus a reconcile request publishes the next revision; a third one drops the first
    # artifact (retention keeps 2).
    revisions = [first]
    for n in (2, 3):
        revisions.append(repo.commit({"deploy/app.yaml": f"kind: ConfigMap # {n}\n"}, f"change {n}"))
        request_reconcile(kubectl, namespace, "app")
        wait_ready(kubectl, namespace, "app", f"main@sha1:{revisions[-1]}")
    stored = sorted(p.name for p in (controller.storage / "gitrepository" / namespace / "app").iterdir())
    assert stored == sorted(f"{sha}.tar.gz" for sha in revisions[1:])


def test_noop_reconcile_is_one_ref_listing(git_server, source_controller, kubectl, namespace):
    repo = git_server.create_repo(f"noop-{namespace}")
    source_controller()
    apply(kubectl, namespace, gitrepository("app", repo.public_http_url))
    obj = wait_ready(kubectl, namespace, "app", f"main@sha1:{repo.head()}")
    digest = obj["status"]["artifact"]["digest"]
    time.sleep(0.5)
    git_server.request_stats(reset=True)
    token = request_reconcile(kubectl, namespace, "app")
    obj = wait_handled(kubectl, namespace, "app", token)
    stats = git_server.request_stats()
    assert stats.get("GET git-upload-pack") == 1, stats
    assert "POST git-upload-pack" not in stats, stats
    assert obj["status"]["artifact"]["digest"] == digest
    assert condition(obj, "Ready")["status"] == "True"


def test_finalizer_removes_artifacts(git_server, source_controller, kubectl, namespace):
    repo = git_server.create_repo(f"final-{namespace}")
    controller = source_controller()
    apply(kubectl, namespace, gitrepository("app", repo.public_http_url))
    wait_ready(kubectl, namespace, "app")
    directory = controller.storage / "gitrepository" / namespace / "app"
    assert any(directory.iterdir())
    kubectl("delete", "gitrepository", "app", "-n", namespace, "--timeout=30s")
    assert not get(kubectl, namespace, "app")
    assert not directory.exists()


def test_missing_artifact_is_rebuilt_after_restart(git_server, source_controller, kubectl, namespace):
    repo = git_server.create_repo(f"rebuild-{namespace}")
    controller = source_controller()
    apply(kubectl, namespace, gitrepository("app", repo.public_http_url))
    obj = wait_ready(kubectl, namespace, "app")
    path: Path = controller.storage / obj["status"]["artifact"]["path"]
    controller.process.stop()
    path.write_bytes(b"tampered")
    source_controller()  # same storage path (same tmp_path)
    request_reconcile(kubectl, namespace, "app")
    wait_for(
        kubectl,
        namespace,
        "app",
        lambda o: (
            path.exists()
            # Like Flux, the controller drops status.artifact while the stored file is missing or wrong.
            and "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest()
            == o["status"].get("artifact", {}).get("digest")
            and path.read_bytes() != b"tampered"
        ),
        what="artifact rebuilt",
    )


def test_seed_gitrepository_becomes_ready(git_server, source_controller, kubectl, namespace, tmp_path):
    """The mission's GitRepository, verbatim but for its URL (our HTTPS server) and namespace."""
    from ruamel.yaml import YAML

    seed = YAML(typ="safe").load(
        (Path(__file__).parent / "examples" / "seed" / "gitrepository.yaml").read_text()
    )
    repo = git_server.create_repo(
        f"seed-{namespace}",
        {"apps/app.yaml": "kind: ConfigMap\n", "README.md": "# docs\n", "docs/x.md": "x\n"},
    )
    seed["metadata"]["namespace"] = namespace
    seed["spec"]["url"] = repo.https_url
    source_controller()
    apply(
        kubectl,
        namespace,
        secret(
            "git-credentials",
            {"username": git_server.user, "password": git_server.password, "ca.crt": git_server.pki.ca_pem},
        ),
        seed,
    )
    obj = wait_ready(kubectl, namespace, "k8s-manifests", f"main@sha1:{repo.head()}")
    body = download(obj["status"]["artifact"]["url"])
    assert obj["status"]["artifact"]["digest"] == "sha256:" + hashlib.sha256(body).hexdigest()
    import io
    import tarfile

    with tarfile.open(fileobj=io.BytesIO(body)) as tar:
        names = {m.name for m in tar.getmembers() if m.isfile()}
    assert names == {"apps/app.yaml"}


def test_timeout_against_a_server_that_never_answers(source_controller, kubectl, namespace):
    import socket

    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)  # accepts connections, never answers
        port = silent.getsockname()[1]
        source_controller()
        apply(kubectl, namespace, gitrepository("slow", f"http://127.0.0.1:{port}/repo.git", timeout="2s"))
        obj = wait_for(
            kubectl,
            namespace,
            "slow",
            lambda o: (
                "timed out" in ((condition(o, "Ready") or {}).get("message") or "")
                or "timeout" in ((condition(o, "Ready") or {}).get("message") or "")
            ),
            timeout=30,
            what="timeout",
        )
        assert condition(obj, "FetchFailed")["status"] == "True"
