"""The run log writer group-commits the logs of every run on an event loop, both engines.

Runs side by side share the writer's rounds (one transaction each): their runs are opened
together and their transitions written together. Each run still gets exactly its own rows,
and a run whose data the database refuses fails alone: its batch-mates go on.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest

from jobsaga import App, JobState, StepContext, Workflow, WorkflowWorker, step
from jobsaga.errors import RunLogUnwritable
from jobsaga.testing import arun_workflow
from jobsaga.workflow import get_run, list_runs
from jobsaga.workflow.running import execute
from jobsaga.workflow.writer import statements
from tests.helpers import wait_until


class Echo(Workflow, name="writer.echo", inputs=["n"]):
    @step
    async def first(self, n: int, ctx: StepContext[Any]) -> dict[str, Any]:
        return {"n": n, "run": ctx.run_id}

    @step
    async def second(self, first: dict[str, Any]) -> int:
        await asyncio.sleep(0)
        return int(first["n"]) * 10

    @step
    def third(self, second: int) -> int:
        return second + 1


class EchoWorker(WorkflowWorker, workflow=Echo, queue="echo", name="writer.echo.worker"):
    pass


def count_rounds(app: App, monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    """How many times the writer's queries reach the database (rounds, split rounds and
    lone opens included), by query."""
    engine = app.engine
    counted = {"open_runs": 0, "write_logs": 0}
    firsts = {statements(engine.queries[name])[0]: name for name in counted}
    real_transaction, real_execute_one = engine.transaction, engine.execute_one

    def seen(sql: str) -> None:
        if sql in firsts:
            counted[firsts[sql]] += 1

    class Counting:
        def __init__(self, tx: Any) -> None:
            self.tx = tx

        def execute(self, sql: str, params: Any = None) -> Any:
            seen(sql)
            return self.tx.execute(sql, params)

    @contextlib.contextmanager
    def transaction(conn: Any = None) -> Iterator[Any]:
        with real_transaction(conn) as tx:
            yield Counting(tx)

    def execute_one(sql: str, params: Any = None) -> Any:
        seen(sql)
        return real_execute_one(sql, params)

    monkeypatch.setattr(engine, "transaction", transaction)
    monkeypatch.setattr(engine, "execute_one", execute_one)
    return counted


def test_runs_opened_in_one_round_each_get_their_own_run(app: App) -> None:
    """Runs opened at the same moment share a round; each gets the run row made for it
    (its inputs, its id in ctx.run_id), whatever order the database returns the ids in."""

    async def main() -> list[Any]:
        return list(
            await asyncio.gather(*(arun_workflow(Echo, {"n": n}, app=app) for n in range(8)))
        )

    results = asyncio.run(main())
    assert [r.value for r in results] == [n * 10 + 1 for n in range(8)]
    assert len({r.run_id for r in results}) == 8
    for n, result in enumerate(results):
        run = get_run(app, result.run_id)
        assert run is not None and run.inputs == {"n": n} and run.status == "succeeded"
        assert run.step("first").result == {"n": n, "run": result.run_id}
        assert [e.seq for e in run.events] == list(range(1, len(run.events) + 1))


def test_sagas_on_a_node_share_the_writers_rounds(
    make_app: Callable[..., App], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ten sagas of three steps each, fetched together: written in far fewer rounds than
    the 40 writes (an open and three outcomes each) they would take one by one, and each
    run holds exactly its own job's inputs, results and events."""
    app = make_app(EchoWorker)
    jobs = app.insert_all([EchoWorker.new({"n": n}) for n in range(10)])
    counted = count_rounds(app, monkeypatch)
    with app.node({"echo": 10}, poll_interval=0.05).start_in_thread():
        wait_until(lambda: all(app.get_job(j.id).state.is_final for j in jobs), timeout=30)  # type: ignore[union-attr]
    for job in jobs:
        done = app.get_job(job.id)
        assert done is not None and done.state is JobState.COMPLETED
        [run] = list_runs(app, job_id=job.id)
        full = get_run(app, run.id)  # type: ignore[arg-type]
        assert full is not None and full.status == "succeeded"
        n = job.raw_args["n"]
        assert full.inputs == {"n": n} and full.result == n * 10 + 1
        assert full.step("first").result == {"n": n, "run": full.id}
        assert [e.seq for e in full.events] == list(range(1, len(full.events) + 1))
    assert counted["open_runs"] < 10
    assert counted["open_runs"] + counted["write_logs"] < 40


class Poisoned(Workflow, name="writer.poisoned", inputs=["n"]):
    @step
    async def poison(self, n: int) -> int:
        return n

    @step
    async def after(self, poison: int) -> int:
        return poison


def refuse_poison(url: str) -> None:
    """A trigger refusing the step row of any step named ``poison``."""
    if url.startswith("sqlite"):
        path = url.removeprefix("sqlite:///")
        with contextlib.closing(sqlite3.connect(path, timeout=10)) as conn, conn:
            conn.execute(
                "CREATE TRIGGER refuse_poison BEFORE INSERT ON jobsaga_workflow_steps "
                "WHEN NEW.step = 'poison' "
                "BEGIN SELECT RAISE(ABORT, 'injected: poison refused'); END"
            )
        return
    with psycopg.connect(url, autocommit=True) as pg:
        pg.execute(
            "CREATE FUNCTION refuse_poison() RETURNS trigger AS $$ BEGIN "
            "IF NEW.step = 'poison' THEN RAISE EXCEPTION 'injected: poison refused' "
            "USING ERRCODE = '22023'; END IF; RETURN NEW; END $$ LANGUAGE plpgsql"
        )
        pg.execute(
            "CREATE TRIGGER refuse_poison BEFORE INSERT ON jobsaga_workflow_steps "
            "FOR EACH ROW EXECUTE FUNCTION refuse_poison()"
        )


