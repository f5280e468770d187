"""The candidates of docs/ser/single_loco/PREREGISTRATION.md: leave-one-corpus-out cells (``loco``) and
E's cells on both validation groups (part of the rule), or, after the decision only, the test speakers
with the shipped models (``test``); writes docs/ser/single_loco/cells_<split>.json.

    bash docs/ser/single_loco/run.sh           # the six SER runs (~60 min on 2 cores)
    python docs/ser/single_loco/check.py loco

``loco`` also needs runs/clip_v2/none_s0 (docs/ser/clip_v2/run.sh) and runs/small_groups/ser_speaker_v2
(docs/ser/small_groups/report.md) for the validation groups; the [train,eval] extras and resemblyzer;
run from the repository root.
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
    ua_present,
)
from emort.runtime.frontend import fit_norm
from emort.runtime.ustats import fuse_weighted
from emort.training.data import NormStats
from emort.training.ser import load_ser, predict
from emort.training.splits import TEST_SPEAKERS, VAL_SPEAKERS
from emort.training.splits import VAL2_SPEAKERS as V2
from emort.training.stats_classifier import StatsClassifier

torch.set_num_threads(2)
split = sys.argv[1] if len(sys.argv) > 1 else "loco"
NAMES = ("C", "D1", "E")
reader = Scorer.load(per_speaker=True, threads=2)  # the runtime's log-mel, F0 statistics and GE2E of a clip
LABELS = tuple(reader.bundle.labels)
c = cell_pool(SHARED_DATA, LABELS, "val")
seen = set(TEST_SPEAKERS) | set(VAL_SPEAKERS) | set(V2)


def mix(p_clip: np.ndarray, p_spk: np.ndarray, p_stats: np.ndarray) -> dict[str, np.ndarray]:
    """The three candidates from the two SERs' and the regression's probabilities (equal-weight geometric means)."""
    e = np.exp((np.log(np.clip(p_clip, 1e-9, None)) + np.log(np.clip(p_spk, 1e-9, None)) + np.log(np.clip(p_stats, 1e-9, None))) / 3)
    return {"C": fuse_weighted(p_clip, p_stats, 1.0), "D1": fuse_weighted(p_spk, p_stats, 1.0), "E": e / e.sum(1, keepdims=True)}


def serp(model, cfg, mels: list[np.ndarray]) -> np.ndarray:
    """A training run's probabilities of clips alone: global statistics, or (speaker norm) each clip over its own frames."""
    if cfg["train"]["norm"] == "global":
        return predict(model, mels, NormStats.from_dict(cfg["norm"]))[0]
    return predict(model, mels, [NormStats.fit([m]) for m in mels])[0]


def regression(mask: np.ndarray) -> StatsClassifier:
    xs, xg = cell_features(c.items, reader.bundle.mel, "SG").values()
    return StatsClassifier(labels=LABELS, C=0.01, model="logreg", norm="global").fit(
        np.hstack([xs, xg])[mask], c.y[mask], c.speakers[mask])


def analysed(items) -> dict[int, list]:
    """Per input gain, each item's runtime analysis (log-mel, F0 statistics, GE2E) and its regression row."""
    waves = [sf.read(i.path, dtype="float32") for i in items]
    out = {}
    for g in CLIP_GAINS_DB:
        an = [reader.analyse(at_gain(w, g), sr) for w, sr in waves]
        rows = np.hstack([reader._stats_features([a.log_mel for a in an], [a.pitch for a in an]), np.stack([a.voice for a in an])])
        out[g] = (an, rows)
        print(f"  analysed {len(items)} clips at {g:+d} dB", flush=True)
    return out


def cells(items, by_gain, p_of) -> dict[str, dict[str, dict[str, float]]]:
    """UA per candidate, input gain and corpus (pooled over the items' speakers)."""
    y = np.array([LABELS.index(i.emotion) for i in items])
    corp = np.array([i.corpus for i in items])
    out: dict = {n: {} for n in NAMES}
    for g, (an, rows) in by_gain.items():
        for k in CORPORA:
            m = corp == k
            if not m.any():
                continue
            probs = p_of(k, [a.log_mel for a, keep in zip(an, m) if keep], rows[m], [i.speaker_key for i, keep in zip(items, m) if keep])
            for n, p in probs.items():
                out[n].setdefault(str(g), {})[k] = ua_present(y[m], p, len(LABELS))
        print(f"{g:+4d} dB: " + "  ".join(f"{n} " + "/".join(f"{v:.3f}" for v in out[n][str(g)].values()) for n in NAMES), flush=True)
    return out


