"""--concurrent slots: a reconcile that only waits (a health check) gives its slot back meanwhile."""

from __future__ import annotations

import asyncio

from tide.shared.runtime.slots import WorkerSlots, current_slot, waiting


async def test_a_waiting_reconcile_frees_its_slot_and_takes_it_back() -> None:
    busy: list[int] = []
    slots = WorkerSlots(1, busy.append)
    first = await slots.take()
    release_wait = asyncio.Event()
    order: list[str] = []

    async def first_reconcile() -> None:
        current_slot.set(first)
        async with waiting():
            order.append("first waits")
            await release_wait.wait()
        order.append("first reports")
        first.give_back()

    async def second_reconcile() -> None:
        slot = await slots.take()  # only possible while the first waits
        order.append("second works")
        release_wait.set()
        await asyncio.sleep(0)
        order.append("second done")
        slot.give_back()

    await asyncio.wait_for(asyncio.gather(first_reconcile(), second_reconcile()), 5)
    # The first takes its slot back only once the second gave it up: never two at work.
    assert order == ["first waits", "second works", "second done", "first reports"]
    assert max(busy) == 1 and slots.busy == 0


async def test_outside_a_reconcile_waiting_is_a_plain_block() -> None:
    async with waiting():
        pass


async def test_a_slot_is_given_back_once_even_after_a_wait_was_cancelled() -> None:
    slots = WorkerSlots(1)
    slot = await slots.take()
    waited = asyncio.Event()

    async def reconcile() -> None:
        async with slot.waiting():
            await waited.wait()  # then taking the slot back blocks: another reconcile holds it

    task = asyncio.create_task(reconcile())
    other = await asyncio.wait_for(slots.take(), 5)  # free while the first waits
    waited.set()
    await asyncio.sleep(0.01)
    task.cancel()  # shut-down while it waits for its slot
    await asyncio.gather(task, return_exceptions=True)
    assert not slot.held
    slot.give_back()  # what the kind controller does at the end: nothing, it holds none
    other.give_back()
    assert slots.busy == 0
    again = await asyncio.wait_for(slots.take(), 1)
    assert slots.busy == 1
    again.give_back()
