"""A bulk insert's rows for PostgreSQL's ``COPY ... FROM STDIN``, built straight from specs.

``COPY`` is the cheapest way into a table: no statement to plan, no JSON array for the server
to take apart. It cannot skip a row (no ``ON CONFLICT``) and cannot return ids, so the engine
reserves the ids first (``reserve_job_ids``) and writes them with the rows; unique jobs are
copied into a staging table instead, then inserted from it with ``ON CONFLICT DO NOTHING``
(``insert_from_staging``).

The rows are in COPY's binary format: the server then parses no times, numbers or escapes
(parsing the text format's two timestamps and its fields was about a sixth of the server's
work). JSON columns are jsonb's binary form, a version byte and the JSON text, from the same
encoder as :func:`~jobsaga.serialization.dumps`. Rows are produced in chunks as the driver
writes them: the server parses one while Python builds the next, and the returned jobs are
built alongside, so a bulk insert costs about the larger of the two sides, not their sum.
"""

from __future__ import annotations

import dataclasses
import json
import struct
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from ..errors import ArgsError
from ..job import Job, JobSpec, JobState
from .base import birth

COPY_MIN = 200
"""From this many jobs on, an insert writes them with COPY. Below, one statement over a JSON
array costs less: COPY takes five round trips (BEGIN, the ids, the COPY, the NOTIFY, COMMIT)
where a plain insert outside a transaction takes one; the CPU per job met at about 100 jobs."""
CHUNK_ROWS = 500
"""Rows per chunk handed to the driver."""

SIGNATURE = b"PGCOPY\n\xff\r\n\x00" + bytes(8)  # the signature, no flags, no header extension
TRAILER = b"\xff\xff"
NULL = b"\xff\xff\xff\xff"
PG_EPOCH = datetime(2000, 1, 1, tzinfo=UTC)
MICROSECOND = timedelta(microseconds=1)

_ROW_AND_ID = struct.Struct(">hiq").pack  # fields in the row, then the int8 id's length and value
_LENGTH = struct.Struct(">i").pack
_JSONB = struct.Struct(">ib").pack  # length, jsonb version 1
_INT2 = struct.Struct(">ih").pack
_INT4 = struct.Struct(">ii").pack
_INT8 = struct.Struct(">iq").pack
_EMPTY_OBJECT = _JSONB(3, 1) + b"{}"
_EMPTY_ARRAY = _JSONB(3, 1) + b"[]"


@dataclass(frozen=True, slots=True)
class CopyIn:
    """A step of an insert (see ``Engine.insert_steps``): run ``sql`` (a binary ``COPY ...
    FROM STDIN``) and send it the chunks ``data`` makes for the connection's encoding."""

    sql: str
    data: Callable[[str], Iterator[bytes]]


def _encoder() -> Callable[[Any], str]:
    """``dumps`` without its per-call cost: the C encoder is made once, not on every call
    (half the time of encoding a small args object). Same output: ASCII, compact, no NaN.
    No circular-reference check: what is encoded was checked by ``Worker.new``, which
    refuses nesting deeper than 100."""
    make = getattr(json.encoder, "c_make_encoder", None)
    if make is not None:
        try:
            encode = make(
                None,
                _unencodable,
                json.encoder.encode_basestring_ascii,
                None,
                ":",
                ",",
                False,
                False,
                False,
            )
        except TypeError:  # another signature on another interpreter: the plain way
            pass
        else:
            return lambda value: encode(value, 0)[0]  # type: ignore[no-any-return]
    return json.JSONEncoder(separators=(",", ":"), allow_nan=False).encode


def _unencodable(value: Any) -> Any:
    """What ``Worker.new`` lets through is JSON; a value changed in a spec afterwards is not."""
    raise ArgsError(f"a value of type {type(value).__name__} cannot be stored as JSON")


encode_json = _encoder()


def jsonb(value: Any) -> bytes:
    """A jsonb field (the encoder's output is ASCII, so any client encoding reads it)."""
    data = encode_json(value).encode()
    return _JSONB(len(data) + 1, 1) + data


def text(value: str, encoding: str) -> bytes:
    data = value.encode(encoding)
    return _LENGTH(len(data)) + data


