"""emort export precision: a bf16 check that held, made with this bundle's edit, recorded in its manifest."""

from __future__ import annotations

import json
import shutil

import pytest

from benchmarks.precision_judges import parity
from emort.export.precision import record_precision_check
from emort.runtime.bundle import MANIFEST, load_bundle
from emort.runtime.errors import EmortError


@pytest.fixture
def copy(tmp_path):
    dst = tmp_path / "bundle"
    shutil.copytree(load_bundle(None).path, dst)
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


def _check(bundle, holds=True, edit_hash=None, seeds=8, amount=0.5, ran="bf16", speakers=("emodb/10", "nemo/MP0"), splits=("val",)):
    pairs = [_pair(s, {}, {("emodb", "J2"): 0.3}) for s in range(seeds)]
    for p in pairs:
        p["amount_db"], p["ran"] = amount, ran
    par = parity(pairs, amount)
    par["holds"] = holds
    return {"parity": par, "pairs": pairs, "speakers": list(speakers), "splits": list(splits),
            "bundle": {"edit_hash": edit_hash or load_bundle(bundle).edit_hash}}


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
    ({"holds": False}, "did not hold"),
    ({"edit_hash": "0" * 16}, "another edit"),
    ({"seeds": 2}, "2 noise seeds"),
    ({"amount": 2.0}, "not the bundle's default amount"),
    ({"ran": "fp32"}, "bf16 side ran in fp32"),
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


@pytest.mark.parametrize("damage", ["{", "no cells", "no seeds", "bundle null"])
def test_an_unreadable_check_is_one_line_naming_it(copy, tmp_path, damage):
    f = tmp_path / "check.json"
    c = _check(copy)
    if damage == "no cells":
        c["parity"]["cells"] = {}
    elif damage == "no seeds":
        del c["parity"]["seeds"]
    elif damage == "bundle null":
        c["bundle"] = None
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
