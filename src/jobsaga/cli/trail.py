"""How ``jobsaga runs show`` tells a saga run: each step's outcome, the trail, the traceback.

Kept apart from the command (``cli/runs.py``) because it is the part with rules: what the
log proves about a step (a step the log saw start and never end was *interrupted*, its
outcome unknown, never "not started"), which events fold into one line (a try that failed
the same way as the one before), and which traceback frames are the user's.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from ..workflow.records import EventRecord, RunRecord, RunStatus, StepRecord

UNFINISHED = (RunStatus.RUNNING.value, RunStatus.ROLLING_BACK.value)
COMPLETED = ("succeeded", "compensated", "skipped", "undone", "undo_failed")
"""Step statuses that say the step once ran to a result (or was skipped): its dependents could
start."""

MARKS = {
    "succeeded": "ok",
    "compensated": "ok (compensated)",
    "skipped": "skipped",
    "failed": "FAILED",
    "undone": "undone",
    "undo_failed": "UNDO FAILED",
    "pending": "not started",
    "running": "running",
    "retried": "waiting to retry",
}
INTERRUPTED = "interrupted, outcome unknown"
INTERRUPTED_WAITING = "interrupted while waiting to retry"
NO_START_RECORDED = "no start recorded *"
NO_START_NOTE = (
    "* a step's start is written with the run log's next round, not before its code runs: "
    "an attempt that died (kill -9, power loss) just after starting a step leaves no trace "
    "of it, so a step shown with no start recorded may have run{why}."
)


# --- what the log proves about each step ----------------------------------------------------


def seconds(value: Any) -> str:
    """A delay or duration for people: ``0.11 s``, ``12 s``, ``3.5 min``."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return str(value)
    if number < 10:
        return f"{number:.2f} s"
    if number < 120:
        return f"{number:.0f} s"
    return f"{number / 60:.1f} min"


def silent_attempts(run: RunRecord) -> list[int]:
    """Attempts that left the run without a word: no ``run.interrupted``, no ending of the
    run, and a later attempt took the run over (a crash, a kill -9, a lost database), or the
    run is still unfinished under the last one (alive, or dead and not rescued yet). What such
    an attempt started but had not written yet is unknown."""
    attempts = sorted({e.attempt for e in run.events} | {run.attempt})
    interrupted = {e.attempt for e in run.events if e.kind == "run.interrupted"}
    silent = [a for a in attempts[:-1] if a not in interrupted]
    last = attempts[-1] if attempts else run.attempt
    if run.status in UNFINISHED and last not in interrupted:
        silent.append(last)
    return silent


def step_outcome(run: RunRecord, record: StepRecord) -> str:
    """What ``runs show`` says a step did. A step whose start the log holds is never shown
    "not started": cut short by a shutdown, a cancel or a crash, its code may have taken
    effect (the log cannot know), so it is "interrupted, outcome unknown"."""
    own = [e for e in run.events if e.step == record.step]
    last = own[-1] if own else None
    ended = run.status not in UNFINISHED
    cut_after = any(
        e.kind == "run.interrupted" and (last is None or e.seq > last.seq) for e in run.events
    )
    status = record.status
    if status == "running" and (ended or cut_after):
        return INTERRUPTED
    if status == "retried" and (ended or cut_after):
        return INTERRUPTED_WAITING
    if status == "pending":
        if last is not None and last.kind == "step.interrupted":
            previous = (last.detail or {}).get("previous_status")
            return INTERRUPTED_WAITING if previous == "retried" else INTERRUPTED
        deps = (run.dag or {}).get(record.step, [])
        steps = {s.step: s for s in run.steps}
        ready = all(d in steps and steps[d].status in COMPLETED for d in deps)
        if ready and silent_attempts(run):
            return NO_START_RECORDED
    return MARKS.get(status, status)


# --- the trail ------------------------------------------------------------------------------


@dataclass
class Line:
    """One line of the trail: one event, or several folded (a try that failed as the one
    before it did, repeated)."""

    first: int
    last: int
    at: datetime
    attempt: int
    step: str | None
    text: str
    fold: tuple[Any, ...] | None = None
    """Events with the same key, one after the other, fold into this line."""
    kind: str = ""
    count: int = 1
    tries: list[int] = field(default_factory=list)
    delays: list[str] = field(default_factory=list)


