"""The work queue: one entry per key, never the same key twice at once, delayed adds."""

import asyncio

from tide.shared.runtime.workqueue import ShutDown, WorkQueue


async def test_many_adds_of_one_key_are_one_entry() -> None:
    queue: WorkQueue[str] = WorkQueue("t")
    for _ in range(100):
        queue.add("a")
    queue.add("b")
    assert len(queue) == 2
    assert await queue.get() == "a"
    assert await queue.get() == "b"
    assert len(queue) == 0


async def test_key_added_while_processing_is_handed_out_again_after_done() -> None:
    queue: WorkQueue[str] = WorkQueue("t")
    queue.add("a")
    key = await queue.get()
    queue.add("a")
    queue.add("a")
    assert len(queue) == 0, "never handed to a second worker while the first holds it"
    assert queue.is_processing("a")
    queue.done(key)
    assert len(queue) == 1
    assert await queue.get() == "a"
    queue.done("a")
    assert len(queue) == 0


async def test_concurrent_workers_never_share_a_key() -> None:
    queue: WorkQueue[int] = WorkQueue("t")
    running: set[int] = set()
    overlaps = 0
    handled = 0

    async def worker() -> None:
        nonlocal overlaps, handled
        while True:
            try:
                key = await queue.get()
            except ShutDown:
                return
            if key in running:
                overlaps += 1
            running.add(key)
            await asyncio.sleep(0.001)
            if handled < 200:
                queue.add(key)  # an event arriving mid-reconcile
            handled += 1
            running.discard(key)
            queue.done(key)

    workers = [asyncio.create_task(worker()) for _ in range(4)]
    for key in range(5):
        queue.add(key)
    while handled < 200:  # noqa: ASYNC110 - polling a counter
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.05)
    queue.shut_down()
    await asyncio.gather(*workers)
    assert overlaps == 0


async def test_add_after_keeps_the_earliest_due_time() -> None:
    queue: WorkQueue[str] = WorkQueue("t")
    queue.add_after("a", 10)
    queue.add_after("a", 0.05)
    queue.add_after("a", 20)
    assert queue.waiting == 1
    assert len(queue) == 0
    key = await asyncio.wait_for(queue.get(), 1)
    assert key == "a"
    assert queue.waiting == 0


async def test_immediate_add_supersedes_a_delayed_one() -> None:
    queue: WorkQueue[str] = WorkQueue("t")
    queue.add_after("a", 0.05)
    queue.add("a")
    assert await queue.get() == "a"
    queue.done("a")
    await asyncio.sleep(0.1)
    assert len(queue) == 0, "the delayed add was replaced by the immediate one"


async def test_taking_a_key_drops_its_pending_delayed_add() -> None:
    queue: WorkQueue[str] = WorkQueue("t")
    queue.add("a")
    queue.add_after("b", 0.05)
    assert await queue.get() == "a"
    queue.add_after("a", 0.05)  # scheduled while processing: kept
    queue.done("a")
    got = {await asyncio.wait_for(queue.get(), 1), await asyncio.wait_for(queue.get(), 1)}
    assert got == {"a", "b"}


async def test_shut_down_wakes_idle_workers() -> None:
    queue: WorkQueue[str] = WorkQueue("t")
    waiter = asyncio.create_task(queue.get())
    await asyncio.sleep(0.01)
    queue.shut_down()
    try:
        await asyncio.wait_for(waiter, 1)
    except ShutDown:
        pass
    else:
        raise AssertionError("expected ShutDown")
