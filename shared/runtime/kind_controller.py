"""The reconcile loop of one kind: informer events -> work queue -> workers -> reconciler.

Flux's semantics around the reconciler: deletion runs finalize() then drops the finalizer; the
finalizer is added before anything else; an object the model rejects is Stalled on its own
(CVE-2022-39272: one bad object never stops the others); spec.suspend skips; a new
reconcile.fluxcd.io/requestedAt is echoed to status.lastHandledReconcileAt; success sets
observedGeneration and drops Reconciling; ReconcileError is retried, StalledError is not.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from tide.shared.api.meta import KubeObject, format_duration
from tide.shared.kube import Informer, KubeApiError, KubeClient
from tide.shared.runtime import conditions as cond
from tide.shared.runtime import metrics
from tide.shared.runtime.context import ReconcileContext
from tide.shared.runtime.events import WARNING, EventRecorder
from tide.shared.runtime.logs import object_logger
from tide.shared.runtime.reconciler import Reconciler
from tide.shared.runtime.result import ReconcileError, Result, StalledError
from tide.shared.runtime.slots import Slot, WorkerSlots, current_slot
from tide.shared.runtime.workqueue import ExponentialBackoff, ShutDown, WorkQueue, jittered

log = logging.getLogger("tide.runtime")

REQUESTED_AT = "reconcile.fluxcd.io/requestedAt"
PROGRESS_MESSAGE = "Reconciliation in progress"
Key = tuple[str, str]
"""(namespace, name)"""


@dataclass(frozen=True)
class KindInfo:
    """What the runtime needs to know about the reconciled kind, read from the model class."""

    group: str
    version: str
    kind: str
    plural: str
    has_status: bool = True

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @classmethod
    def of(cls, model: Any) -> KindInfo:
        return cls(
            group=str(model.group),
            version=str(model.version),
            kind=str(model.kind),
            plural=str(model.plural),
            has_status=bool(getattr(model, "has_status", True)),
        )


def requested_at(raw: dict[str, Any]) -> str | None:
    value = ((raw.get("metadata") or {}).get("annotations") or {}).get(REQUESTED_AT)
    return str(value) if value else None


def needs_reconcile(old: dict[str, Any] | None, new: dict[str, Any]) -> bool:
    """Flux's predicates: a new generation, a new requestedAt, or deletion (status-only updates,
    including our own, do not trigger a reconcile)."""
    if old is None:
        return True
    old_meta, new_meta = old.get("metadata") or {}, new.get("metadata") or {}
    return (
        old_meta.get("generation") != new_meta.get("generation")
        or requested_at(old) != requested_at(new)
        or bool(old_meta.get("deletionTimestamp")) != bool(new_meta.get("deletionTimestamp"))
        or (
            bool(new_meta.get("deletionTimestamp"))
            and old_meta.get("finalizers") != new_meta.get("finalizers")
        )
    )


def newer(a: dict[str, Any] | None, b: dict[str, Any] | None) -> dict[str, Any] | None:
    """The more recent of two copies of an object, by resourceVersion."""
    if a is None or b is None:
        return a or b
    try:
        va = int((a.get("metadata") or {}).get("resourceVersion") or 0)
        vb = int((b.get("metadata") or {}).get("resourceVersion") or 0)
    except ValueError:
        return a
    return a if va >= vb else b


def validation_message(err: Exception) -> str:
    if isinstance(err, ValidationError):
        parts = []
        for problem in err.errors()[:5]:
            where = ".".join(str(p) for p in problem.get("loc", ()))
            parts.append(f"{where}: {problem.get('msg')}" if where else str(problem.get("msg")))
        return "invalid object: " + "; ".join(parts)
    return f"invalid object: {err}"


class KindController:
    """Watches one kind and runs its reconciler with bounded concurrency."""

    def __init__(
        self,
        reconciler: Reconciler[Any],
        kube: KubeClient,
        options: argparse.Namespace,
        controller_name: str,
        recorder: EventRecorder,
        *,
        namespace: str | None = None,
        label_selector: str | None = None,
        concurrent: int = 4,
        jitter_percent: float = 5.0,
        min_retry_delay: float = 0.75,
        max_retry_delay: float = 900.0,
    ) -> None:
        self.reconciler = reconciler
        self.model = reconciler.model
        self.info = KindInfo.of(self.model)
        self.kube = kube
        self.options = options
        self.controller_name = controller_name
        self.recorder = recorder
        self.namespace = namespace
        self.label_selector = label_selector
        self.concurrent = max(1, concurrent)
        self.jitter_percent = jitter_percent
        self.finalizer = reconciler.finalizer
        self.name = self.info.kind.lower()
        self.queue: WorkQueue[Key] = WorkQueue(
            self.name, ExponentialBackoff(min_retry_delay, max_retry_delay), on_change=self._queue_changed
        )
        self.informer: Informer | None = None
        self._latest: dict[Key, dict[str, Any]] = {}
        self._dispatcher: asyncio.Task[None] | None = None
        self.slots = WorkerSlots(
            self.concurrent, lambda busy: metrics.ACTIVE_WORKERS.labels(controller=self.name).set(busy)
        )
        self._running: set[asyncio.Task[None]] = set()
        self._adds_seen = 0
        self._retries_seen = 0
        self.reconciles = 0
        metrics.MAX_CONCURRENT.labels(controller=self.name).set(self.concurrent)
        metrics.ACTIVE_WORKERS.labels(controller=self.name).set(0)

    # --- wiring ----------------------------------------------------------------------------

    def _queue_changed(self, queue: WorkQueue[Key]) -> None:
        metrics.WORKQUEUE_DEPTH.labels(name=self.name).set(len(queue))
        if queue.adds != self._adds_seen:
            metrics.WORKQUEUE_ADDS.labels(name=self.name).inc(queue.adds - self._adds_seen)
            self._adds_seen = queue.adds
        if queue.retries != self._retries_seen:
            metrics.WORKQUEUE_RETRIES.labels(name=self.name).inc(queue.retries - self._retries_seen)
            self._retries_seen = queue.retries

    def enqueue(self, namespace: str, name: str, after: float | None = None) -> None:
        """Reconcile (namespace, name) now or after `after` seconds (for watches of other kinds)."""
        if after:
            self.queue.add_after((namespace, name), after)
        else:
            self.queue.add((namespace, name))

    def watch(
        self,
        api_version: str,
        kind: str,
        map_to_keys: Callable[[dict[str, Any]], Iterable[Key]],
        namespace: str | None = None,
        label_selector: str | None = None,
        predicate: Callable[[dict[str, Any] | None, dict[str, Any]], bool] | None = None,
    ) -> Informer:
        """Enqueue the keys map_to_keys(obj) returns whenever an object of another kind changes
        (and predicate(old, new) holds, when given). Call from the reconciler's `setup(controller)`."""
        own = self.informer
        if own is not None and (api_version, kind, namespace, label_selector) == (
            self.info.api_version,
            self.info.kind,
            self.namespace,
            self.label_selector,
        ):
            informer = own  # one watch and one cache for the kind, however many watchers
        else:
            informer = self.kube.informer(
                api_version, kind, namespace=namespace, label_selector=label_selector
            )

        def on_event(event_type: str, obj: dict[str, Any], old: dict[str, Any] | None) -> None:
            if predicate is not None and event_type == "MODIFIED" and not predicate(old, obj):
                return
            for ns, name in map_to_keys(obj):
                self.queue.add((ns, name))

        informer.add_handler(on_event)
        return informer

    def _on_event(self, event_type: str, obj: dict[str, Any], old: dict[str, Any] | None) -> None:
        meta = obj.get("metadata") or {}
        key = (str(meta.get("namespace") or ""), str(meta.get("name") or ""))
        if event_type == "DELETED":
            self._latest.pop(key, None)
            self.queue.add(key)
            return
        latest = self._latest.get(key)
        if latest is not None and newer(obj, latest) is obj:
            del self._latest[key]  # the cache has caught up with our last write
        if event_type == "ADDED" or needs_reconcile(old, obj):
            self.queue.add(key)

    def current(self, key: Key) -> dict[str, Any] | None:
        """The freshest copy of the object: the cache, or what our last write returned."""
        cached = self.informer.get(*key) if self.informer is not None else None
        if cached is None:
            self._latest.pop(key, None)
            return None
        return newer(cached, self._latest.get(key))

    def remember(self, obj: dict[str, Any]) -> None:
        meta = obj.get("metadata") or {}
        self._latest[(str(meta.get("namespace") or ""), str(meta.get("name") or ""))] = obj

    # --- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        self.informer = self.kube.informer(
            self.info.api_version,
            self.info.kind,
            namespace=self.namespace,
            label_selector=self.label_selector,
            strip_managed_fields=True,
        )
        self.reconciler.setup(self)
        self.informer.add_handler(self._on_event)
        await self.informer.wait_synced()
        self._dispatcher = asyncio.get_running_loop().create_task(
            self._dispatch(), name=f"{self.name}-dispatch"
        )

    async def stop(self, grace: float = 30.0) -> None:
        """No new work; in-flight reconciles get `grace` seconds, then are cancelled."""
        self.queue.shut_down()
        if self._dispatcher is None:
            return
        tasks = {self._dispatcher, *self._running}  # the dispatcher ends at once on the shut-down
        _, pending = await asyncio.wait(tasks, timeout=grace)
        for task in pending:
            task.cancel()
        for task in pending:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._dispatcher = None

    async def _dispatch(self) -> None:
        """Hands each queued key to a reconcile once a slot is free (WorkerSlots: --concurrent)."""
        loop = asyncio.get_running_loop()
        while True:
            try:
                key = await self.queue.get()
            except ShutDown:
                return
            try:
                slot = await self.slots.take()
            except asyncio.CancelledError:
                self.queue.done(key)
                raise
            task = loop.create_task(self._run(key, slot), name=f"{self.name}-{key[0]}/{key[1]}")
            self._running.add(task)
            task.add_done_callback(self._running.discard)

    async def _run(self, key: Key, slot: Slot) -> None:
        current_slot.set(slot)  # this task's own context: ReconcileContext.waiting() finds it
        try:
            await self.reconcile_key(key)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("reconcile of %s %s/%s failed", self.info.kind, *key)
            self.queue.add_rate_limited(key)
        finally:
            self.queue.done(key)
            slot.give_back()

    # --- one reconcile ---------------------------------------------------------------------

    async def reconcile_key(self, key: Key) -> str:
        """Reconcile one object; returns the controller-runtime result label."""
        raw = self.current(key)
        if raw is None:
            self.queue.forget(key)
            self.queue.discard(key)
            metrics.forget_object(self.info.kind, *key)
            return "success"
        reconcile_id = str(uuid.uuid4())
        logger = object_logger(
            self.controller_name, self.info.kind, self.info.group, key[0], key[1], reconcile_id
        )
        started = time.monotonic()
        result = "error"
        try:
            result = await self._reconcile(key, raw, logger, reconcile_id)
        except KubeApiError as err:
            if err.not_found:  # deleted while we worked on it
                result = "success"
                self.queue.forget(key)
            else:
                logger.error("reconcile failed: %s", err)
                self.queue.add_rate_limited(key)
        finally:
            elapsed = time.monotonic() - started
            self.reconciles += 1
            metrics.RECONCILE_DURATION.labels(kind=self.info.kind, name=key[1], namespace=key[0]).observe(
                elapsed
            )
            metrics.RECONCILE_TIME.labels(controller=self.name).observe(elapsed)
            metrics.RECONCILE_TOTAL.labels(controller=self.name, result=result).inc()
            if result == "error":
                metrics.RECONCILE_ERRORS.labels(controller=self.name).inc()
        return result

    def _context(
        self,
        raw: dict[str, Any],
        obj: Any,
        status: Any,
        logger: logging.LoggerAdapter[logging.Logger],
        reconcile_id: str,
    ) -> ReconcileContext:
        meta = raw.get("metadata") or {}
        name, namespace = str(meta.get("name")), meta.get("namespace")

        async def patch(status_patch: dict[str, Any]) -> dict[str, Any] | None:
            if not self.info.has_status:
                return None
            updated = await self.kube.patch_status(
                self.info.api_version,
                self.info.kind,
                name,
                namespace,
                {"status": status_patch},
                field_manager=f"gotk-{self.controller_name}",
            )
            self.remember(updated)
            written: dict[str, Any] = updated
            return written

        return ReconcileContext(
            kube=self.kube,
            options=self.options,
            controller_name=self.controller_name,
            raw=raw,
            obj=obj,
            status=status,
            log=logger,
            reconcile_id=reconcile_id,
            recorder=self.recorder,
            patcher=patch,
        )

    def _parse(self, raw: dict[str, Any]) -> tuple[KubeObject, Any]:
        """(model instance, its status instance); raises ValidationError/ValueError for a bad object."""
        obj = self.model.model_validate(raw)
        status_type = self.model.status_model()
        if status_type is None:  # a kind without status (Alert, Provider v1beta3)
            return obj, {}
        status = getattr(obj, "status", None)
        if status is None:
            status = status_type()
            obj.status = status
        return obj, status

    async def _reconcile(
        self, key: Key, raw: dict[str, Any], logger: logging.LoggerAdapter[logging.Logger], reconcile_id: str
    ) -> str:
        meta = raw.get("metadata") or {}
        if meta.get("deletionTimestamp"):
            return await self._delete(key, raw, logger, reconcile_id)

        try:
            obj, status = self._parse(raw)
            interval = obj.interval_seconds()
            retry_interval = obj.retry_interval_seconds()
        except (ValidationError, ValueError, TypeError) as err:
            return await self._stall_invalid(key, raw, validation_message(err), logger, reconcile_id)

        if self.finalizer and self.finalizer not in (meta.get("finalizers") or []):
            raw = await self._add_finalizer(raw)
            obj, status = self._parse(raw)

        if obj.is_suspended():
            logger.info("Reconciliation is suspended for this object")
            self.queue.forget(key)
            return "success"

        ctx = self._context(raw, obj, status, logger, reconcile_id)
        generation = ctx.generation
        request = requested_at(raw)
        new_work = (
            generation != ctx.observed_generation
            or request != ctx.last_handled_reconcile_at
            or ctx.get_condition(cond.READY) is None
        )
        if request is not None:
            ctx.last_handled_reconcile_at = request
        ctx.mark_reconciling(PROGRESS_MESSAGE)
        if new_work and not self.reconciler.reports_progress:
            await ctx.patch_status()

        try:
            outcome = await self.reconciler.reconcile(obj, ctx)
        except ReconcileError as err:
            return await self._failed(key, ctx, err.reason, err.message, err.requeue_after, retry_interval)
        except StalledError as err:
            ctx.mark_stalled(err.reason, err.message)
            ctx.event(WARNING, err.reason, err.event_message)
            logger.error("reconciliation stalled: %s", err.message, extra={"reason": err.reason})
            await ctx.patch_status()
            self.queue.forget(key)
            return "error"
        except asyncio.CancelledError:
            raise
        except KubeApiError as err:
            return await self._failed(
                key, ctx, cond.RECONCILIATION_FAILED_REASON, str(err), None, retry_interval
            )
        except Exception as err:
            logger.exception("reconciler raised %s", type(err).__name__)
            return await self._failed(
                key,
                ctx,
                cond.RECONCILIATION_FAILED_REASON,
                f"{type(err).__name__}: {err}",
                None,
                retry_interval,
            )

        ready = ctx.get_condition(cond.READY)
        if ready is not None and ready.get("status") == "False":
            # Returned normally but not Ready (Flux: Reconciling stays, ProgressingWithRetry, and
            # observedGeneration waits for a Ready outcome).
            ctx.finish_failure(str(ready.get("reason")), str(ready.get("message")))
        else:
            ctx.finish_success()
        await ctx.patch_status()
        self.queue.forget(key)
        requeue_after = outcome.requeue_after if isinstance(outcome, Result) else None
        if requeue_after is None and interval:
            requeue_after = jittered(interval, self.jitter_percent)
        if requeue_after:
            self.queue.add_after(key, requeue_after)
        ctx.log.info(
            "Reconciliation finished in %s, next run in %s",
            format_duration(round(time.monotonic() - ctx.started, 3), go=True),
            format_duration(round(requeue_after, 3), go=True) if requeue_after else "never",
        )
        return "requeue_after" if requeue_after else "success"

    async def _failed(
        self,
        key: Key,
        ctx: ReconcileContext,
        reason: str,
        message: str,
        requeue_after: float | None,
        retry_interval: float | None,
    ) -> str:
        ctx.finish_failure(reason, message)
        ctx.event(WARNING, reason, message)
        ctx.log.error("reconciliation failed: %s", message, extra={"reason": reason})
        try:
            await ctx.patch_status()
        except KubeApiError as err:
            ctx.log.error("could not patch status: %s", err)
        delay = requeue_after if requeue_after is not None else retry_interval
        if delay:
            self.queue.add_after(key, delay)
        else:
            self.queue.add_rate_limited(key)
        return "error"

    async def _stall_invalid(
        self,
        key: Key,
        raw: dict[str, Any],
        message: str,
        logger: logging.LoggerAdapter[logging.Logger],
        reconcile_id: str,
    ) -> str:
        """The model rejects the object: Stalled on this object only, no retry until it changes."""
        ctx = self._context(raw, None, dict(raw.get("status") or {}), logger, reconcile_id)
        ctx.mark_stalled(cond.INVALID_OBJECT_REASON, message)
        logger.error("reconciliation stalled: %s", message, extra={"reason": cond.INVALID_OBJECT_REASON})
        if ctx.status_patch():
            ctx.event(WARNING, cond.INVALID_OBJECT_REASON, message)
            await ctx.patch_status()
        self.queue.forget(key)
        return "error"

    async def _add_finalizer(self, raw: dict[str, Any]) -> dict[str, Any]:
        meta = raw.get("metadata") or {}
        finalizers = [*(meta.get("finalizers") or []), self.finalizer]
        updated = await self.kube.patch_merge(
            self.info.api_version,
            self.info.kind,
            str(meta.get("name")),
            meta.get("namespace"),
            {"metadata": {"finalizers": finalizers, "resourceVersion": meta.get("resourceVersion")}},
        )
        self.remember(updated)
        written: dict[str, Any] = updated
        return written

    async def _remove_finalizer(self, raw: dict[str, Any]) -> None:
        for _ in range(3):
            meta = raw.get("metadata") or {}
            finalizers = [f for f in meta.get("finalizers") or [] if f != self.finalizer]
            try:
                await self.kube.patch_merge(
                    self.info.api_version,
                    self.info.kind,
                    str(meta.get("name")),
                    meta.get("namespace"),
                    {
                        "metadata": {
                            "finalizers": finalizers or None,
                            "resourceVersion": meta.get("resourceVersion"),
                        }
                    },
                )
                return
            except KubeApiError as err:
                if err.not_found:
                    return
                if not err.conflict:
                    raise
            fresh = await self.kube.get(
                self.info.api_version, self.info.kind, str(meta.get("name")), meta.get("namespace")
            )
            if fresh is None:
                return
            raw = fresh
        raise KubeApiError(409, "Conflict", "could not remove the finalizer after 3 attempts")

    async def _delete(
        self, key: Key, raw: dict[str, Any], logger: logging.LoggerAdapter[logging.Logger], reconcile_id: str
    ) -> str:
        if not self.finalizer or self.finalizer not in ((raw.get("metadata") or {}).get("finalizers") or []):
            return "success"
        try:
            obj, status = self._parse(raw)
        except (ValidationError, ValueError, TypeError) as err:
            logger.error(
                "cannot finalize an invalid object, removing the finalizer: %s", validation_message(err)
            )
        else:
            ctx = self._context(raw, obj, status, logger, reconcile_id)
            try:
                await self.reconciler.finalize(obj, ctx)
            except asyncio.CancelledError:
                raise
            except (ReconcileError, StalledError) as err:
                return await self._failed(
                    key, ctx, err.reason, err.message, getattr(err, "requeue_after", None), None
                )
            except Exception as err:
                logger.exception("finalize raised %s", type(err).__name__)
                return await self._failed(
                    key, ctx, cond.FINALIZE_FAILED_REASON, f"{type(err).__name__}: {err}", None, None
                )
        await self._remove_finalizer(raw)
        self.queue.forget(key)
        logger.info("finalizer removed")
        return "success"
