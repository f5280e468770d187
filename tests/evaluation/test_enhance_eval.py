"""Pieces of ``emort eval enhance`` that need no judge fitting (the full run is a report, not a test)."""

from dataclasses import dataclass

import numpy as np
import pytest

from emort.evaluation.enhance_eval import _gains, _ua_wa, _worst, emotion_eq, render_markdown
from emort.runtime.frontend import NATS_TO_DB
from emort.runtime.settings import DEFAULT_MEL


def test_ua_wa_ignores_absent_classes():
    y = np.array([0, 0, 1, 1, 2])
    p = np.array([0, 1, 1, 1, 0])
    ua, wa, rec = _ua_wa(y, p, 4)
    assert rec == [0.5, 1.0, 0.0, None]
    assert ua == pytest.approx(0.5) and wa == pytest.approx(0.6)


def test_worst_cell_rules_the_choice():
    base = {"a": {"J1": {"ua": 0.5}, "J2": {"ua": 0.5}}, "b": {"J1": {"ua": 0.5}, "J2": {"ua": 0.5}}}
    big_mean = {"a": {"J1": {"ua": 0.9}, "J2": {"ua": 0.9}}, "b": {"J1": {"ua": 0.9}, "J2": {"ua": 0.45}}}
    even = {"a": {"J1": {"ua": 0.55}, "J2": {"ua": 0.55}}, "b": {"J1": {"ua": 0.55}, "J2": {"ua": 0.55}}}
    assert _worst(_gains(base, big_mean)) == pytest.approx(-0.05)
    assert _worst(_gains(base, even)) > _worst(_gains(base, big_mean))  # the rule prefers no loss anywhere


@dataclass
class _Item:
    path: str
    speaker_key: str
    emotion: str


def test_emotion_eq_is_the_offset_from_each_speakers_own_mean(monkeypatch):
    n = DEFAULT_MEL.n_mels
    level = {("s1", "neutral"): 0.0, ("s1", "angry"): 1.0, ("s2", "neutral"): 5.0, ("s2", "angry"): 5.5}
    mels = {f"{s}-{e}": np.full((n, 20), v, np.float32) for (s, e), v in level.items()}
    monkeypatch.setattr("emort.training.data.load_mel", lambda path, settings: mels[path])
    items = [_Item(f"{s}-{e}", s, e) for (s, e) in level]
    eq = emotion_eq(items, ["neutral", "angry"], DEFAULT_MEL)
    # s1: angry +0.5 over its mean, s2: +0.25 -> mean +0.375 nats, in dB
    np.testing.assert_allclose(eq["angry"], 0.375 * NATS_TO_DB, rtol=1e-6)
    np.testing.assert_allclose(eq["neutral"], -0.375 * NATS_TO_DB, rtol=1e-6)


def test_markdown_report_renders():
    t = {"emodb": {"J1": {"ua": 0.5, "wa": 0.6, "recall": {"neutral": 1.0, "angry": None}, "n": 4}}}
    rep = {"split": "val", "speakers": ["emodb/10"], "judge_training": {"clips": 10, "speakers": ["x"], "fit_s": 1.0},
           "options": {"amount_db": 1.0}, "identity_equals_original_samples": True, "original": t, "identity": t,
           "rows": [{"condition": "emort", "amount_db": 1.0, "smooth_s": 0.0, "table": t, "gain": {"emodb": {"J1": 0.0}},
                     "worst_gain": 0.0, "change_db": {"median": 1.0}, "speaker_similarity": {"median": 0.99}}],
           "chosen": {"amount_db": 1.0, "smooth_s": 0.0, "worst_gain": 0.0, "rule": "r"}, "seconds": 3.0}
    md = render_markdown(rep, ["neutral", "angry"])
    assert "| original | 0 | - | 0.500 (0.600)" in md and "amount 1 dB" in md
    assert "denoiser precision fp32" in md  # reports before 0.20 ran float32
    rep["precision"] = {"asked": "bf16", "ran": "bf16", "why": "asked for"}
    assert "denoiser precision bf16" in render_markdown(rep, ["neutral", "angry"])


