"""SQLite files that cannot be used say so in one line, and jobsaga's files are private
(issue 9, fault 11).

A read-only, corrupt or truncated file gave a 40-line traceback from every CLI command; a
full disk too. Each is now one line naming the file and the cause. Files jobsaga creates
(the database and the ``-wal``/``-shm`` files beside it) are readable by their owner only:
job args may be private.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import stat
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from jobsaga import App, DatabaseError, DatabaseUnavailable, Job, Worker
from jobsaga.cli.main import cli
from jobsaga.engines.sqlite import SqliteEngine


class Noop(Worker):
    def perform(self, job: Job[object]) -> None:
        return None


@pytest.fixture(autouse=True)
def _no_outside_configuration(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in ("JOBSAGA_DATABASE_URL", "JOBSAGA_APP", "JOBSAGA_CONFIG"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)


def migrated(path: Path) -> Path:
    app = App(f"sqlite:///{path}", workers=[Noop])
    app.migrate()
    app.insert(Noop.new({}))
    app.close()  # the last connection checkpoints the WAL into the file
    return path


def garbage(path: Path) -> None:
    path.write_bytes(os.urandom(16384))


def truncated(path: Path) -> None:
    data = migrated(path).read_bytes()
    path.write_bytes(data[:1500])


CORRUPTIONS = {"garbage": garbage, "truncated": truncated}
COMMANDS = [
    ["jobs", "list"],
    ["jobs", "counts"],
    ["queues"],
    ["runs", "list"],
    ["cron", "list"],
    ["migrate"],
    ["worker", "--queue", "default=1"],
]


def one_line(output: str) -> str:
    lines = [line for line in output.splitlines() if line.strip()]
    assert len(lines) == 1, output
    assert "Traceback" not in output
    return lines[0]


@pytest.mark.timeout(60)
@pytest.mark.parametrize("corruption", sorted(CORRUPTIONS))
@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_a_corrupt_file_is_one_line_from_every_command(
    corruption: str, command: list[str], tmp_path: Path
) -> None:
    path = tmp_path / "jobs.db"
    CORRUPTIONS[corruption](path)
    result = CliRunner().invoke(cli, [*command, "--url", f"sqlite:///{path}"])
    assert result.exit_code == 1, result.output
    assert isinstance(result.exception, SystemExit)  # handled: nothing escaped
    line = one_line(result.output)
    assert str(path) in line and "is not a usable database" in line
    assert "corrupt, truncated or not SQLite" in line


def as_other_user() -> list[str]:
    """A command prefix under which file permissions apply: root ignores them through its
    capabilities, so as root the command runs without those (still as root, so it can read
    a virtualenv inside root's private temporary folder, as CI's clean clone has it)."""
    if os.geteuid() != 0:
        return []
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.fail("running as root without setpriv (util-linux): cannot drop privileges")
    return [setpriv, "--bounding-set=-dac_override,-dac_read_search,-fowner", "--inh-caps=-all"]


@pytest.fixture
def read_only_db() -> Iterator[Path]:
    """A migrated database the test's user may read but not write (nor its folder)."""
    folder = Path(tempfile.mkdtemp(prefix="jobsaga-ro-"))  # not under root's 0700 tmp_path
    try:
        path = migrated(folder / "jobs.db")
        path.chmod(0o444)
        folder.chmod(0o555)
        yield path
    finally:
        folder.chmod(0o755)
        shutil.rmtree(folder)


