"""Progress off a terminal: periodic plain lines with the step and its share done."""

from __future__ import annotations

import io
import time

import numpy as np
import pytest

from elbo_audit._cli import progress


class _Pipe(io.StringIO):
    def isatty(self) -> bool:
        return False


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_off_a_terminal_a_line_every_few_seconds_with_share_done(monkeypatch):
    monkeypatch.setattr(progress, "LINE_EVERY", 0.05)
    out = _Pipe()
    with progress.enabled(out), progress.task("pairwise pass", 4) as t:
        for _ in range(4):
            time.sleep(0.06)
            t.advance()
    lines = out.getvalue().splitlines()
    assert "\r" not in out.getvalue()
    shares = [ln for ln in lines if "% done" in ln]
    assert shares and all(ln.startswith("elbo-audit: pairwise pass: ") for ln in shares)
    assert any(s in shares[-1] for s in ("75% done", "100% done"))
    assert lines[-1].startswith("elbo-audit: pairwise pass: done in ")


def test_a_step_without_counted_work_still_reports_that_it_runs(monkeypatch):
    # a mixture fit advances once, at its end: the ticker prints meanwhile
    monkeypatch.setattr(progress, "LINE_EVERY", 0.05)
    out = _Pipe()
    with progress.enabled(out), progress.task("prior mog for vae", 1) as t:
        time.sleep(1.3)
        t.advance()
    assert "elbo-audit: prior mog for vae: 0% done" in out.getvalue()


def test_short_steps_print_nothing_off_a_terminal():
    out = _Pipe()
    with progress.enabled(out), progress.task("quick", 3) as t:
        t.advance(3)
    assert out.getvalue() == ""


def test_terminal_bar_redraws_in_place(monkeypatch):
    monkeypatch.setattr(progress, "_DELAY", 0.0)
    out = _Tty()
    with progress.enabled(out), progress.task("encoding vae", 2) as t:
        t.advance()
        time.sleep(0.15)
        t.advance()
    text = out.getvalue()
    assert text.startswith("\rencoding vae") and "100%" in text and text.endswith("\n")


@pytest.mark.parametrize("quiet", [False, True])
def test_run_logs_steps_off_a_terminal_unless_quiet(tmp_path, monkeypatch, capsys, quiet):
    from elbo_audit._cli.main import main

    monkeypatch.setattr(progress, "LINE_EVERY", 0.0)
    rng = np.random.default_rng(0)
    enc = tmp_path / "enc.npz"
    np.savez(enc, mean=rng.normal(size=(300, 2)), log_std=np.full((300, 2), -1.0))
    args = ["run", "--posteriors", str(enc), "--out", str(tmp_path / "r.nc"), "--bootstrap", "20"]
    assert main(args + (["--quiet"] if quiet else [])) == 0
    err = capsys.readouterr().err
    if quiet:
        assert "done in" not in err
    else:
        for step in ("log q(z)", "bootstrap intervals", "writing"):
            assert any(step in ln and "done in" in ln for ln in err.splitlines()), step
