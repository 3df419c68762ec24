"""Continued training: what a checkpoint's JSON hands on to the run that resumes from it.

A model trained in several runs (``--resume``) keeps one JSON: the per-epoch curves appended,
the wall time and optimiser steps summed, and ``segments``, one entry per run with its own
hyperparameters, so the history of a checkpoint can be read back exactly.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Previous:
    """What earlier runs left: empty for a run from scratch."""

    curves: list[dict] = field(default_factory=list)
    wall_s: float = 0.0
    steps: int = 0
    segments: list[dict] = field(default_factory=list)

    @property
    def epochs(self) -> int:
        return len(self.curves)

    def segments_with(self, resumed_from: str | None, epochs_total: int, wall_s: float,
                      hyperparameters: dict) -> list[dict]:
        """The earlier runs plus this one (``epochs_total`` counts every run's epochs)."""
        return self.segments + [{"resumed_from": resumed_from, "epochs": epochs_total - self.epochs,
                                 "wall_time_s": round(wall_s, 2), "hyperparameters": hyperparameters}]


def previous(prefix: str | None) -> Previous:
    """Read ``PREFIX.json`` of the checkpoint being resumed (none, or no JSON: a fresh start)."""
    if not prefix:
        return Previous()
    path = Path(f"{prefix}.json")
    if not path.is_file():
        return Previous()
    old = json.loads(path.read_text())
    curves = list(old.get("curves", []))
    wall = float(old.get("wall_time_s", 0.0))
    segments = list(old.get("segments") or [{  # a checkpoint written before segments existed
        "resumed_from": old.get("resumed_from"), "epochs": len(curves), "wall_time_s": wall,
        "hyperparameters": old.get("hyperparameters")}])
    steps = int(curves[-1]["steps"]) if curves else 0
    return Previous(curves, wall, steps, segments)
