"""emort.training.corpora and .splits: real corpus counts, layout detection, synthetic layouts, splits."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from emort.runtime.errors import EmortError
from emort.runtime.settings import EMOTIONS
from emort.training import corpora
from emort.training.corpora import CorpusError, Item
from emort.training.splits import TEST_SPEAKERS, VAL_SPEAKERS

EMODB_COUNTS = {"angry": 100, "boredom": 58, "disgust": 30, "fear": 54, "happy": 54, "neutral": 63, "sad": 49}
RAVDESS_COUNTS = {"neutral": 88, **{e: 176 for e in ("calm", "happy", "sad", "angry", "fear", "disgust", "surprised")}}


@pytest.fixture(scope="module")
def emodb_items(emodb_root) -> list[Item]:
    return corpora.read_corpus(emodb_root)


@pytest.fixture(scope="module")
def ravdess_items(ravdess_root) -> list[Item]:
    return corpora.read_corpus(ravdess_root)


@pytest.fixture(scope="module")
def nemo_root(shared_data) -> Path:
    p = shared_data / "nemo"
    if not p.is_dir():
        pytest.skip(f"nEMO not found at {p}")
    return p


@pytest.fixture(scope="module")
def nemo_items(nemo_root) -> list[Item]:
    return corpora.read_corpus(nemo_root)


def _wav(path: Path, sr: int = 8000) -> Path:
    """A tiny valid wav (0.1 s of a quiet tone)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    t = np.arange(int(0.1 * sr)) / sr
    sf.write(str(path), (0.1 * np.sin(2 * np.pi * 200 * t)).astype(np.float32), sr)
    return path


# --- real corpora -----------------------------------------------------------------------------


def test_detect_real_kinds(emodb_root, ravdess_root):
    assert corpora.detect_kind(emodb_root) == "emodb"
    assert corpora.detect_kind(ravdess_root) == "ravdess"


NEMO_SPEAKERS = {"IC0": "f", "KD0": "f", "MK0": "f", "KS0": "m", "MP0": "m", "SM0": "m", "TP0": "m"}


def test_nemo_real(nemo_root, nemo_items):
    assert corpora.detect_kind(nemo_root) == "nemo"
    assert len(nemo_items) == 457
    assert {it.corpus for it in nemo_items} == {"nemo"}
    assert {it.speaker_key for it in nemo_items} == {f"nemo/{s}" for s in NEMO_SPEAKERS}
    per = Counter((it.speaker, it.emotion) for it in nemo_items)
    # 11 clips per speaker and label of the six; surprised has 12 per speaker, and none for MK0
    five = set(EMOTIONS) - {"disgust"}
    assert {k: n for k, n in per.items() if k[1] != "surprised"} == {(s, e): 11 for s in NEMO_SPEAKERS for e in five}
    assert {s: n for (s, e), n in per.items() if e == "surprised"} == {s: 12 for s in NEMO_SPEAKERS if s != "MK0"}
    for it in nemo_items:  # speaker and emotion word are the file name's
        spk, word, sentence = Path(it.path).stem.split("_")
        assert (it.speaker, it.emotion) == (spk, corpora.NEMO_LABELS[word]) and 1 <= int(sentence) <= 90
    six = corpora.only_canonical(nemo_items)
    assert len(six) == 457 - 72 == 7 * 5 * 11  # surprised dropped
    assert {it.emotion for it in six} == set(EMOTIONS) - {"disgust"}
    t = corpora.count_table(nemo_items)["nemo"]  # ... but counted before that
    assert t["emotions"]["surprised"] == 72 and len(t["speakers"]) == 7


def test_emodb_counts(emodb_items):
    assert len(emodb_items) == 408
    assert dict(Counter(it.emotion for it in emodb_items)) == EMODB_COUNTS
    speakers = {it.speaker for it in emodb_items}
    assert speakers == {"03", "08", "09", "10", "11", "12", "13", "14"}
    assert {it.corpus for it in emodb_items} == {"emodb"}
    # an explicit spot check of the letter map: 03a01Wa is speaker 03, anger (Wut)
    by_name = {Path(it.path).stem: it for it in emodb_items}
    assert by_name["03a01Wa"].emotion == "angry" and by_name["03a01Wa"].speaker == "03"
    assert by_name["03a01Fa"].emotion == "happy"
    assert by_name["03a01Nc"].emotion == "neutral"


