"""The conformance checks of :mod:`elbo_audit.testing` and how to run them."""

from __future__ import annotations

import math
import unittest
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from .._audit.audit import ModelAudit, audit_model
from .._errors import AuditError, UnsafeArtifactError
from .._estimation.estimators import decompose_kl
from .._model.protocols import AuditModel, Decoder, Encoder, Prior
from ._context import (
    _SHAPE_POINTS,
    FLOAT32_RTOL,
    Z_LIMIT,
    CheckContext,
    _close,
    _encode,
    _float64_array,
    _skip,
    _subset,
    _WithoutClosedForm,
)

__all__ = [
    "CHECKS",
    "FLOAT32_RTOL",
    "CheckContext",
    "adapter_checks",
    "assert_audits_close",
    "check_adapter",
    "check_names",
    "run_check",
]

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
