"""``jobsaga runs ...`` and ``jobsaga workflow graph``: read the saga run log from a terminal.

``runs show`` answers "what happened in this failed saga?": each step's outcome laid out
along the DAG, the error that started the rollback, and the compensation and undo trail in
the order it happened; for a composed saga, which run a child run belongs to and which child
runs a run has; for a halted run, which step halted it, with what, and how to resume it.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
from datetime import UTC, datetime
from typing import Any

import click

from ..app import App
from ..errors import RunStateError
from ..workflow import Workflow, get_run, list_runs, roll_back_run
from ..workflow.graph import dag_mermaid, dag_order
from ..workflow.inputs import known_workflows
from ..workflow.records import (
    ChildRun,
    FollowUpJob,
    RunRecord,
    RunStatus,
    count_runs,
    follow_up_jobs,
)
from .configured import AppSource
from .job_view import run_summary_json
from .loading import import_user_module, importable_project
from .options import NO_LIMIT, config_options, limit_option
from .run_links import child_of_text, halted_lines, parent_text
from .tables import (
    TIME_ZONE,
    Column,
    clock,
    echo_json_lines,
    echo_table,
    relative,
    render_table,
    styled,
    time_header,
    when,
)
from .trail import (
    NO_START_NOTE,
    NO_START_RECORDED,
    fold_traceback,
    render_trail,
    seconds,
    silent_attempts,
    step_outcome,
)

STATUS_CHOICES = [s.value for s in RunStatus]


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
    if not sep and not module_exists(module_name):
        return None  # a registered name with dots, not a module path
    module = import_user_module(module_name, "NAME")  # module:Class must import
    found = getattr(module, attr, None)
    if isinstance(found, type) and issubclass(found, Workflow) and found.graph is not None:
        return found
    if sep:  # the operator named a class: say what is wrong with it
        what = (
            f"module {module_name!r} has no attribute {attr!r}"
            if found is None
            else f"{name!r} is not a Workflow class (found {type(found).__name__})"
            if not isinstance(found, type)
            else f"{name!r} is not a Workflow class (found the class {found.__name__})"
        )
        raise click.BadParameter(what, param_hint="NAME")
    return None


def module_exists(module_name: str) -> bool:
    """Whether ``module_name`` names a module that could be imported (without importing it,
    beyond its parent packages)."""
    importable_project()
    try:
        return importlib.util.find_spec(module_name) is not None
    except (ImportError, ValueError):  # a parent package missing, or an empty name
        return False


def typed_workflow(spec: str, run: RunRecord) -> type[Workflow]:
    """``--workflow module:Class``: the operator's own word for which class drew this run."""
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise click.BadParameter(f"{spec!r}: use module:Class", param_hint="--workflow")
    found = getattr(import_user_module(module_name, "--workflow"), attr, None)
    if not (isinstance(found, type) and issubclass(found, Workflow) and found.graph is not None):
        raise click.BadParameter(f"{spec!r} is not a Workflow class", param_hint="--workflow")
    if found.name != run.workflow:
        raise click.ClickException(
            f"--workflow {spec} is the workflow {found.name!r}, but run {run.id} is a "
            f"{run.workflow!r} run"
        )
    return found


def _took(start: datetime | None, end: datetime | None) -> str:
    if start is None or end is None:
        return ""
    return seconds((end - start).total_seconds())


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def run_json(run: RunRecord) -> dict[str, Any]:
    """A run as ``runs list --json`` prints it (one compact document a line, as ``jobs list
    --json`` prints jobs)."""
    return {
        "id": run.id,
        "workflow": run.workflow,
        "job_id": run.job_id,
        "attempt": run.attempt,
        "status": run.status,
        "inputs": run.inputs,
        "context": run.context,
        "result": run.result,
        "error": run.error,
        "dag": run.dag,
        "started_at": _iso(run.started_at),
        "updated_at": _iso(run.updated_at),
        "finished_at": _iso(run.finished_at),
        "parent_run_id": run.parent_run_id,
        "parent_step": run.parent_step,
        "iteration": run.iteration,
    }


def child_json(child: ChildRun) -> dict[str, Any]:
    return {
        "id": child.id,
        "workflow": child.workflow,
        "status": child.status,
        "parent_step": child.parent_step,
        "iteration": child.iteration,
        "started_at": _iso(child.started_at),
        "finished_at": _iso(child.finished_at),
        "error": child.error,
    }


