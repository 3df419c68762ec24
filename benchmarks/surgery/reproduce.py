"""Reproduce Hoffman & Johnson's ELBO-surgery table on binarized MNIST with elbo-audit's own CLI.

One command::

    python benchmarks/surgery/reproduce.py                 # weights from benchmarks/weights/

does, timing every step:

1. writes one TOML config per report (``OUT/configs/*.toml``; paths in them are relative to the
   config, so ``elbo-audit run OUT/configs/hj_train.toml`` repeats any step by hand);
2. ``elbo-audit run`` on each: ``hj_train`` / ``hj_test`` (the 2-, 10- and 20-latent N(0, I)
   models on the training set, N = 50000, exact aggregate posterior, and on the test set),
   ``priors_train`` / ``priors_test`` (every 20-latent model, PyTorch and JAX, N(0, I), learned
   mixture and VampPrior, each under its native prior, a 10-component mixture fitted to q(z),
   and q(z) itself), ``vae2_pointwise`` (the 2-latent model with per-point posteriors, for the
   picture of q(z)) and ``heldout`` (``vae20``'s training-set q(z), stored per point, then
   scored as a fixed prior on the test set: prior family ``report_aggregate_posterior``);
3. ``elbo-audit compare`` of the prior reports (``OUT/priors_{split}_compare.md``) and
   ``elbo-audit show --plot`` of each report (``OUT/img/*.png``, or ``--img-dir``);
4. ``OUT/hj_table.md``: each term with its bootstrap interval beside the published value, the
   difference, and whether that difference is within the training gap (ours vs their ELBO);
   ``OUT/summary.json``: every number and every step's wall time; ``OUT/surgery.nc``: every
   report of the run in one netCDF file, one group per report.

``--update-docs docs/results.md`` replaces the blocks between ``<!-- BEGIN generated:NAME -->``
and ``<!-- END generated:NAME -->`` in that file with the fresh tables.

Data: ``--data-dir`` or ``$ELBO_AUDIT_DATA_DIR`` or ``../shared/data`` (checked by sha256 against
``SOURCES.txt`` by the core's loader). Models whose weights are missing are skipped with the
command that trains them.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]



def _load_local():
    """This folder's helpers (_data.py) under unique module names."""
    import importlib.util

    name = "elbo_audit_surgery._local"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, HERE / "_local.py")
        mod = importlib.util.module_from_spec(spec)
        sys.modules[name] = mod
        spec.loader.exec_module(mod)
    return sys.modules[name]


def npz_path(override: str | None = None) -> Path:
    return _load_local().load("_data").npz_path(override)


#: Hoffman & Johnson (2016), Table 1: binarized MNIST, training set N = 50000, in nats.
PAPER = {
    2: {"elbo": -129.63, "avg_kl": 7.41, "index_code_mi": 7.20, "marginal_kl": 0.21},
    10: {"elbo": -88.95, "avg_kl": 19.17, "index_code_mi": 10.82, "marginal_kl": 8.35},
    20: {"elbo": -87.45, "avg_kl": 20.20, "index_code_mi": 10.67, "marginal_kl": 9.53},
}
TERMS = ("elbo", "avg_kl", "index_code_mi", "marginal_kl")
EXTRA_TERMS = ("reconstruction", "total_correlation", "dimwise_kl", "decomposition_residual")
TERM_NAMES = {
    "elbo": "ELBO", "avg_kl": "avg KL", "index_code_mi": "index-code MI", "marginal_kl": "marginal KL",
    "reconstruction": "reconstruction", "total_correlation": "total correlation",
    "dimwise_kl": "dimension-wise KL", "decomposition_residual": "residual",
}


@dataclass(frozen=True)
class ModelSpec:
    name: str  # name in the reports
    stem: str  # weights file stem under the weights folder
    train: str  # the command that trains it (for messages and docs)
    via_jax: bool = False  # audit these (PyTorch-trained) weights through the JAX reference instead


