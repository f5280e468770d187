"""Single-clip UA of the two runs of docs/ser/clip_v2/PREREGISTRATION.md on both validation groups
(V1: EmoDB 10, RAVDESS 19-20, nEMO MP0; V2: EmoDB 09, RAVDESS 17-18, nEMO MK0), pooled per corpus and
per group, at the recorded level and at -20 / -10 / +6 dB; applies the rule; writes
docs/ser/clip_v2/cells_val.json. ``test`` (only after an adoption): the test speakers, for the
shipped ser_clip and the run given as a second argument.

    python docs/ser/clip_v2/cells.py
    python docs/ser/clip_v2/cells.py test runs/clip_v2/classic_full_s0

The runs are read through torch on the runtime's log-mel with each run's own normalisation; the
shipped ser_clip (C0) through the runtime (it trained on V2: its V2 cells are not shown). Needs the
[train] extra; run from the repository root.
"""
import json
import sys
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from emort import Scorer
from emort.evaluation.scorer_compare import at_gain, clip_ser_probs, gain_cells_summary, group_cells
from emort.training.corpora import only_canonical, read_specs
from emort.training.ser import load_ser
from emort.training.splits import TEST_SPEAKERS, VAL_SPEAKERS
from emort.training.splits import VAL2_SPEAKERS as V2

torch.set_num_threads(2)
split = sys.argv[1] if len(sys.argv) > 1 else "val"
GAINS_DB = (0, -20, -10, 6)
D = ["emodb=../shared/data/emodb", "ravdess=../shared/data/ravdess", "nemo=../shared/data/nemo"]
clip_ser = Scorer.load(threads=2)
assert clip_ser.ser_name == "ser_clip"
LABELS = tuple(clip_ser.bundle.labels)
if split == "val":
    runs = {n: load_ser(Path(f"runs/clip_v2/{n}_s0")) for n in ("none", "classic")}
    groups = {"V1": set(VAL_SPEAKERS), "V2": set(V2)}
else:
    runs = {"new": load_ser(Path(sys.argv[2]))}
    groups = {"test": set(TEST_SPEAKERS)}
speakers = set().union(*groups.values())
clips = [(i, *sf.read(i.path, dtype="float32")) for i in only_canonical(list(read_specs(D))) if i.speaker_key in speakers]
print(len(clips), "clips", flush=True)


out: dict = {"split": split, "gains_db": list(GAINS_DB), "groups": {g: sorted(s) for g, s in groups.items()}, "ua": {}}
for g_db in GAINS_DB:
    for corp in ("emodb", "ravdess", "nemo"):
        cc = [(i, at_gain(w, g_db), sr) for i, w, sr in clips if i.corpus == corp]
        mels = [clip_ser.log_mel(w, sr) for _, w, sr in cc]
        probs = clip_ser_probs(clip_ser, runs, mels, LABELS)
        yy = np.array([LABELS.index(i.emotion) for i, _, _ in cc])
        spk = np.array([i.speaker_key for i, _, _ in cc])
        for n, p in probs.items():
            out["ua"].setdefault(n, {}).setdefault(str(g_db), {}).update(group_cells(corp, yy, p, spk, groups, len(LABELS)))
        print(f"{g_db:+4d} dB {corp}: " + "  ".join(f"{n} {out['ua'][n][str(g_db)][corp + '/pooled']:.3f}" for n in probs), flush=True)
summ = out["summary"] = {}
for n, by_gain in out["ua"].items():
    summ[n] = gain_cells_summary({g: {c: r[f"{c}/pooled"] for c in ("emodb", "ravdess", "nemo")} for g, r in by_gain.items()})
    print(n, {k: round(v, 4) for k, v in summ[n].items()})
if split == "val":
    a, b = summ["classic"], summ["none"]
    adopt = a["worst_0db"] >= b["worst_0db"] + 0.02 and a["mean_0db"] > b["mean_0db"] and a["mean_nine"] >= b["mean_nine"] - 0.02
    out["rule"] = {"adopt_classic": bool(adopt), "classic": a, "none": b}
    print("rule: classic", "ADOPTED" if adopt else "not adopted")
Path(__file__).with_name(f"cells_{split}.json").write_text(json.dumps(out, indent=1) + "\n")
