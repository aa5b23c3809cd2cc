"""``jobsaga runs ...`` and ``jobsaga workflow graph``: read the saga run log from a terminal.

``runs show`` answers "what happened in this failed saga?": each step's outcome laid out
along the DAG, the error that started the rollback, and the compensation and undo trail in
the order it happened.
"""

from __future__ import annotations

import importlib
import json
from datetime import datetime
from typing import Any

import click

from ..app import App
from ..errors import RunStateError
from ..workflow import Workflow, get_run, list_runs, roll_back_run
from ..workflow.graph import dag_mermaid, dag_order
from ..workflow.records import RunRecord, RunStatus
from ..workflow.running import known_workflows
from .configured import AppSource
from .options import NO_LIMIT, config_options, limit_option

STATUS_CHOICES = [s.value for s in RunStatus]
MARKS = {
    "succeeded": "ok",
    "compensated": "ok (compensated)",
    "skipped": "skipped",
    "failed": "FAILED",
    "undone": "undone",
    "undo_failed": "UNDO FAILED",
    "pending": "not started",
    "running": "running",
    "retried": "waiting to retry",
}


def registered_workflow(app: App, name: str) -> type[Workflow] | None:
    """The workflow the app registered under ``name`` (its stable name, as a run row holds it).

    What a database row names is only ever looked up here, never imported: importing runs a
    module's top-level code, and the row may have been written by anyone with access to the
    database (a run named ``this.Zen`` printed the Zen of Python)."""
    return known_workflows(app).get(name)


def find_workflow(app: App, name: str) -> type[Workflow] | None:
    """A workflow the operator named: by stable name among the app's workflows and workflow
    workers (or its class name), else imported (``package.module:Class`` or
    ``package.module.Class``). Only for names typed on the command line, never for names
    read from the database (:func:`registered_workflow`)."""
    known = known_workflows(app)
    if name in known:
        return known[name]
    for candidate in known.values():
        if candidate.__qualname__ == name:
            return candidate
    module_name, sep, attr = name.partition(":")
    if not sep:
        module_name, _, attr = name.rpartition(".")
    if not module_name:
        return None
    try:
        found = getattr(importlib.import_module(module_name), attr, None)
    except ImportError:
        return None
    if isinstance(found, type) and issubclass(found, Workflow) and found.graph is not None:
        return found
    return None


def typed_workflow(spec: str, run: RunRecord) -> type[Workflow]:
    """``--workflow module:Class``: the operator's own word for which class drew this run."""
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise click.BadParameter(f"{spec!r}: use module:Class", param_hint="--workflow")
    try:
        found = getattr(importlib.import_module(module_name), attr, None)
    except ImportError as exc:
        raise click.BadParameter(
            f"cannot import {module_name!r}: {exc}", param_hint="--workflow"
        ) from exc
    if not (isinstance(found, type) and issubclass(found, Workflow) and found.graph is not None):
        raise click.BadParameter(f"{spec!r} is not a Workflow class", param_hint="--workflow")
    if found.name != run.workflow:
        raise click.ClickException(
            f"--workflow {spec} is the workflow {found.name!r}, but run {run.id} is a "
            f"{run.workflow!r} run"
        )
    return found


