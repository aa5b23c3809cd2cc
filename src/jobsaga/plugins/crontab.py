"""Cron entries: what to insert and when, validated when the entry is built.

``CronEntry("0 2 * * *", DailyCleanup, args={...}, timezone="Europe/Paris")``, or the guide's
tuple form ``("*/15 * * * *", HealthCheck)`` / ``("@daily", Report, {"args": {...}})``.
Expressions have five fields (minute hour day-of-month month day-of-week) or one of the
aliases ``@hourly @daily @midnight @weekly @monthly @yearly @annually @reboot``; a sixth
field (seconds, last, as croniter reads it) allows sub-minute schedules, mostly for tests.
``@reboot`` inserts one job when a cluster boots: by the node that wins the first election.
croniter computes the times, in the entry's timezone (daylight saving included).

An entry's name identifies it across restarts and nodes: its ticks are counted under it. An
entry given no ``name=`` gets one derived, as Oban's cron does, from a stable hash of its
schedule, worker and options (args, queue, priority, attempts, tags, timezone): the same
entry always gets the same name on every node, and two entries that differ in anything a
tick inserts (``Report`` with ``{"region": "eu"}`` and with ``{"region": "us"}``) get two.
Only a true duplicate, which would insert every job twice, is refused.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import CroniterBadCronError, CroniterBadDateError, croniter
from pydantic_core import PydanticSerializationError, to_jsonable_python

from ..errors import ArgsError, ConfigError
from ..job import JobSpec
from ..serialization import ensure_json_object, short_repr, text_problem
from ..worker import (
    Worker,
    check_max_attempts,
    check_priority,
    check_queue_name,
    check_tags,
    check_worker_name,
)

if TYPE_CHECKING:
    from ..core import AppCore

ALIASES = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
REBOOT = "@reboot"
MAX_TICKS_PER_RUN = 1000


def normalize_expression(expression: str) -> str:
    """The five- or six-field form of an expression (aliases expanded); raises ValueError."""
    if not isinstance(expression, str) or not expression.strip():
        raise ConfigError("the expression must be a non-empty string such as '0 2 * * *'")
    problem = text_problem(expression)
    if problem is not None:  # it is stored with each job's meta
        raise ConfigError(f"the expression {problem}")
    text = " ".join(expression.split())
    if text.startswith("@"):
        if text == REBOOT:
            return REBOOT
        if text not in ALIASES:
            raise ConfigError(
                f"unknown alias {text!r}; known: {', '.join([*sorted(ALIASES), REBOOT])}"
            )
        return ALIASES[text]
    fields = text.split(" ")
    if len(fields) not in (5, 6):
        raise ConfigError(
            f"{len(fields)} fields in {text!r}: use five (minute hour day month weekday), "
            "six with seconds last, or an alias such as @daily"
        )
    check_steps(fields)
    try:
        croniter(text, datetime(2000, 1, 1, tzinfo=UTC)).get_next(datetime)
    except CroniterBadDateError:
        raise ConfigError(f"{text!r} never fires (no such date)") from None
    except (CroniterBadCronError, ValueError, KeyError) as exc:
        raise ConfigError(f"{text!r} is not a valid cron expression: {exc}") from None
    return text


FIELD_SPANS = (("minute", 60), ("hour", 24), ("day", 31), ("month", 12), ("weekday", 7))
SECOND_SPAN = ("second", 60)


def check_steps(fields: list[str]) -> None:
    """croniter accepts a step as wide as its field or wider (``*/61`` fires once an hour,
    at :00), which is almost surely a typo for another schedule: refuse it, naming it."""
    spans = [*FIELD_SPANS, SECOND_SPAN][: len(fields)]
    for text, (name, span) in zip(fields, spans, strict=True):
        for part in text.split(","):
            _, slash, step = part.partition("/")
            if slash and step.isdigit() and not 0 < int(step) < span:
                raise ConfigError(
                    f"{name} step /{step} in {' '.join(fields)!r} must be between 1 and {span - 1}"
                )


@dataclass(frozen=True)
class CronEntry:
    """One line of a crontab: insert ``worker``'s job at every tick of ``expression``.

    ``worker`` is a Worker class or the registered name of one (so a crontab can come from a
    config file). ``name`` identifies the entry across restarts and nodes (its ticks are
    counted under it); it defaults to :func:`derived_name` of the schedule, worker and
    options, so entries that differ only in their args need no names.

    Everything a tick will insert is checked here, so a bad entry fails when the crontab is
    built, naming the entry, not at its first tick (or in the database): a worker given by
    name gets the checks that need no class (JSON args, queue, priority, attempts, tags).
    """

    expression: str
    worker: type[Worker] | str
    args: Mapping[str, Any] | None = None
    queue: str | None = None
    priority: int | None = None
    max_attempts: int | None = None
    tags: tuple[str, ...] = ()
    timezone: str = "UTC"
    name: str | None = None
    schedule: str = field(init=False, repr=False, default="")
    args_json: dict[str, Any] = field(init=False, repr=False, compare=False, default_factory=dict)
    """The args each tick inserts, as stored (what ``jobsaga cron list`` shows)."""
    derived: bool = field(init=False, repr=False, compare=False, default=False)
    """The name was derived (no ``name=`` given)."""

    def __post_init__(self) -> None:
        label = (
            short_repr(self.name)
            if self.name
            else f"{short_repr(self.expression)} {self._worker_name()}"
        )
        if self.name is not None and (
            not isinstance(self.name, str) or not self.name.strip() or text_problem(self.name)
        ):
            raise ConfigError(
                f"cron entry {label}: name must be a non-empty string of text, got {short_repr(self.name)}"
            )
        try:
            schedule = normalize_expression(self.expression)
        except ValueError as exc:
            raise ConfigError(f"cron entry {label}: {exc}") from None
        object.__setattr__(self, "schedule", schedule)
        try:
            ZoneInfo(self.timezone)
        except (ZoneInfoNotFoundError, ValueError, TypeError):
            raise ConfigError(
                f"cron entry {label}: unknown timezone {short_repr(self.timezone)} (use an IANA name "
                "such as 'Europe/Paris' or 'UTC')"
            ) from None
        if not isinstance(self.worker, str) and not (
            isinstance(self.worker, type) and issubclass(self.worker, Worker)
        ):
            raise ConfigError(
                f"cron entry {label}: worker must be a Worker subclass or a worker name, "
                f"got {short_repr(self.worker)}"
            )
        if self.args is not None and not isinstance(self.args, Mapping):
            raise ConfigError(
                f"cron entry {label}: args must be a dict, got {short_repr(self.args)}"
            )
        try:
            object.__setattr__(self, "tags", check_tags(self.tags, self._worker_name()))
        except ArgsError as exc:
            raise ConfigError(f"cron entry {label}: {exc}") from None
        if isinstance(self.worker, type):
            # args, queue, priority checked now, not at the first tick
            object.__setattr__(self, "args_json", self._build(self.worker, None, label).args)
        else:
            object.__setattr__(self, "args_json", self._check_by_name(self.worker, label))
        if self.name is None:
            object.__setattr__(self, "derived", True)
            object.__setattr__(
                self, "name", derived_name(schedule, self._worker_name(), self.hashed_options())
            )

    def _check_by_name(self, worker: str, label: str) -> dict[str, Any]:
        """What ``build`` checks that needs no worker class; returns the args as JSON."""
        try:
            check_worker_name(worker)
            if self.queue is not None:
                check_queue_name(self.queue)
            if self.priority is not None:
                check_priority(self.priority)
            if self.max_attempts is not None:
                check_max_attempts(self.max_attempts)
            args: dict[str, Any] = ensure_json_object(dict(self.args or {}), "args", worker)
        except (ArgsError, ConfigError) as exc:
            raise ConfigError(f"cron entry {label}: {exc}") from None
        return args

    def _worker_name(self) -> str:
        worker = self.worker
        return worker if isinstance(worker, str) else getattr(worker, "name", repr(worker))

    @property
    def worker_name(self) -> str:
        return self._worker_name()

    def hashed_options(self) -> dict[str, Any]:
        """The options that make an entry distinct, those left at their defaults omitted (so
        an option added to jobsaga later does not rename every existing entry)."""
        found: dict[str, Any] = {
            "args": dict(self.args or {}),  # as given: an Args model's new default renames nothing
            "queue": self.queue,
            "priority": self.priority,
            "max_attempts": self.max_attempts,
            "tags": list(self.tags),
            "timezone": None if self.timezone == "UTC" else self.timezone,
        }
        return {key: value for key, value in found.items() if value not in (None, {}, [])}

    @property
    def legacy_key(self) -> str | None:
        """The name an unnamed entry had before names were derived from a hash
        (``"<schedule> <worker>"``): the leader carries its last tick over to the new name,
        so no tick is inserted twice, or skipped, across that upgrade."""
        return f"{self.schedule} {self._worker_name()}" if self.derived else None

    @property
    def key(self) -> str:
        assert self.name is not None
        return self.name

    @property
    def is_reboot(self) -> bool:
        return self.schedule == REBOOT

    def resolve(self, app: AppCore) -> type[Worker]:
        """The worker class; a name must be registered on the app."""
        if isinstance(self.worker, type):
            return self.worker
        try:
            return app.worker_for(self.worker)
        except LookupError as exc:
            raise ConfigError(f"cron entry {self.name!r}: {exc}") from None

    def build(self, worker: type[Worker], tick: datetime | None = None) -> JobSpec:
        """The job of one tick, carrying the entry in its meta."""
        return self._build(worker, tick, repr(self.name))

    def _build(self, worker: type[Worker], tick: datetime | None, label: str) -> JobSpec:
        meta: dict[str, Any] = {"cron": True, "cron_expr": self.expression, "cron_name": self.name}
        if tick is not None:
            meta["cron_tick"] = tick.astimezone(UTC).isoformat()
        try:
            return worker.new(
                dict(self.args or {}),
                queue=self.queue,
                priority=self.priority,
                max_attempts=self.max_attempts,
                tags=list(self.tags) or None,
                meta=meta,
            )
        except (ArgsError, ConfigError) as exc:
            raise ConfigError(f"cron entry {label}: {exc}") from None

    def ticks(self, after: datetime, until: datetime) -> Iterator[datetime]:
        """Tick times in ``(after, until]`` as UTC datetimes, oldest first."""
        if self.is_reboot:
            return
        tz = ZoneInfo(self.timezone)
        it = croniter(self.schedule, after.astimezone(tz))
        for _ in range(MAX_TICKS_PER_RUN):
            tick = it.get_next(datetime).astimezone(UTC)
            if tick > until:
                return
            yield tick

    def next_tick(self, after: datetime) -> datetime | None:
        if self.is_reboot:
            return None
        tz = ZoneInfo(self.timezone)
        value: datetime = croniter(self.schedule, after.astimezone(tz)).get_next(datetime)
        return value.astimezone(UTC)

    def describe(self) -> dict[str, Any]:
        """What ``jobsaga cron list`` shows about the entry (stored by the leader)."""
        return {
            "args": self.args_json,
            "queue": self.queue,
            "priority": self.priority,
            "timezone": self.timezone,
            "schedule": self.schedule,
        }


def derived_name(schedule: str, worker: str, options: Mapping[str, Any]) -> str:
    """Eight hex digits of a SHA-256 of schedule, worker and options (canonical JSON), as
    Oban names its cron entries: stable across processes, versions and dict orders."""
    canonical = json.dumps(
        options, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=_stable
    )
    return hashlib.sha256(f"{schedule}:{worker}:{canonical}".encode()).hexdigest()[:8]


def _stable(value: Any) -> Any:
    """A value json cannot write (args an Args model accepts: a set, a datetime, a Decimal)
    in a form every process writes alike: a set's order depends on the hash seed, so each
    node would derive another name; ``str`` of an object may hold its id."""
    if isinstance(value, (set, frozenset)):
        return sorted((_stable(v) if not isinstance(v, str) else v for v in value), key=repr)
    try:
        return to_jsonable_python(value)
    except PydanticSerializationError:
        return f"{type(value).__module__}.{type(value).__qualname__}"


def coerce_entry(item: Any, index: int) -> CronEntry:
    """A CronEntry from an entry or the tuple forms ``(expr, worker)`` / ``(expr, worker, opts)``."""
    if isinstance(item, CronEntry):
        return item
    if isinstance(item, (tuple, list)) and len(item) in (2, 3):
        options = item[2] if len(item) == 3 else {}
        if not isinstance(options, Mapping):
            raise ConfigError(
                f"crontab entry #{index} ({item[0]!r}): the third element must be a dict of "
                "options (args, queue, priority, max_attempts, tags, timezone, name)"
            )
        try:
            return CronEntry(item[0], item[1], **options)
        except TypeError as exc:
            raise ConfigError(f"crontab entry #{index} ({item[0]!r}): {exc}") from None
    raise ConfigError(
        f"crontab entry #{index}: expected CronEntry(...) or (expression, Worker[, options]), "
        f"got {short_repr(item)}"
    )


CronLine = (
    CronEntry | tuple[str, type[Worker] | str] | tuple[str, type[Worker] | str, Mapping[str, Any]]
)
"""A crontab entry as ``Node(crontab=...)`` takes it: a :class:`CronEntry`, or
``(expression, worker)`` / ``(expression, worker, options)``."""


def coerce_crontab(items: Iterable[CronLine]) -> tuple[CronEntry, ...]:
    entries = tuple(coerce_entry(item, i) for i, item in enumerate(items))
    seen: set[str] = set()
    for entry in entries:
        if entry.key in seen and entry.derived:
            raise ConfigError(
                f"two cron entries run {entry.worker_name} on {entry.expression!r} with the same "
                "options: each tick would insert its job twice; remove one (or, if both are "
                "meant, give each a distinct name=)"
            )
        if entry.key in seen:
            raise ConfigError(
                f"two cron entries are named {entry.key!r}; give each a distinct name="
            )
        seen.add(entry.key)
    return entries


def next_after(entries: Iterable[CronEntry], now: datetime) -> datetime | None:
    times = [t for e in entries if (t := e.next_tick(now)) is not None]
    return min(times) if times else None
