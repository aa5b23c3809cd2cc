"""The dashboard's pages over a big PostgreSQL database: 1,000,000 jobs and 100,000 saga runs.

    .venv/bin/python bench/bench_web.py [--jobs N] [--runs N] [--repeat N] [--keep]

Builds a dedicated database on the server of ``$JOBSAGA_BENCH_PG_URL`` (default: the test
database's server), dropped afterwards (``--keep`` leaves it, and prints its URL). Its rows are
real ones, multiplied: ``jobsaga demo``'s jobs and saga runs are made by running the demo on
it (every outcome: completed, retried, snoozed, discarded, cancelled; runs succeeded,
compensated, retried, rolled back), then each job is copied with ``INSERT ... SELECT
generate_series`` until there are ``--jobs`` of them, spread over the last week, and each
analytics job's runs (with their steps and events) are copied with its copies until there are
``--runs`` runs. Building it takes about a minute; it is not part of the figures.

Then each page is fetched through the dashboard's ASGI app in process (Starlette's test
client, signed in: what a browser's request costs the server, without a network), twice to
warm up and ``--repeat`` times measured; the table gives the median, lowest and highest time
per page, and the size of the HTML. The target (issue 14): every page under 200 ms.

Not a timed test: the suite does not run it.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
import uuid
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import psycopg
from common import PG_URL, fresh_pg_database, pg_url, spread
from psycopg import sql

with warnings.catch_warnings():  # Starlette 1.x suggests httpx2; httpx still works
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

from jobsaga import App, demo
from jobsaga.web import dashboard

TOKEN = "bench"
TARGET_MS = 200.0


def run_the_demo(url: str) -> App:
    """The demo's jobs and saga runs, run to the end on the database at ``url``."""
    demo.reset()
    logging.getLogger("jobsaga").setLevel(logging.CRITICAL)  # the demo's timeouts are expected
    app = demo.build_app(url)
    app.migrate()
    app.insert_all(demo.demo_jobs())
    started = time.monotonic()
    with app.node(demo.DEMO_QUEUES, poll_interval=0.05, grace_period=2.0).start_in_thread():
        while not all(state in FINAL for state, n in app.count_jobs().items() if n):
            if time.monotonic() - started > 60:
                raise SystemExit("the demo's jobs did not settle within 60 s")
            time.sleep(0.05)
    return app


FINAL = {"completed", "discarded", "cancelled"}

JOB_COLUMNS = (
    "state, queue, worker, args, meta, tags, errors, attempt, max_attempts, priority, "
    "inserted_at, scheduled_at, attempted_at, attempted_by, completed_at, discarded_at, "
    "cancelled_at"
)
SHIFTED = ("inserted_at", "scheduled_at", "attempted_at", "completed_at", "discarded_at",
           "cancelled_at")  # fmt: skip

# Copies of the demo's jobs: copy g is of template job (g mod T), inserted (count - g) steps
# of (a week / count) before now (the higher the id, the newer), every timestamp of the template moved by the same amount.
COPY_JOBS = f"""
CREATE TEMP TABLE template_jobs AS
    SELECT row_number() OVER (ORDER BY id) - 1 AS k, * FROM jobsaga_jobs;
CREATE TEMP TABLE job_copies AS
    SELECT g, nextval('jobsaga_jobs_id_seq') AS id, t.id AS template_id,
           now() - interval '7 days' * (1 - g::float8 / %(copies)s) - t.inserted_at AS shift
    FROM generate_series(1, %(copies)s) AS g
    JOIN template_jobs t ON t.k = g %% (SELECT count(*) FROM template_jobs);
INSERT INTO jobsaga_jobs (id, {JOB_COLUMNS})
SELECT c.id, t.state, t.queue, t.worker, t.args, t.meta - 'enqueued_by_run', t.tags, t.errors,
       t.attempt, t.max_attempts, t.priority,
       {", ".join(f"t.{column} + c.shift" for column in SHIFTED[:2])},
       t.attempted_at + c.shift, t.attempted_by,
       {", ".join(f"t.{column} + c.shift" for column in SHIFTED[3:])}
FROM job_copies c JOIN template_jobs t ON t.id = c.template_id
ORDER BY c.id;
"""

RUN_COLUMNS = (
    "workflow, attempt, status, inputs, context, dag, result, error, parent_run_id, "
    "parent_step, iteration"
)

