"""Conformance checks that every adapter's own tests run on its own models.

In the spirit of scikit-learn's ``parametrize_with_checks``: an adapter's test
suite builds an :class:`~elbo_audit.AuditModel` with its adapter and runs every
named check on it::

    import pytest
    from elbo_audit import StandardNormal, testing

    @pytest.mark.parametrize("check", testing.check_names())
    def test_conformance(check, my_model, my_data):
        testing.run_check(check, my_model, my_data, reference_prior=StandardNormal(4))

or all at once with :func:`check_adapter`. A check raises ``AssertionError``
(or the error the model raised) when it fails and :class:`unittest.SkipTest`
(reported as a skip by pytest) when it does not apply, for instance the
closed-form KL check for a prior without a closed form.

What is checked, against truths the adapter does not produce:

* the encoder, decoder and prior honour the protocols' shapes and dtypes and
  return finite values, and a data point's result does not depend on the
  batch it came in (float32 rounding aside);
* the prior is normalised consistently: ``marginal_log_prob`` sums to
  ``log_prob``; the closed-form ``cross_entropy`` agrees with a Monte Carlo
  mean of ``-log_prob`` over draws from q; the analytic ``avg_kl`` agrees with
  the core's Monte Carlo ``avg_kl``; the decomposition residual
  ``avg_kl - index_code_mi - marginal_kl`` is zero within its standard error;
* where the caller names the equivalent prior of the core (``StandardNormal``,
  ``MixtureOfGaussians``, ...), ``log_prob``, the marginals, the cross-entropy
  and the moments of ``sample`` agree with it;
* two audits with the same seed are identical;
* a booby-trapped pickle is refused with exit code 4 and its payload never
  runs (:func:`write_pickle_trap` makes one).

The adapters' test suites also share, from here, the numpy truths of the
reference MLP VAE (:func:`numpy_reference`: written from its documented
parameter layout, with no code of any adapter), its test data and weights
(:func:`binary_data`, :func:`informative_weights`, :func:`write_safetensors`)
and :func:`record_decoder_calls`.

This module imports only numpy, the standard library and the core; never
torch, jax or scikit-learn.
"""

from __future__ import annotations

import builtins
import math
import pickle
import unittest
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any, NoReturn

import numpy as np
from numpy.typing import NDArray

from ._audit.audit import AuditSettings, ModelAudit, audit_model
from ._errors import AuditError, UnsafeArtifactError
from ._estimation.estimators import decompose_kl
from ._model.families import DiagonalGaussian
from ._model.protocols import AuditModel, Decoder, Encoder, Prior

__all__ = [
    "CHECKS",
    "FLOAT32_RTOL",
    "REFERENCE_SIZES",
    "BoobyTrap",
    "CheckContext",
    "adapter_checks",
    "assert_audits_close",
    "binary_data",
    "check_adapter",
    "check_names",
    "informative_weights",
    "numpy_reference",
    "record_decoder_calls",
    "run_check",
    "write_pickle_trap",
    "write_safetensors",
]

#: Relative tolerance for results that may differ by float32 rounding only
#: (the same data point in batches of different sizes: BLAS kernels block
#: differently). A few units of float32 epsilon (1.2e-7) times sqrt(fan-in).
FLOAT32_RTOL = 1e-5

#: A Monte Carlo comparison fails beyond this many standard errors (a false
#: alarm has probability below 1e-6 under a normal approximation).
Z_LIMIT = 5.0

_SHAPE_POINTS = 16


@dataclass
class CheckContext:
    """What a check needs.

    Parameters
    ----------
    model : AuditModel
    x : ndarray
        Data the model accepts (at least 8 points; a few hundred for the
        statistical checks).
    reference_prior : Prior, optional
        The core's equivalent of the model's prior, built independently (e.g.
        ``StandardNormal(D)`` or ``MixtureOfGaussians(w, mu, sigma)`` from the
        parameters the test put into the model).
    load : callable, optional
        ``load(path) -> AuditModel``: how the adapter opens a weights file,
        for the unsafe-file check.
    unsafe_file : path, optional
        A booby-trapped file :func:`load` must refuse (see :func:`write_pickle_trap`).
    marker : path, optional
        The file the trap's payload would create.
    settings : AuditSettings
        For the audit-level checks.
    """

    model: AuditModel
    x: NDArray[Any]
    reference_prior: Prior | None = None
    load: Callable[[Path], Any] | None = None
    unsafe_file: Path | None = None
    marker: Path | None = None
    settings: AuditSettings = field(default_factory=lambda: AuditSettings(seed=12345))


