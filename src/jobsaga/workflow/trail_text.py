"""What the run log proves about a saga run, said in words: each step's outcome, the trail,
the traceback; what ``jobsaga runs show`` prints and the dashboard's run page shows.

Kept apart from both (they are the part with rules): what the log proves about a step (a
step the log saw start and never end was *interrupted*, its outcome unknown, never "not
started"), which events fold into one line (a try that failed the same way as the one
before), and which traceback frames are the user's. Pure functions of a
:class:`~jobsaga.workflow.records.RunRecord`, below the CLI and the dashboard that both use
them.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from ..telemetry_logging import seconds_text
from .records import EventRecord, RunRecord, RunStatus, StepRecord

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
    """A delay or duration as every jobsaga line says one (``110 ms``, ``1.4 s``, ``3 min
    5 s``: :func:`~jobsaga.telemetry_logging.seconds_text`); a value that is not a number
    (a hand-edited log) as it is."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return str(value)
    return "0 s" if number == 0 else seconds_text(number)


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
    if status in ("running", "pending") and run.status == RunStatus.HALTED.value:
        # a step that composed a saga which halted: it halted with it, and goes on with it
        for child in run.children:
            if child.parent_step == record.step and child.status == RunStatus.HALTED.value:
                return f"halted in child run {child.id}"
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
    """One line of the trail: one event, or a step's run of tries that failed the same way
    (same error type and message), folded with the starts of the retries between them."""

    seqs: list[int]
    """The numbers of the events the line stands for, in order."""
    at: datetime
    attempt: int
    step: str | None
    text: str
    fold: tuple[Any, ...] | None = None
    """Later failures of the same step with the same key fold into this line."""
    kind: str = ""
    count: int = 1
    starts: int = 0
    """Starts of retries folded into the line (each between two of its failures)."""
    tries: list[int] = field(default_factory=list)
    delays: list[str] = field(default_factory=list)

    @property
    def folded(self) -> bool:
        return self.count > 1


def _error(detail: Mapping[str, Any] | None, key: str = "error") -> str:
    value = (detail or {}).get(key)
    if isinstance(value, Mapping):
        kind = str(value.get("type", "")).rsplit(".", 1)[-1]
        return f"{kind}: {value.get('message', '')}"
    return "" if value is None else str(value)


