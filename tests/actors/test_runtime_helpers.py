"""Unit tests: signal helper, fresh-sample fan-out, allocation errors become outcomes."""

from __future__ import annotations

import asyncio
import gc
import os
import signal

import pytest
from frequenz.channels import ReceiverStoppedError

from actors import FreshNotifier, cancel_on_signals


async def test_sigterm_cancels_the_main_task() -> None:
    reached = asyncio.Event()

    async def main() -> str:
        with cancel_on_signals():
            reached.set()
            try:
                await asyncio.Event().wait()
            except asyncio.CancelledError:
                return "cancelled"
        return "not cancelled"

    task = asyncio.create_task(main())
    await asyncio.wait_for(reached.wait(), 5)
    os.kill(os.getpid(), signal.SIGTERM)
    assert await asyncio.wait_for(task, 5) == "cancelled"
    # The handler was removed when the block ended.
    assert asyncio.get_running_loop().remove_signal_handler(signal.SIGTERM) is False


async def test_fresh_notifier_filters_and_drops_dead_receivers() -> None:
    n = FreshNotifier()
    only_2 = n.new_receiver([2])
    every = n.new_receiver()
    dropped = n.new_receiver([2])
    del dropped
    gc.collect()
    for cid in (1, 2, 3, 2):
        await n.notify(cid)
    assert [only_2.consume() for _ in range(len(only_2))] == [2, 2]
    assert [every.consume() for _ in range(len(every))] == [1, 2, 3, 2]
    await n.aclose()
    with pytest.raises(ReceiverStoppedError):
        await asyncio.wait_for(every.receive(), 1)
