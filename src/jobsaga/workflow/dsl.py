"""The workflow DSL: a class of ``@step`` methods whose parameter names wire the DAG.

::

    class Checkout(Workflow, inputs=["order_id"], max_concurrency=4):
        @step
        def reserve(self, order_id: str, ctx: StepContext) -> Reservation: ...

        @reserve.undo
        def release(self, reservation: Reservation, ctx: StepContext) -> None: ...

        @step(max_retries=3, retry_on=(TimeoutError,))
        def charge(self, reserve: Reservation) -> Receipt: ...

A parameter names a workflow input or another step (it receives that step's result); ``ctx``
(or any parameter annotated ``StepContext``) receives the step context. ``args=`` maps a
parameter to a sub-field of a result (``{"email": "load_user.email"}``) and ``wait_for=``
adds ordering-only dependencies (Reactor's ``wait_for``). The DAG is built and checked when
the class statement runs, so a typo is an import-time error rather than a 3 a.m. failure.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, ValidationError, field_validator

from ..errors import WorkflowDefinitionError, WorkflowOutsideJobError
from ..worker import describe_option_error
from .middleware import Middleware
from .steps import (
    CONTEXT_PARAM,
    DEFAULT_MAX_RETRIES,
    DEFAULT_UNDO_RETRIES,
    Argument,
    Hook,
    StepDef,
    parse_source,
    step,
    wiring,
)

__all__ = [
    "CONTEXT_PARAM",
    "DEFAULT_MAX_RETRIES",
    "DEFAULT_UNDO_RETRIES",
    "Argument",
    "Hook",
    "StepDef",
    "Workflow",
    "WorkflowOptions",
    "outside_job_error",
    "parse_source",
    "step",
    "wiring",
]
"""The step names are :mod:`.steps`'s, imported here too: the DSL is one place to import
from."""

DEFAULT_MAX_CONCURRENCY = 8
DEFAULT_HALT_TIMEOUT = 30.0


class WorkflowOptions(BaseModel):
    """Class options of a workflow; unknown keys are errors."""

    model_config = ConfigDict(frozen=True, extra="forbid", arbitrary_types_allowed=True)

    name: str | None = None
    inputs: tuple[str, ...] = ()
    returns: str | None = None
    max_concurrency: int = DEFAULT_MAX_CONCURRENCY
    abstract: bool = False
    halt_timeout: float = DEFAULT_HALT_TIMEOUT
    """Seconds a halting run waits for its steps under way (then cancels them: they run
    again when the run is resumed)."""
    timeout: float | None = None
    """Seconds a run may take in one attempt; then ``on_timeout`` says what happens."""
    on_timeout: Literal["fail", "halt"] = "fail"
    middleware: tuple[Middleware, ...] = ()
    """Called as each run goes (see :mod:`.middleware`); a subclass inherits its base's,
    unless it gives its own."""

    @field_validator("halt_timeout", "timeout")
    @classmethod
    def _seconds(cls, v: float | None) -> float | None:
        if v is not None and not (0 <= v < math.inf):
            raise WorkflowDefinitionError("halt_timeout and timeout are seconds >= 0")
        return v

    @field_validator("middleware", mode="before")
    @classmethod
    def _middleware(cls, v: Any) -> Any:
        items = [v] if isinstance(v, (Middleware, type)) else list(v)
        for item in items:
            if isinstance(item, type):
                raise WorkflowDefinitionError(
                    f"middleware takes instances: pass {item.__name__}(), not {item.__name__}"
                )
            if not isinstance(item, Middleware):
                raise WorkflowDefinitionError(
                    f"middleware takes jobsaga.workflow.Middleware instances, got {item!r}"
                )
        return tuple(items)

    @field_validator("max_concurrency")
    @classmethod
    def _limit(cls, v: int) -> int:
        if v < 1:
            raise WorkflowDefinitionError("max_concurrency must be >= 1")
        return v

    @field_validator("inputs", mode="before")
    @classmethod
    def _inputs(cls, v: Any) -> Any:
        if isinstance(v, str):
            raise WorkflowDefinitionError("inputs takes a list of names, e.g. inputs=['order_id']")
        return v


RESERVED = frozenset(
    {
        "name",
        "options",
        "Inputs",
        "Context",
        "steps",
        "input_names",
        "graph",
        "result_step",
        "mermaid",
        "run",
    }
)
"""Attributes of every workflow class, which a step method must not shadow."""


def _is_part(value: Any) -> bool:
    """A part's class (a nested Map, Switch, Group...), which is a step of the workflow."""
    return isinstance(value, type) and getattr(value, "part", None) is not None


class _StepNamespace(dict[str, Any]):
    """A class body namespace that refuses a second step under a name already taken."""

    def __setitem__(self, key: str, value: Any) -> None:
        if isinstance(value, StepDef) or _is_part(value):
            if isinstance(self.get(key), StepDef) or _is_part(self.get(key)):
                raise WorkflowDefinitionError(f"duplicate step {key!r} in one workflow class")
            if key in RESERVED:
                raise WorkflowDefinitionError(
                    f"a step method cannot be called {key!r} (a Workflow attribute); rename "
                    f"the method and keep the step name with @step(name={key!r})"
                )
        super().__setitem__(key, value)


