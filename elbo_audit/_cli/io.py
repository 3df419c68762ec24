"""Reading inputs: saved encodings (ENC.npz) and datasets (npz, npy, IDX).

Every reader checks what it reads and fails with one line naming the file and
what is wrong. Nothing is unpickled: ``np.load`` always runs with
``allow_pickle=False``, and a file that needs pickle is refused (exit code 4).
Files beside a ``SOURCES.txt`` that lists their sha256 are verified against it.
"""

from __future__ import annotations

import gzip
import hashlib
import re
import tokenize
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from .._errors import DataError, UnsafeArtifactError
from .._model.families import DiagonalGaussian
from ..hookspecs import Dataset
from .models import sha256_file
from .preflight import header_fault, idx_header
from .validate import check_encoding_range

__all__ = ["EncodedPosteriors", "load_array_file", "load_posteriors", "read_idx", "verify_sources"]

#: Faults of reading an archive or a .npy header other than ValueError (see preflight.header_fault).
_READ_FAULTS = (zipfile.BadZipFile, OSError, EOFError, zlib.error, SyntaxError, tokenize.TokenError, RecursionError)
_SHA = re.compile(r"\b([0-9a-f]{64})\b")


@dataclass(frozen=True)
class EncodedPosteriors:
    """Posteriors saved by any framework, with optional reconstruction samples."""

    posteriors: DiagonalGaussian
    reconstruction: NDArray[np.float64] | None
    path: Path
    sha256: str


def _open_npz(path: Path) -> Any:
    if not path.exists():
        raise DataError(f"{path}: file does not exist")
    if not path.is_file():
        raise DataError(f"{path}: not a file")
    with open(path, "rb") as fh:
        magic = fh.read(6)
    if magic[:1] == b"\x80":
        raise UnsafeArtifactError(f"{path}: is a pickle, which can run arbitrary code; refused")
    if magic[:4] != b"PK\x03\x04" and magic != b"\x93NUMPY":
        raise DataError(f"{path}: not an .npz or .npy file (unrecognised header)")
    try:
        return np.load(path, allow_pickle=False)
    except _READ_FAULTS as exc:
        raise DataError(f"{path}: not a readable .npz/.npy file ({header_fault(exc)})") from exc
    except ValueError as exc:
        if "pickle" in str(exc).lower():
            raise UnsafeArtifactError(f"{path}: holds pickled objects, which are refused") from exc
        raise DataError(f"{path}: not a readable .npz/.npy file ({exc})") from exc


def _get(npz: Any, key: str, path: Path) -> NDArray[Any]:
    try:
        arr: NDArray[Any] = npz[key]
    except ValueError as exc:
        if "pickle" in str(exc).lower():
            raise UnsafeArtifactError(f"{path}: array {key!r} holds pickled objects, which are refused") from exc
        raise DataError(f"{path}: array {key!r} is unreadable ({exc})") from exc
    except _READ_FAULTS as exc:  # a corrupt member or .npy header
        raise DataError(f"{path}: array {key!r} is unreadable ({header_fault(exc)})") from exc
    if arr.dtype.kind not in "iuf":
        raise DataError(f"{path}: array {key!r} has dtype {arr.dtype}, expected numbers (integer or float)")
    return arr


