"""How good is the classical judge (and the speaker proxy) on the withheld test speakers?

The FeatureJudge (``emort.evaluation.judges``) is trained on every canonical-six
clip of EmoDB + RAVDESS whose speaker is neither a test nor a validation
speaker (``emort.training.splits``), then scored on the test speakers, per
corpus: EmoDB 03 + 08, RAVDESS 21 + 22 (and, as a second estimate, on the
validation speakers, which no judge training sees either). Test clips are z-scored per speaker
over that speaker's own clips (docs/eval/README.md, "Protocol"). The same
run reports the judge without per-speaker normalisation (one global z-score
from the training clips), feature-extraction time per clip (uncached, one
thread), and how well the speaker-similarity proxy (``emort.evaluation.fidelity``)
tells same-speaker from different-speaker pairs among the test clips.

    .venv/bin/python benchmarks/judge_baseline.py [--out reports/judge_baseline.json]

Data: ``--emodb`` / ``--ravdess`` or ``$EMORT_DATA/{emodb,ravdess}``, else
``../shared/data`` next to the repository. Features are cached
(``$EMORT_CACHE`` or ``~/.cache/emort``); ``--no-cache`` recomputes.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

from emort.evaluation.fidelity import SpeakerEmbedder, items_speaker_features, speaker_similarity
from emort.evaluation.judges import (
    FEATURE_VERSION,
    NUM_FEATURES,
    ExtractionTiming,
    FeatureJudge,
    items_features,
    speaker_stats_from,
)
from emort.evaluation.metrics import classification_report
from emort.runtime.settings import EMOTIONS
from emort.training.corpora import only_canonical, read_corpus, split_by_speakers
from emort.training.splits import TEST_SPEAKERS, VAL_SPEAKERS

REPO = Path(__file__).resolve().parent.parent


def default_data(name: str) -> str:
    root = os.environ.get("EMORT_DATA") or str(REPO.parent / "shared" / "data")
    return str(Path(root) / name)


def timing_sample(items: list, n_per_corpus: int) -> list:
    """The first ``n_per_corpus`` items of each corpus (sorted by path: reproducible)."""
    out = []
    for corpus in sorted({it.corpus for it in items}):
        out += sorted((it for it in items if it.corpus == corpus), key=lambda i: i.path)[
            :n_per_corpus
        ]
    return out


def speaker_pair_scores(emb: np.ndarray, speakers: list[str]) -> dict:
    """Cosine over all pairs of clips: same- vs different-speaker means and ROC AUC."""
    from sklearn.metrics import roc_auc_score

    n = len(speakers)
    i, j = np.triu_indices(n, k=1)
    cos = speaker_similarity(emb[i], emb[j])
    same = np.array(speakers)[i] == np.array(speakers)[j]
    return {
        "pairs": int(len(cos)),
        "same_speaker_mean_cos": float(cos[same].mean()),
        "different_speaker_mean_cos": float(cos[~same].mean()),
        "auc_same_vs_different": float(roc_auc_score(same, cos)),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--emodb", default=default_data("emodb"))
    ap.add_argument("--ravdess", default=default_data("ravdess"))
    ap.add_argument("--out", default="reports/judge_baseline.json")
    ap.add_argument("--C", type=float, default=10.0)
    ap.add_argument("--no-cache", action="store_true")
    ap.add_argument(
        "--timing-clips", type=int, default=20, help="uncached clips per corpus for timing"
    )
    args = ap.parse_args(argv)
    cache = not args.no_cache

    items = only_canonical(read_corpus(args.emodb, "emodb") + read_corpus(args.ravdess, "ravdess"))
    train, _ = split_by_speakers(items, TEST_SPEAKERS + VAL_SPEAKERS)
    _, test = split_by_speakers(items, TEST_SPEAKERS)
    _, val = split_by_speakers(items, VAL_SPEAKERS)
    print(
        f"train {len(train)} clips / {len({i.speaker_key for i in train})} speakers; test {len(test)} clips"
    )

    # 1. Extraction time per clip, uncached, on a fixed sample (decode timed apart).
    sample = timing_sample(items, args.timing_clips)
    items_features(sample[:1], cache=False)  # warm-up: librosa's numba kernels compile on first use
    timing = ExtractionTiming()
    items_features(sample, cache=False, timing=timing)

    # 2. Features of every train/test clip (cached), and the judge.
    t0 = time.perf_counter()
    x_train = items_features(train, cache=cache, progress=True)
    x_test = items_features(test, cache=cache, progress=True)
    x_val = items_features(val, cache=cache, progress=True)
    t_extract = time.perf_counter() - t0
    y_train = np.array([EMOTIONS.index(i.emotion) for i in train])
    s_train = [i.speaker_key for i in train]

    t0 = time.perf_counter()
    judge = FeatureJudge(C=args.C).fit(x_train, y_train, s_train)
    t_fit = time.perf_counter() - t0
    # Ablation: one global z-score (training statistics) instead of per speaker.
    glob_judge = FeatureJudge(C=args.C).fit(x_train, y_train, ["all"] * len(train))
    glob_stats = speaker_stats_from(x_train, ["all"] * len(train))

    # 3. Speaker-similarity proxy: fitted on training speakers, scored on test pairs.
    embedder = SpeakerEmbedder().fit(items_speaker_features(train, cache=cache), s_train)

    result: dict = {
        "benchmark": "judge_baseline",
        "feature_version": FEATURE_VERSION,
        "num_features": NUM_FEATURES,
        "C": args.C,
        "train_clips": len(train),
        "train_speakers": sorted({i.speaker_key for i in train}),
        "test_speakers": list(TEST_SPEAKERS),
        "val_speakers": list(VAL_SPEAKERS),
        "timing": {
            "clips": timing.computed,
            "feature_ms_per_clip": 1000 * timing.feature_s / timing.computed,
            "feature_ms_per_3s_audio": 3000 * timing.feature_s / timing.audio_s,
            "feature_cpu_ms_per_clip": 1000 * timing.feature_cpu_s / timing.computed,
            "feature_cpu_ms_per_3s_audio": 3000 * timing.feature_cpu_s / timing.audio_s,
            "decode_ms_per_clip": 1000 * timing.decode_s / timing.computed,
            "mean_clip_s": timing.audio_s / timing.computed,
            "all_clips_extract_s": t_extract,
            "cached": cache,
            "judge_fit_s": t_fit,
        },
        "machine": {
            "python": sys.version.split()[0],
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
        },
    }
    # Test speakers are the result; validation speakers (never trained on either)
    # give a second, independent estimate of the same quantity.
    groups = [(c, "test", test) for c in ("emodb", "ravdess")] + [
        (c, "val", val) for c in ("emodb", "ravdess")
    ]
    x_of = {"test": x_test, "val": x_val}
    rows = []
    for corpus, split, pool in groups:
        idx = [k for k, it in enumerate(pool) if it.corpus == corpus]
        if not idx:
            continue
        sub = [pool[k] for k in idx]
        x, spk = x_of[split][idx], [i.speaker_key for i in sub]
        y = np.array([EMOTIONS.index(i.emotion) for i in sub])
        rep = classification_report(y, judge.predict(x, spk), EMOTIONS)
        rep_glob = classification_report(
            y, glob_judge.predict(x, ["all"] * len(sub), glob_stats), EMOTIONS
        )
        per_speaker = {
            s: classification_report(y[m], judge.predict(x[m], [s] * int(m.sum())), EMOTIONS).ua
            for s in sorted(set(spk))
            for m in [np.array(spk) == s]
        }
        entry = {
            "n": rep.n,
            "speakers": sorted(set(spk)),
            "per_speaker_norm": rep.to_dict(),
            "ua_per_speaker": per_speaker,
            "global_norm": {"wa": rep_glob.wa, "ua": rep_glob.ua},
        }
        result.setdefault(split, {})[corpus] = entry
        rows.append((corpus, split, rep.n, rep.ua, rep.wa, rep_glob.ua, rep_glob.wa))

    # Speaker proxy over all withheld speakers of a corpus (test + val): with test
    # speakers alone (one m, one f) same-vs-different would mostly measure gender.
    result["speaker_proxy"] = {}
    for corpus in ("emodb", "ravdess"):
        held = [it for it in test + val if it.corpus == corpus]
        spk = [it.speaker_key for it in held]
        scores = speaker_pair_scores(items_speaker_embed(embedder, held, cache), spk)
        result["speaker_proxy"][corpus] = {"speakers": sorted(set(spk)), **scores}

    print()
    print("| corpus | speakers | clips | UA | WA | UA (global norm) | WA (global norm) |")
    print("|---|---|---|---|---|---|---|")
    for c, split, n, ua, wa, gua, gwa in rows:
        print(f"| {c} | {split} | {n} | {ua:.3f} | {wa:.3f} | {gua:.3f} | {gwa:.3f} |")
    print("\n| corpus | withheld speakers | same-speaker cos | different-speaker cos | AUC |")
    print("|---|---|---|---|---|")
    for c, v in result["speaker_proxy"].items():
        print(
            f"| {c} | {' '.join(v['speakers'])} | {v['same_speaker_mean_cos']:.3f} | "
            f"{v['different_speaker_mean_cos']:.3f} | {v['auc_same_vs_different']:.3f} |"
        )
    t = result["timing"]
    print(
        f"\nfeatures: {t['feature_ms_per_clip']:.1f} ms/clip wall, {t['feature_cpu_ms_per_clip']:.1f} ms/clip CPU "
        f"({t['feature_cpu_ms_per_3s_audio']:.1f} CPU ms per 3 s of audio; decode {t['decode_ms_per_clip']:.1f} ms/clip; "
        f"{t['clips']} uncached clips, mean {t['mean_clip_s']:.2f} s); judge fit {t['judge_fit_s']:.1f} s"
    )
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(f"wrote {out}")
    return 0


def items_speaker_embed(embedder: SpeakerEmbedder, items: list, cache: bool) -> np.ndarray:
    return embedder.embed_features(items_speaker_features(items, cache=cache))


if __name__ == "__main__":
    raise SystemExit(main())
