"""The prosody evaluation's configurations and report (the measurement itself runs on the corpora:
docs/eval/prosody.md)."""

import numpy as np
import pytest

from emort.evaluation.prosody_eval import CONFIGS, config_options, render_markdown


def test_configurations_map_to_enhance_options():
    assert config_options("spectral") == {}
    assert config_options("both-stretch", {"pitch": 0.5}) == {"prosody": True, "prosody_renderer": "stretch", "pitch": 0.5}
    assert config_options("prosody-world") == {"prosody": True, "prosody_renderer": "world", "amount_db": 0.0}
    assert config_options("both-stretch-raw")["prosody_renderer"] == "stretch-raw"
    for c in CONFIGS:
        config_options(c)
    for bad in ("both-psola", "prosodyworld", "all-stretch"):
        with pytest.raises(ValueError):
            config_options(bad)


def test_a_configuration_may_name_its_spectral_amount():
    assert config_options("spectral@2") == {"amount_db": 2.0}
    assert config_options("both-stretch@4", {"pitch": 1.0}) == {"prosody": True, "prosody_renderer": "stretch", "pitch": 1.0, "amount_db": 4.0}
    for bad in ("spectral@loud", "spectral@-1", "both-stretch@21", "prosody-stretch@2", "both-psola@2"):
        with pytest.raises(ValueError):
            config_options(bad)


def test_report_gives_mean_and_worst_pair_per_configuration():
    j = ["J1", "J2", "J3"]
    conv = {"spectral": {"neutral->sad": dict(zip(j, (0.2, 0.4, 0.0))), "neutral->fear": dict(zip(j, (0.6, 0.0, 1.0)))}}
    r = {"split": "val", "speakers": ["emodb/10"], "clips": 2, "configs": ["spectral"], "amounts": {"pitch": 1.0},
         "transparency": {}, "conversion": conv, "conversion_by_corpus": {"spectral": {"emodb": conv["spectral"]}},
         "own_emotion_ua": {}, "speaker_similarity": {"spectral": 0.97}}
    md = render_markdown(r, j)
    assert "| **mean** | 0.40 / 0.20 / 0.50 |" in md
    assert "| **worst pair** | 0.20 / 0.00 / 0.00 |" in md
    assert "| emodb | 0.40 / 0.20 / 0.50 |" in md and "| spectral | 0.970 |" in md


def test_report_gives_own_emotion_gains_per_corpus():
    j = ["J1", "J2", "J3"]
    conv = {"spectral": {"neutral->sad": dict(zip(j, (0.2, 0.4, 0.0)))}}
    by = {"original": {"emodb": dict(zip(j, (0.5, 0.6, 0.7)))}, "spectral": {"emodb": dict(zip(j, (0.625, 0.6, 0.65)))}}
    r = {"split": "val", "speakers": ["emodb/10"], "clips": 2, "configs": ["spectral"], "transparency": {}, "conversion": conv,
         "conversion_by_corpus": {"spectral": {"emodb": conv["spectral"]}}, "own_emotion_ua": {"original": by["original"]["emodb"]},
         "own_emotion_ua_by_corpus": by, "speaker_similarity": {}}
    assert "| emodb | 0.500 / 0.600 / 0.700 | +12.5 / +0.0 / -5.0 |" in render_markdown(r, j)


def test_report_says_what_the_judges_heard_instead():
    j = ["J1", "J2", "J3"]
    conv = {"spectral": {"neutral->angry": dict(zip(j, (0.5, 0.25, 0.0)))}}
    heard = {"spectral": {"angry": {"J1": {"angry": 2, "fear": 2, "sad": 0}, "J2": {"angry": 1, "fear": 3},
                                    "J3": {"fear": 4, "angry": 0}}}}
    r = {"split": "val", "speakers": ["emodb/10"], "clips": 4, "configs": ["spectral"], "transparency": {}, "conversion": conv,
         "conversion_by_corpus": {"spectral": {"emodb": conv["spectral"]}}, "conversion_heard": heard,
         "own_emotion_ua": {}, "speaker_similarity": {}}
    md = render_markdown(r, j)
    assert "| angry | angry 0.50, fear 0.50 | fear 0.75, angry 0.25 | fear 1.00 |" in md


