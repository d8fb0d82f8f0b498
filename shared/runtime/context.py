"""ReconcileContext: what a reconciler gets besides its object (status, conditions, events, client)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import copy
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

from pydantic import BaseModel

from tide.shared.api.meta import Condition
from tide.shared.kube import KubeClient
from tide.shared.runtime import conditions as cond
from tide.shared.runtime import slots
from tide.shared.runtime.events import EventRecorder
from tide.shared.runtime.patch import merge_patch

T = TypeVar("T")
# How long a step may run before its progress message is written (while_progressing).
PROGRESS_GRACE = 1.0
StatusPatcher = Callable[[dict[str, Any]], Coroutine[Any, Any, dict[str, Any] | None]]


def dump_status(status: Any) -> dict[str, Any]:
    if status is None:
        return {}
    if isinstance(status, BaseModel):
        dumped = status.model_dump(mode="json", by_alias=True, exclude_none=True)
        return dumped if isinstance(dumped, dict) else {}
    if isinstance(status, dict):
        return copy.deepcopy(status)
    raise TypeError(f"status must be a pydantic model or a dict, not {type(status).__name__}")


def keep_transition_times(
    conditions: list[cond.Condition], stored: list[cond.Condition], now: str
) -> list[cond.Condition]:
    """lastTransitionTime as stored unless the status changed (then now, unless already set)."""
    out = []
    for condition in conditions:
        condition = dict(condition)
        previous = cond.find(stored, str(condition.get("type")))
        if (
            previous is not None
            and previous.get("status") == condition.get("status")
            and previous.get("lastTransitionTime")
        ):
            condition["lastTransitionTime"] = previous["lastTransitionTime"]
        elif not condition.get("lastTransitionTime"):
            condition["lastTransitionTime"] = now
        out.append(condition)
    return out


class ReconcileContext:
    """Per-reconcile state. `status` is the object's status model (mutated in place); conditions
    are set through `set_condition` / `remove_condition`; `progress()` and the runtime patch the
    status subresource with field manager gotk-<controller>."""

    def __init__(
        self,
        *,
        kube: KubeClient,
        options: argparse.Namespace,
        controller_name: str,
        raw: dict[str, Any],
        obj: Any,
        status: Any,
        log: logging.LoggerAdapter[logging.Logger],
        reconcile_id: str,
        recorder: EventRecorder,
        patcher: StatusPatcher,
    ) -> None:
        self.kube = kube
        self.options = options
        self.controller_name = controller_name
        self.raw = raw
        self.obj = obj
        self.status = status
        self.log = log
        self.reconcile_id = reconcile_id
        self.recorder = recorder
        self._patcher = patcher
        meta = raw.get("metadata") or {}
        self.generation: int | None = meta.get("generation")
        self.stored_status: dict[str, Any] = copy.deepcopy(raw.get("status") or {})
        self.observed_generation: int | None = self.stored_status.get("observedGeneration")
        self.last_handled_reconcile_at: str | None = self.stored_status.get("lastHandledReconcileAt")
        self.events: list[tuple[str, str, str]] = []
        self.started = time.monotonic()

    # --- identity ---------------------------------------------------------------------------

    @property
    def name(self) -> str:
        return str((self.raw.get("metadata") or {}).get("name", ""))

    @property
    def namespace(self) -> str:
        return str((self.raw.get("metadata") or {}).get("namespace") or "")

    @property
    def field_manager(self) -> str:
        return f"gotk-{self.controller_name}"

    # --- conditions -------------------------------------------------------------------------

    @property
    def conditions(self) -> list[cond.Condition]:
        if isinstance(self.status, dict):
            return [dict(c) for c in self.status.get("conditions") or []]
        items = getattr(self.status, "conditions", None) or []
        return [
            c.model_dump(mode="json", by_alias=True, exclude_none=True)
            if isinstance(c, BaseModel)
            else dict(c)
            for c in items
        ]

    @conditions.setter
    def conditions(self, value: list[cond.Condition]) -> None:
        if isinstance(self.status, dict):
            self.status["conditions"] = value
            return
        self.status.conditions = [Condition.model_validate(c) for c in value]

    def get_condition(self, type_: str) -> cond.Condition | None:
        return cond.find(self.conditions, type_)

    @property
    def _stored_conditions(self) -> list[cond.Condition]:
        return list(self.stored_status.get("conditions") or [])

    def set_condition(self, type_: str, status: str, reason: str, message: str) -> None:
        self.conditions = cond.set_condition(
            self.conditions, type_, status, reason, message, self.generation, stored=self._stored_conditions
        )

    def remove_condition(self, type_: str) -> None:
        self.conditions = cond.remove_condition(self.conditions, type_)

    def is_ready(self) -> bool:
        return cond.is_true(self.conditions, cond.READY)

    # --- outcomes: the kstatus story of a reconcile ------------------------------------------

    def mark_reconciling(self, message: str) -> None:
        """Reconciling=True and Ready=Unknown: work has started (not written yet)."""
        self.conditions = cond.mark_reconciling(
            self.conditions, message, self.generation, stored=self._stored_conditions
        )

    def mark_stalled(self, reason: str, message: str) -> None:
        """Stalled=True and Ready=False: retrying cannot help until the object changes."""
        self.conditions = cond.mark_stalled(
            self.conditions, reason, message, self.generation, stored=self._stored_conditions
        )
        self.observed_generation = self.generation

    def finish_failure(self, reason: str, message: str) -> None:
        """Ready=False and Reconciling=True ProgressingWithRetry: the reconcile will be retried."""
        self.conditions = cond.finish_failure(
            self.conditions, reason, message, self.generation, stored=self._stored_conditions
        )

    def finish_success(self) -> None:
        """Reconciling and Stalled dropped, Ready=True unless the reconciler set its own Ready, and
        this generation observed."""
        self.conditions = cond.finish_success(
            self.conditions, self.generation, stored=self._stored_conditions
        )
        self.observed_generation = self.generation

    # --- slots ------------------------------------------------------------------------------

    def waiting(self) -> contextlib.AbstractAsyncContextManager[None]:
        """`async with ctx.waiting():` around a wait that does no work (objects converging): the
        reconcile's --concurrent slot is free for others meanwhile."""
        return slots.waiting()

    # --- events -----------------------------------------------------------------------------

    def event(
        self,
        type_: str,
        reason: str,
        message: str,
        metadata: dict[str, str] | None = None,
    ) -> asyncio.Future[None]:
        """Record a Kubernetes Event and POST it to --events-addr, without waiting. Returns a finished
        future, so `await ctx.event(...)` works as well as a bare call."""
        self.recorder.record(self.raw, type_, reason, message, metadata)
        self.events.append((type_, reason, message))
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        done.set_result(None)
        return done

    # --- status -----------------------------------------------------------------------------

    def status_document(self) -> dict[str, Any]:
        """The status as it will be written: the model's fields plus the runtime's."""
        document = dump_status(self.status)
        document["conditions"] = self.conditions
        if not document["conditions"]:
            del document["conditions"]
        if self.observed_generation is not None:
            document["observedGeneration"] = self.observed_generation
        if self.last_handled_reconcile_at is not None:
            document["lastHandledReconcileAt"] = self.last_handled_reconcile_at
        return document

    def status_patch(self) -> dict[str, Any]:
        document = self.status_document()
        if "conditions" in document:
            document["conditions"] = keep_transition_times(
                document["conditions"], self.stored_status.get("conditions") or [], cond.now_rfc3339()
            )
        patch: dict[str, Any] = merge_patch(self.stored_status, document)
        return patch

    async def patch_status(self) -> None:
        """Write the status now (only what changed since it was last written)."""
        patch = self.status_patch()
        if not patch:
            return
        updated = await self._patcher(patch)
        if updated is not None:
            self.raw = updated
            self.stored_status = copy.deepcopy(updated.get("status") or {})

    async def progress(self, message: str) -> None:
        """Reconciling=True and Ready=Unknown with message, written at once."""
        self.mark_reconciling(message)
        await self.patch_status()

    async def while_progressing(
        self, message: str | None, work: Awaitable[T], grace: float = PROGRESS_GRACE
    ) -> T:
        """Reconciling=True with message (None: the one set already) while work runs, written only
        once work has taken longer than grace. A status write costs a request against the kind's
        rate limit (at N=500, five a reconcile were what bounded MTTP); a message that would stand
        for a few milliseconds is seen by nobody. The work must not write the status itself."""
        if message is not None:
            self.mark_reconciling(message)
        task = asyncio.ensure_future(work)
        try:
            done, _ = await asyncio.wait({task}, timeout=grace)
            if not done:
                await self.patch_status()
            return await task
        finally:
            if not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
