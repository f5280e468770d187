"""``emort eval ser``: WA/UA, P/R/F1 and confusion matrices of an SER run on its test split."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from emort.evaluation.metrics import (
    classification_report,
    format_confusion,
    format_prf,
    plot_confusion,
    ua_interval_text,
)
from emort.runtime.atomic import write_json_atomic, write_text_atomic

NORM_NOTE = {
    "global": "global (training-set statistics; every clip scored on its own)",
    "speaker": "per speaker (each test speaker's statistics from its own unlabelled test clips)",
    "utterance": "per utterance (each clip's own per-band mean, the training clips' scale; every clip scored on its own)",
}


FUSION_NOTE = ("weighted geometric mean of the per-speaker SER's and the utterance-statistics classifier's probabilities, "
               "p ∝ (p_ser^w · p_stats)^(1/(1+w)) (`--stats`, `--ser-weight w`; what `emort score --per-speaker` does with "
               "a bundle that carries both, with the bundle's weight)")


def load_stats_for(stats_run: str | Path, ser_cfg: dict):
    """(FeatureJudge, run config) of a statistics run that may be fused with the SER run ``ser_cfg``:
    a per-speaker SER of the speakers protocol, same mel settings, labels and test speakers."""
    from emort.runtime.errors import EmortError
    from emort.training.ser import input_norm
    from emort.training.ustats import check_compatible, load_stats

    judge, cfg = load_stats(stats_run)
    if input_norm(ser_cfg) != "speaker":
        raise EmortError(f"--stats fuses with a per-speaker SER (trained with norm = \"speaker\"); this SER run's is {input_norm(ser_cfg)!r}")
    if ser_cfg["train"].get("split", "speakers") != "speakers":
        raise EmortError("--stats needs a speakers-protocol SER run: the statistics classifier is fitted on every non-test speaker")
    check_compatible(cfg, ser_cfg, stats_run)
    if sorted(cfg["train"]["test_speakers"]) != sorted(ser_cfg["train"]["test_speakers"]):
        raise EmortError(f"{stats_run}: held out {sorted(cfg['train']['test_speakers'])}, the SER run "
                         f"{sorted(ser_cfg['train']['test_speakers'])}; fuse runs of the same split")
    return judge, cfg


def stats_probs(stats, test: list, all_items: list) -> np.ndarray:
    """``stats`` (from :func:`load_stats_for`) -> probabilities for the ``test`` items. Each test
    speaker is z-scored over all its clips in ``all_items``, any emotion, labels unused: as in
    training and as `emort score --per-speaker` does with a speaker's folder."""
    from emort.runtime.settings import MelSettings
    from emort.training.ustats import pool_statistics, rows

    judge, cfg = stats
    speakers = {i.speaker_key for i in test}
    pool = [i for i in all_items if i.speaker_key in speakers]
    xp, ref = pool_statistics(pool, MelSettings.from_dict(cfg["mel"]), cfg.get("features", "ustats"), cfg.get("pitch_version"))
    return judge.predict_proba(xp[rows(pool, test)], [i.speaker_key for i in test], ref)


