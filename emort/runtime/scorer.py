"""SER scoring on the runtime (numpy + onnxruntime/TensorRT)."""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from emort.runtime.audio import model_rate_signal, prepare
from emort.runtime.bundle import Bundle, load_bundle
from emort.runtime.egemaps import (
    EGEMAPS_FEATURES,
    EGEMAPS_VERSION,
    NUM_EGEMAPS,
    check_egemaps,
    egemaps_features,
)
from emort.runtime.errors import BundleError, EmortError
from emort.runtime.frontend import fit_norm, log_mel
from emort.runtime.session import SPIN_US, announce_device, load_model, resolve_device
from emort.runtime.settings import VoiceSettings
from emort.runtime.ustats import (
    MIN_GROUP,
    PITCH_ANALYSES,
    RUNTIME_FEATURES,
    STATS_VERSION,
    clip_pitch_stats,
    fuse_weighted,
    normalise_per_speaker,
    num_features,
    speaker_stats_from,
    stats_matrix,
)
from emort.runtime.voice import (
    JOINT_FEATURES,
    JOINT_STATS,
    VOICE_DIM,
    VOICE_FEATURES,
    VOICE_VERSION,
    VoiceEmbedder,
    joint_reads,
)

#: Shortest mel the SER's strided convolutions and std pooling handle well.
MIN_FRAMES = 16
# Clips of equal length are batched; cap a batch so a big folder of same-length clips
# (e.g. a corpus cut to fixed length) does not become one huge tensor.
MAX_BATCH = 32


log = logging.getLogger(__name__)


def _check_pairs(clips, what: str) -> None:
    """EmortError (one line) unless ``clips`` is a sequence of ``(wav, sample_rate)`` pairs (0.31 let a
    list of bare arrays fail deep inside with "too many values to unpack")."""
    for i, c in enumerate(clips):
        if not (isinstance(c, (tuple, list)) and len(c) == 2):
            kind = f"an array of shape {np.shape(c)}" if isinstance(c, np.ndarray) else type(c).__name__
            raise EmortError(f"{what}[{i}]: expected a (wav, sample_rate) pair, got {kind}")


@dataclass(frozen=True)
class Score:
    """Emotion probabilities of one clip."""

    prediction: str
    scores: dict[str, float]
    embedding: np.ndarray = field(repr=False)  # (embedding_dim,); left out of repr: 128 numbers in every log line
    fused: bool = False  # a classifier was fused with the SER (statistics/voice, or the single-clip one)
    #: how the clip was read, as ``emort score``'s JSON ``method`` says it
    #: (:data:`emort.runtime.batch.SCORE_METHODS`: "single-clip", "single-clip+stats", "per-speaker",
    #: "per-speaker+stats", "per-speaker+clip-stats", "reference", "reference+stats")
    method: str | None = None

    @classmethod
    def of(cls, labels: list[str], probs: np.ndarray, embedding: np.ndarray, fused: bool = False, method: str | None = None) -> Score:
        scores = {lab: float(p) for lab, p in zip(labels, probs)}
        return cls(prediction=max(scores, key=scores.get), scores=scores, embedding=embedding, fused=fused, method=method)

    def read_as(self, method: str) -> Score:
        """This score with ``method`` set."""
        return dataclasses.replace(self, method=method)


@dataclass(frozen=True)
class ClipAnalysis:
    """What a :class:`Scorer` reads of one clip (:meth:`Scorer.analyse`): the raw log-mel
    ``(n_mels, frames)`` at the model rate, the F0 statistics ``(NUM_PITCH,)`` when its
    statistics classifier reads them, and the GE2E voice embedding ``(VOICE_DIM,)`` when it
    fuses the voice classifier (else None). ``voice_windows``: the voice encoder's input
    ``(windows, frames, n_mels)`` of an analysis whose embedding is still to be computed
    (``analyse(..., embed=False)``, then :meth:`Scorer.embed_voices`). ``egemaps``: the clip's
    eGeMAPSv02 functionals ``(NUM_EGEMAPS,)`` when the scorer reads them (``Scorer.load(egemaps=True)``)."""

    log_mel: np.ndarray
    pitch: np.ndarray | None = None
    voice: np.ndarray | None = None
    voice_windows: np.ndarray | None = None
    egemaps: np.ndarray | None = None


def _softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def _check_label_count(bundle: Bundle, model, name: str) -> None:
    """BundleError naming the manifest when the SER graph's logits (a static width) are not one per
    label: a label too few lost a probability silently, one too many failed every clip."""
    session = getattr(model, "session", None)  # onnxruntime's; other backends are not inspected
    try:
        width = next((o.shape[-1] for o in session.get_outputs() if o.name == "logits"), None) if session is not None else None
    except Exception:
        return
    if isinstance(width, int) and width != len(bundle.labels):
        raise BundleError(f"{bundle.path / 'manifest.json'}: {len(bundle.labels)} labels ({', '.join(bundle.labels)}) but "
                          f"{bundle.models[name].file if name in bundle.models else name} gives {width} scores")


