"""Every runnable example in ``examples/`` runs as a user would (``python examples/NAME.py``
from the repository root, in a subprocess), exits 0 and prints the outcomes it is about.

Expectations are checked against the output with runs of whitespace collapsed to one space,
so column padding and line wrapping do not matter: a ``str`` must appear as is, a compiled
pattern must match somewhere.
"""

from __future__ import annotations

import functools
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"

Expectation = str | re.Pattern[str]

EXPECTED: dict[str, list[Expectation]] = {
    "basic_worker": [
        "BasicWorker options: queue=default max_attempts=3 priority=1 tags=['processing']",
        "perform broken-456 attempt 3: error: upstream refused the task",
        "job 1 examples.basic: completed after 1/3",
        "job 2 examples.basic: discarded after 3/3 | attempt 3: PerformError: upstream refused",
    ],
    "actor_worker": [
        "'actor': {'id': 'user-1', 'organization_id': 'org-1', 'role': 'admin'}",
        "refused at insert: examples.process_resource: invalid args: field 'actor.role': "
        "Input should be 'admin' or 'member'",
        "jobs stored: 3",
        "perform res-1 as user-1 (<Role.ADMIN: 'admin'>)",
        "job 1 examples.process_resource: completed after 1/3",
        "job 2 examples.process_resource: discarded after 1/3 | attempt 1: discarded: forbidden",
        "job 3 examples.process_resource: discarded after 1/3 | attempt 1: discarded: not_found",
        "res-1 status: processed by user-1",
    ],
    "enqueueing": [
        "task-456: queue=high_priority priority=0 max_attempts=5 state=available",
        "default queue ran, in order: task-123 (default, priority 0); "
        "bulk-1 (default, priority 3); bulk-2 (default, priority 3)",
        "high_priority queue ran: task-456 (high_priority, priority 0)",
        "job counts: {'completed': 4}",
    ],
    "scheduled_jobs": [
        "job 1 examples.notification: state=scheduled",
        "scheduled_at=2030-01-01 09:00:00 UTC",
        re.compile(r"job 2 was due at \+1\.0s and ran at \+1\.\ds: not before"),
        re.compile(r"job 4 was due at \+1\.5s and ran at \+1\.\ds: not before"),
        "job 1 is still scheduled",
        "job 3 is still scheduled",
    ],
    "unique_jobs": [
        "first insert (res-123) -> job 1 state=available conflict=False",
        "second insert (res-123, by cron) -> job 1 state=available conflict=True",
        "another resource (res-999) -> job",
        "jobs stored: 2",
        re.compile(r"after res-123 completed -> job \d+ state=available conflict=False"),
        re.compile(r"period 1s, at once -> job \d+ state=available conflict=True"),
        re.compile(r"period 1s, 1\.1s later -> job \d+ state=available conflict=False"),
    ],
    "error_handling": [
        re.compile(r" ok job \d+ examples\.process: completed after 1/3 "),
        "not_found job 2 examples.process: discarded after 1/3 | attempt 1: discarded: not_found",
        "forbidden job 3 examples.process: discarded after 1/3 | attempt 1: discarded: forbidden",
        "rate_limit job 4 examples.process: completed after 1/3, snoozed 1x",
        "transient_error job 5 examples.process: completed after 2/3 | attempt 1: PerformError",
        "exception job 6 examples.process: completed after 2/3 | attempt 1: ConnectionError",
        "customer_left job 7 examples.process: cancelled after 1/3 | "
        "attempt 1: cancelled: the customer closed the account",
    ],
    "final_attempt": [
        "res-broken: attempt 3/3 (final attempt)",
        "on_final_failure(res-broken, RuntimeError: processing res-broken failed)",
        "job 2 examples.final_attempt: completed after 2/3",
        "job 3 examples.final_attempt: discarded after 3/3",
        "resources: {'res-ok': 'processed', 'res-flaky': 'processed', 'res-broken': 'failed'}",
        "UI messages (1):",
    ],
    "exponential_backoff": [
        re.compile(r"n=1: 0:00:1[3-7] \(guide: ~15 seconds\)"),
        re.compile(r"n=2: 0:0[12]:\d\d \(~2 minutes\)"),
        re.compile(r"n=4: (0:5[4-9]|1:0[0-6]):\d\d \(~1 hour\)"),
        "CallPartner n=1..5: 2s, 4s, 8s, 16s, 32s",
        "Quick n=1..5: 5s, 10s, 15s, 20s, 25s",
        "Custom n=1..5: 30s, 30s, 300s, 300s, 300s",
        "job 1 examples.flaky: completed after 4/4",
    ],
    "recurring_jobs": [
        "0 9 * * 1 examples.weekly_report Mon",
        "refused: cron entry '0 0 31 2 *' examples.daily_cleanup: '0 0 31 2 *' never fires",
        re.compile(r"health-every-second inserted jobs for ticks \d\d:\d\d:\d\d, \d\d:\d\d:\d\d"),
        "'cron': True, 'cron_expr': '* * * * * *', 'cron_name': 'health-every-second'",
    ],
    "workflow_in_job": [
        "NotifyOwner: told user-1 that res-1 is processed",
        "on_final_failure: processing res-2 [fails] failed (attempt 2); undone: reserve",
        "job 1 examples.process_resource_worker: completed after 1/2",
        "job 2 examples.process_resource_worker: discarded after 2/2",
        re.compile(r"run \d+ of job 2 \(attempt 2\): rolled_back"),
        "seats still held: ['res-1']",
        "NotifyOwner jobs: 1",
        "EnqueueInStepError: workflow step 'trigger_job' tried to insert a job",
        "ctx.enqueue_after_success(Worker.new(...))",
    ],
    "saga_composition": [
        "book B-2: ROLLBACK (account shop-eu is frozen)",
        "undone, newest first: pay.otherwise.send_invoice",
        re.compile(r"job \d+: scheduled, parked on run \d+ \(step approve\); run \d+: halted"),
        "pay C-3: card charged 800 (ticket-C-3)",
        "approve of C-3 1x",
    ],
    "analytics_agent": [
        "p-revenue ('weekly revenue by region'): prompt completed",
        "summarize compensated",
        "run_query ran 2x",
        "p-forecast ('forecast next quarter [report store down]'): prompt failed",
        "job 3 analytics.agent.demo: discarded after 2/2",
        re.compile(r"attempt 2: rolled_back; save_report failed; undone: run_query"),
        "users notified: 3",
        "UI told: p-forecast processing_failed (report store unreachable)",
    ],
    "queue_configuration": [
        "uploads: 6 jobs, at most 3 at once (limit 3)",
        "agents: 12 jobs, at most 10 at once (limit 10)",
        "validations paused: available=4 executing=0 after 0.5 s",
        "validations resumed: 4 jobs done, at most 2 at once (limit 2)",
        "uploads scaled to 6: 6 jobs, at most 6 at once",
        "uploads 6 12",
    ],
}


