"""Every command that needs an app or a database resolves it the same way (flags > JOBSAGA_*
variables > the TOML file > defaults), and one that finds no jobsaga schema, or no SQLite
file, says so in one line with the remedy, exits 1, and creates nothing."""

from __future__ import annotations

import re
import sqlite3
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import click
import psycopg
import pytest
from click.testing import CliRunner, Result

from jobsaga import App, CronEntry, DatabaseUnavailable
from jobsaga.cli.configured import redact_url
from jobsaga.cli.main import cli
from jobsaga.plugins.cron import sync_entries
from jobsaga.testing import run_workflow

from . import cli_saga
from . import workers as w

ROOT = Path(__file__).resolve().parents[2]
APP = "tests.operations.cli_saga:app"

READ_COMMANDS = [
    ["jobs", "list"],
    ["jobs", "show", "1"],
    ["jobs", "counts"],
    ["queues"],
    ["queues", "list"],
    ["runs", "list"],
    ["runs", "show", "1"],
    ["cron", "list"],
]
CHANGE_COMMANDS = [
    ["jobs", "cancel", "1"],
    ["jobs", "retry", "--state", "discarded", "--yes"],
    ["jobs", "delete", "1"],
    ["queues", "pause", "default"],
    ["queues", "resume", "default"],
    ["queues", "scale", "default", "2"],
    ["runs", "rollback", "1"],
]
DATABASE_COMMANDS = READ_COMMANDS + CHANGE_COMMANDS


@pytest.fixture(autouse=True)
def _no_outside_configuration(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Run from an empty folder with no JOBSAGA_* variables, as a fresh shell would."""
    for name in ("JOBSAGA_DATABASE_URL", "JOBSAGA_APP", "JOBSAGA_CONFIG"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)


def run(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def config_help(command: click.Command) -> list[tuple[tuple[str, ...], str | None]]:
    wanted = {"--config", "--app", "--url", "--set"}
    return [
        (tuple(p.opts), getattr(p, "help", None)) for p in command.params if wanted & set(p.opts)
    ]


def find_command(path: list[str]) -> click.Command:
    command: click.Command = cli
    for name in path:
        assert isinstance(command, click.Group)
        command = command.commands[name]
    return command


def test_every_database_command_takes_the_same_configuration_options() -> None:
    expected = config_help(find_command(["worker"]))
    assert [opts for opts, _ in expected] == [("--config",), ("--app",), ("--url",), ("--set",)]
    paths = [["migrate"], ["config"], ["workflow", "graph"]]
    paths += [[word for word in command if word.isalpha()] for command in DATABASE_COMMANDS]
    for path in paths:
        path = [word for word in path if word not in ("default", "discarded")]
        assert config_help(find_command(path)) == expected, path


def saga_database(make_app: Callable[..., App]) -> tuple[App, int]:
    """A migrated database holding one saga run and one recorded cron entry."""
    app = make_app(cli_saga.Nightly, cli_saga.GreetWorker)
    result = run_workflow(cli_saga.Greet, {"who": "ops"}, app=app)
    assert result.run_id is not None
    sync_entries(app, [CronEntry("0 2 * * *", cli_saga.Nightly, name="nightly")])
    return app, result.run_id


def test_runs_and_cron_read_url_and_app_from_the_toml_file(
    make_app: Callable[..., App], db_url: str, tmp_path: Path
) -> None:
    _, run_id = saga_database(make_app)
    (tmp_path / "jobsaga.toml").write_text(f'url = "{db_url}"\napp = "{APP}"\n', "utf-8")

    listed = run("runs", "list")
    assert listed.exit_code == 0, listed.output
    assert re.search(rf"^\s*{run_id}\s+succeeded\s", listed.output, re.M), listed.output
    assert "ops.greet" in listed.output
    shown = run("runs", "show", str(run_id), "--graph")
    assert shown.exit_code == 0, shown.output
    assert f"run {run_id}  ops.greet  succeeded" in shown.output
    assert "input_who --> s_hello" in shown.output  # the app from the file knows the workflow
    cron = run("cron", "list")
    assert cron.exit_code == 0, cron.output
    assert cron.output.splitlines()[2].startswith("nightly  0 2 * * *") and "ops.nightly" in (
        cron.output
    )  # after the leader line and the table's header
    graph = run("workflow", "graph", "ops.greet")  # by name: the app comes from the file
    assert graph.exit_code == 0, graph.output
    assert graph.output == cli_saga.Greet.mermaid()
    assert not (tmp_path / "jobsaga.db").exists()  # no ./jobsaga.db behind the file's back


def test_config_flag_env_and_set_layer_over_the_file(
    make_app: Callable[..., App], db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, run_id = saga_database(make_app)
    elsewhere = tmp_path / "conf"
    elsewhere.mkdir()
    missing = f"sqlite:///{tmp_path / 'nowhere.db'}"
    (elsewhere / "prod.toml").write_text(f'url = "{missing}"\napp = "{APP}"\n', "utf-8")
    config = ["--config", str(elsewhere / "prod.toml")]

    from_file = run("runs", "list", *config)
    assert from_file.exit_code == 1 and "nowhere.db does not exist" in from_file.output
    by_flag = run("runs", "list", *config, "--url", db_url)
    assert by_flag.exit_code == 0 and "ops.greet" in by_flag.output
    by_set = run("cron", "list", *config, "--set", f"url={db_url}")
    assert by_set.exit_code == 0 and "nightly" in by_set.output
    monkeypatch.setenv("JOBSAGA_DATABASE_URL", db_url)  # the environment beats the file
    by_env = run("runs", "show", str(run_id), *config)
    assert by_env.exit_code == 0 and "ops.greet  succeeded" in by_env.output
    assert not (tmp_path / "nowhere.db").exists()


@pytest.fixture
def unmigrated_url(db_url: str, engine_name: str, tmp_path: Path) -> str:
    """An existing database without jobsaga's tables (a SQLite file holding another table)."""
    if engine_name == "sqlite":
        conn = sqlite3.connect(tmp_path / "jobs.db")
        conn.execute("CREATE TABLE other (x INTEGER)")
        conn.close()
    return db_url


def jobsaga_tables(url: str, engine_name: str, tmp_path: Path) -> list[str]:
    if engine_name == "sqlite":
        conn = sqlite3.connect(tmp_path / "jobs.db")
        rows = conn.execute("SELECT name FROM sqlite_master WHERE name LIKE 'jobsaga%'")
        found = [row[0] for row in rows]
        conn.close()
        return found
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT table_name FROM information_schema.tables "
            "WHERE table_schema = current_schema() AND table_name LIKE 'jobsaga%'"
        ).fetchall()
    return [row[0] for row in rows]


