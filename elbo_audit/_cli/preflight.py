"""The memory preflight of ``elbo-audit run``: what the work needs, before any of it starts.

Array sizes are read from the headers of .npy/.npz/IDX files (``numpy.lib.format``,
never loading an array); a header that claims more bytes than its file holds is
refused. From them and the options, :func:`estimate` adds up the memory of the
audit (a conservative linear model of what ``docs/performance.md`` measured:
inputs, prepared components, draws, the marginal samples, the bootstrap) and the
pair count of its passes; :func:`require_fits` refuses a run that needs more than
the machine has available (``/proc/meminfo`` MemAvailable, the cgroup limit, or
``ELBO_AUDIT_MAX_MEMORY``), naming how much and which option to lower.
"""

from __future__ import annotations

import gzip
import os
import re
import tokenize
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np

from .._errors import DataError, UnsafeArtifactError, UsageError

__all__ = [
    "ArrayHeader",
    "Cost",
    "available_memory",
    "estimate",
    "format_bytes",
    "header_fault",
    "idx_header",
    "npy_headers",
    "require_fits",
]

_MAX_HEADER = 10_000  # numpy's own default limit on a .npy header
_BASE_BYTES = 64 << 20  # interpreter, libraries and fixed-size work buffers
_TERMS = 16  # report variables per (model, prior) cell, with se and intervals


@dataclass(frozen=True)
class ArrayHeader:
    """The shape and dtype a file claims for one array."""

    shape: tuple[int, ...]
    dtype: np.dtype[Any]

    @property
    def nbytes(self) -> int:
        n = 1
        for d in self.shape:
            n *= int(d)
        return n * int(self.dtype.itemsize)


#: What numpy's header parser raises on a corrupt header: ``ast.literal_eval`` and,
#: for format 1.0/2.0 headers it cannot parse, its Python 2 ``tokenize`` fallback
#: (``TokenError`` on an unterminated string or bracket); deep nesting recurses.
_HEADER_FAULTS: tuple[type[BaseException], ...] = (
    ValueError, EOFError, OSError, zlib.error, SyntaxError, TypeError, tokenize.TokenError, RecursionError,
)


def header_fault(exc: BaseException) -> str:
    """One line saying why a .npy header did not parse (``TokenError`` carries a tuple)."""
    if isinstance(exc, tokenize.TokenError) and exc.args:
        return f"corrupt header: {exc.args[0]}"
    return " ".join(str(exc).split()) or type(exc).__name__


def _read_npy_header(fh: IO[bytes], where: str) -> ArrayHeader:
    fmt = np.lib.format
    try:
        version = fmt.read_magic(fh)
        if version == (1, 0):
            shape, _fortran, dtype = fmt.read_array_header_1_0(fh, max_header_size=_MAX_HEADER)
        elif version in ((2, 0), (3, 0)):
            shape, _fortran, dtype = fmt.read_array_header_2_0(fh, max_header_size=_MAX_HEADER)
        else:
            raise DataError(f"{where}: unsupported .npy format version {version}")
    except DataError:
        raise
    except _HEADER_FAULTS as exc:
        raise DataError(f"{where}: not a readable .npy header ({header_fault(exc)})") from exc
    if dtype.hasobject:
        raise UnsafeArtifactError(f"{where}: holds pickled objects (dtype {dtype}), which are refused")
    if any(int(d) < 0 for d in shape):
        raise DataError(f"{where}: negative dimension in shape {shape}")
    return ArrayHeader(tuple(int(d) for d in shape), dtype)


def npy_headers(path: Path) -> dict[str, ArrayHeader]:
    """The arrays a .npy (key ``""``) or .npz file claims to hold, from headers only.

    Raises
    ------
    DataError
        A header is unreadable, or claims more bytes than the file (or its
        archive member) holds.
    UnsafeArtifactError
        An array holds Python objects (pickle).
    """
    with open(path, "rb") as fh:
        magic = fh.read(6)
        fh.seek(0)
        if magic == b"\x93NUMPY":
            head = _read_npy_header(fh, str(path))
            offset = fh.tell()
            size = os.fstat(fh.fileno()).st_size
            if size - offset < head.nbytes:
                raise DataError(
                    f"{path}: the header claims shape {head.shape} ({format_bytes(head.nbytes)}) "
                    f"but the file holds {format_bytes(size - offset)} of data; truncated or forged"
                )
            return {"": head}
    if magic[:1] == b"\x80":
        raise UnsafeArtifactError(f"{path}: is a pickle, which can run arbitrary code; refused")
    if magic[:4] != b"PK\x03\x04":
        return {}  # not an array file: the loaders refuse it with their own message
    out: dict[str, ArrayHeader] = {}
    try:
        with zipfile.ZipFile(path) as zf:
            for info in zf.infolist():
                if not info.filename.endswith(".npy"):
                    continue
                key = info.filename[: -len(".npy")]
                where = f"{path}: array {key!r}"
                with zf.open(info) as member:
                    head = _read_npy_header(member, where)
                    offset = member.tell()
                if info.file_size - offset < head.nbytes:
                    raise DataError(
                        f"{where}: the header claims shape {head.shape} ({format_bytes(head.nbytes)}) "
                        f"but the archive member holds {format_bytes(info.file_size - offset)}; "
                        "truncated or forged"
                    )
                out[key] = head
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, zlib.error, NotImplementedError) as exc:
        raise DataError(f"{path}: not a readable .npz archive ({exc})") from exc
    return out


