"""What every Mermaid chart of jobsaga shares: node ids that are never Mermaid keywords and
never clash, and the colour of each outcome. Apart from :mod:`.graph` so the charts
(:mod:`.diagram`, :mod:`.run_diagram`), which the graph draws with, build on it too."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

__all__ = ["STYLES", "node_id", "outcome_styles"]


def node_id(step: str) -> str:
    """A step's Mermaid node id: never a keyword, never an input's id (``input_<name>``).

    A step of the workflow is ``s_<name>``. A place inside a part (``each[3].pay.charge``,
    as the run names its steps) is ``p_`` and the place with each ``_``, ``.``, ``[`` and
    ``]`` written as ``_u``, ``__``, ``_i``, ``_j`` (any other character ``_x<hex>_``): a
    code read back one way only, so two places never share an id, and the id holds only
    letters, digits and underscores (a dot or a bracket would break the chart)."""
    if step.isidentifier():
        return f"s_{step}"
    return "p_" + "".join(
        _PLACE_CODE.get(c, c if c.isascii() and c.isalnum() else f"_x{ord(c):x}_") for c in step
    )


_PLACE_CODE = {"_": "_u", ".": "__", "[": "_i", "]": "_j"}


STYLES = {
    "succeeded": "fill:#d4edda",
    "compensated": "fill:#fff3cd",
    "failed": "fill:#f8d7da",
    "undone": "fill:#e2e3e5",
    "undo_failed": "fill:#f5c6cb,stroke:#721c24",
    "skipped": "fill:#ffffff,stroke-dasharray: 4",
}


def outcome_styles(order: Sequence[str], outcomes: Mapping[str, str] | None) -> list[str]:
    """A class per status (``classDef``), given to the nodes (and subgraphs) that have it."""
    lines: list[str] = []
    for status, style in STYLES.items():
        members = [n for n in order if outcomes and outcomes.get(n) == status]
        if members:
            lines.append(f"    classDef {status} {style}")
            lines.append(f"    class {','.join(node_id(n) for n in members)} {status}")
    return lines
