"""Real ``jobsaga worker`` processes for chaos scenarios: start, SIGKILL, SIGTERM, inspect.

Each node is the installed CLI (``.venv/bin/jobsaga worker --app tests.chaos.chaos_app:app``)
with short timings passed as flags and ``--set`` keys (see docs/configuration.md), so a
rescue takes about a second instead of a minute. Its stderr (the node's log) goes to a file,
never a pipe nobody reads (a node logging through a server outage would block on a full pipe).

Usage::

    nodes = Nodes(url, tmp_path)                  # or the ``nodes`` fixture (stops all after)
    nodes.start("a", {"work": 20})                # waits until its heartbeat row exists
    nodes.start("b", {"work": 20}, rescue_after=30, settings={"ack_batch": 50})
    nodes.start_together(["c", "d"], {"work": 20})  # both start at once, then both beat
    nodes.kill9("a")                              # SIGKILL, reaped
    code = nodes.stop("b")                        # SIGTERM, waits, returns the exit code
    nodes.log("b")                                # its stderr so far
    read_log(nodes.chaos_log)                     # what jobs did (see chaos_app)
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg

ROOT = Path(__file__).resolve().parents[2]
JOBSAGA = str(Path(sys.executable).with_name("jobsaga"))
APP = "tests.chaos.chaos_app:app"

FAST = {
    "heartbeat": 0.2,
    "rescue_after": 1.5,
    "lease": 1.0,
    "poll": 0.1,
    "grace": 3.0,
}
"""Default timings: a dead node's jobs are rescued within about 2 s of its last beat."""


@dataclass
class NodeProc:
    name: str
    process: subprocess.Popen[bytes]
    log_path: Path
    started: float = field(default_factory=time.monotonic)

    @property
    def alive(self) -> bool:
        return self.process.poll() is None


class Nodes:
    """A group of worker processes on one database URL, sharing one chaos log file."""

    def __init__(
        self,
        url: str,
        folder: Path,
        *,
        app: str = APP,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.url = url
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        self.app = app
        self.chaos_log = folder / "chaos.log"
        self.chaos_log.touch()
        self.extra_env = dict(env or {})
        self.procs: dict[str, NodeProc] = {}

    def start(
        self,
        name: str,
        queues: Mapping[str, int],
        *,
        heartbeat: float = FAST["heartbeat"],
        rescue_after: float = FAST["rescue_after"],
        lease: float = FAST["lease"],
        poll: float = FAST["poll"],
        grace: float = FAST["grace"],
        settings: Mapping[str, Any] | None = None,
        env: Mapping[str, str] | None = None,
        wait: float | None = 30.0,
    ) -> NodeProc:
        """Start ``jobsaga worker`` as node ``name`` and wait until it has beaten once (up to
        ``wait`` seconds; None: do not wait, e.g. for a node meant to die at once)."""
        command = [
            JOBSAGA,
            "worker",
            "--app",
            self.app,
            "--url",
            self.url,
            "--name",
            name,
            "--grace-period",
            str(grace),
            "--poll-interval",
            str(poll),
            "--heartbeat-interval",
            str(heartbeat),
            "--rescue-after",
            str(rescue_after),
            "--leader-lease",
            str(lease),
        ]
        for queue, limit in queues.items():
            command += ["-q", f"{queue}={limit}"]
        for key, value in (settings or {}).items():
            command += ["--set", f"{key}={value}"]
        full_env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
            "PYTHONUNBUFFERED": "1",
            "JOBSAGA_CHAOS_LOG": str(self.chaos_log),
            **self.extra_env,
            **(env or {}),
        }
        for key in ("JOBSAGA_DATABASE_URL", "JOBSAGA_APP", "JOBSAGA_CONFIG"):
            full_env.pop(key, None)
        log_path = self.folder / f"node-{name}-{len(self.procs)}.log"
        with log_path.open("wb") as log:
            process = subprocess.Popen(
                command, cwd=self.folder, env=full_env, stdout=log, stderr=subprocess.STDOUT
            )
        node = NodeProc(name, process, log_path)
        self.procs[name] = node
        if wait is not None:
            self.wait_ready(node, wait)
        return node

    def start_together(
        self, names: Iterable[str], queues: Mapping[str, int], wait: float = 30.0, **options: Any
    ) -> list[NodeProc]:
        """Start several nodes alike (keywords as :meth:`start`) side by side, then wait until
        each has beaten: their start-ups overlap instead of adding up."""
        started = [self.start(name, queues, wait=None, **options) for name in names]
        for node in started:
            self.wait_ready(node, wait)
        return started

    def wait_ready(self, node: NodeProc, timeout: float) -> None:
        """Until the node's heartbeat row names this process (its pid in the row's meta)."""
        deadline = time.monotonic() + timeout
        while True:
            if not node.alive:
                raise AssertionError(f"node {node.name} exited at start:\n{self.log(node.name)}")
            if self._beating(node):
                return
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"node {node.name} not ready in {timeout}s:\n{self.log(node.name)}"
                )
            time.sleep(0.05)

    def _beating(self, node: NodeProc) -> bool:
        try:
            if self.url.startswith("sqlite"):
                path = self.url.removeprefix("sqlite:///")
                with contextlib.closing(sqlite3.connect(path, timeout=5)) as conn:
                    found = conn.execute(
                        "SELECT meta FROM jobsaga_nodes WHERE name = ?", (node.name,)
                    ).fetchall()
            else:
                with psycopg.connect(self.url, connect_timeout=3) as conn:
                    found = conn.execute(
                        "SELECT meta::text FROM jobsaga_nodes WHERE name = %s", (node.name,)
                    ).fetchall()
        except Exception:  # not migrated yet, locked, server restarting: not ready yet
            return False
        return any(json.loads(meta).get("pid") == node.process.pid for (meta,) in found)

    def kill9(self, name: str) -> None:
        """SIGKILL the node and reap it: no shutdown code runs."""
        process = self.procs[name].process
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(signal.SIGKILL)
        process.wait(10)

    def stop(self, name: str, timeout: float = 30.0) -> int:
        """SIGTERM (a graceful stop) and wait; SIGKILL past ``timeout`` (then an error)."""
        process = self.procs[name].process
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
        try:
            return process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)
            raise AssertionError(
                f"node {name} did not stop within {timeout}s of SIGTERM:\n{self.log(name)}"
            ) from None

    def log(self, name: str) -> str:
        """The node's output so far (its log lines, a traceback if it died)."""
        try:
            return self.procs[name].log_path.read_text(errors="replace")[-6000:]
        except FileNotFoundError:
            return ""

    def logs(self) -> str:
        """Every node's output so far, each under its name (for failure messages)."""
        return "\n".join(f"--- node {name} ---\n{self.log(name)}" for name in self.procs)

    def alive(self) -> list[str]:
        return [name for name, node in self.procs.items() if node.alive]

    def stop_all(self, timeout: float = 30.0) -> None:
        """SIGTERM every live node, then SIGKILL what is left after ``timeout``."""
        for node in self.procs.values():
            if node.alive:
                with contextlib.suppress(ProcessLookupError):
                    node.process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for node in self.procs.values():
            try:
                node.process.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                node.process.kill()
                node.process.wait(5)
