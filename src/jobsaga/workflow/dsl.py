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

import inspect
import math
import typing
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, TypeAdapter, ValidationError, field_validator

from ..backoff import Backoff, delay_seconds
from ..errors import ConfigError, WorkflowDefinitionError, WorkflowOutsideJobError
from ..worker import describe_option_error
from .middleware import Middleware

DEFAULT_MAX_RETRIES = 5
DEFAULT_UNDO_RETRIES = 5
DEFAULT_MAX_CONCURRENCY = 8
DEFAULT_HALT_TIMEOUT = 30.0
CONTEXT_PARAM = "ctx"


@dataclass(frozen=True, slots=True)
class Argument:
    """One parameter of a step (or guard): where its value comes from."""

    param: str
    source: str
    """A workflow input or a step name."""
    path: tuple[str, ...] = ()
    """Keys or attributes to follow into the source value (``load_user.email``)."""


def _is_context_param(param: inspect.Parameter) -> bool:
    if param.name == CONTEXT_PARAM:
        return True
    annotation = param.annotation
    if isinstance(annotation, str):
        return annotation.split("[", 1)[0].rsplit(".", 1)[-1] == "StepContext"
    origin = typing.get_origin(annotation) or annotation
    return getattr(origin, "__name__", None) == "StepContext"


def _signature(fn: Callable[..., Any], what: str) -> list[inspect.Parameter]:
    params = list(inspect.signature(fn).parameters.values())
    if params and params[0].name == "self":
        params = params[1:]
    for param in params:
        if param.kind in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD):
            raise WorkflowDefinitionError(
                f"{what}: *args/**kwargs cannot wire a DAG; name each input or step you need"
            )
        if param.kind is inspect.Parameter.POSITIONAL_ONLY:
            raise WorkflowDefinitionError(f"{what}: parameter {param.name!r} is positional-only")
    return params


def _parse_source(text: str, where: str) -> tuple[str, tuple[str, ...]]:
    parts = tuple(text.split("."))
    if not all(part.isidentifier() or part.isdigit() for part in parts):
        raise WorkflowDefinitionError(f"{where}: {text!r} is not 'name' or 'name.field.sub'")
    return parts[0], parts[1:]


def wiring(
    fn: Callable[..., Any], what: str, args: Mapping[str, str] | None = None
) -> tuple[tuple[Argument, ...], str | None]:
    """The arguments a function asks for, and the name of its context parameter (if any)."""
    arguments: list[Argument] = []
    context: str | None = None
    mapped = dict(args or {})
    for param in _signature(fn, what):
        if param.name not in mapped and _is_context_param(param):
            context = param.name
            continue
        source, path = _parse_source(mapped.pop(param.name, param.name), f"{what}, {param.name}")
        arguments.append(Argument(param.name, source, path))
    if mapped:
        raise WorkflowDefinitionError(
            f"{what}: args= names parameters the function does not have: {sorted(mapped)}"
        )
    return tuple(arguments), context


@dataclass(frozen=True, slots=True)
class Hook:
    """An undo, compensate or guard method attached to a step (so it is not itself a step)."""

    kind: str
    fn: Callable[..., Any]
    step: StepDef

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.fn(*args, **kwargs)

    def __get__(self, instance: Any, owner: type | None = None) -> Any:
        # On an instance, a hook is its plain method too (callable in a unit test).
        return self if instance is None else self.fn.__get__(instance, owner)


