"""The Jobs page's query string: which jobs (a :class:`~jobsaga.operations.JobFilter`), in
which order, from which cursor, and how to write it back into links.

One parser serves the listing (GET), the confirmation page (GET) and the batch action (the
POSTed form echoes the listing's fields), so "all N matching" acts on exactly the jobs the
page counted. Every value is checked here: a malformed one is an
:class:`~jobsaga.web.server.ActionRefused` naming the field, shown as a 400 page.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, Protocol
from urllib.parse import urlencode

import click

from ...errors import ActionRefused, FilterError
from ...job import MAX_JOB_ID, JobState
from ...operations import JobFilter
from ...operations.filters import TIME_FIELDS
from ...serialization import short_repr

Sort = Literal["newest", "oldest"]
PAGE_SIZE = 50
MAX_PAGE_SIZE = 500
LISTS = ("state", "queue", "worker", "tag", "node")
"""Fields that take several values: repeated (``?queue=a&queue=b``) or comma-separated."""
TEXTS = ("since", "until", "time_field", "text")


class Params(Protocol):
    """A query string or a form: both are multi-dicts."""

    def getlist(self, key: Any) -> list[Any]: ...


@dataclass(frozen=True)
class JobQuery:
    """The listing's filter as given (to echo into links and forms) and as a ``JobFilter``."""

    given: list[tuple[str, str]]
    """The filter's fields as given, in order: what links and forms carry along."""
    flt: JobFilter
    sort: Sort = "newest"
    limit: int = PAGE_SIZE
    after: int | None = None
    """Continue past this id, in the sort's order (the next page)."""
    before: int | None = None
    """The page that comes before this id, in the sort's order (the previous page)."""
    described: list[str] = field(default_factory=list)
    """The filter in words (``state=retryable``), for the confirmation's question."""

    def url(self, base: str, **extra: Any) -> str:
        """``base`` with this filter and sort, plus ``extra`` (None values left out)."""
        items = [*self.given]
        if self.sort != "newest":
            items.append(("sort", self.sort))
        if self.limit != PAGE_SIZE:
            items.append(("limit", str(self.limit)))
        items += [(k, str(v)) for k, v in extra.items() if v is not None]
        return f"{base}?{urlencode(items)}" if items else base

    @property
    def description(self) -> str:
        return " ".join(self.described) if self.described else "no filter (every job)"


def _values(params: Params, name: str) -> list[str]:
    found: list[str] = []
    for raw in params.getlist(name):
        text = str(raw)
        parts = text.split(",") if name in LISTS else [text]
        found += [part.strip() for part in parts if part.strip()]
    return found


def _int(params: Params, name: str, lowest: int, highest: int) -> int | None:
    values = [str(v).strip() for v in params.getlist(name) if str(v).strip()]
    if not values:
        return None
    text = values[-1]
    if not text.isdigit() or not lowest <= int(text) <= highest:
        raise ActionRefused(
            f"{name}={short_repr(text)}: give a whole number from {lowest} to {highest}"
        )
    return int(text)


def _time(value: str, now: datetime, name: str) -> datetime:
    from ...cli.jobs import parse_time

    try:
        moment = parse_time(value, now)
    except click.BadParameter as exc:
        raise ActionRefused(f"{name}: {exc.message}") from None
    assert moment is not None
    return moment


def _arg_paths(values: list[str]) -> dict[str, str]:
    """``customer.country:NL`` (or ``args.customer.country:NL``, as Oban Web writes it)."""
    paths: dict[str, str] = {}
    for value in values:
        path, sep, wanted = value.partition(":")
        path = path.strip().removeprefix("args.")
        if not sep or not path:
            raise ActionRefused(
                f"args filter {short_repr(value)}: write a dotted path, a colon and the value, "
                "e.g. customer.country:NL"
            )
        paths[path] = wanted.strip()
    return paths


def parse_query(params: Params, now: datetime) -> JobQuery:
    """The filter, sort and cursor of a query string or form; ActionRefused when malformed."""
    given: list[tuple[str, str]] = []
    described: list[str] = []
    lists = {name: _values(params, name) for name in LISTS}
    for name in LISTS:
        given += [(name, value) for value in lists[name]]
        if lists[name]:
            described.append(f"{name}={','.join(lists[name])}")
    states = lists["state"]
    known = [s.value for s in JobState]
    for state in states:
        if state not in known:
            raise ActionRefused(f"state={short_repr(state)}: not a state ({', '.join(known)})")
    texts = {name: (_values(params, name) or [""])[-1] for name in TEXTS}
    time_field = texts["time_field"] or "inserted_at"
    if time_field not in TIME_FIELDS:
        raise ActionRefused(f"time_field={short_repr(time_field)}: one of {', '.join(TIME_FIELDS)}")
    since = _time(texts["since"], now, "since") if texts["since"] else None
    until = _time(texts["until"], now, "until") if texts["until"] else None
    for name in ("since", "until", "text"):
        if texts[name]:
            given.append((name, texts[name]))
            described.append(f"{name}={texts[name]}")
    if (since or until) and time_field != "inserted_at":
        given.append(("time_field", time_field))
        described.append(f"time_field={time_field}")
    args = _values(params, "args")
    given += [("args", value) for value in args]
    described += [f"args.{value.removeprefix('args.')}" for value in args]
    try:
        flt = JobFilter(
            state=states or None,
            queue=lists["queue"] or None,
            worker=lists["worker"] or None,
            tags=lists["tag"] or None,
            node=lists["node"] or None,
            since=since,
            until=until,
            time_field=time_field,
            args_path=_arg_paths(args) or None,
            text=texts["text"] or None,
        )
    except FilterError as exc:
        raise ActionRefused(f"invalid filter: {exc}") from None
    sort = (_values(params, "sort") or ["newest"])[-1]
    if sort not in ("newest", "oldest"):
        raise ActionRefused(f"sort={short_repr(sort)}: newest or oldest")
    return JobQuery(
        given=given,
        flt=flt,
        sort="oldest" if sort == "oldest" else "newest",
        limit=_int(params, "limit", 1, MAX_PAGE_SIZE) or PAGE_SIZE,
        after=_int(params, "after", 0, MAX_JOB_ID),
        before=_int(params, "before", 0, MAX_JOB_ID),
        described=described,
    )


def selected_ids(params: Params) -> list[int]:
    """The ids ticked in the listing (``id`` fields), checked."""
    ids: list[int] = []
    for raw in params.getlist("id"):
        text = str(raw).strip()
        if not text.isdigit() or not 1 <= int(text) <= MAX_JOB_ID:
            raise ActionRefused(f"id={short_repr(text)}: not a job id")
        ids.append(int(text))
    return sorted(set(ids))


def form_items(query: JobQuery) -> list[tuple[str, str]]:
    """The query's filter and sort as (name, value) pairs for a URL."""
    return [(name, value) for name, values in form_fields(query).items() for value in values]


def form_fields(query: JobQuery) -> Mapping[str, list[str]]:
    """The query's fields for hidden inputs (a form re-posts what the listing showed)."""
    fields: dict[str, list[str]] = {}
    for name, value in query.given:
        fields.setdefault(name, []).append(value)
    if query.sort != "newest":
        fields["sort"] = [query.sort]
    return fields
