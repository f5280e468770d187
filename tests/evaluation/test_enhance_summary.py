"""The README's enhancement table (``summary_table``): the row of the asked amount, contrast and part."""

from __future__ import annotations

from emort.evaluation.enhance_eval import summary_table


def _table(ua: float) -> dict:
    return {"emodb": {"J1": {"wa": ua, "ua": ua}}}


def _row(condition: str, amount: float, part: str | None, ua: float, change: float) -> dict:
    r = {"condition": condition, "amount_db": amount, "smooth_s": 0.0, "smooth_bands": 0, "contrast": "uncond",
         "table": _table(ua), "gain": {"emodb": {"J1": ua - 0.5}}, "change_db": {"median": change, "p10": change, "p90": change},
         "speaker_similarity": {"median": 0.99}}
    if part is not None:  # reports of 0.21 and earlier have no part in their rows
        r["part"] = part
    return r


def test_summary_picks_the_part_and_prints_its_figures():
    rep = {"original": _table(0.5), "identity": _table(0.5),
           "rows": [_row("emort", 0.5, None, 0.55, 0.5), _row("emort", 2.0, "level", 0.7, 2.0), _row("eq", 2.0, None, 0.6, 2.0),
                    _row("eq", 0.5, None, 0.52, 0.5)]}
    first = summary_table(rep)  # the first row: an old report's row reads as the full edit
    assert "| emodb | statistics SVM | 0.500 / 0.500 | 0.500 / 0.500 | 0.520 / 0.520 | 0.550 / 0.550 | +5.0 |" in first
    assert "Amount 0.5 dB, contrast uncond. Applied change, median [p10, p90]: emort 0.50 [0.50, 0.50] dB" in first
    lev = summary_table(rep, 2.0, part="level")
    assert "| 0.600 / 0.600 | 0.700 / 0.700 | +20.0 |" in lev
    assert "Amount 2 dB, contrast uncond, level part. Applied change, median [p10, p90]: emort 2.00 [2.00, 2.00] dB" in lev


def test_the_markdown_summary_shows_the_chosen_time_smoothing():
    """Two rows at one amount that differ only in smooth_s: the Summary is the chosen one's."""
    from emort.evaluation.enhance_eval import chosen_summary

    smooth = {**_row("emort", 3.0, None, 0.70, 3.0), "smooth_s": 0.2}
    rep = {"original": _table(0.5), "identity": _table(0.5),
           "rows": [_row("emort", 3.0, None, 0.55, 3.0), smooth, _row("eq", 3.0, None, 0.52, 3.0)]}
    assert "| 0.700 / 0.700 | +20.0 |" in summary_table(rep, 3.0, smooth_s=0.2)
    assert "| 0.550 / 0.550 | +5.0 |" in summary_table(rep)  # the first emort row by default
    rep["chosen"] = {"amount_db": 3.0, "smooth_s": 0.2, "smooth_bands": 0, "contrast": "uncond", "rule": "worst"}
    summary = chosen_summary(rep)  # what render_markdown prints under "## Summary"
    assert "0.700 / 0.700" in summary and "0.550 / 0.550" not in summary
    rep["chosen"]["smooth_s"] = 0.5  # a setting no row has: no Summary, never another row's
    assert chosen_summary(rep) is None
