"""A bulk insert's rows for PostgreSQL's ``COPY ... FROM STDIN``, built straight from specs.

``COPY`` is the cheapest way into a table: no statement to plan per batch, no JSON array for
the server to take apart, rows written in batches. It cannot skip a row (no ``ON CONFLICT``)
and cannot return ids, so the engine reserves the ids first (``reserve_job_ids``) and writes
them with the rows; unique jobs are copied into a staging table instead, then inserted from it with
``ON CONFLICT DO NOTHING`` (``insert_from_staging``).

The rows are in COPY's text format, produced in chunks as the driver writes them: the server
parses one chunk while Python builds the next, and the returned jobs are built alongside, so a
bulk insert costs about the larger of the two sides rather than their sum. JSON comes from the
same encoder as :func:`~jobsaga.serialization.dumps` (ASCII, so a backslash is the one
character COPY needs escaped in it).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from ..job import Job, JobSpec
from .base import birth

COPY_MIN = 200
"""From this many plain jobs on, an insert writes them with COPY (one statement over a JSON
array below: COPY costs two more round trips, which a small batch does not win back)."""
CHUNK_ROWS = 500
"""Rows per chunk written: small enough that the server starts parsing early."""

_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})
NULL = "\\N"


@dataclass(frozen=True, slots=True)
class CopyIn:
    """A step of an insert (see ``Engine.insert_steps``): run ``sql`` (a ``COPY ... FROM
    STDIN``) and send it ``data``, text chunks produced as they are written."""

    sql: str
    data: Iterable[str]


def _encoder() -> Callable[[Any], str]:
    """``dumps`` without its per-call cost: the C encoder is made once, not on every call
    (half the time of encoding a small args object). Same output: ASCII, compact, no NaN.
    No circular-reference check: what is encoded was checked by ``Worker.new``, which refuses
    nesting deeper than 100."""
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
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


encode_json = _encoder()


def copy_text(value: str) -> str:
    """A text value in COPY's text format."""
    return value.translate(_ESCAPES)


def copy_json(value: Any) -> str:
    """A JSON value in COPY's text format (the encoder's output is ASCII: only backslashes
    need escaping)."""
    text = encode_json(value)
    return text.replace("\\", "\\\\") if "\\" in text else text


def _tags(tags: tuple[str, ...]) -> str:
    return copy_json(list(tags)) if tags else "[]"


def plain_rows(
    specs: Sequence[JobSpec], ids: Sequence[int], now: datetime, jobs: list[Job[Any]]
) -> Iterator[str]:
    """Chunks of ``copy_jobs`` rows for jobs without a unique key, the ``ids`` reserved for
    them in order. Each stored job is appended to ``jobs`` as its row is built, so once the
    chunks are written ``jobs`` is the insert's answer."""
    inserted = now.isoformat()
    # What precedes and follows the args in a row, per kind of job: most rows of a batch
    # share them (same worker and options, due now, no meta or tags), so they are made once.
    around: dict[tuple[Any, ...], tuple[str, str]] = {}
    lines: list[str] = []
    for job_id, spec in zip(ids, specs, strict=True):
        at, state = birth(spec, now)
        plain = at is now and not spec.meta and not spec.tags
        kind = (spec.worker, spec.queue, spec.max_attempts, spec.priority, state, plain)
        found = around.get(kind)
        if found is None:
            head = f"\t{state.value}\t{copy_text(spec.queue)}\t{copy_text(spec.worker)}\t"
            tail = f"\t{{}}\t[]\t{spec.max_attempts}\t{spec.priority}\t{inserted}\t{inserted}\n"
            found = around[kind] = head, tail
        head, tail = found
        if not plain:
            tail = (
                f"\t{copy_json(spec.meta) if spec.meta else '{}'}\t{_tags(spec.tags)}\t"
                f"{spec.max_attempts}\t{spec.priority}\t{inserted}\t{at.isoformat()}\n"
            )
        lines.append(f"{job_id}{head}{copy_json(spec.args)}{tail}")
        jobs.append(
            Job(
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
            )
        )
        if len(lines) == CHUNK_ROWS:
            yield "".join(lines)
            lines.clear()
    if lines:
        yield "".join(lines)


def staged_rows(rows: Sequence[dict[str, Any]]) -> Iterator[str]:
    """Chunks of ``copy_staged_jobs`` rows: unique jobs as ``Engine._spec_row`` describes
    them (times already as the dialect's JSON times: ISO text)."""
    lines: list[str] = []
    for row in rows:
        states = row["unique_states"]
        lines.append(
            f"{row['idx']}\t{row['state']}\t{copy_text(row['queue'])}\t"
            f"{copy_text(row['worker'])}\t{copy_json(row['args'])}\t{copy_json(row['meta'])}\t"
            f"{copy_json(row['tags'])}\t{row['max_attempts']}\t{row['priority']}\t"
            f"{row['inserted_at']}\t{row['scheduled_at']}\t{copy_text(row['unique_key'])}\t"
            f"{NULL if states is None else copy_text(states)}\n"
        )
        if len(lines) == CHUNK_ROWS:
            yield "".join(lines)
            lines.clear()
    if lines:
        yield "".join(lines)
