"""The contrastive direction (``contrast="mean"``): the target against the estimate conditioned on
the mean of the emotion centroids, instead of against the unconditional estimate."""

import numpy as np
import pytest

from emort import Enhancer
from emort.runtime.errors import EmortError


def _tone(sr: int = 16000, seconds: float = 1.2) -> np.ndarray:
    t = np.arange(int(sr * seconds)) / sr
    f0 = 150 + 30 * np.sin(2 * np.pi * 2 * t)
    ph = 2 * np.pi * np.cumsum(f0) / sr
    x = sum(np.sin(k * ph) / k for k in range(1, 10)) * (0.5 + 0.5 * np.sin(2 * np.pi * 3 * t)) ** 2
    return (0.2 * x / np.abs(x).max()).astype(np.float32)


@pytest.fixture(scope="module")
def enh():
    return Enhancer.load(device="cpu")


def test_the_contrast_conditions_the_unconditional_rows_on_the_mean_centroid(enh):
    seen = []
    enh_fn = enh._model_fn
    enh._model_fn = lambda x, t, emotion, emotion_mask, style: seen.append((emotion.copy(), emotion_mask.copy())) or np.zeros_like(x)
    try:
        fn = enh._contrast_fn(enh.mean_centroid)
        target = enh.bundle.centroids["angry"].astype(np.float32)
        emo = np.stack([target, np.zeros_like(target)])
        mask = np.array([[1.0], [0.0]], np.float32)
        fn(np.zeros((2, 1, 80, 8), np.float32), np.zeros(2, np.int64), emo, mask, np.zeros((2, 1), np.float32))
    finally:
        enh._model_fn = enh_fn
    (e, m), = seen
    np.testing.assert_array_equal(e[0], target)  # the conditional row is untouched
    np.testing.assert_allclose(e[1], np.mean([enh.bundle.centroids[k] for k in enh.bundle.labels], axis=0), rtol=1e-6)
    assert (m == 1).all()  # every row conditioned: the reference replaces "no emotion"
    assert (emo[1] == 0).all()  # the caller's arrays are not modified


def test_the_contrast_changes_the_edit_but_not_its_calibrated_size(enh):
    wav = _tone()
    outs = {}
    for c in ("uncond", "mean"):
        plan = enh.plan(wav, 16000, "sad", enh.options(contrast=c, amount_db=1.0))
        outs[c] = plan.raw_db
    a, b = outs["uncond"], outs["mean"]
    assert a.shape == b.shape and np.abs(a - b).mean() > 0.05 * np.abs(a).mean()
    for c in ("uncond", "mean"):
        r = enh.enhance(wav, 16000, "sad", amount_db=1.0, contrast=c)
        assert abs(r.change_db - 1.0) < 0.05, (c, r.change_db)


def test_an_unknown_contrast_is_refused(enh):
    with pytest.raises(EmortError, match="contrast must be uncond or mean"):
        enh.options(contrast="neutral")


def test_target_probability_reads_the_edited_mel_at_each_amount(enh):
    """Amount 0 reads the source exactly as ``scores_before``; each amount reads source + its
    calibrated gain (checked against the gain rendered by ``_edit_gain``)."""
    from dataclasses import replace

    from emort.runtime.settings import parse_emotion_mix

    wav = _tone()
    o = enh.options()
    plan = enh.plan(wav, 16000, "angry", o)
    p = enh.target_probability(plan, o, [0.0, 2.0])
    assert p[0] == pytest.approx(plan.scores_before["angry"], abs=1e-6)
    gain, _, _ = enh._edit_gain(plan, replace(o, amount_db=2.0, guidance=None))
    expect = enh._score(enh._normalize(plan.mel + gain)).scores["angry"]
    assert p[1] == pytest.approx(expect, abs=1e-6) and p[1] != pytest.approx(p[0], abs=1e-6)
    mixed = enh.plan(wav, 16000, "angry:0.5,sad:0.5", o)
    q = enh.target_probability(mixed, o, [0.0])[0]
    mix = parse_emotion_mix(mixed.target, enh.bundle.labels)
    assert q == pytest.approx(sum(w * mixed.scores_before[k] for k, w in mix.items()), abs=1e-6)


