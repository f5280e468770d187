"""Emotion enhancement on the runtime: front-end -> SER embedding -> calibrated diffusion edit -> audio at the input rate."""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from emort.runtime.audio import (
    limit_peaks,
    remove_dc,
    resample,
    to_float,
    to_mono,
    validate_samples,
)
from emort.runtime.bundle import Bundle, load_bundle
from emort.runtime.editing import (
    SAMPLER_GUIDANCE,
    DiffusionSpec,
    EditOptions,
    calibrate,
    edit_mel,
    smooth_edit,
    target_embedding,
)
from emort.runtime.errors import EmortError, EmptyAudioError
from emort.runtime.frontend import (
    NATS_TO_DB,
    apply_band_gain,
    edit_region,
    griffin_lim,
    log_mel,
    mel_to_magnitude,
    stft,
)
from emort.runtime.scorer import Scorer
from emort.runtime.session import announce_device, load_model, resolve_device
from emort.runtime.settings import format_emotion_mix, parse_emotion_mix

VOCODERS = ("gain", "griffinlim")


@dataclass(frozen=True)
class Enhanced:
    """Result of one enhancement.

    ``wav``: float32 ``(num_samples,)`` (or ``(num_samples, channels)`` with
    ``keep_channels``) at ``sample_rate``, the input's own rate, same length as the input.
    ``change_db``: the mean absolute log-mel change applied over the clip's active, in-band
    region, dB of mel-band magnitude; ``guidance``: the multiplier that produced it.
    """

    wav: np.ndarray
    sample_rate: int
    emotion: str  # canonical target: "angry" or a mix "angry:0.70,sad:0.30"
    options: EditOptions
    scores_before: dict[str, float]  # SER probabilities of the source
    scores_after: dict[str, float] | None  # of the output (``score_output=True``)
    change_db: float
    guidance: float
    seconds: float
    source_mel: np.ndarray  # model-rate log-mel (n_mels, frames)
    mel: np.ndarray  # edited log-mel (n_mels, frames)

    @property
    def source_scores(self) -> dict[str, float]:  # the 0.4 name
        return self.scores_before

    def report(self) -> dict:
        """What a JSON report says of this result."""
        return {
            "emotion": self.emotion,
            "sample_rate": self.sample_rate,
            "change_db": round(self.change_db, 4),
            "guidance": round(self.guidance, 4),
            "seconds": round(self.seconds, 4),
            "scores_before": self.scores_before,
            "scores_after": self.scores_after,
            "options": self.options.to_dict(),
        }


@dataclass(frozen=True)
class EditPlan:
    """One clip's front-end, source scores and raw edit (see :meth:`Enhancer.plan`)."""

    src: np.ndarray  # float32 input as given, (samples,) or (samples, channels)
    mono: np.ndarray  # float32 (samples,) at sample_rate
    sample_rate: int
    model_wav: np.ndarray  # mono at the model rate
    mel: np.ndarray  # model-rate log-mel (n_mels, frames)
    target: str
    scores_before: dict[str, float]
    raw_db: np.ndarray  # (n_mels, frames) edit per unit multiplier, dB (zeros for identity options)
    region: np.ndarray  # (n_mels, frames) weights: active x in-band (see frontend.edit_region)


