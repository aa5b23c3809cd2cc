"""``jobsaga worker`` in a subprocess, its stderr read as it comes, for the CLI tests that
send it signals or read what it says."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.helpers import wait_until

ROOT = Path(__file__).resolve().parents[2]
JOBSAGA = str(Path(sys.executable).with_name("jobsaga"))
EXITED = 20.0
"""Seconds a stopped worker may take to exit on a loaded machine (its job runs 60 s)."""


class Worker:
    """A ``jobsaga worker`` process whose stderr is read as it comes, so a test can wait for
    what it says (a readiness marker) instead of sleeping."""

    def __init__(self, process: subprocess.Popen[str], log_file: Path) -> None:
        self.process = process
        self.log_file = log_file
        self._lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self._lines.append(line.rstrip("\n"))

    @property
    def err(self) -> str:
        return "\n".join(self._lines)

    def says(self, text: str, timeout: float = 15) -> None:
        wait_until(lambda: text in self.err, timeout)

    def logged(self) -> list[str]:
        return self.log_file.read_text(encoding="utf-8").splitlines()

    def started(self, line: str, timeout: float = 15) -> None:
        wait_until(lambda: line in self.logged(), timeout)

    def signal(self, sig: signal.Signals = signal.SIGINT) -> None:
        self.process.send_signal(sig)

    def exited(self, timeout: float = EXITED) -> int:
        code = self.process.wait(timeout)
        self._reader.join(5)
        return code


def worker_env(log_file: Path) -> dict[str, str]:
    """The environment of a ``jobsaga worker`` subprocess: this checkout importable, the
    performs noting what they do in ``log_file``, no database URL from the caller's shell."""
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
        "JOBSAGA_TEST_LOG": str(log_file),
    }
    env.pop("JOBSAGA_DATABASE_URL", None)
    return env


def worker_command(app_spec: str | None, db_url: str, *options: str, verbose: int = 0) -> list[str]:
    """``jobsaga [-v...] worker --app APP_SPEC --url DB_URL --poll-interval 0.05 OPTIONS``."""
    return [
        JOBSAGA,
        *(["-" + "v" * verbose] if verbose else []),
        "worker",
        *(["--app", app_spec] if app_spec else []),
        "--url",
        db_url,
        "--poll-interval",
        "0.05",
        *options,
    ]


@contextmanager
def worker_process(
    app_spec: str | None, db_url: str, tmp_path: Path, *options: str, verbose: int = 0
) -> Iterator[Worker]:
    """``jobsaga [-v...] worker --app APP_SPEC --url DB_URL --poll-interval 0.05 OPTIONS``;
    killed on the way out if still running."""
    log_file = tmp_path / "performs.log"
    log_file.touch()
    env = worker_env(log_file)
    command = worker_command(app_spec, db_url, *options, verbose=verbose)
    process = subprocess.Popen(
        command, env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    try:
        yield Worker(process, log_file)
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(10)