def load_posteriors(path: str | Path) -> EncodedPosteriors:
    """Read an ENC.npz: ``mean`` (N, D), ``log_std`` or ``std`` (N, D), optional ``reconstruction``.

    ``reconstruction`` holds samples of log p(x_n | z) with z ~ q(z | x_n),
    shape (N,) or (N, K).

    Raises
    ------
    DataError
        Missing or unreadable file, wrong keys, shapes or values.
    UnsafeArtifactError
        The file holds pickled objects.
    """
    path = Path(path)
    npz = _open_npz(path)
    if not isinstance(npz, np.lib.npyio.NpzFile):
        raise DataError(f"{path}: expected an .npz archive with keys 'mean' and 'log_std' or 'std'")
    with npz:
        keys = set(npz.files)
        if "mean" not in keys:
            raise DataError(f"{path}: missing array 'mean' (found: {sorted(keys) or 'none'})")
        has_log, has_std = "log_std" in keys, "std" in keys
        if has_log == has_std:
            what = "both" if has_log else "neither"
            raise DataError(f"{path}: need exactly one of 'log_std' or 'std', found {what}")
        unknown = keys - {"mean", "log_std", "std", "reconstruction"}
        if unknown:
            raise DataError(
                f"{path}: unknown array(s) {sorted(unknown)}; expected mean, log_std or std, "
                "and optionally reconstruction"
            )
        mean = _get(npz, "mean", path)
        scale_key = "log_std" if has_log else "std"
        scale = _get(npz, scale_key, path)
        if mean.ndim != 2:
            raise DataError(f"{path}: 'mean' must have shape (N, D), got {mean.shape}")
        if scale.shape != mean.shape:
            raise DataError(f"{path}: '{scale_key}' has shape {scale.shape}, 'mean' has {mean.shape}")
        for key, arr in (("mean", mean), (scale_key, scale)):
            check_encoding_range(path, key, arr)
        source = str(path)
        if has_log:
            q = DiagonalGaussian.from_log_std(mean, scale, source=source)
        else:
            q = DiagonalGaussian(mean, scale, source=source)
        q.require_mixture()
        recon = None
        if "reconstruction" in keys:
            recon = np.asarray(_get(npz, "reconstruction", path), dtype=np.float64)
            if recon.ndim not in (1, 2) or recon.shape[0] != q.n_points or recon.size == 0:
                raise DataError(
                    f"{path}: 'reconstruction' must have shape (N,) or (N, K) with N = {q.n_points}, "
                    f"got {recon.shape}"
                )
            check_encoding_range(path, "reconstruction", recon)
            bad = ~np.isfinite(recon.reshape(recon.shape[0], -1))
            if bad.any():
                rows = np.flatnonzero(bad.any(axis=1))
                raise DataError(
                    f"{path}: 'reconstruction' has NaN or infinite values at data points "
                    + ", ".join(str(int(r)) for r in rows[:5])
                    + (f" and {rows.size - 5} more" if rows.size > 5 else "")
                )
    return EncodedPosteriors(q, recon, path, sha256_file(path))


def verify_sources(path: Path) -> str:
    """sha256 of ``path``, checked against a ``SOURCES.txt`` beside it if that lists the file."""
    digest = sha256_file(path)
    sources = path.parent / "SOURCES.txt"
    if sources.is_file():
        for line in sources.read_text(errors="replace").splitlines():
            tokens = line.split()
            if path.name in tokens:
                listed = _SHA.findall(line)
                if listed and digest not in listed:
                    raise DataError(
                        f"{path}: sha256 {digest[:12]}... does not match {listed[0][:12]}... listed "
                        f"in {sources}; the file is corrupt or was changed"
                    )
    return digest


def read_idx(path: Path) -> NDArray[np.uint8]:
    """Read an IDX file (MNIST format), gzipped or not.

    The header is read first and only the bytes it announces are read after
    it, so a gzip bomb decompresses no further than the claimed shape (which
    the run's preflight has already sized).
    """
    dims, offset = idx_header(path)
    expected = int(np.prod(dims, dtype=np.int64)) if dims else 0
    opener: Any = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as fh:
            fh.read(offset)
            raw = fh.read(expected)
            extra = fh.read(1)
    except (OSError, EOFError, zlib.error) as exc:
        raise DataError(f"{path}: unreadable IDX file ({exc})") from exc
    if len(raw) != expected or extra:
        got = f"{len(raw)}" if not extra else f"more than {expected}"
        raise DataError(f"{path}: IDX header says shape {list(dims)} but the file has {got} bytes of data")
    return np.frombuffer(raw, dtype=np.uint8).reshape(dims)


