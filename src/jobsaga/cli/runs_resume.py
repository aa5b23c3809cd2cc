"""``jobsaga runs resume RUN``: set a halted saga run going again, with new inputs.

Added to the ``runs`` group (``cli/runs.py``) from ``cli/main.py``; the work is
:func:`jobsaga.workflow.resuming.resume_run`.
"""

from __future__ import annotations

import json
from typing import Any

import click

from ..errors import ArgsError, RunStateError
from ..workflow.resuming import resume_run
from .configured import AppSource
from .options import config_options

INPUT_HELP = (
    "An input for the resumed run as KEY=VALUE; repeatable. The value is read as JSON when it "
    'parses as JSON (true, 3, null, "text", [1,2], {...}), else taken as text: --input '
    'approved=true gives true, --input note=ok gives "ok".'
)


def parse_inputs(pairs: tuple[str, ...], inputs_json: str | None) -> dict[str, Any]:
    """The inputs ``--inputs JSON`` and ``--input KEY=VALUE`` give (the pairs win)."""
    inputs: dict[str, Any] = {}
    if inputs_json is not None:
        try:
            parsed = json.loads(inputs_json)
        except json.JSONDecodeError as exc:
            raise click.BadParameter(f"not JSON: {exc}", param_hint="--inputs") from None
        if not isinstance(parsed, dict):
            raise click.BadParameter(
                f"must be a JSON object, got {type(parsed).__name__}", param_hint="--inputs"
            )
        inputs.update(parsed)
    for pair in pairs:
        key, sep, text = pair.partition("=")
        key = key.strip()
        if not sep or not key:
            raise click.BadParameter(f"use KEY=VALUE, got {pair!r}", param_hint="--input")
        inputs[key] = json_or_text(text)
    return inputs


def json_or_text(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def runs_resume_commands(cli: click.Group) -> None:
    runs = cli.commands["runs"]  # registered before this (cli/main.py)
    assert isinstance(runs, click.Group)

    @runs.command("resume")
    @config_options
    @click.argument("run_id", type=int)
    @click.option("--input", "pairs", multiple=True, metavar="KEY=VALUE", help=INPUT_HELP)
    @click.option(
        "--inputs",
        "inputs_json",
        default=None,
        metavar="JSON",
        help="Inputs as one JSON object; --input pairs override its keys.",
    )
    @click.option("--reason", default=None, help="Why, recorded in the run log.")
    def resume_command(
        source: AppSource,
        run_id: int,
        pairs: tuple[str, ...],
        inputs_json: str | None,
        reason: str | None,
    ) -> None:
        """Resume a halted run: merge the inputs into its job's args and make the job
        available now. Its next attempt resumes the run; the steps it recorded do not run
        again (the halted step's result is its halt value).

        With the app (--app, or app in the config) the inputs are validated as an insert
        validates args; without it they are only checked to be JSON."""
        inputs = parse_inputs(pairs, inputs_json)
        with source.open() as app:
            try:
                done = resume_run(app, run_id, inputs, reason=reason)
            except (RunStateError, ArgsError) as exc:
                raise click.ClickException(str(exc)) from None
        given = ", ".join(done.inputs) if done.inputs else "unchanged"
        note = "" if done.validated or not done.inputs else "; not validated: give --app"
        click.echo(
            f"run {done.run_id}: resumed; job {done.job_id} is available again "
            f"(inputs: {given}{note})"
        )