MODELS = {
    "vae2": ModelSpec("vae2", "torch_vae2", "train_torch.py --latent 2 --out benchmarks/weights/torch_vae2"),
    "vae10": ModelSpec("vae10", "torch_vae10", "train_torch.py --latent 10 --out benchmarks/weights/torch_vae10"),
    "vae20": ModelSpec("vae20", "torch_vae20", "train_torch.py --latent 20 --out benchmarks/weights/torch_vae20"),
    "vae20_mog": ModelSpec("vae20_mog", "torch_vae20_mog",
                           "train_torch.py --latent 20 --prior mog --components 10 --out benchmarks/weights/torch_vae20_mog"),
    "vae20_vamp": ModelSpec("vae20_vamp", "torch_vae20_vamp",
                            "train_torch.py --latent 20 --prior vamp --components 100 --out benchmarks/weights/torch_vae20_vamp"),
    "jax_vae20": ModelSpec("jax_vae20", "jax_vae20", "train_jax.py --latent 20 --out benchmarks/weights/jax_vae20"),
    # the N(0, I) models trained on from the 12-minute ones (the rows of the H&J table)
    "vae2_long": ModelSpec("vae2_long", "torch_vae2_long",
                           "train_torch.py --latent 2 --seed 1 --minutes 105 --resume benchmarks/weights/torch_vae2 "
                           "--out benchmarks/weights/torch_vae2_long"),
    "vae10_long": ModelSpec("vae10_long", "torch_vae10_long",
                            "train_torch.py --latent 10 --seed 1 --minutes 52 --resume benchmarks/weights/torch_vae10 "
                            "--out benchmarks/weights/torch_vae10_long"),
    "vae20_long": ModelSpec("vae20_long", "torch_vae20_long",
                            "train_torch.py --latent 20 --seed 1 --minutes 52 --resume benchmarks/weights/torch_vae20 "
                            "--out benchmarks/weights/torch_vae20_long"),
    # the same weights as vae20, audited by the JAX adapter: the two adapters must agree
    "vae20_jaxadapter": ModelSpec("vae20_jaxadapter", "torch_vae20",
                                  "train_torch.py --latent 20 --out benchmarks/weights/torch_vae20", via_jax=True),
}
#: (latents, the model trained longest, the 12-minute model it continued from): the table shows
#: the first one present, and the other beside it so that the effect of training is visible
HJ_ROWS = ((2, "vae2_long", "vae2"), (10, "vae10_long", "vae10"), (20, "vae20_long", "vae20"))
HJ_MODELS = tuple(m for row in HJ_ROWS for m in row[1:])
PRIOR_MODELS = ("vae20", "vae20_jaxadapter", "jax_vae20", "vae20_mog", "vae20_vamp")
#: models whose training-set q(z) is scored as a prior on the test set (step "heldout")
HELDOUT_MODELS = ("vae20",)
ALT_PRIORS = {"mog10": {"family": "fitted_mixture", "components": 10},
              "aggregate": {"family": "aggregate_posterior"}}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data-dir", default=None, help="folder holding binarized_mnist/ "
                   "(default $ELBO_AUDIT_DATA_DIR, else ../shared/data from the repository root)")
    p.add_argument("--weights-dir", default=str(REPO / "benchmarks" / "weights"))
    p.add_argument("--out-dir", default=str(HERE / "results"))
    p.add_argument("--img-dir", default=None, help="where the plots go (default OUT/img)")
    p.add_argument("--splits", default="train,test", help="comma-separated: train, valid, test")
    p.add_argument("--steps", default="hj,priors,vae2_pointwise,heldout",
                   help="comma-separated subset of: hj, priors, vae2_pointwise, heldout (needs the "
                   "train and test splits)")
    p.add_argument("--limit", type=int, default=None, help="audit only the first N points (tests)")
    p.add_argument("--bootstrap", type=int, default=1000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--samples-per-point", type=int, default=1)
    p.add_argument("--reconstruction-samples", type=int, default=2)
    p.add_argument("--marginal-samples", type=int, default=2048)
    p.add_argument("--fit-samples", type=int, default=None,
                   help="draws of q(z) the fitted mixture is trained on (default the plugin's)")
    p.add_argument("--device", default=None, help="device for the adapters (cpu, cuda)")
    p.add_argument("--update-docs", default=None, metavar="FILE.md",
                   help="replace the generated blocks of this markdown file")
    p.add_argument("--no-plots", action="store_true")
    p.add_argument("--quiet", action="store_true")
    return p.parse_args(argv)


# ----------------------------------------------------------------------------- configs


def _toml_value(v: object) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, dict):
        return "{ " + ", ".join(f"{k} = {_toml_value(x)}" for k, x in v.items()) + " }"
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    raise TypeError(f"cannot write {type(v).__name__} to TOML")