def test_ravdess_counts(ravdess_items):
    assert len(ravdess_items) == 1320
    assert dict(Counter(it.emotion for it in ravdess_items)) == RAVDESS_COUNTS
    spk = Counter(it.speaker for it in ravdess_items)
    assert len(spk) == 22
    assert set(spk.values()) == {60}
    assert {it.corpus for it in ravdess_items} == {"ravdess"}
    for it in ravdess_items[:50]:  # speaker id comes from the file name, matching the folder
        assert Path(it.path).parent.name == f"Actor_{it.speaker}"


def test_count_table(emodb_items, ravdess_items):
    t = corpora.count_table(emodb_items + ravdess_items)
    assert t["emodb"]["files"] == 408 and t["ravdess"]["files"] == 1320
    assert t["emodb"]["emotions"] == dict(sorted(EMODB_COUNTS.items()))
    assert len(t["ravdess"]["speakers"]) == 22
    assert sum(t["emodb"]["speakers"].values()) == 408


def test_only_canonical_drops_outside_labels(emodb_items, ravdess_items):
    e = corpora.only_canonical(emodb_items)
    r = corpora.only_canonical(ravdess_items)
    assert len(e) == 408 - 58
    assert len(r) == 1320 - 2 * 176
    assert {it.emotion for it in e + r} == set(EMOTIONS)
    assert not {"calm", "surprised", "boredom"} & {it.emotion for it in e + r}
    only_two = corpora.only_canonical(emodb_items, labels=("angry", "sad"))
    assert len(only_two) == 149


def test_project_split_speakers_exist(emodb_items, ravdess_items, nemo_items):
    keys = {it.speaker_key for it in emodb_items + ravdess_items + nemo_items}
    assert set(TEST_SPEAKERS) <= keys
    assert set(VAL_SPEAKERS) <= keys
    assert not set(TEST_SPEAKERS) & set(VAL_SPEAKERS)
    # nEMO: the first female (IC0) and first male (KS0) code alphabetically are tested, MP0 validates
    assert [s for s in TEST_SPEAKERS if s.startswith("nemo/")] == ["nemo/IC0", "nemo/KS0"]
    assert [s for s in VAL_SPEAKERS if s.startswith("nemo/")] == ["nemo/MP0"]


def test_split_by_speakers_real(emodb_items, ravdess_items):
    # --data without nEMO: its split speakers just match nothing
    items = emodb_items + ravdess_items
    train, test = corpora.split_by_speakers(items, TEST_SPEAKERS)
    assert len(train) + len(test) == len(items)
    tr_spk, te_spk = {i.speaker_key for i in train}, {i.speaker_key for i in test}
    assert not tr_spk & te_spk
    assert te_spk == {s for s in TEST_SPEAKERS if not s.startswith("nemo/")}
    assert len([i for i in test if i.corpus == "ravdess"]) == 120


def test_split_by_speakers_with_nemo(emodb_items, nemo_items):
    items = corpora.only_canonical(emodb_items + nemo_items)
    rest, test = corpora.split_by_speakers(items, TEST_SPEAKERS)
    train, val = corpora.split_by_speakers(rest, VAL_SPEAKERS)
    by = lambda xs: {i.speaker_key for i in xs if i.corpus == "nemo"}  # noqa: E731
    assert by(test) == {"nemo/IC0", "nemo/KS0"}
    assert by(val) == {"nemo/MP0"}
    assert by(train) == {"nemo/KD0", "nemo/MK0", "nemo/SM0", "nemo/TP0"}
    assert len([i for i in test if i.corpus == "nemo"]) == 2 * 5 * 11  # five of the six labels, 11 clips each
    assert len(train) + len(val) + len(test) == len(items)


def test_leave_one_speaker_out_real(emodb_items):
    folds = corpora.leave_one_speaker_out(emodb_items)
    assert len(folds) == 8
    assert [f[0] for f in folds] == sorted(f"emodb/{s}" for s in ("03", "08", "09", "10", "11", "12", "13", "14"))
    for spk, train, test in folds:
        assert {i.speaker_key for i in test} == {spk}
        assert spk not in {i.speaker_key for i in train}
        assert len(train) + len(test) == 408
    assert sum(len(f[2]) for f in folds) == 408  # every item tested exactly once


