"""Composition: parts of a workflow that hold steps of their own (Reactor's map, switch,
group and around), and steps that run whole workflows (compose, recurse) or gather values
(collect).

::

    class Checkout(Workflow, inputs=["order_ids", "method"]):
        @step
        def load(self, order_ids: list[str]) -> list[Order]: ...

        class charge_each(Map, over="load", element="order", max_concurrency=4):
            @step
            def reserve(self, order: Order, method: str) -> Reservation: ...  # outer input

            @reserve.undo
            def release(self, reservation: Reservation) -> None: ...

        class pay(Switch):
            class card(Case, when=lambda method: method == "card"):
                @step
                def charge_card(self, charge_each: list[Reservation]) -> Receipt: ...

            class otherwise(Default):
                @step
                def invoice(self, charge_each: list[Reservation]) -> Receipt: ...

        shipment = compose(ShipOrder, inputs={"receipt": "pay"})

A part is a nested class: its ``@step`` methods (and nested parts) form a scope of their own,
wired by parameter names like a workflow's, that also sees every name of the scopes around
it (inputs and steps). Outside, the part is one step of its scope, named by the class, whose
result is its body's result (``returns=``, by default the last declared step). The part
starts once everything its body needs from outside has completed, so a nested step never
waits on an outer step the part could not see finish.

At run time each part's steps become steps of the same run, named by where they sit:
``charge_each[3].reserve`` (the map's element 3), ``pay.card.charge_card`` (the case the
switch chose), ``in_tx.debit`` (a group). So they are recorded, retried, compensated and, when
a later step fails, undone exactly as any step: every completed step of every part once,
newest first. ``compose`` and ``recurse`` run other workflows as child runs of their own
(linked to this run in the log) and undo them, newest first, when this run rolls back.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from ..errors import WorkflowDefinitionError
from .steps import Argument, StepDef, parse_source, wiring

if TYPE_CHECKING:
    from .dsl import Workflow

GraphBuilder = Callable[..., Any]
"""``WorkflowGraph.build``: (owner, steps, names around them, part=True) -> the DAG."""

DEFAULT_BATCH_SIZE = 100
ELEMENT = "element"


@dataclass(frozen=True, slots=True)
class Wired:
    """A function whose parameters are wired like a step's (a predicate, an ``around``, a
    ``before`` or ``after`` hook): its arguments and context parameter."""

    fn: Callable[..., Any]
    arguments: tuple[Argument, ...]
    context_param: str | None
    is_method: bool
    first: str | None = None
    """The parameter that receives a value the executor hands over (``after``: the result)."""

    @classmethod
    def of(cls, fn: Callable[..., Any], what: str, *, first: str | None = None) -> Wired:
        if not callable(fn):
            raise WorkflowDefinitionError(f"{what} must be callable, got {fn!r}")
        params = list(inspect.signature(fn).parameters)
        is_method = bool(params and params[0] == "self")
        target = fn
        arguments, context = wiring(target, what)
        received: str | None = None
        if first is not None:
            if not arguments:
                raise WorkflowDefinitionError(f"{what}: its first parameter receives the {first}")
            received = arguments[0].param
            arguments = arguments[1:]
        return cls(fn, arguments, context, is_method, received)


class Scope:
    """The steps of a workflow or of a part's body, and what its body needs from outside."""

    def __init__(self, owner: str, steps: dict[str, StepDef], returns: str | None) -> None:
        if not steps:
            raise WorkflowDefinitionError(f"{owner} has no steps: declare at least one @step")
        if returns is not None and returns not in steps:
            raise WorkflowDefinitionError(
                f"{owner}: returns={returns!r} is not one of its steps ({', '.join(steps)})"
            )
        self.owner = owner
        self.steps = steps
        self.result = returns or list(steps)[-1]
        self.graph: Any = None
        """Its DAG (a ``WorkflowGraph``), built once the names around it are known."""

    def outer_names(self, local: frozenset[str] = frozenset()) -> set[str]:
        """Every name the scope's steps (and nested parts) use that it does not define."""
        used: set[str] = set()
        for spec in self.steps.values():
            used.update(a.source for a in spec.arguments)
            used.update(a.source for a in spec.where_arguments)
            used.update(spec.wait_for)
        return used - set(self.steps) - local

    def build(self, outside: tuple[str, ...], build_graph: GraphBuilder) -> None:
        """Check the body against the names visible around it and build its DAG (with the
        workflow's builder, ``WorkflowGraph.build``, handed down: parts sit below it)."""
        self.graph = build_graph(self.owner, self.steps, outside, part=True)
        for spec in self.steps.values():
            if isinstance(spec, PartStep):
                spec.part.build(tuple(dict.fromkeys((*outside, *self.steps))), build_graph)


