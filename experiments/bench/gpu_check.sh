#!/usr/bin/env bash
# Issue 7's GPU checks as one prepared command for a lent GPU machine (the device tool):
# training runs there, then the bench in float32 and in bfloat16 against PyTorch's AMP.
#
# Here, first (downloads the few wheels jaxgan needs that the GPU image lacks into .whl/,
# which git ignores):
#     bash experiments/bench/gpu_check.sh --fetch
# Then, on the GPU machine, from the repository root (one command, about 6-9 minutes):
#     bash experiments/bench/gpu_check.sh            # tool: carry=[".whl"], timeout_s=600
# Every part writes its log under $OUT as it goes (a part cut short keeps what it printed).
# Knobs (environment): PYTHON (python3), WORKLOADS, BF16_WORKLOADS, REPEATS (10),
# WARMUP (5), STEPS (300, the training check), PART_TIMEOUT (seconds per bench part, 210).
set -u
PY=${PYTHON:-python3}
WHEELS=(ml-collections grain tensorboardX)

if [ "${1:-}" = "--fetch" ]; then
  # The GPU image (device KINDS.md) is Python 3.12 with jax, flax, optax, orbax, chex, torch,
  # numpy, scikit-learn, scikit-image, tqdm and absl; these are what it lacks.
  exec "$PY" -m pip download -q --only-binary=:all: --python-version 3.12 \
    --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux_2_27_x86_64 --platform manylinux_2_28_x86_64 -d .whl "${WHEELS[@]}"
fi

OUT=${OUT:-/tmp/jaxgan_gpu_check}
mkdir -p "$OUT"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
WORKLOADS=${WORKLOADS:-dcgan64,pix2pix256_b1,pix2pix256_b8,cyclegan256_b1,pggan32_b16,pggan128_b16}
BF16_WORKLOADS=${BF16_WORKLOADS:-dcgan64,pix2pix256_b1,pix2pix256_b8,cyclegan256_b1,pggan32_b16}
REPEATS=${REPEATS:-10}
WARMUP=${WARMUP:-5}
STEPS=${STEPS:-300}
PART_TIMEOUT=${PART_TIMEOUT:-210}

if [ -d .whl ]; then
  "$PY" -m pip install -q --no-index --find-links .whl "${WHEELS[@]}" 2>&1 | tail -3
fi

echo "== environment" | tee "$OUT/environment.txt"
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>&1 || true
  "$PY" - <<'EOF'
import flax, jax, optax
print("jax", jax.__version__, "flax", flax.__version__, "optax", optax.__version__)
print("devices", jax.devices())
try:
    import torch
    print("torch", torch.__version__, "cuda", torch.cuda.is_available())
except ImportError:
    print("torch: not installed")
EOF
} 2>&1 | tee -a "$OUT/environment.txt"

echo "== training: python -m jaxgan.experiments.dcgan, $STEPS steps" | tee "$OUT/train_dcgan.log"
timeout 120 "$PY" -m jaxgan.experiments.dcgan --workdir="$OUT/dcgan" \
  --config.num_steps="$STEPS" --config.sample_every="$STEPS" \
  --config.checkpoint_every="$STEPS" 2>&1 | tr '\r' '\n' | tail -5 | tee -a "$OUT/train_dcgan.log"
tail -1 "$OUT/dcgan/metrics.jsonl" 2>&1 | tee -a "$OUT/train_dcgan.log"

for dtype in float32 bfloat16; do
  w=$WORKLOADS
  [ "$dtype" = bfloat16 ] && w=$BF16_WORKLOADS
  echo "== bench $dtype: $w" | tee "$OUT/bench_$dtype.txt"
  timeout "$PART_TIMEOUT" "$PY" experiments/bench/run.py --workloads "$w" --dtype "$dtype" \
    --repeats "$REPEATS" --warmup "$WARMUP" 2>&1 | tee -a "$OUT/bench_$dtype.txt"
done
grep "^ratio" "$OUT"/bench_*.txt
