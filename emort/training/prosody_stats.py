"""Per-emotion prosody relative to neutral, measured on training speakers: the bundle's
``prosody`` table (:class:`emort.runtime.prosody.ProsodyTable`).

Per file, :func:`emort.runtime.prosody.utterance_prosody` of the runtime's F0 contour (the one
definition): median log-F0 (semitones), its standard deviation (semitones) and the speech
span (first to last voiced frame). Per speaker with neutral clips, per emotion: the level
difference from the speaker's neutral clips (mean over clips), the ratio of mean F0 standard
deviations, the ratio of median speech spans (neutral / emotion: > 1 faster) and the
difference of mean voiced-speech levels (dB; speakers whose recordings were peak-normalised
left out, see :data:`NORMALISED_PEAK_SPREAD_DB`). The table
averages speakers (semitones arithmetically, ratios geometrically), so each speaker counts
once whatever its number of clips.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence

import numpy as np

from emort.runtime.prosody import F0_ANALYSIS_RATE, ProsodyTable, f0_contour, utterance_prosody
from emort.runtime.settings import MelSettings

STATS = ("level", "range", "speech_s", "loudness_db", "peak_db")
#: A speaker whose clips' peaks all lie within this many dB was peak-normalised (EmoDB: every
#: file peaks at 0 dBFS): its level differences say nothing of vocal effort, so its clips do not
#: enter the table's ``loudness_db``.
NORMALISED_PEAK_SPREAD_DB = 0.5
MIN_CLIPS_FOR_RULE = 5


def file_prosody(paths: Sequence[str], settings: MelSettings) -> np.ndarray:
    """``(N, 5)`` float64: :data:`STATS` per file (NaN row: < 10 voiced frames), cached
    per file (path, size, mtime) under ``$EMORT_CACHE/prosody``."""
    from emort.runtime.audio import read_audio
    from emort.training.data import file_cache_path, read_cached_array, write_cached_array

    rows = []
    for p in paths:
        f = file_cache_path("prosody", p, F0_ANALYSIS_RATE, settings.to_dict(), tag="prosody")
        v = read_cached_array(f, (len(STATS),))
        if v is None:
            a = read_audio(p)
            u = utterance_prosody(f0_contour(a.samples, a.sample_rate, settings), settings, a.samples, a.sample_rate)
            if u is not None:
                u["peak_db"] = float(20 * np.log10(np.abs(a.samples).max() + 1e-12))
            v = np.array([u[k] for k in STATS]) if u is not None else np.full(len(STATS), np.nan)
            write_cached_array(f, v)
        rows.append(v)
    return np.stack(rows) if rows else np.zeros((0, len(STATS)))


def prosody_table(items: Sequence, settings: MelSettings) -> ProsodyTable:
    """The table from ``items`` (corpus items of TRAINING speakers only: the caller's split)."""
    stats = file_prosody([i.path for i in items], settings)
    by: dict[str, dict[str, list[np.ndarray]]] = defaultdict(lambda: defaultdict(list))
    for it, v in zip(items, stats):
        if np.all(np.isfinite(v)):
            by[it.speaker_key][it.emotion].append(v)
    per: dict[str, dict[str, list[float]]] = defaultdict(lambda: {"semitones": [], "f0_range": [], "tempo": [], "loudness_db": []})
    speakers, normalised = [], []
    for spk, emo in sorted(by.items()):
        if "neutral" not in emo:
            continue
        speakers.append(spk)
        peaks = np.concatenate([np.array(r)[:, 4] for r in emo.values()])
        # a few clips can share a peak by chance: the rule needs MIN_CLIPS_FOR_RULE of them
        level_ok = len(peaks) < MIN_CLIPS_FOR_RULE or float(peaks.max() - peaks.min()) >= NORMALISED_PEAK_SPREAD_DB
        if not level_ok:
            normalised.append(spk)
        n = np.array(emo["neutral"])
        for e, rows in emo.items():
            if e == "neutral":
                continue
            r = np.array(rows)
            per[e]["semitones"].append(float(r[:, 0].mean() - n[:, 0].mean()))
            per[e]["f0_range"].append(math.log(r[:, 1].mean() / n[:, 1].mean()))
            per[e]["tempo"].append(math.log(np.median(n[:, 2]) / np.median(r[:, 2])))
            if level_ok:
                per[e]["loudness_db"].append(float(r[:, 3].mean() - n[:, 3].mean()))
    emotions = {"neutral": {"semitones": 0.0, "f0_range": 1.0, "tempo": 1.0, "loudness_db": 0.0, "speakers": len(speakers),
                            "loudness_speakers": len(speakers) - len(normalised)}}
    for e, d in sorted(per.items()):
        emotions[e] = {"semitones": round(float(np.mean(d["semitones"])), 3),
                       "f0_range": round(math.exp(float(np.mean(d["f0_range"]))), 4),
                       "tempo": round(math.exp(float(np.mean(d["tempo"]))), 4),
                       "loudness_db": round(float(np.mean(d["loudness_db"])), 3) if d["loudness_db"] else 0.0,
                       "loudness_speakers": len(d["loudness_db"]),
                       "speakers": len(d["semitones"])}
    source = {"definition": "emort.runtime.prosody.utterance_prosody of f0_contour (WORLD DIO + StoneMask at 16 kHz)",
              "speakers": speakers, "clips": int(sum(len(r) for e in by.values() for r in e.values())),
              "level_normalised_speakers": normalised}
    return ProsodyTable(emotions=emotions, source=source)
