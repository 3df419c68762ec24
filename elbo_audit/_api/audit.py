"""``elbo_audit.audit(model, data, ...)``: the CLI's audit of a model object in memory.

The object is handed to the adapter whose ``claims`` accepts it (a torch
``nn.Module`` or ``TorchVAE``, a ``JaxVAE``, a fitted scikit-learn
FactorAnalysis or PCA, ...), exactly as ``elbo-audit run`` hands it the object
a factory returned; the audit, the bootstrap and the report are the CLI's own
code (:mod:`elbo_audit._report.assemble`), so the numbers are the CLI's for
the same parameters, data and seed.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import fields
from typing import Any

from .._audit.audit import ModelAudit, audit_model
from .._cli import progress
from .._cli.backends import resolve_engine
from .._cli.config import PriorEntry, RunConfig
from .._cli.io import array_sha256, binarize_grey_levels
from .._cli.models import pick_adapter, wrap_object
from .._cli.plugins import PluginHost
from .._cli.run_setup import (
    OVERRIDES,
    audit_settings_of,
    check_gate_targets,
    check_prior,
    parse_prior_option,
    prior_makers_for,
    warn_unmet_targets,
)
from .._errors import UsageError
from .._model.families import DiagonalGaussian
from .._model.protocols import AuditModel, Prior
from .._report.assemble import assemble_report, judge_gates
from .._report.gates import parse_gate
from .._reporting import SILENT, Reporter
from ..hookspecs import ModelRef
from .data import as_array, check_points
from .pair import EncodeDecode, as_pair, wrap_pair
from .result import AuditResult

__all__ = ["audit", "audit_settings", "prepare_model"]

#: Settings by their config-file name, or by the CLI's option name (``bootstrap`` for ``resamples``).
_NAMES = {f.name for f in fields(RunConfig)} | set(OVERRIDES)
_NOT_SETTINGS = {"data_name", "data_path", "data_key", "posteriors", "native_prior", "models",
                 "priors", "out", "source", "gates"}


def audit_settings(settings: Mapping[str, Any]) -> RunConfig:
    """A :class:`RunConfig` with ``settings`` (config-file or CLI names) laid over the defaults.

    Raises
    ------
    UsageError
        A name that is not a setting.
    """
    cfg = RunConfig()
    for key, value in settings.items():
        attr = OVERRIDES.get(key, key)
        if key not in _NAMES or attr in _NOT_SETTINGS:
            known = sorted(n for n in _NAMES if n not in _NOT_SETTINGS)
            raise UsageError(f"audit(): unknown setting {key!r} (settings: {', '.join(known)})")
        setattr(cfg, attr, value)
    return cfg


def _device_of(obj: Any) -> str | None:
    """The device of a module's first parameter, by duck typing (no framework import)."""
    params = getattr(obj, "parameters", None)
    if not callable(params):
        return None
    try:
        first = next(iter(params()), None)
    except Exception:  # noqa: BLE001 - not a module after all
        return None
    dev = getattr(first, "device", None)
    return None if dev is None else str(dev)


def prepare_model(
    model: Any,
    *,
    name: str,
    host: PluginHost,
    adapter: str | None = None,
    device: str | None = None,
    batch_size: int = 1000,
) -> AuditModel:
    """Wrap an object in memory as an :class:`AuditModel` through the adapters' ``claims``.

    An :class:`AuditModel` is used as it is. Any other object goes to the
    adapter named by ``adapter``, else to the first whose ``claims`` accepts
    it; its own parameters are audited (``weights`` in the report's
    ``model_attrs`` says so).
    """
    if isinstance(model, AuditModel):
        model.name = name
        return model
    if isinstance(model, EncodeDecode) and adapter is None and not _claimed(model, host):
        return wrap_pair(model, name)
    ref = ModelRef(
        name=name,
        adapter=adapter,
        device=device or _device_of(model.encode if isinstance(model, EncodeDecode) else model) or "cpu",
        batch_size=batch_size,
        no_weights=True,
    )
    plugin, info = pick_adapter(model, ref, host)
    attrs: dict[str, Any] = {
        "allow_unsafe": 0,
        "object": f"{type(model).__module__}.{type(model).__qualname__}",
        "weights": "in memory (the object's own parameters)",
    }
    return wrap_object(model, ref, plugin, info, attrs)