class Enhancer:
    """Moves an utterance toward a target emotion while keeping timing and content.

    ``Enhancer.load()`` uses the default bundle shipped with the package. Thread-safe:
    sessions are shared and all per-call state is local.
    """

    def __init__(self, bundle: Bundle, scorer: Scorer, style_model, denoiser_model, device: str = "cpu"):
        self.bundle = bundle
        self.scorer = scorer
        self.style = style_model
        self.denoiser = denoiser_model
        self.device = device
        self.defaults: EditOptions = bundle.defaults
        self.spec = DiffusionSpec(bundle.schedule, bundle.prediction, bundle.stride, bundle.shapes.batch[2])

    @classmethod
    def load(cls, bundle: str | Path | Bundle | None = None, device: str = "auto", threads: int | None = None, engine_dir: Path | None = None) -> Enhancer:
        b = bundle if isinstance(bundle, Bundle) else load_bundle(bundle)
        dev = resolve_device(device)
        announce_device(dev)
        if dev == "tensorrt" and engine_dir is None:
            from emort.runtime.trt import default_engine_dir

            engine_dir = default_engine_dir(b)
        scorer = Scorer(b, load_model(b.model_path("ser"), dev, threads, engine_dir, "ser", spin=False), dev)
        style = load_model(b.model_path("style"), dev, threads, engine_dir, "style", spin=False)
        den = load_model(b.model_path("denoiser"), dev, threads, engine_dir, "denoiser", spin=False)
        return cls(b, scorer, style, den, dev)

    def options(self, **overrides) -> EditOptions:
        """The bundle's default options with per-call overrides (None = default).

        ``guidance`` given: the raw multiplier replaces the calibrated ``amount_db``;
        ``amount_db`` given: calibrated, whatever the bundle's default guidance.
        """
        if "sampler" in overrides and "method" not in overrides:  # the 0.4 name
            overrides["method"] = overrides.pop("sampler")
        unknown = set(overrides) - set(EditOptions.__dataclass_fields__)
        if unknown:
            raise EmortError(f"unknown option(s) {', '.join(sorted(unknown))}; options: {', '.join(EditOptions.__dataclass_fields__)}")
        given = {k: v for k, v in overrides.items() if v is not None}
        if "amount_db" in given and "guidance" not in given:
            given["guidance"] = None
        opts = replace(self.defaults, **given)
        opts.validate()
        return opts

    def _model_fn(self, x, t, emotion, emotion_mask, style):
        return self.denoiser(x=x, t=t, emotion=emotion, emotion_mask=emotion_mask, style=style)[0]

    def target_centroid(self, emotion: str) -> tuple[str, np.ndarray]:
        """``"angry"`` or ``"angry:0.7,sad:0.3"`` -> (canonical name, weighted centroid embedding)."""
        mix = parse_emotion_mix(emotion, self.bundle.labels)
        c = sum(w * self.bundle.centroids[k].astype(np.float64) for k, w in mix.items())
        return format_emotion_mix(mix), np.asarray(c, np.float32)

    def plan(self, wav: np.ndarray, sample_rate: int, emotion: str, options: EditOptions) -> EditPlan:
        """The expensive half of :meth:`enhance`: front-end, SER and the model's raw edit.

        The edit is linear in its multiplier, so one plan renders any ``amount_db`` (or raw
        guidance) through :meth:`render` without running the model again (the evaluation's
        sweeps use this).
        """
        b = self.bundle
        options.validate()
        target, centroid = self.target_centroid(emotion)
        if sample_rate is None or sample_rate <= 0:
            raise EmptyAudioError(f"invalid sample rate {sample_rate}")
        src = to_float(wav)
        mono = to_mono(src)
        validate_samples(mono, sample_rate)
        # the scorer's front-end exactly: a DC offset would read as emotion and weaken the edit
        x = remove_dc(resample(mono, sample_rate, b.mel.sample_rate), b.mel.sample_rate)
        mel = log_mel(x, b.mel)
        norm = b.normalize(mel)
        score = self.scorer.score_mels([norm])[0]
        raw_db = np.zeros_like(mel, dtype=np.float64)
        if not options.is_identity:
            style = self.style(mel=norm[None])[0][0]
            emo = target_embedding(score.embedding, centroid, options.intensity)
            probe = options if options.method != "direction" else replace(options, guidance=None)  # direction: unit multiplier
            edited = edit_mel(self._model_fn, norm, emo, style, probe, self.spec)
            raw_db = (edited - norm).astype(np.float64) * b.norm_std[:, None] * NATS_TO_DB  # dB per unit multiplier
        return EditPlan(src=src, mono=mono, sample_rate=int(sample_rate), model_wav=x, mel=mel, target=target,
                        scores_before=score.scores, raw_db=raw_db, region=edit_region(mel, b.mel, sample_rate))

    def render(self, plan: EditPlan, options: EditOptions, vocoder: str = "gain", keep_channels: bool = False) -> tuple[np.ndarray, np.ndarray, float, float]:
        """Audio for ``plan`` at ``options``' size -> ``(wav, gain_nats, change_db, multiplier)``."""
        b = self.bundle
        if vocoder not in VOCODERS:
            raise EmortError(f"unknown vocoder {vocoder!r}; choose one of {', '.join(VOCODERS)}")
        out_src = plan.src if keep_channels and plan.src.ndim == 2 else plan.mono
        if options.is_identity or not np.any(plan.raw_db):
            return out_src.astype(np.float32), np.zeros_like(plan.mel), 0.0, 0.0
        out_src = remove_dc(out_src, plan.sample_rate)  # an edited file does not carry the input's DC on
        raw = plan.raw_db
        if options.smooth_s > 0:
            raw = smooth_edit(raw, plan.region, options.smooth_s * b.mel.frames_per_second)
        if options.smooth_bands > 1:
            from scipy.ndimage import uniform_filter1d

            raw = uniform_filter1d(raw, size=int(options.smooth_bands), axis=0, mode="nearest")
        if options.calibrated:
            k = calibrate(raw, plan.region, options.amount_db, options.max_band_db)
        else:  # expert override: the raw scale (already inside the edit for samplers)
            k = 1.0 if options.method != "direction" else float(options.guidance)
        gain_db = np.clip(k * raw, -options.max_band_db, options.max_band_db) * plan.region
        total = float(plan.region.sum())
        change = float(np.abs(gain_db).sum() / total) if total > 0 else 0.0
        gain = (gain_db / NATS_TO_DB).astype(np.float32)
        if options.method != "direction":
            k *= SAMPLER_GUIDANCE if options.guidance is None else options.guidance  # report the scale it ran at
        if vocoder == "gain":
            y = apply_band_gain(out_src, plan.sample_rate, gain, b.mel)
        else:  # Griffin-Lim at the model rate from the source phase, resampled back
            spec = stft(plan.model_wav, b.mel)
            z = griffin_lim(mel_to_magnitude(plan.mel + gain, b.mel), b.mel, n_iter=32, init_phase=np.angle(spec), length=len(plan.model_wav))
            y = resample(z, b.mel.sample_rate, plan.sample_rate)[: len(plan.mono)]
            y = np.pad(y, (0, len(plan.mono) - len(y)))
        return limit_peaks(y, plan.sample_rate), gain, change, float(k)

    def enhance(
        self,
        wav: np.ndarray,
        sample_rate: int,
        emotion: str,
        options: EditOptions | None = None,
        vocoder: str = "gain",
        score_output: bool = False,
        keep_channels: bool = False,
        **overrides,
    ) -> Enhanced:
        """Enhance one clip toward ``emotion`` (a name or a mix ``"angry:0.7,sad:0.3"``).

        ``wav``: ``(num_samples,)`` or ``(num_samples, channels)``, any PCM dtype, at
        ``sample_rate`` Hz (any rate). The edit is computed on the model's 22,050 Hz log-mel and
        applied as a mel-band gain to the input's own STFT at its own rate, so the output keeps
        the input's rate and length (mono, or the input's channels with ``keep_channels``);
        identity options (``strength`` 0, ``amount_db`` 0, ``guidance`` 0) return the input
        samples unchanged. ``options`` or keyword overrides (``amount_db``, ``guidance``,
        ``max_band_db``, ``strength``, ``steps``, ``method``, ``intensity``, ``seed``) select
        the edit; the rest come from the bundle. Raises AudioError subclasses for unusable
        audio, LabelError for an unknown emotion, EmortError for bad options.
        """
        t_start = time.perf_counter()
        if options is None:
            options = self.options(**overrides)
        elif overrides:
            options = replace(options, **{k: v for k, v in overrides.items() if v is not None})
        options.validate()
        plan = self.plan(wav, sample_rate, emotion, options)
        y, gain, change, k = self.render(plan, options, vocoder, keep_channels)
        after = None
        if score_output:
            b = self.bundle
            after = self.scorer.score_mels([b.normalize(log_mel(resample(to_mono(y), sample_rate, b.mel.sample_rate), b.mel))])[0].scores
        return Enhanced(
            wav=np.asarray(y, np.float32),
            sample_rate=plan.sample_rate,
            emotion=plan.target,
            options=options,
            scores_before=plan.scores_before,
            scores_after=after,
            change_db=change,
            guidance=k,
            seconds=time.perf_counter() - t_start,
            source_mel=plan.mel,
            mel=(plan.mel + gain).astype(np.float32),
        )
