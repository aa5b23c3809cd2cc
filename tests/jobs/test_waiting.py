"""The sleep every background loop shares must never swallow a cancellation."""

from __future__ import annotations

import asyncio

import pytest

from jobsaga.waiting import wait_event


def test_cancelled_as_the_event_is_set_still_cancels() -> None:
    """On Python 3.11 ``asyncio.wait_for`` returned the result here and dropped the cancel,
    so a node whose stager was woken at shutdown never stopped."""

    async def main() -> None:
        event = asyncio.Event()
        task = asyncio.create_task(wait_event(event, 10))
        await asyncio.sleep(0)
        event.set()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())


def test_woken_or_timed_out() -> None:
    async def main() -> tuple[bool, bool, bool]:
        event = asyncio.Event()
        timed_out = await wait_event(event, 0.01)
        event.set()
        woken = await wait_event(event, 10)
        return timed_out, woken, event.is_set()

    assert asyncio.run(main()) == (False, True, False)
