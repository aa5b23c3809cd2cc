"""Sub-field paths (``@step(args={"email": "load_user.email"})``) walk data, never code
(docs/workflows.md, "Sub-fields"): mapping keys, list/tuple indexes and the fields of pydantic
models, dataclasses and NamedTuples. Anything else fails the step, naming the argument."""

from __future__ import annotations

import dataclasses
from typing import Any, NamedTuple

import pytest
from pydantic import BaseModel, ConfigDict, computed_field

from jobsaga import App, Workflow, step
from jobsaga.errors import StepArgumentError
from jobsaga.testing import run_workflow
from jobsaga.workflow.dsl import Argument
from jobsaga.workflow.paths import follow_path


class User(BaseModel):
    model_config = ConfigDict(extra="allow")
    first: str
    last: str

    @computed_field  # type: ignore[prop-decorator]
    @property
    def full(self) -> str:
        return f"{self.first} {self.last}"

    @property
    def shout(self) -> str:  # a plain property: code, not a field
        return self.first.upper()


@dataclasses.dataclass
class Address:
    city: str

    @property
    def label(self) -> str:
        return self.city.title()


class Point(NamedTuple):
    x: int
    y: int


class Plain:
    def __init__(self) -> None:
        self.name = "an attribute of an arbitrary object"


def follow(value: Any, wanted: str, param: str = "arg") -> Any:
    source, *path = wanted.split(".")
    return follow_path(value, Argument(param, source, tuple(path)))


@pytest.mark.parametrize(
    ("value", "wanted", "expected"),
    [
        ({"email": "a@x"}, "load.email", "a@x"),
        ({"items": [{"sku": "s1"}, {"sku": "s2"}]}, "load.items.1.sku", "s2"),
        ((10, 20), "load.0", 10),
        (User(first="Ada", last="L"), "load.first", "Ada"),
        (User(first="Ada", last="L"), "load.full", "Ada L"),  # computed: the log keeps it
        (User(first="Ada", last="L", team="core"), "load.team", "core"),  # an allowed extra
        (Address(city="paris"), "load.city", "paris"),
        (Point(1, 2), "load.y", 2),
        (Point(1, 2), "load.1", 2),
        ({"user": User(first="Ada", last="L")}, "load.user.last", "L"),
    ],
)
def test_a_path_walks_keys_indexes_and_fields(value: Any, wanted: str, expected: Any) -> None:
    assert follow(value, wanted) == expected


@pytest.mark.parametrize(
    ("value", "wanted", "message"),
    [
        # before: each of these handed the step a bound method or an attribute
        ("2024", "when.upper", "when (str) has no field 'upper' (a path walks mappings, "),
        (7, "when.real", "when (int) has no field 'real' (a path walks mappings, "),
        (Plain(), "when.name", "when (Plain) has no field 'name' (a path walks mappings, "),
        (User(first="A", last="L"), "when.model_dump", "when (User) has no field 'model_dump'"),
        (User(first="A", last="L"), "when.shout", "when (User) has no field 'shout'"),
        (Address(city="p"), "when.label", "when (Address) has no field 'label' (it has: city)"),
        (Point(1, 2), "when.count", "when (Point) has no field 'count' (it has: x, y)"),
        ({"d": {"k": 1}}, "when.d.items", "when.d (dict) has no key 'items' (it has: k)"),
        ([1, 2], "when.append", "when (list) is indexed by a number, not 'append'"),
    ],
)
def test_a_path_never_reaches_code(value: Any, wanted: str, message: str) -> None:
    with pytest.raises(StepArgumentError) as refused:
        follow(value, wanted, param="year")
    assert str(refused.value).startswith(f"argument 'year' wants {wanted}: {message}")


def test_a_missing_field_names_the_closest_one() -> None:
    """Before: ``argument 'email' wants load.emial, which the value (dict) does not have``."""
    with pytest.raises(StepArgumentError) as refused:
        follow({"email": "a@x", "name": "Ada"}, "load.emial", param="email")
    assert str(refused.value) == (
        "argument 'email' wants load.emial: load (dict) has no key 'emial' (did you mean 'email'?)"
    )
    with pytest.raises(StepArgumentError, match=r"load.items \(list of 2\) has no index 5$"):
        follow({"items": [1, 2]}, "load.items.5")


