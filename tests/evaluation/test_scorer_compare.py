"""`python -m emort.evaluation.scorer_compare`: the bundle's single-clip row is what the runtime
scores clip by clip (checked against Scorer.score on the audio files), per corpus."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("sklearn", reason="needs the [train] extra")
pytest.importorskip("torch", reason="needs the [train] extra")


def test_single_clip_row_matches_the_runtime(shared_data_path):
    from emort.evaluation.scorer_compare import compare
    from emort.runtime.audio import read_audio
    from emort.runtime.scorer import Scorer
    from emort.training.corpora import only_canonical, read_specs

    if not (shared_data_path / "emodb").exists():
        pytest.skip("needs ../shared/data/emodb")
    data = [f"emodb={shared_data_path / 'emodb'}"]
    res = compare(data, None, [], [], "val")
    row = res["ua"]["bundle SER, single clip"]
    assert set(row) == {"emodb", "mean over corpora"} and row["mean over corpora"] == row["emodb"]
    items = [i for i in only_canonical(read_specs(data)) if i.speaker_key in res["speakers"]]
    scorer = Scorer.load(device="cpu")
    labels = list(scorer.bundle.labels)
    y = np.array([labels.index(i.emotion) for i in items])
    pred = []
    for i in items:
        a = read_audio(i.path)
        s = scorer.score(a.samples, a.sample_rate).scores
        present = set(y)
        pred.append(max((k for k in range(len(labels)) if k in present), key=lambda k: s[labels[k]]))
    recalls = [np.mean(np.array(pred)[y == k] == k) for k in sorted(set(y))]
    assert row["emodb"] == pytest.approx(float(np.mean(recalls)), abs=1e-9)
    assert res["clips"] == len(items) > 0
    # the shipped statistics classifiers were fitted with the validation speakers (fit_val): that row
    # is flagged in-sample, the SERs (which held emodb/10 out) are not
    assert res["in_sample"] == {"bundle per-speaker scorer": ["emodb/10"]}


def _cells_data(signal: float, seed: int = 0):
    """Three corpora of four speakers, six labels x 4 clips each: features carry the label
    (times ``signal``) plus a large per-speaker offset, which per-speaker z-scoring removes."""
    rng = np.random.default_rng(seed)
    rows, y, spk, corp = [], [], [], []
    for c in ("emodb", "ravdess", "other"):
        for k in range(4):
            offset = rng.normal(0, 5, 8)
            for lab in range(6):
                for _ in range(4):
                    rows.append(offset + signal * np.eye(8)[lab] + rng.normal(0, 0.3, 8))
                    y.append(lab)
                    spk.append(f"{c}/{k}")
                    corp.append(c)
    return np.array(rows), np.array(y), np.array(spk), np.array(corp)


def test_speaker_cells_read_what_the_features_carry_and_never_fit_a_read_speaker():
    from emort.evaluation.scorer_compare import speaker_cells

    labels = ("neutral", "happy", "sad", "angry", "fear", "disgust")
    x, y, spk, corp = _cells_data(signal=3.0)
    held = np.isin(spk, ["emodb/0", "ravdess/0", "other/0"])
    test = np.isin(spk, ["emodb/1", "ravdess/1", "other/1"])
    seen = []

    def fit_rows(name, xx, train, ref):  # the default rows, recorded
        seen.append(set(spk[train]))
        return xx[train], y[train], spk[train], ref

    cells = speaker_cells({"A": x, "noise": np.random.default_rng(1).normal(size=x.shape)}, y, spk, corp,
                          np.ones(len(y), bool), held, test, labels, fit_rows=fit_rows)
    assert list(cells["A"]) == ["held-out emodb", "held-out ravdess", "held-out other", "LOCO emodb", "LOCO ravdess",
                                "LOCO other", "worst", "mean"]  # a corpus outside the three comes last
    assert cells["A"]["worst"] > 0.9  # the label survives the speaker z-score
    assert cells["noise"]["mean"] < 0.5  # features without the label read near chance (1/6)
    test_speakers = {"emodb/1", "ravdess/1", "other/1"}
    assert all(not (s & test_speakers) for s in seen)  # test speakers are never fitted
    assert not (seen[0] & {"emodb/0", "ravdess/0", "other/0"})  # the held-out fit leaves the read speakers out
    assert not any(x.startswith("emodb/") for x in seen[2])  # leave one corpus out: EmoDB's fit has none of it


def test_cell_pool_marks_the_speakers_each_split_reads(shared_data_path):
    from emort.evaluation.scorer_compare import cell_pool

    if not (shared_data_path / "emodb").exists():
        pytest.skip("needs ../shared/data/emodb")
    labels = ("neutral", "happy", "sad", "angry", "fear", "disgust")
    val = cell_pool([f"emodb={shared_data_path / 'emodb'}"], labels, "val")
    test = cell_pool([f"emodb={shared_data_path / 'emodb'}"], labels, "test")
    assert set(val.speakers[val.held]) == {"emodb/10"} and set(test.speakers[test.held]) == {"emodb/03", "emodb/08"}
    assert np.array_equal(val.test, test.test) and not (val.held & val.test).any()
    assert ((val.y >= 0) == val.canonical).all() and "boredom" in set(val.emotions[~val.canonical])  # every clip pools
