"""Reading runs is a poll (``jobsaga runs list``, a dashboard, the final-failure hook's
lookup): on SQLite it must not take the write lock and so queue behind other processes'
writes (issue 9, fault 14)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from jobsaga import App, StepContext, Workflow, step
from jobsaga.testing import run_workflow
from jobsaga.workflow import get_run, list_runs
from tests.jobs.test_engine_paths import writes_blocked


class Tiny(Workflow, name="reads.tiny", inputs=["n"]):
    @step
    def double(self, n: int, ctx: StepContext[Any]) -> int:
        return 2 * n


def test_reading_runs_does_not_wait_for_writers(make_app: Callable[..., App], db_url: str) -> None:
    app = make_app(workflows=[Tiny])
    run = run_workflow(Tiny, {"n": 2}, app=app).run
    assert run is not None and run.id is not None
    got: dict[str, Any] = {}

    def poll() -> None:
        found = get_run(app, run.id)  # type: ignore[arg-type]
        got["run"] = found.status if found else None
        got["listed"] = [r.id for r in list_runs(app)]

    with writes_blocked(app, db_url):
        reader = threading.Thread(target=poll, daemon=True)
        reader.start()
        reader.join(5)
        assert not reader.is_alive(), "reading runs waited for the write lock"
    assert got == {"run": "succeeded", "listed": [run.id]}
