"""Liveness and readiness on --health-addr: /healthz and /readyz (controller-runtime's paths)."""

from __future__ import annotations

from collections.abc import Callable

from aiohttp import web

from tide.shared.runtime.addr import Listener

Check = Callable[[], str | None]
"""A check returns None when healthy, else why not."""


class HealthServer:
    leader_only = False

    def __init__(self, address: str) -> None:
        self.live_checks: dict[str, Check] = {"ping": lambda: None}
        self.ready_checks: dict[str, Check] = {"ping": lambda: None}
        app = web.Application()
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/readyz", self._readyz)
        self.listener = Listener(address, app)

    @property
    def port(self) -> int | None:
        port: int | None = self.listener.port
        return port

    def add_ready_check(self, name: str, check: Check) -> None:
        self.ready_checks[name] = check

    def add_live_check(self, name: str, check: Check) -> None:
        self.live_checks[name] = check

    @staticmethod
    def _run(checks: dict[str, Check]) -> web.Response:
        failures = {}
        for name, check in checks.items():
            try:
                problem = check()
            except Exception as err:
                problem = str(err)
            if problem:
                failures[name] = problem
        if failures:
            text = "\n".join(f"[-]{name} failed: {why}" for name, why in failures.items())
            return web.Response(status=500, text=text + "\n")
        return web.Response(text="ok")

    async def _healthz(self, request: web.Request) -> web.Response:
        return self._run(self.live_checks)

    async def _readyz(self, request: web.Request) -> web.Response:
        return self._run(self.ready_checks)

    async def start(self) -> None:
        await self.listener.start()

    async def stop(self) -> None:
        await self.listener.stop()
