"""Hostile inputs to the CLI, run in-process: each is refused with DESIGN.md's exit code, one
stderr line, no traceback, and nothing written or changed in the folder.

Exit codes (DESIGN.md): 2 usage, configuration or data error; 4 unsafe artifact refused.
"""

from __future__ import annotations

import re
import struct
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from elbo_audit._cli.main import main

N, D = 40, 2
Setup = Callable[[Path], None]


def _arrays(**kw: np.ndarray | None) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    arrays: dict[str, np.ndarray | None] = {"mean": rng.normal(size=(N, D)), "log_std": np.full((N, D), -1.0)}
    arrays.update(kw)
    return {k: v for k, v in arrays.items() if v is not None}


def _enc(**kw: np.ndarray | None) -> Setup:
    def setup(d: Path) -> None:
        with open(d / "enc.npz", "wb") as f:  # a file object: numpy adds no suffix
            np.savez(f, **_arrays(**kw))
    return setup


def _bytes(data: bytes, name: str = "enc.npz") -> Setup:
    def setup(d: Path) -> None:
        (d / name).write_bytes(data)
    return setup


def _npy_member(header: str, body: bytes) -> bytes:
    hdr = header + " " * (118 - len(header)) + "\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(hdr)) + hdr.encode() + body


def _ok_member() -> bytes:
    return _npy_member("{'descr': '<f8', 'fortran_order': False, 'shape': (40, 2), }", np.ones(N * D).tobytes())


def _forged(mean_member: bytes, name: str = "mean.npy") -> Setup:
    def setup(d: Path) -> None:
        with zipfile.ZipFile(d / "enc.npz", "w") as z:
            z.writestr(name, mean_member)
            z.writestr("log_std.npy", _ok_member())
    return setup


def _npy_bytes(d: Path) -> None:
    with open(d / "enc.npz", "wb") as f:  # a plain .npy under an .npz name
        np.save(f, np.ones((N, D)))


def _huge_header(d: Path) -> None:
    member = _npy_member("{'descr': '<f8', 'fortran_order': False, 'shape': (100000000000, 4), }", b"\0" * 64)
    with zipfile.ZipFile(d / "enc.npz", "w") as z:
        z.writestr("mean.npy", member)
        z.writestr("log_std.npy", member)


def _truncated(d: Path) -> None:
    _enc()(d)
    whole = (d / "enc.npz").read_bytes()
    (d / "enc.npz").write_bytes(whole[:300])


def _object_array(d: Path) -> None:
    with open(d / "enc.npz", "wb") as f:
        np.savez(f, mean=np.array([[1.0, "a"]] * N, dtype=object), log_std=np.ones((N, D)))


def _empty_zip(d: Path) -> None:
    zipfile.ZipFile(d / "enc.npz", "w").close()


def _snapshot(d: Path) -> dict[str, bytes | None]:
    return {str(p.relative_to(d)): (p.read_bytes() if p.is_file() else None) for p in sorted(d.rglob("*"))}


def _refused(
    code: int, setup: Setup, args: Callable[[Path], list[str]], tmp_path: Path,
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
) -> str:
    monkeypatch.chdir(tmp_path)  # a default output path would land here, and be seen
    setup(tmp_path)
    before = _snapshot(tmp_path)
    capsys.readouterr()
    got = main(args(tmp_path))
    _, err = capsys.readouterr()
    lines = [line for line in err.splitlines() if line.strip()]
    assert got == code, err
    assert len(lines) == 1, err
    assert "Traceback" not in err
    assert _snapshot(tmp_path) == before  # no new file, no changed bytes
    return lines[0]


def _run(*extra: str) -> Callable[[Path], list[str]]:
    def args(d: Path) -> list[str]:
        return ["run", "--posteriors", str(d / "enc.npz"), "--bootstrap", "5", "--quiet",
                "--out", str(d / "r.nc"), *extra]
    return args