# Copies of the demo's runs: each copy of an analytics job gets a copy of each of its
# template's runs (the newest copies first) until there are as many runs as asked for.
COPY_RUNS = f"""
CREATE TEMP TABLE run_copies AS
    SELECT nextval('jobsaga_workflow_runs_id_seq') AS id, x.template_id, x.job_id, x.shift
    FROM (SELECT r.id AS template_id, c.id AS job_id, c.shift FROM job_copies c
          JOIN jobsaga_workflow_runs r ON r.job_id = c.template_id
          ORDER BY c.g DESC, r.id LIMIT %(copies)s) x;
INSERT INTO jobsaga_workflow_runs (id, job_id, {RUN_COLUMNS}, started_at, updated_at,
                                   finished_at)
SELECT c.id, c.job_id, {", ".join(f"r.{column}" for column in RUN_COLUMNS.split(", "))},
       r.started_at + c.shift, r.updated_at + c.shift, r.finished_at + c.shift
FROM run_copies c JOIN jobsaga_workflow_runs r ON r.id = c.template_id
ORDER BY c.id;
INSERT INTO jobsaga_workflow_steps
SELECT c.id, s.step, s.position, s.status, s.result, s.error, s.tries, s.undo_tries,
       s.completed_seq, s.enqueue, s.started_at + c.shift, s.finished_at + c.shift
FROM run_copies c JOIN jobsaga_workflow_steps s ON s.run_id = c.template_id;
INSERT INTO jobsaga_workflow_events
SELECT c.id, e.seq, e.at + c.shift, e.attempt, e.step, e.kind, e.detail
FROM run_copies c JOIN jobsaga_workflow_events e ON e.run_id = c.template_id;
"""


def multiply(url: str, jobs: int, runs: int) -> dict[str, int]:
    """Copy the demo's rows until there are ``jobs`` jobs and ``runs`` runs."""
    with psycopg.connect(url, autocommit=False) as conn:
        have_jobs = conn.execute("SELECT count(*) FROM jobsaga_jobs").fetchone()[0]  # type: ignore[index]
        have_runs = conn.execute("SELECT count(*) FROM jobsaga_workflow_runs").fetchone()[0]  # type: ignore[index]
        for script, copies in ((COPY_JOBS, jobs - have_jobs), (COPY_RUNS, runs - have_runs)):
            for statement in filter(str.strip, script.split(";\n")):
                conn.execute(statement, {"copies": copies})  # type: ignore[arg-type]
        for sequence, table in (
            ("jobsaga_jobs_id_seq", "jobsaga_jobs"),
            ("jobsaga_workflow_runs_id_seq", "jobsaga_workflow_runs"),
        ):
            conn.execute(f"SELECT setval('{sequence}', (SELECT max(id) FROM {table}))")  # type: ignore[arg-type]
        conn.commit()
        conn.autocommit = True
        conn.execute("VACUUM ANALYZE")
        counts = {}
        for table in ("jobs", "workflow_runs", "workflow_steps", "workflow_events"):
            query = f"SELECT count(*) FROM jobsaga_{table}"
            counts[table] = conn.execute(query).fetchone()[0]  # type: ignore[arg-type,index]
        return counts


@dataclass
class Sample:
    """Ids of rows to open: an old job and a recent one, a failed one, a rolled-back run."""

    old_job: int
    new_job: int
    failed_job: int
    saga_job: int
    run: int
    rolled_back_run: int
    queue: str
    worker: str


def sample(url: str) -> Sample:
    with psycopg.connect(url) as conn:

        def one(query: str) -> Any:
            row = conn.execute(query).fetchone()  # type: ignore[arg-type]
            assert row is not None, query
            return row[0]

        return Sample(
            old_job=one("SELECT min(id) + 1000 FROM jobsaga_jobs"),
            new_job=one("SELECT max(id) - 10 FROM jobsaga_jobs"),
            failed_job=one(
                "SELECT id FROM jobsaga_jobs WHERE state = 'discarded' AND id <= "
                "(SELECT (min(id) + max(id)) / 2 FROM jobsaga_jobs) ORDER BY id DESC LIMIT 1"
            ),
            saga_job=one(
                "SELECT job_id FROM jobsaga_workflow_runs WHERE attempt = 2 AND id <= "
                "(SELECT (min(id) + max(id)) / 2 FROM jobsaga_workflow_runs) "
                "ORDER BY id DESC LIMIT 1"
            ),
            run=one("SELECT (min(id) + max(id)) / 2 FROM jobsaga_workflow_runs"),
            rolled_back_run=one(
                "SELECT id FROM jobsaga_workflow_runs WHERE status = 'rolled_back' AND id <= "
                "(SELECT (min(id) + max(id)) / 2 FROM jobsaga_workflow_runs) "
                "ORDER BY id DESC LIMIT 1"
            ),
            queue="mailers",
            worker="demo.resize_images",
        )


