"""The guide's analytics agent as a jobsaga saga: ``AnalyticsWorkflow`` run by
``AnalyticsAgentWorker`` on the ``analytics_agents`` queue.

A user (the actor) asks a question about their organization's data. The saga loads the
prompt (checking the actor may see it), plans a query, materializes its result in a
temporary warehouse table (undone by dropping it), summarizes it with a language model
(compensated with a plain statistical summary when the model is down), saves the report
(undone by deleting it), and, once everything succeeded, notifies the user through a
follow-up job: a step never enqueues, since a job cannot be un-sent.

``AnalyticsStore`` stands in for your database, warehouse and model client; it behaves
deterministically from the prompt text so the demo shows every path:

* ``"weekly revenue by region"``: succeeds and notifies.
* ``"churn by plan [llm down]"``: the model is unavailable; compensation continues with a
  statistical summary, and the saga still succeeds.
* ``"forecast next quarter [report store down]"``: saving fails after the temp table was
  created: the temp table is dropped (undo), the attempt fails, the job layer retries it,
  and on the final attempt ``on_final_failure`` marks the prompt failed and tells the UI.
* ``"cohort retention [warehouse busy]"``: the warehouse is busy once; the step is retried.

This is the saga half of ``jobsaga demo`` (see :mod:`jobsaga.demo`); the repository's
``workflows/analytics.py`` re-exports it under the name the guide uses.
"""

from __future__ import annotations

import enum
import itertools
import threading
from typing import Any

from pydantic import BaseModel

from ..app import App
from ..errors import WorkflowError
from ..job import Job, JobSpec
from ..worker import Worker
from ..workflow import Continue, StepContext, Workflow, WorkflowWorker, step

__all__ = [
    "Actor",
    "AnalyticsAgentWorker",
    "AnalyticsStore",
    "AnalyticsWorkflow",
    "DemoAnalyticsAgentWorker",
    "EXAMPLE_ACTOR",
    "EXAMPLE_PROMPTS",
    "Forbidden",
    "ModelUnavailable",
    "NotifyUser",
    "Prompt",
    "PromptNotFound",
    "QueryPlan",
    "Role",
    "Summary",
    "TempTable",
    "WarehouseBusy",
    "build_app",
    "demo_jobs",
    "seed",
]


class Role(enum.StrEnum):
    ADMIN = "admin"
    ANALYST = "analyst"
    VIEWER = "viewer"


class Actor(BaseModel):
    """Who asked: typed, so an unknown role is rejected when the job is inserted."""

    id: str
    organization_id: str
    role: Role


class Prompt(BaseModel):
    id: str
    organization_id: str
    text: str
    notify: bool = True


class QueryPlan(BaseModel):
    sql: str
    tables: list[str]


class TempTable(BaseModel):
    name: str
    rows: list[dict[str, Any]]


class Summary(BaseModel):
    text: str
    source: str
    """``llm`` or ``statistics`` (the compensation's fallback)."""


class WarehouseBusy(Exception):
    """The warehouse refused a query for lack of capacity: worth retrying shortly."""


class ModelUnavailable(Exception):
    """The language model endpoint is down."""


class PromptNotFound(LookupError):
    pass


class Forbidden(PermissionError):
    pass


