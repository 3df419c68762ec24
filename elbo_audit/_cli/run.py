"""``elbo-audit run``: gather the work, audit, write the report, judge gates."""

from __future__ import annotations

import argparse
import functools
import json
import os
import sys
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from .._audit.audit import (
    ModelAudit,
    audit_encodings,
    audit_model,
)
from .._audit.model_calls import supplied_reconstruction
from .._errors import AuditError, GateFailed, PluginError, UsageError
from .._model.families import DiagonalGaussian
from .._model.priors import StandardNormal
from .._model.protocols import Prior
from .._report.assemble import assemble_report, judge_gates
from .._report.build import write_report
from .._report.gates import Baseline, parse_gate
from .._report.identity import pairing
from .._report.schema import open_report
from .._report.summary import format_summary
from ..hookspecs import Dataset, ModelRef
from . import progress
from .backends import resolve_engine
from .config import ModelEntry, RunConfig, load_config
from .io import array_sha256, binarize_grey_levels, load_array_file, load_posteriors
from .models import load_model
from .plugins import PluginHost
from .run_checks import input_paths, preflight_run, require_evaluated
from .run_setup import (
    OVERRIDES,
    audit_settings_of,
    check_gate_targets,
    check_prior,
    parse_prior_option,
    prior_makers,
    prior_makers_for,
    warn_unmet_targets,
)
from .validate import check_environment, check_not_empty, check_numbers, check_paths

__all__ = ["load_baseline", "load_dataset", "merge_args", "run_from_args"]

def load_dataset(spec: str, host: PluginHost, binarize: float | None, limit: int | None) -> Dataset:
    """A registered dataset by name (``digits``), else a file."""
    registered = host.datasets()
    if spec in registered and not Path(spec).exists():
        plugin, info = registered[spec]
        try:
            ds = info.load()
        except AuditError:
            raise
        except Exception as exc:
            raise PluginError(f"plugin {plugin!r}: loading dataset {spec!r} raised {type(exc).__name__}: {exc}") from exc
        x = np.asarray(ds.x)
        if limit is not None:
            x = x[:limit]
        if binarize is not None:
            x = binarize_grey_levels(x, binarize, f"--data {spec}")
        attrs = {**ds.attrs, "name": spec, "plugin": plugin}
        attrs.update({"sha256": array_sha256(x), "size": int(x.shape[0])})
        return Dataset(spec, x, attrs)
    file_part = spec.rsplit(":", 1)[0] if ":" in spec and not Path(spec).exists() else spec
    if not Path(file_part).exists():
        known = ", ".join(sorted(registered)) or "none (install elbo-audit-sklearn for 'digits')"
        raise UsageError(f"--data {spec}: no such file, and no built-in dataset of that name (built-in: {known})")
    return load_array_file(spec, binarize=binarize, limit=limit)


def merge_args(args: argparse.Namespace) -> RunConfig:
    """The config file (if any) with every command-line option laid over it."""
    cfg = load_config(args.config) if args.config else RunConfig()
    for arg, attr in OVERRIDES.items():
        value = getattr(args, arg, None)
        if value is not None:
            setattr(cfg, attr, value)
    if getattr(args, "device", None) is not None:
        cfg.device = args.device
    if cfg.scheduler is None:
        cfg.scheduler = os.environ.get("ELBO_AUDIT_SCHEDULER", "").strip() or None
    if args.data is not None:
        cfg.data_name = cfg.data_path = cfg.data_key = None
        cfg.data_path = args.data
    options: dict[str, Any] = {}
    for opt in args.model_option:
        key, eq, value = opt.partition("=")
        if not eq or not key.isidentifier():
            raise UsageError(f"--model-option {opt!r}: expected KEY=VALUE")
        try:
            options[key] = json.loads(value)
        except json.JSONDecodeError:
            options[key] = value
    if options and not args.model:
        raise UsageError("--model-option needs --model (the factory it is passed to)")
    if args.model or args.weights:
        cfg.models = [
            ModelEntry(
                name=args.name or (args.model.rpartition(":")[2] if args.model else Path(args.weights).stem),
                factory=args.model,
                weights=args.weights,
                adapter=args.adapter,
                device=args.device,
                allow_unsafe=args.allow_unsafe,
                options=options,
                no_weights=bool(getattr(args, "no_weights", False)),
            )
        ]
    else:
        for m in cfg.models:
            if args.device is not None:
                m.device = args.device
            if args.allow_unsafe:
                m.allow_unsafe = True
            if getattr(args, "no_weights", False):
                m.no_weights = True
    if args.prior:
        cfg.priors = [parse_prior_option(p) for p in args.prior]
    if args.pointwise:
        cfg.pointwise = True
    if args.no_interaction_adjust:
        cfg.interaction_adjust = False
    cfg.gates = [*cfg.gates, *args.gate]
    return cfg


