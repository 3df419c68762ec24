"""``elbo-audit run``: gather the work, audit, write the report, judge gates."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import numpy as np

from ._audit import AuditSettings, ModelAudit, audit_model, audit_posteriors, supplied_reconstruction
from ._errors import GateFailed, UsageError
from ._gates import evaluate_gates, gates_dataset, parse_gate
from ._io import array_sha256, load_array_file, load_posteriors
from ._models import load_model
from ._plugins import PluginHost
from ._priors import StandardNormal
from ._report import build_report, write_report
from ._summary import format_summary
from .hookspecs import Dataset, ModelRef

__all__ = ["run_from_args", "load_dataset"]


def load_dataset(spec: str, host: PluginHost, binarize: float | None, limit: int | None) -> Dataset:
    """A registered dataset by name (``digits``), else a file."""
    name = spec.split(":", 1)[1] if spec.startswith("builtin:") else spec
    registered = host.datasets()
    if name in registered and not Path(spec).exists():
        plugin, info = registered[name]
        ds = info.load()
        x = np.asarray(ds.x)
        if limit is not None:
            x = x[:limit]
        if binarize is not None:
            x = (x / (x.max() or 1.0) > binarize).astype(np.float64)
        attrs = {"name": name, "sha256": array_sha256(x), "size": int(x.shape[0]), "plugin": plugin, **ds.attrs}
        attrs["size"] = int(x.shape[0])
        return Dataset(name, x, attrs)
    if not Path(spec.rsplit(":", 1)[0]).exists() and not Path(spec).exists():
        known = ", ".join(sorted(registered)) or "none (install elbo-audit-sklearn for 'digits')"
        raise UsageError(f"--data {spec}: no such file, and no built-in dataset of that name (built-in: {known})")
    return load_array_file(spec, binarize=binarize, limit=limit)


def _settings(args: argparse.Namespace) -> AuditSettings:
    for flag in ("samples_per_point", "reconstruction_samples", "marginal_samples", "batch_size"):
        if getattr(args, flag) < 1:
            raise UsageError(f"--{flag.replace('_', '-')} must be at least 1, got {getattr(args, flag)}")
    if args.bootstrap < 0:
        raise UsageError(f"--bootstrap must be >= 0, got {args.bootstrap}")
    if not 0.0 < args.confidence < 1.0:
        raise UsageError(f"--confidence must be between 0 and 1, got {args.confidence}")
    return AuditSettings(
        seed=args.seed,
        samples_per_point=args.samples_per_point,
        reconstruction_samples=args.reconstruction_samples,
        marginal_samples=args.marginal_samples,
        batch_size=args.batch_size,
    )


def run_from_args(args: argparse.Namespace, blocked: list[str], command: str) -> int:
    """Run one audit as the command line asked; returns the exit code."""
    if args.config:
        raise UsageError(f"{args.config}: config files are not supported yet; use command-line options")
    gates = [parse_gate(g) for g in args.gate]
    settings = _settings(args)
    audits: list[ModelAudit]
    families: dict[tuple[str, str], str] = {}
    extra: dict[str, Any] = {}
    if args.posteriors:
        if args.model or args.weights or args.data:
            raise UsageError("--posteriors audits saved encodings; do not combine it with --model, --weights or --data")
        enc = load_posteriors(args.posteriors)
        q = enc.posteriors
        if args.limit is not None:
            q = q.subset(np.arange(min(args.limit, q.n_points)))
        recon = None
        if enc.reconstruction is not None:
            recon = supplied_reconstruction(enc.reconstruction[: q.n_points])
        prior = StandardNormal(q.n_latent)
        name = args.name or Path(args.posteriors).stem
        _log(args, f"auditing {q.n_points} encodings ({q.n_latent} latents) from {args.posteriors}")
        by_prior = audit_posteriors(q, {"native": prior}, recon, settings)
        attrs = {"posteriors": str(enc.path), "posteriors_sha256": enc.sha256}
        audits = [ModelAudit(name, "core", q.n_points, q.n_latent, by_prior, q, attrs)]
        families[(name, "native")] = prior.name
        dataset = {"name": Path(args.posteriors).name, "sha256": enc.sha256, "size": q.n_points}
    else:
        if not (args.model or args.weights):
            raise UsageError("nothing to audit: give --posteriors ENC.npz, or --model (and --data), or a config file")
        if not args.data:
            raise UsageError("--model needs --data: the dataset to audit on")
        host = PluginHost(blocked=blocked)
        host.raise_failures()
        data = load_dataset(args.data, host, args.binarize, args.limit)
        name = args.name or (args.model.rpartition(":")[2] if args.model else Path(args.weights).stem)
        ref = ModelRef(
            name=name,
            factory=args.model,
            weights=Path(args.weights) if args.weights else None,
            adapter=args.adapter,
            device=args.device,
            allow_unsafe=args.allow_unsafe,
            batch_size=args.batch_size,
        )
        model = load_model(ref, host)
        _log(args, f"auditing model {name!r} ({model.adapter}) on {data.name} (N = {data.x.shape[0]})")
        audits = [audit_model(model, data.x, settings)]
        families[(name, "native")] = model.prior.name
        dataset = data.attrs
        extra["allow_unsafe"] = int(args.allow_unsafe)
    tree = build_report(
        audits,
        settings,
        dataset=dataset,
        prior_families=families,
        n_resamples=args.bootstrap,
        confidence_level=args.confidence,
        pointwise=args.pointwise,
        history=command,
        extra_attrs=extra,
    )
    results = evaluate_gates(tree.to_dataset(), gates) if gates else []
    if results:
        tree["gates"] = gates_dataset(results)
    write_report(tree, args.out)
    _log(args, f"report written to {args.out}")
    root = tree.to_dataset()
    if args.format == "json":
        import json

        doc = json.loads(format_summary(root, "json"))
        doc["report"] = str(args.out)
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


def _log(args: argparse.Namespace, msg: str) -> None:
    if not args.quiet:
        print(msg, file=sys.stderr)
