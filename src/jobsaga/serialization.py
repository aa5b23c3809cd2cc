"""JSON is the only wire format: args, meta, results and step outputs. Never pickle.

What jobsaga stores must come back the same from both engines, so values are checked and
normalized once, when a job is built (``Worker.new``), never deeper down where a refusal
would come from the database after part of the work was done:

- strings (values and keys) hold no NUL character and no surrogate code point
  (U+D800-U+DFFF): PostgreSQL's jsonb refuses both, and a Python string holding surrogates
  is not Unicode text (a pair would come back as the one character it encodes);
- numbers are finite; integers have at most :data:`MAX_INT_DIGITS` digits;
- containers nest at most :data:`MAX_DEPTH` deep (decoding a deeper document overflows
  Python's recursion limit in the worker that reads it).

And normalized to what PostgreSQL's jsonb returns, so SQLite returns the same: ``-0.0``
becomes ``0.0``, a float of magnitude 1e16 or more (always a whole number) becomes the
integer its shortest decimal form spells (``1e16`` -> ``10000000000000000``), and tuples
become lists. Every other float, integer and string round-trips exactly (docs/jobs.md).
"""

from __future__ import annotations

import json
import math
import re
from decimal import Decimal
from typing import Any

from .errors import ArgsError

MAX_DEPTH = 100
"""How deep objects and arrays may nest in args and meta (the args object is depth 1)."""
MAX_INT_DIGITS = 4300
"""Python's default limit for turning an integer into text (``sys.get_int_max_str_digits``)."""
_INT_LIMIT = 10**MAX_INT_DIGITS
_INT_SAFE_BITS = 14_000  # 2**14000 < 10**4300: integers this short need no exact check
_BIG_FLOAT = 1e16  # from here on repr() uses an exponent and jsonb returns an integer
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")
_INF = float("inf")


class _Invalid(Exception):
    """Raised deep in a value and given its path on the way up (built only on failure)."""

    def __init__(self, problem: str) -> None:
        super().__init__(problem)
        self.problem = problem
        self.path: list[str | int] = []


def text_problem(text: str) -> str | None:
    """Why ``text`` cannot be stored, or None. Cheap for ASCII: one flag and one memchr."""
    if text.isascii():
        return None if "\x00" not in text else "holds a NUL character (\\x00)"
    found = _UNSTORABLE.search(text)
    if found is None:
        return None
    if found.group() == "\x00":
        return "holds a NUL character (\\x00)"
    return f"holds a surrogate code point ({found.group()!r}), which is not Unicode text"


def describe_problem(owner: str, what: str, parts: list[str | int], problem: str) -> str:
    """``owner: what field 'a.b[2]' problem``; a very deep path is shortened in the middle."""
    path = ""
    for part in reversed(parts):
        if isinstance(part, int):
            path += f"[{part}]"
        else:
            path += f".{part}" if path else part
    if not path:
        return f"{owner}: {what} {problem}"
    if len(path) > 120:
        path = f"{path[:58]}...{path[-58:]}"
    return f"{owner}: {what} field {path!r} {problem}"


def printable(text: str) -> str:
    """Free text (a cancel reason, an error message) made storable: NUL and surrogates are
    written as backslash escapes. For text people read; data is refused instead."""
    if text_problem(text) is None:
        return text
    return text.encode("utf-8", "backslashreplace").decode("utf-8").replace("\x00", "\\x00")


def short_repr(value: Any, limit: int = 80) -> str:
    """``repr(value)`` for an error message, cut in the middle past ``limit`` characters.

    Never raises: the repr of an integer of more than 4300 digits (or of a list holding
    one) raises ValueError, which would replace the clear error being built."""
    try:
        text = repr(value)
    except Exception:
        return f"<{type(value).__name__} too large to show>"
    if len(text) <= limit:
        return text
    keep = (limit - 3) // 2
    return f"{text[:keep]}...{text[-keep:]}"


def _big_float(value: float) -> int:
    """The integer jsonb makes of a float spelt with an exponent (its shortest decimal)."""
    return int(Decimal(repr(value)))