ENCODINGS: dict[str, tuple[int, Setup]] = {
    "nan-mean": (2, _enc(mean=np.full((N, D), np.nan))),
    "inf-mean": (2, _enc(mean=np.full((N, D), np.inf))),
    "one-nan-mean": (2, _enc(mean=np.where(np.arange(N)[:, None] == 7, np.nan, np.zeros((N, D))))),
    "nan-log_std": (2, _enc(log_std=np.full((N, D), np.nan))),
    "inf-log_std": (2, _enc(log_std=np.full((N, D), np.inf))),
    "zero-std-via-log_std=-inf": (2, _enc(log_std=np.full((N, D), -np.inf))),
    "std-zero": (2, _enc(log_std=None, std=np.zeros((N, D)))),
    "std-negative": (2, _enc(log_std=None, std=-np.ones((N, D)))),
    "bool-mean": (2, _enc(mean=np.ones((N, D), bool))),
    "complex-mean": (2, _enc(mean=np.ones((N, D), complex))),
    "str-mean": (2, _enc(mean=np.full((N, D), "a"))),
    "bytes-mean": (2, _enc(mean=np.full((N, D), b"a"))),
    "str-reconstruction": (2, _enc(reconstruction=np.full((N,), "x"))),
    "object-mean": (4, _object_array),
    "ndim1": (2, _enc(mean=np.ones(N), log_std=np.ones(N))),
    "ndim3": (2, _enc(mean=np.ones((N, D, 2)), log_std=np.ones((N, D, 2)))),
    "ndim0": (2, _enc(mean=np.array(1.0), log_std=np.array(1.0))),
    "mismatched-N": (2, _enc(log_std=np.ones((N + 1, D)))),
    "mismatched-D": (2, _enc(log_std=np.ones((N, D + 1)))),
    "reconstruction-wrong-N": (2, _enc(reconstruction=np.ones((N + 3, 2)))),
    "reconstruction-3d": (2, _enc(reconstruction=np.ones((N, 2, 2)))),
    "nan-reconstruction": (2, _enc(reconstruction=np.full((N, 2), np.nan))),
    "empty-N": (2, _enc(mean=np.ones((0, D)), log_std=np.ones((0, D)))),
    "empty-D": (2, _enc(mean=np.ones((N, 0)), log_std=np.ones((N, 0)))),
    "single-point": (2, _enc(mean=np.ones((1, D)), log_std=np.ones((1, D)))),
    "both-std-and-log_std": (2, _enc(std=np.ones((N, D)))),
    "missing-mean": (2, _enc(mean=None)),
    "missing-scale": (2, _enc(log_std=None)),
    "unknown-key-typo": (2, _enc(logstd=np.ones((N, D)))),
    "truncated-file": (2, _truncated),
    "not-a-zip": (2, _bytes(b"hello world, this is not a zip")),
    "empty-file": (2, _bytes(b"")),
    "empty-zip": (2, _empty_zip),
    "header-claims-huge-array": (2, _huge_header),
    "missing-file": (2, lambda d: None),
    "a-plain-npy": (2, _npy_bytes),
    "member-shorter-than-its-header": (2, _forged(_npy_member(
        "{'descr': '<f8', 'fortran_order': False, 'shape': (40, 2), }", b"\0" * 64))),
    "negative-shape-in-header": (2, _forged(_npy_member("{'descr': '<f8', 'fortran_order': False, 'shape': (-1, 2), }", b""))),
    "object-descr-in-header": (4, _forged(_npy_member("{'descr': '|O', 'fortran_order': False, 'shape': (40, 2), }", b"\x80\x04N."))),
    "bogus-descr": (2, _forged(_npy_member("{'descr': 'zz9', 'fortran_order': False, 'shape': (40, 2), }", b""))),
    "header-not-a-dict": (2, _forged(_npy_member("[1, 2, 3]", b""))),
    "header-is-a-call": (2, _forged(_npy_member("__import__('os').system('touch pwned')", b""))),
    "structured-dtype": (2, _forged(_npy_member(
        "{'descr': [('a', '<f8')], 'fortran_order': False, 'shape': (40, 2), }", np.ones(N * D).tobytes()))),
    "member-not-npy": (2, _forged(b"garbage bytes")),
    # numpy's Python 2 header fallback (tokenize) raises TokenError on these
    "header-unterminated-string": (2, _forged(_npy_member("{'descr': '<f8', 'shape': \"\"\"(40, 2)", b""))),
    "header-unclosed-bracket": (2, _forged(_npy_member("{'descr': '<f8', 'fortran_order': False, 'shape': (40, 2", b""))),
    "member-name-with-dotdot": (2, _forged(_ok_member(), name="../mean.npy")),
    "reconstruction-K=0": (2, _enc(reconstruction=np.ones((N, 0)))),
    "a-folder": (2, lambda d: (d / "enc.npz").mkdir()),
    # finite but beyond docs/posteriors.md's value ranges: the terms would be inf or NaN
    "mean=1e300": (2, _enc(mean=np.full((N, D), 1e300))),
    "mean=-1e21-at-point-7": (2, _enc(mean=np.where(np.arange(N)[:, None] == 7, -1e21, np.zeros((N, D))))),
    "log_std=-700": (2, _enc(log_std=np.full((N, D), -700.0))),
    "log_std=41": (2, _enc(log_std=np.full((N, D), 41.0))),
    "std=1e-300": (2, _enc(log_std=None, std=np.full((N, D), 1e-300))),
    "std=1e30": (2, _enc(log_std=None, std=np.full((N, D), 1e30))),
    "reconstruction=1e300": (2, _enc(reconstruction=np.full((N, 2), -1e300))),
}
OUT_OF_RANGE = {  # case: (the array named, the first data point named)
    "mean=1e300": ("'mean'", "data point 0"), "mean=-1e21-at-point-7": ("'mean'", "data point 7"),
    "log_std=-700": ("'log_std'", "data point 0"), "log_std=41": ("'log_std'", "data point 0"),
    "std=1e-300": ("'std'", "data point 0"), "std=1e30": ("'std'", "data point 0"),
    "reconstruction=1e300": ("'reconstruction'", "data point 0"),
}


