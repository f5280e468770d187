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
)


def evaluate_ser(run_dir: str | Path, data: list[str], out_dir: str | Path, progress: bool = False) -> dict:
    """Evaluate the run's best checkpoint on the test clips of its own protocol.

    ``speakers`` runs: the held-out test speakers (never seen in training or
    early stopping). ``random`` runs: the paper's random 20%.
    """
    from emort.runtime.settings import MelSettings
    from emort.training import corpora
    from emort.training.data import NormStats, load_mels
    from emort.training.ser import SERTrainConfig, load_ser, make_splits, predict

    model, cfg = load_ser(run_dir)
    tcfg = SERTrainConfig(**{**cfg["train"], "data": list(data)})
    labels = cfg["labels"]
    settings = MelSettings.from_dict(cfg["mel"])
    stats = NormStats.from_dict(cfg["norm"])
    items = corpora.only_canonical(corpora.read_specs(data), tuple(labels))
    _, _, test = make_splits(items, tcfg)
    if not test:
        from emort.runtime.errors import EmortError

        raise EmortError("no test clips for this run's protocol in the given --data")
    probs, _ = predict(model, load_mels(test, settings, progress=progress), stats)
    pred = probs.argmax(1)
    y = np.array([labels.index(i.emotion) for i in test])
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    result: dict = {"run": str(run_dir), "protocol": tcfg.split, "test_speakers": sorted({i.speaker_key for i in test}), "corpora": {}}
    md = [f"# SER evaluation: `{run_dir}` ({tcfg.split} protocol)\n"]
    for corpus in sorted({i.corpus for i in test}) + ["all"]:
        mask = np.array([corpus == "all" or i.corpus == corpus for i in test])
        rep = classification_report(y[mask], pred[mask], labels)
        result["corpora"][corpus] = rep.to_dict()
        plot_confusion(rep, str(out / f"confusion_{corpus}.png"), f"{corpus} ({tcfg.split}): WA {rep.wa:.3f} UA {rep.ua:.3f}")
        md += [f"## {corpus}: WA {rep.wa:.3f}, UA {rep.ua:.3f} (n = {rep.n})\n", format_confusion(rep), "", format_prf(rep), ""]
    (out / "ser_eval.json").write_text(json.dumps(result, indent=2))
    (out / "ser_eval.md").write_text("\n".join(md))
    return result