class Scorer:
    """Speech-emotion recognition with a bundle's SER graph.

    Two modes. Global (default): every clip is normalised with the training
    statistics and scored on its own (:meth:`score`). ``per_speaker``: the bundle's
    speaker-normalised SER; clips come in groups from one speaker and each group
    is normalised with its own statistics, or with those of the speaker's reference
    clips (:meth:`score_speaker`), which removes what is constant within a speaker
    (voice, microphone, level) and is what makes unseen speakers score better. Where
    the bundle carries the utterance-statistics classifier (``stats.onnx``) and
    ``stats`` is on, a group's probabilities fuse the SER's and the classifier's
    (:func:`emort.runtime.ustats.fuse_weighted`, with the bundle's SER weight); a classifier
    that reads F0 statistics too (``features`` "ustats+pitch") needs the clips' audio, which
    :meth:`analyse` turns into what it reads. Where the bundle also carries the GE2E voice
    encoder and a classifier on its embeddings (``voice_encoder``, ``stats_voice``: ``emort
    export voice``) and ``voice`` is on, that classifier gives the statistics part instead: one
    classifier on the statistics and the embedding together (features "ustats+pitch+ge2e",
    since 0.13), or, for a "ge2e" one (0.12), the geometric mean of its probabilities and the
    statistics classifier's (docs/ser/ge2e/report.md). With ``egemaps`` (``emort score --egemaps``)
    the bundle's ``stats_egemaps`` classifier replaces the joint one: it reads openSMILE's eGeMAPS
    functionals after the statistics and the embedding (docs/ser/egemaps_voice/report.md; needs
    the ``opensmile`` package and makes per-speaker scoring several times as long). Audio is taken at any sample rate from 8 kHz and any channel layout (mixed to
    mono and resampled to the bundle's rate).

    Thread-safe: the onnxruntime session may be called from several threads.
    """

    def __init__(self, bundle: Bundle, ser_model, device: str = "cpu", per_speaker: bool = False, stats_model=None,
                 ser_name: str | None = None, voice: VoiceEmbedder | None = None, voice_model=None, egemaps_model=None,
                 clip_stats_model=None, small_group_model=None):
        self.bundle = bundle
        self.ser = ser_model
        #: the bundle graph ``ser_model`` runs: "ser", "ser_clip" (single clips, level-robust) or "ser_speaker"
        self.ser_name = ser_name or ("ser_speaker" if per_speaker else "ser")
        _check_label_count(bundle, ser_model, self.ser_name)
        self.device = device
        self.per_speaker = per_speaker
        self.stats = stats_model
        self.stats_spec = bundle.models["stats"] if stats_model is not None else None
        #: single clips: the classifier fused with the SER (``stats_clip``: statistics and GE2E, not
        #: normalised per speaker; ``Scorer.load(clip_stats=True)``), else None
        self.clip_stats = clip_stats_model if not per_speaker and voice is not None else None
        self.clip_stats_spec = bundle.models["stats_clip"] if self.clip_stats is not None else None
        #: the GE2E embedder (with ``stats`` and the classifier on its embeddings, or with ``clip_stats``)
        self.voice = voice if (stats_model is not None and voice_model is not None) or self.clip_stats is not None else None
        self.stats_voice = voice_model if self.voice is not None and stats_model is not None else None
        #: per speaker, groups of fewer than ``MIN_GROUP`` clips: ``stats_clip`` fused with the SER
        #: (docs/ser/small_groups/report.md; not with a reference), else None (such groups get the SER alone)
        self.small_group = small_group_model if per_speaker and self.stats_voice is not None else None
        #: the voice classifier reads the statistics and the embedding together and replaces the
        #: statistics classifier ("ustats+pitch+ge2e"), rather than being fused with it ("ge2e")
        self.joint = self.stats_voice is not None and bundle.models["stats_voice"].features == JOINT_FEATURES
        #: the joint classifier that reads eGeMAPS too, in place of ``stats_voice`` (joint ones only)
        self.stats_egemaps = egemaps_model if self.joint else None

    @property
    def fused(self) -> bool:
        """Whether per-speaker scores fuse the statistics classifier."""
        return self.stats is not None

    @property
    def needs_pitch(self) -> bool:
        """Whether a classifier this scorer fuses reads F0 statistics: the per-speaker statistics
        classifier, or the single-clip one (``clip_stats``, or per-speaker groups of 1-4 clips); then
        :meth:`score_group` needs each clip's ``pitch``: :meth:`analyse` gives it."""
        return ((self.stats_spec is not None and self.stats_spec.features == "ustats+pitch") or self.clip_stats is not None
                or self.small_group is not None)

    @property
    def _pitch_version(self) -> int | None:
        """The F0 analysis (:data:`emort.runtime.ustats.PITCH_ANALYSES`) the classifier that reads F0 was fitted on."""
        return (self.stats_spec or self.clip_stats_spec).pitch_version

    @property
    def reads_small_groups(self) -> bool:
        """Whether a per-speaker group of fewer than ``MIN_GROUP`` clips is read by the SER fused with
        the single-clip classifier (then it needs each clip's ``pitch`` and ``voice`` too), rather
        than by the SER alone."""
        return self.small_group is not None

    @property
    def needs_voice(self) -> bool:
        """Whether per-speaker scores fuse the GE2E voice classifier (then :meth:`score_group`
        needs each clip's ``voice`` embedding: :meth:`analyse` gives it)."""
        return self.voice is not None

    @property
    def needs_egemaps(self) -> bool:
        """Whether per-speaker scores read each clip's eGeMAPS functionals (``Scorer.load(egemaps=True)``)."""
        return self.stats_egemaps is not None

    @classmethod
    def load(cls, bundle: str | Path | Bundle | None = None, device: str = "auto", threads: int | None = None,
             per_speaker: bool = False, stats: bool = True, level_robust: bool = True, voice: bool = True,
             spin: bool | int = SPIN_US, egemaps: bool = False, clip_stats: bool = False) -> Scorer:
        """A scorer of the bundle: per speaker (``per_speaker``: the speaker-normalised SER, fused
        with the statistics classifier unless ``stats`` is False, which the GE2E voice classifier replaces (a joint one,
        reading the statistics and the embedding) or is fused with (a 0.12 one: geometric mean) where
        the bundle carries one, unless ``voice`` is False) or of single clips: the bundle's
        level-robust single-clip SER (``ser_clip``, trained with random gains of +-10 dB) when it
        carries one and ``level_robust``, else the SER that conditions the edit (``ser``; its
        scores move with the recording level: docs/ser/level/report.md). ``egemaps``: per speaker,
        the voice classifier that reads openSMILE's eGeMAPS functionals too (the bundle's
        ``stats_egemaps``); BundleError where the bundle has none or the statistics or voice
        classifier is off, EmortError without the ``opensmile`` package. ``clip_stats``: single clips, the
        ``ser_clip`` scores fused with the bundle's single-clip classifier (``stats_clip``: statistics and
        GE2E embedding of the clip alone; :meth:`score_clips`; docs/ser/single_v2/report.md); EmortError
        with ``per_speaker``, ``level_robust=False`` or ``voice=False``, BundleError where the bundle has
        none. Per speaker with the voice classifier, a group of fewer than ``MIN_GROUP`` clips is read by
        the per-speaker SER fused with ``stats_clip`` where the bundle carries one whose F0 analysis is
        the statistics classifier's (:attr:`reads_small_groups`; docs/ser/small_groups/report.md), else
        by the SER alone. ``spin``: how every one of its
        sessions' onnxruntime threads waits between operators, as
        :class:`~emort.runtime.session.OrtModel` takes it (default: spin at most ``SPIN_US``
        microseconds; True: unbounded; False: never)."""
        b = bundle if isinstance(bundle, Bundle) else load_bundle(bundle, graphs=())  # each graph is checked below, when opened
        if clip_stats and per_speaker:
            raise EmortError("clip_stats: the single-clip classifier reads clips alone; per-speaker scoring has its own (leave one of them off)")
        if clip_stats and not (level_robust and b.has_clip_scorer):
            raise EmortError("clip_stats: the single-clip classifier is fused with the level-robust single-clip SER (ser_clip), "
                             "the pairing it was chosen with; keep level_robust on, with a bundle that carries ser_clip")
        if clip_stats and not voice:
            raise EmortError("clip_stats: the single-clip classifier reads the clip's GE2E voice embedding; keep voice on")
        name = "ser_speaker" if per_speaker else "ser_clip" if level_robust and b.has_clip_scorer else "ser"
        if per_speaker and not b.has_speaker_scorer:
            raise BundleError(f"{b.path}: this bundle has no speaker-normalised SER; export one with "
                              "`emort export onnx --speaker-ser RUN`, or score with the global SER (without --per-speaker / --speaker-pattern)")
        dev = resolve_device(device)
        stats_model = None
        if per_speaker and stats and b.has_stats:
            spec = b.models["stats"]
            if (spec.stats_version != STATS_VERSION or spec.features not in RUNTIME_FEATURES
                    or spec.n_features != num_features(spec.features, b.mel.n_mels)
                    or (spec.features == "ustats+pitch" and spec.pitch_version not in PITCH_ANALYSES)):
                raise BundleError(f"{b.path}: its statistics classifier ({spec.features}, version {spec.stats_version}"
                                  f"{'' if spec.pitch_version is None else f', pitch version {spec.pitch_version}'}) does not match "
                                  f"this emort's statistics (version {STATS_VERSION}, pitch versions "
                                  f"{', '.join(map(str, sorted(PITCH_ANALYSES)))}); "
                                  "re-export the bundle, or score without it (--no-stats)")
            if not (math.isfinite(spec.ser_weight) and spec.ser_weight >= 0):
                raise BundleError(f"{b.path}: its statistics classifier's ser_weight {spec.ser_weight} is not a finite number >= 0")
            if spec.features == "ustats+pitch":
                cls._require_f0(b, "its statistics classifier", "or score without it (--no-stats)")
            # ai.onnx.ml operators (SVM, linear classifier) run on onnxruntime's CPU provider; the model is tiny.
            b.verify(["stats"])
            stats_model = load_model(b.model_path("stats"), "cpu", threads, name="stats", spin=spin)
        embedder = voice_model = None
        if stats_model is not None and voice and b.has_voice:
            enc, vs = b.models["voice_encoder"], b.models["stats_voice"]
            joint = vs.features == JOINT_FEATURES
            without = "or score without it (--no-voice; Scorer.load(voice=False))"
            if (enc.voice_version != VOICE_VERSION or vs.voice_version != VOICE_VERSION or vs.features not in VOICE_FEATURES
                    or vs.stats_version != STATS_VERSION):
                raise BundleError(f"{b.path}: its voice classifier ({vs.features}, embedding version {enc.voice_version}, statistics version "
                                  f"{vs.stats_version}) does not match this emort's ({' or '.join(VOICE_FEATURES)}, embedding "
                                  f"version {VOICE_VERSION}, statistics version {STATS_VERSION}); refit it with this emort "
                                  f"(`emort train stats --features {vs.features}`) and put it in with `emort export voice`, {without}")
            # the joint classifier reads the statistics classifier's features, F0 of the same analysis
            if joint and not joint_reads(spec.features, spec.pitch_version, vs.pitch_version):
                raise BundleError(f"{b.path}: its voice classifier (stats_voice) reads ustats+pitch statistics of F0 version "
                                  f"{vs.pitch_version}, but its statistics classifier is {spec.features}"
                                  f"{'' if spec.pitch_version is None else f' of F0 version {spec.pitch_version}'}; export a voice "
                                  f"classifier fitted with it (`emort export voice`), {without}")
            width = VOICE_DIM + (num_features(spec.features, b.mel.n_mels) if joint else 0)
            if vs.n_features != width:
                raise BundleError(f"{b.path}: its voice classifier (stats_voice, {vs.features}) reads {vs.n_features} features, "
                                  f"expected {width}; re-export it, {without}")
            embedder = cls._encoder(b, spin, without)
            b.verify(["stats_voice"])
            voice_model = load_model(b.model_path("stats_voice"), "cpu", threads, name="stats_voice", spin=spin)
        clip_model = small_model = None
        if clip_stats:
            embedder, clip_model = cls._load_clip_stats(b, threads, spin)
        elif voice_model is not None and "stats_clip" in b.models:
            # groups of 1-4 clips: read better by the SER x the single-clip classifier than by the SER
            # alone (docs/ser/small_groups/report.md); a bundle whose stats_clip this emort cannot read
            # keeps the SER alone for them, as before 0.27, rather than failing every group
            alone = f"speakers of fewer than {MIN_GROUP} clips are read by the SER alone"
            f0 = b.models["stats_clip"].pitch_version
            if f0 != spec.pitch_version:
                log.warning("%s: its single-clip classifier reads F0 version %s, its statistics classifier %s; %s",
                            b.path, f0, "no F0" if spec.pitch_version is None else spec.pitch_version, alone)
            else:
                try:
                    small_model = cls._load_clip_stats(b, threads, spin, "", embedder)[1]
                except BundleError as e:
                    log.warning("%s; %s", str(e).rstrip(" ,;"), alone)
        egemaps_model = None
        if egemaps:
            if not per_speaker:
                raise EmortError("egemaps: clips scored alone never read it; it is read per speaker (Scorer.load(per_speaker=True))")
            egemaps_model = cls._load_egemaps(b, voice_model, threads, spin)
        b.verify([name])
        engine_dir = None
        if dev == "tensorrt":  # the engines `emort export tensorrt` built, as Enhancer.load finds them
            from emort.runtime.trt import default_engine_dir

            engine_dir = default_engine_dir(b)
        # an explicit device that onnxruntime cannot start is an error; `auto` runs where it falls back (warned)
        ser = load_model(b.model_path(name), dev, threads, engine_dir, name=name, spin=spin, strict=device != "auto")
        announce_device(ser.device)
        return cls(b, ser, ser.device, per_speaker, stats_model, ser_name=name,
                   voice=embedder, voice_model=voice_model, egemaps_model=egemaps_model, clip_stats_model=clip_model,
                   small_group_model=small_model)

    @staticmethod
    def _load_clip_stats(b: Bundle, threads: int | None, spin: bool | int, without: str = "or score without --clip-stats",
                         embedder: VoiceEmbedder | None = None):
        """The GE2E embedder (``embedder`` when one is loaded already) and the ``stats_clip`` classifier,
        checked against this emort (:meth:`load`'s ``clip_stats``, and per-speaker groups of fewer than
        ``MIN_GROUP`` clips); ``without``: what the errors offer instead."""
        if "stats_clip" not in b.models:
            raise BundleError(f"{b.path}: this bundle has no single-clip classifier (stats_clip); put one in with `emort export voice "
                              "--stats RUN` of a `--features ustats+pitch+ge2e --norm global` run, or score without --clip-stats")
        if "voice_encoder" not in b.models:
            raise BundleError(f"{b.path}: its single-clip classifier reads GE2E embeddings, but the bundle has no voice encoder; put "
                              "one in with `emort export voice`, or score without --clip-stats")
        enc, cs = b.models["voice_encoder"], b.models["stats_clip"]
        width = num_features(JOINT_STATS, b.mel.n_mels) + VOICE_DIM
        if (cs.features != JOINT_FEATURES or cs.stats_version != STATS_VERSION or cs.voice_version != VOICE_VERSION
                or enc.voice_version != VOICE_VERSION or cs.pitch_version not in PITCH_ANALYSES or cs.n_features != width
                or not (math.isfinite(cs.ser_weight) and cs.ser_weight >= 0)):
            raise BundleError(f"{b.path}: its single-clip classifier ({cs.features}, statistics version {cs.stats_version}, embedding "
                              f"version {cs.voice_version}, F0 version {cs.pitch_version}, {cs.n_features} features) does not match "
                              f"this emort ({JOINT_FEATURES}, {STATS_VERSION}, {VOICE_VERSION}, F0 versions "
                              f"{', '.join(map(str, sorted(PITCH_ANALYSES)))}, {width} features); refit it and put it in with "
                              f"`emort export voice`, {without}")
        Scorer._require_f0(b, "its single-clip classifier", without)
        embedder = embedder or Scorer._encoder(b, spin, without)
        b.verify(["stats_clip"])
        return embedder, load_model(b.model_path("stats_clip"), "cpu", threads, name="stats_clip", spin=spin)

    @staticmethod
    def _require_f0(b: Bundle, who: str, without: str) -> None:
        """BundleError (one line, now rather than one per clip later) where ``who`` reads F0 statistics
        and the F0 analysis (pyworld) cannot run here."""
        from emort.runtime.prosody import _pyworld

        try:
            _pyworld()
        except EmortError as e:
            raise BundleError(f"{b.path}: {who} reads F0 ({e}); {without}") from None

    @staticmethod
    def _encoder(b: Bundle, spin: bool | int, without: str) -> VoiceEmbedder:
        """The bundle's GE2E encoder, checked to have the front end its weights were trained with.
        One intra-op thread: the LSTM steps are small matrix products (the 1.5 windows of an average
        EmoDB clip: 9.4 ms on one core of a 2-core AMD EPYC), and `emort score` runs it in its two
        reader threads side by side."""
        enc, want = b.models["voice_encoder"], VoiceSettings()
        if enc.frontend != want:
            got = {} if enc.frontend is None else enc.frontend.to_dict()
            wrong = ", ".join(f"{k} {got.get(k)!r} (expected {v!r})" for k, v in want.to_dict().items() if got.get(k) != v)
            raise BundleError(f"{b.path}: models.voice_encoder.frontend is not the GE2E encoder's front end: {wrong}; re-export it, {without}")
        b.verify(["voice_encoder"])
        return VoiceEmbedder(load_model(b.model_path("voice_encoder"), "cpu", 1, name="voice_encoder", spin=spin), enc.frontend)

    @staticmethod
    def _load_egemaps(b: Bundle, voice_model, threads: int | None, spin: bool | int):
        """The ``stats_egemaps`` classifier, checked against this emort (:meth:`load`'s ``egemaps``)."""
        if not b.has_egemaps:
            raise BundleError(f"{b.path}: this bundle has no eGeMAPS voice classifier (stats_egemaps); put one in with "
                              "`emort export voice --stats RUN` of a `--features ustats+pitch+ge2e+egemaps` run, or score without --egemaps")
        if b.models["stats_voice"].features != JOINT_FEATURES:
            raise BundleError(f"{b.path}: its voice classifier reads {b.models['stats_voice'].features}, not {JOINT_FEATURES}, which "
                              "the eGeMAPS classifier reads first; put a joint one in with `emort export voice`, or score without --egemaps")
        if voice_model is None:
            raise BundleError(f"{b.path}: the eGeMAPS classifier reads the statistics and the voice embedding too; it needs the "
                              "statistics and voice classifiers on (no --no-stats / --no-voice)")
        es, vs = b.models["stats_egemaps"], b.models["stats_voice"]
        width = vs.n_features + NUM_EGEMAPS
        if (es.features != EGEMAPS_FEATURES or es.egemaps_version != EGEMAPS_VERSION or es.voice_version != vs.voice_version
                or es.pitch_version != vs.pitch_version or es.stats_version != vs.stats_version or es.n_features != width):
            raise BundleError(f"{b.path}: its eGeMAPS voice classifier ({es.features}, eGeMAPS version {es.egemaps_version}, "
                              f"{es.n_features} features) does not match this emort or the bundle's voice classifier "
                              f"({EGEMAPS_FEATURES}, eGeMAPS version {EGEMAPS_VERSION}, {width} features); refit it "
                              "(`emort train stats --features ustats+pitch+ge2e+egemaps`) and put it in with `emort export voice`")
        check_egemaps()  # one clear line now, not one per clip later
        b.verify(["stats_egemaps"])
        return load_model(b.model_path("stats_egemaps"), "cpu", threads, name="stats_egemaps", spin=spin)

    def normalize(self, log_mel: np.ndarray) -> np.ndarray:
        """A clip's raw log-mel ``(n_mels, frames)`` -> z-scored as this scorer's single-clip SER
        expects (global mode; :meth:`emort.runtime.bundle.Bundle.normalize_for`)."""
        return self.bundle.normalize_for(self.ser_name, log_mel)

    def log_mel(self, wav: np.ndarray, sample_rate: int) -> np.ndarray:
        """Waveform -> the SER's log-mel ``(n_mels, frames)``, float32, not normalised.

        ``wav``: ``(num_samples,)`` or ``(num_samples, channels)``, any PCM dtype, at
        ``sample_rate`` Hz (8 kHz and up: mixed to mono, validated and resampled to the bundle's
        ``mel.sample_rate``). Raises AudioError subclasses for unusable audio.
        """
        return log_mel(self._model_rate(wav, sample_rate), self.bundle.mel)

    def _model_rate(self, wav: np.ndarray, sample_rate: int, what: str = "audio") -> np.ndarray:
        """The one front-end up to the log-mel: mono, validated, at the model rate, DC removed."""
        mono = prepare(wav, sample_rate, sample_rate, what=what)  # mono and validated, at its own rate
        return model_rate_signal(mono, sample_rate, self.bundle.mel.sample_rate)

    def analyse(self, wav: np.ndarray, sample_rate: int, what: str = "audio", classifiers: bool = True,
                embed: bool = True, egemaps: bool = True) -> ClipAnalysis:
        """Waveform -> what this scorer reads of it: the raw log-mel (:meth:`log_mel`) and, when
        the statistics classifier reads F0 (:attr:`needs_pitch`), the clip's F0 statistics
        (:func:`emort.runtime.ustats.clip_pitch_stats`, computed on the same model-rate signal),
        and with the voice classifier (:attr:`needs_voice`) the clip's GE2E embedding (from the
        source signal at 16 kHz), and its eGeMAPS functionals where the scorer reads them
        (:attr:`needs_egemaps`: :func:`emort.runtime.egemaps.egemaps_features` of the same mono signal). ``classifiers=False``: the log-mel alone (for a group scored by the
        SER alone); ``egemaps=False``: no eGeMAPS functionals (a group too small to read them). ``embed=False``: the voice encoder's input instead of the embedding, for
        :meth:`embed_voices` to run with other clips'. Raises AudioError subclasses for unusable
        audio, naming ``what``."""
        mono = prepare(wav, sample_rate, sample_rate, what=what)  # mono and validated once, for every reading
        x = model_rate_signal(mono, sample_rate, self.bundle.mel.sample_rate)
        mel = log_mel(x, self.bundle.mel)
        pitch = (clip_pitch_stats(x, mel, self.bundle.mel, self._pitch_version)
                 if self.needs_pitch and classifiers else None)
        voice = windows = None
        if self.voice is not None and classifiers:
            windows = self.voice.windows_mono(mono, sample_rate)
            if embed:
                voice, windows = self.voice.embed_windows([windows])[0], None
        ege = egemaps_features(mono, sample_rate, what) if self.needs_egemaps and classifiers and egemaps else None
        return ClipAnalysis(mel, pitch, voice, windows, ege)  # F0 as the classifier was fitted on it (its pitch version)

    def embed_voices(self, clips: Sequence[ClipAnalysis], map_fn: Callable = map) -> list[ClipAnalysis]:
        """``clips`` with the voice embeddings of those analysed with ``embed=False`` computed:
        their windows run through the encoder together, in calls of about
        :data:`~emort.runtime.voice.CALL_WINDOWS` windows (a clip's windows stay in one call), which
        ``map_fn`` runs (e.g. a thread pool's ``map``: the encoder session has one thread). The
        calls do not depend on ``map_fn``, so neither do the embeddings."""
        out = list(clips)
        todo = [k for k, c in enumerate(out) if c.voice is None and c.voice_windows is not None]
        if self.voice is None or not todo:
            return out
        calls = self.voice.calls([out[k].voice_windows for k in todo])
        for part, embs in zip(calls, map_fn(lambda idx: self.voice.embed_windows([out[todo[i]].voice_windows for i in idx]), calls)):
            for i, e in zip(part, embs):
                out[todo[i]] = dataclasses.replace(out[todo[i]], voice=e, voice_windows=None)
        return out

    def normalized_mel(self, wav: np.ndarray, sample_rate: int) -> np.ndarray:
        """Waveform at ``sample_rate`` -> log-mel normalised with the training statistics (global mode)."""
        if self.per_speaker:
            raise EmortError("a per-speaker Scorer (Scorer.load(per_speaker=True)) normalises a speaker's clips together: use score_speaker(clips); for one clip alone use Scorer.load()")
        return self.normalize(self.log_mel(wav, sample_rate))

    def score(self, wav: np.ndarray, sample_rate: int) -> Score:
        """Emotion probabilities of one clip, normalised with the training statistics (global mode).

        ``wav``: ``(num_samples,)`` or ``(num_samples, channels)`` at ``sample_rate`` Hz (any
        rate). Raises AudioError subclasses for unusable audio, EmortError on a per-speaker
        Scorer (one clip alone cannot be speaker-normalised: use :meth:`score_speaker`).
        """
        if self.clip_stats is not None:
            return self.score_clips([self.analyse(wav, sample_rate)])[0]
        return self.score_mels([self.normalized_mel(wav, sample_rate)])[0].read_as("single-clip")

    def score_clips(self, clips: Sequence[ClipAnalysis]) -> list[Score]:
        """Single-clip scores of analysed clips (:meth:`analyse`): the SER on each clip's globally
        z-scored log-mel and, with the single-clip classifier (``Scorer.load(clip_stats=True)``),
        the geometric mean with that classifier's probabilities on the clip's statistics and GE2E
        embedding (``Score.fused`` True; docs/ser/single_v2/report.md). Analyses made with
        ``embed=False`` are embedded first."""
        if self.per_speaker:
            raise EmortError("score_clips reads clips alone; a per-speaker Scorer scores a speaker's clips with score_speaker()")
        scores = [s.read_as("single-clip") for s in self.score_mels([self.normalize(a.log_mel) for a in clips])]
        if self.clip_stats is None or not clips:
            return scores
        clips = self.embed_voices(clips)
        return self._with_clip_classifier(scores, [a.log_mel for a in clips], [a.pitch for a in clips], [a.voice for a in clips],
                                          self.clip_stats, self.clip_stats_spec.ser_weight, "single-clip+stats")

    def _with_clip_classifier(self, scores: list[Score], log_mels: list[np.ndarray], pitch: list | None, voice: list | None,
                              model, ser_weight: float, method: str) -> list[Score]:
        """``scores`` fused with the single-clip classifier ``model`` (the bundle's ``stats_clip``) on each
        clip's own statistics and GE2E embedding, not normalised per speaker, the SER weighted by
        ``ser_weight`` (:func:`~emort.runtime.ustats.fuse_weighted`; ``Score.fused`` True)."""
        if pitch is None or voice is None or any(a is None for a in pitch) or any(v is None for v in voice):
            raise EmortError("the single-clip classifier reads each clip's F0 statistics and voice embedding: analyse the clips with "
                             "this scorer (Scorer.analyse) and give score_group() their pitch= and voice=, or use score_analyses()")
        rows = np.hstack([self._stats_features(log_mels, pitch), np.stack(voice)]).astype(np.float32)
        labels = self.bundle.labels
        p = fuse_weighted(np.array([[s.scores[lab] for lab in labels] for s in scores]), model(X=rows)[1], ser_weight)
        return [Score.of(labels, row, s.embedding, fused=True, method=method) for s, row in zip(scores, p)]

    def score_speaker(self, clips: Sequence[tuple[np.ndarray, int]],
                      reference: Sequence[tuple[np.ndarray, int]] | None = None) -> list[Score]:
        """Scores of ONE speaker's clips, each ``(wav, sample_rate)`` at 8 kHz and up, any channel layout.

        The clips are normalised with the per-band log-mel statistics of ``reference`` (the
        same speaker's original clips, e.g. before an enhancement applied to all of them) when
        given, else with their own: what is constant in the speaker (voice, microphone, level)
        is removed either way, but only a reference keeps a change common to all the clips.
        Statistics from a few clips are noisy: give at least ``MIN_GROUP`` (5) varied clips.
        Needs ``per_speaker=True``; raises AudioError subclasses for unusable audio.
        """
        _check_pairs(clips, "clips")
        if reference is not None:
            _check_pairs(reference, "reference")
        own = [self.analyse(w, sr, f"clip {i}", embed=False) for i, (w, sr) in enumerate(clips)]
        ref = None if reference is None else [self.analyse(w, sr, f"reference clip {i}", embed=False) for i, (w, sr) in enumerate(reference)]
        return self.score_analyses(own, ref)  # their windows embedded together, as `emort score` does

    def score_analyses(self, clips: Sequence[ClipAnalysis], reference: Sequence[ClipAnalysis] | None = None) -> list[Score]:
        """:meth:`score_group` of ONE speaker's analysed clips (:meth:`analyse`), each with what the
        statistics classifier reads of it; ``reference``: the speaker's analysed originals.
        Analyses made with ``embed=False`` are embedded first (:meth:`embed_voices`)."""
        both = self.embed_voices([*clips, *(reference or [])])
        clips, reference = both[: len(clips)], None if reference is None else both[len(clips):]
        pitch, voice, ege = self.needs_pitch, self.needs_voice, self.needs_egemaps
        return self.score_group([a.log_mel for a in clips], reference=None if reference is None else [a.log_mel for a in reference],
                                pitch=[a.pitch for a in clips] if pitch else None,
                                reference_pitch=[a.pitch for a in reference] if pitch and reference is not None else None,
                                voice=[a.voice for a in clips] if voice else None,
                                reference_voice=[a.voice for a in reference] if voice and reference is not None else None,
                                egemaps=[a.egemaps for a in clips] if ege else None,
                                reference_egemaps=[a.egemaps for a in reference] if ege and reference is not None else None)

    def score_group(self, log_mels: list[np.ndarray], reference: list[np.ndarray] | None = None,
                    pitch: list[np.ndarray] | None = None, reference_pitch: list[np.ndarray] | None = None,
                    voice: list[np.ndarray] | None = None, reference_voice: list[np.ndarray] | None = None,
                    egemaps: list[np.ndarray] | None = None, reference_egemaps: list[np.ndarray] | None = None) -> list[Score]:
        """Raw log-mels (:meth:`log_mel`) of ONE speaker's clips -> scores (see :meth:`score_speaker`).

        Normalised with the statistics of ``reference`` (raw log-mels of the speaker's
        reference clips) when given, else of ``log_mels`` themselves. The statistics
        classifier is fused only when the statistics come from at least ``MIN_GROUP`` clips
        (``Score.fused`` says which); a smaller group without ``reference`` gets the SER fused with
        the single-clip classifier (``stats_clip``, on each clip's own statistics and GE2E embedding,
        where the bundle has one and the voice classifier is on: :attr:`reads_small_groups`; chosen on
        validation speakers, docs/ser/small_groups/report.md), else (and with fewer than ``MIN_GROUP``
        reference clips, a case not measured) the SER alone. A classifier that reads
        F0 (:attr:`needs_pitch`) needs ``pitch`` (and with ``reference``, ``reference_pitch``):
        each clip's :attr:`ClipAnalysis.pitch` from :meth:`analyse`; EmortError without them. With
        the voice classifier (:attr:`needs_voice`) likewise ``voice`` (and ``reference_voice``), and
        with eGeMAPS (:attr:`needs_egemaps`) ``egemaps`` (and ``reference_egemaps``).
        """
        if not self.per_speaker:
            raise EmortError("per-speaker scoring needs Scorer.load(per_speaker=True) (a speaker-normalised SER)")
        if not log_mels:
            return []
        if reference is not None and not reference:
            raise EmortError("reference: no clips")
        basis = log_mels if reference is None else reference
        mean, std = fit_norm(basis)
        how = "per-speaker" if reference is None else "reference"
        scores = [s.read_as(how) for s in self.score_mels([((m - mean[:, None]) / std[:, None]).astype(np.float32) for m in log_mels])]
        if len(basis) < MIN_GROUP and self.small_group is not None and reference is None:
            # the geometric mean, the reading measured (docs/ser/small_groups), whatever weight --clip-stats has
            return self._with_clip_classifier(scores, log_mels, pitch, voice, self.small_group, 1.0, "per-speaker+clip-stats")
        if self.stats is None or len(basis) < MIN_GROUP:
            return scores
        labels = self.bundle.labels
        feats = self._stats_features(log_mels, pitch)
        ref_stats = None if reference is None else speaker_stats_from(self._stats_features(reference, reference_pitch), ["speaker"] * len(reference))
        z = normalise_per_speaker(feats, ["speaker"] * len(log_mels), ref_stats).astype(np.float32)
        if self.stats_voice is None:
            p_stats = self.stats(X=z)[1]
        else:
            zv = self._z_rows(voice, reference_voice, len(log_mels), reference, "voice embedding")
            if self.stats_egemaps is not None:  # the joint one's columns, then eGeMAPS, each z-scored per speaker
                ze = self._z_rows(egemaps, reference_egemaps, len(log_mels), reference, "eGeMAPS functionals")
                p_stats = self.stats_egemaps(X=np.hstack([z, zv, ze]))[1]
            elif self.joint:  # one classifier on both (z-scoring is per column: the same as on the two apart)
                p_stats = self.stats_voice(X=np.hstack([z, zv]))[1]
            else:  # the two classifiers' geometric mean (0.12.0; docs/ser/ge2e/report.md)
                p_stats = fuse_weighted(self.stats(X=z)[1], self.stats_voice(X=zv)[1], 1.0)
        p = fuse_weighted(np.array([[s.scores[lab] for lab in labels] for s in scores]), p_stats, self.stats_spec.ser_weight)
        return [Score.of(labels, row, s.embedding, fused=True, method=how + "+stats") for s, row in zip(scores, p)]

    @classmethod
    def _z_rows(cls, rows: list[np.ndarray] | None, reference_rows: list[np.ndarray] | None, n: int,
                reference: list | None, what: str) -> np.ndarray:
        """One speaker's per-clip feature rows ``(n, D)`` z-scored over themselves, or over the
        reference clips' rows when ``reference`` is given; float32."""
        ref = None if reference is None else speaker_stats_from(cls._rows(reference_rows, len(reference), what), ["speaker"] * len(reference))
        return normalise_per_speaker(cls._rows(rows, n, what), ["speaker"] * n, ref).astype(np.float32)

    @staticmethod
    def _rows(rows: list[np.ndarray] | None, n: int, what: str) -> np.ndarray:
        if rows is None or len(rows) != n or any(v is None for v in rows):
            raise EmortError(f"this scorer reads each clip's {what}: score audio with score_speaker(), or give "
                             f"score_group() each clip's {what} (Scorer.analyse)")
        return np.stack(rows).astype(np.float64)

    def _stats_features(self, log_mels: list[np.ndarray], pitch: list[np.ndarray] | None) -> np.ndarray:
        """The statistics classifier's input rows ``(N, n_features)``, before the speaker z-score."""
        x = stats_matrix(log_mels, self.bundle.mel.power)
        if not self.needs_pitch:
            return x
        if pitch is None or len(pitch) != len(log_mels) or any(p is None for p in pitch):
            raise EmortError("this bundle's statistics classifier reads F0 statistics too: score audio with "
                             "score_speaker(), or give score_group() each clip's pitch (Scorer.analyse)")
        return np.hstack([x, np.stack(pitch)])

    def score_mels(self, mels: list[np.ndarray]) -> list[Score]:
        """Normalised log-mels ``(n_mels, frames)`` at the bundle rate -> scores (internal: the
        public entries are :meth:`score` and :meth:`score_speaker`). Clips of equal length run as one batch."""
        out: list[Score | None] = [None] * len(mels)
        groups: dict[int, list[int]] = {}
        for i, m in enumerate(mels):
            groups.setdefault(max(m.shape[1], MIN_FRAMES), []).append(i)
        chunks = [(frames, idx[c : c + MAX_BATCH]) for frames, idx in groups.items() for c in range(0, len(idx), MAX_BATCH)]
        for frames, idx in chunks:
            batch = np.stack([self._fit(mels[i], frames) for i in idx])[:, None]
            logits, emb = self.ser(mel=batch)
            probs = _softmax(logits.astype(np.float64))
            for k, i in enumerate(idx):
                out[i] = Score.of(self.bundle.labels, probs[k], emb[k].astype(np.float32))
        return out  # type: ignore[return-value]

    @staticmethod
    def _fit(mel: np.ndarray, frames: int) -> np.ndarray:
        if mel.shape[1] >= frames:
            return mel
        return np.pad(mel, ((0, 0), (0, frames - mel.shape[1])), mode="wrap")
