"""Export trained runs to an ONNX model bundle, with a parity check against PyTorch.

``emort export onnx --ser RUN --diffusion RUN --out BUNDLE``. The manifest is
written here and only here; ``emort.runtime.bundle`` reads it.
"""

from __future__ import annotations

import datetime as _dt
import json
import logging
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import torch

from emort import __version__
from emort.export.denoiser_graph import build as build_denoiser_graph
from emort.export.optimize import rewrite_file
from emort.export.stats import (
    OPSET,
    ParityError,
    check_stats_run,
    export_stats,
    stats_model_entry,
    stats_training_entry,
)
from emort.runtime.bundle import FORMAT, FORMAT_VERSION, MANIFEST, sha256_file
from emort.runtime.errors import EmortError
from emort.runtime.ustats import num_features, zscore

log = logging.getLogger(__name__)

#: Parity tolerance: max |onnx - torch| / max(|torch|, 1) per output.
PARITY_RTOL = 1e-3


def _export(module: torch.nn.Module, args: tuple, path: Path, input_names: list[str], output_names: list[str], dynamic_axes: dict) -> None:
    module.eval()
    with torch.no_grad():
        torch.onnx.export(
            module,
            args,
            str(path),
            input_names=input_names,
            output_names=output_names,
            dynamic_axes=dynamic_axes,
            opset_version=OPSET,
            do_constant_folding=True,
            dynamo=False,
        )


def parity(module: torch.nn.Module, path: Path, feeds: dict[str, np.ndarray], output_names: list[str]) -> float:
    """Worst relative difference between torch and onnxruntime (CPU) over the outputs; raises above PARITY_RTOL."""
    import onnxruntime as ort

    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = sess.run(output_names, feeds)
    with torch.no_grad():
        ref = module(*[torch.from_numpy(v) for v in feeds.values()])
    ref = ref if isinstance(ref, (tuple, list)) else (ref,)
    worst = 0.0
    for name, g, r in zip(output_names, got, ref):
        r = r.numpy()
        err = float(np.max(np.abs(g - r)) / max(float(np.max(np.abs(r))), 1.0))
        worst = max(worst, err)
        if err > PARITY_RTOL:
            raise ParityError(f"{path.name}: output {name!r} differs from PyTorch by {err:.2e} (> {PARITY_RTOL:.0e} relative)")
    return worst


def checked_defaults(defaults: dict | None) -> dict:
    """``defaults`` (``--defaults`` of ``emort export onnx``) as the manifest records them, checked as
    ``emort export defaults`` checks them (:func:`emort.export.defaults.check_defaults`; a new bundle
    carries no edit basis). Raises EmortError (one line)."""
    from emort.export.defaults import check_defaults
    from emort.runtime.editing import EditOptions

    try:
        opts = EditOptions.from_dict(defaults or {})
        check_defaults(opts, 0, "--defaults")
    except (TypeError, ValueError) as e:  # a value of the wrong type
        raise EmortError(f"--defaults: not valid edit options ({e})") from None
    return opts.to_dict()


