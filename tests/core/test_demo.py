"""The README's first command: ``jobsaga demo`` settles every job and prints the table."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from click.testing import CliRunner

from jobsaga.cli.main import cli


def test_demo_settles_every_outcome(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(cli, ["demo", "--db", "demo.db"])
    assert result.exit_code == 0, result.output
    with sqlite3.connect(tmp_path / "demo.db") as db:
        states = dict(
            db.execute(
                "SELECT worker || ':' || args, state FROM jobsaga_jobs ORDER BY id"
            ).fetchall()
        )
    by_worker: dict[str, list[str]] = {}
    for key, state in states.items():
        by_worker.setdefault(key.split(":", 1)[0], []).append(state)
    assert by_worker["demo.charge_card"] == ["completed"]
    assert by_worker["demo.notify_partner"] == ["discarded"]
    assert by_worker["demo.build_report"] == ["cancelled"]
    assert sorted(by_worker["demo.fetch_exchange_rate"]) == ["completed", "discarded"]
    assert by_worker["demo.import_catalog"] == ["completed"]  # the duplicate was not stored
    assert by_worker["demo.resize_images"] == ["discarded"]  # timed out twice
    assert "on_final_failure: job" in result.output
    assert "unique duplicate returned as a conflict" in result.output