def evaluate_ser(run_dir: str | Path, data: list[str], out_dir: str | Path, progress: bool = False,
                 stats_run: str | Path | None = None, ser_weight: float = 1.0) -> dict:
    """Evaluate the run's best checkpoint on the test clips of its own protocol.

    ``speakers`` runs: the held-out test speakers (never seen in training or
    early stopping). ``random`` runs: the paper's random 20%. ``ser_weight``: the SER's weight
    in the fusion with ``stats_run`` (:func:`emort.runtime.ustats.fuse_weighted`).
    """
    from emort.runtime.settings import MelSettings
    from emort.training import corpora
    from emort.training.data import load_mels
    from emort.training.ser import SERTrainConfig, eval_stats, load_ser, make_splits, predict

    if is_loso_run(run_dir):
        return evaluate_ser_loso(run_dir, data, out_dir, progress=progress, stats_run=stats_run, ser_weight=ser_weight)
    model, cfg = load_ser(run_dir)
    stats = load_stats_for(stats_run, cfg) if stats_run is not None else None
    if cfg["train"].get("split") == "random":
        from emort.training.common import data_key

        if data_key(cfg["train"].get("data")) != data_key(data):  # the random split is drawn over the data as given
            from emort.runtime.errors import EmortError

            raise EmortError(f"{run_dir} drew a random split over --data {' '.join(cfg['train'].get('data') or [])}; evaluate it on "
                             "exactly that data (other corpora shift the draw: clips it trained on would be scored as test)")
    tcfg = SERTrainConfig(**{**cfg["train"], "data": list(data)})
    labels = cfg["labels"]
    settings = MelSettings.from_dict(cfg["mel"])
    all_items = corpora.read_specs(data)
    items = corpora.only_canonical(all_items, tuple(labels))
    _, _, test = make_splits(items, tcfg)
    if not test:
        from emort.runtime.errors import EmortError

        raise EmortError("no test clips for this run's protocol in the given --data")
    mels = load_mels(test, settings, progress=progress)
    probs, _ = predict(model, mels, eval_stats(cfg, mels, test))
    y = np.array([labels.index(i.emotion) for i in test])
    parts = {}
    if stats is not None:
        from emort.runtime.ustats import fuse_weighted

        p_stats = stats_probs(stats, test, all_items)
        parts = {"ser": probs.argmax(1), "stats": p_stats.argmax(1)}
        probs = fuse_weighted(probs, p_stats, ser_weight)
    pred = probs.argmax(1)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    result: dict = {"run": str(run_dir), "protocol": tcfg.split, "normalisation": NORM_NOTE[tcfg.norm],
                    "test_speakers": sorted({i.speaker_key for i in test}), "corpora": {}}
    md = [f"# SER evaluation: `{run_dir}` ({tcfg.split} protocol)\n", f"Input normalisation: {NORM_NOTE[tcfg.norm]}.\n"]
    if parts:
        result.update(stats_run=str(stats_run), fusion=FUSION_NOTE, ser_weight=ser_weight, components={k: {} for k in parts})
        md += [f"Scores: {FUSION_NOTE}, statistics run `{stats_run}`, SER weight {ser_weight:g}.\n"]
    for corpus in sorted({i.corpus for i in test}) + ["all"]:
        mask = np.array([corpus == "all" or i.corpus == corpus for i in test])
        rep = classification_report(y[mask], pred[mask], labels)
        result["corpora"][corpus] = rep.to_dict()
        for k, pk in parts.items():
            r = classification_report(y[mask], pk[mask], labels)
            result["components"][k][corpus] = {"wa": r.wa, "ua": r.ua, "n": r.n}
        if parts:
            md += [f"Alone on {corpus}: " + ", ".join(f"{k} WA {v[corpus]['wa']:.3f} / UA {v[corpus]['ua']:.3f}"
                                                  for k, v in result["components"].items()) + ".\n"]
        plot_confusion(rep, str(out / f"confusion_{corpus}.png"), f"{corpus} ({tcfg.split}): WA {rep.wa:.3f} UA {rep.ua:.3f}")
        md += [f"## {corpus}: WA {rep.wa:.3f}, UA {rep.ua:.3f}{ua_interval_text(rep)} (n = {rep.n})\n", format_confusion(rep), "", format_prf(rep), ""]
    write_json_atomic(out / "ser_eval.json", result)
    write_text_atomic(out / "ser_eval.md", "\n".join(md))
    return result


def _speakers_seen(cfg: dict) -> set[str]:
    """Speakers a run was fitted or early-stopped on (its ``split`` record), augmented copies
    counted as their source speaker (``manifest/nemo/KD0+emort`` is ``nemo/KD0``)."""
    from emort.training.corpora import source_speaker

    split = cfg.get("split", {})
    return {source_speaker(k) for k in set(split.get("train_speakers", [])) | set(split.get("val_speakers", []))}