# ----------------------------------------------------------------------------- helpers


def _skip(why: str) -> NoReturn:
    raise unittest.SkipTest(why)


def _close(a: NDArray[Any], b: NDArray[Any], rtol: float, atol: float, what: str) -> None:
    a = np.asarray(a, np.float64)
    b = np.asarray(b, np.float64)
    assert a.shape == b.shape, f"{what}: shapes {a.shape} and {b.shape} differ"
    err = np.abs(a - b)
    tol = atol + rtol * np.abs(b)
    if not (err <= tol).all():
        i = np.unravel_index(int(np.argmax(err - tol)), err.shape)
        raise AssertionError(
            f"{what}: {int((err > tol).sum())} of {err.size} values differ; worst at {tuple(int(j) for j in i)}: "
            f"{a[i]!r} vs {b[i]!r} (tolerance {tol[i]:.3g})"
        )


def _float64_array(value: Any, shape: tuple[int, ...], what: str) -> NDArray[np.float64]:
    assert isinstance(value, np.ndarray), f"{what} returned {type(value).__name__}, not a numpy array"
    assert value.dtype == np.float64, f"{what} returned dtype {value.dtype}, not float64"
    assert value.shape == shape, f"{what} returned shape {value.shape}, expected {shape}"
    assert np.isfinite(value).all(), f"{what} returned non-finite values"
    return value


def _subset(x: NDArray[Any], n: int) -> NDArray[Any]:
    assert x.shape[0] >= 8, f"the checks need at least 8 data points, got {x.shape[0]}"
    return x[: min(n, x.shape[0])]


def _encode(ctx: CheckContext, x: NDArray[Any]) -> DiagonalGaussian:
    q = ctx.model.encoder.encode(x)
    assert isinstance(q, DiagonalGaussian), (
        f"encode returned {type(q).__name__}, not elbo_audit.DiagonalGaussian"
    )
    return q


class _WithoutClosedForm:
    """A prior seen without its ``cross_entropy`` (forces the Monte Carlo avg_kl)."""

    def __init__(self, prior: Prior) -> None:
        self._prior = prior
        self.name = prior.name

    @property
    def n_latent(self) -> int:
        return self._prior.n_latent

    @property
    def factorised(self) -> bool:
        return self._prior.factorised

    def log_prob(self, z: NDArray[np.float64]) -> NDArray[np.float64]:
        return self._prior.log_prob(z)

    def marginal_log_prob(self, z: NDArray[np.float64]) -> NDArray[np.float64]:
        # marginal_log_prob is an optional member, outside the Prior protocol
        return self._prior.marginal_log_prob(z)  # type: ignore[attr-defined, no-any-return]

    def sample(self, rng: np.random.Generator, n: int) -> NDArray[np.float64]:
        return self._prior.sample(rng, n)


# ----------------------------------------------------------------------------- the checks


def check_protocols(ctx: CheckContext) -> None:
    """The model is an AuditModel whose parts satisfy the core's protocols."""
    m = ctx.model
    assert isinstance(m, AuditModel), f"expected an AuditModel, got {type(m).__name__}"
    assert isinstance(m.name, str) and m.name, "the model needs a name"
    assert isinstance(m.adapter, str) and m.adapter, "the model must name its adapter"
    assert isinstance(m.attrs, dict), "attrs must be a dict"
    assert isinstance(m.encoder, Encoder), f"{type(m.encoder).__name__} is not an Encoder"
    assert m.decoder is None or isinstance(m.decoder, Decoder), (
        f"{type(m.decoder).__name__} is not a Decoder"
    )
    _encode(ctx, _subset(ctx.x, 8))  # a lazily sized prior learns D here
    assert isinstance(m.prior, Prior), f"{type(m.prior).__name__} is not a Prior"
    assert isinstance(m.prior.name, str), "the prior needs a name"
    assert isinstance(m.prior.factorised, bool | np.bool_), "prior.factorised must be a bool"
    if m.prior.factorised:
        assert callable(getattr(m.prior, "marginal_log_prob", None)), (
            "a factorised prior needs marginal_log_prob"
        )


