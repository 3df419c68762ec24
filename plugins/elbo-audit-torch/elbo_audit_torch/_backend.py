"""The ``torch`` compute backend: the kernels of the pairwise pass in PyTorch, on a CPU or a GPU.

A mixture is prepared once, in float64, then cast and moved to the device (dimension-major):
``a_md = 1 / (sqrt(2) sigma_md)``, ``b_md = -mu_md a_md`` and ``c_m = log w_m - sum_d log
sigma_md - D/2 log 2 pi - offset``, so that ``log w_m N(z; mu_m, sigma_m) = offset + c_m -
sum_d (z_d a_md + b_md)^2``: the *direct* form, never the expanded ``z^2 - 2 z mu + mu^2``
(it cancels catastrophically in float32), and no matrix product at all. The offset (the
mean of the c_m; per dimension for the marginals) keeps float32 constants small and is
added back in float64. Zero-weight components are left out: they contribute exactly 0.

Tiles of draws x components feed a streaming (running-max) logsumexp whose sums
accumulate in float64; terms more than 80 nats below the running maximum are clamped
there (exp() of what underflows is slow; M e^-80 relative at most). Eagerly the quadratic
form is summed one dimension at a time: (draws, components) intermediates of at most
:data:`TILE_BYTES`, 512 x 512 on the CPU. Compiled, the tile functions broadcast over
(draws, components, D), ``torch.compile`` fuses the quadratic form, max, exp and sums, and
the bound covers the broadcast too. ``ELBO_AUDIT_TORCH_COMPILE``: unset or ``auto``
compiles on CUDA only, ``1`` everywhere, ``0`` never; a failed compilation runs eagerly
for the rest of the process, with a warning. TF32 is switched off whenever a mixture is
prepared on CUDA.

References
----------
.. [1] M. D. Hoffman and M. J. Johnson, "ELBO surgery: yet another way to carve up the
   variational evidence lower bound", NIPS Workshop on Advances in Approximate Bayesian
   Inference, 2016.
.. [2] M. Milakov and N. Gimelshein, "Online normalizer calculation for softmax",
   arXiv:1805.02867, 2018 (the streaming maximum).
"""

from __future__ import annotations

import importlib.util
import math
import os
import re
import sys
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Final, Generic, TypeVar, cast, final

import numpy as np
from numpy.typing import NDArray

from elbo_audit._kernels.checks import (
    checked_components,
    checked_draws,
    checked_interaction_inputs,
)
from elbo_audit._kernels.protocol import PRECISIONS, Precision

if TYPE_CHECKING:
    import torch
    from torch import Tensor

__all__ = ["COMPILE_ENV", "TILE_BYTES", "TorchBackend", "TorchMixture", "cuda_available",
           "strict_float32"]  # fmt: skip

#: Environment variable: ``0`` eager, ``1`` torch.compile, ``auto`` (default) on CUDA only.
COMPILE_ENV: Final = "ELBO_AUDIT_TORCH_COMPILE"
#: Largest (draws x components) intermediate of a tile on CUDA, in bytes.
TILE_BYTES: Final = 64 * 2**20
_CPU_TILE: Final = 512
_LOG_2PI: Final = math.log(2.0 * math.pi)
_LOG_R_FLOOR: Final = -80.0  # pairs below it add at most e^-80 each: dropped
_FAR_QUAD: Final = 50.0  # float32 keeps a quadratic form below it to ~1e-5 nats
_CLAMP: Final = -80.0  # exp() of what underflows is slow: clamped, M e^-80 relative at most
_R_CEIL: Final = 1.0 - 1e-12
_R = TypeVar("_R")


