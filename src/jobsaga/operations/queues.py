"""Queue control at runtime: pause, resume and scale a queue on every node or on one.

The desired state is persisted (``jobsaga_queue_controls``), so it holds for nodes that start
later and survives restarts; nodes are told at once (NOTIFY on PostgreSQL, directly for nodes
of this process) and poll the small table as a safety net, which is how nodes in other
processes on SQLite learn of it. A control for every node clears the per-node overrides of
the same setting, so the last word wins. Pausing stops fetching; jobs already running finish.
Each node emits ``queue.pause``/``queue.resume``/``queue.scale`` when it applies a change.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from ..errors import ConfigError
from ..worker import check_queue_name
from .jobs import with_retries

if TYPE_CHECKING:
    from ..core import AppCore

ALL_NODES = ""


@dataclass(frozen=True, slots=True)
class NodeQueue:
    """One queue as one live node runs it."""

    node: str
    concurrency: int
    paused: bool
    running: int
    started_at: datetime | None


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

    def overview(self) -> list[QueueInfo]:
        engine, sql = self.engine, self.sql
        now = engine.time_param(self.app.clock())
        with engine.read() as tx:
            counts = tx.execute(sql["queue_state_counts"])
            running_rows = tx.execute(sql["running_by_node"])
            status_rows = tx.execute(sql["live_status"], {"now": now})
            control_rows = tx.execute(sql["all_controls"])
        states: dict[str, dict[str, int]] = defaultdict(dict)
        for row in counts:
            states[row["queue"]][row["state"]] = int(row["n"])
        running = {(r["queue"], r["node"]): int(r["n"]) for r in running_rows}
        nodes: dict[str, list[NodeQueue]] = defaultdict(list)
        for row in status_rows:
            nodes[row["queue"]].append(
                NodeQueue(
                    node=row["node"],
                    concurrency=int(row["concurrency"]),
                    paused=bool(row["paused"]),
                    running=running.get((row["queue"], row["node"]), 0),
                    started_at=engine.time_value(row["started_at"]),
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
        names = sorted(set(states) | set(nodes) | set(cluster) | set(per_node))
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
