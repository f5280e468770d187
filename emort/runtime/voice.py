"""GE2E voice embeddings on the runtime (numpy + onnxruntime): the per-speaker scorer's third input.

The encoder is the speaker-verification LSTM that the ``resemblyzer`` package ships (3 LSTM
layers of 256, a 256-d ReLU projection, L2-normalised; trained with the generalised end-to-end
loss of "Generalized End-to-End Loss for Speaker Verification", Wan et al., ICASSP 2018),
converted to ONNX by ``emort export voice`` (``voice_encoder`` graph). This module is its front
end and pooling, in numpy: Resemblyzer's ``embed_utterance`` windows (at ``rate=0.625``, its
lowest: windows that touch without overlapping), mel and pooling, on a signal prepared as the
enhancement evaluation's neural judge prepares it (``emort.evaluation.speaker_embedding``: soxr,
not librosa; the level normalised both ways; no voice-activity trimming), with the DC offset
removed first, as every analysis in emort does (``emort.runtime.audio.model_rate_signal``). A test
checks cosine >= 0.999 with Resemblyzer's embedding of the judge's input at that rate, on real
clips of the three corpora:

1. mono at 16 kHz (soxr), DC offset removed, RMS brought to -30 dBFS in both directions (a gain
   or an offset leaves the embedding unchanged; Resemblyzer's ``preprocess_wav`` only raises
   quiet clips);
2. partial windows of 160 frames (1.6 s), 0.625 per second, the clip zero-padded to the last one;
3. each window's 40-band power mel through the encoder; the utterance embedding is the
   L2-normalised mean of the windows' embeddings.

Emotion moves the embedding (pitch range, effort, voice quality); z-scored over a speaker's
clips it feeds a classifier (docs/ser/ge2e/report.md). Settings come from the bundle
(:class:`emort.runtime.settings.VoiceSettings`).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from emort.runtime.audio import model_rate_signal, prepare
from emort.runtime.frontend import _mel_basis, magnitude_blocks, num_frames
from emort.runtime.settings import VoiceSettings

#: Width of an embedding.
VOICE_DIM = 256
#: Bumped when the embedding of a clip changes (front end, pooling); bundles and runs record it.
#: 2: the DC offset removed before the level is normalised; 3 (both in 0.12.0): windows at 0.625
#: per second instead of 1.3 (:class:`~emort.runtime.settings.VoiceSettings`); 4 (0.13.0): a clip
#: that is resampled loses its offset before resampling too (:func:`emort.runtime.audio.model_rate_signal`).
VOICE_VERSION = 4
#: Features of a classifier on the embedding (``stats_voice``): "ge2e", the embedding alone, fused
#: with the statistics classifier by the geometric mean (0.12.0); or "ustats+pitch+ge2e", one
#: classifier on the log-mel + F0 statistics and the embedding together, read instead of the
#: statistics classifier (docs/ser/ge2e/PREREGISTRATION_joint.md).
VOICE_FEATURES = ("ge2e", "ustats+pitch+ge2e")
#: The joint one of :data:`VOICE_FEATURES`, and the statistics classifier's features it reads first.
JOINT_FEATURES = "ustats+pitch+ge2e"
JOINT_STATS = "ustats+pitch"
#: Frames of power mel computed at once: bounds the memory of a long clip, and small blocks are
#: faster (a 2.8 s clip: 0.55 ms at 64 frames, 1.66 ms in one block of 281; same values).
BLOCK_FRAMES = 64
#: Windows run through the encoder per call (a 3 s clip has 2).
MAX_WINDOWS = 64
#: Windows a batch of clips puts in one encoder call (:meth:`VoiceEmbedder.calls`). The LSTM's
#: steps are matrix products of a call's windows by its weights, and one window alone is a
#: matrix-vector product. 16 (not compared with other sizes) keeps a speaker's calls several,
#: for the reader threads to share; against one call per clip, per-speaker `emort score` took
#: 0.94x the wall time and 0.89x the CPU (docs/bench/voice_batching.md).
CALL_WINDOWS = 16


def joint_reads(stats_features: str | None, stats_pitch_version, voice_pitch_version) -> bool:
    """Whether a joint voice classifier (:data:`JOINT_FEATURES`) fitted on F0 analysis
    ``voice_pitch_version`` reads the features of a statistics classifier of ``stats_features``
    and F0 analysis ``stats_pitch_version``: its first columns are that classifier's, so both must
    be :data:`JOINT_STATS` of the same analysis."""
    return stats_features == JOINT_STATS and stats_pitch_version == voice_pitch_version


def voice_input(wav: np.ndarray, sample_rate: int, settings: VoiceSettings, what: str = "audio") -> np.ndarray:
    """Mono float32 ``(num_samples,)`` at ``settings.sample_rate``, DC-free, RMS at ``settings.target_dbfs``.

    ``wav``: ``(num_samples,)`` or ``(num_samples, channels)`` at ``sample_rate`` Hz. Raises the
    AudioError subclasses of :func:`emort.runtime.audio.prepare` (naming ``what``)."""
    return voice_signal(prepare(wav, sample_rate, sample_rate, what=what), sample_rate, settings)


def voice_signal(mono: np.ndarray, sample_rate: int, settings: VoiceSettings) -> np.ndarray:
    """:func:`voice_input` of a clip already mono and validated (``emort.runtime.audio.prepare``)."""
    x = model_rate_signal(mono, sample_rate, settings.sample_rate).astype(np.float64)  # resampled, DC removed
    rms = float(np.sqrt(np.mean(x**2)))
    return (x * (10 ** (settings.target_dbfs / 20) / max(rms, 1e-9))).astype(np.float32)


def window_starts(num_samples: int, settings: VoiceSettings) -> list[int]:
    """First frame of each partial window of a clip of ``num_samples`` samples (Resemblyzer's
    ``compute_partial_slices``): one every ``sample_rate / partial_rate`` samples, the last one
    dropped when less than ``min_coverage`` of it lies inside the clip (never the only one)."""
    hop = settings.hop_length
    n_frames = int(np.ceil((num_samples + 1) / hop))
    step = int(np.round(settings.sample_rate / settings.partial_rate / hop))
    if not 0 < step <= settings.partial_frames:
        raise ValueError(f"partial_rate {settings.partial_rate} gives a window step of {step} frames")
    starts = list(range(0, max(1, n_frames - settings.partial_frames + step + 1), step))
    coverage = (num_samples - starts[-1] * hop) / (settings.partial_frames * hop)
    if coverage < settings.min_coverage and len(starts) > 1:
        starts.pop()
    return starts


def partial_mels(x: np.ndarray, settings: VoiceSettings) -> np.ndarray:
    """The encoder's input windows of one :func:`voice_input` signal: float32
    ``(windows, partial_frames, n_mels)`` of power mel (not log: the encoder was trained on it)."""
    starts = window_starts(len(x), settings)
    end = (starts[-1] + settings.partial_frames) * settings.hop_length
    if end >= len(x):
        x = np.pad(x, (0, end - len(x)))
    frames = power_mel(x, settings)
    return np.stack([frames[s : s + settings.partial_frames] for s in starts])


def power_mel(x: np.ndarray, settings: VoiceSettings) -> np.ndarray:
    """Power mel of a signal, float32 ``(frames, n_mels)``: periodic Hann windows of ``n_fft``
    every ``hop_length``, centred with zero padding, Slaney filters (librosa's
    ``melspectrogram`` defaults): the log-mel front end's STFT blocks
    (:func:`emort.runtime.frontend.magnitude_blocks`), ``BLOCK_FRAMES`` frames at a time."""
    mel_s = settings.mel
    out = np.empty((num_frames(len(x), mel_s), mel_s.n_mels), np.float32)
    for f0, mag in magnitude_blocks(x, mel_s, BLOCK_FRAMES):
        out[f0 : f0 + mag.shape[1]] = (_mel_basis(mel_s) @ mag**2).T
    return out


def pool_windows(window_embeddings: np.ndarray) -> np.ndarray:
    """``(windows, VOICE_DIM)`` -> the utterance embedding: their L2-normalised mean, float32."""
    m = window_embeddings.astype(np.float64).mean(axis=0)
    return (m / max(float(np.linalg.norm(m)), 1e-12)).astype(np.float32)


#: Below this cosine between the mean GE2E embeddings of a speaker's scored clips and of its
#: `--reference` clips, the reference is probably another voice (emort score notes it), checked only
#: from ``REFERENCE_CHECK_CLIPS`` scored and ``REFERENCE_CHECK_REFERENCE`` reference clips: fewer
#: are too noisy. Measured on the 37 speakers of the three corpora (0.27,
#: docs/ser/reference_match/measure.py): 2 clips of a speaker against 5 others of the same speaker
#: fall below it in 0.2% of draws (1 against 5: 3.5%, 1 against 1: 31%), 2 of another speaker
#: against 5 in 74% (voices alike in sex and recording are not told apart); emort's --prosody
#: conversions of 10 clips against their originals read 0.81-0.91.
REFERENCE_VOICE_MIN = 0.7
REFERENCE_CHECK_CLIPS = 2
REFERENCE_CHECK_REFERENCE = 5
#: Below this cosine between ONE scored clip's GE2E embedding and the mean of its speaker's
#: ``REFERENCE_CHECK_REFERENCE`` or more reference clips, that clip is probably another voice
#: (emort score notes it: a folder can mix other speakers' clips in, which the group's mean hides).
#: Measured on the 37 speakers (0.28, docs/ser/reference_match/measure_clip.py): a speaker's own clip
#: against 5 of its others falls below it in 0.03% of draws (against 10: none), emort's default edit
#: of a clip in none of 148, a --prosody conversion in 1 of 148 (lowest 0.54); another speaker's clip
#: in 41% (against 10: 37%).
REFERENCE_CLIP_MIN = 0.55


#: Below this median cosine between a speaker group's clips (:func:`group_voice_similarity`), the
#: group probably holds more than one voice: per-speaker scoring would normalise several speakers as
#: one (emort score notes it). Checked from ``GROUP_CHECK_CLIPS`` clips. Measured on every speaker of
#: the three corpora (0.30, docs/ser/mixed_voices/measure.py): 5 clips of one speaker fall below it in
#: 0.85% of draws, 10 or more in none; 2, 3 or 4 speakers in equal shares in 43-65%, 59-84% and 70-86%
#: of draws (voices alike in sex and recording are not told apart).
GROUP_VOICE_MIN = 0.58
GROUP_CHECK_CLIPS = 5


def group_voice_similarity(voices: Sequence[np.ndarray] | np.ndarray) -> float | None:
    """The median, over every pair of a group's clips, of their utterance embeddings' cosine
    (``(VOICE_DIM,)`` each, normalised here): how much the clips sound like one voice (a speaker's
    own clips about 0.75, clips of different speakers about 0.5). None with fewer than 2 clips."""
    x = np.asarray(np.stack(list(voices)) if not isinstance(voices, np.ndarray) else voices, np.float64)
    if len(x) < 2:
        return None
    x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    c = x @ x.T
    return float(np.median(c[np.triu_indices(len(x), 1)]))


def voice_match(clips: Sequence[np.ndarray], reference: Sequence[np.ndarray]) -> float:
    """Cosine between the mean of ``clips``' utterance embeddings ``(VOICE_DIM,)`` each and the mean
    of ``reference``'s (each group pooled as :func:`pool_windows` pools a clip's windows): how alike
    two groups of clips sound as voices (1 the same)."""
    return float(pool_windows(np.stack(clips)) @ pool_windows(np.stack(reference)))


class VoiceEmbedder:
    """Clips -> GE2E embeddings with the bundle's ``voice_encoder`` graph.

    ``model``: a callable session (``emort.runtime.session.load_model``) taking ``mels``
    ``(batch, partial_frames, n_mels)`` float32 and returning the windows' L2-normalised
    embeddings ``(batch, VOICE_DIM)``. Thread-safe as the session is.
    """

    def __init__(self, model, settings: VoiceSettings):
        self.model = model
        self.settings = settings

    def windows(self, wav: np.ndarray, sample_rate: int, what: str = "audio") -> np.ndarray:
        """One clip's encoder input ``(windows, partial_frames, n_mels)`` (8 kHz and up, any layout)."""
        return partial_mels(voice_input(wav, sample_rate, self.settings, what), self.settings)

    def windows_mono(self, mono: np.ndarray, sample_rate: int) -> np.ndarray:
        """:meth:`windows` of a clip already mono and validated (``emort.runtime.audio.prepare``)."""
        return partial_mels(voice_signal(mono, sample_rate, self.settings), self.settings)

    @staticmethod
    def calls(windows: Sequence[np.ndarray]) -> list[list[int]]:
        """Clips' :meth:`windows` -> the clips of each encoder call, in order: consecutive clips
        until a call holds :data:`CALL_WINDOWS` windows (a clip with more is a call alone)."""
        out: list[list[int]] = []
        n = 0
        for i, w in enumerate(windows):
            if not out or n + len(w) > CALL_WINDOWS:
                out.append([])
                n = 0
            out[-1].append(i)
            n += len(w)
        return out

    def embed_windows(self, windows: Sequence[np.ndarray]) -> np.ndarray:
        """Clips' :meth:`windows` -> float32 ``(clips, VOICE_DIM)``, their windows batched together."""
        if not windows:
            return np.zeros((0, VOICE_DIM), np.float32)
        flat = np.concatenate(list(windows))
        out = np.concatenate([self.model(mels=flat[i : i + MAX_WINDOWS])[0] for i in range(0, len(flat), MAX_WINDOWS)])
        bounds = np.cumsum([0] + [len(w) for w in windows])
        return np.stack([pool_windows(out[a:b]) for a, b in zip(bounds[:-1], bounds[1:])])

    def embed(self, wav: np.ndarray, sample_rate: int, what: str = "audio") -> np.ndarray:
        """One clip (8 kHz and up, any layout) -> float32 ``(VOICE_DIM,)``."""
        return self.embed_windows([self.windows(wav, sample_rate, what)])[0]
