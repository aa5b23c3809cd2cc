"""The run log cannot be written (issue 9, fault 8), both engines.

A saga must never run a step it cannot record. A write that fails is retried (with a
bounded backoff) and no new step starts meanwhile; when the log still cannot be written,
the run stops as a shutdown would stop it (no new step, no rollback, which could not be
recorded either), the attempt fails, and the next attempt resumes the run from what is
durable: a step whose completion was recorded never runs again.

Two real faults: a trigger that makes the database refuse every write to the steps table
(a DB-level fault, for as long as the test leaves it), and, for the transient case, the
engine's transactions wrapped so that the steps table's writes raise
``DatabaseUnavailable`` a given number of times (fault injection at the engine boundary;
no database is mocked).
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest

from jobsaga import App, JobState, StepContext, Workflow, WorkflowWorker, step
from jobsaga.errors import DatabaseUnavailable, StepResultError
from jobsaga.testing import run_workflow
from jobsaga.workflow import get_run, list_runs
from jobsaga.workflow.writer import statements
from tests.helpers import wait_until
from tests.workflow.conftest import TRAIL


class Fault:
    """What step ``b`` does to the database on the first attempt, set by each test."""

    def __init__(self) -> None:
        self.app: App | None = None
        self.action: Callable[[], None] = lambda: None
        self.failures_left = 0
        self.target: tuple[str, ...] = ("INSERT INTO jobsaga_workflow_steps",)
        """A statement holding any of these texts fails while failures are asked for."""
        self.tries = 0
        self.cleared_at: float | None = None
        self.c_started_at: float | None = None
        self.lock = threading.Lock()

    def reset(self) -> None:
        self.__init__()  # type: ignore[misc]


FAULT = Fault()


@pytest.fixture(autouse=True)
def fault() -> Iterator[Fault]:
    FAULT.reset()
    yield FAULT
    FAULT.reset()


def durable_status(run_id: int | None, name: str) -> str | None:
    assert FAULT.app is not None and run_id is not None
    run = get_run(FAULT.app, run_id)
    if run is None:
        return None
    statuses = run.statuses()
    return statuses.get(name)


class Ledger(Workflow, name="faults.ledger", inputs=["order"]):
    @step
    def a(self, order: str, ctx: StepContext[Any]) -> str:
        TRAIL.append(f"a@{ctx.attempt}")
        return f"a-{order}"

    @step
    def b(self, a: str, ctx: StepContext[Any]) -> str:
        TRAIL.append(f"b@{ctx.attempt}")
        if ctx.attempt == 1:
            # a's completion is durable before the fault starts, as the test needs
            wait_until(lambda: durable_status(ctx.run_id, "a") == "succeeded")
            FAULT.action()
        return f"b-{a}"

    @step
    def c(self, b: str, ctx: StepContext[Any]) -> str:
        FAULT.c_started_at = time.monotonic()
        TRAIL.append(f"c@{ctx.attempt}")
        return f"c-{b}"


class LedgerWorker(
    WorkflowWorker,
    workflow=Ledger,
    queue="ledger",
    name="faults.ledger.worker",
    max_attempts=3,
    backoff=lambda job: 0.5,
    log_write_timeout=0.3,
):
    pass


class PatientLedgerWorker(
    WorkflowWorker,
    workflow=Ledger,
    queue="ledger",
    name="faults.ledger.patient",
    max_attempts=1,
    log_write_timeout=10,
):
    """Retries a failing write for long enough to ride out a short fault."""


# --- a DB-level fault: the database refuses every write to the steps table ----------------


def refuse_step_writes(url: str, table: str = "jobsaga_workflow_steps") -> Callable[[], None]:
    """Install a trigger refusing writes to ``table`` (the steps table); returns what
    removes it."""
    if url.startswith("sqlite"):
        path = url.removeprefix("sqlite:///")
        with contextlib.closing(sqlite3.connect(path, timeout=10)) as conn, conn:
            for event in ("INSERT", "UPDATE"):
                conn.execute(
                    f"CREATE TRIGGER refuse_{event.lower()} BEFORE {event} ON {table} "
                    "BEGIN SELECT RAISE(ABORT, 'injected: the table refuses writes'); END"
                )

        def remove_sqlite() -> None:
            with contextlib.closing(sqlite3.connect(path, timeout=10)) as conn, conn:
                conn.execute("DROP TRIGGER refuse_insert")
                conn.execute("DROP TRIGGER refuse_update")

        return remove_sqlite
    with psycopg.connect(url, autocommit=True) as pg:
        pg.execute(
            "CREATE FUNCTION refuse_writes() RETURNS trigger AS $$ BEGIN "
            "RAISE EXCEPTION 'injected: the table refuses writes'; END $$ "
            "LANGUAGE plpgsql"
        )
        pg.execute(
            f"CREATE TRIGGER refuse_writes BEFORE INSERT OR UPDATE ON {table} "
            "FOR EACH ROW EXECUTE FUNCTION refuse_writes()"
        )

    def remove_pg() -> None:
        with psycopg.connect(url, autocommit=True) as pg:
            pg.execute(f"DROP TRIGGER refuse_writes ON {table}")

    return remove_pg


def test_a_log_that_cannot_be_written_stops_the_run_and_the_next_attempt_resumes_it(
    make_app: Callable[..., App], db_url: str
) -> None:
    app = make_app(LedgerWorker)
    FAULT.app = app
    removers: list[Callable[[], None]] = []
    FAULT.action = lambda: removers.append(refuse_step_writes(db_url))
    job = app.insert(LedgerWorker.new({"order": "o-1"}))
    with app.node({"ledger": 1}, poll_interval=0.05).start_in_thread():
        wait_until(lambda: app.get_job(job.id).errors, timeout=15)  # type: ignore[union-attr]
        assert TRAIL == ["a@1", "b@1"]  # c did not start: its run could not be recorded
        removers[0]()  # the database takes writes again before the next attempt
        wait_until(lambda: app.get_job(job.id).state.is_final, timeout=15)  # type: ignore[union-attr]

    done = app.get_job(job.id)
    assert done is not None and done.state is JobState.COMPLETED and done.attempt == 2
    assert "RunLogUnwritable" in done.errors[0]["error"]
    assert "resume" in done.errors[0]["error"]
    # a's completion was recorded: never run again; b's was not: it runs again
    assert TRAIL == ["a@1", "b@1", "b@2", "c@2"]
    [run] = list_runs(app, job_id=job.id)
    full = get_run(app, run.id)  # type: ignore[arg-type]
    assert full is not None and full.status == "succeeded" and full.attempt == 2
    assert full.result == "c-b-a-o-1"
    assert full.step("a").tries == 1
    assert [e.attempt for e in full.events_of("run.resumed")] == [2]


# --- a transient fault: the steps table's writes fail a few times, then work --------------


def inject(sql: str) -> None:
    """Raise for a write to the target table while the test asks for failures."""
    if any(target in sql for target in FAULT.target):
        with FAULT.lock:
            FAULT.tries += 1
            if FAULT.failures_left > 0:
                FAULT.failures_left -= 1
                if FAULT.failures_left == 0:
                    FAULT.cleared_at = time.monotonic()
                raise DatabaseUnavailable("injected: the server is restarting")


class FaultyTx:
    def __init__(self, tx: Any) -> None:
        self.tx = tx

    def execute(self, sql: str, params: Any = None) -> Any:
        inject(sql)
        return self.tx.execute(sql, params)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.tx, name)


def flaky_transactions(app: App, monkeypatch: pytest.MonkeyPatch) -> None:
    """The engine's statements, in a transaction or on their own (PostgreSQL writes the log
    in one statement), fail as the test says."""
    engine = app.engine
    real_transaction, real_execute_one = engine.transaction, engine.execute_one

    @contextlib.contextmanager
    def transaction(conn: Any = None) -> Iterator[Any]:
        with real_transaction(conn) as tx:
            yield FaultyTx(tx)

    def execute_one(sql: str, params: Any = None) -> Any:
        inject(sql)
        return real_execute_one(sql, params)

    monkeypatch.setattr(engine, "transaction", transaction)
    monkeypatch.setattr(engine, "execute_one", execute_one)


def test_a_transient_write_failure_is_retried_and_no_step_starts_meanwhile(
    make_app: Callable[..., App], monkeypatch: pytest.MonkeyPatch
) -> None:
    app = make_app(PatientLedgerWorker)
    FAULT.app = app
    flaky_transactions(app, monkeypatch)

    def fail_three_writes() -> None:
        FAULT.failures_left = 3

    FAULT.action = fail_three_writes
    job = app.insert(PatientLedgerWorker.new({"order": "o-2"}))
    with app.node({"ledger": 1}, poll_interval=0.05).start_in_thread():
        wait_until(lambda: app.get_job(job.id).state.is_final, timeout=15)  # type: ignore[union-attr]

    done = app.get_job(job.id)
    assert done is not None and done.state is JobState.COMPLETED and done.attempt == 1
    assert TRAIL == ["a@1", "b@1", "c@1"]
    assert FAULT.cleared_at is not None and FAULT.c_started_at is not None
    assert FAULT.c_started_at > FAULT.cleared_at  # c waited for the log to be writable
    [run] = list_runs(app, job_id=job.id)
    full = get_run(app, run.id)  # type: ignore[arg-type]
    assert full is not None and full.status == "succeeded"
    assert [e.seq for e in full.events] == list(range(1, len(full.events) + 1))  # no gap
    assert full.statuses() == {"a": "succeeded", "b": "succeeded", "c": "succeeded"}


def test_opening_a_run_rides_out_an_unavailable_database(
    make_app: Callable[..., App], monkeypatch: pytest.MonkeyPatch
) -> None:
    app = make_app(PatientLedgerWorker)
    FAULT.app = app
    flaky_transactions(app, monkeypatch)
    # What opens a run: a round's open (open_runs), else the attempt's own (insert_run).
    queries = app.engine.queries
    FAULT.target = (statements(queries["open_runs"])[0], queries["insert_run"])
    FAULT.failures_left = 2
    job = app.insert(PatientLedgerWorker.new({"order": "o-6"}))
    with app.node({"ledger": 1}, poll_interval=0.05).start_in_thread():
        wait_until(lambda: app.get_job(job.id).state.is_final, timeout=15)  # type: ignore[union-attr]
    done = app.get_job(job.id)
    assert done is not None and done.state is JobState.COMPLETED and done.attempt == 1
    assert FAULT.tries == 3 and len(list_runs(app, job_id=job.id)) == 1


class Hangs(Workflow, name="faults.hangs", inputs=["order"]):
    @step
    def a(self, order: str) -> str:
        FAULT.failures_left = 10**9  # from now on the log cannot write
        return order

    @step
    async def b(self, a: str) -> str:
        return a


class HangsWorker(
    WorkflowWorker,
    workflow=Hangs,
    queue="ledger",
    name="faults.hangs.worker",
    max_attempts=2,
    backoff=lambda job: 60,
    timeout=0.5,
    log_write_timeout=10,
):
    pass


def test_an_attempt_cut_short_stops_retrying_its_writes(
    make_app: Callable[..., App], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Past the timeout, the interrupted run writes what it can for a bounded time, then
    drops the rest: a write retried for longer could land after the job's next attempt
    (maybe on another node) took the run over."""
    monkeypatch.setattr("jobsaga.workflow.executor.INTERRUPT_FLUSH_TIMEOUT", 0.2)
    app = make_app(HangsWorker)
    flaky_transactions(app, monkeypatch)
    job = app.insert(HangsWorker.new({"order": "o-5"}))
    with app.node({"ledger": 1}, poll_interval=0.05).start_in_thread():
        wait_until(lambda: app.get_job(job.id).state is JobState.RETRYABLE, timeout=15)  # type: ignore[union-attr]
        tries = FAULT.tries
        time.sleep(0.6)  # the backoff would have retried several times by now
        assert FAULT.tries == tries
    done = app.get_job(job.id)
    assert done is not None and "JobTimeout" in done.errors[0]["error"]


