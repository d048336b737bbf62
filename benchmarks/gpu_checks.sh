#!/usr/bin/env bash
# The project's GPU measurements as one prepared run for a lent GPU machine (the `device` tool, 15 minutes in all):
# the scale computation at ImageNet-LT size (goal: under 1 s), SemScaleTrainer's per-step overhead and host syncs
# (small ViT, and ViT-Base/16 in bf16: goal step-time ratio <= 1.02; syncs also under
# torch.cuda.set_sync_debug_mode("warn")), and the feature pool's peak memory per dtype.
#
#   bash benchmarks/gpu_checks.sh "$OUT"                 # on the GPU machine, from the repository root
#   DEVICE=cpu QUICK=1 bash benchmarks/gpu_checks.sh /tmp/gpu_checks   # a dry run of the script here
#
# The GPU image has torch, transformers, accelerate, scipy and scikit-learn but not `datasets`, which
# SemScaleTrainer needs (semscale_hf.data counts the labels); without it the training parts are skipped with a note. To include it, carry the
# wheels of datasets and its missing needs (dill, multiprocess) as `.whl` (see the device tool's README) and set
# WHEELS=.whl. Each part has its own time limit, so one slow part cannot take the whole lease.
set -uo pipefail
out="${1:?usage: gpu_checks.sh OUTPUT_DIR}"
device="${DEVICE:-cuda}"
mkdir -p "$out"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
if [ -n "${WHEELS:-}" ]; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site "$WHEELS"/*.whl &&
        export PYTHONPATH="$PYTHONPATH:/tmp/site"
fi
{
    date -u
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>/dev/null || echo "no nvidia-smi"
    python3 -c "import torch, transformers; print('torch', torch.__version__, 'transformers', transformers.__version__)"
} 2>&1 | tee "$out/environment.txt"

if [ -n "${QUICK:-}" ]; then shape=(--quick); else shape=(--dims 768 2048 --naive-classes 20); fi
timeout 360 python3 benchmarks/bench_scales.py --device "$device" "${shape[@]}" --repeats 3 2>&1 |
    tee "$out/bench_scales_$device.txt"

timeout 60 python3 benchmarks/bench_pool_memory.py --device "$device" 2>&1 | tee "$out/bench_pool_memory_$device.txt"

# Features on the device with labels on the CPU (a list, as the metric's users pass them): suspected to fail inside
# class_semantic_scales, which indexes CPU row ids with device indices (not checkable without a GPU).
timeout 60 python3 - "$device" <<'PY' 2>&1 | tee "$out/device_mix_$device.txt"
import sys
import torch
from semscale_hf import class_semantic_scales, semantic_scale_metric
features = torch.randn(64, 8, device=sys.argv[1])
labels = torch.arange(64) % 4
for name, call in [
    ("class_semantic_scales, CPU labels", lambda: class_semantic_scales(features, labels, 4).tolist()),
    ("semantic_scale_metric, list labels", lambda: semantic_scale_metric(features, labels.tolist())["num_measured"]),
]:
    try:
        print(f"{name} with {features.device} features: ok {call()}")
    except Exception as error:
        print(f"{name} with {features.device} features: FAILED {type(error).__name__}: {error}")
PY

if python3 -c "import datasets" 2>/dev/null; then
    repeats=$([ -n "${QUICK:-}" ] && echo 1 || echo 3)
    timeout 200 python3 benchmarks/bench_overhead.py --device "$device" --repeats "$repeats" 2>&1 |
        tee "$out/bench_overhead_$device.txt"
    if [ -z "${QUICK:-}" ]; then  # ViT-Base/16 at 224: minutes per epoch on a CPU, seconds on a GPU
        timeout 300 python3 benchmarks/bench_overhead.py --device "$device" --vit-base --bf16 --batch-size 64 \
            --max-count 200 --epochs 3 --repeats 2 2>&1 | tee "$out/bench_overhead_vit_base_$device.txt"
    fi
else
    echo "bench_overhead skipped: the datasets package is missing (carry its wheels, see the header)" |
        tee "$out/bench_overhead_$device.txt"
fi