def test_markdown_report_gives_the_share_beyond_the_training_range():
    t = {"emodb": {"J1": {"ua": 0.5, "wa": 0.6, "recall": {"neutral": 1.0, "angry": None}, "n": 4}}}
    g = {"beyond": {"J1": 0.25}, "beyond_heard_far": {"J1": 0.125}, "ua_within": {"J1": [0.5, 0.625, 3]}}
    rep = {"split": "val", "speakers": ["emodb/10"], "judge_training": {"clips": 10, "speakers": ["x"], "fit_s": 1.0},
           "options": {"amount_db": 1.0}, "identity_equals_original_samples": True, "original": t, "identity": t,
           "rows": [{"condition": "emort", "amount_db": 1.0, "smooth_s": 0.0, "table": t, "gain": {"emodb": {"J1": 0.0}},
                     "worst_gain": 0.0, "change_db": {"median": 1.0}, "speaker_similarity": {"median": 0.99}, "range": g}],
           "far_class": {"J1": "angry"}, "range": {"original": {"beyond": {"J1": 0.05}, "beyond_heard_far": {"J1": 0.0}}},
           "chosen": {"amount_db": 1.0, "smooth_s": 0.0, "worst_gain": 0.0, "rule": "r"}, "seconds": 3.0}
    md = render_markdown(rep, ["neutral", "angry"])
    assert "(J1 angry: what it answers" in md
    assert "| original | 0 | - | 0.05 (0.00) |" in md and "| emort | 1 | 0 s, 0 bands | 0.25 (0.12) |" in md
    assert "| emort | 1 | 0 s, 0 bands | 0.500 -> 0.625 (3) |" in md


def test_range_counts_beyond_and_scores_the_clips_within():
    from types import SimpleNamespace

    from emort.evaluation.enhance_eval import _range

    beyond = np.array([False, False, True, True])
    panel = SimpleNamespace(beyond_range=lambda f, s, r: {"J3": beyond})
    ctx = SimpleNamespace(far={"J3": "fear"}, labels=["neutral", "fear"], panel=panel, speakers=["a"] * 4, reference={},
                          y=np.array([0, 1, 0, 1]))
    pred = {"J3": np.array([0, 1, 1, 1])}  # the two beyond: heard as fear
    base = {"J3": np.array([0, 0, 0, 1])}
    g = _range(ctx, {}, pred, base)
    assert g["beyond"]["J3"] == 0.5 and g["beyond_heard_far"]["J3"] == 0.5
    assert g["ua_within"]["J3"] == [0.5, 1.0, 2]  # within: clips 0 and 1; the original missed clip 1


def test_gain_interval_is_paired_and_covers_the_gain():
    from emort.evaluation.enhance_eval import _ua_wa, gain_interval

    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(3), 20)
    base = np.where(rng.random(60) < 0.6, y, (y + 1) % 3)
    assert gain_interval(y, base, base.copy(), 3) == (0.0, 0.0)  # the same predictions: no gain on any resample
    better = base.copy()
    better[(base != y)] = y[(base != y)]  # every miss fixed
    lo, hi = gain_interval(y, base, better, 3)
    gain = _ua_wa(y, better, 3)[0] - _ua_wa(y, base, 3)[0]
    assert 0.0 < lo <= gain <= hi  # a paired gain that only helps never crosses zero
    one = base.copy()
    k = np.flatnonzero(base != y)[0]
    one[k] = y[k]  # a single clip fixed: the interval reaches 0
    lo1, hi1 = gain_interval(y, base, one, 3)
    assert lo1 == 0.0 and hi1 > 0.0
    wide = gain_interval(y[::4], base[::4], better[::4], 3)
    assert wide[1] - wide[0] > hi - lo  # fewer clips, a wider interval


