"""Three independent emotion judges of three feature families, and the panel that runs them.

An accuracy gain that only one classifier sees may be that classifier's blind
spot, so enhanced clips are judged by three classifiers that share no features
with each other nor with the SER conditioning the enhancer:

- J1, :class:`StatsJudge`: the hand-made utterance statistics of
  ``judges.utterance_features`` (log-mel bands, MFCC, energy, spectral shape,
  YIN pitch), 146-d; the ``judges.FeatureJudge`` recipe.
- J2, :class:`EgemapsJudge`: openSMILE eGeMAPSv02 Functionals (Eyben et al.,
  "The Geneva Minimalistic Acoustic Parameter Set", IEEE Trans. Affective
  Computing 2016), 88-d.
- J3, :class:`NeuralJudge`: the Resemblyzer GE2E utterance embedding
  (``emort.evaluation.speaker_embedding``), 256-d.

Each is: per-speaker z-score -> StandardScaler -> RBF SVM (``class_weight="balanced"``,
C = 10, ``gamma="scale"``, the defaults of ``judges.FeatureJudge``, not tuned on the
validation speakers), Platt-scaled by 5-fold cross-validation. Fit them on training
speakers only (never ``emort.training.splits.TEST_SPEAKERS`` or ``VAL_SPEAKERS``).

One common rate: originals (16 kHz EmoDB, 48 kHz RAVDESS, 24 kHz nEMO) and
enhanced outputs alike are resampled to :data:`PANEL_SAMPLE_RATE` before any
feature is computed, so a judge cannot tell corpora, or an original from an
output, by bandwidth.

Reference statistics
--------------------
Every judge z-scores a clip with ITS SPEAKER'S ORIGINAL clips' statistics, so an
edit applied to all of a speaker's clips (+3 dB, a brighter tilt) is not
normalised away. Features and probabilities are separate steps, so the
originals' features are computed once and serve both as the reference and as
the "original" row::

    panel = JudgePanel().fit(train_items)
    f_orig = panel.items_features(clips)                  # cached on disk
    ref = panel.reference(f_orig, speakers)
    p_orig = panel.predict_proba(f_orig, speakers, ref)   # {"J1": (n, 6), "J2": ..., "J3": ...}
    f_out = panel.wav_features([(wav, sr), ...])
    p_out = panel.predict_proba(f_out, speakers, ref)

Needs the ``[train]`` and ``[eval]`` extras plus ``pip install --no-deps resemblyzer``.
Persistence (:meth:`JudgePanel.save`) is one joblib (pickle) file: load only files
you wrote yourself.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import numpy as np

from emort.evaluation import judges as _j1
from emort.evaluation._io import dump_atomic, load_checked
from emort.evaluation.judges import FeatureJudge
from emort.evaluation.speaker_embedding import EMBEDDING_DIM, speaker_embedding
from emort.runtime.audio import prepare, read_audio
from emort.runtime.settings import EMOTIONS
from emort.runtime.ustats import SpeakerStats, speaker_stats_from
from emort.training.data import file_cache_path, read_cached_array, write_cached_array
from emort.training.egemaps import (  # noqa: F401 (re-exported)
    EGEMAPS_VERSION,
    NUM_EGEMAPS,
    egemaps_feature_names,
    egemaps_features,
)

log = logging.getLogger(__name__)

#: The one rate every judge analyses audio at (originals and outputs alike).
PANEL_SAMPLE_RATE = 16000
#: Bumped whenever the panel file layout changes.
PANEL_VERSION = 1
#: A clip whose :meth:`PanelJudge.distance` exceeds this percentile of the training clips' is
#: "beyond the training range" in the reports.
RANGE_PERCENTILE = 95.0


def to_panel_rate(wav: np.ndarray, sample_rate: int, what: str = "audio") -> np.ndarray:
    """Mono float32 ``(num_samples,)`` at 16 kHz (soxr HQ); raises ``AudioError``
    subclasses for empty, silent or non-finite input, naming ``what``."""
    return prepare(wav, sample_rate, PANEL_SAMPLE_RATE, what=what)


# --- feature extractors (all take 16 kHz mono float32) ----------------------------------------


def stats_features(wav16: np.ndarray) -> np.ndarray:
    """J1: ``judges.utterance_features`` of a 16 kHz clip, float32 ``(146,)``."""
    return _j1.utterance_features(wav16, PANEL_SAMPLE_RATE)


def neural_features(wav16: np.ndarray) -> np.ndarray:
    """J3: Resemblyzer GE2E embedding of a 16 kHz clip, float32 ``(256,)``."""
    return speaker_embedding(wav16, PANEL_SAMPLE_RATE)


# --- the judges ---------------------------------------------------------------------------------


@dataclass
class PanelJudge:
    """One feature family + a :class:`~emort.evaluation.judges.FeatureJudge` classifier
    (per-speaker z-score -> StandardScaler -> RBF SVM, balanced, Platt-scaled).

    Subclasses set ``kind``, ``feature_version``, ``num_features`` and :meth:`extract`.
    ``fit`` / ``predict_proba`` / ``predict`` take feature rows, as FeatureJudge's do.
    """

    kind: ClassVar[str] = ""
    feature_version: ClassVar[int] = 0
    num_features: ClassVar[int] = 0

    labels: tuple[str, ...] = EMOTIONS
    C: float = 10.0
    gamma: str | float = "scale"
    seed: int = 0
    classifier: FeatureJudge | None = field(default=None, repr=False)
    #: :data:`RANGE_PERCENTILE` of the training clips' :meth:`distance` (set by :meth:`fit`).
    range_limit: float | None = None

    # -- features
    @staticmethod
    def extract(wav16: np.ndarray) -> np.ndarray:
        """Features of one mono 16 kHz clip, float32 ``(num_features,)``."""
        raise NotImplementedError

    def features(self, wavs: Sequence[tuple[np.ndarray, int]]) -> np.ndarray:
        """``[(wav, sample_rate), ...]`` -> float32 ``(N, num_features)`` (resampled to 16 kHz first)."""
        rows = [self.extract(to_panel_rate(w, sr, f"clip {i}")) for i, (w, sr) in enumerate(wavs)]
        return np.stack(rows) if rows else np.zeros((0, self.num_features), np.float32)

    # -- classifier
    def fit(
        self,
        features: np.ndarray,
        labels: Sequence[int],
        speakers: Sequence[str],
        speaker_stats: SpeakerStats | None = None,
    ) -> PanelJudge:
        """``features`` ``(N, num_features)``; ``labels`` ``(N,)`` ints into ``self.labels``;
        ``speakers`` ``(N,)``. ``speaker_stats`` default: the statistics of the rows given
        (the training speakers' own original clips)."""
        self._check_width(features)
        self.classifier = FeatureJudge(
            labels=self.labels,
            C=self.C,
            gamma=self.gamma,
            seed=self.seed,
            feature_version=self.feature_version,
        ).fit(features, labels, speakers, speaker_stats)
        self.range_limit = float(
            np.percentile(self.distance(features, speakers, speaker_stats), RANGE_PERCENTILE)
        )
        return self

    def distance(
        self,
        features: np.ndarray,
        speakers: Sequence[str],
        speaker_stats: SpeakerStats | None = None,
    ) -> np.ndarray:
        """How far each clip lies from its speaker's original clips, as the classifier sees it:
        the RMS over dimensions of the per-speaker z-scored, standardised feature row, ``(N,)``
        (about 1 for a typical clip). An RBF SVM has seen nothing far beyond the training
        clips' range (:attr:`range_limit`); there every kernel value vanishes and it answers
        its :meth:`far_class` whatever the clip carries."""
        self._require_fitted()
        self._check_width(features)
        z = self.classifier.standardised(features, speakers, speaker_stats)
        return np.sqrt(np.mean(np.square(z), axis=1))

    def far_class(self) -> int:
        """The label (index into ``labels``) the classifier gives a point far from every
        training clip (:meth:`~emort.training.stats_classifier.StatsClassifier.far_class`:
        where all RBF kernel values vanish only the intercepts decide, whatever the direction)."""
        self._require_fitted()
        return self.classifier.far_class()

    def _require_fitted(self) -> None:
        if self.classifier is None:
            raise RuntimeError(
                f"{type(self).__name__} is not fitted; call fit() or JudgePanel.load()"
            )

    def predict_proba(
        self,
        features: np.ndarray,
        speakers: Sequence[str],
        speaker_stats: SpeakerStats | None = None,
    ) -> np.ndarray:
        """Probabilities ``(N, len(labels))`` in ``labels`` order. For edited clips pass
        ``speaker_stats_from(original_features, speakers)``; ``None`` normalises each
        speaker by the rows given (which cancels edits shared by all of its clips)."""
        self._require_fitted()
        self._check_width(features)
        return self.classifier.predict_proba(features, speakers, speaker_stats)

    def predict(
        self,
        features: np.ndarray,
        speakers: Sequence[str],
        speaker_stats: SpeakerStats | None = None,
    ) -> np.ndarray:
        """Integer labels ``(N,)``: argmax of :meth:`predict_proba`."""
        return self.predict_proba(features, speakers, speaker_stats).argmax(axis=1)

    def _check_width(self, features: np.ndarray) -> None:
        if np.ndim(features) != 2 or np.shape(features)[1] != self.num_features:
            raise ValueError(
                f"{type(self).__name__} expects (N, {self.num_features}) features, got {np.shape(features)}"
            )


@dataclass
class StatsJudge(PanelJudge):
    """J1: ``judges.FeatureJudge`` on its own utterance statistics, computed from 16 kHz audio."""

    kind: ClassVar[str] = "stats"
    feature_version: ClassVar[int] = _j1.FEATURE_VERSION
    num_features: ClassVar[int] = _j1.NUM_FEATURES

    @staticmethod
    def extract(wav16: np.ndarray) -> np.ndarray:
        return stats_features(wav16)


@dataclass
class EgemapsJudge(PanelJudge):
    """J2: openSMILE eGeMAPSv02 Functionals (88) + per-speaker z-score + RBF SVM."""

    kind: ClassVar[str] = "egemaps"
    # the runtime's eGeMAPS analysis version: 2 clips to int16's range before openSMILE (version 1
    # wrapped a sample above full scale, as in 11 RAVDESS files resampled to 16 kHz, to the opposite sign)
    feature_version: ClassVar[int] = EGEMAPS_VERSION
    num_features: ClassVar[int] = NUM_EGEMAPS

    @staticmethod
    def extract(wav16: np.ndarray) -> np.ndarray:
        return egemaps_features(wav16)


@dataclass
class NeuralJudge(PanelJudge):
    """J3: Resemblyzer GE2E 256-d utterance embedding + per-speaker z-score + RBF SVM.

    A speaker-verification embedding still carries emotion (pitch range,
    effort and voice quality move it); z-scoring per speaker removes most of
    the identity it was trained to encode.
    """

    kind: ClassVar[str] = "neural"
    feature_version: ClassVar[int] = 1
    num_features: ClassVar[int] = EMBEDDING_DIM

    @staticmethod
    def extract(wav16: np.ndarray) -> np.ndarray:
        return neural_features(wav16)


#: Panel member names -> judge classes, in report order.
JUDGE_CLASSES: dict[str, type[PanelJudge]] = {
    "J1": StatsJudge,
    "J2": EgemapsJudge,
    "J3": NeuralJudge,
}


# --- cached features of corpus files ------------------------------------------------------------


def _cache_file(path: str, judge: type[PanelJudge]) -> Path:
    return file_cache_path("judge_features", path, judge.kind, judge.feature_version, PANEL_SAMPLE_RATE, tag="panel")


def _read_cached(f: Path, width: int) -> np.ndarray | None:
    return read_cached_array(f, (width,))


def _write_cached(f: Path, v: np.ndarray) -> None:
    write_cached_array(f, v)


@dataclass
class PanelTiming:
    """Where feature extraction time went: per judge, clips computed and seconds spent."""

    decoded: int = 0  # files decoded (one decode serves every judge that missed the cache)
    decode_s: float = 0.0  # read + resample to 16 kHz
    cached: dict[str, int] = field(default_factory=dict)
    computed: dict[str, int] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)

    def add(self, name: str, seconds: float) -> None:
        self.computed[name] = self.computed.get(name, 0) + 1
        self.seconds[name] = self.seconds.get(name, 0.0) + seconds

    def ms_per_clip(self) -> dict[str, float]:
        return {k: 1000 * self.seconds[k] / n for k, n in self.computed.items() if n}


