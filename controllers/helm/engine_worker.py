"""The helm-controller worker: runs Helm SDK calls for the engine, started as `helm-controller`.

Protocol (JSON lines): the engine writes `{"id", "verb", "config", "args"}` or `{"id", "cancel":
true}` on stdin; the worker answers `{"id", "result"}` or `{"id", "error": {"type", "message"}}` on
a private copy of stdout (fd 1 itself goes to stderr, so nothing else can corrupt the protocol).
Calls run concurrently in threads (the SDK releases the GIL); cancel cancels that call's context.
"""

from __future__ import annotations

import json
import os
import sys
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any

from tide.controllers.helm.sdk import helm_sdk


class ConfigCache:
    """Helm configs by their options, the least recently used closed past `size`, never one a call
    still holds (closing a config frees its Go clients under that call)."""

    def __init__(self, make: Callable[[dict[str, Any]], Any], size: int) -> None:
        self.make = make
        self.size = size
        self.lock = threading.Lock()
        self.entries: OrderedDict[str, list[Any]] = OrderedDict()  # key: [config, calls holding it]

    @contextmanager
    def lease(self, options: dict[str, Any]) -> Iterator[Any]:
        key = json.dumps(options, sort_keys=True)
        with self.lock:
            entry = self.entries.get(key)
            if entry is None:
                entry = self.entries[key] = [self.make(options), 0]
            self.entries.move_to_end(key)
            entry[1] += 1
        try:
            yield entry[0]
        finally:
            with self.lock:
                entry[1] -= 1
                idle = [k for k, (_, calls) in self.entries.items() if calls == 0]
                for k in idle[: max(0, len(self.entries) - self.size)]:
                    self.entries.pop(k)[0].close()


class Worker:
    def __init__(self, out: Any, concurrency: int) -> None:
        self.h = helm_sdk()
        from helm_python import _native

        self.native = _native
        self.out = out
        self.lock = threading.Lock()
        self.pool = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="helm")
        self.contexts: dict[int, Any] = {}
        self.cancelled: set[int] = set()
        # A config per HelmRelease (its kubeconfig names it, see apiproxy.rewrite), each with its
        # own clients and connections: kept for the releases being worked on, not for every one.
        self.configs = ConfigCache(lambda options: self.h.Config(**options), 2 * concurrency)

    def reply(self, message: dict[str, Any]) -> None:
        with self.lock:
            self.out.write(json.dumps(message) + "\n")
            self.out.flush()

    def handle(self, request: dict[str, Any]) -> None:
        rid = request["id"]
        try:
            result = self.call(rid, request["verb"], request["config"], request["args"])
            self.reply({"id": rid, "result": result})
        except self.h.HelmError as err:
            self.reply({"id": rid, "error": {"type": type(err).__name__, "message": str(err)}})
        except Exception as err:  # a bug must answer the engine, not hang it
            self.reply(
                {"id": rid, "error": {"type": "WorkerError", "message": f"{type(err).__name__}: {err}"}}
            )
        finally:
            with self.lock:
                self.cancelled.discard(rid)
                ctx = self.contexts.pop(rid, None)
            if ctx is not None:
                ctx.close()

    def call(self, rid: int, verb: str, config: dict[str, Any], args: dict[str, Any]) -> Any:
        with self.configs.lease(config) as cfg:
            return self.call_with(rid, verb, cfg, args)

    def call_with(self, rid: int, verb: str, cfg: Any, args: dict[str, Any]) -> Any:
        n = self.native
        opts = json.dumps(args.get("options") or {})
        if verb in ("helm_install", "helm_upgrade"):
            ctx = self.h.HelmContext()
            with self.lock:
                self.contexts[rid] = ctx
                if rid in self.cancelled:
                    ctx.cancel()
            values = json.dumps(args.get("values") or {})
            payload = n.call_string(
                verb, cfg._raw(), ctx._raw(), n.HANDLE(0), args["chart"], args["name"], values, opts
            )
            return json.loads(payload)
        if verb == "helm_rollback":
            n.call_status(verb, cfg._raw(), args["name"], opts)
            return None
        if verb in ("helm_uninstall", "helm_test_run", "helm_history", "helm_status"):
            return json.loads(n.call_string(verb, cfg._raw(), args["name"], opts))
        if verb == "chart_crds":
            with self.h.Chart.load(args["chart"]) as chart:
                return chart.crds
        if verb == "render":
            with self.h.Chart.load(args["chart"]) as chart:
                return cfg.render(
                    chart, args.get("values") or {}, name=args["name"], namespace=args["namespace"]
                )
        raise ValueError(f"unknown verb {verb}")

    def cancel(self, rid: int) -> None:
        with self.lock:
            self.cancelled.add(rid)  # a cancel can overtake its call: the call checks on start
            ctx = self.contexts.get(rid)
        if ctx is not None:
            ctx.cancel()


def main() -> None:
    out = os.fdopen(os.dup(1), "w", encoding="utf-8")
    os.dup2(2, 1)
    worker = Worker(out, int(os.environ.get("TIDE_HELM_CONCURRENCY", "4")))
    for line in sys.stdin:
        request = json.loads(line)
        if request.get("cancel"):
            worker.cancel(request["id"])
        else:
            worker.pool.submit(worker.handle, request)
    for ctx in list(worker.contexts.values()):
        ctx.cancel()  # the engine is gone: stop what runs, Helm records those releases failed
    worker.pool.shutdown(wait=True)


if __name__ == "__main__":
    main()
