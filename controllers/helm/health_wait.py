"""spec.healthCheckExprs: the resource wait Tide runs itself after a Helm action.

Flux evaluates the expressions inside Helm's wait, with its poller strategy only (`legacy` and a
disabled wait ignore them). Helm's Go SDK takes no custom status readers, so for such an action
Tide asks Helm to wait for hooks only and then waits on the release's objects here, with kstatus
and the expressions (shared/kube/health.py), the action's full timeout (Helm gives each of its
waits the whole timeout) and fail fast (Flux's poller). Storage is kept as Helm keeps it while it
waits (the release pending, the one it supersedes still deployed), then ends as Helm ends it:
deployed and the others superseded, or failed with Helm's description and the error Flux's poller
gives Helm. One difference remains: Helm has already run the post-install/upgrade/rollback hooks,
which it runs after its wait. Decisions here are pure; the async functions are the I/O.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import aiohttp

from tide.controllers.helm.inventory import release_manifest_objects, unscoped_kinds
from tide.controllers.helm.storage import ReleaseStorage, StoredRelease
from tide.shared.api.helm import HelmRelease
from tide.shared.inventory import ObjectRef, split_api_version
from tide.shared.kube import KubeClient
from tide.shared.kube.errors import KubeApiError
from tide.shared.kube.health import (
    CompiledExpr,
    HealthCheckExprLimitExceeded,
    HealthCheckFailed,
    HealthCheckTimeout,
    HealthTarget,
    compile_exprs,
    wait_for_health,
)

POLL_SECONDS = 1.0

TERMINAL_PREFIX = "Reconciliation failed terminally due to configuration error"
"""Flux's Ready/Stalled message prefix for an invalid expression (the Event carries the error alone)."""


class ReleaseWaitFailed(Exception):
    """The release's objects did not become ready: the message is what Helm's wait would say."""


def health_exprs(hr: HelmRelease) -> list[CompiledExpr]:
    """The compiled spec.healthCheckExprs; raises InvalidCELExpression (Flux: Stalled)."""
    return compile_exprs([e.to_wire() for e in hr.spec.health_check_exprs or []])


def waits_itself(strategy: str, exprs: Sequence[CompiledExpr]) -> bool:
    """Whether Tide waits on the objects instead of Helm: only with expressions and Helm's
    kstatus watcher (Flux's `poller`); `legacy` and `hookOnly` run as Helm runs them."""
    return bool(exprs) and strategy == "watcher"


def helm_strategy(strategy: str, exprs: Sequence[CompiledExpr]) -> str:
    """The strategy Helm is given: hooks only when Tide waits on the objects after it."""
    return "hookOnly" if waits_itself(strategy, exprs) else strategy


def wait_targets(
    objects: Sequence[Mapping[str, Any]], namespace: str, namespaced: Mapping[tuple[str, str], bool]
) -> list[HealthTarget]:
    """What Helm's wait waits on: the release's objects (the release namespace for a namespaced
    object naming none), paused Deployments left out, Jobs with a TTL done once gone (Flux)."""
    targets = []
    for obj in objects:
        api_version, kind = str(obj["apiVersion"]), str(obj["kind"])
        meta = obj.get("metadata") or {}
        spec = obj.get("spec") if isinstance(obj.get("spec"), dict) else {}
        assert isinstance(spec, dict)
        if (api_version, kind) == ("apps/v1", "Deployment") and spec.get("paused") is True:
            continue
        obj_namespace = str(meta.get("namespace") or "")
        if not obj_namespace and namespaced.get((api_version, kind), True):
            obj_namespace = namespace
        group, _ = split_api_version(api_version)
        ttl = (api_version, kind) == ("batch/v1", "Job") and spec.get("ttlSecondsAfterFinished") is not None
        ref = ObjectRef(group, kind, obj_namespace, str(meta.get("name") or ""))
        targets.append(HealthTarget(ref, api_version, gone_is_done=ttl))
    return targets


def wait_error(err: HealthCheckFailed | HealthCheckTimeout | HealthCheckExprLimitExceeded) -> str:
    """The error Flux's poller returns to Helm for a failed wait (an expression over its CPU or
    memory limit fails it too, naming the expression)."""
    if isinstance(err, HealthCheckFailed):
        return "failed early due to stalled resources: [" + ", ".join(err.failed) + "]"
    return str(err)