def _rel(path: Path, base: Path) -> str:
    try:
        return os.path.relpath(path, base)
    except ValueError:  # another drive on Windows
        return str(path)


def model_entry(spec: ModelSpec, weights_dir: Path, config_dir: Path, device: str | None) -> dict:
    """The [models.NAME] table for a trained model, from its weights' JSON."""
    meta = json.loads((weights_dir / f"{spec.stem}.json").read_text())
    factory = meta["factory"]
    if ".py:" in factory:  # a file of this folder, e.g. benchmarks/surgery/models.py:mog_vae
        file, func = factory.split(":")
        factory = f"{_rel(REPO / file, config_dir)}:{func}"
    adapter = meta.get("framework", "torch")
    if spec.via_jax:
        if meta["hyperparameters"].get("prior") != "standard_normal":
            raise ValueError(f"{spec.name}: only N(0, I) reference weights load into the JAX reference")
        factory, adapter = "elbo_audit_jax.reference:mlp_vae", "jax"
    entry = {
        "factory": factory,
        "weights": _rel(weights_dir / f"{spec.stem}.safetensors", config_dir),
        "adapter": adapter,
        "options": dict(meta["factory_options"]),
    }
    if device:
        entry["device"] = device
    return entry


def write_config(path: Path, *, title: str, data: Path, split: str, models: dict[str, dict],
                 priors: dict[str, dict], args: argparse.Namespace, out: Path, pointwise: bool = False,
                 bootstrap: int | None = None) -> Path:
    base = path.parent
    lines = [f"# {title}", f"# written by benchmarks/surgery/reproduce.py; run: elbo-audit run {path.name}", ""]
    lines += ["[data]", f"path = {_toml_value(_rel(data, base))}", f"key = {_toml_value(split)}"]
    if args.limit is not None:
        lines.append(f"limit = {args.limit}")
    for name, entry in models.items():
        lines += ["", f"[models.{name}]"] + [f"{k} = {_toml_value(v)}" for k, v in entry.items()]
    for name, entry in priors.items():
        lines += ["", f"[priors.{name}]"] + [f"{k} = {_toml_value(v)}" for k, v in entry.items()]
    lines += [
        "", "[estimation]", f"seed = {args.seed}", f"samples_per_point = {args.samples_per_point}",
        f"reconstruction_samples = {args.reconstruction_samples}",
        f"marginal_samples = {args.marginal_samples}", "batch_size = 1000",
        "", "[bootstrap]", f"resamples = {args.bootstrap if bootstrap is None else bootstrap}",
        "confidence = 0.95",
        "", "[report]", f"out = {_toml_value(_rel(out, base))}", f"pointwise = {_toml_value(pointwise)}", "",
    ]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines))
    return path


# ----------------------------------------------------------------------------- running the CLI


class Runner:
    def __init__(self, quiet: bool) -> None:
        self.quiet = quiet
        self.steps: list[dict] = []

    def log(self, msg: str) -> None:
        if not self.quiet:
            print(msg, file=sys.stderr, flush=True)

    def cli(self, name: str, *argv: str, stdout: Path | None = None) -> str:
        """Run ``elbo-audit ARGV`` (as ``python -m elbo_audit``), time it, fail loudly."""
        cmd = [sys.executable, "-m", "elbo_audit", *argv]
        shown = "elbo-audit " + " ".join(shlex.quote(_short(a)) for a in argv)
        self.log(f"[{name}] {shown}")
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, check=False)  # rc checked below
        dt = time.perf_counter() - t0
        self.steps.append({"step": name, "command": shown, "wall_s": round(dt, 2), "rc": proc.returncode})
        if proc.returncode != 0:
            raise RuntimeError(f"[{name}] {shown} exited {proc.returncode}:\n{proc.stderr.strip()[-3000:]}")
        self.log(f"[{name}] done in {dt:.1f} s")
        if stdout is not None:
            stdout.write_text(proc.stdout)
        return proc.stdout


