"""The statistics classifier in a bundle: ``stats.onnx`` and its manifest entry.

``emort export onnx --stats RUN`` ships it with a new bundle; ``emort export stats --bundle B
--stats RUN`` puts it into an existing one (replacing the one there), without the training runs
of the other graphs. ``emort score --per-speaker`` fuses it with ``ser_speaker.onnx``
(:class:`emort.runtime.scorer.Scorer`). Needs the ``[export]`` extra (skl2onnx) and
scikit-learn (``[train]``); no torch.
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import numpy as np

from emort.runtime.bundle import Bundle
from emort.runtime.errors import EmortError
from emort.runtime.ustats import PITCH_ANALYSES, RUNTIME_FEATURES, num_features

#: Largest difference of the exported probabilities from scikit-learn's.
PARITY_ATOL = 1e-3
#: ONNX opset of every graph a bundle carries (``emort.export.onnx`` exports the networks with it).
OPSET = 17


class ParityError(EmortError):
    """An exported graph's outputs differ from those of the model it was exported from."""


def check_stats_run(stats_cfg: dict, where: str | Path, test_speakers: list[str] | tuple[str, ...],
                    allowed: tuple[str, ...] = RUNTIME_FEATURES) -> None:
    """One-line EmortError unless the run can be the per-speaker scorer's statistics classifier:
    features the runtime computes, and no speaker that the per-speaker SER holds out for testing
    (``test_speakers``) among those it was fitted on. (Mel settings, labels and per-speaker
    normalisation: :func:`emort.training.ustats.check_compatible`.)"""
    from emort.training.data import FRONTEND_VERSION, describe_frontend, frontend_of

    features = stats_cfg.get("features") or "ustats"
    if features not in allowed:
        other = ("; a classifier on the statistics and the embedding goes in with `emort export voice`"
                 if "ge2e" in features and "ge2e" not in " ".join(allowed) else "")
        raise EmortError(f"{where}: fitted on {features} features; this export takes a run of "
                         f"{' or '.join(allowed)} (`emort train stats --features`){other}")
    if frontend_of(stats_cfg) != FRONTEND_VERSION:  # the runtime would read other statistics than it was fitted on
        raise EmortError(f"{where}: fitted on log-mels of {describe_frontend(frontend_of(stats_cfg))}; the runtime computes "
                         f"front end {FRONTEND_VERSION}: refit it with `emort train stats`")
    if "pitch" in features and stats_cfg.get("pitch_version") not in PITCH_ANALYSES:
        raise EmortError(f"{where}: pitch statistics version {stats_cfg.get('pitch_version')} is not one this emort computes "
                         f"({', '.join(map(str, sorted(PITCH_ANALYSES)))}); refit it")
    split = stats_cfg["split"]
    fitted = set(split["train_speakers"]) | (set(split["val_speakers"]) if split.get("val_in_train") else set())
    leaked = sorted(fitted & set(test_speakers))
    if leaked:  # the bundle's test figures would then be measured on speakers the classifier saw
        raise EmortError(f"{where} was fitted on {', '.join(leaked)}, held out as test speakers by the per-speaker SER; "
                         "fit it with the same --test-speaker list")


def check_ser_weight(ser_weight: float) -> float:
    """``ser_weight`` as a float; one-line EmortError unless it is finite and >= 0."""
    w = float(ser_weight)
    if not (math.isfinite(w) and w >= 0):
        raise EmortError(f"the SER weight must be a finite number >= 0, got {ser_weight}")
    return w


def stats_model_entry(stats_cfg: dict, n_mels: int, ser_weight: float) -> dict:
    """The manifest's ``models.stats`` for a run (what :class:`emort.runtime.bundle.ModelSpec` reads)."""
    ser_weight = check_ser_weight(ser_weight)
    features = stats_cfg.get("features", "ustats")
    what = "emort.runtime.ustats.utterance_stats of the raw log-mel" + (
        ", then emort.runtime.ustats.clip_pitch_stats (F0)" if features == "ustats+pitch" else "")
    return {"file": "stats.onnx", "inputs": ["X"], "outputs": ["label", "probabilities"],
            "stats_version": stats_cfg["stats_version"], "features": features, "n_features": num_features(features, n_mels),
            **({"pitch_version": stats_cfg["pitch_version"]} if features == "ustats+pitch" else {}),
            "ser_weight": float(ser_weight),
            "fusion": "p ∝ (p_ser_speaker^w · p_stats)^(1/(1+w)), w = ser_weight (emort.runtime.ustats.fuse_weighted)",
            "layout": f"X (batch, n_features) float32: {what}, z-scored over the speaker's clips; probabilities in label order"}


def stats_training_entry(stats_cfg: dict) -> dict:
    """The manifest's ``training.stats``: how the classifier was fitted."""
    return {k: stats_cfg.get(k) for k in ("stats_version", "frontend_version", "features", "pitch_version", "norm", "split", "train",
                                          "result")}


