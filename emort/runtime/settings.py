"""The one definition of audio/mel settings and emotion labels.

Training writes these into every checkpoint and bundle; the runtime reads them
back from the bundle manifest, so the two sides never guess (docs/design.md,
"The enhancement pipeline", step 1).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from emort.runtime.errors import LabelError

T = TypeVar("T")


def dataclass_from_dict(cls: type[T], d: Mapping[str, Any]) -> T:
    """``cls(**d)`` with only the keys that are init fields of the dataclass ``cls``.

    Unknown keys are ignored, so a manifest or run config written by a newer emort (or
    carrying a field since removed) still loads; missing keys take the field defaults.
    Wrong types are not checked here.
    """
    names = {f.name for f in dataclasses.fields(cls) if f.init}  # type: ignore[arg-type]
    return cls(**{k: v for k, v in d.items() if k in names})


class DictConvertible:
    """Mixin for config dataclasses: ``to_dict()`` is ``dataclasses.asdict`` and
    ``from_dict(d)`` is :func:`dataclass_from_dict`, the one way configs round-trip
    through JSON (manifests, run folders)."""

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)  # type: ignore[call-overload]

    @classmethod
    def from_dict(cls: type[T], d: Mapping[str, Any]) -> T:
        return dataclass_from_dict(cls, d)

#: The six emotions EmoDB and RAVDESS share, in model-output order.
EMOTIONS: tuple[str, ...] = ("neutral", "happy", "sad", "angry", "fear", "disgust")

#: Common spellings users type -> canonical name.
EMOTION_ALIASES: dict[str, str] = {
    "neutral": "neutral",
    "happy": "happy",
    "happiness": "happy",
    "joy": "happy",
    "sad": "sad",
    "sadness": "sad",
    "angry": "angry",
    "anger": "angry",
    "fear": "fear",
    "fearful": "fear",
    "afraid": "fear",
    "disgust": "disgust",
    "disgusted": "disgust",
}


def canonical_emotion(name: str, labels: tuple[str, ...] | list[str] = EMOTIONS) -> str:
    """Map a user-typed emotion to its canonical name; raise LabelError if unknown."""
    key = name.strip().lower()
    canon = EMOTION_ALIASES.get(key, key)
    if canon not in labels:
        raise LabelError(
            f"unknown emotion {name!r}; choose one of: {', '.join(labels)}"
            " (aliases: anger, happiness, sadness, fearful)"
        )
    return canon


def parse_emotion_mix(spec: str | Mapping[str, float], labels: tuple[str, ...] | list[str] = EMOTIONS) -> dict[str, float]:
    """``"angry"`` or a mix ``"angry:0.7,sad:0.3"`` (or ``{"angry": 0.7, "sad": 0.3}``) -> canonical
    names with weights summing to 1. Raises LabelError for any other type.

    Weights are relative (``angry:2,sad:1`` is ``angry:0.67,sad:0.33``); a name without a
    weight counts 1. The result is in ``labels`` order, so two spellings of one mix
    (``sad:1,angry:2`` and ``angry:2,sad:1``) are one target (one output folder, one record).
    Raises LabelError for an unknown name, a weight that is missing after ``:``, not a number,
    negative, zero (a new user's mix ``angry:0.7,sad:0`` lost ``sad`` without a word: leave it out),
    below 0.005 of the total (it would round to 0.00 in the target's name) or too large to add up,
    a name given twice, or weights that sum to zero.
    """
    if isinstance(spec, Mapping):  # {"angry": 0.7, "sad": 0.3}: the mix as a dict, each weight a number
        pairs = []
        for name, w in spec.items():
            if not isinstance(name, str) or isinstance(w, bool) or not isinstance(w, (int, float)):
                raise LabelError(f"emotion mix {dict(spec)!r}: give each emotion's name and a number as its weight")
            pairs.append((name, float(w)))
    elif isinstance(spec, str):
        pairs = []
        for part in (p for p in spec.split(",") if p.strip()):
            name, colon, w = part.partition(":")
            if colon and not w.strip():
                raise LabelError(f"emotion mix {spec!r}: the weight of {name.strip()!r} is missing after ':' (give a number, or no ':')")
            try:
                pairs.append((name, float(w) if w.strip() else 1.0))
            except ValueError:
                raise LabelError(f"emotion mix {spec!r}: weight {w!r} of {name.strip()!r} is not a number") from None
    else:
        raise LabelError(f"emotion must be a name or a mix such as 'angry:0.7,sad:0.3' (or a dict of weights), "
                         f"not {type(spec).__name__} {spec!r}")
    if not pairs:
        raise LabelError(f"no emotion given; choose one of: {', '.join(labels)}")
    weights: dict[str, float] = {}
    for name, val in pairs:
        canon = canonical_emotion(name, labels)
        if not val >= 0.0 or val == float("inf"):
            raise LabelError(f"emotion mix {spec!r}: weights must be finite and >= 0")
        if val == 0.0 and len(pairs) > 1:
            raise LabelError(f"emotion mix {spec!r}: {canon} has weight 0; leave it out of the mix")
        if canon in weights:
            raise LabelError(f"emotion mix {spec!r}: {canon} is given twice")
        weights[canon] = val
    total = sum(weights.values())
    if total <= 0:
        raise LabelError(f"emotion mix {spec!r}: the weights sum to zero")
    if not math.isfinite(total):
        raise LabelError(f"emotion mix {spec!r}: the weights are too large to add up; give them as shares (e.g. 0.7 and 0.3)")
    order = {k: i for i, k in enumerate(labels)}
    mix = {k: weights[k] / total for k in sorted(weights, key=lambda k: order.get(k, len(order))) if weights[k] > 0}
    # a mix's weights are kept to two decimals (format_emotion_mix): one below 0.005 of the total would
    # vanish from the target without a word (0.31's Python API took angry:0.001,sad:1 as sad:1.00,angry:0.00)
    lost = [k for k, w in mix.items() if len(mix) > 1 and f"{w:.2f}" == "0.00"]
    if lost:
        raise LabelError(f"emotion mix {spec!r}: the weight of {', '.join(lost)} ({', '.join(f'{mix[k]:.4f}' for k in lost)} of the "
                         "total) rounds to 0.00 (weights are kept to two decimals); give it at least 0.005 of the total, or leave it out")
    return mix


def format_emotion_mix(weights: dict[str, float]) -> str:
    """Inverse of :func:`parse_emotion_mix`: ``"angry"`` or ``"sad:0.30,angry:0.70"``."""
    if len(weights) == 1:
        return next(iter(weights))
    return ",".join(f"{k}:{v:.2f}" for k, v in weights.items())


@dataclass(frozen=True)
class MelSettings(DictConvertible):
    """Log-mel front-end settings (paper section 4: 22,050 Hz, 1024/256, 80 mels).

    ``log_mel = log(max(mel_filterbank @ |STFT|, log_floor))`` with a periodic
    Hann window, centred frames and zero padding (librosa's defaults).
    """

    sample_rate: int = 22050
    n_fft: int = 1024
    win_length: int = 1024
    hop_length: int = 256
    n_mels: int = 80
    fmin_hz: float = 0.0
    # EmoDB is recorded at 16 kHz: nothing lives above 8 kHz in half the data.
    fmax_hz: float = 8000.0
    log_floor: float = 1e-5
    power: float = 1.0  # magnitude mel

    @property
    def frames_per_second(self) -> float:
        return self.sample_rate / self.hop_length


DEFAULT_MEL = MelSettings()


@dataclass(frozen=True)
class VoiceSettings(DictConvertible):
    """Front end of the GE2E voice encoder (``voice_encoder`` graph; ``emort.runtime.voice``).

    The values of the encoder's training (Resemblyzer's ``hparams``; the encoder of "Generalized
    End-to-End Loss for Speaker Verification", Wan et al., ICASSP 2018): 16 kHz audio brought to
    ``target_dbfs`` RMS, 40-band power mel of 25 ms Hann windows every 10 ms (Slaney filters,
    centred frames, zero padding: librosa's defaults), cut into partial windows of
    ``partial_frames`` frames, ``partial_rate`` per second; the last one is kept when at least
    ``min_coverage`` of it lies inside the clip. ``partial_rate`` 0.625 (since embedding version 3:
    windows that touch without overlapping, Resemblyzer's lowest rate; its default 1.3 overlaps them
    by half) reads 41% fewer windows at the same validation accuracy
    (docs/ser/ge2e/PREREGISTRATION_windows.md).
    """

    sample_rate: int = 16000
    n_fft: int = 400
    hop_length: int = 160
    n_mels: int = 40
    partial_frames: int = 160
    partial_rate: float = 0.625
    min_coverage: float = 0.75
    target_dbfs: float = -30.0

    @property
    def mel(self) -> MelSettings:
        """The power-mel settings of the front end."""
        return MelSettings(sample_rate=self.sample_rate, n_fft=self.n_fft, win_length=self.n_fft,
                           hop_length=self.hop_length, n_mels=self.n_mels, fmin_hz=0.0,
                           fmax_hz=self.sample_rate / 2, power=2.0)