def _clean(value: Any, depth: int) -> Any:
    """``value`` normalized (the same object when nothing changes), or raise _Invalid."""
    kind = type(value)
    if kind is str:
        if not value.isascii() or "\x00" in value:
            problem = text_problem(value)
            if problem is not None:
                raise _Invalid(problem)
        return value
    if kind is int:
        if value.bit_length() > _INT_SAFE_BITS and abs(value) >= _INT_LIMIT:
            raise _Invalid(f"is an integer of more than {MAX_INT_DIGITS} digits")
        return value
    if kind is float:
        if -_BIG_FLOAT < value < _BIG_FLOAT:
            if value == 0.0 and math.copysign(1.0, value) < 0:
                return 0.0  # jsonb has no negative zero
            return value
        if value != value or value == _INF or value == -_INF:
            raise _Invalid(f"is {value!r}, which JSON cannot hold (use a finite number)")
        return _big_float(value)
    if value is None or kind is bool:
        return value
    if kind is dict or kind is list or kind is tuple:
        return _container(value, depth)
    # subclasses (str/int enums, OrderedDict...) and anything else: the slow path
    if isinstance(value, (str, int, float)):
        return _clean(_base(value), depth)
    if isinstance(value, (dict, list, tuple)):
        return _container(value, depth)
    raise _Invalid(
        f"is of type {type(value).__name__}, which is not JSON-serializable: it cannot be "
        "stored as JSON (convert it, e.g. to a string or a pydantic model)"
    )


def _base(value: Any) -> Any:
    """A str/int/float subclass value (an enum member...) as the base value json.dumps
    writes for it, whatever ``__str__`` the subclass defines."""
    if isinstance(value, str):
        return str.__str__(value)
    if isinstance(value, int):
        return int.__int__(value)
    return float.__float__(value)


def _container(value: Any, depth: int) -> Any:
    if depth >= MAX_DEPTH:
        raise _Invalid(f"nests objects and arrays more than {MAX_DEPTH} deep")
    depth += 1
    if isinstance(value, dict):
        out: dict[str, Any] | None = None if type(value) is dict else dict(value)
        for key, item in value.items():
            if type(key) is not str and not isinstance(key, str):
                raise _Invalid(
                    f"has a key {short_repr(key, 60)} of type {type(key).__name__}; "
                    "JSON object keys are strings"
                )
            if not key.isascii() or "\x00" in key:
                problem = text_problem(key)
                if problem is not None:
                    raise _Invalid(f"has a key {short_repr(key, 60)} that {problem}")
            kind = type(item)  # plain leaves, tested inline: most of a bulk insert's check
            if kind is str:
                if item.isascii() and "\x00" not in item:
                    continue
            elif kind is int:
                if item.bit_length() <= _INT_SAFE_BITS:
                    continue
            elif kind is float:
                if -_BIG_FLOAT < item < _BIG_FLOAT and (item or math.copysign(1.0, item) > 0):
                    continue
            elif item is None or kind is bool:
                continue
            try:
                new = _clean(item, depth)
            except _Invalid as exc:
                exc.path.append(key)
                raise
            if new is not item:
                if out is None:
                    out = dict(value)
                out[key] = new
        return value if out is None else out
    items: list[Any] | None = None if type(value) is list else list(value)
    for index, item in enumerate(value):
        kind = type(item)
        if kind is str:
            if item.isascii() and "\x00" not in item:
                continue
        elif kind is int:
            if item.bit_length() <= _INT_SAFE_BITS:
                continue
        elif kind is float:
            if -_BIG_FLOAT < item < _BIG_FLOAT and (item or math.copysign(1.0, item) > 0):
                continue
        elif item is None or kind is bool:
            continue
        try:
            new = _clean(item, depth)
        except _Invalid as exc:
            exc.path.append(index)
            raise
        if new is not item:
            if items is None:
                items = list(value)
            items[index] = new
    return value if items is None else items


def normalize_json(value: Any, what: str, owner: str) -> Any:
    """``value`` as jsonb will return it, checked once in a single pass.

    Returns the same object when nothing needed normalizing (the usual case: no copy), else
    a copy with only the changed containers rebuilt. Raises :class:`ArgsError` naming
    ``owner``, ``what`` and the path of the first value that cannot be stored.
    """
    try:
        return _clean(value, 0)
    except _Invalid as exc:
        raise ArgsError(describe_problem(owner, what, exc.path, exc.problem)) from None
    except RecursionError:  # a self-referencing container, or a stack already nearly full
        raise ArgsError(
            f"{owner}: {what} nests objects and arrays more than {MAX_DEPTH} deep "
            "(or refers to itself)"
        ) from None


def ensure_json_object(value: Any, what: str, owner: str) -> dict[str, Any]:
    """Check that ``value`` is a JSON object jsonb can store, and return it normalized
    (see :func:`normalize_json`), naming the offending field when it is not."""
    if not isinstance(value, dict):
        raise ArgsError(f"{owner}: {what} must be a dict, got {type(value).__name__}")
    normalized: dict[str, Any] = normalize_json(value, what, owner)
    return normalized


def dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), allow_nan=False)
