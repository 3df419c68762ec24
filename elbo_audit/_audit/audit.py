"""The audit: encode a dataset, then estimate every term under every prior.

All randomness comes from one seed. The draws of z for the KL side are the
same for every prior of a model (common random numbers), so differences
between priors carry less Monte Carlo noise, and they are the same for two
adapters of the same weights, so two frameworks can be compared exactly.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, final

import numpy as np
from numpy.typing import NDArray

from .._errors import ModelError
from .._estimation.adaptive import AdaptiveRecord, decompose_priors_to_target, estimate_to_target
from .._estimation.estimators import KLDecomposition, decompose_from_sweep
from .._estimation.mc import TermEstimate, difference
from .._estimation.per_latent import DEFAULT_ACTIVE_THRESHOLD, LatentTerms, latent_terms
from .._estimation.sweep import Sweep, draw_sweep
from .._kernels.mixture import Engine
from .._kernels.numpy_backend import Form, NumpyBackend
from .._model.families import DiagonalGaussian
from .._model.protocols import AuditModel, Prior
from .._model.streams import KL, LATENT, RECONSTRUCTION, stream
from .._reporting import SILENT, Reporter
from .gaps import gap_estimates, not_evaluated, require_gradient
from .model_calls import call_decoder, encode_all, reconstruction_term
from .refine import DEFAULT_REFINE_LR, DEFAULT_REFINE_SAMPLES

__all__ = [
    "AuditSettings",
    "ModelAudit",
    "PriorAudit",
    "audit_encodings",
    "audit_model",
    "audit_posteriors",
    "encode_all",
]


@final
@dataclass(frozen=True)
class AuditSettings:
    """Estimator settings of one run.

    Parameters
    ----------
    seed : int
    samples_per_point : int
        Draws of z per data point on the KL side (S = N * samples_per_point).
    reconstruction_samples : int
        Draws of z per data point for ``reconstruction``.
    variance_points : int
        Pilot size for the Monte Carlo variance with one draw per point.
    marginal_samples : int
        Outer samples for ``total_correlation`` and ``dimwise_kl``.
    form : {"gemm64", "direct"}
        Form of the numpy reference's passes.
    batch_size : int
        Data points per call to the model.
    target_se, max_seconds, max_samples_per_point
        Adaptive Monte Carlo (see :mod:`elbo_audit._estimation.adaptive`).
    n_resamples : int
        Bootstrap replicates (0: no data intervals).
    confidence_level : float
    ci_method : {"bca", "percentile", "basic", "normal"}
    interaction_adjust : bool
        Adjust the bootstrap for the pairwise interaction through q(z); its
        sums come from the KL sweep's own draws (a second kernel sweep).
    active_threshold : float
        Variance of posterior means above which a latent is ``active``.
    iw_samples : int
        K of the importance-weighted ``log_likelihood`` (0: off).
    refine_steps, refine_lr, refine_samples
        T Adam steps per data point from the encoder's output, the initial
        step size and the draws per step, for ``refined_elbo`` and the
        amortization and approximation gaps (T = 0: off).
    """

    seed: int = 0
    samples_per_point: int = 1
    reconstruction_samples: int = 2
    variance_points: int = 1024
    marginal_samples: int = 2048
    form: Form = "gemm64"
    batch_size: int = 1000
    target_se: float | None = None
    max_seconds: float | None = None
    max_samples_per_point: int | None = None
    n_resamples: int = 1000
    confidence_level: float = 0.95
    ci_method: str = "bca"
    interaction_adjust: bool = True
    active_threshold: float = DEFAULT_ACTIVE_THRESHOLD
    iw_samples: int = 0
    refine_steps: int = 0
    refine_lr: float = DEFAULT_REFINE_LR
    refine_samples: int = DEFAULT_REFINE_SAMPLES

    @property
    def needs_interaction(self) -> bool:
        """Whether the sweep computes the bootstrap's interaction sums."""
        return self.n_resamples > 0 and self.interaction_adjust

    def as_attrs(self) -> dict[str, Any]:
        return {
            "seed": self.seed,
            "samples_per_point": self.samples_per_point,
            "reconstruction_samples": self.reconstruction_samples,
            "variance_points": self.variance_points,
            "marginal_samples": self.marginal_samples,
            "pairwise_form": self.form,
            "active_threshold": float(self.active_threshold),
            "iw_samples": int(self.iw_samples),
            **(
                {"iw_proposal": "amortized+refined" if self.refine_steps > 0 else "amortized"}
                if self.iw_samples > 0 else {}
            ),
            "refine_steps": int(self.refine_steps),
            **(
                {"refine_lr": float(self.refine_lr), "refine_samples": int(self.refine_samples)}
                if self.refine_steps > 0 else {}
            ),
            **(
                {}
                if self.target_se is None
                else {
                    "target_se": float(self.target_se),
                    "max_seconds": float(self.max_seconds) if self.max_seconds is not None else -1.0,
                    "max_samples_per_point": int(self.max_samples_per_point or -1),
                }
            ),
        }


