"""Child runs (compose, recurse) and halted runs in the run log, on both engines.

A child run is a run of its own, linked to its parent run and the parent's step that ran it
(:class:`ParentLink`), carrying its parent's job. It must never pass for the job's own run
(the job's next attempt takes up its top-level run only), it is found again by its link, it
is fenced by attempt like any run, and it goes with its job. A halted run is taken up by the
job's next attempt, which learns it was halted. Migration 0008 keeps the runs already there.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from jobsaga import App, Worker
from jobsaga.engines import sql as sqlfiles
from jobsaga.workflow import get_run, list_runs
from jobsaga.workflow.records import ChildRun, RunStatus, count_runs
from jobsaga.workflow.runlog import ParentLink, Resumed, SqlRunLog, _step_row

PARENT = "childlog.parent"
CHILD = "childlog.child"


class Holder(Worker, name="childlog.holder"):
    """Only here so that runs have a job to belong to."""

    def perform(self, job: Any) -> None:
        return None


def run(coro: Any) -> Any:
    return asyncio.run(coro)


async def opened(
    app: App,
    workflow: str,
    *,
    job_id: int | None,
    attempt: int = 1,
    parent: ParentLink | None = None,
    steps: tuple[str, ...] = ("a", "b"),
    resume_id: int | None = None,
) -> tuple[SqlRunLog, Resumed | None]:
    log = SqlRunLog(workflow, engine=app.engine, parent=parent, resume_id=resume_id)
    resumed = await log.open({"n": 1}, None, steps, job_id=job_id, attempt=attempt, now=app.clock())
    assert log.run_id is not None
    return log, resumed


def succeed(app: App, log: SqlRunLog, step: str, result: Any, position: int = 0) -> None:
    row = {**_step_row(step, position, "succeeded"), "tries": 1, "result": result}
    log.step(row, "step.succeeded", app.clock(), detail={"try": 1})


def set_status(app: App, log: SqlRunLog, status: str, *, finished: bool = False) -> None:
    log.set_run(status, app.clock(), finished=finished)


@pytest.fixture
def job_app(make_app: Callable[..., App]) -> App:
    return make_app(Holder)


def new_job(app: App) -> int:
    job = app.insert(Holder.new({}))
    assert job.id is not None
    return job.id


def find_run_of_job(app: App, job_id: int, workflow: str) -> int | None:
    engine = app.engine
    with engine.transaction() as tx:
        rows = tx.execute(
            engine.queries["find_run_of_job"],
            {"job_id": job_id, "workflow": workflow, "retried_after": None},
        )
    return int(rows[0]["id"]) if rows else None


# --- links, both ways -----------------------------------------------------------------------


def test_a_child_run_names_its_parent_and_the_parent_lists_its_children(job_app: App) -> None:
    app = job_app
    job_id = new_job(app)

    async def main() -> tuple[int, dict[str, int]]:
        parent, _ = await opened(app, PARENT, job_id=job_id, steps=("a", "ship", "loop"))
        assert parent.run_id is not None
        # the parent's compose and recurse steps have started (their rows give the order)
        for position, name in enumerate(("ship", "loop"), start=1):
            parent.step(_step_row(name, position, "running"), "step.started", app.clock())
        ids: dict[str, int] = {}
        # made out of order: listed in the parent's step order, then by iteration
        for key, link in (
            ("loop1", ParentLink(parent.run_id, "loop", 1)),
            ("ship", ParentLink(parent.run_id, "ship")),
            ("loop0", ParentLink(parent.run_id, "loop", 0)),
        ):
            child, resumed = await opened(app, CHILD, job_id=job_id, parent=link)
            assert resumed is None
            succeed(app, child, "a", {"key": key})
            set_status(app, child, "succeeded", finished=True)
            await child.flush()
            ids[key] = child.run_id  # type: ignore[assignment]
        await parent.flush()
        return parent.run_id, ids

    parent_id, ids = run(main())
    record = get_run(app, parent_id)
    assert record is not None and record.parent_step is None and record.parent_run_id is None
    assert [(c.id, c.parent_step, c.iteration) for c in record.children] == [
        (ids["ship"], "ship", 0),
        (ids["loop0"], "loop", 0),
        (ids["loop1"], "loop", 1),
    ]
    first = record.children[0]
    assert isinstance(first, ChildRun)
    assert (first.workflow, first.status, first.error) == (CHILD, "succeeded", None)
    assert first.finished_at is not None and first.started_at <= first.finished_at

    child = get_run(app, ids["loop1"])
    assert child is not None
    assert (child.parent_run_id, child.parent_step, child.iteration) == (parent_id, "loop", 1)
    assert child.job_id == job_id and child.is_child and child.children == ()
    assert child.step("a").result == {"key": "loop1"}

    # the read API: a run's children, a job's own runs
    assert [r.id for r in list_runs(app, parent_run_id=parent_id)] == sorted(
        ids.values(), reverse=True
    )
    assert count_runs(app, parent_run_id=parent_id) == 3
    assert [r.id for r in list_runs(app, job_id=job_id, top_level=True)] == [parent_id]
    assert count_runs(app, job_id=job_id, top_level=True) == 1
    assert len(list_runs(app, job_id=job_id)) == 4
    assert all(r.children == () for r in list_runs(app))  # only get_run reads them


# --- the job's own run is never a child ------------------------------------------------------


def test_the_jobs_next_attempt_never_takes_up_one_of_its_child_runs(job_app: App) -> None:
    """A child of the same workflow as its parent (recurse), unfinished and newer than the
    parent: the job's next attempt still takes up the parent; once the parent has ended in
    failure, it starts a new run rather than take up the child."""
    app = job_app
    job_id = new_job(app)

    async def main() -> None:
        parent, _ = await opened(app, PARENT, job_id=job_id)
        child, _ = await opened(
            app, PARENT, job_id=job_id, parent=ParentLink(parent.run_id, "loop", 0)
        )
        succeed(app, child, "a", 1)
        await child.flush()
        parent.event("run.note", app.clock())  # the parent's row is made by its first write
        await parent.flush()
        assert find_run_of_job(app, job_id, PARENT) == parent.run_id

        # the next attempt (the batched open, then the lone one it falls back on)
        again, resumed = await opened(app, PARENT, job_id=job_id, attempt=2)
        assert resumed is not None and resumed.run_id == parent.run_id
        again.close()

        set_status(app, parent, "rolled_back", finished=True)
        parent.attempt = 2  # the attempt that took the run over ends it
        await parent.flush()
        assert get_run(app, parent.run_id).status == "rolled_back"  # type: ignore[arg-type, union-attr]
        assert find_run_of_job(app, job_id, PARENT) is None
        fresh, resumed = await opened(app, PARENT, job_id=job_id, attempt=3)
        assert resumed is None and fresh.run_id not in (parent.run_id, child.run_id)
        await fresh.flush()
        assert get_run(app, child.run_id).attempt == 1  # type: ignore[arg-type, union-attr]

    run(main())


# --- found again by its link -----------------------------------------------------------------


def test_a_child_run_is_resumed_by_its_link(job_app: App) -> None:
    app = job_app
    job_id = new_job(app)

    async def main() -> None:
        parent, _ = await opened(app, PARENT, job_id=job_id)
        link = ParentLink(parent.run_id, "ship")
        child, _ = await opened(app, CHILD, job_id=job_id, parent=link)
        succeed(app, child, "a", {"shipped": 3})
        failed = {**_step_row("b", 1, "retried"), "tries": 1}
        child.step(failed, "step.compensate", app.clock(), detail={"outcome": "retry"})
        await child.flush()
        child.close()  # the attempt is cut short

        again, resumed = await opened(app, CHILD, job_id=job_id, attempt=2, parent=link)
        assert resumed is not None and resumed.run_id == child.run_id == again.run_id
        assert resumed.status == "running"
        assert resumed.steps["a"].status == "succeeded"
        assert resumed.steps["a"].result == {"shipped": 3}
        assert resumed.steps["b"].status == "retried"
        assert resumed.compensations == {"b": 1}
        assert again.seq == 2  # goes on numbering its events
        await again.flush()
        assert get_run(app, child.run_id).attempt == 2  # type: ignore[arg-type, union-attr]

        # another iteration, or another step, is another child run
        other, resumed = await opened(
            app, CHILD, job_id=job_id, attempt=2, parent=ParentLink(parent.run_id, "ship", 1)
        )
        assert resumed is None and other.run_id != child.run_id
        await other.flush()

        # a succeeded child is final: found as it is (its attempt kept)
        set_status(app, again, "succeeded", finished=True)
        await again.flush()
        final, resumed = await opened(app, CHILD, job_id=job_id, attempt=3, parent=link)
        assert resumed is not None and resumed.status == "succeeded"
        assert resumed.run_id == child.run_id
        assert get_run(app, child.run_id).attempt == 2  # type: ignore[arg-type, union-attr]

        # one that ended in failure is found too: the executor decides (undo it, say)
        set_status(app, other, "rolled_back", finished=True)
        await other.flush()
        undo, resumed = await opened(
            app, CHILD, job_id=job_id, attempt=3, parent=ParentLink(parent.run_id, "ship", 1)
        )
        assert resumed is not None and resumed.run_id == other.run_id
        assert resumed.status == "rolled_back"

        # and by id, as `runs rollback` opens a run
        by_id, resumed = await opened(app, CHILD, job_id=job_id, attempt=4, resume_id=child.run_id)
        assert resumed is not None and resumed.run_id == child.run_id

    run(main())


def test_a_write_of_a_child_runs_stale_attempt_is_fenced(job_app: App) -> None:
    app = job_app
    job_id = new_job(app)

    async def main() -> int:
        parent, _ = await opened(app, PARENT, job_id=job_id)
        link = ParentLink(parent.run_id, "ship")
        old, _ = await opened(app, CHILD, job_id=job_id, parent=link)
        old.event("run.note", app.clock())
        await old.flush()
        new, resumed = await opened(app, CHILD, job_id=job_id, attempt=2, parent=link)
        assert resumed is not None and resumed.run_id == old.run_id  # the takeover

        succeed(app, old, "a", "from the old attempt")  # its write lands late
        set_status(app, old, "succeeded", finished=True)
        await old.flush()
        return old.run_id  # type: ignore[return-value]

    child_id = run(main())
    child = get_run(app, child_id)
    assert child is not None and child.attempt == 2 and child.status == "running"
    assert [s.status for s in child.steps if s.step == "a"] in ([], ["pending"])
    assert not child.events_of("step.succeeded")


# --- halted ----------------------------------------------------------------------------------


def test_a_halted_run_is_taken_up_by_the_jobs_next_attempt(job_app: App) -> None:
    app = job_app
    job_id = new_job(app)

    async def main() -> tuple[int, int]:
        log, _ = await opened(app, PARENT, job_id=job_id)
        succeed(app, log, "a", {"amount": 5})
        log.event("step.halted", app.clock(), step="a", detail={"value": {"amount": 5}})
        set_status(app, log, RunStatus.HALTED.value)
        child, _ = await opened(app, CHILD, job_id=job_id, parent=ParentLink(log.run_id, "ship"))
        set_status(app, child, "halted")
        await child.flush()
        await log.flush()
        log.close()
        child.close()
        halted = get_run(app, log.run_id)  # type: ignore[arg-type]
        assert halted is not None and halted.status == "halted" and halted.finished_at is None
        assert [r.id for r in list_runs(app, status="halted")] == [child.run_id, log.run_id]
        assert count_runs(app, status="halted") == 2
        assert count_runs(app, status="failed") == 0  # halted is not failed

        again, resumed = await opened(app, PARENT, job_id=job_id, attempt=2)
        assert resumed is not None and resumed.run_id == log.run_id
        assert resumed.status == "halted"  # as found: the executor knows it resumes a halt
        assert resumed.steps["a"].result == {"amount": 5}
        assert again.run["status"] == "running"
        kid, resumed = await opened(
            app, CHILD, job_id=job_id, attempt=2, parent=ParentLink(log.run_id, "ship")
        )
        assert resumed is not None and resumed.status == "halted"
        return log.run_id, child.run_id  # type: ignore[return-value]

    for run_id in run(main()):
        record = get_run(app, run_id)
        assert record is not None and (record.status, record.attempt) == ("running", 2)


# --- deleted with the job --------------------------------------------------------------------


def count_rows(app: App) -> dict[str, int]:
    with app.engine.transaction() as tx:
        return {
            table: int(tx.execute(f"SELECT count(*) AS n FROM {table}")[0]["n"])
            for table in (
                "jobsaga_workflow_runs",
                "jobsaga_workflow_steps",
                "jobsaga_workflow_events",
            )
        }


async def family(app: App, job_id: int) -> list[int]:
    """A parent, its child, and the child's child, each with a step and its event."""
    ids: list[int] = []
    link: ParentLink | None = None
    for workflow in (PARENT, CHILD, CHILD):
        log, _ = await opened(app, workflow, job_id=job_id, parent=link)
        succeed(app, log, "a", len(ids))
        await log.flush()
        ids.append(log.run_id)  # type: ignore[arg-type]
        link = ParentLink(log.run_id, "a")
    return ids


