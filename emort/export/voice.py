"""The GE2E voice classifier in a bundle: ``voice_encoder`` and ``stats_voice`` graphs.

``emort export voice --bundle B --stats RUN`` converts the speaker encoder that the
``resemblyzer`` package ships (weights in its wheel, Apache-2.0) to ONNX, checks it against
PyTorch on random windows and the runtime's whole embedding (:mod:`emort.runtime.voice`)
against the training side's (:mod:`emort.training.voice`) on a synthetic clip, and puts it
into the bundle with a classifier fitted on its embeddings: ``emort train stats --features
ustats+pitch+ge2e`` (the statistics and the embedding in one classifier, which ``emort score
--per-speaker`` reads in place of the statistics classifier; since 0.13) or ``--features ge2e``
(the embedding alone, fused with the statistics classifier by the geometric mean; 0.12). See
docs/ser/ge2e/report.md. A ``--features ustats+pitch+ge2e+egemaps`` run (the joint classifier's
features and openSMILE's eGeMAPS) goes in beside the joint classifier as ``stats_egemaps``, which
``emort score --egemaps`` reads in its place (docs/ser/egemaps_voice/report.md). Needs the
``[train,export]`` extras and ``pip install --no-deps resemblyzer==0.1.4``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from emort.runtime.egemaps import EGEMAPS_FEATURES, EGEMAPS_VERSION, NUM_EGEMAPS
from emort.runtime.errors import EmortError
from emort.runtime.settings import VoiceSettings
from emort.runtime.ustats import num_features
from emort.runtime.voice import (
    JOINT_FEATURES,
    JOINT_STATS,
    VOICE_DIM,
    VOICE_FEATURES,
    VOICE_VERSION,
    joint_reads,
)

#: Lowest cosine between the runtime's embedding (ONNX) and the training side's (PyTorch).
MIN_COSINE = 0.999
#: The encoder graph's input and output names and dynamic axes.
VOICE_IO = (["mels"], ["embedding"], {"mels": {0: "batch"}, "embedding": {0: "batch"}})


def _test_clip(sample_rate: int = 16000, seconds: float = 2.5) -> np.ndarray:
    """A voiced-speech-like test signal: a gliding harmonic tone with formant-like weights and noise."""
    rng = np.random.default_rng(0)
    t = np.arange(int(sample_rate * seconds)) / sample_rate
    f0 = 140 + 30 * np.sin(2 * np.pi * 0.7 * t)
    phase = 2 * np.pi * np.cumsum(f0) / sample_rate
    x = sum(np.sin(k * phase) / k * (1.5 if 3 <= k <= 5 else 1.0) for k in range(1, 30))
    return (0.1 * x * (0.6 + 0.4 * np.sin(2 * np.pi * 3 * t)) + 0.003 * rng.standard_normal(len(t))).astype(np.float32)


def export_voice_encoder(path: Path, settings: VoiceSettings) -> float:
    """Write Resemblyzer's packaged encoder to ``path`` as ONNX (input ``mels`` ``(batch,
    partial_frames, n_mels)``, output ``embedding`` ``(batch, 256)``). Returns the worst relative
    difference from PyTorch on random windows; raises ParityError above the bundle's tolerance, or
    EmortError when the runtime's embedding of a test clip is further than ``MIN_COSINE`` from the
    training side's."""
    import torch

    from emort.export.onnx import _export, parity
    from emort.runtime.session import load_model
    from emort.runtime.voice import VoiceEmbedder
    from emort.training.voice import embed, voice_encoder

    encoder = voice_encoder()
    rng = np.random.default_rng(0)
    mels = (rng.random((3, settings.partial_frames, settings.n_mels)) ** 4).astype(np.float32)  # power mel is >= 0, peaky
    _export(encoder, (torch.from_numpy(mels),), path, *VOICE_IO)
    err = parity(encoder, path, {"mels": mels}, VOICE_IO[1])
    clip = _test_clip(settings.sample_rate)
    got = VoiceEmbedder(load_model(path, "cpu", 1, name="voice_encoder"), settings).embed(clip, settings.sample_rate)
    cos = float(got @ embed(clip, settings.sample_rate, settings))
    if cos < MIN_COSINE:
        raise EmortError(f"{path.name}: the runtime's voice embedding of a test clip differs from PyTorch's (cosine {cos:.5f} < {MIN_COSINE})")
    return err


#: The licence of the encoder's weights, written beside its graph (Apache-2.0 asks that
#: recipients get a copy and are told what was changed).
LICENCE_FILE = "LICENSE-voice_encoder.txt"


