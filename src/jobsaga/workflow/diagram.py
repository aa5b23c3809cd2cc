"""A workflow's chart as Mermaid text (``jobsaga workflow graph``), parts drawn as subgraphs.

A plain step is a node; a part (map, switch, group) is a ``subgraph`` titled with what it
does (``each: for each item in load (batch 2, at most 4 at a time)``), holding its body's
steps, nested parts nested; a switch holds one subgraph per case; ``compose`` and
``recurse`` hold the child workflow's own chart. Edges run from whatever a body uses
outside it (an input, an outer step, the map's element) to the body's steps that use it, a
part's own functions (``over``, ``when``, hooks) point at the part's subgraph, and a part's
result leaves from its subgraph. A nested step's id is its place (``each.pay.card.charge``,
as the run names it) encoded by ``node_id``, so ids never clash and never hold a dot or a
bracket. A plain workflow's chart is exactly what it was before parts existed.
"""

from __future__ import annotations

import ast
import inspect
import math
import textwrap
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from .chart_ids import node_id, outcome_styles
from .parts import (
    DEFAULT_BATCH_SIZE,
    CaseDef,
    ComposeStep,
    GroupDef,
    MapDef,
    PartDef,
    PartStep,
    RecurseStep,
    SwitchDef,
)

if TYPE_CHECKING:
    from .graph import WorkflowGraph
    from .steps import StepDef

Resolve = Callable[[str], str]
"""A name used in a scope (an input, an outer step, a map's element) -> its node id."""

INDENT = "    "
LAMBDA_TEXT_LIMIT = 60
"""A ``when``/``until`` lambda longer than this is not shown (the title names the case)."""


def workflow_chart(graph: WorkflowGraph, outcomes: Mapping[str, str] | None = None) -> str:
    """Mermaid flowchart text of a workflow; with ``outcomes`` (step -> status) each node
    shows its status and a composed workflow is one node (its steps are its own run's)."""
    chart = _Chart(outcomes)
    for name in graph.inputs:
        chart.nodes.append(f"{INDENT}input_{name}([{name}])")
    chart.scope(graph, "", lambda name: f"input_{name}", 1)
    edges = dict.fromkeys((*chart.outer_edges, *chart.edges))  # each edge once, in order
    lines = ["flowchart TD", *chart.nodes, *edges, *outcome_styles(chart.drawn, outcomes)]
    return "\n".join(lines) + "\n"


class _Chart:
    def __init__(self, outcomes: Mapping[str, str] | None) -> None:
        self.outcomes = outcomes
        self.nodes: list[str] = []
        """Node and subgraph lines, in declaration order (edges come after all of them, so
        an edge never pulls a node into the wrong subgraph)."""
        self.outer_edges: list[str] = []
        """Edges from a name outside a scope (first, as a plain chart's input edges were)."""
        self.edges: list[str] = []
        self.drawn: list[str] = []
        """Every node and subgraph by its place, for the outcome classes."""

    def status(self, place: str, text: str) -> str:
        if self.outcomes is None:
            return text
        return f"{text}<br/>{self.outcomes.get(place, 'pending')}"

    def expanded(self, spec: StepDef) -> bool:
        """Drawn as a subgraph whose inner steps take the edges (not as one node)."""
        if isinstance(spec, PartStep):
            return True
        return isinstance(spec, ComposeStep) and self.outcomes is None

    def scope(self, graph: WorkflowGraph, prefix: str, outer: Resolve, depth: int) -> None:
        """The steps of one scope (a workflow, a part's body), then its edges."""

        def resolve(name: str) -> str:
            return node_id(prefix + name) if name in graph.graph else outer(name)

        for name in graph.order:
            spec = graph.graph.nodes[name]["spec"]
            place = prefix + name
            if isinstance(spec, PartStep):
                self.part(spec.part, place, resolve, depth)
            elif isinstance(spec, ComposeStep) and self.expanded(spec):
                self.child(spec, place, resolve, depth)
            else:
                self.nodes.append(f'{INDENT * depth}{node_id(place)}["{self.status(place, name)}"]')
                self.drawn.append(place)
        for name in graph.order:
            spec = graph.graph.nodes[name]["spec"]
            if self.expanded(spec):
                continue
            target = node_id(prefix + name)
            for argument in (*spec.arguments, *spec.where_arguments):
                if argument.source not in graph.graph:
                    self.outer_edges.append(f"{INDENT}{outer(argument.source)} --> {target}")
            for waited in spec.wait_for:
                if waited not in graph.graph:
                    self.outer_edges.append(f"{INDENT}{outer(waited)} -.-> {target}")
        for source, target, data in graph.graph.edges(data=True):
            kind = data.get("kind")
            if kind != "wait_for" and self.expanded(graph.graph.nodes[target]["spec"]):
                continue  # drawn from the source to the steps inside that use it
            arrow = "-.->" if kind == "wait_for" else "-->"
            self.edges.append(
                f"{INDENT}{node_id(prefix + source)} {arrow} {node_id(prefix + target)}"
            )

    def open(self, place: str, title: str, depth: int, *, status: bool = True) -> str:
        sid = node_id(place)
        text = self.status(place, escape(title)) if status else escape(title)
        self.nodes.append(f'{INDENT * depth}subgraph {sid} ["{text}"]')
        if status:
            self.drawn.append(place)
        return sid

    def close(self, depth: int) -> None:
        self.nodes.append(f"{INDENT * depth}end")

    def uses(self, names: list[str], resolve: Resolve, target: str) -> None:
        for name in names:
            self.outer_edges.append(f"{INDENT}{resolve(name)} --> {target}")

    def part(self, part: PartDef, place: str, resolve: Resolve, depth: int) -> None:
        sid = self.open(place, part_title(part), depth)
        if isinstance(part, MapDef):
            element = node_id(f"{place}.{part.element}")
            self.nodes.append(f"{INDENT * (depth + 1)}{element}([{part.element}])")
            self.uses([part.over.source], resolve, sid)

            def inner(name: str) -> str:
                return element if name == part.element else resolve(name)

            self.scope(part.body.graph, f"{place}.", inner, depth + 1)
        elif isinstance(part, SwitchDef):
            for case in part.cases:
                case_place = f"{place}.{case.name}"
                cid = self.open(case_place, case_title(case), depth + 1, status=False)
                if case.when is not None:
                    self.uses([a.source for a in case.when.arguments], resolve, cid)
                self.scope(case.body.graph, f"{case_place}.", resolve, depth + 2)
                self.close(depth + 1)
        elif isinstance(part, GroupDef):
            self.uses([a.source for a in part.own_arguments()], resolve, sid)
            self.scope(part.body.graph, f"{place}.", resolve, depth + 1)
        self.close(depth)

    def child(self, spec: ComposeStep, place: str, resolve: Resolve, depth: int) -> None:
        """A composed (or recursed) workflow's own chart, its inputs wired to this scope."""
        self.open(place, child_title(spec, place.rsplit(".", 1)[-1]), depth)
        mapping = {a.param: a.source for a in spec.arguments}
        graph = spec.workflow.graph
        for name in graph.inputs:
            if name not in mapping:  # left to the child's default
                self.nodes.append(f"{INDENT * (depth + 1)}{node_id(f'{place}.{name}')}([{name}])")

        def inner(name: str) -> str:
            return resolve(mapping[name]) if name in mapping else node_id(f"{place}.{name}")

        self.scope(graph, f"{place}.", inner, depth + 1)
        self.close(depth)


