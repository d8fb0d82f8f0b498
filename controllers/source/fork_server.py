"""Build worker processes that share the controller's imported code instead of importing it anew.

The fork server is forked from the controller right after its imports, before any thread starts
(a fork copies other threads' locks in whatever state they are). It forks each worker on request.
Everything imported before the fork is shared copy-on-write between the controller, the server and
the workers, so a worker costs what it allocates (a few MiB), not a Python process with the
controller's imports (about 45 MiB). `gc.freeze()` before the fork keeps the collector from
writing to those objects' pages, in the controller as in the workers.

A worker runs one call at a time sent over its own socket: a pickled (function, args), answered by
a pickled (ok, value or exception). It exits when its socket closes; it is killed (SIGKILL) when a
call is cancelled, so a hostile input cannot keep it busy. The server reaps its workers and exits
when the controller closes its control socket.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import pickle
import signal
import socket
import threading
from collections.abc import Callable
from typing import Any

_LENGTH = 8


class WorkerDied(Exception):
    """The worker process exited before answering (killed by the OOM killer or a signal, or crashed)."""


class ForkServer:
    def __init__(self) -> None:
        gc.collect()
        gc.freeze()
        control, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        pid = os.fork()
        if pid == 0:  # the server
            control.close()
            code = 0
            try:
                _serve(theirs)
            except BaseException:
                code = 1
            os._exit(code)
        theirs.close()
        self.pid = pid
        self._control = control
        self._lock = threading.Lock()

    def spawn(self) -> Worker:
        """A new worker (blocks for as long as one fork takes)."""
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            with self._lock:
                socket.send_fds(self._control, [b"w"], [theirs.fileno()])
                pid = int.from_bytes(_recv_exactly(self._control, _LENGTH), "big")
        except OSError as exc:
            ours.close()
            raise WorkerDied(f"the build fork server is gone: {exc}") from exc
        finally:
            theirs.close()
        ours.setblocking(False)
        return Worker(pid, ours)

    def alive(self) -> bool:
        try:
            return os.waitpid(self.pid, os.WNOHANG) == (0, 0)
        except ChildProcessError:
            return False

    def close(self) -> None:
        self._control.close()
        with contextlib.suppress(ChildProcessError):
            os.waitpid(self.pid, 0)


class Worker:
    def __init__(self, pid: int, sock: socket.socket) -> None:
        self.pid = pid
        self._sock = sock

    async def call(self, fn: Callable[..., Any], *args: Any) -> Any:
        loop = asyncio.get_running_loop()
        data = pickle.dumps((fn, args))
        try:
            await loop.sock_sendall(self._sock, len(data).to_bytes(_LENGTH, "big") + data)
            size = int.from_bytes(await _recv_exactly_async(loop, self._sock, _LENGTH), "big")
            ok, value = pickle.loads(await _recv_exactly_async(loop, self._sock, size))
        except (OSError, EOFError) as exc:
            raise WorkerDied(f"build worker process {self.pid} exited unexpectedly: {exc}") from exc
        if ok:
            return value
        raise value

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signal.SIGKILL)
        self._sock.close()

    def close(self) -> None:
        """The worker exits when it reads the end of its socket."""
        self._sock.close()


def _recv_exactly(sock: socket.socket, size: int) -> bytes:
    chunks, remaining = [], size
    while remaining:
        chunk = sock.recv(remaining)
        if not chunk:
            raise EOFError("connection closed")
        chunks.append(chunk)
        remaining -= len(chunk)
    return b"".join(chunks)


async def _recv_exactly_async(loop: asyncio.AbstractEventLoop, sock: socket.socket, size: int) -> bytes:
    chunks, remaining = [], size
    while remaining:
        chunk = await loop.sock_recv(sock, min(remaining, 1 << 20))
        if not chunk:
            raise EOFError("connection closed")
        chunks.append(chunk)
        remaining -= len(chunk)
    return b"".join(chunks)


def _serve(control: socket.socket) -> None:
    """The fork server: one worker per request, until the controller closes the control socket."""
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # the kernel reaps exited workers
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a Ctrl-C stops the controller, which stops this
    while True:
        message, fds, _, _ = socket.recv_fds(control, 1, 1)
        if not message:
            return
        if not fds:
            continue
        pid = os.fork()
        if pid == 0:  # the worker
            control.close()
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)  # subprocess needs its children's status
            code = 0
            try:
                _work(socket.socket(fileno=fds[0]))
            except BaseException:
                code = 1
            os._exit(code)
        os.close(fds[0])
        control.sendall(pid.to_bytes(_LENGTH, "big"))


def _work(sock: socket.socket) -> None:
    while True:
        try:
            size = int.from_bytes(_recv_exactly(sock, _LENGTH), "big")
            fn, args = pickle.loads(_recv_exactly(sock, size))
        except EOFError:
            return
        try:
            answer = pickle.dumps((True, fn(*args)))
        except BaseException as exc:  # the caller gets it raised, as from a call in process
            try:
                answer = pickle.dumps((False, exc))
            except Exception:
                answer = pickle.dumps((False, RuntimeError(f"{type(exc).__name__}: {exc}")))
        sock.sendall(len(answer).to_bytes(_LENGTH, "big") + answer)
