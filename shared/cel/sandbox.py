"""spec.healthCheckExprs evaluated in a long-lived worker process with a CPU and memory limit.

The expressions and the objects they read are tenant-written, and cel-python is pure Python: a
nested macro over a status with a 100,000-element list runs for hours, `l.map(x, l + l)` takes
gigabytes, and a thread cannot be stopped. So the controller never evaluates them itself: it sends
them (the sources; the worker compiles and caches each once) and the objects of one health poll to
a worker process started with `python -m` on first use, which
- runs under an address-space limit (RLIMIT_AS): a runaway allocation raises MemoryError there;
- gives each object's evaluation a CPU budget: a profiling timer interrupts the Python evaluation
  (the worker answers and is replaced), and RLIMIT_CPU, one second past the budget, kills it
  with SIGXCPU should the timer not get through (a long call in C);
- is killed when the caller's wall-clock timeout passes without an answer.
A worker over a limit is killed and started anew for the next call; the caller gets
HealthCheckExprLimitExceeded naming the expression and the limit.

An expression whose evaluation errors (a field the object does not have yet, a type error) gives
the object an ExprError, as Flux's status reader does (the object's status is Unknown, with the
error, until the wait's timeout); the expressions are cel-go's, optional types included
(shared/cel/optionals.py rewrites them for cel-python).

The worker exits when its socket closes (the controller stopped, or died). Requests and answers are
length-prefixed JSON: nothing the worker sends is unpickled by the controller.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import re
import resource
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

_LENGTH = 8

IN_PROGRESS, FAILED, CURRENT = "inProgress", "failed", "current"
FIELDS = (IN_PROGRESS, FAILED, CURRENT)
"""The expressions of one healthCheckExprs entry, in the order Flux evaluates them."""


class HealthCheckExprLimitExceeded(RuntimeError):
    """A healthCheckExprs expression went over its CPU or memory limit (or its worker process died
    or did not answer in time); the message names the expression, the object and the limit."""

    def __init__(self, message: str, limit: str) -> None:
        super().__init__(message)
        self.limit = limit


@dataclass(frozen=True)
class Limits:
    cpu_seconds: float = 5.0
    """CPU time for one object's evaluation (its conversion and its entry's expressions)."""
    memory_bytes: int = 1 << 30
    """The worker's address space."""
    wall_seconds: float = 10.0
    """What a call may take beyond twice the CPU budget of its objects before the worker is killed."""
    start_seconds: float = 30.0
    """What a new worker may take to start (Python and cel-python's imports), before the call's time."""


@dataclass(frozen=True)
class ExprError:
    """An entry's expression failed to evaluate on an object, in Flux's words: `failed to evaluate
    the CEL expression '<source>': no such key: conditions`."""

    message: str


Verdict = str | ExprError | None
"""The first of an entry's fields (IN_PROGRESS, FAILED, CURRENT) whose expression is true, the
error of the first that failed to evaluate, or None."""


@dataclass(frozen=True)
class Evaluation:
    """One object and the expressions of its healthCheckExprs entry; `what` names the object."""

    what: str
    exprs: Mapping[str, str]  # field (IN_PROGRESS, FAILED, CURRENT) -> source; a missing one is unset
    obj: Mapping[str, Any]


def _describe_limit(kind: str, limits: Limits) -> str:
    if kind == "memory":
        return f"memory limit of {limits.memory_bytes // (1 << 20)} MiB"
    return f"CPU limit of {limits.cpu_seconds:g}s"


def _short(source: str) -> str:
    return source if len(source) <= 200 else source[:200] + "..."


