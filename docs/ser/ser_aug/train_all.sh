#!/usr/bin/env bash
# The runs of docs/ser/ser_aug/PREREGISTRATION.md, one at a time, in its order; each resumes if
# interrupted (re-run this script). Writes the copies it needs first (`emort augment`, as in
# docs/ser/cross_corpus.md; it resumes and keeps finished copies), as runs/ does not outlive a machine.
set -euo pipefail
D="--data emodb=../shared/data/emodb --data ravdess=../shared/data/ravdess --data nemo=../shared/data/nemo"
copies() {  # kind seed -> --data csv=... for the three corpora
  for c in emodb ravdess nemo; do printf -- " --data csv=runs/aug/%s_%s_s%s/manifest.csv" "$c" "$1" "$2"; done
}
run() {  # name seed extra-data
  emort train ser $D $3 --recipe recipes/ser_global_gain10.toml --seed "$2" --threads 2 --out "runs/ser_aug/$1_s$2"
}
make_copies() {  # kind seed
  for c in emodb ravdess nemo; do
    [ -f "runs/aug/${c}_$1_s$2/manifest.csv" ] || emort augment "$c=../shared/data/$c" --out "runs/aug/${c}_$1_s$2" --kind "$1" --seed "$2" $([ "$1" = emort ] && echo --amount 0.5 --contrast uncond)  # emort <= 0.20's edit
  done
}
# Order of the third session (PREREGISTRATION.md, last section): the seed-0 runs not yet read first.
make_copies emort 0
run emort 0 "$(copies emort 0)"
make_copies classic 0
run both 0 "$(copies classic 0) $(copies emort 0)"
run none 1 ""
run classic 0 "$(copies classic 0)"
make_copies classic 1
run classic 1 "$(copies classic 1)"
make_copies emort 1
run emort 1 "$(copies emort 1)"
run both 1 "$(copies classic 1) $(copies emort 1)"
