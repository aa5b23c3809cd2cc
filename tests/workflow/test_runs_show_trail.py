"""What ``jobsaga runs show`` and ``runs list`` tell an operator (issue 12, items 8 to 12).

On both engines, through the real CLI: a step cut short is "interrupted, outcome unknown",
never "not started"; the trail is numbered per run, holds every start and success in order,
folds a failure repeated across retries into one counted line and rounds delays; tracebacks
show the user's frames (all with ``-v``); a run lists its job's other runs and the follow-up
jobs it enqueued; ``--json`` on both commands; the Mermaid chart only with ``--graph``.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import re
import shlex
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from click.testing import CliRunner

from jobsaga import App, Job, StepContext, Worker, Workflow, WorkflowWorker, step
from jobsaga.cli.main import cli
from jobsaga.cli.runs import show_run
from jobsaga.cli.trail import NO_START_RECORDED, fold_traceback, render_trail, step_outcome
from jobsaga.redaction import redact_url
from jobsaga.testing import drain_queue
from jobsaga.workflow import (
    EventRecord,
    Retry,
    RunRecord,
    StepRecord,
    get_run,
    list_runs,
    roll_back_run,
)
from jobsaga.workflow.running import execute
from tests.workflow.conftest import TRAIL

gate: dict[str, asyncio.Event] = {}


class Receipt(Worker, name="tests.trail.receipt"):
    def perform(self, job: Job[Any]) -> None:
        return None


class Ship(Workflow, name="tests.trail.ship", inputs=["order"]):
    @step(undo_retries=3, backoff=0)
    def reserve(self, order: str) -> str:
        return f"r-{order}"

    @reserve.undo
    def release(self, result: str, ctx: StepContext[Any]) -> Retry | None:
        TRAIL.append(f"release try {ctx.tries}")
        return Retry("warehouse busy", delay=0) if ctx.tries < 2 else None

    @step(max_retries=3, retry_on=(ConnectionError,), backoff=0.0123456)
    def charge(self, reserve: str, ctx: StepContext[Any]) -> str:
        if ctx.tries <= 3:
            raise ConnectionError("card service unreachable")
        ctx.enqueue_after_success(Receipt.new({}))
        return "c-1"

    @step
    async def pack(self, charge: str, order: str, ctx: StepContext[Any]) -> str:
        TRAIL.append(f"pack@{ctx.attempt}")
        if order == "hang" and ctx.attempt == 1:
            await gate["pack"].wait()  # cut short here
        if order == "bad" or (order == "bad-once" and ctx.attempt == 1):
            raise ValueError("box too small")
        return "packed"


class ShipWorker(WorkflowWorker, workflow=Ship, name="tests.trail.ship_worker", max_attempts=2):
    pass


def show(db_url: str, run_id: int | None, *flags: str) -> str:
    result = CliRunner().invoke(cli, ["runs", "show", str(run_id), "--url", db_url, *flags])
    assert result.exit_code == 0, result.output
    return result.output


def trail_of(output: str) -> list[str]:
    return output[output.index("trail (times UTC):") :].splitlines()[1:]


def test_the_trail_is_numbered_complete_folded_and_rounded(
    db_url: str, make_app: Callable[..., App]
) -> None:
    app = make_app(ShipWorker, Receipt)
    job = app.insert(ShipWorker.new({"order": "bad"}, max_attempts=1))
    drain_queue(app)
    [run] = list_runs(app, job_id=job.id)
    out = show(db_url, run.id)
    lines = trail_of(out)
    assert lines[0] == "  attempt 1"
    row = re.compile(r"^\s+(\d+)(?:-(\d+))?  \d\d:\d\d:\d\d\.\d{3}  (\S+)\s+(.*)$")
    parsed = [row.match(line) for line in lines[1:]]
    assert all(parsed), lines
    numbers: list[int] = []
    for match in parsed:
        assert match is not None
        first, last = int(match[1]), int(match[2] or match[1])
        numbers += range(first, last + 1)
    full = get_run(app, run.id)  # type: ignore[arg-type]
    assert full is not None
    assert numbers == [e.seq for e in full.events] == list(range(1, len(full.events) + 1))
    said = [(m[3], m[4]) for m in parsed if m is not None]
    assert said == [
        ("reserve", "started"),
        ("reserve", "succeeded"),
        ("charge", "started"),
        (
            "charge",
            "tries 1-3 failed × 3: ConnectionError: card service unreachable "
            "(retried after 12 ms each; 2 retry starts folded in)",
        ),
        ("charge", "started (try 4)"),
        ("charge", "succeeded (try 4)"),
        ("pack", "started"),
        ("pack", "FAILED (try 1): ValueError: box too small"),
        ("reserve", "undo asked to retry, in 0 s: Retry('warehouse busy')"),
        ("reserve", "undone (undo try 2)"),
    ]
    assert "0.0123456" not in out
    # the user's frame is shown, the framework's are folded into one line
    assert 'in pack\n        raise ValueError("box too small")' in out
    assert re.search(r"… \d+ jobsaga frames? \(runs show -v shows them\)", out)
    assert "executor.py" not in out
    verbose = show(db_url, run.id, "-v")
    assert "executor.py" in verbose and "jobsaga frames" not in verbose
    by_group = CliRunner().invoke(cli, ["-v", "runs", "show", str(run.id), "--url", db_url])
    assert by_group.exit_code == 0 and "executor.py" in by_group.output
    # the chart is asked for
    assert "mermaid" not in out and "flowchart" not in out
    graph = show(db_url, run.id, "--graph")
    assert "flowchart TD" in graph and "class s_pack failed" in graph


def test_a_run_lists_its_jobs_other_runs_and_the_jobs_it_enqueued(
    db_url: str, make_app: Callable[..., App]
) -> None:
    app = make_app(ShipWorker, Receipt)
    job = app.insert(ShipWorker.new({"order": "bad-once"}))
    drain_queue(app, with_scheduled=True, with_recursion=True)
    first, second = sorted(list_runs(app, job_id=job.id), key=lambda r: r.id or 0)
    assert (first.status, second.status) == ("rolled_back", "succeeded")
    [receipt] = app.list_jobs(worker=Receipt.name)
    assert receipt.meta == {"enqueued_by_run": second.id}
    shown = CliRunner().invoke(cli, ["jobs", "show", str(receipt.id), "--url", db_url])
    hint = f"enqueued by saga run {second.id} when it succeeded: jobsaga runs show {second.id}"
    assert f"{hint} --url {shlex.quote(redact_url(db_url))}" in shown.output  # the same database

    out = show(db_url, second.id)
    others = out[out.index(f"other runs of job {job.id}:") :]
    assert re.search(rf"\n\s+{first.id}\s+rolled_back\s+1\s", others)
    enqueued = out[out.index("follow-up jobs it enqueued:") :]
    assert re.search(rf"\n\s+{receipt.id}\s+completed\s+default\s+{Receipt.name}\s", enqueued)
    before = show(db_url, first.id)
    assert re.search(rf"other runs of job {job.id}:\n.*\n\s+{second.id}\s+succeeded", before)
    assert "follow-up jobs" not in before

    data = json.loads(show(db_url, second.id, "--json"))
    assert data["id"] == second.id and data["status"] == "succeeded"
    assert [r["id"] for r in data["job_runs"]] == [second.id, first.id]
    # the job's runs say what `jobs show --json` says of them, in the same shape
    job_show = CliRunner().invoke(cli, ["jobs", "show", str(job.id), "--url", db_url, "--json"])
    assert job_show.exit_code == 0, job_show.output
    assert json.loads(job_show.output)["runs"] == data["job_runs"]
    assert [(j["id"], j["state"]) for j in data["follow_ups"]] == [(receipt.id, "completed")]
    assert [s["outcome"] for s in data["steps"]] == ["ok", "ok", "ok"]
    assert [e["seq"] for e in data["events"]] == list(range(1, len(data["events"]) + 1))


def test_runs_list_json_and_the_count_of_rows_left_out(
    db_url: str, make_app: Callable[..., App]
) -> None:
    app = make_app(ShipWorker, Receipt)
    for _ in range(3):
        app.insert(ShipWorker.new({"order": "ok"}))
    drain_queue(app)
    runner = CliRunner()
    listed = runner.invoke(cli, ["runs", "list", "--url", db_url, "--limit", "2"])
    assert listed.exit_code == 0, listed.output
    header, *rows, footer = listed.output.splitlines()
    assert header.split()[:6] == ["RUN", "STATUS", "JOB", "ATTEMPT", "STARTED", "(UTC)"]
    assert len(rows) == 2 and all(" succeeded " in r and "tests.trail.ship" in r for r in rows)
    assert footer == "showing 2 of 3 (--limit)"
    everything = runner.invoke(cli, ["runs", "list", "--url", db_url])
    assert "showing" not in everything.output
    as_json = runner.invoke(cli, ["runs", "list", "--url", db_url, "--json"])
    assert as_json.exit_code == 0, as_json.output
    documents = [json.loads(line) for line in as_json.output.splitlines()]
    assert [d["id"] for d in documents] == [r.id for r in list_runs(app)]
    assert {d["status"] for d in documents} == {"succeeded"}
    assert documents[0]["workflow"] == "tests.trail.ship" and documents[0]["inputs"] == {
        "order": "ok"
    }
    assert not as_json.stderr
    cut = runner.invoke(cli, ["runs", "list", "--url", db_url, "--json", "--limit", "2"])
    assert len(cut.stdout.splitlines()) == 2  # stdout stays documents only
    assert cut.stderr.strip() == "showing 2 of 3 (--limit)"


async def cut_short(app: App, job: Job[Any]) -> None:
    """The run's attempt is cancelled while ``pack`` runs, as a node shutdown does."""
    gate["pack"] = asyncio.Event()
    first = dataclasses.replace(job, attempt=1)
    task = asyncio.create_task(execute(app, Ship, {"order": "hang"}, job=first))
    while "pack@1" not in TRAIL:
        await asyncio.sleep(0.01)
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


