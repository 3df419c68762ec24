"""CI gates: conditions on a report's terms that decide the exit code.

Syntax: ``[MODEL[@PRIOR]:]TERM[.BOUND] OP NUMBER`` where TERM is a report
variable (``elbo``, ``marginal_kl``, ...), BOUND is ``value`` (default),
``lower`` or ``upper`` (the bootstrap interval), OP is one of
``< <= > >= == !=`` and NUMBER is in nats. Without MODEL the gate applies to
every model; without PRIOR to the model's own prior (``native``).
"""

from __future__ import annotations

import math
import operator
import re
from dataclasses import dataclass
from typing import final

import numpy as np
import xarray as xr

from ._errors import UsageError

__all__ = ["Gate", "GateResult", "parse_gate", "evaluate_gates", "gates_dataset"]

_OPS = {"<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge, "==": operator.eq, "!=": operator.ne}
_GATE = re.compile(
    r"^\s*(?:(?P<model>[^:@\s]+)(?:@(?P<prior>[^:\s]+))?\s*:)?\s*(?P<term>[a-z_]+)"
    r"(?:\.(?P<bound>value|lower|upper))?\s*(?P<op><=|>=|==|!=|<|>)\s*(?P<num>[-+]?[0-9.]+(?:[eE][-+]?\d+)?)\s*$"
)
TERMS = (
    "elbo", "reconstruction", "avg_kl", "index_code_mi", "marginal_kl",
    "total_correlation", "dimwise_kl", "decomposition_residual",
)


@final
@dataclass(frozen=True)
class Gate:
    expr: str
    term: str
    bound: str
    op: str
    threshold: float
    model: str | None = None
    prior: str = "native"


@final
@dataclass(frozen=True)
class GateResult:
    gate: Gate
    model: str
    observed: float
    passed: bool

    def verdict(self) -> str:
        word = "PASS" if self.passed else "FAIL"
        what = self.gate.term + ("" if self.gate.bound == "value" else f".{self.gate.bound}")
        return (
            f"{word} {self.model}@{self.gate.prior}: {what} = {self.observed:.4g} "
            f"(gate: {what} {self.gate.op} {self.gate.threshold:g})"
        )


def parse_gate(expr: str) -> Gate:
    """Parse one gate expression; raises UsageError naming the expression."""
    m = _GATE.match(expr)
    if m is None:
        raise UsageError(f"--gate {expr!r}: expected '[MODEL[@PRIOR]:]TERM[.lower|.upper] OP NUMBER'")
    term = m["term"]
    if term not in TERMS:
        raise UsageError(f"--gate {expr!r}: unknown term {term!r} (known: {', '.join(TERMS)})")
    try:
        threshold = float(m["num"])
    except ValueError:
        raise UsageError(f"--gate {expr!r}: {m['num']!r} is not a number") from None
    return Gate(expr, term, m["bound"] or "value", m["op"], threshold, m["model"], m["prior"] or "native")


def evaluate_gates(ds: xr.Dataset, gates: list[Gate]) -> list[GateResult]:
    """Judge every gate on a report's root group."""
    results = []
    models = [str(m) for m in ds["model"].values]
    priors = [str(p) for p in ds["prior"].values]
    for g in gates:
        targets = models if g.model is None else [g.model]
        for model in targets:
            if model not in models:
                raise UsageError(f"--gate {g.expr!r}: no model {model!r} in the report (models: {models})")
            if g.prior not in priors:
                raise UsageError(f"--gate {g.expr!r}: no prior {g.prior!r} in the report (priors: {priors})")
            sel = ds.sel(model=model, prior=g.prior)
            if g.bound == "value":
                observed = float(sel[g.term].values)
            else:
                observed = float(sel[f"{g.term}_ci"].sel(ci_bound=g.bound).values)
            passed = (not math.isnan(observed)) and bool(_OPS[g.op](observed, g.threshold))
            results.append(GateResult(g, model, observed, passed))
    return results


def gates_dataset(results: list[GateResult]) -> xr.Dataset:
    """The report's ``/gates`` group."""
    n = len(results)
    return xr.Dataset(
        {
            "expression": (("gate",), np.array([r.gate.expr for r in results], dtype=object)),
            "model": (("gate",), np.array([r.model for r in results], dtype=object)),
            "prior": (("gate",), np.array([r.gate.prior for r in results], dtype=object)),
            "observed": (("gate",), np.array([r.observed for r in results], dtype=float), {"units": "nat"}),
            "threshold": (("gate",), np.array([r.gate.threshold for r in results], dtype=float), {"units": "nat"}),
            "passed": (("gate",), np.array([int(r.passed) for r in results], dtype=np.int8)),
        },
        coords={"gate": np.arange(n)},
    )
