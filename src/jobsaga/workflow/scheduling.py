"""What a run's scheduler shares and precomputes: the concurrency limit (shared with the
runs it composes) and each workflow's top-level steps, bound once per class."""

from __future__ import annotations

import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING

from .plan import Binding, Frame, bind, scope_frame

if TYPE_CHECKING:
    from .dsl import StepDef, Workflow

TopStep = tuple[str, "StepDef", tuple[Binding, ...], tuple[Binding, ...], tuple[str, ...]]

_TOP: weakref.WeakKeyDictionary[type, list[TopStep]] = weakref.WeakKeyDictionary()


def top_frame(workflow: type[Workflow]) -> Frame:
    return scope_frame(workflow.steps, "", {})


def top_level(workflow: type[Workflow]) -> list[TopStep]:
    """The workflow's own steps with their bindings and dependencies, computed once per
    class (a run of a 1,000-step DAG must not bind 1,000 steps' parameters again)."""
    found = _TOP.get(workflow)
    if found is None:
        frames = (top_frame(workflow),)
        graph = workflow.graph
        found = [
            (
                name,
                spec,
                bind(spec.arguments, frames),
                bind(spec.where_arguments, frames),
                graph.needs[name],
            )
            for name, spec in workflow.steps.items()
        ]
        _TOP[workflow] = found
    return found


class Slots:
    """A run's ``max_concurrency``: user code takes a slot while it runs. A composed child
    run takes from its parent's slots (the compose step itself holds none while its child
    runs, so a limit of 1 cannot deadlock), so a parent and its children together stay
    within the parent's limit."""

    __slots__ = ("limit", "used", "listeners")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0
        self.listeners: set[Callable[[], None]] = set()

    def take(self) -> bool:
        if self.used < self.limit:
            self.used += 1
            return True
        return False

    def give(self) -> None:
        self.used -= 1
        if len(self.listeners) > 1:  # another run's scheduler may be waiting for a slot
            for wake in list(self.listeners):
                wake()