def _few(speakers: list[str]) -> str:
    return ", ".join(speakers) if len(speakers) <= 3 else f"{len(speakers)} speakers ({', '.join(speakers[:3])}, ...)"


def argmax_present(probs: np.ndarray, present: np.ndarray) -> np.ndarray:
    """Argmax over the classes the held-out corpus has (nEMO has no disgust): the label set of
    a leave-one-corpus-out test is the test corpus's own, five classes where it lacks one."""
    return np.where(present[None, :], probs, -np.inf).argmax(1)


def evaluate_ser_cross_corpus(run_dir: str | Path, data: list[str], corpus: str, out_dir: str | Path,
                              progress: bool = False, stats_run: str | Path | None = None, ser_weight: float = 1.0) -> dict:
    """Leave-one-corpus-out: a run (and optionally a statistics run) fitted WITHOUT ``corpus``,
    evaluated on every canonical clip of it.

    Two rows, never mixed: ``validation``, the corpus's speakers outside the project's test
    speakers (``emort.training.splits.TEST_SPEAKERS``), where cross-corpus choices are made;
    ``test``, its test speakers, reported only. Refuses runs that saw any speaker of ``corpus``
    in training or early stopping. Per-speaker runs normalise each speaker with its own
    unlabelled clips, as ``emort score --per-speaker`` does. ``ser_weight`` (with a statistics
    run): the SER's weight ``w`` in the fusion, ``p ∝ p_ser^w · p_stats`` (1: the shipped
    geometric mean; 0: the statistics classifier alone), to compare fusions on the
    validation row.
    """
    from emort.runtime.errors import EmortError
    from emort.runtime.settings import MelSettings
    from emort.training import corpora
    from emort.training.data import load_mels
    from emort.training.ser import eval_stats, input_norm, load_ser, predict
    from emort.training.splits import TEST_SPEAKERS
    from emort.training.ustats import check_compatible, load_stats

    model, cfg = load_ser(run_dir)
    labels = cfg["labels"]
    all_items = [i for i in corpora.read_specs(data) if i.corpus == corpus]
    items = corpora.only_canonical(all_items, tuple(labels))
    if not items:
        raise EmortError(f"no clips of corpus {corpus!r} in the given --data (corpora given: "
                         f"{', '.join(sorted({i.corpus for i in corpora.read_specs(data)})) or 'none'})")
    held = {i.speaker_key for i in items}
    seen = sorted(held & _speakers_seen(cfg))
    if seen:
        raise EmortError(f"{run_dir}: trained or early-stopped on {_few(seen)} of {corpus}; a cross-corpus test "
                         f"needs a run fitted without {corpus} (leave it out of --data when training)")
    stats = None
    if stats_run is not None:
        if input_norm(cfg) != "speaker":
            raise EmortError(f"--stats fuses with a per-speaker SER (trained with norm = \"speaker\"); this SER run's is {input_norm(cfg)!r}")
        stats = load_stats(stats_run)
        check_compatible(stats[1], cfg, stats_run)
        seen = sorted(held & _speakers_seen(stats[1]))
        if seen:
            raise EmortError(f"{stats_run}: fitted on {_few(seen)} of {corpus}; fit the statistics run without {corpus}")
    mels = load_mels(items, MelSettings.from_dict(cfg["mel"]), progress=progress)
    probs, _ = predict(model, mels, eval_stats(cfg, mels, items))
    y = np.array([labels.index(i.emotion) for i in items])
    present = np.isin(np.arange(len(labels)), y)
    parts = {"ser": argmax_present(probs, present)}
    if stats is not None:
        from emort.runtime.ustats import fuse_weighted

        p_stats = stats_probs(stats, items, all_items)
        parts["stats"] = argmax_present(p_stats, present)
        probs = fuse_weighted(probs, p_stats, ser_weight)
    pred = argmax_present(probs, present)
    is_test = np.array([i.speaker_key in TEST_SPEAKERS for i in items])
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    scores = "SER fused with the statistics classifier" if stats is not None else "SER"
    result: dict = {"run": str(run_dir), "protocol": "cross-corpus", "corpus": corpus, "normalisation": NORM_NOTE[input_norm(cfg)],
                    "labels": [lab for lab, p in zip(labels, present) if p], "rows": {}}
    if stats is not None:
        result.update(stats_run=str(stats_run), fusion=FUSION_NOTE, ser_weight=ser_weight)
    md = [f"# SER evaluation: `{run_dir}`, leave-one-corpus-out on {corpus}\n",
          f"Neither the SER{' nor the statistics run' if stats is not None else ''} saw any {corpus} speaker. "
          f"Input normalisation: {NORM_NOTE[input_norm(cfg)]}. Scores: {scores}"
          + (f" (`{stats_run}`)" if stats is not None else "") + f". Label set: the {int(present.sum())} emotions {corpus} has.\n",
          "The validation row (the corpus's non-test speakers) is where cross-corpus choices are made; the test row is only reported.\n"]
    for row, mask in (("validation", ~is_test), ("test", is_test)):
        if not mask.any():
            continue
        rep = classification_report(y[mask], pred[mask], labels)
        entry = {**rep.to_dict(), "speakers": sorted({i.speaker_key for i, m in zip(items, mask) if m})}
        if stats is not None:
            entry["components"] = {k: {"wa": r.wa, "ua": r.ua, "n": r.n} for k, r in
                                   ((k, classification_report(y[mask], v[mask], labels)) for k, v in parts.items())}
        result["rows"][row] = entry
        title = f"{corpus} {row} speakers ({', '.join(entry['speakers'])})"
        plot_confusion(rep, str(out / f"confusion_{corpus}_{row}.png"), f"{title}: UA {rep.ua:.3f}")
        md += [f"## {title}: WA {rep.wa:.3f}, UA {rep.ua:.3f}{ua_interval_text(rep)} (n = {rep.n})\n"]
        if stats is not None:
            md += ["Alone: " + ", ".join(f"{k} WA {v['wa']:.3f} / UA {v['ua']:.3f}" for k, v in entry["components"].items()) + ".\n"]
        md += [format_confusion(rep), "", format_prf(rep), ""]
    write_json_atomic(out / "ser_eval.json", result)
    write_text_atomic(out / "ser_eval.md", "\n".join(md))
    return result


