"""CI gates: conditions on a report's terms that decide the exit code.

Syntax: ``[MODEL[@PRIOR]:]TERM[.BOUND] OP NUMBER`` where TERM is a report
variable (``elbo``, ``marginal_kl``, ...), BOUND is ``value`` (default),
``lower`` or ``upper`` (the bootstrap interval), or, against a baseline
report (``--baseline OLD.nc``), ``delta`` (this run minus the baseline),
``delta.lower`` or ``delta.upper`` (the interval of that difference: paired
bootstrap replicates when both runs share data, seed and resample count;
otherwise the two runs' replicates subtracted as independent). OP is one of
``< <= > >= == !=`` and NUMBER is in nats. Without MODEL the gate applies to
every model; without PRIOR to the model's own prior (``native``).

``elbo.delta.lower > -0.5`` reads "the ELBO may not drop by more than 0.5
nats, with 95 % confidence".
"""

from __future__ import annotations

import math
import operator
import re
from dataclasses import dataclass
from typing import final

import numpy as np
import xarray as xr

from .._errors import UsageError
from .._model.terms import GATE_TERMS
from .identity import pairing

__all__ = [
    "Baseline", "Gate", "GateResult", "evaluate_gates", "format_gates", "gates_dataset", "parse_gate",
    "read_gates",
]

_OPS = {"<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge, "==": operator.eq, "!=": operator.ne}
_GATE = re.compile(
    r"^\s*(?:(?P<model>[^:@\s]+)(?:@(?P<prior>[^:\s]+))?\s*:)?\s*(?P<term>[a-z_]+)"
    r"(?:\.(?P<bound>value|lower|upper|delta\.lower|delta\.upper|delta))?\s*(?P<op><=|>=|==|!=|<|>)\s*(?P<num>[-+]?[0-9.]+(?:[eE][-+]?\d+)?)\s*$"
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
    if term not in GATE_TERMS:
        known = ", ".join(GATE_TERMS)
        raise UsageError(f"--gate {expr!r}: unknown term {term!r} (known: {known})")
    try:
        threshold = float(m["num"])
    except ValueError:
        raise UsageError(f"--gate {expr!r}: {m['num']!r} is not a number") from None
    return Gate(expr, term, m["bound"] or "value", m["op"], threshold, m["model"], m["prior"] or "native")


@final
@dataclass(frozen=True)
class Baseline:
    """A previous report to judge ``delta`` gates against."""

    root: xr.Dataset
    replicates: xr.Dataset | None
    path: str

    def paired_with(self, ds: xr.Dataset) -> bool:
        """Whether ``ds`` audited the same array with the same seed and resampling (see ``pairing``)."""
        return pairing(self.root.attrs, ds.attrs)[0]


def _delta(
    ds: xr.Dataset, reps: xr.Dataset | None, base: Baseline, g: Gate, model: str, level: float
) -> float:
    if model not in base.root["model"].values or g.prior not in base.root["prior"].values:
        raise UsageError(f"--gate {g.expr!r}: baseline {base.path} has no {model}@{g.prior}")
    now = float(ds[g.term].sel(model=model, prior=g.prior).values)
    then = float(base.root[g.term].sel(model=model, prior=g.prior).values)
    if g.bound == "delta":
        return now - then
    if reps is None or base.replicates is None:
        raise UsageError(f"--gate {g.expr!r}: needs bootstrap replicates in both reports")
    a = np.asarray(reps[g.term].sel(model=model, prior=g.prior).values)
    b = np.asarray(base.replicates[g.term].sel(model=model, prior=g.prior).values)
    if not base.paired_with(ds) or a.size != b.size:
        b = np.random.default_rng(0).permutation(b)[: a.size] if b.size >= a.size else b
        a = a[: b.size]
    alpha = (1.0 - level) / 2.0
    lo, hi = np.nanquantile(a - b, [alpha, 1.0 - alpha])
    return float(lo if g.bound == "delta.lower" else hi)


def evaluate_gates(
    ds: xr.Dataset,
    gates: list[Gate],
    *,
    replicates: xr.Dataset | None = None,
    baseline: Baseline | None = None,
) -> list[GateResult]:
    """Judge every gate on a report's root group (and a baseline for ``delta`` gates)."""
    results = []
    level = float(ds.attrs.get("confidence_level", 0.95))
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
            if g.bound.startswith("delta"):
                if baseline is None:
                    raise UsageError(f"--gate {g.expr!r}: a delta gate needs --baseline OLD.nc")
                observed = _delta(ds, replicates, baseline, g, model, level)
            elif g.bound == "value":
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
            # not "model"/"prior": a DataTree child inherits the root's model and
            # prior coordinates, which would shadow variables of those names
            "gate_model": (("gate",), np.array([r.model for r in results], dtype=object)),
            "gate_prior": (("gate",), np.array([r.gate.prior for r in results], dtype=object)),
            "observed": (("gate",), np.array([r.observed for r in results], dtype=float), {"units": "nat"}),
            "threshold": (("gate",), np.array([r.gate.threshold for r in results], dtype=float), {"units": "nat"}),
            "passed": (("gate",), np.array([int(r.passed) for r in results], dtype=np.int8)),
        },
        coords={"gate": np.arange(n)},
    )


def read_gates(path: str) -> list[dict[str, object]]:
    """The gates stored in a report's ``/gates`` group (empty when it has none)."""
    try:
        ds = xr.open_dataset(path, group="gates", engine="netcdf4")
    except OSError:
        return []  # no such group: the run had no gates
    with ds:
        return [
            {
                "expression": str(ds["expression"].values[i]),
                "model": str(ds["gate_model"].values[i]),
                "prior": str(ds["gate_prior"].values[i]),
                "observed": float(ds["observed"].values[i]),
                "threshold": float(ds["threshold"].values[i]),
                "passed": bool(ds["passed"].values[i]),
            }
            for i in range(ds.sizes.get("gate", 0))
        ]


def format_gates(gates: list[dict[str, object]], fmt: str) -> str:
    """The gates and their status as text or markdown lines (empty when none)."""
    if not gates:
        return ""
    lines = []
    if fmt == "markdown":
        lines += ["", "| gate | model@prior | observed | status |", "|---|---|---|---|"]
    for g in gates:
        word = "PASS" if g["passed"] else "FAIL"
        where = f"{g['model']}@{g['prior']}"
        if fmt == "markdown":
            lines.append(f"| `{g['expression']}` | {where} | {g['observed']:.4g} | {word} |")
        else:
            lines.append(f"{word} {where}: {g['expression']} (observed {g['observed']:.4g})")
    return "\n".join(lines) + "\n"
