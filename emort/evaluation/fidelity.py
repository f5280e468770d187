"""How much an enhanced clip still resembles its source.

Replacing a clip with a prototype of the target emotion would win the accuracy
table while being useless, so every accuracy number is reported next to:

- :func:`log_mel_distance`: mean |log-mel(out) - log-mel(src)| in natural-log
  units of the project front-end (``emort.runtime.frontend.log_mel``);
  0 for an untouched clip, ``log 2 = 0.693`` for a uniform +6 dB.
- :func:`log_mel_change_db`: the same difference in dB (``20 log10`` of the
  mel-band magnitude ratio, 8.686 x the natural-log change), averaged over
  active frames only, with frames aligned by index (enhancement) or by DTW
  (two takes of a sentence).
- :func:`mel_cepstral_distortion`: MCD in dB over cepstra 1..13 of the same
  log-mel, frame by frame. No DTW: enhancement keeps the source's timing.
- :func:`speaker_similarity_resemblyzer`: cosine of Resemblyzer GE2E speaker
  embeddings (``emort.evaluation.speaker_embedding``), 1 = identical. This is
  the reported "same speaker" measure.
- :class:`SpeakerEmbedder` + :func:`speaker_similarity`: the older *proxy*
  (LDA over utterance cepstral statistics of the training speakers), kept for
  the callers that still use it (``enhance_eval``, ``benchmarks/judge_baseline.py``);
  a linear model on 27-ish speakers, not a speaker-verification network.

What is a small change? :func:`take_to_take` measures the same quantities between
two takes of one sentence by one speaker in one emotion (RAVDESS repetitions
01/02, EmoDB version letters): the variation a speaker produces unprompted.

Distances take waveforms at ``settings.sample_rate`` (22,050 Hz by default);
resample first (``emort.runtime.audio.resample``) when they differ. Speaker
similarity takes each clip at its own rate and resamples to 16 kHz itself.

``python -m emort.evaluation.fidelity --data emodb=PATH --data ravdess=PATH``
prints the take-to-take medians of the training speakers.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np

from emort.evaluation._io import dump_atomic, load_checked
from emort.runtime.frontend import active_frames, log_mel
from emort.runtime.settings import DEFAULT_MEL, MelSettings

#: MCD uses cepstral coefficients 1..13 (c0, overall level, excluded as usual).
MCD_COEFFS = 13
_MCD_SCALE = 10.0 / np.log(10.0) * np.sqrt(2.0)  # natural-log cepstra -> dB (Kubichek 1993)

#: Bumped whenever :func:`speaker_features` changes (cache key, saved embedders).
SPEAKER_FEATURE_VERSION = 1
_SPK_CEPS = 20
_ACTIVE_DB = 35.0


@lru_cache(maxsize=8)
def _dct_matrix(n_out: int, n_in: int) -> np.ndarray:
    """Orthonormal DCT-II, ``(n_out, n_in)`` (scipy ``dct(type=2, norm='ortho')`` rows)."""
    n = np.arange(n_in)
    k = np.arange(n_out)[:, None]
    m = np.cos(np.pi * k * (2 * n + 1) / (2 * n_in)) * np.sqrt(2.0 / n_in)
    m[0] /= np.sqrt(2.0)
    m.setflags(write=False)
    return m


def cepstra(log_mel_: np.ndarray, n_coeffs: int) -> np.ndarray:
    """Mel cepstra of a natural-log mel ``(n_mels, frames)`` -> ``(n_coeffs, frames)`` float64."""
    return _dct_matrix(n_coeffs, log_mel_.shape[0]) @ np.asarray(log_mel_, dtype=np.float64)


def _aligned_mels(
    src_wav: np.ndarray, out_wav: np.ndarray, settings: MelSettings
) -> tuple[np.ndarray, np.ndarray]:
    a = log_mel(np.asarray(src_wav), settings).astype(np.float64)
    b = log_mel(np.asarray(out_wav), settings).astype(np.float64)
    n = min(a.shape[1], b.shape[1])
    return a[:, :n], b[:, :n]


def log_mel_distance(
    src_wav: np.ndarray, out_wav: np.ndarray, settings: MelSettings = DEFAULT_MEL
) -> float:
    """Mean absolute log-mel difference (natural log), frames aligned, cut to the shorter clip.

    Both waveforms ``(num_samples,)`` at ``settings.sample_rate``. Bands below
    the front-end floor (``settings.log_floor``) in both clips contribute 0.
    """
    a, b = _aligned_mels(src_wav, out_wav, settings)
    return float(np.mean(np.abs(b - a)))


def mel_cepstral_distortion(
    src_wav: np.ndarray,
    out_wav: np.ndarray,
    settings: MelSettings = DEFAULT_MEL,
    n_coeffs: int = MCD_COEFFS,
) -> float:
    """Mean mel-cepstral distortion in dB over cepstra 1..``n_coeffs``, frame by frame.

    ``MCD = 10 / ln 10 * sqrt(2 * sum_d (c_d - c'_d)^2)`` per frame, averaged
    over frames; cepstra are the orthonormal DCT of the natural-log mel of the
    project front-end. Frames are aligned by index (no DTW: enhancement keeps
    timing) and cut to the shorter clip. A uniform gain changes only c0 and
    so leaves MCD at 0.
    """
    a, b = _aligned_mels(src_wav, out_wav, settings)
    ca = cepstra(a, n_coeffs + 1)[1:]
    cb = cepstra(b, n_coeffs + 1)[1:]
    per_frame = _MCD_SCALE * np.sqrt(np.sum((ca - cb) ** 2, axis=0))
    return float(per_frame.mean())


# --- speaker-similarity proxy -----------------------------------------------------------------


def speaker_features(wav: np.ndarray, settings: MelSettings = DEFAULT_MEL) -> np.ndarray:
    """Timbre statistics of one clip, float32 ``(2 * 20,)``: mean and std of cepstra 1..20
    of the project log-mel over active frames (within 35 dB of the loudest).

    ``wav``: ``(num_samples,)`` at ``settings.sample_rate``. No pitch and no
    energy level (c0): those move with emotion, which the proxy should ignore.
    """
    lm = log_mel(np.asarray(wav, dtype=np.float32), settings).astype(np.float64)
    energy = lm.max(axis=0)  # loudest band per frame, natural log
    active = energy > energy.max() - _ACTIVE_DB * np.log(10) / 20
    if active.sum() < 3:
        active[:] = True
    c = cepstra(lm[:, active], _SPK_CEPS + 1)[1:]
    return np.concatenate([c.mean(axis=1), c.std(axis=1)]).astype(np.float32)


def speaker_similarity(emb_a: np.ndarray, emb_b: np.ndarray) -> float | np.ndarray:
    """Cosine similarity of embeddings: ``(D,)`` x ``(D,)`` -> float, ``(N, D)`` x ``(N, D)`` -> ``(N,)``."""
    a = np.asarray(emb_a, dtype=np.float64)
    b = np.asarray(emb_b, dtype=np.float64)
    num = np.sum(a * b, axis=-1)
    den = np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1)
    cos = num / np.maximum(den, 1e-12)
    return float(cos) if np.ndim(cos) == 0 else cos


@dataclass
class SpeakerEmbedder:
    """StandardScaler -> shrinkage LDA over :func:`speaker_features`; a speaker-similarity proxy.

    Fitted on training speakers only (all emotions pooled) so that the axes
    separate speakers, not emotions. ``embed`` returns ``(n_components,)``
    float64 with ``n_components = min(speakers - 1, 40)``.
    """

    settings: MelSettings = DEFAULT_MEL
    feature_version: int = SPEAKER_FEATURE_VERSION
    _scaler: object = field(default=None, repr=False)
    _lda: object = field(default=None, repr=False)

    def fit(self, features: np.ndarray, speakers: Sequence[str]) -> SpeakerEmbedder:
        """``features`` ``(N, 40)`` from :func:`speaker_features`; ``speakers`` ``(N,)``."""
        from sklearn.discriminant_analysis import LinearDiscriminantAnalysis
        from sklearn.preprocessing import StandardScaler

        spk = np.asarray(speakers).astype(str)
        if len(np.unique(spk)) < 2:
            raise ValueError("SpeakerEmbedder needs clips of at least two speakers")
        self._scaler = StandardScaler().fit(features)
        self._lda = LinearDiscriminantAnalysis(solver="eigen", shrinkage="auto").fit(
            self._scaler.transform(features), spk
        )
        return self

    def embed_features(self, features: np.ndarray) -> np.ndarray:
        """``(N, 40)`` speaker features -> ``(N, n_components)`` embeddings."""
        if self._lda is None:
            raise RuntimeError(
                "SpeakerEmbedder is not fitted; call fit() or fit_speaker_embedder()"
            )
        return self._lda.transform(self._scaler.transform(np.atleast_2d(features)))

    def embed(self, wav: np.ndarray) -> np.ndarray:
        """One waveform ``(num_samples,)`` at ``settings.sample_rate`` -> ``(n_components,)``."""
        return self.embed_features(speaker_features(wav, self.settings)[None])[0]

    def similarity(self, src_wav: np.ndarray, out_wav: np.ndarray) -> float:
        """Cosine similarity of the embeddings of two clips (1 = same point)."""
        return float(speaker_similarity(self.embed(src_wav), self.embed(out_wav)))

    def save(self, path: str | os.PathLike) -> None:
        """One joblib (pickle) file; load only files you trust."""
        dump_atomic(
            {
                "kind": "emort.SpeakerEmbedder",
                "feature_version": self.feature_version,
                "settings": self.settings.to_dict(),
                "scaler": self._scaler,
                "lda": self._lda,
            },
            path,
        )

    @classmethod
    def load(cls, path: str | os.PathLike) -> SpeakerEmbedder:
        d = load_checked(
            path,
            "emort.SpeakerEmbedder",
            "feature_version",
            SPEAKER_FEATURE_VERSION,
            "SpeakerEmbedder",
        )
        return cls(
            MelSettings.from_dict(d["settings"]), d["feature_version"], d["scaler"], d["lda"]
        )


def _cache_file(path: str, settings: MelSettings) -> Path:
    from emort.training.data import file_cache_path

    return file_cache_path("speaker_features", path, SPEAKER_FEATURE_VERSION, settings.to_dict())


def items_speaker_features(
    items: Sequence, settings: MelSettings = DEFAULT_MEL, cache: bool = True
) -> np.ndarray:
    """:func:`speaker_features` ``(len(items), 40)`` of corpus items, cached under
    ``$EMORT_CACHE/speaker_features`` (or ``~/.cache/emort/speaker_features``).
    BLAS limited to one thread (small matrices; see ``judges.items_features``)."""
    from threadpoolctl import threadpool_limits

    from emort.runtime.audio import read_audio

    rows = []
    with threadpool_limits(limits=1):
        for it in items:
            f = _cache_file(it.path, settings) if cache else None
            if f is not None and f.exists():
                rows.append(np.load(f))
                continue
            v = speaker_features(read_audio(it.path, settings.sample_rate).samples, settings)
            if f is not None:
                tmp = f.with_name(f".{f.stem}.{os.getpid()}.tmp.npy")
                np.save(tmp, v)
                os.replace(tmp, f)
            rows.append(v)
    return np.stack(rows) if rows else np.zeros((0, 2 * _SPK_CEPS), np.float32)


def fit_speaker_embedder(
    items: Sequence, settings: MelSettings = DEFAULT_MEL, cache: bool = True
) -> SpeakerEmbedder:
    """Fit a :class:`SpeakerEmbedder` on corpus items, speakers = ``item.speaker_key``.

    Pass training speakers only (never ``emort.training.splits.TEST_SPEAKERS``).
    """
    items = list(items)
    x = items_speaker_features(items, settings, cache)
    return SpeakerEmbedder(settings=settings).fit(x, [it.speaker_key for it in items])


# --- dB change over active frames, resemblyzer similarity, take-to-take yardstick ----------

#: Natural-log change of a magnitude mel -> dB: 20 log10(e) = 8.686.
NATS_TO_DB = 20.0 / np.log(10.0)


def log_mel_change_db(
    a_wav: np.ndarray,
    b_wav: np.ndarray,
    settings: MelSettings = DEFAULT_MEL,
    align: str = "index",
) -> float:
    """Mean |log-mel(b) - log-mel(a)| in dB over the active frames, ``float`` >= 0.

    Both waveforms ``(num_samples,)`` at ``settings.sample_rate``. The log-mel
    is the project front-end's natural log of the mel MAGNITUDE, so a band's
    change in dB is 8.686 x its natural-log change; a uniform +6 dB reads 6.0.
    ``align="index"``: frame i with frame i, cut to the shorter clip
    (enhancement keeps timing). ``align="dtw"``: frames paired along the
    ``librosa.sequence.dtw`` path (Euclidean distance between log-mel frames),
    for two takes of one sentence. A frame pair counts when either frame is
    active (within 35 dB of its clip's loudest frame,
    ``emort.runtime.frontend.active_frames``), so sound added in a pause counts
    too; the mean is over the counted pairs and all mel bands. Raises
    ValueError for another ``align``.
    """
    a = log_mel(np.asarray(a_wav, dtype=np.float32), settings).astype(np.float64)
    b = log_mel(np.asarray(b_wav, dtype=np.float32), settings).astype(np.float64)
    act_a, act_b = active_frames(a), active_frames(b)
    if align == "index":
        n = min(a.shape[1], b.shape[1])
        ia = ib = np.arange(n)
    elif align == "dtw":
        import librosa

        _, wp = librosa.sequence.dtw(X=a, Y=b, metric="euclidean", backtrack=True)
        ia, ib = wp[::-1, 0], wp[::-1, 1]
    else:
        raise ValueError(f"align must be 'index' or 'dtw', got {align!r}")
    keep = act_a[ia] | act_b[ib]
    diff = np.abs(b[:, ib[keep]] - a[:, ia[keep]])
    return float(diff.mean() * NATS_TO_DB)


def speaker_similarity_resemblyzer(
    src_wav: np.ndarray, src_sr: int, out_wav: np.ndarray, out_sr: int
) -> float:
    """Cosine of the Resemblyzer GE2E embeddings of two clips, in [-1, 1]; 1 = identical.

    Each clip at its own rate, ``(num_samples,)`` or ``(num_samples, channels)``;
    both go through the same deterministic preprocessing
    (``speaker_embedding.embedding_input``: soxr to 16 kHz, RMS to -30 dBFS, no
    VAD trimming), so a pure gain change scores 1. GE2E embeddings are
    non-negative, so different voices still score well above 0 (on the EmoDB,
    RAVDESS and nEMO training speakers: median 0.62 between two speakers of one
    corpus, 0.76 between two clips of one speaker in any emotions); compare
    against :func:`take_to_take`, not against 0. Raises the ``AudioError``
    subclasses of ``emort.runtime.audio.prepare`` for empty, silent or
    non-finite input.
    """
    from emort.evaluation.speaker_embedding import cosine, speaker_embedding

    return float(cosine(speaker_embedding(src_wav, src_sr), speaker_embedding(out_wav, out_sr)))


_EMODB_TAKE = re.compile(r"^(\d\d)([a-z]\d\d)([WLEAFTN])([a-z])$")
_RAVDESS_TAKE = re.compile(r"^03-01-(\d\d)-(\d\d)-(\d\d)-(\d\d)-(\d\d)$")


def _take_group(item) -> tuple | None:
    """(corpus, what is held fixed) for an EmoDB / RAVDESS item, else None."""
    stem = Path(item.path).stem
    if item.corpus == "emodb" and (m := _EMODB_TAKE.match(stem)):
        return ("emodb", m.group(1), m.group(2), m.group(3))  # speaker, text, emotion
    if item.corpus == "ravdess" and (m := _RAVDESS_TAKE.match(stem)):
        # emotion, intensity, statement, actor; the repetition (group 4) varies
        return ("ravdess", m.group(1), m.group(2), m.group(3), m.group(5))
    return None


def take_pairs(items: Sequence) -> list[tuple]:
    """Pairs of takes among ``items`` (corpus ``Item``s): same speaker, text and emotion.

    RAVDESS: same actor, statement, emotion and intensity, repetition 01 vs 02.
    EmoDB: same speaker, text and emotion, different version letter (every
    pair when a sentence has three or more versions). Other corpora, and nEMO
    (one take per sentence and emotion), give none. Sorted by path.
    """
    groups: dict[tuple, list] = {}
    for it in items:
        g = _take_group(it)
        if g is not None:
            groups.setdefault(g, []).append(it)
    pairs = []
    for g in sorted(groups):
        takes = sorted(groups[g], key=lambda i: i.path)
        pairs += [(takes[i], takes[j]) for i in range(len(takes)) for j in range(i + 1, len(takes))]
    return pairs


def _summary(v: Sequence[float]) -> dict:
    x = np.asarray(v, dtype=np.float64)
    if not len(x):
        return {"n": 0}
    p10, p50, p90 = np.percentile(x, [10, 50, 90])
    return {"n": int(len(x)), "median": float(p50), "p10": float(p10), "p90": float(p90)}


def take_to_take(
    items: Sequence,
    settings: MelSettings = DEFAULT_MEL,
    progress: bool = False,
) -> dict:
    """The fidelity yardstick: how far two takes of the same sentence lie apart.

    For every :func:`take_pairs` pair among ``items``: :func:`log_mel_change_db`
    with ``align="dtw"`` and :func:`speaker_similarity_resemblyzer`. Returns
    ``{"pairs": [{"a", "b", "corpus", "speaker", "log_mel_change_db",
    "speaker_similarity"}, ...], "summary": {corpus | "all": {measure: {"n",
    "median", "p10", "p90"}}}}``. Pass training speakers only when the numbers
    are to sit next to an evaluation on other speakers.
    """
    from emort.evaluation.speaker_embedding import EMBEDDING_SAMPLE_RATE, cosine, speaker_embedding
    from emort.runtime.audio import read_audio
    from emort.training.data import model_rate_audio

    pairs = take_pairs(items)
    it = pairs
    if progress:
        from rich.progress import track

        it = track(pairs, description="take pairs", transient=True)
    mel_wav: dict[str, np.ndarray] = {}
    emb: dict[str, np.ndarray] = {}

    def load(path: str) -> np.ndarray:
        if path not in mel_wav:
            mel_wav[path] = model_rate_audio(path, settings.sample_rate)  # offset-free, as the outputs are
            emb[path] = speaker_embedding(
                read_audio(path, EMBEDDING_SAMPLE_RATE).samples, EMBEDDING_SAMPLE_RATE
            )
        return mel_wav[path]

    rows = []
    for a, b in it:
        d = log_mel_change_db(load(a.path), load(b.path), settings, align="dtw")
        rows.append(
            {
                "a": a.path,
                "b": b.path,
                "corpus": a.corpus,
                "speaker": a.speaker_key,
                "log_mel_change_db": d,
                "speaker_similarity": float(cosine(emb[a.path], emb[b.path])),
            }
        )
    summary = {}
    for c in sorted({r["corpus"] for r in rows}) + ["all"]:
        sel = [r for r in rows if c == "all" or r["corpus"] == c]
        summary[c] = {
            k: _summary([r[k] for r in sel]) for k in ("log_mel_change_db", "speaker_similarity")
        }
    return {"pairs": rows, "summary": summary}


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m emort.evaluation.fidelity --data emodb=PATH --data ravdess=PATH [--json FILE]``.

    Prints the take-to-take medians (p10, p90) of the training speakers: the
    six emotions, speakers in neither ``TEST_SPEAKERS`` nor ``VAL_SPEAKERS``.
    """
    import argparse

    from emort.runtime.atomic import write_json_atomic
    from emort.training.corpora import only_canonical, read_specs
    from emort.training.splits import TEST_SPEAKERS, VAL_SPEAKERS

    ap = argparse.ArgumentParser(
        prog="python -m emort.evaluation.fidelity", description=main.__doc__
    )
    ap.add_argument(
        "--data", action="append", required=True, help="corpus, e.g. emodb=../shared/data/emodb"
    )
    ap.add_argument("--json", help="also write per-pair values and the summary here")
    args = ap.parse_args(argv)
    held = set(TEST_SPEAKERS) | set(VAL_SPEAKERS)
    items = [i for i in only_canonical(read_specs(args.data)) if i.source_speaker_key not in held]
    res = take_to_take(items)
    for c, s in res["summary"].items():
        d, sim = s["log_mel_change_db"], s["speaker_similarity"]
        if d["n"]:
            print(
                f"{c}: {d['n']} pairs  |dlog-mel| {d['median']:.2f} dB (p10 {d['p10']:.2f}, p90 {d['p90']:.2f})"
                f"  speaker similarity {sim['median']:.3f} (p10 {sim['p10']:.3f}, p90 {sim['p90']:.3f})"
            )
    if args.json:
        write_json_atomic(args.json, res)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
