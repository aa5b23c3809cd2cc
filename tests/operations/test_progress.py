"""The progress bar of long commands: on stderr when it is a terminal, nothing when piped."""

from __future__ import annotations

import click
import pytest
from click.testing import CliRunner

from jobsaga.cli import progress as progress_module
from jobsaga.cli.progress import progress


@click.command()
@click.argument("total", type=int)
def work(total: int) -> None:
    with progress("pruning", total=total) as advance:
        for _ in range(total):
            advance(1)
    click.echo("pruned")


def test_piped_there_is_no_bar_at_all() -> None:
    result = CliRunner().invoke(work, ["5"])
    assert (result.exit_code, result.stdout, result.stderr) == (0, "pruned\n", "")


def test_on_a_terminal_the_bar_goes_to_stderr(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(progress_module, "on_terminal", lambda err=False: err)
    result = CliRunner().invoke(work, ["5"])
    assert result.exit_code == 0 and result.stdout == "pruned\n"  # output stays clean
    assert "pruning" in result.stderr and "5/5" in result.stderr
    nothing = CliRunner().invoke(work, ["0"])
    assert nothing.stderr == ""  # nothing to do: no bar
