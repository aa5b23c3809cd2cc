"""Following an argument's sub-field path (``load_user.email``) into a value.

A path walks data, never code: a mapping's key, a list or tuple index (digits), and the
fields of a pydantic model (declared, computed, and the extra ones a model that allows them
holds), of a dataclass or of a NamedTuple. Those are exactly what the run log keeps of a
result, so a path reads the same value in a fresh run and in a run resumed from the log
(where a result is re-typed by its step's return annotation, or stays plain JSON). Anything
else fails the step with a :class:`~jobsaga.errors.StepArgumentError` naming the argument
and saying what the value is: a path into a ``str`` (``when.upper`` would hand the step a
bound method), an ``int``, a property or method of an object, or a ``None`` inside a value
(as in Reactor). A skipped step's result, and so any field of it, is ``None``: the executor
answers that before a path is followed.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from typing import Any

from pydantic import BaseModel

from ..errors import StepArgumentError
from ..suggest import did_you_mean
from .steps import Argument

WALKS = "a path walks mappings, sequences and model fields"
LISTED = 10
"""At most this many known keys or fields are listed when none is close to the asked one."""


def follow_path(value: Any, arg: Argument) -> Any:
    """The field ``arg.path`` names inside ``value`` (the result or input ``arg.source``)."""
    for depth, part in enumerate(arg.path):
        found, problem = step_into(value, part)
        if problem is not None:
            where = ".".join((arg.source, *arg.path[:depth]))
            wanted = ".".join((arg.source, *arg.path))
            raise StepArgumentError(f"argument {arg.param!r} wants {wanted}: {where} {problem}")
        value = found
    return value


def step_into(value: Any, part: str) -> tuple[Any, str | None]:
    """``(the value part names in value, None)``, or ``(None, what is wrong)``."""
    if isinstance(value, Mapping):
        if part in value:
            return value[part], None
        return None, f"({kind(value)}) has no key {part!r}{hint(part, value)}"
    if isinstance(value, BaseModel):
        model = type(value)
        names = [*model.model_fields, *model.model_computed_fields, *(value.model_extra or ())]
        return named_field(value, part, names)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return named_field(value, part, [field.name for field in dataclasses.fields(value)])
    if isinstance(value, (list, tuple)):
        fields: tuple[str, ...] = getattr(type(value), "_fields", ())  # a NamedTuple
        if part in fields:
            return getattr(value, part), None
        if part.isascii() and part.isdigit():
            index = int(part)
            if index < len(value):
                return value[index], None
            return None, f"({kind(value)} of {len(value)}) has no index {index}"
        if fields:
            return named_field(value, part, fields)
        return None, f"({kind(value)}) is indexed by a number, not {part!r}"
    if value is None:
        return None, (
            f"is None, which has no field {part!r} (only a skipped step's result gives None "
            "for its fields)"
        )
    return None, f"({kind(value)}) has no field {part!r} ({WALKS})"


def named_field(value: Any, part: str, names: Iterable[str]) -> tuple[Any, str | None]:
    known = list(names)
    if part in known:
        return getattr(value, part), None
    return None, f"({kind(value)}) has no field {part!r}{hint(part, known)}"


def hint(part: str, known: Iterable[Any]) -> str:
    """`` (did you mean 'email'?)``, else `` (keys: a, b)`` listing up to :data:`LISTED`."""
    names = [name for name in known if isinstance(name, str)]
    close = did_you_mean(part, names)
    if close is not None:
        return f" ({close})"
    if not names:
        return " (it is empty)"
    shown = ", ".join(names[:LISTED]) + (", ..." if len(names) > LISTED else "")
    return f" (it has: {shown})"


def kind(value: Any) -> str:
    return type(value).__name__
