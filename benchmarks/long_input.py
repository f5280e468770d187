"""``python benchmarks/long_input.py``: memory and accuracy of enhancing one long file.

* ``memory``: peak RSS (``ru_maxrss`` of a fresh process) and wall time of ``emort enhance FILE
  -e angry -o OUT`` (the whole CLI process) and of the Python API (``read_audio`` +
  ``Enhancer.enhance(..., score_output=True)``, as the CLI does). ``--emort-root DIR`` measures
  another copy of the package instead (e.g. ``git archive HEAD`` unpacked under /tmp), for a
  before/after comparison.
* ``accuracy``: the same file through :meth:`Enhancer.plan` + :meth:`Enhancer.render` with the
  default :class:`~emort.runtime.enhancer.Chunking` and with ``Chunking.off()`` (the whole clip
  in each step): max |difference| of the output samples, of the applied gain over the edit
  region (dB), of ``change_db`` and of the multiplier; the SER scores of both. ``--sweep``
  also runs the denoiser's direction alone with other window margins and lengths.
* ``rf``: the receptive field of the denoiser's convolutions (the architecture with its
  GroupNorm and attention removed, random weights, one output frame back-propagated; needs
  torch).

The long file: RAVDESS clips (``<data>/ravdess``, sorted, mixed to mono) concatenated to
``--seconds`` at their 48 kHz, written as 16-bit WAV to ``--wav`` (the temp folder by default,
never into the repository). Output: a table per part and, with ``--json``, one JSON report.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the checkout's root importable (benchmarks.*, emort)
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402

from benchmarks.clips import shared_data_dir  # noqa: E402

CHECKOUT = Path(__file__).resolve().parent.parent

# One measured run in a fresh interpreter: the CLI's main, or the API as the CLI calls it; prints
# one JSON line. Run from a scratch folder so that `emort` comes from PYTHONPATH, not the cwd.
_CHILD = r"""
import json, resource, sys, time
mode, wav, out = sys.argv[1:4]
t0 = time.perf_counter()
rec = {}
if mode == "cli":
    from emort.cli.app import main
    sys.argv = ["emort", "enhance", wav, "-e", "angry", "-o", out]
    try:
        main()
    except SystemExit as e:
        rec["exit"] = e.code
else:
    from emort.runtime.audio import read_audio
    from emort.runtime.enhancer import Enhancer
    enh = Enhancer.load(device="cpu")
    a = read_audio(wav)
    r = enh.enhance(a.samples, a.sample_rate, "angry", score_output=True)
    rec.update(change_db=r.change_db, guidance=r.guidance)
