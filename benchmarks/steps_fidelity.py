"""How much the edit changes with fewer noise levels (``--steps``), against how much it changes
with another noise seed: the yardstick for choosing the default steps.

For validation clips (EmoDB speaker 10, RAVDESS actor 19, nEMO speaker MP0; 10 of each, targets
taken in turn), the edit's gain (the calibrated mel-band gain ``Enhancer`` applies, dB) at each
``(steps, seed)`` is compared with the one at 8 steps and seed 0: the correlation over all
cells and the mean absolute difference relative to the mean absolute gain. The noise of level
``i`` is the ``i``-th draw of the seed's generator whatever the steps, so rows with seed 0 share
their first draws with the reference (at other noise levels); the seed-1 rows share none.
Prints a table and writes JSON.

    python benchmarks/steps_fidelity.py --data ../shared/data --json docs/eval/steps/fidelity.json
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.clips import corpus_files  # noqa: E402

CONFIGS = ((8, 1), (6, 0), (4, 0), (4, 1), (3, 0), (2, 0))
TARGETS = ("angry", "sad", "happy", "fear", "neutral", "disgust")


def validation_clips(data: Path) -> list[Path]:
    return (corpus_files(data, "emodb", True)[:10] + corpus_files(data, "ravdess", True)[::6][:10]
            + corpus_files(data, "nemo", True)[::5][:10])


def run(data: Path) -> dict:
    from emort.runtime.audio import read_audio
    from emort.runtime.enhancer import Enhancer

    enh = Enhancer.load()
    files = validation_clips(data)
    if not files:
        raise SystemExit(f"no validation clips under {data}")
    per: dict[str, list] = {f"{s} steps, seed {seed}": [] for s, seed in CONFIGS}
    for i, f in enumerate(files):
        a = read_audio(f)
        target = TARGETS[i % len(TARGETS)]

        def gain(steps: int, seed: int, a=a, target=target) -> np.ndarray:
            o = enh.options(steps=steps, seed=seed)
            return enh._edit_gain(enh.plan(a.samples, a.sample_rate, target, o), o)[0]

        ref = gain(8, 0)
        for s, seed in CONFIGS:
            g = gain(s, seed)
            per[f"{s} steps, seed {seed}"].append((float(np.corrcoef(ref.ravel(), g.ravel())[0, 1]),
                                                   float(np.abs(g - ref).mean() / np.abs(ref).mean())))
    rows = [{"config": k, "corr_median": float(np.median([c for c, _ in v])), "corr_min": float(min(c for c, _ in v)),
             "rel_diff_median": float(np.median([d for _, d in v]))} for k, v in per.items()]
    return {"reference": "8 steps, seed 0 (the 0.6 default)", "clips": [str(f.relative_to(data)) for f in files], "rows": rows}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=Path("../shared/data"))
    ap.add_argument("--json", type=Path)
    a = ap.parse_args(argv)
    rep = run(a.data)
    print(f"edit gain vs {rep['reference']}, {len(rep['clips'])} validation clips")
    print("| config | correlation, median (min) | mean abs difference / mean abs gain, median |\n|---|---|---:|")
    for r in rep["rows"]:
        print(f"| {r['config']} | {r['corr_median']:.3f} ({r['corr_min']:.3f}) | {r['rel_diff_median']:.3f} |")
    if a.json:
        from emort.runtime.atomic import write_json_atomic

        write_json_atomic(a.json, rep)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
