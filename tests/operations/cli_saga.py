"""The app ``jobsaga.toml`` names in the CLI configuration tests: a worker for the crontab and a
one-step saga for the run log (the URL comes from the configuration)."""

from __future__ import annotations

from typing import Any

from jobsaga import App, Job, Workflow, WorkflowWorker, step
from jobsaga import Worker as BaseWorker


class Nightly(BaseWorker, queue="default", name="ops.nightly"):
    def perform(self, job: Job[Any]) -> None:
        return None


class Greet(Workflow, name="ops.greet", inputs=["who"]):
    @step
    def hello(self, who: str) -> str:
        return f"hello {who}"


class GreetWorker(WorkflowWorker, workflow=Greet, name="ops.greet_worker"):
    pass


def app() -> App:
    """A fresh App per load, so each CLI invocation points it at its own URL."""
    return App(workers=[Nightly, GreetWorker])