def run_show_json(
    run: RunRecord, job_runs: list[RunRecord], follow_ups: list[FollowUpJob]
) -> dict[str, Any]:
    """A run as ``runs show --json`` prints it (one indented document, as ``jobs show
    --json`` prints a job): the run, its steps (with ``outcome``, what the text says of
    each), its events, its job's runs (each as ``jobs show --json`` lists a job's runs) and
    the jobs it enqueued (with the names ``jobs show --json`` gives their fields)."""
    data = run_json(run)
    data["steps"] = [
        {
            "step": s.step,
            "position": s.position,
            "status": s.status,
            "outcome": step_outcome(run, s),
            "result": s.result,
            "error": s.error,
            "tries": s.tries,
            "undo_tries": s.undo_tries,
            "completed_seq": s.completed_seq,
            "enqueue": s.enqueue,
            "started_at": _iso(s.started_at),
            "finished_at": _iso(s.finished_at),
        }
        for s in run.steps
    ]
    data["events"] = [
        {
            "seq": e.seq,
            "at": _iso(e.at),
            "attempt": e.attempt,
            "step": e.step,
            "kind": e.kind,
            "detail": e.detail,
        }
        for e in run.events
    ]
    data["children"] = [child_json(c) for c in run.children]
    data["job_runs"] = [run_summary_json(r) for r in job_runs]  # as `jobs show --json` has them
    data["follow_ups"] = [
        {
            "id": j.id,
            "state": j.state,
            "queue": j.queue,
            "worker": j.worker,
            "attempt": j.attempt,
            "max_attempts": j.max_attempts,
            "scheduled_at": _iso(j.scheduled_at),
            "completed_at": _iso(j.completed_at),
        }
        for j in follow_ups
    ]
    return data


def _run_error_cell(error: dict[str, Any] | None) -> str:
    """A run's error in a table: where it started, and what; a run rolled back by an
    operator or with its parent says so rather than naming a step."""
    if not error:
        return ""
    step = str(error.get("step"))
    if step.startswith("(") and error.get("message"):
        return f"{step.strip('()')}: {error.get('message')}"
    return f"at {step!r}: {_error_text(error)}"


def _error_text(error: dict[str, Any]) -> str:
    return f"{str(error.get('type')).rsplit('.', 1)[-1]}: {error.get('message')}"