# --- data the log can never write -------------------------------------------------------


class Nul(Workflow, name="faults.nul", inputs=["order"]):
    @step
    def keep(self, order: str) -> str:
        TRAIL.append("keep")
        return order

    @keep.undo
    def drop(self, result: str) -> None:
        TRAIL.append("drop")

    @step
    def nul_result(self, keep: str) -> dict[str, str]:
        TRAIL.append("nul_result")
        return {"note": "a\x00b"}


class NulError(Workflow, name="faults.nul_error", inputs=["order"]):
    @step
    def explode(self, order: str) -> str:
        raise ValueError("bad byte \x00 and a lone surrogate \ud800 in the message")


def test_a_result_the_log_cannot_store_fails_its_step_clearly(app: App) -> None:
    """A NUL character cannot be stored in PostgreSQL's jsonb: the step fails with
    StepResultError (on both engines alike) and the saga rolls back, rather than the log
    failing its writes for ever."""
    result = run_workflow(Nul, {"order": "o-3"}, app=app)
    assert not result.ok and result.error is not None
    assert result.error.step == "nul_result"
    assert isinstance(result.error.error, StepResultError)
    assert "NUL" in str(result.error.error) and "note" in str(result.error.error)
    assert TRAIL == ["keep", "nul_result", "drop"]
    assert result.run is not None and result.run.status == "rolled_back"