@pytest.mark.parametrize("case", sorted(ENCODINGS))
def test_bad_encoding(case: str, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                      monkeypatch: pytest.MonkeyPatch) -> None:
    code, setup = ENCODINGS[case]
    line = _refused(code, setup, _run(), tmp_path, capsys, monkeypatch)
    assert "enc.npz" in line  # names the file at fault
    if case.startswith(("header-un", "header-not", "header-is")):
        assert "'mean'" in line  # and the array
    if case in OUT_OF_RANGE:
        array, point = OUT_OF_RANGE[case]
        assert array in line and re.search(rf"{point}\b", line), line


OPTIONS: dict[str, list[str]] = {
    "bootstrap=-1": ["--bootstrap", "-1"],
    "bootstrap=2000000000": ["--bootstrap", "2000000000"],  # the memory preflight refuses it
    "bootstrap=abc": ["--bootstrap", "abc"],
    "seed=-1": ["--seed", "-1"],
    "seed=2**64": ["--seed", str(2**64)],
    "seed=abc": ["--seed", "abc"],
    "target-se=nan": ["--target-se", "nan"],
    "target-se=inf": ["--target-se", "inf"],
    "target-se=-1": ["--target-se", "-1"],
    "target-se=0": ["--target-se", "0"],
    "samples-per-point=0": ["--samples-per-point", "0"],
    "samples-per-point=-1": ["--samples-per-point", "-1"],
    "reconstruction-samples=0": ["--reconstruction-samples", "0"],
    "marginal-samples=0": ["--marginal-samples", "0"],
    "batch-size=0": ["--batch-size", "0"],
    "limit=0": ["--limit", "0"],
    "max-seconds=-1": ["--max-seconds", "-1"],
    "confidence=1.5": ["--confidence", "1.5"],
    "confidence=0": ["--confidence", "0"],
    "confidence=1": ["--confidence", "1"],
    "confidence=nan": ["--confidence", "nan"],
    "backend=bogus": ["--backend", "bogus"],
    "precision=float16": ["--precision", "float16"],
    "format=xml": ["--format", "xml"],
    "gate-garbled": ["--gate", "foo <<< 3"],
    "gate-unknown-term": ["--gate", "nosuch < 3"],
    "unknown-option": ["--frobnicate"],
    "posteriors-twice": ["--posteriors", "other.npz"],
    "limit=1": ["--limit", "1"],
    "limit=2**70": ["--limit", str(2**70)],
    "max-samples-per-point=0": ["--max-samples-per-point", "0"],
    "max-seconds=nan": ["--target-se", "0.1", "--max-seconds", "nan"],
    "gate-nan-threshold": ["--gate", "elbo < nan"],
    "gate-unknown-bound": ["--gate", "elbo.middle > 0"],
    "baseline-not-netcdf": ["--bootstrap", "0", "--baseline", "enc.npz"],
    "baseline-missing": ["--bootstrap", "0", "--baseline", "nope.nc"],
    "plugin-option-garbled": ["-p", "foo"],
    "with-a-model": ["--model", "x:y"],
    "with-weights": ["--weights", "w.pt"],
}


