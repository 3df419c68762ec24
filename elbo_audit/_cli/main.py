"""The ``elbo-audit`` command line.

Results go to stdout, logs to stderr. Every deliberate failure is one line on
stderr and the exit code of DESIGN.md: 0 success, 1 gate failed, 2 usage or
data error, 3 plugin or model error, 4 unsafe artifact refused, 5 internal.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import signal
import sys
import traceback
from collections.abc import Sequence
from typing import TextIO

from .. import _signals as signals
from .._errors import UsageError
from .._estimation.bootstrap import CI_METHODS
from .._report.compare import compare_reports, format_comparison
from .._report.gates import evaluate_gates, format_gates, parse_gate, read_gates
from .._report.html import write_html
from .._report.latents import format_latents, latent_records
from .._report.plot import plot_report
from .._report.schema import open_report, require_valid, validate_report
from .._report.steps import STEP, latest_step_files, trend_lines, trend_records
from .._report.summary import format_summary
from .._version import __version__
from .backends import backend_table
from .faults import UserExit, classify, routed_warnings
from .plugins import PluginHost
from .progress import enabled
from .run import load_baseline, run_from_args
from .validate import check_not_empty

__all__ = ["build_parser", "main"]


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


def _blocked(opts: Sequence[str]) -> list[str]:
    out = []
    for o in opts:
        if not o.startswith("no:") or len(o) <= 3:
            raise UsageError(f"-p {o}: expected -p no:NAME")
        out.append(o[3:])
    return out


def _log(args: argparse.Namespace, msg: str) -> None:
    if not getattr(args, "quiet", False):
        print(msg, file=sys.stderr)


def _cmd_plugins(args: argparse.Namespace) -> int:
    host = PluginHost(blocked=_blocked(args.plugin_opts))
    records = host.records()
    if args.json:
        print(json.dumps([r.__dict__ | {"hooks": list(r.hooks)} for r in records], indent=2))
        return 0
    for r in records:
        hooks = ", ".join(h.removeprefix("elbo_audit_") for h in r.hooks) or "-"
        print(f"{r.name:12s} {r.distribution} {r.version}  [{r.status}]  hooks: {hooks}")
    return 0


def _cmd_backends(args: argparse.Namespace) -> int:
    host = PluginHost(blocked=_blocked(args.plugin_opts))
    rows = backend_table(host)
    if args.json:
        print(json.dumps([r.as_json() for r in rows], indent=2))
        return 0
    default = next((r.name for r in rows if r.available), "")
    for r in rows:
        mark = "*" if r.name == default else " "
        where = ", ".join(r.devices) if r.available else f"unavailable: {r.reason}"
        print(f"{mark} {r.name:<10} {r.plugin:<22} {'/'.join(r.precision):<16} {where}")
    print("(* the default)")
    return 0


def _show_outputs(args: argparse.Namespace) -> None:
    """Refuse (exit 2) --plot/--html paths that name the report itself or a format matplotlib lacks."""
    check_not_empty({"--plot": args.plot, "--html": args.html})
    report = os.path.realpath(args.report)
    for flag, out in (("--plot", args.plot), ("--html", args.html)):
        if out and os.path.realpath(out) == report:
            raise UsageError(f"{flag} {out}: names the report being shown; choose another file")
        if out and os.path.isdir(out):
            raise UsageError(f"{flag} {out}: is a directory; name a file inside it")
    if args.plot:
        suffix = os.path.splitext(args.plot)[1].lower().lstrip(".")
        if suffix not in _PLOT_FORMATS:
            raise UsageError(
                f"--plot {args.plot}: unknown image format {suffix!r}; use one of {', '.join(_PLOT_FORMATS)}"
            )


#: Suffixes ``show --plot`` writes (matplotlib's common formats).
_PLOT_FORMATS = ("png", "svg", "pdf", "jpg", "jpeg", "eps", "ps", "tif", "tiff", "webp")


def _cmd_show(args: argparse.Namespace) -> int:
    _show_outputs(args)
    require_valid(args.report)
    with open_report(args.report) as whole:
        trend = trend_lines(whole) if STEP in whole.dims else ""
        trend_doc = trend_records(whole) if trend else None
    with latest_step_files([args.report]) as (report,):  # a Monitor report: its latest step
        _show(args, report, trend, trend_doc)
    return 0


def _show(args: argparse.Namespace, report: str, trend: str, trend_doc: object) -> None:
    ds = open_report(report)
    text = format_summary(ds, args.format)
    latents = latent_records(ds) if args.format == "json" else []
    text_latents = format_latents(ds, args.format) if args.format != "json" else ""
    step = ds.attrs.get("monitor_step")
    ds.close()
    gates = read_gates(report)
    if args.format == "json":
        doc = json.loads(text)
        doc["gates"] = gates
        doc["latents"] = latents
        if trend_doc is not None:
            doc["step"] = int(step) if step is not None else None
            doc["trend"] = trend_doc
        print(json.dumps(doc, indent=2))
    else:
        if trend:
            print(f"step {step} (the latest audit of a report over step)\n")
        print(text, end="")
        print(trend, end="")
        print(text_latents, end="")
        print(format_gates(gates, args.format), end="")
    if args.plot:
        plot_report(report, args.plot)
        if not args.quiet:
            print(f"plot written to {args.plot}", file=sys.stderr)
    if args.html:
        write_html(report, args.html)
        if not args.quiet:
            print(f"page written to {args.html}", file=sys.stderr)


def _cmd_check(args: argparse.Namespace) -> int:
    check_not_empty({"--baseline": args.baseline})
    problems = validate_report(args.report)
    if problems:  # one line: the first problem, and how many more
        more = f" (and {len(problems) - 1} more schema problem(s))" if len(problems) > 1 else ""
        raise UsageError(f"{args.report}: not a valid elbo-audit report: {problems[0]}{more}")
    with open_report(args.report) as ds:
        steps = [int(v) for v in ds[STEP].values] if STEP in ds.dims else []
    over = f" over step ({len(steps)} audits, steps {steps[0]} to {steps[-1]})" if steps else ""
    print(f"{args.report}: valid elbo-audit report{over}")
    reports = [args.report] + ([args.baseline] if args.baseline else [])
    with latest_step_files(reports) as latest:  # gates of a report over step: its latest step
        return _check_gates(args, latest[0], latest[1] if args.baseline else None)


def _check_gates(args: argparse.Namespace, report: str, baseline: str | None) -> int:
    exprs = list(args.gate) or [str(g["expression"]) for g in read_gates(report)]
    if not exprs:
        return 0
    gates = [parse_gate(e) for e in exprs]
    own = load_baseline(report)
    base = load_baseline(baseline) if baseline else None
    judged = [g for g in gates if base is not None or not g.bound.startswith("delta")]
    for g in gates:
        if g not in judged:
            print(f"SKIP {g.expr} (a delta gate: give --baseline OLD.nc to judge it)")
    results = evaluate_gates(own.root, judged, replicates=own.replicates, baseline=base)
    for r in results:
        print(r.verdict())
    return 0 if all(r.passed for r in results) else 1


def _cmd_compare(args: argparse.Namespace) -> int:
    level = args.confidence
    if level is not None and not (isinstance(level, float) and 0.0 < level < 1.0):
        raise UsageError(f"--confidence must be in (0, 1), got {level}")
    for report in args.reports:
        require_valid(report)
    with latest_step_files(args.reports) as latest:  # a report over step: its latest step
        doc = compare_reports(latest, args.confidence)
    real = dict(zip(latest, args.reports, strict=True))
    for row in doc["rows"]:
        row["report"] = real.get(row["report"], row["report"])
    for report, used in zip(args.reports, latest, strict=True):
        if used != report and not args.quiet:
            print(f"elbo-audit compare: {report} is a report over step; comparing its latest step",
                  file=sys.stderr)
    text = format_comparison(doc, args.format)
    print(text, end="" if text.endswith("\n") else "\n")
    return 0


def _cmd_run(args: argparse.Namespace) -> int:
    return run_from_args(args, _blocked(args.plugin_opts), " ".join(shlex.quote(a) for a in sys.argv))


class _QuietPipe:
    """stdout that falls silent when its reader goes away (``elbo-audit show R | head``).

    The first BrokenPipeError points file descriptor 1 at /dev/null, so the
    command still finishes (a report is still written, gates still decide the
    exit code) and the interpreter's final flush raises nothing.
    """

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self.broken = False

    def _silence(self) -> None:
        self.broken = True
        devnull = os.open(os.devnull, os.O_WRONLY)
        try:
            os.dup2(devnull, self._stream.fileno())
        except (AttributeError, OSError, ValueError):
            pass
        finally:
            os.close(devnull)

    def write(self, text: str) -> int:
        if self.broken:
            return len(text)
        try:
            return self._stream.write(text)
        except BrokenPipeError:
            self._silence()
            return len(text)

    def flush(self) -> None:
        if not self.broken:
            try:
                self._stream.flush()
            except BrokenPipeError:
                self._silence()

    def __getattr__(self, name: str) -> object:
        return getattr(self._stream, name)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``elbo-audit``; returns the exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    saved = sys.stdout
    handlers = _current_handlers()
    signals.install()
    sys.stdout = _QuietPipe(saved)
    try:
        return _main(argv, debug)
    finally:
        sys.stdout.flush()
        sys.stdout = saved
        _restore_handlers(handlers)


def _current_handlers() -> dict[int, object]:
    return {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}


def _restore_handlers(handlers: dict[int, object]) -> None:
    for signum, handler in handlers.items():
        if handler is not None:
            try:
                signal.signal(signum, handler)  # type: ignore[arg-type]
            except (ValueError, TypeError):  # not the main thread
                pass


def _dispatch(argv: list[str]) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help(sys.stderr)
        return 2
    handler = {
        "run": _cmd_run, "show": _cmd_show, "check": _cmd_check, "compare": _cmd_compare, "plugins": _cmd_plugins,
        "backends": _cmd_backends,
    }
    quiet = bool(getattr(args, "quiet", False))
    try:
        with routed_warnings(sys.stderr, quiet=quiet):
            if quiet:
                return handler[args.command](args)
            with enabled(sys.stderr):
                return handler[args.command](args)
    except SystemExit as exc:  # no command exits on its own: this came from user or plugin code
        raise UserExit(exc.code) from exc


def _main(argv: list[str], debug: bool) -> int:
    try:
        return _dispatch(argv)
    except BaseException as exc:  # every fault ends as one line and its exit code
        if isinstance(exc, SystemExit):  # --help, --version
            raise
        code, line = classify(exc)
        if debug:
            traceback.print_exception(exc)
        print(line, file=sys.stderr)
        return code


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