def _claimed(model: Any, host: PluginHost) -> bool:
    """Whether an adapter's ``claims`` accepts ``model`` (an error while asking is raised later)."""
    for _, info in host.adapters().values():
        try:
            if info.claims(model):
                return True
        except Exception:  # noqa: BLE001 - pick_adapter raises it with the adapter's name
            return True
    return False


def _prior_entries(priors: Any) -> tuple[list[PriorEntry], dict[str, Prior]]:
    """CLI strings (``mog=fitted_mixture,components=10``), or a mapping label -> family/options/Prior."""
    if priors is None:
        return [], {}
    if isinstance(priors, str):
        priors = [priors]
    if isinstance(priors, Mapping):
        entries, ready = [], {}
        for label, spec in priors.items():
            if isinstance(spec, Prior):
                ready[str(label)] = spec
            elif isinstance(spec, str):
                entries.append(PriorEntry(str(label), spec, {}))
            elif isinstance(spec, Mapping) and isinstance(spec.get("family"), str):
                opts = {k: v for k, v in spec.items() if k != "family"}
                entries.append(PriorEntry(str(label), spec["family"], opts))
            else:
                raise UsageError(
                    f"audit(): priors[{label!r}]: expected a family name, a dict with 'family', or a Prior"
                )
        return entries, ready
    if isinstance(priors, Sequence):
        return [parse_prior_option(str(p)) for p in priors], {}
    raise UsageError(f"audit(): priors must be a list of '[LABEL=]FAMILY[,KEY=VALUE...]' or a mapping, "
                     f"got {type(priors).__name__}")


@contextlib.contextmanager
def _progress(show: bool) -> Iterator[Reporter]:
    if not show:
        yield SILENT
        return
    with progress.enabled(sys.stderr):
        yield progress.REPORTER


