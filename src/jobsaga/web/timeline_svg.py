"""When each step of a run ran, as a Gantt chart in SVG: one row per step, one bar per try.

Read from the run log's step events alone: a try runs from its ``step.started`` to the
step's next ending event (succeeded, failed, retried, compensated, skipped, interrupted,
halted); a try with no ending runs to the run's end (or its last event), drawn open. Bars
of different steps that overlap in time ran concurrently; a retried step has one bar per try
with the backoff wait as the gap between them; an undo is a tick at the time it was recorded
(the log records its end, not its start).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from html import escape

from ..workflow.records import EventRecord, RunRecord
from ..workflow.trail_text import describe, seconds

ENDINGS = {
    "step.succeeded": "succeeded",
    "step.compensated": "compensated",
    "step.skipped": "skipped",
    "step.failed": "failed",
    "step.retried": "retried",
    "step.interrupted": "interrupted",
    "step.halted": "halted",
}
"""Events that end a try, and the class its bar takes."""
UNDOS = {"step.undone": "undone", "step.undo_failed": "undo_failed"}
MAX_ROWS = 80
"""Steps drawn before the rest are counted (a map of thousands of elements)."""
LABEL_W, CHART_W, ROW_H, AXIS_H = 200, 640, 20, 24


@dataclass
class Bar:
    """One try of a step: when it started and ended (``end`` None: never ended)."""

    step: str
    tried: int
    start: datetime
    end: datetime | None
    ending: str
    text: str


def tries_of(run: RunRecord) -> tuple[list[str], list[Bar], list[EventRecord]]:
    """The steps in the order they first started, every try as a bar, and the undo events."""
    steps: list[str] = []
    bars: list[Bar] = []
    open_bars: dict[str, Bar] = {}
    undos: list[EventRecord] = []
    for event in run.events:
        name = event.step
        if name is None:
            continue
        if event.kind == "step.started":
            if name not in steps:
                steps.append(name)
            tried = int((event.detail or {}).get("try") or 1)
            bar = Bar(name, tried, event.at, None, "open", "")
            bars.append(bar)
            open_bars[name] = bar
        elif event.kind in ENDINGS and name in open_bars:
            bar = open_bars.pop(name)
            bar.end = event.at
            bar.ending = ENDINGS[event.kind]
            bar.text = describe(event)[0]
        elif event.kind in UNDOS:
            if name not in steps:
                steps.append(name)
            undos.append(event)
    return steps, bars, undos


def run_timeline_svg(run: RunRecord) -> str:
    """The run's tries as an ``<svg>`` Gantt chart (empty when no step started)."""
    steps, bars, undos = tries_of(run)
    if not steps:
        return '<svg class="timeline" width="0" height="0" role="img"></svg>'
    hidden = len(steps) - MAX_ROWS
    steps = steps[:MAX_ROWS]
    row = {name: index for index, name in enumerate(steps)}
    times = [e.at for e in run.events] + [run.started_at]
    if run.finished_at is not None:
        times.append(run.finished_at)
    t0, t1 = min(times), max(times)
    span = max((t1 - t0).total_seconds(), 1e-6)

    def x(at: datetime) -> float:
        return LABEL_W + (at - t0).total_seconds() / span * CHART_W

    rows = len(steps) + (1 if hidden > 0 else 0)
    width = LABEL_W + CHART_W + 10
    height = AXIS_H + rows * ROW_H + 6
    out = [
        f'<svg class="timeline" xmlns="http://www.w3.org/2000/svg" width="{width}" '
        f'height="{height}" viewBox="0 0 {width} {height}" role="img" '
        f'aria-label="run {run.id}: when each step ran, one bar per try">',
    ]
    for tick in range(5):
        at_s = span * tick / 4
        tx = LABEL_W + CHART_W * tick / 4
        out.append(
            f'<line class="tick" x1="{tx:.1f}" y1="{AXIS_H - 4}" x2="{tx:.1f}" y2="{height}"/>'
            f'<text class="axis" x="{tx:.1f}" y="{AXIS_H - 8}" '
            f'text-anchor="{"start" if tick == 0 else "end" if tick == 4 else "middle"}">'
            f"{escape('+' + seconds(at_s) if tick else '0 s')}</text>"
        )
    for name, index in row.items():
        y = AXIS_H + index * ROW_H
        label = name if len(name) <= 30 else name[:29] + "…"
        out.append(
            f'<text class="label" x="{LABEL_W - 8}" y="{y + 14}" text-anchor="end">'
            f"<title>{escape(name)}</title>{escape(label)}</text>"
        )
    for bar in bars:
        if bar.step not in row:
            continue
        y = AXIS_H + row[bar.step] * ROW_H + 3
        end = bar.end or t1
        x1, x2 = x(bar.start), x(end)
        took = seconds((end - bar.start).total_seconds())
        what = bar.text or ("still running or cut short: no ending recorded")
        out.append(
            f'<rect class="bar b-{bar.ending}" data-step="{escape(bar.step)}" '
            f'data-try="{bar.tried}" x="{x1:.1f}" y="{y}" width="{max(x2 - x1, 2):.1f}" '
            f'height="{ROW_H - 6}"><title>{escape(bar.step)} try {bar.tried}: {escape(took)}, '
            f"{escape(what)}</title></rect>"
        )
    for event in undos:
        if event.step not in row:
            continue
        y = AXIS_H + row[event.step] * ROW_H + 1
        ux = x(event.at)
        out.append(
            f'<path class="undo u-{UNDOS[event.kind]}" data-step="{escape(event.step or "")}" '
            f'd="M{ux:.1f},{y} l-5,{ROW_H - 2} h10 z"><title>{escape(event.step or "")}: '
            f"{escape(describe(event)[0])}</title></path>"
        )
    if hidden > 0:
        y = AXIS_H + len(steps) * ROW_H
        out.append(
            f'<text class="label" x="{LABEL_W - 8}" y="{y + 14}" text-anchor="end">'
            f"… {hidden} more steps</text>"
        )
    out.append("</svg>")
    return "\n".join(out)
