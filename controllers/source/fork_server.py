"""Build worker processes that share the controller's imported code instead of importing it anew.

The fork server is forked from the controller right after its imports, before any thread starts
(a fork copies other threads' locks in whatever state they are). It forks each worker on request.
Everything imported before the fork is shared copy-on-write between the controller, the server and
the workers, so a worker costs what it allocates (a few MiB), not a Python process with the
controller's imports (about 45 MiB). `gc.freeze()` before the fork keeps the collector from
writing to those objects' pages, in the controller as in the workers.

A worker runs up to `calls` calls at once, each in a thread of its own, sent over its own socket: a
pickled (call id, function, args), answered by a pickled (call id, ok, value or exception). Threads,
not more processes, for the calls of one worker: a build waits on the network most of its time, and
the objects a build touches (code, refcounts, the interpreter's specialised bytecode) are copied
into a worker's own memory once, not once per process (measured: 8 MiB on a worker's first Git
build, under 1 MiB more over the next hundred). It exits when its socket closes; it is killed
(SIGKILL) when a call is cancelled, so a hostile input cannot keep it busy. The server reaps its
workers and exits when the controller closes its control socket.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import itertools
import os
import pickle
import signal
import socket
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

_LENGTH = 8


class WorkerDied(Exception):
    """The worker process exited before answering (killed by the OOM killer or a signal, or crashed).
    `delivered` is False when the call never reached it (it had exited before): safe to send again."""

    def __init__(self, message: str, delivered: bool = True) -> None:
        super().__init__(message)
        self.delivered = delivered


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

    def spawn(self, calls: int = 1) -> Worker:
        """A new worker running up to `calls` calls at once (blocks for as long as one fork takes)."""
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        request = max(1, min(calls, 255)).to_bytes(1, "big")
        try:
            with self._lock:
                socket.send_fds(self._control, [request], [theirs.fileno()])
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
    """The controller's end of one worker: calls sent, their answers read by one reader task."""

    def __init__(self, pid: int, sock: socket.socket) -> None:
        self.pid = pid
        self._sock = sock
        self._pending: dict[int, asyncio.Future[tuple[bool, Any]]] = {}
        self._ids = itertools.count()
        self._sending = asyncio.Lock()
        self._reader: asyncio.Task[None] | None = None
        self.killed = False  # by the pool (a call cancelled), not by itself or from outside
        self.exited: str | None = None  # why its socket ended, once it has

    @property
    def busy(self) -> int:
        return len(self._pending)

    def gone(self) -> bool:
        """Whether it has exited: its socket ended, or its process is dead (gone, or a zombie not
        reaped yet), which a call sent now might otherwise learn only as a reset connection."""
        if self.exited is not None:
            return True
        try:
            stat = Path(f"/proc/{self.pid}/stat").read_text()
        except OSError:
            return True
        return stat.rpartition(")")[2].split()[:1] == ["Z"]

    async def call(self, fn: Callable[..., Any], *args: Any) -> Any:
        loop = asyncio.get_running_loop()
        if self.exited is not None:  # died while idle: its reader has ended
            raise WorkerDied(f"build worker process {self.pid} exited: {self.exited}", delivered=False)
        if self._reader is None:
            self._reader = loop.create_task(self._read())
        call_id = next(self._ids)
        answer: asyncio.Future[tuple[bool, Any]] = loop.create_future()
        self._pending[call_id] = answer
        data = pickle.dumps((call_id, fn, args))
        try:
            try:
                async with self._sending:
                    await loop.sock_sendall(self._sock, len(data).to_bytes(_LENGTH, "big") + data)
            except OSError as exc:
                raise WorkerDied(f"build worker process {self.pid} exited: {exc}", delivered=False) from exc
            ok, value = await answer
        finally:
            self._pending.pop(call_id, None)
        if ok:
            return value
        raise value

    async def _read(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while True:
                size = int.from_bytes(await _recv_exactly_async(loop, self._sock, _LENGTH), "big")
                call_id, ok, value = pickle.loads(await _recv_exactly_async(loop, self._sock, size))
                answer = self._pending.get(call_id)
                if answer is not None and not answer.done():
                    answer.set_result((ok, value))
        except (OSError, EOFError) as exc:
            self.exited = str(exc) or type(exc).__name__
            for answer in self._pending.values():
                if not answer.done():
                    answer.set_exception(
                        WorkerDied(f"build worker process {self.pid} exited unexpectedly: {exc}")
                    )

    def kill(self) -> None:
        """SIGKILL; the calls still waiting on it get WorkerDied (see `killed`)."""
        self.killed = True
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signal.SIGKILL)
        if self._reader is not None:
            self._reader.cancel()
        for answer in self._pending.values():
            if not answer.done():
                answer.set_exception(WorkerDied(f"build worker process {self.pid} was stopped"))
        self._sock.close()

    def close(self) -> None:
        """The worker exits when it reads the end of its socket."""
        self._sock.close()
        if self._reader is not None:
            self._reader.cancel()


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
                _work(socket.socket(fileno=fds[0]), message[0])
            except BaseException:
                code = 1
            os._exit(code)
        os.close(fds[0])
        control.sendall(pid.to_bytes(_LENGTH, "big"))


def _work(sock: socket.socket, calls: int) -> None:
    sending = threading.Lock()
    threads = ThreadPoolExecutor(max_workers=calls, thread_name_prefix="build")

    def answer(call_id: int, fn: Callable[..., Any], args: tuple[Any, ...]) -> None:
        try:
            data = pickle.dumps((call_id, True, fn(*args)))
        except BaseException as exc:  # the caller gets it raised, as from a call in process
            try:
                data = pickle.dumps((call_id, False, exc))
            except Exception:
                data = pickle.dumps((call_id, False, RuntimeError(f"{type(exc).__name__}: {exc}")))
        with sending:
            sock.sendall(len(data).to_bytes(_LENGTH, "big") + data)

    while True:
        try:
            size = int.from_bytes(_recv_exactly(sock, _LENGTH), "big")
            call_id, fn, args = pickle.loads(_recv_exactly(sock, size))
        except EOFError:
            # Closed when idle or on shutdown: what still runs was cancelled, its answer unread.
            threads.shutdown(wait=False, cancel_futures=True)
            return
        threads.submit(answer, call_id, fn, args)
