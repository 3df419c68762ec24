"""What ``elbo-audit run`` and ``elbo_audit.audit`` share: settings from a config, priors by name, checks.

The command line and the in-memory API build the same :class:`AuditSettings`
from the same names (config keys and CLI options), make the same alternative
priors, and check gates and Monte Carlo targets the same way.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from typing import Any

import numpy as np

from .._audit.audit import (
    AuditSettings,
    ModelAudit,
)
from .._errors import AuditError, ModelError, PluginError, UsageError
from .._estimation.bootstrap import CI_METHODS
from .._model.families import DiagonalGaussian
from .._model.protocols import Prior
from .._report.gates import Gate
from .config import PriorEntry, RunConfig
from .plugins import PluginHost

__all__ = [
    "OVERRIDES",
    "audit_settings_of",
    "check_gate_targets",
    "check_prior",
    "parse_prior_option",
    "prior_makers",
    "prior_makers_for",
    "warn_unmet_targets",
]

OVERRIDES = {
    "seed": "seed", "samples_per_point": "samples_per_point",
    "reconstruction_samples": "reconstruction_samples", "marginal_samples": "marginal_samples",
    "batch_size": "batch_size", "bootstrap": "resamples", "confidence": "confidence", "out": "out",
    "binarize": "binarize", "limit": "limit", "posteriors": "posteriors",
    "ci_method": "ci_method", "target_se": "target_se", "max_seconds": "max_seconds",
    "max_samples_per_point": "max_samples_per_point", "backend": "backend", "precision": "precision",
    "scheduler": "scheduler", "iw_samples": "iw_samples", "active_threshold": "active_threshold",
    "refine_steps": "refine_steps", "refine_lr": "refine_lr", "refine_samples": "refine_samples",
}


def parse_prior_option(text: str) -> PriorEntry:
    label, _, rest = text.partition("=") if "=" in text.split(",", 1)[0] else (None, "", text)
    family, *opts = rest.split(",")
    options: dict[str, Any] = {}
    for opt in opts:
        key, eq, value = opt.partition("=")
        if not eq or not key:
            raise UsageError(f"--prior {text!r}: options are KEY=VALUE, got {opt!r}")
        try:
            options[key] = json.loads(value)
        except json.JSONDecodeError:
            options[key] = value
    if not family:
        raise UsageError(f"--prior {text!r}: expected [LABEL=]FAMILY[,KEY=VALUE...]")
    return PriorEntry(label or family, family, options)


def audit_settings_of(cfg: RunConfig) -> AuditSettings:
    for flag in ("samples_per_point", "reconstruction_samples", "marginal_samples", "batch_size"):
        if getattr(cfg, flag) < 1:
            raise UsageError(f"{flag.replace('_', '-')} must be at least 1, got {getattr(cfg, flag)}")
    if cfg.resamples < 0:
        raise UsageError(f"bootstrap resamples must be >= 0, got {cfg.resamples}")
    if not 0.0 < cfg.confidence < 1.0:
        raise UsageError(f"confidence must be between 0 and 1, got {cfg.confidence}")
    if cfg.ci_method not in CI_METHODS:
        raise UsageError(f"bootstrap method {cfg.ci_method!r}: expected one of {', '.join(CI_METHODS)}")
    if cfg.target_se is not None and cfg.target_se <= 0:
        raise UsageError(f"target_se must be positive, got {cfg.target_se}")
    if cfg.max_seconds is not None and cfg.max_seconds <= 0:
        raise UsageError(f"max_seconds must be positive, got {cfg.max_seconds}")
    if cfg.max_samples_per_point is not None and cfg.max_samples_per_point < cfg.samples_per_point:
        raise UsageError(
            f"max_samples_per_point ({cfg.max_samples_per_point}) must be at least "
            f"samples_per_point ({cfg.samples_per_point})"
        )
    if cfg.limit is not None and cfg.limit < 2:
        raise UsageError(f"limit must be at least 2 data points, got {cfg.limit}")
    return AuditSettings(
        seed=cfg.seed,
        samples_per_point=cfg.samples_per_point,
        reconstruction_samples=cfg.reconstruction_samples,
        marginal_samples=cfg.marginal_samples,
        batch_size=cfg.batch_size,
        target_se=cfg.target_se,
        max_seconds=cfg.max_seconds,
        max_samples_per_point=cfg.max_samples_per_point,
        n_resamples=cfg.resamples,
        confidence_level=cfg.confidence,
        ci_method=cfg.ci_method,
        interaction_adjust=cfg.interaction_adjust,
        iw_samples=cfg.iw_samples,
        refine_steps=cfg.refine_steps,
        refine_lr=float(cfg.refine_lr),
        refine_samples=cfg.refine_samples,
        active_threshold=float(cfg.active_threshold),
    )


PriorMaker = Callable[[DiagonalGaussian], Prior]


def prior_makers(cfg: RunConfig, host: PluginHost, seed: int) -> dict[str, PriorMaker]:
    return prior_makers_for(cfg.priors, host, seed)


def prior_makers_for(entries: list[PriorEntry], host: PluginHost, seed: int) -> dict[str, PriorMaker]:
    if not entries:
        return {}
    registered = host.priors()
    makers: dict[str, PriorMaker] = {}
    for entry in entries:
        if entry.family not in registered:
            known = ", ".join(sorted(registered))
            raise UsageError(f"prior {entry.name!r}: unknown family {entry.family!r} (registered: {known})")
        plugin, info = registered[entry.family]

        def make(q: DiagonalGaussian, info: Any = info, plugin: str = plugin, entry: PriorEntry = entry) -> Prior:
            options = dict(entry.options)
            if info.fitted:
                options.update(posteriors=q, seed=seed)
            try:
                built: Prior = info.build(q.n_latent, options)
                return built
            except AuditError:
                raise
            except Exception as exc:
                raise PluginError(
                    f"prior {entry.name!r} (family {entry.family!r}, plugin {plugin!r}) raised "
                    f"{type(exc).__name__}: {exc}"
                ) from exc

        makers[entry.name] = make
    return makers


def check_prior(prior: Any, label: str, n_latent: int) -> Prior:
    if not isinstance(prior, Prior):
        raise PluginError(f"prior {label!r}: the plugin returned {type(prior).__name__}, not a Prior")
    if prior.n_latent != n_latent:
        raise ModelError(f"prior {label!r} has {prior.n_latent} latents, the posteriors have {n_latent}")
    return prior


def warn_unmet_targets(audits: list[ModelAudit]) -> None:
    """One line on stderr per model whose --target-se ran out of its budget (even with --quiet)."""
    for a in audits:
        seen: set[int] = set()
        for pa in a.by_prior.values():
            ad = pa.adaptive
            if ad is None or ad.reached or id(ad) in seen:
                continue
            seen.add(id(ad))
            ses = [se for terms in ad.achieved_se.values() for se in terms.values() if np.isfinite(se)]
            worst = f"largest se {max(ses):.3g}, " if ses else ""
            print(
                f"elbo-audit: warning: model {a.model!r}: --target-se {ad.target_se:g} not reached "
                f"({worst}{ad.samples_per_point} draws per point, stopped by {ad.stopped_by}); "
                "the report records it (adaptive attribute reached = 0)",
                file=sys.stderr,
            )


def check_gate_targets(gates: list[Gate], models: list[str], priors: list[str]) -> None:
    """Refuse, before any work, a gate on a model or prior this run does not audit."""
    for g in gates:
        if g.model is not None and g.model not in models:
            raise UsageError(
                f"--gate {g.expr!r}: no model {g.model!r} in this run (models: {', '.join(models) or 'none'})"
            )
        if g.prior not in priors:
            raise UsageError(
                f"--gate {g.expr!r}: no prior {g.prior!r} in this run (priors: {', '.join(priors)})"
            )