def test_random_split_seeded_and_stratified(emodb_items, ravdess_items):
    items = emodb_items + ravdess_items
    tr1, te1 = corpora.random_split(items, seed=0)
    tr2, te2 = corpora.random_split(list(reversed(items)), seed=0)  # input order must not matter
    tr3, te3 = corpora.random_split(items, seed=1)
    assert [i.path for i in te1] == [i.path for i in te2]
    assert {i.path for i in te1} != {i.path for i in te3}
    assert len(tr1) + len(te1) == len(items)
    assert not {i.path for i in tr1} & {i.path for i in te1}
    assert len(te1) / len(items) == pytest.approx(0.2, abs=0.01)
    # stratified: every (corpus, emotion) group is split 80/20 to within one item
    groups = Counter((i.corpus, i.emotion) for i in items)
    tgroups = Counter((i.corpus, i.emotion) for i in te1)
    for g, n in groups.items():
        assert abs(tgroups[g] - 0.2 * n) <= 1.0, g


def test_holdout_validation_speakers_seeded(emodb_items, ravdess_items):
    items = emodb_items + ravdess_items
    a = corpora.holdout_validation_speakers(items, per_corpus=1, seed=0)
    assert a == corpora.holdout_validation_speakers(items, per_corpus=1, seed=0)
    assert len(a) == 2 and {s.split("/")[0] for s in a} == {"emodb", "ravdess"}


# --- synthetic layouts ------------------------------------------------------------------------


def test_cremad_layout(tmp_path):
    root = tmp_path / "cremad"
    names = ["1001_DFA_ANG_XX", "1001_DFA_NEU_XX", "1002_IEO_SAD_HI", "1002_IEO_FEA_LO", "1003_TIE_HAP_MD", "1003_TIE_DIS_XX"]
    for n in names:
        _wav(root / f"{n}.wav")
    assert corpora.detect_kind(root) == "cremad"
    items = corpora.read_corpus(root)
    got = {Path(i.path).stem: (i.emotion, i.speaker, i.corpus) for i in items}
    assert got == {
        "1001_DFA_ANG_XX": ("angry", "1001", "cremad"),
        "1001_DFA_NEU_XX": ("neutral", "1001", "cremad"),
        "1002_IEO_SAD_HI": ("sad", "1002", "cremad"),
        "1002_IEO_FEA_LO": ("fear", "1002", "cremad"),
        "1003_TIE_HAP_MD": ("happy", "1003", "cremad"),
        "1003_TIE_DIS_XX": ("disgust", "1003", "cremad"),
    }


def test_tess_layout(tmp_path):
    root = tmp_path / "tess"
    _wav(root / "OAF_angry" / "OAF_back_angry.wav")
    _wav(root / "OAF_Sad" / "OAF_bath_sad.wav")
    _wav(root / "YAF_pleasant_surprised" / "YAF_bean_ps.wav")
    _wav(root / "YAF_neutral" / "YAF_bean_neutral.wav")
    assert corpora.detect_kind(root) == "tess"
    items = corpora.read_corpus(root)
    got = {Path(i.path).stem: (i.emotion, i.speaker) for i in items}
    assert got == {
        "OAF_back_angry": ("angry", "OAF"),
        "OAF_bath_sad": ("sad", "OAF"),
        "YAF_bean_ps": ("surprised", "YAF"),
        "YAF_bean_neutral": ("neutral", "YAF"),
    }
    assert len(corpora.only_canonical(items)) == 3


def test_nemo_layout(tmp_path):
    root = tmp_path / "nemo"
    names = ["IC0_anger_1", "IC0_fear_29", "KS0_happiness_3", "KS0_neutral_4", "MP0_sadness_90", "TP0_surprised_7"]
    for n in names:
        _wav(root / "samples" / f"{n}.wav")
    _wav(root / "samples" / "notes_take2.wav")  # not the nEMO shape: skipped, as in the other readers
    (root / "LICENSE").write_text("licence text")
    assert corpora.detect_kind(root) == "nemo"
    items = corpora.read_corpus(root)
    got = {Path(i.path).stem: (i.emotion, i.speaker_key) for i in items}
    assert got == {
        "IC0_anger_1": ("angry", "nemo/IC0"),
        "IC0_fear_29": ("fear", "nemo/IC0"),
        "KS0_happiness_3": ("happy", "nemo/KS0"),
        "KS0_neutral_4": ("neutral", "nemo/KS0"),
        "MP0_sadness_90": ("sad", "nemo/MP0"),
        "TP0_surprised_7": ("surprised", "nemo/TP0"),  # kept under its own name and counted ...
    }
    assert corpora.count_table(items)["nemo"]["emotions"]["surprised"] == 1
    six = corpora.only_canonical(items)  # ... and dropped where the six are asked for
    assert len(six) == 5 and "TP0_surprised_7" not in {Path(i.path).stem for i in six}
    assert corpora.read_specs([f"nemo={root}"]) == items


