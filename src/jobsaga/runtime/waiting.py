"""Sleeping until woken or a timeout passes, the loop shape every background task shares."""

from __future__ import annotations

import asyncio


async def wait_event(event: asyncio.Event, timeout: float) -> bool:
    """Wait for ``event`` up to ``timeout`` seconds, then clear it; True if it was set."""
    try:
        await asyncio.wait_for(event.wait(), timeout)
        woken = True
    except TimeoutError:
        woken = False
    event.clear()
    return woken
