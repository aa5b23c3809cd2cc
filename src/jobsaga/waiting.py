"""Sleeping until woken or a timeout passes, the loop shape every background task shares."""

from __future__ import annotations

import asyncio


async def wait_event(event: asyncio.Event, timeout: float) -> bool:
    """Wait for ``event`` up to ``timeout`` seconds, then clear it; True if it was set.

    ``asyncio.timeout`` rather than ``wait_for``: on Python 3.11, ``wait_for`` swallows a
    cancellation that arrives as the event is set, so a loop woken at the moment it is
    cancelled (the stager at shutdown) would run forever and the node would never stop.
    """
    try:
        async with asyncio.timeout(timeout):
            await event.wait()
        woken = True
    except TimeoutError:
        woken = False
    event.clear()
    return woken
