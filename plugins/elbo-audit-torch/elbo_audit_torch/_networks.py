"""The encoder and decoder: torch networks called on numpy batches, answering in float64 numpy.

What every wrapped piece shares (:class:`_Context`: name, device, dtype, chunk
size, latent size), the TF32 switch (:func:`full_precision`), and the wrappers
:class:`TorchEncoder` (q(z|x)) and :class:`TorchDecoder` (log p(x|z), summed per
data point in float64).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import torch
from torch import distributions as td

from elbo_audit import DiagonalGaussian, ModelError, UsageError, posterior_from_params

from ._spec import LIKELIHOODS, POSTERIOR_PARAMS

__all__ = ["TorchDecoder", "TorchEncoder", "full_precision"]


# ----------------------------------------------------------------------------- context


class _Context:
    """What every wrapped piece shares: name, device, dtype, chunk size, latent size."""

    def __init__(self, name: str, device: torch.device, dtype: torch.dtype, chunk: int) -> None:
        self.name = name
        self.device = device
        self.dtype = dtype
        self.chunk = max(1, int(chunk))
        self.n_latent: int | None = None

    def where(self) -> str:
        return f"model {self.name!r} (torch adapter)"

    def tensor(self, a: Any, dtype: torch.dtype | None = None) -> torch.Tensor:
        arr = np.ascontiguousarray(a)
        if arr.dtype == np.bool_ or arr.dtype.kind in "iuf":
            return torch.as_tensor(arr, device=self.device).to(dtype or self.dtype)
        raise ModelError(f"{self.where()}: cannot feed data of dtype {arr.dtype} to a torch model")

    def bind_latent(self, d: int) -> None:
        if self.n_latent is None:
            self.n_latent = d
        elif self.n_latent != d:
            raise ModelError(f"{self.where()}: encoder gave {d} latents, earlier {self.n_latent}")


@contextlib.contextmanager
def full_precision(device: torch.device) -> Iterator[None]:
    """No TF32 in matrix products or cuDNN convolutions while the adapter runs the model.

    cuDNN allows TF32 by default, which loses about three decimal digits in
    float32 convolutions on Ampere and later GPUs; an audit wants the model's
    own precision. The global flags are restored afterwards.
    """
    if device.type != "cuda":
        yield
        return
    saved = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


def _np64(t: torch.Tensor) -> np.ndarray:
    return t.detach().to("cpu", torch.float64).numpy()


# ----------------------------------------------------------------------------- encoder


class TorchEncoder:
    """:class:`elbo_audit.Encoder` over a torch module returning q(z|x)."""

    def __init__(self, module: Callable[..., Any], ctx: _Context, posterior: str) -> None:
        if posterior not in POSTERIOR_PARAMS:
            raise UsageError(
                f"{ctx.where()}: posterior={posterior!r}; expected one of {', '.join(POSTERIOR_PARAMS)}"
            )
        self.module = module
        self.ctx = ctx
        self.posterior = posterior

    def _params(self, out: Any, b: int) -> tuple[torch.Tensor, torch.Tensor, str]:
        dist = out
        if isinstance(dist, td.Independent) and dist.reinterpreted_batch_ndims == 1:
            dist = dist.base_dist
        if isinstance(dist, td.Normal):
            return dist.loc, dist.scale, "std"
        if isinstance(out, (tuple, list)) and len(out) == 2 and all(
            isinstance(t, torch.Tensor) for t in out
        ):
            return out[0], out[1], self.posterior
        if isinstance(out, td.Distribution):
            raise ModelError(
                f"{self.ctx.where()}: encoder returned a {type(out).__name__}; the posterior must be "
                "a diagonal Gaussian: Normal, Independent(Normal, 1) or a (mean, log_var) tuple"
            )
        raise ModelError(
            f"{self.ctx.where()}: encoder returned {type(out).__name__}; expected a "
            "torch.distributions.Normal, Independent(Normal, 1) or a (mean, log_var) tuple"
        )

    def encode(self, x: Any) -> DiagonalGaussian:
        x = np.asarray(x)
        b = int(x.shape[0])
        means, seconds, kind = [], [], "std"
        with torch.no_grad(), full_precision(self.ctx.device):
            for start in range(0, b, self.ctx.chunk):
                xt = self.ctx.tensor(x[start : start + self.ctx.chunk])
                out = self.module(xt)
                mean, second, kind = self._params(out, xt.shape[0])
                means.append(_np64(mean))
                seconds.append(_np64(second))
        q = posterior_from_params(
            means, seconds, kind, self.ctx.where(), b, source=f"model {self.ctx.name!r}"
        )
        self.ctx.bind_latent(q.n_latent)
        return q


# ----------------------------------------------------------------------------- decoder


def _likelihood_from_name(name: str, where: str) -> Callable[[Any], td.Distribution]:
    def need_tensor(out: Any, what: str) -> torch.Tensor:
        if not isinstance(out, torch.Tensor):
            raise ModelError(f"{where}: likelihood {name!r} needs the decoder to return {what}")
        return out

    if name == "bernoulli":
        return lambda out: td.Bernoulli(logits=need_tensor(out, "logits"), validate_args=False)
    if name == "continuous_bernoulli":
        return lambda out: td.ContinuousBernoulli(
            logits=need_tensor(out, "logits"), validate_args=False
        )
    if name == "categorical":
        return lambda out: td.Categorical(
            logits=need_tensor(out, "logits (levels on the last axis)"), validate_args=False
        )
    if name == "normal":

        def normal(out: Any) -> td.Distribution:
            if not (isinstance(out, (tuple, list)) and len(out) == 2):
                raise ModelError(
                    f"{where}: likelihood 'normal' needs the decoder to return (mean, log_var); "
                    "for a fixed scale pass likelihood=lambda mean: Normal(mean, scale)"
                )
            mean, log_var = out
            return td.Normal(mean, torch.exp(0.5 * log_var), validate_args=False)

        return normal
    raise UsageError(f"{where}: unknown likelihood {name!r}; expected one of {', '.join(LIKELIHOODS)}")


class TorchDecoder:
    """:class:`elbo_audit.Decoder` over a torch module returning p(x|z)."""

    def __init__(self, module: Callable[..., Any], ctx: _Context, likelihood: Any) -> None:
        self.module = module
        self.ctx = ctx
        if isinstance(likelihood, str):
            self.to_dist: Callable[[Any], Any] | None = _likelihood_from_name(likelihood, ctx.where())
        elif likelihood is None or callable(likelihood):
            self.to_dist = likelihood
        else:
            raise UsageError(f"{ctx.where()}: likelihood must be a name or a callable")

    def _dist(self, out: Any) -> td.Distribution:
        if self.to_dist is not None and not isinstance(out, td.Distribution):
            out = self.to_dist(out)
        if not isinstance(out, td.Distribution):
            raise ModelError(
                f"{self.ctx.where()}: decoder returned {type(out).__name__}, not a "
                "torch.distributions.Distribution; name what it parameterises with "
                f"likelihood= (one of {', '.join(LIKELIHOODS)}) or return a distribution"
            )
        return out

    def _rowwise(self, dist: td.Distribution, xr: torch.Tensor, first_row: int, k: int) -> torch.Tensor:
        """Sum over each row's dimensions, in float64, after shape and support checks."""
        while isinstance(dist, td.Independent):
            dist = dist.base_dist
        m = xr.shape[0]
        shape = tuple(dist.batch_shape) + tuple(dist.event_shape)
        per_x = math.prod(xr.shape[1:])
        if not shape or shape[0] != m or math.prod(shape[1:]) != per_x:
            raise ModelError(
                f"{self.ctx.where()}: decoder returned a {type(dist).__name__} of shape {shape} for "
                f"{m} latents and data points of shape {tuple(xr.shape[1:])}; expected ({m}, ...) "
                f"with {per_x} values per row"
            )
        xr = xr.reshape(shape)
        self._check_support(dist, xr, first_row, k)
        lp = dist.log_prob(xr)
        if lp.shape[0] != m:
            raise ModelError(f"{self.ctx.where()}: log_prob returned shape {tuple(lp.shape)}")
        lp = lp.reshape(m, -1)
        if lp.device.type == "mps":  # no float64 there
            return lp.to("cpu", torch.float64).sum(dim=1)
        return lp.to(torch.float64).sum(dim=1)

    def _check_support(self, dist: td.Distribution, xr: torch.Tensor, first_row: int, k: int) -> None:
        try:
            ok = dist.support.check(xr)  # type: ignore[union-attr]  # None: AttributeError
        except (NotImplementedError, RuntimeError, AttributeError, TypeError):
            return
        if not isinstance(ok, torch.Tensor) or bool(ok.all()):
            return
        ok_rows = ok.reshape(ok.shape[0], -1).all(dim=1).cpu().numpy()
        data_rows = np.unique((first_row + np.flatnonzero(~ok_rows)) // k)
        example = ""
        if ok.shape == xr.shape:
            example = f" (e.g. value {float(xr[~ok][0]):g})"
        more = f" and {data_rows.size - 5} more" if data_rows.size > 5 else ""
        hint = ""
        if isinstance(dist, td.Bernoulli):
            hint = "; binarize the data (--binarize T) or use a likelihood for grey levels"
        raise ModelError(
            f"{self.ctx.where()}: data at rows {', '.join(str(int(r)) for r in data_rows[:5])}{more} "
            f"of the batch lie outside the support of the decoder's {type(dist).__name__} "
            f"likelihood ({dist.support}){example}{hint}"
        )

    def _inputs(self, x: Any, z: Any, what: str) -> tuple[np.ndarray, np.ndarray]:
        x = np.asarray(x)
        z = np.asarray(z, dtype=np.float64)
        if z.ndim != 3 or z.shape[0] != x.shape[0]:
            raise ModelError(
                f"{self.ctx.where()}: {what} needs z of shape (B, K, D) with B = "
                f"{x.shape[0]}, got {z.shape}"
            )
        return x, z

    def log_likelihood_grad(self, x: Any, z: Any) -> tuple[np.ndarray, np.ndarray]:
        """log p(x_b | z_bk) and its gradient in z by torch autograd: (B, K) and (B, K, D).

        Each row's log-likelihood depends on its own z only (the module runs in
        eval mode), so the gradient of their sum is every row's own gradient.
        """
        x, z = self._inputs(x, z, "log_likelihood_grad")
        b, k, d = z.shape
        xt = self.ctx.tensor(x)
        zt = self.ctx.tensor(z.reshape(b * k, d))
        out = torch.empty(b * k, dtype=torch.float64)
        grad = torch.empty(b * k, d, dtype=torch.float64)
        with torch.enable_grad(), full_precision(self.ctx.device):
            for start in range(0, b * k, self.ctx.chunk):
                stop = min(b * k, start + self.ctx.chunk)
                rows = torch.arange(start, stop, device=xt.device) // k
                zc = zt[start:stop].detach().requires_grad_(True)
                lp = self._rowwise(self._dist(self.module(zc)), xt[rows], start, k)
                (g,) = torch.autograd.grad(lp.sum(), zc)
                out[start:stop] = lp.detach().cpu()
                grad[start:stop] = g.detach().to("cpu", torch.float64)
        return out.numpy().reshape(b, k), grad.numpy().reshape(b, k, d)

    def log_likelihood(self, x: Any, z: Any) -> np.ndarray:
        x, z = self._inputs(x, z, "log_likelihood")
        b, k, d = z.shape
        xt = self.ctx.tensor(x)
        zt = self.ctx.tensor(z.reshape(b * k, d))
        out = torch.empty(b * k, dtype=torch.float64)
        with torch.no_grad(), full_precision(self.ctx.device):
            for start in range(0, b * k, self.ctx.chunk):
                stop = min(b * k, start + self.ctx.chunk)
                rows = torch.arange(start, stop, device=xt.device) // k
                dist = self._dist(self.module(zt[start:stop]))
                out[start:stop] = self._rowwise(dist, xt[rows], start, k).cpu()
        return out.numpy().reshape(b, k)
