"""A throwaway PostgreSQL cluster that chaos tests may stop, restart and kill at will.

The shared server on 127.0.0.1:5432 must never be disturbed, so a test that takes PostgreSQL
down gets a cluster of its own: ``initdb`` into a temporary folder, ``pg_ctl start`` on a free
port (TCP on 127.0.0.1 only, its unix socket inside the folder, trust authentication). When
the tests run as root, the cluster runs as the ``postgres`` system user (PostgreSQL refuses to
run as root), through ``runuser``. ``cleanup()`` always removes everything.

Usage::

    from tests.chaos.pgcluster import PgCluster

    with PgCluster() as pg:              # initdb + start; cleanup() on exit, whatever happens
        url = pg.url                     # postgresql://postgres@127.0.0.1:PORT/postgres
        url = pg.new_database()          # a fresh empty database, its URL (per test isolation)
        pg.restart("immediate")          # stop(mode) then start(); modes: fast, immediate
        pg.stop("fast"); pg.start()
        pg.kill()                        # SIGKILL the postmaster and its processes (a crash)
        pg.is_running                    # True while the server accepts connections
        pg.ensure_running()              # start it unless it runs (whatever state it was left in)
        pg.port, pg.log_tail()           # its port; the end of its log (for failure messages)
        pg.configure(fsync="on")         # ALTER SYSTEM SET + reload (persists across restarts)

Settings favour speed over durability against an OS crash (``fsync=off``): a stop, a restart
or a kill of the server loses no committed transaction (``synchronous_commit`` stays on), only
a crash of the machine would.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from glob import glob
from pathlib import Path
from types import TracebackType
from typing import Literal

import psycopg

StopMode = Literal["fast", "immediate"]


class PgClusterError(RuntimeError):
    """A PostgreSQL tool failed; the message holds its output and the server log's end."""


def pg_bin_dir() -> Path:
    """The newest PostgreSQL's binaries (``/usr/lib/postgresql/<version>/bin``), or $PATH's."""
    found = sorted(
        glob("/usr/lib/postgresql/*/bin/initdb"),
        key=lambda p: int(Path(p).parts[-3]) if Path(p).parts[-3].isdigit() else 0,
    )
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    if initdb is None:
        raise RuntimeError("no PostgreSQL binaries found (initdb) under /usr/lib/postgresql")
    return Path(initdb).parent


