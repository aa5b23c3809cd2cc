"""Workers shared by the operations tests: jobs that block until told, and record what ran."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

from jobsaga import Discard, Job, Worker

started: list[int] = []
finished: list[int] = []
concurrent_now = 0
concurrent_peak = 0
_lock = threading.Lock()
release = threading.Event()


def reset() -> None:
    global concurrent_now, concurrent_peak
    started.clear()
    finished.clear()
    concurrent_now = concurrent_peak = 0
    release.clear()


class Noop(Worker, queue="default"):
    def perform(self, job: Job[Any]) -> None:
        return None


class Hold(Worker, queue="default", timeout=None):
    """Async: runs until ``release`` is set, counting how many run at once."""

    async def perform(self, job: Job[Any]) -> str:
        global concurrent_now, concurrent_peak
        with _lock:
            started.append(job.id)
            concurrent_now += 1
            concurrent_peak = max(concurrent_peak, concurrent_now)
        try:
            while not release.is_set():
                await asyncio.sleep(0.01)
        finally:
            with _lock:
                concurrent_now -= 1
        finished.append(job.id)
        return "released"


class SyncHold(Worker, queue="default", timeout=None):
    """Sync (runs in a thread): holds until ``release`` or ``seconds`` pass."""

    def perform(self, job: Job[Any]) -> str:
        started.append(job.id)
        deadline = time.monotonic() + float(job.args.get("seconds", 10))
        while not release.is_set() and time.monotonic() < deadline:
            time.sleep(0.01)
        finished.append(job.id)
        return "done"


class SyncCount(Worker, queue="default", timeout=None):
    """Sync (runs in a thread): holds until ``release``, counting how many run at once."""

    def perform(self, job: Job[Any]) -> None:
        global concurrent_now, concurrent_peak
        with _lock:
            concurrent_now += 1
            concurrent_peak = max(concurrent_peak, concurrent_now)
        try:
            release.wait(10)
        finally:
            with _lock:
                concurrent_now -= 1
        finished.append(job.id)


class AlwaysDiscard(Worker, queue="default"):
    def perform(self, job: Job[Any]) -> Discard:
        return Discard("no such thing")


class Flaky(Worker, queue="default", max_attempts=1):
    def perform(self, job: Job[Any]) -> None:
        if job.attempt == 1:
            raise RuntimeError("first attempt fails")