def test_soft_ua_is_ua_for_hard_probabilities_and_moves_with_every_clip():
    from emort.evaluation.enhance_eval import soft_ua

    y = np.array([0, 0, 1, 1, 1, 2])
    pred = np.array([0, 1, 1, 1, 0, 2])
    hits = (pred == y).astype(float)
    assert soft_ua(y, hits, 4) == pytest.approx(_ua_wa(y, pred, 4)[0])  # 0/1 probabilities: UA itself
    p = np.array([0.9, 0.4, 0.6, 0.6, 0.3, 1.0])
    assert soft_ua(y, p, 4) == pytest.approx((0.65 + 0.5 + 1.0) / 3)  # class-balanced: absent class 3 left out
    q = p.copy()
    q[1] += 0.05  # a clip's probability moves without crossing any decision: UA stays, soft UA follows
    assert soft_ua(y, q, 4) - soft_ua(y, p, 4) == pytest.approx(0.05 / 2 / 3)
    assert np.isnan(soft_ua(np.array([], int), np.array([]), 3))


def test_soft_recall_is_what_soft_ua_averages():
    from emort.evaluation.enhance_eval import soft_recall, soft_ua

    y = np.array([0, 0, 1, 1, 1, 2])
    p = np.array([0.9, 0.4, 0.6, 0.6, 0.3, 1.0])
    rec = soft_recall(y, p, ["a", "b", "c", "d"])
    assert rec == {"a": pytest.approx(0.65), "b": pytest.approx(0.5), "c": pytest.approx(1.0), "d": None}
    assert np.mean([v for v in rec.values() if v is not None]) == pytest.approx(soft_ua(y, p, 4))


def test_soft_interval_of_hits_is_the_ua_interval():
    from emort.evaluation.enhance_eval import gain_interval, score_gain_interval

    rng = np.random.default_rng(1)
    y = np.repeat(np.arange(3), 15)
    base = np.where(rng.random(45) < 0.5, y, (y + 1) % 3)
    row = np.where(rng.random(45) < 0.7, y, (y + 2) % 3)
    hit = lambda p: (p == y).astype(float)  # noqa: E731
    assert score_gain_interval(y, hit(base), hit(row), 3) == gain_interval(y, base, row, 3)
    pb = rng.random(45)
    assert score_gain_interval(y, pb, pb + 0.1, 3) == pytest.approx((0.1, 0.1))  # a shift on every clip: no spread


def test_choose_reads_the_statistic_it_is_given():
    from emort.evaluation.enhance_eval import choose, rule_text

    # a: the better UA worst cell; b: the better soft worst cell
    a = {"worst_gain": 0.0, "mean_gain": 0.01, "worst_soft_gain": -0.02, "mean_soft_gain": 0.01}
    b = {"worst_gain": -0.03, "mean_gain": 0.05, "worst_soft_gain": 0.01, "mean_soft_gain": 0.02}
    assert choose([a, b]) is a and choose([a, b], "ua") is a
    assert choose([a, b], "soft") is b
    with pytest.raises(ValueError, match="statistic"):
        choose([a, b], "median")
    assert "soft UA gain" in rule_text("soft", "0, 1") and "seeds 0, 1" in rule_text("soft", "0, 1")


