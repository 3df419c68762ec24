"""The checks of elbo_audit/_cli/validate.py and preflight.py, called directly.

Truths come from outside the code under test: numpy's own ``np.save`` and
``np.load`` for .npy headers, the IDX layout written by hand here, float64's
own limits for the encoding ranges, and sizes computed by hand.
"""

from __future__ import annotations

import io
import math
import struct
import zipfile
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from elbo_audit._cli.config import RunConfig
from elbo_audit._cli.preflight import (
    ArrayHeader,
    _read_npy_header,
    available_memory,
    estimate,
    format_bytes,
    idx_header,
    npy_headers,
    require_fits,
)
from elbo_audit._cli.validate import (
    ENCODING_BOUNDS,
    MAX_COUNT,
    MAX_SEED,
    check_encoding_range,
    check_environment,
    check_not_empty,
    check_numbers,
    check_paths,
)
from elbo_audit._errors import DataError, UnsafeArtifactError, UsageError

# --- check_numbers -------------------------------------------------------------------------

GOOD = RunConfig()


@pytest.mark.parametrize("change", [
    {"seed": 0}, {"seed": MAX_SEED}, {"samples_per_point": MAX_COUNT}, {"resamples": 0},
    {"confidence": 0.5}, {"target_se": 1e-9}, {"max_seconds": 0.5}, {"limit": 2},
    {"binarize": 0.0}, {"active_threshold": 0.0}, {"iw_samples": 0},
])
def test_numbers_in_range_pass(change: dict[str, object]) -> None:
    check_numbers(replace(GOOD, **change))  # type: ignore[arg-type]


@pytest.mark.parametrize("change,named", [
    ({"seed": -1}, "seed"), ({"seed": MAX_SEED + 1}, "seed"), ({"seed": 1.5}, "seed"),
    ({"seed": True}, "seed"),  # bool is an int to Python, not to a user
    ({"samples_per_point": 0}, "samples-per-point"), ({"batch_size": MAX_COUNT + 1}, "batch-size"),
    ({"resamples": -1}, "bootstrap"), ({"confidence": 1.0}, "confidence"),
    ({"confidence": 0.0}, "confidence"), ({"confidence": math.nan}, "confidence"),
    ({"target_se": 0.0}, "target-se"), ({"target_se": math.inf}, "target-se"),
    ({"max_seconds": math.nan}, "max-seconds"), ({"limit": 1}, "limit"), ({"binarize": 1.0}, "binarize"),
    ({"active_threshold": -0.1}, "active-threshold"), ({"max_samples_per_point": 0}, "max-samples-per-point"),
])
def test_numbers_out_of_range_name_the_option(change: dict[str, object], named: str) -> None:
    with pytest.raises(UsageError, match=named):
        check_numbers(replace(GOOD, **change))  # type: ignore[arg-type]


# --- check_environment ---------------------------------------------------------------------

@pytest.mark.parametrize("value,ok", [("", True), ("1", True), (" 8 ", True), ("4096", True),
                                      ("0", False), ("4097", False), ("two", False), ("1.5", False)])
