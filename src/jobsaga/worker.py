"""Workers: a class per kind of job, with Oban-style class options.

``class SendEmail(Worker, queue="mailers", max_attempts=5): ...`` validates its options
when the class is created, so a misspelt option fails at import rather than being ignored.
"""

from __future__ import annotations

import functools
import inspect
import math
import re
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, RootModel, ValidationError, field_validator
from tenacity.wait import wait_base

from .backoff import Delay, delay_seconds, retry_delay
from .errors import ArgsError, ConfigError
from .job import MAX_ATTEMPTS, MAX_DELAY_SECONDS, Job, JobSpec
from .serialization import ensure_json_object, normalize_json, short_repr, text_problem
from .suggest import did_you_mean
from .unique import UniqueOption, UniqueSpec, coerce_unique, encode_states

QUEUE_NAME = re.compile(r"^[A-Za-z0-9_.\-]{1,64}$")
DEFAULT_TIMEOUT = 60.0


def check_queue_name(queue: str) -> str:
    if not isinstance(queue, str) or not QUEUE_NAME.fullmatch(queue):  # match() allows "q\n"
        raise ConfigError(
            f"invalid queue name {short_repr(queue)}: use 1-64 letters, digits, '_', '-', '.'"
        )
    return queue


def check_priority(priority: int) -> int:
    if not isinstance(priority, int) or isinstance(priority, bool) or not 0 <= priority <= 9:
        raise ConfigError(
            f"priority must be an integer from 0 (highest) to 9, got {short_repr(priority)}"
        )
    return priority


def check_max_attempts(max_attempts: int) -> int:
    if (
        not isinstance(max_attempts, int)
        or isinstance(max_attempts, bool)
        or not 1 <= max_attempts <= MAX_ATTEMPTS
    ):
        raise ConfigError(
            f"max_attempts must be an integer from 1 to {MAX_ATTEMPTS} (2**31 - 1), "
            f"got {short_repr(max_attempts)}"
        )
    return max_attempts


def check_worker_name(name: Any) -> str:
    """A worker's stable name is stored on every job: text the database can hold."""
    if not isinstance(name, str) or not name.strip():
        raise ConfigError(f"a worker name must be a non-empty string, got {short_repr(name)}")
    problem = text_problem(name)
    if problem is not None:
        raise ConfigError(f"worker name {short_repr(name)} {problem}")
    return name


def check_delay(delay: Any, what: str) -> float:
    """A delay from now (seconds or a timedelta) as seconds: finite, >= 0 and at most
    :data:`MAX_DELAY_SECONDS` (NaN passes a plain ``< 0`` test, and inf or 1e12 overflow a
    datetime at insert)."""
    try:
        seconds = delay_seconds(delay, what)
    except ConfigError:
        seconds = math.inf
    if seconds > MAX_DELAY_SECONDS:
        raise ConfigError(
            f"{what} must be a number of seconds from 0 to {MAX_DELAY_SECONDS:.0f} "
            f"(100 years) or a timedelta, got {short_repr(delay)}"
        )
    return seconds