def _write_licence(bundle_dir: Path) -> None:
    from importlib.metadata import distribution

    from emort.runtime.atomic import write_text_atomic

    text = distribution("resemblyzer").read_text("LICENSE")
    if not text:
        raise EmortError("resemblyzer's wheel carries no LICENSE file to ship with its weights")
    head = ("The voice_encoder graph of this bundle holds the weights of Resemblyzer's pretrained.pt\n"
            "(https://github.com/resemble-ai/Resemblyzer, Copyright 2019 Resemble.AI), converted by emort\n"
            "from PyTorch to ONNX (format only: the same weights and computation). Its licence:\n\n")
    write_text_atomic(Path(bundle_dir) / LICENCE_FILE, head + text)


def replace_voice(bundle_dir: str | Path, stats_run: str | Path) -> dict:
    """Put the GE2E encoder and the classifier fitted on its embeddings (``stats_run``, ``emort
    train stats --features ustats+pitch+ge2e`` or ``ge2e``) into the bundle at ``bundle_dir``,
    replacing those there. A joint run must read the F0 analysis of the bundle's statistics
    classifier. The
    bundle must carry the per-speaker scorer (``ser_speaker`` and ``stats``) the classifier is
    fused into, and the run must share its labels and hold out the same test speakers. Each graph
    is written under a new name, then the manifest rewritten atomically (:func:`replace_graph`):
    a failure leaves a bundle that loads. Returns the manifest as written."""
    from importlib.metadata import version

    from emort.export.manifest import replace_graph, writable_bundle
    from emort.export.stats import check_stats_run
    from emort.training.ustats import check_compatible, load_stats

    b = writable_bundle(bundle_dir)
    clf, cfg = load_stats(stats_run)
    if cfg.get("norm", "speaker") == "global":  # the single-clip classifier: fused with ser_clip, not the per-speaker scorer
        return _replace_clip_stats(b, clf, cfg, stats_run)
    if not (b.has_speaker_scorer and b.has_stats):
        raise EmortError(f"{b.path}: no per-speaker scorer (ser_speaker and stats graphs) to fuse a voice classifier with; "
                         "export one with `emort export stats` first")
    check_compatible(cfg, {"mel": b.mel.to_dict(), "labels": list(b.labels)}, stats_run)
    spk = b.training.get("ser_speaker")
    # (load_stats refused a ge2e run of another embedding version or front end)
    check_stats_run(cfg, stats_run, spk.split.test_speakers if spk is not None else (), allowed=(*VOICE_FEATURES, EGEMAPS_FEATURES))
    features = cfg["features"]
    if features == EGEMAPS_FEATURES:
        return _replace_egemaps(b, clf, cfg, stats_run)
    n_features = VOICE_DIM
    if features == JOINT_FEATURES:  # it reads the statistics classifier's features: the same F0 analysis
        stats = b.models["stats"]
        if not joint_reads(stats.features, stats.pitch_version, cfg.get("pitch_version")):
            raise EmortError(f"{stats_run}: fitted on F0 statistics version {cfg.get('pitch_version')}, but the bundle's statistics "
                             f"classifier reads {stats.features} (pitch version {stats.pitch_version}); export a statistics run "
                             "of the same version first (`emort export stats`)")
        n_features += num_features(JOINT_STATS, b.mel.n_mels)
    settings = VoiceSettings.from_dict(cfg["voice"])
    enc_entry = {"inputs": VOICE_IO[0], "outputs": VOICE_IO[1], "dim": VOICE_DIM, "voice_version": VOICE_VERSION,
                 "frontend": settings.to_dict(),
                 "layout": "mels (batch, partial_frames, n_mels) float32: power mel windows of emort.runtime.voice.partial_mels; "
                           "embedding (batch, 256): each window's L2-normalised GE2E embedding (a clip's: their normalised mean)"}
    source = {"source": f"resemblyzer {version('resemblyzer')} (pretrained.pt in its wheel; Apache-2.0)",
              "paper": "Generalized End-to-End Loss for Speaker Verification (Wan et al., ICASSP 2018)"}
    _write_licence(b.path)  # first: the weights never ship without their licence
    replace_graph(b, "voice_encoder", lambda path: export_voice_encoder(path, settings), enc_entry, source)
    b = writable_bundle(bundle_dir)
    if features == JOINT_FEATURES:
        joint = {"pitch_version": cfg["pitch_version"],
                 "fusion": "p_stats = p_stats_voice (in place of the statistics classifier's), then fused with the SER by "
                           "models.stats.ser_weight",
                 "layout": f"X (batch, {n_features}) float32: the statistics classifier's X (models.stats.layout) followed by "
                           "the clip's GE2E embedding (voice_encoder), each z-scored over the speaker's clips; probabilities in label order"}
    else:
        joint = {"fusion": "p_stats ∝ (p_stats · p_stats_voice)^(1/2), then fused with the SER by models.stats.ser_weight",
                 "layout": "X (batch, 256) float32: the clip's GE2E embedding (voice_encoder), z-scored over the speaker's clips; "
                           "probabilities in label order"}
    return _put_classifier(b, "stats_voice", clf, cfg, features, n_features, **joint)


