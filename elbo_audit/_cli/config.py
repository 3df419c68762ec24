"""The TOML configuration of ``elbo-audit run``.

Example::

    [data]                      # one of: name (a built-in dataset) or path
    path = "../shared/data/binarized_mnist/binarized_mnist.npz"
    key = "test"
    binarize = 0.5              # optional: x > 0.5 after scaling grey levels to [0, 1]
    limit = 1000                # optional: the first rows only

    [models.vae20]
    factory = "benchmarks/models.py:mlp_vae"
    weights = "weights/vae20.safetensors"
    adapter = "torch"           # optional
    device = "cpu"              # optional
    options = { latent = 20 }   # keyword arguments of the factory
    allow_unsafe = false
    no_weights = false          # true: audit the factory's own parameters (no weights file)

    [native_prior]              # with data.posteriors only: the prior of the saved
    family = "diagonal_gaussian"  # encodings (default standard_normal)
    std = 2.0

    [priors.mog10]              # alternative priors, evaluated for every model
    family = "fitted_mixture"   # a registered prior family (elbo-audit plugins)
    components = 10             # the family's options

    [estimation]
    seed = 0
    samples_per_point = 1
    reconstruction_samples = 2
    marginal_samples = 2048
    batch_size = 1000
    iw_samples = 1000           # optional: importance samples for log_likelihood (default 0: off)
    refine_steps = 100          # optional: gradient steps per data point (default 0: off)
    refine_lr = 0.05            #   Adam's initial step size, decaying linearly to 0
    refine_samples = 4          #   draws of z per step
    active_threshold = 0.01     # variance of posterior means above which a latent is active
    backend = "native"          # optional: a compute backend (elbo-audit backends);
    precision = "float32"       #   default the fastest available, in its own precision
    device = "cuda"             # optional: the backend's device (default its own)
    scheduler = "tcp://host:8786"  # optional: a Dask scheduler (backend dask)

    target_se = 0.01            # optional: draw until every Monte Carlo se is below
    max_seconds = 600           #   this, within a time and/or draw budget
    max_samples_per_point = 64

    [bootstrap]
    resamples = 1000
    confidence = 0.95
    method = "bca"              # or percentile, basic, normal
    interaction_adjust = true

    [report]
    out = "elbo-audit-report.nc"
    pointwise = false
    gates = ["marginal_kl < 5", "elbo.lower > -95"]

Relative paths in a config file are relative to the file's folder. Unknown
keys and wrong types are errors naming the key and its line.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .._errors import UsageError

__all__ = ["ModelEntry", "PriorEntry", "RunConfig", "load_config"]


@dataclass
class ModelEntry:
    name: str
    factory: str | None = None
    weights: str | None = None
    adapter: str | None = None
    device: str | None = None
    options: dict[str, Any] = field(default_factory=dict)
    allow_unsafe: bool = False
    no_weights: bool = False


@dataclass
class PriorEntry:
    name: str
    family: str
    options: dict[str, Any] = field(default_factory=dict)


@dataclass
class RunConfig:
    """Everything a run needs; command-line options override each field."""

    data_name: str | None = None
    data_path: str | None = None
    data_key: str | None = None
    binarize: float | None = None
    limit: int | None = None
    posteriors: str | None = None
    native_prior: PriorEntry | None = None
    models: list[ModelEntry] = field(default_factory=list)
    priors: list[PriorEntry] = field(default_factory=list)
    seed: int = 0
    samples_per_point: int = 1
    reconstruction_samples: int = 2
    marginal_samples: int = 2048
    batch_size: int = 1000
    iw_samples: int = 0
    refine_steps: int = 0
    refine_lr: float = 0.05
    refine_samples: int = 4
    active_threshold: float = 0.01
    target_se: float | None = None
    max_seconds: float | None = None
    max_samples_per_point: int | None = None
    backend: str | None = None
    precision: str | None = None
    device: str | None = None
    scheduler: str | None = None
    resamples: int = 1000
    confidence: float = 0.95
    ci_method: str = "bca"
    interaction_adjust: bool = True
    out: str = "elbo-audit-report.nc"
    pointwise: bool = False
    gates: list[str] = field(default_factory=list)
    source: str = ""


_NUM = (int, float)
_SCHEMA: dict[str, dict[str, tuple[type | tuple[type, ...], str]]] = {
    "data": {
        "name": (str, "data_name"), "path": (str, "data_path"), "key": (str, "data_key"),
        "binarize": (_NUM, "binarize"), "limit": (int, "limit"), "posteriors": (str, "posteriors"),
    },
    "estimation": {
        "seed": (int, "seed"), "samples_per_point": (int, "samples_per_point"),
        "reconstruction_samples": (int, "reconstruction_samples"),
        "marginal_samples": (int, "marginal_samples"), "batch_size": (int, "batch_size"),
        "iw_samples": (int, "iw_samples"), "refine_steps": (int, "refine_steps"),
        "refine_lr": (_NUM, "refine_lr"), "refine_samples": (int, "refine_samples"),
        "active_threshold": (_NUM, "active_threshold"),
        "target_se": (_NUM, "target_se"), "max_seconds": (_NUM, "max_seconds"),
        "max_samples_per_point": (int, "max_samples_per_point"),
        "backend": (str, "backend"), "precision": (str, "precision"),
        "device": (str, "device"), "scheduler": (str, "scheduler"),
    },
    "bootstrap": {
        "resamples": (int, "resamples"), "confidence": (_NUM, "confidence"),
        "method": (str, "ci_method"), "interaction_adjust": (bool, "interaction_adjust"),
    },
    "report": {"out": (str, "out"), "pointwise": (bool, "pointwise"), "gates": (list, "gates")},
}
_MODEL_KEYS: dict[str, type | tuple[type, ...]] = {
    "factory": str, "weights": str, "adapter": str, "device": str, "options": dict, "allow_unsafe": bool,
    "no_weights": bool,
}


class _Lines:
    """Finds the line of ``table.key`` in the TOML text, for error messages."""

    def __init__(self, text: str) -> None:
        self.where: dict[str, int] = {}
        table = ""
        for i, raw in enumerate(text.splitlines(), start=1):
            line = raw.split("#", 1)[0].strip()
            m = re.match(r"^\[\s*([^\]]+?)\s*\]$", line)
            if m:
                table = m.group(1).replace('"', "").replace(" ", "")
                self.where.setdefault(table, i)
                continue
            m = re.match(r"^([A-Za-z0-9_\-\"\.]+)\s*=", line)
            if m:
                key = m.group(1).strip('"')
                self.where.setdefault(f"{table}.{key}" if table else key, i)

    def __call__(self, dotted: str) -> str:
        line = self.where.get(dotted)
        return f"line {line}" if line else "unknown line"


def _type_ok(value: Any, kind: type | tuple[type, ...]) -> bool:
    if isinstance(value, bool) and kind in (int, _NUM):
        return False
    return isinstance(value, kind)


def _kind_name(kind: type | tuple[type, ...]) -> str:
    return "number" if kind == _NUM else getattr(kind, "__name__", str(kind))


def load_config(path: str | Path) -> RunConfig:
    """Read and check a TOML config.

    Raises
    ------
    UsageError
        The file is missing or not TOML, or a key is unknown or of the wrong
        type (the message names the key and its line).
    """
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"{path}: config file does not exist")
    text = path.read_text(encoding="utf-8", errors="replace")
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(f"{path}: not valid TOML: {exc}") from exc
    lines = _Lines(text)
    cfg = RunConfig(source=str(path))
    for table, body in doc.items():
        if table in _SCHEMA:
            if not isinstance(body, dict):
                raise UsageError(f"{path}: {lines(table)}: '{table}' must be a table")
            for key, value in body.items():
                spec = _SCHEMA[table].get(key)
                if spec is None:
                    known = ", ".join(_SCHEMA[table])
                    raise UsageError(f"{path}: {lines(f'{table}.{key}')}: unknown key '{table}.{key}' (known: {known})")
                kind, attr = spec
                if not _type_ok(value, kind):
                    raise UsageError(
                        f"{path}: {lines(f'{table}.{key}')}: '{table}.{key}' must be a {_kind_name(kind)}, "
                        f"got {type(value).__name__}"
                    )
                if attr == "gates" and not all(isinstance(g, str) for g in value):
                    raise UsageError(f"{path}: {lines('report.gates')}: 'report.gates' must be a list of strings")
                setattr(cfg, attr, float(value) if kind == _NUM else value)
        elif table == "models":
            if not isinstance(body, dict):
                raise UsageError(f"{path}: {lines('models')}: 'models' must hold tables [models.NAME]")
            for name, entry in body.items():
                where = f"models.{name}"
                if not isinstance(entry, dict):
                    raise UsageError(f"{path}: {lines(where)}: '{where}' must be a table")
                for key, value in entry.items():
                    if key not in _MODEL_KEYS:
                        raise UsageError(
                            f"{path}: {lines(f'{where}.{key}')}: unknown key '{where}.{key}' "
                            f"(known: {', '.join(_MODEL_KEYS)})"
                        )
                    if not _type_ok(value, _MODEL_KEYS[key]):
                        raise UsageError(
                            f"{path}: {lines(f'{where}.{key}')}: '{where}.{key}' must be a "
                            f"{_kind_name(_MODEL_KEYS[key])}, got {type(value).__name__}"
                        )
                if "factory" not in entry and "weights" not in entry:
                    raise UsageError(f"{path}: {lines(where)}: '{where}' needs a factory or a weights file")
                cfg.models.append(ModelEntry(name=name, **entry))
        elif table == "priors":
            if not isinstance(body, dict):
                raise UsageError(f"{path}: {lines('priors')}: 'priors' must hold tables [priors.NAME]")
            for name, entry in body.items():
                where = f"priors.{name}"
                if not isinstance(entry, dict) or not isinstance(entry.get("family"), str):
                    raise UsageError(f"{path}: {lines(where)}: '{where}' needs family = \"NAME\"")
                if name == "native":
                    raise UsageError(f"{path}: {lines(where)}: 'native' is reserved for each model's own prior")
                options = {k: v for k, v in entry.items() if k != "family"}
                if isinstance(options.get("report"), str) and not Path(options["report"]).is_absolute():
                    options["report"] = str(path.parent / options["report"])
                cfg.priors.append(PriorEntry(name, entry["family"], options))
        elif table == "native_prior":
            if not isinstance(body, dict) or not isinstance(body.get("family"), str):
                raise UsageError(f"{path}: {lines(table)}: 'native_prior' needs family = \"NAME\"")
            options = {k: v for k, v in body.items() if k != "family"}
            cfg.native_prior = PriorEntry("native", body["family"], options)
        else:
            known = ", ".join([*_SCHEMA, "models", "priors", "native_prior"])
            raise UsageError(f"{path}: {lines(table)}: unknown table or key '{table}' (known: {known})")
    if cfg.native_prior is not None and not cfg.posteriors:
        raise UsageError(
            f"{path}: {lines('native_prior')}: 'native_prior' applies to data.posteriors only; "
            "a model brings its own prior"
        )
    if cfg.data_name and cfg.data_path:
        raise UsageError(f"{path}: {lines('data.name')}: give data.name or data.path, not both")
    base = path.parent
    # relative paths in a config are relative to the config file
    if cfg.data_path and not Path(cfg.data_path).is_absolute():
        cfg.data_path = str(base / cfg.data_path)
    if "out" in doc.get("report", {}) and not Path(cfg.out).is_absolute():
        cfg.out = str(base / cfg.out)
    if cfg.posteriors and not Path(cfg.posteriors).is_absolute():
        cfg.posteriors = str(base / cfg.posteriors)
    for m in cfg.models:
        if m.weights and not Path(m.weights).is_absolute():
            m.weights = str(base / m.weights)
        if m.factory and ".py:" in m.factory and not Path(m.factory.split(":")[0]).is_absolute():
            m.factory = str(base / m.factory)
    return cfg