def collect_body(owner: str, namespace: Mapping[str, Any]) -> dict[str, StepDef]:
    """The steps of a class body: ``@step`` methods, nested parts, compose/recurse/collect."""
    steps: dict[str, StepDef] = {}
    for attr, value in namespace.items():
        spec: StepDef | None = None
        if isinstance(value, StepDef):
            spec = value
            if isinstance(value, NamedLater):
                value.rename(attr)
        elif isinstance(value, type) and issubclass(value, Case) and value.part is not None:
            raise WorkflowDefinitionError(f"{owner}: case {attr!r} belongs in a Switch")
        elif isinstance(value, type) and issubclass(value, Part) and value.part is not None:
            spec = value.part.node
        if spec is None:
            continue
        if spec.name in steps:
            raise WorkflowDefinitionError(f"{owner}: two steps named {spec.name!r}")
        steps[spec.name] = spec
    return steps


class PartDef:
    """A part as declared: its kind, its options and its body (or cases)."""

    kind: ClassVar[str] = "part"

    def __init__(self, name: str, owner: str) -> None:
        self.name = name
        self.owner = owner
        self.node = PartStep(self)

    def own_wired(self) -> list[Wired]:
        """The part's own functions wired to outer names (predicates, hooks)."""
        return []

    def restore(self, value: Any) -> Any:
        """The part's result read back from the run log, re-typed as its body's result."""
        return value

    def own_arguments(self) -> list[Argument]:
        return [a for _, a in self.own_named()]

    def own_named(self) -> list[tuple[str, Argument]]:
        """The part's own arguments, each with where it is declared (for messages)."""
        return [("its hooks", a) for wired in self.own_wired() for a in wired.arguments]

    def bodies(self) -> list[Scope]:
        return []

    def local_names(self) -> frozenset[str]:
        """Names a body sees that come from the part itself (a map's element)."""
        return frozenset()

    def outer_names(self) -> set[str]:
        names = {a.source for a in self.own_arguments()}
        for body in self.bodies():
            names |= body.outer_names(self.local_names())
        return names

    def build(self, outside: tuple[str, ...], build_graph: GraphBuilder) -> None:
        from ..suggest import did_you_mean

        for what, argument in self.own_named():
            if argument.source not in outside:
                hint = did_you_mean(argument.source, outside)
                raise WorkflowDefinitionError(
                    f"{self.owner}, {what}: {argument.param!r} names {argument.source!r}, "
                    "which is neither an input nor a step around it"
                    + (f"; {hint}" if hint else f" (names around it: {list(outside)})")
                )
        for body in self.bodies():
            body.build(tuple(dict.fromkeys((*outside, *self.local_names()))), build_graph)


class PartStep(StepDef):
    """A part seen from its scope: one step whose dependencies are everything its body and
    its own functions use from outside (so the part starts once all of it is ready)."""

    composite = True

    def __init__(self, part: PartDef) -> None:
        self.part = part

        async def part_node() -> None:  # never called: the executor runs parts itself
            return None

        super().__init__(part_node, name=part.name)
        self.arguments = ()

    def finish(self) -> None:
        """Called once the body is known: the dependencies the scope's DAG sees."""
        self.arguments = tuple(Argument(name, name) for name in sorted(self.part.outer_names()))

    def __repr__(self) -> str:
        return f"<{self.part.kind} {self.name}>"

    def restore(self, value: Any) -> Any:
        return self.part.restore(value)


class Part:
    """Base of ``Map``, ``Switch``, ``Case``, ``Default`` and ``Group``: a nested class whose
    body is a scope of steps. Subclass one of those, never this."""

    part: ClassVar[PartDef | None] = None
    kind: ClassVar[str] = "part"

    def __init_subclass__(cls, **options: Any) -> None:
        super().__init_subclass__()
        if cls.__dict__.get("_base", False):
            return
        cls.part = cls._define(options)

    @classmethod
    def _define(cls, options: dict[str, Any]) -> PartDef:
        raise WorkflowDefinitionError(
            f"{cls.__qualname__}: a part subclasses Map, Switch, Case, Default or Group"
        )


