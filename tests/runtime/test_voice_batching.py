"""Per-speaker scoring embeds a group's clips together (``Scorer.embed_voices``): the encoder calls
hold whole clips, about CALL_WINDOWS windows each, the same whatever runs them; the embeddings
equal those of clips embedded one at a time to float rounding; the CLI's path and the API's agree."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from emort import Scorer
from emort.runtime.voice import CALL_WINDOWS, VoiceEmbedder


def test_calls_keep_clips_whole_and_hold_about_call_windows():
    assert CALL_WINDOWS == 16
    sizes = [1, 2, 2, 5, 9, 1, 30, 1, 1]
    calls = VoiceEmbedder.calls([np.zeros((n, 4, 2)) for n in sizes])
    assert calls == [[0, 1, 2, 3], [4, 5], [6], [7, 8]]  # consecutive clips up to 16 windows; 30 alone
    assert VoiceEmbedder.calls([]) == []
    assert VoiceEmbedder.calls([np.zeros((0, 4, 2)), np.zeros((3, 4, 2))]) == [[0, 1]]


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
    clips = _clips(24)
    single = np.stack([scorer.analyse(w, sr).voice for w, sr in clips])
    lazy = [scorer.analyse(w, sr, embed=False) for w, sr in clips]
    assert all(a.voice is None and a.voice_windows is not None for a in lazy)
    assert len(VoiceEmbedder.calls([a.voice_windows for a in lazy])) >= 3  # several calls, for the pool to share
    lazy[5] = scorer.embed_voices([lazy[5]])[0]  # one already embedded: passed through as it is
    done = scorer.embed_voices(lazy)
    assert done[5] is lazy[5]
    batched = np.stack([a.voice for a in done])
    assert all(a.voice_windows is None for a in done)
    assert all(a.log_mel is b.log_mel for a, b in zip(done, lazy))  # the rest of each analysis as it was
    np.testing.assert_allclose(batched, single, rtol=0, atol=1e-6)
    with ThreadPoolExecutor(2) as pool:
        again = scorer.embed_voices(lazy, pool.map)
    np.testing.assert_array_equal(np.stack([a.voice for a in again]), batched)
    assert scorer.embed_voices(done) == done  # nothing left to embed


def _write(folder, clips):
    import soundfile as sf

    folder.mkdir(parents=True)
    for k, (w, sr) in enumerate(clips):
        sf.write(folder / f"c{k}.wav", w, sr, subtype="FLOAT")
    return folder


def test_the_cli_path_and_the_api_agree(scorer, tmp_path):
    """Per speaker, and against a reference (each clip's embedding is the same whichever clips share
    its encoder call: the API embeds a speaker's clips and references together, the CLI apart)."""
    import soundfile as sf

    from emort.runtime import batch

    clips, originals = _clips(14, seed=3), _clips(12, seed=4)
    folder = _write(tmp_path / "in" / "spk", clips)
    _write(tmp_path / "ref" / "spk", originals)
    audio = [sf.read(str(folder / f"c{k}.wav"), dtype="float32") for k in range(len(clips))]
    refs = [sf.read(str(tmp_path / "ref" / "spk" / f"c{k}.wav"), dtype="float32") for k in range(len(originals))]
    for reference, api in ((None, scorer.score_speaker(audio)), (tmp_path / "ref", scorer.score_speaker(audio, reference=refs))):
        recs = sorted((r for r in batch.score_files(scorer, [str(tmp_path / "in")], per_speaker=True, reference=reference)
                       if r.status == "scored"), key=lambda r: int(Path(r.path).stem[1:]))
        assert len(recs) == len(api) == len(clips)
        for r, s in zip(recs, api):
            assert r.prediction == s.prediction
            assert r.scores == pytest.approx(s.scores, abs=1e-6)


def test_a_clip_that_cannot_be_embedded_fails_alone(scorer, tmp_path, monkeypatch):
    """The encoder's calls hold several clips: should one fail, the clips are embedded one by one and
    only the clip at fault fails, named, as when each clip was embedded as it was read."""
    from emort.runtime import batch

    clips = _clips(6, seed=5)
    long = np.tile(clips[2][0], 6)  # about 8 windows: the only clip that long
    clips[2] = (long, clips[2][1])
    folder = _write(tmp_path / "spk", clips)
    real = VoiceEmbedder.embed_windows

    def fails_on_the_long_clip(self, windows):
        if any(len(w) >= 7 for w in windows):
            raise MemoryError("the encoder ran out of memory")
        return real(self, windows)

    monkeypatch.setattr(VoiceEmbedder, "embed_windows", fails_on_the_long_clip)
    recs = sorted(batch.score_files(scorer, [str(folder)], per_speaker=True), key=lambda r: r.path)
    assert [r.status for r in recs] == ["scored", "scored", "failed", "scored", "scored", "scored"]
    assert recs[2].error.startswith(str(folder / "c2.wav")) and "out of memory" in recs[2].error
