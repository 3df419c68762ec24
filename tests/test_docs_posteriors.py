"""docs/posteriors.md runs verbatim, and its numbers are what the page says they are."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "posteriors.md"


def _blocks(lang: str) -> list[str]:
    """The fenced blocks of the page opened with ```LANG (``""``: a bare fence)."""
    blocks: list[str] = []
    opened: str | None = None  # the language of the block we are in, None outside
    body: list[str] = []
    for line in DOC.read_text().splitlines():
        if line.startswith("```"):
            if opened is None:
                opened, body = line[3:].strip(), []
            else:
                if opened == lang:
                    blocks.append("\n".join(body) + "\n")
                opened = None
        elif opened is not None:
            body.append(line)
    return blocks


def test_the_format_page_runs_and_its_terms_are_the_closed_forms(tmp_path: Path) -> None:
    (python,) = _blocks("python")
    (shell,) = _blocks("")
    subprocess.run([sys.executable, "-c", python], cwd=tmp_path, check=True, timeout=60)
    cmd, target = (part.strip() for part in shell.strip().split(">", 1))
    argv = shlex.split(cmd)
    assert argv[0] == "elbo-audit"
    proc = subprocess.run([sys.executable, "-m", "elbo_audit", *argv[1:]], cwd=tmp_path, capture_output=True,
                          text=True, timeout=120, check=False, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.returncode == 0, proc.stderr
    (tmp_path / target).write_text(proc.stdout)
    (row,) = [r for r in json.loads((tmp_path / "enc.json").read_text())["results"] if r["prior"] == "native"]
    with np.load(tmp_path / "enc.npz") as f:
        mean, log_std, recon = f["mean"], f["log_std"], f["reconstruction"]
    assert recon.shape == (2000, 8) and (recon <= 0).all()     # log-likelihoods of a Bernoulli decoder
    kl = (0.5 * (mean**2 + np.exp(2 * log_std) - 1) - log_std).sum(axis=1).mean()
    assert abs(row["reconstruction"]["value"] - recon.mean()) < 1e-9
    assert abs(row["avg_kl"]["value"] - kl) < 1e-9
    assert abs(row["elbo"]["value"] - (recon.mean() - kl)) < 1e-9
    # the Monte Carlo standard error holds the data points fixed: the within-row spread
    se = np.sqrt(recon.var(axis=1, ddof=1).sum() / recon.shape[1]) / recon.shape[0]
    assert abs(row["reconstruction"]["se"] - se) < 1e-6 * se
    assert (tmp_path / "enc-report.nc").is_file()