def test_a_step_cut_short_is_interrupted_with_its_outcome_unknown(
    db_url: str, make_app: Callable[..., App]
) -> None:
    app = make_app(ShipWorker, Receipt)
    job = app.insert(ShipWorker.new({"order": "hang"}))
    asyncio.run(cut_short(app, job))
    [run] = list_runs(app, job_id=job.id)
    out = show(db_url, run.id)
    assert re.search(r"\n  pack\s+interrupted, outcome unknown  <- charge", out), out
    assert "run interrupted (shutdown or timeout)" in out

    # An operator rolls it back (nobody will resume it): the step that ran is still not
    # "not started" (it showed so before, although its side effect had happened).
    roll_back_run(app, run.id, reason="nobody will resume it", force=True)  # type: ignore[arg-type]
    after = show(db_url, run.id)
    assert re.search(r"\n  pack\s+interrupted, outcome unknown", after), after
    assert "not started" not in after
    assert "interrupted (it had started: outcome unknown)" in after


# --- what the log proves, on runs built by hand (the seam a crash leaves) -----------------

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def _step(name: str, position: int, status: str, tries: int = 0) -> StepRecord:
    return StepRecord(name, position, status, None, None, tries, 0, None, None, None, None)


def _event(
    seq: int, attempt: int, step: str | None, kind: str, detail: dict[str, Any] | None = None
) -> EventRecord:
    return EventRecord(seq, T0 + timedelta(seconds=seq), attempt, step, kind, detail)


