"""Queue control at runtime: pause, resume and scale a queue on every node or on one.

The desired state is persisted (``jobsaga_queue_controls``), so it holds for nodes that start
later and survives restarts; nodes are told at once (NOTIFY on PostgreSQL, directly for nodes
of this process) and poll the small table as a safety net, which is how nodes in other
processes on SQLite learn of it. A control for every node clears the per-node overrides of
the same setting, so the last word wins. Pausing stops fetching; jobs already running finish.
Each node emits ``queue.pause``/``queue.resume``/``queue.scale`` when it applies a change.

What each node runs is read from its heartbeat record (``jobsaga_nodes``), the one liveness
record: a node's queues are listed exactly while its own deadline has not passed, the same
test by which the lifeline leaves its jobs alone, so a killed node's queues disappear when
its jobs become rescuable, not on a timer of their own.

A queue is listed while anything uses it: a job in any state (finished ones too, though only
the unfinished are counted: counting a million completed jobs per state is what a listing
must not do), a live node, or a control. A control that names a queue nothing uses is most
likely a typo (``mailer`` for ``mailers``), so callers can ask for the closest used name; it
is still written, as a queue may be paused before the nodes that run it start.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from ..errors import ConfigError
from ..suggest import did_you_mean
from ..worker import check_queue_name
from .jobs import with_retries

if TYPE_CHECKING:
    from ..core import AppCore
    from ..engines import Tx

ALL_NODES = ""


@dataclass(frozen=True, slots=True)
class NodeQueue:
    """One queue as one live node runs it: as its last heartbeat described it, with
    ``running`` counted from the jobs table (exact, whenever the node last beat)."""

    node: str
    concurrency: int
    paused: bool
    running: int
    started_at: datetime | None
    """When the node started."""
    abandoned_threads: int
    """Threads of this queue's timed-out sync performs that still run."""
    abandon_cap: int
    """How many such threads stall the queue (``max_abandoned_threads``)."""
    stalled: bool
    """The queue stopped fetching until some of those threads return."""


@dataclass(frozen=True, slots=True)
class LiveNode:
    """A node whose heartbeat deadline has not passed, and what its last beat said."""

    name: str
    started_at: datetime | None
    heartbeat_at: datetime | None
    expires_at: datetime | None
    record: dict[str, Any]
    """The beat's ``meta``: ``host``, ``pid``, ``healthy``, ``held_jobs``, and per queue
    ``limit``, ``paused``, ``running``, ``abandoned_threads``, ``abandon_cap``, ``stalled``."""

    def queues(self) -> dict[str, dict[str, Any]]:
        """Per queue what the node said (an entry that is not an object is skipped: a
        record is read, never trusted to be well formed)."""
        found = self.record.get("queues")
        if not isinstance(found, dict):
            return {}
        return {str(q): v for q, v in found.items() if isinstance(v, dict)}


@dataclass(frozen=True, slots=True)
class QueueInfo:
    """A queue across the cluster: job counts, the persisted controls, and each live node."""

    queue: str
    available: int
    scheduled: int
    retryable: int
    executing: int
    paused: bool | None
    """The control for every node: True/False once paused/resumed, None if never set."""
    concurrency: int | None
    """The limit set for every node by ``scale_queue``, None when nodes use their own."""
    nodes: tuple[NodeQueue, ...]
    node_controls: dict[str, dict[str, Any]]
    """Per-node overrides: node name -> {"paused": ..., "concurrency": ...}."""


def check_node(node: str | None) -> str:
    if node is None:
        return ALL_NODES
    if not isinstance(node, str) or not node.strip():
        raise ConfigError(f"node must be a node name or None for every node, got {node!r}")
    return node


