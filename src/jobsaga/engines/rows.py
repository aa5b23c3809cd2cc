"""The two edges of a job row: reading one back, and writing an outcome into one.

Both are seams where one bad value used to stop far more than itself (docs/architecture.md,
"One bad row fails alone"):

- A stored row that cannot be decoded (``tags`` that is not a list, args that are a JSON
  string, text that is not JSON) raised a bare ``TypeError`` after the fetch's claim had
  committed, stranding the whole batch. :func:`diagnose_row` says what is wrong with it, in
  the :class:`~jobsaga.errors.UndecodableRow` the engine raises and records on the job.
- An outcome the database refuses (PostgreSQL's jsonb rejects ``\\u0000`` and lone
  surrogates; a date past year 9999 overflows) was retried for ever by the acker, blocking
  every later acknowledgement. :func:`clean_ack` makes an outcome writable cheaply before its
  first write, and :func:`salvage` is the last, minimal form the acker tries for an outcome
  that was refused all the same.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from ..job import JobSpec, JobState

if TYPE_CHECKING:
    from .base import Ack

LATEST = datetime(9999, 1, 1, tzinfo=UTC)
"""The latest time jobsaga writes. Python's datetimes end with year 9999 (PostgreSQL's go on),
so a later stored time could not be read back at all; the year of margin keeps every time
zone's rendering of it inside the range."""

_UNWRITABLE = re.compile("[\x00\ud800-\udfff]")
"""NUL (PostgreSQL text and jsonb refuse it) and lone surrogates (not Unicode: jsonb refuses
them and UTF-8 cannot encode them). A Python str never holds a valid surrogate pair."""

MAX_SALVAGED_TEXT = 2000
"""How much of an error's text a salvaged outcome keeps."""


# --- reading rows ---------------------------------------------------------------------------

_JSON_SHAPES: dict[str, tuple[str, Callable[[Any], bool]]] = {
    "args": ("a JSON object", lambda v: type(v) is dict),
    "meta": ("a JSON object", lambda v: type(v) is dict),
    "tags": (
        "a JSON list of strings",
        lambda v: type(v) is list and all(type(t) is str for t in v),
    ),
    "errors": (
        "a JSON list of objects",
        lambda v: type(v) is list and all(type(e) is dict for e in v),
    ),
}
_INTEGERS = ("id", "attempt", "max_attempts", "priority")
_TIMES = (
    "inserted_at",
    "scheduled_at",
    "attempted_at",
    "completed_at",
    "discarded_at",
    "cancelled_at",
)
_REQUIRED_TIMES = ("inserted_at", "scheduled_at")


def well_shaped(column: str, value: Any) -> bool:
    """Whether a decoded JSON column has the shape a job needs."""
    return _JSON_SHAPES[column][1](value)


def diagnose_row(
    row: Mapping[str, Any],
    stored_json: Callable[[Any], Any],
    time_value: Callable[[Any], datetime | None],
) -> list[str]:
    """Every reason ``row`` cannot be a job, one phrase each (the slow path: a bad row only)."""
    problems: list[str] = []
    for column, (shape, ok) in _JSON_SHAPES.items():
        if column not in row:
            problems.append(f"{column}: missing")
            continue
        try:
            value = stored_json(row[column])
        except (ValueError, TypeError, RecursionError) as exc:
            problems.append(f"{column}: not JSON ({exc}): {_shown(row[column])}")
            continue
        if not ok(value):
            problems.append(f"{column}: expected {shape}, got {_shown(value)}")
    for column in _INTEGERS:
        try:
            int(row[column])
        except (KeyError, ValueError, TypeError):
            problems.append(f"{column}: expected an integer, got {_shown(row.get(column))}")
    try:
        JobState(str(row.get("state")))
    except ValueError:
        problems.append(f"state: not a job state: {_shown(row.get('state'))}")
    for column in _TIMES:
        try:
            value = time_value(row[column])
        except (KeyError, ValueError, TypeError, OverflowError, OSError):
            problems.append(f"{column}: expected a time, got {_shown(row.get(column))}")
            continue
        if value is None and column in _REQUIRED_TIMES:
            problems.append(f"{column}: missing")
    return problems


def _shown(value: Any, limit: int = 80) -> str:
    text = f"{type(value).__name__} {value!r}"
    return text if len(text) <= limit else f"{text[: limit - 3]}..."


# --- writing outcomes -----------------------------------------------------------------------


def clean_json(value: Any, depth: int = 0) -> tuple[Any, list[str]]:
    """``value`` made storable by every engine, and what had to change (empty: unchanged).

    Strips NUL characters, replaces lone surrogates with U+FFFD, and turns what JSON cannot
    hold (NaN, infinities, other objects) into its text. Cheap when nothing is wrong: one
    regex search per string."""
    if isinstance(value, str):
        if _UNWRITABLE.search(value) is None:
            return value, []
        return _clean_text(value), ["NUL characters or lone surrogates removed"]
    if value is None or isinstance(value, (bool, int)):
        return value, []
    if isinstance(value, float):
        if math.isfinite(value):
            return value, []
        return repr(value), [f"{value!r} written as text"]
    if depth > 64:
        return _clean_text(repr(value)[:MAX_SALVAGED_TEXT]), ["nesting deeper than 64 levels"]
    notes: list[str] = []
    if isinstance(value, dict):
        cleaned_dict: dict[str, Any] = {}
        for key, item in value.items():
            new_key, key_notes = clean_json(key if isinstance(key, str) else str(key), depth + 1)
            new_item, item_notes = clean_json(item, depth + 1)
            cleaned_dict[new_key] = new_item
            notes += key_notes + item_notes
        return (cleaned_dict, notes) if notes else (value, [])
    if isinstance(value, (list, tuple)):
        cleaned_list = []
        for item in value:
            new_item, item_notes = clean_json(item, depth + 1)
            cleaned_list.append(new_item)
            notes += item_notes
        return (cleaned_list, notes) if notes else (value, [])
    return _clean_text(repr(value)), [f"a {type(value).__name__} written as text"]


