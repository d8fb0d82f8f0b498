"""The atomic release loop, as helm-controller's AtomicRelease runs it.

Observe the release in storage, determine its state, decide the next action, run it, patch the
status, and again, until there is nothing to do, an action type comes round a second time, a
remediation ran, or the release is stalled. The I/O is injected (observe storage, run an action,
patch status, check a rollback target, diff for drift), so the loop itself is tested with fakes;
the action runners that call the engine and record status are the reconciler's.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from tide.controllers.helm import history
from tide.controllers.helm.state import (
    ACTION_TYPE,
    Action,
    ActionType,
    Decision,
    Desired,
    HistoryEdit,
    Outcome,
    ReleaseState,
    RollbackTarget,
    Stall,
    active_retry,
    after_action,
    determine_state,
    ignores_test_failures,
    loop_step_allowed,
    next_action,
    when_repeated,
)
from tide.controllers.helm.storage import StoredRelease
from tide.shared.api.helm import HelmRelease, ReleaseSnapshot


@dataclass
class LoopResult:
    outcome: Outcome
    actions: list[Action] = field(default_factory=list)
    stall: Stall | None = None
    message: str = ""
    last_state: ReleaseState | None = None


def edit_history(hr: HelmRelease, decision: Decision) -> None:
    if decision.history_edit is HistoryEdit.CLEAR:
        hr.status.history = None
    elif decision.history_edit is HistoryEdit.TRUNCATE:
        hr.status.history = history.truncate(hr.status.history, decision.ignore_test_failures) or None
    elif decision.history_edit is HistoryEdit.TRUNCATE_IGNORING_PREVIOUS:
        hr.status.history = history.truncate_ignoring_previous(hr.status.history) or None


@dataclass
class AtomicRelease:
    observe: Callable[[], Awaitable[StoredRelease | None]]
    run: Callable[[Action, Decision], Awaitable[bool]]
    """Run an action and record it in the status. True when it errored with nothing recorded in
    storage (Flux returns that error); a release Helm recorded as failed is False: the loop goes
    on and remediates it in the same reconcile, as Flux's does."""
    patch_status: Callable[[], Awaitable[None]]
    rollback_target: Callable[[ReleaseSnapshot], Awaitable[RollbackTarget]]
    drifted: Callable[[StoredRelease], Awaitable[bool]] | None = None
    """The cluster diff of an otherwise in-sync release (drift detection on): whether it drifted."""
    observed: Callable[[ReleaseState], None] | None = None
    """Told each state the loop determines (the Drifted condition and DriftDetected Event)."""
    default_to_retry_on_failure: bool = False

    async def reconcile(self, hr: HelmRelease, desired: Desired, force_requested: bool = False) -> LoopResult:
        done: list[ActionType] = []
        result = LoopResult(Outcome.DONE)
        while True:
            release = await self.observe()
            report = determine_state(release, hr, desired)
            if (
                report.state is ReleaseState.IN_SYNC
                and release is not None
                and self.drifted is not None
                and hr.spec.effective_drift_detection_mode() != "disabled"
                and await self.drifted(release)
            ):
                report = determine_state(release, hr, desired, drifted=True)
            result.last_state = report.state
            if self.observed is not None:
                self.observed(report.state)
            target = await self._rollback_target(hr, report.state)

            def checked_target(
                _snapshot: ReleaseSnapshot | None, checked: RollbackTarget = target
            ) -> RollbackTarget:
                return checked

            decision = next_action(
                report,
                hr,
                force_requested=force_requested,
                default_to_retry_on_failure=self.default_to_retry_on_failure,
                rollback_target=checked_target,
            )
            force_requested = False  # a force request is handled once
            edit_history(hr, decision)
            if decision.stall is not None:
                result.outcome, result.stall, result.message = (
                    Outcome.STALLED,
                    decision.stall,
                    decision.message,
                )
                return result
            action = decision.action
            if action is None:
                result.outcome = Outcome.DONE
                return result
            if not loop_step_allowed(action, done):
                result.outcome = when_repeated(action, hr, self.default_to_retry_on_failure)
                return result
            await self.patch_status()
            failed = await self.run(action, decision)
            result.actions.append(action)
            outcome = after_action(action, hr, failed, self.default_to_retry_on_failure)
            if outcome is Outcome.STALLED:
                result.stall = Stall.RETRIES_EXCEEDED
            if outcome is not Outcome.CONTINUE:
                result.outcome = outcome
                await self.patch_status()
                return result
            done.append(ACTION_TYPE[action])
            await self.patch_status()

    async def _rollback_target(self, hr: HelmRelease, state: ReleaseState) -> RollbackTarget:
        """Flux verifies the snapshot a rollback returns to against storage before deciding."""
        if state is not ReleaseState.FAILED or active_retry(hr, self.default_to_retry_on_failure):
            return RollbackTarget.VERIFIED
        ignore = ignores_test_failures(hr)
        previous = history.previous(history.truncate(hr.status.history, ignore), ignore)
        if previous is None:
            return RollbackTarget.MISSING
        return await self.rollback_target(previous)
