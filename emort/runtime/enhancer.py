"""Emotion enhancement on the runtime: front-end -> SER embedding -> guided diffusion edit -> audio."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from emort.runtime.audio import prepare
from emort.runtime.bundle import Bundle, load_bundle
from emort.runtime.editing import EditOptions, edit_mel, target_embedding
from emort.runtime.frontend import apply_mel_gain, griffin_lim, log_mel, mel_to_magnitude, stft
from emort.runtime.scorer import Scorer
from emort.runtime.session import announce_device, load_model, resolve_device
from emort.runtime.settings import canonical_emotion

VOCODERS = ("gain", "griffinlim")


@dataclass(frozen=True)
class Enhanced:
    """Result of one enhancement. ``wav``: float32 ``(num_samples,)`` at ``sample_rate``."""

    wav: np.ndarray
    sample_rate: int
    source_mel: np.ndarray  # log-mel (n_mels, frames)
    mel: np.ndarray  # enhanced log-mel (n_mels, frames)
    emotion: str
    source_scores: dict[str, float]  # SER probabilities of the source clip


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
        d = bundle.defaults
        self.defaults = EditOptions(**{k: d[k] for k in EditOptions.__dataclass_fields__ if k in d})

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
        """The bundle's default options with per-call overrides (None = default)."""
        unknown = set(overrides) - set(EditOptions.__dataclass_fields__)
        if unknown:
            from emort.runtime.errors import EmortError

            raise EmortError(f"unknown option(s) {', '.join(sorted(unknown))}; options: {', '.join(EditOptions.__dataclass_fields__)}")
        opts = replace(self.defaults, **{k: v for k, v in overrides.items() if v is not None})
        opts.validate()
        return opts

    def _model_fn(self, x, t, emotion, emotion_mask, style):
        return self.denoiser(x=x, t=t, emotion=emotion, emotion_mask=emotion_mask, style=style)[0]

    def enhance_mel(self, wav: np.ndarray, emotion: str, options: EditOptions, vocoder: str = "gain") -> Enhanced:
        """``wav`` at the bundle rate -> :class:`Enhanced`."""
        b = self.bundle
        if vocoder not in VOCODERS:
            from emort.runtime.errors import EmortError

            raise EmortError(f"unknown vocoder {vocoder!r}; choose one of {', '.join(VOCODERS)}")
        target = canonical_emotion(emotion, b.labels)
        mel = log_mel(wav, b.mel)
        src = b.normalize(mel)
        score = self.scorer.score_mels([src])[0]
        style = self.style(mel=src[None])[0][0]
        emo = target_embedding(score.embedding, b.centroids[target], options.intensity)
        out = edit_mel(self._model_fn, src, emo, style, options, b.schedule, b.prediction, b.stride, max_batch=b.shapes.batch[2])
        out_mel = b.denormalize(out)
        if vocoder == "gain":
            y = apply_mel_gain(wav, mel, out_mel, b.mel)
        elif vocoder == "griffinlim":
            spec = stft(wav, b.mel)
            y = griffin_lim(mel_to_magnitude(out_mel, b.mel), b.mel, n_iter=32, init_phase=np.angle(spec), length=len(wav))
        else:
            from emort.runtime.errors import EmortError

            raise EmortError(f"unknown vocoder {vocoder!r}; choose one of {', '.join(VOCODERS)}")
        peak = float(np.max(np.abs(y))) if y.size else 0.0
        if peak > 0.999:  # a gain edit can push peaks over full scale; scale rather than clip
            y = y * (0.999 / peak)
        return Enhanced(wav=y.astype(np.float32), sample_rate=b.mel.sample_rate, source_mel=mel, mel=out_mel, emotion=target, source_scores=score.scores)

    def enhance(self, wav: np.ndarray, sample_rate: int, emotion: str, vocoder: str = "gain", **options) -> tuple[np.ndarray, int]:
        """Enhance one clip (any rate, mono or ``(samples, channels)``) -> ``(wav, sample_rate)``.

        Options: ``strength``, ``guidance``, ``steps``, ``sampler``, ``intensity``, ``seed``.
        """
        x = prepare(wav, sample_rate, self.bundle.mel.sample_rate)
        r = self.enhance_mel(x, emotion, self.options(**options), vocoder)
        return r.wav, r.sample_rate