def check_encoder_output(ctx: CheckContext) -> None:
    """encode() returns (B, D) float64 finite parameters with D = prior.n_latent."""
    xb = _subset(ctx.x, _SHAPE_POINTS)
    q = _encode(ctx, xb)
    d = ctx.model.prior.n_latent
    _float64_array(q.mean, (xb.shape[0], d), "encode().mean")
    _float64_array(q.std, (xb.shape[0], d), "encode().std")
    assert (q.std > 0).all(), "encode().std must be positive"


def check_encoder_batch_invariance(ctx: CheckContext) -> None:
    """A data point's posterior does not depend on the batch it is encoded in."""
    xb = _subset(ctx.x, _SHAPE_POINTS)
    whole = _encode(ctx, xb)
    cut = xb.shape[0] // 3 or 1
    parts = [_encode(ctx, xb[:cut]), _encode(ctx, xb[cut:])]
    single = _encode(ctx, xb[:1])
    scale = float(np.abs(whole.mean).max()) + 1.0
    for label, got in (
        ("mean", np.concatenate([p.mean for p in parts])),
        ("std", np.concatenate([p.std for p in parts])),
    ):
        ref = getattr(whole, label)
        _close(got, ref, FLOAT32_RTOL, FLOAT32_RTOL * scale, f"encode() {label} in two batches vs one")
    _close(single.mean, whole.mean[:1], FLOAT32_RTOL, FLOAT32_RTOL * scale, "encode() of one point vs a batch")
    again = _encode(ctx, xb)
    assert np.array_equal(again.mean, whole.mean) and np.array_equal(again.std, whole.std), (
        "encode() is not deterministic (dropout or batch statistics left on? the adapter must use eval mode)"
    )


def check_decoder_output(ctx: CheckContext) -> None:
    """log_likelihood() returns (B, K) float64 finite values; rows and columns do not mix."""
    dec = ctx.model.decoder
    if dec is None:
        _skip("the model has no decoder")
    xb = _subset(ctx.x, _SHAPE_POINTS)
    b = xb.shape[0]
    q = _encode(ctx, xb)
    rng = np.random.default_rng(20161205)
    for k in (1, 3):
        z = q.sample(rng.standard_normal((b, k, q.n_latent)))
        ll = dec.log_likelihood(xb, z)
        _float64_array(ll, (b, k), f"log_likelihood(x, z of shape {z.shape})")
    scale = float(np.abs(ll).max()) + 1.0
    # the same z repeated K times gives K equal columns
    z1 = q.sample(rng.standard_normal((b, 1, q.n_latent)))
    rep = dec.log_likelihood(xb, np.repeat(z1, 3, axis=1))
    _close(rep, np.repeat(rep[:, :1], 3, axis=1), FLOAT32_RTOL, FLOAT32_RTOL * scale,
           "log_likelihood of one z repeated along K")
    # batch invariance and row alignment: x_b is scored against z_b
    cut = b // 3 or 1
    parts = np.concatenate([dec.log_likelihood(xb[:cut], z[:cut]), dec.log_likelihood(xb[cut:], z[cut:])])
    _close(parts, ll, FLOAT32_RTOL, FLOAT32_RTOL * scale, "log_likelihood in two batches vs one")
    flipped = dec.log_likelihood(xb[::-1], z[::-1])[::-1]
    _close(flipped, ll, FLOAT32_RTOL, FLOAT32_RTOL * scale, "log_likelihood of reversed rows")


def _directional(f: Callable[[NDArray[np.float64]], NDArray[np.float64]], z: NDArray[np.float64],
                 v: NDArray[np.float64], h: float) -> NDArray[np.float64]:
    """Central difference of f along v: (f(z + h v) - f(z - h v)) / 2h."""
    return (np.asarray(f(z + h * v), np.float64) - np.asarray(f(z - h * v), np.float64)) / (2.0 * h)


#: step of the gradient checks' central differences: small against the curvature of a decoder's
#: log-likelihood (error O(h^2)), large enough that float32 rounding of the values, divided by h,
#: stays below the tolerance
_GRAD_STEP = 1e-2


def _slopes_close(slope: NDArray[np.float64], numeric: NDArray[np.float64], scale: float, what: str) -> None:
    """Directional derivatives within 1% of each other, or of the largest one, plus float32 rounding / h."""
    atol = 1e-2 * float(np.abs(numeric).max()) + 1e-7 * scale / _GRAD_STEP
    _close(slope, numeric, 1e-2, atol, what)


