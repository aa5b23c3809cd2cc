"""The DAG of a workflow, built with networkx when the class is defined.

Nodes are steps; an edge ``a -> b`` means ``b`` needs ``a`` (its result, a sub-field of it,
its guard reads it, or ``wait_for``). Building it checks everything that can be checked
without running: unknown names, names that are both an input and a step, cycles (reported
with the steps on them), and a workflow without steps.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import networkx as nx

from ..errors import WorkflowDefinitionError
from ..suggest import did_you_mean
from .chart_ids import STYLES, node_id, outcome_styles

__all__ = [
    "STYLES",
    "WorkflowGraph",
    "dag_mermaid",
    "dag_order",
    "node_id",
    "outcome_styles",
]

if TYPE_CHECKING:
    from .dsl import StepDef
    from .records import ChildRun


@dataclass(frozen=True, slots=True)
class WorkflowGraph:
    graph: nx.DiGraph
    order: tuple[str, ...]
    """Steps in declaration order (the tie-break when several are ready)."""
    inputs: tuple[str, ...]
    needs: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    """Each step's predecessors, and below its successors, read off the graph once when
    the class is defined: a run looks them up for every step, and networkx builds a view
    each time it is asked."""
    feeds: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    dag: Mapping[str, list[str]] = field(default_factory=dict)
    """What each run records as its DAG (step -> its dependencies)."""

    @classmethod
    def build(
        cls,
        owner: str,
        steps: Mapping[str, StepDef],
        inputs: tuple[str, ...],
        *,
        part: bool = False,
    ) -> WorkflowGraph:
        """``part``: the body of a part (``owner`` says which, ``map Checkout.each``), whose
        ``inputs`` are the names visible around it."""
        label = owner if part else f"workflow {owner}"
        outside = "names around it" if part else "inputs"
        if not steps:
            raise WorkflowDefinitionError(
                f"{label} has no steps: decorate at least one method with @step"
            )
        clash = sorted(set(inputs) & set(steps))
        if clash:
            what = "a step and a name around it" if part else "both an input and a step"
            raise WorkflowDefinitionError(f"{label}: {clash} name {what}; rename one")
        graph = nx.DiGraph()
        for index, (name, spec) in enumerate(steps.items()):
            graph.add_node(name, index=index, spec=spec)
        known = f"{outside}: {list(inputs) or 'none'}; steps: {list(steps)}"
        for name, spec in steps.items():
            wired = [(a.param, a.source, "arg") for a in spec.arguments]
            wired += [(a.param, a.source, "where") for a in spec.where_arguments]
            for param, source, kind in wired:
                if source in steps:
                    graph.add_edge(source, name, kind=kind)
                elif source not in inputs:
                    what = "guard parameter" if kind == "where" else "parameter"
                    raise WorkflowDefinitionError(
                        f"{label}: step {name!r} {what} {param!r} names "
                        f"{source!r}, which is neither an input nor a step ({known})"
                    )
            for waited in spec.wait_for:
                if part and waited in inputs and waited not in steps:
                    continue  # a step around the part: the part itself waits for it
                if waited not in steps:
                    around = f"; names around it: {list(inputs)}" if part else ""
                    hint = did_you_mean(waited, [*steps, *(inputs if part else ())])
                    raise WorkflowDefinitionError(
                        f"{label}: step {name!r} waits for unknown step {waited!r}"
                        + (f" ({hint})" if hint else "")
                        + f" (steps: {list(steps)}{around})"
                    )
                if not graph.has_edge(waited, name):
                    graph.add_edge(waited, name, kind="wait_for")
        _check_declared_paths(label, steps)
        if not nx.is_directed_acyclic_graph(graph):
            cycle = [edge[0] for edge in nx.find_cycle(graph)]
            path = " -> ".join([*cycle, cycle[0]])
            raise WorkflowDefinitionError(f"{label} has a cycle: {path}")
        needs = {name: tuple(graph.predecessors(name)) for name in steps}
        return cls(
            graph,
            tuple(steps),
            inputs,
            needs=needs,
            feeds={name: tuple(graph.successors(name)) for name in steps},
            dag={name: list(preds) for name, preds in needs.items()},
        )

    def predecessors(self, step: str) -> list[str]:
        return list(self.graph.predecessors(step))

    def successors(self, step: str) -> list[str]:
        return list(self.graph.successors(step))

    def topological(self) -> list[str]:
        """A stable topological order: among ready steps, declaration order first."""
        index = {name: i for i, name in enumerate(self.order)}
        return list(nx.lexicographical_topological_sort(self.graph, key=index.__getitem__))

    def mermaid(self, outcomes: Mapping[str, str] | None = None) -> str:
        """Mermaid flowchart text; with ``outcomes`` (step -> status) each node shows its status.

        Node ids are prefixed (``s_<step>``, ``input_<input>``) and the label is the name: a
        step named ``end``, ``graph``, ``style``, ``class``, ``click`` or ``subgraph`` would
        otherwise be read as a Mermaid keyword (``end`` breaks the chart). Parts, composed
        and recursed workflows are drawn as subgraphs (see ``diagram``)."""
        from .diagram import workflow_chart

        return workflow_chart(self, outcomes)


def dag_order(dag: Mapping[str, Sequence[str]], positions: Mapping[str, int]) -> list[str]:
    """The steps of a recorded DAG in a stable topological order (declaration order first)."""
    graph = nx.DiGraph()
    graph.add_nodes_from(dag)
    graph.add_edges_from((dep, name) for name, deps in dag.items() for dep in deps)
    return list(
        nx.lexicographical_topological_sort(graph, key=lambda n: (positions.get(n, 1 << 30), n))
    )


def dag_mermaid(
    dag: Mapping[str, Sequence[str]],
    order: Sequence[str],
    outcomes: Mapping[str, str],
    *,
    graph: WorkflowGraph | None = None,
    children: Sequence[ChildRun] = (),
    max_elements: int | None = None,
) -> str:
    """Mermaid text for a DAG as the run log recorded it (step -> its dependencies); a
    part's steps (``each[3].pack``) are drawn inside subgraphs by their place. ``graph``
    (the workflow's) adds part titles and the edges inside parts, ``children`` (the run's
    child runs) names them on their compose/recurse step (see ``run_diagram``)."""
    from .run_diagram import MAX_ELEMENTS, run_chart

    return run_chart(
        dag,
        order,
        outcomes,
        graph=graph,
        children=children,
        max_elements=MAX_ELEMENTS if max_elements is None else max_elements,
    )


def _check_declared_paths(label: str, steps: Mapping[str, StepDef]) -> None:
    """A sub-field path into a step's result that its return annotation says cannot exist
    (a typo in a field name, a path into a ``str``) is an error now, not at run time."""
    from .declared_paths import path_problem, return_type

    declared: dict[str, Any] = {}
    for name, spec in steps.items():
        for argument in (*spec.arguments, *spec.where_arguments):
            source = steps.get(argument.source)
            if not argument.path or source is None or source.composite:
                continue
            if argument.source not in declared:
                declared[argument.source] = return_type(source.fn)
            problem = path_problem(declared[argument.source], argument.path)
            if problem is not None:
                depth, what = problem
                wanted = ".".join((argument.source, *argument.path))
                at = ".".join((argument.source, *argument.path[:depth]))
                raise WorkflowDefinitionError(
                    f"{label}: step {name!r} argument {argument.param!r} wants {wanted}: "
                    f"{at} {what} (as step {argument.source!r} declares what it returns)"
                )
