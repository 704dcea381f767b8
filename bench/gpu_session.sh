#!/usr/bin/env bash
# One GPU session, prepared to run unattended on a lent single-GPU machine (see docs/lab.md, docs/extraction.md):
#   1. the released lab zoo: the seven objectives under the `gpu` preset, side by side on the one GPU,
#      then `partctl pretrain --budget gpu --release` (finds them cached, writes partaware/lab/release/);
#   2. a preview of their margins over the random-initialisation control (bench/bench_lab_margins.py);
#   3. extraction on CUDA in bf16 (bench/bench_extract.py), end to end and against the model alone.
# Everything it measures lands in $OUT (logs, release.tgz, margins.json). Python packages the device image lacks
# travel as cp312 wheels in .whl/ (git-ignored; carry it): pydantic, pydantic-core, annotated-types,
# typing-inspection, and pyarrow>=26 (the image's older pyarrow cannot read a manifest's null boxes), e.g.
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#     --platform manylinux_2_28_x86_64 --platform manylinux2014_x86_64 -d .whl pydantic==2.14.4 ...
# Ray does not fit beside pyarrow in one call's 64 MiB, so step 3 (the Ray Data pipeline) needs a call of its own.
# Measured on an H100 (docs/lab.md): supervised and MAE finish 3,000 x 256 in about 3 minutes side by side with
# the others; the multi-view objectives need more than the 360 s given here (TRAIN_LIMIT).
#
#   bash bench/gpu_session.sh            # the real thing
#   SMOKE=1 bash bench/gpu_session.sh    # a two-step dry run of the same flow on this machine's CPU
set -uo pipefail
OUT=${OUT:-/tmp/gpu-session-out}
mkdir -p "$OUT"
STORE=${STORE:-/tmp/gpu-session-store}
PY=${PY:-python3}
OBJECTIVES="ibot dino mocov3 cae beit supervised mae"  # costliest first
t0=$(date +%s)
stamp() { echo "[$(( $(date +%s) - t0 )) s] $*" | tee -a "$OUT/session.log"; }

if [ -d .whl ] && [ -z "${SMOKE:-}" ]; then
  $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    || { stamp "wheel install failed"; exit 1; }
  export PYTHONPATH=/tmp/site:$PWD/platform
else
  export PYTHONPATH=$PWD/platform
fi
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 COLUMNS=200 RAY_USAGE_STATS_ENABLED=0 RAY_AUTH_MODE=disabled
(nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv; nproc; $PY -c \
  "import torch, timm; print('torch', torch.__version__, 'timm', timm.__version__, 'cuda', torch.cuda.is_available())") \
  > "$OUT/machine.txt" 2>&1
stamp "machine: $(tr '\n' ' ' < "$OUT/machine.txt")"

if [ -n "${SMOKE:-}" ]; then
  BUDGET=(--budget quickstart --steps 2 --batch-size 8); DEVICE=cpu; TRAIN_LIMIT=300
else
  BUDGET=(--budget gpu); DEVICE=cuda; TRAIN_LIMIT=${TRAIN_LIMIT:-360}
  $PY -c "from partaware.storage import StorageRoot; from partaware.datasets import prepare_dataset
from partaware.lab.presets import GPU_PRETRAIN_DATA as d
p, _ = prepare_dataset(StorageRoot.open('$STORE', writable=True), d[0], options=d[1], workers=16)
print(p.version)" > "$OUT/prepare.log" 2>&1 || { stamp "prepare failed"; tail -5 "$OUT/prepare.log"; exit 1; }
  stamp "pretraining set prepared: $(tail -1 "$OUT/prepare.log")"
fi

for o in $OBJECTIVES; do
  OMP_NUM_THREADS=2 timeout "$TRAIN_LIMIT" $PY -m partaware pretrain --no-ray "${BUDGET[@]}" --device "$DEVICE" \
    --objectives "$o" --storage "$STORE" > "$OUT/pretrain-$o.log" 2>&1 &
  [ -n "${SMOKE:-}" ] && wait  # one at a time on a small CPU
done
wait
done_list=$(for o in $OBJECTIVES; do grep -q "lab/$o .*trained\|lab/$o .*cached" "$OUT/pretrain-$o.log" && echo -n "$o,"; done)
stamp "pretrained: ${done_list%,}"
for o in $OBJECTIVES; do tail -3 "$OUT/pretrain-$o.log" | head -1; done >> "$OUT/session.log"

if [ -z "${SMOKE:-}" ] && [ -n "$done_list" ]; then
  $PY -m partaware pretrain --no-ray "${BUDGET[@]}" --device "$DEVICE" --objectives "${done_list%,}" \
    --storage "$STORE" --release > "$OUT/release.log" 2>&1 || stamp "release failed"
  tar czf "$OUT/release.tgz" -C platform/partaware/lab release
  tar czf "$OUT/lab-infos.tgz" -C "$STORE" $(cd "$STORE" && ls weights/lab/*/*/info.json)
  stamp "released"
  timeout 150 $PY bench/bench_lab_margins.py --storage "$STORE" --release --json "$OUT/margins.json" \
    > "$OUT/margins.txt" 2>&1 || stamp "margins failed"
  stamp "margins: $(grep -c lab-release "$OUT/margins.txt") encoders"
fi

if [ -z "${SMOKE:-}" ] && [ -z "${SKIP_EXTRACT:-}" ]; then
  timeout "${EXTRACT_LIMIT:-200}" $PY bench/bench_extract.py --arch vit_base_patch16_224 --size 224 --images 400 \
    --batch 256 --device cuda --precision bf16 > "$OUT/extract.txt" 2>&1 || stamp "extract bench failed"
fi
stamp "end"
