"""The edit projected onto natural within-speaker spectral variation (docs/eval/adaptive/)."""

from types import SimpleNamespace

import numpy as np
import soundfile as sf

from emort.runtime.editing import project_edit as project
from emort.runtime.frontend import band_centres_hz
from emort.runtime.settings import DEFAULT_MEL
from emort.training.edit_basis import natural_basis


def test_projection_keeps_what_lies_in_the_span_and_drops_the_rest():
    rng = np.random.default_rng(0)
    q, _ = np.linalg.qr(rng.standard_normal((80, 80)))
    basis = q.T[:4]  # (4, 80), orthonormal rows
    inside = basis.T @ rng.standard_normal((4, 30))
    outside = q.T[10:12].T @ rng.standard_normal((2, 30))
    np.testing.assert_allclose(project(inside, basis), inside, atol=1e-10)
    np.testing.assert_allclose(project(outside, basis), 0.0, atol=1e-10)
    mixed = project(inside + outside, basis)
    np.testing.assert_allclose(project(mixed, basis), mixed, atol=1e-10)  # a projection
    long = rng.standard_normal((80, 9000))  # across the blocks of 4096 frames it works in
    np.testing.assert_allclose(project(long, basis), basis.T @ (basis @ long), atol=1e-10)


def _tilted_clip(path, rng, level: float, tilt: float, speaker: str, sr: int = 16000) -> SimpleNamespace:
    """1 s of noise at ``level`` whose log spectrum tilts by ``tilt`` (linear in frequency), written
    to ``path``; the corpus item that reads it."""
    spec = np.fft.rfft(rng.standard_normal(sr) * level)
    f = np.linspace(0, 1, len(spec))
    sf.write(path, np.fft.irfft(spec * np.exp(tilt * 2.0 * (f - 0.5)), n=sr).astype(np.float32), sr)
    return SimpleNamespace(path=str(path), speaker_key=speaker)


def test_the_basis_follows_within_speaker_variation_not_between_speakers(tmp_path):
    """Two speakers differ by a broad level step (between speakers: removed); each speaker's clips
    differ by a tilt (within): the first component is the tilt's shape."""
    rng = np.random.default_rng(1)
    items = []
    for s, level in (("a", 0.05), ("b", 0.3)):
        for i, tilt in enumerate((-1.0, 0.0, 1.0)):
            items.append(_tilted_clip(tmp_path / f"{s}{i}.wav", rng, level, tilt, s))
    comps, ratio, used = natural_basis(items, DEFAULT_MEL)
    assert used == 6
    assert comps.shape[1] == DEFAULT_MEL.n_mels
    np.testing.assert_allclose(comps @ comps.T, np.eye(len(comps)), atol=1e-8)
    assert ratio[0] > 0.9  # one within-speaker shape explains nearly all
    centres = band_centres_hz(DEFAULT_MEL)
    inside = centres < 7000  # the clips are 16 kHz: nothing above 8 kHz
    tilt_shape = centres[inside] / 8000 - 0.5  # the tilt in dB is linear in frequency
    r = np.corrcoef(comps[0, inside], tilt_shape)[0, 1]
    assert abs(r) > 0.9  # the tilt's shape, not a level step


def test_seed_average_takes_the_worst_of_the_averaged_cells():
    from emort.evaluation.subspace_eval import seed_average

    def rep(a, b):
        rows = [{"candidate": "x", "gain": {"c": {"J1": a, "J2": b}}, "amount_mean_db": 1.0, "beyond": {"J1": 0.1, "J2": 0.3}},
                {"candidate": "only-here", "gain": {"c": {"J1": 0.0, "J2": 0.0}}, "amount_mean_db": 1.0, "beyond": {"J1": 0.0, "J2": 0.0}}]
        return {"rows": rows if a > 0 else rows[:1]}

    out = seed_average([rep(0.10, -0.04), rep(-0.02, 0.02)])
    assert [r["candidate"] for r in out] == ["x"]  # rows missing for a seed are left out
    assert abs(out[0]["gain"]["c"]["J1"] - 0.04) < 1e-12
    assert abs(out[0]["worst_gain"] - (-0.01)) < 1e-12  # mean of J2 over seeds, not the worst seed's -0.04


def test_seed_average_refuses_reports_of_other_clips():
    import pytest

    from emort.evaluation.subspace_eval import seed_average

    a = {"split": "val", "speakers": ["x"], "clips": {"c": 3}, "rows": []}
    with pytest.raises(ValueError, match="clips"):
        seed_average([a, {**a, "clips": {"c": 4}}])


def test_the_basis_keeps_only_components_with_variance(tmp_path):
    """Two speakers of two clips each: at most 2 within-speaker directions, not n_mels rows."""
    sr = 16000
    rng = np.random.default_rng(2)
    items = []
    for s in ("a", "b"):
        for i in range(2):
            p = tmp_path / f"{s}{i}.wav"
            sf.write(p, (rng.standard_normal(sr) * (0.05 + 0.1 * i)).astype(np.float32), sr)
            items.append(SimpleNamespace(path=str(p), speaker_key=s))
    comps, ratio, used = natural_basis(items, DEFAULT_MEL)
    assert used == 4 and len(comps) <= 2 and np.isfinite(ratio).all()


def test_the_speaker_basis_reads_voices_not_corpora(tmp_path):
    """Two corpora far apart in level (a channel), two speakers in each that differ by a tilt: the
    first between-speaker component is the tilt's shape; the corpora's difference is removed."""
    from emort.runtime.frontend import band_centres_hz
    from emort.training.edit_basis import speaker_basis

    rng = np.random.default_rng(3)
    items = []
    for corpus, level in (("ca", 0.02), ("cb", 0.4)):
        for spk, tilt in (("s1", -1.0), ("s2", 1.0)):
            for i in range(2):
                items.append(_tilted_clip(tmp_path / f"{corpus}_{spk}_{i}.wav", rng, level, tilt, f"{corpus}/{spk}"))
    comps, ratio, used = speaker_basis(items, DEFAULT_MEL)
    assert used == 4 and ratio[0] > 0.9
    centres = band_centres_hz(DEFAULT_MEL)
    inside = centres < 7000
    assert abs(np.corrcoef(comps[0, inside], centres[inside])[0, 1]) > 0.9  # the tilt, not the level
