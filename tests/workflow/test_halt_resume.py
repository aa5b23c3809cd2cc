"""Halt and durable resume (issue 13, item 7), on both engines: a step that returns ``Halt``
parks its job (no attempt used, nothing pruned, no follow-up); ``resume_run`` (and
``jobsaga runs resume``) sets it going with new inputs; the halted step's result is its halt
value, and no recorded step runs again."""

from __future__ import annotations

import asyncio
import os
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import pytest
from click.testing import CliRunner
from pydantic import BaseModel

from jobsaga import App, Job, JobState, StepContext, Worker, Workflow, WorkflowWorker, step
from jobsaga.cli.main import cli
from jobsaga.errors import RunStateError, WorkflowInputError
from jobsaga.plugins.pruner import prune_batch
from jobsaga.workflow import get_run, list_runs
from jobsaga.workflow.results import Halt
from jobsaga.workflow.resuming import HALTED_RUN, RESUMED_RUN, aresume_run, resume_run
from tests.helpers import wait_until

COUNTS: Counter[str] = Counter()
SEEN: dict[str, Any] = {}
NOTIFIED: list[str] = []
RELEASE = threading.Event()


class Notify(Worker, name="tests.halt.notify", queue="default"):
    def perform(self, job: Job[Any]) -> None:
        NOTIFIED.append(job.args["order"])


class Approval(Workflow, name="tests.halt.approval"):
    class Inputs(BaseModel):
        order: str
        approved: bool = False

    @step
    def reserve(self, order: str) -> str:
        COUNTS["reserve"] += 1
        return f"r-{order}"

    @step
    def approve(self, reserve: str, approved: bool) -> Any:
        COUNTS["approve"] += 1
        if not approved:
            return Halt({"ticket": "t-1"}, reason="waiting for a manager")
        return {"ticket": "auto"}

    @step
    def ship(self, approve: Any, approved: bool, order: str, ctx: StepContext[Any]) -> str:
        COUNTS["ship"] += 1
        SEEN["ship"] = (approve, approved)
        ctx.enqueue_after_success(Notify.new({"order": order}))
        return f"s-{order}"


class ApprovalWorker(WorkflowWorker, workflow=Approval, name="tests.halt.approval_worker"):
    pass


class Blocks(Workflow, name="tests.halt.blocks", inputs=["n"]):
    @step
    def wait(self, n: int) -> int:
        RELEASE.wait(20)
        return n


class BlocksWorker(WorkflowWorker, workflow=Blocks, name="tests.halt.blocks_worker"):
    pass


def env_app() -> App:
    return App(os.environ["JOBSAGA_TEST_APP_URL"], workers=[ApprovalWorker, Notify])


@pytest.fixture(autouse=True)
def fresh() -> Iterator[None]:
    COUNTS.clear()
    SEEN.clear()
    NOTIFIED.clear()
    RELEASE.clear()
    yield
    RELEASE.set()


def node(app: App) -> Any:
    return app.node({"default": 2}, poll_interval=0.05, stage_interval=0.05).start_in_thread()


def parked(app: App, job_id: int) -> bool:
    job = app.get_job(job_id)
    return job is not None and job.state is JobState.SCHEDULED and HALTED_RUN in job.meta


def halted_job(app: App) -> tuple[int, int]:
    """Insert an approval job, run it on a node until it parks; its (job id, run id)."""
    job = app.insert(ApprovalWorker.new({"order": "o-1"}))
    with node(app):
        wait_until(lambda: parked(app, job.id))
    [run] = list_runs(app, job_id=job.id)
    assert run.id is not None
    return job.id, run.id


