"""A database password never shows through the Python API's errors either (not only the
CLI's): libpq quotes a malformed URL back in its error, password included."""

from __future__ import annotations

import traceback

import pytest

import jobsaga
from jobsaga import App, DatabaseUnavailable, Worker

SECRET = "hunter2-very-secret"


class Ping(Worker, name="tests.secrets.Ping"):
    def perform(self, job: jobsaga.Job[dict[str, object]]) -> None:
        return None


@pytest.mark.parametrize(
    "url",
    [
        f"postgresql://user:{SECRET}%zz@127.0.0.1:5432/test",  # bad percent token
        f"postgresql://user:{SECRET}@127.0.0.1:1/test",  # nothing listens there
    ],
)
def test_connect_errors_mask_the_password(url: str) -> None:
    app = App(url, workers=[Ping])
    with pytest.raises(DatabaseUnavailable) as info:
        app.insert(Ping.new({}))
    shown = "".join(traceback.format_exception(info.value))
    assert "cannot connect to PostgreSQL" in shown
    assert SECRET not in shown