def check_decoder_gradient(ctx: CheckContext) -> None:
    """log_likelihood_grad(), when present, agrees with central differences of log_likelihood()."""
    dec = ctx.model.decoder
    grad = getattr(dec, "log_likelihood_grad", None)
    if dec is None or grad is None:
        _skip("the decoder has no log_likelihood_grad")
    xb = _subset(ctx.x, _SHAPE_POINTS)
    b = xb.shape[0]
    q = _encode(ctx, xb)
    rng = np.random.default_rng(20180710)
    z = q.sample(rng.standard_normal((b, 2, q.n_latent)))
    ll, g = grad(xb, z)
    _float64_array(np.asarray(ll, np.float64), (b, 2), "log_likelihood_grad's values")
    g = _float64_array(np.asarray(g, np.float64), z.shape, "log_likelihood_grad's gradients")
    scale = float(np.abs(ll).max()) + 1.0
    _close(ll, dec.log_likelihood(xb, z), FLOAT32_RTOL, FLOAT32_RTOL * scale,
           "log_likelihood_grad's values vs log_likelihood")
    v = rng.standard_normal(z.shape)
    v /= np.linalg.norm(v, axis=2, keepdims=True)
    numeric = _directional(lambda zz: dec.log_likelihood(xb, zz), z, v, _GRAD_STEP)
    _slopes_close(np.sum(g * v, axis=2), numeric, scale,
                  "log_likelihood_grad along random directions vs central differences of log_likelihood")


def check_prior_gradient(ctx: CheckContext) -> None:
    """grad_log_prob(), when present, agrees with central differences of log_prob()."""
    p = ctx.model.prior
    grad = getattr(p, "grad_log_prob", None)
    if grad is None:
        _skip("the prior has no grad_log_prob (refinement uses central differences of log_prob)")
    q = _encode(ctx, _subset(ctx.x, _SHAPE_POINTS))
    d = p.n_latent
    rng = np.random.default_rng(20180711)
    z = np.concatenate([q.sample(rng.standard_normal((q.n_points, 2, d))).reshape(-1, d),
                        rng.standard_normal((5, d)) * 2.0])
    g = _float64_array(np.asarray(grad(z), np.float64), z.shape, "prior.grad_log_prob")
    v = rng.standard_normal(z.shape)
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    scale = float(np.abs(p.log_prob(z)).max()) + 1.0
    _slopes_close(np.sum(g * v, axis=1), _directional(p.log_prob, z, v, _GRAD_STEP), scale,
                  "prior.grad_log_prob along random directions vs central differences of log_prob")


def check_prior_shapes(ctx: CheckContext) -> None:
    """log_prob (S,), marginal_log_prob (S, D) summing to it, sample (n, D), all float64."""
    p = ctx.model.prior
    q = _encode(ctx, _subset(ctx.x, _SHAPE_POINTS))
    d = p.n_latent
    rng = np.random.default_rng(7)
    z = np.concatenate([q.sample(rng.standard_normal((q.n_points, 2, d))).reshape(-1, d),
                        rng.standard_normal((5, d)) * 3.0])
    lp = _float64_array(np.asarray(p.log_prob(z)), (z.shape[0],), "prior.log_prob")
    if p.factorised:
        # marginal_log_prob: optional member, required when factorised, outside the protocol
        marg = _float64_array(np.asarray(p.marginal_log_prob(z)), z.shape, "prior.marginal_log_prob")  # type: ignore[attr-defined]
        _close(marg.sum(axis=1), lp, 1e-10, 1e-9, "sum of prior.marginal_log_prob vs prior.log_prob")
    try:
        s1 = p.sample(np.random.default_rng(3), 50)
    except AuditError as exc:
        _skip(f"the prior cannot sample: {exc}")
    _float64_array(np.asarray(s1), (50, d), "prior.sample")
    s2 = p.sample(np.random.default_rng(3), 50)
    assert np.array_equal(s1, s2), "prior.sample must draw only from the numpy generator it is given"
    _float64_array(np.asarray(p.log_prob(s1)), (50,), "prior.log_prob of its own samples")


