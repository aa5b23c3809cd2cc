"""Mermaid charts of composed workflows: ``jobsaga workflow graph`` draws maps, switches,
groups, compose and recurse as subgraphs; ``runs show --graph`` draws a run's part steps
inside subgraphs by their place. Every chart is checked structurally (balanced subgraphs,
each id declared once, ids without dots or brackets, every edge between declared ids)."""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from typing import Any

import pytest
from pydantic import BaseModel

from jobsaga import App, Workflow, step
from jobsaga.testing import run_workflow
from jobsaga.workflow import RunStatus, get_run
from jobsaga.workflow.graph import dag_mermaid, dag_order, node_id
from jobsaga.workflow.parts import Case, Default, Group, Map, Switch, compose, recurse
from jobsaga.workflow.records import RunRecord
from tests.workflow.conftest import TRAIL


@contextlib.contextmanager
def transaction(ctx: Any) -> Iterator[None]:
    TRAIL.append("begin")
    yield None


class Pack(Workflow):
    class Inputs(BaseModel):
        item: int
        note: str = ""  # left to its default by Shop's compose

    @step
    def box(self, item: int) -> str:
        return f"box {item}"

    @step
    def end(self, box: str, note: str = "") -> str:  # a Mermaid keyword as a step name
        return box


class Halve(Workflow, inputs=["n"]):
    @step
    def halve(self, n: int) -> dict[str, int]:
        return {"n": n // 2}


class Shop(Workflow, inputs=["items", "method", "refuse"]):
    @step
    def load(self, items: list[int]) -> list[int]:
        return items

    class each(Map, over="load", element="item", batch_size=2, max_concurrency=4):
        @step
        def pack(self, item: int) -> int:
            return item

        class pay(Switch):
            class card(Case, when=lambda method: method == "card"):
                @step
                def charge(self, pack: int, refuse: int) -> int:
                    if pack == refuse:
                        raise ValueError(f"card refused for {pack}")
                    return pack

                @charge.undo
                def refund(self, charge: int) -> None:
                    TRAIL.append(f"refund {charge}")

            class wire(Case):
                def when(self, method: str) -> bool:  # a method: the title names the case
                    return method == "wire"

                @step
                def transfer(self, pack: int) -> int:
                    return pack

            class otherwise(Default):
                @step
                def invoice(self, pack: int) -> int:
                    return pack

    class move(Group, around=transaction):
        @step
        def debit(self, each: list[int]) -> int:
            return sum(each)

        @step
        def credit(self, debit: int) -> int:
            return debit

    shipment = compose(Pack, inputs={"item": "move"})
    halving = recurse(Halve, inputs={"n": "move"}, until=lambda r: r["n"] <= 1, max_iterations=8)

    @step(name="end")
    def finish(self, shipment: str, halving: dict[str, int]) -> str:
        return shipment


# --- a structural check of Mermaid flowchart text ------------------------------------------

ID = re.compile(r"[A-Za-z0-9_]+")
KEYWORDS = {"end", "subgraph", "graph", "flowchart", "style", "class", "classDef", "click"}
NODE = re.compile(r'(\w+)(?:\["([^"]*)"\]|\(\[([^\]"]*)\]\))')
SUBGRAPH = re.compile(r'subgraph (\w+) \["([^"]*)"\]')
EDGE = re.compile(r"(\w+) (-->|-\.->) (\w+)")


def check_mermaid(text: str) -> dict[str, str]:
    """Parse the chart's statements; fail on anything Mermaid would misread. Returns every
    declared id with its label or title."""
    lines = text.splitlines()
    assert lines[0] == "flowchart TD"
    declared: dict[str, str] = {}
    depth = 0
    edges_started = False
    for line in lines[1:]:
        indent = len(line) - len(line.lstrip(" "))
        statement = line.strip()
        assert indent == 4 * (depth + (statement != "end")), line
        if statement == "end":
            depth -= 1
            assert depth >= 0, "an end without its subgraph"
            continue
        if match := SUBGRAPH.fullmatch(statement):
            assert not edges_started, "declarations come before edges"
            name, title = match[1], match[2]
            depth += 1
        elif match := NODE.fullmatch(statement):
            assert not edges_started, "declarations come before edges"
            name, title = match[1], match[2] if match[2] is not None else match[3]
        elif match := EDGE.fullmatch(statement):
            edges_started = True
            for end in (match[1], match[3]):
                assert end in declared, f"edge to an undeclared id: {line}"
            continue
        elif statement.startswith("classDef "):
            continue
        elif statement.startswith("class "):
            ids, _status = statement.split()[1:]
            for used in ids.split(","):
                assert used in declared, f"class of an undeclared id: {line}"
            continue
        else:
            raise AssertionError(f"not a statement of ours: {line!r}")
        assert ID.fullmatch(name) and name not in KEYWORDS, name
        assert name not in declared, f"id {name} declared twice"
        assert '"' not in title, title
        declared[name] = title
    assert depth == 0, "a subgraph is never closed"
    return declared


# --- jobsaga workflow graph -----------------------------------------------------------------


def test_workflow_graph_draws_parts_compose_and_recurse_as_subgraphs() -> None:
    text = Shop.mermaid()
    declared = check_mermaid(text)
    lines = text.splitlines()
    assert lines[:8] == [
        "flowchart TD",
        "    input_items([items])",
        "    input_method([method])",
        "    input_refuse([refuse])",
        '    s_load["load"]',
        '    subgraph s_each ["each: for each item in load (batch 2, at most 4 at a time)"]',
        "        p_each__item([item])",
        '        p_each__pack["pack"]',
    ]
    block = "\n".join(lines[8:22])
    assert block == (
        '        subgraph p_each__pay ["pay: switch, first matching case"]\n'
        "            subgraph p_each__pay__card [\"card: when method == 'card'\"]\n"
        '                p_each__pay__card__charge["charge"]\n'
        "            end\n"
        '            subgraph p_each__pay__wire ["wire"]\n'
        '                p_each__pay__wire__transfer["transfer"]\n'
        "            end\n"
        '            subgraph p_each__pay__otherwise ["otherwise (default)"]\n'
        '                p_each__pay__otherwise__invoice["invoice"]\n'
        "            end\n"
        "        end\n"
        "    end\n"
        '    subgraph s_move ["move: group, around transaction"]\n'
        '        p_move__debit["debit"]'
    )
    assert '    subgraph s_shipment ["shipment: compose Pack"]' in lines
    assert "        p_shipment__note([note])" in lines  # an input the parent leaves unset
    assert '        p_shipment__end["end"]' in lines
    assert (
        "    subgraph s_halving [\"halving: recurse Halve (until r['n'] #lt;= 1, at most 8)\"]"
        in lines
    )
    assert '    s_end["end"]' in lines
    edges = {line.strip() for line in lines if "-->" in line or "-.->" in line}
    assert edges == {
        "s_load --> s_each",  # the map's over= points at the map
        "p_each__item --> p_each__pack",  # the element, to the steps that use it
        "input_method --> p_each__pay__card",  # a case's when, to the case
        "input_method --> p_each__pay__wire",
        "p_each__pack --> p_each__pay__card__charge",  # a step of the map, into the case
        "input_refuse --> p_each__pay__card__charge",  # an outer input, to its user
        "p_each__pack --> p_each__pay__wire__transfer",
        "p_each__pack --> p_each__pay__otherwise__invoice",
        "s_each --> p_move__debit",  # the map's result, from its subgraph
        "p_move__debit --> p_move__credit",
        "s_move --> p_shipment__box",  # compose's input, to the child's step using it
        "p_shipment__box --> p_shipment__end",
        "p_shipment__note --> p_shipment__end",
        "s_move --> p_halving__halve",
        "input_items --> s_load",
        "s_shipment --> s_end",
        "s_halving --> s_end",
    }
    assert not any(set(name) & set(".[]") for name in declared)


def test_a_run_chart_of_the_workflow_shows_outcomes_and_a_compose_as_one_node() -> None:
    assert Shop.graph is not None
    text = Shop.graph.mermaid({"load": "succeeded", "shipment": "failed", "move.debit": "undone"})
    check_mermaid(text)
    lines = text.splitlines()
    assert '    s_shipment["shipment<br/>failed"]' in lines  # the child's steps are its run's
    assert "p_shipment__box" not in text
    assert (
        '        p_move__debit["debit<br/>undone"]' in lines
    )  # a group's step, as the run names it
    assert '        p_each__pack["pack<br/>pending"]' in lines
    assert "    class p_move__debit undone" in lines
    assert "    s_move --> s_shipment" in lines


def test_node_ids_of_places_are_distinct_and_plain() -> None:
    places = [
        "each",
        "each[3].pack",
        "each[3]_pack",
        "each_3_.pack",
        "each.i3_j",
        "each[3].pay.card.charge_card",
        "each[3].pay.card_charge.card",
        "a__b",
        "a.b",
        "a._b",
        "a_.b",
        "each[…]",
        "end",
    ]
    ids = [node_id(p) for p in places]
    assert len(set(ids)) == len(ids)
    for made in ids:
        assert ID.fullmatch(made) and made not in KEYWORDS
    assert node_id("each[3].pack") == "p_each_i3_j__pack"
    assert node_id("load_prompt") == "s_load_prompt"  # a workflow's own step: as before


# --- runs show --graph ----------------------------------------------------------------------


def recorded_order(run: RunRecord) -> tuple[dict[str, list[str]], list[str]]:
    """What ``runs show`` hands dag_mermaid: the DAG's order, then the part steps."""
    deps = dict(run.dag or {})
    order = dag_order(deps, {s.step: s.position for s in run.steps})
    records = [s.step for s in run.steps]
    return deps, [n for n in order if n in records] + [n for n in records if n not in order]


def test_runs_show_graph_draws_a_runs_part_steps_inside_subgraphs(app: App) -> None:
    result = run_workflow(Shop, {"items": [1, 2, 3], "method": "card", "refuse": -1}, app=app)
    assert result.ok, result.error
    assert result.run_id is not None
    run = get_run(app, result.run_id)
    assert run is not None
    deps, order = recorded_order(run)
    shipment, *halvings = run.children
    text = dag_mermaid(deps, order, run.statuses(), graph=Shop.graph, children=run.children)
    declared = check_mermaid(text)
    lines = text.splitlines()
    each = lines.index(
        '    subgraph s_each ["each: for each item in load (batch 2, at most 4 at a time)'
        '<br/>succeeded"]'
    )
    assert lines[each + 1 : each + 9] == [
        '        subgraph p_each_i0_j ["each[0]"]',
        '            p_each_i0_j__pack["pack<br/>succeeded"]',
        '            subgraph p_each_i0_j__pay ["pay: switch, first matching case<br/>succeeded"]',
        "                subgraph p_each_i0_j__pay__card [\"card: when method == 'card'\"]",
        '                    p_each_i0_j__pay__card__charge["charge<br/>succeeded"]',
        "                end",
        "            end",
        "        end",
    ]
    for i in range(3):
        assert f"p_each_i{i}_j" in declared and f"p_each_i{i}_j__pay__card" in declared
        assert f"    p_each_i{i}_j__pack --> p_each_i{i}_j__pay__card__charge" in lines
    assert "p_each_i3_j" not in declared and "more element" not in text
    assert '    subgraph s_move ["move: group, around transaction<br/>succeeded"]' in lines
    assert "    s_each --> p_move__debit" in lines and "    s_load --> s_each" in lines
    assert (
        f'    s_shipment["shipment<br/>compose Pack<br/>succeeded<br/>'
        f'child run {shipment.id} (succeeded)"]' in lines
    )
    assert [h.iteration for h in halvings] == [0, 1]  # 6 -> 3 -> 1
    halving = next(line for line in lines if line.startswith("    s_halving["))
    assert f"iteration 0: child run {halvings[0].id} (succeeded)" in halving
    assert f"iteration 1: child run {halvings[1].id} (succeeded)" in halving
    assert "class " in lines[-1] and "p_each_i2_j__pay__card__charge" in lines[-1]

    # without the workflow (not registered): the same places, plain titles, no inner edges
    bare = dag_mermaid(deps, order, run.statuses())
    bare_ids = check_mermaid(bare)
    assert set(bare_ids) == set(declared)
    assert '    subgraph s_each ["each<br/>succeeded"]' in bare.splitlines()
    assert "p_each_i0_j__pack -->" not in bare


def test_a_failed_element_is_coloured_and_the_rest_undone(app: App) -> None:
    result = run_workflow(Shop, {"items": [1, 2, 3], "method": "card", "refuse": 2}, app=app)
    assert result.status is RunStatus.ROLLED_BACK
    assert result.run_id is not None
    run = get_run(app, result.run_id)
    assert run is not None
    deps, order = recorded_order(run)
    text = dag_mermaid(deps, order, run.statuses(), graph=Shop.graph, children=run.children)
    check_mermaid(text)
    lines = text.splitlines()
    assert '                    p_each_i1_j__pay__card__charge["charge<br/>failed"]' in lines
    failed = next(line for line in lines if line.startswith("    class ") and "failed" in line)
    assert "p_each_i1_j__pay__card__charge" in failed.split()[1].split(",")
    assert '    s_shipment["shipment<br/>compose Pack<br/>pending"]' in lines  # never ran


def test_a_large_map_draws_its_first_elements_and_counts_the_rest() -> None:
    dag = {"load": [], "each": ["load"]}
    names = [f"each[{i}].{s}" for i in range(1000) for s in ("pack", "pay", "pay.card.charge")]
    outcomes = {name: "succeeded" for name in ["load", "each", *names]}
    outcomes["each[990].pack"] = "failed"
    text = dag_mermaid(dag, ["load", "each", *names], outcomes, graph=Shop.graph)
    declared = check_mermaid(text)
    assert sum(1 for i in range(1000) if f"p_each_i{i}_j" in declared) == 20
    assert "p_each_i19_j" in declared and "p_each_i20_j" not in declared
    assert declared[node_id("each[…]")] == (
        "… 980 more elements not drawn<br/>their 2940 steps: 1 failed, 2939 succeeded"
    )
    assert "p_each_i990_j__pack" not in text  # neither drawn nor styled
    few = check_mermaid(dag_mermaid(dag, ["load", "each", *names], outcomes, max_elements=2))
    assert declared[node_id("each[…]")] != few[node_id("each[…]")]
    assert few[node_id("each[…]")].startswith("… 998 more elements not drawn")


def test_a_plain_runs_chart_is_unchanged_with_or_without_the_graph() -> None:
    class Plain(Workflow, inputs=["x"]):
        @step
        def end(self, x: int) -> int:
            return x

        @step
        def style(self, end: int) -> int:
            return end

    outcomes = {"end": "undone"}
    expected = [
        "flowchart TD",
        '    s_end["end<br/>undone"]',
        '    s_style["style<br/>pending"]',
        "    s_end --> s_style",
        "    classDef undone fill:#e2e3e5",
        "    class s_end undone",
    ]
    dag = {"end": [], "style": ["end"]}
    assert dag_mermaid(dag, ["end", "style"], outcomes).splitlines() == expected
    with_graph = dag_mermaid(dag, ["end", "style"], outcomes, graph=Plain.graph)
    assert with_graph.splitlines() == expected


@pytest.mark.parametrize("workflow", [Shop, Pack, Halve])
def test_every_chart_of_these_workflows_parses(workflow: type[Workflow]) -> None:
    check_mermaid(workflow.mermaid())
