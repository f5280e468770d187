"""``python -m emort.evaluation.prosody_plan_eval``: how well each way of planning a conversion's F0
change hits the speaker's own F0 level for the target emotion.

For every clip of a speaker and every other emotion that speaker recorded, the *wanted* change
is the speaker's mean F0 level (median log-F0 of a clip, semitones) over its clips of the target
emotion minus the clip's own level (and likewise for the log of the F0 range). Each plan's
change is compared with it (RMS error, semitones; the pitch share is 1 here: the plan itself,
not how much of it is applied):

* ``clip``: the shipped plan of one clip alone (:func:`emort.runtime.prosody.plan_prosody`):
  the target's row of the bundle's prosody table minus the row the SER posterior expects;
* ``speaker``: the same plan given the speaker's baseline
  (:func:`emort.runtime.prosody.speaker_prosody`), aimed at the speaker's target level. The
  baseline of a (speaker, target) pair comes from the speaker's clips of the OTHER emotions
  (someone converting to anger has no angry recordings of the speaker), the source clip
  included;
* three learned alternatives, ridge regressions per target emotion fitted on the training
  speakers (leave one speaker out when scored on them): ``ridge-posterior`` (the SER
  posterior only: a learned version of ``clip``), ``ridge-clip`` (+ the clip's own F0 level and
  range: what one clip can tell) and ``ridge-speaker`` (+ the clip's level and range relative to
  the speaker's baseline: a learned version of ``speaker``).

The wanted change counts the clip's own level, so the clip-alone plan, which cannot see it, is
charged with the clip's sentence-to-sentence F0 variation and the per-speaker plan is not (it
moves each clip to the speaker's mean target level, which is what it is for).

Clip statistics and SER scores are :meth:`emort.runtime.enhancer.Enhancer.speaker_clip`, the
ones ``Enhancer.enhance(..., speaker_prosody=...)`` uses. The bundle's prosody table was measured on the same
training speakers, so the figures on them flatter both table-based plans alike; the validation
speakers' are out of sample for everything. Test speakers are never read.
Writes ``OUT/prosody_plan.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import math
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

from emort.runtime.atomic import write_json_atomic, write_text_atomic
from emort.runtime.settings import EMOTIONS
from emort.training import corpora
from emort.training.splits import TEST_SPEAKERS, VAL_SPEAKERS

PLANS = ("clip", "speaker", "ridge-posterior", "ridge-clip", "ridge-speaker")
RIDGE = 1.0  # the regressions' L2 penalty (intercepts free); 0.1 and 10 give the same errors within 0.03 st


def _features(kind: str, clip: dict, scores: np.ndarray, base) -> np.ndarray:
    x = [1.0, *scores]
    if kind == "ridge-clip":
        x += [clip["level"] / 12.0, math.log(clip["range"])]
    elif kind == "ridge-speaker":
        x += [(clip["level"] - base.level) / 12.0, math.log(clip["range"] / base.range)]
    return np.array(x)


def _ridge(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    reg = RIDGE * np.eye(x.shape[1])
    reg[0, 0] = 0.0
    return np.linalg.solve(x.T @ x + reg, x.T @ y)


def main(argv: list[str] | None = None) -> int:
    from emort.runtime.audio import read_audio
    from emort.runtime.enhancer import Enhancer
    from emort.runtime.prosody import ProsodyOptions, plan_prosody, speaker_prosody

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", action="append", required=True, help="KIND=PATH, repeatable")
    ap.add_argument("--bundle", type=Path, default=None, help="another bundle (default: the shipped one)")
    ap.add_argument("--out", type=Path, default=Path("reports/prosody_plan"))
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    enh = Enhancer.load(args.bundle, device="cpu")
    table = enh.bundle.prosody
    labels = list(EMOTIONS)
    items = [i for i in corpora.only_canonical(corpora.read_specs(args.data), EMOTIONS) if i.speaker_key not in set(TEST_SPEAKERS)]
    got = []
    for it in items:
        a = read_audio(it.path)
        got.append(enh.speaker_clip(a.samples, a.sample_rate))
    by_spk: dict[str, list[int]] = defaultdict(list)
    for k, it in enumerate(items):
        by_spk[it.speaker_key].append(k)
    # each (speaker, target) baseline from the speaker's clips of the other emotions
    base = {(s, e): speaker_prosody([got[k] for k in ks if items[k].emotion != e], table) for s, ks in by_spk.items() for e in labels}
    target_level: dict[tuple[str, str], tuple[float, float]] = {}
    for s, ks in by_spk.items():
        for e in labels:
            v = [got[k][0] for k in ks if items[k].emotion == e and got[k][0] is not None]
            if v:
                target_level[(s, e)] = (float(np.mean([u["level"] for u in v])), float(np.mean([math.log(u["range"]) for u in v])))
    one = ProsodyOptions(pitch=1.0)
    rows = []  # one per (clip, target): speaker, corpus, split, target, wanted (2), plans (2 each), features per ridge kind
    for k, it in enumerate(items):
        clip, scores = got[k]
        s = it.speaker_key
        if clip is None:
            continue
        p = np.array([scores.get(e, 0.0) for e in labels])
        for e in labels:
            if e == it.emotion or (s, e) not in target_level or e not in table.emotions or base[(s, e)] is None:
                continue
            lv, lr = target_level[(s, e)]
            alone = plan_prosody(table, {e: 1.0}, scores, one)
            per = plan_prosody(table, {e: 1.0}, scores, one, clip, base[(s, e)])
            rows.append({"speaker": s, "corpus": s.split("/")[0], "val": s in VAL_SPEAKERS, "target": e,
                         "wanted": (lv - clip["level"], lr - math.log(clip["range"])),
                         "clip": (alone.semitones, math.log(alone.f0_range)), "speaker_plan": (per.semitones, math.log(per.f0_range)),
                         "x": {kind: _features(kind, clip, p, base[(s, e)]) for kind in PLANS[2:]}})
    wanted = np.array([r["wanted"] for r in rows])
    pred = {"clip": np.array([r["clip"] for r in rows]), "speaker": np.array([r["speaker_plan"] for r in rows])}
    val = np.array([r["val"] for r in rows])
    spk = np.array([r["speaker"] for r in rows])
    tgt = np.array([r["target"] for r in rows])
    for kind in PLANS[2:]:
        x = np.stack([r["x"][kind] for r in rows])
        out = np.zeros_like(wanted)
        for e in set(tgt):
            for s in set(spk):  # training speakers: leave that speaker out; validation: fitted on all training speakers
                test = (tgt == e) & (spk == s)
                if not test.any():
                    continue
                fit = (tgt == e) & ~val & (spk != s)
                out[test] = x[test] @ _ridge(x[fit], wanted[fit])
        pred[kind] = out
    corpus = np.array([r["corpus"] for r in rows])
    result: dict = {"rows": len(rows), "speakers": {"train": sorted(set(spk[~val])), "val": sorted(set(spk[val]))},
                    "rms_semitones": {}, "rms_log_range": {}, "ridge": RIDGE, "plan_f0_analysis": "emort.runtime.prosody.PLAN_F0_ANALYSIS"}
    for split, m_split in (("train", ~val), ("val", val)):
        for c in sorted(set(corpus)) + ["all"]:
            m = m_split & ((corpus == c) if c != "all" else True)
            if not m.any():
                continue
            for q, name in ((0, "rms_semitones"), (1, "rms_log_range")):
                result[name].setdefault(split, {})[c] = {p: float(np.sqrt(np.mean((pred[p][m, q] - wanted[m, q]) ** 2))) for p in PLANS}
    result["seconds"] = round(time.perf_counter() - t0, 1)
    args.out.mkdir(parents=True, exist_ok=True)
    write_json_atomic(args.out / "prosody_plan.json", result)
    md = render_markdown(result)
    write_text_atomic(args.out / "prosody_plan.md", md)
    print(md)
    return 0


def render_markdown(r: dict) -> str:
    md = ["# Conversion F0 plans against each speaker's own target level\n",
          f"{r['rows']} (clip, target) pairs. RMS error of the planned change against the wanted one (pitch share 1). "
          "Training speakers: each ridge is fitted without the speaker it is scored on, but the prosody table (clip, speaker) "
          "was measured on all of them; validation speakers: nothing was fitted or measured on them. The per-speaker baselines "
          "(speaker, ridge-speaker) come from the speaker's clips of the other emotions, as a user converting to an emotion "
          "has them.\n"]
    for name, unit in (("rms_semitones", "F0 level, semitones"), ("rms_log_range", "log F0 range")):
        md += [f"## {unit}\n", "| speakers | corpus | " + " | ".join(PLANS) + " |", "|---|---|" + "---:|" * len(PLANS)]
        for split, by in r[name].items():
            for c, v in by.items():
                md.append(f"| {split} | {c} | " + " | ".join(f"{v[p]:.2f}" for p in PLANS) + " |")
        md.append("")
    return "\n".join(md) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())
