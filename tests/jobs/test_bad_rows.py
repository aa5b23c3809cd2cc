"""One undecodable row fails alone (issue 9, fault 3).

A row changed by hand or by another program (``tags`` that is not a list, args that are a
JSON string, a column that is not JSON at all) used to break decoding after the fetch's
claim had committed: the whole batch stayed ``executing`` for good. Now the bad row is
discarded with the reason recorded, and its batch-mates run.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from jobsaga import App, DatabaseError, Job, JobState, Worker
from jobsaga.errors import UndecodableRow
from tests.jobs.conftest import SEEN, param, rows, wait_final


class Records(Worker):
    def perform(self, job: Job[Any]) -> None:
        SEEN.add(job.args["n"])


def corrupt(app: App, job_id: int, column: str, stored: str) -> None:
    """Store ``stored`` (JSON text, or any text on SQLite) in a JSON column, as a hand-made
    UPDATE would."""
    cast = "::jsonb" if app.engine.dialect == "postgres" else ""
    with app.engine.transaction() as tx:
        tx.execute(
            f"UPDATE jobsaga_jobs SET {column} = {param(app, 'v')}{cast} "
            f"WHERE id = {param(app, 'id')}",
            {"v": stored, "id": job_id},
        )


BAD_SHAPES = [
    ("tags", "5", "tags: expected a JSON list of strings"),
    ("tags", '"urgent"', "tags: expected a JSON list of strings"),
    ("tags", "[1, 2]", "tags: expected a JSON list of strings"),
    ("args", '"a string"', "args:"),
    ("args", "[1, 2]", "args: expected a JSON object"),
    ("meta", "null", "meta: expected a JSON object"),
    ("errors", '{"not": "a list"}', "errors: expected a JSON list of objects"),
]


@pytest.mark.parametrize(("column", "stored", "said"), BAD_SHAPES)
def test_an_undecodable_row_fails_alone_in_its_fetch(
    make_app: Callable[..., App], column: str, stored: str, said: str
) -> None:
    app = make_app(Records)
    jobs = app.insert_all([Records.new({"n": i}) for i in range(4)])
    bad = jobs[1]
    corrupt(app, bad.id, column, stored)

    fetched = app.engine.fetch("default", 10, "node-1")  # raised TypeError, stranding all 4

    assert [j.id for j in fetched] == [jobs[0].id, jobs[2].id, jobs[3].id]
    assert all(j.state is JobState.EXECUTING for j in fetched)
    [row] = rows(app, f"id = {bad.id}")
    assert row["state"] == "discarded" and row["discarded_at"] is not None
    errors = app.engine.stored_json(row["errors"])
    record = errors[-1]
    assert record["kind"] == "undecodable" and record["attempt"] == 1
    assert f"job {bad.id} cannot be decoded" in record["error"] and said in record["error"]
    if column == "errors":  # the broken column itself was replaced; its text is kept
        assert len(errors) == 1 and '"not"' in record["previous_errors"]


def test_text_that_is_not_json_fails_alone_on_sqlite(tmp_path: Any) -> None:
    """SQLite stores JSON as TEXT, so a hand-made UPDATE can store anything."""
    app = App(f"sqlite:///{tmp_path / 'jobs.db'}", workers=[Records])
    app.migrate()
    try:
        good, bad = app.insert_all([Records.new({"n": 0}), Records.new({"n": 1})])
        corrupt(app, bad.id, "args", "{not json")
        corrupt(app, bad.id, "max_attempts", "lots")  # TEXT passes the CHECK (> 0)
        assert [j.id for j in app.engine.fetch("default", 10, "n")] == [good.id]
        [row] = rows(app, f"id = {bad.id}")
        record = app.engine.stored_json(row["errors"])[-1]
        assert row["state"] == "discarded" and record["attempt"] == 1
        assert "args: not JSON" in record["error"]
        assert "max_attempts: expected an integer, got str 'lots'" in record["error"]
    finally:
        app.close()


def test_reading_an_undecodable_row_is_a_clear_database_error(make_app: Callable[..., App]) -> None:
    app = make_app(Records)
    job = app.insert(Records.new({"n": 1}))
    corrupt(app, job.id, "tags", '{"a": 1}')
    with pytest.raises(UndecodableRow, match=r"tags: expected a JSON list of strings") as caught:
        app.get_job(job.id)
    assert isinstance(caught.value, DatabaseError) and caught.value.job_id == job.id


def test_a_node_runs_the_batch_mates_of_an_undecodable_row(make_app: Callable[..., App]) -> None:
    app = make_app(Records)
    jobs = app.insert_all([Records.new({"n": i}) for i in range(6)])
    corrupt(app, jobs[2].id, "tags", "5")
    corrupt(app, jobs[4].id, "args", '"a string"')
    with app.node({"default": 10}, poll_interval=0.05).start_in_thread() as running:
        finals = {
            j.id: wait_final(app, j.id, timeout=5).state
            for j in jobs
            if j.id
            not in (
                jobs[2].id,
                jobs[4].id,
            )
        }
        assert set(finals.values()) == {JobState.COMPLETED}
        later = app.insert(Records.new({"n": 99}))  # the node is still working
        assert wait_final(app, later.id, timeout=5).state is JobState.COMPLETED
        assert running.alive
    assert sorted(SEEN.items()) == [0, 1, 3, 5, 99]
    states = {r["id"]: r["state"] for r in rows(app)}
    assert states[jobs[2].id] == states[jobs[4].id] == "discarded"


def test_the_testing_claim_discards_an_undecodable_row_too(make_app: Callable[..., App]) -> None:
    app = make_app(Records)
    job = app.insert(Records.new({"n": 1}))
    corrupt(app, job.id, "meta", "[]")
    with pytest.raises(UndecodableRow):
        app.engine.claim(job.id, "tester", 1)
    [row] = rows(app, f"id = {job.id}")
    assert row["state"] == "discarded"


def test_a_rescue_is_not_rolled_back_by_one_undecodable_row(
    make_app: Callable[..., App],
) -> None:
    """The lifeline decodes the rows it put back: one bad row used to raise inside its
    transaction, so no job of the batch was ever rescued, round after round."""
    from datetime import timedelta

    from jobsaga.plugins.lifeline import rescue_own_orphans

    app = make_app(Records)
    jobs = app.insert_all([Records.new({"n": i}) for i in range(3)])
    assert len(app.engine.fetch("default", 10, "crashed-node")) == 3
    corrupt(app, jobs[1].id, "tags", "5")

    rescued = rescue_own_orphans(app, "crashed-node", app.clock() + timedelta(seconds=1))

    assert sorted(j.id for j in rescued.available) == [jobs[0].id, jobs[2].id]
    assert {r["state"] for r in rows(app, "1 = 1")} == {"available"}
    # The next fetch discards the bad row, with why, and hands out the others.
    assert [j.id for j in app.engine.fetch("default", 10, "n")] == [jobs[0].id, jobs[2].id]
    [bad] = rows(app, f"id = {jobs[1].id}")
    assert bad["state"] == "discarded"


def test_a_listing_leaves_out_an_undecodable_row_only(make_app: Callable[..., App]) -> None:
    app = make_app(Records)
    jobs = app.insert_all([Records.new({"n": i}) for i in range(3)])
    corrupt(app, jobs[1].id, "args", "[1, 2]")

    listed = app.list_jobs()

    assert sorted(j.id for j in listed) == [jobs[0].id, jobs[2].id]


def test_json_nested_too_deep_to_parse_fails_alone(make_app: Callable[..., App]) -> None:
    """Python's parser gives up (RecursionError) on JSON nested thousands deep, which both
    databases store: on PostgreSQL it was raised from inside the driver's fetch, after the
    claim had committed, stranding the batch for ever."""
    app = make_app(Records)
    jobs = app.insert_all([Records.new({"n": i}) for i in range(3)])
    corrupt(app, jobs[1].id, "meta", "[" * 5000 + "]" * 5000)

    fetched = app.engine.fetch("default", 10, "node-1")

    assert [j.id for j in fetched] == [jobs[0].id, jobs[2].id]
    [row] = rows(app, f"id = {jobs[1].id}")
    assert row["state"] == "discarded"
