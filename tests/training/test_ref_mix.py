"""`emort train stats --ref-mix K`: training rows z-scored over varied normalisation pools
(emort.training.ustats.mixed_pool_rows; docs/ser/ref_mix/PREREGISTRATION.md)."""

from __future__ import annotations

import numpy as np
import pytest

from emort.runtime.ustats import normalise_per_speaker, speaker_stats_from
from emort.training.ustats import mixed_pool_rows


def _pool(seed: int = 0):
    rng = np.random.default_rng(seed)
    emotions = np.array(["neutral", "calm", "angry", "sad"] * 10 + ["neutral", "angry"] * 6)
    speakers = np.array(["a/1"] * 40 + ["b/2"] * 12)
    x = rng.normal(size=(len(speakers), 3)) + (emotions == "angry")[:, None] * 4.0  # anger moves the features
    y = np.array([{"neutral": 0, "angry": 3, "sad": 2}.get(e, -1) for e in emotions])
    fit = y >= 0  # calm clips are in the pool, not fitted
    return x, y, speakers, emotions, fit, speaker_stats_from(x, speakers)


def test_the_fitted_rows_come_first_then_k_pools_per_speaker():
    x, y, spk, emo, fit, ref = _pool()
    xr, yr, sr, stats = mixed_pool_rows(x, y, spk, emo, fit, ref, k=3, seed=0)
    n = int(fit.sum())
    assert np.array_equal(xr[:n], x[fit]) and np.array_equal(yr[:n], y[fit]) and list(sr[:n]) == list(spk[fit])
    assert len(xr) == 4 * n and set(sr[n:]) == {f"{s}#{i}" for s in ("a/1", "b/2") for i in range(3)}
    for s in ("a/1", "b/2"):
        for i in range(3):
            m = sr == f"{s}#{i}"
            assert np.array_equal(xr[m], x[fit & (spk == s)]) and np.array_equal(yr[m], y[fit & (spk == s)])
    # each pool's statistics are those of some of the speaker's clips, not of all of them
    assert all(not np.allclose(stats[f"a/1#{i}"][0], ref["a/1"][0]) for i in range(3))
    z = normalise_per_speaker(xr, sr, stats)  # every row has statistics to be z-scored with
    assert np.isfinite(z).all()


def test_pools_are_reproducible_by_seed_and_vary_the_mix():
    x, y, spk, emo, fit, ref = _pool()
    a = mixed_pool_rows(x, y, spk, emo, fit, ref, k=3, seed=0)[3]
    b = mixed_pool_rows(x, y, spk, emo, fit, ref, k=3, seed=0)[3]
    c = mixed_pool_rows(x, y, spk, emo, fit, ref, k=3, seed=1)[3]
    assert all(np.array_equal(a[k][0], b[k][0]) for k in a)
    assert any(not np.allclose(a[k][0], c[k][0]) for k in a if "#" in k)
    # the pools' means spread along the emotion axis: a pool leaning to anger sits higher
    means = [a[f"a/1#{i}"][0][0] for i in range(3)]
    assert max(means) - min(means) > 0.3


def test_ref_mix_needs_per_speaker_normalisation(tmp_path):
    from typer.testing import CliRunner

    from emort.cli.app import app

    pytest.importorskip("sklearn", reason="needs the [train] extra")
    r = CliRunner().invoke(app, ["train", "stats", "--data", "emodb=nowhere", "--norm", "global", "--ref-mix", "3",
                                 "--out", str(tmp_path / "r")])
    assert r.exit_code == 2 and "--ref-mix" in r.output and "Traceback" not in r.output, r.output