out: dict = {"split": split, "gains_db": list(CLIP_GAINS_DB)}
canon = [(k, i) for k, (i, m) in enumerate(zip(c.items, c.canonical)) if m]
if split == "loco":
    fresh = [i for _, i in canon if i.speaker_key not in seen]
    out["speakers"] = sorted({i.speaker_key for i in fresh})
    folds = {}
    for k in CORPORA:
        clip_m, clip_cfg = load_ser(Path(f"runs/single_loco/clip_wo_{k}"))
        spk_m, spk_cfg = load_ser(Path(f"runs/single_loco/speaker_wo_{k}"))
        for cfg in (clip_cfg, spk_cfg):
            assert tuple(cfg["labels"]) == LABELS and not any(s.startswith(k + "/") for s in cfg["split"]["train_speakers"]), k
        reg = regression(c.canonical & ~c.test & (c.corpora != k))
        folds[k] = (clip_m, clip_cfg, spk_m, spk_cfg, reg)
        out.setdefault("folds", {})[k] = {"clip_best": clip_cfg.get("best"), "speaker_best": spk_cfg.get("best"),
                                          "regression_clips": int((c.canonical & ~c.test & (c.corpora != k)).sum())}
        print(f"fold without {k}: ser_clip best {clip_cfg.get('best')}, ser_speaker best {spk_cfg.get('best')}", flush=True)

    def p_loco(k, mels, rows, spk):
        clip_m, clip_cfg, spk_m, spk_cfg, reg = folds[k]
        return mix(serp(clip_m, clip_cfg, mels), serp(spk_m, spk_cfg, mels), reg.predict_proba(rows, spk))

    out["loco"] = cells(fresh, analysed(fresh), p_loco)
    # the validation groups, with the models of docs/ser/small_groups (part of the rule: E's worst cell there)
    val_items = [i for _, i in canon if i.speaker_key in set(VAL_SPEAKERS) | set(V2)]
    vclip, vclip_cfg = load_ser(Path("runs/clip_v2/none_s0"))
    vspk, vspk_cfg = load_ser(Path("runs/small_groups/ser_speaker_v2"))
    vreg = regression(c.canonical & ~np.isin(c.speakers, sorted(seen)))
    out["val"] = cells(val_items, analysed(val_items),
                       lambda k, mels, rows, spk: mix(serp(vclip, vclip_cfg, mels), serp(vspk, vspk_cfg, mels), vreg.predict_proba(rows, spk)))
    summ = out["summary"] = {n: {"loco": gain_cells_summary(out["loco"][n]), "val": gain_cells_summary(out["val"][n])} for n in NAMES}
    for n in NAMES:
        print(n, {p: {m: round(v, 4) for m, v in s.items()} for p, s in summ[n].items()})
    base = summ["C"]
    ok = {n: s for n, s in summ.items() if n != "C" and s["loco"]["worst_0db"] >= base["loco"]["worst_0db"] + 0.02
          and s["loco"]["mean_0db"] >= base["loco"]["mean_0db"] and s["val"]["worst_0db"] >= base["val"]["worst_0db"] - 0.02}
    chosen = None
    if ok:
        best = max(s["loco"]["worst_0db"] for s in ok.values())
        chosen = max((n for n in ok if ok[n]["loco"]["worst_0db"] >= best - 0.02), key=lambda n: ok[n]["loco"]["mean_0db"])
    out["rule"] = {"qualify": sorted(ok), "adopted": chosen}
    print("rule: adopted", chosen)
else:  # the shipped models, read once after the decision
    test_items = [i for _, i in canon if i.speaker_key in set(TEST_SPEAKERS)]
    alone = Scorer.load(clip_stats=True, threads=2)
    assert alone.ser_name == "ser_clip"

    def probs(scores) -> np.ndarray:
        return np.array([[s.scores[k] for k in LABELS] for s in scores])

    def p_test(k, mels, rows, spk):
        p_clip = probs(alone.score_mels([alone.normalize(m) for m in mels]))
        p_spk = np.concatenate([probs(reader.score_mels([((m - mu[:, None]) / sd[:, None]).astype(np.float32)]))
                                for m in mels for mu, sd in [fit_norm([m])]])  # each clip over its own frames
        return mix(p_clip, p_spk, alone.clip_stats(X=rows.astype(np.float32))[1])

    out["test"] = cells(test_items, analysed(test_items), p_test)
    out["summary"] = {n: gain_cells_summary(out["test"][n]) for n in NAMES}
    print(out["summary"])
Path(__file__).with_name(f"cells_{split}.json").write_text(json.dumps(out, indent=1) + "\n")
