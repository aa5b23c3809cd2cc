"""One rule for a workflow's inputs, wherever they come from (docs/workflows.md, "Inputs"):
``inputs=[...]``, a pydantic ``Inputs`` model and a ``WorkflowWorker``'s args all refuse an
unknown input and name a missing one, in the words a plain worker's ``Args`` use; a model
that sets ``extra`` itself has opted out. A ``Context`` model follows the same rule."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import BaseModel, ConfigDict, computed_field

from jobsaga import App, StepContext, Workflow, WorkflowWorker, step
from jobsaga.errors import ArgsError, WorkflowInputError
from jobsaga.results import Complete
from jobsaga.testing import perform_job, run_workflow
from jobsaga.workflow.inputs import validate_context

UNKNOWN = "unknown field 'quantty' (did you mean 'quantity'?)"
MISSING = "field 'quantity': Field required"


class Listed(Workflow, inputs=["order_id", "quantity"]):
    @step
    def total(self, order_id: str, quantity: int) -> str:
        return f"{order_id}:{quantity}"


class Modelled(Workflow):
    class Inputs(BaseModel):
        order_id: str
        quantity: int = 1

    @step
    def total(self, order_id: str, quantity: int) -> str:
        return f"{order_id}:{quantity}"


class Required(Workflow):
    class Inputs(BaseModel):
        order_id: str
        quantity: int

    @step
    def total(self, order_id: str, quantity: int) -> str:
        return f"{order_id}:{quantity}"


class ModelledWorker(WorkflowWorker, workflow=Modelled, persist=False):
    pass


class ListedWorker(WorkflowWorker, workflow=Listed, persist=False):
    pass


def runs_recorded(app: App) -> int:
    with app.engine.transaction() as tx:
        return int(tx.execute("SELECT count(*) AS n FROM jobsaga_workflow_runs")[0]["n"])


@pytest.mark.parametrize("workflow", [Listed, Modelled], ids=["inputs-list", "Inputs-model"])
def test_an_unknown_input_is_refused_with_the_input_it_may_misspell(
    app: App, workflow: type[Workflow]
) -> None:
    """Before: ``inputs=[...]`` said ``unknown input(s) ['quantty'] (inputs: [...])`` with no
    hint, and an ``Inputs`` model silently dropped the key."""
    with pytest.raises(WorkflowInputError) as refused:
        run_workflow(workflow, {"order_id": "o1", "quantity": 2, "quantty": 3}, app=app)
    assert str(refused.value) == f"workflow {workflow.name}: invalid args: {UNKNOWN}"
    assert runs_recorded(app) == 0


@pytest.mark.parametrize("workflow", [Listed, Required], ids=["inputs-list", "Inputs-model"])
def test_a_missing_input_is_named_in_the_same_words(app: App, workflow: type[Workflow]) -> None:
    """Before: ``inputs=[...]`` said ``missing input(s) ['quantity']``, an ``Inputs`` model
    ``field 'quantity': Field required``."""
    with pytest.raises(WorkflowInputError) as refused:
        run_workflow(workflow, {"order_id": "o1"}, app=app)
    assert str(refused.value) == f"workflow {workflow.name}: invalid args: {MISSING}"
    assert runs_recorded(app) == 0


def test_every_problem_is_named_at_once() -> None:
    with pytest.raises(WorkflowInputError) as refused:
        run_workflow(Listed, {"quantty": 3})
    message = str(refused.value)
    assert "field 'order_id': Field required" in message
    assert "field 'quantity': Field required" in message
    assert UNKNOWN in message


def test_a_workflow_worker_refuses_an_unknown_input_in_the_same_words() -> None:
    """Settled before this rule (the worker's Args forbid extra keys): checked here so the
    three entry points stay worded alike."""
    for worker in (ListedWorker, ModelledWorker):
        with pytest.raises(ArgsError) as refused:
            perform_job(worker, {"order_id": "o1", "quantity": 2, "quantty": 3})
        assert str(refused.value).endswith(f": invalid args: {UNKNOWN}")
    assert isinstance(perform_job(ModelledWorker, {"order_id": "o1", "quantity": 2}), Complete)


def test_the_exact_inputs_run(app: App) -> None:
    assert run_workflow(Listed, {"order_id": "o1", "quantity": 2}, app=app).value == "o1:2"
    assert run_workflow(Modelled, {"order_id": "o1"}, app=app).value == "o1:1"
    assert run_workflow(Modelled, Modelled.Inputs(order_id="o2", quantity=5)).value == "o2:5"


class Ignoring(Workflow):
    class Inputs(BaseModel):
        model_config = ConfigDict(extra="ignore")  # the user's explicit choice
        order_id: str

    @step
    def echo(self, order_id: str, ctx: StepContext[Any]) -> dict[str, Any]:
        return dict(ctx.inputs)


class Allowing(Workflow):
    class Inputs(BaseModel):
        model_config = ConfigDict(extra="allow")
        order_id: str

    @step
    def echo(self, order_id: str, ctx: StepContext[Any]) -> dict[str, Any]:
        return dict(ctx.inputs)


@pytest.mark.parametrize("workflow", [Ignoring, Allowing], ids=["ignore", "allow"])
def test_an_inputs_model_that_sets_extra_has_opted_out(workflow: type[Workflow]) -> None:
    """A guard for the opt-out (it passed before too: pydantic's own behaviour). The extra
    key is no input a step can name, so it is not among the run's inputs either way."""
    result = run_workflow(workflow, {"order_id": "o1", "note": "kept by pydantic"})
    assert result.value == {"order_id": "o1"}


class Actor(BaseModel):
    id: str
    role: str = "member"


class WithContext(Workflow, inputs=["order_id"]):
    class Context(BaseModel):
        actor: Actor

    @step
    def who(self, order_id: str, ctx: StepContext[Any]) -> str:
        assert type(ctx.context) is WithContext.Context  # the user's own model, not a copy
        return f"{order_id} by {ctx.actor.id}"


class FreeContext(Workflow, inputs=["order_id"]):
    class Context(BaseModel):
        model_config = ConfigDict(extra="allow")
        actor: Actor

    @step
    def who(self, order_id: str, ctx: StepContext[Any]) -> Any:
        return ctx.context.model_extra


def test_an_unknown_context_key_is_refused_as_the_worker_refuses_it(app: App) -> None:
    """Before: the Context model silently dropped ``actr`` and asked for ``actor``, or, with
    ``actor`` given, dropped the misspelt key without a word."""
    with pytest.raises(WorkflowInputError) as refused:
        run_workflow(WithContext, {"order_id": "o1"}, {"actor": {"id": "u1"}, "dryrun": 1}, app=app)
    assert str(refused.value) == (
        f"workflow {WithContext.name} context: invalid args: unknown field 'dryrun' (fields: actor)"
    )
    with pytest.raises(
        WorkflowInputError, match=r"unknown field 'actr' \(did you mean 'actor'\?\)"
    ):
        run_workflow(WithContext, {"order_id": "o1"}, {"actr": {"id": "u1"}}, app=app)
    assert runs_recorded(app) == 0
    done = run_workflow(WithContext, {"order_id": "o1"}, {"actor": {"id": "u1"}}, app=app)
    assert done.value == "o1 by u1"
    free = run_workflow(FreeContext, {"order_id": "o1"}, {"actor": {"id": "u1"}, "note": 2})
    assert free.value == {"note": 2}


class Computed(Workflow, inputs=["order_id"]):
    class Context(BaseModel):
        first: str
        last: str

        @computed_field  # type: ignore[prop-decorator]
        @property
        def full(self) -> str:
            return f"{self.first} {self.last}"

    @step
    def a(self, order_id: str) -> str:
        return order_id


def test_a_stored_context_is_retyped_not_refused() -> None:
    """The run log keeps a model's computed fields; rolling a run back re-reads that
    context, which was checked when the run started."""
    stored = Computed.Context(first="Ada", last="L").model_dump()
    assert stored == {"first": "Ada", "last": "L", "full": "Ada L"}
    assert validate_context(Computed, stored, stored=True).full == "Ada L"
    with pytest.raises(WorkflowInputError, match="unknown field 'full'"):
        validate_context(Computed, stored)
