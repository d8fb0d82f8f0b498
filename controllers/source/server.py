"""The artifact server: plain HTTP file serving of --storage-path on --storage-addr."""

from __future__ import annotations

from pathlib import Path

from aiohttp import web

from tide.shared.runtime.addr import Listener


def make_app(root: Path) -> web.Application:
    real_root = root.resolve()

    async def serve(request: web.Request) -> web.StreamResponse:
        rel = request.match_info["path"]
        path = (real_root / rel).resolve()
        if not str(path).startswith(str(real_root) + "/") or any(
            part.startswith(".tmp-") for part in path.parts
        ):
            raise web.HTTPNotFound()
        if not path.is_file():
            raise web.HTTPNotFound()
        return web.FileResponse(path, headers={"Content-Type": "application/octet-stream"})

    app = web.Application()
    app.router.add_get("/{path:.+}", serve)
    return app


class ArtifactServer:
    """Serves the storage to the other controllers; like Flux's, only the leader serves."""

    leader_only = True

    def __init__(self, root: Path, address: str) -> None:
        self.listener = Listener(address, make_app(root))

    @property
    def port(self) -> int | None:
        return self.listener.port

    async def start(self) -> None:
        await self.listener.start()

    async def stop(self) -> None:
        await self.listener.stop()
