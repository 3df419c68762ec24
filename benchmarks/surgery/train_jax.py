"""Train the 20-latent Kingma & Welling MLP VAE (N(0, I) prior) in pure JAX with a hand-written Adam.

Uses the JAX adapter's own reference network (``elbo_audit_jax.reference.make_functions`` and
``init_params``), so the saved ``OUT.safetensors`` has the reference layout
(``encoder.hidden.weight`` ... ``decoder.logits.bias``, PyTorch ``nn.Linear`` orientation) and
loads into both the JAX and the PyTorch reference factories. ``OUT.json`` holds the
hyperparameters, per-epoch train/valid ELBO curves and the wall time, as for train_torch.py.

Examples::

    # the CPU budget of docs/results.md (one XLA thread, 12 minutes)
    nice -n 19 python benchmarks/surgery/train_jax.py --latent 20 --minutes 12 --out benchmarks/weights/jax_vae20
    # on a GPU (jax[cuda] installed), to convergence
    python benchmarks/surgery/train_jax.py --latent 20 --epochs 1000 --minutes 0 --out benchmarks/weights/jax_vae20
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
    p.add_argument("--threads", type=int, default=1, help="XLA CPU threads (set before jax starts)")
    return p.parse_args(argv)


def _limit_threads(n: int) -> None:
    if "jax" in sys.modules:
        return
    if n == 1 and "XLA_FLAGS" not in os.environ:
        os.environ["XLA_FLAGS"] = "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
    os.environ.setdefault("OMP_NUM_THREADS", str(n))


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    _limit_threads(args.threads)
    import jax
    import jax.numpy as jnp
    import numpy as np
    from elbo_audit_jax import flatten_params, load_params
    from safetensors.numpy import save_file

    _data = _load_local().load("_data")
    load_split, npz_path = _data.load_split, _data.npz_path
    from elbo_audit_jax.reference import init_params, make_functions

    log = (lambda *a: None) if args.quiet else (lambda *a: print(*a, flush=True))
    x_train = load_split("train", args.data_dir, args.train_limit)
    x_valid = load_split("valid", args.data_dir, args.valid_limit)
    data_file = npz_path(args.data_dir)
    n_train, x_dim = x_train.shape
    log(f"data {data_file}: train {x_train.shape}, valid {x_valid.shape}; jax {jax.__version__} "
        f"on {jax.default_backend()}")

    prev = _load_local().load("_runs").previous(args.resume)
    history: list[dict] = list(prev.curves)
    if args.resume:
        params = jax.tree_util.tree_map(
            lambda v: np.asarray(v, np.float32), load_params(f"{args.resume}.safetensors")
        )
    else:
        params = init_params(x_dim, args.hidden, args.latent, seed=args.seed, dtype="float32")
        p = np.clip(x_train.mean(0), 1e-3, 1 - 1e-3)
        params["decoder"]["logits"]["bias"] = np.log(p / (1 - p)).astype(np.float32)
    params = jax.tree_util.tree_map(jnp.asarray, params)
    encode, decode = make_functions(args.activation)

    def elbo_terms(params, x, key):
        mean, log_var = encode(params, x)
        eps = jax.random.normal(key, mean.shape, mean.dtype)
        z = mean + jnp.exp(0.5 * log_var) * eps
        logits = decode(params, z)
        # log Bernoulli(x | sigmoid(logits)) = x*logits - softplus(logits)
        rec = jnp.sum(x * logits - jax.nn.softplus(logits), axis=-1)
        kl = 0.5 * jnp.sum(mean * mean + jnp.exp(log_var) - 1.0 - log_var, axis=-1)
        return rec, kl

    def loss_fn(params, x, key):
        rec, kl = elbo_terms(params, x, key)
        elbo = rec - kl
        return -jnp.mean(elbo), jnp.sum(elbo)

    b1, b2, eps_adam = 0.9, 0.999, 1e-8

    @jax.jit
    def step(params, m, v, t, lr, x, key):
        (_, elbo_sum), grads = jax.value_and_grad(loss_fn, has_aux=True)(params, x, key)
        t = t + 1
        m = jax.tree_util.tree_map(lambda a, g: b1 * a + (1 - b1) * g, m, grads)
        v = jax.tree_util.tree_map(lambda a, g: b2 * a + (1 - b2) * g * g, v, grads)
        c1 = 1 - b1 ** t
        c2 = 1 - b2 ** t
        params = jax.tree_util.tree_map(
            lambda p, a, b: p - lr * (a / c1) / (jnp.sqrt(b / c2) + eps_adam), params, m, v)
        return params, m, v, t, elbo_sum

    @jax.jit
    def eval_chunk(params, x, key):
        rec, kl = elbo_terms(params, x, key)
        return jnp.sum(rec), jnp.sum(kl)

    def evaluate(params, x, chunk=1000):
        key = jax.random.PRNGKey(12345)
        rec_s = kl_s = 0.0
        for i in range(0, x.shape[0], chunk):
            key, sub = jax.random.split(key)
            r, k = eval_chunk(params, x[i:i + chunk], sub)
            rec_s += float(r)
            kl_s += float(k)
        n = x.shape[0]
        return (rec_s - kl_s) / n, rec_s / n, kl_s / n

    m = jax.tree_util.tree_map(jnp.zeros_like, params)
    v = jax.tree_util.tree_map(jnp.zeros_like, params)
    t = jnp.asarray(0, jnp.int32)
    key = jax.random.PRNGKey(args.seed)
    rng = np.random.default_rng(args.seed)
    xt = jnp.asarray(x_train)
    xv = jnp.asarray(x_valid)

    steps_per_epoch = max(1, n_train // args.batch)
    schedule = _load_local().load("_runs").Schedule.from_args(args, steps_per_epoch)
    total_steps = schedule.total_steps
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)

    global_step = 0

    def save(final: bool, elapsed: float) -> None:
        flat = {k: np.ascontiguousarray(np.asarray(a, np.float32)) for k, a in flatten_params(params).items()}
        tmp = out.with_name(out.name + ".safetensors.tmp")
        save_file(flat, str(tmp), metadata={"format": "np", "model": "elbo-audit surgery standard_normal (jax)"})
        os.chmod(tmp, 0o644)
        os.replace(tmp, f"{out}.safetensors")
        hyper = {
            "latent": args.latent, "hidden": args.hidden, "activation": args.activation,
            "prior": "standard_normal", "batch": args.batch, "lr": args.lr,
            "lr_final": args.lr_final, "decay_tail": args.decay_tail,
            "optimizer": "Adam (hand-written; b1 0.9, b2 0.999, eps 1e-8)",
            "epochs_max": args.epochs, "minutes": args.minutes, "seed": args.seed,
            "threads": args.threads, "max_steps": args.max_steps, "likelihood": "bernoulli",
            "train_elbo_estimator": "running mean over minibatches, 1 z sample",
            "valid_elbo_estimator": "1 z sample, analytic KL",
        }
        meta = {
            "framework": "jax",
            "jax_version": jax.__version__,
            "backend": jax.default_backend(),
            "factory": "elbo_audit_jax.reference:mlp_vae",
            "factory_options": {"x_dim": x_dim, "hidden": args.hidden, "latent": args.latent,
                                "activation": args.activation},
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

    log(f"training jax standard_normal latent={args.latent} hidden={args.hidden}, budget "
        f"{args.minutes} min, {steps_per_epoch} steps/epoch")
    t0 = time.perf_counter()
    stop = False
    epoch = len(history)
    lr = args.lr
    while not stop and global_step < total_steps:
        epoch += 1
        perm = rng.permutation(n_train)
        elbo_sum, seen = 0.0, 0
        sums = []
        t_epoch = time.perf_counter()
        for i in range(steps_per_epoch):
            elapsed = time.perf_counter() - t0
            if elapsed >= schedule.budget_s or global_step >= total_steps:
                stop = True
                break
            lr = schedule.lr_at(global_step, elapsed)
            idx = perm[i * args.batch:(i + 1) * args.batch]
            key, sub = jax.random.split(key)
            params, m, v, t, es = step(params, m, v, t, jnp.float32(lr), xt[idx], sub)
            sums.append(es)
            seen += len(idx)
            global_step += 1
        if seen == 0:
            break
        elbo_sum = float(np.sum([float(s) for s in sums]))
        if not math.isfinite(elbo_sum):
            raise FloatingPointError(f"epoch {epoch}: training ELBO is {elbo_sum}")
        v_elbo, v_rec, v_kl = evaluate(params, xv)
        elapsed = time.perf_counter() - t0
        history.append({
            "epoch": epoch, "steps": prev.steps + int(global_step),
            "fraction_of_epoch": round(seen / (steps_per_epoch * args.batch), 4),
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