def _unknown_options(owner: str, options: dict[str, Any], known: tuple[str, ...]) -> None:
    from ..suggest import did_you_mean

    for key in options:
        if key not in known:
            hint = did_you_mean(key, known)
            raise WorkflowDefinitionError(
                f"{owner}: unknown option {key!r}"
                + (f": {hint}" if hint else "")
                + f" (options: {', '.join(known) or 'none'})"
            )


def _body(cls: type[Part]) -> dict[str, StepDef]:
    return collect_body(f"{cls.kind} {cls.__qualname__}", cls.__dict__)


# --- map ------------------------------------------------------------------------------------


class MapDef(PartDef):
    kind = "map"

    def __init__(
        self,
        name: str,
        owner: str,
        body: Scope,
        over: Argument,
        element: str,
        batch_size: int,
        max_concurrency: int | None,
    ) -> None:
        super().__init__(name, owner)
        self.body = body
        self.over = over
        self.element = element
        self.batch_size = batch_size
        self.max_concurrency = max_concurrency

    def own_named(self) -> list[tuple[str, Argument]]:
        return [("over", self.over)]

    def bodies(self) -> list[Scope]:
        return [self.body]

    def local_names(self) -> frozenset[str]:
        return frozenset({self.element})

    def restore(self, value: Any) -> Any:
        if not isinstance(value, list):
            return value
        spec = self.body.steps[self.body.result]
        return [spec.restore(item) for item in value]


class Map(Part):
    """Run the body once per element of a collection (``over``: an input or a step, with an
    optional sub-field path, e.g. ``over="load.items"``); the element is the body's
    ``element`` name (default ``element``). Elements are taken ``batch_size`` at a time (the
    next batch once the current one completed), at most ``max_concurrency`` elements in
    flight (default: no limit but the workflow's). The map's result is the list of each
    element's body result, in the collection's order."""

    _base = True
    kind = "map"

    @classmethod
    def _define(cls, options: dict[str, Any]) -> PartDef:
        owner = f"map {cls.__qualname__}"
        _unknown_options(
            owner, options, ("over", "element", "batch_size", "max_concurrency", "returns")
        )
        if "over" not in options:
            raise WorkflowDefinitionError(f"{owner}: over= names the collection to map over")
        over = options["over"]
        if not isinstance(over, str):
            raise WorkflowDefinitionError(f"{owner}: over= takes a name ('load' or 'load.items')")
        source, path = parse_source(over, f"{owner}, over")
        element = options.get("element", ELEMENT)
        if not (isinstance(element, str) and element.isidentifier()):
            raise WorkflowDefinitionError(f"{owner}: element= must be an identifier")
        batch_size = options.get("batch_size", DEFAULT_BATCH_SIZE)
        limit = options.get("max_concurrency")
        for option, value in (("batch_size", batch_size), ("max_concurrency", limit)):
            if value is None and option == "max_concurrency":
                continue
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise WorkflowDefinitionError(f"{owner}: {option} must be an int >= 1")
        body = Scope(owner, _body(cls), options.get("returns"))
        if element in body.steps:
            raise WorkflowDefinitionError(f"{owner}: a step is named like the element {element!r}")
        part = MapDef(
            cls.__name__, owner, body, Argument("over", source, path), element, batch_size, limit
        )
        part.node.finish()
        return part


# --- switch ---------------------------------------------------------------------------------


class CaseDef:
    def __init__(self, name: str, body: Scope, when: Wired | None) -> None:
        self.name = name
        self.body = body
        self.when = when


class SwitchDef(PartDef):
    kind = "switch"

    def __init__(self, name: str, owner: str, cases: list[CaseDef]) -> None:
        super().__init__(name, owner)
        self.cases = cases

    def own_wired(self) -> list[Wired]:
        return [case.when for case in self.cases if case.when is not None]

    def own_named(self) -> list[tuple[str, Argument]]:
        return [
            (f"case {case.name!r}, when", a)
            for case in self.cases
            if case.when is not None
            for a in case.when.arguments
        ]

    def bodies(self) -> list[Scope]:
        return [case.body for case in self.cases]

    def case(self, name: str) -> CaseDef:
        return {case.name: case for case in self.cases}[name]

    def restore(self, value: Any) -> Any:
        return value


