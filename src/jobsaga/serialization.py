"""JSON is the only wire format: args, meta, results and step outputs. Never pickle."""

from __future__ import annotations

import json
from typing import Any

from .errors import ArgsError


def find_unserializable(value: Any, path: str = "") -> str | None:
    """Return the dotted path of the first value JSON cannot encode, or None."""
    if value is None or isinstance(value, (str, bool, int)):
        return None
    if isinstance(value, float):
        return None if value == value and value not in (float("inf"), float("-inf")) else path
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                return f"{path}.{key!r}" if path else repr(key)
            found = find_unserializable(item, f"{path}.{key}" if path else key)
            if found is not None:
                return found
        return None
    if isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            found = find_unserializable(item, f"{path}[{index}]")
            if found is not None:
                return found
        return None
    return path or "<root>"


def ensure_json_object(value: Any, what: str, owner: str) -> dict[str, Any]:
    """Check that ``value`` is a JSON object, naming the offending field when it is not."""
    if not isinstance(value, dict):
        raise ArgsError(f"{owner}: {what} must be a dict, got {type(value).__name__}")
    bad = find_unserializable(value)
    if bad is not None:
        raise ArgsError(
            f"{owner}: {what} field {bad!r} is not JSON-serializable "
            "(jobs store JSON only; convert it, e.g. to a string or a pydantic model)"
        )
    return value


def dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), allow_nan=False)