def test_runs_and_their_children_are_deleted_with_their_job(job_app: App) -> None:
    app = job_app
    job_id = new_job(app)
    other = new_job(app)
    run(family(app, job_id))
    kept = run(family(app, other))
    before = count_rows(app)
    assert before["jobsaga_workflow_runs"] == 6
    assert app.delete_job(job_id)
    assert count_rows(app) == {table: n // 2 for table, n in before.items()}
    assert all(get_run(app, run_id) is not None for run_id in kept)


def test_deleting_a_run_deletes_its_children(job_app: App) -> None:
    app = job_app
    parent, child, grandchild = run(family(app, new_job(app)))
    param = "%(id)s" if app.engine.dialect == "postgres" else ":id"
    with app.engine.transaction() as tx:
        tx.execute(f"DELETE FROM jobsaga_workflow_runs WHERE id = {param}", {"id": parent})
    assert [get_run(app, i) for i in (parent, child, grandchild)] == [None, None, None]
    assert count_rows(app) == dict.fromkeys(count_rows(app), 0)


# --- migration 0008 on a database that has runs ------------------------------------------------


@pytest.fixture
def before_0008(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Migrations as they were before 0008, until the test lets them all through."""
    real = sqlfiles.load_migrations
    monkeypatch.setattr(
        sqlfiles, "load_migrations", lambda dialect: [m for m in real(dialect) if m[0] < "0008"]
    )
    yield


def test_migration_0008_keeps_the_runs_there(
    db_url: str, before_0008: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    with App(db_url) as app:
        app.migrate()
        pg = app.engine.dialect == "postgres"
        p = (lambda name: f"%({name})s") if pg else (lambda name: f":{name}")
        now = app.engine.time_param(app.clock())
        with app.engine.transaction() as tx:
            job_id = tx.execute(
                "INSERT INTO jobsaga_jobs (queue, worker, inserted_at, scheduled_at) "
                f"VALUES ('q', 'w', {p('now')}, {p('now')}) RETURNING id",
                {"now": now},
            )[0]["id"]
            ids = []
            for status, result in (("succeeded", '{"total": 3}'), ("rolling_back", None)):
                ids.append(
                    tx.execute(
                        "INSERT INTO jobsaga_workflow_runs (workflow, job_id, attempt, status, "
                        "inputs, result, error, started_at, updated_at) VALUES ("
                        f"'old.flow', {p('job')}, 2, {p('status')}, '{{\"n\": 1}}', "
                        f'{p("result")}, \'{{"step": "a"}}\', {p("now")}, {p("now")}) '
                        "RETURNING id",
                        {"job": job_id, "status": status, "result": result, "now": now},
                    )[0]["id"]
                )
            for run_id in ids:
                tx.execute(
                    "INSERT INTO jobsaga_workflow_steps (run_id, step, position, status, "
                    f"result, tries) VALUES ({p('id')}, 'a', 0, 'succeeded', '7', 1)",
                    {"id": run_id},
                )
                tx.execute(
                    "INSERT INTO jobsaga_workflow_events (run_id, seq, at, attempt, kind) "
                    f"VALUES ({p('id')}, 1, {p('now')}, 2, 'step.succeeded')",
                    {"id": run_id, "now": now},
                )
            # the newest run is gone: its id must not be handed out again
            gone = tx.execute(
                "INSERT INTO jobsaga_workflow_runs (workflow, status, started_at, updated_at) "
                f"VALUES ('old.flow', 'failed', {p('now')}, {p('now')}) RETURNING id",
                {"now": now},
            )[0]["id"]
            tx.execute(f"DELETE FROM jobsaga_workflow_runs WHERE id = {p('id')}", {"id": gone})
        monkeypatch.undo()
        assert app.migrate() == ["0008_child_runs"]

        done, unfinished = (get_run(app, run_id) for run_id in ids)
        assert done is not None and unfinished is not None
        assert (done.status, done.result, done.inputs, done.attempt) == (
            "succeeded",
            {"total": 3},
            {"n": 1},
            2,
        )
        assert unfinished.status == "rolling_back" and unfinished.error == {"step": "a"}
        for record in (done, unfinished):
            assert (record.job_id, record.parent_run_id, record.parent_step) == (job_id, None, None)
            assert record.iteration == 0 and record.children == ()
            assert record.step("a").result == 7 and [e.kind for e in record.events] == [
                "step.succeeded"
            ]
        assert find_run_of_job(app, job_id, "old.flow") == done.id

        async def after() -> int:
            log, _ = await opened(app, "old.flow", job_id=None)
            set_status(app, log, "halted")  # the new status is allowed
            await log.flush()
            return log.run_id  # type: ignore[return-value]

        new_id = run(after())
        assert new_id > gone
        assert get_run(app, new_id).status == "halted"  # type: ignore[union-attr]
        # the cascade is still there
        assert app.delete_job(job_id)
        assert [get_run(app, run_id) for run_id in ids] == [None, None]
        assert count_rows(app)["jobsaga_workflow_steps"] == 0