def test_halt_parks_the_job_and_resume_completes_it_without_rerunning_a_step(
    make_app: Callable[..., App],
) -> None:
    app = make_app(ApprovalWorker, Notify)
    job = app.insert(ApprovalWorker.new({"order": "o-1"}))
    with node(app):
        wait_until(lambda: parked(app, job.id))
        [run] = list_runs(app, job_id=job.id)
        assert run.status == "halted" and run.id is not None
        waiting = app.get_job(job.id)
        assert waiting is not None
        assert waiting.meta[HALTED_RUN] == run.id and waiting.meta["halted_step"] == "approve"
        assert waiting.attempt == 0  # parking used up no attempt
        assert "snoozed" not in waiting.meta and not waiting.errors
        assert waiting.scheduled_at > app.clock() + timedelta(days=365 * 50)
        assert dict(COUNTS) == {"reserve": 1, "approve": 1}
        assert app.engine.queue_counts()["default"] == {"scheduled": 1}  # no follow-up yet

        done = resume_run(app, run.id, {"approved": True}, reason="approved by Ann")
        assert (done.run_id, done.job_id, done.inputs, done.validated) == (
            run.id,
            job.id,
            ("approved",),
            True,
        )
        wait_until(lambda: app.get_job(job.id).state is JobState.COMPLETED)  # type: ignore[union-attr]
        wait_until(lambda: NOTIFIED)
    record = get_run(app, run.id)
    assert record is not None and record.status == "succeeded"
    assert record.step("approve").result == {"ticket": "t-1"}
    assert dict(COUNTS) == {"reserve": 1, "approve": 1, "ship": 1}, "a recorded step ran again"
    assert SEEN["ship"] == ({"ticket": "t-1"}, True)  # the halt value, and the new input
    assert NOTIFIED == ["o-1"]  # the follow-up, inserted once
    [requested] = record.events_of("run.resume_requested")
    assert requested.detail == {
        "job_id": job.id,
        "inputs": ["approved"],
        "reason": "approved by Ann",
    }
    finished = app.get_job(job.id)
    assert finished is not None and finished.attempt == 1
    assert finished.args["approved"] is True
    assert finished.meta[RESUMED_RUN] == run.id and HALTED_RUN not in finished.meta


def test_a_parked_job_stays_parked_and_is_not_pruned(make_app: Callable[..., App]) -> None:
    app = make_app(ApprovalWorker, Notify)
    job_id, run_id = halted_job(app)
    assert app.engine.stage() == set()  # a stager's pass: nothing is due
    deleted = prune_batch(app, app.clock() + timedelta(days=1), 100)
    assert job_id not in deleted
    assert parked(app, job_id) and get_run(app, run_id) is not None
    assert dict(COUNTS) == {"reserve": 1, "approve": 1}


def test_resume_is_refused_for_a_run_that_is_not_halted(make_app: Callable[..., App]) -> None:
    app = make_app(ApprovalWorker, Notify, BlocksWorker)
    blocked = app.insert(BlocksWorker.new({"n": 1}))
    with node(app):
        wait_until(lambda: list_runs(app, job_id=blocked.id))
        [running] = list_runs(app, job_id=blocked.id)
        assert running.status == "running" and running.id is not None
        with pytest.raises(RunStateError, match=r"is running, not halted"):
            resume_run(app, running.id)
        RELEASE.set()
        wait_until(lambda: app.get_job(blocked.id).state is JobState.COMPLETED)  # type: ignore[union-attr]
    with pytest.raises(RunStateError, match=r"is succeeded, not halted"):
        resume_run(app, running.id)
    with pytest.raises(RunStateError, match=r"no run 424242"):
        resume_run(app, 424242)


def test_resume_with_a_bad_input_names_it_and_changes_nothing(
    make_app: Callable[..., App],
) -> None:
    app = make_app(ApprovalWorker, Notify)
    job_id, run_id = halted_job(app)
    before = app.get_job(job_id)
    with pytest.raises(WorkflowInputError, match=r"unknown field 'aproved' \(did you mean"):
        resume_run(app, run_id, {"aproved": True})
    with pytest.raises(WorkflowInputError, match=r"field 'approved'"):
        resume_run(app, run_id, {"approved": "maybe"})
    after = app.get_job(job_id)
    assert after == before
    run = get_run(app, run_id)
    assert run is not None and run.status == "halted"
    assert not run.events_of("run.resume_requested")


