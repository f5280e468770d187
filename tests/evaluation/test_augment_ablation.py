"""`emort eval augment`: conditions, the leave-one-corpus-out exclusion of copies, refusals."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("sklearn", reason="the ablation needs the [train] extra")
pytest.importorskip("librosa", reason="the ablation needs the [train] extra")

from tiny import write_manifest_csv  # noqa: E402 (tests/tiny.py: the test helpers)

from emort.evaluation.augment_ablation import AugSpec, run_ablation  # noqa: E402
from emort.runtime.errors import EmortError  # noqa: E402

EMODB = {"W": "angry", "T": "sad", "N": "neutral", "F": "happy"}
RAVDESS = {"05": "angry", "04": "sad", "01": "neutral", "03": "happy"}


def _corpora(shared_data: Path, tmp: Path) -> list[str]:
    """Two small corpora named emodb and ravdess (CSV stems), each with a test, a validation and two training speakers."""
    e, r = [], []
    for p in sorted((shared_data / "emodb" / "wav").glob("*.flac")):
        if p.stem[:2] in ("03", "10", "09", "11") and p.stem[5] in EMODB and sum(x[2] == p.stem[:2] and x[1] == EMODB[p.stem[5]] for x in e) < 3:
            e.append((str(p), EMODB[p.stem[5]], p.stem[:2]))
    for a in ("01", "02", "19", "21"):
        for p in sorted((shared_data / "ravdess" / f"Actor_{a}").glob("*.flac")):
            f = p.stem.split("-")
            if f[2] in RAVDESS and f[4] == "02" and sum(x[2] == a and x[1] == RAVDESS[f[2]] for x in r) < 3:
                r.append((str(p), RAVDESS[f[2]], a))
    return [f"csv={write_manifest_csv(tmp / 'emodb.csv', e)}", f"csv={write_manifest_csv(tmp / 'ravdess.csv', r)}"]


def _copies(data: list[str], tmp: Path, name: str, corpus: str, speakers=("09", "11", "10"), gain: float = 0.5) -> str:
    """A stand-in manifest: quieter, clipped copies of one corpus's training speakers."""
    import soundfile as sf

    src = next(d for d in data if d.endswith(f"{corpus}.csv")).split("=", 1)[1]
    rows = []
    (tmp / name).mkdir()
    for r in csv.DictReader(open(src)):
        if r["speaker"] in speakers:
            x, sr = sf.read(r["path"], dtype="float32")
            x = x if x.ndim == 1 else x.mean(axis=1)
            out = tmp / name / (Path(r["path"]).stem + ".wav")
            sf.write(out, np.clip(x * gain * 4, -gain, gain), sr)
            rows.append((str(out), r["emotion"], f"{corpus}/{r['speaker']}+x"))
    return str(write_manifest_csv(tmp / name / "manifest.csv", rows))