@pytest.mark.parametrize("command", DATABASE_COMMANDS, ids=" ".join)
def test_a_command_on_an_unmigrated_database_names_the_remedy(
    command: list[str], unmigrated_url: str, engine_name: str, tmp_path: Path
) -> None:
    result = run(*command, "--url", unmigrated_url)
    assert result.exit_code == 1, result.output
    assert isinstance(result.exception, SystemExit)  # handled: no exception escaped
    [line] = result.output.splitlines()
    assert line == (
        f"Error: the database at {unmigrated_url} has no jobsaga tables: "
        f"run `jobsaga migrate --url {quoted(unmigrated_url)}` first"
    )
    assert jobsaga_tables(unmigrated_url, engine_name, tmp_path) == []  # the check wrote nothing


def quoted(url: str) -> str:
    import shlex

    return shlex.quote(url)


def test_a_database_behind_this_jobsaga_names_the_missing_migrations(
    make_app: Callable[..., App], db_url: str
) -> None:
    app = make_app()
    param = "%(v)s" if app.engine.dialect == "postgres" else ":v"
    with app.engine.transaction() as tx:
        tx.execute(
            f"DELETE FROM jobsaga_migrations WHERE version = {param}", {"v": "0004_queue_control"}
        )
    result = run("queues", "--url", db_url)
    assert result.exit_code == 1
    assert "is behind this jobsaga (lacks migrations 0004_queue_control): run `jobsaga migrate" in (
        result.output
    )
    assert run("jobs", "list", "--url", db_url).exit_code == 1  # every command checks