def test_a_run_whose_write_is_refused_fails_alone(
    make_app: Callable[..., App], db_url: str
) -> None:
    """A round holding a run the database refuses is split: that run's log gives up (its
    run stops, RunLogUnwritable), the runs that shared the round are written and go on."""
    app = make_app()
    refuse_poison(db_url)

    async def main() -> tuple[list[Any], BaseException | None]:
        healthy = [asyncio.create_task(arun_workflow(Echo, {"n": n}, app=app)) for n in range(4)]
        poisoned = asyncio.create_task(
            execute(app, Poisoned, {"n": 1}, job=None, test_run=True, log_write_timeout=0.3)
        )
        error: BaseException | None = None
        try:
            await poisoned
        except RunLogUnwritable as exc:
            error = exc
        return [await task for task in healthy], error

    healthy, error = asyncio.run(main())
    assert isinstance(error, RunLogUnwritable)
    assert [r.value for r in healthy] == [n * 10 + 1 for n in range(4)]
    for result in healthy:
        assert result.run is not None and result.run.status == "succeeded"


async def _reissued_id(app: App) -> tuple[int, Any]:
    from jobsaga.workflow.runlog import SqlRunLog, _step_row

    now = app.clock()
    first = SqlRunLog("writer.first", engine=app.engine)
    await first.open({}, None, ["a"], job_id=None, attempt=1, now=now)
    first.event("run.note", now)
    await first.flush()
    assert first.run_id is not None
    # Another run handed the same id (as a sequence may after a server crash that lost the
    # reservation): its writes must not land in the first run.
    other = SqlRunLog("writer.other", engine=app.engine)
    await other.open({}, None, ["a"], job_id=None, attempt=1, now=now)
    other.run_id = first.run_id
    other.step({**_step_row("a", 0, "succeeded"), "tries": 1}, "step.succeeded", now)
    await other.flush()
    return first.run_id, get_run(app, first.run_id)


def test_a_write_whose_run_row_is_another_runs_changes_nothing(app: App) -> None:
    """A write is fenced by its run's identity (workflow and job), not by its id alone."""
    run_id, run = asyncio.run(_reissued_id(app))
    assert run is not None and run.workflow == "writer.first" and run.id == run_id
    assert [s.status for s in run.steps if s.step == "a"] in ([], ["pending"])
    assert [e.kind for e in run.events] == ["run.note"]


async def _created_by_first_write(app: App) -> tuple[Any, Any]:
    from jobsaga.workflow.runlog import SqlRunLog

    now = app.clock()
    log = SqlRunLog("writer.created", engine=app.engine)
    await log.open({"n": 1}, {"actor": "a"}, ["a"], job_id=None, attempt=3, now=now, dag={"a": []})
    assert log.run_id is not None
    log.set_run("running", now)
    await log.flush()
    return log.run_id, get_run(app, log.run_id)


def test_a_run_opened_in_a_round_is_written_whole(app: App) -> None:
    """A run opened by the writer (its row created by its first write where the engine
    only reserved its id) holds its inputs, context, DAG, attempt and start."""
    run_id, run = asyncio.run(_created_by_first_write(app))
    assert run is not None and run.id == run_id
    assert (run.workflow, run.inputs, run.context, run.dag) == (
        "writer.created",
        {"n": 1},
        {"actor": "a"},
        {"a": []},
    )
    assert run.attempt == 3 and run.status == "running" and run.started_at is not None


class Shapes(Workflow, name="writer.shapes"):
    """Results of every JSON shape, written inside the round's payload as JSON."""

    @step
    async def text(self) -> str:
        return 'say "null"'

    @step
    async def null_text(self) -> str:
        return "null"

    @step
    async def nothing(self) -> None:
        return None

    @step
    async def number(self) -> float:
        return 2.5e-7

    @step
    async def nested(self) -> dict[str, Any]:
        return {"a": [1, {"b": None}], "é": "ü"}

    @step(wait_for=["text", "null_text", "nothing", "number", "nested"])
    async def last(self) -> list[Any]:
        return ["x", 1, None]


def test_results_of_every_json_shape_round_trip(app: App) -> None:
    result = asyncio.run(arun_workflow(Shapes, app=app))
    assert result.run is not None and result.run.status == "succeeded"
    results = {s.step: s.result for s in result.run.steps}
    assert results == {
        "text": 'say "null"',
        "null_text": "null",
        "nothing": None,
        "number": 2.5e-7,
        "nested": {"a": [1, {"b": None}], "é": "ü"},
        "last": ["x", 1, None],
    }
    assert result.run.result == ["x", 1, None]
    started = result.run.events_of("step.started")
    assert started and all(e.detail == {"try": 1} for e in started)


def test_the_writers_thread_ends_when_idle_and_comes_back(
    app: App, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A finished loop (a test's, a CLI's) leaves no thread behind; the next round starts
    one again."""
    import threading

    monkeypatch.setattr("jobsaga.workflow.writer.IDLE_THREAD_SECONDS", 0.05)

    def writer_threads() -> int:
        return sum(t.name == "jobsaga-run-log" for t in threading.enumerate())

    async def twice() -> list[Any]:
        first = await arun_workflow(Echo, {"n": 1}, app=app)
        wait_until(lambda: writer_threads() == 0)
        second = await arun_workflow(Echo, {"n": 2}, app=app)
        return [first.value, second.value]

    assert asyncio.run(twice()) == [11, 21]
    wait_until(lambda: writer_threads() == 0)