def export_stats(clf, path: Path, n_features: int) -> float:
    """The fitted statistics classifier (:class:`~emort.training.stats_classifier.StatsClassifier`:
    scaler + calibrated RBF SVM, or a linear model) -> ONNX via skl2onnx (ai.onnx.ml operators; onnxruntime's CPU
    provider runs them). Returns the parity error of the probabilities on z-score-like inputs;
    raises ParityError above PARITY_ATOL."""
    import onnxruntime as ort
    from skl2onnx import to_onnx

    pipe = clf.pipeline()
    if len(pipe.classes_) != len(clf.labels):
        raise EmortError("the statistics classifier was fitted without some labels; fit it on data with every emotion")
    x = np.random.default_rng(0).standard_normal((32, n_features)).astype(np.float32)  # per-speaker z-scores are ~N(0, 1)
    with warnings.catch_warnings():  # skl2onnx reads SVC attributes scikit-learn 1.9 marks deprecated
        warnings.simplefilter("ignore", FutureWarning)
        onx = to_onnx(pipe, x[:1], options={"zipmap": False}, target_opset={"": OPSET, "ai.onnx.ml": 3})
    if [i.name for i in onx.graph.input] != ["X"]:  # the manifest names it
        raise EmortError(f"skl2onnx named the statistics input {[i.name for i in onx.graph.input]}, expected ['X']")
    path.write_bytes(onx.SerializeToString())
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = sess.run(["probabilities"], {"X": x})[0]
    err = float(np.max(np.abs(got - pipe.predict_proba(x.astype(np.float64)))))
    if err > PARITY_ATOL:
        raise ParityError(f"{path.name}: probabilities differ from scikit-learn by {err:.2e} (> {PARITY_ATOL:.0e})")
    return err


def replace_stats(bundle_dir: str | Path, stats_run: str | Path, ser_weight: float | None = None) -> dict:
    """Put the statistics run ``stats_run`` into the bundle at ``bundle_dir`` (replacing the
    classifier there), fused with the SER's probabilities raised to ``ser_weight`` (None: the
    weight the bundle has, else 1). The bundle must carry a per-speaker SER whose mel settings
    and labels the run shares. The graph is written under a new name (``stats-<sha256>.onnx``),
    then the manifest is rewritten atomically to use it, then the old graph is removed: a failure
    at any point leaves a bundle that loads (the old classifier, or the new one). A voice
    classifier that reads the statistics classifier's features (``stats_voice``, ustats+pitch+ge2e)
    and no longer matches the run's is removed once the new graph has been built and checked
    (export one fitted with the new statistics with ``emort export voice``; the CLI says so).
    Returns the manifest as written."""
    from emort.export.manifest import replace_graph, writable_bundle
    from emort.training.ustats import check_compatible, load_stats

    b: Bundle = writable_bundle(bundle_dir)
    if not b.has_speaker_scorer:
        raise EmortError(f"{b.path}: no per-speaker SER (ser_speaker.onnx) to fuse a statistics classifier with")
    if ser_weight is None:
        ser_weight = b.models["stats"].ser_weight if b.has_stats else 1.0
    ser_weight = check_ser_weight(ser_weight)
    clf, cfg = load_stats(stats_run)
    check_compatible(cfg, {"mel": b.mel.to_dict(), "labels": list(b.labels)}, stats_run)  # the bundle's SERs read these
    spk = b.training.get("ser_speaker")
    check_stats_run(cfg, stats_run, spk.split.test_speakers if spk is not None else ())
    n = num_features(cfg.get("features", "ustats"), b.mel.n_mels)
    # a stale voice classifier goes only once the new graph is written and checked: a run that
    # cannot be exported leaves the bundle as it was
    drop = (lambda: _drop_voice_classifier(b)) if _stale_voice(b, cfg) else None
    return replace_graph(b, "stats", lambda path: export_stats(clf, path, n), stats_model_entry(cfg, b.mel.n_mels, ser_weight),
                         stats_training_entry(cfg), before_commit=drop)


def _stale_voice(b: Bundle, stats_cfg: dict) -> bool:
    """Whether the bundle's voice classifier reads the statistics classifier's features
    (ustats+pitch+ge2e) and would no longer match a statistics classifier fitted as ``stats_cfg``."""
    from emort.runtime.voice import JOINT_FEATURES, joint_reads

    vs = b.models.get("stats_voice")
    return (vs is not None and vs.features == JOINT_FEATURES
            and not joint_reads(stats_cfg.get("features"), stats_cfg.get("pitch_version"), vs.pitch_version))


def _drop_voice_classifier(b: Bundle) -> Bundle:
    """Remove ``stats_voice`` from the bundle (manifest first, then its graph): a bundle that loads
    at every step. The voice encoder stays (nothing reads it without a classifier)."""
    from emort.export.manifest import commit_graphs, writable_bundle

    def change(m: dict) -> None:
        m["models"].pop("stats_voice", None)
        m.get("training", {}).pop("stats_voice", None)
        m.get("parity", {}).pop("stats_voice", None)

    commit_graphs(b, change, [b.models["stats_voice"].file])
    return writable_bundle(b.path)