def example_files() -> list[str]:
    return sorted(p.stem for p in EXAMPLES.glob("*.py") if not p.name.startswith("_"))


@functools.cache
def run_example(name: str) -> str:
    """The example's output; run once per test process, however many tests read it (those
    of one example share an xdist group, so they read one run)."""
    env = {k: v for k, v in os.environ.items() if k != "JOBSAGA_DATABASE_URL"}
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / f"{name}.py")],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, f"exit {done.returncode}\n{done.stdout}\n{done.stderr}"
    return done.stdout


READ_TWICE = ("exponential_backoff", "final_attempt", "saga_composition")
"""Examples that another test below reads too."""


def shared(name: str) -> pytest.MarkDecorator:
    return pytest.mark.xdist_group(f"example-{name}")


@pytest.mark.parametrize(
    "name",
    [pytest.param(n, marks=shared(n)) if n in READ_TWICE else n for n in sorted(EXPECTED)],
)
def test_example_runs_and_shows_its_outcomes(name: str) -> None:
    output = run_example(name)
    flat = " ".join(output.split())
    missing = [
        expected
        for expected in EXPECTED[name]
        if not (
            expected in flat if isinstance(expected, str) else expected.search(flat) is not None
        )
    ]
    assert not missing, f"examples/{name}.py output lacks {missing}:\n{output}"


@shared("exponential_backoff")
def test_backoff_example_waits_as_configured() -> None:
    output = run_example("exponential_backoff")
    found = re.search(r"Flaky waited between attempts: ([\d.]+)s, ([\d.]+)s, ([\d.]+)s", output)
    assert found, output
    for gap, wanted in zip(map(float, found.groups()), (0.25, 0.5, 0.75), strict=True):
        assert wanted - 0.01 <= gap < wanted + 1.0, output


@shared("final_attempt")
def test_final_failure_hook_runs_once() -> None:
    assert run_example("final_attempt").count("on_final_failure(") == 1


def test_every_example_is_tested_and_listed() -> None:
    assert example_files() == sorted(EXPECTED)
    readme = (EXAMPLES / "README.md").read_text()
    unlisted = [name for name in example_files() if f"{name}.py" not in readme]
    assert not unlisted, f"examples/README.md does not list {unlisted}"
