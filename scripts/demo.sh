#!/usr/bin/env bash
# The main job end to end on the built-in shapes world:
# data -> text-only MLM stage -> ViLTA pre-training (soft labels + synthesized negatives) -> checkpoint.
# Usage: scripts/demo.sh [RUN_DIR]   (`make demo` runs it with runs/demo)
set -euo pipefail
run=${1:-runs/demo}
vlp=.venv/bin/vlp
shapes="$run/shapes"
data=(data.train="$shapes/dataset_shapes.json" data.images_root="$shapes/images" data.tokenizer="$shapes/tokenizer")
rm -rf "$run/text" "$run/vilta"
mkdir -p "$run"

echo "== 1/3 shapes world: images, captions, VQA/GQA/NLVR2/SNLI-VE files, region features, tokenizer"
$vlp data synth --out "$shapes" --images 2000 --seed 0 --overwrite

echo "== 2/3 text-only MLM stage: the language encoder that will be ViLTA's teacher and generator"
$vlp pretrain --config vilta-tiny-text --out "$run/text" "${data[@]}" train.max_steps=150 train.progress=false

echo "== 3/3 ViLTA pre-training: MLM with cross-distilled soft labels, ITM with synthesized negatives, ITC"
$vlp pretrain --config vilta-tiny --out "$run/vilta" "${data[@]}" train.progress=false \
  model.init_from="$run/text/final" objectives.soft_labels.teacher="$run/text/final"

echo "== done: model in $run/vilta/final (load it with vlp.load), metrics in $run/vilta/metrics.jsonl"
