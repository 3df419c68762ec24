"""Refined posteriors: the amortization and approximation gaps (Cremer et al. 2018).

The inference gap log p(x) - ELBO has two parts. The *approximation gap*
log p(x) - ELBO(q*) is what the posterior family costs: q*(z|x_n) is the best
diagonal Gaussian for x_n. The *amortization gap* ELBO(q*) - ELBO(q) is what
sharing one encoder across data points costs. Here q* is approximated by
starting from the encoder's output (mean, log std) for each data point and
taking T steps of Adam on that point's ELBO, with reparameterised gradients:
the decoder's gradient d log p(x|z)/dz comes from the adapter's framework
(torch autograd, ``jax.grad``), the prior's from :func:`prior_score`.

T steps bring ELBO(q_T) up towards ELBO(q*) from below, so the amortization gap
estimate is biased low and the approximation gap biased high by the same
amount; both move with T (and the step size), which the report records.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from numpy.typing import NDArray

from .._errors import ModelError
from .._estimation.mc import TermEstimate, difference, stratified_estimate
from .._model.families import LOG_2PI, DiagonalGaussian
from .._model.protocols import Prior
from .._model.terms import REFINE_TERMS
from .._reporting import SILENT, Reporter

__all__ = [
    "DEFAULT_REFINE_LR",
    "DEFAULT_REFINE_SAMPLES",
    "REFINE_TERMS",
    "gap_terms",
    "prior_score",
    "refine_posteriors",
    "refined_elbo",
]

#: Adam's initial step size on (mean, log std); it decays linearly to 0 over the T steps.
DEFAULT_REFINE_LR = 0.05
#: Draws of z per step (the gradient is their average).
DEFAULT_REFINE_SAMPLES = 4

_ADAM_B1, _ADAM_B2, _ADAM_EPS = 0.9, 0.999, 1e-8
#: log std is kept in this range while optimising (std from 1e-13 to e^10).
_LOG_STD_RANGE = (-30.0, 10.0)

#: grad(start, stop, z) -> (log p(x_b | z_bk) of shape (B, K), its gradient in z of shape (B, K, D)).
DecodeGrad = Callable[[int, int, NDArray[np.float64]], tuple[NDArray[np.float64], NDArray[np.float64]]]


def prior_score(prior: Prior, z: NDArray[np.float64]) -> NDArray[np.float64]:
    """d log p(z) / dz for z of shape (S, D).

    The prior's own ``grad_log_prob`` when it has one (the core's Gaussian and
    mixture priors do, in closed form); otherwise central differences of
    ``log_prob`` with step 1e-5 * max(1, |z_j|) (2 D evaluations, error
    O(h^2) for smooth log-densities).
    """
    grad = getattr(prior, "grad_log_prob", None)
    if callable(grad):
        return np.asarray(grad(z), np.float64)
    s, d = z.shape
    h = 1e-5 * np.maximum(1.0, np.abs(z))
    out = np.empty((s, d))
    for j in range(d):
        up, down = z.copy(), z.copy()
        up[:, j] += h[:, j]
        down[:, j] -= h[:, j]
        lp_up = np.asarray(prior.log_prob(up), np.float64)
        lp_down = np.asarray(prior.log_prob(down), np.float64)
        out[:, j] = (lp_up - lp_down) / (2.0 * h[:, j])
    return out


def refine_posteriors(
    grad: DecodeGrad,
    prior: Prior,
    q: DiagonalGaussian,
    rng: np.random.Generator,
    steps: int,
    batch_size: int,
    *,
    lr: float = DEFAULT_REFINE_LR,
    samples: int = DEFAULT_REFINE_SAMPLES,
    model: str = "model",
    reporter: Reporter = SILENT,
) -> DiagonalGaussian:
    """Per-data-point optimisation of q(z|x_n)'s parameters against its ELBO.

    Each data point's (mean, log std) starts at the encoder's output and takes
    ``steps`` Adam steps, ``samples`` reparameterised draws z = mean + std * eps
    per step, on ELBO_n = E_q[log p(x_n|z) + log p(z)] + H[q]. The gradients are
    E[g] for the mean and E[g * eps] * std + 1 for the log std, with
    g = d/dz [log p(x_n|z) + log p(z)]. The step size decays linearly from
    ``lr`` to 0, so the iterates settle instead of jittering at the optimum.

    Parameters
    ----------
    grad : callable
        ``grad(start, stop, z)`` -> (log p(x_b|z_bk), its gradient in z) for
        the data points ``start..stop-1`` and z of shape (B, K, D).
    prior : Prior
        The model's own prior.
    q : DiagonalGaussian
        The amortized posteriors (the encoder's output), the starting point.
    rng : numpy Generator
    steps : int
        T, the number of gradient steps.
    batch_size : int
        Data points optimised together (one decoder call per step).
    lr : float
        Adam's initial step size.
    samples : int
        Draws of z per step; the gradient is their average.

    Returns
    -------
    DiagonalGaussian
        The refined posteriors q_T(z|x_n).

    Raises
    ------
    ModelError
        The parameters became non-finite (a step size too large for the model).

    References
    ----------
    .. [1] C. Cremer, X. Li and D. Duvenaud, "Inference suboptimality in
       variational autoencoders", ICML 2018.
    .. [2] D. P. Kingma and J. Ba, "Adam: a method for stochastic
       optimization", ICLR 2015.
    """
    n = q.n_points
    mean = q.mean.copy()
    log_std = np.log(q.std)
    with reporter.task(f"refining {model}: {steps} steps", -(-n // batch_size)) as bar:
        for start in range(0, n, batch_size):
            stop = min(n, start + batch_size)
            m, ls = _adam(grad, prior, rng, steps, lr, samples, start, stop, mean[start:stop], log_std[start:stop])
            bad = ~(np.isfinite(m).all(axis=1) & np.isfinite(ls).all(axis=1))
            if bad.any():
                first = start + int(np.flatnonzero(bad)[0])
                raise ModelError(
                    f"model {model!r}: refining the posteriors gave non-finite parameters at data point "
                    f"{first}; use a smaller --refine-lr (now {lr:g})"
                )
            mean[start:stop], log_std[start:stop] = m, ls
            bar.advance()
    return DiagonalGaussian(mean, np.exp(log_std), source=f"model {model!r} (refined)")


def _adam(
    grad: DecodeGrad, prior: Prior, rng: np.random.Generator, steps: int, lr: float, k: int,
    start: int, stop: int, m: NDArray[np.float64], ls: NDArray[np.float64],
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    b, d = m.shape
    m, ls = m.copy(), ls.copy()
    mom = np.zeros((2, b, d))
    sq = np.zeros((2, b, d))
    for t in range(1, steps + 1):
        eps = rng.standard_normal((b, k, d))
        std = np.exp(ls)
        z = m[:, None, :] + std[:, None, :] * eps
        _, gx = grad(start, stop, z)
        g = gx + prior_score(prior, z.reshape(-1, d)).reshape(b, k, d)
        gs = np.stack([g.mean(axis=1), (g * eps).mean(axis=1) * std + 1.0])
        mom = _ADAM_B1 * mom + (1.0 - _ADAM_B1) * gs
        sq = _ADAM_B2 * sq + (1.0 - _ADAM_B2) * gs * gs
        step = lr * (1.0 - (t - 1) / steps)
        upd = step * (mom / (1.0 - _ADAM_B1**t)) / (np.sqrt(sq / (1.0 - _ADAM_B2**t)) + _ADAM_EPS)
        m = m + upd[0]
        ls = np.clip(ls + upd[1], *_LOG_STD_RANGE)
    return m, ls


def refined_elbo(
    decode: Callable[[int, int, NDArray[np.float64]], NDArray[np.float64]],
    prior: Prior,
    q: DiagonalGaussian,
    rng: np.random.Generator,
    k: int,
    batch_size: int,
    *,
    steps: int,
) -> TermEstimate:
    """ELBO of the refined posteriors, per data point, by Monte Carlo with ``k`` draws each.

    E_q[log p(x_n|z)] - KL(q || p): the KL in closed form when the prior has a
    ``cross_entropy``, else from the same draws (log q - log p).

    References
    ----------
    .. [1] C. Cremer, X. Li and D. Duvenaud, "Inference suboptimality in
       variational autoencoders", ICML 2018.
    """
    n, d = q.n_points, q.n_latent
    cross_entropy = getattr(prior, "cross_entropy", None)
    closed = callable(cross_entropy)
    kl = np.asarray(cross_entropy(q), np.float64) - q.entropy() if callable(cross_entropy) else None
    f = np.empty((n, k))
    for start in range(0, n, batch_size):
        stop = min(n, start + batch_size)
        b = stop - start
        eps = rng.standard_normal((b, k, d))
        mu, sd = q.mean[start:stop, None, :], q.std[start:stop, None, :]
        z = mu + sd * eps
        ll = decode(start, stop, z)
        if kl is not None:
            f[start:stop] = ll - kl[start:stop, None]
        else:
            log_q = -np.sum(np.log(sd), axis=2) - 0.5 * d * LOG_2PI - 0.5 * np.sum(eps * eps, axis=2)
            log_p = np.asarray(prior.log_prob(z.reshape(-1, d)), np.float64).reshape(b, k)
            f[start:stop] = ll + log_p - log_q
    how = "closed-form KL" if closed else "KL from the same draws"
    return stratified_estimate(
        f, None, f"ELBO of posteriors refined by {steps} Adam steps per data point; "
        f"Monte Carlo over z ~ q_T(z|x_n), {k} draw(s) per data point, {how}",
    )


def gap_terms(
    refined: TermEstimate, elbo: TermEstimate, log_likelihood: TermEstimate | None
) -> dict[str, TermEstimate]:
    """``refined_elbo``, ``amortization_gap`` and ``approximation_gap``, per data point (paired).

    References
    ----------
    .. [1] C. Cremer, X. Li and D. Duvenaud, "Inference suboptimality in
       variational autoencoders", ICML 2018.
    """
    approx = (
        difference(log_likelihood, refined, "log_likelihood - refined_elbo (biased high at finite T)")
        if log_likelihood is not None and log_likelihood.evaluated
        else TermEstimate.not_evaluated("needs log_likelihood (--iw-samples)")
    )
    amort = (
        difference(refined, elbo, "refined_elbo - elbo (biased low at finite T)")
        if elbo.evaluated
        else TermEstimate.not_evaluated("needs elbo")
    )
    return {"refined_elbo": refined, "amortization_gap": amort, "approximation_gap": approx}