def run_from_args(args: argparse.Namespace, blocked: list[str], command: str) -> int:
    """Run one audit as the command line (and config) asked; returns the exit code."""
    cfg = merge_args(args)
    check_environment()
    check_numbers(cfg)
    gates = [parse_gate(g) for g in cfg.gates]
    settings = audit_settings_of(cfg)
    check_not_empty({"--baseline": getattr(args, "baseline", None)})
    check_paths(cfg.out, input_paths(cfg, getattr(args, "baseline", None)))
    # read the baseline now: a missing or broken one is refused before any work, not after it
    baseline = load_baseline(args.baseline) if getattr(args, "baseline", None) else None
    audits: list[ModelAudit] = []
    families: dict[tuple[str, str], str] = {}
    extra: dict[str, Any] = {"config": cfg.source}
    host = PluginHost(blocked=blocked)
    makers = prior_makers(cfg, host, cfg.seed)
    if cfg.posteriors:
        names = [args.name or Path(cfg.posteriors).stem]
    else:
        names = [m.name for m in cfg.models]
    check_gate_targets(gates, names, ["native", *makers])
    preflight_run(cfg, settings, gates, n_models=len(names), n_priors=1 + len(makers))
    engine = resolve_engine(host, cfg.backend, cfg.precision, cfg.device, cfg.scheduler,
                            adapters=not cfg.posteriors)
    reporter = progress.REPORTER

    def alternatives(q: DiagonalGaussian, model: str) -> dict[str, Prior]:
        out = {}
        for label, make in makers.items():
            _log(args, f"  fitting/evaluating prior {label!r} for {model!r}")
            with reporter.task(f"prior {label} for {model}", 1) as step:
                out[label] = check_prior(make(q), label, q.n_latent)
                step.advance()
            families[(model, label)] = out[label].name
        return out

    if cfg.posteriors:
        if cfg.models or cfg.data_path or cfg.data_name:
            raise UsageError("--posteriors audits saved encodings; do not combine it with models or --data")
        if cfg.iw_samples > 0:
            raise UsageError(
                f"--iw-samples {cfg.iw_samples}: importance weighting needs a model with a decoder; "
                "--posteriors has none"
            )
        if cfg.refine_steps > 0:
            raise UsageError(
                f"--refine-steps {cfg.refine_steps}: refining posteriors needs a model with a decoder; "
                "--posteriors has none"
            )
        enc = load_posteriors(cfg.posteriors)
        q = enc.posteriors
        if cfg.limit is not None:
            q = q.subset(np.arange(min(cfg.limit, q.n_points)))
        recon = None
        if enc.reconstruction is not None:
            recon = supplied_reconstruction(enc.reconstruction[: q.n_points])
        prior: Prior = StandardNormal(q.n_latent)
        if cfg.native_prior is not None:
            try:
                built = prior_makers_for([cfg.native_prior], host, cfg.seed)["native"](q)
            except UsageError as exc:  # a bad option: name the table it came from
                raise UsageError(f"{cfg.source}: [native_prior]: {exc}") from exc
            prior = check_prior(built, "native", q.n_latent)
        name = args.name or Path(cfg.posteriors).stem
        _log(args, f"auditing {q.n_points} encodings ({q.n_latent} latents) from {cfg.posteriors}")
        priors: dict[str, Prior] = {"native": prior, **alternatives(q, name)}
        attrs = {"posteriors": str(enc.path), "posteriors_sha256": enc.sha256}
        audits.append(
            audit_encodings(
                name, q, priors, recon, settings, attrs=attrs, engine=engine, reporter=reporter
            )
        )
        families[(name, "native")] = prior.name
        dataset: dict[str, Any] = {
            "name": Path(cfg.posteriors).name,
            "sha256": array_sha256(np.concatenate([q.mean, q.std], axis=1)),
            "size": q.n_points,
            "file_sha256": enc.sha256,
            "path": str(enc.path),
        }
        if cfg.limit is not None:
            dataset["limit"] = int(cfg.limit)
    else:
        if not cfg.models:
            raise UsageError("nothing to audit: give --posteriors ENC.npz, or --model and --data, or a config file")
        spec = cfg.data_name or cfg.data_path
        if not spec:
            raise UsageError("no data: give --data (a file or a built-in dataset name) or [data] in the config")
        if cfg.data_key and cfg.data_path:
            spec = f"{cfg.data_path}:{cfg.data_key}"
        host.raise_failures()
        data = load_dataset(spec, host, cfg.binarize, cfg.limit)
        for entry in cfg.models:
            ref = ModelRef(
                name=entry.name,
                factory=entry.factory,
                weights=Path(entry.weights) if entry.weights else None,
                adapter=entry.adapter,
                device=entry.device or "cpu",
                allow_unsafe=entry.allow_unsafe,
                options=dict(entry.options),
                batch_size=cfg.batch_size,
                no_weights=entry.no_weights,
            )
            with load_model(ref, host) as model:
                _log(args, f"auditing model {entry.name!r} ({model.adapter}) on {data.name} (N = {data.x.shape[0]})")
                audit = audit_model(
                    model, data.x, settings,
                    extra_priors=functools.partial(alternatives, model=entry.name),
                    engine=engine, reporter=reporter,
                )
            audits.append(audit)
            families[(entry.name, "native")] = model.prior.name
        dataset = data.attrs
        extra["allow_unsafe"] = int(any(m.allow_unsafe for m in cfg.models))
    warn_unmet_targets(audits)
    tree = assemble_report(
        audits,
        settings,
        dataset=dataset,
        prior_families=families,
        pointwise=cfg.pointwise,
        history=command,
        extra_attrs=extra,
        reporter=reporter,
    )
    if baseline is not None and any(g.bound.startswith("delta.") for g in gates):
        paired, why = pairing(baseline.root.attrs, tree.to_dataset().attrs)
        if not paired:
            print(
                f"elbo-audit: warning: --baseline {baseline.path} is not paired with this run: {why}; "
                "delta.lower/delta.upper use an unpaired interval of the difference",
                file=sys.stderr,
            )
    results = judge_gates(tree, gates, baseline)
    require_evaluated(results)
    with reporter.task(f"writing {cfg.out}", 1) as step:
        write_report(tree, cfg.out)
        step.advance()
    _log(args, f"report written to {cfg.out}")
    root = tree.to_dataset()
    if args.format == "json":
        doc = json.loads(format_summary(root, "json"))
        doc["report"] = str(cfg.out)
        doc["gates"] = [
            {"expression": r.gate.expr, "model": r.model, "prior": r.gate.prior,
             "observed": r.observed, "passed": r.passed}
            for r in results
        ]
        print(json.dumps(doc, indent=2))
    else:
        print(format_summary(root, args.format), end="")
        for r in results:
            print(r.verdict())
    failed = [r for r in results if not r.passed]
    if failed and not args.exit_zero:
        raise GateFailed(f"{len(failed)} of {len(results)} gate(s) failed: {failed[0].verdict()}")
    return 0


def load_baseline(path: str) -> Baseline:
    """A report's root group and replicates (for delta gates, and for ``check``)."""
    root = open_report(path)
    root.load()
    root.close()
    with xr.open_datatree(path, engine="netcdf4") as tree:
        reps = tree["replicates"].to_dataset().load() if "replicates" in tree.children else None
    return Baseline(root, reps, path)


def _log(args: argparse.Namespace, msg: str) -> None:
    if not args.quiet:
        print(msg, file=sys.stderr)
