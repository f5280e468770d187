"""``python -m emort.evaluation.prosody_probe``: do pitch and tempo carry what the spectral edit cannot?

A DSP probe for the prosody work, judged like the enhancement (the three judges of
``emort.evaluation.judge_panel``, fitted on training speakers only, each speaker z-scored with
its original clips). Per emotion, a fixed prosody change relative to neutral, measured on the
TRAINING speakers: the F0 shift in semitones (mean over speakers of the eGeMAPS mean F0 of the
emotion's clips minus that of their neutral clips) and the tempo factor (median duration of the
speaker's neutral clips over that of the emotion's; > 1 is faster). Rendered with Signalsmith
Stretch (``python-stretch``, MIT; installed with audiomentations, the ``[augment]`` extra): a
pitch shift (the formants move with it: this binding does not expose the library's formant
compensation) and a time stretch, measured for transparency at identity (0 semitones, factor
1: the processor runs, nothing is asked of it).

On the chosen split's speakers (validation by default), neutral clips are converted to each
other emotion by (a) emort's spectral edit at the bundle defaults, (b) the prosody change,
(c) both (prosody first, then the spectral edit); the report gives the share of clips each
judge calls the target. This is a probe of what a predicted prosody edit could gain, not the
edit itself (the prosody here is the same for every clip of an emotion).
"""

from __future__ import annotations

import argparse
from collections import defaultdict
from pathlib import Path

import numpy as np

from emort.runtime.atomic import write_json_atomic, write_text_atomic
from emort.runtime.settings import EMOTIONS
from emort.training import corpora
from emort.training.splits import TEST_SPEAKERS, VAL_SPEAKERS

F0_FEATURE = "F0semitoneFrom27.5Hz_sma3nz_amean"


def stretch(wav: np.ndarray, sample_rate: int, semitones: float, tempo: float) -> np.ndarray:
    """Pitch shift by ``semitones`` and play ``tempo`` times faster (float32 mono in and out):
    the runtime's ``stretch-raw`` renderer, run even at identity (the probe measures it there)."""
    from emort.runtime.prosody import ProsodyEdit, render_prosody

    return render_prosody(wav, sample_rate, ProsodyEdit(semitones=semitones, tempo=tempo), "stretch-raw", always=True)


def prosody_targets(items: list, f0: np.ndarray) -> dict[str, dict[str, float]]:
    """Per emotion: ``semitones`` and ``tempo`` relative to neutral, averaged over the speakers of ``items``."""
    import soundfile as sf

    by = defaultdict(lambda: defaultdict(list))
    for it, v in zip(items, f0):
        by[it.speaker_key][it.emotion].append((float(v), sf.info(it.path).duration))
    out: dict[str, dict[str, list]] = defaultdict(lambda: {"semitones": [], "tempo": []})
    for emo in by.values():
        if "neutral" not in emo:
            continue
        f_n = np.mean([v for v, _ in emo["neutral"]])
        d_n = np.median([d for _, d in emo["neutral"]])
        for e, rows in emo.items():
            if e != "neutral":
                out[e]["semitones"].append(np.mean([v for v, _ in rows]) - f_n)
                out[e]["tempo"].append(d_n / np.median([d for _, d in rows]))
    return {e: {k: float(np.mean(v)) for k, v in d.items()} | {"speakers": len(d["tempo"])} for e, d in out.items()}


