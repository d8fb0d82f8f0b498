"""The source controller's build workers: a build that times out is killed and its worker
replaced, so a hostile repository cannot keep a worker busy for good."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

import pytest

from tide.controllers.source.builder import BuildPool, WorkerLost, default_build_workers


def running(pid: int) -> bool:
    """Alive and not a zombie waiting to be reaped."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except FileNotFoundError:
        return False
    return fields[0] != "Z"


async def wait_until_gone(pid: int) -> bool:
    for _ in range(300):  # a guard against hanging, not a timing assertion
        if not running(pid):
            return True
        await asyncio.sleep(0.1)
    return False


async def test_timed_out_build_is_killed_and_its_worker_replaced() -> None:
    pool = BuildPool(1)
    await pool.start()
    try:
        first = await pool.run(os.getpid)
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(pool.run(time.sleep, 3600), 1)
        assert await wait_until_gone(first)
        # Today the only worker would still be sleeping: this would never be scheduled.
        second = await asyncio.wait_for(pool.run(os.getpid), 60)
        assert second != first
        assert running(second)
    finally:
        await pool.stop()


async def test_dead_worker_is_replaced() -> None:
    pool = BuildPool(1)
    await pool.start()
    try:
        first = await pool.run(os.getpid)
        with pytest.raises(WorkerLost):
            await pool.run(os._exit, 3)
        assert await wait_until_gone(first)
        assert await asyncio.wait_for(pool.run(os.getpid), 60) != first
    finally:
        await pool.stop()


async def test_thread_mode_runs_in_process() -> None:
    pool = BuildPool(0)
    assert await pool.run(os.getpid) == os.getpid()


async def test_idle_worker_exits_and_a_new_one_takes_the_next_build() -> None:
    pool = BuildPool(1, idle_timeout=0.2)
    await pool.start()
    try:
        first = await pool.run(os.getpid)
        assert await wait_until_gone(first)
        second = await asyncio.wait_for(pool.run(os.getpid), 60)
        assert second != first
    finally:
        await pool.stop()


async def test_workers_are_forked_from_one_fork_server() -> None:
    pool = BuildPool(2)
    await pool.start()
    try:
        pids = await asyncio.gather(pool.run(os.getppid), pool.run(os.getppid))
        # Both workers' parent is the fork server, which is not this process.
        assert pids[0] == pids[1] != os.getpid()
    finally:
        await pool.stop()


def test_build_workers_default_to_concurrent_at_most_the_cpus_but_one() -> None:
    cpus = len(os.sched_getaffinity(0))
    assert default_build_workers(1) == 1
    assert default_build_workers(cpus + 8) == max(1, cpus - 1)


class BuildRefused(Exception):
    pass


def refuse(message: str) -> None:
    raise BuildRefused(message)


async def test_an_exception_in_the_worker_is_raised_with_its_type_and_the_worker_kept() -> None:
    pool = BuildPool(1)
    await pool.start()
    try:
        first = await pool.run(os.getpid)
        with pytest.raises(BuildRefused, match="hostile"):
            await pool.run(refuse, "hostile")
        assert await pool.run(os.getpid) == first
    finally:
        await pool.stop()


async def test_stopping_the_pool_ends_the_fork_server_and_its_workers() -> None:
    pool = BuildPool(1)
    await pool.start()
    worker = await pool.run(os.getpid)
    server = await pool.run(os.getppid)
    await pool.stop()
    assert await wait_until_gone(worker)
    assert await wait_until_gone(server)