def test_a_none_inside_a_value_fails_the_path() -> None:
    """As in Reactor: a None in the middle of a result is not a skipped step."""
    with pytest.raises(StepArgumentError) as refused:
        follow({"user": None}, "load.user.email", param="email")
    assert str(refused.value) == (
        "argument 'email' wants load.user.email: load.user is None, which has no field "
        "'email' (only a skipped step's result gives None for its fields)"
    )


class DatePath(Workflow, inputs=["when"]):
    @step(args={"year": "when.upper"})
    def pick_year(self, year: Any) -> str:
        return str(year)


class ModelPath(Workflow, inputs=["user_id"]):
    @step
    def load(self, user_id: str) -> User:
        return User(first=user_id, last="L")

    @step(args={"name": "load.full"})
    def greet(self, name: str) -> str:
        return f"hello {name}"

    @step(args={"method": "load.model_dump"}, wait_for=["greet"])
    def misuse(self, method: Any) -> str:
        return "ran with " + type(method).__name__


def test_a_path_into_a_string_fails_the_step_naming_the_argument(app: App) -> None:
    """Before: the step got ``'2024'.upper`` (a bound method) and the run succeeded."""
    result = run_workflow(DatePath, {"when": "2024"}, app=app)
    assert not result.ok and result.error.step == "pick_year"
    assert isinstance(result.error.error, StepArgumentError)
    assert str(result.error.error).startswith(
        "argument 'year' wants when.upper: when (str) has no field 'upper'"
    )
    assert result.run.step("pick_year").status == "failed"


def test_a_path_reads_model_fields_but_not_its_methods(app: App) -> None:
    """Before: ``misuse`` got the model's bound ``model_dump`` and the run succeeded."""
    result = run_workflow(ModelPath, {"user_id": "Ada"}, app=app)
    assert result.run.step("greet").result == "hello Ada L"
    assert not result.ok and result.error.step == "misuse"
    assert str(result.error.error).startswith(
        "argument 'method' wants load.model_dump: load (User) has no field 'model_dump'"
    )


def test_a_path_the_return_annotation_rules_out_is_refused_when_the_class_is_defined() -> None:
    """As the run would refuse it, but at import: a misspelt field of a declared model, a
    path into a str; a path the annotation cannot settle (Any, a dict) is left to the run."""
    from jobsaga import Workflow, step
    from jobsaga.errors import WorkflowDefinitionError

    with pytest.raises(
        WorkflowDefinitionError,
        match=r"wants load\.emial: load \(Account\) has no field 'emial' \(did you mean 'email'\?\)",
    ):

        class Misspelt(Workflow, inputs=["uid"]):
            @step
            def load(self, uid: str) -> Account:
                return Account(email=uid, tags=[])

            @step(args={"e": "load.emial"})
            def send(self, e: str) -> None:
                return None

    with pytest.raises(WorkflowDefinitionError, match=r"load\.email is a str, which has no field"):

        class IntoAStr(Workflow, inputs=["uid"]):
            @step
            def load(self, uid: str) -> Account:
                return Account(email=uid, tags=[])

            @step(args={"e": "load.email.upper"})
            def send(self, e: str) -> None:
                return None

    class Settled(Workflow, inputs=["uid"]):  # fine: a declared field, an index, a dict
        @step
        def load(self, uid: str) -> Account:
            return Account(email=uid, tags=[])

        @step
        def loose(self, uid: str) -> dict[str, Any]:
            return {}

        @step(args={"e": "load.email", "t": "load.tags.0", "x": "loose.anything.deep"})
        def send(self, e: str, t: str, x: Any) -> None:
            return None


class Account(BaseModel):
    """At module level: an annotation a step names must resolve where its module is."""

    email: str
    tags: list[str]