class WorkerOptions(BaseModel):
    """The class options of a worker. Unknown keys are errors."""

    model_config = ConfigDict(frozen=True, extra="forbid", arbitrary_types_allowed=True)

    name: str | None = None
    queue: str = "default"
    max_attempts: int = 20
    priority: int = 0
    tags: tuple[str, ...] = ()
    unique: UniqueSpec | None = None
    timeout: float | None = DEFAULT_TIMEOUT
    backoff: Callable[[int], float] | wait_base | None = None
    """A callable ``attempt -> seconds``, or a tenacity wait strategy (see ``jobsaga.backoff``)."""

    @field_validator("name")
    @classmethod
    def _name(cls, v: str | None) -> str | None:
        return None if v is None else check_worker_name(v)

    @field_validator("queue")
    @classmethod
    def _queue(cls, v: str) -> str:
        return check_queue_name(v)

    @field_validator("tags")
    @classmethod
    def _tags(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        return check_tags(v, "tags option")

    @field_validator("priority")
    @classmethod
    def _priority(cls, v: int) -> int:
        return check_priority(v)

    @field_validator("max_attempts")
    @classmethod
    def _max_attempts(cls, v: int) -> int:
        return check_max_attempts(v)

    @field_validator("unique", mode="before")
    @classmethod
    def _unique(cls, v: Any) -> UniqueSpec | None:
        return coerce_unique(v)

    @field_validator("timeout")
    @classmethod
    def _timeout(cls, v: float | None) -> float | None:
        if v is not None and not (v > 0 and math.isfinite(v)):
            raise ConfigError("timeout must be a positive number of seconds, or None for no limit")
        return v

    @field_validator("backoff")
    @classmethod
    def _backoff(
        cls, v: Callable[[int], float] | wait_base | None
    ) -> Callable[[int], float] | wait_base | None:
        if v is not None and not callable(v):
            raise ConfigError("backoff must be callable (attempt -> seconds) or a tenacity wait")
        return v


def check_tags(tags: Any, owner: str) -> tuple[str, ...]:
    """Tags are a list of strings; a bare string would become its letters."""
    try:
        found = tuple(tags) if not isinstance(tags, (str, bytes)) else None
    except TypeError:  # not iterable
        found = None
    if found is None:
        raise ArgsError(f"{owner}: tags must be a list of strings, got {short_repr(tags)}")
    exact = True
    for index, tag in enumerate(found):
        if type(tag) is not str:
            if not isinstance(tag, str):
                raise ArgsError(f"{owner}: tags must be a list of strings, got {short_repr(tags)}")
            exact = False
        if not tag.isascii() or "\x00" in tag:
            problem = text_problem(tag)
            if problem is not None:
                raise ArgsError(f"{owner}: tags[{index}] {short_repr(tag)} {problem}")
    return found if exact else tuple(str.__str__(tag) for tag in found)


def check_unique_keys(unique: UniqueSpec | None, args_model: type[BaseModel] | None) -> None:
    """Unique ``keys`` must name fields of the ``Args`` model: a misspelt key would make every
    job of the worker a duplicate of the first (all would share the key ``None``)."""
    if unique is None or unique.keys is None or args_model is None:
        return
    unknown = sorted(set(unique.keys) - set(args_model.model_fields))
    if unknown:
        raise ConfigError(
            f"unique keys {unknown} are not fields of Args "
            f"(fields: {sorted(args_model.model_fields)})"
        )


def describe_validation_error(
    owner: str, error: ValidationError, model: type[BaseModel] | None = None
) -> str:
    """Args refused by the model, one clause per field; an unknown top-level key also says
    which field it may have meant."""
    problems = []
    for item in error.errors():
        where = ".".join(str(part) for part in item["loc"]) or "<args>"
        if item["type"] == "extra_forbidden":
            hint = ""
            if model is not None and len(item["loc"]) == 1:
                close = did_you_mean(where, model.model_fields)
                hint = f" ({close})" if close else f" (fields: {', '.join(model.model_fields)})"
            problems.append(f"unknown field {where!r}{hint}")
        else:
            problems.append(f"field {where!r}: {item['msg']}")
    return f"{owner}: invalid args: " + "; ".join(problems)


def describe_option_error(owner: str, error: ValidationError, known: list[str]) -> str:
    """Class options refused by :class:`WorkerOptions`, as the TOML keys are: the option,
    what is wrong with it, and for a misspelt one the closest known option."""
    problems = []
    for item in error.errors():
        option = ".".join(str(part) for part in item["loc"]) or "options"
        if item["type"] == "extra_forbidden" and len(item["loc"]) == 1:
            hint = did_you_mean(option, known) or f"known: {', '.join(known)}"
            problems.append(f"unknown option {option!r}: {hint}")
        else:
            message = str(item["msg"])
            if message.startswith("Value error, "):  # our own check, which shows the value
                message = message.removeprefix("Value error, ")
            else:
                message += f" (got {short_repr(item['input'])})"
            problems.append(f"option {option!r}: {message}")
    return f"{owner}: " + "; ".join(problems)


def class_option_names(cls: type) -> list[str]:
    """Every class option ``cls`` takes: the worker options, then the keyword options of
    each ``__init_subclass__`` in its bases (``workflow=`` of a WorkflowWorker...)."""
    names = list(WorkerOptions.model_fields)
    for klass in cls.__mro__:
        hook = klass.__dict__.get("__init_subclass__")
        function = getattr(hook, "__func__", hook)
        if not inspect.isfunction(function):  # none, or object's (which takes no options)
            continue
        for parameter in inspect.signature(function).parameters.values():
            if parameter.kind is parameter.KEYWORD_ONLY and parameter.name not in names:
                names.append(parameter.name)
    return names


@functools.cache
def refusing_unknown_keys(model: type[BaseModel]) -> type[BaseModel]:
    """The model an insert validates against: ``model`` itself when it sets ``extra``
    (``"ignore"`` drops unknown keys, ``"allow"`` keeps them: the user's explicit choice),
    else a subclass with ``extra="forbid"``, so a misspelt optional argument is refused
    instead of silently dropped (pydantic's own default is ``"ignore"``). Only inserts use
    it: a stored job's args are read back with ``model`` itself."""
    if "extra" in model.model_config or issubclass(model, RootModel):  # a root has no keys
        return model
    strict: type[BaseModel] = type(
        model.__name__,
        (model,),
        {
            "model_config": ConfigDict(extra="forbid"),
            "__module__": model.__module__,
            "__qualname__": model.__qualname__,
        },
    )
    return strict


def check_scheduled_at(at: Any, owner: str) -> datetime:
    """An aware datetime within :data:`MAX_DELAY_SECONDS` of now, either way, in UTC.

    The bound keeps every engine exact: SQLite stores times as float seconds, which hold
    microseconds only up to about 2^33 s from 1970, and Python's datetime ends at year 9999
    (an offset could push a time past it when converted to UTC)."""
    if not isinstance(at, datetime):
        raise ArgsError(f"{owner}: scheduled_at must be a datetime, got {type(at).__name__}")
    if at.tzinfo is None or at.utcoffset() is None:
        raise ArgsError(f"{owner}: scheduled_at must be timezone-aware (e.g. UTC)")
    try:
        utc = at.astimezone(UTC)
    except (OverflowError, ValueError):
        utc = None
    now = datetime.now(UTC)
    if utc is None or abs((utc - now).total_seconds()) > MAX_DELAY_SECONDS:
        raise ArgsError(
            f"{owner}: scheduled_at {at.isoformat()} is more than 100 years from now; "
            "jobs are scheduled within 100 years"
        )
    return utc


class Worker:
    """Base class of every worker.

    Subclass with options, define ``perform(self, job)`` (plain or ``async``), and optionally
    a nested pydantic ``Args`` model, ``timeout``, ``backoff`` and ``on_final_failure``.
    One instance per node serves all jobs of the class, so ``perform`` must be reentrant.
    """

    name: ClassVar[str] = "jobsaga.Worker"
    options: ClassVar[WorkerOptions] = WorkerOptions()
    Args: ClassVar[type[BaseModel] | None] = None

    def __init_subclass__(cls, **options: Any) -> None:
        super().__init_subclass__()
        inherited: WorkerOptions = getattr(cls, "options", WorkerOptions())
        merged = {**inherited.model_dump(exclude={"name"}), **options}
        try:
            cls.options = WorkerOptions(**merged)
        except ValidationError as exc:
            owner = f"worker {cls.__qualname__}"
            raise ConfigError(describe_option_error(owner, exc, class_option_names(cls))) from None
        cls.name = check_worker_name(cls.options.name or f"{cls.__module__}.{cls.__qualname__}")
        args_model = cls.__dict__.get("Args")
        if args_model is not None and not (
            isinstance(args_model, type) and issubclass(args_model, BaseModel)
        ):
            raise ConfigError(f"worker {cls.__qualname__}: Args must be a pydantic BaseModel")
        try:
            check_unique_keys(cls.options.unique, cls.Args)
        except ValueError as exc:
            raise ConfigError(f"worker {cls.__qualname__}: {exc}") from None

    @classmethod
    def check_runnable(cls) -> None:
        """A worker without its own ``perform`` (a misspelt ``preform``...) is refused where
        it is registered or a job of it is built, not when a node first runs one."""
        if cls.perform is Worker.perform:
            raise ConfigError(f"worker {cls.__qualname__} has no perform(self, job) method")

    # --- building jobs -------------------------------------------------------------------

    @classmethod
    def validate_args(cls, args: Any) -> dict[str, Any]:
        """Validate args as an insert would and return their JSON form."""
        if args is None:
            args = {}
        model = cls.Args
        if model is not None:
            try:
                instance = (
                    args
                    if isinstance(args, model)
                    else refusing_unknown_keys(model).model_validate(args)
                )
            except ValidationError as exc:
                raise ArgsError(describe_validation_error(cls.name, exc, model)) from None
            dumped: dict[str, Any] = normalize_json(
                instance.model_dump(mode="json"), "args", cls.name
            )  # a valid model may still hold NaN, a NUL or 1e16 (which jsonb makes an int)
            return dumped
        if isinstance(args, BaseModel):
            args = args.model_dump(mode="json")
        found = ensure_json_object(args, "args", cls.name)
        return dict(found) if found is args else found  # the caller's dict is not shared

    @classmethod
    def parse_args(cls, raw: dict[str, Any]) -> Any:
        """Turn stored JSON args into what ``perform`` receives (the ``Args`` model, if any)."""
        model = cls.Args
        if model is None:
            return raw
        try:
            return model.model_validate(raw)
        except ValidationError as exc:
            raise ArgsError(describe_validation_error(cls.name, exc)) from None

    @classmethod
    def new(
        cls,
        args: Mapping[str, Any] | BaseModel | None = None,
        *,
        queue: str | None = None,
        priority: int | None = None,
        max_attempts: int | None = None,
        schedule_in: Delay | None = None,
        scheduled_at: datetime | None = None,
        tags: list[str] | tuple[str, ...] | None = None,
        meta: dict[str, Any] | None = None,
        unique: UniqueOption = None,
    ) -> JobSpec:
        """Build a job for ``app.insert``; everything is validated here, so bad input never
        reaches the table.

        One rule for what it raises: anything wrong with what this call was given (args,
        meta, or a per-job option: ``queue``, ``priority``, ``max_attempts``, ``tags``, a
        schedule, ``unique``) is an :class:`ArgsError` naming it; a :class:`ConfigError`
        means the worker class itself cannot make jobs (it has no ``perform``), whatever
        the call."""
        cls.check_runnable()
        opts = cls.options
        raw_args = cls.validate_args(args)
        if meta is not None:  # meta=[] or "" is an error, not an empty meta
            found = ensure_json_object(meta, "meta", cls.name)
            meta_json = dict(found) if found is meta else found
        else:
            meta_json = {}
        if schedule_in is not None and scheduled_at is not None:
            raise ArgsError(f"{cls.name}: give schedule_in or scheduled_at, not both")
        if scheduled_at is not None:
            scheduled_at = check_scheduled_at(scheduled_at, cls.name)
        try:  # the shared checks raise ConfigError, as class options and cron entries want
            seconds = check_delay(schedule_in, "schedule_in") if schedule_in is not None else None
            q = check_queue_name(queue) if queue is not None else opts.queue
            spec_unique = opts.unique
            if unique is not None:
                spec_unique = coerce_unique(unique)
                check_unique_keys(spec_unique, cls.Args)
            if priority is not None:
                check_priority(priority)
            if max_attempts is not None:
                check_max_attempts(max_attempts)
        except ConfigError as exc:
            raise ArgsError(f"{cls.name}: {exc}") from None
        unique_key = (
            spec_unique.key(cls.name, q, raw_args, meta_json) if spec_unique is not None else None
        )
        return JobSpec(
            worker=cls.name,
            queue=q,
            args=raw_args,
            priority=priority if priority is not None else opts.priority,
            max_attempts=max_attempts if max_attempts is not None else opts.max_attempts,
            tags=check_tags(tags, cls.name) if tags is not None else opts.tags,
            meta=meta_json,
            scheduled_at=scheduled_at,
            schedule_in=seconds,
            unique_key=unique_key,
            unique_states=encode_states(spec_unique.states) if spec_unique is not None else None,
            unique_period=spec_unique.period if spec_unique is not None else None,
        )

    # --- running jobs --------------------------------------------------------------------

    def perform(self, job: Job[Any]) -> Any:
        raise NotImplementedError(f"{type(self).__qualname__} must define perform(self, job)")

    def timeout(self, job: Job[Any]) -> float | None:
        """Seconds the perform may run; ``None`` means no limit. Default: the ``timeout`` option."""
        return type(self).options.timeout

    def backoff(self, job: Job[Any]) -> float:
        """Seconds until the next attempt after ``job.attempt`` failed: the ``backoff`` option,
        else the guide's curve (``jobsaga.backoff.default_backoff``)."""
        return retry_delay(type(self).options.backoff, job.attempt)

    def on_final_failure(self, job: Job[Any], error: BaseException) -> None:
        """Runs once, when the last attempt failed and the job is about to be discarded."""