def test_thread_count(value: str, ok: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ELBO_AUDIT_NUM_THREADS", value)
    if ok:
        check_environment()
    else:
        with pytest.raises(UsageError, match="ELBO_AUDIT_NUM_THREADS"):
            check_environment()


# --- check_paths and check_not_empty -------------------------------------------------------

def test_out_paths(tmp_path: Path) -> None:
    inp = tmp_path / "enc.npz"
    inp.write_bytes(b"x")
    check_paths(str(tmp_path / "r.nc"), {"the --posteriors file": str(inp)})
    for out, why in [("", "empty"), (str(tmp_path), "folder"), (str(tmp_path / "no" / "r.nc"), "does not exist"),
                     (str(inp), "--posteriors"), (str(tmp_path / "." / "enc.npz"), "--posteriors")]:
        with pytest.raises(UsageError, match=why):
            check_paths(out, {"the --posteriors file": str(inp)})
    (tmp_path / "link.nc").symlink_to(inp)  # the same file under another name
    with pytest.raises(UsageError, match="overwrite"):
        check_paths(str(tmp_path / "link.nc"), {"the --posteriors file": str(inp)})


def test_empty_path_options() -> None:
    check_not_empty({"--plot": None, "--html": "page.html"})
    for value in ("", "  "):
        with pytest.raises(UsageError, match="--baseline: empty path"):
            check_not_empty({"--plot": None, "--baseline": value})


# --- check_encoding_range ------------------------------------------------------------------

def test_encoding_bounds_are_inside_float64() -> None:
    # the documented ranges: squares of means, variances and the largest standardised
    # distance (twice the largest mean over the smallest std) are finite and normal in float64
    big, tiny = np.finfo(np.float64).max, np.finfo(np.float64).tiny
    mean_hi = ENCODING_BOUNDS["mean"][1]
    std_lo, std_hi = ENCODING_BOUNDS["std"]
    assert ENCODING_BOUNDS["log_std"] == (-40.0, 40.0)
    assert (std_lo, std_hi) == pytest.approx((math.exp(-40.0), math.exp(40.0)))
    assert mean_hi**2 < big and std_hi**2 < big and std_lo**2 > tiny
    assert ((2 * mean_hi + 3 * std_hi) / std_lo) ** 2 < 1e76
    assert ((2 * mean_hi + 3 * std_hi) / std_lo) ** 6 < big  # cubes of squared distances (BCa)


@pytest.mark.parametrize("key", sorted(ENCODING_BOUNDS))
def test_encoding_range_edges(key: str) -> None:
    lo, hi = ENCODING_BOUNDS[key]
    inside = np.array([[lo, hi], [lo, hi]])
    check_encoding_range("enc.npz", key, inside)  # the bounds themselves are accepted
    for bad in (np.nextafter(hi, math.inf), np.nextafter(lo, -math.inf) if key != "std" else lo / 2):
        arr = inside.copy()
        arr[1, 0] = bad
        with pytest.raises(DataError, match=rf"enc.npz: array '{key}' holds .* at data point 1,"):
            check_encoding_range("enc.npz", key, arr)


def test_encoding_range_leaves_nan_and_nonpositive_to_the_readers() -> None:
    check_encoding_range("e", "mean", np.array([[np.nan, np.inf, -np.inf]]))
    check_encoding_range("e", "std", np.array([[0.0, -1.0, 1.0]]))
    check_encoding_range("e", "mean", np.ones((0, 3)))
    with pytest.raises(DataError, match=r"data point 2 \(and 1 more data points\)"):
        check_encoding_range("e", "log_std", np.array([[0.0], [np.nan], [-700.0], [50.0]]))


# --- npy_headers, idx_header -----------------------------------------------------------------

def _npz(path: Path, **arrays: np.ndarray) -> Path:
    with open(path, "wb") as f:
        np.savez(f, **arrays)
    return path


def test_headers_agree_with_numpy(tmp_path: Path) -> None:
    arrays = {"mean": np.zeros((7, 3), "<f4"), "log_std": np.ones((7, 3), ">f8"), "k": np.arange(5, dtype=np.int16)}
    heads = npy_headers(_npz(tmp_path / "a.npz", **arrays))
    with np.load(tmp_path / "a.npz") as loaded:
        for key in arrays:
            assert heads[key].shape == loaded[key].shape
            assert heads[key].dtype == loaded[key].dtype
            assert heads[key].nbytes == loaded[key].nbytes
    np.save(tmp_path / "b.npy", np.zeros((4, 2, 2)))
    assert npy_headers(tmp_path / "b.npy") == {"": ArrayHeader((4, 2, 2), np.dtype("<f8"))}
    (tmp_path / "c.txt").write_text("not an array file")
    assert npy_headers(tmp_path / "c.txt") == {}


def _member(header: str, body: bytes = b"") -> bytes:
    text = header + " " * (118 - len(header)) + "\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(text)) + text.encode() + body


@pytest.mark.parametrize("header,error,match", [
    ("{'descr': '<f8', 'fortran_order': False, 'shape': (1000, 1000), }", DataError, "truncated or forged"),
    ("{'descr': '|O', 'fortran_order': False, 'shape': (2,), }", UnsafeArtifactError, "pickled"),
    ("{'descr': '<f8', 'fortran_order': False, 'shape': (-2,), }", DataError, "negative"),
    ("{'descr': '<f8', 'fortran_order': False, 'shape': (2", DataError, "corrupt header"),
    ("{'descr': '<f8', 'shape': '''(2,)", DataError, "corrupt header"),
])
def test_forged_headers(header: str, error: type[Exception], match: str, tmp_path: Path) -> None:
    path = tmp_path / "f.npz"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("mean.npy", _member(header, b"\0" * 16))
    with pytest.raises(error, match=match) as info:
        npy_headers(path)
    assert "array 'mean'" in str(info.value)


def test_pickle_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "p.npz").write_bytes(b"\x80\x04N.")
    with pytest.raises(UnsafeArtifactError):
        npy_headers(tmp_path / "p.npz")


