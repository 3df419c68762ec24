#!/usr/bin/env bash
# The GPU checks and benchmarks of the torch and JAX compute backends, as ONE prepared script.
#
# Run it unchanged from the repository root on any machine with a CUDA GPU and PyTorch/JAX
# already installed (it installs only this checkout, with --no-deps and no network):
#
#     bash benchmarks/gpu_check.sh               # results in ./gpu-check/ (or $OUT)
#
# Needs, besides torch (CUDA build) and jax (with its CUDA plugin): numpy, scipy, pluggy,
# xarray, netCDF4, threadpoolctl, safetensors, pytest. Where netCDF4/cftime are missing and
# nothing can be fetched, carry their wheels in .whl/ (see the device tool's README): they
# are installed from there into /tmp/site first.
#
# Steps, each written to the output folder:
#   env.txt    nvidia-smi, the versions of python, torch, jax and the device name
#   tests.txt  the backend tests (tests/test_backends.py and the torch/JAX backend tests):
#              on a GPU their CUDA cases run instead of skipping
#   bench.txt  one exact pass log q(z) at N = S in {1e5, 1e6}, D = 20, for torch on cuda and
#              JAX on gpu, in float32 and float64 (seconds, G pairs/s, fraction of the fp32
#              FMA peak), then the whole default audit at N = 1e6 on the torch backend
# The script's own exit code is that of the tests; the benchmark runs either way.
#
# Defaults are the figures above; three variables change them, to smoke-test the script itself
# on a machine without a GPU (every step runs, the CUDA tests skip, the rows say "on cpu"):
#
#     GPU_CHECK_DEVICE=cpu GPU_CHECK_SIZES=2000 GPU_CHECK_AUDIT_N=2000 bash benchmarks/gpu_check.sh
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-gpu-check}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
PY=${PYTHON:-python3}
DEVICE=${GPU_CHECK_DEVICE:-cuda}
SIZES=${GPU_CHECK_SIZES:-100000,1000000}
AUDIT_N=${GPU_CHECK_AUDIT_N:-1000000}

if ls .whl/*.whl >/dev/null 2>&1; then
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi
"$PY" -m pip install -q --no-deps --no-build-isolation --no-index \
  -e . -e plugins/elbo-audit-torch -e plugins/elbo-audit-jax -e plugins/elbo-audit-native \
  2>&1 | grep -v -i warning

{
  nvidia-smi || true
  "$PY" - <<'EOF'
import platform, torch, jax
print("python", platform.python_version(), "torch", torch.__version__, "jax", jax.__version__)
print("cuda device:", torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none")
print("jax devices:", jax.devices())
EOF
  elbo-audit backends
} > "$OUT/env.txt" 2>&1
cat "$OUT/env.txt"

"$PY" -m pytest -q -rs tests/test_backends.py \
  plugins/elbo-audit-torch/tests/test_torch_backend.py \
  plugins/elbo-audit-jax/tests/test_jax_backend.py 2>&1 | tee "$OUT/tests.txt"
rc=${PIPESTATUS[0]}

timeout 420 "$PY" benchmarks/bench_backends.py --sizes "$SIZES" --dims 20 \
  --devices "$DEVICE" --skip numpy,native --naive-s 0 --no-reference --check-s 256 --repeat 2 \
  --audit-n "$AUDIT_N" --audit-backend torch --audit-device "$DEVICE" 2>&1 | tee "$OUT/bench.txt"
exit "$rc"