def _short(arg: str) -> str:
    """A path relative to the repository, for readable commands."""
    if os.path.isabs(arg):
        try:
            return os.path.relpath(arg, REPO)
        except ValueError:
            return arg
    return arg


# ----------------------------------------------------------------------------- tables


def read_report(path: Path) -> dict:
    """{model: {prior: {term: (value, se, lo, hi)}}} plus log_n and n_latent per model."""
    import xarray as xr

    out: dict = {}
    with xr.open_dataset(path, engine="netcdf4") as ds:
        for m in ds["model"].values:
            m = str(m)
            out[m] = {"_log_n": float(ds["log_n"].sel(model=m)), "_n_latent": int(ds["n_latent"].sel(model=m)),
                      "_n_points": int(ds.attrs.get("n_points", 0))}
            for p in ds["prior"].values:
                p = str(p)
                fam = str(ds["prior_family"].sel(model=m, prior=p).values)
                if fam == "":
                    continue
                terms = {"_family": fam}
                for t in TERMS + EXTRA_TERMS:
                    ci = ds[f"{t}_ci"].sel(model=m, prior=p).values
                    terms[t] = (float(ds[t].sel(model=m, prior=p)), float(ds[f"{t}_se"].sel(model=m, prior=p)),
                                float(ci[0]), float(ci[1]))
                out[m][p] = terms
    return out


def _fmt(x: float, nd: int = 2) -> str:
    return "n/a" if not math.isfinite(x) else f"{x:.{nd}f}"


def _with_ci(v: tuple[float, float, float, float]) -> str:
    val, _se, lo, hi = v
    if not math.isfinite(val):
        return "n/a"
    ci = f" [{_fmt(lo)}, {_fmt(hi)}]" if math.isfinite(lo) and math.isfinite(hi) else ""
    return f"{_fmt(val)}{ci}"


def judge(term: str, diff: float, paper: float, ours: tuple[float, float, float, float], gap: float,
          diff_before: float | None = None) -> str:
    """Is our term's difference to the paper explained by the training gap?

    The training gap is the paper's ELBO minus ours (how far our model is from theirs). A KL term
    whose difference is no larger than that gap can plausibly close as training goes on; a larger
    one cannot be blamed on training time alone. ``reconstruction`` is derived (ELBO + avg KL), so
    it gets no verdict of its own. Where the 12-minute model's difference ``diff_before`` is
    known, a difference that grew by more than 0.1 nat with training is flagged: training moved
    that term away from the paper, whatever the size of the gap.
    """
    if term == "elbo":
        return "(the training gap)"
    if term == "reconstruction":
        return "n/a (ELBO + avg KL)"
    if not math.isfinite(gap) or not math.isfinite(diff):
        return ""
    lo, hi = ours[2], ours[3]
    if math.isfinite(lo) and lo <= paper <= hi:
        return "agrees (paper inside our CI)"
    verdict = "yes" if abs(diff) <= abs(gap) else "**no**"
    if diff_before is not None and math.isfinite(diff_before) and abs(diff) > abs(diff_before) + 0.1:
        verdict += " (grew with training)"
    return verdict


