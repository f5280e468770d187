"""`--corpus-balance` (cell-balanced sampling) and `--fit-val` (train on the validation speakers too)."""

from __future__ import annotations

import csv
import json
from collections import Counter
from pathlib import Path

import pytest

pytest.importorskip("torch", reason="training tests need the [train] extra")

from emort.training import corpora  # noqa: E402
from emort.training.ser import SERTrainConfig, cell_balanced_probs, train_ser  # noqa: E402


def _items(spec: dict[tuple[str, str], int]) -> list[corpora.Item]:
    return [corpora.Item(f"/{c}/{e}{k}.wav", e, "s", c) for (c, e), n in spec.items() for k in range(n)]


def test_cell_balanced_probs_exact():
    # A big corpus (30 + 10 clips) and a small one (4 + 2): each of the 4 cells gets 1/4 of the mass.
    items = _items({("big", "sad"): 30, ("big", "angry"): 10, ("small", "sad"): 4, ("small", "angry"): 2})
    p = cell_balanced_probs(items)
    assert p.sum() == pytest.approx(1.0)
    mass = Counter()
    for it, q in zip(items, p):
        mass[(it.corpus, it.emotion)] += q
    assert all(v == pytest.approx(0.25) for v in mass.values()) and len(mass) == 4
    assert p[0] == pytest.approx(1 / 120) and p[-1] == pytest.approx(1 / 8)  # a small-corpus clip is drawn 15x as often


def _n_clips(csv_path: Path, but: str | None = None) -> int:
    return sum(1 for r in csv.DictReader(open(csv_path)) if r["speaker"] != but)


def _cfg(csv_path: Path, out: Path, **kw) -> SERTrainConfig:
    base = dict(preset="tiny", batch_size=8, test_speakers=[], val_speakers=["tiny/10"], crop_s=1.0, progress=False)
    base.update(kw)
    return SERTrainConfig(data=[f"csv={csv_path}"], out=str(out), **base)


def test_fit_val_trains_on_the_validation_speakers_and_keeps_the_last_epoch(tiny_csv: Path, tmp_path: Path):
    out = tmp_path / "fv"
    # patience 1 would stop a normal run at the first epoch without a better UA; fit_val never stops early.
    res = train_ser(_cfg(tiny_csv, out, epochs=3, patience=1, fit_val=True, corpus_balance=True))
    assert res["stopped"] == "epochs" and len(res["history"]) == 3 and res["best_epoch"] == 3
    cfg = json.loads((out / "ser.json").read_text())
    assert cfg["best"]["epoch"] == 3  # the saved model is the last epoch, whatever the validation said
    assert "tiny/10" in cfg["split"]["train_speakers"] and cfg["split"]["train"] == _n_clips(tiny_csv)
    assert cfg["train"]["fit_val"] and cfg["train"]["corpus_balance"]


def test_without_fit_val_the_validation_speaker_stays_out(tiny_csv: Path, tmp_path: Path):
    out = tmp_path / "plain"
    train_ser(_cfg(tiny_csv, out, epochs=1, max_steps=1))
    split = json.loads((out / "ser.json").read_text())["split"]
    assert split["train_speakers"] == ["tiny/09", "tiny/11"] and split["val_speakers"] == ["tiny/10"] and split["train"] == _n_clips(tiny_csv, but="10")