class _WorkflowMeta(type):
    @classmethod
    def __prepare__(metacls, name: str, bases: tuple[type, ...], /, **kwds: Any) -> Any:
        return _StepNamespace()

    def __new__(
        metacls, cls_name: str, bases: tuple[type, ...], namespace: dict[str, Any], /, **kwds: Any
    ) -> Any:
        return super().__new__(metacls, cls_name, bases, dict(namespace), **kwds)


class Workflow(metaclass=_WorkflowMeta):
    """Base class of every workflow. Options: ``name``, ``inputs``, ``returns``,
    ``max_concurrency``, ``abstract``, ``middleware``. Inputs may instead be a nested pydantic ``Inputs``
    model, and the caller's context a nested ``Context`` model (e.g. holding the actor)."""

    name: ClassVar[str] = "jobsaga.Workflow"
    options: ClassVar[WorkflowOptions] = WorkflowOptions(abstract=True)
    Inputs: ClassVar[type[BaseModel] | None] = None
    Context: ClassVar[type[BaseModel] | None] = None
    steps: ClassVar[dict[str, StepDef]] = {}
    input_names: ClassVar[tuple[str, ...]] = ()
    graph: ClassVar[Any] = None

    def __init_subclass__(cls, **options: Any) -> None:
        super().__init_subclass__()
        from .graph import WorkflowGraph

        inherited = getattr(cls, "options", WorkflowOptions())
        merged = {
            **inherited.model_dump(exclude={"name", "abstract", "returns"}),
            "abstract": False,
            **options,
        }
        try:
            cls.options = WorkflowOptions(**merged)
        except ValidationError as exc:
            owner = f"workflow {cls.__qualname__}"
            known = [name for name in WorkflowOptions.model_fields if name != "abstract"]
            raise WorkflowDefinitionError(describe_option_error(owner, exc, known)) from None
        cls.name = cls.options.name or f"{cls.__module__}.{cls.__qualname__}"
        for attr in ("Inputs", "Context"):
            model = cls.__dict__.get(attr)
            if model is not None and not (isinstance(model, type) and issubclass(model, BaseModel)):
                raise WorkflowDefinitionError(
                    f"workflow {cls.__qualname__}: {attr} must be a pydantic BaseModel"
                )
        cls.steps = cls._collect_steps()
        if cls.Inputs is not None and cls.options.inputs:
            raise WorkflowDefinitionError(
                f"workflow {cls.__qualname__}: give inputs= or an Inputs model, not both"
            )
        cls.input_names = (
            tuple(cls.Inputs.model_fields) if cls.Inputs is not None else cls.options.inputs
        )
        if cls.options.abstract:
            return
        from .parts import PartStep

        visible = tuple(dict.fromkeys((*cls.input_names, *cls.steps)))
        for spec in cls.steps.values():
            if isinstance(spec, PartStep):  # a typo inside a part is named where it is
                spec.part.build(visible, WorkflowGraph.build)
        cls.graph = WorkflowGraph.build(cls.__qualname__, cls.steps, cls.input_names)
        if cls.options.returns is not None and cls.options.returns not in cls.steps:
            raise WorkflowDefinitionError(
                f"workflow {cls.__qualname__}: returns={cls.options.returns!r} is not a step "
                f"(steps: {', '.join(cls.steps)})"
            )

    @classmethod
    def _collect_steps(cls) -> dict[str, StepDef]:
        steps: dict[str, StepDef] = {}
        for base in reversed(cls.__mro__[1:]):
            steps.update(getattr(base, "steps", {}) if issubclass(base, Workflow) else {})
        from .parts import Case, NamedLater, Part

        own: dict[str, StepDef] = {}
        for attr, value in cls.__dict__.items():
            if isinstance(value, NamedLater):
                value.rename(attr)
            if isinstance(value, type) and issubclass(value, Case) and value.part is not None:
                raise WorkflowDefinitionError(
                    f"workflow {cls.__qualname__}: case {attr!r} belongs in a Switch"
                )
            if isinstance(value, type) and issubclass(value, Part) and value.part is not None:
                value = value.part.node
            if isinstance(value, StepDef):
                if value.name in own:
                    raise WorkflowDefinitionError(
                        f"workflow {cls.__qualname__}: duplicate step {value.name!r} "
                        f"(attributes {own[value.name].fn.__name__!r} and {attr!r})"
                    )
                own[value.name] = value
        for name, value in own.items():
            steps[name] = value
        return steps

    @classmethod
    def result_step(cls) -> str:
        """The step whose result is the workflow's result: ``returns=``, else the last declared."""
        return cls.options.returns or list(cls.steps)[-1]

    @classmethod
    def mermaid(cls) -> str:
        """The DAG as Mermaid flowchart text."""
        if cls.graph is None:
            raise WorkflowDefinitionError(f"{cls.__qualname__} is abstract: it has no DAG")
        text: str = cls.graph.mermaid()
        return text

    @classmethod
    def run(cls, *args: Any, **kwargs: Any) -> Any:
        """Refused: workflows run inside jobs. See the error message for the two right ways."""
        raise outside_job_error(cls)


def outside_job_error(workflow: type[Workflow]) -> WorkflowOutsideJobError:
    return WorkflowOutsideJobError(
        f"workflow {workflow.name} cannot run outside a job: a saga started from a request "
        "handler dies with it and cannot be retried or rescued. Declare "
        f"`class MyWorker(WorkflowWorker, workflow={workflow.__qualname__}, queue=...)` and "
        "insert a job; in tests use jobsaga.testing.run_workflow("
        f"{workflow.__qualname__}, inputs, context, app=app)."
    )
