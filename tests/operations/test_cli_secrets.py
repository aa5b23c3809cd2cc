"""No command prints or logs a database password (issue 9, fault 12).

Each command runs as an operator runs it (the real CLI in its own process, ``-vv`` so debug
logs go to stderr too) with a URL holding a known password: unreachable, malformed, given by
flag, environment, TOML file or ``password=`` parameter, and reachable (a password in the URL
of the shared PostgreSQL server, which trusts and ignores it). stdout and stderr must never
hold the password, while the URL they show still names the database. Passwords only exist in
PostgreSQL URLs: the SQLite side of the CLI is covered by the other CLI tests.

The processes are forked from one that imported jobsaga once (``cli_forks``), so thirty-odd
commands do not each pay an interpreter start-up; the worker that runs until SIGTERM is a
plain ``python -m jobsaga.cli.main`` process."""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

import psycopg
import pytest
from click.testing import CliRunner

from jobsaga import App
from jobsaga.cli.configured import AppSource
from jobsaga.cli.main import cli
from jobsaga.config import NodeConfig
from tests.conftest import PG_URL

SECRET = "Kn0wn-Pa55word"
OTHER = "0ther-Pa55word"
ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def with_password(url: str, password: str) -> str:
    parts = urlsplit(url)
    user = parts.username or "postgres"
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"{user}:{quote(password)}@{host}"))


