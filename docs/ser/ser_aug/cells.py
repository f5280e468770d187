"""Single-clip UA of the runs of docs/ser/ser_aug/PREREGISTRATION.md at several input gains, on the
validation speakers (``val``) or the test speakers (``test``, read once, after the choice); writes
docs/ser/ser_aug/cells_<split>.json and, for ``val``, applies the rule.

    python docs/ser/ser_aug/cells.py val

C0 = ser_clip, read through the runtime as shipped; every finished run under runs/ser_aug is read
through torch on the runtime's log-mel with the run's own normalisation. Needs the [train]
extra; run from the repository root.
"""
import json
import sys
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from emort import Scorer
from emort.evaluation.scorer_compare import at_gain, clip_ser_probs, ua_present
from emort.training.corpora import only_canonical, read_specs
from emort.training.ser import load_ser
from emort.training.splits import TEST_SPEAKERS, VAL_SPEAKERS

torch.set_num_threads(1)  # training may run beside this on the other core
split = sys.argv[1]
GAINS_DB = (0, -20, -10, 6)
D = ["emodb=../shared/data/emodb", "ravdess=../shared/data/ravdess", "nemo=../shared/data/nemo"]
ORDER = ("none", "classic", "emort", "both")
clip_ser = Scorer.load(threads=1)  # C0: ser_clip, the shipped single-clip scorer
assert clip_ser.ser_name == "ser_clip"
LABELS = tuple(clip_ser.bundle.labels)
runs = {}
for cond in ORDER:
    for seed in (0, 1):
        d = Path(f"runs/ser_aug/{cond}_s{seed}")
        if (d / "ser_history.json").exists() and "centroids" in json.loads((d / "ser.json").read_text()):  # finished runs only
            runs[f"{cond}_s{seed}"] = load_ser(d)
print("runs:", ", ".join(runs) or "none", flush=True)
speakers = set(VAL_SPEAKERS if split == "val" else TEST_SPEAKERS)
clips = [(i, *sf.read(i.path, dtype="float32")) for i in only_canonical(list(read_specs(D))) if i.speaker_key in speakers]
NAMES = ["C0", *runs]


out: dict = {"split": split, "gains_db": list(GAINS_DB), "ua": {n: {} for n in NAMES}}
for g_db in GAINS_DB:
    cells: dict = {n: {} for n in NAMES}
    for corp in ("emodb", "ravdess", "nemo"):
        cc = [(i, at_gain(w, g_db), sr) for i, w, sr in clips if i.corpus == corp]
        mels = [clip_ser.log_mel(w, sr) for _, w, sr in cc]
        probs = clip_ser_probs(clip_ser, runs, mels, LABELS)
        yy = np.array([LABELS.index(i.emotion) for i, _, _ in cc])
        for n, p in probs.items():
            cells[n][corp] = ua_present(yy, p, len(LABELS))  # over the corpus's classes
    for n, row in cells.items():
        out["ua"][n][str(g_db)] = row
        print(f"{n:10s} {g_db:+4d} dB  " + "  ".join(f"{k} {v:.3f}" for k, v in row.items()), flush=True)
# A run read in an earlier session whose folder is gone (runs/ does not outlive a machine): its
# figures are carried from the last cells file, and named as carried.
old = Path(__file__).parent / f"cells_{split}.json"
if old.exists():
    prev = json.loads(old.read_text())
    carried = [n for n in prev["ua"] if n not in out["ua"]]
    for n in carried:
        out["ua"][n] = prev["ua"][n]
    out["carried_from_earlier_session"] = sorted((set(carried) | set(prev.get("carried_from_earlier_session", []))) - set(runs))
    print("carried:", ", ".join(out["carried_from_earlier_session"]) or "none")
summ = out["summary"] = {}
for n, by_gain in out["ua"].items():
    rec = list(by_gain["0"].values())
    nine = [v for g, r in by_gain.items() if g != "0" for v in r.values()]
    summ[n] = {"worst_0db": min(rec), "mean_0db": float(np.mean(rec)), "mean_nine": float(np.mean(nine))}
    print(n, {k: round(v, 3) for k, v in summ[n].items()})

if split == "val":  # the rule, as written before the runs
    base = summ["C0"]
    none_mean = [base["mean_0db"]] + ([summ["none_s1"]["mean_0db"]] if "none_s1" in summ else [])
    verdict = {}
    for cond in ORDER[1:]:
        s0, s1 = summ.get(f"{cond}_s0"), summ.get(f"{cond}_s1")
        if s0 is None:
            verdict[cond] = "not run"
            continue
        one = s0["worst_0db"] > base["worst_0db"] and s0["mean_0db"] > base["mean_0db"] and s0["mean_nine"] >= base["mean_nine"] - 0.02
        if s1 is None or "none_s1" not in summ:
            two = None
        else:
            two = (s0["mean_0db"] + s1["mean_0db"]) / 2 > float(np.mean(none_mean))
        verdict[cond] = {"seed0_beats_C0": one, "two_seed_mean_beats_none": two,
                         "qualifies": bool(one and two)}
    q = [c for c, v in verdict.items() if isinstance(v, dict) and v["qualifies"]]
    out["rule"] = {"verdict": verdict, "winner": max(q, key=lambda c: summ[f"{c}_s0"]["mean_0db"]) if q else None}
    print(json.dumps(out["rule"], indent=1))
(Path(__file__).parent / f"cells_{split}.json").write_text(json.dumps(out, indent=1) + "\n")
