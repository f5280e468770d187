"""UA per corpus of an `emort score --json` report on the test (or validation) speakers' files,
six-way (the prediction among all six labels, as `emort score` gives it), from the corpora's file
names. Writes the figures beside the report's model line.

    python docs/ser/egemaps_voice/cli_ua.py SCORES.json [OUT.json]

Run it from the repository root, with the corpora in ../shared/data.
"""
import json
import sys
from pathlib import Path

import numpy as np

from emort.training import corpora

D = ["emodb=../shared/data/emodb", "ravdess=../shared/data/ravdess", "nemo=../shared/data/nemo"]
label = {Path(i.path).name: (i.corpus, i.emotion) for i in corpora.only_canonical(corpora.read_specs(D))}
rep = json.loads(Path(sys.argv[1]).read_text())
out = {"model": rep["model"], "settings": rep["settings"], "ua": {}, "n": {}}
for c in ("emodb", "ravdess", "nemo"):
    rows = [(label[n][1], r["prediction"]) for r in rep["results"] if (n := Path(r["path"]).name) in label and label[n][0] == c]
    if rows:
        out["ua"][c] = float(np.mean([np.mean([p == e for t, p in rows if t == e]) for e in sorted({t for t, _ in rows})]))
        out["n"][c] = len(rows)
print(json.dumps(out, indent=1))
if len(sys.argv) > 2:
    Path(sys.argv[2]).write_text(json.dumps(out, indent=1) + "\n")
