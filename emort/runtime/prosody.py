"""Prosody: F0 contours aligned with the mel frames, a per-clip prosody edit, and its rendering.

The spectral edit moves band energies only; pitch level, pitch range and tempo, the strongest
cues of fear, sadness and happiness, stay the source's (``docs/eval/prosody.md``). This module
changes them, torch-free:

* :func:`f0_contour`: F0 (Hz, 0 = unvoiced) with WORLD's DIO + StoneMask (``pyworld``; the
  analysis of "WORLD: a vocoder-based high-quality speech synthesis system for real-time
  applications", Morise et al. 2016), on the model's frame grid (``hop_length`` /
  ``sample_rate``: 11.6 ms) so that frame ``i`` is mel frame ``i``. Analysed at 16 kHz: F0
  needs no more band, and DIO's cost grows with the rate.
* :func:`prosody_features`: ``log_f0``, ``voiced`` and ``energy`` per mel frame, the one
  definition used by the statistics of :mod:`emort.training.prosody_stats`, the runtime and
  the evaluation (a parity test holds them together).
* :class:`ProsodyTable`: per emotion, the F0 level shift (semitones), F0 range factor and tempo
  factor relative to neutral, measured on a bundle's training speakers; carried in the bundle
  manifest (``prosody``), read by :mod:`emort.runtime.bundle`.
* :func:`plan_prosody`: the clip's edit = the target's prosody minus what the SER posterior
  says the clip already carries (``sum_e p(e) T_e``), so a clip already heard as the target
  is left nearly alone, and a neutral one gets the whole change.
* :class:`SpeakerProsody` / :func:`speaker_prosody`: with several clips of one speaker, the
  speaker's neutral F0 level and range (each clip's minus what its SER posterior expects), so
  that :func:`plan_prosody` aims each clip at the speaker's own target level: the clip's F0
  relative to its speaker is known, where one clip alone cannot tell a high voice from a
  raised one. A library option, measured and not adopted by the CLI
  (docs/eval/conversion/per_speaker.md).
* :func:`render_prosody`: WORLD analysis (CheapTrick envelope, D4C aperiodicity) and synthesis
  with the edited F0 and a resampled time axis: pitch moves, the spectral envelope (formants)
  stays the speaker's; it also scales the F0 range. ``renderer="stretch"`` (the default) uses
  Signalsmith Stretch (``python-stretch``): faster and transparent at identity; its binding
  moves the formants with the pitch, so the source's spectral envelope is put back with the
  spectral edit's own mel-band gain (:func:`restore_envelope`). It scales the F0 range by
  reading the clip at a varying speed before the constant transposition (since 0.29:
  :func:`_render_stretch_range`; the binding transposes a call by one amount).

Both libraries come with the ``[prosody]`` extra and are imported only when prosody is used.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import numpy as np

from emort.runtime.audio import model_rate_signal, resample
from emort.runtime.errors import EmortError
from emort.runtime.frontend import NATS_TO_DB, active_frames, apply_band_gain, log_mel, num_frames
from emort.runtime.settings import DEFAULT_MEL, DictConvertible, MelSettings
from emort.runtime.ustats import MIN_GROUP

F0_ANALYSIS_RATE = 16_000  # Hz: DIO / StoneMask run here (F0 < 1 kHz needs no more band)
F0_FLOOR, F0_CEIL = 60.0, 700.0  # Hz: speech, children and screams included (DIO's search range)
WORLD_FRAME_MS = 5.0  # WORLD's own analysis grid for rendering (its default)
RENDERERS = ("stretch", "world", "stretch-raw")
RANGE_SMOOTH_FRAMES = 5  # the stretch renderers' F0 range: the deviation contour averaged over 5 mel frames (58 ms)
RANGE_MIN_RUN = 3  # the stretch renderers' F0 range: voiced runs shorter than this (frames) are taken as the analysis' strays
#: (sample rate Hz, DIO speed) of the F0 analysis the stretch renderers' range contour reads
#: (:func:`range_contour`): 16 kHz, speed 1, as :func:`f0_contour`'s default.
RANGE_F0_ANALYSIS = (F0_ANALYSIS_RATE, 1)
ENVELOPE_BANDS = 3  # mel bands averaged for the envelope: chosen on the validation speakers among 1-15 (docs/eval/prosody.md)
ENVELOPE_FRAMES = 3  # frames averaged (35 ms)
ENVELOPE_MAX_DB = 12.0  # the envelope correction's cap per band and frame
SEMITONE = math.log(2.0) / 12.0  # natural-log F0 per semitone


def _pyworld():
    try:
        import pyworld
    except ImportError:
        raise EmortError("F0 analysis needs pyworld: pip install pyworld-prebuilt (a dependency of emort since 0.9)") from None
    return pyworld


def _python_stretch():
    try:
        import python_stretch
    except ImportError:
        raise EmortError("prosody needs python-stretch (pip install 'emort[prosody]')") from None
    return python_stretch


def _check_renderer(renderer: str) -> None:
    if renderer not in RENDERERS:
        raise EmortError(f"unknown prosody renderer {renderer!r}; choose one of {', '.join(RENDERERS)}")


def check_available(renderer: str, bundle=None) -> None:
    """Raise EmortError (one line) when ``renderer``'s library is missing (pyworld for ``world``,
    python-stretch for the others) or ``bundle`` carries no prosody table: the check a batch
    makes before any work."""
    _check_renderer(renderer)
    if bundle is not None and getattr(bundle, "prosody", None) is None:
        raise EmortError(f"{bundle.path}: this bundle carries no prosody table (emort export prosody adds one)")
    _pyworld() if renderer == "world" else _python_stretch()


def frame_period_ms(settings: MelSettings) -> float:
    """The mel hop in milliseconds (256 / 22,050 Hz = 11.61 ms)."""
    return 1000.0 * settings.hop_length / settings.sample_rate


def f0_contour(wav: np.ndarray, sample_rate: int, settings: MelSettings, analysis_rate: int = F0_ANALYSIS_RATE,
               dio_speed: int = 1) -> np.ndarray:
    """F0 of a mono signal on the mel frame grid: float64 ``(frames,)`` in Hz, 0 where unvoiced.

    ``frames`` is :func:`emort.runtime.frontend.num_frames` of the signal at the model rate,
    so the contour lines up with :func:`emort.runtime.frontend.log_mel` frame by frame. DIO +
    StoneMask (WORLD) on the signal resampled to ``analysis_rate`` (16 kHz: the prosody
    edit's analysis), F0 searched in 60-700 Hz; ``dio_speed`` is DIO's ``speed`` (1-12: it
    decimates the signal by that factor for its F0 candidates; StoneMask refines them at
    ``analysis_rate``). The per-speaker scorer's F0 statistics use a cheaper setting
    (:data:`emort.runtime.ustats.PITCH_ANALYSES`).
    """
    x = resample(np.asarray(wav, np.float32), sample_rate, analysis_rate).astype(np.float64)
    n = num_frames(int(round(len(wav) * settings.sample_rate / sample_rate)), settings)
    if len(x) < 64:
        return np.zeros(n)
    f0, _ = _dio_stonemask(x, frame_period_ms(settings), analysis_rate, dio_speed)
    out = np.zeros(n)
    k = min(n, len(f0))
    out[:k] = f0[:k]
    return out


def _dio_stonemask(x: np.ndarray, frame_period: float, rate: int = F0_ANALYSIS_RATE, speed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """WORLD's F0 (DIO at ``speed``, refined by StoneMask) of float64 ``x`` at ``rate`` Hz,
    every ``frame_period`` ms: ``(f0 Hz, 0 unvoiced; frame times s)``."""
    pw = _pyworld()
    f0, t = pw.dio(x, rate, f0_floor=F0_FLOOR, f0_ceil=F0_CEIL, frame_period=frame_period, speed=speed)
    return pw.stonemask(x, f0, t, rate), t


def _frames_around(pos: np.ndarray, n_in: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For fractional positions ``pos`` among ``n_in`` source frames (kept within them): the source
    frames around each (``i0``, ``i1``) and the weight of ``i1`` for linear interpolation."""
    pos = np.clip(pos, 0, n_in - 1)
    i0 = np.floor(pos).astype(int)
    return i0, np.minimum(i0 + 1, n_in - 1), pos - i0


def _frame_positions(n_out: int, n_in: int, tempo: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`_frames_around` for ``n_out`` frames played ``tempo`` times faster than ``n_in`` source frames."""
    return _frames_around(np.arange(n_out) * tempo, n_in)


def prosody_features(wav: np.ndarray, sample_rate: int, settings: MelSettings) -> dict[str, np.ndarray]:
    """Per mel frame: ``log_f0`` (natural log of Hz, 0 where unvoiced), ``voiced`` (bool) and
    ``energy`` (natural log of the frame's mean mel magnitude, from the runtime's log-mel),
    each ``(frames,)``; one definition for training statistics, runtime and evaluation."""
    f0 = f0_contour(wav, sample_rate, settings)
    mel = log_mel(model_rate_signal(np.asarray(wav, np.float32), sample_rate, settings.sample_rate), settings)
    voiced = f0 > 0
    log_f0 = np.where(voiced, np.log(np.maximum(f0, 1e-9)), 0.0)
    energy = np.log(np.mean(np.exp(mel.astype(np.float64)), axis=0) + 1e-12)
    return {"log_f0": log_f0, "voiced": voiced, "energy": energy[: len(f0)]}


def utterance_prosody(f0: np.ndarray, settings: MelSettings, wav: np.ndarray | None = None,
                      sample_rate: int | None = None) -> dict[str, float] | None:
    """Utterance statistics of an F0 contour (:func:`f0_contour`): ``level`` (median log-F0 of
    voiced frames, semitones re 1 Hz), ``range`` (standard deviation of log-F0, semitones),
    ``speech_s`` (seconds from the first to the last voiced frame) and, given the signal
    ``wav`` at ``sample_rate``, ``loudness_db`` (RMS of the voiced frames' samples, dB re full
    scale). None with < 10 voiced frames."""
    v = np.flatnonzero(f0 > 0)
    if len(v) < 10:
        return None
    st = np.log(f0[v]) / SEMITONE
    out = {"level": float(np.median(st)), "range": float(np.std(st)),
           "speech_s": float((v[-1] - v[0] + 1) * frame_period_ms(settings) / 1000.0)}
    if wav is not None and sample_rate:
        x = np.asarray(wav, np.float64)
        x = x - x.mean()
        hop = settings.hop_length * sample_rate / settings.sample_rate  # input samples per frame (centred)
        idx = np.concatenate([np.arange(max(0, int((i - 0.5) * hop)), min(len(x), int((i + 0.5) * hop))) for i in v])
        out["loudness_db"] = float(10 * np.log10(np.mean(x[idx] ** 2) + 1e-12))
    return out


@dataclass(frozen=True)
class ProsodyEdit(DictConvertible):
    """One clip's prosody change: ``semitones`` added to the F0 level, ``f0_range`` multiplying
    the log-F0 deviations from the clip's median, ``tempo`` > 1 faster (duration / tempo),
    ``loudness_db`` added to the level (peaks limited afterwards)."""

    semitones: float = 0.0
    f0_range: float = 1.0
    tempo: float = 1.0
    loudness_db: float = 0.0

    def validate(self) -> ProsodyEdit:
        """Self, after checking every value is finite and ``f0_range`` and ``tempo`` are above 0;
        raises EmortError naming the value (a caller's own edit: tempo 0 divided by zero)."""
        for k in ("semitones", "f0_range", "tempo", "loudness_db"):
            v = getattr(self, k)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or (k in ("f0_range", "tempo") and v <= 0):
                raise EmortError(f"prosody edit: {k} = {v!r} (finite{', above 0' if k in ('f0_range', 'tempo') else ''})")
        return self

    @property
    def is_identity(self) -> bool:
        return (abs(self.semitones) < 1e-6 and abs(self.f0_range - 1.0) < 1e-6 and abs(self.tempo - 1.0) < 1e-6
                and abs(self.loudness_db) < 1e-6)


@dataclass(frozen=True)
class ProsodyTable(DictConvertible):
    """Per emotion, prosody relative to neutral (neutral itself: 0 st, 1, 1, 0 dB), measured on
    the training speakers of the bundle's models (:mod:`emort.training.prosody_stats`):
    ``semitones`` F0 level shift, ``f0_range`` F0 standard-deviation ratio, ``tempo`` speech
    duration ratio neutral / emotion (> 1 faster), ``loudness_db`` voiced-speech level
    difference. ``source``: how and on what it was measured."""

    emotions: dict[str, dict[str, float]] = field(default_factory=dict)
    source: dict = field(default_factory=dict)

    def checked(self) -> ProsodyTable:
        """Self, after checking every row has ``semitones``, ``f0_range`` > 0 and ``tempo`` > 0
        (finite); raises ValueError naming the emotion and field (the bundle loader turns it
        into a one-line BundleError)."""
        if not isinstance(self.emotions, dict) or not isinstance(self.source, dict):
            raise ValueError("prosody.emotions and prosody.source must be objects")
        for e, d in self.emotions.items():
            for k in ("semitones", "f0_range", "tempo", "loudness_db"):
                v = d.get(k, 0.0 if k == "loudness_db" else None) if isinstance(d, dict) else None
                if not isinstance(v, (int, float)) or not math.isfinite(v) or (k in ("f0_range", "tempo") and v <= 0):
                    raise ValueError(f"prosody.emotions.{e}.{k} = {v!r}")
        return self

    def of(self, emotion: str) -> ProsodyEdit:
        d = self.emotions.get(emotion)
        if d is None:
            return ProsodyEdit()
        return ProsodyEdit(float(d["semitones"]), float(d["f0_range"]), float(d["tempo"]), float(d.get("loudness_db", 0.0)))

    def expected(self, weights: dict[str, float]) -> ProsodyEdit:
        """The prosody of a mix of emotions: semitones and level averaged, range and tempo
        averaged in the log domain (geometric), over the emotions the table has (their weights
        renormalised; neutral is always there)."""
        weights = {e: w for e, w in weights.items() if e in self.emotions or e == "neutral"}
        tot = sum(weights.values()) or 1.0
        st = rng = tmp = db = 0.0
        for e, w in weights.items():
            p = self.of(e)
            st += w / tot * p.semitones
            rng += w / tot * math.log(p.f0_range)
            tmp += w / tot * math.log(p.tempo)
            db += w / tot * p.loudness_db
        return ProsodyEdit(st, math.exp(rng), math.exp(tmp), db)


@dataclass(frozen=True)
class ProsodyOptions(DictConvertible):
    """The user's prosody controls: ``pitch`` scales the F0 level change, ``pitch_range`` the F0
    range change (None: ``pitch``'s share, as before 0.29), ``tempo`` the tempo change,
    ``loudness`` the level change (each 0 = leave it, 1 = the table's full change, up to 2);
    ``renderer``: one of :data:`RENDERERS` (see :func:`render_prosody`)."""

    pitch: float = 1.0
    tempo: float = 1.0
    renderer: str = "stretch"
    loudness: float = 1.0
    pitch_range: float | None = None

    @property
    def range_share(self) -> float:
        return self.pitch if self.pitch_range is None else self.pitch_range

    def validate(self) -> None:
        what = {"pitch": "F0 level", "pitch_range": "F0 range", "tempo": "tempo", "loudness": "level"}
        for name in what:
            v = getattr(self, name)
            if name == "pitch_range" and v is None:
                continue
            if not (isinstance(v, (int, float)) and math.isfinite(v) and 0.0 <= v <= 2.0):
                raise EmortError(f"--{name.replace('_', '-')} (the share of the prosody {what[name]} change) must be in [0, 2], got {v!r}")
        _check_renderer(self.renderer)


#: Largest F0 change (semitones, either way) a per-speaker plan may ask before the pitch share: an
#: octave, beyond every row of the table (+7.2 at most), so a wrong baseline cannot run away.
MAX_SPEAKER_SHIFT_ST = 12.0
#: Largest F0 range factor (either way: at least its inverse) a per-speaker plan may ask before the
#: range share: beyond the table's widest (x1.42), so a near-monotone clip cannot ask x10 (a review).
MAX_SPEAKER_RANGE = 2.0
#: (sample rate Hz, DIO speed) of :func:`clip_prosody`: pitch version 2 of the per-speaker
#: scorer (:data:`emort.runtime.ustats.PITCH_ANALYSES`).
PLAN_F0_ANALYSIS = (8_000, 2)


@dataclass(frozen=True)
class SpeakerProsody(DictConvertible):
    """A speaker's neutral prosody, estimated from ``clips`` of its clips (:func:`speaker_prosody`):
    ``level``, the F0 level of its neutral speech (semitones re 1 Hz), and ``range``, its F0
    range (standard deviation of log-F0, semitones)."""

    level: float
    range: float
    clips: int


def clip_prosody(wav: np.ndarray, sample_rate: int, settings: MelSettings) -> dict[str, float] | None:
    """The per-speaker plan's utterance statistics of one mono clip: :func:`utterance_prosody`
    (``level``, ``range``, ``speech_s``) of :func:`f0_contour` with the per-speaker scorer's
    cheaper analysis (:data:`PLAN_F0_ANALYSIS`: 8 kHz, DIO speed 2; the same F0 as 16 kHz speed
    1 within 0.02 semitones on 95% of voiced frames, at a fifth of the cost). Clip and speaker
    levels are compared with each other only, so they share this analysis. None with < 10
    voiced frames."""
    rate, speed = PLAN_F0_ANALYSIS
    return utterance_prosody(f0_contour(wav, sample_rate, settings, analysis_rate=rate, dio_speed=speed), settings)


def speaker_prosody(clips: list[tuple[dict[str, float] | None, dict[str, float]]], table: ProsodyTable) -> SpeakerProsody | None:
    """The speaker's neutral level and range from its clips: each ``(clip_prosody(...) or
    None, SER scores)``; per clip, its level minus the semitones its posterior expects
    (``table.expected(scores)``), and its log range minus the expected log range factor; the
    median over clips of each (one clip with an octave error moves it little). So a batch of any
    mix of emotions gives the neutral baseline, as far as the SER is right. None with fewer than
    :data:`~emort.runtime.ustats.MIN_GROUP` (the per-speaker scorer's minimum) clips with F0
    (>= 10 voiced frames)."""
    lv, rg = [], []
    for u, scores in clips:
        if u is None or not (u.get("range", 0.0) > 0):
            continue
        e = table.expected(scores)
        lv.append(u["level"] - e.semitones)
        rg.append(math.log(u["range"]) - math.log(e.f0_range))
    if len(lv) < MIN_GROUP:
        return None
    return SpeakerProsody(float(np.median(lv)), float(math.exp(np.median(rg))), len(lv))


def missing_rows(table: ProsodyTable, target: dict[str, float]) -> list[str]:
    """The emotions of ``target`` (a mix, ``{emotion: weight}``) that ``table`` has no row for
    (neutral is the reference and needs none): :func:`plan_prosody` refuses them, and the CLI
    checks them once before a batch."""
    return [e for e, w in target.items() if w > 0 and e != "neutral" and e not in table.emotions]


def plan_prosody(table: ProsodyTable, target: dict[str, float], scores: dict[str, float], options: ProsodyOptions,
                 clip: dict[str, float] | None = None, speaker: SpeakerProsody | None = None) -> ProsodyEdit:
    """The clip's prosody edit toward ``target`` (an emotion mix, weights summing to 1), given
    the SER probabilities ``scores`` of the source: target prosody minus the expected prosody
    of the source under its posterior, scaled by the per-part amounts. Semitones and the logs
    of range and tempo are the quantities scaled and subtracted.

    With the speaker's baseline ``speaker`` (:func:`speaker_prosody`) and the clip's own
    ``clip`` (:func:`clip_prosody`), F0 level and range aim at the speaker's target
    instead: ``speaker.level + target semitones - clip level`` (at most
    :data:`MAX_SPEAKER_SHIFT_ST` either way; the range factor likewise, within
    :data:`MAX_SPEAKER_RANGE` either way), scaled by ``pitch`` and
    ``pitch_range``; tempo and level stay as above. On the validation
    speakers this cuts the error of the F0 level change against each speaker's own mean for the
    target emotion by a third (5.3 -> 3.4 semitones RMS), but the three judges do not hear the
    target more often, so the CLI plans from the clip alone (docs/eval/conversion/per_speaker.md).

    Raises EmortError when a target emotion has no row in the table (the edit would go the
    wrong way)."""
    missing = missing_rows(table, target)
    if missing:
        raise EmortError(f"the bundle's prosody table has no row for {', '.join(missing)} (its training data had none); "
                         "leave out --prosody for this target")
    want, have = table.expected(target), table.expected(scores)
    if speaker is not None and clip is not None and clip.get("range", 0.0) > 0:
        semitones = float(np.clip(speaker.level + want.semitones - clip["level"], -MAX_SPEAKER_SHIFT_ST, MAX_SPEAKER_SHIFT_ST))
        log_range = float(np.clip(math.log(speaker.range) + math.log(want.f0_range) - math.log(clip["range"]),
                                  -math.log(MAX_SPEAKER_RANGE), math.log(MAX_SPEAKER_RANGE)))
    else:
        semitones = want.semitones - have.semitones
        log_range = math.log(want.f0_range) - math.log(have.f0_range)
    return ProsodyEdit(
        semitones=options.pitch * semitones,
        f0_range=math.exp(options.range_share * log_range),
        tempo=math.exp(options.tempo * (math.log(want.tempo) - math.log(have.tempo))),
        loudness_db=options.loudness * (want.loudness_db - have.loudness_db),
    )


def render_prosody(wav: np.ndarray, sample_rate: int, edit: ProsodyEdit, renderer: str = "stretch",
                   settings: MelSettings | None = None, always: bool = False, source_mel: np.ndarray | None = None,
                   contour: np.ndarray | None = None) -> np.ndarray:
    """``wav`` (float32 mono at ``sample_rate``) with ``edit`` applied -> float32 mono at the same
    rate, ``round(len(wav) / edit.tempo)`` samples. ``world``: WORLD analysis-synthesis with the
    F0 contour edited (median + range x deviation + shift, in log-F0) and the frame axis
    resampled for tempo; ``stretch``: Signalsmith Stretch's transposition and time factor, the F0
    range changed by a varying read speed before it (:func:`_render_stretch_range`; a clip with
    fewer than :data:`RANGE_MIN_RUN` voiced frames keeps its range), the source's envelope put
    back (:func:`restore_envelope`); ``stretch-raw``: ``stretch`` without the envelope step.
    ``contour``: :func:`range_contour` of ``wav`` and ``edit`` when the caller has it (the stretch
    renderers read it). Raises EmortError when the library is missing."""
    x = np.asarray(wav, np.float32)
    _check_renderer(renderer)
    n_out = int(round(len(x) / edit.tempo))
    ranged = abs(edit.f0_range - 1.0) > 1e-6
    shifts = abs(edit.semitones) > 1e-6 or abs(edit.tempo - 1.0) > 1e-6
    stretch = renderer in ("stretch", "stretch-raw")
    if not (always or shifts or ranged):  # a level change only: no resynthesis
        y = x.copy()
    elif stretch and ranged and len(x) and (r := _render_stretch_range(x, int(sample_rate), edit, settings or DEFAULT_MEL, contour)):
        y, time_map = r
        y = y[:n_out] if len(y) >= n_out else np.pad(y, (0, n_out - len(y)))
        if renderer == "stretch":
            y = restore_envelope(y, x, int(sample_rate), edit.tempo, settings, source_mel, time_map=time_map)
    elif stretch and not (always or shifts):
        y = x.copy()  # a range change only, on a clip with too little voiced speech to carry it
    elif stretch:
        ps = _python_stretch()
        st = ps.Signalsmith.Stretch()
        st.preset(1, int(sample_rate))
        st.setTransposeSemitones(float(edit.semitones))
        st.setTimeFactor(float(edit.tempo))
        y = np.asarray(st.process(x[None, :])[0], np.float32)
        if renderer == "stretch" and (always or abs(edit.semitones) > 1e-6):
            y = restore_envelope(y[:n_out] if len(y) >= n_out else np.pad(y, (0, n_out - len(y))), x, int(sample_rate), edit.tempo, settings,
                                 source_mel)
    else:
        y = _render_world(x, int(sample_rate), edit)
    y = np.ascontiguousarray(y[:n_out]) if len(y) >= n_out else np.pad(y, (0, n_out - len(y)))
    if abs(edit.loudness_db) > 1e-6:
        y = y * np.float32(10 ** (edit.loudness_db / 20))  # peaks: the enhancer's limiter follows
    return y


def range_contour(x: np.ndarray, sample_rate: int, edit: ProsodyEdit, settings: MelSettings) -> np.ndarray:
    """Per mel frame of ``x`` (input time), the transposition in semitones that scales its F0
    deviations from the clip's median by ``edit.f0_range``: ``(f0_range - 1) x`` the frame's
    deviation (semitones; :func:`f0_contour`), so that output log-F0 = median + ``f0_range`` x
    deviation (+ the constant ``semitones``: the ``world`` renderer's edit). Voiced runs shorter
    than :data:`RANGE_MIN_RUN` frames are dropped and the deviations kept within their 5th-95th
    percentiles (a stray frame or an octave error of the analysis would otherwise transpose its
    whole neighbourhood); unvoiced frames between voiced ones take the deviation interpolated
    between them, those before the first and after the last 0; the contour is averaged over
    :data:`RANGE_SMOOTH_FRAMES` frames. Then a constant is added so that the output's median
    over the voiced frames, weighted by their duration after :func:`_render_stretch_range`
    (``2^(-T/12)``: it shortens raised frames and lengthens lowered ones), is the input's
    median. float64 ``(frames,)``; zeros with fewer than :data:`RANGE_MIN_RUN` voiced frames."""
    rate, speed = RANGE_F0_ANALYSIS
    f0 = f0_contour(x, sample_rate, settings, analysis_rate=rate, dio_speed=speed)
    voiced = f0 > 0
    edges = np.flatnonzero(np.diff(np.concatenate([[0], voiced.astype(np.int8), [0]])))
    for a, b in zip(edges[::2], edges[1::2]):
        if b - a < RANGE_MIN_RUN:
            voiced[a:b] = False
    v = np.flatnonzero(voiced)
    if len(v) < RANGE_MIN_RUN:
        return np.zeros(len(f0))
    st = 12.0 * np.log2(f0[v])
    dev = np.clip(st - np.median(st), *np.percentile(st - np.median(st), [5, 95]))
    c = (edit.f0_range - 1.0) * _moving_average(np.interp(np.arange(len(f0)), v, dev, left=0.0, right=0.0), RANGE_SMOOTH_FRAMES, 0)
    out = dev + c[v]  # each voiced frame's output deviation before the constant
    order = np.argsort(out)
    w = np.cumsum(2.0 ** (-c[v][order] / 12.0))
    return c - out[order][min(int(np.searchsorted(w, w[-1] / 2)), len(w) - 1)]


def range_to_render(x: np.ndarray, sample_rate: int, edit: ProsodyEdit, renderer: str,
                    settings: MelSettings) -> tuple[ProsodyEdit, np.ndarray | None]:
    """``edit`` as ``renderer`` will apply it to ``x``, and the range contour it will read
    (:func:`range_contour`; hand it to :func:`render_prosody`): a clip with too little voiced
    speech to carry a range change (fewer than :data:`RANGE_MIN_RUN` voiced frames in runs that
    long) keeps its range (``f0_range`` 1, contour None), whichever the renderer (a review:
    ``world`` reported a range it had no F0 to apply to). ``world`` reads no contour (None); an
    edit with no range change is returned as given."""
    if abs(edit.f0_range - 1.0) <= 1e-6:
        return edit, None
    contour = range_contour(x, sample_rate, edit, settings)
    if not contour.any():
        return replace(edit, f0_range=1.0), None
    return edit, (None if renderer == "world" else contour)


def _cubic_at(x: np.ndarray, pos: np.ndarray) -> np.ndarray:
    """``x`` read at fractional sample positions ``pos`` (cubic convolution, Keys a = -0.5;
    edges held). float32."""
    i = np.floor(pos).astype(np.int64)
    t = (pos - i).astype(np.float32)
    n = len(x) - 1
    p0, p1, p2, p3 = (x[np.clip(i + k, 0, n)] for k in (-1, 0, 1, 2))
    return p1 + 0.5 * t * (p2 - p0 + t * (2 * p0 - 5 * p1 + 4 * p2 - p3 + t * (3 * (p1 - p2) + p3 - p0)))


def _render_stretch_range(x: np.ndarray, fs: int, edit: ProsodyEdit, settings: MelSettings,
                          contour: np.ndarray | None = None) -> tuple[np.ndarray, tuple[np.ndarray, np.ndarray]] | None:
    """Signalsmith Stretch with the F0 range changed too: its binding transposes a whole call by
    one amount, so the range part (:func:`range_contour`) is applied first by reading ``x`` at a
    varying speed (a transposition of ``T`` semitones plays that stretch ``2^(T/12)`` times
    faster: one continuous signal, no crossfades; read at twice the rate, so what a raised stretch
    moves above the band is filtered out by the resampler instead of folding back), then
    Signalsmith transposes by the constant ``semitones`` and sets the duration to
    ``round(len(x) / tempo)`` samples. Raised stretches come out shorter than the tempo asks,
    lowered ones longer (a factor ``2^(-T/12)``: 15% at 2.5 semitones). The formants move with the
    pitch (:func:`restore_envelope` follows). Returns ``(float32 output, (the output time of each
    mel frame of x in samples, those frames' input positions))`` for the time map, or None when
    the contour is flat (too few voiced frames: the plain renderer does the rest)."""
    t_st = range_contour(x, fs, edit, settings) if contour is None else contour
    if not t_st.any():
        return None
    ps = _python_stretch()
    n_out = max(1, int(round(len(x) / edit.tempo)))
    knots, out_at = _varispeed_map(len(x), fs, t_st, settings)
    n_v = max(1, int(np.floor(out_at[-1])))
    x2 = resample(np.asarray(x, np.float32), fs, 2 * fs)
    xv2 = np.empty(2 * n_v, np.float32)
    block = 1 << 18
    for k0 in range(0, len(xv2), block):
        k = np.arange(k0, min(k0 + block, len(xv2)))
        xv2[k0:k0 + len(k)] = _cubic_at(x2, 2.0 * np.interp(k / 2.0, out_at, knots))
    xv = resample(xv2, 2 * fs, fs)
    st = ps.Signalsmith.Stretch()
    st.preset(1, fs)
    st.setTransposeSemitones(float(edit.semitones))
    st.setTimeFactor(len(xv) / n_out)
    y = np.asarray(st.process(np.ascontiguousarray(xv[None, :]))[0], np.float32)
    return y, (out_at * (n_out / len(xv)), knots)


def _varispeed_map(n_in: int, fs: int, contour: np.ndarray, settings: MelSettings) -> tuple[np.ndarray, np.ndarray]:
    """The varying-speed read of :func:`_render_stretch_range`: ``(input sample positions where
    the speed is set, increasing, from 0 to n_in; the time, in samples of the read signal, at
    which each is read)``. A transposition of ``T`` semitones (``contour``, per mel frame) reads
    ``2^(T/12)`` times faster; between frames the speed is interpolated (trapezoid)."""
    hop_in = settings.hop_length * fs / settings.sample_rate  # input samples per mel frame (frame i centred on i x hop)
    t_st = contour[: max(1, int(np.ceil(n_in / hop_in)))]  # frames that start inside the clip (the model grid may add one)
    knots = np.append(np.arange(len(t_st)) * hop_in, n_in)
    speed = 2.0 ** (np.append(t_st, t_st[-1]) / 12.0)
    return knots, np.concatenate([[0.0], np.cumsum(np.diff(knots) * 0.5 * (1 / speed[:-1] + 1 / speed[1:]))])


def prosody_time_map(wav: np.ndarray, sample_rate: int, edit: ProsodyEdit, renderer: str = "stretch",
                     settings: MelSettings | None = None, contour: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Where :func:`render_prosody`'s output of ``wav`` with ``edit`` comes from: ``(output sample
    times, the input sample positions they render)``, both increasing (``np.interp`` between
    them). The tempo plays the input ``edit.tempo`` times faster throughout, except where the
    stretch renderers change the F0 range: they read the input at a varying speed first
    (:func:`_render_stretch_range`), so raised stretches come out shorter and lowered ones
    longer (by ``2^(-T/12)``). ``contour``: :func:`range_contour` of ``wav`` when the caller has it.
    To compare an output with its source frame by frame (F0 fidelity, alignment)."""
    s = settings or DEFAULT_MEL
    n_in = len(wav)
    n_out = max(1, int(round(n_in / edit.tempo)))
    if renderer in ("stretch", "stretch-raw") and abs(edit.f0_range - 1.0) > 1e-6 and n_in:
        t_st = range_contour(np.asarray(wav, np.float32), int(sample_rate), edit, s) if contour is None else contour
        if t_st.any():
            knots, out_at = _varispeed_map(n_in, int(sample_rate), t_st, s)
            return out_at * (n_out / max(1, int(np.floor(out_at[-1])))), knots
    return np.array([0.0, n_out]), np.array([0.0, n_out * edit.tempo])


def _moving_average(a: np.ndarray, size: int, axis: int) -> np.ndarray:
    """Centred moving average of ``size`` along ``axis``, edges averaged over what exists."""
    if size <= 1:
        return a
    a = np.moveaxis(a, axis, 0)
    c = np.cumsum(np.pad(a, [(1, 0)] + [(0, 0)] * (a.ndim - 1)), axis=0)
    n = a.shape[0]
    lo = np.clip(np.arange(n) - size // 2, 0, n)
    hi = np.clip(np.arange(n) + size - size // 2, 0, n)
    out = (c[hi] - c[lo]) / (hi - lo).reshape((-1,) + (1,) * (a.ndim - 1))
    return np.moveaxis(out, 0, axis)


def restore_envelope(y: np.ndarray, x: np.ndarray, sample_rate: int, tempo: float, settings: MelSettings | None = None,
                     source_mel: np.ndarray | None = None, time_map: tuple[np.ndarray, np.ndarray] | None = None) -> np.ndarray:
    """``y`` (``x`` pitch-shifted and played ``tempo`` times faster) with ``x``'s spectral
    envelope put back: a transposer moves the formants with the harmonics, so the voice
    sounds like another (smaller or larger) speaker. Per model frame, the log-mel of ``x``
    at the matching time (frame ``j * tempo``) minus that of ``y``, both averaged over
    :data:`ENVELOPE_BANDS` bands (removing the harmonics) and :data:`ENVELOPE_FRAMES` frames,
    capped at +-:data:`ENVELOPE_MAX_DB` and kept to ``y``'s speech frames, is applied as a mel-band
    gain to ``y``'s own STFT (:func:`emort.runtime.frontend.apply_band_gain`, the spectral edit's
    renderer). ``source_mel``: ``x``'s log-mel when the caller has it (the model grid of
    ``settings``, DC offset removed); ``time_map``: ``(output sample times, input sample
    positions)`` of matching points, increasing, when the map is not ``j x tempo``
    (the ``stretch`` renderer with an F0 range change). float32, ``y``'s length.

    It also lowers the level, by 3.5-6 dB on real speech at +-3 semitones (a review's measurement;
    ``stretch-raw``: 0.15 dB): three bands do not average out harmonics 120-300 Hz apart below
    1 kHz, and the correction's cuts fall on the harmonic peaks. A level-keeping version was measured
    on the validation conversions and did worse by the rule fixed before its runs (mean cell −1.3
    points, bar −1.0: docs/eval/conversion/level/report.md), so the shipped renderer stays as chosen."""
    s = settings or DEFAULT_MEL
    mx = (source_mel if source_mel is not None else log_mel(model_rate_signal(x, sample_rate, s.sample_rate), s)).astype(np.float64)
    my = log_mel(model_rate_signal(y, sample_rate, s.sample_rate), s).astype(np.float64)
    if time_map is None:
        i0, i1, w = _frame_positions(my.shape[1], mx.shape[1], tempo)
    else:  # the source frame under each output frame's centre
        hop_in = s.hop_length * sample_rate / s.sample_rate
        i0, i1, w = _frames_around(np.interp(np.arange(my.shape[1]) * hop_in, *time_map) / hop_in, mx.shape[1])
    mxw = (1 - w) * mx[:, i0] + w * mx[:, i1]
    d = _moving_average(mxw, ENVELOPE_BANDS, 0) - _moving_average(my, ENVELOPE_BANDS, 0)
    d = _moving_average(d, ENVELOPE_FRAMES, 1)
    cap = ENVELOPE_MAX_DB / NATS_TO_DB
    gain = np.clip(d, -cap, cap) * active_frames(my)[None, :]
    return apply_band_gain(y, sample_rate, gain.astype(np.float32), s)


#: WORLD holds float64 envelope and aperiodicity arrays (frames x fft_size/2+1) and copies them
#: for the tempo: ~0.5 GB for 60 s at 48 kHz; inputs longer than this many samples are refused.
WORLD_MAX_SAMPLES = 60 * 48_000


#: Lowest rate WORLD analyses at: its D4C aperiodicity needs at least 12 kHz, and an 8 or 12 kHz
#: input came out unvoiced (5 voiced frames of 70 where its 16 kHz copy kept 63), so a lower-rate
#: input is rendered at 16 kHz and resampled back.
WORLD_MIN_RATE = 16_000


def _render_world(x: np.ndarray, fs: int, edit: ProsodyEdit) -> np.ndarray:
    if fs < WORLD_MIN_RATE:
        y = _render_world(resample(x, fs, WORLD_MIN_RATE), WORLD_MIN_RATE, edit)
        return resample(y, WORLD_MIN_RATE, fs).astype(np.float32)
    pw = _pyworld()
    if len(x) > WORLD_MAX_SAMPLES:
        raise EmortError(f"the world prosody renderer takes up to {WORLD_MAX_SAMPLES / fs:.0f} s at {fs} Hz "
                         f"(this clip: {len(x) / fs:.0f} s); use --prosody-renderer stretch")
    xd = x.astype(np.float64)
    # F0 from the 16 kHz analysis (as f0_contour), envelope and aperiodicity at the input rate
    f0, t = _dio_stonemask(resample(x, fs, F0_ANALYSIS_RATE).astype(np.float64), WORLD_FRAME_MS)
    sp = pw.cheaptrick(xd, f0, t, fs)
    ap = pw.d4c(xd, f0, t, fs)
    voiced = f0 > 0
    if voiced.sum() >= 2:
        lf = np.log(f0[voiced])
        med = float(np.median(lf))
        f0 = f0.copy()
        f0[voiced] = np.exp(med + edit.f0_range * (lf - med) + edit.semitones * SEMITONE)
    if abs(edit.tempo - 1.0) > 1e-6:
        i0, i1, w = _frame_positions(max(2, int(round(len(f0) / edit.tempo))), len(f0), edit.tempo)
        w = w[:, None]
        sp = (1 - w) * sp[i0] + w * sp[i1]
        ap = (1 - w) * ap[i0] + w * ap[i1]
        near = np.where(w[:, 0] < 0.5, i0, i1)  # voicing is not interpolated: nearest frame's F0
        f0 = np.where(f0[near] > 0, np.where((f0[i0] > 0) & (f0[i1] > 0), np.exp((1 - w[:, 0]) * np.log(np.maximum(f0[i0], 1e-9)) + w[:, 0] * np.log(np.maximum(f0[i1], 1e-9))), f0[near]), 0.0)
    y = pw.synthesize(np.ascontiguousarray(f0), np.ascontiguousarray(sp), np.ascontiguousarray(ap), fs, WORLD_FRAME_MS)
    return y.astype(np.float32)