class Case(Part):
    """One branch of a ``Switch``: ``when`` (a function wired like a guard: its parameters
    name inputs and steps) says whether it is chosen; its steps run only if it is."""

    _base = True
    kind = "case"

    @classmethod
    def _define(cls, options: dict[str, Any]) -> PartDef:
        owner = f"case {cls.__qualname__}"
        _unknown_options(owner, options, ("when", "returns"))
        when = options.get("when", cls.__dict__.get("when"))
        if when is None and not getattr(cls, "_default", False):
            raise WorkflowDefinitionError(
                f"{owner}: when= (or a `when` method) says when this case is chosen; a case "
                "chosen when no other is, is a Default"
            )
        body = Scope(owner, _body(cls), options.get("returns"))
        wired = Wired.of(when, f"{owner}, when") if when is not None else None
        return _CaseHolder(cls.__name__, owner, CaseDef(cls.__name__, body, wired))


class Default(Case):
    """The branch of a ``Switch`` taken when no case matched (declare it last)."""

    _base = True
    _default = True


class _CaseHolder(PartDef):
    """What a ``Case`` class holds until its switch collects it (never a step itself)."""

    kind = "case"

    def __init__(self, name: str, owner: str, case: CaseDef) -> None:
        self.name, self.owner, self.case = name, owner, case


class Switch(Part):
    """Choose one branch: the cases (nested ``Case`` classes, then at most one ``Default``)
    are tried in order and the first whose ``when`` is true runs; with no match, the
    ``Default`` runs, or the switch fails with ``SwitchNoMatch``. Only the chosen branch's
    steps run (and only they are undone). The switch's result is the branch's result."""

    _base = True
    kind = "switch"

    @classmethod
    def _define(cls, options: dict[str, Any]) -> PartDef:
        owner = f"switch {cls.__qualname__}"
        _unknown_options(owner, options, ())
        cases: list[CaseDef] = []
        for attr, value in cls.__dict__.items():
            if isinstance(value, StepDef):
                raise WorkflowDefinitionError(
                    f"{owner}: step {attr!r} belongs in a Case of the switch"
                )
            if isinstance(value, type) and issubclass(value, Case) and value.part is not None:
                holder = value.part
                assert isinstance(holder, _CaseHolder)
                if cases and cases[-1].when is None:
                    if holder.case.when is None:
                        raise WorkflowDefinitionError(
                            f"{owner}: one Default case at most ({cases[-1].name!r} and "
                            f"{attr!r} are both Default)"
                        )
                    raise WorkflowDefinitionError(
                        f"{owner}: the Default case must come last (case {attr!r} follows it)"
                    )
                cases.append(holder.case)
        if not cases:
            raise WorkflowDefinitionError(f"{owner} has no cases: nest Case classes in it")
        part = SwitchDef(cls.__name__, owner, cases)
        part.node.finish()
        return part


# --- group and around -----------------------------------------------------------------------


class GroupDef(PartDef):
    kind = "group"

    def __init__(
        self,
        name: str,
        owner: str,
        body: Scope,
        before: Wired | None,
        after: Wired | None,
        around: Wired | None,
    ) -> None:
        super().__init__(name, owner)
        self.body = body
        self.before = before
        self.after = after
        self.around = around

    def own_wired(self) -> list[Wired]:
        return [w for w in (self.before, self.after, self.around) if w is not None]

    def own_named(self) -> list[tuple[str, Argument]]:
        hooks = (("before", self.before), ("after", self.after), ("around", self.around))
        return [(hook, a) for hook, wired in hooks if wired is not None for a in wired.arguments]

    def bodies(self) -> list[Scope]:
        return [self.body]

    def restore(self, value: Any) -> Any:
        if self.after is None:
            return self.body.steps[self.body.result].restore(value)
        return value