def _run(
    status: str, attempt: int, events: list[EventRecord], steps: list[StepRecord]
) -> RunRecord:
    return RunRecord(
        id=1,
        workflow="w",
        job_id=1,
        attempt=attempt,
        status=status,
        inputs={},
        context=None,
        result=None,
        error=None,
        started_at=T0,
        updated_at=T0,
        finished_at=None if status in ("running", "rolling_back") else T0,
        dag={"a": [], "b": ["a"], "c": ["b"]},
        steps=tuple(steps),
        events=tuple(events),
    )


def test_a_step_whose_start_a_crash_may_have_lost_is_not_called_not_started() -> None:
    """Attempt 1 completed ``a`` and died without a word (kill -9) right after starting ``b``,
    before the round that writes ``b``'s start; attempt 2 rolled the run back. The log cannot
    know whether ``b`` ran: it says its start is not recorded, not that it did not start.
    ``c`` could not start (``b`` never completed): "not started" is the truth for it."""
    events = [
        _event(1, 1, "a", "step.started", {"try": 1}),
        _event(2, 1, "a", "step.succeeded", {"try": 1}),
        _event(3, 2, None, "run.resumed", {"attempt": 2}),
        _event(4, 2, None, "run.abandoned", {"reason": "x", "type": "RunAbandoned"}),
        _event(5, 2, "a", "step.undone", {"undo_tries": 1}),
    ]
    steps = [_step("a", 0, "undone", 1), _step("b", 1, "pending"), _step("c", 2, "pending")]
    run = _run("rolled_back", 2, events, steps)
    assert step_outcome(run, run.step("b")) == NO_START_RECORDED
    assert step_outcome(run, run.step("c")) == "not started"
    shown = "\n".join(show_run(run, None))
    assert re.search(r"\n  b\s+no start recorded \*  <- a\n", shown), shown
    assert "so a step shown with no start recorded may have run (attempt 1 ended" in shown
    # the same steps after attempts that each said how they ended: nothing was lost
    clean = _run(
        "rolled_back",
        2,
        [*events[:2], _event(3, 1, None, "run.interrupted", {"attempt": 1}), *events[2:]],
        steps,
    )
    assert step_outcome(clean, clean.step("b")) == "not started"


