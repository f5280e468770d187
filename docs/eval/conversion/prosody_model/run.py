"""The runs of docs/eval/conversion/prosody_model/PREREGISTRATION.md.

    python docs/eval/conversion/prosody_model/run.py plans    # the model's and the table's plans, V1 (~3 minutes)
    python docs/eval/conversion/prosody_model/run.py val      # both configurations judged on V1 (~25 minutes on 2 cores)
    python docs/eval/conversion/prosody_model/run.py decide   # the rule -> decision.json
    python docs/eval/conversion/prosody_model/run.py test     # only after a decision that adopts (plans, then judging)
    python docs/eval/conversion/prosody_model/run.py plans-t T  # a diagnostic after the decision: the plans at noise step T
    python docs/eval/conversion/prosody_model/run.py val-t T    # PREREGISTRATION_t990.md: those plans judged on V1 (M only)
    python docs/eval/conversion/prosody_model/run.py decide-t T

Needs the trained model in runs/prosody_model (train.py beside this file).
"""

from __future__ import annotations

import json
import math
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np

HERE = Path(__file__).parent
D = ["--data", "emodb=../shared/data/emodb", "--data", "ravdess=../shared/data/ravdess", "--data", "nemo=../shared/data/nemo"]
B1, M = "both-stretch@4", "both-stretch+plan@4"


def plans(split: str, t: int | None = None) -> None:
    from emort.runtime.audio import read_audio, to_float, to_mono
    from emort.runtime.enhancer import Enhancer
    from emort.runtime.prosody import (
        MAX_SPEAKER_RANGE,
        MAX_SPEAKER_SHIFT_ST,
        ProsodyEdit,
        ProsodyOptions,
        plan_prosody,
    )
    from emort.runtime.settings import EMOTIONS
    from emort.training import corpora
    from emort.training.prosody_model import load, plan_edit, raw_contours
    from emort.training.splits import TEST_SPEAKERS, VAL_SPEAKERS

    enh = Enhancer.load(device="cpu")
    b = enh.bundle
    model, norm, meta = load("runs/prosody_model")
    chosen = set(VAL_SPEAKERS if split == "val" else TEST_SPEAKERS)
    assert not chosen & set(meta["speakers"])
    clips = [i for i in corpora.only_canonical(corpora.read_specs([d for d in D if "=" in d]), EMOTIONS) if i.speaker_key in chosen]
    opts = enh.options(prosody=True).prosody_options  # the shipped shares
    one = ProsodyOptions(pitch=1.0, pitch_range=1.0, tempo=1.0, loudness=1.0)
    out: dict = {}
    rows = []  # judge-free plan error: (speaker, corpus, target, clip level, table st, model st)
    applied: dict = defaultdict(lambda: defaultdict(list))
    got = {}
    for k, it in enumerate(clips):
        a = read_audio(it.path)
        mono = to_mono(to_float(a.samples))
        raw = raw_contours(mono, a.sample_rate, b.mel)
        emb = enh.conditioning_score(a.samples, a.sample_rate).embedding
        u, scores = enh.speaker_clip(a.samples, a.sample_rate)
        got[k] = u
        cid = f"{it.speaker_key}/{Path(it.path).name}"
        out[cid] = {}
        for e in EMOTIONS:  # its own emotion too: prosody_eval's own-emotion enhancement reads that plan
            table = plan_prosody(b.prosody, {e: 1.0}, scores, opts)
            m = plan_edit(model, norm, raw, emb, b.centroids[e]) if t is None else plan_edit(model, norm, raw, emb, b.centroids[e], t=t)
            if m is None:  # too little voiced speech: the table's plan, as the per-speaker plan falls back
                edit = table
            else:
                st = float(np.clip(opts.pitch * m["semitones"], -MAX_SPEAKER_SHIFT_ST, MAX_SPEAKER_SHIFT_ST))
                lr = float(np.clip(opts.range_share * math.log(m["f0_range"]), -math.log(MAX_SPEAKER_RANGE), math.log(MAX_SPEAKER_RANGE)))
                edit = ProsodyEdit(st, math.exp(lr), table.tempo, opts.loudness * m["loudness_db"])
            out[cid][e] = edit.to_dict()
            if e == it.emotion:
                continue
            for name, ed in (("table", table), ("model", edit)):
                for f in ("semitones", "f0_range", "tempo", "loudness_db"):
                    applied[name][f"{e}.{f}"].append(getattr(ed, f))
            if m is not None and u is not None:
                rows.append((it.speaker_key, it.speaker_key.split("/")[0], e, u["level"], plan_prosody(b.prosody, {e: 1.0}, scores, one).semitones,
                             m["semitones"]))
        if k % 25 == 0:
            print(f"plans {k}/{len(clips)}", flush=True)
    tag = "" if t is None else f"_t{t}"
    (HERE / f"plans_{split}{tag}.json").write_text(json.dumps(out, indent=0, sort_keys=True))
    # the wanted change: the speaker's mean level over its clips of the target minus the clip's level
    level = defaultdict(list)
    for k, it in enumerate(clips):
        if got[k] is not None:
            level[(it.speaker_key, it.emotion)].append(got[k]["level"])
    err: dict = defaultdict(lambda: {"table": [], "model": []})
    for s, c, e, lv, t_st, m_st in rows:
        if (s, e) in level:
            want = float(np.mean(level[(s, e)])) - lv
            for key in (c, "all"):
                err[key]["table"].append(t_st - want)
                err[key]["model"].append(m_st - want)
    res = {c: {p: float(np.sqrt(np.mean(np.square(v)))) for p, v in d.items()} | {"pairs": len(d["table"])} for c, d in sorted(err.items())}
    mean_applied = {name: {k: float(np.mean(v)) for k, v in sorted(d.items())} for name, d in applied.items()}
    (HERE / f"plan_error_{split}{tag}.json").write_text(json.dumps({"rms_semitones_share1": res, "mean_applied_shipped_shares": mean_applied}, indent=1))
    print(json.dumps(res, indent=1))