def _put_classifier(b, name: str, clf, cfg: dict, features: str, n_features: int, **entry) -> dict:
    """Write the classifier run ``clf`` / ``cfg`` into the bundle as graph ``name`` (input ``X`` of
    ``n_features`` columns, probabilities in label order; ``entry``: its other manifest fields)."""
    from emort.export.manifest import replace_graph
    from emort.export.stats import export_stats, stats_training_entry

    spec = {"inputs": ["X"], "outputs": ["label", "probabilities"], "stats_version": cfg["stats_version"],
            "features": features, "n_features": n_features, "voice_version": VOICE_VERSION, **entry}
    return replace_graph(b, name, lambda path: export_stats(clf, path, n_features), spec, stats_training_entry(cfg))


def _replace_egemaps(b, clf, cfg: dict, stats_run: str | Path) -> dict:
    """Put a ``ustats+pitch+ge2e+egemaps`` run into the bundle as ``stats_egemaps``, beside the
    joint voice classifier whose features it reads first (same F0 analysis and embedding)."""
    vs = b.models.get("stats_voice")  # has_voice: the encoder and this classifier
    if not b.has_voice or vs.features != JOINT_FEATURES:
        raise EmortError(f"{b.path}: an eGeMAPS voice classifier reads what the joint voice classifier ({JOINT_FEATURES}) reads; "
                         "put that one in first (`emort export voice --stats RUN` of a --features ustats+pitch+ge2e run)")
    if cfg.get("pitch_version") != vs.pitch_version or vs.voice_version != VOICE_VERSION:
        raise EmortError(f"{stats_run}: fitted on F0 version {cfg.get('pitch_version')} and embedding version {VOICE_VERSION}; the "
                         f"bundle's voice classifier reads F0 version {vs.pitch_version} and embedding version {vs.voice_version}: "
                         "export a voice classifier of the same versions first")
    n_features = num_features(JOINT_STATS, b.mel.n_mels) + VOICE_DIM + NUM_EGEMAPS
    return _put_classifier(
        b, "stats_egemaps", clf, cfg, EGEMAPS_FEATURES, n_features, pitch_version=cfg["pitch_version"], egemaps_version=EGEMAPS_VERSION,
        fusion="with `emort score --egemaps`: p_stats = p_stats_egemaps (in place of stats_voice's), then fused with "
               "the SER by models.stats.ser_weight",
        layout=f"X (batch, {n_features}) float32: stats_voice's X (models.stats_voice.layout) followed by the clip's "
               f"{NUM_EGEMAPS} eGeMAPSv02 functionals (emort.runtime.egemaps; openSMILE, research and non-commercial "
               "use only), each z-scored over the speaker's clips; probabilities in label order")


def _replace_clip_stats(b, clf, cfg: dict, stats_run: str | Path) -> dict:
    """Put a ``--norm global`` ``ustats+pitch+ge2e`` run into the bundle as ``stats_clip``: the
    single-clip classifier that ``emort score --clip-stats`` fuses with ``ser_clip`` (rows not
    normalised per speaker: the graph standardises them with its training rows' statistics;
    docs/ser/single_v2/report.md). It reads the bundle's GE2E encoder, so that goes in first."""
    from emort.export.stats import check_stats_run
    from emort.training.ustats import check_reads_like

    if not b.has_clip_scorer or "voice_encoder" not in b.models:
        raise EmortError(f"{b.path}: a single-clip classifier is fused with the single-clip SER (ser_clip) and reads the GE2E "
                         "encoder (voice_encoder); put those in first (`emort export clip-ser`, `emort export voice`)")
    if b.models["voice_encoder"].voice_version != VOICE_VERSION:
        raise EmortError(f"{b.path}: its voice encoder is of embedding version {b.models['voice_encoder'].voice_version}, "
                         f"this emort's is {VOICE_VERSION}: put this emort's in first (`emort export voice`)")
    check_reads_like(cfg, {"mel": b.mel.to_dict(), "labels": list(b.labels)}, stats_run)
    # no speaker that a scoring SER holds out for testing among those it was fitted on
    held = sorted({s for n in ("ser_clip", "ser_speaker") if n in b.training for s in b.training[n].split.test_speakers})
    check_stats_run(cfg, stats_run, held, allowed=(JOINT_FEATURES,))
    n_features = num_features(JOINT_STATS, b.mel.n_mels) + VOICE_DIM
    return _put_classifier(
        b, "stats_clip", clf, cfg, JOINT_FEATURES, n_features, pitch_version=cfg["pitch_version"], norm="global", ser_weight=1.0,
        fusion="with `emort score --clip-stats`, each clip alone: p ∝ (p_ser_clip · p_stats_clip)^(1/2)",
        layout=f"X (batch, {n_features}) float32: the statistics classifier's X (models.stats.layout) followed by the "
               "clip's GE2E embedding (voice_encoder), NOT z-scored per speaker (the graph standardises the rows with "
               "its training rows' statistics); probabilities in label order")
