"""``elbo-audit show REPORT --html OUT.html``: one static page, checked as a person sees it.

The page is parsed (stdlib ``html.parser``) and, where Chromium is found (or
can be installed with Debian's package), rendered headless: the DOM the
browser built must show the report's numbers, in the summary table's text and
in full precision in ``data-value``, and the browser must log no console
message. The truth is the netCDF report itself, read with xarray.
"""

from __future__ import annotations

import math
import os
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from elbo_audit._cli.main import main
from elbo_audit._report.summary import table_terms
from elbo_audit._report.tables import fmt_interval, fmt_value

BROWSERS = ("chromium", "chromium-browser", "chromium-headless-shell", "google-chrome")


class _Cells(HTMLParser):
    """The summary table's cells (data attributes and shown text), every tag and every URL."""

    def __init__(self) -> None:
        super().__init__()
        self.cells: list[dict[str, str]] = []
        self.tags: set[str] = set()
        self.urls: list[str] = []
        self.gates: list[str] = []
        self._cell: dict[str, str] | None = None
        self._in_gates = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        self.tags.add(tag)
        self.urls += [v for k, v in a.items() if k in ("src", "href")]
        if tag == "td" and "data-term" in a:
            self._cell = {**a, "text": ""}
            self.cells.append(self._cell)
        if tag == "table" and a.get("id") == "gates":
            self._in_gates = True

    def handle_endtag(self, tag: str) -> None:
        if tag == "td":
            self._cell = None
        if tag == "table":
            self._in_gates = False

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell["text"] += data
        if self._in_gates and data.strip() in ("PASS", "FAIL"):
            self.gates.append(data.strip())


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("html")
    rng = np.random.default_rng(4)
    enc = folder / "enc.npz"
    np.savez(enc, mean=rng.normal(size=(120, 2)), log_std=rng.normal(-1.0, 0.2, size=(120, 2)),
             reconstruction=rng.normal(-5.0, 1.0, size=(120, 3)))
    out = folder / "r.nc"
    code = main(["run", "--posteriors", str(enc), "--out", str(out), "--quiet", "--bootstrap", "60",
                 "--pointwise", "--prior", "mog=fitted_mixture,components=2",
                 "--gate", "marginal_kl < 50", "--gate", "elbo.lower > 0", "--exit-zero"])
    assert code == 0
    return out


@pytest.fixture(scope="module")
def page(report: Path) -> Path:
    out = report.with_suffix(".html")
    assert main(["show", str(report), "--html", str(out), "--quiet"]) == 0
    return out


def _check_numbers(dom: str, report: Path) -> None:
    parsed = _Cells()
    parsed.feed(dom)
    with xr.open_datatree(report, engine="netcdf4") as tree:
        ds = tree.to_dataset()
        terms = [t for t, _ in table_terms(ds)]
        shown = {(c["data-model"], c["data-prior"], c["data-term"]): c for c in parsed.cells}
        assert len(shown) == len(terms) * ds.sizes["model"] * ds.sizes["prior"] > 0
        for (model, prior, term), cell in shown.items():
            value = float(ds[term].sel(model=model, prior=prior))
            se = float(ds[f"{term}_se"].sel(model=model, prior=prior))
            lo, hi = (float(v) for v in ds[f"{term}_ci"].sel(model=model, prior=prior).values)
            if math.isnan(value):
                assert cell["data-value"] == "nan" and cell["text"].strip() == "n/a"
                continue
            assert float(cell["data-value"]) == value  # full precision, exactly
            expected = fmt_value(value, se) + fmt_interval([lo, hi])
            assert " ".join(cell["text"].split()) == " ".join(expected.split()), (term, cell["text"])
        passed = [bool(p) for p in tree["gates"]["passed"].values]
    assert parsed.gates == ["PASS" if p else "FAIL" for p in passed] == ["PASS", "FAIL"]
    assert "script" not in parsed.tags and {"svg", "img", "table"} <= parsed.tags
    assert all(u.startswith("data:image/png;base64,") for u in parsed.urls)  # nothing to fetch


def test_page_is_self_contained_and_shows_the_report_numbers(page: Path, report: Path) -> None:
    text = page.read_text(encoding="utf-8")
    _check_numbers(text, report)
    for needed in ("Decomposition", "Comparison across models and priors", "q(z) against the prior",
                   "Gates", "Provenance", "dataset_sha256", "creation_library_version", "seed"):
        assert needed in text
    assert "http://" not in text.replace('xmlns="http://www.w3.org/2000/svg"', "")


def _chromium() -> str:
    for name in BROWSERS:
        found = shutil.which(name)
        if found:
            return found
    apt = shutil.which("apt-get")
    if apt is None or os.geteuid() != 0:
        pytest.skip("no Chromium found, and it cannot be installed here (needs apt-get as root)")
    try:
        subprocess.run([apt, "install", "-y", "--no-install-recommends", "chromium"], check=True,
                       capture_output=True, timeout=600, env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})
    except (subprocess.SubprocessError, OSError) as exc:
        pytest.skip(f"no Chromium found, and 'apt-get install chromium' failed: {exc}")
    found = shutil.which("chromium")
    if found is None:
        pytest.skip("apt-get installed chromium but it is not on PATH")
    return found


def test_page_renders_in_headless_chromium_without_console_errors(page: Path, report: Path, tmp_path: Path) -> None:
    browser = _chromium()
    flags = ["--headless", "--no-sandbox", "--disable-gpu", f"--user-data-dir={tmp_path / 'profile'}",
             "--enable-logging=stderr", "--v=0"]
    run = subprocess.run([browser, *flags, "--dump-dom", page.resolve().as_uri()],
                         capture_output=True, text=True, timeout=120, check=False)
    assert run.returncode == 0, run.stderr[-2000:]
    console = [line for line in run.stderr.splitlines() if "CONSOLE" in line]
    assert console == []
    assert "<svg" in run.stdout
    _check_numbers(run.stdout, report)
    shot = tmp_path / "page.png"
    subprocess.run([browser, *flags, "--window-size=1100,1400", f"--screenshot={shot}", page.resolve().as_uri()],
                   capture_output=True, timeout=120, check=True)
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 10_000
