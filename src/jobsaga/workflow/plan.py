"""The steps of a run as the executor schedules them: a workflow's scopes made concrete.

A workflow's top-level steps become steps of the run under their own names; a part's body
becomes steps when the part starts (a map's once per element, a switch's for the chosen
case), each named by where it sits (``charge_each[3].reserve``, ``pay.card.charge``), so one
run log, one completion order and one rollback cover every step of every part. Each
parameter is bound here to where its value comes from (a step of the run by its full name,
a workflow input, or a map's element), looked up from the innermost scope out.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .steps import Argument

if TYPE_CHECKING:
    from .graph import WorkflowGraph
    from .steps import StepDef

STEP, INPUT, CONSTANT = 0, 1, 2


@dataclass(frozen=True, slots=True)
class Binding:
    """Where one parameter's value comes from in this run."""

    argument: Argument
    """As declared (its ``param``, the name it used, the sub-field path)."""
    kind: int
    """STEP (``source`` is a step of the run), INPUT (a workflow input) or CONSTANT."""
    source: str
    const: Any = None

    @property
    def param(self) -> str:
        return self.argument.param


@dataclass(frozen=True, slots=True)
class Frame:
    """One scope on the way out from a step: its steps' names get ``prefix``; ``local``
    holds names the scope itself provides (a map's element)."""

    steps: frozenset[str]
    prefix: str
    local: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True, eq=False)
class Instance:
    """One concrete copy of a part's body: a map element, the chosen case, a group."""

    part: str
    """The part's step name in the run."""
    index: int
    prefix: str
    frames: tuple[Frame, ...]
    """From this instance's scope out to the workflow's."""
    names: list[str] = field(default_factory=list)
    left: int = 0
    """Its steps not yet done: the instance is done at 0."""
    admitted: bool = False
    """Its steps may be scheduled (set when the part admits it). A map element beyond the map's ``max_concurrency`` waits, not admitted, until an
    element in flight is done."""


def bind(arguments: tuple[Argument, ...], frames: tuple[Frame, ...]) -> tuple[Binding, ...]:
    """Each argument bound from the innermost scope out; a name no scope has is an input
    (the workflow's DAG was checked when its class was defined)."""
    bound = []
    for argument in arguments:
        bound.append(_bind(argument, argument.source, frames))
    return tuple(bound)


def _bind(argument: Argument, name: str, frames: tuple[Frame, ...]) -> Binding:
    for frame in frames:
        if name in frame.local:
            return Binding(argument, CONSTANT, name, frame.local[name])
        if name in frame.steps:
            return Binding(argument, STEP, frame.prefix + name)
    return Binding(argument, INPUT, name)


def qualified_needs(graph: WorkflowGraph, name: str, prefix: str) -> tuple[str, ...]:
    needs = graph.needs[name]
    return needs if not prefix else tuple(prefix + n for n in needs)


def scope_frame(steps: dict[str, StepDef], prefix: str, local: dict[str, Any]) -> Frame:
    return Frame(frozenset(steps), prefix, local)
