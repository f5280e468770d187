set -e
# The C grid of PREREGISTRATION.md, from the repository root: fits and validation cells (the eval reports also hold test rows; read only "validation"). Then: python docs/ser/svm_c/val_cells.py
source .venv/bin/activate
E=emodb=../shared/data/emodb; R=ravdess=../shared/data/ravdess; N=nemo=../shared/data/nemo
D="--data $E --data $R --data $N"
mkdir -p runs/c reports/c
for C in 1 3 30 100; do
  emort train stats $D --features ustats+pitch --no-fit-val --C $C --out runs/c/stats3p_noval_C$C
  emort train stats --data $R --data $N --features ustats+pitch --C $C --out runs/c/stats_loco_emodb_C$C
  emort train stats --data $E --data $N --features ustats+pitch --C $C --out runs/c/stats_loco_ravdess_C$C
  emort train stats --data $E --data $R --features ustats+pitch --C $C --out runs/c/stats_loco_nemo_C$C
  emort eval ser runs/ser_loco_emodb --data $E --cross-corpus emodb --stats runs/c/stats_loco_emodb_C$C --ser-weight 0 --out reports/c/emodb_C$C > /dev/null
  emort eval ser runs/ser_loco_ravdess --data $R --cross-corpus ravdess --stats runs/c/stats_loco_ravdess_C$C --ser-weight 0 --out reports/c/ravdess_C$C > /dev/null
  emort eval ser runs/ser_loco_nemo --data $N --cross-corpus nemo --stats runs/c/stats_loco_nemo_C$C --ser-weight 0 --out reports/c/nemo_C$C > /dev/null
done
python -m emort.evaluation.scorer_compare $D --stats-run runs/v2/stats3p_noval --stats-run runs/c/stats3p_noval_C1 --stats-run runs/c/stats3p_noval_C3 \
  --stats-run runs/c/stats3p_noval_C30 --stats-run runs/c/stats3p_noval_C100 --stats-pool all --ser-weight 0 --json reports/c/held_out_val.json > /dev/null