def test_framework_frames_fold_into_one_line() -> None:
    text = (
        "Traceback (most recent call last):\n"
        '  File "/srv/venv/lib/python3.12/site-packages/jobsaga/workflow/executor.py", '
        "line 558, in run_step\n"
        "    value = await self.call(spec.fn, (self.instance,), kwargs, name)\n"
        "            ^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^\n"
        '  File "/usr/lib/python3.12/concurrent/futures/thread.py", line 58, in run\n'
        "    result = self.fn(*self.args, **self.kwargs)\n"
        '  File "/srv/app/shop/sagas.py", line 32, in pack\n'
        '    raise ValueError("box too small")\n'
        "ValueError: box too small\n"
    )
    assert fold_traceback(text) == [
        "Traceback (most recent call last):",
        "  … 2 jobsaga frames (runs show -v shows them)",
        '  File "/srv/app/shop/sagas.py", line 32, in pack',
        '    raise ValueError("box too small")',
        "ValueError: box too small",
    ]
    assert fold_traceback(text, verbose=True) == text.rstrip().splitlines()


# --- two steps retrying at the same time --------------------------------------------------


class Busy(Exception):
    pass


async def _meet(me: str, other: str, tries: int) -> None:
    """Hold this try until the other step's try of the same number has started too, so both
    steps' tries (and their events) overlap."""
    TRAIL.append(f"{me}@{tries}")
    while f"{other}@{tries}" not in TRAIL:
        await asyncio.sleep(0.002)