def idx_header(path: Path) -> tuple[tuple[int, ...], int]:
    """The shape an IDX(.gz) file claims and the byte offset of its data."""
    opener: Any = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as fh:
            magic = fh.read(4)
            if len(magic) < 4 or magic[:3] != b"\x00\x00\x08":
                raise DataError(f"{path}: not an unsigned-byte IDX file (bad magic number)")
            raw = fh.read(4 * magic[3])
    except DataError:
        raise
    except (OSError, EOFError, zlib.error) as exc:
        raise DataError(f"{path}: unreadable IDX file ({exc})") from exc
    if len(raw) != 4 * magic[3]:
        raise DataError(f"{path}: IDX header is truncated")
    dims = tuple(int.from_bytes(raw[4 * i : 4 * i + 4], "big") for i in range(magic[3]))
    return dims, 4 + len(raw)


@dataclass(frozen=True)
class Cost:
    """Memory (bytes) and pair count of a run, with the share of each option."""

    bytes: int
    pairs: int
    parts: dict[str, int]

    def largest(self) -> str:
        return max(self.parts, key=lambda k: self.parts[k])


def estimate(
    *, n_points: int, n_latent: int, n_features: int, itemsize: int, samples: int,
    marginal_samples: int, resamples: int, interaction: bool, n_models: int, n_priors: int,
) -> Cost:
    """Peak memory and pair count of an audit (upper estimates).

    ``samples`` is the largest number of draws per data point the run may
    take (``--samples-per-point``, ``--reconstruction-samples`` or, with
    ``--target-se``, ``--max-samples-per-point``).
    """
    n, d = int(n_points), max(1, int(n_latent))
    k, m, b = int(samples), int(marginal_samples), int(resamples)
    cells = max(1, n_models) * max(1, n_priors)
    parts = {
        "--limit": n * int(n_features) * (int(itemsize) + 16) + 60 * n * d,
        "--samples-per-point": n * k * (24 * d + 64),
        "--marginal-samples": min(m, n * k) * d * 32 + m * 8,
        "--bootstrap": (min(b * n * 4, 64 << 20) + 128 * n + b * _TERMS * cells * 32) if b else 0,
    }
    passes = 2 if b and interaction else 1
    pairs = passes * n * k * n * cells + min(m, n * k) * n * d
    return Cost(_BASE_BYTES + sum(parts.values()), pairs, parts)


_SIZE = re.compile(r"^\s*([0-9]+(?:\.[0-9]+)?)\s*([kmgt]?)i?b?\s*$", re.IGNORECASE)


def _parse_size(text: str) -> int:
    m = _SIZE.match(text)
    if not m:
        raise UsageError(
            f"ELBO_AUDIT_MAX_MEMORY={text!r}: expected a size in bytes, e.g. 8G or 512M"
        )
    scale = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}[m.group(2).lower()]
    value = int(float(m.group(1)) * scale)
    if value <= 0:
        raise UsageError(f"ELBO_AUDIT_MAX_MEMORY={text!r}: must be positive")
    return value


def _cgroup_room() -> int | None:
    try:
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        used = Path("/sys/fs/cgroup/memory.current").read_text().strip()
    except OSError:
        return None
    if not limit.isdigit() or not used.isdigit():
        return None
    return max(0, int(limit) - int(used))


def available_memory() -> int:
    """Bytes this run may use: ``ELBO_AUDIT_MAX_MEMORY`` if set, else what the machine has free."""
    env = os.environ.get("ELBO_AUDIT_MAX_MEMORY", "").strip()
    if env:
        return _parse_size(env)
    free: int | None = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                free = int(line.split()[1]) * 1024
                break
    except (OSError, ValueError, IndexError):
        free = None
    if free is None:
        try:
            free = int(os.sysconf("SC_AVPHYS_PAGES")) * int(os.sysconf("SC_PAGE_SIZE"))
        except (ValueError, OSError, AttributeError):
            free = 1 << 62  # unknown: nothing to compare with
    room = _cgroup_room()
    return min(free, room) if room is not None else free


def format_bytes(n: float) -> str:
    """``1.5 GB`` style (powers of 1000)."""
    for unit in ("bytes", "kB", "MB", "GB", "TB", "PB", "EB"):
        if abs(n) < 1000 or unit == "EB":
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.3g} {unit}"
        n /= 1000
    return f"{n:.3g} EB"  # pragma: no cover


def require_fits(cost: Cost, available: int, what: str) -> None:
    """Refuse (exit 2) a run whose estimate exceeds the available memory."""
    if cost.bytes <= available:
        return
    option = cost.largest()
    raise UsageError(
        f"preflight: {what} needs about {format_bytes(cost.bytes)} of memory "
        f"({cost.pairs:.3g} pairs), {format_bytes(available)} available; lower {option} "
        "(or set ELBO_AUDIT_MAX_MEMORY if the estimate is wrong for this machine)"
    )
