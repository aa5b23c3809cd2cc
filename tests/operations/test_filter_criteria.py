"""The job filter's priority, args and meta criteria (what the testing toolkit's assertions
match with), on both engines: a subset match on objects, JSON equality for everything else."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from pydantic import BaseModel

from jobsaga import App, FilterError, Job, JobFilter, Worker


class Plain(Worker):
    def perform(self, job: Job[Any]) -> None:
        return None


class Actor(BaseModel):
    id: int
    role: str


class Typed(Worker):
    class Args(BaseModel):
        order: int
        actor: Actor

    def perform(self, job: Job[Any]) -> None:
        return None


ARGS = {
    "order": {"id": 7, "lines": [1, 2], "ship": {"to": "eu", "fast": True}},
    "items": [{"sku": "a", "n": 1}, {"sku": "b", "n": 2}],
    "note": None,
    "price": 2.5,
    "count": 3,
    "flag": True,
    "odd key.with[dots]": "x",
}


@pytest.fixture
def stored(make_app: Callable[..., App]) -> tuple[App, int, int]:
    app = make_app(Plain)
    one = app.insert(Plain.new(ARGS, priority=3, meta={"trace": {"id": "t-1"}, "tries": [1]}))
    two = app.insert(Plain.new({"order": {"id": 8}}, priority=5))
    return app, one.id, two.id


def ids(app: App, **criteria: Any) -> list[int]:
    return [job.id for job in app.list_jobs(newest_first=False, **criteria)]


def test_priority_one_or_many(stored: tuple[App, int, int]) -> None:
    app, one, two = stored
    assert ids(app, priority=3) == [one]
    assert ids(app, priority=[5, 3]) == [one, two]
    assert ids(app, priority=0) == []
    assert app.count_jobs(priority=5) == {"available": 1}


@pytest.mark.parametrize(
    "wanted",
    [
        {},
        {"count": 3},
        {"count": 3.0},  # numbers compare by value, as in Python
        {"price": 2.5, "note": None, "flag": True},
        {"order": {"id": 7}},  # nested objects: a subset too
        {"order": {"ship": {"fast": True}}},
        {"order": {"lines": [1, 2]}},
        {"items": [{"n": 1, "sku": "a"}, {"sku": "b", "n": 2}]},  # key order does not matter
        {"odd key.with[dots]": "x"},
        ARGS,
    ],
)
def test_args_that_match(stored: tuple[App, int, int], wanted: dict[str, Any]) -> None:
    app, one, two = stored
    assert ids(app, args=wanted) == ([one] if wanted else [one, two])


@pytest.mark.parametrize(
    "wanted",
    [
        {"count": 4},
        {"count": "3"},  # JSON types differ
        {"flag": 1},  # true is not 1 in JSON
        {"missing": None},  # null must be there: a missing key is not null
        {"note": 0},
        {"order": {"id": 7, "other": 1}},
        {"order": {"lines": [1]}},  # arrays are equal whole: no subset of an array
        {"order": {"lines": [2, 1]}},  # and in order
        {"order": {"lines": [1, 2, 3]}},
        {"order": {"ship": "eu"}},
        {"items": [{"sku": "a"}, {"sku": "b", "n": 2}]},  # objects in arrays are equal whole
        {"items": [{"sku": "a", "n": 1, "x": 0}, {"sku": "b", "n": 2}]},
        {"order": {"id": {"deeper": 1}}},  # an object where a number is
        {"price": {"0": 2.5}},
        {"count": [3]},
    ],
)
def test_args_that_do_not_match(stored: tuple[App, int, int], wanted: dict[str, Any]) -> None:
    app, _one, _two = stored
    assert ids(app, args=wanted) == []


def test_meta_and_every_criterion_together(stored: tuple[App, int, int]) -> None:
    app, one, two = stored
    assert ids(app, meta={"trace": {"id": "t-1"}}) == [one]
    assert ids(app, meta={"tries": [1]}) == [one]
    assert ids(app, meta={"tries": []}) == []
    assert ids(app, meta={}) == [one, two]
    assert ids(app, args={"order": {"id": 8}}, priority=5, worker=Plain, state="available") == [two]
    assert ids(app, args={"order": {"id": 8}}, priority=3) == []
    assert app.count_jobs(JobFilter(meta={"trace": {}})) == {"available": 1}
    # args and meta together: each held against its own column (one walk serves both)
    assert ids(app, args={"flag": True}, meta={"trace": {"id": "t-1"}}) == [one]
    assert ids(app, args={"flag": True}, meta={"tries": []}) == []
    assert ids(app, args={"order": {"id": 8}}, meta={"tries": [1]}) == []
    assert ids(app, args={"tries": [1]}) == []  # a meta value is not found in args


def test_bulk_operations_take_the_new_criteria(stored: tuple[App, int, int]) -> None:
    app, one, two = stored
    assert app.cancel_jobs(args={"order": {"id": 8}}) == [two]
    assert app.delete_jobs(priority=3, meta={"tries": [1]}) == [one]


def test_a_pydantic_model_is_matched_as_it_is_stored(make_app: Callable[..., App]) -> None:
    app = make_app(Typed)
    actor = Actor(id=5, role="admin")
    job = app.insert(Typed.new({"order": 1, "actor": actor}))
    assert ids(app, args={"actor": actor}) == [job.id]
    assert ids(app, args=Typed.Args(order=1, actor=actor)) == [job.id]
    assert ids(app, args={"actor": Actor(id=6, role="admin")}) == []


def test_bad_values_are_filter_errors(app: App) -> None:
    with pytest.raises(FilterError, match="criterion 'priority'.*0 \\(highest\\) to 9"):
        app.list_jobs(priority=10)
    with pytest.raises(FilterError, match="criterion 'priority'"):
        app.list_jobs(priority=True)  # type: ignore[typeddict-item]
    with pytest.raises(FilterError, match="criterion 'args'.*expected an object"):
        app.list_jobs(args=[1, 2])  # type: ignore[arg-type]
    with pytest.raises(FilterError, match="criterion 'meta'.*NUL"):
        app.list_jobs(meta={"a": "nul\x00"})
    with pytest.raises(FilterError, match="criterion 'args'.*not JSON"):
        app.list_jobs(args={"a": object()})
    with pytest.raises(FilterError, match="criterion 'args'.*double quote"):
        app.list_jobs(args={"o": [{'k"': 1}]})  # SQLite's JSON paths cannot name it
    assert JobFilter(args={}).is_empty  # matches every job: no criterion for a bulk change
    assert not JobFilter(priority=1).is_empty
