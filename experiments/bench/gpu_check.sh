#!/usr/bin/env bash
# The GPU checks as one prepared command for a lent GPU machine (the device tool): a training
# run there, a study's throughput (seeds.py: K replicas against one run), then the bench in
# float32 and in bfloat16 against PyTorch's AMP.
#
# Here, first: download the packages jaxgan needs that the GPU image lacks, as wheels, into
# .whl/ (git ignores it):
#     bash experiments/bench/gpu_check.sh --fetch
# Then, on the GPU machine (the device tool: carry=[".whl"], timeout_s=600):
#     bash experiments/bench/gpu_check.sh
# It installs the wheels into /tmp/site, stops unless jax and torch both see the GPU, trains
# DCGAN on the digits, times studies of REPLICAS seeds, then runs the bench in float32 and in
# bfloat16. Every part has a timeout within one deadline (TOTAL seconds from the start) and
# logs to $OUT as it goes, so a part cut short keeps what it printed and its exit status (124:
# timed out).
# Knobs (environment): PYTHON (python3), TOTAL (480), WORKLOADS, BF16_WORKLOADS,
# REPEATS (10), WARMUP (5), STEPS (300, the training check), REPLICAS (1,2,4,8,32; empty:
# no study part), STUDY_S (150, its seconds), ALLOW_CPU (1: run on a machine without a GPU,
# to check the script itself).
set -u -o pipefail
cd "$(dirname "$0")/../.." || exit 1
PY=${PYTHON:-python3}
# What the GPU image (device KINDS.md: Python 3.12, jax, flax, optax, orbax, chex, torch,
# numpy, protobuf, etils, absl, PyYAML, scikit-learn, scikit-image, tqdm) lacks, with the
# versions checked against this repository.
WHEELS=(ml-collections==1.1.0 grain==0.2.18 array-record==0.8.6 tensorboardX==2.6.5
        portpicker==1.6.0)

if [ "${1:-}" = "--fetch" ]; then
  rm -rf .whl  # exactly these wheels: all of .whl/ is installed there
  exec "$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
    --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 \
    --platform manylinux_2_24_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 --platform manylinux1_x86_64 -d .whl "${WHEELS[@]}"
fi

OUT=${OUT:-/tmp/jaxgan_gpu_check}
TOTAL=${TOTAL:-480}
WORKLOADS=${WORKLOADS:-dcgan64,pix2pix256_b1,pix2pix256_b8,cyclegan256_b1,pggan32_b16,pggan128_b16}
BF16_WORKLOADS=${BF16_WORKLOADS:-dcgan64,pix2pix256_b1,pix2pix256_b8,cyclegan256_b1,pggan32_b16}
REPEATS=${REPEATS:-10}
WARMUP=${WARMUP:-5}
STEPS=${STEPS:-300}
REPLICAS=${REPLICAS-1,2,4,8,32}
STUDY_S=${STUDY_S:-150}
mkdir -p "$OUT"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1

left() { echo $((TOTAL - SECONDS)); }  # seconds before the deadline

if [ -d .whl ]; then
  timeout -k 5 90 "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir \
    --upgrade --target /tmp/site .whl/*.whl || { echo "installing .whl/ failed"; exit 1; }
  export PYTHONPATH="/tmp/site:$PYTHONPATH"
fi

echo "== environment" | tee "$OUT/environment.txt"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>&1 \
  | tee -a "$OUT/environment.txt"
timeout -k 5 120 "$PY" - <<'EOF' 2>&1 | tee -a "$OUT/environment.txt"
import os, sys
import flax, jax, optax
print("jax", jax.__version__, "flax", flax.__version__, "optax", optax.__version__,
      "backend", jax.default_backend(), jax.devices())
import torch
print("torch", torch.__version__, "cuda", torch.cuda.is_available())
import grain, ml_collections, tensorboardX  # noqa: F401  (the carried wheels)
import jaxgan.experiments.dcgan  # noqa: F401
gpu = jax.default_backend() == "gpu" and torch.cuda.is_available()
sys.exit(0 if gpu or os.environ.get("ALLOW_CPU") == "1" else 3)
EOF
status=$?
echo "== exit $status" | tee -a "$OUT/environment.txt"
[ "$status" = 0 ] || exit "$status"

echo "== training: python -m jaxgan.experiments.dcgan, $STEPS steps" | tee "$OUT/train_dcgan.log"
rm -rf /tmp/jaxgan_gpu_dcgan
timeout -k 10 120 "$PY" -m jaxgan.experiments.dcgan --workdir=/tmp/jaxgan_gpu_dcgan \
  --config.num_steps="$STEPS" --config.sample_every="$STEPS" \
  --config.checkpoint_every="$STEPS" 2>&1 | tr '\r' '\n' | grep -v '^$' | tail -4 \
  | tee -a "$OUT/train_dcgan.log"
echo "== exit ${PIPESTATUS[0]}; last metrics:" | tee -a "$OUT/train_dcgan.log"
tail -1 /tmp/jaxgan_gpu_dcgan/metrics.jsonl 2>&1 | tee -a "$OUT/train_dcgan.log"

if [ -n "$REPLICAS" ]; then
  budget=$(( $(left) < STUDY_S ? $(left) : STUDY_S ))
  echo "== study throughput ($budget s): seeds.py --replicas $REPLICAS" | tee "$OUT/seeds.txt"
  if [ "$budget" -lt 30 ]; then  # as the benches below: timeout 0 would mean no limit
    echo "== skipped: past the deadline" | tee -a "$OUT/seeds.txt"
  else
    timeout -k 10 "$budget" "$PY" experiments/bench/seeds.py --replicas "$REPLICAS" 2>&1 \
      | tee -a "$OUT/seeds.txt"
    echo "== exit ${PIPESTATUS[0]}" | tee -a "$OUT/seeds.txt"
  fi
fi

# float32 gets the deadline's time less what bfloat16 keeps (or all of it, if it has none).
for dtype in float32 bfloat16; do
  if [ "$dtype" = float32 ]; then
    w=$WORKLOADS keep=$(( ${#BF16_WORKLOADS} > 0 ? 150 : 0 ))
  else
    w=$BF16_WORKLOADS keep=0
  fi
  [ -n "$w" ] || continue
  budget=$(( $(left) - keep ))
  echo "== bench $dtype ($budget s): $w" | tee "$OUT/bench_$dtype.txt"
  if [ "$budget" -lt 30 ]; then echo "== skipped: past the deadline" | tee -a "$OUT/bench_$dtype.txt"; continue; fi
  timeout -k 10 "$budget" "$PY" experiments/bench/run.py --workloads "$w" --dtype "$dtype" \
    --repeats "$REPEATS" --warmup "$WARMUP" 2>&1 | tee -a "$OUT/bench_$dtype.txt"
  echo "== exit ${PIPESTATUS[0]}" | tee -a "$OUT/bench_$dtype.txt"
done
grep "^ratio" "$OUT"/bench_*.txt
echo "== done in $SECONDS s"
