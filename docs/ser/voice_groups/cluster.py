"""Speakers found by voice: clips grouped by their GE2E embeddings, the candidate of
docs/ser/voice_groups/PREREGISTRATION.md for per-speaker scoring of a folder whose speakers are
not labelled. Not adopted (report.md), so it lives here, beside the script that measured it.

Agglomerative clustering with average linkage (UPGMA) on cosine similarity, cut where the
average similarity between two groups falls below ``threshold``: the clustering the GE2E
encoder's paper uses its embeddings for ("Generalized End-to-End Loss for Speaker
Verification", speaker diarization), here over whole clips. numpy only (written for the runtime, which imports no scipy):
the nearest-neighbour-chain algorithm, O(n^2) time and n^2 float32 of memory, and the same
groups as ``scipy.cluster.hierarchy.fcluster(linkage(x, "average", "cosine"), 1 - threshold,
"distance")`` (checked on 200 random sets).
"""

from __future__ import annotations

import numpy as np

from emort.runtime.errors import EmortError

#: Similarity below which two groups of clips are not the same speaker (average cosine between
#: their GE2E embeddings): the threshold the preregistered rule chose on non-test speakers.
VOICE_THRESHOLD = 0.70
#: Most clips grouped at once: the similarity matrix takes MAX_CLIPS^2 float32 (400 MB).
MAX_CLIPS = 10_000


def group_by_voice(embeddings: np.ndarray, threshold: float = VOICE_THRESHOLD) -> np.ndarray:
    """Average-linkage groups of ``embeddings`` ``(n, D)`` (any scale: each row is L2-normalised).

    Returns ``(n,)`` int group numbers 0, 1, ..., numbered in order of each group's first clip.
    Two groups merge while the mean cosine similarity over all pairs of their clips is at least
    ``threshold`` (in [-1, 1]). Raises EmortError above :data:`MAX_CLIPS` clips or for a row of
    zeros or non-finite values.
    """
    x = np.asarray(embeddings, dtype=np.float64)
    if x.ndim != 2:
        raise ValueError(f"embeddings: expected (n, D), got shape {x.shape}")
    n = len(x)
    if n > MAX_CLIPS:
        raise EmortError(f"grouping by voice: {n} clips, more than {MAX_CLIPS} at once; give one folder per speaker, "
                         "or --speaker-pattern, or fewer files per run")
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    norms = np.linalg.norm(x, axis=1)
    if not np.all(np.isfinite(x)) or np.any(norms == 0):
        raise EmortError("grouping by voice: an embedding is zero or not finite")
    x /= norms[:, None]
    sim = (x @ x.T).astype(np.float32)
    np.fill_diagonal(sim, -np.inf)
    size = np.ones(n)
    active = np.ones(n, dtype=bool)
    parent = np.arange(n)  # union-find over the merges made
    chain: list[int] = []
    # Nearest-neighbour chain: follow each cluster's most similar partner until two are each
    # other's; average linkage is reducible, so merging such a pair gives the same dendrogram
    # as always merging the globally closest pair. A cluster whose best partner lies below the
    # threshold can never reach it (a merged cluster's similarity is a mean of its parts'),
    # so it is final.
    while True:
        if not chain:
            left = np.flatnonzero(active)
            if len(left) < 2:
                break
            chain.append(int(left[0]))
        a = chain[-1]
        row = np.where(active, sim[a], -np.inf)
        b = int(np.argmax(row))
        if len(chain) > 1 and row[chain[-2]] >= row[b]:
            b = chain[-2]  # ties go back down the chain, so it cannot cycle
        if row[b] < threshold:
            active[a] = False
            chain.pop()
            continue
        if len(chain) > 1 and b == chain[-2]:
            chain.pop()
            chain.pop()
            # Lance-Williams update for average linkage; the merged cluster keeps index a
            merged = (size[a] * sim[a] + size[b] * sim[b]) / (size[a] + size[b])
            sim[a, :] = merged
            sim[:, a] = merged
            sim[a, a] = -np.inf
            active[b] = False
            sim[b, :] = -np.inf
            sim[:, b] = -np.inf
            size[a] += size[b]
            parent[b] = a
        else:
            chain.append(b)
    root = parent.copy()
    for i in range(n):  # follow each clip to the cluster it ended in
        r = i
        while root[r] != r:
            r = root[r]
        root[i] = r
    _, first, labels = np.unique(root, return_index=True, return_inverse=True)
    order = np.argsort(np.argsort(first))  # number groups by their first clip
    return order[labels].astype(np.int64)
