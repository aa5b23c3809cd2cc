"""Tables and times as every ``jobsaga`` command prints them.

One module so that ``jobs list``, ``queues``, ``cron list`` and ``runs list`` look alike: columns
sized to their content, long text cut with an ellipsis at a column's cap (never a broken row),
a "showing 50 of 60 (--limit)" line when rows were left out, and times in one format, UTC, said
once in the column header, with a relative part ("3 min ago", "in 2 h").

Colour and box lines are for people: on a terminal (unless ``NO_COLOR`` is set) the header is
bold and cells may carry a style; piped, the same table is plain text with no escape codes and
no width limit, so ``grep``/``awk`` see stable columns whatever the terminal's width.
"""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

import click
from rich.console import Console
from rich.table import Table
from rich.text import Text

TIME_ZONE = "UTC"
"""The zone every table's times are shown in; headers say it once (``WHEN (UTC)``)."""

PIPED_WIDTH = 10_000
"""Piped output has no terminal width to fit: a row is never wrapped or cut for lack of one."""

Cell = str | int | float | Text | None


@dataclass(frozen=True)
class Column:
    """One column: its header, which side numbers align to, and an optional cap in characters
    beyond which a cell is cut with an ellipsis (long errors, long worker names)."""

    header: str
    justify: Literal["left", "right"] = "left"
    max_width: int | None = None
    style: str | None = None


def on_terminal(err: bool = False) -> bool:
    """Whether the command's output goes to a person (a terminal) rather than a pipe or file."""
    stream = sys.stderr if err else sys.stdout
    return stream.isatty()


def colour_wanted(err: bool = False) -> bool:
    """Colour only on a terminal, and never when ``NO_COLOR`` is set (https://no-color.org)."""
    return on_terminal(err) and not os.environ.get("NO_COLOR")


def _console(err: bool = False) -> Console:
    colour = colour_wanted(err)
    return Console(
        file=io.StringIO(),
        width=PIPED_WIDTH,  # widths are chosen here, not by rich (which drops whole columns)
        force_terminal=colour,
        color_system="standard" if colour else None,
        no_color=not colour,
        highlight=False,
        emoji=False,
        markup=False,
        soft_wrap=False,
    )


def render_table(columns: Sequence[Column], rows: Iterable[Sequence[Cell]]) -> str:
    """The table as text, lines right-stripped (no trailing blanks for a pipe to carry)."""
    cells = [[_cell(value) for value in row] for row in rows]
    widths = _widths(columns, cells)
    if on_terminal():
        room = shutil.get_terminal_size().columns
        if sum(widths) + 2 * (len(widths) - 1) > room:
            # a narrow terminal: a time keeps how far it is ("3 min ago"), and its clock part
            # leaves its room to the names and errors a reader looks for
            cells = [[_relative_only(cell) for cell in row] for row in cells]
            widths = _widths(columns, cells)
        _fit(columns, widths, room)
    colour = colour_wanted()
    table = Table(
        box=None,
        pad_edge=False,
        padding=(0, 2, 0, 0),
        header_style="bold" if colour else "",
    )
    for column, width in zip(columns, widths, strict=True):
        table.add_column(
            column.header,
            justify=column.justify,
            width=width,
            overflow="ellipsis",
            no_wrap=True,
            style=column.style if colour else None,
        )
    for row in cells:
        table.add_row(*row)
    console = _console()
    console.print(table)
    rendered = console.file.getvalue()  # type: ignore[attr-defined]
    return "\n".join(line.rstrip() for line in str(rendered).splitlines())


def _widths(columns: Sequence[Column], cells: Sequence[Sequence[str | Text]]) -> list[int]:
    """Each column as wide as its widest cell or header, capped at the column's cap."""
    widths = []
    for index, column in enumerate(columns):
        widest = max([len(column.header)] + [len(row[index]) for row in cells])
        widths.append(min(widest, column.max_width) if column.max_width else widest)
    return widths


def _fit(columns: Sequence[Column], widths: list[int], room: int) -> None:
    """Narrow the capped columns (errors, names), widest first, until the row fits ``room``;
    an id or a state keeps its width, and a table that cannot fit is left wider than the
    terminal rather than losing a column."""
    floor = {i: max(len(c.header), 8) for i, c in enumerate(columns) if c.max_width}
    excess = sum(widths) + 2 * (len(widths) - 1) - room
    while excess > 0:
        shrinkable = [i for i in floor if widths[i] > floor[i]]
        if not shrinkable:
            return
        widest = max(shrinkable, key=lambda i: widths[i])
        widths[widest] -= 1
        excess -= 1