class CelSandbox:
    """The client of one worker process, shared by the controller's threads (one call at a time).
    A server in run_controller's sense: stop() ends the worker with the controller."""

    leader_only = False

    def __init__(self, limits: Limits | None = None) -> None:
        self.limits = limits or Limits()
        self._lock = threading.Lock()
        self._proc: subprocess.Popen[bytes] | None = None
        self._sock: socket.socket | None = None

    def evaluate(self, items: Sequence[Evaluation]) -> list[Verdict]:
        """For each item, the first of its entry's expressions (inProgress, failed, current) that
        is true, or the error of one that failed before (Flux stops there too), or None. Blocks
        (call it in a thread); raises HealthCheckExprLimitExceeded."""
        if not items:
            return []
        sources: dict[str, int] = {}
        header_items = []
        for item in items:
            entry = [item.exprs.get(field) for field in FIELDS]
            key = json.dumps(entry)
            header_items.append(sources.setdefault(key, len(sources)))
        header = {
            "cpu": self.limits.cpu_seconds,
            "exprs": [json.loads(key) for key in sources],
            "items": header_items,
        }
        frames = [_frame(json.dumps(header).encode())]
        frames += [_frame(json.dumps(item.obj, separators=(",", ":")).encode()) for item in items]
        timeout = self.limits.wall_seconds + 2 * self.limits.cpu_seconds * len(items)
        with self._lock:
            answer = self._call(b"".join(frames), timeout, items)
            if "exceeded" in answer:
                self._kill()  # its heap is not to be trusted after a MemoryError; a fresh one is cheap
        if "exceeded" in answer:
            item = items[int(answer["index"])]
            field = answer.get("field")
            limit = _describe_limit(str(answer["exceeded"]), self.limits)
            if field in FIELDS:
                which = f"{field} expression '{_short(item.exprs.get(field, ''))}' exceeded its"
            else:  # over the limit reading the object, before any expression ran
                listed = ", ".join(f"'{_short(s)}'" for s in item.exprs.values() if s)
                which = f"expressions {listed} exceeded their"
            raise HealthCheckExprLimitExceeded(
                f"healthCheckExprs {which} {limit} evaluating {item.what}", limit
            )
        return [_verdict(v) for v in answer["verdicts"]]

    def _call(self, request: bytes, timeout: float, items: Sequence[Evaluation]) -> dict[str, Any]:
        try:
            sock = self._worker()
            deadline = time.monotonic() + timeout
            sock.settimeout(timeout)
            sock.sendall(request)
            size = int.from_bytes(_recv_exactly(sock, _LENGTH, deadline), "big")
            answer = json.loads(_recv_exactly(sock, size, deadline))
            if not isinstance(answer, dict):
                raise ValueError("malformed answer")
            return answer
        except (OSError, EOFError, ValueError) as exc:
            died = self._kill()
            sources = ", ".join(
                sorted({f"'{_short(s)}'" for item in items for s in item.exprs.values() if s})
            )
            names = _names(items)
            if isinstance(exc, TimeoutError):
                limit = f"time limit of {timeout:g}s"
            elif died == -signal.SIGXCPU:
                limit = _describe_limit("cpu", self.limits)
            else:
                raise HealthCheckExprLimitExceeded(
                    f"healthCheckExprs expressions {sources} could not be evaluated on {names}: "
                    f"the CEL worker process exited with {_exit_text(died)}",
                    "worker process",
                ) from exc
            raise HealthCheckExprLimitExceeded(
                f"healthCheckExprs expressions {sources} exceeded their {limit} evaluating {names}", limit
            ) from exc

    def _worker(self) -> socket.socket:
        if self._proc is not None and self._proc.poll() is not None:
            self._kill()
        if self._sock is None:
            ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                self._proc = subprocess.Popen(
                    [
                        sys.executable,
                        "-m",
                        "tide.shared.cel.sandbox",
                        str(theirs.fileno()),
                        str(self.limits.memory_bytes),
                    ],
                    pass_fds=[theirs.fileno()],
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            except OSError:
                ours.close()
                raise
            finally:
                theirs.close()
            self._sock = ours
            _recv_exactly(ours, 1, time.monotonic() + self.limits.start_seconds)  # ready
        return self._sock

    def _kill(self) -> int | None:
        """Stop the worker (the next call starts another); its exit code (negative: a signal)."""
        proc, sock = self._proc, self._sock
        self._proc = self._sock = None
        if sock is not None:
            sock.close()
        if proc is None:
            return None
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
        return proc.wait()

    def close(self) -> None:
        """End the worker: it exits on the end of its socket (killed if it does not in a second,
        or at once when a call is still waiting for it: the controller is stopping)."""
        if not self._lock.acquire(timeout=1):
            proc = self._proc
            if proc is not None:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()  # the call gets HealthCheckExprLimitExceeded and lets go
            self._lock.acquire()
        try:
            proc, sock = self._proc, self._sock
            self._proc = self._sock = None
            if sock is not None:
                sock.close()
            if proc is not None:
                try:
                    proc.wait(timeout=1)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        finally:
            self._lock.release()

    def running(self) -> int | None:
        """The worker's pid while it runs (for tests and diagnostics)."""
        return self._proc.pid if self._proc is not None and self._proc.poll() is None else None

    async def start(self) -> None:
        """Nothing to do: the worker starts with the first evaluation."""

    async def stop(self) -> None:
        await asyncio.to_thread(self.close)


SANDBOX = CelSandbox()
"""The controller process's sandbox (its worker starts on the first healthCheckExprs evaluation)."""


def _verdict(answer: Any) -> Verdict:
    if isinstance(answer, dict):
        return ExprError(str(answer.get("error", "")))
    return str(answer) if answer else None


def _names(items: Sequence[Evaluation], most: int = 5) -> str:
    names = sorted({item.what for item in items})
    more = f" and {len(names) - most} more" if len(names) > most else ""
    return ", ".join(names[:most]) + more


def _exit_text(code: int | None) -> str:
    if code is None:
        return "an unknown status"
    if code < 0:
        return signal.Signals(-code).name
    return f"code {code}"


def _frame(data: bytes) -> bytes:
    return len(data).to_bytes(_LENGTH, "big") + data


def _recv_exactly(sock: socket.socket, size: int, deadline: float | None = None) -> bytes:
    chunks, remaining = [], size
    while remaining:
        if deadline is not None:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("no answer in time")
            sock.settimeout(left)
        chunk = sock.recv(min(remaining, 1 << 20))
        if not chunk:
            raise EOFError("connection closed")
        chunks.append(chunk)
        remaining -= len(chunk)
    return b"".join(chunks)


# --- the worker process ---------------------------------------------------------------------------


class _OverBudget(BaseException):
    """Raised by the CPU timer's signal handler; a BaseException, so cel-python does not catch it."""


class _OverMemory(Exception):
    pass


_armed = False


def _on_timer(signum: int, frame: Any) -> None:
    if _armed:
        raise _OverBudget()


def _budget(cpu_seconds: float) -> None:
    """Arm the timer for cpu_seconds of this process's CPU time, and RLIMIT_CPU a second past it."""
    global _armed
    used = time.process_time()
    _, hard = resource.getrlimit(resource.RLIMIT_CPU)
    soft = math.ceil(used + cpu_seconds) + 1
    if hard != resource.RLIM_INFINITY:
        soft = min(soft, hard)
    resource.setrlimit(resource.RLIMIT_CPU, (soft, hard))
    _armed = True
    # Again every 50 ms: an exception raised where Python ignores it (a __del__, the collector)
    # is raised anew.
    signal.setitimer(signal.ITIMER_PROF, cpu_seconds, 0.05)


def _disarm() -> None:
    global _armed
    _armed = False
    signal.setitimer(signal.ITIMER_PROF, 0)


class _Programs:
    """Compiled expressions by source (compiled once per worker)."""

    def __init__(self, size: int = 512) -> None:
        import celpy

        self._env = celpy.Environment()
        self._programs: dict[str, Any] = {}
        self._size = size

    def get(self, source: str) -> Any:
        """The program, or the text of the error compiling it (refused by the controller already)."""
        from tide.shared.cel.optionals import FUNCTIONS, compile_source

        program = self._programs.get(source)
        if program is None:
            if len(self._programs) >= self._size:
                self._programs.clear()
            try:
                program = self._env.program(compile_source(self._env, source), FUNCTIONS)
            except Exception as exc:
                program = f"failed to parse the CEL expression '{_short(source)}': {_short(str(exc))}"
            self._programs[source] = program
        return program


def activation(obj: Mapping[str, Any]) -> dict[str, Any]:
    """The expression's variables: the object's top-level fields, as Flux binds them (`status`,
    `metadata`, ...), and the whole object as `self`."""
    import celpy

    fields = {str(k): celpy.json_to_cel(v) for k, v in obj.items()}
    fields["self"] = celpy.celtypes.MapType({celpy.celtypes.StringType(k): v for k, v in fields.items()})
    return fields


_CEL_GO_ERRORS = (
    (re.compile(r"no such member in mapping: '(.*)'"), "no such key: {}"),
    (re.compile(r"undeclared reference to '([^']*)'"), "no such attribute(s): {}"),
    (re.compile(r"(?:found no matching overload|no such overload)\b"), "no such overload"),
)


def cel_go_error(exc: BaseException) -> str:
    """cel-python's evaluation error in cel-go's words where they differ (Flux shows cel-go's)."""
    args = exc.args if isinstance(exc.args, tuple) else ()
    message = str(args[0] if args else exc)[:1000]
    details = args[2] if len(args) > 2 and isinstance(args[2], tuple) else ()
    if message == "no such key" and details:
        return f"no such key: {_short(str(details[0]))}"
    if message == "invalid_argument" and args[1:2] == (IndexError,):
        return "index out of bounds"
    for pattern, text in _CEL_GO_ERRORS:
        found = pattern.match(message)
        if found:
            return text.format(*(_short(group) for group in found.groups()))
    return _short(message)


def _outcome(program: Any, source: str, variables: dict[str, Any]) -> bool | str:
    """Whether the expression is true, or the text of its evaluation's error (Flux's wording)."""
    import celpy

    if isinstance(program, str):
        return program
    try:
        result = program.evaluate(variables)
    except MemoryError as exc:
        raise _OverMemory() from exc
    except Exception as exc:  # a field that does not exist (yet), a type error: Flux's Unknown
        if isinstance(exc.__cause__, MemoryError) or exc.args[1:2] == (MemoryError,):
            raise _OverMemory() from exc
        return f"failed to evaluate the CEL expression '{_short(source)}': {cel_go_error(exc)}"
    if isinstance(result, celpy.CELEvalError) and (
        isinstance(result.__cause__, MemoryError) or result.args[1:2] == (MemoryError,)
    ):
        raise _OverMemory()
    if not isinstance(result, celpy.celtypes.BoolType):
        return f"failed to evaluate CEL expression as boolean: '{_short(source)}'"
    return bool(result)


def _evaluate(request: Mapping[str, Any], objects: list[bytes], programs: _Programs) -> dict[str, Any]:
    cpu = float(request["cpu"])
    entries = request["exprs"]
    verdicts: list[str | dict[str, str] | None] = []
    for index, (entry_index, data) in enumerate(zip(request["items"], objects, strict=True)):
        entry = entries[int(entry_index)]
        field = None
        try:
            _budget(cpu)
            try:
                obj = json.loads(data)
                variables = activation(obj) if isinstance(obj, dict) else {}
                verdict: str | dict[str, str] | None = None
                for field, source in zip(FIELDS, entry, strict=True):
                    if not source:
                        continue
                    outcome = _outcome(programs.get(source), source, variables)
                    if isinstance(outcome, str):
                        verdict = {"error": outcome}  # Flux stops at the first error too
                        break
                    if outcome:
                        verdict = field
                        break
                del variables, obj
            finally:
                _disarm()
        except _OverBudget:
            return {"exceeded": "cpu", "index": index, "field": field}
        except (MemoryError, _OverMemory):
            return {"exceeded": "memory", "index": index, "field": field}
        except RecursionError:  # an object nested too deep to convert: nothing is true of it
            verdict = None
        verdicts.append(verdict)
    return {"verdicts": verdicts}


def serve(sock: socket.socket, memory_bytes: int) -> None:
    """The worker: one request at a time until the controller closes its end of the socket."""
    programs = _Programs()
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))  # SIGXCPU would dump core
    resource.setrlimit(resource.RLIMIT_AS, (memory_bytes, memory_bytes))
    signal.signal(signal.SIGPROF, _on_timer)
    sock.sendall(b"\x01")  # ready: the caller's time limits start now
    while True:
        try:
            size = int.from_bytes(_recv_exactly(sock, _LENGTH), "big")
            request = json.loads(_recv_exactly(sock, size))
            objects = [
                _recv_exactly(sock, int.from_bytes(_recv_exactly(sock, _LENGTH), "big"))
                for _ in request["items"]
            ]
        except EOFError:
            return
        answer = _evaluate(request, objects, programs)
        del request, objects
        sock.sendall(_frame(json.dumps(answer).encode()))
        if "exceeded" in answer:
            return  # replaced by the controller


def main(argv: Sequence[str]) -> None:
    logging.disable(logging.CRITICAL)  # cel-python logs failing calls with their (huge) arguments
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a Ctrl-C stops the controller, which stops this
    # A signal mask survives exec: the thread that started this one may have blocked the timer's.
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGPROF, signal.SIGXCPU})
    serve(socket.socket(fileno=int(argv[0])), int(argv[1]))


if __name__ == "__main__":
    main(sys.argv[1:])
