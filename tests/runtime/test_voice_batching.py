"""Per-speaker scoring embeds a group's clips together (``Scorer.embed_voices``): the encoder calls
hold whole clips, about CALL_WINDOWS windows each, the same whatever runs them; the embeddings
equal those of clips embedded one at a time to float rounding; the CLI's path and the API's agree."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from emort import Scorer
from emort.runtime.voice import CALL_WINDOWS, VoiceEmbedder


def test_calls_keep_clips_whole_and_hold_about_call_windows():
    sizes = [1, 2, 2, 5, 9, 1, 30, 1, 1]
    calls = VoiceEmbedder.calls([np.zeros((n, 4, 2)) for n in sizes])
    assert [i for c in calls for i in c] == list(range(len(sizes)))  # every clip once, in order
    for c in calls:
        assert sum(sizes[i] for i in c) <= CALL_WINDOWS or len(c) == 1  # a clip with more windows is a call alone
    assert VoiceEmbedder.calls([]) == []


def _clips(n: int, seed: int = 0) -> list[tuple[np.ndarray, int]]:
    rng = np.random.default_rng(seed)
    out = []
    for k in range(n):
        sr = (16000, 22050, 48000)[k % 3]
        t = np.arange(int(sr * (1.2 + 0.9 * (k % 4)))) / sr
        f0 = 110 + 25 * k
        wav = 0.2 * np.sin(2 * np.pi * f0 * t * (1 + 0.05 * np.sin(2 * np.pi * 2 * t))) + 0.01 * rng.standard_normal(t.size)
        out.append((wav.astype(np.float32), sr))
    return out


@pytest.fixture(scope="module")
def scorer():
    s = Scorer.load(device="cpu", per_speaker=True)
    if s.voice is None:
        pytest.skip("the shipped bundle carries no voice classifier")
    return s


def test_batched_embeddings_equal_single_ones_and_do_not_depend_on_the_runner(scorer):
    clips = _clips(9)
    single = np.stack([scorer.analyse(w, sr).voice for w, sr in clips])
    lazy = [scorer.analyse(w, sr, embed=False) for w, sr in clips]
    assert all(a.voice is None and a.voice_windows is not None for a in lazy)
    done = scorer.embed_voices(lazy)
    batched = np.stack([a.voice for a in done])
    assert all(a.voice_windows is None for a in done)
    assert all(a.log_mel is b.log_mel for a, b in zip(done, lazy))  # the rest of each analysis as it was
    np.testing.assert_allclose(batched, single, rtol=0, atol=2e-6)
    with ThreadPoolExecutor(2) as pool:
        again = scorer.embed_voices(lazy, pool.map)
    np.testing.assert_array_equal(np.stack([a.voice for a in again]), batched)
    assert scorer.embed_voices(done) == done  # nothing left to embed


def test_the_cli_path_and_the_api_agree(scorer, tmp_path):
    import soundfile as sf

    from emort.runtime import batch

    clips = _clips(7, seed=3)
    folder = tmp_path / "spk"
    folder.mkdir()
    for k, (w, sr) in enumerate(clips):
        sf.write(folder / f"c{k}.wav", w, sr, subtype="FLOAT")
    recs = sorted((r for r in batch.score_files(scorer, [str(folder)], per_speaker=True) if r.status == "scored"), key=lambda r: r.path)
    api = scorer.score_speaker([sf.read(str(folder / f"c{k}.wav"), dtype="float32") for k in range(len(clips))])
    assert len(recs) == len(api) == len(clips)
    for r, s in zip(recs, api):
        assert r.prediction == s.prediction
        assert r.scores == pytest.approx(s.scores, abs=1e-6)