class Forks:
    """The CLI commands of this module, each in a process of its own forked from one that
    imported jobsaga once (see ``cli_forks``): some thirty commands, without thirty
    interpreter start-ups and imports."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.lock = threading.Lock()
        self.count = 0
        self.server = subprocess.Popen(
            [sys.executable, "-m", "tests.operations.cli_forks"],
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )

    def run(self, args: list[str], env: dict[str, str], cwd: Path) -> tuple[int, str, str]:
        with self.lock:
            self.count += 1
            out, err = self.folder / f"{self.count}.out", self.folder / f"{self.count}.err"
            request = {"args": args, "env": env, "cwd": str(cwd), "out": str(out), "err": str(err)}
            assert self.server.stdin is not None and self.server.stdout is not None
            self.server.stdin.write(json.dumps(request) + "\n")
            self.server.stdin.flush()
            code = int(self.server.stdout.readline())
        return code, out.read_text(encoding="utf-8"), err.read_text(encoding="utf-8")

    def close(self) -> None:
        assert self.server.stdin is not None
        self.server.stdin.close()
        self.server.wait(10)


FORKS: list[Forks] = []


@pytest.fixture(scope="module", autouse=True)
def forks(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    FORKS.append(Forks(tmp_path_factory.mktemp("cli")))
    yield
    FORKS.pop().close()


def jobsaga(
    *args: str, env: dict[str, str] | None = None, cwd: Path = ROOT
) -> subprocess.CompletedProcess[str]:
    """``python -m jobsaga.cli.main -vv ARGS``: the real CLI in a process of its own."""
    environ = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
    for name in ("JOBSAGA_DATABASE_URL", "JOBSAGA_APP", "JOBSAGA_CONFIG"):
        if name not in (env or {}):
            environ.pop(name, None)
    command = ["-vv", *args]
    code, out, err = FORKS[-1].run(command, environ, cwd)
    return subprocess.CompletedProcess(
        [sys.executable, "-m", "jobsaga.cli.main", *command], code, out, err
    )


def run_all(commands: list[list[str]], *args: str) -> list[subprocess.CompletedProcess[str]]:
    """Each command (with ``args``) in its own process."""
    return [jobsaga(*command, *args) for command in commands]


def assert_no_secret(result: subprocess.CompletedProcess[str], *secrets: str) -> None:
    shown = result.stdout + result.stderr
    for secret in secrets or (SECRET,):
        assert secret not in shown, f"{secret!r} shown by {result.args[3:]}:\n{shown}"


UNREACHABLE = [
    "postgresql://jobsaga:{pw}@127.0.0.1:{port}/shop",
    "postgresql://jobsaga@127.0.0.1:{port}/shop?password={pw}",
    "postgresql://jobsaga:{pw}%zz@127.0.0.1:{port}/shop",  # libpq echoes a bad token
    "postgresql://jobsaga:{pw}@[::1/shop",  # libpq echoes the whole URL; urlsplit raises
]
COMMANDS = [
    ["config"],
    ["jobs", "list"],
    ["runs", "list"],
    ["runs", "show", "1"],
    ["queues"],
    ["cron", "list"],
    ["migrate"],
    ["worker", "--no-migrate"],
    ["worker"],
]


@pytest.mark.parametrize("template", UNREACHABLE)
def test_unreachable_or_malformed_url_is_never_shown_with_its_password(template: str) -> None:
    url = template.format(pw=SECRET, port=free_port())
    commands = (
        COMMANDS if template == UNREACHABLE[0] else [["config"], ["jobs", "list"], ["worker"]]
    )
    for command, result in zip(commands, run_all(commands, "--url", url), strict=True):
        assert_no_secret(result)
        if command == ["config"]:
            assert result.returncode == 0 and "***" in result.stdout and "shop" in result.stdout
        else:
            assert result.returncode == 1, result.stderr
            assert "Traceback" not in result.stderr
            assert "***" in result.stderr  # the database is still named, masked


def test_url_from_the_environment_or_a_file_is_masked_too(tmp_path: Path) -> None:
    url = f"postgresql://jobsaga:{SECRET}@127.0.0.1:{free_port()}/shop"
    by_env = jobsaga("jobs", "list", env={"JOBSAGA_DATABASE_URL": url})
    assert by_env.returncode == 1 and "jobsaga:***@127.0.0.1" in by_env.stderr
    assert_no_secret(by_env)
    shown = jobsaga("config", env={"JOBSAGA_DATABASE_URL": url})
    assert shown.returncode == 0 and '"url": "postgresql://jobsaga:***@' in shown.stdout
    assert_no_secret(shown)
    (tmp_path / "jobsaga.toml").write_text(f'url = "{url}"\n', encoding="utf-8")
    by_file = jobsaga("worker", cwd=tmp_path)
    assert by_file.returncode == 1 and "jobsaga:***@127.0.0.1" in by_file.stderr
    assert_no_secret(by_file)


@pytest.fixture
def secret_pg_url(pg_admin: psycopg.Connection[Any]) -> Iterator[str]:
    """The shared server's URL with a password in it (trust authentication ignores it), on a
    schema of its own."""
    schema = f"t_{uuid.uuid4().hex[:12]}"
    pg_admin.execute(f'CREATE SCHEMA "{schema}"')
    sep = "&" if "?" in PG_URL else "?"
    url = f"{PG_URL}{sep}options={quote(f'-csearch_path={schema}')}"
    try:
        yield with_password(url, SECRET)
    finally:
        pg_admin.execute(f'DROP SCHEMA "{schema}" CASCADE')


def test_commands_on_a_reachable_database_never_show_its_password(secret_pg_url: str) -> None:
    migrated = jobsaga("migrate", "--url", secret_pg_url)
    assert migrated.returncode == 0 and "applied:" in migrated.stdout, migrated.stderr
    assert_no_secret(migrated)
    results = run_all(COMMANDS[:6], "--url", secret_pg_url)
    for command, result in zip(COMMANDS[:6], results, strict=True):
        assert result.returncode == (1 if command[:2] == ["runs", "show"] else 0), result.stderr
        assert_no_secret(result)
    shown = jobsaga("config", "--url", secret_pg_url)
    assert f"postgres:***@{urlsplit(secret_pg_url).hostname}" in shown.stdout

    environ = {**os.environ, "PYTHONPATH": str(ROOT), "JOBSAGA_GRACE_PERIOD": "0.5"}
    worker = subprocess.Popen(
        [sys.executable, "-m", "jobsaga.cli.main", "-vv", "worker", "--url", secret_pg_url],
        env=environ,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        with App(secret_pg_url) as app:
            deadline = time.monotonic() + 20
            while not app.list_queues() and time.monotonic() < deadline:
                time.sleep(0.1)
            assert app.list_queues(), "the worker did not start"
    finally:
        worker.send_signal(signal.SIGTERM)
        out, err = worker.communicate(timeout=30)
    assert worker.returncode == 0, err
    assert "DEBUG" in err  # the debug logs were on, and were scanned
    for secret in (SECRET,):
        assert secret not in out + err


def test_url_and_an_app_already_connected(
    secret_pg_url: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The --url + --app conflict names both databases, masked: in output and in logs."""
    monkeypatch.setenv("JOBSAGA_TEST_SECRET_APP_URL", secret_pg_url)
    monkeypatch.delenv("JOBSAGA_DATABASE_URL", raising=False)
    sys.modules.pop("tests.operations.secret_app", None)
    other = f"postgresql://other:{OTHER}@127.0.0.1:{free_port()}/elsewhere"
    caplog.set_level(logging.DEBUG)
    result = CliRunner().invoke(
        cli, ["jobs", "list", "--app", "tests.operations.secret_app:app", "--url", other]
    )
    assert result.exit_code == 2, result.output
    assert "is already connected to postgresql://postgres:***@" in result.output
    assert "cannot switch to postgresql://other:***@127.0.0.1" in result.output
    for secret in (SECRET, OTHER):
        assert secret not in result.output and secret not in caplog.text
        assert all(secret not in r.getMessage() for r in caplog.records)
    # and as the real CLI shows it
    real = jobsaga(
        "jobs",
        "list",
        "--app",
        "tests.operations.secret_app:app",
        "--url",
        other,
        env={"JOBSAGA_TEST_SECRET_APP_URL": secret_pg_url},
    )
    assert real.returncode == 2 and "already connected to postgresql://postgres:***@" in real.stderr
    assert_no_secret(real, SECRET, OTHER)


