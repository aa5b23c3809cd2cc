"""Definition-time checks: a bad DAG fails when the class statement runs."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import BaseModel

from jobsaga import App, StepContext, Workflow, step
from jobsaga.errors import WorkflowDefinitionError, WorkflowInputError, WorkflowOutsideJobError
from jobsaga.testing import run_workflow
from jobsaga.workflow.graph import dag_mermaid


def test_unknown_name_is_named() -> None:
    with pytest.raises(WorkflowDefinitionError, match=r"step 'b' parameter 'typo' names 'typo'"):

        class Bad(Workflow, inputs=["x"]):
            @step
            def a(self, x: int) -> int:
                return x

            @step
            def b(self, typo: int) -> int:
                return typo


def test_duplicate_step_is_refused() -> None:
    with pytest.raises(WorkflowDefinitionError, match="duplicate step 'a'"):

        class Bad(Workflow):
            @step
            def a(self) -> int:
                return 1

            @step
            def a(self) -> int:  # type: ignore[no-redef]  # noqa: F811
                return 2


def test_duplicate_explicit_name_is_refused() -> None:
    with pytest.raises(WorkflowDefinitionError, match="duplicate step 'a'"):

        class Bad(Workflow):
            @step
            def a(self) -> int:
                return 1

            @step(name="a")
            def other(self) -> int:
                return 2


def test_cycle_names_its_steps() -> None:
    with pytest.raises(
        WorkflowDefinitionError,
        match=r"cycle: (a -> b -> c -> a|b -> c -> a -> b|c -> a -> b -> c)",
    ):

        class Bad(Workflow):
            @step
            def a(self, c: int) -> int:
                return c

            @step
            def b(self, a: int) -> int:
                return a

            @step
            def c(self, b: int) -> int:
                return b


def test_wait_for_cycle_and_unknown() -> None:
    with pytest.raises(WorkflowDefinitionError, match="cycle"):

        class Bad(Workflow):
            @step(wait_for=["b"])
            def a(self) -> None: ...

            @step(wait_for=["a"])
            def b(self) -> None: ...

    with pytest.raises(WorkflowDefinitionError, match="waits for unknown step 'nope'"):

        class Bad2(Workflow):
            @step(wait_for=["nope"])
            def a(self) -> None: ...


def test_no_steps_is_an_error() -> None:
    with pytest.raises(WorkflowDefinitionError, match="has no steps"):

        class Empty(Workflow):
            pass


def test_abstract_base_and_inheritance() -> None:
    class Base(Workflow, abstract=True, inputs=["x"]):
        @step
        def a(self, x: int) -> int:
            return x + 1

    class Child(Base):
        @step
        def b(self, a: int) -> int:
            return a * 10

    assert list(Child.steps) == ["a", "b"]
    assert Child.result_step() == "b"


def test_unknown_option_and_bad_returns() -> None:
    with pytest.raises(WorkflowDefinitionError, match="max_concurency"):

        class Bad(Workflow, max_concurency=3):  # type: ignore[call-arg]
            @step
            def a(self) -> None: ...

    with pytest.raises(WorkflowDefinitionError, match="returns='z' is not a step"):

        class Bad2(Workflow, returns="z"):
            @step
            def a(self) -> None: ...


def test_hook_parameters_are_checked() -> None:
    with pytest.raises(WorkflowDefinitionError, match="'nope' is neither ctx nor"):

        class Bad(Workflow, inputs=["x"]):
            @step
            def a(self, x: int) -> int:
                return x

            @a.undo
            def undo_a(self, result: int, nope: int) -> None: ...


def test_context_parameter_by_annotation() -> None:
    class W(Workflow):
        @step
        def a(self, context: StepContext[Any]) -> str:
            return context.step

    assert W.steps["a"].context_param == "context"
    assert W.steps["a"].arguments == ()


def test_mermaid_shows_inputs_edges_and_wait_for() -> None:
    class W(Workflow, inputs=["user_id"]):
        @step
        def load(self, user_id: str) -> dict[str, str]:
            return {"email": "x"}

        @step(args={"email": "load.email"})
        def notify(self, email: str) -> None: ...

        @step(wait_for=["notify"])
        def audit(self) -> None: ...

    text = W.mermaid()
    assert text.startswith("flowchart TD\n")
    assert "input_user_id([user_id])" in text
    assert 's_load["load"]' in text
    assert "input_user_id --> s_load" in text
    assert "s_load --> s_notify" in text
    assert "s_notify -.-> s_audit" in text


def test_mermaid_node_ids_never_clash_with_keywords() -> None:
    """``end`` closes a Mermaid block, and graph, subgraph, style, class and click are
    statements: as raw node ids they break the chart. Ids are prefixed, labels keep names."""

    class W(Workflow, inputs=["x"]):
        @step
        def end(self, x: int) -> int:
            return x

        @step
        def subgraph(self, end: int) -> int:
            return end

        @step(wait_for=["end"])
        def click(self, subgraph: int) -> None: ...

    assert W.graph is not None
    for text in (W.mermaid(), W.graph.mermaid({"end": "succeeded", "subgraph": "failed"})):
        lines = text.splitlines()
        assert lines[0] == "flowchart TD"
        assert "    input_x --> s_end" in lines
        assert "    s_end --> s_subgraph" in lines
        assert "    s_end -.-> s_click" in lines
        assert "    s_subgraph --> s_click" in lines
        for line in lines[1:]:  # every statement starts with a prefixed id or a class line
            assert line.split()[0].startswith(("s_", "input_", "classDef", "class")), line
    assert '    s_end["end"]' in W.mermaid().splitlines()
    styled = W.graph.mermaid({"end": "succeeded", "subgraph": "failed"}).splitlines()
    assert '    s_end["end<br/>succeeded"]' in styled
    assert "    class s_end succeeded" in styled and "    class s_subgraph failed" in styled

    recorded = dag_mermaid({"end": [], "style": ["end"]}, ["end", "style"], {"end": "undone"})
    assert recorded.splitlines()[1:] == [
        '    s_end["end<br/>undone"]',
        '    s_style["style<br/>pending"]',
        "    s_end --> s_style",
        "    classDef undone fill:#e2e3e5",
        "    class s_end undone",
    ]


class Typed(Workflow):
    class Inputs(BaseModel):
        order_id: str
        quantity: int

    @step
    def total(self, order_id: str, quantity: int) -> str:
        return f"{order_id}:{quantity}"


def test_missing_input_fails_before_any_step(tmp_path: Any) -> None:
    app = App(f"sqlite:///{tmp_path / 'x.db'}")
    app.migrate()
    with pytest.raises(WorkflowInputError, match="'quantity'"):
        run_workflow(Typed, {"order_id": "o1"}, app=app)
    with app.engine.transaction() as tx:
        assert tx.execute("SELECT count(*) AS n FROM jobsaga_workflow_runs")[0]["n"] == 0
    result = run_workflow(Typed, {"order_id": "o1", "quantity": "3"}, app=app)
    assert result.value == "o1:3"
    app.close()


def test_running_outside_a_job_is_refused() -> None:
    with pytest.raises(WorkflowOutsideJobError, match="WorkflowWorker"):
        Typed.run({"order_id": "o", "quantity": 1})


def test_a_step_is_a_plain_method_on_an_instance() -> None:
    assert Typed().total("o", 2) == "o:2"

    class WithUndo(Workflow):
        @step
        def a(self) -> int:
            return 1

        @a.undo
        def undo_a(self, result: int) -> str:
            return f"undo {result} on {type(self).__name__}"

    assert WithUndo().undo_a(1) == "undo 1 on WithUndo"


def test_a_step_method_cannot_shadow_a_workflow_attribute() -> None:
    with pytest.raises(
        WorkflowDefinitionError, match=r"cannot be called 'name'.*@step\(name='name'\)"
    ):

        class Bad(Workflow):
            @step
            def name(self) -> None: ...  # type: ignore[override]

    class Good(Workflow):
        @step(name="run")
        def run_it(self) -> str:
            return "ran"

    assert list(Good.steps) == ["run"]


def test_an_unmigrated_database_gets_a_clear_error(tmp_path: Any) -> None:
    from jobsaga.errors import MigrationError

    app = App(f"sqlite:///{tmp_path / 'empty.db'}")
    with pytest.raises(MigrationError, match=r"app.migrate\(\)"):
        run_workflow(Typed, {"order_id": "o", "quantity": 1}, app=app)
    assert run_workflow(Typed, {"order_id": "o", "quantity": 1}).ok
    app.close()


def test_a_misspelt_workflow_option_is_one_line_with_a_suggestion() -> None:
    """As a worker's class options are: no raw pydantic text, the closest option named."""
    with pytest.raises(WorkflowDefinitionError) as refused:

        class Typo(Workflow, max_concurency=2):
            pass

    assert str(refused.value) == (
        "workflow test_a_misspelt_workflow_option_is_one_line_with_a_suggestion.<locals>.Typo: "
        "unknown option 'max_concurency': did you mean 'max_concurrency'?"
    )
