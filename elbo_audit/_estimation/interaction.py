"""The second-order bootstrap correction for terms that involve q(z).

Resampling per-datapoint contributions with q(z) held fixed gives the
first-order (influence-function) variance of ``index_code_mi`` and
``marginal_kl`` exactly, but misses the pairwise interaction of data points
whose posteriors overlap; with sharp posteriors the bootstrap standard error is
then up to sqrt(2) too small. :func:`mixture_interaction` measures that
interaction in one O(N^2 D) pass and :func:`interaction_adjusted_terms` adds
it to the contributions. See docs/uncertainty.md for the derivation and the
coverage study.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from numpy.typing import NDArray

from .._cli import progress as progress
from .._model.families import LOG_2PI, DiagonalGaussian
from .mc import TermEstimate
from .._kernels.numpy_backend import (
    _GEMM_ERR_FACTOR,
    _GEMM_TOL,
    Form,
    _default_workers,
    _single_threaded_blas,
    log_mixture_density,
)

__all__ = ["HOEFFDING_GAMMA", "mixture_interaction", "interaction_adjusted_terms"]



#: Weight of the interaction in the adjusted contributions (see
#: :func:`interaction_adjusted_terms`): (1 + gamma)^2 = 2.
HOEFFDING_GAMMA = math.sqrt(2.0) - 1.0

# log-responsibilities below this contribute at most N * e^-80 in total
_LOG_R_FLOOR = -80.0
# largest responsibility of another component used in log(1 - r)
_R_CEIL = 1.0 - 1e-12


def mixture_interaction(
    posteriors: DiagonalGaussian,
    *,
    rng: np.random.Generator | int | None = None,
    samples_per_point: int = 1,
    form: Form = "gemm64",
    sample_block: int = 512,
    component_block: int = 1024,
) -> NDArray[np.float64]:
    """How much each component of q(z) props up the other data points' log q(z).

    For component i,

        R_i = (1/k) sum over draws z_s ~ q(z|x_n), n != i, of -log(1 - r_i(z_s)),

    where ``r_i(z) = q(z|x_i) / (N q(z))`` is its responsibility: removing data
    point i from the mixture lowers ``log q(z_s)`` of every other draw by
    ``-log(1 - r_i(z_s))`` (up to the constant ``log N/(N-1)``). So the exact
    leave-one-out (jackknife) change of ``index_code_mi`` is, up to constants,
    ``c_i - R_i`` and that of ``marginal_kl`` is ``c_i + R_i``.

    Costs one pass over all (draw, component) pairs, O(N^2 k D), in the direct
    form (float64), with ``k`` fresh draws per data point; call it once per
    model (it does not depend on the prior).

    Parameters
    ----------
    posteriors : DiagonalGaussian
    rng : Generator or int, optional
    samples_per_point : int
        Draws per data point (1 is enough: its Monte Carlo noise enters the
        bootstrap variance only through ``HOEFFDING_GAMMA**2 = 0.17``).
    form : {"gemm64", "direct"}
        Form of the pass for log q(z_s) (see :mod:`elbo_audit._kernels.numpy_backend`).

    Returns
    -------
    ndarray, shape (N,)
    """
    rng = np.random.default_rng(rng)
    q = posteriors
    n, d, k = q.n_points, q.n_latent, int(samples_per_point)
    if k < 1:
        raise ValueError("samples_per_point must be at least 1")
    index = np.repeat(np.arange(n), k)
    z = q.sample(rng.standard_normal((index.size, d)), index)
    log_qz = log_mixture_density(z, q.mean, q.std, form=form)
    const = -np.sum(np.log(q.std), axis=1) - 0.5 * d * LOG_2PI - math.log(n)
    quad_tiles = _quad_tiles(q, form)

    def one(s0: int) -> NDArray[np.float64]:
        s1 = min(index.size, s0 + sample_block)
        own, lq = index[s0:s1], log_qz[s0:s1]
        rows = np.arange(s1 - s0)
        part = np.zeros(n)
        for c0, c1, quad in quad_tiles(z[s0:s1], component_block):
            log_r = const[None, c0:c1] - 0.5 * quad - lq[:, None]
            np.maximum(log_r, _LOG_R_FLOOR, out=log_r)
            r = np.minimum(np.exp(log_r, out=log_r), _R_CEIL)
            mine = (own >= c0) & (own < c1)
            r[rows[mine], own[mine] - c0] = 0.0  # a point's own draws are its own term
            part[c0:c1] -= np.log1p(-r).sum(axis=0)
        return part

    starts = list(range(0, index.size, sample_block))
    out = np.zeros(n)
    with _single_threaded_blas(), progress.task(f"bootstrap interaction: {index.size}x{n}", len(starts)) as bar:
        workers = min(_default_workers(), max(1, len(starts)))
        if workers == 1:
            for s0 in starts:
                out += one(s0)
                bar.advance()
        else:
            with ThreadPoolExecutor(workers) as pool:
                for part in pool.map(one, starts):
                    out += part
                    bar.advance()
    return out / k


def _quad_tiles(q: DiagonalGaussian, form: Form):  # noqa: ANN202 - returns a tile generator
    """Tiles of sum_d ((z_d - mu_md) / sigma_md)^2, by the same rules as the pairwise pass.

    ``gemm64``: centred, expanded form as one float64 matrix product per tile,
    with components whose rounding bound exceeds the pass's tolerance done in
    the direct form; ``direct``: broadcasting.
    """
    inv_std = 1.0 / q.std
    centre = q.mean.mean(axis=0)
    mc = q.mean - centre
    w = inv_std * inv_std
    mag = np.sum(mc * mc * w, axis=1)
    risky = np.full(q.n_points, True) if form == "direct" else _GEMM_ERR_FACTOR * mag > _GEMM_TOL
    coef = np.concatenate([w.T, -2.0 * (mc * w).T, mag[None, :]], axis=0)
    coef[:, risky] = 0.0

    def tiles(zb: NDArray[np.float64], block: int) -> Iterator[tuple[int, int, NDArray[np.float64]]]:
        zc = zb - centre
        feats = np.concatenate([zc * zc, zc, np.ones((zb.shape[0], 1))], axis=1)
        for c0 in range(0, q.n_points, block):
            c1 = min(q.n_points, c0 + block)
            quad = feats @ coef[:, c0:c1]
            np.maximum(quad, 0.0, out=quad)
            bad = np.flatnonzero(risky[c0:c1])
            if bad.size:
                u = (zb[:, None, :] - q.mean[None, c0 + bad]) * inv_std[None, c0 + bad]
                quad[:, bad] = np.einsum("snd,snd->sn", u, u)
            yield c0, c1, quad

    return tiles


def interaction_adjusted_terms(
    terms: dict[str, TermEstimate] | Sequence[tuple[str, TermEstimate]],
    interaction: NDArray[np.float64],
    gamma: float = HOEFFDING_GAMMA,
    *,
    prior_is_aggregate: bool = False,
) -> dict[str, TermEstimate]:
    """Contributions for the bootstrap with the pairwise interaction through q(z).

    The adjustment follows ``log q(z)`` wherever it appears in a contribution,
    with ``d = gamma (R_n - mean R)`` (R from :func:`mixture_interaction`):
    ``index_code_mi`` (``- log q(z)``) becomes ``c_n - d`` and ``marginal_kl``
    (``+ log q(z)``) becomes ``c_n + d``. Under the aggregate posterior as the
    prior (``prior_is_aggregate``; log p(z) = log q(z)) ``avg_kl`` equals
    ``index_code_mi`` and becomes ``c_n - d``, ``elbo`` becomes ``c_n + d``, and
    ``marginal_kl`` (identically 0) is left alone. Every value, standard error
    and every other term is unchanged, so identities between contributions
    (``avg_kl = index_code_mi + marginal_kl + residual``, ``elbo = reconstruction
    - avg_kl``, the ELBO gain of the aggregate prior = ``marginal_kl + residual``)
    hold for the adjusted replicates too.

    Why: the plain contributions ``c_n`` give the first-order (influence
    function) variance exactly, but a pair of data points whose posteriors
    overlap lowers both of their ``index_code_mi`` contributions together, and
    resampling the contributions independently counts that shared effect once
    instead of twice. If ``c_n = a_n + sum_m h_nm`` with a symmetric pairwise
    interaction h of mean zero given one argument, the sampling variance of the
    term is ``Var(a)/N + 2 E h^2 / N^2`` (Hoeffding decomposition); the
    bootstrap of ``c`` gives ``E h^2 / N^2`` for the second part, the
    jackknife (gamma = 1) ``4 E h^2 / N^2``, and gamma = sqrt(2) - 1 the
    right ``(1 + gamma)^2 = 2``. This matters when posteriors are about as
    sharp as the spacing between data points (``index_code_mi`` within a few
    nats of log N), where the plain bootstrap standard error is up to
    sqrt(2) too small; see docs/uncertainty.md. Use the adjusted terms only to
    compute replicates (and the BCa acceleration), not for the report's
    ``/pointwise`` group.
    """
    items = dict(terms)
    r = np.asarray(interaction, dtype=np.float64)
    centred = r - r.mean()
    signs = (
        (("index_code_mi", -1.0), ("avg_kl", -1.0), ("elbo", 1.0))
        if prior_is_aggregate
        else (("index_code_mi", -1.0), ("marginal_kl", 1.0))
    )
    out = dict(items)
    for name, sign in signs:
        t = items.get(name)
        if t is None or t.pointwise is None or not t.evaluated or t.index is not None:
            continue
        if t.pointwise.shape != r.shape:
            raise ValueError(f"{name}: {t.pointwise.shape[0]} contributions but {r.size} interactions")
        out[name] = TermEstimate(
            t.value,
            t.se,
            t.pointwise + sign * gamma * centred,
            t.estimator + "; bootstrap contributions adjusted for the pairwise interaction through q(z)",
            None,
        )
    return out
