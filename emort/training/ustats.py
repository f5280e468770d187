"""The utterance-statistics classifier (``emort train stats``): a logistic regression (an RBF SVM
until 0.18) over per-speaker
z-scored statistics of the project's log-mel (``emort.runtime.ustats``).

It complements the per-speaker SER: on EmoDB leave-one-speaker-out folds the two err on
different speakers, and their geometric mean beats either (docs/ser/ser_stats_fusion.md).
Fitted in seconds; exported to ONNX (skl2onnx) beside ``ser_speaker.onnx``.

A run folder holds ``stats.joblib`` (the fitted
:class:`~emort.training.stats_classifier.StatsClassifier`, a pickle: load only your own) and ``stats.json`` (mel settings, labels, split, options).
With ``loso``, one such folder per fold in ``out/fold_*``, with the SER's fold names.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from emort import __version__
from emort.runtime.atomic import write_json_atomic
from emort.runtime.egemaps import EGEMAPS_VERSION
from emort.runtime.errors import EmortError
from emort.runtime.settings import DEFAULT_MEL, EMOTIONS, MelSettings
from emort.runtime.ustats import (
    PITCH_ANALYSES,
    PITCH_VERSION,
    STATS_VERSION,
    speaker_stats_from,
    stats_matrix,
)
from emort.training import corpora
from emort.training.data import FRONTEND_VERSION, load_mels
from emort.training.metrics import classification_report
from emort.training.splits import TEST_SPEAKERS, VAL_SPEAKERS
from emort.training.stats_classifier import StatsClassifier

log = logging.getLogger(__name__)


@dataclass
class StatsTrainConfig:
    data: list[str]
    out: str
    test_speakers: list[str] = field(default_factory=lambda: list(TEST_SPEAKERS))
    val_speakers: list[str] = field(default_factory=lambda: list(VAL_SPEAKERS))
    # Regularisation (inverse strength) of the classifier; None: the model's own default
    # (:data:`emort.training.stats_classifier.DEFAULT_C`), recorded resolved.
    C: float | None = None
    # "logreg" (multinomial logistic regression, shipped since 0.19), "svm" (RBF SVM, Platt: 0.4-0.18)
    # or "lda" (:data:`emort.training.stats_classifier.MODELS`; docs/ser/classifier/report.md).
    model: str = "logreg"
    # Nothing to early-stop, so the validation speakers are fitted too by default (as
    # `train ser --fit-val`); off, their UA is reported as a held-out validation score.
    fit_val: bool = True
    seed: int = 0
    # "ustats": the log-mel statistics the runtime computes (exportable); "ustats+egemaps"
    # adds openSMILE's eGeMAPSv02 functionals (training and evaluation only, see FEATURE_SETS).
    features: str = "ustats"
    # "speaker": rows z-scored per speaker (the per-speaker scorer's); "global": no per-speaker
    # step, a single-clip classifier (measured by scorer_compare; export refuses it).
    norm: str = "speaker"
    # Extra copies of each training speaker's rows, z-scored over random pools of its clips
    # (:func:`mixed_pool_rows`; docs/ser/ref_mix/report.md); 0: none.
    ref_mix: int = 0

    def __post_init__(self) -> None:
        from emort.training.stats_classifier import resolve_c

        self.C = resolve_c(self.model, self.C)


#: Feature sets of the statistics classifier. The runtime computes (and export ships)
#: "ustats" and "ustats+pitch" (:data:`emort.runtime.ustats.RUNTIME_FEATURES`), and "ge2e", the
#: GE2E voice embedding (:mod:`emort.runtime.voice`) and "ustats+pitch+ge2e", both together (shipped
#: by `emort export voice` as the voice classifier beside the statistics one, docs/ser/ge2e/report.md);
#: "ustats+egemaps" is measured by
#: `emort eval ser` (docs/ser/cross_corpus.md); "ustats+pitch+ge2e+egemaps", the joint one's
#: features and openSMILE's eGeMAPS, is shipped by `emort export voice` as ``stats_egemaps``
#: (`emort score --egemaps`, docs/ser/egemaps_voice/report.md).
FEATURE_SETS = ("ustats", "ustats+pitch", "ustats+egemaps", "ge2e", "ustats+pitch+ge2e", "ustats+pitch+ge2e+egemaps")


def pitch_matrix(pool: list, settings: MelSettings, mels: list[np.ndarray] | None = None,
                 version: int | None = None) -> np.ndarray:
    """F0 statistics ``(N, NUM_PITCH)`` of corpus items, as the runtime computes them
    (:func:`emort.runtime.ustats.clip_pitch_stats` on the DC-free clip at the model rate, with
    its raw log-mel: ``mels`` when the caller has them, else the cached ones), cached per file
    under ``$EMORT_CACHE/pitch``. ``version``: the pitch version (None: this emort's
    :data:`~emort.runtime.ustats.PITCH_VERSION`; a run's recorded one to evaluate it as fitted)."""
    from emort.runtime.ustats import NUM_PITCH, clip_pitch_stats
    from emort.training.data import (
        file_cache_path,
        load_mel,
        model_rate_audio,
        read_cached_array,
        write_cached_array,
    )

    version = PITCH_VERSION if version is None else int(version)
    rows = []
    for k, it in enumerate(pool):
        # the statistics read the log-mel's active frames: its front end is part of the key
        f = file_cache_path("pitch", it.path, version, settings.to_dict(), FRONTEND_VERSION, tag="pitch")
        v = read_cached_array(f, (NUM_PITCH,))
        if v is None:
            x = model_rate_audio(it.path, settings.sample_rate)
            v = clip_pitch_stats(x, mels[k] if mels is not None else load_mel(it.path, settings), settings, version)
            write_cached_array(f, v)
        rows.append(v)
    return np.stack(rows) if rows else np.zeros((0, NUM_PITCH))


def pool_statistics(pool: list, settings: MelSettings, features: str = "ustats", pitch_version: int | None = None) -> tuple[np.ndarray, dict[str, tuple[np.ndarray, np.ndarray]]]:
    """Utterance statistics ``(N, D)`` of corpus items (cached log-mels; with
    ``features="ustats+pitch"`` the F0 statistics appended, with ``"ustats+pitch+ge2e"`` those and
    the GE2E embedding, with ``"ustats+egemaps"`` the 88 eGeMAPS functionals), and each speaker's
    ``(mean, std)`` over them. Pass ALL of a speaker's clips, any emotion, labels unused: that
    is what `emort score --per-speaker` normalises a speaker's folder with, so training,
    validation and evaluation z-score the same way (six-emotion-only statistics did not carry
    over to folders that also hold calm / bored / surprised speech)."""
    if features not in FEATURE_SETS:
        raise EmortError(f"unknown statistics features {features!r} (choose from {', '.join(FEATURE_SETS)})")
    parts = features.split("+")  # each set's columns in its order: the runtime's for the shipped sets
    blocks = []
    if "ustats" in parts:
        mels = load_mels(pool, settings, progress=False)
        blocks.append(stats_matrix(mels, settings.power))
    if "pitch" in parts:
        blocks.append(pitch_matrix(pool, settings, mels, pitch_version))
    if "ge2e" in parts:
        from emort.training.voice import voice_matrix

        blocks.append(voice_matrix(pool))
    if "egemaps" in parts:
        from emort.training.egemaps import egemaps_matrix

        blocks.append(egemaps_matrix([i.path for i in pool]))
    x = np.hstack(blocks)
    return x, speaker_stats_from(x, [i.speaker_key for i in pool])


def _voice_record() -> dict:
    """What a "ge2e" run records of its features: the embedding version and front end."""
    from emort.runtime.settings import VoiceSettings
    from emort.training.voice import VOICE_VERSION

    return {"voice_version": VOICE_VERSION, "voice": VoiceSettings().to_dict()}


def mixed_pool_rows(x: np.ndarray, y: np.ndarray, speakers: np.ndarray, emotions: np.ndarray, fit: np.ndarray,
                    ref: dict, k: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict]:
    """Training rows z-scored over varied normalisation pools (docs/ser/ref_mix/PREREGISTRATION.md).

    ``x`` ``(N, D)``, ``speakers`` and ``emotions`` ``(N,)``: every clip of the pool (any label);
    ``y`` ``(N,)`` label indices; ``fit``: boolean mask of the rows fitted; ``ref``: each speaker's
    statistics over all its clips. Returns ``(x, y, speakers, speaker_stats)`` for
    :meth:`StatsClassifier.fit`: the fitted rows as they are, then, for each of their speakers (in
    sorted order) ``k`` more copies, each z-scored over a random pool of that speaker's clips:
    emotion weights from a flat Dirichlet over the labels the speaker has, then half its clips (at
    least 5) drawn without replacement with probability proportional to their emotion's weight.
    A copy's rows get the speaker key ``"<speaker>#<i>"``, with that pool's statistics.
    """
    rng = np.random.default_rng(seed)
    speakers = np.asarray(speakers).astype(str)
    xr, yr, sr, stats = [x[fit]], [y[fit]], [speakers[fit]], dict(ref)
    for s in sorted(set(speakers[fit])):
        own = np.flatnonzero(speakers == s)
        fitted = np.flatnonzero(fit & (speakers == s))
        kinds = sorted(set(emotions[own]))
        for i in range(k):
            w = dict(zip(kinds, rng.dirichlet(np.ones(len(kinds)))))
            p = np.array([w[e] for e in emotions[own]])
            pick = rng.choice(own, size=min(len(own), max(5, len(own) // 2)), replace=False, p=p / p.sum())
            key = f"{s}#{i}"
            stats[key] = speaker_stats_from(x[pick], [key] * len(pick))[key]
            xr.append(x[fitted])
            yr.append(y[fitted])
            sr.append(np.array([key] * len(fitted)))
    return np.vstack(xr), np.concatenate(yr), np.concatenate(sr), stats


def rows(pool: list, items: list) -> list[int]:
    """Indices of ``items`` in ``pool`` (by path)."""
    at = {i.path: k for k, i in enumerate(pool)}
    return [at[i.path] for i in items]


def check_compatible(stats_cfg: dict, ser_cfg: dict, where: str | Path) -> None:
    """A statistics run fused with an SER run must read the same mel settings and labels, and be
    normalised per speaker (the fusions are with a per-speaker SER)."""
    if stats_cfg.get("norm", "speaker") != "speaker":
        raise EmortError(f"{where}: fitted with --norm {stats_cfg['norm']}; fusions with a per-speaker SER take a --norm speaker run")
    check_reads_like(stats_cfg, ser_cfg, where)


def check_reads_like(stats_cfg: dict, ser_cfg: dict, where: str | Path) -> None:
    """A statistics run fused with an SER must read the same mel settings and labels."""
    if MelSettings.from_dict(stats_cfg["mel"]) != MelSettings.from_dict(ser_cfg["mel"]) or stats_cfg["labels"] != ser_cfg["labels"]:
        raise EmortError(f"{where}: other mel settings or labels than the SER run")


def train_stats(cfg: StatsTrainConfig, settings: MelSettings = DEFAULT_MEL) -> dict:
    """Fit on the training (+ validation) speakers of the speakers protocol; write the run."""
    out = Path(cfg.out)
    if (out / "loso.json").exists():
        raise EmortError(f"{out} holds leave-one-speaker-out folds; give this run its own --out")
    labels = list(EMOTIONS)
    every = corpora.read_specs(cfg.data)
    items = corpora.only_canonical(every, tuple(labels))
    rest, test = corpora.split_by_speakers(items, cfg.test_speakers)
    train, val = corpora.split_by_speakers(rest, cfg.val_speakers)
    fit = train + val if cfg.fit_val else train
    if not fit or len({i.emotion for i in fit}) < 2:
        raise EmortError("the split left too few training clips; check --data and the speaker lists")
    known = {i.speaker_key for i in train + val}
    pool = [i for i in every if i.speaker_key in known]
    xp, ref = pool_statistics(pool, settings, cfg.features)
    y = np.array([labels.index(i.emotion) for i in fit])
    clf = StatsClassifier(labels=tuple(labels), C=cfg.C, seed=cfg.seed, feature_version=STATS_VERSION, norm=cfg.norm,
                          model=cfg.model)
    if cfg.ref_mix:
        if cfg.norm != "speaker":
            raise EmortError("--ref-mix varies the per-speaker normalisation pools: it needs --norm speaker")
        at = rows(pool, fit)
        mask = np.zeros(len(pool), bool)
        mask[at] = True
        yp = np.full(len(pool), -1)
        yp[at] = y
        clf.fit(*mixed_pool_rows(xp, yp, np.array([i.speaker_key for i in pool]), np.array([i.emotion for i in pool]), mask, ref,
                                 cfg.ref_mix, cfg.seed))
    else:
        clf.fit(xp[rows(pool, fit)], y, [i.speaker_key for i in fit], speaker_stats=ref)
    result: dict = {"fit_val": cfg.fit_val, "train_clips": len(fit)}
    if val and not cfg.fit_val:
        pred = clf.predict(xp[rows(pool, val)], [i.speaker_key for i in val], ref)
        rep = classification_report([labels.index(i.emotion) for i in val], pred, labels)
        result.update(val_wa=rep.wa, val_ua=rep.ua)
    out.mkdir(parents=True, exist_ok=True)
    clf.save(out / "stats.joblib")
    run = {
        "kind": "stats",
        "emort_version": __version__,
        "stats_version": STATS_VERSION,
        "frontend_version": FRONTEND_VERSION,
        "features": cfg.features,
        **({"pitch_version": PITCH_VERSION} if "pitch" in cfg.features else {}),
        **(_voice_record() if "ge2e" in cfg.features else {}),
        **({"egemaps_version": EGEMAPS_VERSION} if "egemaps" in cfg.features else {}),
        "mel": settings.to_dict(),
        "labels": labels,
        "train": asdict(cfg),
        "norm": cfg.norm,
        "speaker_norm": ("each speaker z-scored over all its clips, any emotion (unlabelled)" if cfg.norm == "speaker"
                         else "none: each clip alone, standardised with the training rows' statistics"),
        "split": {"train": len(train), "val": len(val), "test": len(test), "val_in_train": cfg.fit_val,
                  "train_speakers": sorted({i.speaker_key for i in train}),
                  "val_speakers": sorted({i.speaker_key for i in val}),
                  "test_speakers": sorted({i.speaker_key for i in test})},
        "result": result,
    }
    write_json_atomic(out / "stats.json", run)
    return result


def train_stats_loso(cfg: StatsTrainConfig, corpus: str, settings: MelSettings = DEFAULT_MEL) -> dict:
    """One run per leave-one-speaker-out fold (the SER's folds: same names, same speakers)."""
    from emort.training.ser import loso_folds

    out = Path(cfg.out)
    if (out / "stats.json").exists():
        raise EmortError(f"{out} holds a single statistics run; give leave-one-speaker-out folds their own --out")
    if (out / "loso.json").exists():
        meta = json.loads((out / "loso.json").read_text())
        if meta.get("kind") != "stats" or meta["corpus"] != corpus:
            raise EmortError(f"{out} holds other leave-one-speaker-out folds ({meta.get('kind', 'ser')} over {meta['corpus']}); use another --out")
    items = corpora.only_canonical(corpora.read_specs(cfg.data), EMOTIONS)
    folds = loso_folds(items, corpus, cfg.test_speakers, cfg.val_speakers)
    out.mkdir(parents=True, exist_ok=True)
    write_json_atomic(out / "loso.json", {"corpus": corpus, "folds": [f[0] for f in folds], "kind": "stats"})
    return {name: train_stats(dataclasses.replace(cfg, out=str(out / name), test_speakers=test, val_speakers=val), settings)
            for name, test, val in folds}


def load_stats(run_dir: str | Path) -> tuple[StatsClassifier, dict]:
    """(classifier, run config) of a run folder; one clear EmortError if it is not one or is unreadable."""
    import pickle

    run_dir = Path(run_dir)
    f = run_dir / "stats.json"
    if not f.exists() or not (run_dir / "stats.joblib").exists():
        raise EmortError(f"{run_dir}: not a statistics-classifier run (no stats.json / stats.joblib); train one with `emort train stats`")
    try:
        cfg = json.loads(f.read_text())
        version = cfg.get("stats_version")
        if version != STATS_VERSION:
            raise EmortError(f"{run_dir}: statistics version {version} differs from this emort's ({STATS_VERSION}); retrain it")
        features = cfg.get("features", "ustats")  # runs before 0.9 record none: log-mel statistics
        if not isinstance(features, str) or features not in FEATURE_SETS:
            raise EmortError(f"{f}: unknown features {features!r} (this emort fits {', '.join(FEATURE_SETS)})")
        if "ge2e" in features:
            want = _voice_record()  # what a run fitted by this emort records
            if {k: cfg.get(k) for k in want} != want:
                raise EmortError(f"{f}: voice embedding version {cfg.get('voice_version')!r} (or front end) is not this emort's "
                                 f"({want['voice_version']}); refit it with `emort train stats --features {features}`")
        if "egemaps" in features and cfg.get("egemaps_version") != EGEMAPS_VERSION:  # runs before 0.18 record none
            raise EmortError(f"{f}: eGeMAPS version {cfg.get('egemaps_version')!r} is not this emort's ({EGEMAPS_VERSION}); "
                             f"refit it with `emort train stats --features {features}`")
        if "pitch" in features and cfg.get("pitch_version") not in PITCH_ANALYSES:
            raise EmortError(f"{f}: pitch statistics version {cfg.get('pitch_version')!r} is not one this emort computes "
                             f"({', '.join(map(str, sorted(PITCH_ANALYSES)))}); refit it with `emort train stats`")
        return StatsClassifier.load(run_dir / "stats.joblib", feature_version=STATS_VERSION), cfg
    except (ValueError, KeyError, OSError, EOFError, pickle.UnpicklingError) as e:  # JSONDecodeError is a ValueError
        raise EmortError(f"{run_dir}: unreadable statistics run ({type(e).__name__}: {e}); retrain it with `emort train stats`") from None
