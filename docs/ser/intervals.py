"""95% UA intervals of the SER figures that issue 17's goals are stated in, from the confusion
matrices in the committed reports (each emotion's recall drawn from its Jeffreys posterior:
``emort.training.metrics.ua_interval``). Run from the repository root:
``python docs/ser/intervals.py``; prints the Markdown table of docs/ser/intervals.md."""

import json
from pathlib import Path

import numpy as np

from emort.training.metrics import ua_interval

ROWS = [  # (what, report, corpus, goal)
    ("held out, per speaker (shipped scorer)", "docs/ser/ge2e/test_rows/held_out_SplusG_fe3/stats_eval.json", "emodb", None),
    ("held out, per speaker (shipped scorer)", "docs/ser/ge2e/test_rows/held_out_SplusG_fe3/stats_eval.json", "ravdess", 0.75),
    ("held out, per speaker (shipped scorer)", "docs/ser/ge2e/test_rows/held_out_SplusG_fe3/stats_eval.json", "nemo", None),
    ("EmoDB leave one speaker out, pooled (8 folds)", "docs/ser/ge2e/test_rows/loso_emodb_SplusG_fe3/stats_eval.json", "emodb", 0.85),
    ("left out of training (leave one corpus out)", "docs/ser/ge2e/test_rows/loco_emodb_SplusG_fe3/stats_eval.json", "emodb", 0.55),
    ("left out of training (leave one corpus out)", "docs/ser/ge2e/test_rows/loco_ravdess_SplusG_fe3/stats_eval.json", "ravdess", 0.55),
    ("single clip (`ser_clip`)", "docs/ser/level/ser_gain10_3c_eval_test.json", "emodb", 0.75),
    ("single clip (`ser_clip`)", "docs/ser/level/ser_gain10_3c_eval_test.json", "ravdess", 0.70),
]


def main() -> None:
    print("| protocol (test speakers, but LOSO: the 8 non-test EmoDB speakers, each held out in turn) | corpus | n | UA | 95% interval | goal |")
    print("|---|---|---:|---:|---|---:|")
    for what, path, corpus, goal in ROWS:
        d = json.loads(Path(path).read_text())["corpora"][corpus]
        lo, hi = ua_interval(np.array(d["confusion"]))
        print(f"| {what} | {corpus} | {d['n']} | {d['ua']:.3f} | [{lo:.3f}, {hi:.3f}] | {'' if goal is None else f'{goal:.2f}'} |")


if __name__ == "__main__":
    main()
