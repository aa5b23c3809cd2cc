"""Sub-field paths checked against what a step declares it returns, when the class is
defined: ``args={"year": "when.upper"}`` on a step annotated ``-> datetime``-like data, or
``"load_user.emial"`` on a pydantic ``User``, is a typo found at import rather than a step
failing at run time. Only what the annotation says for certain is checked: a path through
``Any``, a union, a plain ``dict`` or an annotation that cannot be resolved is left to the
run (:mod:`.paths` walks the value itself, by the same rule)."""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import BaseModel

from .paths import WALKS, hint

SCALARS = (str, bytes, int, float, bool)


def return_type(fn: Any) -> Any:
    """The step function's return annotation, resolved; None when it cannot be known."""
    try:
        return typing.get_type_hints(fn).get("return")
    except Exception:  # a forward reference that does not resolve here: the run decides
        return None


def path_problem(declared: Any, path: Sequence[str]) -> tuple[int, str] | None:
    """What is wrong with following ``path`` into a value of type ``declared``, if the type
    says for certain: how deep the path got, and what the value there lacks; None when it is
    fine or cannot be told."""
    current = declared
    for depth, part in enumerate(path):
        origin = typing.get_origin(current)
        if current is None or current is Any or origin in (typing.Union, types.UnionType):
            return None
        if isinstance(current, type) and issubclass(current, BaseModel):
            fields = {**current.model_fields}
            if part in fields:
                current = fields[part].annotation
                continue
            if part in current.model_computed_fields or current.model_config.get("extra"):
                return None
            return depth, f"({current.__name__}) has no field {part!r}{hint(part, fields)}"
        if isinstance(current, type) and dataclasses.is_dataclass(current):
            names = {field.name: field.type for field in dataclasses.fields(current)}
            if part not in names:
                return depth, f"({current.__name__}) has no field {part!r}{hint(part, names)}"
            resolved = _field_types(current)
            current = resolved.get(part) if resolved is not None else None
            continue
        if isinstance(current, type) and issubclass(current, SCALARS):
            return depth, f"is a {current.__name__}, which has no field {part!r} ({WALKS})"
        if isinstance(current, type) and issubclass(current, tuple) and hasattr(current, "_fields"):
            resolved = _field_types(current) or {}
            if part in current._fields:
                current = resolved.get(part)
                continue
            if not part.isdigit():
                return depth, f"({current.__name__}) has no field {part!r}"
            current = None
            continue
        container = origin if origin is not None else current
        if isinstance(container, type) and issubclass(container, Mapping):
            args = typing.get_args(current)
            current = args[1] if len(args) == 2 else None
            continue
        if isinstance(container, type) and issubclass(container, (list, tuple)):
            if not part.isdigit():
                return depth, f"is a {container.__name__}, indexed by a number, not {part!r}"
            args = typing.get_args(current)
            current = args[0] if args and container is list else None
            continue
        return None  # some other object: the run tells
    return None


def _field_types(cls: type) -> dict[str, Any] | None:
    try:
        return typing.get_type_hints(cls)
    except Exception:
        return None
