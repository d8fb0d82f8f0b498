"""ctx.while_progressing: a step's progress message is written only when the step runs long."""

from __future__ import annotations

import argparse
import asyncio
import logging
from typing import Any

import pytest

from tide.shared.runtime.context import ReconcileContext


def context(writes: list[dict[str, Any]]) -> ReconcileContext:
    async def patch(status: dict[str, Any]) -> dict[str, Any]:
        writes.append(status)
        return {"metadata": {"name": "app", "namespace": "apps"}, "status": status}

    return ReconcileContext(
        kube=None,  # type: ignore[arg-type]
        options=argparse.Namespace(),
        controller_name="kustomize-controller",
        raw={"metadata": {"name": "app", "namespace": "apps", "generation": 1}},
        obj=None,
        status={},
        log=logging.LoggerAdapter(logging.getLogger("test"), {}),
        reconcile_id="r",
        recorder=None,  # type: ignore[arg-type]
        patcher=patch,
    )


def reconciling(write: dict[str, Any]) -> str:
    return next(c["message"] for c in write["conditions"] if c["type"] == "Reconciling")


async def test_a_quick_step_writes_nothing() -> None:
    writes: list[dict[str, Any]] = []
    ctx = context(writes)
    assert await ctx.while_progressing("Building manifests", asyncio.sleep(0, "built"), grace=5) == "built"
    assert writes == []
    assert ctx.get_condition("Reconciling")["message"] == "Building manifests"  # for the next write


async def test_a_long_step_writes_its_message_once_past_the_grace() -> None:
    writes: list[dict[str, Any]] = []
    ctx = context(writes)
    assert await ctx.while_progressing("Running health checks", asyncio.sleep(0.2, "healthy"), grace=0.05)
    assert [reconciling(w) for w in writes] == ["Running health checks"]


async def test_the_steps_error_is_the_callers() -> None:
    async def fails() -> None:
        await asyncio.sleep(0.1)
        raise TimeoutError("timeout waiting for: [Deployment/apps/web status: 'InProgress']")

    ctx = context([])
    with pytest.raises(TimeoutError, match="Deployment/apps/web"):
        await ctx.while_progressing("Running health checks", fails(), grace=0.01)


async def test_a_cancelled_caller_cancels_the_step() -> None:
    step = asyncio.Event()

    async def forever() -> None:
        try:
            await asyncio.sleep(3600)
        finally:
            step.set()

    ctx = context([])
    task = asyncio.create_task(ctx.while_progressing(None, forever(), grace=0.01))
    await asyncio.sleep(0.05)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert step.is_set()
