"""What a run's scheduler shares and precomputes: the concurrency limit (shared with the
runs it composes) and each workflow's top-level steps, bound once per class."""

from __future__ import annotations

import collections
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


class Claim:
    """One run's place in the queue for a slot of :class:`Slots` (its scheduler's)."""

    __slots__ = ("wake", "granted", "queued", "active")

    def __init__(self, wake: Callable[[], None]) -> None:
        self.wake = wake
        self.granted = 0
        """Slots handed to this run by another that gave them back (already counted used)."""
        self.queued = False
        self.active = True


class Slots:
    """A run's ``max_concurrency``: user code takes a slot while it runs. A composed child
    run takes from its parent's slots (the compose step itself holds none while its child
    runs, so a limit of 1 cannot deadlock), so a parent and its children together stay
    within the parent's limit. A run that finds no slot queues; a slot given back goes to
    the run first in the queue, woken alone (waking every run of a family at each step
    cost a wake-up per run per step: quadratic in the number of children)."""

    __slots__ = ("limit", "used", "queue")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0
        self.queue: collections.deque[Claim] = collections.deque()

    def take(self, claim: Claim) -> bool:
        if claim.granted:
            claim.granted -= 1
            return True
        if self.used < self.limit:
            self.used += 1
            return True
        if not claim.queued:
            claim.queued = True
            self.queue.append(claim)
        return False

    def give(self) -> None:
        while self.queue:
            claim = self.queue.popleft()
            claim.queued = False
            if claim.active:
                claim.granted += 1  # the slot stays used: it changes hands
                claim.wake()
                return
        self.used -= 1

    def hand_back(self, claim: Claim) -> None:
        """Slots handed to a run that has nothing to start with them go on."""
        while claim.granted:
            claim.granted -= 1
            self.give()

    def leave(self, claim: Claim) -> None:
        """The run's scheduler ends: out of the queue, its handed slots given on."""
        claim.active = False
        self.hand_back(claim)
