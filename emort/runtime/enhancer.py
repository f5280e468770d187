"""Emotion enhancement on the runtime: front-end -> SER embedding -> calibrated diffusion edit -> audio at the input rate."""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace
from functools import cached_property
from pathlib import Path

import numpy as np

from emort.runtime.audio import (
    MAX_DURATION_S,
    MIN_DURATION_S,
    check_sample_rate,
    dc_offset,
    limit_peaks,
    limiter_reach,
    model_rate_signal,
    resample,
    resample_pieces,
    resampled_length,
    to_float,
    to_mono,
    validate_samples,
)
from emort.runtime.bundle import EDIT_MODELS, Bundle, load_bundle
from emort.runtime.editing import (
    MAX_BAND_DB,
    DiffusionSpec,
    EditOptions,
    Windows,
    calibrate,
    capped_change,
    edit_mel,
    edit_part,
    moving_mean,
    project_edit,
    smooth_edit,
    target_embedding,
)
from emort.runtime.errors import BackendError, EmortError, EmptyAudioError, TooLongAudioError
from emort.runtime.frontend import (
    LOG_MEL_BLOCK_FRAMES,
    NATS_TO_DB,
    apply_band_gain,
    band_gain_stft,
    edit_region,
    griffin_lim,
    high_band_in_band,
    log_mel,
    log_mel_blocks,
    mel_to_magnitude,
    num_frames,
    stft,
)
from emort.runtime.openvino_cpu import DEFAULT_PRECISION, resolve_precision
from emort.runtime.prosody import (
    ProsodyEdit,
    SpeakerProsody,
    check_available,
    clip_prosody,
    plan_prosody,
    range_to_render,
    render_prosody,
)
from emort.runtime.scorer import Score, Scorer
from emort.runtime.session import SPIN_US, announce_device, load_model, resolve_device
from emort.runtime.settings import MelSettings, format_emotion_mix, parse_emotion_mix

VOCODERS = ("gain", "griffinlim")


@dataclass(frozen=True)
class Chunking:
    """How :class:`Enhancer` bounds its memory on long inputs (a field set to None: whole clip).

    What the edit is made of stays a property of the whole clip: the front-end, the active and
    in-band region, the calibrated multiplier, the style embedding and the DC offset are computed
    once for the clip; only the work whose memory grows with the clip runs in pieces. Measured
    on a 10-minute 48 kHz clip by ``benchmarks/long_input.py``: ``emort enhance`` peaks at
    ~0.6 GB (0.7.0: 607 MB) instead of 4.5 GB.

    * ``denoise``: the denoiser runs in overlapping, cross-faded windows of this shape on mels
      longer than ``denoise.frames`` (:class:`~emort.runtime.editing.Windows`). Its GroupNorm and
      linear attention read their whole input, so windows change the edit: on that clip the
      applied gain moved by a mean 0.36 dB (max 5.8 dB; the edit averages 1.26 dB), where the
      next noise seed moves the whole clip's by 0.48 dB (max 4.6 dB); ``change_db`` is the same
      (one multiplier for the clip, 1.8% apart). 2048 frames (23.8 s) is also the most the
      shipped TensorRT engines accept; 1024 moved the gain by 0.48 dB, 4096 by 0.36 dB.
    * ``score_frames``: the SER scores a mel of at most this many frames in one pass; a longer
      one in equal windows of at most this length, whose probabilities and embeddings are
      averaged weighted by length (one pass over 10 minutes takes ~200 MB, and scores of a long
      stretch of speech are averages either way; they differ from the one-pass scores).
    * ``render_s``: seconds of input per block when the gain is applied at the input rate and
      when the output is scored; each block has one STFT window and the limiter's reach of
      context on both sides, so the output equals the whole clip's to float rounding.
    """

    denoise: Windows | None = Windows()
    score_frames: int | None = 2048
    render_s: float | None = 2.0

    @classmethod
    def off(cls) -> Chunking:
        """The whole clip at once everywhere (memory grows with the clip)."""
        return cls(denoise=None, score_frames=None, render_s=None)

    def within(self, max_frames: int, stride: int) -> Chunking:
        """No window longer than ``max_frames`` (a TensorRT engine's profile)."""
        den = self.denoise
        if den is not None and den.frames > max_frames:
            den = replace(den, frames=max_frames - max_frames % stride)
        score = self.score_frames if self.score_frames is None else min(self.score_frames, max_frames)
        return replace(self, denoise=den, score_frames=score)