def test_two_resumes_race_one_wins(make_app: Callable[..., App]) -> None:
    first = make_app(ApprovalWorker, Notify)
    second = make_app(ApprovalWorker, Notify)
    job_id, run_id = halted_job(first)
    barrier = threading.Barrier(2)
    outcomes: list[Any] = []

    def resume(app: App, approved: bool) -> None:
        barrier.wait()
        try:
            outcomes.append(resume_run(app, run_id, {"approved": approved}))
        except RunStateError as exc:
            outcomes.append(exc)

    threads = [
        threading.Thread(target=resume, args=(first, True)),
        threading.Thread(target=resume, args=(second, False)),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(20)
    won = [o for o in outcomes if not isinstance(o, BaseException)]
    lost = [o for o in outcomes if isinstance(o, BaseException)]
    assert len(won) == 1 and len(lost) == 1, outcomes
    assert "is available, not parked" in str(lost[0])
    job = first.get_job(job_id)
    assert job is not None and job.state is JobState.AVAILABLE
    run = get_run(first, run_id)
    assert run is not None and len(run.events_of("run.resume_requested")) == 1


def test_aresume_run(make_app: Callable[..., App]) -> None:
    app = make_app(ApprovalWorker, Notify)
    job_id, run_id = halted_job(app)
    done = asyncio.run(aresume_run(app, run_id, {"approved": True}))
    assert done.job_id == job_id
    job = app.get_job(job_id)
    assert job is not None and job.state is JobState.AVAILABLE


def test_cli_resume(
    db_url: str, make_app: Callable[..., App], monkeypatch: pytest.MonkeyPatch
) -> None:
    app = make_app(ApprovalWorker, Notify)
    job_id, run_id = halted_job(app)
    monkeypatch.setenv("JOBSAGA_TEST_APP_URL", db_url)
    runner = CliRunner()
    app_flag = ["--app", "tests.workflow.test_halt_resume:env_app"]
    shown = runner.invoke(cli, ["jobs", "show", str(job_id), "--url", db_url])
    assert shown.exit_code == 0, shown.output
    assert f"halted at step 'approve': saga run {run_id} waits for a resume" in shown.output
    assert "parked until its run is resumed" in shown.output

    bad = runner.invoke(
        cli, ["runs", "resume", str(run_id), "--input", "approved=maybe", *app_flag]
    )
    assert bad.exit_code == 1, bad.output
    assert "field 'approved'" in bad.output and len(bad.output.strip().splitlines()) == 1
    malformed = runner.invoke(
        cli, ["runs", "resume", str(run_id), "--input", "approved", *app_flag]
    )
    assert malformed.exit_code == 2 and "KEY=VALUE" in malformed.output

    done = runner.invoke(
        cli,
        ["runs", "resume", str(run_id), "--input", "approved=true", "--reason", "ok", *app_flag],
    )
    assert done.exit_code == 0, done.output
    assert done.output == (
        f"run {run_id}: resumed; job {job_id} is available again (inputs: approved)\n"
    )
    job = app.get_job(job_id)
    assert job is not None and job.state is JobState.AVAILABLE and job.args["approved"] is True

    again = runner.invoke(cli, ["runs", "resume", str(run_id), "--url", db_url])
    assert again.exit_code == 1
    assert f"job {job_id} is available, not parked" in again.output
    with node(app):
        wait_until(lambda: app.get_job(job_id).state is JobState.COMPLETED)  # type: ignore[union-attr]
    assert dict(COUNTS) == {"reserve": 1, "approve": 1, "ship": 1}
    finished = runner.invoke(cli, ["runs", "resume", str(run_id), "--url", db_url])
    assert finished.exit_code == 1 and "is succeeded, not halted" in finished.output


def test_cli_resume_without_the_app_takes_json_or_text(
    db_url: str, make_app: Callable[..., App]
) -> None:
    app = make_app(ApprovalWorker, Notify)
    job_id, run_id = halted_job(app)
    done = CliRunner().invoke(
        cli,
        [
            "runs",
            "resume",
            str(run_id),
            "--url",
            db_url,
            "--inputs",
            '{"approved": true}',
            "--input",
            "note=looks good",
        ],
    )
    assert done.exit_code == 0, done.output
    assert "(inputs: approved, note; not validated: give --app)" in done.output
    job = app.get_job(job_id)
    assert job is not None and job.args["approved"] is True and job.args["note"] == "looks good"
