#!/usr/bin/env bash
# The classic copies of the three corpora (`emort augment --kind classic --seed 0`; made once, then
# reused), and on stdout the --data arguments that read them. Used by docs/ser/clip_v2/run.sh and
# docs/ser/clip_conditions/train.sh.
set -euo pipefail
C=""
for c in emodb ravdess nemo; do
  [ -f "runs/aug/${c}_classic_s0/manifest.csv" ] || emort augment "$c=../shared/data/$c" --out "runs/aug/${c}_classic_s0" --kind classic --seed 0 >&2
  C="$C --data csv=runs/aug/${c}_classic_s0/manifest.csv"
done
echo "$C"
