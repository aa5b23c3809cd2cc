"""WorkflowWorker on a real node, both engines: the guide's AnalyticsAgentWorker end to end."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from pydantic import BaseModel, ConfigDict

from jobsaga import App, ArgsError, Job, JobState, StepContext, Workflow, WorkflowWorker, step
from jobsaga.demo.analytics import (
    Actor,
    AnalyticsAgentWorker,
    AnalyticsStore,
    AnalyticsWorkflow,
    NotifyUser,
    Role,
    seed,
)
from jobsaga.errors import ConfigError, JobTimeout, WorkflowError, WorkflowOutsideJobError
from jobsaga.workflow import get_run, list_runs
from tests.helpers import wait_until

ACTOR = Actor(id="u-1", organization_id="org-1", role=Role.ANALYST)


class FastAnalytics(AnalyticsAgentWorker, name="analytics.agent.fast", backoff=lambda a: 0.05):
    """The guide's worker with a test-sized retry delay."""


final_errors: list[BaseException] = []


class RecordingAnalytics(FastAnalytics, name="analytics.agent.recording"):
    def on_final_failure(self, job: Job[Any], error: BaseException) -> None:
        final_errors.append(error)
        super().on_final_failure(job, error)


@pytest.fixture
def store() -> Iterator[AnalyticsStore]:
    fresh = AnalyticsStore()
    previous, AnalyticsWorkflow.store = AnalyticsWorkflow.store, fresh
    seed(fresh)
    final_errors.clear()
    yield fresh
    AnalyticsWorkflow.store = previous


def run_jobs(app: App, *prompt_ids: str, worker: Any = RecordingAnalytics) -> list[int]:
    jobs = [app.insert(worker.new({"prompt_id": p, "actor": ACTOR})) for p in prompt_ids]
    queues = {"analytics_agents": 4, "notifications": 2}
    with app.node(queues, poll_interval=0.05, stage_interval=0.05).start_in_thread():
        wait_until(
            lambda: all(app.get_job(j.id).state.is_final for j in jobs),  # type: ignore[union-attr]
            timeout=20,
        )
        wait_until(lambda: not app.engine.queue_counts().get("notifications", {}).get("available"))
    return [j.id for j in jobs]


def test_success_completes_the_job_and_inserts_the_follow_up(
    make_app: Callable[..., App], store: AnalyticsStore
) -> None:
    app = make_app(RecordingAnalytics, NotifyUser)
    [job_id] = run_jobs(app, "p-revenue")
    assert app.get_job(job_id).state is JobState.COMPLETED  # type: ignore[union-attr]
    wait_until(lambda: store.notifications)
    report_id = store.notifications[0]["report_id"]
    assert store.reports[report_id]["summary"] == "amer leads with 3400"
    assert store.status["p-revenue"] == "completed"
    [run] = list_runs(app, job_id=job_id)
    assert run.status == "succeeded" and run.attempt == 1
    assert run.result == report_id
    assert run.context == {"actor": ACTOR.model_dump(mode="json")}
    full = get_run(app, run.id)  # type: ignore[arg-type]
    assert full is not None and all(s.status == "succeeded" for s in full.steps)


def test_compensation_and_step_retry_inside_a_job(
    make_app: Callable[..., App], store: AnalyticsStore
) -> None:
    app = make_app(RecordingAnalytics, NotifyUser)
    churn, cohorts = run_jobs(app, "p-churn", "p-cohorts")
    churn_run = get_run(app, list_runs(app, job_id=churn)[0].id)  # type: ignore[arg-type]
    assert churn_run is not None
    assert churn_run.step("summarize").status == "compensated"
    assert churn_run.step("summarize").result["source"] == "statistics"
    cohort_run = get_run(app, list_runs(app, job_id=cohorts)[0].id)  # type: ignore[arg-type]
    assert cohort_run is not None and cohort_run.step("run_query").tries == 2
    assert app.get_job(cohorts).state is JobState.COMPLETED  # type: ignore[union-attr]


def test_failure_is_retried_by_the_job_layer_and_reaches_the_final_hook(
    make_app: Callable[..., App], store: AnalyticsStore
) -> None:
    app = make_app(RecordingAnalytics, NotifyUser)
    [job_id] = run_jobs(app, "p-forecast")
    job = app.get_job(job_id)
    assert job is not None and job.state is JobState.DISCARDED and job.attempt == 2
    assert len(job.errors) == 2 and "report store unreachable" in job.errors[0]["error"]
    [error] = final_errors
    assert isinstance(error, WorkflowError)
    assert error.step == "save_report" and error.find(ConnectionError)
    assert error.undone == ("run_query",) and error.rolled_back
    assert store.temp_tables == {} and store.reports == {}  # everything undone, twice over
    assert store.status["p-forecast"] == "failed"
    assert store.ui_messages == [
        {
            "prompt_id": "p-forecast",
            "event": "processing_failed",
            "error": "report store unreachable",
            "cleaned_up": True,
        }
    ]
    runs = list_runs(app, job_id=job_id)
    assert [(r.attempt, r.status) for r in runs] == [(2, "rolled_back"), (1, "rolled_back")]
    assert [r.id for r in list_runs(app, status="failed")] == [r.id for r in runs]
    assert store.notifications == []


