"""``jobsaga jobs ...`` as an operator meets it, on both engines: the table and its times, the
saga runs of a job, and bulk commands that say what they can change and do just that."""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
from collections.abc import Callable
from typing import Any

import pytest
from click.testing import CliRunner, Result

from jobsaga import App, Job, JobState, Worker
from jobsaga.cli import jobs as jobs_cli
from jobsaga.cli import progress as progress_module
from jobsaga.cli import tables
from jobsaga.cli.main import cli
from jobsaga.cli.tables import clock
from jobsaga.operations.jobs import JobOperations
from tests.helpers import wait_until

from . import cli_saga
from . import workers as w
from .conftest import NODE, progress_interrupted_at

LONG_QUEUE = "mailers-for-the-european-billing-department-" + "x" * 20  # 64, the longest


class FailFirst(Worker, queue="default", max_attempts=3, backoff=lambda attempt: 600):
    """Fails its first attempt, so it waits as retryable for its next run in 10 min."""

    def perform(self, job: Job[Any]) -> None:
        raise RuntimeError("SMTP 451: try again later\nsecond line of the error")


class GatewayDown(Worker, queue="default", max_attempts=3, backoff=lambda attempt: 0):
    """Fails its first two attempts the same way, then once differently."""

    def perform(self, job: Job[Any]) -> None:
        if job.attempt < 3:
            charge_the_card()
        raise ValueError("card declined")


def charge_the_card() -> None:
    raise RuntimeError("payment gateway down")


def run(*args: str, input: str | None = None) -> Result:
    return CliRunner().invoke(cli, list(args), input=input, catch_exceptions=False)


def stored(app: App, job_id: int) -> Job[Any]:
    job = app.get_job(job_id)
    assert job is not None
    return job


def row_of(output: str, job_id: int) -> str:
    [line] = [line for line in output.splitlines() if re.match(rf"^\s*{job_id}\s", line)]
    return line


def test_the_list_is_a_table_with_one_time_format_and_the_next_run(
    make_app: Callable[..., App], db_url: str
) -> None:
    app = make_app(w.Noop, FailFirst)
    failing = app.insert(FailFirst.new({}))
    with app.node({"default": 1}, **NODE).start_in_thread():
        wait_until(lambda: stored(app, failing.id).state is JobState.RETRYABLE, timeout=10)
    later = app.insert(w.Noop.new({}, schedule_in=2 * 3600 + 60))
    long_queue = app.insert(w.Noop.new({}, queue=LONG_QUEUE))
    stopped = app.insert(w.Noop.new({}))
    app.cancel_job(stopped.id, reason="first line\nsecond line")

    listed = run("jobs", "list", "--url", db_url)
    assert listed.exit_code == 0, listed.output
    lines = listed.output.splitlines()
    header = lines[0]
    assert header.split("  ")[0] == "ID" and "WHEN (UTC)" in header and "LAST ERROR" in header
    assert "\x1b[" not in listed.output  # piped: plain text
    assert "showing" not in listed.output  # every job is shown
    # columns line up: each row's state starts under the STATE header
    at = header.index("STATE")
    assert {line[at:].split()[0] for line in lines[1:]} == {
        "retryable",
        "scheduled",
        "available",
        "cancelled",
    }
    # WHEN: the next run of a retryable or scheduled job, when a cancelled one ended
    retry_row = row_of(listed.output, failing.id)
    assert f"{clock(stored(app, failing.id).scheduled_at)} (in " in retry_row
    assert retry_row.endswith("RuntimeError: SMTP 451: try again later …")
    assert "(in 2 h)" in row_of(listed.output, later.id)
    cancelled_at = stored(app, stopped.id).cancelled_at
    assert f"{clock(cancelled_at)} (" in row_of(listed.output, stopped.id)
    assert row_of(listed.output, stopped.id).endswith("cancelled: first line …")
    assert "second line" not in listed.output
    assert LONG_QUEUE in row_of(listed.output, long_queue.id)  # whole, its column grew

    limited = run("jobs", "list", "--limit", "2", "--url", db_url)
    assert limited.output.splitlines()[-1] == "showing 2 of 4 (--limit)"
    assert len(limited.output.splitlines()) == 4  # header, 2 rows, the note
    everything = run("jobs", "list", "--limit", "0", "--url", db_url)
    assert "showing" not in everything.output and len(everything.output.splitlines()) == 5