class AnalyticsStore:
    """In-process stand-in for the app database, the warehouse and the model client."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.prompts: dict[str, Prompt] = {}
        self.status: dict[str, str] = {}
        self.temp_tables: dict[str, TempTable] = {}
        self.reports: dict[str, dict[str, Any]] = {}
        self.ui_messages: list[dict[str, Any]] = []
        self.notifications: list[dict[str, Any]] = []
        self.busy_once: set[str] = set()
        self._ids = itertools.count(1)

    def add_prompt(self, prompt: Prompt) -> Prompt:
        with self.lock:
            self.prompts[prompt.id] = prompt
            self.status[prompt.id] = "queued"
        return prompt

    def next_id(self, prefix: str) -> str:
        with self.lock:
            return f"{prefix}_{next(self._ids)}"


class AnalyticsWorkflow(Workflow, name="analytics", max_concurrency=4):
    """Answer an analytics question for an actor, with every side effect reversible."""

    store = AnalyticsStore()

    class Inputs(BaseModel):
        prompt_id: str

    class Context(BaseModel):
        actor: Actor

    @step
    def load_prompt(self, prompt_id: str, ctx: StepContext[Context]) -> Prompt:
        prompt = self.store.prompts.get(prompt_id)
        if prompt is None:
            raise PromptNotFound(f"prompt {prompt_id} does not exist")
        actor = ctx.context.actor
        if prompt.organization_id != actor.organization_id or actor.role is Role.VIEWER:
            raise Forbidden(f"actor {actor.id} may not run analytics on prompt {prompt_id}")
        self.store.status[prompt_id] = "running"
        return prompt

    @step
    def plan_query(self, load_prompt: Prompt) -> QueryPlan:
        topic = load_prompt.text.split("[", 1)[0].strip()
        return QueryPlan(
            sql=f"SELECT region, sum(amount) AS total FROM sales GROUP BY region -- {topic}",
            tables=["sales"],
        )

    @step(max_retries=3, retry_on=(WarehouseBusy,), backoff=0.05)
    def run_query(self, plan_query: QueryPlan, load_prompt: Prompt) -> TempTable:
        if "[warehouse busy]" in load_prompt.text and load_prompt.id not in self.store.busy_once:
            self.store.busy_once.add(load_prompt.id)
            raise WarehouseBusy("warehouse at capacity, try again")
        table = TempTable(
            name=self.store.next_id("tmp_analytics"),
            rows=[
                {"region": "emea", "total": 1200},
                {"region": "amer", "total": 3400},
                {"region": "apac", "total": 900},
            ],
        )
        with self.store.lock:
            self.store.temp_tables[table.name] = table
        return table

    @run_query.undo
    def drop_temp_table(self, table: TempTable) -> None:
        with self.store.lock:
            self.store.temp_tables.pop(table.name, None)

    @step
    async def summarize(self, run_query: TempTable, load_prompt: Prompt) -> Summary:
        if "[llm down]" in load_prompt.text:
            raise ModelUnavailable("model endpoint returned 503")
        best = max(run_query.rows, key=lambda r: r["total"])
        return Summary(text=f"{best['region']} leads with {best['total']}", source="llm")

    @summarize.compensate
    def summarize_without_model(self, error: Exception, run_query: TempTable) -> Any:
        if isinstance(error, ModelUnavailable):
            total = sum(r["total"] for r in run_query.rows)
            return Continue(
                Summary(
                    text=f"total {total} over {len(run_query.rows)} regions", source="statistics"
                )
            )
        return None  # anything else is a real failure

    @step
    def save_report(
        self, summarize: Summary, load_prompt: Prompt, ctx: StepContext[Context]
    ) -> str:
        if "[report store down]" in load_prompt.text:
            raise ConnectionError("report store unreachable")
        report_id = self.store.next_id("report")
        with self.store.lock:
            self.store.reports[report_id] = {
                "prompt_id": load_prompt.id,
                "summary": summarize.text,
                "by": ctx.context.actor.id,
                "attempt": ctx.attempt,
            }
        return report_id

    @save_report.undo
    def delete_report(self, report_id: str) -> None:
        with self.store.lock:
            self.store.reports.pop(report_id, None)

    @step
    def finish(self, save_report: str, load_prompt: Prompt, ctx: StepContext[Context]) -> str:
        self.store.status[load_prompt.id] = "completed"
        if load_prompt.notify:
            ctx.enqueue_after_success(
                NotifyUser.new(
                    {
                        "user_id": ctx.context.actor.id,
                        "report_id": save_report,
                        "prompt_id": load_prompt.id,
                    }
                )
            )
        return save_report


class NotifyUser(Worker, queue="notifications", max_attempts=5, name="analytics.notify_user"):
    class Args(BaseModel):
        user_id: str
        report_id: str
        prompt_id: str

    def perform(self, job: Job[Args]) -> None:
        AnalyticsWorkflow.store.notifications.append(job.args.model_dump())


class AnalyticsAgentWorker(
    WorkflowWorker,
    workflow=AnalyticsWorkflow,
    queue="analytics_agents",
    max_attempts=2,
    name="analytics.agent",
):
    """Runs the saga inside the job; the final failed attempt tells the user."""

    def timeout(self, job: Job[Any]) -> float:
        return 300.0

    def on_final_failure(self, job: Job[Any], error: BaseException) -> None:
        store = AnalyticsWorkflow.store
        prompt_id = job.args.prompt_id
        store.status[prompt_id] = "failed"
        undo_failed = (
            [f.step for f in error.undo_errors] if isinstance(error, WorkflowError) else []
        )
        store.ui_messages.append(
            {
                "prompt_id": prompt_id,
                "event": "processing_failed",
                "error": str(error.error if isinstance(error, WorkflowError) else error),
                "cleaned_up": not undo_failed,
            }
        )


def build_app(url: str | None = None) -> App:
    """An App with the analytics workers registered
    (``jobsaga worker --app jobsaga.demo.analytics:build_app``)."""
    return App(url, workers=[AnalyticsAgentWorker, NotifyUser], workflows=[AnalyticsWorkflow])


EXAMPLE_PROMPTS = [
    ("p-revenue", "weekly revenue by region"),
    ("p-churn", "churn by plan [llm down]"),
    ("p-forecast", "forecast next quarter [report store down]"),
    ("p-cohorts", "cohort retention [warehouse busy]"),
]


EXAMPLE_ACTOR = Actor(id="user-7", organization_id="org-1", role=Role.ANALYST)


def seed(store: AnalyticsStore, organization_id: str = "org-1") -> list[str]:
    """Create the example prompts; returns their ids."""
    for prompt_id, text in EXAMPLE_PROMPTS:
        store.add_prompt(Prompt(id=prompt_id, organization_id=organization_id, text=text))
    return [prompt_id for prompt_id, _ in EXAMPLE_PROMPTS]


class DemoAnalyticsAgentWorker(
    AnalyticsAgentWorker, name="analytics.agent.demo", backoff=lambda attempt: 0.2 * attempt
):
    """The same worker with retries a fraction of a second apart, so a demo settles quickly."""


def demo_jobs(
    store: AnalyticsStore | None = None,
    actor: Actor = EXAMPLE_ACTOR,
    worker: type[AnalyticsAgentWorker] = DemoAnalyticsAgentWorker,
) -> list[JobSpec]:
    """Seed the example prompts and build one analytics job per prompt (for ``jobsaga demo``;
    register ``worker`` and ``NotifyUser`` on the app, and run the ``analytics_agents`` and
    ``notifications`` queues)."""
    seed(store or AnalyticsWorkflow.store, actor.organization_id)
    return [worker.new({"prompt_id": p, "actor": actor}) for p, _ in EXAMPLE_PROMPTS]
