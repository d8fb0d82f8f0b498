"""Health of applied objects: kstatus rules, Flux's healthCheckExprs (CEL), and the wait loop.

What the kustomize controller (after apply) and the helm controller (after a Helm action, for a
HelmRelease with healthCheckExprs) both wait with."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import celpy

from tide.shared.inventory import ObjectRef, split_api_version
from tide.shared.kube.kstatus import Status, StatusKind, compute_status, job_completion_status


class InvalidCELExpression(ValueError):
    """A healthCheckExprs entry does not compile (Flux: Stalled, InvalidCELExpression)."""


class HealthCheckFailed(RuntimeError):
    """An object's status is Failed (the wait fails fast); `failed` lists them in Flux's style."""

    def __init__(self, failed: list[str]) -> None:
        super().__init__("failed: [" + ", ".join(failed) + "]")
        self.failed = failed


class HealthCheckTimeout(TimeoutError):
    """The wait's limit passed; `pending` lists what was not Current, in Flux's style."""

    def __init__(self, pending: list[str]) -> None:
        super().__init__("timeout waiting for: [" + ", ".join(pending) + "]")
        self.pending = pending


class HealthCheckCanceled(Exception):
    """A new reconcile was triggered while waiting (Flux: HealthCheckCanceled, with the
    CancelHealthCheckOnNewRevision feature gate); the message names the trigger."""


@dataclass
class CompiledExpr:
    api_version: str
    kind: str | None
    current: Any
    in_progress: Any | None
    failed: Any | None

    def matches(self, obj: Mapping[str, Any]) -> bool:
        # Flux matches the group only: one entry serves every version of the kind.
        if split_api_version(str(obj.get("apiVersion", "")))[0] != split_api_version(self.api_version)[0]:
            return False
        return self.kind is None or obj.get("kind") == self.kind


_ENV = celpy.Environment()


def _compile(source: str, where: str) -> Any:
    try:
        return _ENV.program(_ENV.compile(source))
    except Exception as exc:  # celpy raises its own parse errors
        raise InvalidCELExpression(f"failed to parse {where} expression '{source}': {exc}") from exc


def compile_exprs(exprs: list[Mapping[str, Any]] | None) -> list[CompiledExpr]:
    compiled = []
    for expr in exprs or []:
        where = f"{expr.get('kind') or '*'}.{expr.get('apiVersion')}"
        compiled.append(
            CompiledExpr(
                api_version=expr.get("apiVersion", ""),
                kind=expr.get("kind") or None,
                current=_compile(expr.get("current", ""), f"{where} current"),
                in_progress=_compile(expr["inProgress"], f"{where} inProgress")
                if expr.get("inProgress")
                else None,
                failed=_compile(expr["failed"], f"{where} failed") if expr.get("failed") else None,
            )
        )
    return compiled


def activation(obj: Mapping[str, Any]) -> dict[str, Any]:
    """The expression's variables: the object's top-level fields, as Flux binds them (`status`,
    `metadata`, ...), and the whole object as `self`."""
    fields = {str(k): celpy.json_to_cel(v) for k, v in obj.items()}
    fields["self"] = celpy.json_to_cel(dict(obj))
    return fields


def _true(program: Any, variables: dict[str, Any]) -> bool:
    try:
        result = program.evaluate(variables)
        return isinstance(result, celpy.celtypes.BoolType) and bool(result)
    except Exception:  # a field that does not exist yet: the expression is not (yet) true
        return False


def cel_status(expr: CompiledExpr, obj: Mapping[str, Any]) -> Status:
    """Flux's order: a status not observing the object's generation is in progress; then
    inProgress, failed, current; none true means still in progress."""
    observed = (
        (obj.get("status") or {}).get("observedGeneration") if isinstance(obj.get("status"), dict) else None
    )
    generation = (obj.get("metadata") or {}).get("generation")
    if isinstance(observed, int) and isinstance(generation, int) and observed != generation:
        return Status(StatusKind.IN_PROGRESS, "waiting for the status to observe the generation")
    variables = activation(obj)
    if expr.in_progress is not None and _true(expr.in_progress, variables):
        return Status(StatusKind.IN_PROGRESS, "in progress (healthCheckExprs)")
    if expr.failed is not None and _true(expr.failed, variables):
        return Status(StatusKind.FAILED, "failed (healthCheckExprs)")
    if _true(expr.current, variables):
        return Status(StatusKind.CURRENT, "current (healthCheckExprs)")
    return Status(StatusKind.IN_PROGRESS, "waiting for healthCheckExprs to be current")


def object_status(obj: Mapping[str, Any], exprs: list[CompiledExpr], wait_for_jobs: bool = False) -> Status:
    """The expressions first (Flux: spec-defined readers take precedence), then, when the wait is
    for Jobs, Flux's Job reader (complete, not just started), then kstatus."""
    meta = obj.get("metadata") or {}
    if meta.get("deletionTimestamp"):
        return Status(StatusKind.TERMINATING, "Resource scheduled for deletion")
    expr = matching_expr(obj, exprs)
    if expr is not None:
        return cel_status(expr, obj)
    if wait_for_jobs and obj.get("kind") == "Job" and obj.get("apiVersion") == "batch/v1":
        return job_completion_status(dict(obj))
    return compute_status(dict(obj))


