#!/usr/bin/env bash
# The 16 runs of PREREGISTRATION.md (about 1.5 min each on 2 cores); a run whose report exists is skipped.
set -euo pipefail
D="--data emodb=../shared/data/emodb --data ravdess=../shared/data/ravdess --data nemo=../shared/data/nemo"
for S in 0 1 2 3 4 5 6 7; do
  for P in fp32 bf16; do
    out="runs/parity_v2/${P}_s${S}"
    [ -f "$out/report.json" ] && continue
    emort eval enhance $D --split val --speakers emodb/09,nemo/MK0,ravdess/17,ravdess/18 \
      --amounts 0.5 --parts full --no-conversion --edit-seed "$S" --precision "$P" --out "$out"
  done
done
