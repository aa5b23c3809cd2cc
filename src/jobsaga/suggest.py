"""The "did you mean ...?" hint for a misspelt name, one rule wherever a name is refused.

A TOML key, an environment variable, a worker class option and an ``Args`` field are all
names a person types; a typo in any of them is refused (never silently ignored), and the
refusal suggests the closest known name the same way, so ``queu`` gets ``did you mean
'queue'?`` whether it was written in ``jobsaga.toml`` or in a class statement.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable

__all__ = ["closest", "did_you_mean"]

CUTOFF = 0.6
"""difflib's own default: close enough for a typo of a short key (``queu``, ``prune_afer``)."""


def closest(word: str, known: Iterable[str], *, cutoff: float = CUTOFF) -> str | None:
    """The known name ``word`` most likely misspells, or None when none is close."""
    found = difflib.get_close_matches(word, list(known), n=1, cutoff=cutoff)
    return found[0] if found else None


def did_you_mean(word: str, known: Iterable[str], *, cutoff: float = CUTOFF) -> str | None:
    """``did you mean 'queue'?`` for a misspelt ``word``, or None when nothing is close."""
    match = closest(word, known, cutoff=cutoff)
    return None if match is None else f"did you mean {match!r}?"
