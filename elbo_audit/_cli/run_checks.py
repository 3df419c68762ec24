"""Checks of ``elbo-audit run`` that need the whole request: inputs, preflight, gated terms.

* :func:`input_paths`: every file the run reads, so that ``--out`` cannot name one.
* :func:`preflight_run`: the array sizes from file headers, the memory and pair
  count of the work (:mod:`elbo_audit._cli.preflight`), refused when it cannot fit;
  also a gate on a term this run cannot evaluate, refused before the work.
* :func:`require_evaluated`: after the work, a gate whose observed value is NaN
  judged a term that was not evaluated: a usage error, not a failed gate.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

from .._audit.audit import AuditSettings
from .._errors import UsageError
from .._report.gates import Gate, GateResult
from .config import RunConfig
from .preflight import Cost, available_memory, estimate, idx_header, npy_headers, require_fits

__all__ = ["input_paths", "preflight_run", "require_evaluated"]

#: Latent size assumed for a model before it has encoded anything (the preflight's guess).
ASSUMED_MODEL_LATENT = 64
_NEEDS_RECONSTRUCTION = ("elbo", "reconstruction")


def _file_part(spec: str | None) -> str | None:
    if not spec:
        return None
    if ":" in spec and not Path(spec).exists():
        return spec.rpartition(":")[0]
    return spec


def input_paths(cfg: RunConfig, baseline: str | None) -> dict[str, str | None]:
    """What the run reads, by role: the report must overwrite none of them."""
    paths: dict[str, str | None] = {
        "the config file": cfg.source or None,
        "the --data file": _file_part(cfg.data_path),
        "the --posteriors file": cfg.posteriors,
        "the --baseline report": baseline,
    }
    for m in cfg.models:
        paths[f"the weights of model {m.name!r}"] = m.weights
        if m.factory and ".py:" in m.factory:
            paths[f"the factory file of model {m.name!r}"] = m.factory.rpartition(":")[0]
    for p in cfg.priors:
        report = p.options.get("report")
        if isinstance(report, str):
            paths[f"the report of prior {p.name!r}"] = report
    return paths


def _samples(cfg: RunConfig) -> int:
    k = max(cfg.samples_per_point, cfg.reconstruction_samples)
    if cfg.target_se is not None:
        k = max(k, cfg.max_samples_per_point or 1024)
    return k


def _check_gates_possible(gates: Sequence[Gate], cfg: RunConfig, has_reconstruction: bool) -> None:
    for g in gates:
        if g.term in _NEEDS_RECONSTRUCTION and not has_reconstruction:
            raise UsageError(
                f"--gate {g.expr!r}: {g.term} is not evaluated in this run (the --posteriors file "
                "has no 'reconstruction' array); gate a KL term, or save reconstruction samples"
            )
        if g.bound in ("lower", "upper") and cfg.resamples == 0:
            raise UsageError(
                f"--gate {g.expr!r}: the interval bound {g.term}.{g.bound} is not computed with "
                "--bootstrap 0; gate the value, or give --bootstrap B"
            )


def preflight_run(
    cfg: RunConfig, settings: AuditSettings, gates: Sequence[Gate], *, n_models: int, n_priors: int
) -> Cost | None:
    """Refuse, before loading anything, work that cannot fit in memory or gates it cannot judge.

    Returns the estimate, or None where the sizes cannot be read ahead (a
    built-in dataset; a file the loaders will refuse with their own message).
    """
    n = d = features = itemsize = 0
    has_reconstruction = True
    what = ""
    if cfg.posteriors:
        path = Path(cfg.posteriors)
        if not path.is_file():
            return None
        heads = npy_headers(path)
        mean = heads.get("mean")
        has_reconstruction = "reconstruction" in heads
        if mean is None or len(mean.shape) != 2:
            _check_gates_possible(gates, cfg, has_reconstruction)
            return None
        n, d = mean.shape
        what = f"auditing {path.name}"
    else:
        _check_gates_possible(gates, cfg, True)
        spec = cfg.data_name or cfg.data_path
        if cfg.data_key and cfg.data_path:
            spec = f"{cfg.data_path}:{cfg.data_key}"
        part = _file_part(spec)
        if part is None or not Path(part).is_file():
            return None
        path = Path(part)
        key = spec.rpartition(":")[2] if spec and part != spec else None
        if path.suffix == ".gz" or "idx" in path.name:
            shape, _ = idx_header(path)
            itemsize = 1
        else:
            heads = npy_headers(path)
            if key is None and len(heads) == 1:
                key = next(iter(heads))
            if key not in heads:
                return None
            shape, itemsize = heads[key].shape, heads[key].dtype.itemsize
        if len(shape) < 2:
            return None
        n = shape[0]
        features = math.prod(shape[1:])
        d = min(features, ASSUMED_MODEL_LATENT)
        what = f"auditing {n_models} model(s) on {path.name}"
    _check_gates_possible(gates, cfg, has_reconstruction)
    if cfg.limit is not None:
        n = min(n, cfg.limit)
    cost = estimate(
        n_points=n, n_latent=d, n_features=features, itemsize=itemsize, samples=_samples(cfg),
        marginal_samples=settings.marginal_samples, resamples=settings.n_resamples,
        interaction=settings.interaction_adjust, n_models=n_models, n_priors=n_priors,
    )
    require_fits(cost, available_memory(), what)
    return cost


def require_evaluated(results: Sequence[GateResult]) -> None:
    """A gate on a value that is NaN (a term or interval not evaluated) is a usage error."""
    for r in results:
        if math.isnan(r.observed):
            what = r.gate.term + ("" if r.gate.bound == "value" else f".{r.gate.bound}")
            raise UsageError(
                f"--gate {r.gate.expr!r}: {what} was not evaluated for {r.model}@{r.gate.prior} in "
                "this run (n/a), so the gate cannot be judged; no report written"
            )