def hj_table(train: dict, test: dict | None) -> tuple[str, list[dict]]:
    """The markdown table beside the published one, and its rows as records.

    Each latent size shows its longest-trained model (``HJ_ROWS``); where the 12-minute model it
    continued from was audited too, that model's difference to the paper stands beside it, so a
    term whose difference shrinks with training can be told from one that does not move.
    """
    rows = []
    for d_row, long_name, short_name in HJ_ROWS:
        main = long_name if long_name in train else short_name
        if main not in train:
            continue
        before = short_name if main == long_name and short_name in train else None
        rows.append((main, before))
    with_before = any(b is not None for _, b in rows)
    head = ["latents", "model", "term", "paper (train)", "ours, train [95% CI]", "ours − paper", "MC s.e.",
            "within training gap?"]
    if with_before:
        head.insert(6, "12-min model − paper")
    if test is not None:
        head.insert(5, "ours, test [95% CI]")
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    records = []
    for name, before in rows:
        d = train[name]["_n_latent"]
        paper = PAPER.get(d)
        native = train[name]["native"]
        gap = paper["elbo"] - native["elbo"][0] if paper else math.nan  # > 0: we are below the paper
        for t in TERMS + ("reconstruction",):
            ours = native[t]
            if paper is not None:
                pv = paper[t] if t in paper else paper["elbo"] + paper["avg_kl"]
            else:
                pv = math.nan
            diff = ours[0] - pv
            diff_before = train[before]["native"][t][0] - pv if before is not None else None
            verdict = judge(t, diff, pv, ours, gap, diff_before)
            paper_s = _fmt(pv) + (" (derived)" if t == "reconstruction" else "")
            row = [str(d), name, TERM_NAMES[t], paper_s, _with_ci(ours), f"{diff:+.2f}", _fmt(ours[1], 3), verdict]
            if with_before:
                row.insert(6, f"{diff_before:+.2f}" if diff_before is not None else "")
            if test is not None:
                row.insert(5, _with_ci(test[name]["native"][t]) if name in test else "n/a")
            lines.append("| " + " | ".join(row) + " |")
            records.append({"model": name, "latents": d, "term": t, "paper": pv, "ours": ours[0],
                            "se": ours[1], "ci": [ours[2], ours[3]], "diff": diff, "training_gap": gap,
                            "verdict": verdict, "before": before, "diff_before": diff_before,
                            "test": test[name]["native"][t][0] if test is not None and name in test else None})
        row = [str(d), name, "log N (ceiling of MI)", "10.82", _fmt(train[name]["_log_n"]), "", "", ""]
        if with_before:
            row.insert(6, "")
        if test is not None:
            row.insert(5, _fmt(test[name]["_log_n"]) if name in test else "n/a")
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines) + "\n", records