def is_loso_run(run_dir: str | Path) -> bool:
    return (Path(run_dir) / "loso.json").exists()


def evaluate_ser_loso(run_dir: str | Path, data: list[str], out_dir: str | Path, progress: bool = False,
                      stats_run: str | Path | None = None, ser_weight: float = 1.0) -> dict:
    """Leave-one-speaker-out: each fold's best checkpoint on its own held-out speaker of the
    LOSO corpus; one pooled confusion matrix over all folds plus the per-fold scores."""
    from emort.runtime.errors import EmortError
    from emort.runtime.settings import MelSettings
    from emort.training import corpora
    from emort.training.data import load_mels
    from emort.training.ser import eval_stats, fold_finished, input_norm, load_ser, predict

    run_dir = Path(run_dir)
    meta = json.loads((run_dir / "loso.json").read_text())
    corpus = meta["corpus"]
    if stats_run is not None:
        smeta = Path(stats_run) / "loso.json"
        if not smeta.exists() or json.loads(smeta.read_text())["folds"] != meta["folds"]:
            raise EmortError(f"{stats_run}: not the statistics runs of these folds; fit them with `emort train stats --loso {corpus}`")
    parts_all: dict[str, list[int]] = {"ser": [], "stats": []}
    all_items = corpora.read_specs(data)
    y_all: list[int] = []
    p_all: list[int] = []
    folds: dict[str, dict] = {}
    missing: list[str] = []
    cut_short: list[str] = []
    labels: list[str] = []
    for name in meta["folds"]:
        fold_dir = run_dir / name
        hist = fold_dir / "ser_history.json"
        if not hist.exists():  # still training (ser.json appears at its first best epoch) or never started
            missing.append(name)
            continue
        if not fold_finished(fold_dir):
            cut_short.append(name)
        model, cfg = load_ser(fold_dir)
        stats = load_stats_for(Path(stats_run) / name, cfg) if stats_run is not None else None
        labels = cfg["labels"]
        spk = [s for s in cfg["train"]["test_speakers"] if s.startswith(f"{corpus}/")]
        test = [i for i in corpora.only_canonical(all_items, tuple(labels)) if i.speaker_key in spk]
        if not test:
            raise EmortError(f"{name}: no clips of {spk} in the given --data")
        mels = load_mels(test, MelSettings.from_dict(cfg["mel"]), progress=progress)
        probs, _ = predict(model, mels, eval_stats(cfg, mels, test))
        y = [labels.index(i.emotion) for i in test]
        if stats is not None:
            from emort.runtime.ustats import fuse_weighted

            p_stats = stats_probs(stats, test, all_items)
            parts_all["ser"] += probs.argmax(1).tolist()
            parts_all["stats"] += p_stats.argmax(1).tolist()
            probs = fuse_weighted(probs, p_stats, ser_weight)
        pred = probs.argmax(1).tolist()
        rep = classification_report(y, pred, labels)
        norm_mode = input_norm(cfg)
        folds[name] = {"speaker": spk[0], "wa": rep.wa, "ua": rep.ua, "n": rep.n, "best_epoch": cfg.get("best", {}).get("epoch")}
        y_all += y
        p_all += pred
    if not folds:
        raise EmortError(f"{run_dir}: no finished folds")
    pooled = classification_report(y_all, p_all, labels)
    uas = np.array([f["ua"] for f in folds.values()])
    was = np.array([f["wa"] for f in folds.values()])
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    title = f"{corpus} leave-one-speaker-out ({len(folds)} folds)"
    plot_confusion(pooled, str(out / f"confusion_{corpus}_loso.png"), f"{title}: WA {pooled.wa:.3f} UA {pooled.ua:.3f}")
    result = {
        "run": str(run_dir), "protocol": "loso", "corpus": corpus, "normalisation": NORM_NOTE[norm_mode], "folds": folds, "missing_folds": missing, "cut_short_folds": cut_short,
        "fold_mean": {"wa": float(was.mean()), "ua": float(uas.mean()), "ua_std": float(uas.std(ddof=1)) if len(uas) > 1 else 0.0},
        "corpora": {corpus: pooled.to_dict()},
    }
    if stats_run is not None:
        comp = {k: classification_report(y_all, v, labels) for k, v in parts_all.items()}
        result.update(stats_run=str(stats_run), fusion=FUSION_NOTE,
                      components={k: {corpus: {"wa": r.wa, "ua": r.ua, "n": r.n}} for k, r in comp.items()})
    md = [f"# SER evaluation: `{run_dir}` ({title})\n",
          "Each fold's model never saw its test speaker (in training or early stopping); "
          "the pooled matrix counts every clip of the corpus once.\n", f"Input normalisation: {NORM_NOTE[norm_mode]}.\n",
          *([f"Scores: {FUSION_NOTE}, statistics runs `{stats_run}`. Pooled alone: "
             + ", ".join(f"{k} WA {v[corpus]['wa']:.3f} / UA {v[corpus]['ua']:.3f}" for k, v in result["components"].items()) + ".\n"]
            if stats_run is not None else []),
          "| fold | test speaker | WA | UA | n | best epoch |", "|---|---|---|---|---|---|"]
    md += [f"| {k} | {f['speaker']} | {f['wa']:.3f} | {f['ua']:.3f} | {f['n']} | {f['best_epoch']} |" for k, f in folds.items()]
    md += [f"| **mean over folds** | | {was.mean():.3f} | {uas.mean():.3f} (sd {result['fold_mean']['ua_std']:.3f}) | | |", ""]
    if missing:
        md += [f"Folds not finished, left out: {', '.join(missing)}\n"]
    if cut_short:
        md += [f"Folds stopped by a time or step limit (included, trained less): {', '.join(cut_short)}\n"]
    md += [f"## {corpus}, pooled over folds: WA {pooled.wa:.3f}, UA {pooled.ua:.3f}{ua_interval_text(pooled)} (n = {pooled.n})\n",
           format_confusion(pooled), "", format_prf(pooled), ""]
    write_json_atomic(out / "ser_eval.json", result)
    write_text_atomic(out / "ser_eval.md", "\n".join(md))
    return result