class StepDef:
    """A step as declared; the workflow class turns these into its DAG."""

    composite: ClassVar[bool] = False
    """True for a part or a step that runs a workflow: the executor runs those itself."""
    holds_slot: ClassVar[bool] = True
    """False for a step whose work is a child run's (compose, recurse): it takes no slot
    of ``max_concurrency`` while its child's steps do."""

    def __init__(
        self,
        fn: Callable[..., Any],
        *,
        name: str | None = None,
        max_retries: int = DEFAULT_MAX_RETRIES,
        retry_on: Iterable[type[BaseException]] = (),
        backoff: Backoff | None = None,
        undo_retries: int = DEFAULT_UNDO_RETRIES,
        wait_for: Iterable[str] = (),
        args: Mapping[str, str] | None = None,
        where: Callable[..., Any] | None = None,
        timeout: float | None = None,
        on_timeout: str = "fail",
    ) -> None:
        if not callable(fn):
            raise WorkflowDefinitionError(f"@step decorates a function, got {fn!r}")
        self.fn = fn
        self.name = name or fn.__name__
        where_label = f"step {self.name!r}"
        if not self.name.isidentifier():
            raise WorkflowDefinitionError(f"{where_label}: name must be an identifier")
        for option, value in (("max_retries", max_retries), ("undo_retries", undo_retries)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise WorkflowDefinitionError(f"{where_label}: {option} must be an int >= 0")
        self.max_retries = max_retries
        self.undo_retries = undo_retries
        if timeout is not None and (
            isinstance(timeout, bool)
            or not isinstance(timeout, (int, float))
            or not 0 < timeout < math.inf
        ):
            raise WorkflowDefinitionError(f"{where_label}: timeout must be seconds > 0")
        if on_timeout not in ("fail", "halt"):
            raise WorkflowDefinitionError(
                f"{where_label}: on_timeout is 'fail' (StepTimeout, which retry_on may "
                f"retry) or 'halt' (the run halts; the step runs again on resume)"
            )
        self.timeout = float(timeout) if timeout is not None else None
        self.on_timeout = on_timeout
        self.retry_on = tuple(retry_on)
        for kind in self.retry_on:
            if not (isinstance(kind, type) and issubclass(kind, BaseException)):
                raise WorkflowDefinitionError(
                    f"{where_label}: retry_on takes exception classes, got {kind!r}"
                )
        if backoff is not None and not callable(backoff):
            try:  # the same delay before every retry
                delay_seconds(backoff, "backoff")
            except ConfigError:
                raise WorkflowDefinitionError(
                    f"{where_label}: backoff must be a delay (seconds or a timedelta), a "
                    f"callable (try -> seconds) or a tenacity wait, got {backoff!r}"
                ) from None
        self.backoff = backoff
        self.wait_for = tuple(wait_for)
        if isinstance(wait_for, str):
            raise WorkflowDefinitionError(f"{where_label}: wait_for takes a list of step names")
        self.is_async = inspect.iscoroutinefunction(fn)
        self.arguments, self.context_param = wiring(fn, where_label, args)
        self.undo_fn: Callable[..., Any] | None = None
        self.hook_wiring: dict[str, tuple[str | None, tuple[str, ...]]] = {}
        """For undo and compensate: their context parameter and the step arguments they reuse."""
        self.compensate_fn: Callable[..., Any] | None = None
        self.where_fn: Callable[..., Any] | None = None
        self.where_arguments: tuple[Argument, ...] = ()
        self.where_context: str | None = None
        self.where_is_method = False
        if where is not None:
            self._set_where(where, is_method=False)
        self._result_adapter: TypeAdapter[Any] | None | bool = False

    def __repr__(self) -> str:
        return f"<step {self.name}>"

    def __get__(self, instance: Any, owner: type | None = None) -> Any:
        # On an instance, a step is its plain method, so it can be unit-tested directly.
        return self if instance is None else self.fn.__get__(instance, owner)

    # --- hooks ----------------------------------------------------------------------------

    def _check_hook(self, fn: Callable[..., Any], kind: str, first: str) -> None:
        label = f"{kind} of step {self.name!r}"
        params = _signature(fn, label)
        if not params:
            raise WorkflowDefinitionError(f"{label}: its first parameter receives the {first}")
        own = {a.param for a in self.arguments}
        context: str | None = None
        shared: list[str] = []
        for param in params[1:]:
            if _is_context_param(param) and param.name not in own:
                context = param.name
            elif param.name in own:
                shared.append(param.name)
            else:
                raise WorkflowDefinitionError(
                    f"{label}: parameter {param.name!r} is neither ctx nor one of the step's "
                    f"own arguments {sorted(own)}"
                )
        self.hook_wiring[kind] = (context, tuple(shared))

    def undo(self, fn: Callable[..., Any]) -> Hook:
        """Declare how to reverse this step after it succeeded: ``(self, result, ctx)``."""
        if self.undo_fn is not None:
            raise WorkflowDefinitionError(f"step {self.name!r} has two undo functions")
        self._check_hook(fn, "undo", "step's result")
        self.undo_fn = fn
        return Hook("undo", fn, self)

    def compensate(self, fn: Callable[..., Any]) -> Hook:
        """Declare what to do when this step fails: ``(self, error, ctx)`` returning
        ``Retry()``, ``Continue(value)`` or ``None`` (the failure stands)."""
        if self.compensate_fn is not None:
            raise WorkflowDefinitionError(f"step {self.name!r} has two compensate functions")
        self._check_hook(fn, "compensate", "error")
        self.compensate_fn = fn
        return Hook("compensate", fn, self)

    def where(self, fn: Callable[..., Any]) -> Hook:
        """Guard the step: its parameters are wired like a step's; false skips the step."""
        self._set_where(fn, is_method=True)
        return Hook("where", fn, self)

    def _set_where(self, fn: Callable[..., Any], *, is_method: bool) -> None:
        if self.where_fn is not None:
            raise WorkflowDefinitionError(f"step {self.name!r} has two guards")
        params = list(inspect.signature(fn).parameters)
        self.where_is_method = is_method or bool(params and params[0] == "self")
        self.where_fn = fn
        self.where_arguments, self.where_context = wiring(fn, f"guard of step {self.name!r}")

    # --- results --------------------------------------------------------------------------

    def restore(self, value: Any) -> Any:
        """A result read back from the run log, re-typed by the step's return annotation."""
        if self._result_adapter is False:
            adapter: TypeAdapter[Any] | None = None
            try:
                hint = typing.get_type_hints(self.fn).get("return")
                if hint is not None and hint is not Any and hint is not type(None):
                    adapter = TypeAdapter(hint)
            except Exception:  # unresolvable annotation: keep the JSON form
                adapter = None
            self._result_adapter = adapter
        if self._result_adapter is None or value is None:
            return value
        try:
            return self._result_adapter.validate_python(value)  # type: ignore[union-attr]
        except ValidationError:
            return value


@typing.overload
def step(
    fn: Callable[..., Any],
    /,
    *,
    name: str | None = None,
    max_retries: int = DEFAULT_MAX_RETRIES,
    retry_on: Iterable[type[BaseException]] = (),
    backoff: Backoff | None = None,
    undo_retries: int = DEFAULT_UNDO_RETRIES,
    wait_for: Iterable[str] = (),
    args: Mapping[str, str] | None = None,
    where: Callable[..., Any] | None = None,
    timeout: float | None = None,
    on_timeout: str = "fail",
) -> StepDef: ...


@typing.overload
def step(
    *,
    name: str | None = None,
    max_retries: int = DEFAULT_MAX_RETRIES,
    retry_on: Iterable[type[BaseException]] = (),
    backoff: Backoff | None = None,
    undo_retries: int = DEFAULT_UNDO_RETRIES,
    wait_for: Iterable[str] = (),
    args: Mapping[str, str] | None = None,
    where: Callable[..., Any] | None = None,
    timeout: float | None = None,
    on_timeout: str = "fail",
) -> Callable[[Callable[..., Any]], StepDef]: ...


def step(
    fn: Callable[..., Any] | None = None,
    *,
    name: str | None = None,
    max_retries: int = DEFAULT_MAX_RETRIES,
    retry_on: Iterable[type[BaseException]] = (),
    backoff: Backoff | None = None,
    undo_retries: int = DEFAULT_UNDO_RETRIES,
    wait_for: Iterable[str] = (),
    args: Mapping[str, str] | None = None,
    where: Callable[..., Any] | None = None,
    timeout: float | None = None,
    on_timeout: str = "fail",
) -> StepDef | Callable[[Callable[..., Any]], StepDef]:
    """Declare a workflow step (``@step`` or ``@step(max_retries=3, ...)``)."""

    def build(func: Callable[..., Any]) -> StepDef:
        return StepDef(
            func,
            name=name,
            max_retries=max_retries,
            retry_on=retry_on,
            backoff=backoff,
            undo_retries=undo_retries,
            wait_for=wait_for,
            args=args,
            where=where,
            timeout=timeout,
            on_timeout=on_timeout,
        )

    return build(fn) if fn is not None else build


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


class _StepNamespace(dict[str, Any]):
    """A class body namespace that refuses a second step under a name already taken."""

    def __setitem__(self, key: str, value: Any) -> None:
        if isinstance(value, StepDef):
            if isinstance(self.get(key), StepDef):
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
                spec.part.build(visible)
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
            if (
                isinstance(value, type)
                and issubclass(value, Part)
                and not issubclass(value, Case)
                and value.part is not None
            ):
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
