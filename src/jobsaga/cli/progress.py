"""Progress of a long command (a bulk cancel, retry or delete of thousands of jobs, a prune).

A bar is for a person waiting at a terminal: it goes to stderr, and only when stderr is a
terminal, so a command's output piped into a file or another program is the same with or
without it (nothing is written, not even a blank line). ``NO_COLOR`` turns its colours off,
not the bar. The bar is drawn by rich and cleared when the work ends, leaving the command's
own summary line as the record of what was done.

Any command can use it::

    with progress("pruning", total=found) as advance:
        for batch in batches:
            ...                     # commit the batch first
            advance(len(batch))     # then count it: the bar never runs ahead of the database
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from .tables import on_terminal

Advance = Callable[[int], None]
"""Count ``n`` more units of work done."""


def _ignore(done: int) -> None:
    return None


def progress_wanted() -> bool:
    """Whether a bar would be seen: stderr is a terminal (a pipe or a file gets nothing)."""
    return on_terminal(err=True)


@contextmanager
def progress(description: str, total: int | None, *, transient: bool = True) -> Iterator[Advance]:
    """A bar of ``total`` units (None: unknown, a spinner-like bar that counts up) named
    ``description``, on stderr when it is a terminal; yields the function that advances it.
    Off a terminal, or with nothing to do (``total`` 0), it yields a function that does
    nothing, so the caller's code is the same either way. ``transient`` clears the bar at
    the end (the command prints its own summary); pass False to leave it on screen."""
    if not progress_wanted() or total == 0:
        yield _ignore
        return
    console = Console(
        stderr=True,
        force_terminal=True,  # on_terminal said yes: rich need not guess again
        no_color=bool(os.environ.get("NO_COLOR")),
        highlight=False,
    )
    bar = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=transient,
    )
    with bar:
        task = bar.add_task(description, total=total)

        def advance(done: int) -> None:
            bar.advance(task, done)

        yield advance