class QueueControl:
    def __init__(self, app: AppCore) -> None:
        self.app = app
        self.engine = app.engine
        self.sql = self.engine.queries

    def set_paused(self, queue: str, paused: bool, node: str | None) -> None:
        check_queue_name(queue)
        target = check_node(node)
        self._write(queue, target, "set_paused", {"paused": paused}, "clear_node_paused")

    def set_concurrency(self, queue: str, limit: int | None, node: str | None) -> None:
        check_queue_name(queue)
        if limit is not None and (
            not isinstance(limit, int) or isinstance(limit, bool) or limit < 1
        ):
            raise ConfigError(
                f"queue {queue!r}: limit must be an integer >= 1 (or None), got {limit!r}"
            )
        target = check_node(node)
        self._write(
            queue, target, "set_concurrency", {"concurrency": limit}, "clear_node_concurrency"
        )

    def _write(
        self, queue: str, node: str, setter: str, values: dict[str, Any], clear_nodes: str
    ) -> None:
        now = self.engine.time_param(self.app.clock())
        signal = {"signal": "queues", "queue": queue, "node": node or None}

        def run() -> None:
            with self.engine.transaction() as tx:
                if node == ALL_NODES:
                    tx.execute(self.sql[clear_nodes], {"queue": queue, "now": now})
                tx.execute(self.sql[setter], {"queue": queue, "node": node, "now": now, **values})
                tx.execute(self.sql["drop_empty_controls"], {"queue": queue})
                self.engine.notify(tx, signal)

        with_retries(run)
        self.app.signal_local_nodes(signal)

    def live_nodes(self) -> list[LiveNode]:
        """Every node whose heartbeat deadline has not passed, by name."""
        with self.engine.read() as tx:
            return self._live_nodes(tx)

    def _live_nodes(self, tx: Tx) -> list[LiveNode]:
        engine = self.engine
        rows = tx.execute(self.sql["live_nodes"], {"now": engine.time_param(self.app.clock())})
        found = []
        for row in rows:
            record = engine.stored_json(row["meta"])
            found.append(
                LiveNode(
                    name=str(row["name"]),
                    started_at=engine.time_value(row["started_at"]),
                    heartbeat_at=engine.time_value(row["heartbeat_at"]),
                    expires_at=engine.time_value(row["expires_at"]),
                    record=record if isinstance(record, dict) else {},
                )
            )
        return found

    def known_nodes(self) -> list[str]:
        """The node names a control may target: nodes with a heartbeat record (live, or dead
        and not yet forgotten) and nodes an existing control names."""
        with self.engine.read() as tx:
            return sorted(str(row["name"]) for row in tx.execute(self.sql["known_node_names"]))

    def unknown_node(self, node: str | None) -> str | None:
        """Why a control cannot name ``node`` (no such node, the known ones listed), or None.
        Checked by the CLI: a control for a node that never runs is a typo that would
        otherwise sit in the table doing nothing."""
        if node is None:
            return None
        known = self.known_nodes()
        if node in known:
            return None
        live = {n.name for n in self.live_nodes()}
        shown = ", ".join(f"{n} (live)" if n in live else n for n in known) or "none"
        hint = did_you_mean(node, sorted(set(known)))
        suggestion = f"; {hint}" if hint else ""
        return f"no node named {node!r}{suggestion} (known nodes: {shown})"

    def queues_in_use(self) -> set[str]:
        """Queues with a job in any state, a live node or a control, and the queues of the
        app's registered workers."""
        used = {info.queue for info in self.overview()}
        return used | {worker.options.queue for worker in self.app.workers.values()}

    def unused_queue(self, queue: str) -> str | None:
        """A warning when nothing uses ``queue`` (with the closest used name), or None. A
        registered worker's queue answers at once; only a name none of them uses makes the
        listing read the jobs table (one DISTINCT, ~0.25 s over a million finished jobs)."""
        if queue in {worker.options.queue for worker in self.app.workers.values()}:
            return None
        used = self.queues_in_use()
        if queue in used:
            return None
        hint = did_you_mean(queue, sorted(set(used)))
        suggestion = f"; {hint}" if hint else ""
        return (
            f"no job, node, control or registered worker uses queue {queue!r}{suggestion} "
            "(the control is kept for nodes that start with that queue)"
        )

    def overview(self, *, every_queue: bool = True) -> list[QueueInfo]:
        """Each queue's counts, controls and nodes. ``every_queue=False`` leaves out queues
        that only finished jobs (and no worker, node or control) name: finding those reads
        the whole jobs table (``queue_names``), which a page refreshed every few seconds over
        a million jobs cannot afford; registered workers' queues are listed instead."""
        engine, sql = self.engine, self.sql
        with engine.read() as tx:
            counts = tx.execute(sql["queue_state_counts"])
            any_state = tx.execute(sql["queue_names"]) if every_queue else []
            running_rows = tx.execute(sql["running_by_node"])
            live = self._live_nodes(tx)
            control_rows = tx.execute(sql["all_controls"])
        states: dict[str, dict[str, int]] = defaultdict(dict)
        for row in counts:
            states[row["queue"]][row["state"]] = int(row["n"])
        running = {(r["queue"], r["node"]): int(r["n"]) for r in running_rows}
        nodes: dict[str, list[NodeQueue]] = defaultdict(list)
        for node in live:
            for queue, values in sorted(node.queues().items()):
                nodes[queue].append(
                    NodeQueue(
                        node=node.name,
                        concurrency=_count(values.get("limit")),
                        paused=bool(values.get("paused")),
                        running=running.get((queue, node.name), 0),
                        started_at=node.started_at,
                        abandoned_threads=_count(values.get("abandoned_threads")),
                        abandon_cap=_count(values.get("abandon_cap")),
                        stalled=bool(values.get("stalled")),
                    )
                )
        cluster: dict[str, dict[str, Any]] = {}
        per_node: dict[str, dict[str, dict[str, Any]]] = defaultdict(dict)
        for row in control_rows:
            values = {
                "paused": None if row["paused"] is None else bool(row["paused"]),
                "concurrency": row["concurrency"],
            }
            if row["node"] == ALL_NODES:
                cluster[row["queue"]] = values
            else:
                per_node[row["queue"]][row["node"]] = values
        with_jobs = {str(row["queue"]) for row in any_state}
        if not every_queue:
            with_jobs |= {worker.options.queue for worker in self.app.workers.values()}
        names = sorted(with_jobs | set(states) | set(nodes) | set(cluster) | set(per_node))
        return [
            QueueInfo(
                queue=name,
                available=states[name].get("available", 0),
                scheduled=states[name].get("scheduled", 0),
                retryable=states[name].get("retryable", 0),
                executing=states[name].get("executing", 0),
                paused=cluster.get(name, {}).get("paused"),
                concurrency=cluster.get(name, {}).get("concurrency"),
                nodes=tuple(nodes.get(name, ())),
                node_controls=dict(per_node.get(name, {})),
            )
            for name in names
        ]


def _count(value: object) -> int:
    """A count from a node's record (0 when absent or not a count)."""
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else 0
