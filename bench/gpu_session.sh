#!/usr/bin/env bash
# One GPU session, prepared to run unattended on a lent single-GPU machine (docs/extraction.md, docs/lab.md,
# cluster/README.md "What a run of jobs/paper.yaml costs"). Issue #20's measurements first:
#   1. extraction on CUDA in bf16, ViT-B/16 at 224 px from 500 px photos-sized sources: the model alone and the
#      plain DataLoader loop (bench/bench_extract.py --no-pipeline: needs no Ray);
#   2. probe training rates on CUDA at the paper's shapes (bench/bench_probe_rates.py: needs no Ray);
#   3. the Ray Data pipeline end to end against the model alone (bench/bench_extract.py), when Ray imports;
#   4. with LAB=1: the released lab zoo under the `gpu` preset, then `partctl pretrain --budget gpu --release`
#      and a preview of the margins over the random-initialisation control.
# Everything it measures lands in $OUT. Python packages the device image lacks travel as cp312 wheels in .whl/
# (git-ignored; carry it): pydantic, pydantic-core, annotated-types, typing-inspection and pyarrow>=26 (the
# image's older pyarrow cannot read a manifest's null boxes), e.g.
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#     --platform manylinux_2_28_x86_64 --platform manylinux2014_x86_64 -d .whl pydantic==2.14.4 ...
# Ray's wheel (about 42 MB) does not fit beside pyarrow's in one call's 64 MiB: put it in .whl-ray/ and carry it
# in a first call that only installs it (`pip install ... --target /tmp/site .whl-ray/*.whl`); a call made
# within the machine's 30 s of warmth then finds /tmp/site and runs step 3 too.
# Measured on an H100 (docs/lab.md): supervised and MAE finish 3,000 x 256 in about 3 minutes side by side with
# the others; the multi-view objectives need more than the 360 s given here (TRAIN_LIMIT).
#
#   bash bench/gpu_session.sh            # the real thing
#   SMOKE=1 bash bench/gpu_session.sh    # a short dry run of the same flow on this machine's CPU
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
fi
if [ -d /tmp/site ] && [ -z "${SMOKE:-}" ]; then
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
  EXTRACT=(--encoder vit_tiny_patch16_224 --size 64 --image-size 128 --images 8 --batch 8 --precision bf16 --device cpu)
  PROBE=(--device cpu --items 256 --epochs 1 --classes 10 --dim 192 --tokens 17 --batch 64)
else
  EXTRACT=(--encoder vit_base_patch16_224 --size 224 --image-size 500 --images 400 --batch 256 --loader-workers 8
           --precision bf16 --device cuda)
  PROBE=(--device cuda --items 16384 --epochs 2)
fi
timeout "${EXTRACT_LIMIT:-200}" $PY bench/bench_extract.py "${EXTRACT[@]}" --no-pipeline > "$OUT/extract-model.txt" 2>&1 \
  || stamp "extraction bench (model alone, plain loop) failed"
stamp "extraction, model alone and plain loop: $(grep -h 'model only\|plain loop /' "$OUT/extract-model.txt" | tr -s ' ' | tr '\n' ';')"
timeout "${PROBE_LIMIT:-200}" $PY bench/bench_probe_rates.py "${PROBE[@]}" > "$OUT/probe-rates.txt" 2>&1 \
  || stamp "probe rates failed"
stamp "probe rates: $(grep -h 'bare head' "$OUT/probe-rates.txt" | tr -s ' ' | tr '\n' ';')"
if $PY -c "import ray" 2>/dev/null; then
  timeout "${EXTRACT_LIMIT:-200}" $PY bench/bench_extract.py "${EXTRACT[@]}" > "$OUT/extract.txt" 2>&1 \
    || stamp "extraction bench (pipeline) failed"
  stamp "pipeline: $(grep -h 'pipeline / model only' "$OUT/extract.txt" | tr -s ' ')"
else
  stamp "no Ray on this machine: the pipeline's figures need the .whl-ray call first (see the header)"
fi
[ -z "${LAB:-}" ] && { stamp "end"; exit 0; }

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

stamp "end"
