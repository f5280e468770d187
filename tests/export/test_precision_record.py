"""emort export precision: a bf16 check that held, made with this bundle's edit, recorded in its manifest."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest

from benchmarks.precision_judges import edit_of, parity
from emort.export.precision import record_precision_check
from emort.runtime.bundle import MANIFEST, load_bundle
from emort.runtime.errors import EmortError


@pytest.fixture
def copy(tmp_path):
    """The shipped bundle without its recorded checks (0.26 lists its bf16 edit), to record them anew."""
    dst = tmp_path / "bundle"
    shutil.copytree(load_bundle(None).path, dst)
    m = json.loads((dst / "manifest.json").read_text())
    m.pop("precisions", None)
    (dst / "manifest.json").write_text(json.dumps(m, indent=2))
    return dst


def _pair(seed, ua, soft):
    cells = lambda v: {c: {j: v.get((c, j), 0.0) for j in ("J1", "J2", "J3")} for c in ("emodb", "nemo")}  # noqa: E731
    return {"seed": seed, "amount_db": 0.5, "ua": cells(ua), "soft": cells(soft)}


def test_parity_reads_the_mean_over_seeds_per_judge_and_per_cell():
    # one clip's flip either way in two seeds averages out; a steady soft shift in one cell does not
    pairs = [_pair(0, {("emodb", "J2"): -6.2}, {}), _pair(1, {("emodb", "J2"): +6.7}, {})]
    par = parity(pairs, 0.5)
    assert par["holds"] and par["per_judge_ua_mean"]["J2"] == pytest.approx(0.5 / 4)
    assert par["cells"]["emodb J2"]["ua_min"] == -6.2 and par["seeds"] == [0, 1]
    shifted = [_pair(s, {}, {("nemo", "J3"): -1.5}) for s in range(4)]
    assert not parity(shifted, 0.5)["holds"]
    bad = parity([_pair(s, {("emodb", "J1"): 4.2}, {}) for s in range(2)], 0.5)  # 4.2 / 2 corpora > 1
    assert not bad["holds"] and bad["beyond"] == ["J1 mean UA +2.100"]


PARITY = Path(__file__).resolve().parents[2] / "docs" / "bench" / "0.24" / "bf16_parity"


def _check(bundle, soft=0.3, edit_hash=None, seeds=8, amount=0.5, ran="bf16", fp32_ran="fp32", speakers=("emodb/10", "nemo/MP0"),
           splits=("val",), edit=None):
    """What benchmarks/precision_judges.py --json writes, from made-up pairs (``soft``: one cell's
    soft difference in every seed) and the bundle's own edit (``edit``: options changed)."""
    pairs = [_pair(s, {}, {("emodb", "J2"): soft}) for s in range(seeds)]
    for p in pairs:
        p["amount_db"], p["ran"], p["fp32_ran"] = amount, ran, fp32_ran
    return {"parity": parity(pairs, amount), "pairs": pairs, "speakers": list(speakers), "splits": list(splits),
            "bundle": {"edit_hash": edit_hash or load_bundle(bundle).edit_hash},
            "edit": {**edit_of(load_bundle(bundle).defaults.to_dict()), **(edit or {})}, "edit_basis": None}


def _judged(monkeypatch, tmp_path, bf16, fp32, name="check.json"):
    """The JSON ``python benchmarks/precision_judges.py --bf16 ... --fp32 ... --json`` writes."""
    from benchmarks.precision_judges import main

    f = tmp_path / name
    monkeypatch.setattr(sys, "argv", ["precision_judges.py", "--bf16", *map(str, bf16), "--fp32", *map(str, fp32), "--json", str(f)])
    main()
    return f


def test_a_check_that_held_is_recorded_with_the_denoiser_checksum(copy, tmp_path):
    f = tmp_path / "check.json"
    f.write_text(json.dumps(_check(copy)))
    before = load_bundle(copy)
    assert not before.checked_precision("denoiser", "bf16")
    rec = record_precision_check(copy, f)
    b = load_bundle(copy)  # the weights' checksums still verify
    assert b.checked_precision("denoiser", "bf16") and b.edit_hash == before.edit_hash
    assert rec["sha256"] == b.files[b.models["denoiser"].file] and rec["checked_on"]["seeds"] == list(range(8))
    assert rec["max_abs_cell_soft_mean"] == pytest.approx(0.3)


@pytest.mark.parametrize("change, match", [
    ({"soft": 1.5}, "did not hold \\(emodb J2 mean soft \\+1.500 beyond 1 point\\)"),
    ({"edit_hash": "0" * 16}, "another edit"),
    ({"seeds": 2}, "2 noise seeds"),
    ({"amount": 2.0}, "not the bundle's default amount"),
    ({"ran": "fp32"}, "bf16 side ran in fp32"),
    ({"fp32_ran": "bf16"}, "float32 side ran in bf16"),
    ({"speakers": ("emodb/03", "emodb/10")}, "test speakers"),
    ({"splits": ("test", "val")}, "not val alone"),
])
def test_a_check_not_made_by_the_rule_records_nothing(copy, tmp_path, change, match):
    f = tmp_path / "check.json"
    f.write_text(json.dumps(_check(copy, **change)))
    before = (copy / MANIFEST).read_text()
    with pytest.raises(EmortError, match=match):
        record_precision_check(copy, f)
    assert (copy / MANIFEST).read_text() == before


