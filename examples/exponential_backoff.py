"""Retry delays: the guide's "Error Handling > Exponential Backoff".

Run it from the repository root: ``python examples/exponential_backoff.py``

The default delay after a failed attempt follows the guide (~15 s, ~2 min, ~10 min, ~1 h),
then doubles up to a day, with +/-10 % jitter so a burst of failures does not come back as a
burst. A worker can set its own curve: ``backoff=`` a callable ``attempt -> seconds`` or a
tenacity wait strategy, or override ``backoff(self, job)``. The last part runs a node to
show retries really wait for the worker's delay.
"""

from __future__ import annotations

import random
import time
from datetime import timedelta

from _support import describe, settled, temporary_app, wait_until
from tenacity import wait_exponential

from jobsaga import Job, Worker
from jobsaga.backoff import default_backoff
from jobsaga.testing import build_job


class CallPartner(
    Worker, backoff=wait_exponential(multiplier=2, max=600), name="examples.call_partner"
):
    """A tenacity wait strategy: 2, 4, 8... seconds, at most 10 minutes."""

    def perform(self, job: Job[dict[str, str]]) -> None: ...


class Quick(Worker, backoff=lambda attempt: 5 * attempt, name="examples.quick"):
    """A callable: 5 s, 10 s, 15 s..."""

    def perform(self, job: Job[dict[str, str]]) -> None: ...


class Custom(Worker, name="examples.custom"):
    """A method, which sees the whole job."""

    def perform(self, job: Job[dict[str, str]]) -> None: ...

    def backoff(self, job: Job[dict[str, str]]) -> float:
        return 30 if job.attempt < 3 else 300


GUIDE = {1: "(guide: ~15 seconds)", 2: "(~2 minutes)", 3: "(~10 minutes)", 4: "(~1 hour)"}
ATTEMPTS_AT: list[float] = []


class Flaky(Worker, max_attempts=4, backoff=lambda attempt: 0.25 * attempt, name="examples.flaky"):
    """Fails three times, then succeeds; waits 0.25 s, 0.5 s, 0.75 s between attempts."""

    def perform(self, job: Job[dict[str, str]]) -> None:
        ATTEMPTS_AT.append(time.monotonic())
        if job.attempt < 4:
            raise ConnectionError("partner API unavailable")


def main() -> None:
    rng = random.Random(7)  # a fixed seed, so the jitter printed is the same every run
    print("default backoff after failed attempt n (with jitter):")
    for attempt in range(1, 9):
        delay = timedelta(seconds=round(default_backoff(attempt, rng=rng)))
        print(f"  n={attempt}: {delay}  {GUIDE.get(attempt, '')}".rstrip())

    for worker in (CallPartner, Quick, Custom):
        delays = [worker().backoff(build_job(worker, attempt=n)) for n in range(1, 6)]
        print(f"{worker.__name__:<12} n=1..5: {', '.join(f'{d:g}s' for d in delays)}")

    with temporary_app(Flaky) as app:
        job = app.insert(Flaky.new())
        with app.node({"default": 1}, poll_interval=0.02).start_in_thread():
            wait_until(lambda: settled(app))
        gaps = [
            later - earlier for earlier, later in zip(ATTEMPTS_AT, ATTEMPTS_AT[1:], strict=False)
        ]
        print(f"Flaky waited between attempts: {', '.join(f'{gap:.2f}s' for gap in gaps)}")
        print(describe(app.get_job(job.id) or job))


if __name__ == "__main__":
    main()
