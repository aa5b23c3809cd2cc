"""``jobsaga migrate`` on both engines: on a terminal each migration is said as it runs, with
its time; piped, the one line it always printed; a failure says that nothing was applied. And
``App.migrate``'s listener, which the terminal lines are made from."""

from __future__ import annotations

import re

import pytest
from click.testing import CliRunner, Result

from jobsaga import App
from jobsaga.cli import worker as worker_cli
from jobsaga.cli.main import cli
from jobsaga.engines import sql as sqlfiles
from jobsaga.engines.schema import known_migrations


def run(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def test_app_migrate_tells_its_listener_each_migration_as_it_starts_and_ends(
    db_url: str,
) -> None:
    heard: list[tuple[str, float | None]] = []
    with App(db_url) as app:
        applied = app.migrate(lambda version, took: heard.append((version, took)))
        assert applied == known_migrations(app.engine)
        assert [version for version, _ in heard[::2]] == applied
        assert [version for version, _ in heard[1::2]] == applied
        assert all(took is None for _, took in heard[::2])
        assert all(took is not None and took >= 0 for _, took in heard[1::2])
        heard.clear()
        assert app.migrate(lambda version, took: heard.append((version, took))) == []
        assert heard == []


def test_on_a_terminal_each_migration_is_said_with_its_time(
    db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    with App(db_url) as app:
        known = known_migrations(app.engine)
    monkeypatch.setattr(worker_cli, "on_terminal", lambda err=False: True)
    first = run("migrate", "--url", db_url)
    assert first.exit_code == 0, first.output
    lines = first.output.splitlines()
    said = [re.fullmatch(r"applying (\w+) \.\.\. \d+(\.\d+)? (ms|s)", line) for line in lines[:-1]]
    assert [m.group(1) if m else line for m, line in zip(said, lines, strict=False)] == known
    assert re.fullmatch(
        rf"applied {len(known)} migrations in \d+(\.\d+)? (ms|s) \(one transaction\)", lines[-1]
    )
    assert run("migrate", "--url", db_url).output == "up to date\n"


def test_piped_the_output_is_one_line_as_before(db_url: str) -> None:
    with App(db_url) as app:
        known = known_migrations(app.engine)
    first = run("migrate", "--url", db_url)
    assert (first.exit_code, first.output) == (0, f"applied: {', '.join(known)}\n")
    assert run("migrate", "--url", db_url).output == "up to date\n"


def test_a_failed_migration_says_that_none_was_applied(
    db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    load = sqlfiles.load_migrations

    def with_a_broken_one(dialect: str) -> list[tuple[str, str]]:
        return [*load(dialect), ("9999_broken", "SELECT * FROM no_such_table")]

    monkeypatch.setattr(sqlfiles, "load_migrations", with_a_broken_one)
    monkeypatch.setattr(worker_cli, "on_terminal", lambda err=False: True)
    failed = run("migrate", "--url", db_url)
    assert failed.exit_code == 1
    assert failed.stdout.splitlines()[-1] == "applying 9999_broken ... failed"
    assert failed.stderr.startswith("rolled back: none of the migrations above was applied\n")
    assert "no_such_table" in failed.stderr
    with App(db_url) as app:
        assert app.engine.applied_migrations() == []