def _run_extractors(
    wav16: np.ndarray, judges: dict[str, type[PanelJudge]], timing: PanelTiming | None
) -> dict[str, np.ndarray]:
    from threadpoolctl import threadpool_limits

    out = {}
    for name, cls in judges.items():
        t0 = time.perf_counter()
        # J1's per-clip matrices are small: one BLAS thread avoids hand-off overhead
        # (see judges.items_features); openSMILE is single-threaded; torch keeps its own.
        if cls is StatsJudge:
            with threadpool_limits(limits=1):
                out[name] = cls.extract(wav16)
        else:
            out[name] = cls.extract(wav16)
        if timing is not None:
            timing.add(name, time.perf_counter() - t0)
    return out


# --- the panel ------------------------------------------------------------------------------


@dataclass
class JudgePanel:
    """J1 (utterance statistics), J2 (eGeMAPS) and J3 (GE2E embedding) behind one interface.

    ``judges`` maps a name to a :class:`PanelJudge`; default the three of
    :data:`JUDGE_CLASSES`, each with ``labels``. Feature dicts and probability
    dicts are keyed by those names.
    """

    labels: tuple[str, ...] = EMOTIONS
    judges: dict[str, PanelJudge] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.labels = tuple(self.labels)
        if not self.judges:
            self.judges = {name: cls(labels=self.labels) for name, cls in JUDGE_CLASSES.items()}
        for name, j in self.judges.items():
            if tuple(j.labels) != self.labels:
                raise ValueError(f"judge {name} has labels {j.labels}, the panel {self.labels}")

    @property
    def names(self) -> list[str]:
        return list(self.judges)

    # -- features
    def wav_features(
        self, wavs: Sequence[tuple[np.ndarray, int]], timing: PanelTiming | None = None
    ) -> dict[str, np.ndarray]:
        """Features of in-memory clips ``[(wav, sample_rate), ...]`` (8 kHz and up, mono or
        ``(num_samples, channels)``): ``{name: float32 (N, num_features)}``. Each clip is
        resampled to 16 kHz once and shared by the judges."""
        classes = {n: type(j) for n, j in self.judges.items()}
        rows: dict[str, list[np.ndarray]] = {n: [] for n in classes}
        for i, (w, sr) in enumerate(wavs):
            t0 = time.perf_counter()
            x = to_panel_rate(w, sr, f"clip {i}")
            if timing is not None:
                timing.decoded += 1
                timing.decode_s += time.perf_counter() - t0
            for n, v in _run_extractors(x, classes, timing).items():
                rows[n].append(v)
        return {n: self._stack(rows[n], classes[n]) for n in classes}

    def items_features(
        self,
        items: Sequence,
        cache: bool = True,
        progress: bool = False,
        timing: PanelTiming | None = None,
        on_progress: Callable[[int, int], None] | None = None,
    ) -> dict[str, np.ndarray]:
        """Features of corpus files (anything with ``.path``): ``{name: float32 (N, D)}``.

        Cached per file and judge under ``$EMORT_CACHE/judge_features`` keyed by the
        absolute path, size, mtime, the judge's kind and feature version and the
        panel rate; a file is decoded only when some judge misses the cache.
        ``on_progress(done, total)`` is called after each file.
        """
        classes = {n: type(j) for n, j in self.judges.items()}
        rows: dict[str, list[np.ndarray]] = {n: [] for n in classes}
        it = items
        if progress:
            from rich.progress import track

            it = track(items, description="judge-panel features", transient=True)
        for k, item in enumerate(it):
            got: dict[str, np.ndarray] = {}
            # A missing file skips the cache so that read_audio raises its one-line error.
            use_cache = cache and os.path.isfile(item.path)
            files = {n: _cache_file(item.path, c) for n, c in classes.items()} if use_cache else {}
            if use_cache:
                for n, c in classes.items():
                    v = _read_cached(files[n], c.num_features)
                    if v is not None:
                        got[n] = v
                        if timing is not None:
                            timing.cached[n] = timing.cached.get(n, 0) + 1
            missing = {n: c for n, c in classes.items() if n not in got}
            if missing:
                t0 = time.perf_counter()
                x = read_audio(item.path, PANEL_SAMPLE_RATE).samples
                if timing is not None:
                    timing.decoded += 1
                    timing.decode_s += time.perf_counter() - t0
                new = _run_extractors(x, missing, timing)
                if use_cache:
                    for n, v in new.items():
                        _write_cached(files[n], v)
                got.update(new)
            for n in classes:
                rows[n].append(got[n])
            if on_progress is not None:
                on_progress(k + 1, len(items))
        return {n: self._stack(rows[n], classes[n]) for n in classes}

    @staticmethod
    def _stack(rows: list[np.ndarray], cls: type[PanelJudge]) -> np.ndarray:
        return (
            np.stack(rows).astype(np.float32)
            if rows
            else np.zeros((0, cls.num_features), np.float32)
        )

    # -- reference statistics and probabilities
    def reference(
        self, features: dict[str, np.ndarray], speakers: Sequence[str]
    ) -> dict[str, SpeakerStats]:
        """Per judge, each speaker's ``(mean, std)`` over the given (ORIGINAL) clips' features."""
        return {n: speaker_stats_from(features[n], speakers) for n in self.judges}

    def predict_proba(
        self,
        features: dict[str, np.ndarray],
        speakers: Sequence[str],
        reference: dict[str, SpeakerStats],
    ) -> dict[str, np.ndarray]:
        """``{name: (N, len(labels))}`` probabilities in ``labels`` order (EMOTIONS order by
        default; a label absent from training keeps probability 0). ``reference``: from
        :meth:`reference` over the speakers' original clips; every speaker must be in it."""
        return {
            n: j.predict_proba(features[n], speakers, reference[n]) for n, j in self.judges.items()
        }

    def distance(
        self,
        features: dict[str, np.ndarray],
        speakers: Sequence[str],
        reference: dict[str, SpeakerStats],
    ) -> dict[str, np.ndarray]:
        """``{name: (N,)}``: :meth:`PanelJudge.distance` of each clip from its speaker's originals."""
        return {n: j.distance(features[n], speakers, reference[n]) for n, j in self.judges.items()}

    def beyond_range(
        self,
        features: dict[str, np.ndarray],
        speakers: Sequence[str],
        reference: dict[str, SpeakerStats],
    ) -> dict[str, np.ndarray]:
        """``{name: bool (N,)}``: the clip lies farther from its speaker's originals than
        :data:`RANGE_PERCENTILE` % of the training clips from theirs (far beyond it, a judge
        answers its :meth:`far_classes` one whatever the clip carries). Raises RuntimeError
        for a judge loaded from a file without its range."""
        out = {}
        for n, d in self.distance(features, speakers, reference).items():
            limit = self.judges[n].range_limit
            if limit is None:
                raise RuntimeError(f"judge {n} has no training range (a panel file from before 0.16: fit it again)")
            out[n] = d > limit
        return out

    def far_classes(self) -> dict[str, str]:
        """``{name: label}``: what each judge answers far from every training clip
        (:meth:`PanelJudge.far_class`)."""
        return {n: self.labels[j.far_class()] for n, j in self.judges.items()}

    def score(
        self,
        wavs: Sequence[tuple[np.ndarray, int]],
        speakers: Sequence[str],
        reference: dict[str, SpeakerStats],
    ) -> dict[str, np.ndarray]:
        """:meth:`wav_features` then :meth:`predict_proba` in one call."""
        return self.predict_proba(self.wav_features(wavs), speakers, reference)

    # -- fitting
    def fit_features(
        self, features: dict[str, np.ndarray], labels: Sequence[int], speakers: Sequence[str]
    ) -> JudgePanel:
        """Fit every judge on precomputed features; each speaker z-scored by its own rows."""
        for n, j in self.judges.items():
            j.fit(features[n], labels, speakers)
        return self

    def fit(
        self,
        items: Sequence,
        cache: bool = True,
        progress: bool = False,
        timing: PanelTiming | None = None,
    ) -> JudgePanel:
        """Fit the judges on corpus items (``.path``, ``.emotion``, ``.speaker_key``).

        Items outside ``labels`` are dropped. Speakers are ``corpus/speaker``, each
        z-scored by the statistics of its own kept clips (the originals). Pass
        training speakers only: never ``TEST_SPEAKERS`` or ``VAL_SPEAKERS``.
        """
        kept = [it for it in items if it.emotion in self.labels]
        if len(kept) < len(items):
            log.info(
                "JudgePanel.fit: dropped %d items outside %s", len(items) - len(kept), self.labels
            )
        if not kept:
            raise ValueError("no training items with a label in " + ", ".join(self.labels))
        feats = self.items_features(kept, cache=cache, progress=progress, timing=timing)
        y = [self.labels.index(it.emotion) for it in kept]
        return self.fit_features(feats, y, [it.speaker_key for it in kept])

    # -- persistence
    def save(self, path: str | os.PathLike) -> None:
        """One joblib (pickle) file, written atomically. Load only files you trust."""
        judges = {}
        for n, j in self.judges.items():
            if j.classifier is None:
                raise RuntimeError(f"judge {n} is not fitted")
            judges[n] = {
                "kind": j.kind,
                "feature_version": j.feature_version,
                "C": j.C,
                "gamma": j.gamma,
                "seed": j.seed,
                "scaler": j.classifier._scaler,
                "svm": j.classifier._svm,
                "range_limit": j.range_limit,
            }
        dump_atomic(
            {
                "kind": "emort.JudgePanel",
                "panel_version": PANEL_VERSION,
                "labels": list(self.labels),
                "sample_rate": PANEL_SAMPLE_RATE,
                "judges": judges,
            },
            path,
        )

    @classmethod
    def load(cls, path: str | os.PathLike) -> JudgePanel:
        """Read a file written by :meth:`save`; refuses a judge whose features have changed since."""
        d = load_checked(path, "emort.JudgePanel", "panel_version", PANEL_VERSION, "JudgePanel")
        by_kind = {c.kind: c for c in JUDGE_CLASSES.values()}
        labels = tuple(d["labels"])
        judges: dict[str, PanelJudge] = {}
        for n, s in d["judges"].items():
            jc = by_kind.get(s["kind"])
            if jc is None or s["feature_version"] != jc.feature_version:
                raise ValueError(
                    f"{path}: judge {n} ({s['kind']} v{s['feature_version']}) does not match this code"
                )
            clf = FeatureJudge(
                labels=labels,
                C=s["C"],
                gamma=s["gamma"],
                seed=s["seed"],
                feature_version=jc.feature_version,
                _scaler=s["scaler"],
                _svm=s["svm"],
            )
            judges[n] = jc(
                labels=labels, C=s["C"], gamma=s["gamma"], seed=s["seed"], classifier=clf,
                range_limit=s.get("range_limit"),  # absent from files written before 0.16
            )
        return cls(labels=labels, judges=judges)


