"""Train the Kingma & Welling MLP VAEs of the ELBO-surgery reproduction in PyTorch.

Writes ``OUT.safetensors`` (the reference parameter layout ``encoder.hidden.weight`` ...
``decoder.logits.bias``, plus ``prior.*`` for learned priors) and ``OUT.json`` (hyper-
parameters, per-epoch train/valid ELBO curves, wall time). The checkpoint is rewritten after
every epoch (``--checkpoint-every``) and when the wall-clock budget (``--minutes``) runs out,
so an interrupted run still leaves usable weights.

Examples::

    # the CPU budget used for docs/results.md (one thread, 12 minutes per model)
    nice -n 19 python benchmarks/surgery/train_torch.py --latent 20 --minutes 12 \
        --out benchmarks/weights/torch_vae20

    # a GPU run to convergence (H&J-quality models need a few hundred epochs)
    python benchmarks/surgery/train_torch.py --latent 20 --device cuda --epochs 1000 --minutes 0 \
        --out benchmarks/weights/torch_vae20

    # continue training from a saved checkpoint (curves are appended; Adam restarts)
    python benchmarks/surgery/train_torch.py --latent 20 --resume benchmarks/weights/torch_vae20 \
        --epochs 200 --minutes 0 --out benchmarks/weights/torch_vae20

The ELBO reported per epoch is in nats per data point: ``train_elbo`` is the running average
over the epoch's minibatches (one z sample, the parameters changing), ``valid_elbo`` is the
ELBO of the whole validation set at the epoch's end (one z sample; analytic KL for the N(0, I)
prior, single-sample Monte Carlo KL for learned priors).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def _load_local():
    """This folder's helpers (models.py, _data.py) under unique module names."""
    import importlib.util

    name = "elbo_audit_surgery._local"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, HERE / "_local.py")
        mod = importlib.util.module_from_spec(spec)
        sys.modules[name] = mod
        spec.loader.exec_module(mod)
    return sys.modules[name]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    _load_local().load("_runs").add_common_arguments(p)
    p.add_argument("--prior", default="standard_normal", choices=["standard_normal", "mog", "vamp"])
    p.add_argument("--components", type=int, default=None,
                   help="mixture components (mog, default 10) or pseudo-inputs (vamp, default 100)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=1, help="torch.set_num_threads (CPU)")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    import numpy as np
    import torch
    from safetensors.torch import load_file, save_file

    _local = _load_local()
    models = _local.load("models")
    load_split, npz_path = _local.load("_data").load_split, _local.load("_data").npz_path

    torch.set_num_threads(max(1, args.threads))
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    dev = torch.device(args.device)
    log = (lambda *a: None) if args.quiet else (lambda *a: print(*a, flush=True))

    t_load = time.perf_counter()
    x_train = load_split("train", args.data_dir, args.train_limit)
    x_valid = load_split("valid", args.data_dir, args.valid_limit)
    data_file = npz_path(args.data_dir)
    n_train, x_dim = x_train.shape
    log(f"data {data_file}: train {x_train.shape}, valid {x_valid.shape} ({time.perf_counter() - t_load:.1f} s)")

    components = args.components if args.prior != "standard_normal" else None
    if components is None:
        components = {"mog": 10, "vamp": 100}.get(args.prior)
    options: dict = {"x_dim": x_dim, "hidden": args.hidden, "latent": args.latent,
                     "activation": args.activation, "seed": args.seed}
    if components is not None:
        options["components"] = components
    model = models.build(args.prior, **options)

    prev = _local.load("_runs").previous(args.resume)
    history: list[dict] = list(prev.curves)
    if args.resume:
        model.load_state_dict(load_file(f"{args.resume}.safetensors"))
        log(f"resumed from {args.resume} after {prev.epochs} epochs")
    else:
        with torch.no_grad():
            p = np.clip(x_train.mean(0), 1e-3, 1 - 1e-3)
            model.decoder.logits.bias.copy_(torch.from_numpy(np.log(p / (1 - p))))
            if args.prior == "vamp":
                idx = rng.choice(n_train, size=components, replace=False)
                u = 0.05 + 0.9 * x_train[idx]
                model.prior.pseudo_logits.copy_(torch.from_numpy(np.log(u / (1 - u))))
    model.to(dev)
    opt = torch.optim.Adam(model.parameters(), lr=args.lr)

    xt = torch.from_numpy(x_train).to(dev)
    xv = torch.from_numpy(x_valid).to(dev)
    standard = args.prior == "standard_normal"
    log2pi = math.log(2 * math.pi)

    def elbo_terms(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-point reconstruction and KL (one reparameterised z sample)."""
        mean, log_var = model.encoder(x)
        eps = torch.randn_like(mean)
        z = mean + torch.exp(0.5 * log_var) * eps
        logits = model.decoder(z)
        rec = -torch.nn.functional.binary_cross_entropy_with_logits(logits, x, reduction="none").sum(-1)
        if standard:
            kl = 0.5 * (mean * mean + torch.exp(log_var) - 1.0 - log_var).sum(-1)
        else:
            log_q = -0.5 * (eps * eps + log_var + log2pi).sum(-1)
            kl = log_q - models.prior_log_prob(model, z)
        return rec, kl

    @torch.no_grad()
    def evaluate(x: torch.Tensor, chunk: int = 1000) -> tuple[float, float, float]:
        model.eval()
        g = torch.random.fork_rng(devices=[]) if dev.type == "cpu" else None
        rec_sum = kl_sum = 0.0
        with (g if g is not None else torch.no_grad()):
            torch.manual_seed(12345)
            for i in range(0, x.shape[0], chunk):
                rec, kl = elbo_terms(x[i:i + chunk])
                rec_sum += float(rec.double().sum())
                kl_sum += float(kl.double().sum())
        model.train()
        n = x.shape[0]
        return (rec_sum - kl_sum) / n, rec_sum / n, kl_sum / n

    steps_per_epoch = max(1, n_train // args.batch)
    schedule = _local.load("_runs").Schedule.from_args(args, steps_per_epoch)
    total_steps = schedule.total_steps
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)

    def save(final: bool, elapsed: float) -> None:
        state = {k: v.detach().to("cpu", torch.float32).contiguous() for k, v in model.state_dict().items()}
        tmp = out.with_name(out.name + ".safetensors.tmp")
        save_file(state, str(tmp), metadata={"format": "pt", "model": "elbo-audit surgery " + args.prior})
        os.chmod(tmp, 0o644)
        os.replace(tmp, f"{out}.safetensors")
        hyper = {
            "latent": args.latent, "hidden": args.hidden, "activation": args.activation,
            "prior": args.prior, "components": components, "batch": args.batch, "lr": args.lr,
            "lr_final": args.lr_final, "decay_tail": args.decay_tail, "optimizer": "Adam",
            "epochs_max": args.epochs, "minutes": args.minutes, "seed": args.seed,
            "device": args.device, "threads": args.threads, "max_steps": args.max_steps,
            "likelihood": "bernoulli", "posterior": "diagonal gaussian (mean, log_var)",
            "train_elbo_estimator": "running mean over minibatches, 1 z sample",
            "valid_elbo_estimator": ("1 z sample, analytic KL" if standard
                                     else "1 z sample, Monte Carlo KL"),
        }
        meta = {
            "framework": "torch",
            "torch_version": torch.__version__,
            "factory": ("elbo_audit_torch.reference:mlp_vae" if standard
                        else f"benchmarks/surgery/models.py:{args.prior}_vae"),
            "factory_options": {k: v for k, v in options.items() if k != "seed"},
            "hyperparameters": hyper,
            "data": {"file": str(data_file.name), "n_train": int(n_train), "n_valid": int(x_valid.shape[0])},
            "resumed_from": args.resume,
            "segments": prev.segments_with(args.resume, len(history), elapsed, hyper),
            "complete": bool(final),
            "epochs": len(history),
            "steps": prev.steps + int(global_step),
            "wall_time_s": round(prev.wall_s + elapsed, 2),
            "final": history[-1] if history else None,
            "machine": {"platform": platform.platform(), "python": platform.python_version(),
                        "cpu_count": os.cpu_count()},
            "curves": history,
        }
        tmpj = out.with_name(out.name + ".json.tmp")
        tmpj.write_text(json.dumps(meta, indent=1) + "\n")
        os.replace(tmpj, f"{out}.json")

    log(f"training {args.prior} latent={args.latent} hidden={args.hidden} on {dev}, "
        f"budget {args.minutes} min, {steps_per_epoch} steps/epoch")
    t0 = time.perf_counter()
    global_step = 0
    stop = False
    epoch = len(history)
    while not stop and global_step < total_steps:
        epoch += 1
        perm = torch.from_numpy(rng.permutation(n_train)).to(dev)
        elbo_sum, seen = 0.0, 0
        t_epoch = time.perf_counter()
        for i in range(steps_per_epoch):
            elapsed = time.perf_counter() - t0
            if elapsed >= schedule.budget_s or global_step >= total_steps:
                stop = True
                break
            lr = schedule.lr_at(global_step, elapsed)
            for group in opt.param_groups:
                group["lr"] = lr
            xb = xt[perm[i * args.batch:(i + 1) * args.batch]]
            rec, kl = elbo_terms(xb)
            elbo = rec - kl
            loss = -elbo.mean()
            if not math.isfinite(float(loss.detach())):
                raise FloatingPointError(f"epoch {epoch} step {i}: loss is {float(loss.detach())}")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            elbo_sum += float(elbo.detach().sum())
            seen += xb.shape[0]
            global_step += 1
        if seen == 0:
            break
        v_elbo, v_rec, v_kl = evaluate(xv)
        elapsed = time.perf_counter() - t0
        history.append({
            "epoch": epoch, "steps": prev.steps + int(global_step), "fraction_of_epoch": round(seen / (steps_per_epoch * args.batch), 4),
            "train_elbo": round(elbo_sum / seen, 4), "valid_elbo": round(v_elbo, 4),
            "valid_reconstruction": round(v_rec, 4), "valid_kl": round(v_kl, 4),
            "lr": float(f"{lr:.6g}"), "wall_s": round(prev.wall_s + elapsed, 2),
            "epoch_s": round(time.perf_counter() - t_epoch, 2),
        })
        log(f"epoch {epoch:4d}  train {elbo_sum / seen:9.3f}  valid {v_elbo:9.3f} "
            f"(rec {v_rec:8.3f} kl {v_kl:7.3f})  lr {lr:.2e}  {elapsed:7.1f} s")
        if epoch % max(1, args.checkpoint_every) == 0:
            save(False, elapsed)
    elapsed = time.perf_counter() - t0
    save(True, elapsed)
    log(f"done: {len(history)} epochs, {global_step} steps, {elapsed:.1f} s -> {out}.safetensors")
    return {"epochs": len(history), "steps": global_step, "wall_s": elapsed,
            "final": history[-1] if history else None}


if __name__ == "__main__":
    main()
