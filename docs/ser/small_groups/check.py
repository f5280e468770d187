"""The candidates of docs/ser/small_groups/PREREGISTRATION.md on both validation groups (``val``), or,
after the decision only, the test speakers with the shipped models (``test``); writes
docs/ser/small_groups/cells_<split>.json.

    python docs/ser/small_groups/check.py val [SPEAKER_RUN [OUT.json]]

Needs runs/clip_v2/none_s0 (``bash docs/ser/clip_v2/run.sh``) and runs/small_groups/ser_speaker_v2
(``emort train ser --data emodb=../shared/data/emodb --data ravdess=../shared/data/ravdess --recipe
docs/ser/small_groups/held_v2_speaker.toml --out runs/small_groups/ser_speaker_v2``) for ``val``, the
[train,eval] extras and resemblyzer; run from the repository root.
"""
import json
import sys
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from emort import Scorer
from emort.evaluation.scorer_compare import (
    CLIP_GAINS_DB,
    CORPORA,
    SHARED_DATA,
    at_gain,
    cell_features,
    cell_pool,
    gain_cells_summary,
    group_cells,
)
from emort.runtime.frontend import fit_norm
from emort.runtime.ustats import fuse_weighted
from emort.training.data import NormStats
from emort.training.ser import load_ser, predict
from emort.training.splits import TEST_SPEAKERS, VAL_SPEAKERS
from emort.training.splits import VAL2_SPEAKERS as V2
from emort.training.stats_classifier import StatsClassifier

torch.set_num_threads(2)
split = sys.argv[1] if len(sys.argv) > 1 else "val"
# another held-out per-speaker SER run for candidates A and D, and the cells' file (docs/ser/speaker3)
SPEAKER_RUN = Path(sys.argv[2] if len(sys.argv) > 2 else "runs/small_groups/ser_speaker_v2")
OUT = Path(sys.argv[3]) if len(sys.argv) > 3 else Path(__file__).with_name(f"cells_{split}.json")
SIZES = (1, 2, 3, 4)
SEEDS = (0, 1, 2)
reader = Scorer.load(per_speaker=True, threads=2)  # the runtime's log-mel, F0 statistics and GE2E of a clip
LABELS = tuple(reader.bundle.labels)
groups = {"V1": set(VAL_SPEAKERS), "V2": set(V2)} if split == "val" else {"test": set(TEST_SPEAKERS)}
speakers = set().union(*groups.values())

if split == "val":  # models that heard neither validation group
    spk_model, spk_cfg = load_ser(SPEAKER_RUN)
    clip_model, clip_cfg = load_ser(Path("runs/clip_v2/none_s0"))
    assert tuple(spk_cfg["labels"]) == LABELS and spk_cfg["train"]["norm"] == "speaker"
    assert tuple(clip_cfg["labels"]) == LABELS and clip_cfg["train"]["norm"] == "global"
    assert not set(spk_cfg["split"]["train_speakers"]) & speakers, "ser_speaker heard a validation speaker"
    c = cell_pool(SHARED_DATA, LABELS, "val")
    held = np.isin(c.speakers, list(VAL_SPEAKERS) + list(V2)) | c.test
    train = c.canonical & ~held
    xs, xg = cell_features(c.items, reader.bundle.mel, "SG").values()
    c5 = StatsClassifier(labels=LABELS, C=0.01, model="logreg", norm="global").fit(
        np.hstack([xs, xg])[train], c.y[train], c.speakers[train])
    print("stats_clip (C5) fitted on", int(train.sum()), "clips of", len(set(c.speakers[train])), "speakers", flush=True)
    items = [i for i, m in zip(c.items, c.canonical) if m and i.speaker_key in speakers]

    def p_speaker(group_mels: list[np.ndarray]) -> np.ndarray:
        return predict(spk_model, group_mels, NormStats.fit(group_mels))[0]

    def p_clip(mels: list[np.ndarray]) -> np.ndarray:
        return predict(clip_model, mels, NormStats.from_dict(clip_cfg["norm"]))[0]

    def p_stats(rows: np.ndarray, spk: list[str]) -> np.ndarray:
        return c5.predict_proba(rows, spk)
else:  # the shipped models, read once after the decision
    from emort.training import corpora

    clip_scorer = Scorer.load(clip_stats=True, threads=2)
    assert clip_scorer.ser_name == "ser_clip"
    items = [i for i in corpora.only_canonical(corpora.read_specs(SHARED_DATA), LABELS) if i.speaker_key in speakers]

    def _probs(scores) -> np.ndarray:
        return np.array([[s.scores[k] for k in LABELS] for s in scores])

    def p_speaker(group_mels: list[np.ndarray]) -> np.ndarray:
        mean, std = fit_norm(group_mels)
        return _probs(reader.score_mels([((m - mean[:, None]) / std[:, None]).astype(np.float32) for m in group_mels]))

    def p_clip(mels: list[np.ndarray]) -> np.ndarray:
        return _probs(clip_scorer.score_mels([clip_scorer.normalize(m) for m in mels]))

    def p_stats(rows: np.ndarray, spk: list[str]) -> np.ndarray:
        return clip_scorer.clip_stats(X=rows.astype(np.float32))[1]