class Group(Part):
    """Steps that belong together, with optional hooks (methods of the group, wired like
    steps): ``before`` runs before its first step, ``after(result)`` once its last completed
    (what it returns becomes the group's result), and ``around`` wraps the whole group: it
    returns a context manager (sync or async; ``@contextlib.contextmanager`` works), entered
    before the first step and exited after the last, or with the error of a step that
    failed. An ``around`` group runs its steps one at a time, in the thread that entered it
    (so a database transaction, or a connection bound to a thread, spans them)."""

    _base = True
    kind = "group"

    @classmethod
    def _define(cls, options: dict[str, Any]) -> PartDef:
        owner = f"group {cls.__qualname__}"
        _unknown_options(owner, options, ("before", "after", "around", "returns"))
        hooks: dict[str, Wired | None] = {}
        for hook in ("before", "after", "around"):
            fn = options.get(hook, cls.__dict__.get(hook))
            first = "group's result" if hook == "after" else None
            hooks[hook] = Wired.of(fn, f"{owner}, {hook}", first=first) if fn else None
        body = Scope(owner, _body(cls), options.get("returns"))
        if hooks["around"] is not None:
            nested = [name for name, spec in body.steps.items() if spec.composite]
            if nested:
                raise WorkflowDefinitionError(
                    f"{owner}: {nested} cannot sit in an around group, which runs plain steps "
                    "one at a time where its context was entered; put the part or the "
                    "composed workflow outside the group (before or after it)"
                )
        part = GroupDef(cls.__name__, owner, body, hooks["before"], hooks["after"], hooks["around"])
        part.node.finish()
        return part


# --- steps that run workflows, and collect --------------------------------------------------


class NamedLater(StepDef):
    """A step built by a function call (``x = compose(...)``): named after the attribute it
    is assigned to, when the class body is collected."""

    named = False

    def rename(self, name: str) -> None:
        if not self.named:
            self.name, self.named = name, True


class ComposeStep(NamedLater):
    """``compose(Other, inputs={...})``: the run of another workflow as one step."""

    kind = "compose"
    composite = True
    holds_slot = False

    def __init__(
        self,
        workflow: type[Workflow],
        inputs: Mapping[str, str] | None,
        *,
        max_retries: int,
        wait_for: tuple[str, ...],
    ) -> None:
        self.workflow = _child_workflow(workflow, "compose")

        async def composed() -> None:  # never called: the executor runs the child itself
            return None

        super().__init__(composed, max_retries=max_retries, wait_for=wait_for)
        self.arguments = _input_arguments(self.workflow, inputs, "compose")

    def restore(self, value: Any) -> Any:
        spec = self.workflow.steps.get(self.workflow.result_step())
        return spec.restore(value) if spec is not None else value


class RecurseStep(ComposeStep):
    """``recurse(Other, inputs=..., until=..., max_iterations=...)``."""

    kind = "recurse"

    def __init__(
        self,
        workflow: type[Workflow],
        inputs: Mapping[str, str] | None,
        *,
        until: Callable[[Any], Any] | None,
        max_iterations: int | None,
        wait_for: tuple[str, ...],
    ) -> None:
        super().__init__(workflow, inputs, max_retries=0, wait_for=wait_for)
        if until is None and max_iterations is None:
            raise WorkflowDefinitionError(
                f"recurse of {self.workflow.__qualname__}: give until= (an exit condition) "
                "or max_iterations=, or both; with neither it could run forever"
            )
        if until is not None and not callable(until):
            raise WorkflowDefinitionError("recurse: until= takes a function of the result")
        if max_iterations is not None and (
            not isinstance(max_iterations, int) or isinstance(max_iterations, bool)
        ):
            raise WorkflowDefinitionError("recurse: max_iterations must be an int >= 1")
        if max_iterations is not None and max_iterations < 1:
            raise WorkflowDefinitionError("recurse: max_iterations must be an int >= 1")
        self.until = until
        self.max_iterations = max_iterations if max_iterations is not None else math.inf


def _child_workflow(workflow: Any, what: str) -> type[Workflow]:
    # A Workflow class is recognised by what it has: the workflow class is built from parts,
    # so this module cannot import it.
    if not (isinstance(workflow, type) and isinstance(getattr(workflow, "steps", None), dict)):
        raise WorkflowDefinitionError(f"{what} takes a Workflow class, got {workflow!r}")
    if getattr(workflow, "graph", None) is None:
        raise WorkflowDefinitionError(f"{what}: workflow {workflow.__qualname__} is abstract")
    found: type[Workflow] = workflow
    return found