def _error(detail: Mapping[str, Any] | None, key: str = "error") -> str:
    value = (detail or {}).get(key)
    if isinstance(value, Mapping):
        kind = str(value.get("type", "")).rsplit(".", 1)[-1]
        return f"{kind}: {value.get('message', '')}"
    return "" if value is None else str(value)


def _brief(detail: Mapping[str, Any] | None, skip: Sequence[str] = ()) -> str:
    """An event's details not said otherwise, numbers rounded."""
    parts = []
    for key, value in (detail or {}).items():
        if key in skip:
            continue
        if isinstance(value, Mapping) and "type" in value:
            value = _error(detail, key)
        elif isinstance(value, float):
            value = round(value, 3)
        parts.append(f"{key}={value}")
    return ", ".join(parts)


def describe(event: EventRecord) -> tuple[str, tuple[Any, ...] | None]:
    """An event as a phrase, and the key that folds it with the same event just before."""
    d = event.detail or {}
    kind = event.kind
    tried = d.get("try")
    if kind == "step.started":
        return ("started" if not tried or tried == 1 else f"started (try {tried})"), None
    if kind in ("step.succeeded", "step.compensated", "step.skipped"):
        what = kind.removeprefix("step.")
        return (f"{what} (try {tried})" if tried and tried > 1 else what), None
    if kind == "step.retried":
        why = _error(d) or (f"Retry({d['reason']!r})" if d.get("reason") else "Retry()")
        return f"failed, retry in {seconds(d.get('delay', 0))}: {why}", ("retried", why)
    if kind == "step.failed":
        return f"FAILED (try {tried}): {_error(d)}", None
    if kind == "step.compensate":
        text = f"compensation decided {d.get('outcome')} after {_error(d)}"
        if d.get("raised"):
            text += f"; it raised {_error(d, 'raised')}"
        return text, None
    if kind == "step.undo_retried":
        why = f"Retry({d['reason']!r})" if d.get("reason") else "Retry()"
        return f"undo asked to retry, in {seconds(d.get('delay', 0))}: {why}", ("undo", why)
    if kind == "step.undone":
        tries = d.get("undo_tries")
        return (f"undone (undo try {tries})" if tries and tries > 1 else "undone"), None
    if kind == "step.undo_failed":
        return f"UNDO FAILED (undo try {d.get('undo_tries')}): {_error(d)}", None
    if kind == "step.interrupted":
        previous = d.get("previous_status")
        if previous == "retried":
            return "interrupted while waiting to retry", None
        return "interrupted (it had started: outcome unknown)", None
    if kind == "run.interrupted":
        return "run interrupted (shutdown or timeout): the next attempt resumes it", None
    if kind == "run.resumed":
        return f"run resumed by attempt {d.get('attempt', event.attempt)}", None
    if kind in ("run.cancelled", "run.abandoned"):
        return f"{kind.removeprefix('run.')}: {d.get('reason', '')}", None
    rest = _brief(d)
    return (f"{kind}  {rest}" if rest else kind), None


def trail_lines(run: RunRecord) -> list[Line]:
    """Every event of the run in order, one line each, but a failed try that repeats the
    failure of the try before it (same step, same error) joins that try's line, counted,
    with the retry's start between them: the line says ``failed × 3`` once."""
    lines: list[Line] = []
    for event in run.events:
        text, fold = describe(event)
        detail = event.detail or {}
        if fold is not None:
            target = _fold_target(lines, event, fold)
            if target is not None:
                if lines[-1] is not target:
                    lines.pop()  # the retry's start, part of the folded line now
                target.count += 1
                target.last = event.seq
                if detail.get("try") is not None:
                    target.tries.append(int(detail["try"]))
                target.delays.append(seconds(detail.get("delay", 0)))
                continue
        line = Line(event.seq, event.seq, event.at, event.attempt, event.step, text, fold)
        line.kind = event.kind
        if fold is not None:
            line.tries = [int(detail["try"])] if detail.get("try") is not None else []
            line.delays = [seconds(detail.get("delay", 0))]
        lines.append(line)
    return lines


