"""Health of applied objects: kstatus rules, Flux's healthCheckExprs (CEL), and the wait loop.

What the kustomize controller (after apply) and the helm controller (after a Helm action, for a
HelmRelease with healthCheckExprs) both wait with."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from tide.shared.cel.sandbox import (
    CURRENT,
    FAILED,
    IN_PROGRESS,
    SANDBOX,
    CelSandbox,
    Evaluation,
    ExprError,
    Verdict,
)
from tide.shared.cel.sandbox import (
    HealthCheckExprLimitExceeded as HealthCheckExprLimitExceeded,  # an error of the wait, as the others
)
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
    """One healthCheckExprs entry, its expressions checked to compile; they are evaluated from
    their sources in the CEL sandbox's worker process (shared/cel/sandbox.py)."""

    api_version: str
    kind: str | None
    current: str
    in_progress: str | None = None
    failed: str | None = None

    def matches(self, obj: Mapping[str, Any]) -> bool:
        # Flux matches the group only: one entry serves every version of the kind.
        if split_api_version(str(obj.get("apiVersion", "")))[0] != split_api_version(self.api_version)[0]:
            return False
        return self.kind is None or obj.get("kind") == self.kind

    def sources(self) -> dict[str, str]:
        found = {IN_PROGRESS: self.in_progress, FAILED: self.failed, CURRENT: self.current}
        return {field: source for field, source in found.items() if source}


@functools.cache
def _environment() -> Any:
    """cel-python and its parser, loaded on the first expression: a controller whose objects have
    none (most) does not carry them (about 7 MiB of its heap)."""
    import celpy

    return celpy.Environment()

MAX_EXPRESSION_LENGTH = 16384
"""Flux's cheatsheet expressions are a few hundred characters; parsing costs about 5 ms per KiB of
the controller's CPU (on each reconcile but for the cache below), so a longer one is refused."""


MAX_REWRITTEN_LENGTH = 2 * MAX_EXPRESSION_LENGTH
"""What cel-python parses once the optional syntax (`a.?b`) is rewritten into calls (up to seven
times as long: `.?a.b.c` is `._opt_sel("a")._opt_sel("b")._opt_sel("c")`)."""


class _TooLong(ValueError):
    pass


@functools.lru_cache(maxsize=256)
def _parses(source: str) -> None:
    from tide.shared.cel.optionals import rewrite  # with cel-python (see _environment)

    rewritten = rewrite(source)
    if len(rewritten) > MAX_REWRITTEN_LENGTH:
        raise _TooLong(
            f"its optional selections expand to {len(rewritten)} characters, "
            f"over the limit of {MAX_REWRITTEN_LENGTH}"
        )
    _environment().compile(rewritten)


def _compile(source: str, where: str) -> str:
    if len(source) > MAX_EXPRESSION_LENGTH:
        raise InvalidCELExpression(
            f"{where} expression is {len(source)} characters long, over the limit of {MAX_EXPRESSION_LENGTH}"
        )
    try:
        _parses(source)
    except Exception as exc:  # celpy raises its own parse errors, the rewrite OptionalSyntaxError
        raise InvalidCELExpression(f"failed to parse {where} expression '{source}': {exc}") from exc
    return source


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


VERDICTS = {
    IN_PROGRESS: Status(StatusKind.IN_PROGRESS, "in progress (healthCheckExprs)"),
    FAILED: Status(StatusKind.FAILED, "failed (healthCheckExprs)"),
    CURRENT: Status(StatusKind.CURRENT, "current (healthCheckExprs)"),
    None: Status(StatusKind.IN_PROGRESS, "waiting for healthCheckExprs to be current"),
}
"""The status of an object from the first of its entry's expressions that is true (Flux's order:
inProgress, failed, current); none true means still in progress."""


def verdict_status(verdict: Verdict) -> Status:
    """An expression that failed to evaluate makes the status Unknown with its error (Flux's
    status reader: the wait goes on, and its timeout names the error)."""
    if isinstance(verdict, ExprError):
        return Status(StatusKind.UNKNOWN, verdict.message)
    return VERDICTS[verdict]


