"""The rule of docs/ser/clip_conditions/PREREGISTRATION.md: single-clip UA of runs N and C (docs/ser/clip_v2)
on both validation groups pooled, as recorded and after each degradation of docs/ser/conditions/degrade.py
(``val``); or, after an adoption only, the test speakers for the shipped ``ser_clip`` and a new run
(``test RUN``). Writes docs/ser/clip_conditions/cells_<split>.json.

    python docs/ser/clip_conditions/check.py val      # ~5 minutes; the [train,augment] extras
"""
import json
import sys
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

sys.path.insert(0, str(Path(__file__).parents[1] / "conditions"))
from degrade import KINDS, clip_seed, condition_summary, degrade  # noqa: E402

from emort import Scorer  # noqa: E402
from emort.evaluation.scorer_compare import CORPORA, SHARED_DATA, clip_ser_probs, group_cells  # noqa: E402
from emort.training.corpora import only_canonical, read_specs  # noqa: E402
from emort.training.ser import load_ser  # noqa: E402
from emort.training.splits import TEST_SPEAKERS, VAL2_SPEAKERS, VAL_SPEAKERS  # noqa: E402

torch.set_num_threads(2)
split = sys.argv[1] if len(sys.argv) > 1 else "val"
clip_ser = Scorer.load(threads=2)
assert clip_ser.ser_name == "ser_clip"
LABELS = tuple(clip_ser.bundle.labels)
if split == "val":
    runs = {"N": load_ser(Path("runs/clip_v2/none_s0")), "C": load_ser(Path("runs/clip_v2/classic_s0"))}
    groups = {"V1": set(VAL_SPEAKERS), "V2": set(VAL2_SPEAKERS)}
else:
    runs = {"new": load_ser(Path(sys.argv[2]))}
    groups = {"test": set(TEST_SPEAKERS)}
speakers = set().union(*groups.values())
clips = []
for i in only_canonical(list(read_specs(SHARED_DATA))):
    if i.speaker_key in speakers:
        x, sr = sf.read(i.path, dtype="float32")
        clips.append((i, x.mean(axis=1) if x.ndim == 2 else x, sr))
print(len(clips), "clips", flush=True)
out: dict = {"split": split, "kinds": KINDS, "groups": {g: sorted(s) for g, s in groups.items()}, "ua": {}}
for kind in KINDS:
    for corp in CORPORA:
        cc = [(i, degrade(kind, w, sr, clip_seed(i.path)), sr) for i, w, sr in clips if i.corpus == corp]
        probs = clip_ser_probs(clip_ser, runs, [clip_ser.log_mel(w, sr) for _, w, sr in cc], LABELS)
        if split == "val":
            probs.pop("C0")  # the shipped ser_clip trained on V2
        yy = np.array([LABELS.index(i.emotion) for i, _, _ in cc])
        spk = np.array([i.speaker_key for i, _, _ in cc])
        for n, p in probs.items():
            out["ua"].setdefault(n, {}).setdefault(kind, {}).update(group_cells(corp, yy, p, spk, groups, len(LABELS)))
        print(f"{kind:9s} {corp:8s} " + "  ".join(f"{n} {out['ua'][n][kind][corp + '/pooled']:.3f}" for n in probs), flush=True)
summ = out["summary"] = condition_summary(out["ua"], CORPORA)
if split == "val":
    a, b = summ["C"], summ["N"]
    adopt = (a["worst_degraded"] >= b["worst_degraded"] + 0.05 and a["mean_degraded"] > b["mean_degraded"]
             and a["worst_recorded"] >= b["worst_recorded"] and a["mean_recorded"] >= b["mean_recorded"])
    out["rule"] = {"adopt_classic": bool(adopt)}
    print("rule: classic", "ADOPTED" if adopt else "not adopted")
Path(__file__).with_name(f"cells_{split}.json").write_text(json.dumps(out, indent=1) + "\n")