def check_prior_matches_reference(ctx: CheckContext) -> None:
    """The prior equals the core's equivalent prior (log_prob, marginals, cross-entropy, sampling)."""
    ref = ctx.reference_prior
    if ref is None:
        _skip("no reference_prior given")
    p = ctx.model.prior
    q = _encode(ctx, _subset(ctx.x, 64))
    assert p.n_latent == ref.n_latent, f"n_latent {p.n_latent} vs reference {ref.n_latent}"
    rng = np.random.default_rng(11)
    d = ref.n_latent
    z = np.concatenate([ref.sample(rng, 500), q.sample(rng.standard_normal((q.n_points, 1, d))).reshape(-1, d)])
    _close(p.log_prob(z), ref.log_prob(z), 1e-10, 1e-9, "prior.log_prob vs the reference prior")
    assert bool(p.factorised) == bool(ref.factorised), "factorised differs from the reference prior"
    if ref.factorised:
        # marginal_log_prob: optional member, required when factorised, outside the protocol
        _close(p.marginal_log_prob(z), ref.marginal_log_prob(z), 1e-10, 1e-9,  # type: ignore[attr-defined]
               "prior.marginal_log_prob vs the reference prior")
    ce, ce_ref = getattr(p, "cross_entropy", None), getattr(ref, "cross_entropy", None)
    if ce is not None and ce_ref is not None:
        _close(ce(q), ce_ref(q), 1e-10, 1e-9, "prior.cross_entropy vs the reference prior")
    # sampling: per-dimension mean and variance of 20000 draws against the reference's
    n = 20000
    try:
        a = np.asarray(p.sample(np.random.default_rng(5), n))
    except AuditError as exc:
        _skip(f"the prior cannot sample: {exc}")
    b = np.asarray(ref.sample(np.random.default_rng(6), n))
    for label, fa, fb in (("mean", a, b), ("second moment", a * a, b * b)):
        diff = fa.mean(0) - fb.mean(0)
        se = np.sqrt(fa.var(0, ddof=1) / n + fb.var(0, ddof=1) / n)
        zsc = np.abs(diff) / np.maximum(se, 1e-300)
        # Bonferroni over dimensions keeps the false-alarm rate below ~1e-6 per check
        limit = Z_LIMIT + math.sqrt(2 * math.log(max(d, 1)))
        assert (zsc < limit).all(), (
            f"prior.sample: {label} of dimension {int(np.argmax(zsc))} differs from the reference "
            f"prior by {zsc.max():.1f} standard errors"
        )


def check_cross_entropy_monte_carlo(ctx: CheckContext) -> None:
    """Closed-form cross_entropy(q) agrees with -mean log_prob(z), z ~ q, within 5 se."""
    p = ctx.model.prior
    ce = getattr(p, "cross_entropy", None)
    if ce is None:
        _skip(f"prior {p.name!r} has no closed-form cross_entropy")
    q = _encode(ctx, _subset(ctx.x, 64))
    closed = _float64_array(np.asarray(ce(q)), (q.n_points,), "prior.cross_entropy")
    m = 400
    eps = np.random.default_rng(99).standard_normal((q.n_points, m, q.n_latent))
    z = q.sample(eps)
    f = -np.asarray(p.log_prob(z.reshape(-1, q.n_latent)), np.float64).reshape(q.n_points, m)
    mc, se = f.mean(axis=1), f.std(axis=1, ddof=1) / math.sqrt(m)
    zsc = np.abs(closed - mc) / np.maximum(se, 1e-12)
    limit = Z_LIMIT + math.sqrt(2 * math.log(q.n_points))
    assert (zsc < limit).all(), (
        f"prior.cross_entropy disagrees with Monte Carlo -log_prob at data point {int(np.argmax(zsc))}: "
        f"{closed[np.argmax(zsc)]:.6g} vs {mc[np.argmax(zsc)]:.6g} ({zsc.max():.1f} se)"
    )
    total_z = abs(closed.mean() - mc.mean()) / math.sqrt(np.sum(se**2) / q.n_points**2)
    assert total_z < Z_LIMIT, f"mean cross-entropy: closed form vs Monte Carlo differ by {total_z:.1f} se"


