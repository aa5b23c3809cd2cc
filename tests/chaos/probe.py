"""Looking at the jobs table from outside, through a server that may be down or restarting.

Chaos scenarios must observe the outcome independently of what they test: an ``App`` whose
pool holds connections the server killed would make the observer fail, not jobsaga. So the
probe opens a short-lived plain connection per query (psycopg or sqlite3) and retries while the
server is unreachable or the SQLite file is locked, up to a deadline.

It also records each scenario's figures (:func:`report`): printed, and appended as one JSON
line to ``$JOBSAGA_CHAOS_FIGURES`` when set, so docs/reliability.md can cite a real run.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import time
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

import psycopg

FIGURES_ENV = "JOBSAGA_CHAOS_FIGURES"


class Probe:
    """Plain SQL on the database at ``url`` (``%s`` placeholders on both engines)."""

    def __init__(self, url: str, *, retry_for: float = 30.0) -> None:
        self.url = url
        self.sqlite = url.startswith("sqlite")
        self.retry_for = retry_for
        self.context: Callable[[], str] = lambda: ""
        """More to say when a wait fails (a test sets it to its nodes' logs)."""

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        deadline = time.monotonic() + self.retry_for
        while True:
            try:
                return self._query(sql, params)
            except (psycopg.OperationalError, sqlite3.OperationalError) as exc:
                if "no such table" in str(exc) or time.monotonic() > deadline:
                    raise
                time.sleep(0.1)

    def _query(self, sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
        if self.sqlite:
            path = self.url.removeprefix("sqlite:///")
            with contextlib.closing(sqlite3.connect(path, timeout=10)) as conn:
                rows = conn.execute(sql.replace("%s", "?"), tuple(params)).fetchall()
                conn.commit()
                return rows
        with psycopg.connect(self.url, connect_timeout=3, autocommit=True) as conn:
            cursor = conn.execute(sql, tuple(params))
            return cursor.fetchall() if cursor.description else []

    def execute(self, sql: str, params: Sequence[Any] = ()) -> None:
        self.query(sql, params)

    # --- the jobs table --------------------------------------------------------------------

    def states(self, worker: str | None = None) -> Counter[str]:
        """How many jobs are in each state (of one worker, or all)."""
        where, params = ("WHERE worker = %s", [worker]) if worker else ("", [])
        rows = self.query(
            f"SELECT state, count(*) FROM jobsaga_jobs {where} GROUP BY state", params
        )
        return Counter({str(state): int(n) for state, n in rows})

    def jobs(self, worker: str | None = None) -> list[dict[str, Any]]:
        """id, state, attempt, attempted_by and errors (decoded) of each job, by id."""
        where, params = ("WHERE worker = %s", [worker]) if worker else ("", [])
        rows = self.query(
            "SELECT id, state, attempt, attempted_by, errors, args FROM jobsaga_jobs "
            f"{where} ORDER BY id",
            params,
        )
        return [
            {
                "id": int(r[0]),
                "state": str(r[1]),
                "attempt": int(r[2]),
                "attempted_by": r[3],
                "errors": self._json(r[4]),
                "args": self._json(r[5]),
            }
            for r in rows
        ]

    def _json(self, value: Any) -> Any:
        """A JSON column's value (psycopg decodes jsonb itself; SQLite stores text)."""
        return json.loads(value) if self.sqlite and isinstance(value, str) else value

    def wait_for(
        self, predicate: Callable[[], Any], timeout: float, what: str, interval: float = 0.1
    ) -> float:
        """Poll ``predicate`` until truthy; return the seconds it took, or fail naming ``what``
        and the job states then."""
        started = time.monotonic()
        while True:
            if predicate():
                return time.monotonic() - started
            if time.monotonic() - started > timeout:
                raise AssertionError(
                    f"{what}: not reached within {timeout}s; jobs by state: "
                    f"{dict(self.states())}\n{self.context()}"
                )
            time.sleep(interval)


def report(scenario: str, **figures: Any) -> None:
    """Print a scenario's figures and append them to ``$JOBSAGA_CHAOS_FIGURES`` (JSON lines)."""
    line = {"scenario": scenario, **figures}
    print(f"\nchaos figures: {json.dumps(line)}")
    path = os.environ.get(FIGURES_ENV)
    if path:
        with open(path, "a", encoding="utf-8") as out:
            out.write(json.dumps(line) + "\n")