def test_nemo_unknown_emotion_word_is_refused(tmp_path):
    root = tmp_path / "nemo"
    _wav(root / "IC0_anger_1.wav")
    bad = _wav(root / "IC0_disgust_2.wav")  # nEMO has no disgust: a foreign or misnamed file
    with pytest.raises(CorpusError, match=rf"{bad.name}.*unknown nEMO emotion 'disgust'"):
        corpora.read_corpus(root)
    other = tmp_path / "other"
    _wav(other / "03a01Wa.wav")  # an EmoDB name read as nEMO: nothing found
    with pytest.raises(CorpusError, match="no nemo files"):
        corpora.read_corpus(other, "nemo")


def test_folder_layout(tmp_path):
    root = tmp_path / "mine"
    _wav(root / "anger" / "spk1" / "a.wav")
    _wav(root / "Happy" / "spk2" / "b.wav")
    _wav(root / "happy" / "c.wav")  # no speaker level
    _wav(root / "whatever" / "d.wav")  # not an emotion: ignored
    _wav(root / "e.wav")  # no emotion folder: ignored
    (root / "sad").mkdir()
    (root / "sad" / "notes.txt").write_text("not audio")
    assert corpora.detect_kind(root) == "folders"
    items = corpora.read_corpus(root)
    got = {Path(i.path).name: (i.emotion, i.speaker, i.corpus) for i in items}
    assert got == {
        "a.wav": ("angry", "spk1", "folders"),
        "b.wav": ("happy", "spk2", "folders"),
        "c.wav": ("happy", "?", "folders"),
    }


def test_csv_manifest(tmp_path):
    root = tmp_path / "ds"
    _wav(root / "clips" / "x.wav")
    _wav(root / "clips" / "y.wav")
    absolute = _wav(tmp_path / "elsewhere" / "z.wav")
    csv_path = root / "manifest.csv"
    csv_path.write_text(f"path,emotion,speaker\nclips/x.wav,Anger,s1\nclips/y.wav, sad ,\n{absolute},calm,s2\n")
    assert corpora.detect_kind(csv_path) == "csv"
    items = corpora.read_corpus(csv_path)
    assert [(i.path, i.emotion, i.speaker, i.corpus) for i in items] == [
        (str(root / "clips" / "x.wav"), "angry", "s1", "manifest"),
        (str(root / "clips" / "y.wav"), "sad", "?", "manifest"),
        (str(absolute), "calm", "s2", "manifest"),
    ]
    assert all(Path(i.path).is_file() for i in items)


def test_csv_manifest_unknown_label_raises(tmp_path):
    csv_path = tmp_path / "m.csv"
    csv_path.write_text("path,emotion\na.wav,angry\nb.wav,grumpy\n")
    with pytest.raises(CorpusError, match=r"m\.csv:3.*grumpy"):
        corpora.read_corpus(csv_path)


def test_csv_manifest_short_rows_name_the_row(tmp_path):
    csv_path = tmp_path / "m.csv"
    for body, what in (("a.wav,angry\nb.wav\n", "no emotion"), ("a.wav,angry\n,sad\n", "no path")):
        csv_path.write_text("path,emotion\n" + body)
        with pytest.raises(CorpusError, match=rf"m\.csv:3: {what}"):
            corpora.read_corpus(csv_path, "csv")


def test_csv_manifest_needs_header(tmp_path):
    csv_path = tmp_path / "m.csv"
    csv_path.write_text("file,label\na.wav,angry\n")
    with pytest.raises(CorpusError, match="header"):
        corpora.read_corpus(csv_path, "csv")


def test_corpus_errors(tmp_path):
    assert issubclass(CorpusError, EmortError)
    with pytest.raises(CorpusError):
        corpora.detect_kind(tmp_path / "missing")
    with pytest.raises(CorpusError):
        corpora.detect_kind(tmp_path)  # empty folder: no audio
    (tmp_path / "readme.txt").write_text("x")
    with pytest.raises(CorpusError):
        corpora.detect_kind(tmp_path / "readme.txt")
    _wav(tmp_path / "random_name.wav")
    with pytest.raises(CorpusError, match="not recognised"):
        corpora.detect_kind(tmp_path)
    with pytest.raises(CorpusError, match="unknown corpus kind"):
        corpora.read_corpus(tmp_path, "nope")
    with pytest.raises(CorpusError, match="no such"):
        corpora.read_corpus(tmp_path / "missing", "emodb")
    with pytest.raises(CorpusError, match="no emodb files"):
        corpora.read_corpus(tmp_path, "emodb")