def test_ablation_conditions_and_cross_corpus_exclusion(shared_data: Path, tmp_path: Path):
    data = _corpora(shared_data, tmp_path)
    classic = _copies(data, tmp_path, "classic", "emodb")
    emort = _copies(data, tmp_path, "emort", "emodb", gain=0.3)
    res = run_ablation(data, [AugSpec.parse(f"classic:0={classic}"), AugSpec.parse(f"emort:0={emort}")], tmp_path / "r")
    rows = {r["condition"]: r for r in res["rows"]}
    assert list(rows) == ["none", "classic", "emort", "both"]
    assert set(rows["none"]["speakers"]) == {"emodb/val", "emodb/test", "ravdess/val", "ravdess/test"}
    # Leaving emodb out leaves its copies out too: with only emodb copies given, every condition
    # fits exactly the 'none' model there.
    for cond in ("classic", "emort", "both"):
        assert rows[cond]["cross_corpus"]["emodb/val"] == rows["none"]["cross_corpus"]["emodb/val"]
    # ... while the other fits do take them: each condition's held-out-speakers probabilities differ
    # from 'none' (checked on the fitted models themselves, not on rounded UAs).
    import emort.evaluation.augment_ablation as ab

    fits = []
    real = ab.StatsClassifier.fit

    def spy(self, x, y, speakers, speaker_stats=None):
        fits.append(sorted(set(speakers)))
        return real(self, x, y, speakers, speaker_stats)

    ab.StatsClassifier.fit = spy
    try:
        run_ablation(data, [AugSpec.parse(f"classic:0={classic}"), AugSpec.parse(f"emort:0={emort}")], tmp_path / "r2")
    finally:
        ab.StatsClassifier.fit = real
    # fit order per condition: held-out speakers, then leave-out emodb, leave-out ravdess
    held_out_fits = fits[0::3]
    assert not any("+x" in s for s in held_out_fits[0])  # none: originals only
    for f in held_out_fits[1:]:  # classic, emort, both: the training speakers' copies, never a validation speaker's
        assert any(s.endswith("+x@classic:0") or s.endswith("+x@emort:0") for s in f)
        assert not any(s.startswith("emodb/10") for s in f)  # the validation speaker's copies (the fit's keys: emodb/10+x@...)
    assert (tmp_path / "r" / "augment_ablation.md").read_text().count("| none |") == 2
    # The classifier is the caller's: a logistic-regression ablation fits one (with its own default C)
    # in every fit, and records it; another model is refused before any feature is computed.
    models = []

    def spy_model(self, x, y, speakers, speaker_stats=None):
        models.append((self.model, self.C))
        return real(self, x, y, speakers, speaker_stats)

    ab.StatsClassifier.fit = spy_model
    try:
        lr = run_ablation(data, [AugSpec.parse(f"classic:0={classic}"), AugSpec.parse(f"emort:0={emort}")], tmp_path / "r3",
                          model="logreg")
    finally:
        ab.StatsClassifier.fit = real
    assert models and set(models) == {("logreg", 0.01)} and len(models) == len(fits)
    assert "logistic regression" in lr["model"] and lr["C"] == 0.01
    assert [r["condition"] for r in lr["rows"]] == ["none", "classic", "emort", "both"]
    with pytest.raises(EmortError, match="svm or logreg"):
        run_ablation(data, [AugSpec.parse(f"classic:0={classic}")], tmp_path / "r4", model="lda")


def test_ablation_refuses_copies_of_test_speakers_and_missing_kinds(shared_data: Path, tmp_path: Path):
    data = _corpora(shared_data, tmp_path)
    leaky = _copies(data, tmp_path, "leaky", "emodb", speakers=("03",))  # a test speaker
    ok = _copies(data, tmp_path, "ok", "emodb")
    with pytest.raises(EmortError, match="test speakers emodb/03"):
        run_ablation(data, [AugSpec.parse(f"classic:0={leaky}"), AugSpec.parse(f"emort:0={ok}")], tmp_path / "r")
    with pytest.raises(EmortError, match="no emort manifest"):
        run_ablation(data, [AugSpec.parse(f"classic:0={ok}")], tmp_path / "r")
    with pytest.raises(EmortError, match="KIND:SEED=MANIFEST"):
        AugSpec.parse("mixup:0=x.csv")


def test_the_default_bundle_is_recognised_by_either_hash_its_copies_record():
    """`emort augment` rows record the bundle's edit_hash (0.9) or its content_hash (before):
    both name the default bundle, whose training corpora then mark cells as not clean."""
    from emort.evaluation.augment_ablation import bundle_corpora
    from emort.runtime.bundle import load_bundle

    b = load_bundle()
    assert bundle_corpora({b.edit_hash}) == bundle_corpora({b.content_hash}) == ["emodb", "nemo", "ravdess"]
    assert bundle_corpora({"0123456789abcdef"}) is None and bundle_corpora(set()) is None


def test_eval_augment_refuses_an_unknown_model_or_features_in_one_line(tmp_path: Path):
    from typer.testing import CliRunner

    from emort.cli.app import app

    for flag, value in (("--model", "lda"), ("--features", "mfcc")):
        r = CliRunner().invoke(app, ["eval", "augment", "--data", "emodb=nowhere", "--aug", "emort:0=x.csv", flag, value,
                                     "--out", str(tmp_path / "r")])
        assert r.exit_code == 2 and flag in r.output and "Traceback" not in r.output, r.output
        assert not (tmp_path / "r").exists()
