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
from collections.abc import Sequence

import numpy as np
from numpy.typing import NDArray

from .._kernels.mixture import Engine
from .._kernels.numpy_backend import Form, NumpyBackend
from .._model.families import DiagonalGaussian
from .mc import TermEstimate

__all__ = ["HOEFFDING_GAMMA", "interaction_adjusted_terms", "mixture_interaction"]



#: Weight of the interaction in the adjusted contributions (see
#: :func:`interaction_adjusted_terms`): (1 + gamma)^2 = 2.
HOEFFDING_GAMMA = math.sqrt(2.0) - 1.0



def mixture_interaction(
    posteriors: DiagonalGaussian,
    *,
    rng: np.random.Generator | int | None = None,
    samples_per_point: int = 1,
    form: Form = "gemm64",
    engine: Engine | None = None,
) -> NDArray[np.float64]:
    """How much each component of q(z) props up the other data points' log q(z).

    For component i,

        R_i = (1/k) sum over draws z_s ~ q(z|x_n), n != i, of -log(1 - r_i(z_s)),

    where ``r_i(z) = q(z|x_i) / (N q(z))`` is its responsibility: removing data
    point i from the mixture lowers ``log q(z_s)`` of every other draw by
    ``-log(1 - r_i(z_s))`` (up to the constant ``log N/(N-1)``). So the exact
    leave-one-out (jackknife) change of ``index_code_mi`` is, up to constants,
    ``c_i - R_i`` and that of ``marginal_kl`` is ``c_i + R_i``.

    An audit takes R from the main draws of its sweep
    (:func:`elbo_audit._estimation.sweep.draw_sweep` with ``interaction=True``);
    this function makes ``k`` fresh draws per data point and costs two passes
    over all (draw, component) pairs.

    Parameters
    ----------
    posteriors : DiagonalGaussian
    rng : Generator or int, optional
    samples_per_point : int
        Draws per data point.
    form : {"gemm64", "direct"}
        Form of the numpy reference's passes (ignored with ``engine``).
    engine : Engine, optional
        Backend, precision and device of the kernels.

    Returns
    -------
    ndarray, shape (N,)

    References
    ----------
    .. [1] W. Hoeffding, "A class of statistics with asymptotically normal
       distribution", Annals of Mathematical Statistics 19, 1948.
    .. [2] B. Efron and C. Stein, "The jackknife estimate of variance", Annals
       of Statistics 9, 1981.
    """
    rng = np.random.default_rng(rng)
    q = posteriors.require_mixture()
    n, d, k = q.n_points, q.n_latent, int(samples_per_point)
    if k < 1:
        raise ValueError("samples_per_point must be at least 1")
    engine = engine or Engine(NumpyBackend(form))
    index = np.repeat(np.arange(n), k)
    z = q.sample(rng.standard_normal((index.size, d)), index)
    mix = engine.mixture(q.mean, q.std)
    return mix.interaction(z, index, mix.log_density(z)) / k


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
