"""Which jobs an operation applies to: a validated filter shared by list, count and bulk ops.

Every criterion is optional and accepts one value or many (``state="discarded"`` or
``state=["discarded", "cancelled"]``); criteria combine with AND, values of one criterion
with OR, except ``tags``, which a job must all carry, and ``args`` and ``meta``, objects a
job's own must contain (a subset match: nested objects are matched the same way, any other
value, arrays included, must be equal as JSON), ``args_path``, whose every dotted path
(``{"customer.country": "NL"}``) must lead to a value equal as text (a string without its
quotes, ``3``, ``true``), and ``text``, which the JSON text of a job's args or errors must
contain (case-insensitive for ASCII letters; it reads every row the other criteria leave, a
scan on a big table). ``min_id``/``max_id`` bound ids, inclusive: the dashboard pages through
a listing with them (keyset), which the primary key serves however deep the page. A misspelt
criterion is an error, never
an empty filter that would match every job, and a value the database cannot take (an id
beyond a 64-bit integer, text holding a NUL) is a :class:`FilterError` naming the criterion,
never a driver error from the query.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal, TypedDict

from pydantic import BaseModel, ConfigDict, ValidationError, ValidationInfo, field_validator
from pydantic_core import PydanticSerializationError, to_jsonable_python

from ..errors import ArgsError, FilterError
from ..job import MAX_JOB_ID, JobState
from ..serialization import dumps, normalize_json, short_repr, text_problem
from ..worker import Worker, check_queue_name

if TYPE_CHECKING:
    from ..engines import Engine

TimeField = Literal["inserted_at", "scheduled_at", "attempted_at", "finished_at"]
TIME_FIELDS: tuple[str, ...] = ("inserted_at", "scheduled_at", "attempted_at", "finished_at")
MAX_ID = MAX_JOB_ID
"""Ids are 64-bit integers on both engines; a larger one cannot be bound to the query."""


class JobCriteria(TypedDict, total=False):
    """The keyword form of :class:`JobFilter` that ``App.list_jobs(...)`` and friends take."""

    ids: int | Sequence[int]
    state: str | JobState | Sequence[str | JobState]
    queue: str | Sequence[str]
    worker: str | type[Worker] | Sequence[str | type[Worker]]
    tags: str | Sequence[str]
    priority: int | Sequence[int]
    args: Mapping[str, object] | BaseModel
    meta: Mapping[str, object] | BaseModel
    since: datetime
    until: datetime
    time_field: TimeField
    node: str | Sequence[str]
    args_path: Mapping[str, str]
    text: str
    min_id: int
    max_id: int


def _many(value: Any) -> Any:
    if value is None:
        return None
    if isinstance(value, (str, bytes, int, type, Mapping)) or not isinstance(value, Iterable):
        return (value,)
    return tuple(value)  # a list, tuple, set or generator of values


def _texts(values: tuple[str, ...] | None) -> tuple[str, ...] | None:
    for text in values or ():
        problem = text_problem(text)
        if problem is not None:
            raise FilterError(f"{short_repr(text)} {problem}, which no job can carry")
    return values


class JobFilter(BaseModel):
    """Criteria selecting jobs; ``JobFilter()`` (no criteria) matches every job."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    ids: tuple[int, ...] | None = None
    state: tuple[JobState, ...] | None = None
    queue: tuple[str, ...] | None = None
    worker: tuple[str, ...] | None = None
    tags: tuple[str, ...] | None = None
    priority: tuple[int, ...] | None = None
    args: dict[str, object] | None = None
    """Only jobs whose args contain these (a subset match, see the module's docstring)."""
    meta: dict[str, object] | None = None
    """Only jobs whose meta contains these (a subset match)."""
    since: datetime | None = None
    """Only jobs whose ``time_field`` is at or after this time."""
    until: datetime | None = None
    """Only jobs whose ``time_field`` is before this time."""
    time_field: TimeField = "inserted_at"
    """Which time ``since``/``until`` look at; ``finished_at`` is completed/discarded/cancelled."""
    node: tuple[str, ...] | None = None
    """Only jobs last attempted by one of these nodes (``attempted_by``)."""
    args_path: dict[str, str] | None = None
    """Only jobs whose args hold, at each dotted path (``customer.country``), a value whose
    text is the one given: a string without its quotes, a number or ``true``/``false`` as
    written in JSON. A missing path or a JSON null matches no text."""
    text: str | None = None
    """Only jobs whose args or errors, as JSON text, contain this (ASCII case-insensitive).
    Not served by an index: a scan of the rows the other criteria leave."""
    min_id: int | None = None
    """Only jobs whose id is at least this."""
    max_id: int | None = None
    """Only jobs whose id is at most this."""

    def __init__(self, **criteria: Any) -> None:
        """``JobFilter(...)`` raises :class:`FilterError`, as the keyword form does."""
        try:
            super().__init__(**criteria)
        except ValidationError as exc:
            raise FilterError(describe(exc)) from None

    @field_validator("ids", "state", "tags", "node", mode="before")
    @classmethod
    def _to_tuple(cls, value: Any) -> Any:
        return _many(value)

    @field_validator("queue", mode="before")
    @classmethod
    def _queues(cls, value: Any) -> Any:
        found = _many(value)
        if found is not None:
            for queue in found:
                check_queue_name(queue)
        return found

    @field_validator("worker", mode="before")
    @classmethod
    def _workers(cls, value: Any) -> Any:
        found = _many(value)
        if found is None:
            return None
        return tuple(w.name if isinstance(w, type) and issubclass(w, Worker) else w for w in found)

    @field_validator("priority", mode="before")
    @classmethod
    def _priorities(cls, value: Any) -> Any:
        found = _many(value)
        for priority in found or ():
            if type(priority) is not int or not 0 <= priority <= 9:
                raise FilterError(
                    f"priorities run from 0 (highest) to 9, got {short_repr(priority)}"
                )
        return found

    @field_validator("args", "meta", mode="before")
    @classmethod
    def _json_object(cls, value: Any, info: ValidationInfo) -> Any:
        """The object as stored JSON: a pydantic model (an ``Args`` instance, or one nested
        in a dict) is dumped as ``Worker.new`` dumps it, so it compares with what is stored."""
        if value is None:
            return None
        try:
            plain = to_jsonable_python(value)
        except PydanticSerializationError as exc:
            raise FilterError(f"not JSON: {exc}") from None
        if not isinstance(plain, dict):
            raise FilterError(
                f"expected an object (a dict or a pydantic model), got {type(value).__name__}"
            )
        try:
            found = normalize_json(plain, str(info.field_name), "job filter")
        except ArgsError as exc:
            raise FilterError(str(exc)) from None
        quoted = _quoted_key(found)
        if quoted is not None:
            # SQLite's JSON paths cannot name such a key; refused on every engine, so a
            # filter means the same wherever it runs.
            raise FilterError(
                f"key {short_repr(quoted)} holds a double quote, which a job filter cannot "
                "match by; select these jobs by another criterion"
            )
        return found

    @field_validator("ids")
    @classmethod
    def _ids(cls, value: tuple[int, ...] | None) -> tuple[int, ...] | None:
        for job_id in value or ():
            if not 1 <= job_id <= MAX_ID:
                raise FilterError(
                    f"job ids run from 1 to {MAX_ID} (2**63 - 1), got {short_repr(job_id)}"
                )
        return value

    @field_validator("worker", "tags", "node")
    @classmethod
    def _text(cls, value: tuple[str, ...] | None) -> tuple[str, ...] | None:
        return _texts(value)

    @field_validator("text")
    @classmethod
    def _search_text(cls, value: str | None) -> str | None:
        if value is not None:
            _texts((value,))
        return value

    @field_validator("args_path")
    @classmethod
    def _paths(cls, value: dict[str, str] | None) -> dict[str, str] | None:
        for path, wanted in (value or {}).items():
            _texts((path, wanted))
            keys = path.split(".")
            if not all(keys):
                raise FilterError(
                    f"args path {short_repr(path)} has an empty key: give keys joined by dots, "
                    "e.g. customer.country"
                )
            if any('"' in key for key in keys):
                raise FilterError(
                    f"args path {short_repr(path)} holds a double quote, which a job filter "
                    "cannot match by"
                )
        return value

    @field_validator("min_id", "max_id")
    @classmethod
    def _bound(cls, value: int | None) -> int | None:
        if value is not None and not 0 <= value <= MAX_ID:
            raise FilterError(f"id bounds run from 0 to {MAX_ID}, got {short_repr(value)}")
        return value

    @field_validator("since", "until")
    @classmethod
    def _aware(cls, value: datetime | None) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None or value.utcoffset() is None:
            raise FilterError(
                "give a timezone-aware time (e.g. datetime.now(UTC)); naive is ambiguous"
            )
        try:
            return value.astimezone(UTC)
        except (OverflowError, ValueError):  # an offset that moves it past year 1 or 9999
            raise FilterError(f"{value.isoformat()} is out of range in UTC") from None

    @classmethod
    def build(
        cls, given: JobFilter | None = None, criteria: JobCriteria | None = None
    ) -> JobFilter:
        """A filter from an object or keywords (not both), with errors that name the criterion."""
        if given is not None and criteria:
            raise FilterError("give a JobFilter or keyword criteria, not both")
        if given is not None:
            if not isinstance(given, JobFilter):
                raise FilterError(f"expected a JobFilter, got {type(given).__name__}")
            return given
        try:
            return cls.model_validate(dict(criteria or {}))
        except ValidationError as exc:
            raise FilterError(describe(exc)) from None

    @property
    def is_empty(self) -> bool:
        """True when no criterion narrows the selection: ``time_field`` alone does not, nor do
        empty ``tags``, ``args``, ``meta``, ``args_path`` or ``text`` (every job holds all of
        nothing), so a bulk cancel or delete given ``args={}`` from a variable is refused,
        not run on every job."""
        return all(
            getattr(self, name) is None
            or (name in ("tags", "args", "meta", "args_path", "text") and not getattr(self, name))
            for name in (
                "ids",
                "state",
                "queue",
                "worker",
                "tags",
                "priority",
                "args",
                "meta",
                "since",
                "until",
                "node",
                "args_path",
                "text",
                "min_id",
                "max_id",
            )
        )

    def params(self, engine: Engine) -> dict[str, Any]:
        """The filter as query parameters for ``engine``."""

        def listing(values: tuple[Any, ...] | None) -> Any:
            if values is None:
                return None
            return engine.list_param([v.value if isinstance(v, JobState) else v for v in values])

        return {
            "ids": listing(self.ids),
            "states": listing(self.state),
            "queues": listing(self.queue),
            "workers": listing(self.worker),
            "tags": None if self.tags is None else json.dumps(list(self.tags)),
            "priorities": listing(self.priority),
            "args_subset": None if self.args is None else dumps(self.args),
            "meta_subset": None if self.meta is None else dumps(self.meta),
            "since": None if self.since is None else engine.time_param(self.since),
            "until": None if self.until is None else engine.time_param(self.until),
            "time_field": self.time_field,
            "nodes": listing(self.node),
            "arg_paths": self._paths_param(engine),
            **self._text_params(),
            "min_id": self.min_id,
            "max_id": self.max_id,
        }

    def _paths_param(self, engine: Engine) -> str | None:
        """``args_path`` as JSON pairs of (path, text), each path as the engine's SQL reads
        one (:meth:`Engine.json_path`)."""
        if not self.args_path:
            return None
        pairs: list[list[Any]] = []
        for path, wanted in self.args_path.items():
            keys = path.split(".")
            pairs.append([engine.json_path(keys), wanted])
        return json.dumps(pairs)

    def _text_params(self) -> dict[str, str | None]:
        """``text`` as two LIKE patterns: as JSON writes it inside a string with non-ASCII
        kept (PostgreSQL's jsonb text) and escaped (how SQLite stores what jobsaga wrote);
        the second is None when the same (ASCII text), sparing the scan a second match."""
        if not self.text:
            return {"text_plain": None, "text_ascii": None}
        plain = _like(json.dumps(self.text, ensure_ascii=False)[1:-1])
        ascii_ = _like(json.dumps(self.text)[1:-1])
        return {"text_plain": plain, "text_ascii": None if ascii_ == plain else ascii_}


def _like(text: str) -> str:
    """A LIKE pattern (escape character ``\\``) matching ``text`` anywhere."""
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def describe(error: ValidationError) -> str:
    problems = []
    for item in error.errors():
        where = str(item["loc"][0]) if item["loc"] else "filter"
        if item["type"] == "extra_forbidden":
            known = ", ".join(JobFilter.model_fields)
            problems.append(f"unknown criterion {where!r} (known: {known})")
        else:
            problems.append(f"criterion {where!r}: {short_repr(item['input'])}: {item['msg']}")
    return "invalid job filter: " + "; ".join(problems)


def _quoted_key(value: Any) -> str | None:
    """The first object key holding ``"`` anywhere in ``value``, or None."""
    if isinstance(value, dict):
        for key, inner in value.items():
            if '"' in key:
                return str(key)
            found = _quoted_key(inner)
            if found is not None:
                return found
    elif isinstance(value, list):
        for inner in value:
            found = _quoted_key(inner)
            if found is not None:
                return found
    return None
