"""Untrusted weight files: pickles never run, whole-module files need --allow-unsafe."""

from __future__ import annotations

import elbo_audit_torch
import numpy as np
import pytest
import torch
from elbo_audit_torch import wrap
from elbo_audit_torch.reference import mlp_vae

import elbo_audit as ea
from elbo_audit import testing
from elbo_audit._cli.models import load_model
from elbo_audit._cli.plugins import PluginHost


def _host():
    host = PluginHost(entry_points=False)
    host.register(elbo_audit_torch, "torch")
    return host


@pytest.fixture
def trap(tmp_path):
    """A torch.save file whose unpickling would create ``marker``."""
    marker = tmp_path / "payload-ran"
    path = tmp_path / "trap.pt"
    torch.save({"encoder.hidden.weight": testing.BoobyTrap(marker)}, path)
    return path, marker


def test_the_trap_is_armed(tmp_path, trap):
    """Control: an unsafe load really runs the payload (so its absence below means something)."""
    path, marker = trap
    torch.load(path, map_location="cpu", weights_only=False)
    assert marker.exists()


def test_booby_trapped_pt_is_refused_and_never_runs(trap, npref):
    path, marker = trap
    with pytest.raises(ea.UnsafeArtifactError) as err:
        wrap(mlp_vae(npref.X_DIM, npref.HIDDEN, npref.LATENT), ea.ModelRef("m", weights=path))
    assert err.value.exit_code == 4
    msg = str(err.value)
    assert "\n" not in msg and "--allow-unsafe" in msg and "trap.pt" in msg and "'m'" in msg
    assert not marker.exists()


def test_raw_pickle_named_pt_is_refused(tmp_path, npref):
    marker = tmp_path / "payload-ran"
    path = testing.write_pickle_trap(tmp_path / "legacy.pt", marker)
    with pytest.raises(ea.UnsafeArtifactError):
        wrap(mlp_vae(npref.X_DIM, npref.HIDDEN, npref.LATENT), ea.ModelRef("m", weights=path))
    assert not marker.exists()


def test_object_array_npz_is_refused(tmp_path, npref):
    marker = tmp_path / "payload-ran"
    path = tmp_path / "w.npz"
    np.savez(path, **{"encoder.hidden.weight": np.array([testing.BoobyTrap(marker)], dtype=object)})
    with pytest.raises(ea.UnsafeArtifactError, match="object arrays"):
        wrap(mlp_vae(npref.X_DIM, npref.HIDDEN, npref.LATENT), ea.ModelRef("m", weights=path))
    assert not marker.exists()


def test_trap_through_the_core_exits_4(tmp_path, trap):
    path, marker = trap
    factory = tmp_path / "f.py"
    factory.write_text("from elbo_audit_torch.reference import mlp_vae\ndef make():\n    return mlp_vae(64, 32, 4)\n")
    with pytest.raises(ea.UnsafeArtifactError) as err:
        load_model(ea.ModelRef("m", factory=f"{factory}:make", weights=path), _host())
    assert err.value.exit_code == 4 and not marker.exists()


def test_trap_through_the_command_line_exits_4(tmp_path, trap, data, capsys):
    from elbo_audit._cli.main import main

    path, marker = trap
    factory = tmp_path / "f.py"
    factory.write_text("from elbo_audit_torch.reference import mlp_vae\ndef make():\n    return mlp_vae(64, 32, 4)\n")
    np.savez(tmp_path / "data.npz", x=data)
    out = tmp_path / "report.nc"
    code = main(["run", "--model", f"{factory}:make", "--weights", str(path), "--data",
                 str(tmp_path / "data.npz"), "--out", str(out), "--quiet"])
    if code == 2 and "torch" not in PluginHost().adapters():
        pytest.skip("elbo-audit-torch is not installed as a plugin")
    assert code == 4
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "refusing" in err[0]
    assert not marker.exists() and not out.exists()


def test_whole_module_file_needs_allow_unsafe(tmp_path, npref, ref_file, data):
    trained = wrap(mlp_vae(npref.X_DIM, npref.HIDDEN, npref.LATENT), ea.ModelRef("t", weights=ref_file))
    module_file = tmp_path / "whole.pt"
    vae = mlp_vae(npref.X_DIM, npref.HIDDEN, npref.LATENT)
    from safetensors.torch import load_file

    vae.load_state_dict(load_file(str(ref_file)))
    torch.save(vae, module_file)  # pickles the class: needs unsafe loading

    with pytest.raises(ea.UnsafeArtifactError, match="--allow-unsafe"):
        wrap(mlp_vae(npref.X_DIM, npref.HIDDEN, npref.LATENT), ea.ModelRef("m", weights=module_file))
    # allowed: as weights for a factory's model ...
    unsafe = wrap(mlp_vae(npref.X_DIM, npref.HIDDEN, npref.LATENT),
                  ea.ModelRef("m", weights=module_file, allow_unsafe=True))
    np.testing.assert_array_equal(unsafe.encoder.encode(data).mean, trained.encoder.encode(data).mean)
    # ... and as a whole model without a factory, through the core
    with pytest.raises(ea.UnsafeArtifactError):
        load_model(ea.ModelRef("m", weights=module_file), _host())
    model = load_model(ea.ModelRef("m", weights=module_file, allow_unsafe=True), _host())
    assert model.adapter == "torch" and model.attrs["allow_unsafe"] == 1
    np.testing.assert_array_equal(model.encoder.encode(data).mean, trained.encoder.encode(data).mean)


def test_state_dict_without_factory_is_a_usage_error(tmp_path, ref_weights):
    path = tmp_path / "sd.pt"
    torch.save({k: torch.tensor(v) for k, v in ref_weights.items()}, path)
    with pytest.raises(ea.UsageError, match="--model"):
        load_model(ea.ModelRef("m", weights=path), _host())


def test_pickle_suffix_refused_even_when_called_directly(tmp_path, npref):
    marker = tmp_path / "payload-ran"
    path = testing.write_pickle_trap(tmp_path / "w.pkl", marker)
    with pytest.raises(ea.UnsafeArtifactError):
        wrap(mlp_vae(npref.X_DIM, npref.HIDDEN, npref.LATENT), ea.ModelRef("m", weights=path))
    assert not marker.exists()
    with pytest.raises(ea.UnsafeArtifactError):
        load_model(ea.ModelRef("m", weights=path), _host())  # the core refuses it first
    assert not marker.exists()
