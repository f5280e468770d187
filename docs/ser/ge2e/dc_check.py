"""Criterion 2 of PREREGISTRATION_dc.md: how far a DC offset added to every clip of a speaker moves
per-speaker scores. ``python docs/ser/ge2e/dc_check.py BUNDLE [OFFSET]``: every clip (any label) of
each validation speaker, scored per speaker with and without the offset; the largest probability
change and the predictions that change, per speaker, with the voice classifier and without it."""

import sys

import numpy as np
import soundfile as sf

from emort.runtime.scorer import Scorer
from emort.training import corpora
from emort.training.splits import VAL_SPEAKERS

bundle = sys.argv[1]
offset = float(sys.argv[2]) if len(sys.argv) > 2 else 0.05
items = corpora.read_specs(["emodb=../shared/data/emodb", "ravdess=../shared/data/ravdess", "nemo=../shared/data/nemo"])
for voice in (True, False):
    sc = Scorer.load(bundle, device="cpu", per_speaker=True, voice=voice)
    worst = 0.0
    for spk in sorted(VAL_SPEAKERS):
        clips = [sf.read(i.path, dtype="float32") for i in items if i.speaker_key == spk]
        a = np.array([list(s.scores.values()) for s in sc.score_speaker(clips)])
        b = np.array([list(s.scores.values()) for s in sc.score_speaker([(w + np.float32(offset), sr) for w, sr in clips])])
        d = float(np.abs(a - b).max())
        worst = max(worst, d)
        print(f"{'voice' if voice else 'no-voice'} {spk}: {len(clips)} clips, max |dp| {d:.4f}, "
              f"predictions changed {int((a.argmax(1) != b.argmax(1)).sum())}", flush=True)
    print(f"{'voice' if voice else 'no-voice'}: largest change {worst:.4f}")