def evaluate_stats(run_dir: str | Path, data: list[str], out_dir: str | Path, voice_run: str | Path | None = None) -> dict:
    """The statistics classifier alone (what ``emort score --per-speaker`` gives with a bundle
    whose ``ser_weight`` is 0) on its held-out test speakers, or with a leave-one-speaker-out
    run (``emort train stats --loso``) on each fold's held-out speaker, pooled. Each test speaker
    is z-scored over all its clips, any emotion, labels unused (:func:`stats_probs`). Writes
    ``stats_eval.md`` / ``.json`` with WA / UA, confusion and per-class P/R/F1 per corpus.
    ``voice_run``: a classifier run on GE2E embeddings (``--features ge2e``) with the same test
    speakers (or the same folds), fused in by the geometric mean, as ``emort score
    --per-speaker`` fuses a bundle's ``stats`` and ``stats_voice`` graphs."""
    from emort.runtime.errors import EmortError
    from emort.runtime.settings import EMOTIONS
    from emort.training import corpora
    from emort.training.ustats import load_stats

    run_dir = Path(run_dir)
    all_items = corpora.read_specs(data)
    if is_loso_run(run_dir):
        meta = json.loads((run_dir / "loso.json").read_text())
        if meta.get("kind") != "stats":
            raise EmortError(f"{run_dir} holds SER folds; evaluate them with `emort eval ser`")
        runs = [run_dir / name for name in meta["folds"]]
        only = f"{meta['corpus']}/"  # a fold also holds out the other corpora's test speakers: not its own
    else:
        runs, only = [run_dir], ""
    voice_runs: list[Path | None] = [None] * len(runs)
    if voice_run is not None:
        voice_run = Path(voice_run)
        if is_loso_run(run_dir) != is_loso_run(voice_run):
            raise EmortError(f"{voice_run}: give --voice {'leave-one-speaker-out folds' if is_loso_run(run_dir) else 'a single run'}, as {run_dir}")
        voice_runs = [voice_run / r.name for r in runs] if is_loso_run(run_dir) else [voice_run]
    y_all: list[int] = []
    p_all: list[np.ndarray] = []
    corpus_all: list[str] = []
    folds = {}
    labels: list[str] = list(EMOTIONS)
    cfg0: dict = {}
    for run, vrun in zip(runs, voice_runs):
        clf, cfg = load_stats(run)
        cfg0 = cfg0 or cfg
        labels = list(cfg["labels"])
        spk = {k for k in cfg["train"]["test_speakers"] if k.startswith(only)}
        test = [i for i in corpora.only_canonical(all_items, tuple(labels)) if i.speaker_key in spk]
        if not test:
            raise EmortError(f"{run}: no clips of its test speakers {sorted(spk)} in the given --data")
        p = stats_probs((clf, cfg), test, all_items)
        if vrun is not None:
            from emort.runtime.ustats import fuse_weighted

            vclf, vcfg = load_stats(vrun)
            if vcfg.get("features") != "ge2e" or vcfg["labels"] != cfg["labels"] or sorted(vcfg["train"]["test_speakers"]) != sorted(cfg["train"]["test_speakers"]):
                raise EmortError(f"{vrun}: --voice takes a ge2e run with the labels and test speakers of {run}")
            p = fuse_weighted(p, stats_probs((vclf, vcfg), test, all_items), 1.0)
        y = [labels.index(i.emotion) for i in test]
        rep = classification_report(y, p.argmax(1), labels)
        folds[run.name] = {"test_speakers": sorted(spk), "wa": rep.wa, "ua": rep.ua, "n": rep.n}
        y_all += y
        p_all.append(p)
        corpus_all += [i.corpus for i in test]
    probs = np.concatenate(p_all)
    y = np.array(y_all)
    corp = np.array(corpus_all)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    kind = f"leave-one-speaker-out ({len(runs)} folds, pooled)" if len(runs) > 1 else "held-out test speakers"
    from emort.training.data import FRONTEND_VERSION, describe_frontend, frontend_of

    fitted_on = frontend_of(cfg0)
    result: dict = {"run": str(run_dir), "protocol": kind, "features": cfg0.get("features", "ustats"),
                    "frontend_version": {"fitted": fitted_on, "evaluated": FRONTEND_VERSION},
                    "voice_run": None if voice_run is None else str(voice_run),
                    "normalisation": ("each test speaker z-scored over all its clips, any emotion (unlabelled)"
                                      if cfg0.get("norm", "speaker") == "speaker" else "none (each clip alone; --norm global)"),
                    "folds": folds if len(runs) > 1 else None, "corpora": {}}
    what = "Statistics classifier alone" if voice_run is None else "Statistics classifier fused with the voice classifier"
    md = [f"# {what}: `{run_dir}` ({kind})\n",
          f"Features: {result['features']}" + ("" if voice_run is None else f", fused with the GE2E voice classifier `{voice_run}` "
                                                "(geometric mean)") + f". Normalisation: {result['normalisation']}.\n"]
    if fitted_on != FRONTEND_VERSION:  # its features are computed as this emort computes them, not as it was fitted on
        md += [f"**Note:** fitted on log-mels of {describe_frontend(fitted_on)}, evaluated on "
               f"front end {FRONTEND_VERSION}'s: refit it to evaluate what the runtime reads.\n"]
    if len(runs) > 1:
        md += ["| fold | test speaker(s) | WA | UA | n |", "|---|---|---|---|---|"]
        md += [f"| {k} | {', '.join(v['test_speakers'])} | {v['wa']:.3f} | {v['ua']:.3f} | {v['n']} |" for k, v in folds.items()] + [""]
    for corpus in sorted(set(corp)) + ["all"]:
        mask = np.ones(len(y), bool) if corpus == "all" else corp == corpus
        rep = classification_report(y[mask], probs[mask].argmax(1), labels)
        result["corpora"][corpus] = rep.to_dict()
        md += [f"## {corpus}: WA {rep.wa:.3f}, UA {rep.ua:.3f}{ua_interval_text(rep)} (n = {rep.n})\n", format_confusion(rep), "", format_prf(rep), ""]
        own = sorted(set(y[mask].tolist()))
        if corpus != "all" and len(own) < len(labels):
            # a corpus without some labels (nEMO: no disgust) read over its own: the protocol of
            # leave-one-corpus-out rows (`emort eval ser --cross-corpus`), where a prediction of an
            # absent label cannot count as a miss
            pred = np.array(own)[probs[mask][:, own].argmax(1)]
            r_own = classification_report(y[mask], pred, labels)
            result["corpora"][corpus]["own_labels"] = {"labels": [labels[k] for k in own], "wa": r_own.wa, "ua": r_own.ua}
            md += [f"Over {corpus}'s own {len(own)} labels (argmax among them): WA {r_own.wa:.3f}, UA {r_own.ua:.3f}.", ""]
    write_json_atomic(out / "stats_eval.json", result)
    write_text_atomic(out / "stats_eval.md", "\n".join(md))
    return result
