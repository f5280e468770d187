"""Scorers side by side on the project split's validation (or test) speakers, UA per corpus.

What docs/eval/nemo_training.md compares when choosing which scorers a bundle ships: a
bundle's single-clip SER and per-speaker scorer (the runtime's scorers, each speaker
normalised over its clips of the six emotions), SER training runs (global runs scored clip by
clip, per-speaker runs over each speaker's clips) and statistics-classifier runs, alone and
fused with a per-speaker SER by geometric mean (``emort score --per-speaker``'s fusion)::

    python -m emort.evaluation.scorer_compare --data emodb=../shared/data/emodb --data ravdess=../shared/data/ravdess \\
        --data nemo=../shared/data/nemo --bundle emort/assets/default_bundle --ser-run runs/ser3 --ser-run runs/ser3_spk \\
        --stats-run runs/stats3_noval --stats-run runs/stats2_noval --json scores_val.json

UA here takes the argmax over the classes present in the corpus (a corpus without disgust never
gets a disgust prediction); ``emort score`` can predict any label, so its UA on such a corpus
can be lower. Needs the ``[train]`` extra (torch for
SER runs, scikit-learn for statistics runs).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np


def _ua(y: np.ndarray, p: np.ndarray, n_labels: int) -> float:
    """Unweighted average recall over the classes present in ``y`` (argmax over those classes)."""
    from sklearn.metrics import recall_score

    present = np.zeros(n_labels, bool)
    present[np.unique(y)] = True
    return float(recall_score(y, np.argmax(np.where(present, p, -1.0), axis=1), average="macro"))


def compare(data: list[str], bundle: str | None, ser_runs: list[str], stats_runs: list[str], split: str = "val") -> dict:
    """``{scorer: {corpus: UA}}`` on the split's speakers; see the module docstring."""
    from emort.runtime.bundle import load_bundle
    from emort.runtime.scorer import Scorer
    from emort.runtime.ustats import fuse, stats_matrix
    from emort.training.corpora import only_canonical, read_specs
    from emort.training.data import load_mels
    from emort.training.ser import eval_stats, input_norm, load_ser, predict
    from emort.training.splits import TEST_SPEAKERS, VAL_SPEAKERS
    from emort.training.stats_classifier import StatsClassifier

    speakers = set(VAL_SPEAKERS if split == "val" else TEST_SPEAKERS)
    items = [i for i in only_canonical(read_specs(data)) if i.speaker_key in speakers]
    b = load_bundle(bundle)
    labels = list(b.labels)
    mels = load_mels(items, b.mel, progress=False)
    spk = np.array([i.speaker_key for i in items])
    y = np.array([labels.index(i.emotion) for i in items])
    groups = {k: np.where(spk == k)[0] for k in sorted(set(spk))}
    probs: dict[str, np.ndarray] = {}
    single = Scorer.load(b, device="cpu")
    probs["bundle SER, single clip"] = np.array([[s.scores[lab] for lab in labels] for s in single.score_mels([b.normalize(m) for m in mels])])
    for name, fused in (("bundle per-speaker SER", False), ("bundle per-speaker scorer", True)):
        sc = Scorer.load(b, device="cpu", per_speaker=True, stats=fused)
        p = np.zeros((len(items), len(labels)))
        for idx in groups.values():
            for j, s in zip(idx, sc.score_group([mels[j] for j in idx])):
                p[j] = [s.scores[lab] for lab in labels]
        probs[name] = p
    for run in ser_runs:  # as `emort eval ser` normalises a run's clips: global, or per speaker over its clips here
        model, cfg = load_ser(run)
        probs[f"{run} ({input_norm(cfg)})"] = predict(model, mels, eval_stats(cfg, mels, items))[0]
    feats = stats_matrix(mels, b.mel.power)
    for run in stats_runs:
        p = StatsClassifier.load(Path(run) / "stats.joblib").predict_proba(feats, spk)
        probs[f"{run}"] = p
        probs[f"bundle per-speaker SER + {run}"] = fuse(probs["bundle per-speaker SER"], p)
    corpora = sorted({k.split("/")[0] for k in spk})
    out = {}
    for name, p in probs.items():
        row = {c: _ua(y[np.char.startswith(spk.astype(str), c)], p[np.char.startswith(spk.astype(str), c)], len(labels)) for c in corpora}
        row["mean over corpora"] = float(np.mean([row[c] for c in corpora]))
        out[name] = row
    return {"split": split, "speakers": sorted(speakers), "clips": len(items), "bundle": str(b.path), "bundle_hash": b.content_hash, "ua": out}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", action="append", required=True, help="KIND=PATH, repeatable")
    ap.add_argument("--bundle", default=None, help="bundle folder (default: the shipped one)")
    ap.add_argument("--ser-run", action="append", default=[], help="SER training run, repeatable")
    ap.add_argument("--stats-run", action="append", default=[], help="statistics-classifier run, repeatable")
    ap.add_argument("--split", choices=("val", "test"), default="val")
    ap.add_argument("--json", type=Path, default=None, help="write the table as JSON")
    a = ap.parse_args(argv)
    res = compare(a.data, a.bundle, a.ser_run, a.stats_run, a.split)
    cols = [c for c in next(iter(res["ua"].values()))]
    print(f"UA on the {a.split} speakers ({res['clips']} clips): " + " / ".join(cols))
    for name, row in res["ua"].items():
        print(f"{name:60s} " + " ".join(f"{row[c]:.3f}" for c in cols))
    if a.json:
        from emort.runtime.atomic import write_json_atomic

        write_json_atomic(a.json, res)


if __name__ == "__main__":
    main()
