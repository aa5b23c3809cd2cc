"""A run's DAG as SVG, drawn on the server: each step a box coloured by what happened to it.

Laid out from what the run log recorded (``RunRecord.dag``: top-level step -> its
dependencies, and the steps), never from the workflow class, so a run whose class changed
or is not loaded still draws: top-level steps in columns by topological depth (a step one
column right of its deepest dependency), edges from each dependency. A part's steps (named
by where they sit: ``each[3].pack``, ``pay.card.charge``, ``book.debit``) are listed inside
the part's box, under its own outcome; a map of many elements draws its first few (and every
element that did not end well) and one counted box for the rest. A step that ran a child run
(compose, recurse) links to the child run's page.

Outcome words are :func:`~jobsaga.workflow.trail_text.step_outcome`'s, the ones ``jobsaga
runs show`` prints; each box's CSS class (``o-failed``, ``o-undone``...) says the same.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from html import escape

from ..workflow.graph import dag_order
from ..workflow.records import ChildRun, RunRecord
from ..workflow.trail_text import INTERRUPTED, INTERRUPTED_WAITING, NO_START_RECORDED, step_outcome

ELEMENTS_SHOWN = 3
"""Elements of a map drawn before the rest are counted in one box (failing ones are always
drawn, up to :data:`MOST_ELEMENTS`)."""
MOST_ELEMENTS = 12
NODE_W, NODE_H = 190, 42
ROW_H = 26
"""A part's inner step: one row of its box."""
GAP_X, GAP_Y, PAD = 56, 16, 10

OUTCOME_CLASSES = {
    "ok": "succeeded",
    "ok (compensated)": "compensated",
    "FAILED": "failed",
    "undone": "undone",
    "UNDO FAILED": "undo_failed",
    "skipped": "skipped",
    "not started": "not_started",
    "running": "running",
    "waiting to retry": "running",
    INTERRUPTED: "interrupted",
    INTERRUPTED_WAITING: "interrupted",
    NO_START_RECORDED: "unknown",
}
"""The CSS class of each outcome word (``o-<class>``)."""
FAILING = ("failed", "undo_failed", "interrupted", "unknown", "running", "halted")
"""Outcome classes of map elements that are always drawn."""

_ELEMENT = re.compile(r"^\[(\d+)\]")


def outcome_class(outcome: str) -> str:
    if outcome.startswith("halted"):
        return "halted"
    return OUTCOME_CLASSES.get(outcome, "other")


def part_of(name: str) -> str | None:
    """The top-level part a step sits in (``each[3].pack`` -> ``each``); None at top level."""
    cut = min((i for i in (name.find("."), name.find("[")) if i >= 0), default=-1)
    return name[:cut] if cut > 0 else None


@dataclass
class Node:
    """A top-level step and, for a part, the rows inside its box."""

    name: str
    outcome: str
    rows: list[tuple[str, str, str]] = field(default_factory=list)
    """(full step name or "", label, outcome) per inner row; "" for a counted box."""
    x: int = 0
    y: int = 0

    @property
    def height(self) -> int:
        return NODE_H + (len(self.rows) * ROW_H + PAD if self.rows else 0)


def outcomes_of(run: RunRecord) -> dict[str, str]:
    """Each step's outcome as ``runs show`` words it, a compensated step with what its
    compensation decided (``ok (compensated: continue)``)."""
    decided = {
        e.step: str((e.detail or {}).get("outcome"))
        for e in run.events
        if e.kind == "step.compensate" and e.step
    }
    said: dict[str, str] = {}
    for record in run.steps:
        said[record.step] = step_outcome(run, record)
    return {
        name: (f"{word} → {decided[name]}" if name in decided and word != "FAILED" else word)
        for name, word in said.items()
    }


def _class(word: str) -> str:
    return outcome_class(word.split(" → ")[0])


def layout(run: RunRecord, outcomes: Mapping[str, str]) -> tuple[list[Node], dict[str, int]]:
    """The top-level nodes placed in columns, and each node's column."""
    deps: dict[str, list[str]] = {k: list(v) for k, v in (run.dag or {}).items()}
    positions = {s.step: s.position for s in run.steps}
    top = [s.step for s in run.steps if part_of(s.step) is None]
    order = dag_order(deps, positions) if deps else list(top)
    order = [n for n in order if n in outcomes] + [n for n in top if n not in order]
    depth: dict[str, int] = {}
    for name in order:  # topological: a step comes after its dependencies
        depth[name] = 1 + max((depth.get(d, -1) for d in deps.get(name, [])), default=-1)
    inner: dict[str, list[str]] = {}
    for record in sorted(run.steps, key=lambda s: s.position):
        part = part_of(record.step)
        if part is not None:
            inner.setdefault(part, []).append(record.step)
    nodes: list[Node] = []
    for name in order:
        node = Node(name, outcomes.get(name, "not started"))
        node.rows = _rows(name, inner.pop(name, []), outcomes)
        nodes.append(node)
    for part, steps in inner.items():  # a part the recorded DAG does not name
        node = Node(part, outcomes.get(part, "not started"), _rows(part, steps, outcomes))
        depth[part] = 0
        nodes.append(node)
    column_y: dict[int, int] = {}
    for node in nodes:
        col = depth[node.name]
        node.x = PAD + col * (NODE_W + GAP_X)
        node.y = column_y.get(col, PAD)
        column_y[col] = node.y + node.height + GAP_Y
    return nodes, depth


