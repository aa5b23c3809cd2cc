"""The ``jobsaga`` command. Each command group lives in its own module and is added here."""

from __future__ import annotations

import logging
import time
from typing import Any

import click

from .cron import cron_commands
from .demo import demo_commands
from .jobs import jobs_commands
from .queues import queues_commands
from .redacting import redact_logs, redacted_errors
from .runs import runs_commands
from .runs_resume import runs_resume_commands
from .web import web_commands
from .worker import worker_commands

LOG_FORMAT = "%(asctime)s.%(msecs)03dZ %(levelname)s %(name)s: %(message)s"
LOG_DATE_FORMAT = "%Y-%m-%d %H:%M:%S"
"""Log lines carry UTC times marked ``Z``: the tables say UTC, so a log line and a table row
about the same job show the same clock, whatever the machine's time zone."""

COMMAND_MODULES = [
    worker_commands,
    jobs_commands,
    queues_commands,
    demo_commands,
    runs_commands,
    runs_resume_commands,  # adds to the runs group
    cron_commands,
    web_commands,
]


class JobsagaGroup(click.Group):
    """The root command: whatever a command ends with is shown without database passwords."""

    def invoke(self, ctx: click.Context) -> Any:
        with redacted_errors(ctx):
            return super().invoke(ctx)


@click.group(cls=JobsagaGroup)
@click.option("-v", "--verbose", count=True, help="More logging (-v info, -vv debug).")
@click.pass_context
def cli(ctx: click.Context, verbose: int) -> None:
    """jobsaga: persistent jobs and saga workflows."""
    root = logging.getLogger()
    if not root.handlers:  # as logging.basicConfig: a host that configured logging keeps it
        handler = logging.StreamHandler()
        handler.setFormatter(UtcFormatter(LOG_FORMAT, LOG_DATE_FORMAT))
        root.addHandler(handler)
        root.setLevel(logging.WARNING - 10 * min(verbose, 2))
    redact_logs(ctx)


class UtcFormatter(logging.Formatter):
    """Log times in UTC, as every table's times are."""

    def converter(self, seconds: float | None) -> time.struct_time:  # type: ignore[override]
        return time.gmtime(seconds)


for register in COMMAND_MODULES:
    register(cli)


def main() -> None:
    cli(prog_name="jobsaga")


if __name__ == "__main__":
    main()
