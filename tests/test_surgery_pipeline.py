"""A small, fast run of the ELBO-surgery reproduction (benchmarks/surgery/), so it cannot rot.

The same code path as the real reproduction, shrunk: a few training steps of tiny MLP VAEs on
the first 200 points of the real binarized MNIST, then ``reproduce.py`` (which writes configs and
runs ``elbo-audit run`` / ``compare`` / ``check`` as subprocesses) on 200 training points.
Skipped, with the reason, when the shared data or torch is missing.
"""

from __future__ import annotations

import importlib.util
import json
import math
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SURGERY = REPO / "benchmarks" / "surgery"


def _load(name: str):
    full = f"elbo_audit_surgery_test.{name}"
    if full in sys.modules:
        return sys.modules[full]
    spec = importlib.util.spec_from_file_location(full, SURGERY / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[full] = mod
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def data_file() -> Path:
    data = _load("_data")
    try:
        return data.npz_path()
    except FileNotFoundError as exc:
        pytest.skip(f"binarized MNIST not available ({exc})")


def test_data_dir_override(monkeypatch, tmp_path):
    data = _load("_data")
    monkeypatch.setenv(data.ENV_VAR, str(tmp_path))
    assert data.data_dir() == tmp_path.resolve()
    assert data.data_dir(tmp_path / "x") == (tmp_path / "x").resolve()
    with pytest.raises(FileNotFoundError, match="ELBO_AUDIT_DATA_DIR"):
        data.npz_path()
    monkeypatch.delenv(data.ENV_VAR)
    assert data.data_dir() == (REPO.parent / "shared" / "data").resolve()


def test_update_docs_replaces_only_marked_blocks(tmp_path):
    rep = _load("reproduce")
    doc = tmp_path / "r.md"
    doc.write_text("a\n<!-- BEGIN generated:t -->\nold\n<!-- END generated:t -->\nb\n")
    assert rep.update_docs(doc, {"t": "new\n", "missing": "x"}) == ["t"]
    assert doc.read_text() == "a\n<!-- BEGIN generated:t -->\nnew\n<!-- END generated:t -->\nb\n"


def test_learning_rate_schedule_both_trainers_use():
    import argparse

    runs = _load("_runs")
    args = argparse.Namespace(lr=1e-3, lr_final=0.1, decay_tail=0.4, epochs=10, max_steps=None, minutes=0)
    sched = runs.Schedule.from_args(args, steps_per_epoch=100)  # 1000 steps, no time budget
    assert sched.total_steps == 1000 and sched.budget_s == math.inf
    assert sched.lr_at(0, 0.0) == sched.lr_at(600, 0.0) == 1e-3  # constant until 60%
    assert sched.lr_at(800, 0.0) == pytest.approx((1e-3 + 1e-4) / 2)  # cosine half-way: the mean
    assert sched.lr_at(1000, 0.0) == pytest.approx(1e-4) == sched.lr_at(5000, 0.0)
    # a wall-clock budget counts when it is further along than the steps
    timed = runs.Schedule.from_args(argparse.Namespace(**{**vars(args), "minutes": 1.0}), 100)
    assert timed.lr_at(10, 48.0) == pytest.approx((1e-3 + 1e-4) / 2)  # 80% of 60 s
    assert timed.lr_at(800, 1.0) == pytest.approx((1e-3 + 1e-4) / 2)  # 80% of the steps
    capped = runs.Schedule.from_args(argparse.Namespace(**{**vars(args), "max_steps": 3}), 100)
    assert capped.total_steps == 3


def test_surgery_pipeline_small(data_file, tmp_path):
    pytest.importorskip("torch")
    pytest.importorskip("elbo_audit_torch")
    train_torch = _load("train_torch")
    rep = _load("reproduce")
    weights = tmp_path / "weights"
    common = ["--hidden", "8", "--train-limit", "200", "--valid-limit", "100", "--max-steps", "3",
              "--minutes", "1", "--quiet"]
    for latent, prior, stem in [(2, "standard_normal", "torch_vae2"), (20, "standard_normal", "torch_vae20"),
                                (20, "mog", "torch_vae20_mog"), (20, "vamp", "torch_vae20_vamp")]:
        res = train_torch.main(["--latent", str(latent), "--prior", prior, "--components", "4",
                                "--out", str(weights / stem), *common])
        assert res["steps"] == 3 and math.isfinite(res["final"]["valid_elbo"])
        meta = json.loads((weights / f"{stem}.json").read_text())
        assert meta["complete"] and meta["curves"][0]["train_elbo"] < 0
        assert (weights / f"{stem}.safetensors").stat().st_size < 10_000_000
    # a continued model: curves and runs appended, the table shows it with the 12-minute one beside it
    res = train_torch.main(["--latent", "2", "--components", "4", "--resume", str(weights / "torch_vae2"),
                            "--out", str(weights / "torch_vae2_long"), *common])
    meta = json.loads((weights / "torch_vae2_long.json").read_text())
    assert meta["epochs"] == 4 and meta["steps"] == 6 and [c["steps"] for c in meta["curves"]] == [2, 3, 5, 6]
    assert [seg["resumed_from"] for seg in meta["segments"]] == [None, str(weights / "torch_vae2")]

    out = tmp_path / "out"
    summary = rep.main(["--weights-dir", str(weights), "--out-dir", str(out), "--splits", "train",
                        "--steps", "hj,priors", "--limit", "200", "--bootstrap", "20", "--no-plots",
                        "--fit-samples", "1000", "--quiet"])

    # the H&J table: one block per trained latent size, published numbers beside ours
    table = (out / "hj_table.md").read_text()
    assert "| 2 | vae2_long | ELBO | -129.63 |" in table and "| 20 | vae20 | marginal KL | 9.53 |" in table
    assert "12-min model − paper" in table and "| 2 | vae2 |" not in table
    records = {(r["latents"], r["term"]): r for r in summary["hj_table"]}
    assert records[(2, "elbo")]["before"] == "vae2" and records[(20, "elbo")]["before"] is None
    long_row = next(r for r in (out / "training_table.md").read_text().splitlines() if r.startswith("| vae2_long "))
    assert " + " in long_row and "4 (6 steps)" in long_row  # both runs of the continued model
    for d in (2, 20):
        avg, mi, mkl = (records[(d, t)]["ours"] for t in ("avg_kl", "index_code_mi", "marginal_kl"))
        assert mi <= math.log(200) + 0.05
        assert abs(avg - mi - mkl) < 0.5  # the decomposition, up to Monte Carlo error
        assert records[(d, "elbo")]["ci"][0] <= records[(d, "elbo")]["ours"] <= records[(d, "elbo")]["ci"][1]

    # the prior comparison: every 20-latent model under native, fitted mixture and q(z) itself
    pri = summary["priors_train"]
    assert set(pri) == {"vae20", "vae20_jaxadapter", "vae20_mog", "vae20_vamp"}
    # the same weights through the JAX adapter give the same numbers
    assert abs(pri["vae20_jaxadapter"]["native"]["avg_kl"][0] - pri["vae20"]["native"]["avg_kl"][0]) < 1e-3
    a, b = pri["vae20_jaxadapter"]["native"]["elbo"], pri["vae20"]["native"]["elbo"]
    assert abs(a[0] - b[0]) < 1e-3  # same weights, same seed: the same draws
    for m in pri:
        assert {"native", "mog10", "aggregate"} <= set(pri[m])
        assert abs(pri[m]["aggregate"]["marginal_kl"][0]) < 1e-6
    assert pri["vae20_mog"]["native"]["_family"] != "standard_normal"
    compare = (out / "priors_train_compare.md").read_text()
    assert "vae20@native" in compare and "vae20_vamp@aggregate" in compare

    # one file holds every report of the run, each unchanged in its own group
    import xarray as xr

    with xr.open_datatree(out / "surgery.nc", engine="netcdf4") as both, \
            xr.open_datatree(out / "hj_train.nc", engine="netcdf4") as one:
        assert set(both.children) == {"hj_train", "priors_train"}
        xr.testing.assert_identical(both["hj_train"].to_dataset(inherit=False), one.to_dataset())
        xr.testing.assert_identical(both["hj_train/replicates"].to_dataset(),
                                    one["replicates"].to_dataset())

    # the training curves of the table's models (vae2_long, and vae20 which has no continuation)
    pytest.importorskip("matplotlib")
    png = rep.plot_training(weights, tmp_path / "curves.png")
    assert png is not None and png.read_bytes()[:4] == b"\x89PNG"

    # held out: the training set's q(z) scored as a fixed prior on the test set
    held = rep.main(["--weights-dir", str(weights), "--out-dir", str(out), "--splits", "train,test",
                     "--steps", "heldout", "--limit", "200", "--bootstrap", "20", "--no-plots",
                     "--fit-samples", "1000", "--quiet"])["heldout"]["vae20"]
    assert {"native", "mog10", "train_q", "test_q"} <= set(held)
    assert held["train_q"]["_family"] == "aggregate_posterior_of_vae20"  # read from the train report
    assert abs(held["test_q"]["marginal_kl"][0]) < 1e-6  # the test set's own q(z): exact
    # q(z) of the test points is the optimal prior for them; the training set's is not
    assert held["test_q"]["elbo"][0] > held["train_q"]["elbo"][0]
    assert "train_q" in (out / "heldout_vae20_test.md").read_text()

    # the configs are plain elbo-audit configs, and the reports pass the schema check
    from elbo_audit._cli.main import main as cli

    assert (out / "configs" / "hj_train.toml").is_file()
    for name in ("hj_train", "priors_train", "heldout_vae20_test"):
        assert cli(["check", str(out / f"{name}.nc"), "--quiet"]) == 0


def test_jax_training_loads_into_both_references(data_file, tmp_path):
    pytest.importorskip("jax")
    torch = pytest.importorskip("torch")
    from elbo_audit_torch.reference import mlp_vae
    from safetensors.numpy import load_file

    train_jax = _load("train_jax")
    res = train_jax.main(["--latent", "3", "--hidden", "8", "--train-limit", "200", "--valid-limit", "100",
                          "--max-steps", "3", "--minutes", "1", "--quiet", "--out", str(tmp_path / "j")])
    assert res["steps"] == 3 and math.isfinite(res["final"]["valid_elbo"])
    state = {k: torch.from_numpy(v) for k, v in load_file(str(tmp_path / "j.safetensors")).items()}
    model = mlp_vae(hidden=8, latent=3)
    model.load_state_dict(state)  # strict: exactly the reference names and shapes
    meta = json.loads((tmp_path / "j.json").read_text())
    assert meta["factory"] == "elbo_audit_jax.reference:mlp_vae" and meta["framework"] == "jax"
    # continued: the curves go on where they stopped, and both runs are recorded
    train_jax.main(["--latent", "3", "--hidden", "8", "--train-limit", "200", "--valid-limit", "100",
                    "--max-steps", "3", "--minutes", "1", "--quiet", "--resume", str(tmp_path / "j"),
                    "--lr", "5e-4", "--out", str(tmp_path / "k")])
    meta2 = json.loads((tmp_path / "k.json").read_text())
    assert [c["steps"] for c in meta2["curves"]] == [2, 3, 5, 6] and meta2["steps"] == 6
    assert meta2["curves"][:2] == meta["curves"]
    assert [(g["resumed_from"], g["epochs"], g["hyperparameters"]["lr"]) for g in meta2["segments"]] == [
        (None, 2, 1e-3), (str(tmp_path / "j"), 2, 5e-4)]
    assert meta2["wall_time_s"] >= meta["wall_time_s"]
