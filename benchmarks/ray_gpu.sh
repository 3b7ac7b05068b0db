#!/usr/bin/env bash
# The GPU rows of the Ray cost table (benchmarks/README.md), prepared for a machine with a
# CUDA GPU; not yet run (the development machine has none). One GPU actor beside the
# in-process path on the same GPU, for the embedded SmolLM2-135M and for a random model of
# Qwen3-1.7B's shape. Set up first with a CUDA build of torch:
#   NAG_TORCH_SPEC=torch ./run.sh setup
# Each run prints one JSON object, kept in ${OUT:-.}/ray_gpu_<model>.json. About 5 minutes.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PY:-.venv/bin/python}"
OUT="${OUT:-.}"
"$PY" -c "import torch; assert torch.cuda.is_available(), 'no CUDA GPU here'; print(torch.cuda.get_device_name(0))"
"$PY" benchmarks/ray_scaling.py --gpu --shards 4 --docs 4000 --chunk-rows 1000 --rounds 2 \
    | tail -n 1 > "$OUT/ray_gpu_embedded.json"
"$PY" benchmarks/ray_scaling.py --gpu --qwen3-shape --shards 3 --docs 2000 --chunk-rows 1000 \
    --rounds 1 | tail -n 1 > "$OUT/ray_gpu_qwen3_1.7b_shape.json"
cat "$OUT"/ray_gpu_*.json
