"""`--corpus-balance` (cell-balanced sampling) and `--fit-val` (train on the validation speakers too)."""

from __future__ import annotations

import csv
import dataclasses
import json
import os
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


def _falling_ua(monkeypatch):
    """Validation UA that only falls, so a normal run with patience 1 stops after epoch 2."""
    import dataclasses

    import emort.training.ser as ser_mod

    real, calls = ser_mod.classification_report, []

    def fake(*a, **kw):
        calls.append(1)
        return dataclasses.replace(real(*a, **kw), ua=1.0 / len(calls))

    monkeypatch.setattr(ser_mod, "classification_report", fake)


def test_fit_val_trains_on_the_validation_speakers_and_keeps_the_last_epoch(tiny_csv: Path, tmp_path: Path, monkeypatch):
    _falling_ua(monkeypatch)
    normal = train_ser(_cfg(tiny_csv, tmp_path / "normal", epochs=4, patience=1))
    assert normal["stopped"] == "early_stopping" and normal["best_epoch"] == 1 and len(normal["history"]) == 2

    _falling_ua(monkeypatch)
    out = tmp_path / "fv"
    res = train_ser(_cfg(tiny_csv, out, epochs=4, patience=1, fit_val=True))
    assert res["stopped"] == "epochs" and len(res["history"]) == 4 and res["best_epoch"] == 4 and res["fit_val"]
    cfg = json.loads((out / "ser.json").read_text())
    assert cfg["best"]["epoch"] == 4 and "fit-val" in cfg["best"]["selection"] and "val_ua" not in cfg["best"]
    assert "tiny/10" in cfg["split"]["train_speakers"] and cfg["split"]["train"] == _n_clips(tiny_csv) and cfg["split"]["val_in_train"]


def test_corpus_balance_samples_by_cell_instead_of_weighting_the_loss(tiny_csv: Path, tmp_path: Path, monkeypatch):
    import emort.training.ser as ser_mod

    drawn = []
    real = ser_mod.cell_balanced_probs
    monkeypatch.setattr(ser_mod, "cell_balanced_probs", lambda items: drawn.append(len(items)) or real(items))
    monkeypatch.setattr(ser_mod, "class_weights", lambda *a: pytest.fail("corpus balance must not also weight the loss"))
    train_ser(_cfg(tiny_csv, tmp_path / "cb", epochs=1, max_steps=2, corpus_balance=True))
    assert drawn == [_n_clips(tiny_csv, but="10")]


def test_resume_refuses_other_options(tiny_csv: Path, tmp_path: Path):
    from emort.runtime.errors import EmortError

    out = tmp_path / "r"
    train_ser(_cfg(tiny_csv, out, epochs=2, max_steps=1))
    for kw in ({"corpus_balance": True}, {"fit_val": True}, {"norm": "speaker"}, {"seed": 1},
               {"test_speakers": ["tiny/11"]}, {"val_speakers": ["tiny/09"]},  # what it trains on, too (0.23)
               {"optimizer": "adam"}, {"lr": 0.5}, {"batch_size": 4}, {"label_smoothing": 0.4}):  # and the optimiser (0.24)
        with pytest.raises(EmortError, match="other options") as e:
            train_ser(_cfg(tiny_csv, out, epochs=2, max_steps=2, **kw))
        assert next(iter(kw)) in str(e.value) and "\n" not in str(e.value)
    twin = tmp_path / "copy" / tiny_csv.name  # another corpus file (the same clips listed elsewhere): refused
    twin.parent.mkdir()
    twin.write_text("\n".join(ln if k == 0 else str(Path(tiny_csv.parent, ln.split(",", 1)[0])) + "," + ln.split(",", 1)[1]
                              for k, ln in enumerate(tiny_csv.read_text().splitlines())) + "\n")
    with pytest.raises(EmortError, match="data="):
        train_ser(SERTrainConfig(**{**dataclasses.asdict(_cfg(tiny_csv, out, epochs=2, max_steps=2)), "data": [f"csv={twin}"]}))
    # the same corpus named by another path is the same data
    rel = os.path.relpath(tiny_csv)
    train_ser(SERTrainConfig(**{**dataclasses.asdict(_cfg(tiny_csv, out, epochs=2, max_steps=2)), "data": [f"csv={rel}"]}))


def test_an_early_stopped_run_is_not_trained_further(tiny_csv: Path, tmp_path: Path, monkeypatch):
    _falling_ua(monkeypatch)
    out = tmp_path / "es"
    first = train_ser(_cfg(tiny_csv, out, epochs=5, patience=1))
    assert first["stopped"] == "early_stopping"
    again = train_ser(_cfg(tiny_csv, out, epochs=5, patience=1))
    assert again["stopped"] == "early_stopping" and len(again["history"]) == len(first["history"])