def check_avg_kl_analytic_vs_monte_carlo(ctx: CheckContext) -> None:
    """The analytic avg_kl agrees with the core's Monte Carlo avg_kl within 5 se."""
    p = ctx.model.prior
    if getattr(p, "cross_entropy", None) is None:
        _skip(f"prior {p.name!r} has no closed-form cross_entropy")
    q = _encode(ctx, ctx.x)
    analytic = decompose_kl(
        q, p, rng=np.random.default_rng(1), samples_per_point=8, marginal_samples=8
    ).avg_kl
    mc = decompose_kl(
        q, _WithoutClosedForm(p), rng=np.random.default_rng(2), samples_per_point=8, marginal_samples=8
    ).avg_kl
    assert analytic.se == 0.0 and mc.se > 0.0, "expected a closed form and a Monte Carlo estimate"
    zsc = abs(analytic.value - mc.value) / mc.se
    assert zsc < Z_LIMIT, (
        f"avg_kl: closed form {analytic.value:.6g} vs Monte Carlo {mc.value:.6g} ± {mc.se:.2g} "
        f"({zsc:.1f} se)"
    )


def _audit(ctx: CheckContext) -> ModelAudit:
    return audit_model(ctx.model, ctx.x, ctx.settings)


def check_audit_identities(ctx: CheckContext) -> None:
    """A full audit: finite terms, 0 <= index_code_mi <= log N, zero residual, elbo = recon - avg_kl."""
    audit = _audit(ctx)
    pa = audit.by_prior["native"]
    terms = pa.terms()
    for name in ("avg_kl", "index_code_mi", "marginal_kl", "total_correlation"):
        assert math.isfinite(terms[name].value), f"{name} is not finite"
    mi = terms["index_code_mi"]
    assert -Z_LIMIT * mi.se <= mi.value <= audit.log_n + 1e-12, (
        f"index_code_mi {mi.value} outside [0, log N = {audit.log_n}]"
    )
    res = terms["decomposition_residual"]
    if res.se > 0:
        assert abs(res.value) < Z_LIMIT * res.se, (
            f"decomposition_residual {res.value:.4g} is {abs(res.value) / res.se:.1f} se from zero: "
            "the prior's cross_entropy and log_prob disagree"
        )
    if ctx.model.decoder is not None:
        rec, elbo = terms["reconstruction"], terms["elbo"]
        assert math.isfinite(rec.value), "reconstruction is not finite"
        assert math.isclose(elbo.value, rec.value - terms["avg_kl"].value, rel_tol=1e-12, abs_tol=1e-9)


def check_determinism(ctx: CheckContext) -> None:
    """Two audits with the same seed give identical terms (the core draws all randomness)."""
    a, b = _audit(ctx), _audit(ctx)
    assert_audits_close(a, b, atol=0.0)


def check_refuses_unsafe(ctx: CheckContext) -> None:
    """A booby-trapped file is refused with UnsafeArtifactError (exit 4); its payload never runs."""
    if ctx.load is None or ctx.unsafe_file is None:
        _skip("no load callable and unsafe_file given")
    marker = Path(ctx.marker) if ctx.marker is not None else None
    if marker is not None and marker.exists():
        marker.unlink()
    try:
        ctx.load(Path(ctx.unsafe_file))
    except UnsafeArtifactError as exc:
        assert exc.exit_code == 4, f"exit code {exc.exit_code}, expected 4"
        assert "\n" not in str(exc), "the error must be one line"
    else:
        raise AssertionError(f"{ctx.unsafe_file} was loaded; it must be refused")
    finally:
        if marker is not None:
            assert not marker.exists(), f"the payload ran: {marker} was created"


CHECKS: dict[str, Callable[[CheckContext], None]] = {
    "protocols": check_protocols,
    "encoder_output": check_encoder_output,
    "encoder_batch_invariance": check_encoder_batch_invariance,
    "decoder_output": check_decoder_output,
    "decoder_gradient": check_decoder_gradient,
    "prior_shapes": check_prior_shapes,
    "prior_matches_reference": check_prior_matches_reference,
    "prior_gradient": check_prior_gradient,
    "cross_entropy_monte_carlo": check_cross_entropy_monte_carlo,
    "avg_kl_analytic_vs_monte_carlo": check_avg_kl_analytic_vs_monte_carlo,
    "audit_identities": check_audit_identities,
    "determinism": check_determinism,
    "refuses_unsafe": check_refuses_unsafe,
}


def check_names() -> list[str]:
    """Names of every check, for ``pytest.mark.parametrize``."""
    return list(CHECKS)


def run_check(name: str, model: AuditModel, x: NDArray[Any], **options: Any) -> None:
    """Run the check ``name`` on ``model`` and data ``x`` (options: see :class:`CheckContext`)."""
    if name not in CHECKS:
        raise KeyError(f"unknown check {name!r}; known: {', '.join(CHECKS)}")
    CHECKS[name](CheckContext(model, np.asarray(x), **options))