def write_bundle(
    out: Path,
    *,
    ser_run: Path,
    diffusion_run: Path,
    parity_clips: list[str] | None = None,
    defaults: dict | None = None,
    name: str = "emort-default",
    extra: dict | None = None,
    speaker_ser_run: Path | None = None,
    stats_run: Path | None = None,
    stats_weight: float = 1.0,
) -> dict:
    """Export SER + style encoder + denoiser to ``out`` and write the manifest. Returns the manifest.

    ``speaker_ser_run``: optionally a second SER trained with ``--norm speaker``, exported as
    ``ser_speaker.onnx`` for ``emort score --per-speaker`` (it does not condition the diffusion model).
    ``stats_run``: optionally an utterance-statistics classifier (``emort train stats``), exported
    as ``stats.onnx``; per-speaker scoring then fuses it with ``ser_speaker.onnx``, whose
    probabilities are raised to ``stats_weight`` first (:func:`emort.runtime.ustats.fuse_weighted`).
    """
    from emort.runtime.frontend import log_mel
    from emort.runtime.settings import MelSettings
    from emort.training.data import model_rate_audio
    from emort.training.diffusion import load_diffusion
    from emort.training.ser import input_norm, load_ser

    defaults_dict = checked_defaults(defaults)  # before any work: every plain enhance with the bundle reads them

    ser, ser_cfg = load_ser(ser_run)
    diff, diff_cfg = load_diffusion(diffusion_run)
    if ser_cfg["mel"] != diff_cfg["mel"] or ser_cfg["labels"] != diff_cfg["labels"]:
        raise EmortError("the SER and diffusion runs use different mel settings or labels")
    if input_norm(ser_cfg) == "speaker":
        raise EmortError(f"{ser_run} is a per-speaker SER (--norm speaker): pass it as --speaker-ser; --ser takes a global one")
    if input_norm(ser_cfg) != "global":  # the enhancer conditions on the global SER's embeddings
        raise EmortError(f"{ser_run} was trained with norm = {input_norm(ser_cfg)!r}; --ser takes a global one (norm = \"global\")")
    if "centroids" not in ser_cfg:
        raise EmortError(f"{ser_run}: no emotion centroids; the SER run did not finish")
    # The denoiser was conditioned on one SER's embedding space; another SER's embeddings
    # would steer it blindly. (Runs from emort 0.1.0 did not record the hash.)
    if diff_cfg.get("ser_sha256") and diff_cfg["ser_sha256"] != sha256_file(Path(ser_run) / "ser.safetensors"):
        raise EmortError(f"{diffusion_run} was trained on the embeddings of another SER ({diff_cfg.get('ser_run')}), not {ser_run}; "
                         "export it with that SER (--ser) or retrain the diffusion model (--init-from speeds that up)")
    spk_ser = spk_cfg = None
    if speaker_ser_run is not None:
        spk_ser, spk_cfg = load_ser(speaker_ser_run)
        if "centroids" not in spk_cfg:
            raise EmortError(f"{speaker_ser_run}: the SER run did not finish")
        if input_norm(spk_cfg) != "speaker":
            raise EmortError(f"{speaker_ser_run} was not trained with --norm speaker; it cannot be the per-speaker scorer")
        if spk_cfg["mel"] != ser_cfg["mel"] or spk_cfg["labels"] != ser_cfg["labels"]:
            raise EmortError(f"{speaker_ser_run} uses other mel settings or labels than {ser_run}")
    stats_clf = stats_cfg = None
    if stats_run is not None:
        from emort.training.ustats import check_compatible, load_stats

        if spk_ser is None:
            raise EmortError("--stats is fused with the per-speaker SER: pass --speaker-ser too")
        stats_clf, stats_cfg = load_stats(stats_run)
        check_compatible(stats_cfg, ser_cfg, stats_run)
        check_stats_run(stats_cfg, stats_run, spk_cfg.get("split", {}).get("test_speakers", []))
    settings = MelSettings.from_dict(ser_cfg["mel"])
    n_mels = settings.n_mels
    mean = np.asarray(ser_cfg["norm"]["mean"], np.float32)
    std = np.asarray(ser_cfg["norm"]["std"], np.float32)
    stride = diff.denoiser.config.stride

    # Parity is checked on real clips (their spectra exercise the graphs as users will); a synthetic mel if none given.
    mels = []
    for p in parity_clips or []:
        m = log_mel(model_rate_audio(p, settings.sample_rate), settings)  # as the runtime reads them
        mels.append(zscore(m, mean, std))
    if not mels:
        mels = [np.random.default_rng(0).standard_normal((n_mels, 200)).astype(np.float32)]

    if out.exists() and not _replaceable(out):
        raise EmortError(f"{out}: exists and is not an emort bundle; refusing to replace it (choose another --out)")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".bundle-", dir=str(out.parent)))
    try:
        x_ser = torch.from_numpy(mels[0][None, None])
        # The global and the per-speaker SER share one graph signature.
        ser_io = (["mel"], ["logits", "embedding"], {"mel": {0: "batch", 3: "frames"}, "logits": {0: "batch"}, "embedding": {0: "batch"}})
        _export(ser, (x_ser,), tmp / "ser.onnx", *ser_io)
        if spk_ser is not None:
            _export(spk_ser, (x_ser,), tmp / "ser_speaker.onnx", *ser_io)
        _export(diff.style, (torch.from_numpy(mels[0][None]),), tmp / "style.onnx", ["mel"], ["style"],
                {"mel": {0: "batch", 2: "frames"}, "style": {0: "batch"}})
        emb_dim = diff.denoiser.config.emotion_dim
        style_dim = diff.style.config.style_dim
        dn_inputs = ["x", "t", "emotion", "emotion_mask", "style"]
        # The denoiser is written in 4-D by hand, the style encoder rewritten after torch's export:
        # faster in onnxruntime, same outputs; the parity below checks them as shipped.
        (tmp / "denoiser.onnx").write_bytes(build_denoiser_graph(diff.denoiser, OPSET).SerializeToString())
        rewrite_file(tmp / "style.onnx")

        worst = {"ser": 0.0, "style": 0.0, "denoiser": 0.0, **({"ser_speaker": 0.0} if spk_ser is not None else {})}
        for m in mels:
            tl = m.shape[1] - m.shape[1] % stride
            worst["ser"] = max(worst["ser"], parity(ser, tmp / "ser.onnx", {"mel": m[None, None]}, ["logits", "embedding"]))
            if spk_ser is not None:  # any z-scored mel is a fair input for the parity check
                worst["ser_speaker"] = max(worst["ser_speaker"], parity(spk_ser, tmp / "ser_speaker.onnx", {"mel": m[None, None]}, ["logits", "embedding"]))
            worst["style"] = max(worst["style"], parity(diff.style, tmp / "style.onnx", {"mel": m[None]}, ["style"]))
            rng = np.random.default_rng(1)
            feeds = {
                "x": np.stack([m[:, :tl], m[:, :tl]]) + rng.standard_normal((2, n_mels, tl)).astype(np.float32),
                "t": np.array([700.0, 50.0], np.float32),
                "emotion": rng.standard_normal((2, emb_dim)).astype(np.float32),
                "emotion_mask": np.array([[1.0], [0.0]], np.float32),
                "style": rng.standard_normal((2, style_dim)).astype(np.float32),
            }
            worst["denoiser"] = max(worst["denoiser"], parity(diff.denoiser, tmp / "denoiser.onnx", feeds, ["prediction"]))
        if stats_clf is not None:
            worst["stats"] = export_stats(stats_clf, tmp / "stats.onnx", num_features(stats_cfg.get("features", "ustats"), n_mels))
        log.info("parity (max relative difference): %s", worst)

        files = {f: sha256_file(tmp / f) for f in ("ser.onnx", "style.onnx", "denoiser.onnx", "ser_speaker.onnx", "stats.onnx")
                 if (tmp / f).exists()}
        extra_models = {}
        if spk_ser is not None:
            extra_models["ser_speaker"] = {"file": "ser_speaker.onnx", "inputs": ["mel"], "outputs": ["logits", "embedding"],
                                           "dim": spk_ser.config.embedding_dim, "norm": "speaker",
                                           "layout": "mel (batch, 1, n_mels, frames), z-scored with the speaker's own statistics"}
        if stats_clf is not None:
            extra_models["stats"] = stats_model_entry(stats_cfg, n_mels, stats_weight)
        manifest = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "name": name,
            "emort_version": __version__,
            "created": _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat(),
            "opset": OPSET,
            "torch_version": torch.__version__,
            "mel": settings.to_dict(),
            "labels": ser_cfg["labels"],
            "norm": ser_cfg["norm"],
            "centroids": ser_cfg["centroids"],
            "schedule": diff_cfg["schedule"],
            "prediction": diff_cfg["prediction"],
            "stride": stride,
            "defaults": defaults_dict,  # typed: unknown keys (e.g. eval notes) dropped; checked above
            "models": {
                "ser": {"file": "ser.onnx", "inputs": ["mel"], "outputs": ["logits", "embedding"], "dim": ser.config.embedding_dim,
                        "layout": "mel (batch, 1, n_mels, frames)"},
                "style": {"file": "style.onnx", "inputs": ["mel"], "outputs": ["style"], "dim": style_dim, "layout": "mel (batch, n_mels, frames)"},
                "denoiser": {"file": "denoiser.onnx", "inputs": dn_inputs, "outputs": ["prediction"],
                             "layout": "x (batch, n_mels, frames), t (batch,), emotion (batch, E), emotion_mask (batch, 1), style (batch, S)",
                             "flops_per_frame": _flops(diff.denoiser.config)},
                **extra_models,
            },
            "shapes": {"batch": [1, 2, 8], "frames": [stride * 2, 256, 2048]},
            "parity": worst,
            "files": files,
            "training": {
                "ser": {k: ser_cfg.get(k) for k in ("preset", "model", "split", "best", "train")},
                "diffusion": {k: diff_cfg.get(k) for k in ("train", "train_speakers", "held_out_speakers")},
                **({"ser_speaker": {k: spk_cfg.get(k) for k in ("preset", "model", "split", "best", "train")}} if spk_cfg else {}),
                **({"stats": stats_training_entry(stats_cfg)} if stats_cfg else {}),
                **(extra or {}),
            },
        }
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=1))
        os.chmod(tmp, 0o755)
        # the old bundle is moved aside, not deleted, until the new one is in place: a failure between
        # the two steps leaves one bundle at `out`, never none
        old = out.with_name(f".{out.name}.old.{os.getpid()}") if out.exists() else None
        if old is not None:
            os.replace(out, old)
        try:
            os.replace(tmp, out)
        except BaseException:
            if old is not None:
                os.replace(old, out)
            raise
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return manifest