def test_subspace_keeps_each_frame_of_the_edit_to_the_bundle_basis(enh):
    """``subspace=K``: the gain (before calibration) is the projection of the model's edit onto the
    first K rows of the bundle's edit basis; the amount is then calibrated as before."""
    from dataclasses import replace

    from emort.runtime.editing import project_edit

    assert enh.bundle.edit_basis.shape == (32, enh.bundle.mel.n_mels)  # the shipped bundle carries the basis
    wav = _tone()
    o = replace(enh.options(), subspace=0, amount_db=1.0, guidance=None)
    plan = enh.plan(wav, 16000, "angry", o)
    plan = replace(plan, region=np.ones_like(plan.region))  # every cell editable: the gain is the projection itself
    basis = enh.bundle.edit_basis[:4]
    gain, change, _ = enh._edit_gain(plan, replace(o, subspace=4))
    assert change == pytest.approx(1.0, rel=1e-6)
    g = gain.astype(np.float64)
    resid = g - project_edit(g, basis)
    assert np.abs(resid).max() < 1e-5 * np.abs(g).max()  # every frame lies in the span of the 4 rows
    assert np.abs(g - project_edit(g, enh.bundle.edit_basis[:2])).max() > 1e-3 * np.abs(g).max()  # not in a smaller one
    whole, _, _ = enh._edit_gain(plan, o)
    assert not np.allclose(whole, gain)
    with pytest.raises(EmortError, match="at most"):
        enh._edit_gain(plan, replace(o, subspace=len(enh.bundle.edit_basis) + 1))


def test_subspace_options_are_validated_and_resolved_for_conversions():
    from emort.runtime.editing import EditOptions

    with pytest.raises(EmortError, match="subspace"):
        EditOptions(subspace=-1).validate()
    with pytest.raises(EmortError, match="subspace"):
        EditOptions(subspace=2.5).validate()
    d = EditOptions(amount_db=1.0, subspace=16, prosody_amount_db=4.0, prosody_subspace=0)
    conv = d.with_overrides(prosody=True)
    assert (conv.amount_db, conv.subspace) == (4.0, 0)  # conversions take their own defaults
    assert d.with_overrides(prosody=True, subspace=8).subspace == 8  # unless given
    assert d.with_overrides(amount_db=2.0).subspace == 16
    assert EditOptions().settings_dict()["subspace"] == 0  # a record without it is filled with 0 on resume
    assert d.settings_dict()["subspace"] == 16 and "prosody_subspace" not in d.settings_dict()


def test_options_the_bundle_cannot_run_fail_before_any_model_runs(enh, monkeypatch):
    """``Enhancer.enhance(options=...)`` (not only ``options()``) checks the subspace against the
    basis before the prosody stage and the denoiser."""
    from emort.runtime.editing import EditOptions

    ran = []
    monkeypatch.setattr(enh, "_model_fn", lambda *a: ran.append(1))
    too_many = replace_opts(enh.options(), subspace=len(enh.bundle.edit_basis) + 1)
    with pytest.raises(EmortError, match="at most"):
        enh.enhance(_tone(), 16000, "angry", options=too_many)
    with pytest.raises(EmortError, match="at most"):
        enh.plan(_tone(), 16000, "angry", too_many)
    assert not ran
    assert isinstance(too_many, EditOptions)


def replace_opts(o, **kw):
    from dataclasses import replace

    return replace(o, **kw)


def test_conversions_keep_the_contrast_they_were_chosen_with():
    from emort.cli.enhance import _describe_default
    from emort.runtime.editing import EditOptions

    d = EditOptions(amount_db=2.0, contrast="mean", prosody_amount_db=4.0, prosody_contrast="uncond")
    assert d.with_overrides(prosody=True).contrast == "uncond"  # --prosody: the reference its amount was chosen with
    assert d.with_overrides(prosody=True, contrast="mean").contrast == "mean"  # unless given
    assert d.with_overrides(amount_db=1.0).contrast == "mean"  # without prosody: the own-emotion default
    assert EditOptions(contrast="mean").with_overrides(prosody=True).contrast == "mean"  # unset: the plain contrast
    assert "prosody_contrast" not in d.settings_dict()  # resolved into contrast before an output is written
    with pytest.raises(EmortError, match="prosody-contrast"):
        EditOptions(prosody_contrast="median").validate()
    assert _describe_default("contrast", "mean", d) == "mean; uncond with --prosody"
    assert _describe_default("contrast", "uncond", EditOptions()) == "uncond"
