"""What every command gets: the parsed flags, the printer, a lazily opened cluster connection, waiting."""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import sys
import time
from typing import Any

from tide.cli.errors import WaitTimeoutError
from tide.cli.kube import ClusterClient, connect
from tide.cli.output import Printer
from tide.shared.api.meta import parse_duration

FIELD_MANAGER = "flux"  # Flux's CLI field manager, so objects keep their ownership across Flux and Tide
POLL_SECONDS = 1.0


def now_rfc3339nano() -> str:
    """`reconcile.fluxcd.io/requestedAt` value, as Flux's CLI writes it (time.RFC3339Nano)."""
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class Session:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.printer = Printer()
        self.namespace: str = args.namespace
        self.timeout: float = parse_duration(args.timeout, go=True)
        self._client: ClusterClient | None = None
        self.out = sys.stdout

    async def kube(self) -> ClusterClient:
        if self._client is None:
            self._client = await connect(self.args.kubeconfig, self.args.context)
        return self._client

    async def close(self) -> None:
        if self._client is not None:
            await self._client.close()

    def write(self, text: str) -> None:
        self.out.write(text if text.endswith("\n") or not text else text + "\n")
        self.out.flush()

    async def wait_for(self, what: str, check: Any, hint: str = "") -> Any:
        """Poll `check()` -> (done, detail) until done, showing progress; WaitTimeoutError at --timeout."""
        deadline = time.monotonic() + self.timeout
        self.printer.waiting(what)
        try:
            return await self._poll(what, check, deadline, hint)
        finally:
            self.printer.stop_waiting()

    async def _poll(self, what: str, check: Any, deadline: float, hint: str) -> Any:
        detail = ""
        while True:
            done, detail = await check()
            if done:
                self.printer.tick()
                return detail
            if time.monotonic() >= deadline:
                raise WaitTimeoutError(
                    f"timed out after {self.args.timeout} {what}: {detail}",
                    hint or "raise --timeout, or look at `tide events` and the controller logs",
                )
            self.printer.tick(detail)
            await asyncio.sleep(POLL_SECONDS)