def _cuda_possible() -> bool:
    """False where CUDA cannot be available (a CPU build, no GPU device node), without torch."""
    spec = importlib.util.find_spec("torch")
    if spec is None or not spec.submodule_search_locations:
        return False
    try:
        text = (Path(next(iter(spec.submodule_search_locations))) / "version.py").read_text()
    except OSError:
        return True
    nodes = ("/dev/nvidiactl", "/dev/nvidia0", "/dev/kfd", "/dev/dxg")  # NVIDIA, ROCm, WSL
    gpu_build = re.search(r"^(cuda|hip)\b[^=\n]*=\s*(?!None\b)\S", text, re.MULTILINE)
    return gpu_build is not None and (
        not sys.platform.startswith("linux") or any(os.path.exists(n) for n in nodes))


def cuda_available() -> bool:
    """``torch.cuda.is_available()``, without importing torch where it cannot be true."""
    if "torch" not in sys.modules and not _cuda_possible():
        return False
    import torch
    return bool(torch.cuda.is_available())


def strict_float32() -> None:
    """Switch TF32 off for CUDA matrix products and cuDNN, and keep float32 matmuls exact."""
    import torch
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.set_float32_matmul_precision("highest")


def _compile_wanted(device_type: str) -> bool:
    env = os.environ.get(COMPILE_ENV, "").strip().lower()
    if env not in ("", "auto", "0", "1"):
        raise ValueError(f"{COMPILE_ENV}={env!r}: expected 0, 1 or auto")
    return env == "1" or (env in ("", "auto") and device_type == "cuda")


def _quad_loop(z: Tensor, a: Tensor, b: Tensor) -> Tensor:
    """``sum_d (z_sd a_dm + b_dm)^2`` (S, M), one dimension at a time: 2-D intermediates."""
    if z.shape[1] == 0:
        return z.new_zeros((z.shape[0], a.shape[1]))
    import torch
    out = torch.addcmul(b[0], z[:, :1], a[0]).square_()
    for d in range(1, z.shape[1]):
        u = torch.addcmul(b[d], z[:, d : d + 1], a[d])
        out.addcmul_(u, u)
    return out


def _quad_broadcast(z: Tensor, a: Tensor, b: Tensor) -> Tensor:
    """The same over a (S, M, D) broadcast, for torch.compile to fuse (never materialised)."""
    u = z[:, None, :] * a.T[None] + b.T[None]
    return (u * u).sum(-1)


def _lse_step(fused: bool, z: Tensor, a: Tensor, b: Tensor, c: Tensor, run_max: Tensor,
              run_sum: Tensor) -> tuple[Tensor, Tensor]:
    """One component tile of the streaming logsumexp of ``c_m - quad``; sums in float64."""
    import torch
    t = c - (_quad_broadcast if fused else _quad_loop)(z, a, b)
    new_max = torch.maximum(run_max, t.amax(1).to(run_max.dtype))
    shift = torch.where(torch.isneginf(new_max), 0.0, new_max)  # all -inf so far: no NaN
    tile = torch.exp((t - shift.to(t.dtype)[:, None]).clamp(min=_CLAMP)).to(torch.float64).sum(1)
    return new_max, run_sum * torch.exp(run_max - shift) + tile


def _interaction_step(fused: bool, refine: bool, z: Tensor, a: Tensor, b: Tensor, c: Tensor,
                      lq: Tensor, owner: Tensor, cols: Tensor) -> tuple[Tensor, Tensor]:
    """Column sums of -log(1 - r) over one tile, own pairs and log r < -80 dropped, float64.

    ``refine`` (float32): rows with a pair whose r may matter and whose quadratic form is
    large (float32 loses ~1e-7 of it: draws far from every component) are left out and
    flagged, for the float64 kernel.
    """
    import torch
    quad = (_quad_broadcast if fused else _quad_loop)(z, a, b).to(torch.float64)
    log_r = c.to(torch.float64) - quad - lq[:, None]
    other = owner[:, None] != cols[None, :]
    keep = (log_r >= _LOG_R_FLOOR) & other  # NaN: dropped
    far = torch.zeros_like(lq, dtype=torch.bool)
    if refine:  # may r (log r + 1e-5 quad at most) times its error, ~2e-7 quad, exceed 1e-13?
        # log r + 1e-5 quad + log(quad) > -28, with log(q) <= q / 1000 + log(1000) - 1
        far = (other & (quad > _FAR_QUAD) & (log_r + 1.01e-3 * quad > -33.9)).any(1)
        keep &= ~far[:, None]
    r = torch.where(keep, torch.exp(log_r.clamp(_LOG_R_FLOOR, 0.0)), 0.0).clamp(max=_R_CEIL)
    return -torch.log1p(-r).sum(0), far


