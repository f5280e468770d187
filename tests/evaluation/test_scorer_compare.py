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
