#!/usr/bin/env bash
# The 16 runs of PREREGISTRATION.md (about 1.5 min each on 2 cores); a run whose report exists is skipped.
set -euo pipefail
D="--data emodb=../shared/data/emodb --data ravdess=../shared/data/ravdess --data nemo=../shared/data/nemo"
for S in 8 9 10 11 12 13 14 15; do
  for P in fp32 bf16; do
    out="runs/parity16/${P}_s${S}"
    [ -f "$out/report.json" ] && continue
    emort eval enhance $D --split val --amounts 0.5 --parts full --no-conversion --edit-seed "$S" --precision "$P" --out "$out"
  done
done
