"""The ``elbo-audit`` command line's arguments: commands, options, their help and defaults."""

from __future__ import annotations

import argparse

from .._errors import UsageError
from .._estimation.bootstrap import CI_METHODS
from .._version import __version__

__all__ = ["build_parser"]


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(f"{self.prog}: {message}")


class _Once(argparse.Action):
    """An option that may be given once: a repeat is refused, not silently dropped."""

    def __call__(
        self, parser: argparse.ArgumentParser, namespace: argparse.Namespace,
        values: object, option_string: str | None = None,
    ) -> None:
        if getattr(namespace, self.dest, None) is not None:
            hint = (
                "; audit several models from a config file with one [[models]] table each"
                if self.dest in ("model", "weights", "name") else ""
            )
            raise UsageError(f"{option_string} given more than once (only the last would count){hint}")
        setattr(namespace, self.dest, values)


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--quiet", action="store_true", help="no progress or log output on stderr")
    p.add_argument("--debug", action="store_true", help="show tracebacks of errors")
    p.add_argument(
        "-p", dest="plugin_opts", action="append", default=[], metavar="no:NAME",
        help="block a plugin: -p no:NAME (repeatable)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="elbo-audit", description="Where does your VAE's ELBO go? Exact ELBO-surgery audits.")
    parser.add_argument("--version", action="version", version=f"elbo-audit {__version__}")
    sub = parser.add_subparsers(dest="command", parser_class=_Parser)

    run = sub.add_parser("run", help="audit one or more models and write a report")
    run.add_argument("config", nargs="?", help="TOML config file (optional)")
    src = run.add_argument_group("what to audit")
    src.add_argument("--posteriors", action=_Once, metavar="ENC.npz", help="saved encodings: mean, log_std or std, [reconstruction]")
    src.add_argument("--model", action=_Once, metavar="FACTORY", help="module:function or file.py:function building the model")
    src.add_argument(
        "--model-option", action="append", default=[], metavar="KEY=VALUE",
        help="keyword argument for the factory, VALUE parsed as JSON (repeatable), e.g. latent=20",
    )
    src.add_argument("--weights", action=_Once, metavar="FILE", help="weights or model file (untrusted: safe formats only)")
    src.add_argument("--adapter", help="adapter plugin to use (default: the one that claims the model)")
    src.add_argument("--data", action=_Once, metavar="DATA", help="a built-in dataset name (e.g. digits) or FILE.npz[:key] / .npy / IDX(.gz)")
    src.add_argument("--binarize", type=float, metavar="T", help="binarize data as x > T: grey levels in [0, 1], uint8 divided by 255 (other ranges are refused)")
    src.add_argument("--limit", type=int, metavar="N", help="audit only the first N data points")
    src.add_argument("--name", action=_Once, help="the model's name in the report")
    src.add_argument("--allow-unsafe", action="store_true", help="allow pickle-based model files (recorded in the report)")
    src.add_argument(
        "--no-weights",
        action="store_true",
        help="audit a torch/JAX factory's own parameters without --weights (refused otherwise; recorded in the report)",
    )
    src.add_argument(
        "--prior", action="append", default=[], metavar="[LABEL=]FAMILY[,K=V...]",
        help="an alternative prior for every model, e.g. aggregate_posterior or mog=fitted_mixture,components=10",
    )
    est = run.add_argument_group("estimation (defaults: config file, then built-in)")
    est.add_argument("--seed", type=int, help="random seed (default 0)")
    est.add_argument("--samples-per-point", type=int, metavar="K", help="draws of z per data point, KL side (default 1)")
    est.add_argument("--reconstruction-samples", type=int, metavar="K", help="draws of z per data point, reconstruction (default 2)")
    est.add_argument("--marginal-samples", type=int, metavar="M", help="outer samples for total_correlation, dimwise_kl (default 2048)")
    est.add_argument(
        "--iw-samples", type=int, nargs="?", const=1000, metavar="K",
        help="importance samples per data point for log_likelihood and inference_gap "
        "(a model with a decoder; bare: 1000; default 0, off)",
    )
    est.add_argument(
        "--refine-steps", type=int, nargs="?", const=100, metavar="T",
        help="gradient steps per data point on the encoder's output, for refined_elbo, "
        "amortization_gap and approximation_gap (a decoder with gradients; bare: 100; default 0, off)",
    )
    est.add_argument("--refine-lr", type=float, metavar="LR", help="Adam's initial step size for --refine-steps (default 0.05)")
    est.add_argument("--refine-samples", type=int, metavar="S", help="draws of z per refinement step (default 4)")
    est.add_argument(
        "--active-threshold", type=float, metavar="V",
        help="a latent is active when the variance of its posterior means exceeds V (default 0.01)",
    )
    est.add_argument("--bootstrap", type=int, metavar="B", help="bootstrap resamples, 0 for none (default 1000)")
    est.add_argument("--confidence", type=float, metavar="LEVEL", help="confidence level (default 0.95)")
    est.add_argument(
        "--ci-method", choices=CI_METHODS,
        help="bootstrap interval (default bca; see docs/uncertainty.md)",
    )
    est.add_argument(
        "--no-interaction-adjust", action="store_true",
        help="skip the pairwise-interaction adjustment of the bootstrap (faster; undercovers "
        "index_code_mi with sharp posteriors)",
    )
    est.add_argument("--target-se", type=float, metavar="NATS", help="keep drawing until every Monte Carlo se is below this")
    est.add_argument("--max-seconds", type=float, help="time budget of --target-se")
    est.add_argument("--max-samples-per-point", type=int, metavar="K", help="draw budget of --target-se (default 1024)")
    est.add_argument("--batch-size", type=int, help="data points per model call (default 1000)")
    est.add_argument("--device", help="cpu, cuda, cuda:1, ... (for adapters and backends that use one)")
    est.add_argument(
        "--backend", metavar="NAME",
        help="compute backend of the pairwise passes (default: the fastest available; "
        "see elbo-audit backends)",
    )
    est.add_argument(
        "--precision", choices=("float32", "float64"),
        help="precision of the pairwise passes (default: the backend's own)",
    )
    est.add_argument(
        "--scheduler", metavar="ADDRESS",
        help="Dask scheduler to run the pairwise passes on (backend dask; "
        "env ELBO_AUDIT_SCHEDULER)",
    )
    out = run.add_argument_group("output")
    out.add_argument("--out", metavar="PATH", help="report file (default elbo-audit-report.nc)")
    out.add_argument("--pointwise", action="store_true", help="store per-datapoint terms in /pointwise")
    out.add_argument("--format", choices=("text", "json", "markdown"), default="text")
    out.add_argument("--gate", action="append", default=[], metavar="EXPR", help='e.g. "marginal_kl < 5" (repeatable)')
    out.add_argument("--baseline", metavar="OLD.nc", help="a previous report for delta gates, e.g. \"elbo.delta.lower > -0.5\"")
    out.add_argument("--exit-zero", action="store_true", help="report failed gates but exit 0")
    _common(run)

    show = sub.add_parser("show", help="print a report")
    show.add_argument("report")
    show.add_argument("--format", choices=("text", "json", "markdown"), default="text")
    show.add_argument("--plot", metavar="FILE.png", help="also draw the decomposition into an image")
    show.add_argument("--html", metavar="OUT.html", help="also write one self-contained static HTML page")
    _common(show)

    compare = sub.add_parser("compare", help="put reports side by side, with differences")
    compare.add_argument("reports", nargs="+")
    compare.add_argument("--format", choices=("text", "json", "markdown"), default="text")
    compare.add_argument("--confidence", type=float, default=0.95, metavar="LEVEL")
    _common(compare)

    check = sub.add_parser("check", help="validate a report's schema and re-evaluate its gates")
    check.add_argument("report")
    check.add_argument(
        "--gate", action="append", default=[], metavar="EXPR",
        help="judge these gates instead of the ones stored in the report (repeatable)",
    )
    check.add_argument("--baseline", metavar="OLD.nc", help="a previous report for delta gates")
    _common(check)

    plugins = sub.add_parser("plugins", help="list installed plugins")
    plugins.add_argument("--json", action="store_true")
    _common(plugins)

    backends = sub.add_parser("backends", help="list compute backends")
    backends.add_argument("--json", action="store_true")
    _common(backends)
    return parser
