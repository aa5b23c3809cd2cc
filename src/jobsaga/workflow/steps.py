"""A workflow's steps as declared: ``@step`` and the functions attached to one (undo,
compensate, guard), with the wiring of their parameters to inputs and other steps.

Kept apart from the workflow class (:mod:`.dsl`) because parts (:mod:`.parts`) are steps
too and the workflow class is built from them: both build on this module, and neither has
to import the other.
"""

from __future__ import annotations

import inspect
import math
import typing
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from pydantic import TypeAdapter, ValidationError

from ..backoff import STEP_BACKOFF, Backoff, delay_seconds, retry_delay
from ..errors import ConfigError, WorkflowDefinitionError

DEFAULT_MAX_RETRIES = 5
DEFAULT_UNDO_RETRIES = 5
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


def parse_source(text: str, where: str) -> tuple[str, tuple[str, ...]]:
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
        source, path = parse_source(mapped.pop(param.name, param.name), f"{what}, {param.name}")
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


def step_delay(backoff: Backoff | None, tries: int) -> float:
    """Seconds before a step's (or an undo's) next try. A curve that returns NaN retries at
    once, as it always has for steps: NaN cannot be written to the run log, and a run that
    cannot be recorded stops."""
    seconds = retry_delay(backoff, tries, default=STEP_BACKOFF)
    return 0.0 if math.isnan(seconds) else seconds