@pytest.mark.parametrize("command", [["jobs", "list"], ["migrate"]], ids=" ".join)
def test_a_read_only_file_is_one_line(command: list[str], read_only_db: Path) -> None:
    process = subprocess.run(
        [
            *as_other_user(),
            sys.executable,
            "-m",
            "jobsaga.cli.main",
            *command,
            "--url",
            f"sqlite:///{read_only_db}",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=read_only_db.parent,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )
    assert process.returncode == 1, process.stderr
    line = one_line(process.stdout + process.stderr)
    assert str(read_only_db) in line and "is read-only" in line
    assert "check their owner and permissions" in line


def test_a_full_disk_is_unavailable_and_leaves_the_engine_usable(tmp_path: Path) -> None:
    """A full disk is simulated with SQLite's own limit (PRAGMA max_page_count), which fails
    a write with the same SQLITE_FULL as a full file system; a real full disk needs a
    dedicated small file system, which a test cannot count on."""
    app = App(f"sqlite:///{tmp_path / 'jobs.db'}", workers=[Noop])
    try:
        app.migrate()
        engine = app.engine
        with engine.transaction() as tx:
            pages = tx.execute("PRAGMA page_count")[0]["page_count"]
            tx.execute(f"PRAGMA max_page_count = {pages + 1}")
        with pytest.raises(DatabaseUnavailable, match=r"jobs\.db: the disk is full"):
            app.insert_all([Noop.new({"pad": "x" * 4000}) for _ in range(50)])
        assert app.count_jobs() == {}  # nothing half-written
        with engine.transaction() as tx:
            tx.execute("PRAGMA max_page_count = 1073741823")  # space freed
        assert len(app.insert_all([Noop.new({"pad": "x" * 4000}) for _ in range(50)])) == 50
    finally:
        app.close()


def test_a_locked_file_is_unavailable_after_the_busy_timeout(tmp_path: Path) -> None:
    path = tmp_path / "jobs.db"
    app = App(f"sqlite:///{path}", workers=[Noop])
    engine = app.engine
    assert isinstance(engine, SqliteEngine)
    engine.busy_timeout = 0.05
    other = sqlite3.connect(path, isolation_level=None)
    try:
        app.migrate()
        other.execute("BEGIN IMMEDIATE")
        with pytest.raises(DatabaseUnavailable, match=r"jobs\.db is locked") as caught:
            app.insert(Noop.new({}))
        assert isinstance(caught.value.__cause__, sqlite3.OperationalError)
        other.execute("ROLLBACK")
        assert app.insert(Noop.new({})).id == 1  # nothing was left half-done
    finally:
        other.close()
        app.close()


def test_a_folder_that_cannot_be_written_is_one_clear_error(tmp_path: Path) -> None:
    folder = Path(tempfile.mkdtemp(prefix="jobsaga-ro-"))
    folder.chmod(0o555)
    try:
        process = subprocess.run(
            [
                *as_other_user(),
                sys.executable,
                "-m",
                "jobsaga.cli.main",
                "migrate",
                "--url",
                f"sqlite:///{folder / 'new.db'}",
            ],
            capture_output=True,
            text=True,
            timeout=60,
            cwd=folder,
            env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
        )
    finally:
        folder.chmod(0o755)
        shutil.rmtree(folder)
    assert process.returncode == 1, process.stderr
    line = one_line(process.stdout + process.stderr)
    assert f"{folder / 'new.db'} cannot be created (Permission denied)" in line


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_files_jobsaga_creates_are_readable_by_their_owner_only(tmp_path: Path) -> None:
    path = tmp_path / "jobs.db"
    app = App(f"sqlite:///{path}", workers=[Noop])
    try:
        app.migrate()
        app.insert(Noop.new({"secret": "s3cr3t"}))
        files = {p.name: mode(p) for p in tmp_path.iterdir()}
        assert files == {"jobs.db": 0o600, "jobs.db-wal": 0o600, "jobs.db-shm": 0o600}
    finally:
        app.close()


def test_an_existing_file_keeps_the_mode_its_owner_gave_it(tmp_path: Path) -> None:
    path = tmp_path / "shared.db"
    sqlite3.connect(path).close()
    path.chmod(0o640)
    app = App(f"sqlite:///{path}", workers=[Noop])
    try:
        app.migrate()
        assert mode(path) == 0o640
    finally:
        app.close()


def test_two_threads_creating_the_file_at_once_both_succeed(tmp_path: Path) -> None:
    path = tmp_path / "jobs.db"
    engines = [SqliteEngine(str(path)) for _ in range(4)]
    errors: list[BaseException] = []

    def open_it(engine: SqliteEngine) -> None:
        try:
            engine.applied_migrations()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=open_it, args=(e,)) for e in engines]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    for engine in engines:
        engine.close()
    assert errors == [] and mode(path) == 0o600


def test_engine_errors_are_database_errors_naming_the_file(tmp_path: Path) -> None:
    path = tmp_path / "jobs.db"
    garbage(path)
    engine = SqliteEngine(str(path))
    with pytest.raises(DatabaseError, match=f"SQLite database {path} is not a usable") as caught:
        engine.applied_migrations()
    assert isinstance(caught.value.__cause__, sqlite3.DatabaseError)
    engine.close()
