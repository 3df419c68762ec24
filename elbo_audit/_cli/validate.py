"""Range, type and NaN checks of every numeric option and environment variable of a run.

All run before any work: a value that numpy, netCDF or a thread pool would
reject later (a negative or 65-bit seed, a NaN ``target_se``, a zero thread
count) is refused here as a usage error (exit 2) naming the option.
:func:`check_encoding_range` does the same for the values of saved encodings
(``--posteriors``): finite numbers so large or so small that the terms would
overflow float64 are a data error (exit 2) naming the array and data point.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from .._errors import DataError, UsageError
from .._model.families import ENCODING_BOUNDS
from .config import RunConfig

__all__ = [
    "ENCODING_BOUNDS",
    "MAX_COUNT",
    "MAX_SEED",
    "check_encoding_range",
    "check_environment",
    "check_not_empty",
    "check_numbers",
    "check_paths",
]

#: Largest seed: numpy's SeedSequence and the report's u8 attribute take 0 .. 2**64 - 1.
MAX_SEED = 2**64 - 1
#: Largest sample, resample or batch count (int32 indexing); memory is judged by the preflight.
MAX_COUNT = 2**31 - 1
_MAX_THREADS = 4096

def _int(name: str, value: object, lo: int, hi: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise UsageError(f"{name} must be an integer, got {value!r}")
    if not lo <= value <= hi:
        raise UsageError(f"{name} must be in [{lo}, {hi}], got {value}")


def _float(name: str, value: object, lo: float, hi: float, *, open_lo: bool = False,
           open_hi: bool = False) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise UsageError(f"{name} must be a number, got {value!r}")
    v = float(value)
    if not math.isfinite(v):
        raise UsageError(f"{name} must be a finite number, got {value}")
    if v < lo or v > hi or (open_lo and v == lo) or (open_hi and v == hi):
        left, right = "(" if open_lo else "[", ")" if open_hi else "]"
        raise UsageError(f"{name} must be in {left}{lo:g}, {hi:g}{right}, got {value}")


def check_numbers(cfg: RunConfig) -> None:
    """Refuse (exit 2) any numeric setting out of range, of the wrong type, NaN or infinite."""
    _int("seed", cfg.seed, 0, MAX_SEED)
    for name in ("samples_per_point", "reconstruction_samples", "marginal_samples", "batch_size"):
        _int(name.replace("_", "-"), getattr(cfg, name), 1, MAX_COUNT)
    _int("bootstrap resamples", cfg.resamples, 0, MAX_COUNT)
    _int("iw-samples", cfg.iw_samples, 0, MAX_COUNT)
    _int("refine-steps", cfg.refine_steps, 0, MAX_COUNT)
    _int("refine-samples", cfg.refine_samples, 1, MAX_COUNT)
    _float("refine-lr", cfg.refine_lr, 0.0, math.inf, open_lo=True)
    _float("active-threshold", cfg.active_threshold, 0.0, math.inf)
    _float("confidence", cfg.confidence, 0.0, 1.0, open_lo=True, open_hi=True)
    if cfg.target_se is not None:
        _float("target-se", cfg.target_se, 0.0, math.inf, open_lo=True)
    if cfg.max_seconds is not None:
        _float("max-seconds", cfg.max_seconds, 0.0, math.inf, open_lo=True)
    if cfg.max_samples_per_point is not None:
        _int("max-samples-per-point", cfg.max_samples_per_point, 1, MAX_COUNT)
    if cfg.limit is not None:
        _int("limit", cfg.limit, 2, 2**62)
    if cfg.binarize is not None:
        _float("binarize", cfg.binarize, 0.0, 1.0, open_hi=True)


def check_environment() -> None:
    """Refuse a malformed ``ELBO_AUDIT_NUM_THREADS`` before any thread pool reads it."""
    text = os.environ.get("ELBO_AUDIT_NUM_THREADS")
    if text is None or not text.strip():
        return
    try:
        n = int(text.strip())
    except ValueError:
        raise UsageError(
            f"ELBO_AUDIT_NUM_THREADS={text!r}: expected a whole number of threads, e.g. 4"
        ) from None
    if not 1 <= n <= _MAX_THREADS:
        raise UsageError(f"ELBO_AUDIT_NUM_THREADS={text!r}: must be in [1, {_MAX_THREADS}]")


def check_not_empty(paths: dict[str, str | None]) -> None:
    """Refuse (exit 2) a path option given as an empty string (``--plot ""``), never silently skip it.

    ``paths`` maps each option (``"--baseline"``) to its value, None where not given.
    """
    for flag, value in paths.items():
        if value is not None and not value.strip():
            raise UsageError(f"{flag}: empty path; name a file or leave the option out")


def _same(a: Path, b: Path) -> bool:
    try:
        if a.exists() and b.exists():
            return os.path.samefile(a, b)
    except OSError:
        pass
    return os.path.realpath(a) == os.path.realpath(b)


def check_paths(out: str, inputs: dict[str, str | None]) -> None:
    """Refuse an output path that is empty, a folder, unwritable, or one of the inputs.

    ``inputs`` maps what each input is (``"the config file"``, ``"--data"``)
    to its path; the report would overwrite it.
    """
    if not str(out).strip():
        raise UsageError("--out: empty path; name a report file, e.g. --out report.nc")
    path = Path(out)
    if path.is_dir():
        raise UsageError(f"--out {out}: is a folder; name a report file inside it")
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.is_dir():
        raise UsageError(f"--out {out}: folder {folder} does not exist")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise UsageError(f"--out {out}: folder {folder} is not writable (permissions or a read-only file system)")
    if path.exists() and not os.access(path, os.W_OK) and not os.access(folder, os.W_OK):
        raise UsageError(f"--out {out}: the existing file is not writable")
    for what, given in inputs.items():
        if given and _same(path, Path(given)):
            raise UsageError(f"--out {out}: is {what}; the report would overwrite it")


def check_encoding_range(path: Path | str, key: str, values: NDArray[Any]) -> None:
    """Refuse (exit 2) finite values of array ``key`` outside :data:`ENCODING_BOUNDS`.

    NaN, infinite and non-positive values are left to the readers' own checks
    (their messages say so); the first data point (row) out of range is named.
    """
    lo, hi = ENCODING_BOUNDS[key]
    arr = np.asarray(values, dtype=np.float64)
    if arr.size == 0:
        return  # the readers refuse empty arrays by shape
    rows = arr.reshape(arr.shape[0], -1) if arr.ndim else arr.reshape(1, 1)
    with np.errstate(invalid="ignore"):
        bad = np.isfinite(rows) & ((rows < lo) | (rows > hi))
        if key == "std":
            bad &= rows > 0.0
    if not bad.any():
        return
    row = int(np.flatnonzero(bad.any(axis=1))[0])
    value = float(rows[row][bad[row]][0])
    count = int(np.count_nonzero(bad.any(axis=1)))
    more = f" (and {count - 1} more data points)" if count > 1 else ""
    raise DataError(
        f"{path}: array {key!r} holds {value:g} at data point {row}{more}, outside [{lo:.3g}, {hi:.3g}]; "
        "beyond it the terms are not finite in float64 (see docs/posteriors.md, value ranges)"
    )