def adapter_checks(
    model: AuditModel, x: NDArray[Any], **options: Any
) -> Iterator[tuple[str, Callable[[], None]]]:
    """``(name, check)`` pairs, each check a no-argument callable."""
    ctx = CheckContext(model, np.asarray(x), **options)
    for name, fn in CHECKS.items():

        def check(fn: Callable[[CheckContext], None] = fn) -> None:
            fn(ctx)

        yield name, check


def check_adapter(model: AuditModel, x: NDArray[Any], **options: Any) -> dict[str, str]:
    """Run every check; returns ``{name: "passed" | "skipped: why"}``.

    Raises
    ------
    AssertionError
        Listing every check that failed.
    """
    results: dict[str, str] = {}
    failed: list[str] = []
    for name, check in adapter_checks(model, x, **options):
        try:
            check()
        except unittest.SkipTest as exc:
            results[name] = f"skipped: {exc}"
        except Exception as exc:  # noqa: BLE001 - every failure is reported
            results[name] = f"failed: {type(exc).__name__}: {exc}"
            failed.append(f"{name}: {type(exc).__name__}: {exc}")
        else:
            results[name] = "passed"
    if failed:
        raise AssertionError(f"{len(failed)} conformance check(s) failed: " + " | ".join(failed))
    return results


def assert_audits_close(a: ModelAudit, b: ModelAudit, atol: float, rtol: float = 0.0) -> None:
    """Every term (value and se) of every prior of two audits agrees within ``atol + rtol|b|``."""
    assert set(a.by_prior) == set(b.by_prior), f"priors {sorted(a.by_prior)} vs {sorted(b.by_prior)}"
    for prior in a.by_prior:
        ta, tb = a.by_prior[prior].terms(), b.by_prior[prior].terms()
        assert set(ta) == set(tb)
        for name in ta:
            for attr in ("value", "se"):
                va, vb = getattr(ta[name], attr), getattr(tb[name], attr)
                if math.isnan(va) and math.isnan(vb):
                    continue
                assert abs(va - vb) <= atol + rtol * abs(vb), (
                    f"prior {prior!r}, {name}.{attr}: {va!r} vs {vb!r} (|diff| {abs(va - vb):.3g} > "
                    f"{atol + rtol * abs(vb):.3g})"
                )


# ----------------------------------------------------------------------------- booby traps


class BoobyTrap:
    """An object whose unpickling creates the file ``marker`` (via ``builtins.exec``).

    Pickle it (``pickle.dump``, ``torch.save``, inside an object array of an
    ``.npz``) to build a file a safe loader must refuse; if ``marker`` appears
    the payload ran.
    """

    def __init__(self, marker: str | Path) -> None:
        self.marker = str(marker)

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        code = f"open({self.marker!r}, 'w').write('the payload ran')"
        return (builtins.exec, (code,))


def write_pickle_trap(path: str | Path, marker: str | Path) -> Path:
    """Write a pickle at ``path`` whose loading would create ``marker``."""
    path = Path(path)
    with open(path, "wb") as fh:
        pickle.dump({"weight": BoobyTrap(marker)}, fh, protocol=2)
    return path


# ----------------------------------------------------------------------------- reference model

#: (x_dim, hidden, latent) of the reference MLP VAE in the adapters' tests.
REFERENCE_SIZES = (64, 32, 4)
_X_DIM, _HIDDEN, _LATENT = REFERENCE_SIZES


def binary_data(n: int = 300, x_dim: int = _X_DIM, seed: int = 0) -> NDArray[np.float64]:
    """Noisy copies of 5 binary prototypes: structured binary data, shape (n, x_dim)."""
    rng = np.random.default_rng(seed)
    protos = rng.random((5, x_dim)) < 0.5
    flips = rng.random((n, x_dim)) < 0.1
    return (protos[rng.integers(0, 5, n)] ^ flips).astype(np.float64)