def test_an_error_text_the_database_would_refuse_is_recorded_cleaned(app: App) -> None:
    result = run_workflow(NulError, {"order": "o-4"}, app=app)
    assert result.run is not None and result.run.status == "failed"
    message = result.run.step("explode").error["message"]  # type: ignore[index]
    assert message == "bad byte \\x00 and a lone surrogate \\ud800 in the message"
    [failed] = result.run.events_of("step.failed")
    assert failed.detail is not None and "\\x00" in failed.detail["error"]["message"]


async def _stale_write(app: App) -> tuple[int, Any]:
    from jobsaga.workflow.runlog import SqlRunLog, _step_row

    now = app.clock()
    old = SqlRunLog("faults.stale", engine=app.engine)
    await old.open({}, None, ["a"], job_id=None, attempt=1, now=now)
    assert old.run_id is not None
    old.event("run.note", now)
    await old.flush()  # the run's row is written (a run is created by its first write)
    new = SqlRunLog("faults.stale", engine=app.engine, resume_id=old.run_id)
    await new.open({}, None, ["a"], job_id=None, attempt=2, now=now)  # the takeover

    late = {**_step_row("a", 0, "succeeded"), "tries": 1, "result": "from the old attempt"}
    old.step(late, "step.succeeded", now)  # the cut-short attempt's write lands late
    await old.flush()
    return old.run_id, get_run(app, old.run_id)


def test_a_write_of_an_attempt_that_was_taken_over_changes_nothing(app: App) -> None:
    """A write of an attempt cut short (stuck on a slow connection past its bounded flush)
    that lands after the job's next attempt took the run over is fenced off by attempt, so it
    cannot set back a step the new attempt runs or has finished."""
    import asyncio

    run_id, run = asyncio.run(_stale_write(app))
    assert run is not None and run.attempt == 2
    assert [s.status for s in run.steps if s.step == "a"] in ([], ["pending"])
    assert not run.events_of("step.succeeded")
