"""One fused sweep per model: every draw and density that does not depend on the prior.

The terms of the decomposition under any prior need, for draws z ~ q(z|x_n),
log q(z|x_n), log q(z) over all N components and, on a subset of the draws,
the per-dimension marginals log q_j(z_j). None of these depend on the prior,
so a :class:`Sweep` computes them once per model and every prior reuses them
(:func:`elbo_audit._estimation.estimators.decompose_from_sweep`). The same
draws also give the bootstrap's pairwise-interaction sums (a second kernel
sweep over the same draws, once log q(z) is known), so a default audit costs
two passes over all (draw, component) pairs per model, whatever the number of
priors.

The order in which the random stream is consumed is part of the definition
of an audit (one seed, the same draws on every backend): the N k main draws,
then (with k = 1) the pilot subset and its second draws, then the subset of
the marginal pass, then (with k > 1) its within-point subset.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import final

import numpy as np
from numpy.typing import NDArray

from .._errors import UsageError
from .._kernels.mixture import Engine, Mixture
from .._model.families import DiagonalGaussian
from .._reporting import SILENT, Reporter

__all__ = ["Draws", "Sweep", "draw_sweep"]


@final
@dataclass(frozen=True)
class Draws:
    """Draws z (one per entry of ``index``) with their own and aggregate log-densities."""

    index: NDArray[np.intp]
    z: NDArray[np.float64]
    log_qzx: NDArray[np.float64]
    log_qz: NDArray[np.float64]


@final
@dataclass(frozen=True)
class Sweep:
    """The prior-independent part of one model's decomposition.

    Attributes
    ----------
    samples_per_point : int
    main : Draws
        ``samples_per_point`` draws per data point, point-major.
    pilot : Draws or None
        With one draw per point, second draws at a random subset of points
        (the within-point Monte Carlo variance).
    marginal_index : ndarray
        Data points whose first draw enters the marginal pass.
    log_marginals : ndarray, shape (m, D)
        log q_j(z_j) at those draws.
    second_at : ndarray
        Positions in ``marginal_index`` that also have a second draw.
    second : Draws
        Those second draws (pilot draws, or the second of k draws).
    second_log_marginals : ndarray, shape (len(second_at), D)
    interaction : ndarray, shape (N,), or None
        R_i, the pairwise-interaction sums of the bootstrap, from the main
        draws (divided by ``samples_per_point``).
    precision : str
        The precision the kernels ran in.
    """

    samples_per_point: int
    main: Draws
    pilot: Draws | None
    marginal_index: NDArray[np.intp]
    log_marginals: NDArray[np.float64]
    second_at: NDArray[np.intp]
    second: Draws
    second_log_marginals: NDArray[np.float64]
    interaction: NDArray[np.float64] | None
    precision: str

    @property
    def n_points(self) -> int:
        return int(self.main.index.size // self.samples_per_point)


def _draws(
    q: DiagonalGaussian,
    mixture: Mixture,
    rng: np.random.Generator,
    index: NDArray[np.intp],
    reporter: Reporter,
    label: str,
) -> Draws:
    eps = rng.standard_normal((index.size, q.n_latent))
    z = q.sample(eps, index)
    del eps
    log_qzx = q.log_prob_own(z, index)
    with reporter.task(label, mixture.n_chunks(index.size)) as bar:
        log_qz = mixture.log_density(z, bar.advance)
    return Draws(index, z, log_qzx, log_qz)


def draw_sweep(
    posteriors: DiagonalGaussian,
    rng: np.random.Generator,
    *,
    engine: Engine,
    samples_per_point: int = 1,
    variance_points: int = 1024,
    marginal_samples: int = 2048,
    interaction: bool = False,
    reporter: Reporter = SILENT,
) -> Sweep:
    """Draw z and compute every prior-independent density of one model.

    Parameters
    ----------
    posteriors : DiagonalGaussian
        q(z | x_n) for all N data points.
    rng : numpy Generator
    engine : Engine
        Backend, precision and device of the kernels.
    samples_per_point, variance_points, marginal_samples
        As for :func:`elbo_audit.decompose_kl`.
    interaction : bool
        Also compute the bootstrap's interaction sums from the main draws.
    reporter : Reporter
        Progress of the passes.

    Returns
    -------
    Sweep

    References
    ----------
    .. [1] M. D. Hoffman and M. J. Johnson, "ELBO surgery: yet another way to
       carve up the variational evidence lower bound", NIPS Workshop on
       Advances in Approximate Bayesian Inference, 2016.
    .. [2] R. T. Q. Chen, X. Li, R. Grosse and D. Duvenaud, "Isolating sources
       of disentanglement in variational autoencoders", NeurIPS 2018.
    """
    q = posteriors.require_mixture()
    n, k = q.n_points, int(samples_per_point)
    if k < 1:
        raise UsageError(f"samples_per_point must be at least 1, got {k}")
    mix = engine.mixture(q.mean, q.std)
    main = _draws(q, mix, rng, np.repeat(np.arange(n), k), reporter, f"log q(z): {n * k}x{n}")
    pilot = None
    if k == 1:
        sub = np.sort(rng.choice(n, size=min(n, variance_points), replace=False))
        pilot = _draws(q, mix, rng, sub, reporter, f"log q(z) pilot: {sub.size}x{n}")
    m = min(n, int(marginal_samples))
    sub_m = np.sort(rng.choice(n, size=m, replace=False)) if m < n else np.arange(n)
    z_m = main.z.reshape(n, k, -1)[sub_m, 0]
    if pilot is not None:
        _, at_pilot, at_m = np.intersect1d(pilot.index, sub_m, assume_unique=True, return_indices=True)
        second = Draws(
            pilot.index[at_pilot], pilot.z[at_pilot], pilot.log_qzx[at_pilot], pilot.log_qz[at_pilot]
        )
    else:
        at_m = np.arange(m)
        if m > variance_points:
            at_m = np.sort(rng.choice(m, size=variance_points, replace=False))
        rows = sub_m[at_m] * k + 1
        second = Draws(sub_m[at_m], main.z[rows], main.log_qzx[rows], main.log_qz[rows])
    z_all = np.concatenate([z_m, second.z])
    with reporter.task(f"log q(z_j): {z_all.shape[0]}x{n}x{q.n_latent}", mix.n_chunks(z_all.shape[0])) as bar:
        marg = mix.log_marginals(z_all, bar.advance)
    inter = None
    if interaction:
        with reporter.task(f"bootstrap interaction: {n * k}x{n}", mix.n_chunks(n * k)) as bar:
            inter = mix.interaction(main.z, main.index, main.log_qz, bar.advance) / k
    return Sweep(
        k, main, pilot, sub_m, marg[:m], at_m.astype(np.intp), second, marg[m:], inter,
        mix.precision_detail,
    )
