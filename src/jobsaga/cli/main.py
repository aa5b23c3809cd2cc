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
    cron_commands,
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
    level = logging.WARNING - 10 * min(verbose, 2)
    logging.basicConfig(level=level, format=LOG_FORMAT, datefmt=LOG_DATE_FORMAT)
    for handler in logging.getLogger().handlers:
        if handler.formatter is not None and handler.formatter._fmt == LOG_FORMAT:
            handler.formatter.converter = time.gmtime  # UTC, as every table's times are
    redact_logs(ctx)


for register in COMMAND_MODULES:
    register(cli)


def main() -> None:
    cli(prog_name="jobsaga")


if __name__ == "__main__":
    main()