clips = [(i, *sf.read(i.path, dtype="float32")) for i in items]
print(len(clips), "clips of", len(speakers), "speakers", flush=True)


def partitions(n_clips: int, n: int, seed: int) -> list[tuple[list[int], int]]:
    """Groups of exactly ``n`` clip indices and how many of each group's first clips count: every clip
    counted once; the r < n left over are filled up with other clips of the speaker (not counted)."""
    order = np.random.default_rng([seed, n, n_clips]).permutation(n_clips).tolist()
    out = [(order[k:k + n], n) for k in range(0, n_clips - n_clips % n, n)]
    if n_clips % n:
        rest = order[n_clips - n_clips % n:]
        fill = [k for k in order if k not in rest][: n - len(rest)]
        out.append((rest + fill, len(rest)))
    return out


names = ("A", "B", "C", "D")
out: dict = {"split": split, "gains_db": list(CLIP_GAINS_DB), "sizes": list(SIZES), "seeds": list(SEEDS),
             "groups": {g: sorted(s) for g, s in groups.items()}, "clips": len(clips),
             "ua": {f"n{n}": {k: {} for k in names} for n in SIZES}}
for g_db in CLIP_GAINS_DB:
    for corp in CORPORA:
        cc = [(i, at_gain(w, g_db), sr) for i, w, sr in clips if i.corpus == corp]
        analyses = [reader.analyse(w, sr) for _, w, sr in cc]  # log-mel, F0 statistics and GE2E once per clip
        mels = [a.log_mel for a in analyses]
        spk = [i.speaker_key for i, _, _ in cc]
        rows = np.hstack([reader._stats_features(mels, [a.pitch for a in analyses]), np.stack([a.voice for a in analyses])])
        pb, ps = p_clip(mels), p_stats(rows, spk)
        pc = fuse_weighted(pb, ps, 1.0)
        yy = np.array([LABELS.index(i.emotion) for i, _, _ in cc])
        by_spk: dict[str, list[int]] = {}
        for k, s in enumerate(spk):
            by_spk.setdefault(s, []).append(k)
        for n in SIZES:
            cells: dict[str, list[dict]] = {k: [] for k in names}
            for seed in SEEDS:
                pa = np.zeros_like(pb)
                for _, idx in sorted(by_spk.items()):
                    for members, counted in partitions(len(idx), n, seed):
                        ks = [idx[m] for m in members]
                        pa[ks[:counted]] = p_speaker([mels[k] for k in ks])[:counted]
                probs = {"A": pa, "B": pb, "C": pc, "D": fuse_weighted(pa, ps, 1.0)}
                for k, p in probs.items():
                    cells[k].append(group_cells(corp, yy, p, np.array(spk), groups, len(LABELS)))
            for k in names:  # the mean over the seeds of each cell
                out["ua"][f"n{n}"][k].setdefault(str(g_db), {}).update(
                    {cell: float(np.mean([r[cell] for r in cells[k]])) for cell in cells[k][0]})
            print(f"{g_db:+4d} dB {corp} n={n}: " + "  ".join(
                f"{k} {out['ua'][f'n{n}'][k][str(g_db)][corp + '/pooled']:.3f}" for k in names), flush=True)

summ = out["summary"] = {}
decision = out["decision"] = {}
for n in SIZES:
    key = f"n{n}"
    summ[key] = {k: gain_cells_summary({g: {c_: r[f"{c_}/pooled"] for c_ in CORPORA} for g, r in by_gain.items()})
                 for k, by_gain in out["ua"][key].items()}
    for k, s in summ[key].items():
        print(key, k, {m: round(v, 4) for m, v in s.items()})
    if split == "val":
        base = summ[key]["A"]
        ok = {k: s for k, s in summ[key].items() if k != "A" and s["worst_0db"] >= base["worst_0db"] + 0.02
              and s["mean_0db"] >= base["mean_0db"]}
        chosen = "A"
        if ok:
            best = max(s["worst_0db"] for s in ok.values())
            near = [k for k in ok if ok[k]["worst_0db"] >= best - 0.02]
            chosen = max(near, key=lambda k: (ok[k]["mean_0db"], -names.index(k)))
        decision[key] = {"qualify": sorted(ok), "adopted": chosen}
        print(key, "rule: adopted", chosen, flush=True)
OUT.write_text(json.dumps(out, indent=1) + "\n")
