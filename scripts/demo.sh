#!/usr/bin/env bash
# The main job end to end on the built-in shapes world: data -> tokenizer -> ViLTA pre-training -> scores.
# Usage: scripts/demo.sh [RUN_DIR]   (make demo runs it with runs/demo)
set -euo pipefail
run=${1:-runs/demo}
vlp=.venv/bin/vlp
mkdir -p "$run"

echo "== 1. shapes world: images, captions, VQA/GQA/NLVR2/SNLI-VE files, region features, tokenizer"
$vlp data synth --out "$run/shapes" --images 2000 --seed 0

echo "== 2. ViLTA pre-training (tiny preset: soft MLM labels + synthesized ITM negatives)"
$vlp pretrain --config vilta-tiny --out "$run/vilta-tiny" \
  data.train="$run/shapes/dataset_shapes.json" data.images_root="$run/shapes/images" \
  data.tokenizer="$run/shapes/tokenizer" train.progress=false

echo "== done: checkpoint in $run/vilta-tiny/final, metrics in $run/vilta-tiny/metrics.jsonl"