class Both(Workflow, name="tests.trail.both", inputs=["order"]):
    @step
    def a(self, order: str) -> str:
        return "a"

    @step(max_retries=5, retry_on=(Busy,), backoff=0.0123)
    async def b(self, a: str, ctx: StepContext[Any]) -> str:
        if ctx.tries <= 2:
            await _meet("b", "c", ctx.tries)
        if ctx.tries <= 4:
            raise Busy("warehouse busy")
        return "b"

    @step(max_retries=5, backoff=0.0123)
    async def c(self, a: str, ctx: StepContext[Any]) -> str | Retry:
        if ctx.tries <= 2:
            await _meet("c", "b", ctx.tries)
        return Retry() if ctx.tries <= 2 else "c"


class BothWorker(WorkflowWorker, workflow=Both, name="tests.trail.both_worker"):
    pass


ROW = re.compile(r"^\s+(\d+)(?:[-…](\d+))?  \d\d:\d\d:\d\d\.\d{3}  (\S+)\s+(.*)$")


def _said_numbers(first: int, last: int, text: str) -> list[int]:
    """The event numbers a trail line stands for: its text's list when it has one."""
    listed = re.search(r"events ([\d,-]+)\)$", text)
    if listed is None:
        return list(range(first, last + 1))
    numbers: list[int] = []
    for part in listed[1].split(","):
        low, _, high = part.partition("-")
        numbers += range(int(low), int(high or low) + 1)
    return numbers


def test_concurrent_steps_each_fold_their_repeated_failures(
    db_url: str, make_app: Callable[..., App]
) -> None:
    """``b`` fails with the same error four times and ``c`` asks to retry twice, their tries
    overlapping: each step's repeats are one counted line (at its first failure) although the
    other step's events sit between them, the retry starts folded in are said, every event
    number is on exactly one line, in order; ``-v`` shows every event on its own line."""
    app = make_app(BothWorker)
    job = app.insert(BothWorker.new({"order": "x"}))
    drain_queue(app)
    [run] = list_runs(app, job_id=job.id)
    full = get_run(app, run.id)  # type: ignore[arg-type]
    assert full is not None and full.status == "succeeded"
    events = [(e.step, e.kind) for e in full.events]
    b_failed = [i for i, e in enumerate(events) if e == ("b", "step.retried")]
    assert len(b_failed) == 4
    assert any(s == "c" for s, _ in events[b_failed[0] : b_failed[1]])  # they did interleave

    lines = trail_of(show(db_url, run.id))
    assert lines[0] == "  attempt 1"
    parsed = [ROW.match(line) for line in lines[1:]]
    assert all(parsed), lines
    said: list[tuple[str, str]] = []
    numbers: list[int] = []
    firsts: list[int] = []
    for match in parsed:
        assert match is not None
        said.append((match[3], match[4]))
        firsts.append(int(match[1]))
        numbers += _said_numbers(int(match[1]), int(match[2] or match[1]), match[4])
    assert sorted(numbers) == list(range(1, len(full.events) + 1)), lines
    assert len(numbers) == len(set(numbers)) and firsts == sorted(firsts)
    failed = sorted((s, text) for s, text in said if "failed" in text)
    assert [s for s, _ in failed] == ["b", "c"], lines  # one line each
    assert failed[0][1].startswith(
        "tries 1-4 failed × 4: Busy: warehouse busy (retried after 12 ms each; "
        "3 retry starts folded in"
    ), lines
    assert failed[1][1].startswith(
        "tries 1-2 failed × 2: Retry() (retried after 12 ms each; 1 retry start folded in"
    ), lines
    starts = sorted((s, text) for s, text in said if text.startswith("started"))
    assert starts == [
        ("a", "started"),
        ("b", "started"),
        ("b", "started (try 5)"),
        ("c", "started"),
        ("c", "started (try 3)"),
    ]
    assert ("b", "succeeded (try 5)") in said and ("c", "succeeded (try 3)") in said

    verbose = trail_of(show(db_url, run.id, "-v"))
    rows = [ROW.match(line) for line in verbose[1:]]
    assert all(m is not None and m[2] is None for m in rows), verbose
    assert [int(m[1]) for m in rows if m is not None] == list(range(1, len(full.events) + 1))
    assert "failed ×" not in "\n".join(verbose)


