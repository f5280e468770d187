"""The Python API where an app developer found it behind the CLI (0.32's third new user): a mix
weight that rounds away, bare arrays for a speaker's clips, and a Score's repr."""

from __future__ import annotations

import numpy as np
import pytest

from emort.runtime.errors import EmortError, LabelError


@pytest.fixture(scope="module")
def voice():
    t = np.arange(16000) / 16000
    return (0.2 * np.sin(2 * np.pi * 140 * t) * (1 + 0.5 * np.sin(2 * np.pi * 3 * t))).astype(np.float32), 16000


def test_a_mix_weight_that_rounds_to_zero_is_refused_as_on_the_command_line(voice):
    from emort import Enhancer

    enh = Enhancer.load()
    with pytest.raises(LabelError, match="rounds to 0.00"):
        enh.enhance(*voice, "angry:0.001,sad:1")
    assert enh.target_centroid("angry:0.3,sad:0.7")[0] == "sad:0.70,angry:0.30"


def test_a_speakers_clips_must_be_pairs(voice):
    from emort.runtime.scorer import Scorer

    scorer = Scorer.load(per_speaker=True)
    with pytest.raises(EmortError, match=r"clips\[0\]: expected a \(wav, sample_rate\) pair, got an array of shape \(16000,\)"):
        scorer.score_speaker([voice[0]] * 5)
    with pytest.raises(EmortError, match=r"reference\[1\]: expected a \(wav, sample_rate\) pair, got str"):
        scorer.score_speaker([voice] * 5, reference=[voice, "a.wav"])


def test_a_scores_repr_leaves_out_its_embedding(voice):
    from emort.runtime.scorer import Scorer

    s = Scorer.load().score(*voice)
    assert "embedding" not in repr(s) and s.embedding.shape == (128,) and "prediction=" in repr(s)
