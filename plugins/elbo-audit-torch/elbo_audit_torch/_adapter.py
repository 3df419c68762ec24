"""The PyTorch adapter: wraps a VAE so that the core sees numpy arrays only.

The core draws every random number (numpy) and hands the adapter data batches
and latents z in float64; the adapter runs the network under ``torch.no_grad()``
in ``eval()`` mode on the requested device, in the network's dtype, and returns
posterior parameters and log-likelihoods as float64 numpy arrays.
Per-element log-likelihoods are summed over a data point's dimensions in
float64, so a float32 network loses no accuracy in the sum.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from elbo_audit import AuditError, AuditModel, EncodeDecode, ModelError, ModelRef, UsageError

from ._networks import TorchDecoder, TorchEncoder, _Context
from ._priors import build_prior
from ._spec import TorchVAE
from ._weights import extract_state_dict, load_into, read_weights, torch_load

__all__ = ["LoadedModule", "claims", "load_file", "to_spec", "wrap"]


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
