"""The importance-weighted log-likelihood and the inference gap.

log p(x_n) >= E[log (1/K) sum_k p(x_n, z_k) / q(z_k|x_n)], z_k ~ q(z|x_n)
(Burda et al. 2016): the bound tightens as K grows and equals log p(x_n) when
q(z|x_n) is the exact posterior. ``inference_gap`` = log_likelihood - elbo
splits the distance between the ELBO and the model's log-likelihood from the
KL side: a large gap points at the encoder (or the posterior family), a small
one at the model itself. Since the bound is below log p(x), the gap estimate
is biased low, by an amount that shrinks as K grows.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
from numpy.typing import NDArray

from .._estimation.mc import TermEstimate, difference
from .._model.families import LOG_2PI, DiagonalGaussian
from .._model.terms import IW_TERMS
from .._reporting import SILENT, Reporter

__all__ = ["DEFAULT_IW_SAMPLES", "IW_TERMS", "inference_gap", "iw_log_likelihood"]

#: K when ``--iw-samples`` is given without a value.
DEFAULT_IW_SAMPLES = 1000

#: decode(start, stop, z) -> log p(x_b | z_bk) for data points start..stop-1, z (B, K, D) -> (B, K).
Decode = Callable[[int, int, NDArray[np.float64]], NDArray[np.float64]]


def iw_log_likelihood(
    decode: Decode,
    prior: Any,
    q: DiagonalGaussian,
    rng: np.random.Generator,
    k: int,
    batch_size: int,
    *,
    refined: DiagonalGaussian | None = None,
    model: str = "model",
    reporter: Reporter = SILENT,
) -> TermEstimate:
    """The importance-weighted bound on log p(x_n), averaged over data points.

    Parameters
    ----------
    decode : callable
        ``decode(start, stop, z)``: log p(x_b | z_bk) for the data points
        ``start..stop-1`` and z of shape (B, K', D); returns (B, K').
    prior : Prior
        The model's own prior p(z) (``log_prob`` of (S, D) -> (S,)).
    q : DiagonalGaussian
        The proposals q(z|x_n).
    rng : numpy Generator
    k : int
        Importance samples per data point.
    batch_size : int
        Data points per decoder call; the K samples go through in chunks of
        at most ``8 * batch_size`` decoder evaluations per call.
    refined : DiagonalGaussian, optional
        Refined posteriors (``--refine-steps``). The proposal is then the
        defensive mixture of ``q`` and ``refined``: even-numbered samples come
        from ``q``, odd-numbered ones from ``refined``, and each weight is
        p(x, z) / (w_q q(z|x) + w_r r(z|x)) with w_q, w_r the two shares of
        the K samples (still an unbiased estimate of p(x) inside the log). A
        refined mean-field posterior is often narrower than the true one, a
        poor proposal alone; the mixture keeps the tails of the encoder's.

    Returns
    -------
    TermEstimate
        Per-datapoint bounds as ``pointwise``. The standard error is the
        delta-method error of each point's log-mean-exp,
        sqrt((E w^2 / (E w)^2 - 1) / K), combined over points with the data
        fixed; it describes the spread of the estimate, not its bias. With
        K = 1 it falls back to the spread between data points (conservative).

    References
    ----------
    .. [1] Y. Burda, R. Grosse and R. Salakhutdinov, "Importance weighted
       autoencoders", ICLR 2016.
    .. [2] C. Cremer, X. Li and D. Duvenaud, "Inference suboptimality in
       variational autoencoders", ICML 2018.
    """
    n, d = q.n_points, q.n_latent
    props = [q] if refined is None else [q, refined]
    shares = np.array([-(-k // len(props)), k // len(props)][: len(props)], np.float64) / k
    ll = np.empty(n)
    var = np.empty(n)
    with reporter.task(f"importance weighting {model}: {k} samples", -(-n // batch_size)) as bar:
        for start in range(0, n, batch_size):
            stop = min(n, start + batch_size)
            b = stop - start
            chunk = max(1, min(k, (8 * batch_size) // b))
            top = np.full(b, -np.inf)
            s1 = np.zeros(b)
            s2 = np.zeros(b)
            for c in range(0, k, chunk):
                kk = min(chunk, k - c)
                z, log_q = _draw(props, shares, start, stop, c, kk, rng)
                log_p = np.asarray(prior.log_prob(z.reshape(-1, d)), np.float64).reshape(b, kk)
                lw = decode(start, stop, z) + log_p - log_q
                new_top = np.maximum(top, lw.max(axis=1))
                shift = np.exp(top - new_top)
                s1 = s1 * shift + np.exp(lw - new_top[:, None]).sum(axis=1)
                s2 = s2 * shift**2 + np.exp(2.0 * (lw - new_top[:, None])).sum(axis=1)
                top = new_top
            ll[start:stop] = top + np.log(s1) - math.log(k)
            ratio = k * s2 / (s1 * s1)  # E w^2 / (E w)^2, in [1, K]
            var[start:stop] = np.maximum(ratio - 1.0, 0.0) / k
            bar.advance()
    if k == 1:
        # one weight per point tells nothing of its spread: the spread between points bounds it
        se = float(ll.std(ddof=1) / math.sqrt(n)) if n > 1 else float("nan")
    else:
        se = float(math.sqrt(var.sum()) / n)
    source = "q(z|x_n)" if refined is None else "the equal mixture of q(z|x_n) and the refined posteriors"
    return TermEstimate(
        float(ll.mean()), se, ll, f"importance-weighted bound, K = {k} samples from {source} (a lower bound)"
    )


def _draw(
    props: list[DiagonalGaussian], shares: NDArray[np.float64], start: int, stop: int,
    first: int, kk: int, rng: np.random.Generator,
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Samples first..first+kk-1 of the data points start..stop-1 and their log proposal density."""
    b, d = stop - start, props[0].n_latent
    eps = rng.standard_normal((b, kk, d))
    which = (first + np.arange(kk)) % len(props)
    mean = np.stack([p.mean[start:stop] for p in props])  # (P, B, D)
    std = np.stack([p.std[start:stop] for p in props])
    z = mean[which].transpose(1, 0, 2) + std[which].transpose(1, 0, 2) * eps
    log_q = np.empty((len(props), b, kk))
    for i, p in enumerate(props):
        u = (z - mean[i][:, None, :]) / std[i][:, None, :]
        log_q[i] = (
            -np.sum(np.log(std[i]), axis=1)[:, None] - 0.5 * d * LOG_2PI - 0.5 * np.sum(u * u, axis=2)
        )
    if len(props) == 1:
        return z, log_q[0]
    with np.errstate(divide="ignore"):
        log_shares = np.log(shares)
    return z, np.logaddexp.reduce(log_q + log_shares[:, None, None], axis=0)


def inference_gap(log_likelihood: TermEstimate, elbo: TermEstimate) -> TermEstimate:
    """log_likelihood - elbo, per data point (paired), with independent Monte Carlo errors.

    References
    ----------
    .. [1] C. Cremer, X. Li and D. Duvenaud, "Inference suboptimality in
       variational autoencoders", ICML 2018.
    """
    if not (log_likelihood.evaluated and elbo.evaluated):
        return TermEstimate.not_evaluated("needs log_likelihood and elbo")
    return difference(log_likelihood, elbo, "log_likelihood - elbo (biased low: log_likelihood is a lower bound)")
