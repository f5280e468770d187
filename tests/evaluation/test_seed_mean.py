"""`python -m emort.evaluation.seed_mean`: cells averaged over noise seeds, the rule applied to the means."""

from __future__ import annotations

import json

import pytest

from emort.evaluation.seed_mean import main, seed_means
from emort.runtime.errors import EmortError


def _report(path, seed, rows, split="val", steps=4, edit_hash=None, speakers=("emodb/10",), contrast="uncond", extra=None, part=None):
    path.mkdir(parents=True)
    gains = [{"condition": "emort", "amount_db": a, "smooth_s": 0.0, "smooth_bands": 0, "contrast": contrast, **({"part": part} if part else {}),
              "gain": {"emodb": {"J1": g[0], "J2": g[1]}, "nemo": {"J1": g[2], "J2": g[3]}},
              "worst_gain": min(g), "mean_gain": sum(g) / 4} for a, g in rows]
    gains.append({"condition": "eq", "amount_db": 0.5, "gain": {}, "worst_gain": 1.0})  # not emort: ignored
    (path / "report.json").write_text(json.dumps({"split": split, "options": {"seed": seed, "amount_db": 0.5, "steps": steps, **(extra or {})},
                                                  "speakers": list(speakers), "clips": 10,
                                                  "bundle": {"hash": "h", **({"edit_hash": edit_hash} if edit_hash else {})},
                                                  "rows": gains}))
    return path


def test_the_rule_reads_the_mean_over_seeds_not_each_seed(tmp_path):
    # Seed 0 alone would choose 1 dB (worst +0.00 vs -0.02), seed 1 alone 1 dB too, but the mean
    # over the two seeds is worse at 1 dB (-0.03) than at 0.5 dB (-0.01).
    a = _report(tmp_path / "s0", 0, [(0.5, (0.0, -0.02, 0.1, 0.1)), (1.0, (0.1, 0.0, 0.0, 0.2))])
    b = _report(tmp_path / "s1", 1, [(0.5, (0.0, 0.0, 0.05, 0.1))])
    c = _report(tmp_path / "s1b", 1, [(1.0, (0.0, -0.06, 0.3, 0.3)), (2.0, (0.5, 0.5, 0.5, 0.5))])  # 2 dB: seed 1 only
    res = seed_means([a, b, c])
    assert res["seeds"] == [0, 1] and [r["amount_db"] for r in res["rows"]] == [0.5, 1.0]
    r05, r1 = res["rows"]
    assert r05["gain"]["emodb"]["J2"] == pytest.approx(-0.01) and r05["worst_gain"] == pytest.approx(-0.01)
    assert r1["worst_gain"] == pytest.approx(-0.03) and r1["per_seed_worst"] == {0: 0.0, 1: -0.06}
    assert res["chosen"] is r05 and res["left_out"] == [{"amount_db": 2.0, "smooth_s": 0.0, "smooth_bands": 0, "contrast": "uncond", "part": "full"}]
    out = tmp_path / "defaults.json"
    main([str(a), str(b), str(c), "--json", str(out)])
    d = json.loads(out.read_text())
    assert d["amount_db"] == 0.5 and d["steps"] == 4 and "seed" not in d and "0, 1" in d["rule"]


def test_reports_of_other_options_or_splits_are_refused(tmp_path):
    a = _report(tmp_path / "s0", 0, [(0.5, (0.0, 0.0, 0.0, 0.0))])
    with pytest.raises(EmortError, match="other options"):
        seed_means([a, _report(tmp_path / "s1", 1, [(0.5, (0.0, 0.0, 0.0, 0.0))], steps=8)])
    with pytest.raises(EmortError, match="split"):
        seed_means([a, _report(tmp_path / "t", 1, [(0.5, (0.0, 0.0, 0.0, 0.0))], split="test")])
    with pytest.raises(EmortError, match="not a readable"):
        seed_means([tmp_path / "nothing"])


def test_a_seed_measured_twice_must_agree_and_bundles_must_make_the_same_edit(tmp_path):
    a = _report(tmp_path / "a", 0, [(0.5, (0.0, 0.0, 0.1, 0.1))], edit_hash="e1")
    again = _report(tmp_path / "again", 0, [(0.5, (0.0, 0.0, 0.1, 0.1))])  # the same rows: fine
    assert seed_means([a, again])["seeds"] == [0]
    with pytest.raises(EmortError, match="measured already"):
        seed_means([a, _report(tmp_path / "other", 0, [(0.5, (0.2, 0.0, 0.1, 0.1))])])
    with pytest.raises(EmortError, match="edit differs"):
        seed_means([a, _report(tmp_path / "b", 1, [(0.5, (0.0, 0.0, 0.1, 0.1))], edit_hash="e2")])
    with pytest.raises(EmortError, match="other speakers"):
        seed_means([a, _report(tmp_path / "c", 1, [(0.5, (0.0, 0.0, 0.1, 0.1))], speakers=("ravdess/19",))])
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "report.json").write_text(json.dumps({"split": "val", "options": {}, "rows": []}))
    with pytest.raises(EmortError, match="not a readable"):
        seed_means([tmp_path / "broken"])