def test_logs_and_errors_of_an_invocation_are_scrubbed(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The net behind the masking at the source: a log record or an unexpected error that
    carries the password of a URL the command resolved (a driver's echo) is cleaned."""
    import click

    from jobsaga.cli import main as cli_main

    url = f"postgresql://jobsaga:{SECRET}@127.0.0.1:{free_port()}/shop"

    @cli_main.cli.command("leak-for-test")
    @click.option("--url")
    def leak(url: str) -> None:
        AppSource(url=url).config()
        logging.getLogger("jobsaga.test").warning("driver said: bad token %r", SECRET)
        raise RuntimeError(f"driver said: {SECRET}")

    try:
        caplog.set_level(logging.DEBUG)
        result = CliRunner().invoke(cli, ["leak-for-test", "--url", url])
    finally:
        cli_main.cli.commands.pop("leak-for-test")
    assert result.exit_code == 1
    assert "RuntimeError: driver said: ***" in result.output
    assert "driver said: bad token '***'" in caplog.text and SECRET not in caplog.text
    assert SECRET not in result.output


def test_reprs_and_config_dumps_mask_the_password() -> None:
    url = f"postgresql://jobsaga:{SECRET}@db.internal/shop"
    config = NodeConfig(url=url)
    assert config.url == url  # the value itself is whole, for connecting
    for shown in (repr(config), str(config), config.model_dump_json()):
        assert SECRET not in shown and "jobsaga:***@db.internal/shop" in shown
    assert SECRET not in repr(AppSource(url=url, settings=(f"url={url}",)))
    app = App(url)
    assert SECRET not in repr(app) and SECRET not in repr(app.engine)


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("postgresql://u:pw@h/db", "postgresql://u:***@h/db"),
        (
            "postgresql://u@h/db?password=pw&sslmode=off",
            "postgresql://u@h/db?password=***&sslmode=off",
        ),
        ("postgresql://u:p%40w@h:5432/db", "postgresql://u:***@h:5432/db"),
        ("postgresql://u:pw@[::1/db", "postgresql://u:***@[::1/db"),
        ("postgresql://u:pw@h/db?Password=pw", "postgresql://u:***@h/db?Password=***"),
        ("postgresql://u@h/db", "postgresql://u@h/db"),
        ("sqlite:///jobs.db", "sqlite:///jobs.db"),
        # libpq reads the password up to the @: '#' and '?' are part of it
        ("postgresql://u:se#cret@h/db", "postgresql://u:***@h/db"),
        ("postgresql://u:a?b=c@h/db", "postgresql://u:***@h/db"),
        ("postgresql:///db?password=pw", "postgresql:///db?password=***"),
        ("postgresql://u@h/db?sslpassword=pw", "postgresql://u@h/db?sslpassword=***"),
        ("postgresql://h:5432/db", "postgresql://h:5432/db"),
    ],
)
def test_redact_url(url: str, shown: str) -> None:
    from jobsaga.redaction import redact_url

    assert redact_url(url) == shown


def test_secrets_of_a_url_and_scrubbing() -> None:
    from jobsaga.redaction import redact_text, url_secrets

    url = "postgresql://u:s3cr%40t%zz@h/db?password=an0ther"
    assert url_secrets(url) >= {"s3cr%40t%zz", "s3cr@t%zz", "an0ther"}
    assert url_secrets("postgresql://u:ab@h/db") == set()  # too short to scrub from text
    assert "se#cret" in url_secrets("postgresql://u:se#cret@h/db")
    assert redact_text('token "s3cr@t%zz" and an0ther', url_secrets(url)) == 'token "***" and ***'


def test_a_malformed_setting_does_not_echo_a_password() -> None:
    """``--set`` without ``=``: the text is not known as a URL yet, so nothing scrubbed it."""
    result = CliRunner().invoke(
        cli, ["config", "--set", f"url postgresql://u:{SECRET}@h/db"], catch_exceptions=False
    )
    assert result.exit_code == 2
    assert "use KEY=VALUE" in result.output and SECRET not in result.output