TIME_CELL = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d \(([^)]*)\)$")
"""A cell :func:`when` wrote: the clock time, then how far it is in brackets."""


def _relative_only(cell: str | Text) -> str | Text:
    if isinstance(cell, str) and (found := TIME_CELL.match(cell)):
        return found.group(1)
    return cell


def _cell(value: Cell) -> str | Text:
    if value is None:
        return ""
    if isinstance(value, Text):
        return value
    return str(value)


def echo_table(
    columns: Sequence[Column],
    rows: Sequence[Sequence[Cell]],
    *,
    total: int | None = None,
    limit_option: str = "--limit",
) -> None:
    """Print the table, and say how many rows were left out when ``total`` is more than shown
    (the option that shows more is named, so the reader knows what to change)."""
    click.echo(render_table(columns, rows), color=colour_wanted())
    note = left_out(len(rows), total, limit_option)
    if note:
        click.echo(note)


def echo_json_lines(
    documents: Sequence[Mapping[str, Any]], *, total: int | None, limit_option: str = "--limit"
) -> None:
    """A ``--json`` list: one compact document per line on stdout, and on stderr how many
    were left out, if any (stdout stays documents only, for ``jq`` and the like)."""
    for document in documents:
        click.echo(json.dumps(document))
    note = left_out(len(documents), total, limit_option)
    if note:
        click.echo(note, err=True)


def left_out(shown: int, total: int | None, limit_option: str = "--limit") -> str | None:
    """``showing 50 of 60 (--limit)`` when rows were left out, else None. A ``--json`` list
    prints it on stderr, so the documents on stdout stay one per line and nothing else."""
    if total is None or total <= shown:
        return None
    return f"showing {shown} of {total} ({limit_option})"


def styled(text: str, style: str | None) -> Text:
    """A cell with a style (a state's colour), plain when colour is off."""
    return Text(text, style=style or "") if colour_wanted() else Text(text)


def clock(moment: datetime | None) -> str:
    """A moment as ``2026-11-30 06:41:05`` in :data:`TIME_ZONE` (naive times are taken as UTC,
    which is how the engines store them)."""
    if moment is None:
        return ""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")


def relative(moment: datetime | None, now: datetime) -> str:
    """How far ``moment`` is from ``now`` in the largest whole unit: ``12 s ago``, ``3 min ago``,
    ``in 2 h``, ``4 d ago``; ``now`` within a second."""
    if moment is None:
        return ""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    if now.tzinfo is None:
        now = now.replace(tzinfo=UTC)
    seconds = (moment - now).total_seconds()
    distance = abs(seconds)
    if distance < 1:
        return "now"
    for unit, size in (("d", 86_400), ("h", 3_600), ("min", 60), ("s", 1)):
        if distance >= size:
            amount = f"{int(distance // size)} {unit}"
            break
    return f"in {amount}" if seconds > 0 else f"{amount} ago"


def when(moment: datetime | None, now: datetime) -> str:
    """A time cell: the clock time and how far it is, ``2026-11-30 06:41:05 (3 min ago)``."""
    if moment is None:
        return ""
    return f"{clock(moment)} ({relative(moment, now)})"


def time_header(name: str) -> str:
    """A time column's header names the zone once: ``WHEN (UTC)``."""
    return f"{name} ({TIME_ZONE})"


STATE_STYLES: dict[str, str] = {
    "available": "cyan",
    "scheduled": "blue",
    "executing": "yellow",
    "retryable": "magenta",
    "completed": "green",
    "discarded": "red",
    "cancelled": "dim",
}
"""A job state's colour, the same in every table: red for what failed for good, green for
done, yellow for running now; a state not listed here is shown plain."""


def state_cell(state: str) -> Text:
    """A job state as a cell, in its colour on a terminal (plain when piped or NO_COLOR)."""
    return styled(state, STATE_STYLES.get(state))


def paint(text: str, style: str | None) -> str:
    """``text`` in ``style`` for a line that is not a table (``state=completed`` in green):
    escape codes on a colour terminal, the text unchanged when piped or NO_COLOR."""
    if not style or not colour_wanted():
        return text
    console = _console()
    console.print(Text(text, style=style), end="")
    return str(console.file.getvalue())  # type: ignore[attr-defined]