rec.update(wall_s=time.perf_counter() - t0, max_rss_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
import emort
rec["emort"] = emort.__file__
print("RESULT " + json.dumps(rec))
"""


def make_long_file(path: Path, seconds: float, data_dir: Path) -> Path:
    """RAVDESS clips (sorted, mono) concatenated to ``seconds`` at 48 kHz, 16-bit WAV at ``path``."""
    import soundfile as sf

    from emort.runtime.atomic import atomic_write

    files = sorted((data_dir / "ravdess").glob("Actor_*/*.flac"))
    if not files:
        raise SystemExit(f"no RAVDESS clips under {data_dir / 'ravdess'}; pass --data")
    rate = 48000
    n = int(round(seconds * rate))
    out = np.zeros(n, np.float32)
    pos = i = 0
    while pos < n:
        x, sr = sf.read(files[i % len(files)], dtype="float32", always_2d=True)
        if sr != rate:
            raise SystemExit(f"{files[i % len(files)]}: {sr} Hz, expected {rate}")
        k = min(x.shape[0], n - pos)
        out[pos : pos + k] = x[:k].mean(axis=1)
        pos, i = pos + k, i + 1
    atomic_write(path, lambda tmp: sf.write(tmp, out, rate, subtype="PCM_16", format="WAV"), suffix=".tmp.wav")
    return path


def measure_memory(wav: Path, root: Path, scratch: Path) -> dict:
    """Peak RSS and wall time of the CLI and of the API, each in a fresh process importing ``root``'s emort."""
    env = dict(os.environ, PYTHONPATH=str(root))
    rows = {}
    for mode in ("cli", "api"):
        out = scratch / f"out-{mode}"
        r = subprocess.run([sys.executable, "-c", _CHILD, mode, str(wav), str(out)], capture_output=True, text=True, env=env,
                           cwd=scratch, timeout=3600)
        line = next((ln for ln in r.stdout.splitlines() if ln.startswith("RESULT ")), None)
        if line is None:
            raise SystemExit(f"{mode} run failed:\n{r.stdout[-2000:]}\n{r.stderr[-2000:]}")
        rows[mode] = json.loads(line[len("RESULT "):])
    return rows


def measure_accuracy(wav: Path, sweep: bool, yardstick: bool = False) -> dict:
    """Default chunking against the whole clip at once, on ``wav`` (see the module docstring)."""
    from dataclasses import replace

    from emort.runtime.audio import read_audio
    from emort.runtime.editing import Windows, edit_mel, target_embedding
    from emort.runtime.enhancer import Chunking, Enhancer
    from emort.runtime.frontend import NATS_TO_DB

    enh = Enhancer.load(device="cpu")
    a = read_audio(wav)
    opts = enh.options()
    runs = {}
    cases = [("whole", Chunking.off(), opts), ("chunked", Chunking(), opts)]
    if yardstick:  # what the edit's own noise moves: the whole clip again with the next seed
        cases.append(("whole_next_seed", Chunking.off(), replace(opts, seed=opts.seed + 1)))
    for name, ch, o in cases:
        enh.chunking = ch
        t0 = time.perf_counter()
        plan = enh.plan(a.samples, a.sample_rate, "angry", o)
        y, gain, change, k = enh.render(plan, o)
        runs[name] = dict(plan=plan, y=y, gain=gain, change=change, k=k, seconds=time.perf_counter() - t0)
    w, c = runs["whole"], runs["chunked"]
    region = w["plan"].region > 0
    gain_db = lambda r: r["gain"].astype(np.float64) * NATS_TO_DB  # noqa: E731

    def differences(r: dict) -> dict:
        return {"max_abs_output_diff": float(np.max(np.abs(w["y"] - r["y"]))),
                "rms_output_diff": float(np.sqrt(np.mean((w["y"].astype(np.float64) - r["y"]) ** 2))),
                "max_abs_gain_diff_db": float(np.max(np.abs(gain_db(w) - gain_db(r))[region])),
                "mean_abs_gain_diff_db": float(np.mean(np.abs(gain_db(w) - gain_db(r))[region]))}

    report = {
        "seconds_audio": len(a.samples) / a.sample_rate,
        "mean_abs_gain_db": float(np.mean(np.abs(gain_db(w))[region])),
        **differences(c),
        "change_db": {"whole": w["change"], "chunked": c["change"], "diff": abs(w["change"] - c["change"])},
        "multiplier": {"whole": w["k"], "chunked": c["k"], "rel_diff": abs(w["k"] - c["k"]) / max(abs(w["k"]), 1e-12)},
        "max_abs_raw_db_diff": float(np.max(np.abs(w["plan"].raw_db - c["plan"].raw_db)[region])),
        "scores_before": {"whole": w["plan"].scores_before, "chunked": c["plan"].scores_before},
        "compute_s": {"whole": w["seconds"], "chunked": c["seconds"]},
    }
    if yardstick:
        report["next_seed_vs_whole"] = differences(runs["whole_next_seed"])
    if sweep:  # the direction alone, against the whole clip's, for other windows (same noise, same conditioning)
        b = enh.bundle
        plan = w["plan"]
        norm = b.normalize(plan.mel)
        style = enh.style(mel=norm[None])[0][0]
        _, centroid = enh.target_centroid("angry")
        emo = target_embedding(enh.scorer.score_mels([norm])[0].embedding, centroid, opts.intensity)
        probe = replace(opts, guidance=None)
        ref = plan.raw_db
        k_ref = w["k"]
        rows = []
        for frames, margin in [(2048, m) for m in (0, 16, 32, 48, 64, 80, 128)] + [(1024, 80), (4096, 80)]:
            win = Windows(frames=frames, margin=margin)
            raw = (edit_mel(enh._model_fn, norm, emo, style, probe, enh.spec, win) - norm).astype(np.float64)
            raw *= b.norm_std[:, None]  # as Enhancer.plan scales it
            raw *= NATS_TO_DB
            diff = np.abs(np.clip(k_ref * raw, -opts.max_band_db, opts.max_band_db) - np.clip(k_ref * ref, -opts.max_band_db, opts.max_band_db))
            rows.append({"frames": frames, "margin": margin, "max_abs_raw_db_diff": float(np.max(np.abs(raw - ref)[region])),
                         "max_abs_gain_diff_db": float(np.max(diff[region])), "mean_abs_gain_diff_db": float(np.mean(diff[region]))})
        report["sweep"] = rows
    return report


def receptive_field() -> dict:
    """Frames on each side of one output frame that the denoiser's convolutions read (torch)."""
    import torch
    from torch import nn

    from emort.runtime.bundle import load_bundle
    from emort.training.models.denoiser import Denoiser, DenoiserConfig, LinearAttention1d

    opts = load_bundle(None).training["diffusion"].options
    cfg = DenoiserConfig(channels=list(opts.get("channels", DenoiserConfig().channels)),
                         blocks_per_level=int(opts.get("blocks_per_level", DenoiserConfig().blocks_per_level)))
    m = Denoiser(cfg).eval()
    for mod in list(m.modules()):
        for name, child in list(mod.named_children()):
            if isinstance(child, (nn.GroupNorm, LinearAttention1d)):  # the parts that read the whole clip
                setattr(mod, name, nn.Identity())
    with torch.no_grad():
        for p in m.parameters():  # the zero-initialised output layers would hide every dependence
            p.normal_(0, 0.1)
    length, reach = 1024, 0
    for centre in range(512, 512 + cfg.stride):  # every phase of the down-sampling grid
        x = torch.zeros(1, cfg.n_mels, length, requires_grad=True)
        y = m(x, torch.tensor([300.0]), torch.zeros(1, cfg.emotion_dim), torch.ones(1, 1), torch.zeros(1, cfg.style_dim))
        y[0, :, centre].sum().backward()
        used = torch.nonzero(x.grad[0].abs().sum(0) > 0).flatten()
        reach = max(reach, centre - int(used.min()), int(used.max()) - centre)
    return {"channels": cfg.channels, "blocks_per_level": cfg.blocks_per_level, "reach_frames": reach}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("parts", nargs="*", default=["memory", "accuracy"], help="memory, accuracy, rf (default: memory accuracy)")
    ap.add_argument("--wav", type=Path, default=Path(tempfile.gettempdir()) / "emort-long" / "long600.wav")
    ap.add_argument("--seconds", type=float, default=600.0)
    ap.add_argument("--data", type=Path, default=None, help="folder holding ravdess/ (default: ../shared/data)")
    ap.add_argument("--emort-root", type=Path, default=CHECKOUT, help="the package to measure memory of (default: this checkout)")
    ap.add_argument("--sweep", action="store_true", help="accuracy: also other window margins and lengths")
    ap.add_argument("--yardstick", action="store_true", help="accuracy: also the whole clip with the next seed (what the edit's noise moves)")
    ap.add_argument("--json", type=Path, default=None)
    a = ap.parse_args(argv)
    if a.wav.resolve().is_relative_to(CHECKOUT):
        raise SystemExit("--wav must lie outside the repository")
    if not a.wav.exists():
        make_long_file(a.wav, a.seconds, a.data or shared_data_dir())
    report: dict = {"wav": str(a.wav)}
    if "rf" in a.parts:
        report["receptive_field"] = rf = receptive_field()
        print(f"denoiser convolutions reach +-{rf['reach_frames']} frames (channels {rf['channels']}, {rf['blocks_per_level']} blocks per level)")
    if "memory" in a.parts:
        with tempfile.TemporaryDirectory() as scratch:
            report["memory"] = mem = measure_memory(a.wav, a.emort_root.resolve(), Path(scratch))
        print(f"\n{'path':6s} {'peak RSS (MB)':>14s} {'wall (s)':>9s}   emort from")
        for mode, r in mem.items():
            print(f"{mode:6s} {r['max_rss_mb']:14.0f} {r['wall_s']:9.1f}   {r['emort']}")
    if "accuracy" in a.parts:
        report["accuracy"] = acc = measure_accuracy(a.wav, a.sweep, a.yardstick)
        print(f"\nchunked vs whole clip ({acc['seconds_audio']:.0f} s):")
        for key in ("max_abs_output_diff", "rms_output_diff", "max_abs_gain_diff_db", "mean_abs_gain_diff_db", "max_abs_raw_db_diff"):
            print(f"  {key:24s} {acc[key]:.3g}")
        if "next_seed_vs_whole" in acc:
            ns = acc["next_seed_vs_whole"]
            print(f"  yardstick, whole clip with the next seed: output max {ns['max_abs_output_diff']:.3g} rms {ns['rms_output_diff']:.3g}; "
                  f"gain max {ns['max_abs_gain_diff_db']:.3g} mean {ns['mean_abs_gain_diff_db']:.3g} dB")
        print(f"  mean |applied gain| {acc['mean_abs_gain_db']:.3f} dB")
        print(f"  change_db whole {acc['change_db']['whole']:.6f} chunked {acc['change_db']['chunked']:.6f}; "
              f"multiplier whole {acc['multiplier']['whole']:.6f} chunked {acc['multiplier']['chunked']:.6f}")
        for name in ("whole", "chunked"):
            s = acc["scores_before"][name]
            print(f"  SER before ({name}): " + ", ".join(f"{k} {v:.3f}" for k, v in s.items()))
        for row in acc.get("sweep", []):
            print(f"  window {row['frames']:5d} margin {row['margin']:3d}: max |d raw| {row['max_abs_raw_db_diff']:.4f} dB, "
                  f"gain max {row['max_abs_gain_diff_db']:.4f} mean {row['mean_abs_gain_diff_db']:.5f} dB")
    if a.json is not None:
        from emort.runtime.atomic import write_json_atomic

        write_json_atomic(a.json, report)
    print("\n" + json.dumps(report, default=float))
    return 0


if __name__ == "__main__":
    sys.exit(main())
