"""The PyTorch adapter: wraps a VAE so that the core sees numpy arrays only.

The core draws every random number (numpy) and hands the adapter data batches
and latents z in float64; the adapter runs the network under ``torch.no_grad()``
in ``eval()`` mode on the requested device, in the network's dtype, and returns
posterior parameters and log-likelihoods as float64 numpy arrays.
Per-element log-likelihoods are summed over a data point's dimensions in
float64, so a float32 network loses no accuracy in the sum.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import distributions as td

from elbo_audit import (
    AuditError,
    AuditModel,
    EncodeDecode,
    LazyStandardNormal,
    ModelError,
    ModelRef,
    StandardNormal,
    UsageError,
    vamp_prior,
)
from elbo_audit import Prior as CorePrior

from ._networks import TorchDecoder, TorchEncoder, _Context, _np64, full_precision
from ._spec import TorchPrior, TorchVAE, VampPrior
from ._weights import extract_state_dict, load_into, read_weights, torch_load

__all__ = ["LoadedModule", "claims", "load_file", "to_spec", "wrap"]

_PRIOR_CHUNK = 8192


class LoadedModule:
    """A module opened from a whole-model file (already holds its weights)."""

    def __init__(self, module: Any, path: Path) -> None:
        self.module = module
        self.path = path


# ----------------------------------------------------------------------------- claims


def _is_vae_module(obj: Any) -> bool:
    if not isinstance(obj, torch.nn.Module):
        return False
    if callable(getattr(obj, "elbo_audit_spec", None)):
        return True
    return isinstance(getattr(obj, "encoder", None), torch.nn.Module) and isinstance(
        getattr(obj, "decoder", None), torch.nn.Module
    )


def _is_module_pair(obj: Any) -> bool:
    """An ``elbo_audit.audit((encoder, decoder), ...)`` pair of two ``nn.Module`` objects."""
    return isinstance(obj, EncodeDecode) and all(
        isinstance(f, torch.nn.Module) for f in (obj.encode, obj.decode)
    )


def claims(obj: Any) -> bool:
    """Whether the torch adapter handles ``obj``."""
    if isinstance(obj, LoadedModule):
        return _is_vae_module(obj.module)
    return isinstance(obj, TorchVAE) or _is_vae_module(obj) or _is_module_pair(obj)


def to_spec(obj: Any) -> TorchVAE:
    """The :class:`TorchVAE` spec of a claimed object."""
    if isinstance(obj, LoadedModule):
        obj = obj.module
    if isinstance(obj, TorchVAE):
        return obj
    if _is_module_pair(obj):
        return TorchVAE(encoder=obj.encode, decoder=obj.decode, prior=obj.prior,
                        likelihood=obj.likelihood, posterior=obj.posterior)
    if isinstance(obj, torch.nn.Module):
        make = getattr(obj, "elbo_audit_spec", None)
        if callable(make):
            spec = make()
            if not isinstance(spec, TorchVAE):
                raise ModelError(
                    f"{type(obj).__name__}.elbo_audit_spec() returned {type(spec).__name__}, "
                    "expected elbo_audit_torch.TorchVAE"
                )
            return spec if spec.module is not None else replace(spec, module=obj)
        if _is_vae_module(obj):
            like = getattr(obj, "likelihood", None)
            return TorchVAE(
                encoder=obj.encoder,
                decoder=obj.decoder,
                prior=getattr(obj, "prior", None),
                likelihood=like if isinstance(like, str) or callable(like) else None,
                module=obj,
                latent_dim=_int_attr(obj, ("latent_dim", "z_dim", "n_latent")),
            )
    raise ModelError(
        f"the torch adapter cannot use a {type(obj).__name__}: return a TorchVAE, or an "
        "nn.Module with encoder and decoder children or an elbo_audit_spec() method"
    )


def _int_attr(obj: Any, names: tuple[str, ...]) -> int | None:
    for n in names:
        v = getattr(obj, n, None)
        if isinstance(v, int) and not isinstance(v, bool) and v > 0:
            return v
    return None


# ----------------------------------------------------------------------------- priors


def _as_float64(dist: td.Distribution) -> td.Distribution:
    """The same distribution with float64 parameters on the CPU, where we know how."""
    if isinstance(dist, td.Normal):
        return td.Normal(_cpu64(dist.loc), _cpu64(dist.scale), validate_args=False)
    if isinstance(dist, td.Independent):
        return td.Independent(
            _as_float64(dist.base_dist), dist.reinterpreted_batch_ndims, validate_args=False
        )
    if isinstance(dist, td.MixtureSameFamily):
        mix = td.Categorical(logits=_cpu64(dist.mixture_distribution.logits), validate_args=False)
        return td.MixtureSameFamily(mix, _as_float64(dist.component_distribution), validate_args=False)
    return dist


def _cpu64(t: torch.Tensor) -> torch.Tensor:
    return t.detach().to("cpu", torch.float64)


def _univariate_base(dist: td.Distribution) -> td.Distribution | None:
    """The per-dimension distribution of a factorised prior over (D,), else None."""
    if isinstance(dist, td.Independent) and dist.reinterpreted_batch_ndims == 1:
        base = dist.base_dist
        if tuple(base.event_shape) == () and len(base.batch_shape) == 1:
            return base  # type: ignore[no-any-return]
        return None
    if tuple(dist.event_shape) == () and len(dist.batch_shape) == 1:
        return dist
    return None


class TorchDistributionPrior:
    """A prior given as a ``torch.distributions`` object over (D,).

    ``log_prob`` is evaluated by torch (in float64 for Normal, Independent and
    MixtureSameFamily of Normals); ``cross_entropy`` is the closed form when
    the prior is a diagonal Gaussian; ``sample`` uses the core's numpy
    generator for Gaussians and Gaussian mixtures.
    """

    def __init__(self, dist: td.Distribution, where: str, name: str | None = None) -> None:
        shape = tuple(dist.batch_shape) + tuple(dist.event_shape)
        if len(shape) != 1:
            raise ModelError(
                f"{where}: the prior {type(dist).__name__} has shape {shape}; expected (D,) "
                "(use Independent(Normal(loc, scale), 1) or Normal with loc of shape (D,))"
            )
        self.where = where
        self.dist = _as_float64(dist)
        self._d = int(shape[0])
        self.name = name or _dist_name(dist)
        base = _univariate_base(self.dist)
        self.factorised = base is not None
        self._base = base
        self._gauss: tuple[np.ndarray, np.ndarray] | None = None
        if isinstance(base, td.Normal):
            loc = np.broadcast_to(_np64(base.loc), (self._d,)).copy()
            scale = np.broadcast_to(_np64(base.scale), (self._d,)).copy()
            self._gauss = (loc, scale)
        if self._gauss is not None:
            loc_, scale_ = self._gauss
            # only Gaussian priors have a closed-form cross-entropy (the core looks it up)
            self.cross_entropy = lambda q: q.cross_entropy_gaussian(loc_, scale_)
        self._mixture: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None
        if isinstance(self.dist, td.MixtureSameFamily):
            comp = self.dist.component_distribution
            if isinstance(comp, td.Independent) and isinstance(comp.base_dist, td.Normal):
                k = int(self.dist.mixture_distribution.logits.shape[-1])
                self._mixture = (
                    _np64(self.dist.mixture_distribution.probs),
                    np.broadcast_to(_np64(comp.base_dist.loc), (k, self._d)).copy(),
                    np.broadcast_to(_np64(comp.base_dist.scale), (k, self._d)).copy(),
                )

    @property
    def n_latent(self) -> int:
        return self._d

    def _eval(self, dist: td.Distribution, z: np.ndarray) -> np.ndarray:
        z = np.asarray(z, dtype=np.float64)
        dtype = dist.mean.dtype if _has_mean(dist) else torch.float64
        out = []
        with torch.no_grad():
            for s in range(0, z.shape[0], _PRIOR_CHUNK):
                zt = torch.as_tensor(z[s : s + _PRIOR_CHUNK]).to(dtype)
                dev = _device_of(dist)
                out.append(_np64(dist.log_prob(zt.to(dev))))
        return np.concatenate(out) if out else np.zeros((0,) + z.shape[1:])

    def log_prob(self, z: np.ndarray) -> np.ndarray:
        lp = self._eval(self.dist, z)
        if lp.ndim == 2:  # Normal with batch shape (D,): per dimension
            lp = lp.sum(axis=1)
        return lp

    def grad_log_prob(self, z: np.ndarray) -> np.ndarray:
        """d log p(z) / dz by torch autograd (rows independent), shape (S, D)."""
        z = np.asarray(z, dtype=np.float64)
        dtype = self.dist.mean.dtype if _has_mean(self.dist) else torch.float64
        out = []
        with torch.enable_grad():
            for s in range(0, z.shape[0], _PRIOR_CHUNK):
                zt = torch.as_tensor(z[s : s + _PRIOR_CHUNK]).to(dtype).to(_device_of(self.dist))
                zt.requires_grad_(True)
                lp = self.dist.log_prob(zt)
                (g,) = torch.autograd.grad(lp.sum(), zt)
                out.append(_np64(g))
        return np.concatenate(out) if out else np.zeros(z.shape)

    def marginal_log_prob(self, z: np.ndarray) -> np.ndarray:
        if self._base is None:
            raise ModelError(f"{self.where}: prior {self.name!r} is not factorised")
        return self._eval(self._base, z)

    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray:
        if self._gauss is not None:
            loc, scale = self._gauss
            return loc + scale * rng.standard_normal((n, self._d))
        if self._mixture is not None:
            w, mean, std = self._mixture
            k = rng.choice(w.size, size=n, p=w / w.sum())
            return mean[k] + std[k] * rng.standard_normal((n, self._d))
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(rng.integers(2**62)))
            return _np64(self.dist.sample((n,)))


def _has_mean(dist: td.Distribution) -> bool:
    try:
        return isinstance(dist.mean, torch.Tensor)
    except (NotImplementedError, AttributeError):
        return False


def _device_of(dist: td.Distribution) -> torch.device:
    for v in vars(dist).values():
        if isinstance(v, torch.Tensor):
            return v.device
        if isinstance(v, td.Distribution):
            return _device_of(v)
    return torch.device("cpu")


def _dist_name(dist: td.Distribution) -> str:
    if isinstance(dist, td.Independent):
        return _dist_name(dist.base_dist)
    if isinstance(dist, td.Normal):
        return "gaussian"
    if isinstance(dist, td.MixtureSameFamily):
        return "mixture"
    return type(dist).__name__.lower()


class TorchCallablePrior:
    """A prior given by a torch log-density callable (see :class:`TorchPrior`)."""

    def __init__(self, spec: TorchPrior, ctx: _Context) -> None:
        self.spec = spec
        self.ctx = ctx
        self.name = spec.name
        self.factorised = spec.marginal_log_prob is not None

    @property
    def n_latent(self) -> int:
        d = self.spec.n_latent or self.ctx.n_latent
        if d is None:
            raise ModelError(
                f"{self.ctx.where()}: the latent size is unknown until the encoder has run; "
                "give TorchPrior(n_latent=...)"
            )
        return int(d)

    def _call(self, fn: Callable[[Any], Any], z: np.ndarray, ndim: int, label: str) -> np.ndarray:
        z = np.asarray(z, dtype=np.float64)
        out = []
        with torch.no_grad(), full_precision(self.ctx.device):
            for s in range(0, z.shape[0], _PRIOR_CHUNK):
                zt = self.ctx.tensor(z[s : s + _PRIOR_CHUNK])
                r = fn(zt)
                r = _np64(r) if isinstance(r, torch.Tensor) else np.asarray(r, np.float64)
                if r.shape != zt.shape[: ndim]:
                    raise ModelError(
                        f"{self.ctx.where()}: prior {label} returned shape {r.shape}, expected "
                        f"{tuple(zt.shape[:ndim])}"
                    )
                out.append(r)
        return np.concatenate(out) if out else np.zeros(z.shape[:ndim])

    def log_prob(self, z: np.ndarray) -> np.ndarray:
        return self._call(self.spec.log_prob, z, 1, "log_prob")

    def marginal_log_prob(self, z: np.ndarray) -> np.ndarray:
        if self.spec.marginal_log_prob is None:
            raise ModelError(f"{self.ctx.where()}: prior {self.name!r} is not factorised")
        return self._call(self.spec.marginal_log_prob, z, 2, "marginal_log_prob")

    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray:
        if self.spec.sample is None:
            raise ModelError(f"{self.ctx.where()}: prior {self.name!r} has no sampler")
        s = self.spec.sample(rng, n)
        return _np64(s) if isinstance(s, torch.Tensor) else np.asarray(s, np.float64)


def _zero_arg_callable(obj: Any) -> bool:
    if isinstance(obj, torch.nn.Module):
        fn = obj.forward
    elif callable(obj):
        fn = obj
    else:
        return False
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        return False
    return all(
        p.default is not inspect.Parameter.empty or p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
        for p in sig.parameters.values()
    )


def _is_core_prior(obj: Any) -> bool:
    return (
        not isinstance(obj, (torch.nn.Module, td.Distribution))
        and isinstance(obj, CorePrior)
    )


def build_prior(prior: Any, ctx: _Context, encoder: TorchEncoder) -> Any:
    """Turn what the spec says about the prior into a core :class:`elbo_audit.Prior`."""
    where = ctx.where()
    if prior is None or prior == "standard_normal":
        if ctx.n_latent is not None:
            return StandardNormal(ctx.n_latent)
        return LazyStandardNormal(lambda: ctx.n_latent, where, "give TorchVAE(latent_dim=...)")
    if isinstance(prior, str):
        raise UsageError(f"{where}: unknown prior {prior!r} (a torch distribution or 'standard_normal')")
    if isinstance(prior, VampPrior):
        pseudo = prior.pseudo_inputs
        if isinstance(pseudo, torch.nn.Module) or (
            callable(pseudo) and not isinstance(pseudo, torch.Tensor)
        ):
            with torch.no_grad():
                pseudo = pseudo()
        if isinstance(pseudo, torch.Tensor):
            pseudo = pseudo.detach().cpu().numpy()
        q = encoder.encode(np.asarray(pseudo))
        return vamp_prior(q)
    if isinstance(prior, TorchPrior):
        return TorchCallablePrior(prior, ctx)
    if isinstance(prior, td.Distribution):
        return TorchDistributionPrior(prior, where)
    if _is_core_prior(prior):
        return prior
    if _zero_arg_callable(prior):
        with torch.no_grad():
            dist = prior()
        if not isinstance(dist, td.Distribution):
            raise ModelError(
                f"{where}: the prior {type(prior).__name__}() returned {type(dist).__name__}, "
                "expected a torch.distributions.Distribution"
            )
        return TorchDistributionPrior(dist, where)
    log_prob = getattr(prior, "log_prob", None)
    if callable(log_prob):
        return TorchCallablePrior(TorchPrior(log_prob, name=type(prior).__name__.lower()), ctx)
    raise ModelError(
        f"{where}: cannot use a {type(prior).__name__} as the prior; give a torch distribution, "
        "a module returning one, a TorchPrior or a VampPrior"
    )


# ----------------------------------------------------------------------------- wrap


def _device(ref: ModelRef) -> torch.device:
    try:
        dev = torch.device(ref.device)
    except RuntimeError as exc:
        raise UsageError(f"model {ref.name!r}: unknown device {ref.device!r}: {exc}") from exc
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise UsageError(
            f"model {ref.name!r}: device {ref.device!r} requested but torch sees no CUDA device"
        )
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise UsageError(f"model {ref.name!r}: no {ref.device} (have {torch.cuda.device_count()})")
    return dev


class _Container(torch.nn.Module):
    def __init__(self, **children: torch.nn.Module) -> None:
        super().__init__()
        for k, v in children.items():
            self.add_module(k, v)


def _root_module(spec: TorchVAE) -> torch.nn.Module:
    if isinstance(spec.module, torch.nn.Module):
        return spec.module
    children = {
        k: v
        for k, v in (("encoder", spec.encoder), ("decoder", spec.decoder), ("prior", spec.prior))
        if isinstance(v, torch.nn.Module)
    }
    return _Container(**children)


def _model_dtype(root: torch.nn.Module, spec: TorchVAE) -> torch.dtype:
    if spec.precision == "float64":
        return torch.float64
    if spec.precision == "float32":
        return torch.float32
    if spec.precision != "model":
        raise UsageError(f"precision={spec.precision!r}; expected 'model', 'float32' or 'float64'")
    for p in list(root.parameters()) + list(root.buffers()):
        if p.is_floating_point():
            return p.dtype
    return torch.get_default_dtype()


def wrap(obj: Any, ref: ModelRef) -> AuditModel:
    """Load ``ref.weights`` (safely) into the model ``obj`` and wrap it as an AuditModel.

    Raises
    ------
    UnsafeArtifactError
        The weights file holds pickled objects and ``ref.allow_unsafe`` is false.
    ModelError, UsageError
        The weights do not fit, the device does not exist, the spec is unusable.
    """
    try:
        return _wrap(obj, ref)
    except AuditError as exc:
        if str(exc).startswith("model "):
            raise
        raise type(exc)(f"model {ref.name!r}: {exc}") from exc


def _wrap(obj: Any, ref: ModelRef) -> AuditModel:
    spec = to_spec(obj)
    if spec.encoder is None:
        raise ModelError(f"model {ref.name!r}: the TorchVAE has no encoder")
    device = _device(ref)
    root = _root_module(spec)
    modules = [m for m in {id(m): m for m in (root, spec.encoder, spec.decoder, spec.prior)}.values()
               if isinstance(m, torch.nn.Module)]
    dtype = _model_dtype(root, spec)
    caller = _CallerState(modules)
    if spec.precision != "model":
        # convert before loading, so float64 weights in a file keep every digit
        for m in modules:
            m.to(dtype=dtype)
    attrs: dict[str, Any] = {}
    if ref.weights is not None and not isinstance(obj, LoadedModule):
        path = Path(ref.weights)
        state = extract_state_dict(read_weights(path, ref.allow_unsafe), path)
        load_into(root, state, path)
        attrs["weights_format"] = path.suffix.lower().lstrip(".") or "torch"
    for m in modules:
        m.to(device=device)
        m.eval()
    ctx = _Context(ref.name, device, dtype, ref.batch_size)
    if spec.latent_dim is not None:
        ctx.n_latent = int(spec.latent_dim)
    encoder = TorchEncoder(spec.encoder, ctx, spec.posterior)
    decoder = TorchDecoder(spec.decoder, ctx, spec.likelihood) if spec.decoder is not None else None
    prior = build_prior(spec.prior, ctx, encoder)
    attrs.update(
        {
            "torch_version": torch.__version__,
            "device": str(device),
            "dtype": str(dtype).removeprefix("torch."),
        }
    )
    return AuditModel(ref.name, encoder, prior, decoder, adapter="torch", attrs=attrs, release=caller.restore)


class _CallerState:
    """Where the caller's modules were and whether they were training, to put back.

    The audit moves the modules to its device (and dtype, for ``precision``) and
    into eval mode; :meth:`restore` (``AuditModel.close``) returns every parameter
    and buffer to its own device and dtype, in place, so the caller's
    ``nn.Parameter`` objects (and optimizers holding them) stay the same, and
    every submodule to its own ``training`` flag.
    """

    def __init__(self, modules: list[torch.nn.Module]) -> None:
        subs = {id(s): s for m in modules for s in m.modules()}.values()
        self.training = [(s, s.training) for s in subs]
        self.params = [(p, p.device, p.dtype) for p in {id(p): p for s in subs for p in s.parameters(recurse=False)}.values()]
        self.buffers = [
            (s, name, b.device, b.dtype) for s in subs for name, b in s.named_buffers(recurse=False)
        ]

    def restore(self) -> None:
        with torch.no_grad():
            for p, device, dtype in self.params:
                if p.device != device or p.dtype != dtype:
                    p.data = p.data.to(device=device, dtype=dtype)
            for s, name, device, dtype in self.buffers:
                b = s._buffers.get(name)
                if b is not None and (b.device != device or b.dtype != dtype):
                    s._buffers[name] = b.to(device=device, dtype=dtype)
        for s, flag in self.training:
            s.training = flag


def load_file(path: Path, ref: ModelRef) -> LoadedModule:
    """Open a whole-model ``.pt``/``.pth`` file (only with ``ref.allow_unsafe``)."""
    obj = torch_load(Path(path), ref.allow_unsafe)
    if isinstance(obj, torch.nn.Module):
        return LoadedModule(obj, Path(path))
    raise UsageError(
        f"model {ref.name!r}: {path} holds weights but no architecture; name the model with "
        "--model module:function (or file.py:function) and pass this file as --weights"
    )
