"""The CLI's one table and time format: sized to content, cut with an ellipsis, plain when
piped, and relative times that read the way people say them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import click
import pytest
from click.testing import CliRunner

from jobsaga.cli import tables
from jobsaga.cli.tables import Column, echo_table, relative, render_table, styled, when

NOW = datetime(2026, 11, 30, 12, 0, 0, tzinfo=UTC)


def test_columns_are_sized_to_their_content_and_long_text_is_cut() -> None:
    out = render_table(
        [Column("ID", "right"), Column("QUEUE"), Column("ERROR", max_width=10)],
        [[7, "a-queue-name-longer-than-twenty-characters", "x" * 50], [123, "q", None]],
    )
    lines = out.splitlines()
    assert lines[0].split() == ["ID", "QUEUE", "ERROR"]
    # the long queue name is whole: its column grew to hold it
    assert "a-queue-name-longer-than-twenty-characters" in lines[1]
    assert lines[1].endswith("x" * 9 + "…")
    assert lines[2] == "123  q"
    assert all(line == line.rstrip() for line in lines)


def test_piped_output_is_plain_text_without_escape_codes() -> None:
    @click.command()
    def show() -> None:
        echo_table([Column("STATE")], [[styled("completed", "green")]], total=5)

    result = CliRunner().invoke(show)
    assert result.exit_code == 0
    assert "\x1b[" not in result.output
    assert result.output.splitlines() == ["STATE", "completed", "showing 1 of 5 (--limit)"]


def test_a_narrow_terminal_shrinks_only_capped_columns(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tables, "on_terminal", lambda err=False: True)
    monkeypatch.setenv("NO_COLOR", "1")
    monkeypatch.setenv("COLUMNS", "40")
    out = render_table(
        [Column("ID", "right"), Column("STATE"), Column("ERROR", max_width=200)],
        [[1, "retryable", "boom " * 30]],
    )
    row = out.splitlines()[1]
    assert row.startswith(" 1  retryable  boom")
    assert row.endswith("…")
    assert len(row) <= 40
    assert "\x1b[" not in out  # NO_COLOR is respected on a terminal


@pytest.mark.parametrize(
    ("delta", "expected"),
    [
        (timedelta(0), "now"),
        (timedelta(seconds=-12), "12 s ago"),
        (timedelta(minutes=-3, seconds=-20), "3 min ago"),
        (timedelta(hours=2, minutes=5), "in 2 h"),
        (timedelta(days=-4), "4 d ago"),
    ],
)
def test_relative_times(delta: timedelta, expected: str) -> None:
    assert relative(NOW + delta, NOW) == expected


def test_a_time_cell_gives_the_clock_and_the_distance() -> None:
    naive = datetime(2026, 11, 30, 11, 57, 0)  # engines hand back naive UTC on SQLite
    assert when(naive, NOW) == "2026-11-30 11:57:00 (3 min ago)"
    assert when(None, NOW) == ""


def test_a_state_has_one_colour_everywhere_and_none_when_piped(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert str(tables.state_cell("discarded")) == "discarded"
    assert tables.paint("completed", "green") == "completed"  # not a terminal
    monkeypatch.delenv("NO_COLOR", raising=False)
    monkeypatch.setattr(tables, "on_terminal", lambda err=False: True)
    assert tables.state_cell("discarded").style == "red"
    assert tables.paint("completed", tables.STATE_STYLES["completed"]) == (
        "\x1b[32mcompleted\x1b[0m"
    )
    monkeypatch.setenv("NO_COLOR", "1")
    assert tables.paint("completed", "green") == "completed"


def test_a_narrow_terminal_keeps_only_how_far_a_time_is(monkeypatch: pytest.MonkeyPatch) -> None:
    """The clock part of a time gives its room to the names a reader looks for; piped, and
    on a terminal wide enough, the whole time stays."""
    columns = [Column("WORKER", max_width=80), Column(tables.time_header("WHEN"))]
    rows = [["shopproject.billing.workers.SendReceiptEmail", when(NOW.replace(minute=3), NOW)]]
    assert "2026-11-30 12:03:00 (in 3 min)" in render_table(columns, rows)  # piped
    monkeypatch.setattr(tables, "on_terminal", lambda err=False: True)
    monkeypatch.setenv("NO_COLOR", "1")
    monkeypatch.setenv("COLUMNS", "60")
    narrow = render_table(columns, rows).splitlines()[1]
    assert narrow.split() == ["shopproject.billing.workers.SendReceiptEmail", "in", "3", "min"]
    monkeypatch.setenv("COLUMNS", "200")
    assert "2026-11-30 12:03:00 (in 3 min)" in render_table(columns, rows)