# --- titles ---------------------------------------------------------------------------------


def part_title(part: PartDef) -> str:
    """What a part does, in a few words: the title of its subgraph."""
    if isinstance(part, MapDef):
        over = ".".join((part.over.source, *part.over.path))
        limits = [f"batch {part.batch_size}"] if part.batch_size != DEFAULT_BATCH_SIZE else []
        if part.max_concurrency is not None:
            limits.append(f"at most {part.max_concurrency} at a time")
        extra = f" ({', '.join(limits)})" if limits else ""
        return f"{part.name}: for each {part.element} in {over}{extra}"
    if isinstance(part, SwitchDef):
        return f"{part.name}: switch, first matching case"
    if isinstance(part, GroupDef):
        hooks = []
        for hook in ("before", "around", "after"):
            wired = getattr(part, hook)
            if wired is not None:
                fn_name = getattr(wired.fn, "__name__", hook)
                shown = fn_name not in (hook, "<lambda>")
                hooks.append(f"{hook} {fn_name}" if shown else hook)
        return f"{part.name}: group" + (f", {', '.join(hooks)}" if hooks else "")
    return part.name


def case_title(case: CaseDef) -> str:
    if case.when is None:
        return f"{case.name} (default)"
    text = lambda_text(case.when.fn)
    return f"{case.name}: when {text}" if text else case.name


def child_title(spec: ComposeStep, name: str) -> str:
    title = f"{name}: {spec.kind} {spec.workflow.__qualname__}"
    if not isinstance(spec, RecurseStep):
        return title
    limits = []
    if spec.until is not None:
        limits.append(f"until {lambda_text(spec.until) or getattr(spec.until, '__name__', '...')}")
    if spec.max_iterations != math.inf:
        limits.append(f"at most {spec.max_iterations}")
    return f"{title} ({', '.join(limits)})"


def lambda_text(fn: Any) -> str | None:
    """The body of a one-line lambda as written (``method == 'card'``), or None when it is
    not a lambda, its source is not at hand, or it cannot be told apart on its line."""
    code = getattr(fn, "__code__", None)
    if getattr(fn, "__name__", None) != "<lambda>" or code is None:
        return None
    try:
        lines, start = inspect.getsourcelines(fn)
    except (OSError, TypeError):
        return None
    source = textwrap.dedent("".join(lines))
    tree = None
    for candidate in (source, source.rstrip() + "\n    pass\n"):
        try:
            tree = ast.parse(candidate)
            break
        except SyntaxError:
            continue
    if tree is None:
        return None
    params = list(code.co_varnames[: code.co_argcount])
    line = code.co_firstlineno - start + 1
    found = [
        node
        for node in ast.walk(tree)
        if isinstance(node, ast.Lambda)
        and node.lineno == line
        and [a.arg for a in node.args.args] == params
    ]
    if len(found) != 1:
        return None
    text = ast.unparse(found[0].body)
    return text if len(text) <= LAMBDA_TEXT_LIMIT else None


def escape(text: str) -> str:
    """A title safe inside a quoted Mermaid label (quotes and angle brackets as entities)."""
    for char, entity in (("#", "#35;"), ('"', "#quot;"), ("<", "#lt;"), (">", "#gt;")):
        text = text.replace(char, entity)
    return text
