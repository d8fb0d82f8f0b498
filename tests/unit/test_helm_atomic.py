"""The atomic release loop with a fake Helm: which actions one reconcile runs, and how it ends."""

from __future__ import annotations

from typing import Any

from helm_fixtures import stored

from tide.controllers.helm.atomic import AtomicRelease
from tide.controllers.helm.state import Action, Decision, Desired, Outcome, RollbackTarget, Stall
from tide.controllers.helm.storage import StoredRelease, snapshot
from tide.controllers.helm.values import config_digest
from tide.shared.api.helm import HelmRelease, ReleaseSnapshot
from tide.shared.api.helm import TestHookStatus as HookStatus

GOOD = {"replicas": 1}
BAD = {"replicas": 2}  # values whose release fails in this fake


class FakeHelm:
    """Storage plus the status bookkeeping the real action runners do, in miniature."""

    def __init__(self, hr: HelmRelease, values: dict[str, Any], tests_fail: bool = False) -> None:
        self.hr, self.values, self.tests_fail = hr, values, tests_fail
        self.releases: list[StoredRelease] = []
        self.patches = 0

    async def observe(self) -> StoredRelease | None:
        return self.releases[-1] if self.releases else None

    def _release(self, status: str, config: dict[str, Any]) -> StoredRelease:
        if self.releases and self.releases[-1].status == "deployed":
            last = self.releases[-1]
            self.releases[-1] = stored(version=last.version, status="superseded", config=last.config)
        release = stored(version=len(self.releases) + 1, status=status, config=config)
        self.releases.append(release)
        return release

    def _record(self, release: StoredRelease, action: str) -> None:
        self.hr.status.history = [snapshot(release, action=action), *(self.hr.status.history or [])]

    async def run(self, action: Action, decision: Decision) -> bool:
        status = self.hr.status
        if action in (Action.INSTALL, Action.UPGRADE):
            status.last_attempted_release_action = str(action)  # type: ignore[assignment]
            failed = self.values == BAD
            self._record(self._release("failed" if failed else "deployed", self.values), str(action))
            if failed:
                status.failures = (status.failures or 0) + 1
                if action is Action.INSTALL:
                    status.install_failures = (status.install_failures or 0) + 1
                else:
                    status.upgrade_failures = (status.upgrade_failures or 0) + 1
            return False  # Helm recorded the release, failed or not: the loop goes on
        if action is Action.TEST:
            phase = "Failed" if self.tests_fail else "Succeeded"
            latest = self.hr.status.history[0]  # type: ignore[index]
            latest.test_hooks = {"smoke": HookStatus(phase=phase)}
            if self.tests_fail:
                status.upgrade_failures = (status.upgrade_failures or 0) + 1
            return self.tests_fail
        if action is Action.ROLLBACK:
            previous = next(r for r in reversed(self.releases) if r.status == "superseded")
            self.releases[-1] = stored(version=self.releases[-1].version, status="superseded", config=BAD)
            self._record(self._release("deployed", previous.config), "rollback")
            return False
        if action is Action.UNINSTALL:
            self.releases.clear()  # uninstall without keepHistory deletes the release Secrets
            return False
        if action is Action.UNLOCK:
            last = self.releases[-1]
            self.releases[-1] = stored(version=last.version, status="failed", config=last.config)
            self._record(self.releases[-1], "unlock")
            return False
        raise AssertionError(action)

    async def patch(self) -> None:
        self.patches += 1

    async def target(self, snap: ReleaseSnapshot) -> RollbackTarget:
        return RollbackTarget.VERIFIED

    def loop(self) -> AtomicRelease:
        return AtomicRelease(self.observe, self.run, self.patch, self.target)


def hr(**spec: Any) -> HelmRelease:
    return HelmRelease.model_validate(
        {
            "apiVersion": "helm.toolkit.fluxcd.io/v2",
            "kind": "HelmRelease",
            "metadata": {"name": "app", "namespace": "apps", "generation": 1},
            "spec": {"interval": "5m", "chartRef": {"kind": "OCIRepository", "name": "c"}, **spec},
            "status": {"observedGeneration": 1},
        }
    )


def desired(values: dict[str, Any]) -> Desired:
    return Desired("demo", "1.0.0", config_digest(values))


async def test_install_then_nothing():
    obj = hr()
    helm = FakeHelm(obj, GOOD)
    result = await helm.loop().reconcile(obj, desired(GOOD))
    assert (result.actions, result.outcome) == ([Action.INSTALL], Outcome.DONE)
    again = await helm.loop().reconcile(obj, desired(GOOD))
    assert (again.actions, again.outcome) == ([], Outcome.DONE)
    assert helm.patches >= 2  # status patched between steps


async def test_install_then_test_in_one_reconcile():
    obj = hr(test={"enable": True})
    helm = FakeHelm(obj, GOOD)
    result = await helm.loop().reconcile(obj, desired(GOOD))
    assert (result.actions, result.outcome) == ([Action.INSTALL, Action.TEST], Outcome.DONE)