def show_run(
    run: RunRecord,
    workflow: type[Workflow] | None,
    *,
    job_runs: list[RunRecord] | None = None,
    follow_ups: list[FollowUpJob] | None = None,
    verbose: bool = False,
    graph: bool = False,
    now: datetime | None = None,
    same_database: str = "",
) -> list[str]:
    """``same_database``: the flags that name the database the run was read from
    (``--app``, ``--url``, ``--config``), so a hint's command reaches the same one."""
    now = now or datetime.now(UTC)
    job = f"job {run.job_id}" if run.job_id is not None else "no job (test entry point)"
    lines = [
        f"run {run.id}  {run.workflow}  {run.status}",
        f"  {job}, attempt {run.attempt}",
    ]
    if run.parent_step is not None:
        lines.append(f"  {child_of_text(run)}")
    lines += [
        f"  started {clock(run.started_at)} {TIME_ZONE} ({relative(run.started_at, now)})"
        + (
            f"  finished {clock(run.finished_at)}  took {_took(run.started_at, run.finished_at)}"
            if run.finished_at is not None
            else ""
        ),
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
    order, folded = place_part_steps(order, records, run, verbose)
    width = max((len(n) for n in order), default=4)
    unrecorded = False
    for name in order:
        record = records[name]
        mark = step_outcome(run, record)
        unrecorded = unrecorded or mark == NO_START_RECORDED
        after = f"  <- {', '.join(deps[name])}" if deps.get(name) else ""
        tries = f"  tries={record.tries}" if record.tries > 1 else ""
        undo = f"  undo_tries={record.undo_tries}" if record.undo_tries > 1 else ""
        lines.append(f"  {name:<{width}}  {mark}{tries}{undo}{after}")
        if record.status in ("succeeded", "compensated", "undone") and record.result is not None:
            lines.append(f"  {'':<{width}}    result {json.dumps(record.result)[:200]}")
        if record.error:
            lines.append(f"  {'':<{width}}    error {_error_text(record.error)}")
        if name in folded:
            lines.append(f"  {'':<{width}}    {folded[name]}")
    if unrecorded:
        silent = silent_attempts(run)
        live = run.status in (RunStatus.RUNNING.value, RunStatus.ROLLING_BACK.value)
        ended = [str(a) for a in silent if not (live and a == silent[-1])]
        parts = [f"attempt {', '.join(ended)} ended without a word"] if ended else []
        if live and silent:
            parts.append(f"attempt {silent[-1]} is still running, or died without a word")
        why = f" ({'; '.join(parts)})"
        lines.append("")
        lines.append(NO_START_NOTE.format(why=why))
    if run.error:
        lines.append("")
        step = str(run.error.get("step"))
        started = (
            f"rolled back ({step.strip('()')})"
            if step.startswith("(")
            else f"rollback started by step {step!r}"
        )
        lines.append(f"{started}: {_error_text(run.error)}")
        tb = str(run.error.get("traceback") or "")
        if tb.strip():
            lines.extend("    " + line for line in fold_traceback(tb, verbose))
        for failure in run.error.get("undo_errors", []):
            lines.append(f"undo of {failure['step']!r} failed: {_error_text(failure)}")
    if run.status == RunStatus.HALTED.value:
        lines.append("")
        lines.extend(halted_lines(run, same_database))
    if run.children:
        lines.append("")
        lines.append("child runs:")
        table = render_table(
            [
                Column("RUN", "right"),
                Column("STATUS"),
                Column("STEP", max_width=30),
                Column("ITERATION", "right"),
                Column("WORKFLOW", max_width=40),
                Column("ERROR", max_width=60),
            ],
            [
                (
                    c.id,
                    styled(c.status, STATUS_STYLES.get(c.status)),
                    c.parent_step,
                    c.iteration,
                    c.workflow,
                    _run_error_cell(c.error),
                )
                for c in run.children
            ],
        )
        lines.extend("  " + line for line in table.splitlines())
    others = [r for r in job_runs or [] if r.id != run.id]
    if others:
        lines.append("")
        lines.append(f"other runs of job {run.job_id}:")
        table = render_table(
            [
                Column("RUN", "right"),
                Column("STATUS"),
                Column("ATTEMPT", "right"),
                Column(time_header("STARTED")),
                Column("ERROR", max_width=70),
            ],
            [
                (
                    r.id,
                    styled(r.status, STATUS_STYLES.get(r.status)),
                    r.attempt,
                    when(r.started_at, now),
                    _run_error_cell(r.error),
                )
                for r in others
            ],
        )
        lines.extend("  " + line for line in table.splitlines())
    if follow_ups:
        lines.append("")
        lines.append("follow-up jobs it enqueued:")
        table = render_table(
            [
                Column("JOB", "right"),
                Column("STATE"),
                Column("QUEUE", max_width=30),
                Column("WORKER", max_width=50),
                Column("TRY", "right"),
            ],
            [
                (j.id, j.state, j.queue, j.worker, f"{j.attempt}/{j.max_attempts}")
                for j in follow_ups
            ],
        )
        lines.extend("  " + line for line in table.splitlines())
    elif run.status == RunStatus.SUCCEEDED.value and any(s.enqueue for s in run.steps):
        lines.append("")
        lines.append(
            "follow-up jobs: registered, none found (the job's completion inserts them; "
            "pruned jobs are gone)"
        )
    trail = render_trail(run, verbose)
    if trail:
        lines.append("")
        lines.extend(trail)
    if graph:
        lines.append("")
        lines.extend(mermaid_lines(run, workflow, deps, order))
    return lines


MAP_ELEMENTS_SHOWN = 3
"""Elements of a map listed by ``runs show`` besides those that did not end ok (``-v``: all)."""


def place_part_steps(
    order: list[str], records: dict[str, Any], run: RunRecord, verbose: bool
) -> tuple[list[str], dict[str, str]]:
    """The steps of each part right after the part, in the order they were made (a map's
    elements by index); a map of many elements shows its first few and every element that
    did not end ok, and one line counting the others (``-v`` shows them all)."""
    top = [n for n in order if _part_of(n) is None]
    inside: dict[str, list[str]] = {}
    for name in sorted(records, key=lambda n: records[n].position):
        part = _part_of(name)
        if part is not None:
            inside.setdefault(part, []).append(name)
    placed: list[str] = []
    folded: dict[str, str] = {}
    for name in top:
        placed.append(name)
        steps = inside.pop(name, [])
        if not steps:
            continue
        shown, hidden = _fold_elements(name, steps, records, run, verbose)
        placed += shown
        if hidden:
            outcomes: dict[str, int] = {}
            for element in hidden.values():
                for step in element:
                    mark = step_outcome(run, records[step])
                    outcomes[mark] = outcomes.get(mark, 0) + 1
            said = ", ".join(f"{count} {mark}" for mark, count in sorted(outcomes.items()))
            folded[shown[-1] if shown else name] = (
                f"… elements {_ranges(sorted(hidden))} of {name} not listed, their steps: "
                f"{said} (-v lists them)"
            )
    for steps in inside.values():  # a part the DAG did not name (the class changed since)
        placed += steps
    return placed, folded


def _ranges(indexes: list[int]) -> str:
    """``[3, 4, 5, 9]`` -> ``3-5, 9``."""
    spans: list[list[int]] = []
    for index in indexes:
        if spans and index == spans[-1][1] + 1:
            spans[-1][1] = index
        else:
            spans.append([index, index])
    return ", ".join(str(a) if a == b else f"{a}-{b}" for a, b in spans)


def _part_of(name: str) -> str | None:
    """The top-level part a step of the run sits in (``each[3].pack`` -> ``each``)."""
    cut = min((i for i in (name.find("."), name.find("[")) if i >= 0), default=-1)
    return name[:cut] if cut > 0 else None


def _fold_elements(
    part: str, steps: list[str], records: dict[str, Any], run: RunRecord, verbose: bool
) -> tuple[list[str], dict[int, list[str]]]:
    elements: dict[int, list[str]] = {}
    for step in steps:
        if step.startswith(part + "["):
            index = int(step[len(part) + 1 : step.index("]")])
            elements.setdefault(index, []).append(step)
    if verbose or len(elements) <= MAP_ELEMENTS_SHOWN * 3:
        return steps, {}
    settled = ("succeeded", "compensated", "skipped", "undone")
    hidden = {
        index: names
        for index, names in elements.items()
        if index >= MAP_ELEMENTS_SHOWN
        and (
            all(records[n].status in settled for n in names)
            or all(step_outcome(run, records[n]) == "not started" for n in names)
        )
    }
    hidden_names = {n for names in hidden.values() for n in names}
    return [s for s in steps if s not in hidden_names], hidden


def mermaid_lines(
    run: RunRecord, workflow: type[Workflow] | None, deps: dict[str, list[str]], order: list[str]
) -> list[str]:
    """The DAG as a Mermaid chart coloured by outcome (``runs show --graph``)."""
    lines = ["mermaid:"]
    graph = workflow.graph if workflow is not None else None
    composite = workflow is not None and any(s.composite for s in workflow.steps.values())
    if graph is not None and not composite and set(graph.order) == {s.step for s in run.steps}:
        lines.append(graph.mermaid(run.statuses()).rstrip())  # with inputs and wait_for edges
        return lines
    if workflow is None:
        lines.append(
            f"%% workflow {run.workflow!r} is not registered with the app: the chart is drawn "
            "from the run log, without its inputs (give --app, or --workflow module:Class, "
            "for the workflow's own chart)"
        )
    chart = dag_mermaid(deps, order, run.statuses(), graph=graph, children=run.children)
    lines.append(chart.rstrip())
    return lines


STATUS_STYLES = {
    "succeeded": "green",
    "running": "cyan",
    "rolling_back": "yellow",
    "halted": "magenta",
    "failed": "red",
    "rolled_back": "yellow",
    "rollback_failed": "bold red",
}


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
    @click.option(
        "--parent",
        "parent_run_id",
        type=int,
        default=None,
        metavar="RUN",
        help="Only the child runs of run RUN (the runs its steps composed or recursed into).",
    )
    @limit_option
    @click.option("--json", "as_json", is_flag=True, help="One JSON document per line.")
    def list_command(
        source: AppSource,
        statuses: tuple[str, ...],
        workflow: str | None,
        job_id: int | None,
        parent_run_id: int | None,
        limit: int,
        as_json: bool,
    ) -> None:
        """List runs, newest first. A child run (a saga composed or recursed into by a step of
        another run) says whose it is in PARENT: RUN:STEP, #N for a later iteration."""
        filters: dict[str, Any] = {
            "status": statuses or None,
            "workflow": workflow,
            "job_id": job_id,
            "parent_run_id": parent_run_id,
        }
        with source.open() as app:
            found = list_runs(app, **filters, limit=None if limit == NO_LIMIT else limit)
            total = (
                count_runs(app, **filters) if limit != NO_LIMIT and len(found) == limit else None
            )
        if as_json:
            echo_json_lines([run_json(run) for run in found], total=total)
            return
        if not found:
            click.echo("no runs")
            return
        now = datetime.now(UTC)
        # PARENT only when a child run is listed: a table of top-level runs stays as it was
        parents = any(run.parent_step is not None for run in found)
        columns = [
            Column("RUN", "right"),
            Column("STATUS"),
            Column("JOB", "right"),
            Column("ATTEMPT", "right"),
            *([Column("PARENT", max_width=30)] if parents else []),
            Column(time_header("STARTED")),
            Column("TOOK", "right"),
            Column("WORKFLOW", max_width=40),
            Column("ERROR", max_width=70),
        ]
        rows = []
        for run in found:
            row: list[Any] = [
                run.id,
                styled(run.status, STATUS_STYLES.get(run.status)),
                run.job_id,
                run.attempt,
            ]
            if parents:
                row.append(parent_text(run))
            row += [
                when(run.started_at, now),
                _took(run.started_at, run.finished_at),
                run.workflow,
                _run_error_cell(run.error),
            ]
            rows.append(row)
        echo_table(columns, rows, total=total)

    @runs.command("show")
    @config_options
    @click.argument("run_id", type=int)
    @click.option(
        "--workflow",
        "workflow_spec",
        default=None,
        metavar="MODULE:CLASS",
        help="The run's workflow class, imported for its full chart (--graph, implied) when "
        "the app does not register it. The workflow name stored in the run is never imported.",
    )
    @click.option(
        "-v",
        "--verbose",
        is_flag=True,
        help="Tracebacks with every frame, and the trail with every event on its own line "
        "(repeated failures unfolded).",
    )
    @click.option(
        "--graph/--no-graph",
        default=None,
        help="Add the DAG as a Mermaid chart coloured by outcome, to paste into a Mermaid "
        "viewer (the steps list says the same in text). Default: only with --workflow.",
    )
    @click.option("--json", "as_json", is_flag=True, help="The run as one JSON document.")
    def show_command(
        source: AppSource,
        run_id: int,
        workflow_spec: str | None,
        verbose: bool,
        graph: bool | None,
        as_json: bool,
    ) -> None:
        """Show one run: each step's outcome along the DAG, the error, the run it is a child
        of or its child runs, why it halted, the job's other runs, the jobs it enqueued, and
        the trail of everything that happened, in order (a step's repeated failure folded
        into one counted line; -v shows every event)."""
        with source.open() as app:
            run = get_run(app, run_id)
            if run is None:
                raise click.ClickException(f"no run {run_id}")
            job_runs = (  # the job's own runs: its child runs are listed with their parents
                list_runs(app, job_id=run.job_id, top_level=True, limit=None)
                if run.job_id is not None
                else []
            )
            follow_ups = follow_up_jobs(app, run_id)
            if as_json:
                click.echo(json.dumps(run_show_json(run, job_runs, follow_ups), indent=2))
                return
            # `jobsaga -v runs show` (the group's logging flag) means the same as `runs show -v`
            verbose = verbose or bool(click.get_current_context().find_root().params.get("verbose"))
            if graph is None:  # --workflow is only ever given for the chart
                graph = workflow_spec is not None
            workflow = None
            if graph:
                workflow = (
                    typed_workflow(workflow_spec, run)
                    if workflow_spec is not None
                    else registered_workflow(app, run.workflow)
                )
            elif workflow_spec is not None:
                typed_workflow(workflow_spec, run)  # still checked: a wrong class is an error
            lines = show_run(
                run,
                workflow,
                job_runs=job_runs,
                follow_ups=follow_ups,
                verbose=verbose,
                graph=graph,
                same_database=source.flags_text(),
            )
            click.echo("\n".join(lines))

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
