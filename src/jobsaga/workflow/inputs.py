"""What a workflow run is given, checked before any step runs: the workflow class, its inputs
(one rule for ``inputs=[...]``, an ``Inputs`` model and a ``WorkflowWorker``'s args) and the
caller's context. Used by every way into a run (:mod:`.running`) and by composed child runs
(:mod:`.children`), so it stands apart from both."""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, ValidationError, create_model

from ..errors import WorkflowDefinitionError, WorkflowInputError
from ..worker import describe_validation_error, refusing_unknown_keys
from .dsl import Workflow

if TYPE_CHECKING:
    from ..core import AppCore


def known_workflows(app: AppCore) -> dict[str, type[Workflow]]:
    """The workflows an app knows by name: registered ones and those of its workflow workers."""
    candidates: list[Any] = list(app.workflows.values())
    candidates += [getattr(worker, "workflow", None) for worker in app.workers.values()]
    return {
        c.name: c
        for c in candidates
        if isinstance(c, type) and issubclass(c, Workflow) and c.graph is not None
    }


def check_workflow(workflow: Any) -> type[Workflow]:
    if not (isinstance(workflow, type) and issubclass(workflow, Workflow)):
        raise WorkflowDefinitionError(f"{workflow!r} is not a Workflow subclass")
    if workflow.graph is None:
        raise WorkflowDefinitionError(f"workflow {workflow.__qualname__} is abstract")
    return workflow


def validate_inputs(workflow: type[Workflow], inputs: Any) -> dict[str, Any]:
    """The inputs, checked before any step runs. One rule for ``inputs=[...]``, an ``Inputs``
    model and a ``WorkflowWorker``'s args (and a plain worker's ``Args``): a missing input
    and an unknown one are refused, each named, an unknown one with the closest input it may
    misspell, in the same words (``unknown field 'quantty' (did you mean 'quantity'?)``). An
    ``Inputs`` model that sets ``extra`` itself (``"ignore"``, ``"allow"``) has opted out:
    pydantic's own behaviour then. It runs for every run, so the usual case (exactly the
    declared inputs) costs one pass over the names."""
    owner = f"workflow {workflow.name}"
    model = workflow.Inputs
    if model is not None:
        try:
            instance = (
                inputs
                if isinstance(inputs, model)
                else refusing_unknown_keys(model).model_validate(inputs or {})
            )
        except ValidationError as exc:
            raise WorkflowInputError(describe_validation_error(owner, exc, model)) from None
        return {name: getattr(instance, name) for name in type(instance).model_fields}
    if isinstance(inputs, BaseModel):
        inputs = {name: getattr(inputs, name) for name in type(inputs).model_fields}
    if inputs is not None and not isinstance(inputs, Mapping):
        raise WorkflowInputError(f"{owner}: inputs must be a mapping, got {type(inputs).__name__}")
    given = dict(inputs or {})
    names = workflow.input_names
    if len(given) != len(names) or not all(name in given for name in names):
        listed = listed_inputs(workflow)
        try:
            listed.model_validate(given)
        except ValidationError as exc:
            raise WorkflowInputError(describe_validation_error(owner, exc, listed)) from None
    return given


@functools.cache
def listed_inputs(workflow: type[Workflow]) -> type[BaseModel]:
    """``inputs=[...]`` as the model an ``Inputs`` class would be (each input required, any
    value, no other key), so a refusal reads as a model's does. Built only to word one."""
    fields: dict[str, Any] = {name: (Any, ...) for name in workflow.input_names}
    model: type[BaseModel] = create_model(  # type: ignore[call-overload]
        f"{workflow.__qualname__}Inputs", __config__=ConfigDict(extra="forbid"), **fields
    )
    return model


def validate_context(workflow: type[Workflow], context: Any, *, stored: bool = False) -> Any:
    """The caller's context, typed by the ``Context`` model. An unknown key is refused as an
    unknown input is (a ``Context`` that sets ``extra`` has opted out), so a test's
    ``run_workflow`` refuses what the ``WorkflowWorker``'s insert would. A ``stored`` context
    (read back from the run log to roll a run back) was checked when its run started and is
    only re-typed: the log keeps a model's computed fields too."""
    model = workflow.Context
    if model is None or context is None and not model.model_fields:
        return context
    if isinstance(context, model):
        return context
    strict = model if stored else refusing_unknown_keys(model)
    try:
        instance = model.model_validate(context or {})
        # each key that set a field is in model_fields_set: a key left over is unknown
        if (
            strict is not model
            and isinstance(context, Mapping)
            and len(context) > len(instance.model_fields_set)
        ):
            strict.model_validate(context)
    except ValidationError as exc:
        problems = exc
        if strict is not model and isinstance(context, Mapping):
            try:  # the strict model's refusal names every problem, an unknown key too
                strict.model_validate(context)
            except ValidationError as strict_exc:
                problems = strict_exc
        owner = f"workflow {workflow.name} context"
        raise WorkflowInputError(describe_validation_error(owner, problems, model)) from None
    return instance  # the model itself (a strict copy would not compare equal to it)