# --- validation report ----------------------------------------------------------------------


def validate(
    train_items: Sequence, val_items: Sequence, cache: bool = True, progress: bool = False
) -> dict:
    """Fit a panel on ``train_items`` and score ``val_items`` (original clips, each speaker
    z-scored by its own clips). Returns ``{"seconds": {...}, "ms_per_clip": {...},
    "results": {judge: {corpus: {"wa", "ua", "n"}}}}``; ``judge`` includes ``"fused"``,
    the geometric mean of the three (``emort.runtime.ustats.fuse``)."""
    from emort.evaluation.metrics import classification_report
    from emort.runtime.ustats import fuse

    panel = JudgePanel()
    timing = PanelTiming()
    t0 = time.perf_counter()
    panel.fit(train_items, cache=cache, progress=progress, timing=timing)
    t1 = time.perf_counter()
    val = [it for it in val_items if it.emotion in panel.labels]
    feats = panel.items_features(val, cache=cache, progress=progress, timing=timing)
    spk = [it.speaker_key for it in val]
    probs = panel.predict_proba(feats, spk, panel.reference(feats, spk))
    probs["fused"] = fuse(*probs.values())
    t2 = time.perf_counter()
    y = np.array([panel.labels.index(it.emotion) for it in val])
    corpus = np.array([it.corpus for it in val])
    results: dict = {}
    for name, p in probs.items():
        for c in sorted(set(corpus)):
            m = corpus == c
            r = classification_report(y[m], p[m].argmax(axis=1), panel.labels)
            results.setdefault(name, {})[c] = {"wa": r.wa, "ua": r.ua, "n": int(m.sum())}
    return {
        "seconds": {"fit_with_features": t1 - t0, "validate": t2 - t1},
        "ms_per_clip": timing.ms_per_clip(),
        "computed": timing.computed,
        "cached": timing.cached,
        "results": results,
    }


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m emort.evaluation.judge_panel --data emodb=PATH --data ravdess=PATH ...``.

    Fits the panel on the training speakers (neither ``TEST_SPEAKERS`` nor
    ``VAL_SPEAKERS``) and prints each judge's WA / UA per corpus on the
    validation speakers' original clips. Test speakers are never read.
    """
    import argparse

    from emort.runtime.atomic import write_json_atomic
    from emort.training.corpora import only_canonical, read_specs
    from emort.training.splits import TEST_SPEAKERS, VAL_SPEAKERS

    ap = argparse.ArgumentParser(
        prog="python -m emort.evaluation.judge_panel", description=main.__doc__
    )
    ap.add_argument(
        "--data", action="append", required=True, help="corpus, e.g. emodb=../shared/data/emodb"
    )
    ap.add_argument("--json", help="also write the report here")
    ap.add_argument("--no-cache", action="store_true", help="recompute every feature")
    args = ap.parse_args(argv)
    items = [
        i for i in only_canonical(read_specs(args.data)) if i.source_speaker_key not in set(TEST_SPEAKERS)
    ]
    val = [i for i in items if i.speaker_key in set(VAL_SPEAKERS)]
    train = [i for i in items if i.source_speaker_key not in set(VAL_SPEAKERS)]
    rep = validate(train, val, cache=not args.no_cache, progress=True)
    print(
        f"trained on {len(train)} clips, validated on {len(val)}; "
        f"fit {rep['seconds']['fit_with_features']:.1f} s, validation {rep['seconds']['validate']:.1f} s"
    )
    if rep["ms_per_clip"]:
        print(
            "feature ms/clip (computed): "
            + ", ".join(f"{k} {v:.0f}" for k, v in rep["ms_per_clip"].items())
        )
    for name, by_corpus in rep["results"].items():
        print(
            f"{name:6s} "
            + "  ".join(
                f"{c}: WA {r['wa']:.3f} UA {r['ua']:.3f} (n={r['n']})" for c, r in by_corpus.items()
            )
        )
    if args.json:
        write_json_atomic(args.json, rep)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