def free_port() -> int:
    """A TCP port on 127.0.0.1 nobody listens on right now (the kernel picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class PgCluster:
    """One PostgreSQL server of its own, in a temporary folder, on a free port.

    ``start()`` is called by the constructor unless ``start=False``. Every method waits for
    the server to have reached the state asked (``pg_ctl -w``) before returning.
    """

    def __init__(self, *, start: bool = True, user: str = "postgres") -> None:
        self.bin = pg_bin_dir()
        self.run_as = user if os.geteuid() == 0 else None
        self.root = Path(tempfile.mkdtemp(prefix="jobsaga-pg-"))
        self.data = self.root / "data"
        self.socket_dir = self.root / "sock"
        self.log = self.root / "server.log"
        self.port = free_port()
        self.socket_dir.mkdir()
        self.log.touch()
        if self.run_as is not None:
            entry = pwd.getpwnam(self.run_as)
            for path in (self.root, self.socket_dir, self.log):
                os.chown(path, entry.pw_uid, entry.pw_gid)
        try:
            self._run(
                "initdb",
                "-D",
                str(self.data),
                "-U",
                "postgres",
                "--auth=trust",
                "--encoding=UTF8",
                "--locale=C",
                "--no-sync",
                "--no-instructions",
            )
            with (self.data / "postgresql.conf").open("a", encoding="utf-8") as conf:
                conf.write(
                    "\n# jobsaga chaos cluster\n"
                    "listen_addresses = '127.0.0.1'\n"
                    f"unix_socket_directories = '{self.socket_dir}'\n"
                    "fsync = off\nfull_page_writes = off\n"
                    "shared_buffers = 32MB\nmax_connections = 200\n"
                    "log_min_messages = warning\n"
                )
            if start:
                self.start()
        except BaseException:
            self.cleanup()
            raise

    # --- addresses -------------------------------------------------------------------------

    @property
    def url(self) -> str:
        """The cluster's ``postgres`` database (the admin connection)."""
        return self.database_url("postgres")

    def database_url(self, database: str) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def new_database(self, name: str | None = None) -> str:
        """Create an empty database (a random name by default) and return its URL."""
        name = name or f"t_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(self.url, autocommit=True, connect_timeout=5) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.database_url(name)

    def configure(self, **settings: str) -> None:
        """``ALTER SYSTEM SET`` each setting and reload (settings a reload can change, e.g.
        ``fsync="on"``); they persist across restarts until set back."""
        with psycopg.connect(self.url, autocommit=True, connect_timeout=5) as conn:
            for name, value in settings.items():
                conn.execute(f"ALTER SYSTEM SET {name} = '{value}'")  # names from the test
            conn.execute("SELECT pg_reload_conf()")

    # --- life cycle ------------------------------------------------------------------------

    @property
    def is_running(self) -> bool:
        """True when the server accepts connections."""
        try:
            with psycopg.connect(self.url, connect_timeout=2) as conn:
                conn.execute("SELECT 1")
            return True
        except psycopg.OperationalError:
            return False

    def start(self, timeout: float = 30) -> None:
        """Start the server (after a crash this includes PostgreSQL's own recovery).

        The first start retries on another free port if the one picked was taken meanwhile
        (another test process may grab it between ``free_port()`` and the bind)."""
        for attempt in range(5):
            try:
                self._pg_ctl(
                    "start", "-t", str(int(timeout)), "-l", str(self.log), "-o", f"-p {self.port}"
                )
                return
            except PgClusterError:
                if attempt == 4 or "could not bind" not in self.log_tail():
                    raise
                self.port = free_port()

    def ensure_running(self, timeout: float = 30) -> None:
        """Start the server unless it runs; one caught starting or stopping gets a few seconds
        to settle, then is stopped hard and started (fixtures call this around each test)."""
        if self.is_running:
            return
        if self.postmaster_pid() is not None:
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline:
                if self.is_running:
                    return
                time.sleep(0.1)
            with contextlib.suppress(PgClusterError):
                self.stop("immediate")
            self.kill()
        self.start(timeout)

    def stop(self, mode: StopMode = "fast", timeout: float = 30) -> None:
        """``pg_ctl stop -m fast`` (clients disconnected, clean checkpoint) or ``immediate``
        (processes quit at once; the next start replays the WAL, as after a crash)."""
        self._pg_ctl("stop", "-m", mode, "-t", str(int(timeout)))

    def restart(self, mode: StopMode = "fast") -> None:
        self.stop(mode)
        self.start()

    def kill(self) -> None:
        """SIGKILL the postmaster and every process it started, as a crash of its host would;
        waits until they are gone so ``start()`` can follow (with crash recovery)."""
        pid = self.postmaster_pid()
        if pid is None:
            return
        children = _children(pid)
        for target in (pid, *children):
            with contextlib.suppress(ProcessLookupError):
                os.kill(target, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while any(_alive(p) for p in (pid, *children)):
            if time.monotonic() > deadline:
                raise PgClusterError(f"PostgreSQL processes survived SIGKILL: {pid} {children}")
            time.sleep(0.02)
        # Dead, possibly zombies not yet reaped by init (they hold nothing); a zombie
        # postmaster would make the next start believe it still runs.
        if _exists(pid):
            (self.data / "postmaster.pid").unlink(missing_ok=True)
            for lock in self.socket_dir.glob(".s.PGSQL.*.lock"):
                lock.unlink(missing_ok=True)

    def postmaster_pid(self) -> int | None:
        """The running postmaster's pid (from ``postmaster.pid``), or None."""
        try:
            first = (self.data / "postmaster.pid").read_text().splitlines()[0]
        except (FileNotFoundError, IndexError):
            return None
        pid = int(first)
        return pid if _alive(pid) else None

    def log_tail(self, chars: int = 4000) -> str:
        """The end of the server's log, for failure messages."""
        try:
            return self.log.read_text(errors="replace")[-chars:]
        except FileNotFoundError:
            return ""

    def cleanup(self) -> None:
        """Stop the server however it can be stopped, then delete the folder. Never raises."""
        with contextlib.suppress(Exception):
            if self.postmaster_pid() is not None:
                self.stop("immediate", timeout=10)
        with contextlib.suppress(Exception):
            self.kill()
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> PgCluster:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.cleanup()

    # --- commands --------------------------------------------------------------------------

    def _pg_ctl(self, *args: str) -> None:
        self._run("pg_ctl", "-D", str(self.data), "-w", *args)

    def _run(self, tool: str, *args: str) -> None:
        command = [str(self.bin / tool), *args]
        if self.run_as is not None:
            command = ["runuser", "-u", self.run_as, "--", *command]
        result = subprocess.run(
            command, cwd=self.root, capture_output=True, text=True, timeout=120, check=False
        )
        if result.returncode != 0:
            raise PgClusterError(
                f"{' '.join(command)} exited with {result.returncode}\n{result.stdout}"
                f"{result.stderr}\n--- server log ---\n{self.log_tail()}"
            )


def _exists(pid: int) -> bool:
    """The process exists, possibly as a zombie (dead, not yet reaped)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _alive(pid: int) -> bool:
    """The process exists and is not a zombie."""
    if not _exists(pid):
        return False
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, IndexError, ProcessLookupError):
        return False
    return state != "Z"


def _children(pid: int) -> list[int]:
    """Direct children of ``pid`` (the postmaster's backends and auxiliary processes)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (FileNotFoundError, IndexError, ProcessLookupError):
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found