async def test_a_values_change_upgrades_once():
    obj = hr()
    helm = FakeHelm(obj, GOOD)
    await helm.loop().reconcile(obj, desired(GOOD))
    helm.values = {"replicas": 3}
    result = await helm.loop().reconcile(obj, desired({"replicas": 3}))
    assert result.actions == [Action.UPGRADE]
    assert [r.status for r in helm.releases] == ["superseded", "deployed"]


async def test_failed_upgrade_is_rolled_back_at_once_then_stalls_after_its_retries():
    obj = hr(upgrade={"remediation": {"retries": 1}})
    helm = FakeHelm(obj, GOOD)
    await helm.loop().reconcile(obj, desired(GOOD))

    helm.values = BAD
    first = await helm.loop().reconcile(obj, desired(BAD))
    assert (first.actions, first.outcome) == ([Action.UPGRADE, Action.ROLLBACK], Outcome.REQUEUE)
    assert [r.status for r in helm.releases] == ["superseded", "superseded", "deployed"]

    last = await helm.loop().reconcile(obj, desired(BAD))
    assert (last.actions, last.outcome, last.stall) == (
        [Action.UPGRADE, Action.ROLLBACK],
        Outcome.STALLED,
        Stall.RETRIES_EXCEEDED,
    )

    stalled = await helm.loop().reconcile(obj, desired(BAD))
    assert (stalled.actions, stalled.outcome, stalled.stall) == ([], Outcome.STALLED, Stall.RETRIES_EXCEEDED)


async def test_an_upgrade_that_errors_before_helm_records_anything_fails_the_reconcile():
    obj = hr(upgrade={"remediation": {"retries": 1}})
    helm = FakeHelm(obj, GOOD)
    await helm.loop().reconcile(obj, desired(GOOD))

    async def erroring(action: Action, decision: Decision) -> bool:
        obj.status.last_attempted_release_action = "upgrade"
        return True  # e.g. the chart does not render

    loop = helm.loop()
    loop.run = erroring
    result = await loop.reconcile(obj, desired(BAD))
    assert (result.actions, result.outcome) == ([Action.UPGRADE], Outcome.ERROR)


async def test_retry_on_failure_upgrades_again_after_its_interval_without_remediation():
    obj = hr(upgrade={"strategy": {"name": "RetryOnFailure", "retryInterval": "1m"}})
    helm = FakeHelm(obj, GOOD)
    await helm.loop().reconcile(obj, desired(GOOD))
    helm.values = BAD
    first = await helm.loop().reconcile(obj, desired(BAD))
    assert (first.actions, first.outcome) == ([Action.UPGRADE], Outcome.RETRY_AFTER_INTERVAL)
    second = await helm.loop().reconcile(obj, desired(BAD))
    assert (second.actions, second.outcome) == ([Action.UPGRADE], Outcome.RETRY_AFTER_INTERVAL)
    assert Action.ROLLBACK not in first.actions + second.actions


async def test_a_locked_release_is_unlocked_then_remediated_by_upgrade():
    obj = hr()
    helm = FakeHelm(obj, GOOD)
    await helm.loop().reconcile(obj, desired(GOOD))
    last = helm.releases[-1]
    helm.releases.append(stored(version=last.version + 1, status="pending-upgrade", config=GOOD))
    obj.status.history = [snapshot(helm.releases[-1]), *(obj.status.history or [])]
    result = await helm.loop().reconcile(obj, desired(GOOD))
    assert result.actions == [Action.UNLOCK, Action.UPGRADE]
    assert helm.releases[-1].status == "deployed"


async def test_a_failed_install_without_retries_stalls():
    obj = hr()
    helm = FakeHelm(obj, BAD)
    result = await helm.loop().reconcile(obj, desired(BAD))
    assert (result.actions, result.outcome, result.stall) == (
        [Action.INSTALL],
        Outcome.STALLED,
        Stall.RETRIES_EXCEEDED,
    )


async def test_a_failed_install_is_uninstalled_and_installed_again_on_the_next_reconcile():
    obj = hr(install={"remediation": {"retries": 2}})
    helm = FakeHelm(obj, BAD)
    first = await helm.loop().reconcile(obj, desired(BAD))
    assert (first.actions, first.outcome) == ([Action.INSTALL, Action.UNINSTALL], Outcome.REQUEUE)
    helm.values = GOOD
    obj.status.install_failures = 0  # new values reset the counters (the reconciler's job)
    second = await helm.loop().reconcile(obj, desired(GOOD))
    assert (second.actions, second.outcome) == ([Action.INSTALL], Outcome.DONE)


async def test_force_upgrades_an_in_sync_release_once():
    obj = hr()
    helm = FakeHelm(obj, GOOD)
    await helm.loop().reconcile(obj, desired(GOOD))
    forced = await helm.loop().reconcile(obj, desired(GOOD), force_requested=True)
    assert (forced.actions, forced.outcome) == ([Action.UPGRADE], Outcome.DONE)
