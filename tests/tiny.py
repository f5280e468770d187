"""Tiny real models for tests: a few steps of SER and diffusion training on a handful of
real clips, exported to an ONNX bundle. Built once per test session (~20 s on 2 cores)."""

from __future__ import annotations

import csv
from pathlib import Path

EMODB_LETTERS = {"W": "angry", "E": "disgust", "A": "fear", "F": "happy", "T": "sad", "N": "neutral"}


def harmonic_tone(f0_hz: float, sr: int, seconds: float = 1.0, glide: float = 0.0, harmonics: int = 10,
                  pad_s: float = 0.05):
    """A vowel-like harmonic tone (1/k amplitudes, peak about 0.3) at ``f0_hz``, optionally
    gliding by ``glide`` (fraction) over the clip, with ``pad_s`` of silence at each end:
    float32 ``(samples,)``."""
    import numpy as np

    n = int(seconds * sr)
    f = f0_hz * (1 + glide * np.linspace(-0.5, 0.5, n))
    phase = 2 * np.pi * np.cumsum(f) / sr
    x = sum(np.sin(k * phase) / k for k in range(1, harmonics + 1)) * 0.1
    pad = np.zeros(int(pad_s * sr))
    return np.concatenate([pad, x, pad]).astype(np.float32)


def write_manifest_csv(path: Path, rows) -> Path:
    """A corpus manifest ``path,emotion,speaker`` (what ``--data csv=PATH`` reads) with ``rows``."""
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path", "emotion", "speaker"])
        w.writerows(rows)
    return path


def write_manifest(shared_data: Path, out_csv: Path, per_emotion: int = 3) -> Path:
    """CSV manifest of real EmoDB clips: speakers 09/11 (train) and 10 (validation)."""
    wav = sorted((shared_data / "emodb" / "wav").glob("*.flac"))
    rows = []
    for spk in ("09", "11", "10"):
        counts: dict[str, int] = {}
        for p in wav:
            if p.stem[:2] == spk and p.stem[5] in EMODB_LETTERS:
                e = EMODB_LETTERS[p.stem[5]]
                if counts.get(e, 0) < per_emotion:
                    counts[e] = counts.get(e, 0) + 1
                    rows.append((str(p.resolve()), e, spk))
    return write_manifest_csv(out_csv, rows)


def build_tiny(shared_data: Path, root: Path) -> dict[str, Path]:
    import torch

    from emort.export.onnx import write_bundle
    from emort.training.diffusion import DiffusionTrainConfig, train_diffusion
    from emort.training.ser import SERTrainConfig, train_ser
    from emort.training.ustats import StatsTrainConfig, train_stats

    torch.set_num_threads(2)
    manifest = write_manifest(shared_data, root / "tiny.csv")
    data = [f"csv={manifest}"]
    ser = root / "ser"
    train_ser(SERTrainConfig(data=data, out=str(ser), preset="tiny", epochs=2, batch_size=8, test_speakers=[], val_speakers=["tiny/10"],
                             crop_s=1.0, progress=False, device="cpu"))
    # A speaker-normalised SER too, shipped as the bundle's per-speaker scorer.
    ser_spk = root / "ser_speaker"
    train_ser(SERTrainConfig(data=data, out=str(ser_spk), preset="tiny", epochs=1, batch_size=8, test_speakers=[], val_speakers=["tiny/10"],
                             crop_s=1.0, norm="speaker", progress=False, device="cpu"))
    diff = root / "diffusion"
    train_diffusion(DiffusionTrainConfig(data=data, ser=str(ser), out=str(diff), channels=[16, 32], blocks_per_level=1, steps=6, batch_size=4,
                                         crop_s=0.5, sample_every=0, checkpoint_every=3, progress=False, device="cpu"))
    clips = [r["path"] for r in csv.DictReader(open(manifest))][:2]
    bundle = root / "bundle"
    write_bundle(bundle, ser_run=ser, diffusion_run=diff, parity_clips=clips, name="tiny-test", speaker_ser_run=ser_spk)
    # The utterance-statistics classifier, and a second bundle that fuses it into per-speaker scores.
    stats = root / "stats"
    train_stats(StatsTrainConfig(data=data, out=str(stats), test_speakers=[], val_speakers=["tiny/10"]))
    bundle_stats = root / "bundle_stats"
    write_bundle(bundle_stats, ser_run=ser, diffusion_run=diff, parity_clips=clips, name="tiny-test-stats", speaker_ser_run=ser_spk,
                 stats_run=stats)
    return {"ser": ser, "ser_speaker": ser_spk, "diffusion": diff, "bundle": bundle, "manifest": manifest, "stats": stats,
            "bundle_stats": bundle_stats}


class MinuteClock:
    """A stand-in for a training module's ``time``: each ``time()`` reading is a minute after the
    last, so a run with ``max_minutes`` stops after a known number of epochs or steps."""

    def __init__(self):
        self.n = -1

    def time(self) -> float:
        self.n += 1
        return 60.0 * self.n
