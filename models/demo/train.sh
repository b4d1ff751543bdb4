#!/usr/bin/env bash
# Re-train the demo model exactly as models/demo/demo.onnx was made (about 25 min on 2 CPU cores):
# 1800 steps, then the same command with --steps 3000, which resumes the run (see README.md).
# Usage: bash models/demo/train.sh [RUN_DIR] [OUT.onnx]   (needs: pip install -e '.[train]')
set -euo pipefail
RUN="${1:-runs/demo}"
OUT="${2:-models/demo/demo.onnx}"
for steps in 1800 3000; do
    edge-sdk train --model mobilenet --width 0.5 --stage-width 64 --stages 2 \
      --data synthetic --input 192x144 --steps "$steps" --batch 8 --lr 2e-3 \
      --augment "scale=0.8:1.2,rotate=15,translate=0.1" --checkpoint-every 300 -o "$RUN"
done
edge-sdk export "$RUN" -o "$OUT"