def informative_weights(
    x_dim: int = _X_DIM, hidden: int = _HIDDEN, latent: int = _LATENT, seed: int = 1
) -> dict[str, NDArray[np.float64]]:
    """Reference-layout weights whose posteriors are narrow and spread (KL of several nats)."""
    rng = np.random.default_rng(seed)

    def lin(out: int, inp: int, gain: float) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        return rng.normal(0, gain / np.sqrt(inp), (out, inp)), rng.normal(0, 0.1, out)

    w: dict[str, NDArray[np.float64]] = {}
    w["encoder.hidden.weight"], w["encoder.hidden.bias"] = lin(hidden, x_dim, 2.0)
    w["encoder.mean.weight"], w["encoder.mean.bias"] = lin(latent, hidden, 2.0)
    w["encoder.log_var.weight"], w["encoder.log_var.bias"] = lin(latent, hidden, 0.5)
    w["encoder.log_var.bias"] = w["encoder.log_var.bias"] - 3.0
    w["decoder.hidden.weight"], w["decoder.hidden.bias"] = lin(hidden, latent, 2.0)
    w["decoder.logits.weight"], w["decoder.logits.bias"] = lin(x_dim, hidden, 2.0)
    return w


def _np_encode(
    w: Mapping[str, NDArray[Any]], x: NDArray[Any]
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    h = np.tanh(x.reshape(x.shape[0], -1) @ w["encoder.hidden.weight"].T + w["encoder.hidden.bias"])
    return (h @ w["encoder.mean.weight"].T + w["encoder.mean.bias"],
            h @ w["encoder.log_var.weight"].T + w["encoder.log_var.bias"])


def _np_logits(w: Mapping[str, NDArray[Any]], z: NDArray[Any]) -> NDArray[np.float64]:
    h = np.tanh(z @ w["decoder.hidden.weight"].T + w["decoder.hidden.bias"])
    logits: NDArray[np.float64] = h @ w["decoder.logits.weight"].T + w["decoder.logits.bias"]
    return logits


def _np_bernoulli_loglik(
    w: Mapping[str, NDArray[Any]], x: NDArray[Any], z: NDArray[Any]
) -> NDArray[np.float64]:
    """log p(x_b | z_bk) = sum_i x_i l_i - log(1 + e^l_i), shape (B, K)."""
    logits = _np_logits(w, z)  # (B, K, X)
    xb = x.reshape(x.shape[0], 1, -1)
    loglik: NDArray[np.float64] = np.sum(xb * logits - np.logaddexp(0.0, logits), axis=-1)
    return loglik


def numpy_reference() -> SimpleNamespace:
    """The reference MLP VAE (tanh) in numpy, from its documented parameter layout.

    Written without any code of an adapter, so that an adapter's tests compare
    it against an independent implementation.

    Returns
    -------
    SimpleNamespace
        ``encode(w, x) -> (mean, log_var)``, ``logits(w, z)``,
        ``bernoulli_loglik(w, x, z) -> (B, K)`` (z of shape (B, K, D)), the
        data and weights makers :func:`binary_data` and
        :func:`informative_weights`, and the sizes ``X_DIM``, ``HIDDEN``,
        ``LATENT`` (:data:`REFERENCE_SIZES`).
    """
    return SimpleNamespace(
        encode=_np_encode, logits=_np_logits, bernoulli_loglik=_np_bernoulli_loglik,
        binary_data=binary_data, informative_weights=informative_weights,
        X_DIM=_X_DIM, HIDDEN=_HIDDEN, LATENT=_LATENT,
    )


def write_safetensors(arrays: Mapping[str, NDArray[Any]], path: str | Path) -> Path:
    """Save numpy ``arrays`` by name to a ``.safetensors`` file (needs the safetensors package)."""
    from safetensors.numpy import save_file

    path = Path(path)
    save_file({k: np.ascontiguousarray(v) for k, v in arrays.items()}, str(path))
    return path


def record_decoder_calls(model: AuditModel) -> list[tuple[NDArray[Any], NDArray[np.float64]]]:
    """Wrap ``model.decoder`` so that every ``log_likelihood(x, z)`` call is recorded.

    Returns
    -------
    list of (x, z)
        Copies of the arguments of each call, appended as the core makes them.
    """
    seen: list[tuple[NDArray[Any], NDArray[np.float64]]] = []
    inner = model.decoder
    if inner is None:
        raise ValueError(f"model {model.name!r} has no decoder to record")
    recorded: Decoder = inner  # narrowed: the nested class below does not see the check

    class _Recorder:
        def log_likelihood(self, x: NDArray[Any], z: NDArray[np.float64]) -> NDArray[np.float64]:
            seen.append((np.array(x), np.array(z)))
            return recorded.log_likelihood(x, z)

    model.decoder = _Recorder()
    return seen
