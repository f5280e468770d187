"""The "direction" edit: source + guidance x mean(x0_cond - x0_uncond)."""

import numpy as np

from emort.runtime.editing import DiffusionSpec, EditOptions, edit_mel
from emort.runtime.samplers import NoiseSchedule

S = NoiseSchedule()


def model_fn(x, t, emotion, mask, style):
    """Toy v-model whose conditional x0 is the unconditional one shifted by emotion[0] per band."""
    ab = S.alphas_cumprod[t.astype(int)][:, None, None]  # per row: batched edits mix noise levels
    a, s = np.sqrt(ab), np.sqrt(1 - ab)
    x0 = x * 0.0 + 0.5 + mask[:, :, None] * emotion[:, :1, None]  # (B, n_mels, T)
    return (a * x - x0) / s  # v such that a*x - s*v = x0


def test_direction_is_source_plus_scaled_delta():
    src = np.random.default_rng(0).standard_normal((4, 10)).astype(np.float32)
    emo = np.array([0.3, 0.0], np.float32)
    style = np.zeros(2, np.float32)
    for g in (0.0, 1.0, 2.5):
        out = edit_mel(model_fn, src, emo, style, EditOptions(strength=0.5, guidance=g, steps=3, method="direction"), DiffusionSpec(S, "v", 2))
        np.testing.assert_allclose(out, src + g * 0.3, atol=1e-4)
    same = edit_mel(model_fn, src, emo, style, EditOptions(strength=0.0, guidance=5, method="direction"), DiffusionSpec(S, "v", 2))
    np.testing.assert_array_equal(same, src)


def test_direction_respects_backend_batch_limit_and_validates():
    import pytest

    from emort.runtime.errors import EmortError

    seen = []

    def limited(x, t, emotion, mask, style):
        seen.append(x.shape[0])
        return model_fn(x, t, emotion, mask, style)

    src = np.random.default_rng(1).standard_normal((4, 12)).astype(np.float32)
    emo, style = np.array([0.2, 0.0], np.float32), np.zeros(2, np.float32)
    opts = EditOptions(strength=0.6, guidance=3, steps=8, method="direction")
    full = edit_mel(model_fn, src, emo, style, opts, DiffusionSpec(S, "v", 2))
    chunked = edit_mel(limited, src, emo, style, opts, DiffusionSpec(S, "v", 2, 4))
    assert max(seen) <= 4 and len(seen) == 4  # 8 levels, 2 per call (cond + uncond rows)
    np.testing.assert_allclose(chunked, full, atol=1e-5)
    for bad in (dict(steps=2.5), dict(seed=-1)):
        with pytest.raises(EmortError):
            EditOptions(method="direction", **bad).validate()