def time(value: datetime) -> bytes:
    return _INT8(8, (value - PG_EPOCH) // MICROSECOND)


class NewJob(Protocol):
    def __call__(
        self,
        job_id: int,
        state: JobState,
        spec: JobSpec,
        now: datetime,
        at: datetime,
        unique_key: str | None = None,
    ) -> Job[Any]: ...


_INSERTED = (
    "id", "state", "queue", "worker", "args", "meta", "tags", "errors", "attempt",
    "max_attempts", "priority", "inserted_at", "scheduled_at", "unique_key",
)  # fmt: skip


def _job_builder() -> NewJob:
    """``Job(...)`` for a job just inserted (as ``inserted_job`` builds it), at half the cost:
    the frozen dataclass's ``__init__`` sets each of its 20 fields through
    ``object.__setattr__``, which was a third of the client's time in a bulk insert; this
    sets the slots directly, the fields not given to their defaults. Should ``Job`` ever
    need its ``__init__`` (a ``__post_init__``, a default factory, a field this does not
    know), the plain constructor is used."""
    fields = dataclasses.fields(Job)
    names = {field.name for field in fields}
    rest = [field for field in fields if field.name not in _INSERTED]
    plain_class = "__post_init__" not in vars(Job) and "__slots__" in vars(Job)
    if not plain_class or not set(_INSERTED) <= names:
        return _constructed
    if any(field.default is dataclasses.MISSING for field in rest):
        return _constructed
    setters = [getattr(Job, name).__set__ for name in _INSERTED]
    defaults = [(getattr(Job, field.name).__set__, field.default) for field in rest]
    (set_id, set_state, set_queue, set_worker, set_args, set_meta, set_tags, set_errors,
     set_attempt, set_max_attempts, set_priority, set_inserted_at, set_scheduled_at,
     set_unique_key) = setters  # fmt: skip
    new = object.__new__

    def build(
        job_id: int,
        state: JobState,
        spec: JobSpec,
        now: datetime,
        at: datetime,
        unique_key: str | None = None,
    ) -> Job[Any]:
        job: Job[Any] = new(Job)
        set_id(job, job_id)
        set_state(job, state)
        set_queue(job, spec.queue)
        set_worker(job, spec.worker)
        set_args(job, spec.args)
        set_meta(job, spec.meta)
        set_tags(job, spec.tags)
        set_errors(job, ())
        set_attempt(job, 0)
        set_max_attempts(job, spec.max_attempts)
        set_priority(job, spec.priority)
        set_inserted_at(job, now)
        set_scheduled_at(job, at)
        set_unique_key(job, unique_key)
        for setter, value in defaults:
            setter(job, value)
        return job

    return build


def _constructed(
    job_id: int,
    state: JobState,
    spec: JobSpec,
    now: datetime,
    at: datetime,
    unique_key: str | None = None,
) -> Job[Any]:
    return Job(
        id=job_id,
        state=state,
        queue=spec.queue,
        worker=spec.worker,
        args=spec.args,
        meta=spec.meta,
        tags=spec.tags,
        errors=(),
        attempt=0,
        max_attempts=spec.max_attempts,
        priority=spec.priority,
        inserted_at=now,
        scheduled_at=at,
        unique_key=unique_key,
    )


new_job = _job_builder()
_AVAILABLE = JobState.AVAILABLE


def plain_rows(
    specs: Sequence[JobSpec], ids: Sequence[int], now: datetime, jobs: list[Job[Any]]
) -> Callable[[str], Iterator[bytes]]:
    """The ``copy_jobs`` data for jobs without a unique key, the ``ids`` reserved for them in
    order. Each stored job is appended to ``jobs`` as its row is built, so once the data is
    written ``jobs`` is the insert's answer."""

    def chunks(encoding: str) -> Iterator[bytes]:
        inserted = time(now)
        # What precedes and follows the args in a row, per kind of job: most rows of a batch
        # share them (same worker and options, due now, no meta or tags), so they are made once.
        around: dict[tuple[Any, ...], tuple[bytes, bytes, bytes]] = {}
        rows: list[bytes] = [SIGNATURE]
        for job_id, spec in zip(ids, specs, strict=True):
            if spec.scheduled_at is None and not spec.schedule_in:
                at, state = now, _AVAILABLE  # most jobs: due now
            else:
                at, state = birth(spec, now)
            plain = at is now and not spec.meta and not spec.tags
            kind = (spec.worker, spec.queue, spec.max_attempts, spec.priority, state, plain)
            found = around.get(kind)
            if found is None:
                head = b"".join(
                    (
                        text(state.value, encoding),
                        text(spec.queue, encoding),
                        text(spec.worker, encoding),
                    )
                )
                numbers = _INT4(4, spec.max_attempts) + _INT2(2, spec.priority)
                tail = _EMPTY_OBJECT + _EMPTY_ARRAY + numbers + inserted + inserted
                found = around[kind] = head, numbers, tail
            head, numbers, tail = found
            if not plain:
                tail = b"".join(
                    (
                        jsonb(spec.meta) if spec.meta else _EMPTY_OBJECT,
                        jsonb(list(spec.tags)) if spec.tags else _EMPTY_ARRAY,
                        numbers,
                        inserted,
                        time(at),
                    )
                )
            rows.append(_ROW_AND_ID(11, 8, job_id) + head + jsonb(spec.args) + tail)
            jobs.append(new_job(job_id, state, spec, now, at))
            if len(rows) >= CHUNK_ROWS:
                yield b"".join(rows)
                rows.clear()
        rows.append(TRAILER)
        yield b"".join(rows)

    return chunks


def staged_rows(rows: Sequence[dict[str, Any]]) -> Callable[[str], Iterator[bytes]]:
    """The ``copy_job_staging`` data: unique jobs as ``Engine._spec_row`` describes them
    (its times are ISO text, the dialect's JSON times)."""

    def chunks(encoding: str) -> Iterator[bytes]:
        times: dict[str, bytes] = {}  # most rows share their times: parsed once
        out: list[bytes] = [SIGNATURE]
        for row in rows:
            states = row["unique_states"]
            inserted, scheduled = row["inserted_at"], row["scheduled_at"]
            for stamp in (inserted, scheduled):
                if stamp not in times:
                    times[stamp] = time(datetime.fromisoformat(stamp))
            out.append(
                b"".join(
                    (
                        _ROW_AND_ID(13, 8, row["idx"]),
                        text(row["state"], encoding),
                        text(row["queue"], encoding),
                        text(row["worker"], encoding),
                        jsonb(row["args"]),
                        jsonb(row["meta"]),
                        jsonb(row["tags"]),
                        _INT4(4, row["max_attempts"]),
                        _INT2(2, row["priority"]),
                        times[inserted],
                        times[scheduled],
                        text(row["unique_key"], encoding),
                        NULL if states is None else text(states, encoding),
                    )
                )
            )
            if len(out) >= CHUNK_ROWS:
                yield b"".join(out)
                out.clear()
        out.append(TRAILER)
        yield b"".join(out)

    return chunks