def test_args_are_validated_at_insert(make_app: Callable[..., App]) -> None:
    make_app(RecordingAnalytics)
    with pytest.raises(ArgsError, match="actor.role"):
        RecordingAnalytics.new({"prompt_id": "p", "actor": {**ACTOR.model_dump(), "role": "ceo"}})
    with pytest.raises(ArgsError, match="prompt_id"):
        RecordingAnalytics.new({"actor": ACTOR})


def test_perform_outside_a_node_is_refused() -> None:
    job: Job[Any] = Job(
        id=1,
        state=JobState.EXECUTING,
        queue="q",
        worker="w",
        args={"prompt_id": "p", "actor": ACTOR.model_dump()},
        meta={},
        tags=(),
        errors=(),
        attempt=1,
        max_attempts=1,
        priority=0,
        inserted_at=None,
        scheduled_at=None,  # type: ignore[arg-type]
    )
    with pytest.raises(WorkflowOutsideJobError, match="needs its App"):
        asyncio.run(RecordingAnalytics().perform(job))


def test_a_workflow_worker_needs_a_workflow() -> None:
    with pytest.raises(ConfigError, match="needs workflow="):

        class Nothing(WorkflowWorker):
            pass


class Plain(Workflow, inputs=["n"]):
    class Context(BaseModel):
        model_config = ConfigDict(extra="allow")  # any other arg is context (the opt-out)

    @step
    def double(self, n: int, ctx: StepContext[Any]) -> dict[str, Any]:
        return {
            "n": n * 2,
            "attempt": ctx.attempt,
            "job": ctx.job.id if ctx.job else None,
            "context": ctx.context,
        }


class PlainWorker(WorkflowWorker, workflow=Plain, name="plain.worker", persist=False):
    pass


def test_untyped_inputs_and_free_context_without_a_run_log(make_app: Callable[..., App]) -> None:
    app = make_app(PlainWorker)
    job = app.insert(PlainWorker.new({"n": 2, "note": "extra args are the context"}))
    with app.node({"default": 1}, poll_interval=0.05).start_in_thread():
        wait_until(lambda: app.get_job(job.id).state is JobState.COMPLETED)  # type: ignore[union-attr]
    assert list_runs(app) == []  # persist=False keeps no run log
    with pytest.raises(ArgsError, match="'n'"):
        PlainWorker.new({})


class Hangs(Workflow, inputs=["order"]):
    @step
    def hold(self, order: str) -> str:
        TIMEOUT_TRAIL.append("hold")
        return f"h-{order}"

    @hold.undo
    def unhold(self, result: str) -> None:
        TIMEOUT_TRAIL.append(f"unhold {result}")

    @step
    async def wait_forever(self, hold: str) -> None:
        await asyncio.sleep(60)


TIMEOUT_TRAIL: list[str] = []
timeout_errors: list[BaseException] = []


class HangsWorker(WorkflowWorker, workflow=Hangs, name="hangs.worker", max_attempts=1, timeout=0.5):
    async def on_final_failure(self, job: Job[Any], error: BaseException) -> None:
        timeout_errors.append(error)


def test_a_last_attempt_that_times_out_is_rolled_back_before_the_final_hook(
    make_app: Callable[..., App],
) -> None:
    TIMEOUT_TRAIL.clear()
    timeout_errors.clear()
    app = make_app(HangsWorker)
    job = app.insert(HangsWorker.new({"order": "o-9"}))
    with app.node({"default": 1}, poll_interval=0.05).start_in_thread():
        wait_until(lambda: timeout_errors, timeout=15)
    [error] = timeout_errors
    assert isinstance(error, WorkflowError) and isinstance(error.error, JobTimeout)
    assert error.undone == ("hold",)
    assert TIMEOUT_TRAIL == ["hold", "unhold h-o-9"]
    [run] = list_runs(app, job_id=job.id)
    assert run.status == "rolled_back"


def test_unknown_args_are_refused_unless_the_context_allows_extra_keys() -> None:
    """docs/workflows.md ("WorkflowWorker"): an unknown arg is refused at insert, with or
    without a Context model (a misspelt optional input would otherwise be kept as context
    and the input left at its default); a Context with extra="allow" takes them as context."""

    class Untyped(Workflow, inputs=["order_id"]):
        @step
        def a(self, order_id: str) -> str:
            return order_id

    class Typed(Workflow, inputs=["order_id"]):
        class Context(BaseModel):
            pass

        @step
        def a(self, order_id: str) -> str:
            return order_id

    class Free(Workflow, inputs=["order_id"]):
        class Context(BaseModel):
            model_config = ConfigDict(extra="allow")

        @step
        def a(self, order_id: str) -> str:
            return order_id

    class UntypedWorker(WorkflowWorker, workflow=Untyped):
        pass

    class TypedWorker(WorkflowWorker, workflow=Typed):
        pass

    class FreeWorker(WorkflowWorker, workflow=Free):
        pass

    for worker in (UntypedWorker, TypedWorker):
        with pytest.raises(ArgsError, match="unknown field 'ordr_id' \\(did you mean"):
            worker.new({"order_id": "x", "ordr_id": "y"})
    job = FreeWorker.new({"order_id": "x", "note": 1})
    assert job.args == {"order_id": "x", "note": 1}
