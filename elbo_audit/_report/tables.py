"""Term tables: terms as rows, one column per (model, prior), readable in 100 columns.

The layout follows Hoffman & Johnson's Table 1 turned on its side: each row is
a term (ELBO, reconstruction, average KL, index-code MI, marginal KL, ...) and
each column a ``model@prior``. A cell has several lines (the value with its
Monte Carlo standard error, then its bootstrap interval, and in comparisons the
difference to the reference). In text, columns are split into blocks that fit
the width, so a comparison of many reports stays readable in a terminal or a
CI log; in markdown each cell is one line and the table is not split.
"""

from __future__ import annotations

import math
import textwrap
from collections.abc import Sequence

__all__ = ["WIDTH", "fmt_interval", "fmt_value", "render_term_table"]

#: Text tables are split into column blocks no wider than this.
WIDTH = 100

Cell = Sequence[str]


def fmt_value(value: float | None, se: float | None = None, *, sign: bool = False) -> str:
    """``value ± se`` with two decimals (``n/a`` for a missing value)."""
    if value is None or math.isnan(value):
        return "n/a"
    text = f"{value:+.2f}" if sign else f"{value:.2f}"
    if se is not None and not math.isnan(se):
        text += f" ± {se:.2f}"
    return text


def fmt_interval(ci: Sequence[float | None] | None, *, sign: bool = False) -> str:
    """``[lo, hi]``, or an empty string when the interval was not computed."""
    if ci is None or len(ci) != 2 or any(v is None or math.isnan(v) for v in ci):
        return ""
    lo, hi = (float(v) for v in ci)  # type: ignore[arg-type]
    return f"[{lo:+.2f}, {hi:+.2f}]" if sign else f"[{lo:.2f}, {hi:.2f}]"


def _chunks(widths: Sequence[int], first: int, width: int) -> list[list[int]]:
    """Greedy blocks of column indices whose text width fits ``width`` (at least one each)."""
    blocks: list[list[int]] = []
    current: list[int] = []
    used = first
    for i, w in enumerate(widths):
        if current and used + 2 + w > width:
            blocks.append(current)
            current, used = [], first
        current.append(i)
        used += 2 + w
    if current:
        blocks.append(current)
    return blocks


def render_term_table(
    headers: Sequence[Sequence[str]],
    rows: Sequence[tuple[str, Sequence[Cell]]],
    notes: Sequence[str],
    fmt: str = "text",
    *,
    width: int = WIDTH,
    corner: str = "term",
) -> str:
    """Render a terms-by-columns table as ``text`` or ``markdown``.

    Parameters
    ----------
    headers : sequence of sequence of str
        One entry per column: its header lines (e.g. the report, then ``model@prior``).
    rows : sequence of (label, cells)
        One entry per term: its label and one cell per column, each a sequence of lines.
    notes : sequence of str
        Sentences printed below the table (wrapped to ``width`` in text).
    fmt : {"text", "markdown"}
    width : int
        Text output is split into column blocks no wider than this.
    corner : str
        The header of the label column.
    """
    if fmt == "markdown":
        head = [corner] + [" ".join(h for h in hdr if h) for hdr in headers]
        lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for label, cells in rows:
            lines.append("| " + " | ".join([label] + [" ".join(x for x in c if x) for c in cells]) + " |")
        return "\n".join(lines) + "\n\n" + "\n\n".join(notes) + "\n"
    n_head = max((len(h) for h in headers), default=1)
    first = max([len(corner)] + [len(label) for label, _ in rows])
    widths = [
        max([len(x) for x in hdr] + [len(x) for _, cells in rows for x in cells[i]] + [1])
        for i, hdr in enumerate(headers)
    ]
    out: list[str] = []
    for block in _chunks(widths, first, width):
        if out:
            out.append("")
        for k in range(n_head):
            label = corner if k == n_head - 1 else ""
            parts = [label.ljust(first)]
            for i in block:
                hdr = list(headers[i])
                line = ([""] * (n_head - len(hdr)) + hdr)[k]
                parts.append(line.ljust(widths[i]))
            out.append("  ".join(parts).rstrip())
        out.append("  ".join(["-" * first] + ["-" * widths[i] for i in block]))
        for label, cells in rows:
            depth = max([len(cells[i]) for i in block] + [1])
            for k in range(depth):
                parts = [(label if k == 0 else "").ljust(first)]
                for i in block:
                    cell = list(cells[i])
                    parts.append((cell[k] if k < len(cell) else "").ljust(widths[i]))
                line = "  ".join(parts).rstrip()
                if k == 0 or line.strip():
                    out.append(line)
    for note in notes:
        out.extend(textwrap.wrap(note, width=width) or [""])
    return "\n".join(out) + "\n"
