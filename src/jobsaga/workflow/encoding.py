"""Values the run log stores, as JSON both engines keep alike.

Step results must round-trip (a resumed run hands them to later steps), so a result no
engine can store is the step's failure (:class:`StepResultError`), said when the step
returns rather than when a write fails later. What the log writes about a run (error
messages, tracebacks, event details) is the log's own text: a NUL character or a surrogate
code point in it (which PostgreSQL's jsonb refuses) is written escaped instead.
"""

from __future__ import annotations

import re
import traceback
from typing import Any

from pydantic_core import PydanticSerializationError, to_jsonable_python

from ..errors import ArgsError, StepResultError
from ..serialization import dumps, normalize_json, printable, text_problem

OWNER = "the run log"
_ESCAPED_UNSTORABLE = re.compile(r"\\u(?:0000|d[89a-f])")


def _cleaned(value: Any) -> Any:
    if isinstance(value, str):
        return printable(value)
    if isinstance(value, dict):
        return {printable(str(k)): _cleaned(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_cleaned(v) for v in value]
    return value


def error_json(error: BaseException) -> dict[str, Any]:
    return {
        "type": f"{type(error).__module__}.{type(error).__qualname__}",
        "message": str(error),
        "traceback": "".join(traceback.format_exception(error)) if error.__traceback__ else "",
    }


def jsonable(value: Any, what: str) -> Any:
    """``value`` as plain JSON data (pydantic models, dataclasses, datetimes included), checked
    and normalized by the same single pass as job args (``serialization.normalize_json``), so
    a result no engine stores alike fails its step here, and both engines hand a resumed run
    the same value."""
    try:
        data = to_jsonable_python(value)
    except (PydanticSerializationError, ValueError):  # not JSON, or nested too deep for it
        data = value
    try:
        return normalize_json(data, what, OWNER)
    except ArgsError as exc:
        raise StepResultError(
            f"{str(exc).removeprefix(OWNER + ': ')}; the run log keeps results as JSON so a "
            "rescued job can resume from them: return plain data or a pydantic model"
        ) from None


def json_text(value: Any) -> str | None:
    """``value`` as JSON text for a JSON column (None stays NULL)."""
    return None if value is None else dumps(value)


def _clean(value: Any) -> bool:
    """True when no text in ``value`` (keys included) holds a NUL or a lone surrogate. A
    loop rather than a recursion: it runs for every event the log writes (``{"try": 1}``)."""
    pending = [value]
    while pending:
        item = pending.pop()
        if isinstance(item, str):
            if text_problem(item) is not None:
                return False
        elif isinstance(item, dict):
            pending.extend(item)
            pending.extend(item.values())
        elif isinstance(item, (list, tuple)):
            pending.extend(item)
    return True


_SCALARS = frozenset({int, float, bool, type(None)})


def storable(value: Any) -> Any:
    """What the log writes about a run (an error, an event's detail) as JSON data both
    engines take inside a write's payload: ``value`` itself, or, when a text in it holds a
    NUL character or a lone surrogate (an exception message can), a copy with those
    escaped (:func:`~jobsaga.serialization.printable`)."""
    if type(value) is dict and all(
        type(v) in _SCALARS and type(k) is str and k.isascii() and "\x00" not in k
        for k, v in value.items()
    ):
        return value  # most details (``{"try": 1}``): no text to look into
    return value if _clean(value) else _cleaned(value)


def safe_json_text(value: Any) -> str | None:
    """JSON text of what the log itself writes (errors, event details), with any NUL
    character or lone surrogate escaped (:func:`~jobsaga.serialization.printable`): an error
    message may hold them, and a database refusing it would leave the run unrecorded."""
    text = json_text(value)
    if text is not None and "\\u" in text and _ESCAPED_UNSTORABLE.search(text):
        text = dumps(_cleaned(value))
    return text