def test_rows_of_another_contrast_are_candidates_and_labelled(tmp_path, capsys):
    plain = _report(tmp_path / "p0", 0, [(0.5, (0.0, 0.0, 0.1, 0.1))])
    mean = _report(tmp_path / "m0", 0, [(0.5, (0.0, 0.01, 0.3, 0.3))], contrast="mean")
    res = seed_means([plain, mean])
    assert [(r["amount_db"], r["contrast"]) for r in res["rows"]] == [(0.5, "mean"), (0.5, "uncond")]
    assert res["chosen"]["contrast"] == "mean"
    out = tmp_path / "d.json"
    main([str(plain), str(mean), "--json", str(out)])
    lines = capsys.readouterr().out.splitlines()
    assert lines[1].startswith("amount dB | contrast | ") and lines[2].startswith("0.5 | mean | ") and lines[2].endswith("<- chosen")
    assert json.loads(out.read_text())["contrast"] == "mean"
    main([str(plain)])  # one contrast: no column for it
    assert capsys.readouterr().out.splitlines()[1].startswith("amount dB | emodb J1")


def test_rows_of_another_part_are_candidates_and_older_reports_read_as_the_full_edit(tmp_path, capsys):
    old = _report(tmp_path / "old", 0, [(0.5, (0.0, 0.0, 0.1, 0.1))])  # a report of 0.21: no part in its rows
    lev = _report(tmp_path / "lev", 0, [(2.0, (0.0, 0.02, 0.3, 0.3))], part="level", extra={"part": "level"})
    res = seed_means([old, lev])  # the base options' part does not make the reports incomparable
    assert [(r["amount_db"], r["part"]) for r in res["rows"]] == [(0.5, "full"), (2.0, "level")]
    assert res["chosen"]["part"] == "level"
    out = tmp_path / "d.json"
    main([str(old), str(lev), "--json", str(out)])
    lines = capsys.readouterr().out.splitlines()
    assert lines[1].startswith("amount dB | part | ") and lines[3].startswith("2 | level | ") and lines[3].endswith("<- chosen")
    assert json.loads(out.read_text())["part"] == "level"


def test_settings_the_enhancement_evaluation_does_not_use_are_not_written(tmp_path):
    """The enhancement evaluation runs without prosody: a bundle's prosody settings in its report
    are not choices, and written as defaults they would reset the shipped ones."""
    extra = {"prosody": False, "prosody_amount_db": None, "pitch": 1.0, "prosody_renderer": "stretch", "strength": 0.5}
    a = _report(tmp_path / "s0", 0, [(0.5, (0.0, 0.0, 0.1, 0.1))], extra=extra)
    out = tmp_path / "defaults.json"
    main([str(a), "--json", str(out)])
    d = json.loads(out.read_text())
    assert d["strength"] == 0.5 and d["amount_db"] == 0.5
    assert not {"prosody", "prosody_amount_db", "pitch", "prosody_renderer"} & set(d)


def test_the_soft_statistic_averages_soft_gains_and_chooses_by_them(tmp_path, capsys):
    def with_soft(path, soft):
        rep = json.loads((path / "report.json").read_text())
        for r in rep["rows"]:
            if r["condition"] == "emort":
                g = soft[r["amount_db"]]
                r["soft_gain"] = {"emodb": {"J1": g[0], "J2": g[1]}, "nemo": {"J1": g[2], "J2": g[3]}}
                r["worst_soft_gain"] = min(g)
        (path / "report.json").write_text(json.dumps(rep))
        return path

    # UA: 0.5 dB wins (worst 0.0 against -0.03); soft: 1 dB wins (worst +0.01 against -0.005)
    a = with_soft(_report(tmp_path / "s0", 0, [(0.5, (0.0, 0.0, 0.1, 0.1)), (1.0, (0.1, -0.03, 0.2, 0.2))]),
                  {0.5: (0.0, -0.01, 0.02, 0.02), 1.0: (0.02, 0.01, 0.04, 0.04)})
    b = with_soft(_report(tmp_path / "s1", 1, [(0.5, (0.0, 0.0, 0.1, 0.1)), (1.0, (0.1, -0.03, 0.2, 0.2))]),
                  {0.5: (0.0, 0.0, 0.02, 0.02), 1.0: (0.02, 0.01, 0.04, 0.04)})
    assert seed_means([a, b])["chosen"]["amount_db"] == 0.5
    res = seed_means([a, b], "soft")
    assert res["chosen"]["amount_db"] == 1.0 and res["rows"][0]["worst_soft_gain"] == pytest.approx(-0.005)
    out = tmp_path / "d.json"
    main([str(a), str(b), "--statistic", "soft", "--json", str(out)])
    assert json.loads(out.read_text())["amount_db"] == 1.0 and "soft UA gain" in json.loads(out.read_text())["rule"]
    assert "soft UA gain in points" in capsys.readouterr().out
    old = _report(tmp_path / "old", 2, [(0.5, (0.0, 0.0, 0.1, 0.1)), (1.0, (0.1, -0.03, 0.2, 0.2))])  # no soft gains
    with pytest.raises(EmortError, match="no soft UA gains"):
        seed_means([a, old], "soft")


def test_reports_of_0_21_combine_with_earlier_ones(tmp_path):
    # 0.21 wrote prosody_contrast and changed the bundle's base contrast; each row has its own
    old = _report(tmp_path / "s0", 0, [(0.5, (0.0, 0.0, 0.1, 0.1))], extra={"contrast": "uncond", "subspace": 0})
    new = _report(tmp_path / "s1", 1, [(0.5, (0.0, 0.02, 0.1, 0.1))],
                  extra={"contrast": "mean", "prosody_contrast": "uncond", "prosody_subspace": None, "subspace": 0})
    res = seed_means([old, new])
    assert res["seeds"] == [0, 1] and res["rows"][0]["gain"]["emodb"]["J2"] == pytest.approx(0.01)
    with pytest.raises(EmortError, match="other options"):  # a real difference still counts
        seed_means([old, _report(tmp_path / "s2", 2, [(0.5, (0.0, 0.0, 0.1, 0.1))], extra={"subspace": 16})])