def test_report_says_how_many_conversions_left_the_training_range():
    j = ["J1", "J2", "J3"]
    conv = {"spectral": {"neutral->angry": dict(zip(j, (0.5, 0.25, 0.0)))}}
    rng = {"spectral": {"angry": {"J1": {"clips": 4, "beyond": 1, "beyond_heard_far": 1},
                                  "J2": {"clips": 4, "beyond": 0, "beyond_heard_far": 0},
                                  "J3": {"clips": 4, "beyond": 3, "beyond_heard_far": 2}}}}
    r = {"split": "val", "speakers": ["emodb/10"], "clips": 4, "configs": ["spectral"], "transparency": {}, "conversion": conv,
         "conversion_by_corpus": {"spectral": {"emodb": conv["spectral"]}}, "conversion_beyond_range": rng,
         "far_class": {"J1": "angry", "J2": "sad", "J3": "fear"}, "beyond_range_originals": {"J1": 0.05, "J2": 0.0, "J3": 0.1},
         "own_emotion_ua": {}, "speaker_similarity": {}}
    md = render_markdown(r, j)
    assert "J1 angry, J2 sad, J3 fear" in md and "originals of these speakers: 0.05 / 0.00 / 0.10" in md
    assert "| angry | 0.25 (0.25) / 0.00 (0.00) / 0.75 (0.50) |" in md


def test_f0_fidelity_measures_the_output_against_the_planned_change():
    from emort.evaluation.prosody_eval import f0_fidelity
    from emort.runtime.prosody import ProsodyEdit

    src = np.array([0, 100, 110, 121, 0, 100, 0, 0], float)
    # up 12 semitones, twice as fast: output frame j is source frame 2j
    out = np.array([0, 220, 0, 0], float)
    d = f0_fidelity(src, out, ProsodyEdit(semitones=12.0, tempo=2.0))
    assert d["voicing_agreement"] == 1.0
    assert d["f0_rmse_st"] == pytest.approx(0.0, abs=1e-9)
    off = f0_fidelity(src, out * 2 ** (1 / 12), ProsodyEdit(semitones=12.0, tempo=2.0))  # one semitone sharp
    assert off["f0_rmse_st"] == pytest.approx(1.0)
    assert f0_fidelity(src, src.copy(), None) == {"f0_rmse_st": 0.0, "voicing_agreement": 1.0}
    assert f0_fidelity(src, np.zeros(8), None) is None  # nothing voiced in both
    # a wider range: deviations from the source's median are scaled
    wide = f0_fidelity(np.array([100.0, 200.0]), np.array([100 / 2 ** 0.5, 200 * 2 ** 0.5]), ProsodyEdit(f0_range=2.0))
    assert wide["f0_rmse_st"] == pytest.approx(0.0, abs=1e-9)
    # where the renderer warped time (an F0 range change), frames are compared through its map
    late = np.array([0, 0, 220, 0], float)  # source frame 2 comes out at frame 2, not 1
    assert f0_fidelity(src, late, ProsodyEdit(semitones=12.0, tempo=2.0)) is None  # at frame j x tempo it meets a pause
    mapped = f0_fidelity(src, late, ProsodyEdit(semitones=12.0, tempo=2.0), source_frames=np.array([0.0, 0.4, 2.0, 4.0]))
    assert mapped == {"f0_rmse_st": pytest.approx(0.0, abs=1e-9), "voicing_agreement": 1.0}


def test_report_gives_fidelity_per_configuration():
    j = ["J1", "J2", "J3"]
    conv = {"spectral": {"neutral->sad": dict(zip(j, (0.2, 0.4, 0.0)))}}
    r = {"split": "val", "speakers": ["emodb/10"], "clips": 2, "configs": ["spectral"], "transparency": {}, "conversion": conv,
         "conversion_by_corpus": {"spectral": {"emodb": conv["spectral"]}}, "own_emotion_ua": {}, "speaker_similarity": {"spectral": 0.97},
         "f0_fidelity": {"spectral": {"f0_rmse_st_median": 0.41, "voicing_agreement_mean": 0.93, "clips": 2}},
         "change_db_median": {"spectral": 0.5}}
    assert "| spectral | 0.970 | 0.41 | 0.93 | 0.50 |" in render_markdown(r, j)


def test_speaker_configurations_are_prosody_ones():
    from emort.evaluation.prosody_eval import per_speaker

    assert per_speaker("both-stretch+speaker@4") and not per_speaker("both-stretch@4")
    assert config_options("both-stretch+speaker@4") == config_options("both-stretch@4")
    with pytest.raises(ValueError, match="spectral has none"):
        config_options("spectral+speaker@4")


def test_contrast_and_part_reach_every_configuration_and_the_record():
    """--contrast / --part override the spectral edit in every configuration, the conversions'
    prosody_contrast included; not given, each configuration keeps the bundle's."""
    from emort.evaluation.prosody_eval import edit_overrides, recorded_options
    from emort.runtime.enhancer import Enhancer

    assert edit_overrides() == {}
    assert edit_overrides("mean", None) == {"contrast": "mean"}
    assert edit_overrides(None, "dynamic") == {"part": "dynamic"}
    enh = Enhancer.load(None, device="cpu")
    configs = ["spectral@4", "both-stretch@4"]
    amounts = {"pitch": 0.5, "tempo": enh.defaults.tempo, "loudness": enh.defaults.loudness}
    plain = recorded_options(enh, configs, amounts, {})
    assert plain["both-stretch@4"]["contrast"] == enh.defaults.prosody_contrast
    assert plain["spectral@4"]["part"] == enh.defaults.part
    for over in ({"contrast": "mean"}, {"part": "dynamic"}):
        (key, value), = over.items()
        rec = recorded_options(enh, configs, amounts, over)
        assert all(rec[c][key] == value for c in configs), rec
        assert rec["both-stretch@4"]["prosody"] is True and rec["both-stretch@4"]["amount_db"] == 4.0


