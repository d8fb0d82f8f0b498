"""spec.healthCheckExprs in the helm controller: which actions Tide waits on itself, what it waits
on, and how a wait's outcome is written to Helm's storage (as Helm writes its own wait's)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.unit.helm_fixtures import release_json, release_secret, stored
from tests.unit.test_helm_atomic import hr as release
from tide.controllers.helm.actions import install_options, upgrade_options
from tide.controllers.helm.health_wait import (
    PENDING,
    action_error,
    failed_description,
    health_exprs,
    helm_strategy,
    hold,
    settle,
    superseded_by_helm,
    wait_error,
    wait_targets,
    waits_itself,
)
from tide.controllers.helm.storage import StoredRelease, release_from_secret, secret_with_status
from tide.shared.inventory import ObjectRef
from tide.shared.kube.health import (
    HealthCheckExprLimitExceeded,
    HealthCheckFailed,
    HealthCheckTimeout,
    InvalidCELExpression,
)

EXPR = {"apiVersion": "example.com/v1", "kind": "Widget", "current": "status.ready == true"}


@pytest.mark.parametrize(
    ("spec", "install_wait", "tide_waits"),
    [
        ({"healthCheckExprs": [EXPR]}, "hookOnly", True),  # poller by default: Tide waits
        ({"healthCheckExprs": [EXPR], "waitStrategy": {"name": "poller"}}, "hookOnly", True),
        ({"healthCheckExprs": [EXPR], "waitStrategy": {"name": "legacy"}}, "legacy", False),
        ({"healthCheckExprs": [EXPR], "install": {"disableWait": True}}, "hookOnly", False),
        ({}, "watcher", False),  # no expressions: Helm's own watcher
        ({"waitStrategy": {"name": "legacy"}}, "legacy", False),
    ],
)
def test_who_waits(spec: dict[str, Any], install_wait: str, tide_waits: bool) -> None:
    hr = release(**spec)
    exprs = health_exprs(hr)
    strategy = install_options(hr).wait
    assert (helm_strategy(strategy, exprs), waits_itself(strategy, exprs)) == (install_wait, tide_waits)


def test_each_action_decides_on_its_own_disable_wait() -> None:
    hr = release(healthCheckExprs=[EXPR], upgrade={"disableWait": True})
    exprs = health_exprs(hr)
    assert waits_itself(install_options(hr).wait, exprs)
    assert not waits_itself(upgrade_options(hr).wait, exprs)


def test_an_invalid_expression_is_a_typed_error_naming_it() -> None:
    hr = release(healthCheckExprs=[{**EXPR, "failed": "status.ready =="}])
    with pytest.raises(InvalidCELExpression, match=r"Widget\.example\.com/v1 failed"):
        health_exprs(hr)


def test_wait_targets_are_helms() -> None:
    def obj(api_version: str, kind: str, name: str, namespace: str = "", **spec: Any) -> dict[str, Any]:
        meta = {"name": name, **({"namespace": namespace} if namespace else {})}
        return {"apiVersion": api_version, "kind": kind, "metadata": meta, "spec": spec}

    rbac = "rbac.authorization.k8s.io/v1"
    objects = [
        obj("apps/v1", "Deployment", "web"),
        obj("apps/v1", "Deployment", "off", paused=True),
        obj("example.com/v1", "Widget", "w", "other"),
        obj(rbac, "ClusterRole", "r"),
        obj("batch/v1", "Job", "once", ttlSecondsAfterFinished=0),
        obj("batch/v1", "Job", "kept"),
    ]
    targets = wait_targets(objects, "apps", {(rbac, "ClusterRole"): False})
    assert [(t.ref, t.api_version, t.gone_is_done) for t in targets] == [
        (ObjectRef("apps", "Deployment", "apps", "web"), "apps/v1", False),
        (ObjectRef("example.com", "Widget", "other", "w"), "example.com/v1", False),
        (ObjectRef("rbac.authorization.k8s.io", "ClusterRole", "", "r"), rbac, False),
        (ObjectRef("batch", "Job", "apps", "once"), "batch/v1", True),
        (ObjectRef("batch", "Job", "apps", "kept"), "batch/v1", False),
    ]


def test_errors_and_descriptions_are_helms_and_fluxs() -> None:
    failed = HealthCheckFailed(["Widget/apps/w status: 'Failed': failed (healthCheckExprs)"])
    assert wait_error(failed) == (
        "failed early due to stalled resources: [Widget/apps/w status: 'Failed': failed (healthCheckExprs)]"
    )
    timeout = HealthCheckTimeout(["Widget/apps/w status: 'InProgress'"])
    assert wait_error(timeout) == "timeout waiting for: [Widget/apps/w status: 'InProgress']"
    over = HealthCheckExprLimitExceeded(
        "healthCheckExprs current expression 'x' exceeded its CPU limit", "cpu"
    )
    assert wait_error(over) == str(over)  # the wait fails naming the expression
    assert failed_description("install", "app", "boom") == 'Release "app" failed: boom'
    assert failed_description("upgrade", "app", "boom") == 'Upgrade "app" failed: boom'
    assert failed_description("rollback", "app", "boom") == 'Release "app" failed: boom'
    assert action_error("install", "app", "boom") == "boom"
    assert action_error("rollback", "app", "boom") == "release app failed: boom"


def test_superseded_by_helm_are_the_changed_older_releases() -> None:
    after = [
        stored(version=1, status="superseded"),
        stored(version=2, status="superseded"),
        stored(version=3),
    ]
    before = {1: "superseded", 2: "deployed"}
    assert [(r.version, status) for r, status in superseded_by_helm(before, after, 3)] == [(2, "deployed")]


class FakeStorage:
    """Helm's release Secrets in memory, written the way ReleaseStorage writes them."""

    def __init__(self, *releases: StoredRelease) -> None:
        self.releases = {r.version: r for r in releases}
        self.writes: list[tuple[int, str]] = []

    async def history(self, name: str) -> list[StoredRelease]:
        return [self.releases[v] for v in sorted(self.releases)]

    async def set_status(
        self, release: StoredRelease, status: str, description: str | None = None
    ) -> StoredRelease:
        written = release_from_secret(secret_with_status(release, status, description))
        self.releases[written.version] = written
        self.writes.append((written.version, status))
        return written