def _status_without_cel(
    obj: Mapping[str, Any], exprs: list[CompiledExpr], wait_for_jobs: bool
) -> Status | CompiledExpr:
    """The status, or the entry whose expressions decide it. The expressions first (Flux:
    spec-defined readers take precedence) unless the status does not observe the object's
    generation yet; then, when the wait is for Jobs, Flux's Job reader (complete, not just
    started), then kstatus."""
    meta = obj.get("metadata") or {}
    if meta.get("deletionTimestamp"):
        return Status(StatusKind.TERMINATING, "Resource scheduled for deletion")
    expr = matching_expr(obj, exprs)
    if expr is not None:
        status = obj.get("status")
        observed = status.get("observedGeneration") if isinstance(status, dict) else None
        generation = meta.get("generation")
        if isinstance(observed, int) and isinstance(generation, int) and observed != generation:
            return Status(StatusKind.IN_PROGRESS, "waiting for the status to observe the generation")
        return expr
    if wait_for_jobs and obj.get("kind") == "Job" and obj.get("apiVersion") == "batch/v1":
        return job_completion_status(dict(obj))
    return compute_status(dict(obj))


K = TypeVar("K")


def statuses(
    objects: Mapping[K, Mapping[str, Any]],
    exprs: list[CompiledExpr],
    wait_for_jobs: bool = False,
    sandbox: CelSandbox | None = None,
) -> dict[K, Status]:
    """Each object's status; the expressions of all of them evaluated in one call to the sandbox
    (blocking: call it in a thread). Raises HealthCheckExprLimitExceeded."""
    results: dict[K, Status] = {}
    pending: dict[K, Evaluation] = {}
    for key, obj in objects.items():
        found = _status_without_cel(obj, exprs, wait_for_jobs)
        if isinstance(found, Status):
            results[key] = found
        else:
            pending[key] = Evaluation(ObjectRef.of(obj).display(), found.sources(), obj)
    if pending:
        verdicts = (sandbox or SANDBOX).evaluate(list(pending.values()))
        results.update({key: verdict_status(v) for key, v in zip(pending, verdicts, strict=True)})
    return {key: results[key] for key in objects}


def object_status(
    obj: Mapping[str, Any],
    exprs: list[CompiledExpr],
    wait_for_jobs: bool = False,
    sandbox: CelSandbox | None = None,
) -> Status:
    """One object's status (see statuses)."""
    return statuses({0: obj}, exprs, wait_for_jobs, sandbox)[0]


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
    """(failed, pending) descriptions in Flux's style `Deployment/ns/name status: 'InProgress'`;
    an Unknown status carries its error, as Flux's (`status: 'Unknown': failed to evaluate ...`)."""
    failed, pending = [], []
    for target, status in results.items():
        text = f"{target.ref.display()} status: '{status.status}'"
        if status.status == StatusKind.FAILED:
            failed.append(f"{text}: {status.message}" if status.message else text)
        elif status.status == StatusKind.UNKNOWN and status.message:
            pending.append(f"{text}: {status.message}")
        elif status.status != StatusKind.CURRENT:
            pending.append(text)
    return failed, pending


async def wait_for_health(
    targets: list[HealthTarget],
    get: Getter,
    exprs: list[CompiledExpr],
    limit: float,
    poll: float = 1.0,
    canceled: Callable[[], str | None] | None = None,
    wait_for_jobs: bool = False,
    sandbox: CelSandbox | None = None,
    changed: asyncio.Event | None = None,
) -> None:
    """Return when every target is Current (a Job complete with wait_for_jobs); raise
    HealthCheckTimeout (a TimeoutError) or HealthCheckFailed (a RuntimeError) for a Failed object
    (fail fast), HealthCheckExprLimitExceeded (a RuntimeError) for an expression over its CPU or
    memory limit, HealthCheckCanceled when canceled() names a trigger."""
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
            # The sandbox's worker evaluates the expressions; the thread waits for its answer.
            results.update(await asyncio.to_thread(statuses, evaluate, exprs, wait_for_jobs, sandbox))
        else:
            results.update(statuses(evaluate, exprs, wait_for_jobs))
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
        if changed is None:
            await asyncio.sleep(poll)
        else:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(changed.wait(), min(poll, max(0.0, deadline - time.monotonic())))
