"""Scorers side by side on the project split's validation (or test) speakers, UA per corpus.

What docs/eval/nemo_training.md compares when choosing which scorers a bundle ships: a
bundle's single-clip SER and per-speaker scorer (the runtime's scorers, each speaker
normalised over its clips of the six emotions), SER training runs (global and utterance-normalised
runs scored clip by clip, per-speaker runs over each speaker's clips) and statistics-classifier runs, alone and
fused with a per-speaker SER (``--ser-weight``: ``emort.runtime.ustats.fuse_weighted``, as
``emort score --per-speaker`` fuses them with the bundle's weight)::

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
from dataclasses import dataclass
from pathlib import Path

import numpy as np

#: The three corpora, and their ``--data`` specs beside a clone (the layout the README assumes).
CORPORA = ("emodb", "ravdess", "nemo")
SHARED_DATA = [f"{c}=../shared/data/{c}" for c in CORPORA]
#: The input gains (dB) at which the single-clip reports read each clip, the recorded level first (docs/ser/level).
CLIP_GAINS_DB = (0, -20, -10, 6)


def gain_cells_summary(ua_by_gain: dict[str, dict[str, float]]) -> dict[str, float]:
    """One candidate's single-clip cells at several input gains (``{"0": {corpus: UA}, "-20": ...}``,
    the layout of docs/ser/level and the single-clip reports after it) -> ``worst_0db`` and
    ``mean_0db`` (the corpora at the recorded level) and ``mean_nine`` (every cell at another gain)."""
    rec = list(ua_by_gain["0"].values())
    nine = [v for g, r in ua_by_gain.items() if g != "0" for v in r.values()]
    return {"worst_0db": min(rec), "mean_0db": float(np.mean(rec)), "mean_nine": float(np.mean(nine))}


def ua_present(y: np.ndarray, p: np.ndarray, n_labels: int) -> float:
    """Unweighted average recall over the classes present in ``y`` (argmax over those classes)."""
    from sklearn.metrics import recall_score

    present = np.zeros(n_labels, bool)
    present[np.unique(y)] = True
    return float(recall_score(y, np.argmax(np.where(present, p, -1.0), axis=1), average="macro"))


def at_gain(wav: np.ndarray, gain_db: float) -> np.ndarray:
    """``wav`` scaled by ``gain_db`` decibels and clipped to [-1, 1], float32: a clip as recorded at
    another level (the input gains of the single-clip reports)."""
    return np.clip(wav * 10 ** (gain_db / 20), -1, 1).astype(np.float32)


def clip_ser_probs(clip_ser, runs: dict, mels: list[np.ndarray], labels: tuple[str, ...]) -> dict[str, np.ndarray]:
    """Single-clip probabilities ``(N, labels)`` of raw log-mels ``mels``: ``"C0"`` from the runtime
    scorer ``clip_ser`` (its own normalisation), then each SER run of ``runs`` (name -> ``load_ser``'s
    ``(model, cfg)``, globally normalised, with these labels) through torch with its own statistics."""
    from emort.training.data import NormStats
    from emort.training.ser import predict

    probs = {"C0": np.array([[s.scores[k] for k in labels] for s in clip_ser.score_mels([clip_ser.normalize(m) for m in mels])])}
    for name, (model, cfg) in runs.items():
        assert tuple(cfg["labels"]) == labels and cfg["train"]["norm"] == "global"
        probs[name] = predict(model, mels, NormStats.from_dict(cfg["norm"]))[0]
    return probs


def group_cells(corpus: str, y: np.ndarray, p: np.ndarray, speakers: np.ndarray, groups: dict, n_labels: int) -> dict[str, float]:
    """One corpus's single-clip UA cells: ``{corpus}/pooled`` over all its clips and ``{corpus}/{group}``
    over each group's speakers (``groups``: name -> speaker keys); UA over the classes present
    (:func:`ua_present`). The layout of docs/ser/clip_v2 and docs/ser/single_v2."""
    out = {f"{corpus}/pooled": ua_present(y, p, n_labels)}
    for g, ss in groups.items():
        m = np.isin(speakers, sorted(ss))
        out[f"{corpus}/{g}"] = ua_present(y[m], p[m], n_labels)
    return out


@dataclass(frozen=True)
class CellPool:
    """Every clip of the corpora (any label: each speaker is z-scored over all of them) with what
    :func:`speaker_cells` takes: ``y`` (label index, -1 outside the six emotions), ``speakers``,
    ``corpora``, ``emotions`` (every label), ``canonical``, ``test`` and ``held`` (the speakers
    read: the validation speakers, or with ``split="test"`` the test speakers), each ``(N,)``."""

    items: list
    labels: tuple[str, ...]
    y: np.ndarray
    speakers: np.ndarray
    corpora: np.ndarray
    emotions: np.ndarray
    canonical: np.ndarray
    test: np.ndarray
    held: np.ndarray


def cell_pool(data: list[str], labels: tuple[str, ...], split: str = "val") -> CellPool:
    """The :class:`CellPool` of the corpora ``data`` (KIND=PATH) for the six cells of ``split``."""
    from emort.training.corpora import only_canonical, read_specs
    from emort.training.splits import TEST_SPEAKERS, VAL_SPEAKERS

    items = list(read_specs(data))
    canon = {i.path for i in only_canonical(items)}
    spk = np.array([i.speaker_key for i in items])
    test = np.isin(spk, TEST_SPEAKERS)
    return CellPool(items=items, labels=tuple(labels),
                    y=np.array([labels.index(i.emotion) if i.path in canon else -1 for i in items]),
                    speakers=spk, corpora=np.array([i.corpus for i in items]), emotions=np.array([i.emotion for i in items]),
                    canonical=np.array([i.path in canon for i in items]), test=test,
                    held=test if split == "test" else np.isin(spk, VAL_SPEAKERS))


def cell_features(items: list, mel, parts: str = "SGE") -> dict[str, np.ndarray]:
    """Feature blocks ``(N, D)`` of corpus items, cached per file: "S" log-mel + F0 statistics
    (``ustats+pitch`` with the bundle's mel settings ``mel``), "G" the GE2E voice embedding, "E"
    openSMILE's eGeMAPS functionals; the letters of ``parts``, in that order. Prints their shapes
    and the time taken."""
    import time

    t = time.time()
    out: dict[str, np.ndarray] = {}
    for part in parts:
        if part == "S":
            from emort.training.ustats import pool_statistics

            out["S"] = pool_statistics(items, mel, "ustats+pitch", None)[0]
        elif part == "G":
            from emort.training.voice import voice_matrix

            out["G"] = voice_matrix(items)
        elif part == "E":
            from emort.training.egemaps import egemaps_matrix

            out["E"] = egemaps_matrix([i.path for i in items])
        else:
            raise ValueError(f"unknown feature block {part!r} (S, G or E)")
    print(", ".join(f"{k} {v.shape}" for k, v in out.items()), f"{time.time() - t:.0f} s", flush=True)
    return out


def write_cells(cells: dict[str, dict[str, float]], out: Path) -> None:
    """Print each candidate's cells (:func:`speaker_cells`) on a line and write them to ``out`` as JSON."""
    import json

    width = max(map(len, cells), default=0)
    for name, row in cells.items():
        print(f"{name:{width}s} " + " ".join(f"{k}={x:.3f}" for k, x in row.items()), flush=True)
    out.write_text(json.dumps(cells, indent=1) + "\n")
    print("wrote", out)


def speaker_cells(feats: dict[str, np.ndarray], y: np.ndarray, speakers: np.ndarray, corpora: np.ndarray,
                  canonical: np.ndarray, held: np.ndarray, test: np.ndarray, labels: tuple[str, ...],
                  C: float = 10.0, fit_rows=None, make=None) -> dict[str, dict[str, float]]:
    """UA of per-speaker statistics classifiers on the six cells of docs/ser/ge2e/PREREGISTRATION.md.

    ``feats``: candidate name -> ``(N, D)`` features of every clip of the pool (any label: each
    speaker is z-scored over all of its clips). ``y``: label index, -1 for clips outside the six
    emotions; ``canonical``: rows that may train or be read; ``held``: the speakers read (the
    validation or the test speakers); ``test``: the test speakers (never trained). Cells:
    held-out speakers of each corpus, fitted on the speakers neither held nor test; and leave one
    corpus out, fitted on the other corpora's non-test speakers, read on the left-out corpus's
    non-test speakers (``held`` = test speakers: its test speakers). Each corpus is read over its
    own labels. Adds each candidate's ``worst`` and ``mean``. ``fit_rows(name, x, train_mask, ref)``:
    the training rows ``(x, y, speakers, speaker_stats)`` a candidate is fitted on (default: the
    rows of ``train_mask``, each speaker z-scored with ``ref``, its statistics over all its clips).
    ``make(name)``: the unfitted classifier of a candidate (default: the SVM with ``C``).
    """
    from emort.runtime.ustats import speaker_stats_from
    from emort.training.stats_classifier import StatsClassifier

    def run(train_rows, eval_rows):
        out = {}
        for name, x in feats.items():
            ref = speaker_stats_from(x, speakers)
            rows = (x[train_rows], y[train_rows], speakers[train_rows], ref) if fit_rows is None else fit_rows(name, x, train_rows, ref)
            clf = (StatsClassifier(labels=tuple(labels), C=C) if make is None else make(name)).fit(*rows)
            out[name] = clf.predict_proba(x[eval_rows], speakers[eval_rows], ref)
        return out

    cells: dict[str, dict[str, float]] = {name: {} for name in feats}
    known = ["emodb", "ravdess", "nemo"]  # the project's order; any other corpus after them, by name
    names = sorted(set(corpora[canonical]), key=lambda c: (known.index(c) if c in known else len(known), c))
    ev = canonical & held
    p = run(canonical & ~test & ~held, ev)
    for c in names:
        m = corpora[ev] == c
        for name, pr in p.items():
            cells[name][f"held-out {c}"] = ua_present(y[ev][m], pr[m], len(labels))
    read_test = bool((held & test).any())
    for c in names:
        ev = canonical & (corpora == c) & (test if read_test else ~test)
        p = run(canonical & ~test & (corpora != c), ev)
        for name, pr in p.items():
            cells[name][f"LOCO {c}"] = ua_present(y[ev], pr, len(labels))
    for row in cells.values():
        v = list(row.values())
        row["worst"], row["mean"] = min(v), float(np.mean(v))
    return cells


def compare(data: list[str], bundle: str | None, ser_runs: list[str], stats_runs: list[str], split: str = "val",
            ser_weight: float = 1.0, stats_pool: str = "emotions") -> dict:
    """``{scorer: {corpus: UA}}`` on the split's speakers; see the module docstring.

    ``stats_pool``: the clips each speaker's statistics-run features are z-scored over:
    "emotions" (its clips of the six emotions, as the SERs here) or "all" (every clip of the
    speaker, any label: as in training, ``emort eval ser --stats`` and ``emort score
    --per-speaker`` on a speaker's folder)."""
    from emort.runtime.bundle import load_bundle
    from emort.runtime.scorer import Scorer
    from emort.runtime.ustats import fuse_weighted
    from emort.training.corpora import only_canonical, read_specs
    from emort.training.data import load_mels
    from emort.training.ser import eval_stats, input_norm, load_ser, predict
    from emort.training.splits import TEST_SPEAKERS, VAL_SPEAKERS
    from emort.training.ustats import load_stats, pitch_matrix, pool_statistics, rows

    speakers = set(VAL_SPEAKERS if split == "val" else TEST_SPEAKERS)
    items = [i for i in only_canonical(read_specs(data)) if i.speaker_key in speakers]
    b = load_bundle(bundle)
    labels = list(b.labels)
    mels = load_mels(items, b.mel, progress=False)
    spk = np.array([i.speaker_key for i in items])
    y = np.array([labels.index(i.emotion) for i in items])
    groups = {k: np.where(spk == k)[0] for k in sorted(set(spk))}
    probs: dict[str, np.ndarray] = {}
    from emort.training.corpora import source_speaker

    evaluated = {i.speaker_key for i in items}

    def heard(*models: str) -> list[str]:  # the evaluated speakers these bundle models were fitted on (copies count)
        fit = {source_speaker(x) for m in models if m in b.training for x in b.training[m].split.fitted_speakers}
        return sorted(fit & evaluated)

    in_sample: dict[str, list[str]] = {}
    single_name = "bundle SER, single clip"  # the path emort score takes for a clip alone
    for level_robust in ((True, False) if b.has_clip_scorer else (False,)):
        single = Scorer.load(b, device="cpu", level_robust=level_robust)
        name = single_name if level_robust == b.has_clip_scorer else f"{single_name} ({single.ser_name})"
        in_sample[name] = heard(single.ser_name)
        probs[name] = np.array([[s.scores[lab] for lab in labels] for s in single.score_mels([single.normalize(m) for m in mels])])
    for name, fused in (("bundle per-speaker SER", False), ("bundle per-speaker scorer", True)):
        sc = Scorer.load(b, device="cpu", per_speaker=True, stats=fused)
        in_sample[name] = heard("ser_speaker", *(("stats", "stats_voice", "stats_egemaps") if fused else ()))
        p = np.zeros((len(items), len(labels)))
        # the runtime's F0 statistics of each clip, of the version the bundle's classifier was fitted on
        pitch = pitch_matrix(items, b.mel, version=sc.stats_spec.pitch_version) if sc.needs_pitch else None
        voice = None
        if sc.needs_voice:  # the runtime's GE2E embedding of each clip (ONNX encoder), as emort score computes it
            from emort.runtime.audio import read_audio

            voice = [sc.voice.embed(a.samples, a.sample_rate, i.path) for i, a in ((i, read_audio(i.path)) for i in items)]
        for idx in groups.values():
            for j, s in zip(idx, sc.score_group([mels[j] for j in idx], pitch=None if pitch is None else [pitch[j] for j in idx],
                                                voice=None if voice is None else [voice[j] for j in idx])):
                p[j] = [s.scores[lab] for lab in labels]
        probs[name] = p
    for run in ser_runs:  # as `emort eval ser` normalises a run's clips: global, per utterance, or per speaker over its clips here
        model, cfg = load_ser(run)
        probs[f"{run} ({input_norm(cfg)})"] = predict(model, mels, eval_stats(cfg, mels, items))[0]
    pool = items if stats_pool == "emotions" else [i for i in read_specs(data) if i.speaker_key in speakers]
    for run in stats_runs:  # a per-speaker run is fused with the per-speaker SER, a global one with the single-clip SER
        clf, cfg = load_stats(run)
        xp, ref = pool_statistics(pool, b.mel, cfg.get("features", "ustats"), cfg.get("pitch_version"))
        p = clf.predict_proba(xp[rows(pool, items)], spk, ref)
        probs[f"{run}"] = p
        partner = "bundle per-speaker SER" if clf.norm == "speaker" else "bundle SER, single clip"
        w = f" (SER weight {ser_weight:g})" if ser_weight != 1.0 else ""
        probs[f"{partner} + {run}{w}"] = fuse_weighted(probs[partner], p, ser_weight)
    corpora = sorted({k.split("/")[0] for k in spk})
    out = {}
    for name, p in probs.items():
        row = {c: ua_present(y[np.char.startswith(spk.astype(str), c)], p[np.char.startswith(spk.astype(str), c)], len(labels)) for c in corpora}
        row["mean over corpora"] = float(np.mean([row[c] for c in corpora]))
        out[name] = row
    # a fusion with a bundle row inherits what that row heard
    in_sample.update({n: in_sample[k] for n in out for k in list(in_sample) if n.startswith(f"{k} + ") and in_sample[k]})
    return {"split": split, "speakers": sorted(speakers), "clips": len(items), "bundle": str(b.path), "bundle_hash": b.content_hash, "ua": out,
            "in_sample": {k: v for k, v in in_sample.items() if v}}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", action="append", required=True, help="KIND=PATH, repeatable")
    ap.add_argument("--bundle", default=None, help="bundle folder (default: the shipped one)")
    ap.add_argument("--ser-run", action="append", default=[], help="SER training run, repeatable")
    ap.add_argument("--stats-run", action="append", default=[], help="statistics-classifier run, repeatable")
    ap.add_argument("--split", choices=("val", "test"), default="val")
    ap.add_argument("--ser-weight", type=float, default=1.0, help="the SER's weight in each fusion with a statistics run "
                    "(p ∝ (p_ser^w · p_stats)^(1/(1+w)); 1: the plain geometric mean)")
    ap.add_argument("--stats-pool", choices=("emotions", "all"), default="emotions",
                    help="z-score each speaker's statistics-run features over its clips of the six emotions, or over all its "
                         "clips (as training, `emort eval ser --stats` and `emort score --per-speaker` on a folder); the SERs "
                         "are normalised over the six-emotion clips either way, as `emort eval ser` does")
    ap.add_argument("--json", type=Path, default=None, help="write the table as JSON")
    a = ap.parse_args(argv)
    res = compare(a.data, a.bundle, a.ser_run, a.stats_run, a.split, a.ser_weight, a.stats_pool)
    cols = [c for c in next(iter(res["ua"].values()))]
    print(f"UA on the {a.split} speakers ({res['clips']} clips): " + " / ".join(cols))
    for name, row in res["ua"].items():
        print(f"{name:60s} " + " ".join(f"{row[c]:.3f}" for c in cols)
              + (f"  IN-SAMPLE: fitted on {', '.join(res['in_sample'][name])}" if name in res["in_sample"] else ""))
    if a.json:
        from emort.runtime.atomic import write_json_atomic

        write_json_atomic(a.json, res)


if __name__ == "__main__":
    main()
