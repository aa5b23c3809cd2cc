"""The plugins of one node: built (and validated) with the node, started and stopped with it.

Order matters. On start, the first heartbeat is written before anything else; then the jobs
that an earlier process under the same node name left executing are rescued (the new
process's heartbeats would otherwise vouch for them); then the loops start. On stop (after
the node's jobs are written back), the reconciler and the cluster-wide duties stop first,
then the node resigns leadership (another node takes over at once), and the heartbeat row
goes last: nothing of this node is left executing by then, except jobs whose threads still
run, for which the heartbeat goes on (see ``Heartbeat.stop``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from ..errors import ConfigError
from .base import Looper
from .cron import Cron
from .crontab import CronEntry, coerce_crontab
from .heartbeat import Heartbeat
from .leader import Leader
from .lifeline import Lifeline
from .pruner import Pruner
from .reconciler import Reconciler
from .stager import Stager

if TYPE_CHECKING:
    from .base import PluginHost


SECONDS = (
    "stage_interval",
    "heartbeat_interval",
    "rescue_after",
    "rescue_interval",
    "prune_after",
    "prune_interval",
    "leader_lease",
)
OPTIONAL = frozenset({"rescue_interval", "prune_after"})


def _seconds(name: str, value: Any) -> float:
    """A positive number of seconds, given as a number or a timedelta."""
    if isinstance(value, timedelta):
        value = value.total_seconds()
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
        raise ConfigError(f"{name} must be a positive number of seconds, got {value!r}")
    return float(value)


@dataclass(frozen=True, kw_only=True)
class PluginOptions:
    """The node options that configure its plugins, under ``Node``'s names for them; checked
    when built. No defaults here: they live in ``Node``'s signature, the one place."""

    stage_interval: float
    heartbeat_interval: float
    rescue_after: float
    rescue_interval: float | None
    crontab: tuple[CronEntry, ...]
    prune_after: float | None
    prune_interval: float
    prune_limit: int
    leader_lease: float
    leadership: bool

    @classmethod
    def build(cls, crontab: Iterable[Any] | None, **options: Any) -> PluginOptions:
        for name in SECONDS:
            if name in options and not (options[name] is None and name in OPTIONAL):
                options[name] = _seconds(name, options[name])
        built = cls(crontab=coerce_crontab(crontab or ()), **options)
        if built.rescue_after < 2 * built.heartbeat_interval:
            raise ConfigError(
                f"rescue_after ({built.rescue_after}s) must be at least twice "
                f"heartbeat_interval ({built.heartbeat_interval}s): a live node that misses "
                "one beat would otherwise have its jobs rescued and run twice"
            )
        limit = built.prune_limit
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise ConfigError(f"prune_limit must be an integer >= 1, got {limit!r}")
        return built


class NodePlugins:
    def __init__(self, node: PluginHost, options: PluginOptions) -> None:
        self.node = node
        self.options = options
        self.heartbeat = Heartbeat(node, options.heartbeat_interval, options.rescue_after)
        self.leader = Leader(node, options.leader_lease, eligible=options.leadership)
        self.stager = Stager(node, options.stage_interval)
        rescue_interval = options.rescue_interval or min(
            options.heartbeat_interval, options.rescue_after / 4
        )
        self.lifeline = Lifeline(node, rescue_interval, options.rescue_after)
        # Every node, as often as the lifeline looks for dead nodes' jobs: a claim whose
        # reply was lost is given back well within the rescue window.
        self.reconciler = Reconciler(node, rescue_interval)
        for entry in options.crontab:
            entry.resolve(node.app)  # a worker named by a string must be registered: fail now
        self.cron = Cron(node, options.crontab) if options.crontab else None
        self.pruner = (
            Pruner(node, options.prune_interval, options.prune_after, options.prune_limit)
            if options.prune_after is not None
            else None
        )
        duties: list[Looper] = [self.lifeline]
        duties += [p for p in (self.cron, self.pruner) if p is not None]
        self.leader_duties: tuple[Looper, ...] = tuple(duties)
        self.loops: tuple[Looper, ...] = (
            self.leader,
            self.stager,
            self.reconciler,
            *self.leader_duties,
        )

    @property
    def is_leader(self) -> bool:
        return self.leader.is_leader

    def wake_leader_duties(self) -> None:
        for duty in self.leader_duties:
            duty.wake()

    def notice(self, payload: Mapping[str, Any]) -> None:
        for loop in self.loops:
            loop.notice(payload)

    async def start(self) -> None:
        await self.heartbeat.start()
        await self.lifeline.rescue_own(self.heartbeat.started_at)
        for loop in self.loops:
            await loop.start()

    async def stop(self) -> None:
        for duty in (self.reconciler, *self.leader_duties, self.stager):
            await duty.stop()
        await self.leader.stop()
        await self.heartbeat.stop()