def test_markdown_report_gives_soft_gains_where_rows_have_them():
    t = {"emodb": {"J1": {"ua": 0.5, "wa": 0.6, "soft_ua": 0.4, "recall": {"neutral": 1.0, "angry": None}, "n": 4}}}
    row = {"condition": "emort", "amount_db": 1.0, "smooth_s": 0.0, "table": t, "gain": {"emodb": {"J1": 0.0}}, "worst_gain": 0.0,
           "soft_gain": {"emodb": {"J1": 0.023}}, "worst_soft_gain": 0.023, "soft_gain_ci95": {"emodb": {"J1": [0.01, 0.04]}},
           "change_db": {"median": 1.0}, "speaker_similarity": {"median": 0.99}}
    rep = {"split": "val", "speakers": ["emodb/10"], "judge_training": {"clips": 10, "speakers": ["x"], "fit_s": 1.0},
           "options": {"amount_db": 1.0}, "identity_equals_original_samples": True, "original": t, "identity": t,
           "rows": [row], "chosen": None, "seconds": 3.0}
    md = render_markdown(rep, ["neutral", "angry"])
    assert "Soft UA gain" in md and "| emort | 1 | 0 s, 0 bands | +2.3 [+1.0, +4.0] | +2.3 |" in md
    del row["soft_gain"]
    assert "Soft UA gain" not in render_markdown(rep, ["neutral", "angry"])  # reports before 0.21


def test_context_reads_each_clips_own_emotion_from_the_judges_probabilities():
    from emort.evaluation.enhance_eval import Clip, Context

    ctx = Context.__new__(Context)  # no bundle, no judges: the bookkeeping alone
    ctx.labels = ["neutral", "angry", "sad"]
    ctx.clips = [Clip(f"c{i}", corpus, "s", e, np.zeros(1), 16000)
                 for i, (corpus, e) in enumerate([("a", "neutral"), ("a", "angry"), ("a", "angry"), ("b", "sad")])]
    ctx.y = np.array([ctx.labels.index(c.emotion) for c in ctx.clips])
    p = {"J1": np.array([[0.7, 0.2, 0.1], [0.1, 0.6, 0.3], [0.5, 0.1, 0.4], [0.2, 0.2, 0.6]])}
    true = ctx.p_true(p)
    np.testing.assert_allclose(true["J1"], [0.7, 0.6, 0.1, 0.6])
    tab = ctx.table({"J1": p["J1"].argmax(axis=1)}, p_true=true)
    assert tab["a"]["J1"]["soft_ua"] == pytest.approx((0.7 + 0.35) / 2) and tab["a"]["J1"]["ua"] == pytest.approx(0.75)
    assert tab["b"]["J1"]["soft_ua"] == pytest.approx(0.6) and "soft_ua" not in ctx.table({"J1": p["J1"].argmax(axis=1)})["a"]["J1"]


def test_a_speaker_group_must_exist_and_never_be_a_test_speaker(shared_data, tmp_path):
    """``--speakers``: a mistyped key would silently leave that speaker in the judges' training;
    a test speaker would choose a default. Both fail before any judge is fitted."""
    from emort.evaluation.enhance_eval import Context, EvalConfig
    from emort.runtime.errors import EmortError

    data = [f"emodb={shared_data / 'emodb'}"]
    with pytest.raises(EmortError, match="test speakers never choose"):
        Context(EvalConfig(data=data, out=str(tmp_path), speakers=["emodb/03"]))
    with pytest.raises(EmortError, match="no such speaker in --data"):
        Context(EvalConfig(data=data, out=str(tmp_path), speakers=["emodb/9"]))
    with pytest.raises(EmortError, match="was trained on evaluation speakers"):  # the shipped diffusion model heard emodb/09
        Context(EvalConfig(data=data, out=str(tmp_path), speakers=["emodb/09"]))


def test_an_unknown_part_fails_before_anything_is_read(tmp_path):
    from emort.evaluation.enhance_eval import EvalConfig, run
    from emort.runtime.errors import EmortError

    with pytest.raises(EmortError, match="--parts: give one or more of full, dynamic, level \\(not tilt\\)"):
        run(EvalConfig(data=[f"emodb={tmp_path / 'nowhere'}"], out=str(tmp_path), parts=["level", "tilt"]))
    with pytest.raises(EmortError, match="--parts"):
        run(EvalConfig(data=[f"emodb={tmp_path / 'nowhere'}"], out=str(tmp_path), parts=[]))