@dataclass(frozen=True)
class Enhanced:
    """Result of one enhancement.

    ``wav``: float32 ``(num_samples,)`` (or ``(num_samples, channels)`` with
    ``keep_channels``) at ``sample_rate``, the input's own rate, same length as the input.
    ``change_db``: the edit's mean absolute log-mel gain over the clip's active, in-band region
    on the model's 22,050 Hz grid, dB of mel-band magnitude (what ``amount_db`` sets; measured
    on the rendered output it is smaller, as the rendering smooths the edit's fine detail);
    ``guidance``: the multiplier applied to the model's edit. For ``direction`` it reproduces
    the output when passed back as ``guidance``; for the samplers it scales the sampler's edit,
    which ran at classifier-free guidance ``options.guidance`` (3 when calibrated).
    With ``options.prosody`` the output is mono and ``round(len / prosody.tempo)`` samples
    long; ``source_mel`` is then the prosody-edited signal's, ``scores_before`` the input's.
    """

    wav: np.ndarray
    sample_rate: int
    emotion: str  # canonical target: "angry" or a mix "sad:0.30,angry:0.70"
    options: EditOptions
    scores_before: dict[str, float]  # SER probabilities of the source
    scores_after: dict[str, float] | None  # of the output (``score_output=True``)
    change_db: float
    guidance: float
    seconds: float
    source_mel: np.ndarray  # model-rate log-mel (n_mels, frames) of what the spectral edit read
    mel: np.ndarray  # edited log-mel (n_mels, frames)
    prosody: ProsodyEdit | None = None  # the prosody change applied (``options.prosody``), else None
    #: where a calibrated edit fell short of ``amount_db`` with bands at the cap: the change the largest
    #: cap (:data:`~emort.runtime.editing.MAX_BAND_DB`) would reach, dB; None where it did not fall short
    change_db_at_max_cap: float | None = None


def _check_vocoder(vocoder: str, keep_channels: bool) -> None:
    """EmortError for an unknown vocoder, or ``keep_channels`` with Griffin-Lim (it rebuilds one
    signal from the mono mel)."""
    if vocoder not in VOCODERS:
        raise EmortError(f"unknown vocoder {vocoder!r}; choose one of {', '.join(VOCODERS)}")
    if keep_channels and vocoder == "griffinlim":
        raise EmortError("keep_channels: the griffinlim vocoder renders mono only; use the gain vocoder to keep the channels")


@dataclass(frozen=True)
class EditPlan:
    """One clip's front-end, source scores and raw edit (see :meth:`Enhancer.plan`)."""

    src: np.ndarray  # float32 input as given, (samples,) or (samples, channels)
    mono: np.ndarray  # float32 (samples,) at sample_rate
    sample_rate: int
    mel: np.ndarray  # model-rate log-mel (n_mels, frames)
    target: str
    scores_before: dict[str, float]
    raw_db: np.ndarray  # (n_mels, frames) edit per unit multiplier, dB (zeros for identity options)
    region: np.ndarray  # (n_mels, frames) weights: active x in-band (see frontend.edit_region)
    settings: MelSettings  # the bundle's front-end

    @cached_property
    def high_band(self) -> bool:
        """Whether the input has its own signal above the model's ``fmax`` (frontend.high_band_in_band):
        the gain vocoder carries the top band's gain there only then."""
        return high_band_in_band(self.mono, self.sample_rate, self.settings)

    @cached_property
    def model_wav(self) -> np.ndarray:
        """``mono`` at the model rate without its DC offset, float32: what ``mel`` is computed from.
        Made again on first use rather than held (a 10-minute clip's is 53 MB)."""
        return model_rate_signal(self.mono, self.sample_rate, self.settings.sample_rate)


