"""The atomic release loop with the real Helm on the real control plane: install and test in one
reconcile; a failing upgrade (its Deployment never ready) rolled back in the same reconcile, then
Stalled once its retries are spent; Flux's status record throughout. The HelmRelease lives in memory
here: the reconciler that reads and patches it is not built yet."""

from __future__ import annotations

import pytest

from e2e.test_helm_engine import engine, storage_namespace, write_chart  # noqa: F401 (fixtures)
from tide.controllers.helm.actions import ActionRunner, rollback_target
from tide.controllers.helm.atomic import AtomicRelease
from tide.controllers.helm.engine import Target
from tide.controllers.helm.postrender import PostRenderSpec
from tide.controllers.helm.state import Action, Desired, Outcome, Stall
from tide.controllers.helm.storage import ReconcileStorage, ReleaseStorage
from tide.controllers.helm.values import config_digest
from tide.shared.api.helm import HelmRelease

pytestmark = pytest.mark.e2e

UNSCHEDULABLE = {"nodeSelector": {"tide.dev/none": "true"}}


def condition(hr: HelmRelease, type_: str) -> tuple[str, str]:
    found = next(c for c in hr.status.conditions if c.type == type_)
    return found.status, found.reason


async def test_install_test_remediate_and_stall(engine, kube, namespace, storage_namespace, tmp_path):  # noqa: F811
    chart = write_chart(tmp_path)
    hr = HelmRelease.model_validate(
        {
            "apiVersion": "helm.toolkit.fluxcd.io/v2",
            "kind": "HelmRelease",
            "metadata": {"name": "app", "namespace": namespace, "generation": 1},
            "spec": {
                "interval": "5m",
                "chartRef": {"kind": "OCIRepository", "name": "demo"},
                "storageNamespace": storage_namespace,
                "test": {"enable": True, "timeout": "60s"},
                "install": {"timeout": "60s"},
                "upgrade": {"timeout": "3s", "remediation": {"retries": 1}},
                "rollback": {"timeout": "60s"},
            },
        }
    )
    target = Target(hr.release_name(), hr.release_namespace(), hr.storage_namespace())
    storage = ReleaseStorage(kube, storage_namespace)

    async def reconcile(values: dict) -> tuple[AtomicRelease, ActionRunner]:
        desired = Desired("demo", "1.0.0", config_digest(values))
        reads = ReconcileStorage(kube, storage_namespace)  # one per reconcile, as the reconciler's
        runner = ActionRunner(
            engine,
            reads,
            hr,
            target,
            chart,
            values,
            desired,
            PostRenderSpec(name="app", namespace=namespace),
        )

        async def no_patch() -> None:
            return None

        loop = AtomicRelease(
            observe=lambda: reads.latest(target.name),
            run=runner,
            patch_status=no_patch,
            rollback_target=lambda snap: rollback_target(reads, snap),
        )
        return await loop.reconcile(hr, desired), runner

    installed, runner = await reconcile({})
    assert (installed.actions, installed.outcome) == ([Action.INSTALL, Action.TEST], Outcome.DONE)
    assert condition(hr, "Released") == ("True", "InstallSucceeded")
    assert condition(hr, "TestSuccess") == ("True", "TestSucceeded")
    assert [(s.version, s.status) for s in hr.status.history or []] == [(1, "deployed")]
    assert {k: v.phase for k, v in (hr.status.history[0].test_hooks or {}).items()} == {
        "app-smoke": "Succeeded"
    }

    failed, runner = await reconcile(UNSCHEDULABLE)
    assert (failed.actions, failed.outcome) == ([Action.UPGRADE, Action.ROLLBACK], Outcome.REQUEUE)
    assert condition(hr, "Released") == ("False", "UpgradeFailed")
    assert condition(hr, "Remediated") == ("True", "RollbackSucceeded")
    assert (hr.status.upgrade_failures, hr.status.failures) == (1, 1)
    assert [r.status for r in await storage.history(target.name)] == ["superseded", "failed", "deployed"]
    assert ("Warning", "UpgradeFailed") in [(t, r) for t, r, _ in runner.events]

    stalled, _ = await reconcile(UNSCHEDULABLE)
    assert (stalled.actions, stalled.outcome, stalled.stall) == (
        [Action.UPGRADE, Action.ROLLBACK],
        Outcome.STALLED,
        Stall.RETRIES_EXCEEDED,
    )
    assert [r.status for r in await storage.history(target.name)] == [
        "superseded",
        "failed",
        "superseded",
        "failed",
        "deployed",
    ]
    again, _ = await reconcile(UNSCHEDULABLE)
    assert (again.actions, again.stall) == ([], Stall.RETRIES_EXCEEDED)
