"""A prior fitted post hoc to the aggregate posterior: scikit-learn's GaussianMixture.

"How many nats would a better prior buy?" The fitted mixture is trained on
draws from q(z) of the model being audited, with diagonal covariances, and
then evaluated as an ordinary :class:`elbo_audit.MixtureOfGaussians` prior.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from elbo_audit import DiagonalGaussian, MixtureOfGaussians, UsageError

__all__ = ["fit_mixture_prior"]

_KNOWN = {"components", "samples", "posteriors", "seed", "max_iter"}


def fit_mixture_prior(n_latent: int, options: dict[str, Any]) -> MixtureOfGaussians:
    """Fit a K-component diagonal Gaussian mixture to draws from q(z).

    Options: ``components`` (K, default 10), ``samples`` (draws from q(z) to fit
    on, default min(20 N, 100000)), ``max_iter`` (EM iterations, default 200);
    ``posteriors`` and ``seed`` are supplied by elbo-audit.

    References
    ----------
    .. [1] M. D. Hoffman and M. J. Johnson, "ELBO surgery", 2016 (the
       aggregate posterior as the optimal prior).
    .. [2] scikit-learn, ``sklearn.mixture.GaussianMixture``.
    """
    from sklearn.mixture import GaussianMixture

    unknown = set(options) - _KNOWN
    if unknown:
        raise UsageError(f"prior 'fitted_mixture': unknown option(s) {sorted(unknown)}; "
                         "known: components, samples, max_iter")
    q: DiagonalGaussian = options["posteriors"]
    k = int(options.get("components", 10))
    if k < 1:
        raise UsageError(f"prior 'fitted_mixture': components must be >= 1, got {k}")
    rng = np.random.default_rng(np.random.SeedSequence(int(options.get("seed", 0)), spawn_key=(7,)))
    n_draws = int(options.get("samples", min(20 * q.n_points, 100_000)))
    idx = rng.integers(0, q.n_points, size=n_draws)
    z = q.mean[idx] + q.std[idx] * rng.standard_normal((n_draws, q.n_latent))
    gm = GaussianMixture(
        n_components=k, covariance_type="diag", max_iter=int(options.get("max_iter", 200)),
        random_state=int(rng.integers(2**31 - 1)),
    )
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1, user_api="blas"):  # small matrices: threads only spin
        gm.fit(z)
    return MixtureOfGaussians(gm.weights_, gm.means_, np.sqrt(gm.covariances_), name=f"fitted_mixture_k{k}")