def failed_description(action: str, name: str, error: str) -> str:
    """The description Helm stores on a release whose wait failed."""
    if action == "upgrade":
        return f'Upgrade "{name}" failed: {error}'
    return f'Release "{name}" failed: {error}'


def action_error(action: str, name: str, error: str) -> str:
    """The error the Helm action returns for a failed wait (rollback wraps it)."""
    return f"release {name} failed: {error}" if action == "rollback" else error


PENDING = {
    "install": ("pending-install", "Initial install underway"),
    "upgrade": ("pending-upgrade", "Preparing upgrade"),
    "rollback": ("pending-rollback", None),  # Helm's "Rollback to N" stays all along
}
"""The status (and description) Helm gives a release while its wait runs."""


def superseded_by_helm(
    before: Mapping[int, str], after: Sequence[StoredRelease], new_version: int
) -> list[tuple[StoredRelease, str]]:
    """The releases Helm's success changed (superseded) that Helm changes only once its wait has
    passed: (release, the status it had before the action)."""
    return [
        (release, before[release.version])
        for release in after
        if release.version != new_version
        and release.version in before
        and release.status != before[release.version]
    ]


async def wait_release(
    kube: KubeClient,
    release: StoredRelease,
    exprs: list[CompiledExpr],
    limit: float,
    wait_for_jobs: bool,
    poll: float = POLL_SECONDS,
) -> None:
    """Wait for the release's objects; raise ReleaseWaitFailed with Helm's (Flux's) error."""
    objects = await asyncio.to_thread(release_manifest_objects, release.manifest)
    namespaced: dict[tuple[str, str], bool] = {}
    for api_version, kind in unscoped_kinds(objects):
        try:
            namespaced[(api_version, kind)] = (await kube.resource(api_version, kind)).namespaced
        except KubeApiError:
            namespaced[(api_version, kind)] = True  # not served: it stays NotFound, as in Helm's wait
    targets = wait_targets(objects, release.namespace, namespaced)

    async def get(target: HealthTarget) -> dict[str, Any] | None:
        try:
            found = await kube.get(
                target.api_version, target.ref.kind, target.ref.name, target.ref.namespace or None
            )
        except (KubeApiError, aiohttp.ClientError, OSError, TimeoutError):
            return None  # not readable now: it stays not ready and is read again (Flux's poller)
        return found if isinstance(found, dict) else None

    try:
        await wait_for_health(targets, get, exprs, limit=limit, poll=poll, wait_for_jobs=wait_for_jobs)
    except (HealthCheckFailed, HealthCheckTimeout, HealthCheckExprLimitExceeded) as err:
        raise ReleaseWaitFailed(wait_error(err)) from err


@dataclass(frozen=True)
class Held:
    """A release put back in the state Helm keeps during its wait, and how Helm had ended it."""

    action: str
    release: StoredRelease
    done_description: str
    restored: list[tuple[StoredRelease, str]]
    """(release as restored, the status Helm's success gave it)."""


async def hold(
    storage: ReleaseStorage, action: str, release: StoredRelease, before: Mapping[int, str]
) -> Held:
    """Storage as Helm keeps it while it waits: the release pending, the releases it supersedes
    on success as they were. A controller killed now leaves a pending release, unlocked (failed)
    and remediated by the next reconcile, as after a Helm killed mid-wait."""
    status, description = PENDING[action]
    done = str(release.info.get("description") or "")
    pending = await storage.set_status(release, status, description)
    restored = []
    for previous, old_status in superseded_by_helm(
        before, await storage.history(release.name), release.version
    ):
        restored.append((await storage.set_status(previous, old_status), previous.status))
    return Held(action, pending, done, restored)


async def settle(storage: ReleaseStorage, held: Held, error: str | None) -> StoredRelease:
    """The end of the wait, recorded as Helm records it: deployed and the others superseded, or
    the release failed with Helm's description and the others left as they were."""
    if error is not None:
        description = failed_description(held.action, held.release.name, error)
        return await storage.set_status(held.release, "failed", description)
    for previous, status in held.restored:
        await storage.set_status(previous, status)
    return await storage.set_status(held.release, "deployed", held.done_description)