def prior_table(rep: dict) -> str:
    """ELBO and its parts of every 20-latent model under each prior, compactly."""
    head = ["model", "prior", "ELBO [95% CI]", "avg KL", "index-code MI", "marginal KL", "reconstruction"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for m in PRIOR_MODELS:
        if m not in rep:
            continue
        for p, terms in rep[m].items():
            if p.startswith("_"):
                continue
            lines.append("| " + " | ".join([m, f"{p} ({terms['_family']})", _with_ci(terms["elbo"]),
                                            _with_ci(terms["avg_kl"]), _with_ci(terms["index_code_mi"]),
                                            _with_ci(terms["marginal_kl"]), _fmt(terms["reconstruction"][0])]) + " |")
    return "\n".join(lines) + "\n"


def _wall(meta: dict) -> str:
    """Total training wall time; for a continued model, its runs as well ("12.0 + 90.0 min")."""
    total = f"{meta['wall_time_s'] / 60:.1f} min"
    segments = meta.get("segments") or []
    if len(segments) > 1:
        return " + ".join(f"{seg['wall_time_s'] / 60:.1f}" for seg in segments) + f" = {total}"
    return total


def training_table(weights_dir: Path, names: list[str]) -> str:
    head = ["model", "framework", "prior", "epochs", "wall time", "final train ELBO", "final valid ELBO"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name in names:
        path = weights_dir / f"{MODELS[name].stem}.json"
        if not path.is_file():
            continue
        meta = json.loads(path.read_text())
        fin = meta.get("final") or {}
        hp = meta["hyperparameters"]
        prior = hp["prior"] + (f" (K={hp['components']})" if hp.get("components") else "")
        lines.append("| " + " | ".join([
            name, meta["framework"], prior, f"{meta['epochs']} ({meta['steps']} steps)",
            _wall(meta), _fmt(fin.get("train_elbo", math.nan)),
            _fmt(fin.get("valid_elbo", math.nan))]) + " |")
    return "\n".join(lines) + "\n"


def plot_training(weights_dir: Path, out: Path) -> Path | None:
    """Training curves of the H&J table's models: train and valid ELBO against wall time, the
    published (training-set) ELBO as a dashed line, and where each continued run began."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = []
    for d, long_name, short_name in HJ_ROWS:
        for name in (long_name, short_name):
            path = weights_dir / f"{MODELS[name].stem}.json"
            if path.is_file():
                panels.append((d, name, json.loads(path.read_text())))
                break
    if not panels:
        return None
    fig, axes = plt.subplots(1, len(panels), figsize=(4.6 * len(panels), 3.6), squeeze=False)
    for ax, (d, name, meta) in zip(axes[0], panels):
        curves = meta["curves"]
        minutes = [c["wall_s"] / 60 for c in curves]
        ax.plot(minutes, [c["train_elbo"] for c in curves], color="#4c72b0", lw=1, label="train (running mean)")
        ax.plot(minutes, [c["valid_elbo"] for c in curves], color="#dd8452", lw=1, label="valid")
        ax.axhline(PAPER[d]["elbo"], color="k", ls="--", lw=1, label="H&J, train")
        start = 0.0
        for seg in (meta.get("segments") or [])[:-1]:
            start += seg["wall_time_s"] / 60
            ax.axvline(start, color="0.6", lw=0.8, ls=":")
        lo = min(c["valid_elbo"] for c in curves[len(curves) // 10:])
        hi = max(c["train_elbo"] for c in curves)
        ax.set_ylim(min(lo, PAPER[d]["elbo"]) - 3, max(hi, PAPER[d]["elbo"]) + 3)
        ax.set_title(f"{name} ({d} latents)")
        ax.set_xlabel("training wall time, minutes (1 CPU thread)")
    axes[0, 0].set_ylabel("ELBO, nats per data point")
    axes[0, 0].legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def timings_table(steps: list[dict], total: float) -> str:
    lines = ["| step | command | wall time |", "|---|---|---|"]
    for st in steps:
        lines.append(f"| {st['step']} | `{st['command']}` | {st['wall_s']:.1f} s |")
    lines.append(f"| all | `python benchmarks/surgery/reproduce.py ...` | {total:.1f} s ({total / 60:.1f} min) |")
    return "\n".join(lines) + "\n"


def bundle_reports(reports: dict[str, Path], out: Path, title: str) -> Path:
    """All of the run's reports in one netCDF file, one group each (``/hj_train``, ``/hj_test``,
    ``/priors_train`` ...), every group an unchanged elbo-audit report with its own subgroups:
    ``xr.open_datatree(out)["hj_train"]`` reads one back. Written to a temporary file and renamed.
    """
    import xarray as xr

    nodes: dict[str, xr.Dataset] = {}
    for name, path in reports.items():
        with xr.open_datatree(path, engine="netcdf4") as tree:
            for node in tree.subtree:
                rel = node.relative_to(tree)
                key = f"/{name}" + ("" if rel == "." else f"/{rel}")
                nodes[key] = node.to_dataset(inherit=False).load()
    combined = xr.DataTree.from_dict(nodes)
    combined.attrs = {"title": title, "created_by": "benchmarks/surgery/reproduce.py",
                      "groups": json.dumps(sorted(reports))}
    tmp = out.with_name(out.name + ".tmp")
    combined.to_netcdf(tmp, engine="netcdf4")
    os.replace(tmp, out)
    return out


def update_docs(doc: Path, blocks: dict[str, str]) -> list[str]:
    """Replace ``<!-- BEGIN generated:NAME -->...<!-- END generated:NAME -->`` blocks."""
    text = doc.read_text()
    done = []
    for name, body in blocks.items():
        begin, end = f"<!-- BEGIN generated:{name} -->", f"<!-- END generated:{name} -->"
        i, j = text.find(begin), text.find(end)
        if i < 0 or j < i:
            continue
        text = text[: i + len(begin)] + "\n" + body.rstrip("\n") + "\n" + text[j:]
        done.append(name)
    doc.write_text(text)
    return done


# ----------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    run = Runner(args.quiet)
    t_all = time.perf_counter()
    data = npz_path(args.data_dir)
    weights_dir = Path(args.weights_dir).resolve()
    out_dir = Path(args.out_dir).resolve()
    img_dir = Path(args.img_dir).resolve() if args.img_dir else out_dir / "img"
    cfg_dir = out_dir / "configs"
    out_dir.mkdir(parents=True, exist_ok=True)
    splits = [s for s in args.splits.split(",") if s]
    steps = {s for s in args.steps.split(",") if s}

    present = {}
    for name, spec in MODELS.items():
        if (weights_dir / f"{spec.stem}.safetensors").is_file() and (weights_dir / f"{spec.stem}.json").is_file():
            present[name] = model_entry(spec, weights_dir, cfg_dir, args.device)
        else:
            run.log(f"skipping {name}: no {weights_dir / spec.stem}.safetensors/.json "
                    f"(train it: python benchmarks/surgery/{spec.train})")
    priors = {k: dict(v) for k, v in ALT_PRIORS.items()}
    if args.fit_samples is not None:
        priors["mog10"]["samples"] = args.fit_samples

    reports: dict[str, Path] = {}
    for split in splits:
        jobs = []
        if "hj" in steps:
            jobs.append((f"hj_{split}", f"H&J models on binarized MNIST {split}", HJ_MODELS, {}, False))
        if "priors" in steps:
            jobs.append((f"priors_{split}", f"20-latent models and priors on binarized MNIST {split}",
                         PRIOR_MODELS, priors, False))
        if "vae2_pointwise" in steps and split == splits[0]:
            vae2 = next((m for m in HJ_ROWS[0][1:] if m in present), "vae2")  # the table's 2-latent model
            jobs.append((f"vae2_pointwise_{split}", f"2-latent model with per-point posteriors ({split})",
                         (vae2,), {}, True))
        for name, title, wanted, alt, pointwise in jobs:
            models = {m: present[m] for m in wanted if m in present}
            if not models:
                run.log(f"[{name}] skipped: none of {', '.join(wanted)} is trained")
                continue
            report = out_dir / f"{name}.nc"
            cfg = write_config(cfg_dir / f"{name}.toml", title=title, data=data, split=split, models=models,
                               priors=alt, args=args, out=report, pointwise=pointwise)
            run.cli(name, "run", str(cfg), "--quiet", "--format", "json",
                    stdout=out_dir / f"{name}.json")
            reports[name] = report
            if not args.no_plots:
                img_dir.mkdir(parents=True, exist_ok=True)
                run.cli(f"{name}:plot", "show", str(report), "--plot", str(img_dir / f"surgery_{name}.png"),
                        "--quiet", stdout=out_dir / f"{name}.txt")
            if name.startswith("priors_"):
                run.cli(f"{name}:compare", "compare", str(report), "--format", "markdown", "--quiet",
                        stdout=out_dir / f"{name}_compare.md")

    heldout_md = []
    if "heldout" in steps and "train" in splits and "test" in splits:
        for m in HELDOUT_MODELS:
            if m not in present:
                run.log(f"[heldout] skipped: {m} is not trained")
                continue
            # the training set's posteriors, stored per point (no bootstrap: only q(z) is used) ...
            train_rep = out_dir / f"heldout_{m}_train.nc"
            cfg = write_config(cfg_dir / f"heldout_{m}_train.toml", title=f"{m}: training-set posteriors",
                               data=data, split="train", models={m: present[m]}, priors={}, args=args,
                               out=train_rep, pointwise=True, bootstrap=0)
            run.cli(f"heldout_{m}_train", "run", str(cfg), "--quiet", "--no-interaction-adjust",
                    "--format", "json", stdout=out_dir / f"heldout_{m}_train.json")
            # ... then their mixture as a fixed prior for the test set, beside N(0, I), a fitted
            # mixture and the test set's own q(z)
            priors = {"mog10": dict(ALT_PRIORS["mog10"]),
                      "train_q": {"family": "report_aggregate_posterior",
                                  "report": _rel(train_rep, cfg_dir), "model": m},
                      "test_q": {"family": "aggregate_posterior"}}
            if args.fit_samples is not None:
                priors["mog10"]["samples"] = args.fit_samples
            test_rep = out_dir / f"heldout_{m}_test.nc"
            cfg = write_config(cfg_dir / f"heldout_{m}_test.toml",
                               title=f"{m}: the training set's q(z) as a prior for the test set",
                               data=data, split="test", models={m: present[m]}, priors=priors, args=args,
                               out=test_rep)
            md = run.cli(f"heldout_{m}_test", "run", str(cfg), "--quiet", "--format", "markdown",
                         stdout=out_dir / f"heldout_{m}_test.md")
            reports[f"heldout_{m}_test"] = test_rep
            heldout_md.append(md)

    summary: dict = {"data": str(data), "weights_dir": str(weights_dir), "bootstrap": args.bootstrap,
                     "seed": args.seed, "limit": args.limit, "reports": {k: str(v) for k, v in reports.items()}}
    blocks: dict[str, str] = {}
    first = splits[0] if splits else "train"
    if f"hj_{first}" in reports:
        train = read_report(reports[f"hj_{first}"])
        test = read_report(reports["hj_test"]) if "hj_test" in reports and first != "test" else None
        table, records = hj_table(train, test)
        (out_dir / "hj_table.md").write_text(table)
        summary["hj_table"] = records
        blocks["hj_table"] = table
    for split in splits:
        if f"priors_{split}" in reports:
            rep = read_report(reports[f"priors_{split}"])
            blocks[f"priors_{split}"] = prior_table(rep)
            (out_dir / f"priors_{split}_table.md").write_text(blocks[f"priors_{split}"])
            summary[f"priors_{split}"] = rep
            cmp_file = out_dir / f"priors_{split}_compare.md"
            if cmp_file.is_file():
                blocks[f"priors_{split}_compare"] = cmp_file.read_text()
    if heldout_md:
        blocks["heldout"] = "\n".join(heldout_md)
        summary["heldout"] = {m: read_report(out_dir / f"heldout_{m}_test.nc")[m]
                              for m in HELDOUT_MODELS if (out_dir / f"heldout_{m}_test.nc").is_file()}
    if not args.no_plots:
        plot_training(weights_dir, img_dir / "surgery_training_curves.png")
    blocks["training"] = training_table(weights_dir, [n for n in MODELS if n in present and not MODELS[n].via_jax])
    (out_dir / "training_table.md").write_text(blocks["training"])
    summary["steps"] = run.steps
    blocks["timings"] = timings_table(run.steps, time.perf_counter() - t_all)
    (out_dir / "timings.md").write_text(blocks["timings"])
    if reports:
        bundle = bundle_reports(reports, out_dir / "surgery.nc",
                                "ELBO surgery on binarized MNIST, reproduced: every report of one run")
        summary["bundle"] = str(bundle)
    summary["wall_s"] = round(time.perf_counter() - t_all, 2)
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=1, default=str) + "\n")
    if args.update_docs:
        done = update_docs(Path(args.update_docs), blocks)
        run.log(f"updated {args.update_docs}: {', '.join(done) or 'no generated blocks found'}")
    if "hj_table" in blocks and not args.quiet:
        print(blocks["hj_table"])
    run.log(f"all done in {summary['wall_s']:.1f} s; outputs in {out_dir}")
    return summary


if __name__ == "__main__":
    try:
        main()
    except (RuntimeError, FileNotFoundError) as exc:
        print(f"reproduce.py: {exc}", file=sys.stderr)
        sys.exit(2)