def load_array_file(spec: str, *, binarize: float | None = None, limit: int | None = None) -> Dataset:
    """Load a dataset from ``FILE.npz[:key]``, ``FILE.npy`` or an IDX(.gz) file.

    Rows are data points; trailing dimensions are kept. ``binarize`` maps
    values to ``x > binarize`` (after scaling uint8 grey levels to [0, 1]).
    ``limit`` keeps the first rows only.
    """
    path_str, key = spec, None
    if ":" in spec and not Path(spec).exists():
        path_str, _, key = spec.rpartition(":")
    path = Path(path_str)
    if not path.is_file():
        raise DataError(f"--data {spec}: file {path} does not exist")
    digest = verify_sources(path)
    name = path.name + (f":{key}" if key else "")
    if path.suffix == ".gz" or "idx" in path.name:
        x: NDArray[Any] = read_idx(path)
    else:
        loaded = _open_npz(path)
        if isinstance(loaded, np.lib.npyio.NpzFile):
            with loaded:
                if key is None:
                    if len(loaded.files) != 1:
                        raise DataError(
                            f"--data {spec}: the archive has arrays {loaded.files}; name one as FILE.npz:KEY"
                        )
                    key = loaded.files[0]
                if key not in loaded.files:
                    raise DataError(f"--data {spec}: no array {key!r} (found: {loaded.files})")
                x = _get(loaded, key, path)
        else:
            if key is not None:
                raise DataError(f"--data {spec}: a .npy file has no keys")
            x = np.asarray(loaded)
            if x.dtype.kind not in "iuf":
                raise DataError(f"--data {spec}: dtype {x.dtype}, expected numbers (integer or float)")
    if x.ndim < 2 or x.shape[0] < 2:
        raise DataError(f"--data {spec}: need at least 2 data points as rows, got shape {x.shape}")
    if limit is not None:
        x = x[:limit]
    bad = ~np.isfinite(x.reshape(x.shape[0], -1)) if x.dtype.kind == "f" else None
    if bad is not None and bad.any():
        rows = np.flatnonzero(bad.any(axis=1))[:5]
        raise DataError(f"--data {spec}: NaN or infinite values at data points {', '.join(map(str, rows))}")
    if binarize is not None:
        x = binarize_grey_levels(x, binarize, f"--data {spec}")
    attrs: dict[str, Any] = {
        "name": name,
        "sha256": array_sha256(x),
        "size": int(x.shape[0]),
        "path": str(path),
        "file_sha256": digest,
    }
    if key is not None:
        attrs["key"] = key
    if limit is not None:
        attrs["limit"] = int(limit)
    if binarize is not None:
        attrs["binarize"] = binarize
    return Dataset(name, x, attrs)


def binarize_grey_levels(x: NDArray[Any], threshold: float, where: str) -> NDArray[np.float64]:
    """``x > threshold`` with grey levels in [0, 1]: uint8 data is divided by 255 first.

    One meaning for every source (files and built-in datasets): other data must
    already lie in [0, 1], else the threshold would depend on the data's own
    maximum; that is refused, naming the range found.
    """
    if not 0.0 <= threshold < 1.0:
        raise DataError(f"{where}: --binarize {threshold}: the threshold must be in [0, 1)")
    if x.dtype == np.uint8:
        levels = x.astype(np.float64) / 255.0
    else:
        levels = np.asarray(x, np.float64)
        lo, hi = (float(levels.min()), float(levels.max())) if levels.size else (0.0, 0.0)
        if lo < 0.0 or hi > 1.0:
            raise DataError(
                f"{where}: --binarize needs grey levels in [0, 1] or uint8 data, found values in "
                f"[{lo:g}, {hi:g}]; scale the data first"
            )
    return np.asarray(levels > threshold, np.float64)


def array_sha256(x: NDArray[Any], *, block_bytes: int = 1 << 26) -> str:
    """sha256 of the array actually audited: its dtype, shape and C-order bytes.

    This is the report's ``dataset_sha256`` (see ``elbo_audit._report.identity``):
    it changes with ``FILE.npz:KEY``, ``--limit`` and ``--binarize``, unlike the
    file's own digest. Rows are hashed in blocks of about ``block_bytes`` so a
    large array is never copied whole.
    """
    h = hashlib.sha256(f"{np.dtype(x.dtype).str}{tuple(int(d) for d in x.shape)}".encode())
    if x.ndim == 0 or x.shape[0] == 0:
        h.update(np.ascontiguousarray(x).tobytes())
        return h.hexdigest()
    row = max(1, int(x.nbytes // x.shape[0]))
    step = max(1, block_bytes // row)
    for start in range(0, x.shape[0], step):
        h.update(np.ascontiguousarray(x[start : start + step]).tobytes())
    return h.hexdigest()