@final
@dataclass(frozen=True)
class PriorAudit:
    """The decomposition of one model under one prior."""

    prior: str
    kl: KLDecomposition
    reconstruction: TermEstimate
    elbo: TermEstimate
    adaptive: AdaptiveRecord | None = None
    #: ``log_likelihood`` and ``inference_gap`` when importance weighting ran (else empty).
    importance: dict[str, TermEstimate] = field(default_factory=dict)

    def terms(self) -> dict[str, TermEstimate]:
        out = {"reconstruction": self.reconstruction, "elbo": self.elbo}
        out.update(self.kl.terms())
        out.update(self.importance)
        return out


@final
@dataclass(frozen=True)
class ModelAudit:
    """Every prior's decomposition for one model on one dataset."""

    model: str
    adapter: str
    n_points: int
    n_latent: int
    by_prior: dict[str, PriorAudit]
    posteriors: DiagonalGaussian
    attrs: dict[str, Any] = field(default_factory=dict)
    interaction: NDArray[np.float64] | None = None
    backend: str = "numpy"
    precision: str = "float64"
    latent: LatentTerms | None = None

    @property
    def log_n(self) -> float:
        return math.log(self.n_points)


def _elbo(recon: TermEstimate, kl: TermEstimate) -> TermEstimate:
    if not recon.evaluated:
        return TermEstimate.not_evaluated("no decoder or reconstruction samples")
    return difference(recon, kl, "reconstruction - avg_kl")


def _default_engine(settings: AuditSettings) -> Engine:
    return Engine(NumpyBackend(settings.form))


def audit_posteriors(
    q: DiagonalGaussian,
    priors: Mapping[str, Prior],
    reconstruction: TermEstimate | None,
    settings: AuditSettings,
    *,
    engine: Engine | None = None,
    reporter: Reporter = SILENT,
) -> dict[str, PriorAudit]:
    """Decompose the ELBO of fixed posteriors under each of several priors.

    One sweep of draws and kernel passes per model serves every prior
    (:func:`audit_encodings` also returns the bootstrap's interaction sums).
    """
    return _decompose(q, priors, reconstruction, settings, engine, reporter)[0]


def _decompose(
    q: DiagonalGaussian,
    priors: Mapping[str, Prior],
    reconstruction: TermEstimate | None,
    settings: AuditSettings,
    engine: Engine | None,
    reporter: Reporter,
) -> tuple[dict[str, PriorAudit], Sweep]:
    recon = reconstruction or TermEstimate.not_evaluated("no decoder or reconstruction samples")
    eng = engine or _default_engine(settings)
    out = {}
    if settings.target_se is not None:
        sweeps: list[Sweep] = []
        kls, record = decompose_priors_to_target(
            q,
            priors,
            target_se=settings.target_se,
            seed=settings.seed,
            max_seconds=settings.max_seconds,
            max_samples_per_point=_draw_budget(settings),
            samples_per_sweep=settings.samples_per_point,
            variance_points=settings.variance_points,
            marginal_samples=settings.marginal_samples,
            engine=eng,
            interaction=settings.needs_interaction,
            on_sweep=sweeps.append,
            reporter=reporter,
        )
        for name, kl in kls.items():
            out[name] = PriorAudit(name, kl, recon, _elbo(recon, kl.avg_kl), record)
        return out, sweeps[0]
    sweep = draw_sweep(
        q,
        stream(settings.seed, KL),
        engine=eng,
        samples_per_point=settings.samples_per_point,
        variance_points=settings.variance_points,
        marginal_samples=settings.marginal_samples,
        interaction=settings.needs_interaction,
        reporter=reporter,
    )
    for name, prior in priors.items():
        kl = decompose_from_sweep(sweep, q, prior, eng)
        out[name] = PriorAudit(name, kl, recon, _elbo(recon, kl.avg_kl))
    return out, sweep