@final
class _Fusable(Generic[_R]):
    """A tile step ``step(fused, *tensors)``, run compiled when asked and eager otherwise."""

    def __init__(self, step: Callable[..., _R]) -> None:
        self._step, self._compiled = step, cast(Callable[..., _R] | None, None)
        self.failure: str | None = None

    def __call__(self, use_compile: bool, *args: Tensor | bool) -> _R:
        if use_compile and self.failure is None:
            try:
                if self._compiled is None:
                    import torch
                    self._compiled = cast(Callable[..., _R], torch.compile(self._step))
                return self._compiled(True, *args)
            except Exception as exc:  # noqa: BLE001 - any compiler failure: run eagerly
                self.failure = (f"{type(exc).__name__}: {exc}".splitlines() or ["?"])[0]
                warnings.warn(f"torch.compile failed, the torch backend runs eagerly: "
                              f"{self.failure}", RuntimeWarning, stacklevel=3)
        return self._step(False, *args)


_LSE: Final = _Fusable(_lse_step)
_INTERACTION: Final = _Fusable(_interaction_step)


@final
class TorchMixture:
    """A mixture prepared on a torch device; built by :meth:`TorchBackend.prepare`.

    Satisfies :class:`elbo_audit._kernels.protocol.MixtureKernels`: every kernel takes
    numpy float64 draws, moves them to the device and returns numpy float64.
    """

    def __init__(self, mean: NDArray[np.float64], std: NDArray[np.float64],
                 log_weights: NDArray[np.float64], precision: Precision, device: torch.device,
                 use_compile: bool) -> None:  # fmt: skip
        import torch
        self.n_components, d = mean.shape
        self.n_latent = d
        live = np.flatnonzero(np.isfinite(log_weights))  # zero weights: left out, exactly 0
        mean, std, log_weights = mean[live], std[live], log_weights[live]
        self._m_live = m = live.size
        self._precision: Precision = precision
        self.device, self.compiled = device, use_compile
        self._dtype = torch.float32 if precision == "float32" else torch.float64
        a = 1.0 / (math.sqrt(2.0) * std)
        log_std = np.log(std)
        c = log_weights - log_std.sum(axis=1) - 0.5 * d * _LOG_2PI
        cm = log_weights[:, None] - log_std - 0.5 * _LOG_2PI  # (M, D): the marginals
        self._offset = float(c.mean()) if m else 0.0
        self._offsets = cm.mean(axis=0) if m else np.zeros(d)

        def put(x: NDArray[np.float64], dtype: torch.dtype = self._dtype) -> Tensor:
            return torch.from_numpy(np.ascontiguousarray(x)).to(device=device, dtype=dtype)

        self._a, self._b = put(a.T), put((-mean * a).T)  # (D, M)
        self._c, self._cm = put(c - self._offset), put((cm - self._offsets).T)
        self._abc64 = (self._a, self._b, self._c) if precision == "float64" else tuple(
            put(x, torch.float64) for x in (a.T, (-mean * a).T, c - self._offset))
        self._live, self._cols = live, torch.from_numpy(live).to(device)  # for the owners

    @property
    def precision(self) -> Precision:
        return self._precision

    def _tiles(self, depth: int) -> tuple[int, int]:
        """(draws, components) per tile: float64 intermediates (S, M) of at most TILE_BYTES,
        and compiled, the (draws, components, depth) broadcast too, were it materialised."""
        if self.device.type == "cpu" and not self.compiled:
            return _CPU_TILE, _CPU_TILE
        per_pair = max(8, self._a.element_size() * depth) if self.compiled else 8
        pairs = max(1, TILE_BYTES // per_pair)
        rows = min(4096, pairs)
        return rows, max(1, pairs // rows)

    def _draws(self, z: NDArray[np.float64], dtype: torch.dtype | None = None) -> Tensor:
        import torch
        z = checked_draws(z, self.n_latent)
        return torch.from_numpy(z).to(device=self.device, dtype=dtype or self._dtype)

    def _lse(self, z: Tensor, a: Tensor, b: Tensor, c: Tensor) -> Tensor:
        """logsumexp_m [c_m - sum_d (z_sd a_dm + b_dm)^2] over component tiles, float64."""
        import torch
        mt = self._tiles(z.shape[1])[1]
        run_max = torch.full((z.shape[0],), -math.inf, dtype=torch.float64, device=self.device)
        run_sum = torch.zeros_like(run_max)
        for m0 in range(0, self._m_live, mt):
            sl = slice(m0, m0 + mt)
            run_max, run_sum = _LSE(self.compiled, z, a[:, sl], b[:, sl], c[sl], run_max, run_sum)
        return run_max + torch.log(run_sum)

    def log_density(self, z: NDArray[np.float64]) -> NDArray[np.float64]:
        """log q(z_s) = logsumexp_m [log w_m + log N(z_s; mu_m, diag sigma_m^2)], (S, D) -> (S,).

        References
        ----------
        .. [1] Hoffman and Johnson (2016); the streaming logsumexp: Milakov and Gimelshein (2018).
        """
        import torch
        zt = self._draws(z)
        st = self._tiles(self.n_latent)[0]
        with torch.no_grad():
            parts = [self._lse(zt[i : i + st], self._a, self._b, self._c)
                     for i in range(0, zt.shape[0], st)]
            out = torch.cat(parts) if parts else zt.new_zeros(0, dtype=torch.float64)
        return np.asarray(out.cpu().numpy(), dtype=np.float64) + self._offset

    def log_marginals(self, z: NDArray[np.float64]) -> NDArray[np.float64]:
        """log q_j(z_sj) = logsumexp_m [log w_m + log N(z_sj; mu_mj, sigma_mj^2)], (S, D) -> (S, D).

        References
        ----------
        .. [1] R. T. Q. Chen, X. Li, R. Grosse and D. Duvenaud, "Isolating sources of
           disentanglement in variational autoencoders", NeurIPS 2018.
        """
        import torch
        zt = self._draws(z)
        st = self._tiles(self.n_latent)[0]
        out = torch.empty(zt.shape, dtype=torch.float64, device=self.device)
        with torch.no_grad():
            for i in range(0, zt.shape[0], st):
                for j in range(self.n_latent):  # a one-dimensional mixture per dimension
                    out[i : i + st, j] = self._lse(
                        zt[i : i + st, j : j + 1], self._a[j : j + 1], self._b[j : j + 1],
                        self._cm[j])  # fmt: skip
        return np.asarray(out.cpu().numpy(), dtype=np.float64) + self._offsets

    def interaction(
        self, z: NDArray[np.float64], owner: NDArray[np.int64], log_qz: NDArray[np.float64]
    ) -> NDArray[np.float64]:
        """R_m = sum over draws s with owner(s) != m (-1: none) of -log(1 - r_m(z_s)), -> (M,).

        ``r_m = exp(log w_m N(z_s) - log_qz_s)``, clipped at 1 - 1e-12; pairs with log r
        below -80 are dropped (zero-weight columns are exactly 0).

        References
        ----------
        .. [1] W. Hoeffding, "A class of statistics with asymptotically normal
           distribution", Annals of Mathematical Statistics 19, 1948.
        """
        import torch
        zt = self._draws(z)
        s = zt.shape[0]
        own_np, lq_np = checked_interaction_inputs(owner, log_qz, s, self.n_components)
        own, lq = (torch.from_numpy(x).to(self.device) for x in (own_np, lq_np - self._offset))
        st, mt = self._tiles(self.n_latent)
        out = torch.zeros(self._m_live, dtype=torch.float64, device=self.device)
        refine, z64 = self._precision == "float32", None
        with torch.no_grad():
            for i in range(0, s, st):
                rows, flags = slice(i, i + st), []
                for m0 in range(0, self._m_live, mt):
                    sl = slice(m0, m0 + mt)
                    part, far = _INTERACTION(
                        self.compiled, refine, zt[rows], self._a[:, sl], self._b[:, sl],
                        self._c[sl], lq[rows], own[rows], self._cols[sl])  # fmt: skip
                    out[sl] += part
                    flags.append((sl, far))
                hits = torch.stack([f.any() for _, f in flags]).tolist() if refine and flags else []
                for (sl, far), hit in zip(flags, hits, strict=False):
                    if hit:  # the flagged rows of this tile in float64
                        z64 = self._draws(z, torch.float64) if z64 is None else z64
                        idx, (a64, b64, c64) = far.nonzero()[:, 0] + i, self._abc64
                        out[sl] += _interaction_step(
                            False, False, z64[idx], a64[:, sl], b64[:, sl], c64[sl], lq[idx],
                            own[idx], self._cols[sl])[0]  # fmt: skip
        full = np.zeros(self.n_components)
        full[self._live] = out.cpu().numpy()
        return full


@final
class TorchBackend:
    """PyTorch kernels on the CPU or a CUDA device, float32 or float64.

    Satisfies :class:`elbo_audit._kernels.protocol.ComputeBackend`. Constructing it and
    asking for its availability, devices, ``speed_rank`` and ``default_device`` does not
    import torch on a machine that cannot have CUDA (``elbo-audit backends`` stays quick).
    """

    name: Final = "torch"

    @property
    def speed_rank(self) -> int:
        """30 where CUDA is available (ahead of the CPU backends), else 5."""
        return 30 if cuda_available() else 5

    @property
    def default_device(self) -> str:
        """``cuda`` where it is available, else ``cpu``."""
        return "cuda" if cuda_available() else "cpu"

    def availability(self) -> str | None:
        """None when torch is installed (it is imported when a mixture is prepared)."""
        if "torch" in sys.modules or importlib.util.find_spec("torch") is not None:
            return None
        return "torch is not installed (pip install torch)"

    def devices(self) -> tuple[str, ...]:
        """``cpu``, and ``cuda``, ``cuda:0``, ... where CUDA is available."""
        if not cuda_available():
            return ("cpu",)
        import torch
        return ("cpu", "cuda", *(f"cuda:{i}" for i in range(torch.cuda.device_count())))

    def prepare(self, mean: NDArray[np.float64], std: NDArray[np.float64],
                log_weights: NDArray[np.float64] | None = None, *,
                precision: Precision = "float64", device: str = "cpu") -> TorchMixture:  # fmt: skip
        """Prepare the mixture (M, D) with log weights (M,) (uniform when None) on ``device``."""
        if precision not in PRECISIONS:
            raise ValueError(f"unknown precision {precision!r}; expected one of {PRECISIONS}")
        mean, std, log_w = checked_components(mean, std, log_weights)
        if (dev := _device(device)).type == "cuda":
            strict_float32()
        return TorchMixture(mean, std, log_w, precision, dev, _compile_wanted(dev.type))


def _device(name: str) -> torch.device:
    """The torch device named ``cpu``, ``cuda`` or ``cuda:N``; ValueError for any other."""
    import torch
    try:
        dev = torch.device(name)
    except (RuntimeError, TypeError, ValueError) as exc:
        raise ValueError(f"unknown device {name!r}") from exc
    if dev.type not in ("cpu", "cuda"):
        raise ValueError(f"the torch backend runs on cpu and cuda devices, not {name!r}")
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {name!r}: CUDA is not available here")
    if dev.type == "cuda" and (dev.index or 0) >= torch.cuda.device_count():
        raise ValueError(f"device {name!r}: only {torch.cuda.device_count()} CUDA device(s)")
    return dev
