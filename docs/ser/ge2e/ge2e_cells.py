"""UA of the four candidates of docs/ser/ge2e/PREREGISTRATION.md on six cells: held-out speakers
(fitted on the training speakers of the three corpora) and leave one corpus out (fitted on the
other two corpora's non-test speakers), on the validation speakers (``val``) or the test speakers
(``test``). Every speaker is z-scored over all of its clips, any label (as `emort score --per-speaker`).

    python docs/ser/ge2e/ge2e_cells.py val  [--judge-features]   # -> docs/ser/ge2e/val_cells*.json
    python docs/ser/ge2e/ge2e_cells.py test                      # read once, after the choice

S = log-mel + F0 statistics (`ustats+pitch`), G = the GE2E embedding as the runtime computes it
(emort.training.voice; ``--judge-features``: as the enhancement's neural judge computes it, the
features of the pre-registered run), S+G = both in one classifier, S.G = the geometric mean of S's
and G's probabilities. Needs the [train] extra and resemblyzer; run from the repository root.
"""
import json
import sys
import time
from pathlib import Path

import numpy as np

from emort.evaluation.judge_panel import JudgePanel, NeuralJudge
from emort.evaluation.scorer_compare import _ua
from emort.runtime.bundle import load_bundle
from emort.runtime.ustats import speaker_stats_from
from emort.training.corpora import only_canonical, read_specs
from emort.training.splits import TEST_SPEAKERS, VAL_SPEAKERS
from emort.training.stats_classifier import StatsClassifier
from emort.training.ustats import pool_statistics

split = sys.argv[1] if len(sys.argv) > 1 else "val"
judge_features = "--judge-features" in sys.argv
# --voice-c C: the C of the classifiers on the embedding (G, and G in S.G; PREREGISTRATION_C.md)
voice_c = float(sys.argv[sys.argv.index("--voice-c") + 1]) if "--voice-c" in sys.argv else 10.0
# --joint-c C: the C of the classifier on both feature sets (S+G; PREREGISTRATION_joint_C.md)
joint_c = float(sys.argv[sys.argv.index("--joint-c") + 1]) if "--joint-c" in sys.argv else 10.0
# --partial-rate R: the encoder's windows per second (PREREGISTRATION_windows.md; the default is
# the shipped embedding's, 0.625 since version 3; versions 1 and 2: 1.3)
partial_rate = float(sys.argv[sys.argv.index("--partial-rate") + 1]) if "--partial-rate" in sys.argv else None
D = ["emodb=../shared/data/emodb", "ravdess=../shared/data/ravdess", "nemo=../shared/data/nemo"]
b = load_bundle(None)
labels = list(b.labels)
pool = list(read_specs(D))                      # every clip, any label (z-score pool)
canon = set(i.path for i in only_canonical(pool))
t = time.time()
xs, _ = pool_statistics(pool, b.mel, "ustats+pitch", None)
print("S feats", xs.shape, time.time() - t, flush=True)
t = time.time()
if judge_features:
    panel = JudgePanel(labels=tuple(labels), judges={"J3": NeuralJudge(labels=tuple(labels))})
    xg = panel.items_features(pool, progress=False)["J3"]
else:
    from emort.runtime.settings import VoiceSettings
    from emort.training.voice import voice_matrix

    xg = voice_matrix(pool, None if partial_rate is None else VoiceSettings(partial_rate=partial_rate))
print("G feats", xg.shape, time.time() - t, flush=True)
spk = np.array([i.speaker_key for i in pool])
corp = np.array([i.corpus for i in pool])
isc = np.array([i.path in canon for i in pool])
y = np.array([labels.index(i.emotion) if i.path in canon else -1 for i in pool])
test = np.isin(spk, TEST_SPEAKERS)
val = np.isin(spk, VAL_SPEAKERS)
feats = {"S": xs, "G": xg, "S+G": np.hstack([xs, xg])}

def run(train_rows, eval_rows):
    out = {}
    for name, x in feats.items():
        # z-score stats of each speaker over all of its clips (any label)
        ref = speaker_stats_from(x, spk)
        clf = StatsClassifier(labels=tuple(labels), C=voice_c if name == "G" else joint_c if name == "S+G" else 10.0).fit(
            x[train_rows], y[train_rows], spk[train_rows], ref)
        out[name] = clf.predict_proba(x[eval_rows], spk[eval_rows], ref)
    out["S.G"] = np.sqrt(out["S"] * out["G"])
    return out

cells = {}
ev_split = val if split == "val" else test
# held-out speakers
tr = isc & ~test & ~val
ev = isc & ev_split
p = run(tr, ev)
for c in ("emodb", "ravdess", "nemo"):
    m = corp[ev] == c
    for name, pr in p.items():
        cells.setdefault(name, {})[f"held-out {c}"] = _ua(y[ev][m], pr[m], len(labels))
# leave one corpus out
for c in ("emodb", "ravdess", "nemo"):
    tr = isc & ~test & (corp != c)
    ev = isc & (corp == c) & (~test if split == "val" else test)
    p = run(tr, ev)
    for name, pr in p.items():
        cells[name][f"LOCO {c}"] = _ua(y[ev], pr, len(labels))
for name, row in cells.items():
    v = list(row.values())
    row["worst"] = min(v)
    row["mean"] = float(np.mean(v))
    print(f"{name:5s} " + " ".join(f"{k}={x:.3f}" for k, x in row.items()), flush=True)
# --out NAME: the file's name (default: from the options above)
out = Path(__file__).parent / sys.argv[sys.argv.index("--out") + 1] if "--out" in sys.argv else Path(__file__).parent / (f"{split}_cells{'_judge_features' if judge_features else ''}"
                               f"{f'_C{voice_c:g}' if '--voice-c' in sys.argv else ''}"
                               f"{f'_rate{partial_rate:g}' if partial_rate is not None else ''}.json")
out.write_text(json.dumps(cells, indent=1) + "\n")
print("wrote", out)
