#!/usr/bin/env bash
# The shipped ser_clip of emort 0.28 (docs/ser/clip_conditions/report.md): the classic copies (as
# docs/ser/clip_v2/run.sh makes them; resumes), then ser_clip's recipe on the three corpora and the
# copies (about 15 minutes on 2 cores), then the bundle's single-clip SER replaced by it.
set -euo pipefail
D="--data emodb=../shared/data/emodb --data ravdess=../shared/data/ravdess --data nemo=../shared/data/nemo"
C=$(bash docs/ser/clip_v2/copies.sh)
emort train ser $D $C --recipe recipes/ser_global_gain10.toml --out runs/clip_conditions/ser_clip_classic --threads 2
emort export clip-ser --bundle emort/assets/default_bundle --ser runs/clip_conditions/ser_clip_classic
