#!/usr/bin/env bash
# Train every model of the ELBO-surgery reproduction, one after the other, on one CPU thread.
#
#   MINUTES=12 nice -n 19 bash benchmarks/surgery/train_all.sh            # what docs/results.md used
#   DEVICE=cuda MINUTES=0 EPOCHS=1000 bash benchmarks/surgery/train_all.sh  # a GPU run to convergence
#   ONLY="vae2_long vae10_long vae20_long" bash benchmarks/surgery/train_all.sh  # the H&J table's models:
#       continue the 12-minute N(0, I) models for LONG_MINUTES_2/10/20 (default 105/52/52) more minutes
#
# Environment: MINUTES (wall-clock budget per model, 0 = none), EPOCHS (max epochs per model),
# DEVICE (torch device; JAX uses its default backend), ELBO_AUDIT_DATA_DIR (the shared data
# folder), LOG_DIR (per-model logs, default /tmp/elbo-audit-surgery-logs), ONLY (space-separated
# subset of: vae2 vae10 vae20 vae20_mog vae20_vamp jax_vae20 vae2_long vae10_long vae20_long;
# the *_long ones continue the 12-minute models, so they run only when named).
set -u
cd "$(dirname "$0")/../.."
MINUTES=${MINUTES:-12}
EPOCHS=${EPOCHS:-10000}
DEVICE=${DEVICE:-cpu}
LOG_DIR=${LOG_DIR:-/tmp/elbo-audit-surgery-logs}
ONLY=${ONLY:-"vae2 vae10 vae20 vae20_mog vae20_vamp jax_vae20"}
W=benchmarks/weights
mkdir -p "$LOG_DIR" "$W"
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1} MKL_NUM_THREADS=${MKL_NUM_THREADS:-1}
export XLA_FLAGS=${XLA_FLAGS:-"--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"}
T="python benchmarks/surgery/train_torch.py --minutes $MINUTES --epochs $EPOCHS --device $DEVICE"
want() { case " $ONLY " in *" $1 "*) return 0;; *) return 1;; esac; }
run() {  # name command...
  local name=$1; shift
  want "$name" || return 0
  echo "$(date -u +%FT%TZ) start $name: $*"
  local t0=$SECONDS
  "$@" >"$LOG_DIR/$name.log" 2>&1
  echo "$(date -u +%FT%TZ) end $name: rc=$? $((SECONDS - t0)) s (log $LOG_DIR/$name.log)"
}
run vae2       $T --latent 2  --out $W/torch_vae2
run vae10      $T --latent 10 --out $W/torch_vae10
run vae20      $T --latent 20 --out $W/torch_vae20
run vae20_mog  $T --latent 20 --prior mog  --components 10  --out $W/torch_vae20_mog
run vae20_vamp $T --latent 20 --prior vamp --components 100 --out $W/torch_vae20_vamp
L="python benchmarks/surgery/train_torch.py --seed 1 --epochs $EPOCHS --device $DEVICE"
case " $ONLY " in *_long*)
  run vae2_long  $L --latent 2  --minutes "${LONG_MINUTES_2:-105}"  --resume $W/torch_vae2  --out $W/torch_vae2_long
  run vae10_long $L --latent 10 --minutes "${LONG_MINUTES_10:-52}" --resume $W/torch_vae10 --out $W/torch_vae10_long
  run vae20_long $L --latent 20 --minutes "${LONG_MINUTES_20:-52}" --resume $W/torch_vae20 --out $W/torch_vae20_long
esac
if [ -f benchmarks/surgery/train_jax.py ]; then
  run jax_vae20 python benchmarks/surgery/train_jax.py --latent 20 --minutes "$MINUTES" --epochs "$EPOCHS" --out $W/jax_vae20
else
  echo "benchmarks/surgery/train_jax.py not found: skipping jax_vae20"
fi