def _input_arguments(
    workflow: type[Workflow], inputs: Mapping[str, str] | None, what: str
) -> tuple[Argument, ...]:
    """The child's inputs, each wired to a name of the parent (its own name by default)."""
    mapping = dict(inputs) if inputs is not None else {n: n for n in workflow.input_names}
    unknown = sorted(set(mapping) - set(workflow.input_names))
    if unknown:
        raise WorkflowDefinitionError(
            f"{what} of {workflow.__qualname__}: {unknown} are not its inputs "
            f"(inputs: {list(workflow.input_names)})"
        )
    model = workflow.Inputs
    required = (
        [name for name, field in model.model_fields.items() if field.is_required()]
        if model is not None
        else list(workflow.input_names)
    )
    unwired = [name for name in required if name not in mapping]
    if unwired:
        raise WorkflowDefinitionError(
            f"{what} of {workflow.__qualname__}: its input(s) {unwired} are not given and have "
            f"no default; wire them in inputs= (inputs given: {sorted(mapping)})"
        )
    arguments = []
    for name, text in mapping.items():
        if not isinstance(text, str):
            raise WorkflowDefinitionError(
                f"{what} of {workflow.__qualname__}: input {name!r} takes a name of this "
                f"workflow ('order' or 'load.order'), got {text!r}"
            )
        source, path = parse_source(text, f"{what} of {workflow.__qualname__}, {name}")
        arguments.append(Argument(name, source, path))
    return tuple(arguments)


def compose(
    workflow: type[Workflow],
    inputs: Mapping[str, str] | None = None,
    *,
    max_retries: int = 0,
    wait_for: tuple[str, ...] = (),
) -> StepDef:
    """A step that runs ``workflow`` as a child run (recorded in the log, linked to this run)
    and returns its result. ``inputs`` maps each of the child's inputs to a name of this
    workflow (``{"order": "load.order"}``); by default each input takes the name it has.
    The child shares this run's ``max_concurrency``. When this run later rolls back, the
    child's completed steps are undone, newest first, as part of the rollback; a child that
    fails has rolled itself back, and its ``WorkflowError`` (with its undo trail) is this
    step's error."""
    return ComposeStep(workflow, inputs, max_retries=max_retries, wait_for=tuple(wait_for))


def recurse(
    workflow: type[Workflow],
    inputs: Mapping[str, str] | None = None,
    *,
    until: Callable[[Any], Any] | None = None,
    max_iterations: int | None = None,
    wait_for: tuple[str, ...] = (),
) -> StepDef:
    """A step that runs ``workflow`` again and again, each run's result (a mapping of its
    inputs) the next run's inputs, until ``until(result)`` is true or ``max_iterations``
    runs were made (at least one of them is required); its result is the last run's. Each
    iteration is a child run of this one; a rollback undoes them newest first."""
    return RecurseStep(
        workflow, inputs, until=until, max_iterations=max_iterations, wait_for=tuple(wait_for)
    )


class CollectStep(NamedLater):
    kind = "collect"

    def __init__(self, sources: Mapping[str, str], transform: Callable[..., Any] | None) -> None:
        if not sources:
            raise WorkflowDefinitionError("collect: name at least one value to gather")
        if transform is not None and not callable(transform):
            raise WorkflowDefinitionError("collect: transform= takes a function of the values")
        self.transform = transform

        async def gather(_workflow: Any, **values: Any) -> Any:
            result = dict(values)
            if transform is None:
                return result
            outcome = transform(result)
            if inspect.isawaitable(outcome):
                outcome = await outcome
            return outcome

        super().__init__(_keywords)
        self.fn = gather
        self.is_async = True
        arguments = []
        for key, text in sources.items():
            if not key.isidentifier():
                raise WorkflowDefinitionError(f"collect: {key!r} is not an identifier")
            source, path = parse_source(text, f"collect, {key}")
            arguments.append(Argument(key, source, path))
        self.arguments = tuple(arguments)


def _keywords() -> None:  # the signature collect's StepDef is checked against (no params)
    return None


def collect(transform: Callable[..., Any] | None = None, /, **sources: str) -> StepDef:
    """A step that gathers values into one: ``collect(order="load", total="charge.amount")``
    results in ``{"order": ..., "total": ...}``; ``collect(fn, ...)`` results in ``fn`` of
    that dict instead (Reactor's collect with a transform)."""
    return CollectStep(sources, transform)


def part_of(spec: StepDef) -> PartDef | None:
    return spec.part if isinstance(spec, PartStep) else None
