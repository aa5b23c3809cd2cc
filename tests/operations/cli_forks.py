"""Run ``python -m jobsaga.cli.main ARGS`` many times without paying its start-up each time.

``python -m tests.operations.cli_forks`` imports jobsaga's CLI once, then serves requests, one
JSON line each on stdin: ``{"args": [...], "env": {...}, "cwd": "...", "out": path, "err":
path}``. For each it forks a process of its own, which takes the request's environment and
folder, writes its stdout and stderr (file descriptors 1 and 2) to the two files and runs the
module as ``python -m`` would, exit code and uncaught errors included; the server replies
with one line, the exit code.

A command so run is the real CLI in a process of its own, as an operator runs it: only the
interpreter's start and jobsaga's imports (about 0.5 s of CPU a command) are done once
instead of every time. Nothing a command does depends on them: the URL, the environment and
the logging set-up are all the command's own.
"""

from __future__ import annotations

import atexit
import json
import os
import runpy
import signal
import sys
import threading
from typing import Any

import jobsaga.cli.main  # noqa: F401  (imported once, for every fork)

TIMEOUT = 60
"""Seconds a command may run before SIGALRM ends it (subprocess.run's timeout, as before)."""


def run(request: dict[str, Any]) -> None:
    """In the forked process: become the command, then exit with its code."""
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    for fd, path in ((1, request["out"]), (2, request["err"])):
        os.dup2(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), fd)
    os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update(request["env"])
    sys.argv = [jobsaga.cli.main.__file__, *request["args"]]
    signal.alarm(TIMEOUT)
    # ``python -m`` runs the module as __main__ without it ever being imported by its name
    del sys.modules["jobsaga.cli.main"]
    code = 0
    try:
        runpy.run_module("jobsaga.cli.main", run_name="__main__", alter_sys=True)
    except SystemExit as exc:  # as the interpreter exits on it
        if exc.code is None:
            code = 0
        elif isinstance(exc.code, int):
            code = exc.code
        else:
            print(exc.code, file=sys.stderr)
            code = 1
    except BaseException:
        sys.excepthook(*sys.exc_info())
        code = 1
    threading._shutdown()  # type: ignore[attr-defined]  # joins the command's threads, as at exit
    atexit._run_exitfuncs()  # logging's shutdown among them, as at a normal exit
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def main() -> None:
    for line in sys.stdin:
        request = json.loads(line)
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:
            try:
                run(request)
            finally:
                os._exit(70)
        _, status = os.waitpid(pid, 0)
        print(os.waitstatus_to_exitcode(status), flush=True)


if __name__ == "__main__":
    main()