def test_the_reviewers_interleaving_folds_each_step_once() -> None:
    """The interleaving a reviewer met, built by hand: before, ``b``'s error was said four
    times (at 5, in ``10-12`` and at 16 and 18) and ``c``'s line ``6-8`` counted three events
    as two and hid a start."""
    busy = {"type": "shop.Busy", "message": "warehouse busy"}
    closed = {"type": "shop.Busy", "message": "warehouse closed"}
    d = 0.11486440012374986
    events = [
        _event(1, 1, "a", "step.started", {"try": 1}),
        _event(2, 1, "a", "step.succeeded", {"try": 1}),
        _event(3, 1, "b", "step.started", {"try": 1}),
        _event(4, 1, "c", "step.started", {"try": 1}),
        _event(5, 1, "b", "step.retried", {"try": 1, "delay": d, "error": busy}),
        _event(6, 1, "c", "step.retried", {"try": 1, "delay": d}),
        _event(7, 1, "b", "step.started", {"try": 2}),
        _event(8, 1, "c", "step.started", {"try": 2}),
        _event(9, 1, "b", "step.retried", {"try": 2, "delay": d, "error": busy}),
        _event(10, 1, "c", "step.retried", {"try": 2, "delay": 0.5}),
        _event(11, 1, "b", "step.started", {"try": 3}),
        _event(12, 1, "b", "step.retried", {"try": 3, "delay": d, "error": busy}),
        _event(13, 1, "c", "step.started", {"try": 3}),
        _event(14, 1, "b", "step.started", {"try": 4}),
        _event(15, 1, "c", "step.succeeded", {"try": 3}),
        _event(16, 1, "b", "step.retried", {"try": 4, "delay": d, "error": busy}),
        _event(17, 1, "b", "step.started", {"try": 5}),
        _event(18, 1, "b", "step.retried", {"try": 5, "delay": d, "error": closed}),
        _event(19, 1, "b", "step.started", {"try": 6}),
        _event(20, 1, "b", "step.retried", {"try": 6, "delay": d, "error": busy}),
    ]
    steps = [
        _step("a", 0, "succeeded", 1),
        _step("b", 1, "retried", 6),
        _step("c", 2, "succeeded", 3),
    ]
    run = _run("running", 1, events, steps)
    shown = "\n".join(show_run(run, None))
    lines = shown[shown.index("trail (times UTC):") :].splitlines()
    assert lines[0] == "trail (times UTC): repeated failures folded, -v shows every event"
    assert [re.sub(r"\d\d:\d\d:\d\d\.\d{3}", "T", line) for line in lines[1:]] == [
        "  attempt 1",
        "     1  T  a  started",
        "     2  T  a  succeeded",
        "     3  T  b  started",
        "     4  T  c  started",
        "  5…16  T  b  tries 1-4 failed × 4: Busy: warehouse busy (retried after 115 ms each; "
        "3 retry starts folded in; events 5,7,9,11-12,14,16)",
        "  6…10  T  c  tries 1-2 failed × 2: Retry() (retried after 115 ms, 500 ms; "
        "1 retry start folded in; events 6,8,10)",
        "    13  T  c  started (try 3)",
        "    15  T  c  succeeded (try 3)",
        "    17  T  b  started (try 5)",
        "    18  T  b  failed, retry in 115 ms: Busy: warehouse closed",
        "    19  T  b  started (try 6)",
        "    20  T  b  failed, retry in 115 ms: Busy: warehouse busy",
    ]
    unfolded = render_trail(run, verbose=True)
    assert unfolded[0] == "trail (times UTC):"
    assert [line.split()[0] for line in unfolded[2:]] == [str(n) for n in range(1, 21)]
    assert "0.1148" not in shown and "0.1148" not in "\n".join(unfolded)