def _fold_target(lines: list[Line], event: EventRecord, fold: tuple[Any, ...]) -> Line | None:
    """The line ``event`` folds into: the last line, or the one before it when the last is
    this step's start of the try that failed, when it says the same thing of the same step."""
    candidates = lines[-1:]
    if len(lines) >= 2 and lines[-1].kind == "step.started" and lines[-1].step == event.step:
        candidates = lines[-2:-1]
    for line in candidates:
        if line.fold == fold and line.step == event.step and line.attempt == event.attempt:
            return line
    return None


def render_trail(run: RunRecord) -> list[str]:
    """The trail as text: numbered per run (the event's number in the run), a header per
    attempt, the clock time in UTC."""
    lines = trail_lines(run)
    if not lines:
        return []
    number_w = max(len(_numbers(line)) for line in lines)
    step_w = max((len(line.step or "") for line in lines), default=0)
    out = ["trail (times UTC):"]
    attempt = None
    for line in lines:
        if line.attempt != attempt:
            attempt = line.attempt
            out.append(f"  attempt {attempt}")
        text = line.text
        if line.count > 1:
            tries = f"tries {line.tries[0]}-{line.tries[-1]} " if len(line.tries) > 1 else ""
            if line.fold is not None and line.fold[0] == "retried":
                text = (
                    f"{tries}failed × {line.count}: {line.fold[1]} "
                    f"(retried after {', '.join(line.delays)})"
                )
            elif line.fold is not None:
                text = (
                    f"undo asked to retry × {line.count}: {line.fold[1]} "
                    f"(retried after {', '.join(line.delays)})"
                )
        at = line.at.astimezone(UTC) if line.at.tzinfo else line.at
        stamp = at.strftime("%H:%M:%S.%f")[:-3]
        out.append(f"  {_numbers(line):>{number_w}}  {stamp}  {line.step or '':<{step_w}}  {text}")
    return out


def _numbers(line: Line) -> str:
    return str(line.first) if line.first == line.last else f"{line.first}-{line.last}"


# --- tracebacks -----------------------------------------------------------------------------

_FRAME = re.compile(r'^(\s*)File "(?P<path>[^"]+)", line \d+, in (?P<fn>.+)$')
_FRAMEWORK = re.compile(
    r"[/\\]jobsaga[/\\](?:workflow|runtime|testing|engines|plugins|cli|operations)[/\\]"
    r"|[/\\]jobsaga[/\\][a-z_]+\.py$"
    r"|[/\\]lib[/\\]python3\.\d+[/\\](?:asyncio|concurrent)[/\\]"
    r"|[/\\]lib[/\\]python3\.\d+[/\\](?:threading|contextvars|functools)\.py$"
)


def fold_traceback(text: str, verbose: bool = False, *, command: str = "runs show") -> list[str]:
    """A traceback with each run of framework frames (jobsaga's own, and the asyncio and
    thread pool plumbing that calls a step) folded into one line, so the user's frames stand
    out; ``verbose`` keeps every frame (``runs show -v``; ``command`` names the one the fold
    line points to). A frame is its ``File ...`` line and the source and marker lines under
    it."""
    lines = text.rstrip().splitlines()
    if verbose:
        return lines
    out: list[str] = []
    folded = 0
    indent = "  "
    index = 0
    while index < len(lines):
        line = lines[index]
        match = _FRAME.match(line)
        if match is None:
            if folded:
                out.append(_folded(indent, folded, command))
                folded = 0
            out.append(line)
            index += 1
            continue
        end = index + 1
        while (
            end < len(lines)
            and not _FRAME.match(lines[end])
            and lines[end].startswith(match.group(1) + " ")
        ):
            end += 1
        if _FRAMEWORK.search(match.group("path")):
            folded += 1
            indent = match.group(1)
        else:
            if folded:
                out.append(_folded(indent, folded, command))
                folded = 0
            out.extend(lines[index:end])
        index = end
    if folded:
        out.append(_folded(indent, folded, command))
    return out


def _folded(indent: str, count: int, command: str) -> str:
    frames = "frame" if count == 1 else "frames"
    return f"{indent}… {count} jobsaga {frames} ({command} -v shows them)"
