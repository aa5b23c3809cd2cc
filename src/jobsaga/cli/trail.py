"""How ``jobsaga runs show`` tells a saga run: each step's outcome, the trail, the traceback.

The rules live in :mod:`jobsaga.workflow.trail_text`, below both the CLI and the dashboard
(whose run page says the same words); this module keeps the names the commands import.
"""

from __future__ import annotations

from ..workflow.trail_text import (
    COMPLETED,
    INTERRUPTED,
    INTERRUPTED_WAITING,
    MARKS,
    NO_START_NOTE,
    NO_START_RECORDED,
    UNFINISHED,
    Line,
    describe,
    event_numbers,
    fold_traceback,
    folded_text,
    render_trail,
    seconds,
    silent_attempts,
    step_outcome,
    trail_lines,
    value_text,
)

__all__ = [
    "COMPLETED",
    "INTERRUPTED",
    "INTERRUPTED_WAITING",
    "MARKS",
    "NO_START_NOTE",
    "NO_START_RECORDED",
    "UNFINISHED",
    "Line",
    "describe",
    "event_numbers",
    "fold_traceback",
    "folded_text",
    "render_trail",
    "seconds",
    "silent_attempts",
    "step_outcome",
    "trail_lines",
    "value_text",
]