def audit(
    model: Any,
    data: Any,
    *,
    priors: Any = None,
    name: str = "model",
    prior: Any = None,
    posterior: str | None = None,
    likelihood: str | None = None,
    adapter: str | None = None,
    gates: Sequence[str] = (),
    data_name: str = "in-memory",
    show_progress: bool = False,
    **settings: Any,
) -> AuditResult:
    """Audit a model object in memory: the ELBO-surgery decomposition with its errors and intervals.

    Parameters
    ----------
    model : object
        What a factory of ``elbo-audit run --model`` may return: a torch
        ``nn.Module`` with ``encoder`` and ``decoder`` (or a ``TorchVAE``), a
        ``JaxVAE`` of pure functions and params, a fitted scikit-learn
        ``FactorAnalysis`` or ``PCA``, or an :class:`AuditModel`. Its own
        parameters are audited; a torch module runs on its own device.
        Or a pair ``(encode, decode)`` of callables (or an
        :class:`~elbo_audit._api.pair.EncodeDecode`): ``encode(x)`` maps a
        numpy batch to ``(mean, log_std)`` arrays or tensors, ``decode(z)``
        maps latents (M, D) to Bernoulli logits; a pair of torch
        ``nn.Module`` objects goes to the torch adapter instead.
    data : array-like, tensor, DataLoader or iterable of batches
        The data points, one per row (see :func:`elbo_audit._api.data.as_array`).
    priors : list of str or mapping, optional
        Alternative priors, as ``elbo-audit run --prior`` takes them
        (``["mog=fitted_mixture,components=10"]``), or a mapping from label to
        a family name, a dict with ``family`` and its options, or a
        :class:`Prior`. The model's own prior is always ``native``.
    name : str
        The model's name in the report.
    prior : Prior or str, optional
        For a pair only: the model's own prior (``native``), N(0, I) by
        default; an :class:`elbo_audit.Prior`, or what the adapter that claims
        the pair takes (a ``torch.distributions`` object for torch modules).
    posterior : {"log_std", "log_var", "std", "var"}, optional
        For a pair only: the second output of ``encode`` (default ``log_std``).
    likelihood : str, optional
        For a pair only: what ``decode`` returns (``bernoulli`` logits, the default).
    adapter : str, optional
        The adapter to use (default: the one that claims the object).
    gates : sequence of str
        Gate expressions (``"marginal_kl < 5"``), judged and stored as with ``--gate``.
    data_name : str
        The dataset's name in the report.
    show_progress : bool
        Progress bars on stderr, as the CLI draws them.
    **settings
        The settings of the config file or the CLI options, by name: ``seed``,
        ``samples_per_point``, ``marginal_samples``, ``reconstruction_samples``,
        ``batch_size``, ``resamples`` (or ``bootstrap``), ``confidence``,
        ``ci_method``, ``interaction_adjust``, ``target_se``, ``max_seconds``,
        ``max_samples_per_point``, ``backend``, ``precision``, ``device``,
        ``scheduler``, ``limit``, ``binarize``, ``pointwise``.

    Returns
    -------
    AuditResult
        ``.to_xarray()``, ``.save(path)`` (the CLI's netCDF report), a text
        ``repr`` and an HTML view for notebooks.

    Raises
    ------
    UsageError, DataError, ModelError, PluginError
        As the CLI would exit with 2 or 3, with the same one-line messages.

    References
    ----------
    Hoffman, M. D. and Johnson, M. J. (2016). ELBO surgery: yet another way to
    carve up the variational evidence lower bound. NIPS Workshop on Advances
    in Approximate Bayesian Inference.
    """
    model = as_pair(model, prior, posterior, likelihood)
    cfg = audit_settings(settings)
    run_settings = audit_settings_of(cfg)
    parsed_gates = [parse_gate(g) for g in gates]
    host = PluginHost(blocked=[])
    entries, ready = _prior_entries(priors)
    makers = prior_makers_for(entries, host, cfg.seed)
    check_gate_targets(parsed_gates, [name], ["native", *makers, *ready])
    x = as_array(data, "audit(data)")
    if cfg.limit is not None:
        x = x[: cfg.limit]
    check_points(x, "audit(data)")
    if cfg.binarize is not None:
        x = binarize_grey_levels(x, cfg.binarize, "audit(data)")
    host.raise_failures()
    wrapped = prepare_model(
        model, name=name, host=host, adapter=adapter, device=cfg.device, batch_size=cfg.batch_size
    )
    engine = resolve_engine(host, cfg.backend, cfg.precision, cfg.device, cfg.scheduler)
    families: dict[tuple[str, str], str] = {(name, "native"): wrapped.prior.name}
    with _progress(show_progress) as reporter:

        def alternatives(q: DiagonalGaussian) -> dict[str, Prior]:
            out: dict[str, Prior] = {k: check_prior(p, k, q.n_latent) for k, p in ready.items()}
            for label, make in makers.items():
                with reporter.task(f"prior {label} for {name}", 1) as step:
                    out[label] = check_prior(make(q), label, q.n_latent)
                    step.advance()
            for label, p in out.items():
                families[(name, label)] = p.name
            return out

        with wrapped:  # the caller's module goes back to its device, dtype and train mode
            audits: list[ModelAudit] = [
                audit_model(wrapped, x, run_settings, extra_priors=alternatives, engine=engine, reporter=reporter)
            ]
        warn_unmet_targets(audits)
        dataset: dict[str, Any] = {"name": data_name, "sha256": array_sha256(x), "size": int(x.shape[0])}
        if cfg.limit is not None:
            dataset["limit"] = int(cfg.limit)
        if cfg.binarize is not None:
            dataset["binarize"] = float(cfg.binarize)
        tree = assemble_report(
            audits,
            run_settings,
            dataset=dataset,
            prior_families=families,
            pointwise=cfg.pointwise,
            history=f"elbo_audit.audit({type(model).__name__}, {data_name})",
            extra_attrs={"config": "", "allow_unsafe": 0, "api": "python"},
            reporter=reporter,
        )
    results = judge_gates(tree, parsed_gates, None)
    return AuditResult(tree, results)