def test_idx_header(tmp_path: Path) -> None:
    raw = bytes([0, 0, 8, 3]) + struct.pack(">III", 5, 4, 3) + bytes(60)  # IDX: 3 dims of uint8
    (tmp_path / "x-idx3-ubyte").write_bytes(raw)
    assert idx_header(tmp_path / "x-idx3-ubyte") == ((5, 4, 3), 16)
    (tmp_path / "bad-idx").write_bytes(bytes([0, 0, 9, 1]) + bytes(4))  # 0x09: signed bytes
    with pytest.raises(DataError, match="magic"):
        idx_header(tmp_path / "bad-idx")
    (tmp_path / "short-idx").write_bytes(bytes([0, 0, 8, 3]) + bytes(5))
    with pytest.raises(DataError, match="truncated"):
        idx_header(tmp_path / "short-idx")


# --- estimate, require_fits, available_memory, format_bytes ---------------------------------

def test_format_bytes() -> None:
    assert [format_bytes(n) for n in (0, 999, 1000, 1_500_000, 2.5e12)] == [
        "0 bytes", "999 bytes", "1 kB", "1.5 MB", "2.5 TB"]


def _cost(**kw: int) -> int:
    base = {"n_points": 1000, "n_latent": 10, "n_features": 784, "itemsize": 8, "samples": 1,
            "marginal_samples": 2048, "resamples": 1000, "interaction": True, "n_models": 1, "n_priors": 1}
    base.update(kw)
    return estimate(**base).bytes  # type: ignore[arg-type]


def test_estimate_counts_the_inputs_and_grows_with_every_option() -> None:
    # the inputs alone: N x features at least (more with the work on top)
    assert _cost(n_points=10**6) >= 10**6 * 784 * 8
    for option, more in [("n_points", 10**5), ("samples", 100), ("marginal_samples", 10**6), ("resamples", 10**5)]:
        assert _cost(**{option: more}) > _cost(), option
    cost = estimate(n_points=100, n_latent=2, n_features=2, itemsize=8, samples=1000, marginal_samples=10,
                    resamples=0, interaction=False, n_models=1, n_priors=1)
    assert cost.largest() == "--samples-per-point"
    assert cost.pairs >= 100 * 1000 * 100  # every draw against every component


def test_require_fits(monkeypatch: pytest.MonkeyPatch) -> None:
    cost = estimate(n_points=10**6, n_latent=20, n_features=784, itemsize=8, samples=1, marginal_samples=2048,
                    resamples=1000, interaction=True, n_models=1, n_priors=1)
    require_fits(cost, cost.bytes, "this run")  # exactly enough
    with pytest.raises(UsageError, match=rf"needs about .* lower {cost.largest()}"):
        require_fits(cost, cost.bytes - 1, "this run")
    monkeypatch.setenv("ELBO_AUDIT_MAX_MEMORY", "1.5G")
    assert available_memory() == int(1.5 * 2**30)
    monkeypatch.setenv("ELBO_AUDIT_MAX_MEMORY", "512m")
    assert available_memory() == 512 * 2**20
    for bad in ("lots", "-1G", "0"):
        monkeypatch.setenv("ELBO_AUDIT_MAX_MEMORY", bad)
        with pytest.raises(UsageError, match="ELBO_AUDIT_MAX_MEMORY"):
            available_memory()


def test_no_header_parser_error_escapes_as_a_non_audit_error() -> None:
    # every byte pattern of a short header either parses or is a DataError (no TokenError,
    # SyntaxError, RecursionError leaking to exit 5)
    rng = np.random.default_rng(0)
    alphabet = list("{}()[]'\"\\:,#0123456789 abc<f8descrshapefortran_orderTrueFalse\n\t") + ["'''", '"""']
    for _ in range(300):
        text = "".join(rng.choice(alphabet, size=int(rng.integers(1, 40))))
        try:
            _read_npy_header(io.BytesIO(_member(text)), "m")
        except (DataError, UnsafeArtifactError):
            pass
