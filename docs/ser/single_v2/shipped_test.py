"""The shipped bundle's `emort score --clip-stats` reading (ser_clip x stats_clip, the latter fitted with
the validation speakers too) and its plain single-clip reading, on the test speakers at the recorded
level: docs/ser/single_v2/shipped_test.json. Run from the repository root (about a minute).

    python docs/ser/single_v2/shipped_test.py
"""
import json
from pathlib import Path

import numpy as np

from emort import Scorer
from emort.evaluation.scorer_compare import ua_present
from emort.runtime.audio import read_audio
from emort.training.corpora import only_canonical, read_specs
from emort.training.splits import TEST_SPEAKERS

D = ["emodb=../shared/data/emodb", "ravdess=../shared/data/ravdess", "nemo=../shared/data/nemo"]
readers = {"ser_clip": Scorer.load(), "ser_clip x stats_clip": Scorer.load(clip_stats=True)}
labels = tuple(readers["ser_clip"].bundle.labels)
items = [i for i in only_canonical(list(read_specs(D))) if i.speaker_key in TEST_SPEAKERS]
out: dict = {"speakers": sorted(TEST_SPEAKERS), "ua": {}}
for corp in ("emodb", "ravdess", "nemo"):
    cc = [i for i in items if i.corpus == corp]
    audio = [read_audio(i.path) for i in cc]
    y = np.array([labels.index(i.emotion) for i in cc])
    for name, sc in readers.items():
        p = np.array([[s.scores[k] for k in labels] for s in (sc.score(a.samples, a.sample_rate) for a in audio)])
        out["ua"].setdefault(name, {})[corp] = ua_present(y, p, len(labels))
    print(corp, len(cc), {n: round(v[corp], 3) for n, v in out["ua"].items()}, flush=True)
Path(__file__).with_name("shipped_test.json").write_text(json.dumps(out, indent=1) + "\n")
