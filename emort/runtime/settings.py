"""The one definition of audio/mel settings and emotion labels.

Training writes these into every checkpoint and bundle; the runtime reads them
back from the bundle manifest, so the two sides never guess (MISSION.md,
"Pipeline" step 1).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from emort.runtime.errors import LabelError

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


@dataclass(frozen=True)
class MelSettings:
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

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> MelSettings:
        known = {k: d[k] for k in cls.__dataclass_fields__ if k in d}
        return cls(**known)


DEFAULT_MEL = MelSettings()
