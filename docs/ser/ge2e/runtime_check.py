"""The runtime check of PREREGISTRATION_joint.md: a statistics run's probabilities on the validation
speakers through the training code against those `emort score --json` wrote for the same clips
(a bundle carrying the run), clip by clip, and the held-out UA both ways.

    python docs/ser/ge2e/runtime_check.py RUN SCORES.json

"own labels": argmax among the labels the corpus has (the cells' protocol); "six-way": `emort
score`'s prediction among all six (nEMO has no disgust: a disgust prediction is a miss).
"""
import json
import sys

import numpy as np

from emort.evaluation.scorer_compare import _ua
from emort.evaluation.ser_eval import stats_probs
from emort.training import corpora
from emort.training.splits import VAL_SPEAKERS
from emort.training.ustats import load_stats

D = ["emodb=../shared/data/emodb", "ravdess=../shared/data/ravdess", "nemo=../shared/data/nemo"]
allit = corpora.read_specs(D)
run, js = sys.argv[1], sys.argv[2]
clf, cfg = load_stats(run)
labels = cfg["labels"]
val = [i for i in corpora.only_canonical(allit, tuple(labels)) if i.speaker_key in VAL_SPEAKERS]
p = stats_probs((clf, cfg), val, allit)
d = {r["path"].split("/")[-1]: r for r in json.load(open(js))["results"]}
rt = np.array([[d[i.path.split("/")[-1]]["scores"][k] for k in labels] for i in val])
y = np.array([labels.index(i.emotion) for i in val])
c = np.array([i.corpus for i in val])
print("clips", len(val), "max |p_train - p_runtime|", float(np.abs(rt - p).max()), "argmax differs", int((rt.argmax(1) != p.argmax(1)).sum()))
for k in ("emodb", "ravdess", "nemo"):
    m = c == k
    six = float(np.mean([np.mean(rt[m][y[m] == j].argmax(1) == j) for j in np.unique(y[m])]))
    print(k, "own labels: train", round(_ua(y[m], p[m], 6), 3), "runtime", round(_ua(y[m], rt[m], 6), 3), "| six-way runtime", round(six, 3))
