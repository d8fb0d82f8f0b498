"""Helm SDK calls for the engine, in threads (the SDK releases the GIL): `Worker`, run by the
controller itself when it was started as `helm-controller` (sdk.exec_as_helm_host), or in a worker
process started so (this module's `main`).

A call is `{"id", "verb", "config", "args"}`, answered `{"id", "result"}` or `{"id", "error":
{"type", "message"}}`; cancelling an id cancels that call's Helm context. The worker process's
protocol is these as JSON lines: calls and `{"id", "cancel": true}` on stdin, answers on a private
copy of stdout (fd 1 itself goes to stderr, so nothing else can corrupt the protocol).
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
    """Runs calls in its pool, each answered through `reply` from the thread that ran it."""

    def __init__(self, reply: Callable[[dict[str, Any]], None], concurrency: int) -> None:
        self.h = helm_sdk()
        from helm_python import _native

        self.native = _native
        self.reply = reply
        self.lock = threading.Lock()
        self.pool = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="helm")
        self.contexts: dict[int, Any] = {}
        self.cancelled: set[int] = set()
        self.stopping = False
        # A config per HelmRelease (its kubeconfig names it, see apiproxy.rewrite), each with its
        # own clients and connections: kept for the releases being worked on, not for every one.
        self.configs = ConfigCache(lambda options: self.h.Config(**options), 2 * concurrency)

    def submit(self, request: dict[str, Any]) -> None:
        self.pool.submit(self.handle, request)

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
                if rid in self.cancelled or self.stopping:
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

    def stop(self) -> None:
        """Cancel what runs (Helm records those releases failed), drop what waits for a thread, and
        wait for the running calls to answer."""
        with self.lock:
            self.stopping = True
            running = list(self.contexts.values())
        for ctx in running:
            ctx.cancel()
        self.pool.shutdown(wait=True, cancel_futures=True)


def main() -> None:
    out = os.fdopen(os.dup(1), "w", encoding="utf-8")
    os.dup2(2, 1)
    lock = threading.Lock()

    def reply(message: dict[str, Any]) -> None:
        with lock:
            out.write(json.dumps(message) + "\n")
            out.flush()

    worker = Worker(reply, int(os.environ.get("TIDE_HELM_CONCURRENCY", "4")))
    for line in sys.stdin:
        request = json.loads(line)
        if request.get("cancel"):
            worker.cancel(request["id"])
        else:
            worker.submit(request)
    worker.stop()  # the engine is gone


if __name__ == "__main__":
    main()
