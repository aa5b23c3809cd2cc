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

from ..serialization import dumps, find_unserializable


class StepResultError(TypeError):
    """A step returned a value the run log cannot store as JSON."""


_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")
_ESCAPED_UNSTORABLE = re.compile(r"\\u(?:0000|d[89a-f])")


def text_problem(text: str) -> str | None:
    """Why no engine can store ``text`` alike, or None: PostgreSQL's jsonb refuses a NUL
    character and a surrogate code point (SQLite would keep them): both engines refuse them."""
    if text.isascii() and "\x00" not in text:
        return None
    found = _UNSTORABLE.search(text)
    if found is None:
        return None
    if found.group() == "\x00":
        return "holds a NUL character (\\x00)"
    return f"holds a surrogate code point ({found.group()!r}), which is not Unicode text"


def clean_text(text: str) -> str:
    """``text`` with each NUL character or surrogate code point written as its escape (``\\x00``,
    ``\\ud800``): how error messages and event details holding them are recorded."""
    if text.isascii() and "\x00" not in text:
        return text
    return _UNSTORABLE.sub(lambda m: m.group().encode("unicode_escape").decode(), text)


def _cleaned(value: Any) -> Any:
    if isinstance(value, str):
        return clean_text(value)
    if isinstance(value, dict):
        return {clean_text(str(k)): _cleaned(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_cleaned(v) for v in value]
    return value


def unstorable_text(value: Any, path: str = "") -> tuple[str, str] | None:
    """The path and problem of the first string (value or key) no engine stores alike."""
    if isinstance(value, str):
        problem = text_problem(value)
        return None if problem is None else (path or "<root>", problem)
    if isinstance(value, dict):
        for key, item in value.items():
            where = f"{path}.{key}" if path else str(key)
            problem = text_problem(str(key))
            if problem is not None:
                return where, f"has a key that {problem}"
            found = unstorable_text(item, where)
            if found is not None:
                return found
    elif isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            found = unstorable_text(item, f"{path}[{index}]")
            if found is not None:
                return found
    return None


def error_json(error: BaseException) -> dict[str, Any]:
    return {
        "type": f"{type(error).__module__}.{type(error).__qualname__}",
        "message": str(error),
        "traceback": "".join(traceback.format_exception(error)) if error.__traceback__ else "",
    }


def jsonable(value: Any, what: str) -> Any:
    """``value`` as plain JSON data (pydantic models, dataclasses, datetimes included)."""
    try:
        data = to_jsonable_python(value)
    except PydanticSerializationError:
        data = value
    bad = find_unserializable(data)
    if bad is not None:
        where = "" if bad == "<root>" else f" (at {bad})"
        raise StepResultError(
            f"{what} is a {type(value).__name__}{where}, which cannot be stored as JSON; "
            "the run log keeps results as JSON so a rescued job can resume from them: "
            "return plain data or a pydantic model"
        )
    text = unstorable_text(data)
    if text is not None:
        where, problem = text
        at = "" if where == "<root>" else f" at {where}"
        raise StepResultError(
            f"{what}{at} {problem}, which the run log cannot store (PostgreSQL refuses it); "
            "the log keeps results so a rescued job can resume from them: encode or strip it"
        )
    return data


def json_text(value: Any) -> str | None:
    """``value`` as JSON text for a JSON column (None stays NULL)."""
    return None if value is None else dumps(value)


def safe_json_text(value: Any) -> str | None:
    """JSON text of what the log itself writes (errors, event details), with any NUL
    character or lone surrogate escaped (:func:`clean_text`): an error message may hold
    them, and a database refusing it would leave the run unrecorded."""
    text = json_text(value)
    if text is not None and "\\u" in text and _ESCAPED_UNSTORABLE.search(text):
        text = dumps(_cleaned(value))
    return text