def _clean_text(text: str) -> str:
    return _UNWRITABLE.sub(lambda m: "" if m.group() == "\x00" else "\ufffd", text)


def capped(at: datetime) -> datetime:
    """``at``, or :data:`LATEST` when it is later."""
    return at if at <= LATEST else LATEST


def cap_spec(spec: JobSpec, now: datetime) -> tuple[JobSpec, list[str]]:
    """A follow-up job whose time is past :data:`LATEST` (or not a number) moved to it."""
    if spec.scheduled_at is not None and spec.scheduled_at > LATEST:
        return dataclasses.replace(spec, scheduled_at=LATEST), [
            f"follow-up {spec.worker} scheduled at {spec.scheduled_at.isoformat()} moved to "
            f"{LATEST.isoformat()}"
        ]
    if spec.schedule_in is not None and not _due_in_range(spec.schedule_in, now):
        return dataclasses.replace(spec, schedule_in=None, scheduled_at=LATEST), [
            f"follow-up {spec.worker} scheduled in {spec.schedule_in!r}s moved to "
            f"{LATEST.isoformat()}"
        ]
    return spec, []


def _due_in_range(seconds: float, now: datetime) -> bool:
    return math.isfinite(seconds) and seconds <= (LATEST - now).total_seconds()


def needs_cleaning(ack: Ack) -> bool:
    """The cheap test on the hot path: a plain completion (no error, meta or follow-ups, a
    sane date) skips :func:`clean_ack` altogether."""
    return (
        ack.error is not None
        or ack.meta is not None
        or bool(ack.inserts)
        or ack.at > LATEST
        or (ack.scheduled_at is not None and ack.scheduled_at > LATEST)
    )


def clean_ack(ack: Ack) -> Ack:
    """``ack`` (an :class:`~jobsaga.engines.base.Ack`) in a form every engine can store, the
    reasons recorded in its error (``"cleaned"``), or in its meta when it has no error."""
    notes: list[str] = []
    error, error_notes = clean_json(ack.error) if ack.error is not None else (None, [])
    notes += [f"error: {note}" for note in error_notes]
    meta, meta_notes = clean_json(ack.meta) if ack.meta is not None else (None, [])
    notes += [f"meta: {note}" for note in meta_notes]
    at = capped(ack.at)
    if at is not ack.at:
        notes.append(f"time {ack.at.isoformat()} moved to {LATEST.isoformat()}")
    scheduled_at = ack.scheduled_at
    if scheduled_at is not None and scheduled_at > LATEST:
        notes.append(f"scheduled_at {scheduled_at.isoformat()} moved to {LATEST.isoformat()}")
        scheduled_at = LATEST
    inserts = []
    for spec in ack.inserts:
        spec, spec_notes = cap_spec(spec, ack.at if ack.at <= LATEST else LATEST)
        inserts.append(spec)
        notes += spec_notes
    if not notes:
        return ack
    error, meta = _with_notes(error, meta, notes)
    return dataclasses.replace(
        ack, at=at, scheduled_at=scheduled_at, error=error, meta=meta, inserts=tuple(inserts)
    )


def _with_notes(
    error: dict[str, Any] | None, meta: dict[str, Any] | None, notes: list[str]
) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    text = "; ".join(dict.fromkeys(notes))  # each reason once, in order
    if error is not None:
        return {**error, "cleaned": _joined(error.get("cleaned"), text)}, meta
    return error, {**(meta or {}), "cleaned": text}


def _joined(earlier: Any, text: str) -> str:
    return f"{earlier}; {text}" if isinstance(earlier, str) and earlier else text


def salvage(ack: Ack, failure: BaseException) -> Ack:
    """The last form the acker tries for an outcome the database refused even cleaned: the
    error reduced to its kind and the start of its text (ASCII), meta dropped, and why."""
    why = f"the outcome was refused as reported ({type(failure).__name__}: {failure})"
    why = _clean_text(" ".join(why.split()))[:MAX_SALVAGED_TEXT]
    error = ack.error or {}
    text = str(error.get("error", ""))
    record: dict[str, Any] = {
        "attempt": ack.attempt,
        "at": capped(ack.at).isoformat(),
        "kind": str(error.get("kind", "cleaned")),
        "error": _ascii(text)[:MAX_SALVAGED_TEXT],
        "traceback": "",
        "cleaned": f"{why}; traceback and meta dropped, text cut to {MAX_SALVAGED_TEXT} chars",
    }
    return dataclasses.replace(
        ack,
        at=capped(ack.at),
        scheduled_at=None if ack.scheduled_at is None else capped(ack.scheduled_at),
        error=record,
        meta=None,
    )


def _ascii(text: str) -> str:
    return _clean_text(text).encode("ascii", "backslashreplace").decode("ascii")


def later_than_latest(seconds: float, now: datetime) -> bool:
    """Whether ``now + seconds`` is past :data:`LATEST` (or not a time at all)."""
    return not _due_in_range(seconds, now)