@pytest.mark.parametrize("damage", ["{", "no cells", "no seeds", "bundle null", "no pair at the amount"])
def test_an_unreadable_check_is_one_line_naming_it(copy, tmp_path, damage):
    f = tmp_path / "check.json"
    c = _check(copy)
    if damage == "no cells":
        c["parity"]["cells"] = {}
    elif damage == "no seeds":
        del c["parity"]["seeds"]
    elif damage == "bundle null":
        c["bundle"] = None
    elif damage == "no pair at the amount":
        c["pairs"] = []
    f.write_text("{" if damage == "{" else json.dumps(c))
    with pytest.raises(EmortError, match="not a precision check") as e:
        record_precision_check(copy, f)
    assert str(f) in str(e.value) and "\n" not in str(e.value)


def _report(tmp_path, name, src, **change):
    rep = json.loads((src / "report.json").read_text())
    for k, v in change.items():
        if k == "steps":
            rep["options"]["steps"] = v
        else:
            rep[k] = v
    d = tmp_path / name
    d.mkdir()
    (d / "report.json").write_text(json.dumps(rep))
    return str(d)


@pytest.mark.parametrize("change, match", [({"speakers": ["emodb/03", "emodb/08"]}, "other speakers"),
                                           ({"steps": 8}, "made with other options .*\\(steps\\)")])
def test_the_comparison_refuses_reports_of_other_speakers_or_settings(tmp_path, change, match):
    from pathlib import Path

    from benchmarks.precision_judges import compare

    here = Path(__file__).resolve().parents[2] / "docs" / "bench" / "0.24" / "bf16_parity"
    fp = [str(here / "fp32_s0"), str(here / "fp32_s1")]
    bf = [str(here / "bf16_s0"), _report(tmp_path, "b1", here / "bf16_s1", **change)]
    assert compare([str(here / "bf16_s0"), str(here / "bf16_s1")], fp)["speakers"] == ["emodb/10", "nemo/MP0", "ravdess/19", "ravdess/20"]
    with pytest.raises(SystemExit, match=match):
        compare(bf, fp)


@pytest.mark.parametrize("edit, match", [
    ({"holds": True}, "'holds' \\(True\\) disagrees with its own means against the 1-point bar \\(emodb J2 mean soft \\+1.500 beyond it\\)"),
    ({"bar": 5.0}, "its bar is 5 points, the rule's 1"),
    ({"bar": 5.0, "holds": True}, "its bar is 5 points"),
    ({"beyond": []}, "did not hold"),  # the list is for the reader; the verdict is read from the means
])
def test_the_verdict_is_read_from_the_means_not_from_the_file(copy, tmp_path, edit, match):
    f = tmp_path / "check.json"
    c = _check(copy, soft=1.5)
    c["parity"].update(edit)
    f.write_text(json.dumps(c))
    before = (copy / MANIFEST).read_text()
    with pytest.raises(EmortError, match=match) as e:
        record_precision_check(copy, f)
    assert str(f) in str(e.value) and "\n" not in str(e.value) and (copy / MANIFEST).read_text() == before
    held = _check(copy)
    held["parity"]["holds"] = False  # a held check said not to hold is not the rule's either
    f.write_text(json.dumps(held))
    with pytest.raises(EmortError, match="'holds' \\(False\\) disagrees .* \\(all within it\\)"):
        record_precision_check(copy, f)


@pytest.mark.parametrize("edit, match", [
    ({"steps": 8}, "steps 8 \\(the bundle's 4\\)"),
    ({"contrast": "mean"}, "contrast mean \\(the bundle's uncond\\)"),
    ({"method": "ddim", "strength": 0.3}, "strength 0.3 \\(the bundle's 0.5\\), method ddim \\(the bundle's direction\\)"),
    ({"smooth_s": 0.5}, "smooth_s 0.5 \\(the bundle's 0.0\\)"),
    ({"part": "dynamic"}, "part dynamic \\(the bundle's full\\)"),
    ({"max_band_db": 6.0}, "max_band_db 6.0"),
    ({"tilt": 1}, "tilt 1 \\(an option the bundle does not know\\)"),
])
def test_a_check_made_with_other_edit_options_than_the_bundle_ships_records_nothing(copy, tmp_path, edit, match):
    f = tmp_path / "check.json"
    f.write_text(json.dumps(_check(copy, edit=edit)))
    before = (copy / MANIFEST).read_text()
    with pytest.raises(EmortError, match="made with other edit options than .* ships: " + match) as e:
        record_precision_check(copy, f)
    assert "\n" not in str(e.value) and (copy / MANIFEST).read_text() == before


