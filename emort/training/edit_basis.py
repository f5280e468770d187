"""Natural within-speaker spectral variation: the bundle's ``edit_basis``.

With ``EditOptions.subspace`` K (``emort enhance --subspace K``) the edit keeps each frame's gain
to the first K components of this basis (measured on the validation speakers and not adopted as
the default: docs/eval/adaptive/report.md).
Measured on training speakers only: each clip's mean log-mel over its active frames (the runtime's
front end, on the model's grid, dB), minus its speaker's mean clip; the principal components of
these offsets, pooled over speakers. What one speaker's recordings vary along (emotion, sentence,
vocal effort), not what tells speakers apart.
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np

from emort.runtime.settings import MelSettings


def clip_means(items, settings: MelSettings) -> dict[str, list[np.ndarray]]:
    """Speaker key -> each clip's mean log-mel over its active frames, dB ``(n_mels,)``, read
    through the runtime's front end (:func:`emort.runtime.audio.model_rate_signal`,
    :func:`emort.runtime.frontend.log_mel`)."""
    from emort.runtime.audio import model_rate_signal, read_audio, to_float, to_mono
    from emort.runtime.frontend import NATS_TO_DB, active_frames, log_mel

    by_spk: dict[str, list[np.ndarray]] = defaultdict(list)
    for it in items:
        a = read_audio(it.path)
        m = log_mel(model_rate_signal(to_mono(to_float(a.samples)), a.sample_rate, settings.sample_rate), settings)
        by_spk[it.speaker_key].append(m[:, active_frames(m)].mean(axis=1, dtype=np.float64) * NATS_TO_DB)
    return by_spk


def _components(rows: np.ndarray, what: str) -> tuple[np.ndarray, np.ndarray]:
    """Principal directions of ``rows`` (already centred) with variance, and their variance shares."""
    _, s, vt = np.linalg.svd(rows, full_matrices=False)
    keep = s > 1e-10 * s[0] if len(s) and s[0] > 0 else np.zeros(len(s), bool)
    if not keep.any():
        raise ValueError(f"{what}: no variation left")
    var = s[keep] ** 2
    return vt[keep], var / var.sum()


def speaker_basis(items, settings: MelSettings) -> tuple[np.ndarray, np.ndarray, int]:
    """Principal directions that tell speakers apart: ``(components (n, n_mels), explained (n,),
    speakers used)``. Each speaker's mean clip (:func:`clip_means`) minus the mean of its corpus's
    speakers (the corpus is the key's part before ``/``: channels and bandwidths are not voices);
    a corpus with one speaker adds nothing. A speaker's mean is over whatever emotions it
    recorded, so an uneven mix can leak emotion into these directions. Raises ValueError when no
    corpus has two speakers."""
    by_spk = clip_means(items, settings)
    by_corpus: dict[str, list[np.ndarray]] = defaultdict(list)
    for spk, v in by_spk.items():
        by_corpus[spk.split("/")[0]].append(np.mean(v, axis=0))
    groups = [np.stack(v) - np.mean(v, axis=0) for v in by_corpus.values() if len(v) > 1]
    if not groups:
        raise ValueError("speaker_basis needs two speakers of one corpus or more")
    rows = np.concatenate(groups)
    comps, explained = _components(rows, "speaker_basis")
    return comps, explained, len(rows)


def natural_basis(items, settings: MelSettings) -> tuple[np.ndarray, np.ndarray, int]:
    """``(components (n, n_mels) float64 with orthonormal rows, largest variance first;
    explained variance ratio (n,); clips used)``, n <= min(clips, n_mels).

    ``items``: corpus items (``.path``, ``.speaker_key``), read through the runtime's front end
    (:func:`emort.runtime.audio.model_rate_signal`, :func:`emort.runtime.frontend.log_mel`); a
    speaker with one clip adds nothing (no within-speaker offset). Only components with variance
    are returned (the offsets' rank is at most clips minus speakers). Raises ValueError when no
    within-speaker variation is left."""
    by_spk = clip_means(items, settings)
    groups = [np.stack(v) - np.mean(v, axis=0) for v in by_spk.values() if len(v) > 1]
    if sum(len(g) for g in groups) < 2:
        raise ValueError("natural_basis needs speakers with two clips or more")
    offsets = np.concatenate(groups)
    comps, explained = _components(offsets, "natural_basis: the clips within each speaker")
    return comps, explained, len(offsets)
