"""Uniqueness as in Oban, enforced by a unique index on a computed key.

Oban checks for a duplicate with a query under an advisory lock, which races between
nodes. Here the database arbitrates: each unique job stores ``unique_key`` (a hash of the
chosen fields), a partial unique index forbids two rows with the same key, and a trigger
clears the key as soon as the job leaves the states the spec protects. A period is honoured
by clearing the key of a conflicting job older than the period and inserting again; the
index still decides which of two racing inserts wins.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, ValidationError, field_validator

from .errors import ConfigError
from .job import MAX_DELAY_SECONDS, JobState
from .serialization import short_repr

UniqueField = Literal["worker", "queue", "args", "meta"]

DEFAULT_STATES: tuple[str, ...] = (
    JobState.AVAILABLE.value,
    JobState.SCHEDULED.value,
    JobState.EXECUTING.value,
    JobState.RETRYABLE.value,
    JobState.COMPLETED.value,
)


class UniqueSpec(BaseModel):
    """``period``: seconds (at most 100 years), or ``None`` / ``"infinity"`` for forever."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    period: float | None = 60.0
    fields: tuple[UniqueField, ...] = ("worker", "queue", "args")
    keys: tuple[str, ...] | None = None
    states: tuple[str, ...] = DEFAULT_STATES

    @field_validator("period", mode="before")
    @classmethod
    def _forever(cls, value: Any) -> Any:
        if isinstance(value, str) and value in ("infinity", "forever"):
            return None
        if value is not None and (
            not isinstance(value, (int, float))
            or isinstance(value, bool)
            or not 0 < value <= MAX_DELAY_SECONDS  # False for NaN; inf and 1e12 overflow
        ):
            raise ConfigError(
                f"period must be a number of seconds above 0 and at most {MAX_DELAY_SECONDS:.0f}"
                f" (100 years), or None / 'infinity' for forever; got {short_repr(value)}"
            )
        return value

    @field_validator("states", mode="before")
    @classmethod
    def _states(cls, value: Any) -> Any:
        if isinstance(value, (str, bytes)) or not isinstance(value, Iterable):
            raise ConfigError(f"states must be a list of job states, got {short_repr(value)}")
        names = tuple(s.value if isinstance(s, JobState) else str(s) for s in value)
        known = {s.value for s in JobState}
        bad = [s for s in names if s not in known]
        if bad:
            raise ConfigError(f"unknown job states {bad}; known: {sorted(known)}")
        if not names:
            raise ConfigError("states must name at least one state")
        return names

    def key(self, worker: str, queue: str, args: dict[str, Any], meta: dict[str, Any]) -> str:
        parts: dict[str, Any] = {}
        if "worker" in self.fields:
            parts["worker"] = worker
        if "queue" in self.fields:
            parts["queue"] = queue
        if "args" in self.fields:
            parts["args"] = (
                args if self.keys is None else {k: args.get(k) for k in sorted(self.keys)}
            )
        if "meta" in self.fields:
            parts["meta"] = meta
        canonical = json.dumps(parts, sort_keys=True, separators=(",", ":"), default=str)
        return hashlib.sha256(canonical.encode()).hexdigest()


UniqueOption = UniqueSpec | bool | Mapping[str, Any] | None
"""How a worker or an insert asks for uniqueness: ``True``, a dict of :class:`UniqueSpec`'s
fields, a spec, or ``None``/``False`` for none."""


def coerce_unique(value: object) -> UniqueSpec | None:
    """Accept the forms a worker option may take: ``True``, a dict, a spec, or ``None``."""
    if value is None or value is False:
        return None
    if value is True:
        return UniqueSpec()
    if isinstance(value, UniqueSpec):
        return value
    if isinstance(value, Mapping):
        try:
            return UniqueSpec.model_validate(dict(value))
        except ValidationError as exc:
            problems = (
                f"{'.'.join(str(p) for p in item['loc']) or 'spec'}: "
                + item["msg"].removeprefix("Value error, ")
                for item in exc.errors()
            )
            raise ConfigError("unique: " + "; ".join(problems)) from None
    # a ValueError (not TypeError) so a pydantic validator reports it like the others
    raise ConfigError(f"unique must be True, a dict or a UniqueSpec, got {type(value).__name__}")


# Stored as ",available,scheduled," so SQL on both engines can test membership with a substring.
def encode_states(states: tuple[str, ...]) -> str:
    return "," + ",".join(states) + ","
