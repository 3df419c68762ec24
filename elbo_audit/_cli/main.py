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
from .._report.compare import compare_reports, format_comparison
from .._report.gates import evaluate_gates, format_gates, parse_gate, read_gates
from .._report.html import write_html
from .._report.latents import format_latents, latent_records
from .._report.plot import plot_report
from .._report.schema import open_report, require_valid, validate_report
from .._report.steps import STEP, latest_step_files, trend_lines, trend_records
from .._report.summary import format_summary
from .backends import backend_table
from .faults import UserExit, classify, routed_warnings
from .parser import build_parser
from .plugins import PluginHost
from .progress import enabled
from .run import load_baseline, run_from_args
from .validate import check_not_empty

__all__ = ["build_parser", "main"]


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