def _report(p_by_pair: dict, clips: dict) -> dict:
    """A prosody_eval report with only what paired_cells reads: one configuration ``c``."""
    return {"conversion_clips": clips, "conversion_target_p": {"c": p_by_pair}}


def test_paired_cells_compare_each_conversion_with_itself():
    from emort.evaluation.prosody_eval import paired_cells

    clips = {"neutral": ["emodb/10/a.flac", "emodb/10/b.flac", "nemo/MP0/c.flac"]}
    a = _report({"neutral->angry": {"J1": [0.2, 0.4, 0.5], "J3": [0.1, 0.1, 0.1]},
                 "neutral->sad": {"J1": [0.6, 0.6, 0.2], "J3": [0.3, 0.3, 0.3]}}, clips)
    b = _report({"neutral->angry": {"J1": [0.3, 0.5, 0.5], "J3": [0.1, 0.1, 0.1]},
                 "neutral->sad": {"J1": [0.6, 0.6, 0.1], "J3": [0.3, 0.3, 0.3]}}, clips)
    r = paired_cells([a], [b], "c", "c", n_boot=200)
    # EmoDB J1: angry 0.3 -> 0.4, sad 0.6 -> 0.6: mean over pairs +5 points; nEMO J1: 0.35 -> 0.3: -5
    assert r["cells"]["emodb"]["J1"]["diff"] == pytest.approx(5.0)
    assert r["cells"]["nemo"]["J1"]["diff"] == pytest.approx(-5.0)
    assert r["cells"]["emodb"]["J3"]["diff"] == pytest.approx(0.0)
    assert r["cells"]["emodb"]["J3"]["lo"] == pytest.approx(0.0) and r["cells"]["emodb"]["J3"]["hi"] == pytest.approx(0.0)
    assert r["cells"]["emodb"]["J1"]["a"] == pytest.approx(0.45)
    assert r["worst_diff"] == pytest.approx(-5.0)
    assert r["mean"]["diff"] == pytest.approx(0.0)
    assert r["cells"]["emodb"]["J1"]["lo"] <= 5.0 <= r["cells"]["emodb"]["J1"]["hi"]
    assert r["conversions"] == 6


def test_paired_cells_pool_two_groups_and_refuse_other_clips():
    from emort.evaluation.prosody_eval import paired_cells

    g1 = {"neutral": ["emodb/10/a.flac"]}
    g2 = {"neutral": ["emodb/09/b.flac", "emodb/09/c.flac"]}
    a = [_report({"neutral->angry": {"J1": [0.0]}}, g1), _report({"neutral->angry": {"J1": [0.0, 0.0]}}, g2)]
    b = [_report({"neutral->angry": {"J1": [0.3]}}, g1), _report({"neutral->angry": {"J1": [0.6, 0.0]}}, g2)]
    r = paired_cells(a, b, "c", "c", n_boot=50)
    assert r["cells"]["emodb"]["J1"]["diff"] == pytest.approx(30.0)  # (0.3 + 0.6 + 0.0) / 3 over the pooled clips
    with pytest.raises(ValueError, match="different clips"):
        paired_cells([a[0]], [b[1]], "c", "c")
    with pytest.raises(ValueError, match="no per-conversion"):
        paired_cells([a[0]], [b[0]], "c", "other")


def test_report_gives_soft_cells_per_corpus():
    r = {"split": "val", "speakers": ["emodb/10"], "clips": 2, "configs": ["x"], "amounts": {}, "transparency": {},
         "conversion": {"x": {"neutral->angry": {"J1": 0.5}}}, "conversion_by_corpus": {"x": {"emodb": {"neutral->angry": {"J1": 0.5}}}},
         "conversion_soft_by_corpus": {"x": {"emodb": {"neutral->angry": {"J1": 0.4321}}}},
         "own_emotion_ua": {}, "speaker_similarity": {}}
    md = render_markdown(r, ["J1"])
    assert "mean probability of the target" in md and "| emodb | 0.43 |" in md


def test_plan_configurations_are_prosody_ones():
    from emort.evaluation.prosody_eval import planned

    assert planned("both-stretch+plan@4") and not planned("both-stretch@4") and not planned("both-stretch+speaker@4")
    assert config_options("both-stretch+plan@4") == config_options("both-stretch@4")
    with pytest.raises(ValueError, match="spectral has none"):
        config_options("spectral+plan")
