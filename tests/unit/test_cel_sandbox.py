"""The attack on spec.healthCheckExprs: tenant-written CEL over a tenant-written status, stopped by
the sandbox's worker process (its CPU budget, memory ceiling and the caller's timeout)."""

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from tide.shared.cel.sandbox import CelSandbox, Evaluation, HealthCheckExprLimitExceeded, Limits
from tide.shared.inventory import ObjectRef
from tide.shared.kube.health import HealthTarget, compile_exprs, wait_for_health

NESTED = "status.items.all(x, status.items.exists(y, y == -1))"  # O(n²)
MAP_BLOWUP = "status.items.map(x, status.items + status.items).size() > 0"  # O(n²) memory


def widget(items: int, phase: str = "Ready") -> dict:
    return {
        "apiVersion": "example.com/v1",
        "kind": "Widget",
        "metadata": {"name": "w", "namespace": "n"},
        "status": {"phase": phase, "items": list(range(items))},
    }


def ready(source: str = "status.phase == 'Ready'") -> Evaluation:
    return Evaluation("Widget/n/w", {"current": source}, widget(3))


@pytest.fixture(scope="module")
def sandbox():
    box = CelSandbox(Limits(cpu_seconds=0.3, memory_bytes=384 << 20, wall_seconds=10))
    yield box
    box.close()


def test_a_nested_macro_over_a_large_list_is_stopped_and_the_worker_replaced(sandbox) -> None:
    assert sandbox.evaluate([ready()]) == ["current"]
    first = sandbox.running()
    with pytest.raises(
        HealthCheckExprLimitExceeded, match=r"current expression '.*' exceeded its CPU limit of 0.3s"
    ) as err:
        sandbox.evaluate([Evaluation("Widget/n/w", {"current": NESTED}, widget(5_000))])
    assert "Widget/n/w" in str(err.value) and NESTED in str(err.value)
    assert sandbox.evaluate([ready()]) == ["current"]  # the next evaluation works, in a new worker
    assert sandbox.running() not in (None, first)


def test_a_memory_blowing_map_is_stopped() -> None:
    box = CelSandbox(Limits(cpu_seconds=10, memory_bytes=256 << 20))
    try:
        with pytest.raises(HealthCheckExprLimitExceeded, match="exceeded its memory limit of 256 MiB"):
            box.evaluate([Evaluation("Widget/n/w", {"current": MAP_BLOWUP}, widget(6_000))])
        assert box.evaluate([ready()]) == ["current"]
    finally:
        box.close()


def test_flux_style_expressions_in_one_batch(sandbox) -> None:
    conditions = {"conditions": [{"type": "Ready", "status": "True"}, {"type": "Issuing", "status": "False"}]}
    obj = {"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}, "status": conditions}
    exprs = {
        "inProgress": "status.conditions.exists(e, e.type == 'Issuing' && e.status == 'True')",
        "failed": "status.conditions.filter(e, e.type == 'Ready').all(e, e.status == 'False')",
        "current": "status.conditions.filter(e, e.type == 'Ready').all(e, e.status == 'True')",
    }
    present = {"current": "has(status.conditions) && status.conditions.exists(e, e.type == 'Ready')"}
    missing = {"current": "has(status.phase) && status.phase == 'Ready'"}
    items = [Evaluation("a", exprs, obj), Evaluation("b", present, obj), Evaluation("c", missing, obj)]
    assert sandbox.evaluate(items) == ["current", "current", None]


def test_a_worker_that_stops_answering_is_killed_at_the_wall_clock_limit() -> None:
    box = CelSandbox(Limits(cpu_seconds=0.1, wall_seconds=0.3))
    try:
        assert box.evaluate([ready()]) == ["current"]
        pid = box.running()
        assert pid is not None
        os.kill(pid, signal.SIGSTOP)
        with pytest.raises(HealthCheckExprLimitExceeded, match="time limit"):
            box.evaluate([ready()])
        assert box.evaluate([ready()]) == ["current"]
    finally:
        box.close()


def test_a_worker_killed_from_outside_is_replaced(sandbox) -> None:
    assert sandbox.evaluate([ready()]) == ["current"]
    pid = sandbox.running()
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    while sandbox.running() is not None:
        time.sleep(0.01)
    assert sandbox.evaluate([ready()]) == ["current"]


def test_the_worker_ends_with_its_controller() -> None:
    """Stopped with the controller (stop()), and gone when the controller dies without stopping."""
    box = CelSandbox()
    box.evaluate([ready()])
    pid = box.running()
    box.close()
    assert box.running() is None
    with pytest.raises(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)  # reaped

    script = textwrap.dedent(
        """
        import os
        from tide.shared.cel.sandbox import SANDBOX, Evaluation
        SANDBOX.evaluate([Evaluation("w", {"current": "true"}, {})])
        print(SANDBOX.running(), flush=True)
        os._exit(0)
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True
    )
    orphan = int(out.stdout)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            with open(f"/proc/{orphan}/stat") as stat:
                if stat.read().rsplit(")", 1)[1].split()[0] == "Z":
                    break  # exited; its zombie waits for init
        except FileNotFoundError:
            break
        time.sleep(0.02)
    else:
        pytest.fail("the worker outlived its controller")


async def test_the_health_wait_fails_with_the_limit_error(sandbox) -> None:
    exprs = compile_exprs([{"apiVersion": "example.com/v1", "kind": "Widget", "current": NESTED}])
    target = HealthTarget(ObjectRef("example.com", "Widget", "n", "w"), "example.com/v1")

    async def get(_: HealthTarget) -> dict:
        return widget(5_000)

    with pytest.raises(
        RuntimeError, match="exceeded its CPU limit"
    ):  # as HealthCheckFailed: the reconcilers report it
        await wait_for_health([target], get, exprs, limit=30, poll=0, sandbox=sandbox)

    async def get_empty(_: HealthTarget) -> dict:
        return widget(0)

    await wait_for_health([target], get_empty, exprs, limit=5, poll=0, sandbox=sandbox)  # all() of none: true
