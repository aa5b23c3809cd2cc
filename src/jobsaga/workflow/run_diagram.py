"""A run's chart as Mermaid text (``jobsaga runs show --graph``): the steps the run log
recorded, coloured by outcome, each part's steps inside subgraphs by their place.

A part's steps are steps of the run named by where they sit (``each[3].pack``,
``pay.card.charge``, ``move.debit``), so the chart is drawn from the names alone: every
prefix of a place is a subgraph (the map ``each``, its element ``each[3]``, the switch's
chosen case ``pay.card``), and a prefix that is itself a recorded step (the part) shows its
outcome. A large map draws its first ``max_elements`` elements and one node saying how many
more there are and how their steps ended. Given the workflow's graph, titles say what each
part does and the steps inside one element are linked as its body's DAG links them; given
the run's child runs, a compose or recurse step names them (``child run 17 (succeeded)``).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from .chart_ids import node_id, outcome_styles
from .diagram import INDENT, case_title, child_title, escape, part_title
from .parts import CaseDef, ComposeStep, GroupDef, MapDef, PartStep, SwitchDef
from .steps import StepDef

if TYPE_CHECKING:
    from .graph import WorkflowGraph
    from .records import ChildRun

MAX_ELEMENTS = 20
"""Elements of one map drawn before the rest are summed up in one node."""
CHILD_RUNS_SHOWN = 3
"""Child runs named on a recurse step's node before the rest are counted."""

_SEGMENT = re.compile(r"([A-Za-z_]\w*)(?:\[(\d+)\])?")
_ELEMENT = re.compile(r"(.*)\[(\d+)\]")


def run_chart(
    dag: Mapping[str, Sequence[str]],
    order: Sequence[str],
    outcomes: Mapping[str, str],
    *,
    graph: WorkflowGraph | None = None,
    children: Sequence[ChildRun] = (),
    max_elements: int = MAX_ELEMENTS,
) -> str:
    """Mermaid text for a run as its log recorded it: ``dag`` (top-level step -> its
    dependencies), ``order`` (every recorded step, places included), ``outcomes`` (step ->
    status); ``graph`` (the workflow's, if at hand) and ``children`` (the run's child runs)
    add titles, the edges inside parts and the child runs' ids."""
    chart = _RunChart(order, outcomes, graph, children, max_elements)
    chart.draw("", 1)
    edges: list[str] = []
    for name in order:
        if name in chart.hidden:
            continue
        for dep in chart.needs(name, dag):
            if dep not in chart.hidden:
                edges.append(f"{INDENT}{node_id(dep)} --> {node_id(name)}")
    lines = ["flowchart TD", *chart.lines, *dict.fromkeys(edges)]
    lines += outcome_styles(chart.drawn, outcomes)
    return "\n".join(lines) + "\n"


def segments(name: str) -> list[tuple[str, int | None]] | None:
    """``each[3].pay.card`` -> ``[("each", 3), ("pay", None), ("card", None)]``; None when
    the name is not a place (drawn as it is, at the top)."""
    found: list[tuple[str, int | None]] = []
    for text in name.split("."):
        match = _SEGMENT.fullmatch(text)
        if match is None:
            return None
        found.append((match[1], None if match[2] is None else int(match[2])))
    return found


def containers(name: str) -> list[str]:
    """The places a step sits in, outermost first: ``each[3].pay.charge`` ->
    ``each``, ``each[3]``, ``each[3].pay``."""
    segs = segments(name)
    if segs is None:
        return []
    keys: list[str] = []
    prefix = ""
    for i, (text, index) in enumerate(segs):
        last = i == len(segs) - 1
        here = prefix + text
        if index is not None:
            keys.append(here)  # the map
            here = f"{here}[{index}]"
        if not last:
            keys.append(here)
        prefix = here + "."
    return keys


