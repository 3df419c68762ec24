"""What the surgery trainers (train_torch.py, train_jax.py) share: their common command-line
arguments, the learning-rate schedule over a step or wall-clock budget, and continued training.

A model trained in several runs (``--resume``) keeps one JSON: the per-epoch curves appended,
the wall time and optimiser steps summed, and ``segments``, one entry per run with its own
hyperparameters, so the history of a checkpoint can be read back exactly.
"""

from __future__ import annotations

import argparse
import json
import math
from dataclasses import dataclass, field
from pathlib import Path


def add_common_arguments(p: argparse.ArgumentParser) -> None:
    """The options both trainers take (each adds its own: --prior, --device, --threads ...)."""
    p.add_argument("--latent", type=int, default=20)
    p.add_argument("--hidden", type=int, default=500)
    p.add_argument("--activation", default="tanh", choices=["tanh", "relu"])
    p.add_argument("--batch", type=int, default=100)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--lr-final", type=float, default=0.1,
                   help="learning rate at the end of the budget, as a fraction of --lr")
    p.add_argument("--decay-tail", type=float, default=0.3,
                   help="cosine-decay the learning rate over this last fraction of the budget")
    p.add_argument("--epochs", type=int, default=10_000, help="at most this many epochs")
    p.add_argument("--minutes", type=float, default=12.0, help="wall-clock budget; 0 = none")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--data-dir", default=None, help="folder holding binarized_mnist/ (default: "
                   "$ELBO_AUDIT_DATA_DIR or ../shared/data relative to the repository root)")
    p.add_argument("--train-limit", type=int, default=None, help="first rows of train only (tests)")
    p.add_argument("--valid-limit", type=int, default=None, help="first rows of valid only (tests)")
    p.add_argument("--max-steps", type=int, default=None, help="stop after this many steps (tests)")
    p.add_argument("--checkpoint-every", type=int, default=1, help="epochs between checkpoints")
    p.add_argument("--resume", default=None, help="OUT prefix of a checkpoint to start from")
    p.add_argument("--out", required=True, help="output prefix: writes OUT.safetensors and OUT.json")
    p.add_argument("--quiet", action="store_true")


@dataclass(frozen=True)
class Schedule:
    """Constant learning rate, then a cosine decay to ``lr * lr_final`` over the last
    ``decay_tail`` of the budget; the budget is spent by steps or by wall time, whichever is
    further along."""

    lr: float
    lr_final: float
    decay_tail: float
    total_steps: int
    budget_s: float  # math.inf: no wall-clock budget

    @classmethod
    def from_args(cls, args: argparse.Namespace, steps_per_epoch: int) -> Schedule:
        total = args.epochs * steps_per_epoch
        if args.max_steps is not None:
            total = min(total, args.max_steps)
        budget = args.minutes * 60.0 if args.minutes and args.minutes > 0 else math.inf
        return cls(args.lr, args.lr_final, args.decay_tail, total, budget)

    def progress(self, step: int, elapsed: float) -> float:
        """Fraction of the budget spent, in [0, 1]."""
        by_time = elapsed / self.budget_s if self.budget_s < math.inf else 0.0
        return min(1.0, max(step / self.total_steps, by_time))

    def lr_at(self, step: int, elapsed: float) -> float:
        frac = self.progress(step, elapsed)
        start = 1.0 - self.decay_tail
        if self.decay_tail <= 0 or frac <= start:
            return self.lr
        t = min(1.0, (frac - start) / self.decay_tail)
        lo = self.lr * self.lr_final
        return lo + 0.5 * (self.lr - lo) * (1 + math.cos(math.pi * t))


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
