"""The runtime's rows: onnxruntime backends (CPU, CUDA, TensorRT) on the bundle graphs.

Per backend: SER forward, style encoder, one denoiser step (classifier-free guidance:
batch 2) and the whole enhancement of one clip; batch throughput (scoring, enhancing a
folder); the steps x sampler sweep; and the parity of each backend's outputs with the
PyTorch eager rows (:mod:`benchmarks.eager_rows`) when those ran.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from benchmarks.clips import TARGET_CLIP_S, Clips
from benchmarks.timing import measure

#: Backends in table order. ``torch`` is PyTorch eager on the training runs' weights.
#: ``ort-cpu`` is the runtime as shipped (the CLI's sessions: their threads spin at most
#: ``SPIN_US`` between operators, then sleep); ``ort-cpu-spin`` the same graphs with the
#: denoiser's threads spinning as long as onnxruntime lets them (``Enhancer.load(spin=True)``),
#: as PyTorch's OpenMP threads do between its operators. ``ov-cpu-bf16`` is the runtime with its
#: denoiser in bfloat16 through OpenVINO (``Enhancer.load(precision="bf16")``; a CPU with AMX-BF16 or AVX512-BF16);
#: its SER and style encoder are ort-cpu's float32 sessions, so only its denoiser rows differ.
#: ``ort-tensorrt`` runs FP32 engines; ``trt-fp16`` the denoiser's FP16 engine (``--precision fp16``).
BACKENDS = ("torch", "ort-cpu", "ort-cpu-spin", "ov-cpu-bf16", "ort-cuda", "ort-tensorrt", "trt-fp16")
ORT_DEVICES = {"ort-cpu": "cpu", "ort-cpu-spin": "cpu", "ov-cpu-bf16": "cpu", "ort-cuda": "cuda", "ort-tensorrt": "tensorrt",
               "trt-fp16": "tensorrt"}
#: The denoiser's precision of each backend that is not float32.
PRECISION = {"ov-cpu-bf16": "bf16", "trt-fp16": "fp16"}
#: Clips in one scoring batch (the bundle's TensorRT profiles stop at batch 8).
SCORE_BATCH = 8
#: Default steps x method grid of the sweep (samplers; ``direction`` is the bundle default's method).
SWEEP_GRID = tuple((s, n) for s in ("ddim", "dpmpp", "ddpm") for n in (4, 8, 16))
QUICK_SWEEP_GRID = (("ddim", 2), ("dpmpp", 4))

#: ``evaluate(sources, outputs, sample_rate, emotion, options) -> {metric: value}``; see :func:`quality_sweep`.
EvaluateFn = Callable[[list[np.ndarray], list[np.ndarray], int, str, object], dict]


@dataclass
class Backend:
    """One column of the tables: ``status`` "ok" (with an ``enhancer``) or "skipped" (with the ``reason``)."""

    name: str
    status: str  # "ok" | "skipped"
    reason: str = ""
    device: str = ""
    enhancer: object | None = None  # emort.runtime.enhancer.Enhancer

    def summary(self) -> dict:
        d = {"status": self.status, "device": self.device}
        if self.reason:
            d["reason"] = self.reason
        return d


def ort_backend(name: str, bundle, requested: str, threads: int) -> Backend:
    """A runtime backend (``ort-cpu``, ``ort-cpu-spin``, ``ov-cpu-bf16``, ``ort-cuda``, ``ort-tensorrt``, ``trt-fp16``), or why it is skipped."""
    from emort.runtime.enhancer import Enhancer
    from emort.runtime.session import (
        available_devices,
        gpu_build_shadowed,
        ort_providers,
        shadowed_hint,
    )

    dev = ORT_DEVICES[name]
    if requested not in ("all", dev):
        return Backend(name, "skipped", f"not requested (--device {requested})", dev)
    if dev not in available_devices():
        why = {"cuda": f"CUDAExecutionProvider not available (onnxruntime providers: {', '.join(ort_providers())}); "
                       + (shadowed_hint() if gpu_build_shadowed() else "needs onnxruntime-gpu and an NVIDIA GPU (pip install 'emort[cuda]')"),
               "tensorrt": "neither native TensorRT nor onnxruntime's TensorrtExecutionProvider is available; "
                           "needs TensorRT and an NVIDIA GPU (pip install 'emort[tensorrt]')"}.get(dev, f"{dev} not available")
        return Backend(name, "skipped", why, dev)
    if name == "ov-cpu-bf16":
        from emort.runtime.openvino_cpu import bf16_status

        ok, why = bf16_status()
        if not ok:
            return Backend(name, "skipped", why, dev)
    try:
        enh = Enhancer.load(bundle, device=dev, threads=threads, **({"spin": True} if name == "ort-cpu-spin" else {}),
                            precision=PRECISION.get(name, "fp32"))
    except Exception as e:  # a provider that is listed but fails to start (driver, library mismatch)
        return Backend(name, "skipped", f"failed to start: {e}", dev)
    return Backend(name, "ok", device=dev, enhancer=enh)


def target_emotion(labels: Sequence[str]) -> str:
    """The emotion the benchmark enhances toward."""
    return "happy" if "happy" in labels else labels[-1]


def denoiser_feeds(bundle, frames: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Random inputs of one denoiser step at batch 2 (classifier-free guidance), ``frames`` padded to the stride."""
    t_pad = frames + (-frames) % bundle.stride
    emb_dim = len(next(iter(bundle.centroids.values())))
    style_dim = bundle.models["style"].dim or 128  # bundles before 0.2 did not record it; 128 was the only width
    return {
        "x": rng.standard_normal((2, bundle.mel.n_mels, t_pad)).astype(np.float32),
        "t": np.array([500.0, 500.0], np.float32),
        "emotion": rng.standard_normal((2, emb_dim)).astype(np.float32),
        "emotion_mask": np.array([[1.0], [0.0]], np.float32),
        "style": rng.standard_normal((2, style_dim)).astype(np.float32),
    }


