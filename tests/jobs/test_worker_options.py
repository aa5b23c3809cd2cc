"""Worker class options: validated when the class is created, applied by ``new``."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from enum import Enum
from typing import Any

import pytest
from pydantic import BaseModel

from jobsaga import (
    App,
    ArgsError,
    Job,
    JobState,
    StepContext,
    Worker,
    Workflow,
    WorkflowWorker,
    step,
)
from jobsaga.errors import ConfigError
from tests.jobs.conftest import SEEN, count_jobs, wait_final


class Role(Enum):
    ADMIN = "admin"
    MEMBER = "member"


class Actor(BaseModel):
    id: str
    role: Role


class ProcessTask(Worker, queue="tasks", max_attempts=3, priority=1, tags=["processing"]):
    class Args(BaseModel):
        task_id: str
        count: int
        actor: Actor

    def perform(self, job: Job[Args]) -> None:
        SEEN.add((type(job.args).__name__, job.args.count, job.args.actor.role))


class Renamed(Worker, name="billing.charge"):
    def perform(self, job: Job[Any]) -> None:
        return None


class Plain(Worker):
    def perform(self, job: Job[Any]) -> None:
        return None


GOOD = {"task_id": "t1", "count": 2, "actor": {"id": "u1", "role": "admin"}}


def test_misspelt_option_is_an_error() -> None:
    with pytest.raises(ConfigError, match="max_attempt"):

        class Typo(Worker, max_attempt=3):
            pass


def test_bad_option_values_are_errors() -> None:
    for options in ({"priority": 10}, {"priority": -1}, {"max_attempts": 0}, {"queue": "a b"}):
        with pytest.raises(ConfigError):
            type("Bad", (Worker,), {}, **options)
    with pytest.raises(ConfigError, match="timeout"):
        type("Bad", (Worker,), {}, timeout=0)
    with pytest.raises(ConfigError, match="backoff"):
        type("Bad", (Worker,), {}, backoff=5)


def test_option_values_the_database_or_the_clock_cannot_take_are_errors() -> None:
    """Each of these passed class creation and failed later: at insert (in the database),
    at the first timeout (inf), or silently (a queue name ending in a newline)."""
    perform = {"perform": lambda self, job: None}
    for options, named in (
        ({"name": "a\x00b"}, "worker name"),
        ({"name": ""}, "worker name"),
        ({"tags": ["ok", "no\x00"]}, "tags"),
        ({"tags": ["\ud800"]}, "surrogate"),
        ({"timeout": float("nan")}, "timeout"),
        ({"timeout": float("inf")}, "timeout"),
        ({"queue": "mailers\n"}, "queue"),
        ({"max_attempts": 2**31}, "max_attempts"),
        ({"unique": "yes"}, "unique"),
    ):
        with pytest.raises(ConfigError, match=named):
            type("Bad", (Worker,), perform, **options)


def test_tags_from_an_iterator_are_kept() -> None:
    """The check used to consume an iterator and store no tags."""
    assert Plain.new({}, tags=iter(["a", "b"])).tags == ("a", "b")  # type: ignore[arg-type]
    with pytest.raises(ArgsError, match="tags must be a list of strings"):
        Plain.new({}, tags=5)  # type: ignore[arg-type]


def test_unique_keys_must_be_fields_of_args() -> None:
    with pytest.raises(ConfigError, match=r"unique keys \['tsk_id'\] are not fields of Args"):

        class Misspelt(Worker, unique={"keys": ["tsk_id"]}):
            class Args(BaseModel):
                task_id: str

            def perform(self, job: Job[Any]) -> None:
                return None

    with pytest.raises(ArgsError, match="unique keys"):
        ProcessTask.new(GOOD, unique={"keys": ["task"]})
    assert ProcessTask.new(GOOD, unique={"keys": ["task_id"]}).unique_key is not None


def test_tags_on_new_are_a_list_of_strings() -> None:
    assert Plain.new({}, tags=["a", "b"]).tags == ("a", "b")
    for bad in ("abc", ["a", 1]):
        with pytest.raises(ArgsError, match="tags must be a list of strings"):
            Plain.new({}, tags=bad)  # type: ignore[arg-type]


def test_a_worker_without_perform_is_refused_before_it_runs(app: App) -> None:
    class Preform(Worker):
        def preform(self, job: Job[Any]) -> None:  # misspelt
            return None

    with pytest.raises(ConfigError, match="Preform has no perform"):
        Preform.new({})
    with pytest.raises(ConfigError, match="Preform has no perform"):
        app.register(Preform)
    assert count_jobs(app) == 0


def test_priority_range_on_new() -> None:
    assert ProcessTask.new(GOOD, priority=0).priority == 0
    assert ProcessTask.new(GOOD, priority=9).priority == 9
    assert ProcessTask.new(GOOD).priority == 1  # the class option
    for bad in (-1, 10, True, 1.5):
        with pytest.raises(ArgsError, match="ProcessTask: priority must be"):
            ProcessTask.new(GOOD, priority=bad)  # type: ignore[arg-type]


def test_options_apply_to_the_job(app: App) -> None:
    stored = app.insert(ProcessTask.new(GOOD))
    assert (stored.queue, stored.max_attempts, stored.priority, stored.tags) == (
        "tasks",
        3,
        1,
        ("processing",),
    )
    override = app.insert(
        ProcessTask.new(GOOD, queue="other", max_attempts=7, priority=4, tags=["x"], meta={"m": 1})
    )
    assert (override.queue, override.max_attempts, override.priority, override.tags) == (
        "other",
        7,
        4,
        ("x",),
    )
    assert override.meta == {"m": 1}


def test_invalid_args_name_the_field_and_insert_nothing(app: App) -> None:
    bad = {**GOOD, "count": "many"}
    with pytest.raises(ArgsError, match="'count'"):
        app.insert(ProcessTask.new(bad))
    with pytest.raises(ArgsError, match=r"'actor\.role'"):
        app.insert_all(
            [ProcessTask.new(GOOD), ProcessTask.new({**GOOD, "actor": {"id": "u", "role": "x"}})]
        )
    with pytest.raises(ArgsError, match="'task_id'"):
        ProcessTask.new({"count": 1, "actor": GOOD["actor"]})
    assert count_jobs(app) == 0


def test_args_that_are_not_json_name_the_field(app: App) -> None:
    with pytest.raises(ArgsError, match="'when'.*not JSON"):
        Plain.new({"when": datetime.now(UTC)})
    with pytest.raises(ArgsError, match=r"'order\.total'"):
        Plain.new({"order": {"total": Decimal("1.50")}})
    with pytest.raises(ArgsError, match=r"'items\[1\]'"):
        Plain.new({"items": [1, object()]})
    with pytest.raises(ArgsError, match="'ratio'"):
        Plain.new({"ratio": float("nan")})
    with pytest.raises(ArgsError, match="must be a dict"):
        Plain.new([1, 2])
    with pytest.raises(ArgsError, match="meta field 'at'"):
        Plain.new({}, meta={"at": datetime.now(UTC)})
    assert count_jobs(app) == 0


def test_stable_name_is_stored_on_the_job(app: App) -> None:
    assert Plain.name == "tests.jobs.test_worker_options.Plain"
    assert app.insert(Plain.new()).worker == Plain.name
    assert Renamed.name == "billing.charge"
    assert app.insert(Renamed.new()).worker == "billing.charge"


def test_two_workers_under_one_name_are_refused() -> None:
    class Other(Worker, name="billing.charge"):
        def perform(self, job: Job[Any]) -> None:
            return None

    with pytest.raises(ConfigError, match="billing.charge"):
        App("sqlite:///unused.db", workers=[Renamed, Other])


def test_perform_receives_the_typed_args(make_app: Callable[..., App]) -> None:
    app = make_app(ProcessTask)
    stored = app.insert(ProcessTask.new(GOOD))
    assert stored.args == {"task_id": "t1", "count": 2, "actor": {"id": "u1", "role": "admin"}}
    with app.node({"tasks": 2}, poll_interval=0.05).start_in_thread():
        assert wait_final(app, stored.id).state is JobState.COMPLETED
    assert SEEN.items() == [("Args", 2, Role.ADMIN)]


def test_an_option_error_is_one_line_naming_the_class_the_option_and_the_closest_one() -> None:
    """As a misspelt TOML key is told (one rule: ``jobsaga.suggest``), not pydantic's
    multi-line report."""
    with pytest.raises(ConfigError) as typo:
        type("Mail", (Worker,), {}, queu="mailers")
    assert str(typo.value) == "worker Mail: unknown option 'queu': did you mean 'queue'?"
    with pytest.raises(ConfigError) as far:
        type("Mail", (Worker,), {}, colour="red")
    assert str(far.value).startswith("worker Mail: unknown option 'colour': known: name, queue,")
    with pytest.raises(ConfigError) as bad_type:
        type("Mail", (Worker,), {}, timeout="soon")
    assert str(bad_type.value) == (
        "worker Mail: option 'timeout': Input should be a valid number, unable to parse "
        "string as a number (got 'soon')"
    )
    with pytest.raises(ConfigError) as bad_value:
        type("Mail", (Worker,), {}, priority=12)
    assert str(bad_value.value) == (
        "worker Mail: option 'priority': priority must be an integer from 0 (highest) to 9, got 12"
    )
    for error in (typo, far, bad_type, bad_value):
        assert "\n" not in str(error.value) and "validation error" not in str(error.value)


def test_a_workflow_workers_own_options_are_known_to_the_suggestion() -> None:
    class Flow(Workflow, inputs=["order_id"]):
        @step
        def reserve(self, order_id: str, ctx: StepContext) -> str:
            return order_id

    with pytest.raises(ConfigError) as typo:
        type("Saga", (WorkflowWorker,), {}, workflow=Flow, rollback_timout=5)
    assert str(typo.value) == (
        "worker Saga: unknown option 'rollback_timout': did you mean 'rollback_timeout'?"
    )


BAD_CALLS: list[tuple[dict[str, Any], str]] = [
    ({"queue": "a b"}, "invalid queue name"),
    ({"priority": 12}, "priority must be an integer from 0"),
    ({"max_attempts": 0}, "max_attempts must be an integer from 1"),
    ({"tags": "urgent"}, "tags must be a list of strings"),
    ({"schedule_in": -5}, "schedule_in must be"),
    ({"scheduled_at": datetime(2026, 1, 1)}, "scheduled_at must be timezone-aware"),
    ({"unique": {"period": -1}}, "unique: period"),
    ({"unique": {"keys": ["nope"]}}, "unique keys \\['nope'\\] are not fields of Args"),
    ({"meta": []}, "meta must be a dict"),
]


@pytest.mark.parametrize(("options", "message"), BAD_CALLS)
def test_whatever_a_new_call_gets_wrong_is_an_args_error(
    options: dict[str, Any], message: str
) -> None:
    """One rule (docs/errors.md): what the call gave is an ArgsError naming the worker; a
    ConfigError means the class itself (its options, a missing perform)."""
    with pytest.raises(
        ArgsError, match=f"^tests.jobs.test_worker_options.ProcessTask: .*{message}"
    ):
        ProcessTask.new(GOOD, **options)