def pages(s: Sample) -> list[tuple[str, str]]:
    """The pages measured: (what, path)."""
    return [
        ("overview", "/"),
        ("jobs list, unfiltered", "/jobs"),
        ("jobs list, state=discarded", "/jobs?state=discarded"),
        ("jobs list, queue=mailers", f"/jobs?queue={s.queue}"),
        (f"jobs list, worker={s.worker}", f"/jobs?worker={s.worker}"),
        ("jobs list, state+queue+worker", f"/jobs?state=discarded&worker={s.worker}&queue=media"),
        ("jobs list, args prompt_id:p-churn", "/jobs?args=prompt_id:p-churn"),
        ("jobs list, text=gateway", "/jobs?text=gateway"),
        ("jobs list, a page halfway (keyset)", f"/jobs?after={s.failed_job}"),
        ("job page (old job)", f"/jobs/{s.old_job}"),
        ("job page (recent job)", f"/jobs/{s.new_job}"),
        ("job page (discarded)", f"/jobs/{s.failed_job}"),
        ("job page (saga job, 2 runs)", f"/jobs/{s.saga_job}"),
        ("runs list", "/runs"),
        ("runs list, status=rolled_back", "/runs?status=rolled_back"),
        ("run page", f"/runs/{s.run}"),
        ("run page (rolled back)", f"/runs/{s.rolled_back_run}"),
        ("queues", "/queues"),
    ]


def measure(client: TestClient, path: str, repeat: int) -> tuple[int, int, list[float]]:
    for _ in range(2):
        client.get(path)
    times = []
    status = size = 0
    for _ in range(repeat):
        started = time.perf_counter()
        response = client.get(path)
        times.append((time.perf_counter() - started) * 1000)
        status, size = response.status_code, len(response.content)
    return status, size, times


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--keep", action="store_true", help="keep the database; print its URL")
    parser.add_argument("--url", help="measure an existing database (built with --keep)")
    options = parser.parse_args(argv)
    if options.url:
        return report(options.url, options.repeat)
    with kept_database() if options.keep else fresh_pg_database("web") as url:
        started = time.perf_counter()
        run_the_demo(url).close()
        counts = multiply(url, options.jobs, options.runs)
        print(
            f"built in {time.perf_counter() - started:.0f} s: "
            + ", ".join(f"{n:,} {table.replace('_', ' ')}" for table, n in counts.items())
        )
        if options.keep:
            print(f"kept: measure it again with --url {url}; drop it with dropdb {url}")
        return report(url, options.repeat)


@contextmanager
def kept_database() -> Iterator[str]:
    """A new database on the server of ``PG_URL`` that outlives the script (``--keep``)."""
    name = f"bench_web_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(PG_URL, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    yield pg_url(name)


def report(url: str, repeat: int) -> int:
    s = sample(url)
    with demo.build_app(url) as app:
        board = dashboard(app, token=TOKEN)
        with TestClient(board.asgi, base_url="http://127.0.0.1") as client:
            client.headers["Authorization"] = f"Bearer {TOKEN}"
            rows = [(what, path, *measure(client, path, repeat)) for what, path in pages(s)]
    print(f"\nmedian of {repeat} requests, after 2 to warm up; target {TARGET_MS:.0f} ms\n")
    print(f"{'page':<38} {'status':>6} {'median ms':>9} {'min':>7} {'max':>7} {'HTML KB':>8}  path")
    over = 0
    table = ["| page | median | lowest | highest | HTML |", "|---|---:|---:|---:|---:|"]
    for what, path, status, size, times in rows:
        median, low, high = spread(times)
        mark = "" if median < TARGET_MS and status == 200 else "  <-- over target or not 200"
        over += bool(mark)
        print(
            f"{what:<38} {status:>6} {median:>9.1f} {low:>7.1f} {high:>7.1f} "
            f"{size / 1024:>8.1f}  {path}{mark}"
        )
        table.append(
            f"| {what} (`{path}`) | {median:.0f} ms{' **over**' if mark else ''} | "
            f"{low:.0f} ms | {high:.0f} ms | {size / 1024:.0f} KB |"
        )
    print("\nas Markdown (docs/dashboard.md):\n")
    print("\n".join(table))
    return 1 if over else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
