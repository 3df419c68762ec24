"""The inference gap and its parts, for the model's own prior (``--iw-samples``, ``--refine-steps``).

Wires :mod:`.importance` (``log_likelihood``, ``inference_gap``) and
:mod:`.refine` (``refined_elbo``, ``amortization_gap``, ``approximation_gap``)
into an audit. Both use the model's decoder and its own prior only; under the
other priors of a report the terms are NaN ("not evaluated").
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from numpy.typing import NDArray

from .._errors import ModelError
from .._estimation.mc import TermEstimate
from .._model.families import DiagonalGaussian
from .._model.protocols import Decoder, Prior
from .._model.streams import IMPORTANCE, REFINE, REFINE_ELBO, stream
from .._reporting import SILENT, Reporter
from .importance import IW_TERMS, inference_gap, iw_log_likelihood
from .model_calls import call_decoder_grad
from .refine import REFINE_TERMS, gap_terms, refine_posteriors, refined_elbo

__all__ = ["GAP_TERMS", "gap_estimates", "not_evaluated", "require_gradient"]

#: Every term of this side, in report order.
GAP_TERMS: tuple[str, ...] = IW_TERMS + REFINE_TERMS

Decode = Callable[[int, int, NDArray[np.float64]], NDArray[np.float64]]


def require_gradient(decoder: Decoder | None, model: str, adapter: str) -> Callable[..., Any]:
    """The decoder's ``log_likelihood_grad``, or a ModelError saying that refinement needs it."""
    grad = getattr(decoder, "log_likelihood_grad", None)
    if not callable(grad):
        raise ModelError(
            f"model {model!r}: --refine-steps needs the gradient of log p(x|z) in z, and the "
            f"{adapter} adapter's decoder has no log_likelihood_grad"
        )
    fn: Callable[..., Any] = grad
    return fn


def gap_estimates(
    decode: Decode,
    decoder: Decoder,
    x: NDArray[Any],
    prior: Prior,
    q: DiagonalGaussian,
    elbo: TermEstimate,
    *,
    seed: int,
    iw_samples: int,
    refine_steps: int,
    refine_lr: float,
    refine_samples: int,
    elbo_samples: int,
    batch_size: int,
    model: str,
    adapter: str,
    reporter: Reporter = SILENT,
) -> dict[str, TermEstimate]:
    """The terms of this side that were asked for, under the model's own prior.

    Parameters
    ----------
    decode : callable
        ``decode(start, stop, z)`` -> checked log p(x_b | z_bk), shape (B, K).
    decoder : Decoder
        The model's decoder (its ``log_likelihood_grad`` when refining).
    x : ndarray
        The dataset.
    prior : Prior
        The model's own prior.
    q : DiagonalGaussian
        The amortized posteriors.
    elbo : TermEstimate
        The audit's ELBO under the model's own prior (for the paired gaps).
    iw_samples, refine_steps : int
        K and T; 0 turns that side off.
    elbo_samples : int
        Draws per data point for ``refined_elbo`` (the audit's reconstruction draws).

    Notes
    -----
    With refinement on, the importance-weighted bound's proposal is the equal
    mixture of the encoder's and the refined posteriors (see
    :func:`~elbo_audit._audit.importance.iw_log_likelihood`): the refined ones
    bring it close to log p(x) where the encoder is far off, the encoder's keep
    the tails where the refined mean-field posteriors are too narrow. Without
    refinement the proposal is the encoder's output.

    References
    ----------
    .. [1] Y. Burda, R. Grosse and R. Salakhutdinov, "Importance weighted
       autoencoders", ICLR 2016.
    .. [2] C. Cremer, X. Li and D. Duvenaud, "Inference suboptimality in
       variational autoencoders", ICML 2018.
    """
    refined = None
    if refine_steps > 0:
        refined = _refine(decoder, x, prior, q, seed, refine_steps, refine_lr, refine_samples,
                          batch_size, model, adapter, reporter)
    out: dict[str, TermEstimate] = {}
    ll = None
    if iw_samples > 0:
        # with the refined posteriors in the proposal the bound is tighter (Cremer et al. 2018)
        ll = iw_log_likelihood(
            decode, prior, q, stream(seed, IMPORTANCE), iw_samples, batch_size,
            refined=refined, model=model, reporter=reporter,
        )
        out = {"log_likelihood": ll, "inference_gap": inference_gap(ll, elbo)}
    if refined is not None:
        est = refined_elbo(decode, prior, refined, stream(seed, REFINE_ELBO), elbo_samples, batch_size,
                           steps=refine_steps)
        out.update(gap_terms(est, elbo, ll))
    return out


def _refine(
    decoder: Decoder, x: NDArray[Any], prior: Prior, q: DiagonalGaussian, seed: int,
    steps: int, lr: float, samples: int, batch_size: int, model: str, adapter: str, reporter: Reporter,
) -> DiagonalGaussian:
    raw = require_gradient(decoder, model, adapter)

    def grad(start: int, stop: int, z: NDArray[np.float64]) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        return call_decoder_grad(raw, x, z, start, stop, model)

    return refine_posteriors(
        grad, prior, q, stream(seed, REFINE), steps, batch_size,
        lr=lr, samples=samples, model=model, reporter=reporter,
    )


def not_evaluated(terms: dict[str, TermEstimate]) -> dict[str, TermEstimate]:
    """The same names, not evaluated: the terms of this side under a prior other than the model's."""
    other = TermEstimate.not_evaluated("the inference gap uses the model's own prior only")
    return {t: other for t in terms}