def matching_expr(obj: Mapping[str, Any], exprs: list[CompiledExpr]) -> CompiledExpr | None:
    """The entry for obj: one naming its kind before a group-only one (Flux's precedence)."""
    matching = [e for e in exprs if e.matches(obj)]
    return next((e for e in matching if e.kind is not None), matching[0] if matching else None)


@dataclass(frozen=True)
class HealthTarget:
    ref: ObjectRef
    api_version: str
    min_generation: int | None = None  # the generation we applied: an older cached copy is not news
    gone_is_done: bool = False  # a Job with a TTL deletes itself once complete (Flux: JobsWithTTL)


Getter = Callable[[HealthTarget], Awaitable[dict[str, Any] | None]]


def summarize(results: Mapping[HealthTarget, Status]) -> tuple[list[str], list[str]]:
    """(failed, pending) descriptions in Flux's style `Deployment/ns/name status: 'InProgress'`."""
    failed, pending = [], []
    for target, status in results.items():
        text = f"{target.ref.display()} status: '{status.status}'"
        if status.status == StatusKind.FAILED:
            failed.append(f"{text}: {status.message}" if status.message else text)
        elif status.status != StatusKind.CURRENT:
            pending.append(text)
    return failed, pending


def _statuses(
    objects: Mapping[HealthTarget, Mapping[str, Any]], exprs: list[CompiledExpr], wait_for_jobs: bool
) -> dict[HealthTarget, Status]:
    return {target: object_status(obj, exprs, wait_for_jobs) for target, obj in objects.items()}


async def wait_for_health(
    targets: list[HealthTarget],
    get: Getter,
    exprs: list[CompiledExpr],
    limit: float,
    poll: float = 1.0,
    canceled: Callable[[], str | None] | None = None,
    wait_for_jobs: bool = False,
) -> None:
    """Return when every target is Current (a Job complete with wait_for_jobs); raise
    HealthCheckTimeout (a TimeoutError) or HealthCheckFailed (a RuntimeError) for a Failed object
    (fail fast), HealthCheckCanceled when canceled() names a trigger."""
    deadline = time.monotonic() + limit
    while True:
        results: dict[HealthTarget, Status] = {}
        evaluate: dict[HealthTarget, Mapping[str, Any]] = {}
        for target in targets:
            obj = await get(target)
            if obj is None:
                gone = target.gone_is_done
                results[target] = Status(StatusKind.CURRENT if gone else StatusKind.NOT_FOUND, "not found")
                continue
            generation = (obj.get("metadata") or {}).get("generation")
            if (
                target.min_generation is not None
                and isinstance(generation, int)
                and generation < target.min_generation
            ):
                results[target] = Status(StatusKind.IN_PROGRESS, "waiting for the applied generation")
                continue
            evaluate[target] = obj
        if exprs:
            # CEL (pure Python, tenant-written expressions) runs off the event loop.
            results.update(await asyncio.to_thread(_statuses, evaluate, exprs, wait_for_jobs))
        else:
            results.update(_statuses(evaluate, exprs, wait_for_jobs))
        results = {target: results[target] for target in targets}  # the targets' order, for messages
        failed, pending = summarize(results)
        if failed:
            raise HealthCheckFailed(failed)
        if not pending:
            return
        trigger = canceled() if canceled is not None else None
        if trigger:
            raise HealthCheckCanceled(trigger)
        if time.monotonic() >= deadline:
            raise HealthCheckTimeout(pending)
        await asyncio.sleep(poll)