def test_without_fit_val_the_validation_speaker_stays_out(tiny_csv: Path, tmp_path: Path):
    out = tmp_path / "plain"
    train_ser(_cfg(tiny_csv, out, epochs=1, max_steps=1))
    split = json.loads((out / "ser.json").read_text())["split"]
    assert split["train_speakers"] == ["tiny/09", "tiny/11"] and split["val_speakers"] == ["tiny/10"] and split["train"] == _n_clips(tiny_csv, but="10")



def _item(speaker: str, corpus: str, emotion: str = "angry", n: int = 0) -> corpora.Item:
    return corpora.Item(f"/x/{corpus}/{speaker.replace('/', '_')}_{emotion}_{n}.wav", emotion, speaker, corpus)


def test_copies_count_in_their_source_corpus_under_corpus_balance():
    items = ([_item("09", "emodb", n=k) for k in range(2)] + [_item("01", "ravdess", n=k) for k in range(2)]
             + [_item("emodb/09+emort", "manifest", n=k) for k in range(2)] + [_item("ravdess/01+emort", "manifest", n=k) for k in range(2)])
    p = cell_balanced_probs(items)
    by_corpus = Counter()
    for it, w in zip(items, p):
        by_corpus[it.source_speaker_key.split("/")[0]] += w
    assert by_corpus == pytest.approx({"emodb": 0.5, "ravdess": 0.5})  # not a third "manifest" corpus of weight 1/3


def test_a_random_split_refuses_augmented_copies():
    from emort.runtime.errors import EmortError
    from emort.training.ser import make_splits

    items = [_item("09", "emodb", n=k) for k in range(10)] + [_item("emodb/09+classic", "manifest", n=k) for k in range(10)]
    cfg = SERTrainConfig(data=[], out="x", split="random")
    with pytest.raises(EmortError, match="--split random cannot keep augmented copies"):
        make_splits(items, cfg)
    assert len(sum(make_splits(items[:10], cfg), [])) == 10  # originals alone split as before


def test_diffusion_holds_out_the_project_speakers_of_corpora_its_ser_never_read():
    from emort.training.diffusion import held_out_speakers
    from emort.training.splits import TEST_SPEAKERS, VAL_SPEAKERS

    ser_split = {"split": {"test_speakers": ["emodb/03", "emodb/08"], "val_speakers": ["emodb/10"]}}  # an EmoDB-only SER
    held, val = held_out_speakers(ser_split)
    assert {"nemo/IC0", "nemo/KS0", "nemo/MP0", "ravdess/21"} <= held and set(TEST_SPEAKERS) | set(VAL_SPEAKERS) <= held
    assert "nemo/MP0" in val and "emodb/10" in val


def test_a_random_split_run_is_evaluated_only_on_the_data_it_was_drawn_over(tiny_csv: Path, tmp_path: Path):
    from emort.evaluation.ser_eval import evaluate_ser
    from emort.runtime.errors import EmortError

    out = tmp_path / "rnd"
    train_ser(_cfg(tiny_csv, out, epochs=1, max_steps=1, split="random", val_speakers=[]))
    other = tmp_path / "more.csv"
    other.write_text(tiny_csv.read_text())  # another --data: the draw would differ
    with pytest.raises(EmortError, match="drew a random split over --data"):
        evaluate_ser(out, [f"csv={tiny_csv}", f"csv={other}"], tmp_path / "r")
    assert evaluate_ser(out, [f"csv={tiny_csv}"], tmp_path / "r")["protocol"] == "random"  # the data it was drawn over: evaluated


def test_a_resumed_ser_run_is_the_run_made_straight_through(tiny_csv: Path, tmp_path: Path, monkeypatch):
    """Cut by its time limit at an epoch's end and resumed, a run ends with the weights of one run
    straight through (its crops, SpecAugment, mixup and dropout draw on; 0.23 re-seeded them)."""
    import torch
    from safetensors.torch import load_file
    from tiny import MinuteClock

    import emort.training.ser as ser_mod

    straight, cut = tmp_path / "straight", tmp_path / "cut"
    train_ser(_cfg(tiny_csv, straight, epochs=3, patience=10))
    monkeypatch.setattr(ser_mod, "time", MinuteClock())  # each reading a minute later
    first = train_ser(_cfg(tiny_csv, cut, epochs=3, patience=10, max_minutes=1.5))
    monkeypatch.undo()
    assert len(first["history"]) < 3
    train_ser(_cfg(tiny_csv, cut, epochs=3, patience=10))
    a, b = load_file(straight / "ser_last.safetensors"), load_file(cut / "ser_last.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
