"""Leave-one-corpus-out evaluation (`emort eval ser --cross-corpus`): rows, label set, refusals."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch", reason="SER evaluation needs the [train] extra")

from tiny import write_manifest_csv  # noqa: E402 (tests/tiny.py: the test helpers)

from emort.evaluation.ser_eval import evaluate_ser_cross_corpus  # noqa: E402
from emort.runtime.errors import EmortError  # noqa: E402
from emort.runtime.settings import MelSettings  # noqa: E402
from emort.training import corpora  # noqa: E402
from emort.training.data import load_mels  # noqa: E402
from emort.training.metrics import classification_report  # noqa: E402
from emort.training.ser import eval_stats, load_ser, predict  # noqa: E402

LETTERS = {"W": "angry", "A": "fear", "F": "happy", "T": "sad", "N": "neutral"}  # no disgust: a five-emotion corpus


def _held_out_csv(shared_data: Path, out: Path) -> Path:
    """A corpus named ``emodb`` (the CSV's stem) of EmoDB speakers 03 (a project test speaker)
    and 12 (not one), without disgust, which the tiny runs (corpus ``tiny``) never saw."""
    rows = []
    for p in sorted((shared_data / "emodb" / "wav").glob("*.flac")):
        if p.stem[:2] in ("03", "12") and p.stem[5] in LETTERS:
            rows.append((str(p.resolve()), LETTERS[p.stem[5]], p.stem[:2]))
    return write_manifest_csv(out / "emodb.csv", rows)


def test_cross_corpus_rows_label_set_and_hand_computed_ua(tiny, shared_data: Path, tmp_path: Path):
    held = _held_out_csv(shared_data, tmp_path)
    data = [f"csv={held}"]
    res = evaluate_ser_cross_corpus(tiny["ser_speaker"], data, "emodb", tmp_path / "r", stats_run=tiny["stats"])
    assert res["protocol"] == "cross-corpus" and res["labels"] == ["neutral", "happy", "sad", "angry", "fear"]
    assert res["rows"]["validation"]["speakers"] == ["emodb/12"] and res["rows"]["test"]["speakers"] == ["emodb/03"]
    items = list(corpora.read_specs(data))
    for row, spk in (("validation", "12"), ("test", "03")):
        assert res["rows"][row]["n"] == sum(i.speaker == spk for i in items)
    assert (tmp_path / "r" / "ser_eval.md").exists() and (tmp_path / "r" / "confusion_emodb_test.png").exists()

    # The SER's own UA, recomputed: per-speaker normalisation, argmax over the five emotions present.
    model, cfg = load_ser(tiny["ser_speaker"])
    test = [i for i in items if i.speaker == "03"]
    mels = load_mels(test, MelSettings.from_dict(cfg["mel"]), progress=False)
    probs, _ = predict(model, mels, eval_stats(cfg, mels, test))
    probs[:, cfg["labels"].index("disgust")] = -np.inf
    y = [cfg["labels"].index(i.emotion) for i in test]
    want = classification_report(y, probs.argmax(1), cfg["labels"]).ua
    assert res["rows"]["test"]["components"]["ser"]["ua"] == pytest.approx(want)

    # SER weight 0: the fused scores are the statistics classifier's alone.
    alone = evaluate_ser_cross_corpus(tiny["ser_speaker"], data, "emodb", tmp_path / "r0", stats_run=tiny["stats"], ser_weight=0.0)
    for row in ("validation", "test"):
        assert alone["rows"][row]["ua"] == pytest.approx(alone["rows"][row]["components"]["stats"]["ua"])


def test_cross_corpus_refuses_runs_that_saw_the_corpus(tiny, shared_data: Path, tmp_path: Path):
    from emort.training.ustats import StatsTrainConfig, train_stats

    with pytest.raises(EmortError, match="trained or early-stopped on .* of tiny"):
        evaluate_ser_cross_corpus(tiny["ser_speaker"], [f"csv={tiny['manifest']}"], "tiny", tmp_path / "r")
    # A statistics run fitted on the held-out corpus is refused, even beside an SER run that never saw it.
    held = [f"csv={_held_out_csv(shared_data, tmp_path)}"]
    leaky = tmp_path / "stats_leaky"
    train_stats(StatsTrainConfig(data=held, out=str(leaky), test_speakers=[], val_speakers=[]))
    with pytest.raises(EmortError, match="fitted on emodb/03, emodb/12 of emodb"):
        evaluate_ser_cross_corpus(tiny["ser_speaker"], held, "emodb", tmp_path / "r", stats_run=leaky)
    with pytest.raises(EmortError, match="no clips of corpus 'nope'"):
        evaluate_ser_cross_corpus(tiny["ser_speaker"], held, "nope", tmp_path / "r")


def test_augmented_copies_count_as_their_source_speaker():
    from emort.evaluation.ser_eval import _speakers_seen
    from emort.training.corpora import Item, source_speaker, split_by_speakers

    assert source_speaker("manifest/nemo/KD0+emort") == "nemo/KD0" and source_speaker("nemo/KD0") == "nemo/KD0"
    # A run fitted on nEMO copies has seen nEMO: the cross-corpus refusal must see through the manifest.
    assert "nemo/KD0" in _speakers_seen({"split": {"train_speakers": ["manifest/nemo/KD0+emort"], "val_speakers": []}})
    # A held-out speaker's copies are held out with it, not trained on beside its early-stopping originals.
    items = [Item("/a.wav", "sad", "10", "emodb"), Item("/b.wav", "sad", "emodb/10+emort", "manifest"),
             Item("/c.wav", "sad", "emodb/09+emort", "manifest")]
    train, held = split_by_speakers(items, ["emodb/10"])
    assert [i.path for i in held] == ["/a.wav", "/b.wav"] and [i.path for i in train] == ["/c.wav"]


def test_a_misspelt_corpus_kind_is_named():
    from emort.training.corpora import CorpusError, parse_data_spec

    with pytest.raises(CorpusError, match="unknown corpus kind 'emdob'"):
        parse_data_spec("emdob=../shared/data/emodb")
    assert parse_data_spec("emodb=x") == ("emodb", "x") and parse_data_spec("some/folder") == (None, "some/folder")