def _rows(part: str, steps: list[str], outcomes: Mapping[str, str]) -> list[tuple[str, str, str]]:
    """A part's inner steps as rows: a map's first elements and failing ones, then one
    counted row for the rest (``… 40 more elements: 38 ok, 2 undone``)."""
    elements: dict[int, list[str]] = {}
    for name in steps:
        match = _ELEMENT.match(name[len(part) :])
        if match:
            elements.setdefault(int(match.group(1)), []).append(name)
    shown = set(steps)
    hidden: list[str] = []
    if len(elements) > ELEMENTS_SHOWN:
        drawn = 0
        shown = set()
        for index in sorted(elements):
            names = elements[index]
            failing = any(_class(outcomes.get(n, "")) in FAILING for n in names)
            if index < ELEMENTS_SHOWN or (failing and drawn < MOST_ELEMENTS):
                shown.update(names)
                drawn += index >= ELEMENTS_SHOWN
            else:
                hidden += names
        shown.update(n for n in steps if not _ELEMENT.match(n[len(part) :]))
    rows = [(n, n[len(part) :].lstrip("."), outcomes.get(n, "")) for n in steps if n in shown]
    if hidden:
        count = len({_ELEMENT.match(n[len(part) :]).group(1) for n in hidden})  # type: ignore[union-attr]
        said = Counter(outcomes.get(n, "") for n in hidden)
        text = ", ".join(f"{k} {w}" for w, k in sorted(said.items()))
        rows.append(("", f"… {count} more element{'s' if count > 1 else ''}: {text}", ""))
    return rows


def run_dag_svg(
    run: RunRecord,
    link: Callable[[int], str],
    outcomes: Mapping[str, str] | None = None,
) -> str:
    """The run's DAG as an ``<svg>`` element; ``link(run_id)`` is a child run's page."""
    said = dict(outcomes) if outcomes is not None else outcomes_of(run)
    nodes, _ = layout(run, said)
    if not nodes:
        return '<svg class="dag" width="0" height="0" role="img"></svg>'
    by_name = {n.name: n for n in nodes}
    kids: dict[str, list[ChildRun]] = {}
    for child in run.children:
        kids.setdefault(child.parent_step, []).append(child)
    width = max(n.x for n in nodes) + NODE_W + PAD
    height = max(n.y + n.height for n in nodes) + PAD
    out = [
        f'<svg class="dag" xmlns="http://www.w3.org/2000/svg" width="{width}" '
        f'height="{height}" viewBox="0 0 {width} {height}" role="img" '
        f'aria-label="run {run.id}: its steps and what happened to each">',
        '<defs><marker id="arrow" viewBox="0 0 8 8" refX="8" refY="4" markerWidth="7" '
        'markerHeight="7" orient="auto"><path d="M0,0 L8,4 L0,8 z"/></marker></defs>',
    ]
    for node in nodes:
        for dep in (run.dag or {}).get(node.name, []):
            source = by_name.get(dep)
            if source is None:
                continue
            x1, y1 = source.x + NODE_W, source.y + NODE_H // 2
            x2, y2 = node.x, node.y + NODE_H // 2
            mid = (x1 + x2) // 2
            out.append(
                f'<path class="edge" d="M{x1},{y1} C{mid},{y1} {mid},{y2} {x2},{y2}" '
                'marker-end="url(#arrow)"/>'
            )
    for node in nodes:
        out.append(_node(node, kids, link))
    out.append("</svg>")
    return "\n".join(out)


def _node(node: Node, kids: Mapping[str, Sequence[ChildRun]], link: Callable[[int], str]) -> str:
    css = _class(node.outcome)
    part = " part" if node.rows else ""
    parts = [
        f'<g class="step o-{css}{part}" data-step="{escape(node.name)}">',
        f"<title>{escape(node.name)}: {escape(node.outcome)}</title>",
        f'<rect x="{node.x}" y="{node.y}" width="{NODE_W}" height="{node.height}" rx="5"/>',
        f'<text class="name" x="{node.x + 8}" y="{node.y + 17}">{escape(_fit(node.name))}</text>',
        f'<text class="outcome" x="{node.x + 8}" y="{node.y + 33}">'
        f"{escape(_fit(node.outcome))}</text>",
    ]
    parts += _child_links(node.name, node.x + NODE_W - 6, node.y + 17, kids, link, "end")
    y = node.y + NODE_H
    for full, label, word in node.rows:
        inner = _class(word) if full else "counted"
        title = f"{full}: {word}" if full else label
        parts += [
            f'<g class="inner o-{inner}" data-step="{escape(full)}">',
            f"<title>{escape(title)}</title>",
            f'<rect x="{node.x + 6}" y="{y}" width="{NODE_W - 12}" height="{ROW_H - 4}" rx="3"/>',
            f'<text x="{node.x + 11}" y="{y + 15}">{escape(_fit(label, 30))}</text>',
        ]
        if full:
            parts += _child_links(full, node.x + NODE_W - 11, y + 15, kids, link, "end")
        parts.append("</g>")
        y += ROW_H
    parts.append("</g>")
    return "".join(parts)


def _child_links(
    step: str,
    x: int,
    y: int,
    kids: Mapping[str, Sequence[ChildRun]],
    link: Callable[[int], str],
    anchor: str,
) -> list[str]:
    """A link to each child run the step ran (the first three, then a count)."""
    children = kids.get(step, ())
    if not children:
        return []
    shown = children[:3]
    more = f" +{len(children) - 3}" if len(children) > 3 else ""
    out = [f'<text class="child" x="{x}" y="{y}" text-anchor="{anchor}">']
    for index, child in enumerate(shown):
        sep = ", " if index else "run "
        out.append(
            f'{sep}<a class="child-run" href="{escape(link(child.id))}">'
            f"<title>child run {child.id}: {escape(child.workflow)}, {escape(child.status)}"
            f"</title>{child.id}</a>"
        )
    out.append(f"{more}</text>")
    return out


def _fit(text: str, limit: int = 28) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"