def _replaceable(out: Path) -> bool:
    """Only an empty folder or an earlier bundle may be replaced by an export."""
    if not out.is_dir():
        return False
    if not any(out.iterdir()):
        return True
    try:
        return json.loads((out / MANIFEST).read_text()).get("format") == FORMAT
    except (OSError, json.JSONDecodeError):
        return False


def _flops(cfg) -> float:
    from emort.training.models.denoiser import count_flops_per_frame

    return float(count_flops_per_frame(cfg))


#: The signature every SER graph of a bundle shares (``ser``, ``ser_speaker``, ``ser_clip``).
SER_IO = (["mel"], ["logits", "embedding"], {"mel": {0: "batch", 3: "frames"}, "logits": {0: "batch"}, "embedding": {0: "batch"}})


def replace_clip_ser(bundle_dir: str | Path, ser_run: str | Path) -> dict:
    """Put the SER run ``ser_run`` into the bundle at ``bundle_dir`` as its single-clip scorer
    ``ser_clip`` (replacing the one there): the SER ``emort score`` uses for a clip alone, kept
    apart from ``ser`` (whose embeddings condition the diffusion model). The run must be
    globally normalised (its statistics go into the manifest's ``models.ser_clip``) and share the
    bundle's mel settings and labels; it is recorded with ``gain_db``, the level augmentation it
    was trained with. The graph is written as ``ser_clip-<sha256>.onnx``, then the manifest is
    rewritten atomically, then the old graph removed: a failure leaves a bundle that loads.
    Raises EmortError (one line) for a run that cannot serve. Returns the manifest as written."""
    from emort.export.manifest import replace_graph, writable_bundle
    from emort.training.ser import input_norm, load_ser

    b = writable_bundle(bundle_dir)
    model, cfg = load_ser(ser_run)
    if input_norm(cfg) != "global":
        raise EmortError(f"{ser_run} was trained with norm = {input_norm(cfg)!r}; the single-clip scorer is globally normalised")
    if cfg["mel"] != b.mel.to_dict() or list(cfg["labels"]) != list(b.labels):
        raise EmortError(f"{ser_run} uses other mel settings or labels than {b.path}")
    if "centroids" not in cfg:
        raise EmortError(f"{ser_run}: the SER run did not finish")
    mean = np.asarray(cfg["norm"]["mean"], np.float32)
    std = np.asarray(cfg["norm"]["std"], np.float32)
    mel = np.random.default_rng(0).standard_normal((1, 1, b.mel.n_mels, 200)).astype(np.float32)

    def write(path: Path) -> float:
        _export(model, (torch.from_numpy(mel),), path, *SER_IO)
        return parity(model, path, {"mel": mel}, SER_IO[1])

    entry = {"inputs": SER_IO[0], "outputs": SER_IO[1], "dim": model.config.embedding_dim, "norm": "global",
             "mean": mean.tolist(), "std": std.tolist(), "gain_db": float(cfg.get("train", {}).get("gain_db", 0.0)),
             "layout": "mel (batch, 1, n_mels, frames), z-scored with this entry's mean and std (not the manifest's norm)"}
    return replace_graph(b, "ser_clip", write, entry, {k: cfg.get(k) for k in ("preset", "model", "split", "best", "train")})