def test_the_list_has_colour_only_on_a_terminal_without_no_color(
    make_app: Callable[..., App], db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = make_app(w.Noop)
    app.insert(w.Noop.new({}))
    monkeypatch.delenv("NO_COLOR", raising=False)
    assert "\x1b[" not in run("jobs", "list", "--url", db_url).output
    monkeypatch.setattr(tables, "on_terminal", lambda err=False: True)
    coloured = run("jobs", "list", "--url", db_url).output
    assert "\x1b[36mavailable" in coloured  # the state in its colour (cyan)
    monkeypatch.setenv("NO_COLOR", "1")
    assert "\x1b[" not in run("jobs", "list", "--url", db_url).output


def test_on_a_terminal_an_empty_last_error_column_leaves_its_room_to_the_names(
    make_app: Callable[..., App], db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = make_app(w.Noop)
    app.insert(w.Noop.new({}, queue=LONG_QUEUE))
    assert "LAST ERROR" in run("jobs", "list", "--url", db_url).output.splitlines()[0]  # piped
    monkeypatch.setattr(tables, "on_terminal", lambda err=False: True)
    monkeypatch.setattr(jobs_cli, "on_terminal", lambda err=False: True)
    monkeypatch.setenv("COLUMNS", "150")
    monkeypatch.setenv("NO_COLOR", "1")
    header, row = run("jobs", "list", "--url", db_url).output.splitlines()
    assert header.split()[-2:] == ["WHEN", "(UTC)"]  # no LAST ERROR column
    assert LONG_QUEUE in row and w.Noop.name in row  # whole in 150 columns


def test_show_uses_the_same_times_and_lists_the_saga_runs(
    make_app: Callable[..., App], db_url: str
) -> None:
    app = make_app(cli_saga.GreetWorker)
    job = app.insert(cli_saga.GreetWorker.new({"who": "ops"}))
    with app.node({"default": 1}, **NODE).start_in_thread():
        wait_until(lambda: stored(app, job.id).state is JobState.COMPLETED, timeout=10)
    done = stored(app, job.id)

    shown = run("jobs", "show", str(job.id), "--url", db_url)
    assert shown.exit_code == 0, shown.output
    lines = shown.output.splitlines()
    assert "  times (UTC):" in lines
    completed = next(line for line in lines if line.strip().startswith("completed"))
    assert re.fullmatch(
        rf"    completed\s+{clock(done.completed_at)}  \((now|\d+ s ago)\)", completed
    )
    runs = lines[lines.index("saga runs:") + 1 :]
    assert runs[0].split() == ["RUN", "STATUS", "ATTEMPT", "STARTED", "(UTC)"]
    run_id = int(runs[1].split()[0])
    assert runs[1].split()[1:3] == ["succeeded", "1"]
    # the hint's command names the database this one read
    assert runs[-1] == f"details: jobsaga runs show {run_id} --url {shlex.quote(db_url)}"
    assert run("runs", "show", str(run_id), "--url", db_url).exit_code == 0

    plain = app.insert(w.Noop.new({}))
    assert "saga runs" not in run("jobs", "show", str(plain.id), "--url", db_url).output
    as_json = run("jobs", "show", str(job.id), "--json", "--url", db_url).output
    assert f'"id": {run_id}' in as_json and '"status": "succeeded"' in as_json


def test_show_says_a_repeated_error_once_with_the_users_frames(
    make_app: Callable[..., App], db_url: str
) -> None:
    app = make_app(GatewayDown)
    job = app.insert(GatewayDown.new({}))
    with app.node({"default": 1}, **NODE).start_in_thread():
        wait_until(lambda: stored(app, job.id).state is JobState.DISCARDED, timeout=10)

    shown = run("jobs", "show", str(job.id), "--url", db_url)
    assert shown.exit_code == 0, shown.output
    lines = shown.output.splitlines()
    errors = lines[lines.index("errors (3, oldest first):") + 1 :]
    heads = [line for line in errors if re.match(r"^  attempts? ", line)]
    assert [head.split(",")[0] for head in heads] == ["  attempts 1-2 × 2", "  attempt 3"]
    assert re.fullmatch(r"  attempts 1-2 × 2, last \S+ \S+ \((now|\d+ s ago)\):", heads[0])
    assert errors[errors.index(heads[0]) + 1] == "    RuntimeError: payment gateway down"
    assert shown.output.count("Traceback (most recent call last):") == 2  # one per group
    first = "\n".join(errors[: errors.index(heads[1])])
    # the user's frames, jobsaga's own folded into one line that says how to see them
    assert 'test_cli_jobs.py", line' in first and "in charge_the_card" in first
    assert re.search(r"… \d+ jobsaga frames? \(jobs show -v shows them\)", first)
    assert "jobsaga/runtime/" not in shown.output

    for verbose in (["jobs", "show", "-v"], ["-v", "jobs", "show"]):
        full = run(*verbose, str(job.id), "--url", db_url).output
        assert "jobsaga/runtime/executor.py" in full and "jobsaga frame" not in full
        assert full.count("Traceback (most recent call last):") == 2


def test_counts_is_a_table_of_queues_by_state(make_app: Callable[..., App], db_url: str) -> None:
    app = make_app(w.Noop)
    app.insert_all([w.Noop.new({}), w.Noop.new({}, queue=LONG_QUEUE)])
    app.cancel_jobs(queue=LONG_QUEUE)
    lines = run("jobs", "counts", "--url", db_url).output.splitlines()
    assert lines[0].split() == [
        "QUEUE",
        "AVAILABLE",
        "SCHEDULED",
        "EXECUTING",
        "RETRYABLE",
        "COMPLETED",
        "DISCARDED",
        "CANCELLED",
        "TOTAL",
    ]
    assert lines[1].split() == ["default", "1", "0", "0", "0", "0", "0", "0", "1"]
    assert lines[2].split() == [LONG_QUEUE, "0", "0", "0", "0", "0", "0", "1", "1"]


def test_a_bulk_command_with_nothing_it_can_change_says_so_without_asking(
    make_app: Callable[..., App], db_url: str
) -> None:
    app = make_app(w.Noop)
    ids = [j.id for j in app.insert_all([w.Noop.new({}) for _ in range(3)])]
    app.cancel_jobs(ids=ids)
    # no input is given: a prompt would abort with exit status 1
    nothing = run("jobs", "cancel", "--state", "cancelled", "--url", db_url)
    assert nothing.exit_code == 0, nothing.output
    assert nothing.output == (
        "nothing to cancel: 3 jobs match (3 cancelled) but cancel applies only to available, "
        "scheduled, retryable and executing jobs\n"
    )
    no_match = run("jobs", "delete", "--queue", "nosuch", "--url", db_url)
    assert (no_match.exit_code, no_match.output) == (0, "nothing to delete: no job matches\n")
    retry_none = run("jobs", "retry", "--state", "available", "--url", db_url)
    assert retry_none.exit_code == 0 and retry_none.output.startswith("nothing to retry: ")
    assert all(stored(app, i).state is JobState.CANCELLED for i in ids)


def test_the_prompt_counts_what_will_change_and_the_change_matches_it(
    make_app: Callable[..., App], db_url: str
) -> None:
    app = make_app(w.Noop)
    jobs = app.insert_all([w.Noop.new({}) for _ in range(3)])
    app.cancel_job(jobs[0].id)
    asked = run("jobs", "cancel", "--worker", w.Noop.name, "--url", db_url, input="n\n")
    assert asked.exit_code == 1
    assert "cancel 2 jobs (3 match; 1 cancelled left as they are)? [y/N]" in asked.output
    assert app.count_jobs() == {"available": 2, "cancelled": 1}
    done = run("jobs", "cancel", "--worker", w.Noop.name, "--url", db_url, input="y\n")
    assert done.exit_code == 0
    assert done.output.splitlines()[-1] == f"cancelled: 2 jobs [{jobs[1].id}, {jobs[2].id}]"
    assert app.count_jobs() == {"cancelled": 3}


def test_ids_that_cannot_be_changed_are_named_and_fail_the_command(
    make_app: Callable[..., App], db_url: str
) -> None:
    app = make_app(w.Noop)
    live, finished = app.insert_all([w.Noop.new({}), w.Noop.new({})])
    app.cancel_job(finished.id)

    missing = run("jobs", "cancel", "9999", "--url", db_url)
    assert missing.exit_code == 1
    assert missing.stdout == "cancelled: 0 jobs\n"
    assert missing.stderr == "not cancelled: no such job: 9999\n"

    mixed = run("jobs", "cancel", str(live.id), str(finished.id), "9999", "--url", db_url)
    assert mixed.exit_code == 1
    assert mixed.stdout == f"cancelled: 1 job [{live.id}]\n"
    assert mixed.stderr.splitlines() == [
        "not cancelled: no such job: 9999",
        f"not cancelled: {finished.id} (cancelled): cancel applies only to available, "
        "scheduled, retryable and executing jobs",
    ]
    assert stored(app, live.id).state is JobState.CANCELLED

    other = app.insert(w.Noop.new({}))
    filtered = run("jobs", "delete", str(other.id), "--queue", "mailers", "--url", db_url)
    assert filtered.exit_code == 1
    assert f"not deleted: {other.id}: not matching the other filters given" in filtered.stderr
    fine = run("jobs", "retry", str(finished.id), "--url", db_url)
    assert (fine.exit_code, fine.output) == (0, f"retried: 1 job [{finished.id}]\n")


@pytest.mark.parametrize("option", ["--since", "--until"])
def test_a_bad_time_names_its_option(db_url: str, option: str) -> None:
    for command in (["list"], ["cancel", "--yes"]):
        bad = run("jobs", *command, option, "yesterday", "--url", db_url)
        assert bad.exit_code == 2
        assert f"Invalid value for '{option}': 'yesterday': give a duration ago" in bad.output
    late = run("jobs", "list", option, "9999-12-31T23:00:00-05:00", "--url", db_url)
    assert late.exit_code == 2 and f"Invalid value for '{option}'" in late.output


def test_bulk_commands_work_in_batches_with_progress_on_a_terminal(
    make_app: Callable[..., App], db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = make_app(w.Noop)
    app.insert_all([w.Noop.new({}) for _ in range(7)])
    monkeypatch.setattr(jobs_cli, "BULK_BATCH", 3)

    piped = run("jobs", "cancel", "--state", "available", "--yes", "--url", db_url)
    assert piped.exit_code == 0 and piped.stderr == ""  # no bar when stderr is not a terminal
    assert piped.stdout.startswith("cancelled: 7 jobs [")

    monkeypatch.setattr(progress_module, "progress_wanted", lambda: True)
    shown = run("jobs", "retry", "--state", "cancelled", "--yes", "--url", db_url)
    assert shown.exit_code == 0
    assert "retrying" in shown.stderr and "7/7" in shown.stderr
    assert shown.stdout.startswith("retried: 7 jobs [")
    assert app.count_jobs() == {"available": 7}


def test_an_interrupted_bulk_command_reports_what_it_committed(
    make_app: Callable[..., App], db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ctrl-C between batches: the batches committed so far are done, the message counts
    exactly those, and running the command again finishes the rest."""
    app = make_app(w.Noop)
    app.insert_all([w.Noop.new({}) for _ in range(7)])
    monkeypatch.setattr(jobs_cli, "BULK_BATCH", 3)
    monkeypatch.setattr(jobs_cli, "progress", progress_interrupted_at(2))
    stopped = run("jobs", "delete", "--state", "available", "--yes", "--url", db_url)
    assert stopped.exit_code == 130
    assert stopped.stderr == (
        "interrupted: deleted 6 jobs before stopping (each batch is committed); "
        "run the command again for the rest\n"
    )
    assert app.count_jobs() == {"available": 1}
    monkeypatch.undo()
    again = run("jobs", "delete", "--state", "available", "--yes", "--url", db_url)
    assert again.stdout.startswith("deleted: 1 job [") and app.count_jobs() == {}


def test_ctrl_c_lets_the_batch_under_way_commit_and_stops_before_the_next(
    make_app: Callable[..., App], db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A real SIGINT after a batch's commit and before it is counted (here from the
    telemetry emitted between the two): the batch is counted, the next is not started, and
    the count printed is exactly what the database holds."""
    app = make_app(w.Noop)
    app.insert_all([w.Noop.new({}) for _ in range(7)])
    monkeypatch.setattr(jobs_cli, "BULK_BATCH", 3)
    emit = JobOperations._emit

    def interrupted_emit(self: JobOperations, *args: Any) -> None:
        emit(self, *args)
        os.kill(os.getpid(), signal.SIGINT)

    monkeypatch.setattr(JobOperations, "_emit", interrupted_emit)
    stopped = run("jobs", "cancel", "--state", "available", "--yes", "--url", db_url)
    assert stopped.exit_code == 130
    assert stopped.stderr.startswith("interrupted: cancelled 3 jobs before stopping")
    assert app.count_jobs() == {"available": 4, "cancelled": 3}
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # put back


def test_a_json_list_says_on_stderr_how_many_it_left_out(
    make_app: Callable[..., App], db_url: str
) -> None:
    app = make_app(w.Noop)
    app.insert_all([w.Noop.new({}) for _ in range(5)])

    listed = run("jobs", "list", "--json", "--limit", "3", "--url", db_url)

    assert listed.exit_code == 0, listed.output
    assert [json.loads(line)["id"] for line in listed.stdout.splitlines()] == [5, 4, 3]
    assert listed.stderr.strip() == "showing 3 of 5 (--limit)"
    whole = run("jobs", "list", "--json", "--url", db_url)
    assert len(whole.stdout.splitlines()) == 5 and not whole.stderr