def value_text(value: Any, limit: int = 200) -> str:
    """A value from the log as JSON, cut at ``limit`` characters."""
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= limit else text[: limit - 1] + "…"


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
    """An event as a phrase, and the key that folds it with the step's failure before it:
    the kind, the error as said, and the error's full type (two ``Busy`` classes from
    different modules are different errors)."""
    d = event.detail or {}
    kind = event.kind
    tried = d.get("try")
    if kind == "step.started":
        text = "started" if not tried or tried == 1 else f"started (try {tried})"
        if "case" in d:
            text += f": case {d['case']!r}"
        elif "elements" in d:
            text += f" over {d['elements']} element" + ("" if d["elements"] == 1 else "s")
        return text, None
    if kind == "step.expanded":
        return f"next batch: elements up to {d.get('to')} of {d.get('elements')}", None
    if kind in ("step.succeeded", "step.compensated", "step.skipped"):
        what = kind.removeprefix("step.")
        return (f"{what} (try {tried})" if tried and tried > 1 else what), None
    if kind == "step.retried":
        why = _error(d) or (f"Retry({d['reason']!r})" if d.get("reason") else "Retry()")
        same = (d.get("error") or {}).get("type") if isinstance(d.get("error"), Mapping) else None
        return f"failed, retry in {seconds(d.get('delay', 0))}: {why}", ("retried", why, same)
    if kind == "step.failed":
        if d.get("by"):  # a part, failed by a step inside it
            return f"FAILED with {d['by']}: {_error(d)}", None
        return f"FAILED (try {tried}): {_error(d)}", None
    if kind == "step.compensate":
        text = f"compensation decided {d.get('outcome')} after {_error(d)}"
        if d.get("raised"):
            text += f"; it raised {_error(d, 'raised')}"
        return text, None
    if kind == "step.undo_retried":
        why = f"Retry({d['reason']!r})" if d.get("reason") else "Retry()"
        return f"undo asked to retry, in {seconds(d.get('delay', 0))}: {why}", ("undo", why, None)
    if kind == "step.undone":
        tries = d.get("undo_tries")
        return (f"undone (undo try {tries})" if tries and tries > 1 else "undone"), None
    if kind == "step.undo_failed":
        return f"UNDO FAILED (undo try {d.get('undo_tries')}): {_error(d)}", None
    if kind == "step.interrupted":
        if d.get("timeout"):
            return (
                f"ran past its timeout of {seconds(d['timeout'])}: the run halts, and the step "
                "runs again when it is resumed"
            ), None
        previous = d.get("previous_status")
        if previous == "retried":
            return "interrupted while waiting to retry", None
        return "interrupted (it had started: outcome unknown)", None
    if kind == "run.interrupted":
        return "run interrupted (shutdown or timeout): the next attempt resumes it", None
    if kind == "step.halted":
        if "child_run" in d:
            return f"halted with its child run {d['child_run']}", None
        return f"halted: {value_text(d.get('value'))}", None
    if kind == "run.halted":
        why = f" ({d['reason']})" if d.get("reason") else ""
        return f"run halted{why}: waits for a resume (jobsaga runs resume)", None
    if kind == "run.timed_out":
        then = "halts" if d.get("then") == "halt" else "fails and rolls back"
        return f"run timed out after {seconds(d.get('timeout', 0))}: it {then}", None
    if kind == "run.resume_requested":
        names = ", ".join(d.get("inputs") or []) or "none"
        why = f" ({d['reason']})" if d.get("reason") else ""
        return f"resume asked{why}, new inputs: {names}", None
    if kind == "run.resumed":
        by = f"run resumed by attempt {d.get('attempt', event.attempt)}"
        if d.get("after_halt"):
            inputs = d.get("inputs")
            return f"{by} after the halt" + (
                f", inputs {value_text(inputs)}" if inputs else ""
            ), None
        return by, None
    if kind in ("run.cancelled", "run.abandoned"):
        return f"{kind.removeprefix('run.')}: {d.get('reason', '')}", None
    rest = _brief(d)
    return (f"{kind}  {rest}" if rest else kind), None


def trail_lines(run: RunRecord, fold: bool = True) -> list[Line]:
    """Every event of the run in order, one line each; with ``fold``, a step's tries that
    failed the same way (same error type and message) one after the other join the first
    one's line, counted, with the starts of the retries between them, even when other steps'
    events (running at the same time) sit between them: those keep their lines and their
    order. A different outcome of the step (another error, a success, a final failure), a
    run-level event or a new attempt ends the run of repeats."""
    lines: list[Line] = []
    open_folds: dict[str, _Open] = {}
    for event in run.events:
        text, key = describe(event)
        line = _line(event, text, key)
        name = event.step
        if name is None:
            open_folds.clear()  # a run-level event: what follows is told after it
            lines.append(line)
            continue
        current = open_folds.get(name)
        if current is not None and current.line.attempt == event.attempt:
            if event.kind == "step.started":
                lines.append(line)
                current.starts.append(line)
                continue
            if key is not None and key == current.line.fold:
                _fold_into(current, line, lines)
                continue
        open_folds.pop(name, None)
        lines.append(line)
        if fold and key is not None:
            open_folds[name] = _Open(line)
    return lines


@dataclass
class _Open:
    """A step's line that its next failure may fold into, and the step's starts since."""

    line: Line
    starts: list[Line] = field(default_factory=list)


def _fold_into(current: _Open, failure: Line, lines: list[Line]) -> None:
    """``failure`` joins ``current``'s line, and so do the retry starts before it."""
    target = current.line
    folded = {id(start) for start in current.starts}
    lines[:] = [line for line in lines if id(line) not in folded]
    target.seqs += [start.seqs[0] for start in current.starts] + failure.seqs
    target.starts += len(current.starts)
    target.count += 1
    target.tries += failure.tries
    target.delays += failure.delays
    current.starts = []


