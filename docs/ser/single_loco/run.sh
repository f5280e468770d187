#!/usr/bin/env bash
# The six leave-one-corpus-out SER runs of docs/ser/single_loco/PREREGISTRATION.md, two at a time on one
# thread each (about 60 minutes on 2 cores); each resumes if interrupted (re-run this script).
set -euo pipefail
declare -A DATA=([emodb]="--data ravdess=../shared/data/ravdess --data nemo=../shared/data/nemo"
                 [ravdess]="--data emodb=../shared/data/emodb --data nemo=../shared/data/nemo"
                 [nemo]="--data emodb=../shared/data/emodb --data ravdess=../shared/data/ravdess")
mkdir -p runs/single_loco
queue() {  # $1: recipe, $2: name
  for k in emodb ravdess nemo; do
    emort train ser ${DATA[$k]} --recipe "$1" --threads 1 --out "runs/single_loco/$2_wo_$k" > "runs/single_loco/$2_wo_$k.log" 2>&1
  done
}
queue recipes/ser_global_gain10.toml clip &
queue recipes/ser_speaker.toml speaker &
wait
