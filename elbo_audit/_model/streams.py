"""The independent random streams of a run, each defined once.

Every random number of an audit comes from ``SeedSequence(seed,
spawn_key=(purpose, ...))`` with one of these purposes, so that changing one
part of an audit (say, the number of bootstrap replicates) never changes the
draws of another.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "BOOTSTRAP", "IMPORTANCE", "INTERACTION", "KL", "LATENT", "RECONSTRUCTION", "REFINE", "REFINE_ELBO", "stream",
]

#: Draws of z for the KL side (shared by every prior of a model).
KL = 0
#: Draws of z for ``reconstruction``.
RECONSTRUCTION = 1
#: Resampling counts of the paired bootstrap.
BOOTSTRAP = 2
#: Fresh draws of :func:`elbo_audit._estimation.interaction.mixture_interaction`
#: (an audit takes the interaction from its KL draws instead).
INTERACTION = 3
#: Resampling counts of the per-latent intervals (``latent_kl``, ``posterior_mean_variance``).
LATENT = 4
#: Draws of z for the importance-weighted ``log_likelihood``.
IMPORTANCE = 5
#: Draws of z for the gradient steps of the refined posteriors (``--refine-steps``).
REFINE = 6
#: Draws of z for ``refined_elbo``, the ELBO of the refined posteriors.
REFINE_ELBO = 7


def stream(seed: int, purpose: int) -> np.random.Generator:
    """The random stream of ``purpose`` for a run with ``seed``."""
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(purpose,)))
