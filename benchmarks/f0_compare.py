"""``python benchmarks/f0_compare.py``: which F0 estimator the prosody stage uses, by accuracy and speed.

Estimators, each on the mel frame grid (11.6 ms): WORLD DIO + StoneMask at 16 kHz (what
``emort.runtime.prosody.f0_contour`` uses), WORLD Harvest at 16 kHz, and Praat's
autocorrelation pitch through parselmouth (when installed; 60-700 Hz like the others).

* Accuracy, on synthetic voiced speech with a known F0 contour (harmonics falling 6 dB per
  octave under two formant-like peaks, vibrato and a glide, F0 90-320 Hz, 2 s, white noise at 20 dB SNR,
  50 ms silence at each end; ``--n`` signals at 16 / 22.05 / 48 kHz): gross pitch error (share
  of truly voiced frames whose estimate is unvoiced or off by > 20%), the median absolute
  error in cents over the rest, and false voicing in the silent ends.
  A second kind has a weak fundamental (as after a telephone band).
* Real clips of the validation speakers (``--real`` per corpus), against Harvest (no ground
  truth): share of frames both call voiced where they differ by > 20%, voicing agreement.
* Speed: real-time factor on real clips (EmoDB, nEMO, RAVDESS: one each, at their own rate).

Prints a table, writes JSON (``--json``).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402

from benchmarks.clips import corpus_files, shared_data_dir  # noqa: E402
from benchmarks.timing import machine_info  # noqa: E402


def synthetic(seed: int, sr: int, seconds: float = 2.0, weak_h1: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """(signal float32, true F0 per model frame in Hz, 0 where silent). ``weak_h1``: the
    harmonics follow the formants only (the fundamental 26 dB down, as after a telephone band)."""
    from emort.runtime.frontend import num_frames
    from emort.runtime.settings import DEFAULT_MEL as S

    rng = np.random.default_rng(seed)
    n = int(seconds * sr)
    t = np.arange(n) / sr
    base = rng.uniform(90, 220)
    f0 = base * (1 + rng.uniform(-0.3, 0.45) * t / seconds) * (1 + 0.03 * np.sin(2 * np.pi * 5.5 * t))
    ph = 2 * np.pi * np.cumsum(f0) / sr
    formants = rng.uniform([500, 1400], [800, 2200])
    x = np.zeros(n)
    for k in range(1, int(4000 / f0.max())):
        fk = k * f0
        # glottal source falling ~6 dB per octave, shaped by two formants over a floor
        env = sum(np.exp(-((fk - fm) / 200) ** 2) for fm in formants)
        amp = env + 0.05 if weak_h1 else (env + 0.3) / k
        x += amp * np.sin(k * ph)
    x /= np.abs(x).max()
    x += rng.standard_normal(n) * np.sqrt(np.mean(x**2) / 100)  # 20 dB SNR
    pad = int(0.05 * sr)
    x = np.concatenate([np.zeros(pad), x, np.zeros(pad)]) * 0.3
    x[:pad] += rng.standard_normal(pad) * 1e-4
    x[-pad:] += rng.standard_normal(pad) * 1e-4
    frames = num_frames(int(round(len(x) * S.sample_rate / sr)), S)
    tf = np.arange(frames) * S.hop_length / S.sample_rate - 0.05  # frame centre, s, in the voiced part
    truth = np.where((tf >= 0.02) & (tf <= seconds - 0.02), np.interp(tf, t, f0), 0.0)
    truth[(tf > -0.03) & (tf < 0.02)] = np.nan  # onsets: not scored
    truth[(tf > seconds - 0.02) & (tf < seconds + 0.03)] = np.nan
    return x.astype(np.float32), truth


def estimators() -> dict:
    from emort.runtime.audio import resample
    from emort.runtime.prosody import F0_CEIL, F0_FLOOR, f0_contour, frame_period_ms
    from emort.runtime.settings import DEFAULT_MEL as S

    def on_grid(f0, frames):
        out = np.zeros(frames)
        k = min(frames, len(f0))
        out[:k] = f0[:k]
        return out

    def frames_of(x, sr):
        from emort.runtime.frontend import num_frames

        return num_frames(int(round(len(x) * S.sample_rate / sr)), S)

    def harvest(x, sr):
        import pyworld as pw

        x16 = resample(x, sr, 16000).astype(np.float64)
        f0, _ = pw.harvest(x16, 16000, f0_floor=F0_FLOOR, f0_ceil=F0_CEIL, frame_period=frame_period_ms(S))
        return on_grid(f0, frames_of(x, sr))

    out = {"dio+stonemask (shipped)": lambda x, sr: f0_contour(x, sr, S), "harvest": harvest}
    try:
        import parselmouth

        def praat(x, sr):
            snd = parselmouth.Sound(x.astype(np.float64), sampling_frequency=sr)
            step = S.hop_length / S.sample_rate
            p = snd.to_pitch_ac(time_step=step, pitch_floor=F0_FLOOR, pitch_ceiling=F0_CEIL)
            n = frames_of(x, sr)
            times = np.arange(n) * step
            vals = np.array([p.get_value_at_time(t) for t in times])
            return np.nan_to_num(vals, nan=0.0)

        out["praat (parselmouth)"] = praat
    except ImportError:
        pass
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=10, help="synthetic signals per sample rate")
    ap.add_argument("--real", type=int, default=10, help="real clips per validation corpus (compared with Harvest)")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)
    from emort.runtime.audio import read_audio, to_mono

    est = estimators()
    rows = []
    data = shared_data_dir()
    real = []  # validation speakers' clips: the reference is Harvest (no ground truth)
    for corpus in ("emodb", "ravdess", "nemo"):
        for p in corpus_files(data, corpus, validation=True)[: args.real]:
            a = read_audio(p)
            real.append((to_mono(a.samples), a.sample_rate))
    ref = [est["harvest"](x, sr) for x, sr in real]
    for name, fn in est.items():
        row: dict = {"estimator": name}
        for kind in ("h1", "weak_h1"):
            gpe, cents, false_v = [], [], []
            for sr in (16000, 22050, 48000):
                for seed in range(args.n):
                    x, truth = synthetic(seed, sr, weak_h1=kind == "weak_h1")
                    f0 = fn(x, sr)[: len(truth)]
                    scored = ~np.isnan(truth)
                    voiced = scored & (truth > 0)
                    silent = scored & (truth == 0)
                    est_v = f0[voiced]
                    bad = (est_v <= 0) | (np.abs(est_v / truth[voiced] - 1) > 0.2)
                    gpe.append(bad.mean())
                    good = ~bad
                    cents.append(np.median(np.abs(1200 * np.log2(est_v[good] / truth[voiced][good]))) if good.any() else np.nan)
                    false_v.append((f0[silent] > 0).mean() if silent.any() else 0.0)
            row[kind] = {"gross_pitch_error": float(np.mean(gpe)), "median_abs_cents": float(np.nanmean(cents)),
                         "false_voicing": float(np.mean(false_v))}
        both, off, voicing = 0, 0, []
        for (x, sr), r in zip(real, ref):
            f0 = fn(x, sr)[: len(r)]
            b = (f0 > 0) & (r > 0)
            both += int(b.sum())
            off += int((np.abs(f0[b] / r[b] - 1) > 0.2).sum())
            voicing.append(float(np.mean((f0 > 0) == (r > 0))))
        row["real_vs_harvest"] = {"clips": len(real), "gross_disagreement": off / max(both, 1), "voicing_agreement": float(np.mean(voicing))}
        rtf = []
        for corpus in ("emodb", "nemo", "ravdess"):
            a = read_audio(corpus_files(data, corpus)[0])
            x = to_mono(a.samples)
            fn(x, a.sample_rate)
            t0 = time.perf_counter()
            for _ in range(3):
                fn(x, a.sample_rate)
            rtf.append((time.perf_counter() - t0) / 3 / (len(x) / a.sample_rate))
        row["rtf_emodb_nemo_ravdess"] = [float(r) for r in rtf]
        rows.append(row)
    report = {"machine": machine_info(threads=0), "synthetic_per_rate": args.n, "rows": rows}
    print(f"CPU: {report['machine']['cpu_model']}; {args.n} synthetic signals x 3 rates per kind; {len(real)} real validation "
          "clips against Harvest; RTF on one real clip per corpus\n")
    print(f"{'estimator':26s} {'GPE':>6s} {'cents':>6s} {'falseV':>7s} {'GPE weak H1':>12s} {'real: >20% off':>15s} {'voicing':>8s}"
          "  RTF 16k / 24k / 48k")
    for r in rows:
        h, w, q = r["h1"], r["weak_h1"], r["real_vs_harvest"]
        print(f"{r['estimator']:26s} {h['gross_pitch_error']:6.3f} {h['median_abs_cents']:6.1f} {h['false_voicing']:7.3f} "
              f"{w['gross_pitch_error']:12.3f} {q['gross_disagreement']:15.3f} {q['voicing_agreement']:8.3f}  "
              + " / ".join(f"{v:.4f}" for v in r["rtf_emodb_nemo_ravdess"]))
    if args.json is not None:
        args.json.write_text(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
