"""The source controller's build workers: a build that times out is killed and its worker
replaced, so a hostile repository cannot keep a worker busy for good."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

import pytest

from tide.controllers.source.builder import BuildPool, WorkerLost, calls_per_worker, default_build_workers


def running(pid: int) -> bool:
    """Alive and not a zombie waiting to be reaped."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:  # gone before or while it was read (ENOENT, ESRCH)
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


def test_every_reconcile_worker_can_build_at_once() -> None:
    assert calls_per_worker(2, 1) == 2
    assert calls_per_worker(10, 3) == 4
    assert calls_per_worker(1, 4) == 1


def wait_for(path: str) -> int:
    """Blocks until path exists (a guard of 60 s against hanging): only a second call running in
    the same worker at the same time can create it."""
    deadline = time.monotonic() + 60
    while not os.path.exists(path):
        if time.monotonic() > deadline:
            raise TimeoutError(path)
        time.sleep(0.01)
    return os.getpid()


def create(path: str) -> int:
    Path(path).touch()
    return os.getpid()


async def test_one_worker_runs_its_calls_at_once(tmp_path: Path) -> None:
    pool = BuildPool(1, calls_per_worker=2)
    await pool.start()
    try:
        flag = str(tmp_path / "flag")
        waiting = asyncio.ensure_future(pool.run(wait_for, flag))
        created = await asyncio.wait_for(pool.run(create, flag), 60)
        assert await asyncio.wait_for(waiting, 60) == created != os.getpid()
    finally:
        await pool.stop()


async def test_a_cancelled_call_kills_its_worker_and_the_other_call_runs_again(tmp_path: Path) -> None:
    pool = BuildPool(1, calls_per_worker=2)
    await pool.start()
    try:
        flag = str(tmp_path / "flag")
        other = asyncio.ensure_future(pool.run(wait_for, flag))
        first = await pool.run(os.getpid)  # the same worker, which runs `other` meanwhile
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(pool.run(time.sleep, 3600), 0.5)
        assert await wait_until_gone(first)
        create(flag)
        # Not WorkerLost: the worker was stopped for the sleeping call, not for this one.
        assert await asyncio.wait_for(other, 60) not in (first, os.getpid())
    finally:
        await pool.stop()


async def test_a_worker_that_dies_fails_every_call_it_ran(tmp_path: Path) -> None:
    pool = BuildPool(1, calls_per_worker=2)
    await pool.start()
    try:
        other = asyncio.ensure_future(pool.run(wait_for, str(tmp_path / "never")))
        await asyncio.sleep(0)
        with pytest.raises(WorkerLost):
            await pool.run(os._exit, 3)
        with pytest.raises(WorkerLost):
            await asyncio.wait_for(other, 60)
        assert await pool.run(os.getpid) != os.getpid()
    finally:
        await pool.stop()


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


async def test_a_worker_killed_while_idle_is_replaced() -> None:
    pool = BuildPool(1, calls_per_worker=2)
    await pool.start()
    try:
        first = await pool.run(os.getpid)
        os.kill(first, 9)
        assert await wait_until_gone(first)
        # Whether or not its end was seen before this call: the call never reached it, so it goes
        # to a new worker instead of failing.
        assert await asyncio.wait_for(pool.run(os.getpid), 60) not in (first, os.getpid())
    finally:
        await pool.stop()