class _RunChart:
    def __init__(
        self,
        order: Sequence[str],
        outcomes: Mapping[str, str],
        graph: WorkflowGraph | None,
        children: Sequence[ChildRun],
        max_elements: int,
    ) -> None:
        self.outcomes = outcomes
        self.graph = graph
        self.max_elements = max_elements
        self.recorded = set(order)
        self.kids: dict[str, dict[str, None]] = {"": {}}
        for name in order:
            chain = ["", *containers(name), name]
            for parent, child in zip(chain, chain[1:], strict=False):
                self.kids.setdefault(parent, {})[child] = None
        self.children: dict[str, list[ChildRun]] = {}
        for child_run in sorted(children, key=lambda c: (c.iteration, c.id)):
            self.children.setdefault(child_run.parent_step, []).append(child_run)
        self.lines: list[str] = []
        self.drawn: list[str] = []
        self.hidden: set[str] = set()

    def draw(self, key: str, depth: int) -> None:
        kids = list(self.kids.get(key, {}))
        elements = sorted(
            (k for k in kids if _element_of(k) == key), key=lambda k: _element_index(k)
        )
        rest = elements[self.max_elements :]
        # a map holds only its elements: drawn in index order, the first max_elements
        drawable = [k for k in kids if k not in elements] + elements[: self.max_elements]
        for kid in drawable:
            if kid in self.kids:
                self.lines.append(f'{INDENT * depth}subgraph {node_id(kid)} ["{self.title(kid)}"]')
                if kid in self.recorded:
                    self.drawn.append(kid)
                self.draw(kid, depth + 1)
                self.lines.append(f"{INDENT * depth}end")
            else:
                self.lines.append(f'{INDENT * depth}{node_id(kid)}["{self.label(kid)}"]')
                self.drawn.append(kid)
        if rest:
            self.more(key, rest, depth)

    def more(self, key: str, rest: list[str], depth: int) -> None:
        """One node for the elements not drawn: how many, and how their steps ended."""
        steps: list[str] = []
        for element in rest:
            steps += self.steps_under(element)
        self.hidden.update(steps)
        counts = Counter(self.outcomes.get(s, "pending") for s in steps)
        ended = ", ".join(f"{n} {status}" for status, n in sorted(counts.items()))
        text = f"… {_count(len(rest), 'more element')} not drawn"
        if ended:
            text += f"<br/>their {_count(len(steps), 'step')}: {ended}"
        self.lines.append(f'{INDENT * depth}{node_id(key + "[…]")}["{text}"]')

    def steps_under(self, key: str) -> list[str]:
        found = [key] if key in self.recorded else []
        for kid in self.kids.get(key, {}):
            found += self.steps_under(kid)
        return found

    def status(self, name: str) -> str:
        return self.outcomes.get(name, "pending")

    def title(self, key: str) -> str:
        found = self.lookup(key)
        if isinstance(found, PartStep):
            text = escape(part_title(found.part))
        elif isinstance(found, CaseDef):
            text = escape(case_title(found))
        else:
            text = key.rsplit(".", 1)[-1]  # a map's element (each[3]), or no graph at hand
        return f"{text}<br/>{self.status(key)}" if key in self.recorded else text

    def label(self, name: str) -> str:
        text = name.rsplit(".", 1)[-1] if "." in name else name
        found = self.lookup(name)
        lines = [text]
        if isinstance(found, ComposeStep):
            lines.append(escape(child_title(found, text).split(": ", 1)[1]))
        lines.append(self.status(name))
        runs = self.children.get(name, [])
        several = len(runs) > 1
        for child_run in runs[:CHILD_RUNS_SHOWN]:
            where = f"iteration {child_run.iteration}: " if several else ""
            lines.append(f"{where}child run {child_run.id} ({child_run.status})")
        if len(runs) > CHILD_RUNS_SHOWN:
            lines.append(f"… {_count(len(runs) - CHILD_RUNS_SHOWN, 'more child run')}")
        return "<br/>".join(lines)

    def lookup(self, name: str) -> Any:
        """What the workflow declares at a place: a step (a part's step for a part), a
        switch's case, or None (no graph, or not found)."""
        found = _walk(self.graph, name)
        return None if found is None else found[0]

    def needs(self, name: str, dag: Mapping[str, Sequence[str]]) -> list[str]:
        """A step's recorded dependencies: the run's DAG for a top-level step; for a step
        inside a part (with the graph), each name it uses looked up from its own scope out,
        under the places of this run (``each[3].pack`` for ``pack`` in element 3)."""
        if "." not in name and "[" not in name:
            return list(dag.get(name, ()))
        found = _walk(self.graph, name)
        if found is None or not isinstance(found[0], StepDef):
            return []
        spec, frames = found
        if isinstance(spec, PartStep):
            used = [a.source for a in spec.part.own_arguments()]  # its body draws the rest
        else:
            used = [a.source for a in (*spec.arguments, *spec.where_arguments)]
            used += spec.wait_for
        deps = []
        for source in used:
            for scope, prefix in frames:
                if source in scope.graph:
                    if prefix + source in self.recorded:
                        deps.append(prefix + source)
                    break
        return deps


Frames = list[tuple["WorkflowGraph", str]]
"""The scopes around a place, innermost first, each with the prefix its steps have in the
run (``each[3].`` for the body of element 3)."""


def _count(n: int, what: str) -> str:
    return f"{n} {what}" if n == 1 else f"{n} {what}s"


def _element_of(key: str) -> str | None:
    match = _ELEMENT.fullmatch(key)
    return match[1] if match is not None else None


def _element_index(key: str) -> int:
    match = _ELEMENT.fullmatch(key)
    return int(match[2]) if match is not None else 0


def _walk(graph: WorkflowGraph | None, name: str) -> tuple[Any, Frames] | None:
    """The declaration at a run's place (a step, a case, or None for a map's element) and
    the scopes around it."""
    segs = segments(name)
    if graph is None or segs is None:
        return None
    frames: Frames = [(graph, "")]
    prefix = ""
    i = 0
    while i < len(segs):
        scope = frames[0][0]
        text, index = segs[i]
        if text not in scope.graph:
            return None
        spec = scope.graph.nodes[text]["spec"]
        if i == len(segs) - 1:
            return (None if index is not None else spec), frames
        prefix += text if index is None else f"{text}[{index}]"
        part = spec.part if isinstance(spec, PartStep) else None
        if isinstance(part, SwitchDef):
            i += 1
            case = {case.name: case for case in part.cases}.get(segs[i][0])
            if case is None:
                return None
            if i == len(segs) - 1:
                return case, frames
            prefix += f".{case.name}"
            body = case.body
        elif isinstance(part, MapDef | GroupDef):
            body = part.body
        else:
            return None  # a composed workflow's steps are its child run's, not this run's
        prefix += "."
        frames = [(body.graph, prefix), *frames]
        i += 1
    return None
