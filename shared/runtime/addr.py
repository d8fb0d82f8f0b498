"""Listen addresses as Flux writes them (`:8080`, `127.0.0.1:9440`, `0` = disabled)."""

from __future__ import annotations

from aiohttp import web


def parse_address(address: str) -> tuple[str, int] | None:
    """(host, port) for an address flag; None when the server is disabled (`0` or empty)."""
    address = address.strip()
    if address in ("", "0"):
        return None
    host, _, port = address.rpartition(":")
    host = host.strip("[]") or "0.0.0.0"
    return host, int(port)


class Listener:
    """An aiohttp app on one address, started and stopped with the process."""

    def __init__(self, address: str, app: web.Application) -> None:
        self.address = parse_address(address)
        self.app = app
        self._runner: web.AppRunner | None = None
        self.port: int | None = None

    @property
    def bound(self) -> str:
        return f"{self.address[0]}:{self.port}" if self.address else ""

    async def start(self) -> None:
        if self.address is None:
            return
        self._runner = web.AppRunner(self.app, access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.address[0], self.address[1], reuse_address=True)
        await site.start()
        server = site._server
        sockets = getattr(server, "sockets", None) or []
        self.port = int(sockets[0].getsockname()[1]) if sockets else self.address[1]

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