@pytest.mark.parametrize("backend", [[], ["--backend", "numpy"]])
def test_a_device_no_backend_runs_on(backend: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    # saved encodings have no model to place on a device: a CPU-only backend would ignore it silently
    line = _refused(2, _enc(), _run("--device", "bogus", *backend), tmp_path, capsys, monkeypatch)
    assert "--device bogus" in line and "backend" in line, line


@pytest.mark.parametrize("case", sorted(OPTIONS))
def test_bad_option(case: str, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                    monkeypatch: pytest.MonkeyPatch) -> None:
    _refused(2, _enc(), _run(*OPTIONS[case]), tmp_path, capsys, monkeypatch)


OUTS: dict[str, Callable[[Path], str]] = {
    "a-folder": lambda d: str(d),
    "empty": lambda d: "",
    "the-input-file": lambda d: str(d / "enc.npz"),
    "a-missing-folder": lambda d: str(d / "no" / "r.nc"),
}


@pytest.mark.parametrize("case", sorted(OUTS))
def test_bad_out(case: str, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                 monkeypatch: pytest.MonkeyPatch) -> None:
    def args(d: Path) -> list[str]:
        return ["run", "--posteriors", str(d / "enc.npz"), "--bootstrap", "5", "--quiet", "--out", OUTS[case](d)]
    _refused(2, _enc(), args, tmp_path, capsys, monkeypatch)


@pytest.mark.parametrize("value", ["abc", "0", "-1", "1.5"])
def test_bad_thread_count(value: str, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ELBO_AUDIT_NUM_THREADS", value)
    line = _refused(2, _enc(), _run(), tmp_path, capsys, monkeypatch)
    assert "ELBO_AUDIT_NUM_THREADS" in line


@pytest.mark.parametrize("value", ["abc", "-5", "1"])
def test_bad_memory_limit(value: str, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ELBO_AUDIT_MAX_MEMORY", value)  # "1": one byte, the preflight refuses
    _refused(2, _enc(), _run(), tmp_path, capsys, monkeypatch)


CONFIGS: dict[str, str | bytes] = {
    "not-toml": "this is = = not toml [[[\n",
    "binary": b"\xff\xfe\x00bin",
    "unknown-table": '[data]\nposteriors = "ENC"\n[nosuch]\nx = 1\n',
    "unknown-key": '[data]\nposteriors = "ENC"\nfoo = 1\n',
    "posteriors-not-a-string": "[data]\nposteriors = 3\n",
    "resamples-a-string": '[data]\nposteriors = "ENC"\n[bootstrap]\nresamples = "many"\n',
    "gates-not-a-list": '[data]\nposteriors = "ENC"\n[report]\ngates = "elbo > 0"\n',
    "empty": "",
    "report.out-names-the-posteriors": '[data]\nposteriors = "ENC"\n[report]\nout = "enc.npz"\n',
    "unknown-prior-family": '[data]\nposteriors = "ENC"\n[native_prior]\nfamily = "cauchy"\n',
    "posteriors-missing": '[data]\nposteriors = "nope.npz"\n',
    "seed-negative": '[data]\nposteriors = "ENC"\n[estimation]\nseed = -1\n',
    "seed-a-float": '[data]\nposteriors = "ENC"\n[estimation]\nseed = 1.5\n',
    "confidence-2": '[data]\nposteriors = "ENC"\n[bootstrap]\nconfidence = 2.0\n',
    "duplicate-key": '[data]\nposteriors = "ENC"\nposteriors = "ENC"\n',
    "bool-for-int": '[data]\nposteriors = "ENC"\n[bootstrap]\nresamples = true\n',
    "report.out-names-the-config": '[data]\nposteriors = "ENC"\n[report]\nout = "c.toml"\n',
    "native_prior-mean-a-string": '[data]\nposteriors = "ENC"\n[native_prior]\nfamily = "diagonal_gaussian"\nmean = "x"\n',
    "native_prior-mean-a-numeric-string":
        '[data]\nposteriors = "ENC"\n[native_prior]\nfamily = "diagonal_gaussian"\nmean = "1.5"\n',
    "native_prior-std-a-bool": '[data]\nposteriors = "ENC"\n[native_prior]\nfamily = "diagonal_gaussian"\nstd = true\n',
    "native_prior-mean-a-mixed-list":
        '[data]\nposteriors = "ENC"\n[native_prior]\nfamily = "diagonal_gaussian"\nmean = [1.0, "a"]\n',
    "mixture-weights-a-string": '[data]\nposteriors = "ENC"\n[priors.m]\nfamily = "mixture_of_gaussians"\n'
                                'weights = "a"\nmean = [[0.0, 0.0]]\nstd = [[1.0, 1.0]]\n',
}
CONFIG_KEYS = {  # case: the key the refusal must name
    "native_prior-mean-a-string": "'mean'", "native_prior-mean-a-numeric-string": "'mean'",
    "native_prior-std-a-bool": "'std'", "native_prior-mean-a-mixed-list": "'mean'",
    "mixture-weights-a-string": "'weights'",
}


@pytest.mark.parametrize("case", sorted(CONFIGS))
def test_bad_config(case: str, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                    monkeypatch: pytest.MonkeyPatch) -> None:
    def setup(d: Path) -> None:
        _enc()(d)
        text = CONFIGS[case]
        if isinstance(text, bytes):
            (d / "c.toml").write_bytes(text)
        else:
            (d / "c.toml").write_text(text.replace("ENC", str(d / "enc.npz")))
    # no --out: report.out, where the config gives one, decides
    line = _refused(2, setup, lambda d: ["run", str(d / "c.toml"), "--quiet", "--bootstrap", "5"],
                    tmp_path, capsys, monkeypatch)
    if case in CONFIG_KEYS:
        assert CONFIG_KEYS[case] in line, line


def test_missing_config(tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    _refused(2, _enc(), lambda d: ["run", str(d / "c.toml"), "--quiet"], tmp_path, capsys, monkeypatch)


def _good_report(d: Path) -> None:
    _enc()(d)
    assert main(["run", "--posteriors", str(d / "enc.npz"), "--bootstrap", "0", "--quiet", "--out", str(d / "ok.nc")]) == 0
    (d / "enc.npz").unlink()


def _truncated_report(d: Path) -> None:
    _good_report(d)
    (d / "r.nc").write_bytes((d / "ok.nc").read_bytes()[:2000])


def _edited_report(edit: Callable[[xr.Dataset], xr.Dataset]) -> Setup:
    def setup(d: Path) -> None:
        _good_report(d)
        edit(xr.load_dataset(d / "ok.nc")).to_netcdf(d / "r.nc")
    return setup


def _conventions(ds: xr.Dataset) -> xr.Dataset:
    ds.attrs["Conventions"] = "elbo-audit-9.9"
    return ds


REPORTS: dict[str, Setup] = {
    "other-Conventions": _edited_report(_conventions),
    "not-netcdf": _bytes(b"hello, not netcdf", "r.nc"),
    "empty-file": _bytes(b"", "r.nc"),
    "truncated-report": _truncated_report,
    "no-Conventions": lambda d: xr.Dataset({"a": ("x", [1.0])}).to_netcdf(d / "r.nc"),
    "an-npz": lambda d: _enc()(d) or (d / "enc.npz").rename(d / "r.nc"),
    "missing": lambda d: None,
}
COMMANDS: dict[str, Callable[[Path], list[str]]] = {
    "show": lambda d: ["show", str(d / "r.nc")],
    "check": lambda d: ["check", str(d / "r.nc")],
    "compare": lambda d: ["compare", str(d / "r.nc"), str(d / "r.nc")],
}


@pytest.mark.parametrize("command", sorted(COMMANDS))
@pytest.mark.parametrize("case", sorted(REPORTS))
def test_bad_report(case: str, command: str, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                    monkeypatch: pytest.MonkeyPatch) -> None:
    line = _refused(2, REPORTS[case], COMMANDS[command], tmp_path, capsys, monkeypatch)
    assert "r.nc" in line


def test_compare_good_with_bad(tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    def setup(d: Path) -> None:
        _good_report(d)
        (d / "r.nc").write_bytes(b"")
    line = _refused(2, setup, lambda d: ["compare", str(d / "ok.nc"), str(d / "r.nc")], tmp_path, capsys, monkeypatch)
    assert "r.nc" in line


def test_check_garbled_gate(tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    _refused(2, _good_report, lambda d: ["check", str(d / "ok.nc"), "--gate", "zz <"], tmp_path, capsys, monkeypatch)


def test_show_html_into_a_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    def setup(d: Path) -> None:
        _good_report(d)
        (d / "page").mkdir()
    _refused(2, setup, lambda d: ["show", str(d / "ok.nc"), "--quiet", "--html", str(d / "page")], tmp_path, capsys, monkeypatch)


@pytest.mark.parametrize("flag,name", [("--html", "page"), ("--plot", "page.png")])
def test_show_output_that_is_a_folder_is_named(flag: str, name: str, tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    def setup(d: Path) -> None:
        _good_report(d)
        (d / name).mkdir()
    line = _refused(2, setup, lambda d: ["show", str(d / "ok.nc"), "--quiet", flag, name], tmp_path, capsys, monkeypatch)
    assert f"{flag} {name}:" in line and "directory" in line, line
    assert ".tmp" not in line  # not the temporary file it would have been written through


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_a_folder_given_as_the_report(command: str, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    line = _refused(2, lambda d: (d / "r.nc").mkdir(), COMMANDS[command], tmp_path, capsys, monkeypatch)
    assert "r.nc" in line and "directory" in line and "does not exist" not in line, line


EMPTY_PATHS: dict[str, Callable[[Path], list[str]]] = {
    "show-plot": lambda d: ["show", str(d / "ok.nc"), "--quiet", "--plot", ""],
    "show-html": lambda d: ["show", str(d / "ok.nc"), "--quiet", "--html", " "],
    "check-baseline": lambda d: ["check", str(d / "ok.nc"), "--baseline", ""],
    "run-baseline": lambda d: ["run", "--posteriors", str(d / "enc.npz"), "--bootstrap", "0", "--quiet",
                               "--out", str(d / "r.nc"), "--baseline", ""],
}


@pytest.mark.parametrize("case", sorted(EMPTY_PATHS))
def test_an_empty_path_is_refused(case: str, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                  monkeypatch: pytest.MonkeyPatch) -> None:
    def setup(d: Path) -> None:  # was: silently skipped (nothing drawn, no baseline, exit 0)
        _good_report(d)
        _enc()(d)
    line = _refused(2, setup, EMPTY_PATHS[case], tmp_path, capsys, monkeypatch)
    assert "empty path" in line


def test_show_and_compare_on_an_incomplete_report(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    setup = _edited_report(lambda ds: ds.drop_vars(["elbo", "avg_kl"]))
    _refused(2, setup, lambda d: ["show", str(d / "r.nc")], tmp_path, capsys, monkeypatch)
    _refused(2, lambda d: None, lambda d: ["compare", str(d / "r.nc"), str(d / "ok.nc")], tmp_path, capsys, monkeypatch)


@pytest.mark.parametrize("drop", [["elbo"], ["elbo", "avg_kl"]])
def test_check_on_an_incomplete_report(drop: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    setup = _edited_report(lambda ds: ds.drop_vars(drop))
    line = _refused(2, setup, lambda d: ["check", str(d / "r.nc")], tmp_path, capsys, monkeypatch)
    assert "r.nc" in line and "'elbo'" in line  # the report and its first problem


@pytest.mark.parametrize("flag", ["--plot", "--html"])
def test_show_into_a_missing_folder(flag: str, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    _refused(2, _good_report, lambda d: ["show", str(d / "ok.nc"), "--quiet", flag, str(d / "no" / "page")],
             tmp_path, capsys, monkeypatch)


def test_check_with_a_baseline_that_is_not_a_report(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    def setup(d: Path) -> None:
        _good_report(d)
        (d / "b.nc").write_bytes(b"x")
    _refused(2, setup, lambda d: ["check", str(d / "ok.nc"), "--baseline", str(d / "b.nc"), "--gate", "elbo.delta.lower > 0"],
             tmp_path, capsys, monkeypatch)


@pytest.mark.parametrize("baseline", ["nope.nc", "enc.npz", "a-folder"])
def test_bad_baseline_refused_before_any_work(baseline: str, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    def setup(d: Path) -> None:
        _enc()(d)
        (d / "a-folder").mkdir()
    # without --quiet the audit would log "auditing ..." first: the refusal must be the only line
    args = ["run", "--posteriors", "enc.npz", "--bootstrap", "5", "--out", "r.nc", "--baseline", baseline]
    line = _refused(2, setup, lambda d: args, tmp_path, capsys, monkeypatch)
    assert baseline in line


def test_out_naming_the_baseline(tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    def setup(d: Path) -> None:
        _good_report(d)
        _enc()(d)
    args = ["run", "--posteriors", "enc.npz", "--bootstrap", "0", "--quiet", "--out", "ok.nc", "--baseline", "ok.nc"]
    _refused(2, setup, lambda d: args, tmp_path, capsys, monkeypatch)


SHOW_OUTPUTS: dict[str, Callable[[Path], list[str]]] = {
    "html-is-the-report": lambda d: ["show", str(d / "ok.nc"), "--quiet", "--html", str(d / "ok.nc")],
    "plot-is-the-report": lambda d: ["show", str(d / "ok.nc"), "--quiet", "--plot", str(d / "ok.nc")],
    "plot-unknown-format": lambda d: ["show", str(d / "ok.nc"), "--quiet", "--plot", str(d / "p.txt")],
    "compare-confidence-1.5": lambda d: ["compare", str(d / "ok.nc"), "--confidence", "1.5"],
    "compare-confidence-nan": lambda d: ["compare", str(d / "ok.nc"), "--confidence", "nan"],
    "compare-confidence-0": lambda d: ["compare", str(d / "ok.nc"), "--confidence", "0"],
}


@pytest.mark.parametrize("case", sorted(SHOW_OUTPUTS))
def test_show_and_compare_outputs(case: str, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                  monkeypatch: pytest.MonkeyPatch) -> None:
    # the report is never overwritten by its own picture or page; bad levels are usage errors
    _refused(2, _good_report, SHOW_OUTPUTS[case], tmp_path, capsys, monkeypatch)