def judge(split: str, t: int | None = None) -> int:
    from emort.evaluation import prosody_eval

    if t is None:
        return prosody_eval.main(D + ["--split", split, "--configs", f"{B1},{M}", "--sources", "all", "--plans", str(HERE / f"plans_{split}.json"),
                                      "--out", str(HERE / split)])
    return prosody_eval.main(D + ["--split", split, "--configs", M, "--sources", "all", "--plans", str(HERE / f"plans_{split}_t{t}.json"),
                                  "--out", str(HERE / f"{split}_t{t}")])


def decide(t: int | None = None) -> None:
    from emort.evaluation.prosody_eval import paired_cells

    tag = "" if t is None else f"_t{t}"
    rep_b = json.loads((HERE / "val" / "prosody_eval_val.json").read_text())
    rep_m = json.loads((HERE / f"val{tag}" / "prosody_eval_val.json").read_text())
    pc = paired_cells([rep_b], [rep_m], B1, M)
    err = json.loads((HERE / f"plan_error_val{tag}.json").read_text())["rms_semitones_share1"]["all"]
    c1 = pc["mean"]["diff"] >= 1.0 and pc["mean"]["lo"] > 0
    c2 = pc["worst_diff"] >= -2.0
    c3 = err["model"] <= err["table"]
    conditions = {"mean_gain": c1, "no_cell_below": c2} | ({"plan_error": c3} if t is None else {})
    out = {"paired": pc, "plan_error_val_all": err, "conditions": conditions, "adopted": bool(all(conditions.values()))}
    if t is not None:
        out["note"] = "a candidate only: the noise step was chosen on V1's plan error; V2 must confirm it (PREREGISTRATION_t990.md)"
    (HERE / f"decision{tag}.json").write_text(json.dumps(out, indent=1))
    for c, js in pc["cells"].items():
        for j, v in js.items():
            print(f"{c:8s} {j:10s} B1 {v['a']:.3f} M {v['b']:.3f} diff {v['diff']:+.2f} [{v['lo']:+.2f}, {v['hi']:+.2f}]")
    print("mean", {k: round(v, 3) for k, v in pc["mean"].items()}, "worst diff", round(pc["worst_diff"], 2))
    print("plan error", err, "->", "ADOPTED" if out["adopted"] else "not adopted", out["conditions"])


if __name__ == "__main__":
    what = sys.argv[1] if len(sys.argv) > 1 else ""
    if what == "plans":
        plans("val")
    elif what == "val":
        sys.exit(judge("val"))
    elif what == "plans-t":
        plans("val", int(sys.argv[2]))
    elif what == "val-t":
        sys.exit(judge("val", int(sys.argv[2])))
    elif what == "decide-t":
        decide(int(sys.argv[2]))
    elif what == "decide":
        decide()
    elif what == "test":
        assert json.loads((HERE / "decision.json").read_text())["adopted"], "the test speakers are read only after an adopting decision"
        plans("test")
        sys.exit(judge("test"))
    else:
        sys.exit(__doc__)