def _when(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S") if value is not None else "-"


def _took(start: datetime | None, end: datetime | None) -> str:
    if start is None or end is None:
        return "-"
    return f"{(end - start).total_seconds():.3f}s"


def _brief(detail: dict[str, Any] | None) -> str:
    if not detail:
        return ""
    parts = []
    for key, value in detail.items():
        if isinstance(value, dict) and "type" in value:
            value = f"{str(value['type']).rsplit('.', 1)[-1]}: {value.get('message', '')}"
        parts.append(f"{key}={value}")
    return "  " + ", ".join(parts)


def show_run(run: RunRecord, workflow: type[Workflow] | None) -> list[str]:
    lines = [
        f"run {run.id}  {run.workflow}  status={run.status}",
        f"  job {run.job_id if run.job_id is not None else '-'}  attempt {run.attempt}  "
        f"started {_when(run.started_at)}  finished {_when(run.finished_at)}  "
        f"took {_took(run.started_at, run.finished_at)}",
        f"  inputs {json.dumps(run.inputs)}",
    ]
    if run.context is not None:
        lines.append(f"  context {json.dumps(run.context)}")
    lines.append("")
    lines.append("steps (along the DAG):")
    records = {s.step: s for s in run.steps}
    deps: dict[str, list[str]] = dict(run.dag or {})
    order = dag_order(deps, {s.step: s.position for s in run.steps}) if deps else list(records)
    order = [n for n in order if n in records] + [n for n in records if n not in order]
    width = max((len(n) for n in order), default=4)
    for name in order:
        record = records[name]
        mark = MARKS.get(record.status, record.status)
        after = f"  <- {', '.join(deps[name])}" if deps.get(name) else ""
        tries = f"  tries={record.tries}" if record.tries > 1 else ""
        undo = f"  undo_tries={record.undo_tries}" if record.undo_tries > 1 else ""
        lines.append(f"  {name:<{width}}  {mark}{tries}{undo}{after}")
        if record.status in ("succeeded", "compensated", "undone") and record.result is not None:
            lines.append(f"  {'':<{width}}    result {json.dumps(record.result)[:200]}")
        if record.error:
            lines.append(
                f"  {'':<{width}}    error {record.error.get('type')}: {record.error.get('message')}"
            )
    if run.error:
        lines.append("")
        lines.append(
            f"rollback started by step {run.error.get('step')!r}: "
            f"{run.error.get('type')}: {run.error.get('message')}"
        )
        tb = str(run.error.get("traceback") or "").rstrip()
        if tb:
            lines.append("    " + tb.replace("\n", "\n    "))
        for failure in run.error.get("undo_errors", []):
            lines.append(
                f"undo of {failure['step']!r} failed: {failure['type']}: {failure['message']}"
            )
    trail = [
        e
        for e in run.events
        if e.kind.startswith(("step.compensate", "step.undo", "step.failed", "step.retried"))
        or e.kind.startswith("run.")
    ]
    if trail:
        lines.append("")
        lines.append("trail (in order):")
        for event in trail:
            who = f" {event.step}" if event.step else ""
            lines.append(
                f"  #{event.seq} {_when(event.at)} attempt {event.attempt}  "
                f"{event.kind}{who}{_brief(event.detail)}"
            )
    lines.append("")
    lines.append("mermaid:")
    graph = workflow.graph if workflow is not None else None
    if graph is not None and set(graph.order) == set(records):
        lines.append(graph.mermaid(run.statuses()).rstrip())  # with inputs and wait_for edges
        return lines
    if workflow is None:
        lines.append(
            f"%% workflow {run.workflow!r} is not registered with the app: the chart is drawn "
            "from the run log, without its inputs (give --app, or --workflow module:Class, "
            "for the workflow's own chart)"
        )
    lines.append(dag_mermaid(deps, order, run.statuses()).rstrip())
    return lines


def runs_commands(cli: click.Group) -> None:
    @cli.group()
    def runs() -> None:
        """Inspect saga runs (the workflow run log)."""

    @runs.command("list")
    @config_options
    @click.option(
        "--status",
        "statuses",
        multiple=True,
        type=click.Choice(STATUS_CHOICES),
        help="Filter by status; repeatable. 'failed' means every failed ending "
        "(failed, rolled_back, rollback_failed).",
    )
    @click.option("--workflow", default=None, help="Filter by workflow name.")
    @click.option("--job", "job_id", type=int, default=None, help="Filter by job id.")
    @limit_option
    def list_command(
        source: AppSource,
        statuses: tuple[str, ...],
        workflow: str | None,
        job_id: int | None,
        limit: int,
    ) -> None:
        """List runs, newest first."""
        with source.open() as app:
            found = list_runs(
                app,
                status=statuses or None,
                workflow=workflow,
                job_id=job_id,
                limit=None if limit == NO_LIMIT else limit,
            )
        if not found:
            click.echo("no runs")
            return
        click.echo(f"{'id':>6}  {'status':<15}  {'job':>6}  {'att':>3}  {'started':<19}  workflow")
        for run in found:
            job = str(run.job_id) if run.job_id is not None else "-"
            click.echo(
                f"{run.id:>6}  {run.status:<15}  {job:>6}  {run.attempt:>3}  "
                f"{_when(run.started_at):<19}  {run.workflow}"
            )
            if run.error:
                click.echo(
                    f"{'':>8}failed at {run.error.get('step')!r}: "
                    f"{str(run.error.get('type')).rsplit('.', 1)[-1]}: {run.error.get('message')}"
                )

    @runs.command("show")
    @config_options
    @click.argument("run_id", type=int)
    @click.option(
        "--workflow",
        "workflow_spec",
        default=None,
        metavar="MODULE:CLASS",
        help="The run's workflow class, imported for its full chart when the app does not "
        "register it. The workflow name stored in the run is never imported.",
    )
    def show_command(source: AppSource, run_id: int, workflow_spec: str | None) -> None:
        """Show one run: the DAG with each step's outcome, the error, the undo trail."""
        with source.open() as app:
            run = get_run(app, run_id)
            if run is None:
                raise click.ClickException(f"no run {run_id}")
            workflow = (
                typed_workflow(workflow_spec, run)
                if workflow_spec is not None
                else registered_workflow(app, run.workflow)
            )
            click.echo("\n".join(show_run(run, workflow)))

    @runs.command("rollback")
    @config_options
    @click.argument("run_id", type=int)
    @click.option("--reason", default="rolled back by an operator", show_default=True)
    @click.option(
        "--force",
        is_flag=True,
        help="Roll back even though the run's job is not finished (its next attempt would "
        "otherwise resume the run).",
    )
    def rollback_command(source: AppSource, run_id: int, reason: str, force: bool) -> None:
        """Undo the completed steps of an unfinished run nobody will resume, and end it.

        Needs the app (--app, or app in the config): the undo code lives in your workflow
        classes."""
        with source.open() as app:
            try:
                result = roll_back_run(app, run_id, reason=reason, force=force)
            except RunStateError as exc:
                raise click.ClickException(str(exc)) from None
        error = result.error
        assert error is not None
        undone = ", ".join(error.undone) or "nothing"
        click.echo(f"run {run_id}: {result.status.value}; undone: {undone}")
        for failure in error.undo_errors:
            click.echo(f"  undo of {failure.step!r} failed: {failure.error}")
        if error.undo_errors:
            raise SystemExit(1)

    @cli.group("workflow")
    def workflow_group() -> None:
        """Look at workflow definitions."""

    @workflow_group.command("graph")
    @config_options
    @click.argument("name")
    def graph_command(source: AppSource, name: str) -> None:
        """Print a workflow's DAG as Mermaid text (NAME: its name among the app's workflows,
        or module:Class). Reads no database."""
        app = source.app()
        workflow = find_workflow(app, name)
        if workflow is None:
            known = sorted(known_workflows(app))
            raise click.ClickException(
                f"no workflow {name!r} (known to the app: {known or 'none'}; or give module:Class)"
            )
        click.echo(workflow.mermaid(), nl=False)
