"""Train the companion contour model (emort.training.prosody_model) on the speakers the shipped
bundle's diffusion model and prosody table were trained on (27 speakers; V1 and the test speakers
never read). Contours and SER embeddings are cached in runs/prosody_model/features.npz.

    python docs/eval/conversion/prosody_model/train.py [--max-minutes 25]
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

import numpy as np

from emort.runtime.audio import read_audio
from emort.runtime.enhancer import Enhancer
from emort.runtime.settings import EMOTIONS
from emort.training import corpora
from emort.training.prosody_model import ContourTrainConfig, raw_contours, train_contour_model

DATA = ["emodb=../shared/data/emodb", "ravdess=../shared/data/ravdess", "nemo=../shared/data/nemo"]
OUT = Path("runs/prosody_model")


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--max-minutes", type=float, default=25.0)
    ap.add_argument("--steps", type=int, default=4000)
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, stream=sys.stdout, format="%(asctime)s %(message)s")
    enh = Enhancer.load(device="cpu")
    b = enh.bundle
    speakers = set(b.training["diffusion"].split.train_speakers)
    assert speakers == set(b.prosody.source["speakers"]), "the table and the diffusion model were trained on the same speakers"
    items = [i for i in corpora.only_canonical(corpora.read_specs(DATA), EMOTIONS) if i.speaker_key in speakers]
    cache = OUT / "features.npz"
    t0 = time.time()
    if cache.is_file():
        z = np.load(cache, allow_pickle=True)
        contours, emb = list(z["contours"]), z["embeddings"]
        assert list(z["paths"]) == [i.path for i in items]
    else:
        contours, emb = [], []
        for k, it in enumerate(items):
            a = read_audio(it.path)
            contours.append(raw_contours(a.samples if a.samples.ndim == 1 else a.samples.mean(1), a.sample_rate, b.mel))
            emb.append(enh.conditioning_score(a.samples, a.sample_rate).embedding)
            if k % 200 == 0:
                print(f"[{time.time() - t0:.0f} s] features {k}/{len(items)}", flush=True)
        emb = np.stack(emb)
        OUT.mkdir(parents=True, exist_ok=True)
        boxed = np.empty(len(contours), dtype=object)
        for k, c in enumerate(contours):
            boxed[k] = c
        np.savez(cache, contours=boxed, embeddings=emb, paths=np.array([i.path for i in items]))
    centroids = np.stack([b.centroids[i.emotion] for i in items])
    meta = {"speakers": sorted(speakers), "clips": len(items), "bundle_edit_hash": b.edit_hash}
    cfg = ContourTrainConfig(out=str(OUT), steps=args.steps, max_minutes=args.max_minutes)
    train_contour_model(cfg, contours, emb, centroids, [i.speaker_key for i in items], b.mel, meta)
    print(f"[{time.time() - t0:.0f} s] done", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