def _line(event: EventRecord, text: str, key: tuple[Any, ...] | None) -> Line:
    detail = event.detail or {}
    line = Line([event.seq], event.at, event.attempt, event.step, text, key, event.kind)
    if key is not None:
        line.tries = [int(detail["try"])] if detail.get("try") is not None else []
        line.delays = [seconds(detail.get("delay", 0))]
    return line


def render_trail(run: RunRecord, verbose: bool = False) -> list[str]:
    """The trail as text: numbered per run (the event's number in the run), a header per
    attempt, the clock time in UTC. Repeated failures are folded (see :func:`trail_lines`)
    unless ``verbose``: ``runs show -v`` prints every event on its own line."""
    lines = trail_lines(run, fold=not verbose)
    if not lines:
        return []
    number_w = max(len(event_numbers(line)) for line in lines)
    step_w = max((len(line.step or "") for line in lines), default=0)
    folded = any(line.folded for line in lines)
    out = [
        "trail (times UTC): repeated failures folded, -v shows every event"
        if folded
        else "trail (times UTC):"
    ]
    attempt = None
    for line in lines:
        if line.attempt != attempt:
            attempt = line.attempt
            out.append(f"  attempt {attempt}")
        text = folded_text(line) if line.folded else line.text
        at = line.at.astimezone(UTC) if line.at.tzinfo else line.at
        stamp = at.strftime("%H:%M:%S.%f")[:-3]
        out.append(
            f"  {event_numbers(line):>{number_w}}  {stamp}  {line.step or '':<{step_w}}  {text}"
        )
    return out


def folded_text(line: Line) -> str:
    """``tries 1-4 failed × 4: Busy: warehouse busy (retried after 0.01 s each; 3 retry
    starts folded in; events 5,7,9,11-12,14,16)``: what failed, how often, the delays, and
    every event the line stands for, so that nothing it holds goes unsaid."""
    assert line.fold is not None
    notes = [f"retried after {_delays(line.delays)}"]
    if line.starts:
        notes.append(f"{line.starts} retry start{'s' if line.starts > 1 else ''} folded in")
    if not _contiguous(line.seqs):
        notes.append(f"events {_compact(line.seqs)}")
    said = f"{line.fold[1]} ({'; '.join(notes)})"
    if line.fold[0] == "retried":
        tries = f"tries {line.tries[0]}-{line.tries[-1]} " if len(line.tries) > 1 else ""
        return f"{tries}failed × {line.count}: {said}"
    return f"undo asked to retry × {line.count}: {said}"


def _delays(delays: Sequence[str]) -> str:
    if len(set(delays)) == 1:
        return f"{delays[0]} each"
    if len(delays) <= 5:
        return ", ".join(delays)
    return f"{delays[0]}, {delays[1]}, …, {delays[-1]}"


def _contiguous(seqs: Sequence[int]) -> bool:
    return seqs[-1] - seqs[0] == len(seqs) - 1


def _compact(seqs: Sequence[int]) -> str:
    """``5,7,9,11-12,14,16``: event numbers with each run of consecutive ones as a range."""
    parts: list[str] = []
    start = previous = seqs[0]
    for seq in [*seqs[1:], None]:
        if seq is not None and seq == previous + 1:
            previous = seq
            continue
        parts.append(str(start) if start == previous else f"{start}-{previous}")
        if seq is not None:
            start = previous = seq
    return ",".join(parts)


def event_numbers(line: Line) -> str:
    """The number column: the event's number, ``4-8`` for a folded line whose events follow
    one another, ``5…16`` for one with other steps' events between (its text lists them)."""
    first, last = line.seqs[0], line.seqs[-1]
    if first == last:
        return str(first)
    return f"{first}-{last}" if _contiguous(line.seqs) else f"{first}…{last}"


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