def statuses(storage: FakeStorage) -> list[tuple[int, str, str]]:
    return [(r.version, r.status, str(r.info.get("description"))) for r in storage.releases.values()]


def upgraded() -> tuple[FakeStorage, StoredRelease]:
    """What Helm stored after an upgrade whose wait was `hookOnly`: v1 superseded, v2 deployed."""
    new = release_json(version=2)
    new["info"]["description"] = "Upgrade complete"
    v2 = release_from_secret(release_secret(new))
    return FakeStorage(stored(version=1, status="superseded"), v2), v2


async def test_while_waiting_storage_is_as_helm_keeps_it_then_deployed() -> None:
    storage, v2 = upgraded()
    held = await hold(storage, "upgrade", v2, {1: "deployed"})  # type: ignore[arg-type]
    assert statuses(storage) == [
        (1, "deployed", "Install complete"),
        (2, "pending-upgrade", PENDING["upgrade"][1]),
    ]
    done = await settle(storage, held, None)  # type: ignore[arg-type]
    assert (done.version, done.status) == (2, "deployed")
    assert statuses(storage) == [(1, "superseded", "Install complete"), (2, "deployed", "Upgrade complete")]


async def test_a_failed_wait_fails_the_release_and_keeps_the_previous_deployed() -> None:
    storage, v2 = upgraded()
    held = await hold(storage, "upgrade", v2, {1: "deployed"})  # type: ignore[arg-type]
    failed = await settle(storage, held, "timeout waiting for: [Widget/apps/w status: 'InProgress']")  # type: ignore[arg-type]
    assert statuses(storage) == [
        (1, "deployed", "Install complete"),
        (2, "failed", "Upgrade \"app\" failed: timeout waiting for: [Widget/apps/w status: 'InProgress']"),
    ]
    assert failed.status == "failed"


async def test_an_install_is_pending_install_while_waiting() -> None:
    v1 = stored(version=1)
    storage = FakeStorage(v1)
    held = await hold(storage, "install", v1, {})  # type: ignore[arg-type]
    assert statuses(storage) == [(1, "pending-install", "Initial install underway")]
    await settle(storage, held, "boom")  # type: ignore[arg-type]
    assert statuses(storage) == [(1, "failed", 'Release "app" failed: boom')]