def main(argv: list[str] | None = None) -> int:
    from emort.evaluation.judge_panel import JudgePanel, egemaps_feature_names
    from emort.runtime.audio import read_audio
    from emort.runtime.enhancer import Enhancer
    from emort.training.metrics import classification_report

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", action="append", required=True, help="KIND=PATH, repeatable")
    ap.add_argument("--split", choices=("val", "test"), default="val")
    ap.add_argument("--out", type=Path, default=Path("reports/prosody_probe"))
    args = ap.parse_args(argv)

    items = corpora.only_canonical(corpora.read_specs(args.data), EMOTIONS)
    held = set(TEST_SPEAKERS) | set(VAL_SPEAKERS)
    train = [i for i in items if i.speaker_key not in held]
    chosen = set(VAL_SPEAKERS if args.split == "val" else TEST_SPEAKERS)
    clips = [i for i in items if i.speaker_key in chosen]
    panel = JudgePanel().fit(train)
    f_train = panel.items_features(train)
    targets = prosody_targets(train, f_train["J2"][:, egemaps_feature_names().index(F0_FEATURE)])

    f_orig = panel.items_features(clips)
    spk = [i.speaker_key for i in clips]
    ref = panel.reference(f_orig, spk)
    labels = list(EMOTIONS)
    y = [labels.index(i.emotion) for i in clips]
    p_orig = panel.predict_proba(f_orig, spk, ref)
    audio = [read_audio(i.path) for i in clips]
    f_id = panel.wav_features([(stretch(a.samples, a.sample_rate, 0.0, 1.0), a.sample_rate) for a in audio])
    p_id = panel.predict_proba(f_id, spk, ref)
    transparency = {j: {"original_ua": classification_report(y, p_orig[j].argmax(1), labels).ua,
                        "identity_ua": classification_report(y, p_id[j].argmax(1), labels).ua} for j in panel.names}

    enh = Enhancer.load(device="cpu")
    neutral = [k for k, i in enumerate(clips) if i.emotion == "neutral"]
    conv: dict[str, dict[str, dict[str, float]]] = {}
    for target in [e for e in labels if e != "neutral" and e in targets]:
        t = targets[target]
        rows: dict[str, list] = {"original": [], "emort": [], "prosody": [], "prosody+emort": []}
        for k in neutral:
            a = audio[k]
            pro = stretch(a.samples, a.sample_rate, t["semitones"], t["tempo"])
            rows["original"].append((a.samples, a.sample_rate))
            rows["emort"].append((enh.enhance(a.samples, a.sample_rate, target, score_output=False).wav, a.sample_rate))
            rows["prosody"].append((pro, a.sample_rate))
            rows["prosody+emort"].append((enh.enhance(pro, a.sample_rate, target, score_output=False).wav, a.sample_rate))
        s = [spk[k] for k in neutral]
        conv[target] = {}
        for name, wavs in rows.items():
            p = panel.predict_proba(panel.wav_features(wavs), s, ref)
            conv[target][name] = {j: float(np.mean(p[j].argmax(1) == labels.index(target))) for j in panel.names}
    result = {"split": args.split, "speakers": sorted(chosen & set(spk)), "neutral_clips": len(neutral), "targets": targets,
              "transparency": transparency, "conversion": conv}
    args.out.mkdir(parents=True, exist_ok=True)
    write_json_atomic(args.out / "prosody_probe.json", result)
    md = [f"# Prosody probe ({args.split} speakers: {', '.join(result['speakers'])}; {len(neutral)} neutral clips)\n",
          "Per-emotion prosody from the training speakers (F0 shift in semitones, tempo factor > 1 = faster):\n",
          "| emotion | semitones | tempo | speakers |", "|---|---:|---:|---:|"]
    md += [f"| {e} | {t['semitones']:+.2f} | {t['tempo']:.3f} | {t['speakers']} |" for e, t in targets.items()]
    md += ["", "Transparency of the renderer at identity (UA of all clips of these speakers):\n",
           "| judge | original | through the stretcher at identity |", "|---|---:|---:|"]
    md += [f"| {j} | {v['original_ua']:.3f} | {v['identity_ua']:.3f} |" for j, v in transparency.items()]
    md += ["", "Neutral -> target: share judged as the target (J1 statistics / J2 eGeMAPS / J3 voice encoder):\n",
           "| target | original | emort (spectral) | prosody | prosody + emort |", "|---|---|---|---|---|"]
    for target, r in conv.items():
        md.append(f"| {target} | " + " | ".join(" / ".join(f"{r[n][j]:.2f}" for j in panel.names) for n in r) + " |")
    mean = {n: {j: float(np.mean([conv[t][n][j] for t in conv])) for j in panel.names} for n in next(iter(conv.values()))}
    md.append("| **mean** | " + " | ".join(" / ".join(f"{mean[n][j]:.2f}" for j in panel.names) for n in mean) + " |")
    write_text_atomic(args.out / "prosody_probe.md", "\n".join(md) + "\n")
    print("\n".join(md))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