def test_the_real_process_prints_one_line_and_no_traceback(unmigrated_url: str) -> None:
    process = subprocess.run(
        [sys.executable, "-m", "jobsaga.cli.main", "jobs", "list", "--url", unmigrated_url],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert process.returncode == 1
    assert process.stdout == ""
    assert "Traceback" not in process.stderr and len(process.stderr.splitlines()) == 1
    assert "has no jobsaga tables" in process.stderr


def test_a_password_is_not_printed() -> None:
    url = "postgresql://jobs:s3cret@db.internal:5432/shop?password=s3cret&sslmode=require"
    shown = redact_url(url)
    assert "s3cret" not in shown
    assert shown.startswith("postgresql://jobs:***@db.internal:5432/shop?")
    assert "sslmode=require" in shown
    assert redact_url("sqlite:///jobs.db") == "sqlite:///jobs.db"
    assert (
        redact_url("postgresql://postgres@127.0.0.1/test") == "postgresql://postgres@127.0.0.1/test"
    )


@pytest.mark.parametrize("command", DATABASE_COMMANDS, ids=" ".join)
def test_a_missing_sqlite_file_is_reported_not_created(command: list[str], tmp_path: Path) -> None:
    path = tmp_path / "typo.db"
    result = run(*command, "--url", f"sqlite:///{path}")
    assert result.exit_code == 1, result.output
    assert f"the file {path} does not exist" in result.output
    assert f"`jobsaga migrate --url sqlite:///{path}`" in result.output
    assert list(tmp_path.iterdir()) == []


def test_with_no_url_anywhere_the_default_file_is_named_and_not_created(tmp_path: Path) -> None:
    result = run("runs", "list")
    assert result.exit_code == 1
    assert "no database at sqlite:///jobsaga.db (the default: no --url" in result.output
    assert list(tmp_path.iterdir()) == []
    assert run("migrate").exit_code == 0  # migrate creates it, as before
    assert (tmp_path / "jobsaga.db").exists() and run("runs", "list").output == "no runs\n"


def test_a_url_in_a_folder_that_does_not_exist_is_one_error(tmp_path: Path) -> None:
    result = run("cron", "list", "--url", f"sqlite:///{tmp_path / 'no' / 'x.db'}")
    assert result.exit_code == 1
    assert result.output == f"Error: SQLite database folder does not exist: {tmp_path / 'no'}\n"


def test_worker_without_migrate_on_an_unmigrated_database(unmigrated_url: str) -> None:
    result = run("worker", "--no-migrate", "--url", unmigrated_url)
    assert result.exit_code == 1
    assert "has no jobsaga tables: run `jobsaga migrate" in result.output


def test_limit_zero_lists_everything_and_the_api_refuses_it(
    make_app: Callable[..., App], db_url: str
) -> None:
    app = make_app(w.Noop, cli_saga.GreetWorker)
    app.insert_all([w.Noop.new({"n": n}) for n in range(3)])
    for who in ("a", "b"):
        run_workflow(cli_saga.Greet, {"who": who}, app=app)

    def ids(output: str) -> list[str]:
        rows = output.splitlines()[1:]  # a last "showing N of M" line is not a row
        return [line.split()[0] for line in rows if line.strip() and not line.startswith("showing")]

    assert len(ids(run("jobs", "list", "--url", db_url, "--limit", "2").output)) == 2
    assert len(ids(run("jobs", "list", "--url", db_url, "--limit", "0").output)) == 3
    assert len(ids(run("runs", "list", "--url", db_url, "--limit", "1").output)) == 1
    assert len(ids(run("runs", "list", "--url", db_url, "--limit", "0").output)) == 2
    negative = run("jobs", "list", "--url", db_url, "--limit", "-1")
    assert negative.exit_code == 2 and "x>=0" in negative.output
    assert "0: no limit" in run("jobs", "list", "--help").output
    assert "0: no limit" in run("runs", "list", "--help").output

    assert len(app.list_jobs(limit=None)) == 3 and len(app.list_jobs(limit=2)) == 2
    with pytest.raises(ValueError, match="limit must be >= 1, or None for every match; got 0"):
        app.list_jobs(limit=0)


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("postgresql://postgres:hunter2@127.0.0.1:1/test", "Connection refused"),
        (
            "postgresql://postgres@127.0.0.1:5432/jobsaga_no_such_db",
            'database "jobsaga_no_such_db"',
        ),
    ],
)
def test_an_unreachable_postgres_is_one_line_with_the_servers_reason(url: str, reason: str) -> None:
    for command in (
        ["jobs", "list"],
        ["runs", "list"],
        ["worker", "--app", "jobsaga.demo:build_app"],
    ):
        result = run(*command, "--url", url)
        assert result.exit_code == 1, result.output
        assert "cannot connect to PostgreSQL" in result.output and reason in result.output
        assert f"(at {redact_url(url)})" in result.output  # which database, worker included
        assert "hunter2" not in result.output and "Traceback" not in result.output
    with pytest.raises(DatabaseUnavailable, match=reason):
        App(url).list_jobs()
