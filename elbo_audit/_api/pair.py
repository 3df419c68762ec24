"""A bare pair of ``encode`` / ``decode`` callables plus a prior, audited as a VAE.

``elbo_audit.audit((encode, decode), data, prior=...)`` builds an
:class:`EncodeDecode`. The adapters' ``claims`` see it first (the torch
adapter takes a pair of ``nn.Module`` objects and runs them as it runs a
module's ``encoder`` and ``decoder``); any other pair is wrapped here, in
numpy, without importing a framework:

* ``encode(x)`` gets a numpy batch (B rows) and returns ``(mean, second)``
  of shape (B, D), ``second`` as named by ``posterior`` (``log_std`` by
  default); numpy arrays, or tensors of any framework (read through
  ``detach().cpu().numpy()`` or ``numpy.asarray``);
* ``decode(z)`` gets latents of shape (M, D) in float64 and returns the
  Bernoulli logits of p(x | z), one row per latent, with as many values as a
  data point has;
* the prior is N(0, I) by default, or any :class:`elbo_audit.Prior`.

log p(x | z) = sum_i x_i l_i - log(1 + e^{l_i}) is summed over a data point's
values in float64 (Kingma & Welling 2014, appendix C.1).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from .._errors import ModelError, UsageError
from .._model.families import POSTERIOR_PARAMS, DiagonalGaussian, posterior_from_params
from .._model.priors import LazyStandardNormal
from .._model.protocols import AuditModel, Prior
from .data import _tensor_to_numpy

__all__ = ["PAIR_LIKELIHOODS", "EncodeDecode", "as_pair", "wrap_pair"]

#: What ``decode``'s output may parameterise in the core's own wrapper.
PAIR_LIKELIHOODS = ("bernoulli",)

_CHUNK = 8192  # latents per call of decode


@dataclass(frozen=True)
class EncodeDecode:
    """An encoder and a decoder given as two callables, with the prior of the model.

    Parameters
    ----------
    encode : callable
        ``encode(x) -> (mean, second)`` for a batch of B data points; arrays
        or tensors of shape (B, D).
    decode : callable
        ``decode(z) -> logits`` for latents of shape (M, D); an array or
        tensor of M rows, each with as many values as a data point.
    prior : Prior or str, optional
        The model's prior p(z): ``None`` or ``"standard_normal"`` for N(0, I),
        or an :class:`elbo_audit.Prior`; an adapter that claims the pair may
        take its own kinds (a ``torch.distributions`` object for the torch adapter).
    posterior : {"log_std", "log_var", "std", "var"}
        What ``second`` holds.
    likelihood : {"bernoulli"}
        What ``decode`` returns: the logits of a Bernoulli per value.
    """

    encode: Callable[..., Any]
    decode: Callable[..., Any]
    prior: Any = None
    posterior: str = "log_std"
    likelihood: str = "bernoulli"


def as_pair(model: Any, prior: Any, posterior: str | None, likelihood: str | None) -> Any:
    """``model`` as :class:`EncodeDecode` when it is a pair of callables, else ``model`` itself.

    Raises
    ------
    UsageError
        ``prior``, ``posterior`` or ``likelihood`` given for a model that is
        not a pair (a model object carries its own), or values not understood.
    """
    given = {k: v for k, v in (("prior", prior), ("posterior", posterior), ("likelihood", likelihood))
             if v is not None}
    if isinstance(model, EncodeDecode):
        pair = model
    elif isinstance(model, tuple) and len(model) == 2 and all(callable(f) for f in model):
        pair = EncodeDecode(model[0], model[1])
    else:
        if given:
            raise UsageError(
                f"audit(): {', '.join(f'{k}=' for k in given)} is for a pair of (encode, decode) "
                f"callables; a {type(model).__name__} carries its own"
            )
        return model
    fields = {"prior": pair.prior, "posterior": pair.posterior, "likelihood": pair.likelihood, **given}
    if fields["posterior"] not in POSTERIOR_PARAMS:
        raise UsageError(f"audit(): posterior={fields['posterior']!r}; expected one of "
                         f"{', '.join(POSTERIOR_PARAMS)}")
    return EncodeDecode(pair.encode, pair.decode, **fields)


def _name(fn: Any) -> str:
    return str(getattr(fn, "__qualname__", None) or type(fn).__qualname__)


class PairEncoder:
    """:class:`elbo_audit.Encoder` over ``encode``; remembers the latent size it saw."""

    def __init__(self, pair: EncodeDecode, where: str) -> None:
        self.fn = pair.encode
        self.kind = pair.posterior
        self.where = where
        self.n_latent: int | None = None

    def encode(self, x: NDArray[Any]) -> DiagonalGaussian:
        b = int(x.shape[0])
        try:
            out = self.fn(x)
        except Exception as exc:
            raise ModelError(f"{self.where}: encode raised {type(exc).__name__}: {exc}") from exc
        if not (isinstance(out, (tuple, list)) and len(out) == 2):
            raise ModelError(
                f"{self.where}: encode returned {type(out).__name__}; expected a (mean, {self.kind}) pair"
            )
        mean, second = (_tensor_to_numpy(part) for part in out)
        q = posterior_from_params(mean, second, self.kind, self.where, b, producer="encode")
        if self.n_latent is None:
            self.n_latent = q.n_latent
        elif self.n_latent != q.n_latent:
            raise ModelError(f"{self.where}: encode gave {q.n_latent} latents, earlier {self.n_latent}")
        return q


class PairBernoulliDecoder:
    """:class:`elbo_audit.Decoder`: log p(x | z) of Bernoulli logits from ``decode``."""

    def __init__(self, pair: EncodeDecode, where: str) -> None:
        self.fn = pair.decode
        self.where = where

    def _logits(self, z: NDArray[np.float64], per_x: int) -> NDArray[np.float64]:
        try:
            out = self.fn(z)
        except Exception as exc:
            raise ModelError(f"{self.where}: decode raised {type(exc).__name__}: {exc}") from exc
        logits = _tensor_to_numpy(out)
        if logits.ndim < 1 or logits.shape[0] != z.shape[0] or math.prod(logits.shape[1:]) != per_x:
            raise ModelError(
                f"{self.where}: decode returned shape {logits.shape} for {z.shape[0]} latents; "
                f"expected ({z.shape[0]}, ...) with {per_x} logits per row"
            )
        if logits.dtype.kind not in "iuf":
            raise ModelError(f"{self.where}: decode returned {logits.dtype} values, not logits")
        flat = np.asarray(logits, dtype=np.float64).reshape(z.shape[0], per_x)
        if not np.isfinite(flat).all():
            raise ModelError(f"{self.where}: decode returned NaN or infinite logits")
        return flat

    def log_likelihood(self, x: NDArray[Any], z: NDArray[np.float64]) -> NDArray[np.float64]:
        z = np.asarray(z, dtype=np.float64)
        if z.ndim != 3 or z.shape[0] != x.shape[0]:
            raise ModelError(f"{self.where}: log_likelihood needs z of shape (B, K, D), got {z.shape}")
        b, k, d = z.shape
        xf = np.asarray(x, dtype=np.float64).reshape(b, -1)
        outside = (xf != 0.0) & (xf != 1.0)
        if outside.any():
            rows = np.flatnonzero(outside.any(axis=1))[:5]
            raise ModelError(
                f"{self.where}: data at rows {', '.join(map(str, rows))} of the batch are not 0 or 1, "
                "outside the support of the Bernoulli likelihood; binarize the data (binarize=T)"
            )
        flat = z.reshape(b * k, d)
        out = np.empty(b * k, dtype=np.float64)
        for start in range(0, b * k, _CHUNK):
            stop = min(b * k, start + _CHUNK)
            logits = self._logits(flat[start:stop], xf.shape[1])
            xs = xf[np.arange(start, stop) // k]
            out[start:stop] = np.sum(xs * logits - np.logaddexp(0.0, logits), axis=1)
        return out.reshape(b, k)


def wrap_pair(pair: EncodeDecode, name: str) -> AuditModel:
    """The core's own :class:`AuditModel` of a pair no adapter claimed.

    Raises
    ------
    UsageError
        A likelihood other than Bernoulli logits, or a prior that is neither
        ``"standard_normal"`` nor an :class:`elbo_audit.Prior`.
    """
    where = f"model {name!r} (encode/decode pair)"
    if pair.likelihood not in PAIR_LIKELIHOODS:
        raise UsageError(
            f"{where}: likelihood={pair.likelihood!r}; a pair of plain callables takes "
            f"{', '.join(PAIR_LIKELIHOODS)} (logits); wrap other decoders as an elbo_audit.AuditModel"
        )
    encoder = PairEncoder(pair, where)
    prior: Prior
    if pair.prior is None or (isinstance(pair.prior, str) and pair.prior == "standard_normal"):
        prior = LazyStandardNormal(lambda: encoder.n_latent, where, "give prior=elbo_audit.StandardNormal(D)")
    elif isinstance(pair.prior, Prior) and not isinstance(pair.prior, str):
        prior = pair.prior
    else:
        given = repr(pair.prior) if isinstance(pair.prior, str) else type(pair.prior).__name__
        raise UsageError(
            f"{where}: prior={given}; expected 'standard_normal' or an elbo_audit.Prior "
            "(StandardNormal(D), DiagonalGaussianPrior, MixtureOfGaussians, ...)"
        )
    attrs = {"encode": _name(pair.encode), "decode": _name(pair.decode),
             "posterior": pair.posterior, "likelihood": pair.likelihood}
    return AuditModel(name=name, encoder=encoder, prior=prior,
                      decoder=PairBernoulliDecoder(pair, where), adapter="core", attrs=attrs)
