"""How `emort score` holds up on degraded recordings: each clip of the validation (V1) and test
speakers read as recorded and after one fixed degradation, by the three readings a user has:
a clip alone (`emort score`), a clip alone with `--clip-stats`, and a speaker's folder
(`emort score --per-speaker`, every clip of the speaker degraded alike, as one microphone would).
A measurement, not a choice: nothing here changes a default. Writes docs/ser/conditions/ua.json.

    python docs/ser/conditions/measure.py                      # ~15 minutes on 2 cores; the [augment] extra
    python docs/ser/conditions/measure.py ua_0.28.json single,clip-stats test   # some readings, some groups

Degradations (each seeded per clip, at the file's own rate; audiomentations, soxr):
phone (band-limited to 8 kHz sampling: soxr down and up), mp3 (32 kbit/s), reverb
(audiomentations' RoomSimulator, a room drawn per clip), noise 20 / 10 dB (white Gaussian noise at
that SNR over the whole clip), quiet (-20 dB).
"""
import json
import sys
from pathlib import Path

import numpy as np
import soundfile as sf

sys.path.insert(0, str(Path(__file__).parent))
from degrade import KINDS, clip_seed, degrade  # noqa: E402

from emort import Scorer  # noqa: E402
from emort.evaluation.scorer_compare import CORPORA, SHARED_DATA, cell_pool, ua_present
from emort.training.splits import TEST_SPEAKERS, VAL_SPEAKERS

OUT = sys.argv[1] if len(sys.argv) > 1 else "ua.json"
READINGS = sys.argv[2].split(",") if len(sys.argv) > 2 else ["single", "clip-stats", "per-speaker"]
single = Scorer.load(threads=2)
clip_stats = Scorer.load(threads=2, clip_stats=True)
per_speaker = Scorer.load(threads=2, per_speaker=True)
LABELS = tuple(single.bundle.labels)
c = cell_pool(SHARED_DATA, LABELS, "val")
groups = {"validation (V1)": list(VAL_SPEAKERS), "test": list(TEST_SPEAKERS)}
if len(sys.argv) > 3:
    groups = {g: s for g, s in groups.items() if g.startswith(sys.argv[3])}
out: dict = {"kinds": KINDS, "groups": groups, "readings": READINGS, "ua": {}}
for gname, speakers in groups.items():
    for kind in KINDS:
        probs = {r: {} for r in READINGS}
        for s in speakers:
            ks = [int(k) for k in np.where(c.speakers == s)[0]]  # every clip of the speaker, any label
            clips = []
            for k in ks:
                x, sr = sf.read(c.items[k].path, dtype="float32")
                x = x.mean(axis=1) if x.ndim == 2 else x  # a few files are stereo: the scorer reads the mono mix anyway
                clips.append((degrade(kind, x, sr, clip_seed(c.items[k].path)), sr))
            if "per-speaker" in probs:
                for k, sc in zip(ks, per_speaker.score_speaker(clips)):
                    probs["per-speaker"][k] = [sc.scores[lab] for lab in LABELS]
            for k, (w, sr) in zip(ks, clips):
                if c.canonical[k]:
                    for r, scorer in (("single", single), ("clip-stats", clip_stats)):
                        if r in probs:
                            probs[r][k] = [scorer.score(w, sr).scores[lab] for lab in LABELS]
        for reading, pk in probs.items():
            for corp in CORPORA:
                ks = [k for k in pk if c.canonical[k] and c.corpora[k] == corp]
                ua = ua_present(c.y[ks], np.array([pk[k] for k in ks]), len(LABELS))
                out["ua"].setdefault(gname, {}).setdefault(reading, {}).setdefault(kind, {})[corp] = ua
        print(gname, kind, {r: {k: round(v, 3) for k, v in out["ua"][gname][r][kind].items()} for r in probs}, flush=True)
Path(__file__).with_name(OUT).write_text(json.dumps(out, indent=1) + "\n")