@pytest.mark.parametrize("grid, match", [
    # each value is valid alone; the pair is what emort enhance refuses
    ({"parts": ["full", "dynamic"], "smooths": [0.0, float("inf")]},
     "--smooths inf, --band-smooths 0, --contrasts uncond, --parts dynamic: part dynamic with smooth inf"),
    ({"amounts": [1.0, 25.0]}, "--amounts 25, .*amount must be in \\[0, 20\\] dB"),
    ({"contrasts": ["uncond", "median"]}, "--contrasts median, .*contrast must be uncond or mean"),
    ({"edit_seed": -1}, "--edit-seed -1: seed must be an integer >= 0"),
])
def test_every_cell_of_the_grid_is_checked_before_anything_is_read(tmp_path, monkeypatch, grid, match):
    import emort.evaluation.enhance_eval as ee
    from emort.runtime.errors import EmortError

    monkeypatch.setattr(ee, "Context", lambda *a, **k: pytest.fail("the judges' context was built before the grid was checked"))
    with pytest.raises(EmortError, match=match) as e:
        ee.run(ee.EvalConfig(data=[f"emodb={tmp_path / 'nowhere'}"], out=str(tmp_path / "r"), **grid))
    assert "\n" not in str(e.value) and not (tmp_path / "r").exists()
    ee.check_grid(ee.EvalConfig(data=[], parts=["full", "level"], smooths=[0.0, float("inf")]))  # inf with full and level runs


def test_eval_enhance_refuses_a_part_and_smoothing_that_leave_no_edit_in_one_line(tmp_path):
    from typer.testing import CliRunner

    from emort.cli.app import app

    r = CliRunner().invoke(app, ["eval", "enhance", "--data", f"emodb={tmp_path / 'nowhere'}", "--parts", "dynamic",
                                 "--smooths", "inf", "--out", str(tmp_path / "r")])
    assert r.exit_code != 0 and "part dynamic with smooth inf" in r.output and "Traceback" not in r.output, r.output
    assert not (tmp_path / "r").exists()


def test_augmented_copies_of_held_out_speakers_never_train_the_judges(shared_data, tmp_path, monkeypatch):
    """A manifest of `emort augment --include-val` copies lists emodb/10's voice as emodb/10+emort:
    the judges and the fixed EQ must leave it out with emodb/10 itself."""
    from tiny import write_manifest_csv

    import emort.evaluation.enhance_eval as ee
    import emort.evaluation.judge_panel as jp

    wav = sorted((shared_data / "emodb" / "wav").glob("*.flac"))
    copy_of_val, copy_of_train = tmp_path / "c10.flac", tmp_path / "c11.flac"  # copies: other files than the originals
    copy_of_val.write_bytes(next(p for p in wav if p.name.startswith("10")).read_bytes())
    copy_of_train.write_bytes(next(p for p in wav if p.name.startswith("11")).read_bytes())
    manifest = write_manifest_csv(tmp_path / "aug.csv", [(copy_of_val, "angry", "emodb/10+emort"),
                                                          (copy_of_train, "angry", "emodb/11+emort")])
    seen = {}

    class Stop(Exception):
        pass

    class Panel:
        def __init__(self, **kw):
            pass

        def fit(self, train, progress=False):
            seen["train"] = {i.speaker_key for i in train}
            raise Stop

    monkeypatch.setattr(jp, "JudgePanel", Panel)  # imported inside Context
    with pytest.raises(Stop):
        ee.Context(ee.EvalConfig(data=[f"emodb={shared_data / 'emodb'}", f"csv={manifest}"], out=str(tmp_path), max_clips=1))
    assert "aug/emodb/11+emort" in seen["train"] and "aug/emodb/10+emort" not in seen["train"]  # corpus: the file stem
    assert not any(k.startswith("emodb/10") or k.startswith("emodb/03") for k in seen["train"])
