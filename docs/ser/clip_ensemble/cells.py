"""Cells of docs/ser/clip_ensemble/PREREGISTRATION.md: single-clip UA of T0 (``ser_clip``), T1 (level
test-time averaging), E3 (seeds 0-2) and E3T (both), and of seeds 1 and 2 alone, at input gains of 0,
-20, -10 and +6 dB, on the validation (``val``) or test (``test``, once, after the decision) speakers.

    emort train ser --data emodb=../shared/data/emodb --data ravdess=../shared/data/ravdess \\
        --data nemo=../shared/data/nemo --recipe recipes/ser_global_gain10.toml --seed S --threads 1 --out runs/ser_clip_sS
    cp -r emort/assets/default_bundle runs/b_sS && emort export clip-ser --ser runs/ser_clip_sS --bundle runs/b_sS   # S = 1, 2
    python docs/ser/clip_ensemble/cells.py val      # then: test

Writes docs/ser/clip_ensemble/cells_<split>.json and prints the rule's decision (val). Needs the
[train] extra (the corpus readers, scikit-learn); run from the repository root.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import soundfile as sf

from emort import Scorer
from emort.evaluation.scorer_compare import gain_cells_summary, ua_present
from emort.training import corpora
from emort.training.splits import TEST_SPEAKERS, VAL_SPEAKERS

split = sys.argv[1]
GAINS_DB = (0, -20, -10, 6)
SHIFTS_DB = (-6, 0, 6)
D = ["emodb=../shared/data/emodb", "ravdess=../shared/data/ravdess", "nemo=../shared/data/nemo"]
models = {"s0": Scorer.load(), "s1": Scorer.load("runs/b_s1"), "s2": Scorer.load("runs/b_s2")}
assert all(m.ser_name == "ser_clip" for m in models.values())
LABELS = tuple(models["s0"].bundle.labels)
speakers = set(VAL_SPEAKERS if split == "val" else TEST_SPEAKERS)
items = [i for i in corpora.only_canonical(corpora.read_specs(D), LABELS) if i.speaker_key in speakers]
clips = [(i, *sf.read(i.path, dtype="float32")) for i in items]


def gain(w: np.ndarray, g_db: float) -> np.ndarray:
    return np.clip(w * 10 ** (g_db / 20), -1, 1).astype(np.float32)


def probs(m: Scorer, wavs: list[tuple[np.ndarray, int]]) -> np.ndarray:
    return np.array([[s.scores[k] for k in LABELS] for s in m.score_mels([m.normalize(m.log_mel(w, sr)) for w, sr in wavs])])


NAMES = ("T0", "T1", "E3", "E3T", "s1", "s2")
out: dict = {"split": split, "gains_db": list(GAINS_DB), "shifts_db": list(SHIFTS_DB), "ua": {n: {} for n in NAMES}}
for g_db in GAINS_DB:
    cells: dict = {n: {} for n in NAMES}
    for corp in ("emodb", "ravdess", "nemo"):
        cc = [(i, w, sr) for i, w, sr in clips if i.corpus == corp]
        p = {(name, s): probs(m, [(gain(w, g_db + s), sr) for _, w, sr in cc]) for name, m in models.items() for s in SHIFTS_DB}
        mean = lambda keys, p=p: np.mean([p[k] for k in keys], axis=0)  # noqa: E731
        cand = {"T0": p[("s0", 0)], "T1": mean([("s0", s) for s in SHIFTS_DB]), "E3": mean([(n, 0) for n in models]),
                "E3T": mean(list(p)), "s1": p[("s1", 0)], "s2": p[("s2", 0)]}
        yy = np.array([LABELS.index(i.emotion) for i, _, _ in cc])
        for n, pr in cand.items():
            cells[n][corp] = ua_present(yy, pr, len(LABELS))  # over the corpus's classes
    for n, row in cells.items():
        out["ua"][n][str(g_db)] = row
        print(f"{n:4s} {g_db:+4d} dB  " + "  ".join(f"{k} {v:.3f}" for k, v in row.items()), flush=True)
for n, by_gain in out["ua"].items():
    sm = out.setdefault("summary", {})[n] = gain_cells_summary(by_gain)
    print(f"{n:4s} worst {sm['worst_0db']:.3f}  mean {sm['mean_0db']:.3f}  nine-cell mean {sm['mean_nine']:.3f}")
if split == "val":
    s = out["summary"]
    top = max(s[n]["worst_0db"] for n in ("T0", "T1", "E3", "E3T"))
    best = max((n for n in ("T0", "T1", "E3", "E3T") if s[n]["worst_0db"] >= top - 0.005), key=lambda n: s[n]["mean_nine"])
    adopt = (best != "T0" and s[best]["worst_0db"] > s["T0"]["worst_0db"] + 0.02 and s[best]["mean_0db"] >= s["T0"]["mean_0db"] - 0.01
             and s[best]["mean_nine"] >= s["T0"]["mean_nine"] - 0.01)
    out["decision"] = {"best": best, "adopt": adopt}
    print("best", best, "->", "replaces ser_clip" if adopt else "ser_clip stays")
(Path(__file__).parent / f"cells_{split}.json").write_text(json.dumps(out, indent=1) + "\n")