def edit_call_feeds(bundle, frames: int, steps: int, max_batch: int | None, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Random inputs of one denoiser call as the direction edit makes it: its noise levels batched
    (``k`` levels, conditional and unconditional rows: batch ``2 k``), ``k`` = ``steps`` up to the
    backend's batch limit (:func:`emort.runtime.editing.edit_direction`)."""
    from emort.runtime.editing import MAX_BATCH_FRAMES

    t_pad = frames + (-frames) % bundle.stride
    k = min(steps, max(1, MAX_BATCH_FRAMES // (2 * t_pad)))
    if max_batch:
        k = min(k, max(1, max_batch // 2))
    one = denoiser_feeds(bundle, frames, rng)
    ts = np.linspace(500.0, 62.0, k, dtype=np.float32)
    return {
        "x": rng.standard_normal((2 * k,) + one["x"].shape[1:]).astype(np.float32),
        "t": np.concatenate([ts, ts]),
        "emotion": np.repeat(one["emotion"][:1], 2 * k, axis=0),
        "emotion_mask": np.concatenate([np.ones((k, 1), np.float32), np.zeros((k, 1), np.float32)]),
        "style": np.repeat(one["style"][:1], 2 * k, axis=0),
    }


def enhance_once(enhancer, wav: np.ndarray, emotion: str, options=None) -> np.ndarray:
    """One enhancement of ``wav`` (at the bundle rate) with ``options`` (default: the bundle's)."""
    return enhancer.enhance(wav, enhancer.bundle.mel.sample_rate, emotion, options or enhancer.defaults).wav


def count_calls(enhancer, wav: np.ndarray, emotion: str) -> int:
    """Denoiser forward passes of one enhancement with the defaults."""
    calls = 0
    inner = enhancer.denoiser

    def counting(**kw):
        nonlocal calls
        calls += 1
        return inner(**kw)

    enhancer.denoiser = counting
    try:
        enhance_once(enhancer, wav, emotion)
    finally:
        enhancer.denoiser = inner
    return calls


def bench_backend(be: Backend, wav: np.ndarray, src: np.ndarray, feeds: dict[str, np.ndarray], emotion: str, timing: dict) -> list[dict]:
    """SER, style, one denoiser step (batch 2), one denoiser call as the edit makes it (its noise
    levels batched) and the whole enhancement of one clip on one backend."""
    enh = be.enhancer
    ser_in, style_in = src[None, None], src[None]
    rows = [
        {"component": "ser", "backend": be.name, "batch": 1, **measure(lambda: enh.scorer.ser(mel=ser_in), **timing)},
        {"component": "style", "backend": be.name, "batch": 1, **measure(lambda: enh.style(mel=style_in), **timing)},
        {"component": "denoiser_step", "backend": be.name, "batch": 2, "frames_padded": int(feeds["x"].shape[2]),
         **measure(lambda: enh.denoiser(**feeds), **timing)},
    ]
    call = edit_call_feeds(enh.bundle, feeds["x"].shape[2], enh.defaults.steps, enh.spec.max_batch, np.random.default_rng(1))
    rows.append({"component": "denoiser_call", "backend": be.name, "batch": int(call["x"].shape[0]), "frames_padded": int(call["x"].shape[2]),
                 **measure(lambda: enh.denoiser(**call), **timing)})
    calls = count_calls(enh, wav, emotion)  # also the warm-up of the end-to-end run
    e2e = measure(lambda: enhance_once(enh, wav, emotion), **{**timing, "warmup": 0})
    rows.append({"component": "enhance", "backend": be.name, "denoiser_calls": calls, **e2e})
    return rows


def rel_diff(a: np.ndarray, b: np.ndarray) -> float:
    """Max |a - b| relative to max(|b|, 1)."""
    return float(np.max(np.abs(a - b)) / max(float(np.max(np.abs(b))), 1.0))


def parity(backends: list[Backend], b, wav: np.ndarray, rng: np.random.Generator) -> dict:
    """Max relative difference of each ORT backend from torch eager on one clip (same-model check)."""
    from emort.runtime.frontend import log_mel

    ref = next((be for be in backends if be.name == "torch" and be.status == "ok"), None)
    if ref is None:
        return {}
    src = b.normalize(log_mel(wav, b.mel))
    feeds = denoiser_feeds(b, src.shape[1], rng)
    out: dict = {}
    r = ref.enhancer
    want = {"ser": r.scorer.ser(mel=src[None, None]), "style": r.style(mel=src[None]), "denoiser": r.denoiser(**feeds)}
    for be in backends:
        if be.status != "ok" or be is ref:
            continue
        e = be.enhancer
        got = {"ser": e.scorer.ser(mel=src[None, None]), "style": e.style(mel=src[None]), "denoiser": e.denoiser(**feeds)}
        out[be.name] = {k: max(rel_diff(g, w) for g, w in zip(got[k], want[k], strict=True)) for k in want}
    return out


def throughput(be: Backend, b, clips: Clips, emotion: str, timing: dict) -> list[dict]:
    """Scoring 3 s clips in batches (with and without the front-end) and enhancing a folder, on one backend."""
    from emort.runtime.frontend import log_mel

    enh = be.enhancer
    scorer = enh.scorer
    n = len(clips.score)

    def score_all():
        mels = [scorer.normalized_mel(w, b.mel.sample_rate) for w in clips.score]
        for i in range(0, n, SCORE_BATCH):
            scorer.score_mels(mels[i : i + SCORE_BATCH])

    mels = [b.normalize(log_mel(w, b.mel)) for w in clips.score]

    def score_model():
        for i in range(0, n, SCORE_BATCH):
            scorer.score_mels(mels[i : i + SCORE_BATCH])

    def enhance_folder():
        for w in clips.folder:
            enhance_once(enh, w, emotion)

    rows = []
    score_s = n * TARGET_CLIP_S
    enhance_once(enh, clips.folder[0], emotion)  # warm-up of the folder run: one clip, not the whole folder
    for task, fn, count, audio_s, t in (
        ("score", score_all, n, score_s, timing),
        ("score_model_only", score_model, n, score_s, timing),
        ("enhance_folder", enhance_folder, len(clips.folder), sum(len(w) for w in clips.folder) / b.mel.sample_rate,
         {**timing, "warmup": 0, "repeats": min(timing["repeats"], 5), "min_runs": 1}),
    ):
        m = measure(fn, **t)
        rows.append({"task": task, "backend": be.name, "clips": count, "audio_s": round(audio_s, 3),
                     "batch": SCORE_BATCH if task.startswith("score") else 1,
                     "clips_per_s": count / (m["median_ms"] / 1e3), "rtf": m["median_ms"] / 1e3 / audio_s, **m})
    return rows


def quality_sweep(enhancer, clips: Sequence[np.ndarray], emotion: str, grid: Sequence[tuple[str, int]] = SWEEP_GRID,
                  evaluate: EvaluateFn | None = None, base_options: dict | None = None) -> list[dict]:
    """Steps x method vs speed (and quality when ``evaluate`` is given).

    For each ``(method, steps)`` in ``grid`` every clip (at the bundle rate) is enhanced
    toward ``emotion`` with the bundle defaults otherwise (plus ``base_options``). Each row
    has ``sampler`` (the method), ``steps``, ``rtf`` (total seconds / total audio seconds)
    and, when ``evaluate`` is given, whatever it returns for the outputs, e.g. target
    probability under a held-out judge, speaker similarity, content error; those become
    extra columns of the table. ``evaluate(sources, outputs, sample_rate, emotion, options)``
    receives waveforms at the bundle rate and the
    :class:`~emort.runtime.editing.EditOptions` used.
    """
    sr = enhancer.bundle.mel.sample_rate
    audio_s = sum(len(c) for c in clips) / sr
    rows = []
    for method, steps in grid:
        opts = enhancer.options(**{**(base_options or {}), "method": method, "steps": steps})
        enhance_once(enhancer, clips[0], emotion, opts)  # warm-up
        t0 = time.perf_counter()
        outs = [enhance_once(enhancer, c, emotion, opts) for c in clips]
        row: dict = {"sampler": method, "steps": int(steps), "rtf": (time.perf_counter() - t0) / audio_s}
        if evaluate is not None:
            row.update(evaluate(list(clips), outs, sr, emotion, opts))
        rows.append(row)
    return rows


#: Batches of the denoiser sweep: one step (2), one clip's edit call at the default 4 levels (8),
#: two and four clips' calls stacked (16, 32).
BATCH_SWEEP = (2, 8, 16, 32)


def batch_sweep(be: Backend, bundle, wav: np.ndarray, peak: dict, timing: dict, rng: np.random.Generator) -> list[dict]:
    """The denoiser at several batch sizes on one clip's frames: GFLOP/s and fraction of ``peak``
    per batch, i.e. what batching the edit calls of several equal-length clips would gain."""
    from emort.runtime.frontend import log_mel

    frames = log_mel(wav, bundle.mel).shape[1]
    per_frame = bundle.models["denoiser"].flops_per_frame
    out = []
    for batch in BATCH_SWEEP:
        one = denoiser_feeds(bundle, frames, rng)
        feeds = {k: np.concatenate([v] * (batch // 2)) for k, v in one.items()}
        m = measure(lambda feeds=feeds: be.enhancer.denoiser(**feeds), **timing)
        row = {"batch": batch, "frames_padded": int(feeds["x"].shape[2]), **m}
        if per_frame:
            row["gflops_achieved"] = per_frame * row["frames_padded"] * batch / (m["median_ms"] / 1e3) / 1e9
            row["fraction_of_peak"] = row["gflops_achieved"] / peak["gflops"]
        out.append(row)
    return out