class Enhancer:
    """Moves an utterance toward a target emotion while keeping timing and content.

    ``Enhancer.load()`` uses the default bundle shipped with the package. Thread-safe:
    sessions are shared and all per-call state is local.
    """

    def __init__(self, bundle: Bundle, scorer: Scorer, style_model, denoiser_model, device: str = "cpu",
                 chunking: Chunking | None = None, precision: str = "fp32"):
        self.bundle = bundle
        #: the denoiser's arithmetic: ``fp32`` (onnxruntime), ``bf16`` (OpenVINO) or ``fp16`` (TensorRT; :meth:`load`)
        self.precision = precision
        #: why :meth:`load` chose it (``asked for``, or what made ``auto`` keep fp32)
        self.precision_reason = "asked for"
        self.scorer = scorer
        self.style = style_model
        self.denoiser = denoiser_model
        self.device = device
        self.defaults: EditOptions = bundle.defaults
        self.spec = DiffusionSpec(bundle.schedule, bundle.prediction, bundle.stride, bundle.shapes.batch[2])
        #: how long inputs are processed in pieces (an attribute: tests and callers may replace it)
        self.chunking: Chunking = chunking if chunking is not None else Chunking()
        if device == "tensorrt":  # engines take at most the bundle's frames
            self.chunking = self.chunking.within(int(bundle.shapes.frames[2]), bundle.stride)

    @classmethod
    def load(cls, bundle: str | Path | Bundle | None = None, device: str = "auto", threads: int | None = None, engine_dir: Path | None = None,
             spin: bool | int = SPIN_US, precision: str = DEFAULT_PRECISION) -> Enhancer:
        """Sessions for the bundle's SER, style encoder and denoiser on ``device``.

        ``precision``: the denoiser's arithmetic (:func:`~emort.runtime.openvino_cpu.resolve_precision`):
        ``fp32`` (onnxruntime), ``bf16`` (OpenVINO on a CPU with AMX-BF16 or AVX512-BF16; BackendError where it
        cannot run), ``fp16`` (TensorRT) or ``auto`` (bf16 on such a CPU, fp16 on TensorRT, each
        only where the bundle lists its edit as checked in that precision for this denoiser file,
        :meth:`Bundle.checked_precision`; else fp32). The SER and style encoder stay float32 (a
        few ms per clip). :attr:`precision` says which runs, :attr:`precision_reason` why.
        ``device``: ``auto`` (the best available; where onnxruntime cannot start it, the models run
        where it falls back, with a warning, and :attr:`device` says which), or an explicit
        device (BackendError when onnxruntime cannot start it).

        ``spin``: how their onnxruntime threads wait between operators (CPU). Default: they spin
        at most :data:`~emort.runtime.session.SPIN_US` microseconds, then sleep (since 0.14;
        ``emort enhance`` on 120 files took 0.95x the wall time of never spinning, for 1.02x
        the CPU time: docs/bench/spin.md). False or 0: never spin (0.13's behaviour);
        another int: that many microseconds; True: the denoiser's threads spin as
        onnxruntime does by default, long after each call, and the SER's and style encoder's
        at the default (through the CLI that took 0.97x the wall time for 1.22x the CPU time
        of never spinning, docs/bench/spin.md). On a device other than the CPU, True is the
        default bound."""
        b = bundle if isinstance(bundle, Bundle) else load_bundle(bundle, graphs=EDIT_MODELS)
        b.verify(EDIT_MODELS)  # a Bundle passed in may not have checked them yet
        dev = resolve_device(device)
        if dev == "tensorrt" and engine_dir is None:
            from emort.runtime.trt import default_engine_dir

            engine_dir = default_engine_dir(b)

        def precision_on(d: str) -> tuple[str, str]:
            return resolve_precision(precision, d, b.checked_precision("denoiser", "bf16"),
                                     measured_fp16=b.checked_precision("denoiser", "fp16"))

        prec, why = precision_on(dev)  # before any model loads
        # Unbounded spinning only for the denoiser on the CPU: the SER's and style encoder's starved the calls after them.
        others = SPIN_US if spin is True else spin
        # an explicit device that onnxruntime cannot start is an error; `auto` runs where the SER's session could
        strict = device != "auto"
        ser = load_model(b.model_path("ser"), dev, threads, engine_dir, "ser", spin=others, strict=strict)
        if ser.device != dev:
            fell = dev
            dev = ser.device
            try:
                prec, why = precision_on(dev)
            except BackendError as e:
                raise BackendError(f"onnxruntime could not start {fell} here and fell back to {dev}: {e}") from None
        announce_device(dev)
        scorer = Scorer(b, ser, dev)
        # under auto, a graph onnxruntime puts elsewhere than the SER (a missing engine, say) runs there, warned
        style = load_model(b.model_path("style"), dev, threads, engine_dir, "style", spin=others, strict=strict)
        def denoiser(p: str):
            return load_model(b.model_path("denoiser"), dev, threads, engine_dir, "denoiser", spin=spin if dev == "cpu" else others,
                              precision=p, strict=strict)

        try:
            den = denoiser(prec)
        except BackendError as e:
            if precision != "auto" or prec == "fp32":
                raise
            prec, why = "fp32", str(e)  # auto: bf16 did not compile as bf16 here
            den = denoiser(prec)
        enh = cls(b, scorer, style, den, dev, precision=getattr(den, "precision", prec))  # a native engine's is its sidecar's
        enh.precision_reason = why
        return enh

    def options(self, **overrides) -> EditOptions:
        """The bundle's default options with per-call overrides (None = default).

        ``guidance`` given: the raw multiplier replaces the calibrated ``amount_db``;
        ``amount_db`` given: calibrated, whatever the bundle's default guidance. With
        ``prosody`` and neither given, the bundle's ``prosody_amount_db`` (if set) is the amount:
        conversions take a larger spectral edit (docs/eval/conversion/), and likewise
        ``prosody_subspace`` the ``subspace`` and ``prosody_contrast`` the ``contrast``. Raises EmortError for invalid options, or a
        ``subspace`` larger than the bundle's edit basis.
        """
        if "sampler" in overrides and "method" not in overrides:  # the 0.4 name
            overrides["method"] = overrides.pop("sampler")
        opts = self.defaults.with_overrides(from_defaults=True, **overrides)
        self.check_options(opts)
        return opts

    def check_options(self, options: EditOptions) -> None:
        """Raise EmortError (one line) for options this enhancer cannot run: invalid values, or a
        ``subspace`` beyond the bundle's edit basis. Called before any model runs (a batch calls
        it once, not once per file)."""
        options.validate()
        if options.subspace:
            self._basis(options.subspace)

    def _model_fn(self, x, t, emotion, emotion_mask, style):
        return self.denoiser(x=x, t=t, emotion=emotion, emotion_mask=emotion_mask, style=style)[0]

    @property
    def mean_centroid(self) -> np.ndarray:
        """The mean of the emotion centroids: the reference of ``contrast="mean"``."""
        return np.mean([self.bundle.centroids[k] for k in self.bundle.labels], axis=0).astype(np.float32)

    def _contrast_fn(self, reference: np.ndarray):
        """The denoiser with its unconditional rows conditioned on ``reference`` instead: the edit
        then moves along what separates the target from the average emotion, not from none."""

        def fn(x, t, emotion, emotion_mask, style):
            uncond = emotion_mask[:, 0] == 0
            emo = emotion.copy()
            emo[uncond] = reference
            return self._model_fn(x, t, emo, np.ones_like(emotion_mask), style)

        return fn

    def target_centroid(self, emotion: str) -> tuple[str, np.ndarray]:
        """``"angry"`` or ``"angry:0.7,sad:0.3"`` -> (canonical name, weighted centroid embedding)."""
        mix = parse_emotion_mix(emotion, self.bundle.labels)
        c = sum(w * self.bundle.centroids[k].astype(np.float64) for k, w in mix.items())
        return format_emotion_mix(mix), np.asarray(c, np.float32)

    def plan(self, wav: np.ndarray, sample_rate: int, emotion: str, options: EditOptions) -> EditPlan:
        """The expensive half of :meth:`enhance`: front-end, SER and the model's raw edit.

        The edit is linear in its multiplier, so one plan renders any ``amount_db`` (or raw
        guidance) through :meth:`render` without running the model again (the evaluation's
        sweeps use this). Long inputs run the SER and the denoiser in windows
        (:attr:`chunking`); the log-mel, region and everything calibrated stay the whole clip's.
        """
        b = self.bundle
        self.check_options(options)
        target, centroid = self.target_centroid(emotion)
        sample_rate = check_sample_rate(sample_rate)
        src = to_float(wav)
        mono = to_mono(src)
        validate_samples(mono, sample_rate)
        mel = log_mel(model_rate_signal(mono, sample_rate, b.mel.sample_rate), b.mel)  # the scorer's front-end exactly
        norm = self._normalize(mel)
        score = self._score(norm)
        raw_db = np.zeros(mel.shape)  # float64 zeros (identity options); np.zeros maps them lazily, no pages touched
        if not options.is_identity:
            style = self.style(mel=norm[None])[0][0]
            emo = target_embedding(score.embedding, centroid, options.intensity)
            probe = options if options.method != "direction" else replace(options, guidance=None)  # direction: unit multiplier
            model_fn = self._model_fn if options.contrast == "uncond" else self._contrast_fn(self.mean_centroid)
            edited = edit_mel(model_fn, norm, emo, style, probe, self.spec, self.chunking.denoise)
            edited -= norm  # the edit, normalised units (float32, as before)
            raw_db = edited.astype(np.float64)
            del edited
            raw_db *= b.norm_std[:, None]
            raw_db *= NATS_TO_DB  # dB per unit multiplier
        del norm
        return EditPlan(src=src, mono=mono, sample_rate=int(sample_rate), mel=mel, target=target,
                        scores_before=score.scores, raw_db=raw_db, region=edit_region(mel, b.mel, sample_rate), settings=b.mel)

    def target_probability(self, plan: EditPlan, options: EditOptions, amounts: Iterable[float]) -> np.ndarray:
        """The SER's probability of ``plan.target`` (a mix: the weighted sum of its emotions'),
        ``(len(amounts),)`` float64, after the calibrated edit at each of ``amounts`` (dB; 0: the
        source). It reads the model-grid log-mel plus the gain, as ``scores_before`` reads the
        source: no audio is rendered. Used to choose a clip's amount (docs/eval/adaptive/)."""
        self.check_options(options)
        mix = parse_emotion_mix(plan.target, self.bundle.labels)
        out = []
        for a in amounts:
            gain, _, _ = self._edit_gain(plan, replace(options, amount_db=float(a), guidance=None))
            mel = plan.mel if gain is None else plan.mel + gain
            scores = self._score(self._normalize(mel)).scores
            out.append(sum(w * scores[k] for k, w in mix.items()))
        return np.asarray(out, np.float64)

    def _score(self, norm: np.ndarray) -> Score:
        """SER scores of a normalised mel (see :meth:`_score_blocks`)."""
        return self._score_blocks([norm], norm.shape[1])

    def _score_blocks(self, blocks: Iterable[np.ndarray], frames: int, normalize: bool = False) -> Score:
        """SER scores of a mel of ``frames`` frames given as consecutive ``(n_mels, k)`` blocks
        (``normalize``: raw log-mel blocks, z-scored here). Up to ``chunking.score_frames``: one
        pass over the whole mel; longer: equal windows of at most that length, their
        probabilities and embeddings averaged weighted by length (see :class:`Chunking`). Only
        one window is held at a time, so a stream of blocks is never gathered whole."""
        limit = self.chunking.score_frames
        n = 1 if limit is None or frames <= limit else -(-frames // limit)
        bounds = [round(i * frames / n) for i in range(n + 1)]
        labels = self.bundle.labels
        n_mels = self.bundle.mel.n_mels
        probs, emb = 0.0, 0.0
        single = None
        w, filled = 0, 0
        window = np.empty((n_mels, bounds[1]), np.float32)
        for blk in blocks:
            if normalize:
                blk = self.bundle.normalize(blk)
            i = 0
            while i < blk.shape[1]:
                take = min(blk.shape[1] - i, window.shape[1] - filled)
                window[:, filled : filled + take] = blk[:, i : i + take]
                filled += take
                i += take
                if filled == window.shape[1]:
                    sc = self.scorer.score_mels([window])[0]
                    if n == 1:
                        single = sc
                    else:
                        share = window.shape[1] / frames
                        probs = probs + share * np.array([sc.scores[k] for k in labels])
                        emb = emb + share * sc.embedding.astype(np.float64)
                    w, filled = w + 1, 0
                    if w < n:
                        window = np.empty((n_mels, bounds[w + 1] - bounds[w]), np.float32)
        if w != n:
            raise ValueError(f"mel blocks hold {bounds[w] + filled} frames, expected {frames}")
        return single if single is not None else Score.of(labels, probs, np.asarray(emb, np.float32))

    def render(self, plan: EditPlan, options: EditOptions, vocoder: str = "gain", keep_channels: bool = False) -> tuple[np.ndarray, np.ndarray, float, float]:
        """Audio for ``plan`` at ``options``' size -> ``(wav, gain_nats, change_db, multiplier)``."""
        _check_vocoder(vocoder, keep_channels)
        gain, change, k = self._edit_gain(plan, options)
        src = plan.src if keep_channels and plan.src.ndim == 2 else plan.mono
        if gain is None:
            return src.astype(np.float32), np.zeros_like(plan.mel), 0.0, 0.0
        if vocoder == "gain":
            return self._apply_gain(src, plan.sample_rate, gain, plan.high_band), gain, change, k
        return self._griffin_lim(plan, gain), gain, change, k

    def _edit_gain(self, plan: EditPlan, options: EditOptions, report: dict | None = None) -> tuple[np.ndarray | None, float, float]:
        """The calibrated gain of ``plan`` at ``options``: ``(gain_nats float32 (n_mels, frames),
        change_db, multiplier)``; gain None for identity options or a zero edit. With
        ``options.subspace`` K the raw edit is first projected onto the edit basis's first K rows
        (:func:`~emort.runtime.editing.project_edit`), then ``options.part`` of it is kept
        (:func:`~emort.runtime.editing.edit_part`), then it is smoothed and calibrated."""
        b = self.bundle
        if options.is_identity or not np.any(plan.raw_db):
            return None, 0.0, 0.0
        raw = plan.raw_db
        if options.subspace:
            raw = project_edit(raw, self._basis(options.subspace))
        if options.part != "full":
            raw = edit_part(raw, plan.region, options.part)
        if options.smooth_s > 0:
            raw = smooth_edit(raw, plan.region, options.smooth_s * b.mel.frames_per_second)
        if options.smooth_bands > 1:  # along the bands (numpy: the runtime installs no scipy)
            raw = moving_mean(raw.T, int(options.smooth_bands)).T
        if options.calibrated:
            k = calibrate(raw, plan.region, options.amount_db, options.max_band_db)
        else:  # expert override: the raw scale (already inside the edit for samplers)
            k = 1.0 if options.method != "direction" else float(options.guidance)
        # clip(k x raw, +-max_band_db) x region, a block of frames at a time (no whole-clip float64 copies)
        gain = np.empty(raw.shape, np.float32)
        change = 0.0
        for a in range(0, raw.shape[1], LOG_MEL_BLOCK_FRAMES):
            sl = slice(a, a + LOG_MEL_BLOCK_FRAMES)
            gain_db = np.clip(k * raw[:, sl], -options.max_band_db, options.max_band_db) * plan.region[:, sl]
            change += float(np.abs(gain_db).sum())
            gain[:, sl] = gain_db / NATS_TO_DB
        total = float(plan.region.sum())
        change = change / total if total > 0 else 0.0
        if report is not None and options.calibrated and k > 0 and change < 0.95 * options.amount_db:
            # short of the amount: what the largest band cap would reach tells the cap from a weak edit
            report["at_max_cap"] = min(options.amount_db, capped_change(raw, plan.region, calibrate(raw, plan.region, options.amount_db, MAX_BAND_DB), MAX_BAND_DB))
        return gain, change, float(k)

    def _basis(self, k: int) -> np.ndarray:
        """The first ``k`` rows of the bundle's edit basis; EmortError (one line) where the bundle
        carries none or fewer."""
        basis = self.bundle.edit_basis
        if basis is None:
            raise EmortError(f"{self.bundle.path}: subspace {k} needs the bundle's edit basis (`emort export edit-basis`)")
        if k > len(basis):
            raise EmortError(f"subspace must be at most {len(basis)} (the components {self.bundle.path} carries), got {k}")
        return basis[:k]

    def _apply_gain(self, src: np.ndarray, sample_rate: int, gain: np.ndarray, hold_top: bool = True) -> np.ndarray:
        """The "gain" vocoder: ``src`` (input rate, mono or channels) without its DC offset, the band
        gain applied at its own rate, peaks limited; block by block for long inputs (see
        :class:`Chunking`), each block with enough context that it equals the whole-clip result.
        ``hold_top``: carry the top band's gain above ``fmax`` (:attr:`EditPlan.high_band`)."""
        b = self.bundle
        n = src.shape[0]
        offset = dc_offset(src)  # the whole clip's: an edited file does not carry the input's DC on
        window, hop = band_gain_stft(sample_rate, b.mel)
        block_s = self.chunking.render_s
        block = n if block_s is None else max(hop, int(round(block_s * sample_rate / hop)) * hop)
        # context each side: one STFT window (its slices reach the block), the limiter's reach
        margin = -(-(window + limiter_reach(sample_rate)) // hop) * hop
        if n <= block + 2 * margin:
            return limit_peaks(apply_band_gain(np.subtract(src, offset, dtype=np.float32), sample_rate, gain, b.mel,
                                               hold_top=hold_top), sample_rate)
        out = np.empty(src.shape, np.float32)
        for a in range(0, n, block):  # blocks start at multiples of the hop: the same STFT slices as the whole
            c = min(n, a + block)
            lo, hi = max(0, a - margin), min(n, c + margin)
            y = apply_band_gain(np.subtract(src[lo:hi], offset, dtype=np.float32), sample_rate, gain, b.mel, offset=lo, hold_top=hold_top)
            out[a:c] = limit_peaks(y, sample_rate)[a - lo : c - lo]
        return out

    def _griffin_lim(self, plan: EditPlan, gain: np.ndarray) -> np.ndarray:
        """Griffin-Lim at the model rate from the source phase, resampled back (for comparison; whole clip)."""
        b = self.bundle
        spec = stft(plan.model_wav, b.mel)
        z = griffin_lim(mel_to_magnitude(plan.mel + gain, b.mel), b.mel, n_iter=32, init_phase=np.angle(spec), length=len(plan.model_wav))
        y = resample(z, b.mel.sample_rate, plan.sample_rate)[: len(plan.mono)]
        y = np.pad(y, (0, len(plan.mono) - len(y)))
        return limit_peaks(y, plan.sample_rate)

    def _output_mel_blocks(self, y: np.ndarray, sample_rate: int) -> tuple[Iterator[np.ndarray], int]:
        """Model-rate log-mel of an output through the scorer's front-end (DC offset removed, as for
        ``scores_before`` and ``emort score``: an unedited output scores as its input) as a
        stream of blocks, and its number of frames; streamed through the resampler for long
        outputs so neither the model-rate signal nor its whole mel is held."""
        b = self.bundle
        mono = to_mono(y)
        block_s = self.chunking.render_s
        if block_s is None or mono.shape[0] <= 60 * sample_rate:  # the plan's own front-end, exactly (a minute: ~5 MB)
            mel = log_mel(model_rate_signal(mono, sample_rate, b.mel.sample_rate), b.mel)
            return iter([mel]), mel.shape[1]
        # long outputs: streamed, the offset removed before resampling as model_rate_signal does (not the
        # small residual after it: the same to ~1e-8)
        n = resampled_length(mono.shape[0], sample_rate, b.mel.sample_rate)
        block = max(1, int(round(block_s * sample_rate)))
        pieces = resample_pieces(mono, sample_rate, b.mel.sample_rate, block, offset=dc_offset(mono))
        return log_mel_blocks(pieces, b.mel), num_frames(n, b.mel)

    def _normalize(self, mel: np.ndarray) -> np.ndarray:
        """``bundle.normalize(mel)`` a block of frames at a time: each column is z-scored alone,
        so the values are the same, without the whole-clip temporaries."""
        out = np.empty_like(mel, dtype=np.float32)
        step = LOG_MEL_BLOCK_FRAMES
        for a in range(0, mel.shape[1], step):
            out[:, a : a + step] = self.bundle.normalize(mel[:, a : a + step])
        return out

    def enhance(
        self,
        wav: np.ndarray,
        sample_rate: int,
        emotion: str,
        options: EditOptions | None = None,
        vocoder: str = "gain",
        score_output: bool = False,
        keep_channels: bool = False,
        speaker_prosody: SpeakerProsody | None = None,
        clip_stats: dict[str, float] | None = None,
        prosody_edit: ProsodyEdit | None = None,
        **overrides,
    ) -> Enhanced:
        """Enhance one clip toward ``emotion`` (a name or a mix ``"angry:0.7,sad:0.3"``).

        ``wav``: ``(num_samples,)`` or ``(num_samples, channels)``, any PCM dtype, at
        ``sample_rate`` Hz (8 kHz and up). The edit is computed on the model's 22,050 Hz log-mel and
        applied as a mel-band gain to the input's own STFT at its own rate, so the output keeps
        the input's rate and length (mono, or the input's channels with ``keep_channels``: the gain
        vocoder only; ``griffinlim`` rebuilds one mono signal and refuses it);
        identity options (``strength`` 0, ``amount_db`` 0, ``guidance`` 0) return the input
        samples unchanged. With ``prosody=True`` the F0 level, F0 range, tempo and level are moved first
        (:mod:`emort.runtime.prosody`; ``pitch``, ``pitch_range``, ``tempo``, ``loudness``, ``prosody_renderer``):
        the output is then mono, ``round(len / Enhanced.prosody.tempo)`` samples long;
        ``speaker_prosody`` (:func:`emort.runtime.prosody.speaker_prosody` of the speaker's clips)
        aims the F0 change at that speaker's own target level (:func:`plan_prosody`; only with
        ``prosody``); ``clip_stats``: this clip's :func:`emort.runtime.prosody.clip_prosody`,
        when the caller has it (else computed here); ``prosody_edit``: apply this change as it
        is instead of planning one (a caller's own plan, shares applied; only with ``prosody``).
        ``options`` or keyword overrides (``amount_db``, ``guidance``, ``max_band_db``,
        ``strength``, ``steps``, ``method``, ``intensity``, ``seed``, ``subspace``, and the prosody ones)
        select the edit; the rest come from the bundle. Overrides switching ``prosody`` on
        without an amount take the bundle's ``prosody_amount_db`` (conversions need a larger
        spectral edit); ``options`` is taken as it is, apart from its overrides
        (:meth:`EditOptions.with_overrides`). Raises AudioError subclasses for unusable
        audio, LabelError for an unknown emotion, EmortError for bad options.
        """
        t_start = time.perf_counter()
        sample_rate = check_sample_rate(sample_rate)
        if options is None:
            options = self.options(**overrides)
        elif overrides:
            options = options.with_overrides(**overrides)
        self.check_options(options)
        _check_vocoder(vocoder, keep_channels)
        pros, scores_source = None, None
        if (speaker_prosody is not None or clip_stats is not None or prosody_edit is not None) and not options.prosody:
            raise EmortError("speaker_prosody / clip_stats / prosody_edit plan the prosody stage: pass prosody=True")
        if options.prosody:
            n_in = len(wav)
            wav, pros, scores_source = self._prosody(wav, sample_rate, emotion, options, speaker_prosody, clip_stats, prosody_edit)
            keep_channels = False
            if len(wav) < MIN_DURATION_S * sample_rate <= n_in:  # else plan() says "shorter than 50 ms" of a longer input
                # to a tenth of a millisecond: "50 ms becomes 50 ms, shorter than 50 ms" read as a contradiction (a new user)
                raise EmptyAudioError(f"audio: {1000 * n_in / sample_rate:.1f} ms becomes {1000 * len(wav) / sample_rate:.1f} ms "
                                      f"at the prosody's tempo, shorter than {1000 * MIN_DURATION_S:.0f} ms (lower --tempo, or 0 to keep it)")
            if len(wav) > MAX_DURATION_S * sample_rate >= n_in:  # else plan() blames the input for the tempo's stretch
                raise TooLongAudioError(f"audio: {n_in / sample_rate:.1f} s becomes {len(wav) / sample_rate:.1f} s at the prosody's "
                                        f"tempo, longer than {MAX_DURATION_S:.0f} s; split it first, or lower --tempo")
        plan = self.plan(wav, sample_rate, emotion, options)
        shortfall: dict = {}
        gain, change, k = self._edit_gain(plan, options, shortfall)
        source_mel, target, scores_before, rate = plan.mel, plan.target, plan.scores_before, plan.sample_rate
        if scores_source is not None:
            scores_before = scores_source
        src = plan.src if keep_channels and plan.src.ndim == 2 else plan.mono
        if gain is None:
            y, mel = src.astype(np.float32), source_mel.astype(np.float32)
            if pros is not None and not pros.is_identity:
                y = limit_peaks(y, rate)
        elif vocoder == "gain":
            hold_top = plan.high_band
            del plan  # the raw edit and region are not needed past here (a 10-minute clip's: 66 MB)
            y = self._apply_gain(src, rate, gain, hold_top)
            mel = source_mel + gain  # float32 + float32: one new array
        else:
            mel = source_mel + gain  # float32 + float32: one new array
            y = self._griffin_lim(plan, gain)
            del plan
        del gain
        after = None
        if score_output:
            after = self._score_blocks(*self._output_mel_blocks(y, rate), normalize=True).scores
        return Enhanced(
            wav=np.asarray(y, np.float32),
            sample_rate=rate,
            emotion=target,
            options=options,
            scores_before=scores_before,
            scores_after=after,
            change_db=change,
            change_db_at_max_cap=shortfall.get("at_max_cap"),
            guidance=k,
            seconds=time.perf_counter() - t_start,
            source_mel=source_mel,
            mel=mel,
            prosody=pros,
        )

    def conditioning_score(self, wav: np.ndarray, sample_rate: int) -> Score:
        """The reading of the SER that conditions the edit (the bundle's ``ser``, not the scorer's
        single-clip reading): probabilities and embedding ``(embedding_dim,)`` of a clip (any PCM
        dtype, mono or ``(num_samples, channels)``, 8 kHz and up). Raises AudioError subclasses for
        unusable audio."""
        return self._score(self._normalize(self._mono_and_mel(wav, sample_rate)[1]))

    def speaker_clip(self, wav: np.ndarray, sample_rate: int) -> tuple[dict[str, float] | None, dict[str, float]]:
        """What :func:`emort.runtime.prosody.speaker_prosody` needs of one of a speaker's clips:
        ``(clip_prosody(...) or None, the SER scores that enhance's prosody stage uses)``.
        ``wav``: any PCM dtype, mono or ``(num_samples, channels)``, at ``sample_rate`` Hz.
        Raises AudioError subclasses for unusable audio."""
        mono, _, scores = self._prosody_source(wav, sample_rate)
        return clip_prosody(mono, sample_rate, self.bundle.mel), scores

    def _mono_and_mel(self, wav: np.ndarray, sample_rate: int) -> tuple[np.ndarray, np.ndarray]:
        """``(mono float32, its log-mel on the model grid)`` of a checked input. Raises AudioError
        subclasses for unusable audio."""
        sample_rate = check_sample_rate(sample_rate)
        mono = to_mono(to_float(wav))
        validate_samples(mono, sample_rate)
        return mono, log_mel(model_rate_signal(mono, sample_rate, self.bundle.mel.sample_rate), self.bundle.mel)

    def _prosody_source(self, wav: np.ndarray, sample_rate: int) -> tuple[np.ndarray, np.ndarray, dict[str, float]]:
        """The input as the prosody stage reads it: ``(mono float32, its log-mel on the model grid,
        its SER scores)``. Raises AudioError subclasses for unusable audio."""
        mono, mel = self._mono_and_mel(wav, sample_rate)
        return mono, mel, self._score(self._normalize(mel)).scores

    def _prosody(self, wav: np.ndarray, sample_rate: int, emotion: str, options: EditOptions,
                 speaker: SpeakerProsody | None = None, clip: dict[str, float] | None = None,
                 planned: ProsodyEdit | None = None) -> tuple[np.ndarray, ProsodyEdit, dict[str, float]]:
        """The prosody stage of :meth:`enhance`: ``(mono float32 with its F0 level / range and tempo
        changed, the change, the input's SER scores)``. The change is the target's prosody minus
        the prosody the SER posterior expects of the input (:func:`plan_prosody`), so an input
        already heard as the target changes little."""
        b = self.bundle
        check_available(options.prosody_renderer, b)  # the table, and the renderer's library
        mono, mel, scores = self._prosody_source(wav, sample_rate)
        mix = parse_emotion_mix(emotion, b.labels)
        if speaker is not None and clip is None:  # the clip's own F0 level, to aim at the speaker's target
            clip = clip_prosody(mono, sample_rate, b.mel)
        edit = planned.validate() if planned is not None else plan_prosody(b.prosody, mix, scores, options.prosody_options, clip, speaker)
        if edit.is_identity:
            return mono, edit, scores
        centred = np.subtract(mono, dc_offset(mono), dtype=np.float32)
        edit, contour = range_to_render(centred, sample_rate, edit, options.prosody_renderer, b.mel)  # what is applied
        if edit.is_identity:
            return mono, edit, scores
        return render_prosody(centred, sample_rate, edit, options.prosody_renderer, b.mel, source_mel=mel, contour=contour), edit, scores
