"""--storage-path full: the source controller's storage is a small tmpfs of its own (mounted in a user
and mount namespace, `unshare --user --map-root-user --mount`, so no root is needed), filled up to a
real ENOSPC while the controllers run.

A new revision cannot be stored: the GitRepository says so (Ready=False, StorageOperationFailed, a
Warning Event naming "no space left on device"), the old artifact stays on disk and served, no half
written file is left, and the Kustomization keeps what it applied. When space returns the source
recovers on its own and the new revision is applied.
"""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from e2e.cluster import free_port
from e2e.fixtures.controllers import ControllerProcess
from e2e.fixtures.kustomize import wait_ks
from e2e.fixtures.leaks import SCAN
from e2e.fixtures.outages import (
    assert_artifact_served,
    assert_nothing_lost,
    configmap_files,
    deploy_app,
    warning_events,
)
from e2e.fixtures.source import (
    condition,
    request_reconcile,
    wait_failing,
    wait_handled,
    wait_ready,
)

pytestmark = pytest.mark.e2e

UNSHARE = shutil.which("unshare")
TMPFS_SIZE = "2m"
RETRY = "--max-retry-delay=2s"


@dataclass
class TmpfsSourceController(ControllerProcess):
    """tide-source-controller whose --storage-path is a tmpfs only it (and its build workers) sees."""

    storage: Path = Path()
    address: str = ""

    def command(self) -> list[str]:
        mount = f'mount -t tmpfs -o size={TMPFS_SIZE} tmpfs "$0" && exec "$@"'
        return [str(UNSHARE), "--user", "--map-root-user", "--mount", "sh", "-c", mount, str(self.storage),
                *super().command()]  # fmt: skip

    @property
    def storage_view(self) -> Path:
        """The storage as the controller sees it (its tmpfs), reached through its mount namespace."""
        assert self.proc is not None
        return Path(f"/proc/{self.proc.pid}/root") / str(self.storage).lstrip("/")


def user_namespaces_work(tmp_path: Path) -> str | None:
    """None when an unprivileged tmpfs can be mounted here, else why not."""
    if UNSHARE is None:
        return "unshare (util-linux) is not installed"
    probe = tmp_path / "probe"
    probe.mkdir()
    mount = f"mount -t tmpfs -o size=1m tmpfs {probe}"
    result = subprocess.run(
        [UNSHARE, "--user", "--map-root-user", "--mount", "sh", "-c", mount],
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    return None if result.returncode == 0 else f"cannot mount a tmpfs in a user namespace: {result.stderr}"


@pytest.fixture
def tmpfs_source(
    tmp_path: Path, namespace: str, request: pytest.FixtureRequest
) -> Iterator[Callable[[], TmpfsSourceController]]:
    started: list[TmpfsSourceController] = []

    def start() -> TmpfsSourceController:
        why = user_namespaces_work(tmp_path)
        if why:
            pytest.fail(why)  # a real full filesystem or nothing: no stand-in for ENOSPC
        storage = tmp_path / "storage"
        storage.mkdir()
        address = f"127.0.0.1:{free_port()}"
        log_path = tmp_path / "source-controller-tmpfs.log"
        SCAN.logs.append((request.node.nodeid, log_path))
        controller = TmpfsSourceController(
            name="source", log_path=log_path, storage=storage, address=address,
            args=[f"--storage-path={storage}", f"--storage-addr={address}", f"--storage-adv-addr={address}",
                  "--watch-all-namespaces=false", f"--runtime-namespace={namespace}", RETRY],
        )  # fmt: skip
        started.append(controller)
        return controller.start()

    yield start
    for controller in started:
        controller.stop()
    if getattr(request.node, "rep_call", None) is not None and request.node.rep_call.failed:
        for controller in started:
            print(f"--- source controller (tmpfs) log ---\n{controller.log()[-8000:]}")


def fill(directory: Path) -> Path:
    """Write a file until the filesystem refuses with ENOSPC; returns it."""
    filler = directory / "filler"
    chunk = b"\0" * (64 * 1024)
    with filler.open("wb", buffering=0) as f:
        try:
            while True:
                f.write(chunk)
        except OSError as err:
            assert err.errno == errno.ENOSPC, err
    return filler


def test_storage_full_keeps_the_old_artifact_and_recovers(  # type: ignore[no-untyped-def]
    tmpfs_source, start_controller, git_server, kubectl, namespace
) -> None:
    def desired(version: int) -> dict[str, dict[str, str]]:
        return {"full-a": {"v": str(version)}} | ({"full-b": {"v": "1"}} if version == 1 else {})

    repo = git_server.create_repo(f"full-{namespace}", configmap_files("app", desired(1)))
    first = f"main@sha1:{repo.head()}"
    source = tmpfs_source()
    start_controller("kustomize", "--watch-all-namespaces=false", f"--runtime-namespace={namespace}",
                     f"--source-storage-addr={source.address}", RETRY)  # fmt: skip
    deploy_app(kubectl, namespace, repo.public_http_url)
    try:
        obj = wait_ready(kubectl, namespace, "app", first)
        stored = source.storage_view / obj["status"]["artifact"]["path"]
        assert stored.is_file()
        assert not (source.storage / obj["status"]["artifact"]["path"]).exists(), "storage is not the tmpfs"
        wait_ks(kubectl, namespace, "app", revision=first)
        assert_nothing_lost(kubectl, namespace, "app", desired(1), outside=("outside",))

        filler = fill(source.storage_view)
        change = {**configmap_files("app", desired(2)), "app/full-b.yaml": None}
        second = f"main@sha1:{repo.commit(change, 'v2')}"
        request_reconcile(kubectl, namespace, "app")
        obj = wait_failing(kubectl, namespace, "app", contains="No space left on device")
        ready = condition(obj, "Ready") or {}
        assert ready.get("reason") == "ArchiveOperationFailed", ready
        no_space = "[Errno 28] No space left on device"
        assert ready["message"] == f"failed to store artifact for revision '{second}': {no_space}", ready
        storage_failed = condition(obj, "StorageOperationFailed") or {}
        assert storage_failed.get("status") == "True" and storage_failed["message"] == ready["message"]
        events = warning_events(kubectl, namespace, "app", "ArchiveOperationFailed")
        assert any("No space left on device" in m for m in events), events
        assert_artifact_served(obj, first)
        assert stored.is_file()
        leftovers = [p.name for p in stored.parent.iterdir() if p.name.startswith(".tmp-")]
        assert not leftovers, f"half-written files left in storage: {leftovers}"
        token = request_reconcile(kubectl, namespace, "app", kind="kustomization")
        ks = wait_handled(kubectl, namespace, "app", token, kind="kustomization")
        assert (condition(ks, "Ready") or {}).get("status") == "True"
        assert ks["status"]["lastAppliedRevision"] == first
        assert_nothing_lost(kubectl, namespace, "app", desired(1), outside=("outside",))

        os.unlink(filler)  # space returns: the retry (backing off up to 2s) stores the revision
        obj = wait_ready(kubectl, namespace, "app", second)
        assert condition(obj, "StorageOperationFailed") is None
        assert_artifact_served(obj, second)
        wait_ks(kubectl, namespace, "app", revision=second)
        assert_nothing_lost(kubectl, namespace, "app", desired(2), outside=("outside",))
    finally:
        kinds = "kustomizations.kustomize.toolkit.fluxcd.io,gitrepositories.source.toolkit.fluxcd.io"
        kubectl("delete", kinds, "--all", "-n", namespace, "--timeout=60s", check=False)