def test_a_bundle_whose_defaults_changed_since_the_check_refuses_it(copy, tmp_path):
    from emort.export.defaults import set_defaults

    f = tmp_path / "check.json"
    f.write_text(json.dumps(_check(copy)))
    set_defaults(copy, {"steps": 8}, "test")  # the edit_hash stays: it does not cover the defaults
    with pytest.raises(EmortError, match="steps 4 \\(the bundle's 8\\)"):
        record_precision_check(copy, f)


def test_a_check_written_by_precision_judges_from_the_committed_reports(copy, tmp_path, monkeypatch, capsys):
    """The committed bf16 reports: the rule's verdict does not hold (J2), as report.md says; the
    same file with its verdict edited is refused; float32 reports given as the bf16 side (an
    --precision auto run that fell back) are written down with what they ran in, and refused."""
    bf16, fp32 = [PARITY / f"bf16_s{s}" for s in range(8)], [PARITY / f"fp32_s{s}" for s in range(8)]
    f = _judged(monkeypatch, tmp_path, bf16, fp32)
    res = json.loads(f.read_text())
    assert {(p["ran"], p["fp32_ran"]) for p in res["pairs"]} == {("bf16", "fp32")} and res["edit"]["steps"] == 4
    with pytest.raises(EmortError, match="did not hold \\(J2 mean UA \\+1.122 beyond 1 point\\)"):
        record_precision_check(copy, f)
    res["parity"]["holds"] = True
    f.write_text(json.dumps(res))
    with pytest.raises(EmortError, match="disagrees"):
        record_precision_check(copy, f)
    g = _judged(monkeypatch, tmp_path, fp32, fp32, "auto.json")
    assert "--bf16 side ran in fp32" in capsys.readouterr().err
    assert json.loads(g.read_text())["parity"]["holds"]  # nothing compared with nothing
    with pytest.raises(EmortError, match="its bf16 side ran in fp32; nothing recorded"):
        record_precision_check(copy, g)
    assert not load_bundle(copy).checked_precision("denoiser", "bf16")


def _changed(tmp_path, name, src, change):
    rep = json.loads((src / "report.json").read_text())
    change(rep)
    d = tmp_path / name
    d.mkdir()
    (d / "report.json").write_text(json.dumps(rep))
    return str(d)


@pytest.mark.parametrize("change, match", [
    (lambda r: r.update(split="test"), "other speakers, clips or split"),
    (lambda r: r["clips"].update(emodb=29), "other speakers, clips or split"),
    (lambda r: r.update(speakers=["emodb/10"]), "other speakers, clips or split"),
    (lambda r: r["options"].update(steps=8), "made with other options than .*fp32_s0 \\(steps\\)"),
    (lambda r: r["bundle"].update(edit_hash="0" * 16), "another bundle edit than .*fp32_s0"),
    (lambda r: r.update(edit_basis="0" * 16), "another bundle edit"),
    (lambda r: [row.update(amount_db=1.0) for row in r["rows"]], "no plain-edit row at 0.5 dB, which .*fp32_s0 has"),
    (lambda r: r.update(precision={"asked": "bf16", "ran": "bf16"}), "its denoiser ran in bf16, not fp32"),
    (lambda r: r["options"].update(seed=9), "no --fp32 report with its seed 9"),
])
def test_other_machines_float32_reports_are_checked_as_the_compared_ones(tmp_path, change, match):
    from benchmarks.precision_judges import machine_gap

    fp32 = [str(PARITY / "fp32_s0"), str(PARITY / "fp32_s1")]
    same = _changed(tmp_path, "same", PARITY / "fp32_s1", lambda r: None)
    assert [g["max_abs_ua"] for g in machine_gap(fp32, [same])] == [0.0]
    with pytest.raises(SystemExit, match=match):
        machine_gap(fp32, [_changed(tmp_path, "other", PARITY / "fp32_s0", change)])


def test_the_committed_16_seed_check_holds_and_is_what_the_shipped_bundle_records(copy, tmp_path, monkeypatch):
    """docs/bench/0.26/bf16_parity_16seeds: the first check's 8 seeds and 8 more, recomputed from the
    committed reports, hold the rule and give the shipped manifest's figures."""
    new = Path(__file__).resolve().parents[2] / "docs" / "bench" / "0.26" / "bf16_parity_16seeds"
    bf16 = [PARITY / f"bf16_s{s}" for s in range(8)] + [new / f"bf16_s{s}" for s in range(8, 16)]
    fp32 = [PARITY / f"fp32_s{s}" for s in range(8)] + [new / f"fp32_s{s}" for s in range(8, 16)]
    f = _judged(monkeypatch, tmp_path, bf16, fp32)
    rec = record_precision_check(copy, f)
    shipped = load_bundle(None).precisions["denoiser"]["bf16"]
    assert rec["per_judge_ua_mean"] == pytest.approx(shipped["per_judge_ua_mean"])
    assert rec["checked_on"]["seeds"] == shipped["checked_on"]["seeds"] == list(range(16))