def audit_encodings(
    name: str,
    q: DiagonalGaussian,
    priors: Mapping[str, Prior],
    reconstruction: TermEstimate | None,
    settings: AuditSettings,
    *,
    adapter: str = "core",
    attrs: Mapping[str, Any] | None = None,
    engine: Engine | None = None,
    reporter: Reporter = SILENT,
) -> ModelAudit:
    """Audit saved encodings (posteriors and optional reconstruction) under several priors.

    Returns
    -------
    ModelAudit
        With the bootstrap's interaction sums when ``settings`` asks for them.

    References
    ----------
    .. [1] M. D. Hoffman and M. J. Johnson, "ELBO surgery", 2016.
    """
    for label, prior in priors.items():
        if prior.n_latent != q.n_latent:
            raise ModelError(
                f"prior {label!r} has {prior.n_latent} latents, the posteriors have {q.n_latent}"
            )
    eng = engine or _default_engine(settings)
    by_prior, sweep = _decompose(q, priors, reconstruction, settings, eng, reporter)
    latent = latent_terms(
        q, dict(priors), stream(settings.seed, LATENT),
        n_resamples=settings.n_resamples, confidence_level=settings.confidence_level,
        active_threshold=settings.active_threshold,
    )
    return ModelAudit(
        name, adapter, q.n_points, q.n_latent, by_prior, q, dict(attrs or {}),
        interaction=sweep.interaction, backend=eng.backend.name, precision=sweep.precision,
        latent=latent,
    )


def audit_model(
    model: AuditModel,
    x: NDArray[Any],
    settings: AuditSettings,
    extra_priors: Mapping[str, Prior] | Callable[[DiagonalGaussian], Mapping[str, Prior]] | None = None,
    *,
    engine: Engine | None = None,
    reporter: Reporter = SILENT,
) -> ModelAudit:
    """Audit one model on the data ``x`` under its own prior and any alternatives.

    Parameters
    ----------
    model : AuditModel
    x : ndarray
        The dataset, one data point per row.
    settings : AuditSettings
    extra_priors : mapping of str to Prior, or callable, optional
        Alternative priors, by name; the model's own prior is ``"native"``.
        A callable receives the posteriors of all N data points and returns
        the mapping (for priors fitted post hoc to the aggregate posterior).
    engine : Engine, optional
        Backend, precision and device of the kernels (the numpy float64
        reference when omitted).
    reporter : Reporter, optional
        Progress of the long steps.

    Returns
    -------
    ModelAudit

    References
    ----------
    .. [1] M. D. Hoffman and M. J. Johnson, "ELBO surgery", 2016.
    """
    if settings.refine_steps > 0 and model.decoder is not None:
        require_gradient(model.decoder, model.name, model.adapter)  # before any work
    q = encode_all(model.encoder, x, settings.batch_size, model.name, reporter)
    if q.n_latent != model.prior.n_latent:
        raise ModelError(
            f"model {model.name!r}: encoder gives {q.n_latent} latents, its prior has "
            f"{model.prior.n_latent}"
        )
    recon = None
    attrs = dict(model.attrs)
    if model.decoder is not None and settings.target_se is not None:
        decoder = model.decoder
        recon, record = estimate_to_target(
            lambda rng, k: reconstruction_term(
                decoder, x, q, rng, k, settings.batch_size, model.name, reporter
            ),
            target_se=settings.target_se,
            seed=settings.seed,
            purpose=RECONSTRUCTION,
            samples_per_sweep=settings.reconstruction_samples,
            max_seconds=settings.max_seconds,
            max_samples_per_point=_draw_budget(settings),
        )
        attrs["adaptive_reconstruction"] = record.as_attrs(prefix="")
    elif model.decoder is not None:
        recon = reconstruction_term(
            model.decoder,
            x,
            q,
            stream(settings.seed, RECONSTRUCTION),
            settings.reconstruction_samples,
            settings.batch_size,
            model.name,
            reporter,
        )
    priors: dict[str, Prior] = {"native": model.prior}
    if callable(extra_priors):
        extra_priors = extra_priors(q)
    priors.update(extra_priors or {})
    audit = audit_encodings(
        model.name, q, priors, recon, settings,
        adapter=model.adapter, attrs=attrs, engine=engine, reporter=reporter,
    )
    if model.decoder is None or (settings.iw_samples < 1 and settings.refine_steps < 1):
        return audit
    decoder = model.decoder

    def decode(start: int, stop: int, z: NDArray[np.float64]) -> NDArray[np.float64]:
        return call_decoder(decoder, x, z, start, stop, model.name)

    native = audit.by_prior["native"]
    terms = gap_estimates(
        decode, decoder, x, model.prior, q, native.elbo,
        seed=settings.seed, iw_samples=settings.iw_samples, refine_steps=settings.refine_steps,
        refine_lr=settings.refine_lr, refine_samples=settings.refine_samples, elbo_samples=settings.reconstruction_samples,
        batch_size=settings.batch_size, model=model.name, adapter=model.adapter, reporter=reporter,
    )
    for label, pa in audit.by_prior.items():
        audit.by_prior[label] = replace(pa, importance=terms if label == "native" else not_evaluated(terms))
    return audit


def _draw_budget(settings: AuditSettings) -> int | None:
    """Draws per data point allowed to an adaptive run (1024 when no budget is given)."""
    if settings.max_samples_per_point is None and settings.max_seconds is None:
        return 1024
    return settings.max_samples_per_point
