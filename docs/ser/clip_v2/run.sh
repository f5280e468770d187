#!/usr/bin/env bash
# The two runs of docs/ser/clip_v2/PREREGISTRATION.md, side by side on one thread each; each resumes
# if interrupted (re-run this script). Makes the classic copies first (`emort augment --kind classic
# --seed 0`, as docs/ser/ser_aug/train_all.sh; copies of the held-out speakers are made but never
# trained on: the recipe holds their source speakers out).
set -euo pipefail
D="--data emodb=../shared/data/emodb --data ravdess=../shared/data/ravdess --data nemo=../shared/data/nemo"
C=$(bash docs/ser/clip_v2/copies.sh)
R="--recipe docs/ser/clip_v2/held_v2.toml --seed 0 --threads 1"
emort train ser $D $R --out runs/clip_v2/none_s0 > runs/clip_v2_none.log 2>&1 &
emort train ser $D $C $R --out runs/clip_v2/classic_s0 > runs/clip_v2_classic.log 2>&1 &
wait
