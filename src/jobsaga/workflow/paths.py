"""Following an argument's sub-field path (``load_user.email``) into a value."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..errors import StepArgumentError
from .dsl import Argument


def follow_path(value: Any, arg: Argument) -> Any:
    """The field ``arg.path`` names inside ``value`` (the result or input ``arg.source``)."""
    for depth, part in enumerate(arg.path):
        try:
            if isinstance(value, Mapping):
                value = value[part]
            elif isinstance(value, (list, tuple)) and part.isdigit():
                value = value[int(part)]
            else:
                value = getattr(value, part)
        except (KeyError, IndexError, AttributeError):
            path = ".".join((arg.source, *arg.path[: depth + 1]))
            raise StepArgumentError(
                f"argument {arg.param!r} wants {path}, which the value "
                f"({type(value).__name__}) does not have"
            ) from None
    return value