# --- splits on synthetic items -----------------------------------------------------------------


def _items(n_speakers: int = 4, per: int = 10, corpus: str = "c") -> list[Item]:
    return [
        Item(f"/{corpus}/{s}/{k}.wav", EMOTIONS[k % len(EMOTIONS)], f"{s:02d}", corpus)
        for s in range(n_speakers)
        for k in range(per)
    ]


def test_split_by_speakers_keys_and_bare_ids():
    items = _items(corpus="a") + _items(corpus="b")
    train, test = corpora.split_by_speakers(items, ["a/01"])
    assert {i.speaker_key for i in test} == {"a/01"}
    assert len(test) == 10 and len(train) == 70
    # a bare id matches that speaker in every corpus
    train, test = corpora.split_by_speakers(items, ["02"])
    assert {i.speaker_key for i in test} == {"a/02", "b/02"}
    assert not {i.speaker_key for i in train} & {i.speaker_key for i in test}


def test_leave_one_speaker_out_synthetic():
    items = _items(n_speakers=5)
    folds = corpora.leave_one_speaker_out(items)
    assert len(folds) == 5
    for spk, train, test in folds:
        assert {i.speaker_key for i in test} == {spk}
        assert len(test) == 10 and len(train) == 40


def test_random_split_fraction():
    items = _items(n_speakers=10, per=12)
    train, test = corpora.random_split(items, train_fraction=0.75, seed=3)
    assert len(train) == 90 and len(test) == 30
    assert corpora.random_split(items, 0.75, seed=3) == (train, test)


@pytest.mark.parametrize(
    "spec, expected",
    [
        ("emodb=/data/emodb", ("emodb", "/data/emodb")),
        ("ravdess=rel/path", ("ravdess", "rel/path")),
        ("nemo=/data/nemo", ("nemo", "/data/nemo")),
        ("csv=/a/b=c.csv", ("csv", "/a/b=c.csv")),
        ("/data/emodb", (None, "/data/emodb")),
        ("./weird=name/folder", (None, "./weird=name/folder")),  # not WORD=: the whole thing is a path
    ],
)
def test_parse_data_spec(spec, expected):
    assert corpora.parse_data_spec(spec) == expected


def test_parse_data_spec_names_an_unknown_kind_unless_the_folder_exists(tmp_path, monkeypatch):
    with pytest.raises(corpora.CorpusError, match="unknown corpus kind 'emdob'"):
        corpora.parse_data_spec("emdob=../shared/data/emodb")  # a typo of emodb=
    monkeypatch.chdir(tmp_path)
    (tmp_path / "weird=name").mkdir()  # a folder whose name holds "=" is still a path
    assert corpora.parse_data_spec("weird=name") == (None, "weird=name")


def test_read_specs(emodb_root, ravdess_root):
    items = corpora.read_specs([f"emodb={emodb_root}", str(ravdess_root)])
    assert Counter(i.corpus for i in items) == {"emodb": 408, "ravdess": 1320}


def test_a_corpus_given_twice_is_read_once(tmp_path, caplog):
    folder = tmp_path / "mini"
    folder.mkdir()
    for name in ("03a01Fa.wav", "03a01Nc.wav", "08a02Wb.wav"):  # EmoDB names: speaker 03 happy, neutral; 08 angry
        sf.write(folder / name, np.zeros(1600, np.float32), 16000)
    once = corpora.read_specs([f"emodb={folder}"])
    with caplog.at_level("WARNING"):
        twice = corpora.read_specs([f"emodb={folder}", f"emodb={folder}/", f"emodb={tmp_path / 'mini' / '..' / 'mini'}"])
    assert len(once) == 3 and [i.path for i in twice] == [i.path for i in once]
    assert sum("3 of its 3 files were given already" in r.getMessage() for r in caplog.records) == 2


def test_a_spec_keeps_its_own_repeated_rows(tmp_path):
    from tiny import write_manifest_csv

    wav = tmp_path / "a.wav"
    sf.write(wav, np.zeros(1600, np.float32), 16000)
    csv_path = write_manifest_csv(tmp_path / "m.csv", [(wav, "angry", "s/1"), (wav, "sad", "s/1")])  # two annotators
    assert [i.emotion for i in corpora.read_specs([f"csv={csv_path}"])] == ["angry", "sad"]
