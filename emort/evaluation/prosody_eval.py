"""``python -m emort.evaluation.prosody_eval``: the enhancement with and without its prosody stage.

Judged like ``emort eval enhance`` (the three judges of :mod:`emort.evaluation.judge_panel`,
fitted on the training speakers only, each speaker z-scored with its original clips), on one
split's speakers (``--split val``, where choices are made; ``test`` to report):

* **Transparency**: every clip through each renderer at identity (no change asked; the
  analysis-synthesis, and for ``stretch`` the envelope restoration, run): UA of the judges,
  original vs rendered.
* **Conversion**: each clip of each source emotion (``--sources``, default neutral) enhanced
  toward each other emotion by each configuration (``--configs``): ``spectral`` (the shipped
  edit), ``prosody-<renderer>`` (the prosody stage alone, spectral amount 0) and
  ``both-<renderer>`` (prosody then the spectral edit). Share judged as the target per
  judge, per source x target (the 6 x 6 table with ``--sources all``) and per corpus, and
  what each judge heard instead (``conversion_heard``: counts of predicted labels per target). A
  configuration may name the spectral edit's size in dB after ``@`` (``both-stretch@2``);
  without it, ``spectral`` edits at the bundle's ``amount_db`` and ``both-*`` at its
  ``prosody_amount_db`` (what ``enhance(..., prosody=True)`` does). ``+speaker`` after a
  prosody configuration's name (``both-stretch+speaker@4``) plans the F0 change per speaker
  (``enhance(..., speaker_prosody=...)``): each speaker's baseline from all of its clips in the
  split (measured, not shipped in the CLI: docs/eval/conversion/per_speaker.md); a speaker with
  fewer than ``MIN_GROUP`` (5) clips with F0 is planned clip by clip (``speaker_baselines``:
  null). The report records each configuration's
  resolved options (``options``).
* **Own emotion**: each non-neutral clip enhanced toward its own label; UA per judge.
* **Fidelity**: cosine similarity of speaker embeddings (resemblyzer's GE2E encoder; the
  ``eval`` extra) between each output and its source, mean per configuration.

The prosody stage is :meth:`emort.runtime.enhancer.Enhancer._prosody` via ``enhance(...,
prosody=True)``: the bundle's per-emotion table, minus what the SER posterior expects of
the clip. Reports: ``OUT/prosody_eval_<split>.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

from emort.evaluation.enhance_eval import check_evaluation_speakers
from emort.runtime.atomic import write_json_atomic, write_text_atomic
from emort.runtime.settings import EMOTIONS
from emort.training import corpora
from emort.training.splits import TEST_SPEAKERS, VAL_SPEAKERS

CONFIGS = ("spectral", "prosody-stretch", "both-stretch", "prosody-world", "both-world", "prosody-stretch-raw", "both-stretch-raw")


SPEAKER_SUFFIX = "+speaker"
#: after a prosody configuration's name: its prosody change comes from ``--plans`` (a caller's own
#: plan per clip and target, e.g. docs/eval/conversion/prosody_model/), not from the bundle's table
PLAN_SUFFIX = "+plan"


def f0_fidelity(f0_source: np.ndarray, f0_output: np.ndarray, edit, source_frames: np.ndarray | None = None) -> dict[str, float] | None:
    """How faithfully an output carries its source's F0 with the planned change: ``f0_rmse_st``,
    the RMS over frames voiced in both of (output log-F0 - the source's log-F0 moved as ``edit``
    asks: ``semitones`` added, deviations from the source's median scaled by ``f0_range``),
    in semitones; ``voicing_agreement``, the share of output frames whose voicing matches the
    source frame they come from (all frames, pauses included, where both are mostly unvoiced). Both contours on the mel frame grid
    (:func:`emort.runtime.prosody.f0_contour`). ``source_frames``: the source frame (fractional)
    each output frame comes from (:func:`source_frames`; the stretch renderers' F0 range change
    reads the source at a varying speed); None: frame ``j * tempo``. ``edit``: the applied
    ``ProsodyEdit``, or None (no prosody change). None when no frame is voiced in both."""
    shift, rng, tempo = (0.0, 1.0, 1.0) if edit is None else (edit.semitones, edit.f0_range, edit.tempo)
    if len(f0_output) == 0 or len(f0_source) == 0:
        return None
    pos = np.arange(len(f0_output)) * tempo if source_frames is None else np.asarray(source_frames, np.float64)[: len(f0_output)]
    src = f0_source[np.clip(np.round(pos).astype(int), 0, len(f0_source) - 1)]
    agree = float(np.mean((src > 0) == (f0_output > 0)))
    both = (src > 0) & (f0_output > 0)
    if not both.any():
        return None
    st_src = 12 * np.log2(src[both])
    med = float(np.median(12 * np.log2(f0_source[f0_source > 0])))
    want = med + rng * (st_src - med) + shift
    err = 12 * np.log2(f0_output[both]) - want
    return {"f0_rmse_st": float(np.sqrt(np.mean(err ** 2))), "voicing_agreement": agree}


def source_frames(wav: np.ndarray, sample_rate: int, edit, renderer: str, settings, n_frames: int) -> np.ndarray:
    """The source mel frame (fractional) that each of an output's ``n_frames`` frames renders, from
    :func:`emort.runtime.prosody.prosody_time_map` of the source ``wav`` (mono, DC offset removed,
    as the enhancer hands it to the renderer) and the applied ``edit``."""
    from emort.runtime.prosody import prosody_time_map

    hop = settings.hop_length * sample_rate / settings.sample_rate  # input samples per mel frame
    out_t, in_t = prosody_time_map(wav, sample_rate, edit, renderer, settings)
    return np.interp(np.arange(n_frames) * hop, out_t, in_t) / hop


def per_speaker(name: str) -> bool:
    """Whether configuration ``name`` plans its F0 change per speaker (``+speaker``)."""
    return name.partition("@")[0].endswith(SPEAKER_SUFFIX)


def planned(name: str) -> bool:
    """Whether configuration ``name`` takes its prosody change from ``--plans`` (``+plan``)."""
    return name.partition("@")[0].endswith(PLAN_SUFFIX)


def _base(name: str) -> str:
    return name.partition("@")[0].removesuffix(SPEAKER_SUFFIX).removesuffix(PLAN_SUFFIX)


def edit_overrides(contrast: str | None = None, part: str | None = None) -> dict:
    """The spectral edit's options given on the command line (``--contrast``, ``--part``), the
    same for every configuration; one not given is left out, so each configuration keeps the
    bundle's (with prosody: its ``prosody_contrast``, as ``emort enhance --prosody`` does)."""
    return {k: v for k, v in (("contrast", contrast), ("part", part)) if v is not None}


def recorded_options(enh, configs: list[str], amounts: dict, edit_over: dict) -> dict:
    """Each configuration's resolved edit options (``EditOptions.to_dict``), as the report records
    them: what ran, bundle defaults and command-line overrides together."""
    return {c: enh.options(**config_options(c, amounts), **edit_over).to_dict() for c in configs}


def config_options(name: str, amounts: dict | None = None) -> dict:
    """``enhance`` overrides of a configuration name (see the module docstring).

    ``name`` is one of :data:`CONFIGS`, optionally followed by ``@DB``, the spectral edit's
    ``amount_db`` (not allowed for ``prosody-*``, whose spectral amount is 0). Raises ValueError
    for an unknown name or amount.
    """
    base, at, db = name.partition("@")
    base = _base(base)
    if (per_speaker(name) or planned(name)) and base == "spectral":
        raise ValueError(f"configuration {name!r}: {SPEAKER_SUFFIX} and {PLAN_SUFFIX} plan the prosody stage; spectral has none")
    spectral = {}
    if at:
        try:
            spectral["amount_db"] = float(db)
        except ValueError:
            raise ValueError(f"configuration {name!r}: {db!r} is not an amount in dB") from None
        if not 0.0 <= spectral["amount_db"] <= 20.0:
            raise ValueError(f"configuration {name!r}: the amount must be 0-20 dB")
    if base == "spectral":
        return spectral
    from emort.runtime.prosody import RENDERERS

    kind, _, renderer = base.partition("-")
    if kind not in ("prosody", "both") or renderer not in RENDERERS:
        raise ValueError(f"unknown configuration {name!r}; choose from {', '.join(CONFIGS)}")
    if kind == "prosody" and at:
        raise ValueError(f"configuration {name!r}: prosody-* has no spectral edit (use both-*)")
    over = {"prosody": True, "prosody_renderer": renderer, **(amounts or {}), **spectral}
    if kind == "prosody":
        over["amount_db"] = 0.0
    return over


def paired_cells(a: list[dict], b: list[dict], config_a: str, config_b: str, n_boot: int = 2000, seed: int = 0) -> dict:
    """Paired comparison of two configurations' conversions, on the judges' soft scores.

    ``a`` and ``b``: reports of this module (``prosody_eval_<split>.json`` as dicts), one per
    speaker group, in the same order (e.g. ``[V1, V2]`` of two runs that differ in one change; the
    same run twice to compare two of its configurations); each pair must hold the same clips.
    Per corpus x judge cell, the statistic is the conversion protocol's own with the judge's
    probability of the target in place of the hit: the mean over source -> target pairs of the
    pair's mean probability, the groups' conversions of a pair pooled. Returns ``{"cells":
    {corpus: {judge: {"a", "b", "diff", "lo", "hi"}}}, "mean": {...}, "worst_diff": float,
    "conversions": n}``: ``diff`` = b - a in points (x100), with a 95% percentile interval from
    ``n_boot`` resamples of each corpus's source clips (a clip keeps all its conversions, so the
    interval is over these speakers' clips, not over other speakers); ``mean`` the same for the
    mean of the cells. Raises ValueError when the reports do not hold the same conversions."""
    if len(a) != len(b) or not a:
        raise ValueError("paired_cells: one report per group on each side, in the same order")
    rows = []  # (corpus, clip id, pair, judge, p_a, p_b)
    for ra, rb in zip(a, b):
        if ra.get("conversion_clips") != rb.get("conversion_clips"):
            raise ValueError("paired_cells: the two reports hold different clips")
        for cfg, r in ((config_a, ra), (config_b, rb)):
            if cfg not in r.get("conversion_target_p", {}):
                raise ValueError(f"paired_cells: no per-conversion probabilities of {cfg!r} in a report")
        pa, pb = ra["conversion_target_p"][config_a], rb["conversion_target_p"][config_b]
        if set(pa) != set(pb):
            raise ValueError("paired_cells: the two reports hold different conversions")
        for pair, per_judge in pa.items():
            if set(per_judge) != set(pb[pair]):
                raise ValueError(f"paired_cells: {pair}: judges {sorted(per_judge)} against {sorted(pb[pair])}")
            src = pair.split("->")[0]
            ids = ra["conversion_clips"][src]
            for j, va in per_judge.items():
                vb = pb[pair][j]
                if len(va) != len(ids) or len(vb) != len(ids):
                    raise ValueError(f"paired_cells: {pair}: {len(va)} / {len(vb)} probabilities for {len(ids)} clips")
                rows += [(cid.split("/")[0], cid, pair, j, x, y) for cid, x, y in zip(ids, va, vb)]
    if not rows:
        raise ValueError("paired_cells: no conversions")
    corpus = np.array([r[0] for r in rows])
    clip = np.array([r[1] for r in rows])
    pair = np.array([r[2] for r in rows])
    judge = np.array([r[3] for r in rows])
    pa_, pb_ = np.array([r[4] for r in rows]), np.array([r[5] for r in rows])
    cells = sorted({(c, j) for c, j in zip(corpus, judge)})
    # per cell, rows grouped by pair and, for the bootstrap, by clip
    index = {}
    for c, j in cells:
        m = (corpus == c) & (judge == j)
        clips_c = sorted(set(clip[m]))
        pos = {k: i for i, k in enumerate(clips_c)}
        pairs_c = sorted(set(pair[m]))
        ppos = {k: i for i, k in enumerate(pairs_c)}
        rows_m = np.flatnonzero(m)
        index[(c, j)] = (np.array([pos[clip[r]] for r in rows_m]), np.array([ppos[pair[r]] for r in rows_m]), len(clips_c), len(pairs_c), rows_m)

    def stat(v: np.ndarray, key, weight: np.ndarray) -> float:  # mean over pairs of the weighted mean within each pair
        ci, pi, n_clips, n_pairs, rows_m = index[key]
        w = weight[ci]
        num = np.bincount(pi, weights=w * v[rows_m], minlength=n_pairs)
        den = np.bincount(pi, weights=w, minlength=n_pairs)
        ok = den > 0
        return float(np.mean(num[ok] / den[ok]))

    def all_cells(weights: dict) -> dict:
        return {k: (stat(pa_, k, weights[k]), stat(pb_, k, weights[k])) for k in cells}

    base = all_cells({k: np.ones(index[k][2]) for k in cells})
    rng = np.random.default_rng(seed)
    boot = []
    corpora_ = sorted({c for c, _ in cells})
    for _ in range(n_boot):
        w_c = {}
        for c in corpora_:  # one resample of a corpus's clips serves all its judges
            n = index[next(k for k in cells if k[0] == c)][2]
            w_c[c] = np.bincount(rng.integers(0, n, n), minlength=n).astype(float)
        boot.append(all_cells({k: w_c[k[0]] for k in cells}))
    out: dict = {"cells": defaultdict(dict), "conversions": len(rows) // max(1, len({j for j in judge}))}
    for k in cells:
        d = np.array([100 * (bb[k][1] - bb[k][0]) for bb in boot])
        out["cells"][k[0]][k[1]] = {"a": base[k][0], "b": base[k][1], "diff": 100 * (base[k][1] - base[k][0]),
                                    "lo": float(np.percentile(d, 2.5)), "hi": float(np.percentile(d, 97.5))}
    md = np.array([np.mean([100 * (bb[k][1] - bb[k][0]) for k in cells]) for bb in boot])
    out["mean"] = {"a": float(np.mean([base[k][0] for k in cells])), "b": float(np.mean([base[k][1] for k in cells])),
                   "diff": float(np.mean([100 * (base[k][1] - base[k][0]) for k in cells])),
                   "lo": float(np.percentile(md, 2.5)), "hi": float(np.percentile(md, 97.5))}
    out["worst_diff"] = float(min(out["cells"][c][j]["diff"] for c, j in cells))
    out["cells"] = dict(out["cells"])
    return out


def main(argv: list[str] | None = None) -> int:
    from emort.evaluation.judge_panel import JudgePanel
    from emort.runtime.audio import dc_offset, read_audio, to_float, to_mono
    from emort.runtime.enhancer import Enhancer
    from emort.runtime.prosody import ProsodyEdit, f0_contour, render_prosody
    from emort.training.metrics import classification_report

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", action="append", required=True, help="KIND=PATH, repeatable")
    ap.add_argument("--split", choices=("val", "test"), default="val")
    ap.add_argument("--configs", default=",".join(CONFIGS[:3]), help="comma-separated, from: " + ", ".join(CONFIGS)
                    + " (each optionally @DB: the spectral amount, e.g. both-stretch@2)")
    ap.add_argument("--sources", default="neutral", help="source emotions converted (comma-separated, or 'all')")
    ap.add_argument("--no-own", action="store_true", help="skip the own-emotion enhancement")
    ap.add_argument("--no-fidelity", action="store_true", help="skip the fidelity measures (speaker similarity, F0 RMSE, voicing agreement)")
    ap.add_argument("--pitch", type=float, default=None, help="prosody configurations: share of the F0 level change (0-2; default: the bundle's)")
    ap.add_argument("--pitch-range", type=float, default=None, help="prosody configurations: share of the F0 range change (0-2; default: the bundle's)")
    ap.add_argument("--tempo", type=float, default=None, help="prosody configurations: share of the tempo change (0-2; default: the bundle's)")
    ap.add_argument("--loudness", type=float, default=None, help="prosody configurations: share of the level change (0-2; default: the bundle's)")
    ap.add_argument("--contrast", choices=("uncond", "mean"), default=None,
                    help="the spectral edit's contrast in every configuration (default: the bundle's, with prosody its prosody_contrast)")
    ap.add_argument("--part", choices=("full", "dynamic", "level"), default=None,
                    help="which part of the spectral edit is applied in every configuration (default: the bundle's)")
    ap.add_argument("--bundle", type=Path, default=None, help="another bundle (default: the shipped one)")
    ap.add_argument("--speakers", default=None, help="evaluate these speakers (comma-separated corpus/speaker keys) instead of the split's: "
                    "a second validation group, held out of the judges too and of the bundle's diffusion model (--split val only)")
    ap.add_argument("--plans", type=Path, default=None, help=f"JSON {{clip id: {{target: ProsodyEdit}}}} for {PLAN_SUFFIX} configurations "
                    "(clip id: corpus/speaker/file name; the change applied as it is)")
    ap.add_argument("--out", type=Path, default=Path("reports/prosody_eval"))
    args = ap.parse_args(argv)
    configs = [c.strip() for c in args.configs.split(",") if c.strip()]
    for c in configs:
        config_options(c)
    labels = list(EMOTIONS)
    sources = labels if args.sources == "all" else [s.strip() for s in args.sources.split(",")]

    extra = {x.strip() for x in args.speakers.split(",") if x.strip()} if args.speakers else set()
    if extra and args.split != "val":
        raise SystemExit("--speakers: a second validation group (--split val); the test speakers are fixed")
    items = corpora.only_canonical(corpora.read_specs(args.data), EMOTIONS)
    unknown = extra - {i.speaker_key for i in items}
    if unknown:
        raise SystemExit(f"--speakers {', '.join(sorted(unknown))}: no such speaker in --data (keys are corpus/speaker, e.g. emodb/09)")
    held = set(TEST_SPEAKERS) | set(VAL_SPEAKERS) | extra
    train = [i for i in items if i.source_speaker_key not in held]  # no copy of a held-out voice either
    chosen = extra or set(VAL_SPEAKERS if args.split == "val" else TEST_SPEAKERS)
    clips = [i for i in items if i.speaker_key in chosen]
    t0 = time.perf_counter()
    panel = JudgePanel().fit(train)
    f_orig = panel.items_features(clips)
    spk = [i.speaker_key for i in clips]
    corpus = [i.speaker_key.split("/")[0] for i in clips]
    ref = panel.reference(f_orig, spk)
    y = np.array([labels.index(i.emotion) for i in clips])
    p_orig = panel.predict_proba(f_orig, spk, ref)
    audio = [read_audio(i.path) for i in clips]
    enh = Enhancer.load(args.bundle, device="cpu")
    ser_heard = check_evaluation_speakers(enh, args.split, extra)
    d = enh.defaults
    amounts = {k: v if v is not None else getattr(d, k) for k, v in (("pitch", args.pitch), ("pitch_range", args.pitch_range), ("tempo", args.tempo), ("loudness", args.loudness))}
    # the spectral edit's own options, the same for every configuration (given only when asked: a prosody
    # configuration then keeps the bundle's prosody_contrast, as `emort enhance --prosody` does)
    edit_over = edit_overrides(args.contrast, args.part)

    # how far from its speaker's originals each clip lies, per judge (beyond the training range a
    # judge answers its far class, whatever the clip carries): (config, target) -> judge -> counts
    far = panel.far_classes()
    beyond_orig = panel.beyond_range(f_orig, spk, ref)
    ranges: dict = defaultdict(lambda: defaultdict(lambda: {j: {"clips": 0, "beyond": 0, "beyond_heard_far": 0} for j in panel.names}))

    def judge(wavs, idx, count=None):
        f = panel.wav_features(wavs)
        s = [spk[k] for k in idx]
        p = panel.predict_proba(f, s, ref)
        if count is not None:
            for j, b in panel.beyond_range(f, s, ref).items():
                c = count[j]
                c["clips"] += len(b)
                c["beyond"] += int(b.sum())
                c["beyond_heard_far"] += int((b & (p[j].argmax(1) == labels.index(far[j]))).sum())
        return p

    renderers = sorted({_base(c).partition("-")[2] for c in configs if not c.startswith("spectral")})
    # per-speaker plans: each speaker's baseline from all of its clips here (any emotion)
    speaker_kw: list[dict] = [{} for _ in clips]
    baselines: dict = {}
    if any(per_speaker(c) for c in configs):
        from emort.runtime.prosody import speaker_prosody

        got = [enh.speaker_clip(a.samples, a.sample_rate) for a in audio]
        for s_ in sorted(set(spk)):
            ks = [k for k in range(len(clips)) if spk[k] == s_]
            base_ = speaker_prosody([got[k] for k in ks], enh.bundle.prosody)
            baselines[s_] = base_.to_dict() if base_ is not None else None
            for k in ks:
                speaker_kw[k] = {"speaker_prosody": base_, "clip_stats": got[k][0]} if base_ is not None else {}

    plans = {}
    if any(planned(c) for c in configs):
        import json

        if args.plans is None:
            raise SystemExit(f"a {PLAN_SUFFIX} configuration needs --plans")
        plans = json.loads(args.plans.read_text())

    def run_enhance(cfg, k, target, over):
        kw = speaker_kw[k] if per_speaker(cfg) else {}
        if planned(cfg):
            kw = {"prosody_edit": ProsodyEdit.from_dict(plans[clip_ids[k]][target])}
        return enh.enhance(audio[k].samples, audio[k].sample_rate, target, **over, **edit_over, **kw)
    transparency = {}
    for r in renderers:
        p_id = judge([(render_prosody(a.samples, a.sample_rate, ProsodyEdit(), r, always=True), a.sample_rate) for a in audio], range(len(clips)))
        transparency[r] = {j: {"original_ua": classification_report(y, p_orig[j].argmax(1), labels).ua,
                               "identity_ua": classification_report(y, p_id[j].argmax(1), labels).ua} for j in panel.names}

    emb = None
    if not args.no_fidelity:
        from emort.evaluation.speaker_embedding import cosine, speaker_embedding

        emb = [speaker_embedding(a.samples, a.sample_rate) for a in audio]
        mono = [to_mono(to_float(a.samples)) for a in audio]
        centred = [np.subtract(m, dc_offset(m), dtype=np.float32) for m in mono]  # what the renderer reads
        f0_src = [f0_contour(m, a.sample_rate, enh.bundle.mel) for m, a in zip(mono, audio)]

    # conversion: (config, source, target) -> per judge share judged as target; also per corpus;
    # soft: the judge's mean probability of the target (moves with every clip, not in steps of one),
    # and each conversion's own probability, for paired comparisons between runs (paired_cells)
    conv: dict = defaultdict(dict)
    conv_corpus: dict = defaultdict(lambda: defaultdict(dict))
    soft: dict = defaultdict(dict)
    soft_corpus: dict = defaultdict(lambda: defaultdict(dict))
    target_p: dict = defaultdict(dict)
    clip_ids = [f"{i.speaker_key}/{Path(i.path).name}" for i in clips]
    # what each judge heard instead: (config, target) -> judge -> counts of predicted labels
    heard: dict = defaultdict(lambda: defaultdict(lambda: {j: {e: 0 for e in labels} for j in panel.names}))
    similarity: dict[str, list[float]] = defaultdict(list)
    f0_fid: dict[str, list[dict]] = defaultdict(list)
    change: dict[str, list[float]] = defaultdict(list)
    applied: dict = defaultdict(list)
    for cfg in configs:
        over = config_options(cfg, amounts)
        for src in sources:
            idx = [k for k, i in enumerate(clips) if i.emotion == src]
            if not idx:
                continue
            for target in [e for e in labels if e != src]:
                outs, wavs = [], []
                for k in idx:
                    o = run_enhance(cfg, k, target, over)
                    outs.append(o)
                    wavs.append((o.wav, o.sample_rate))
                    if o.prosody is not None:
                        applied[(cfg, src, target)].append(o.prosody.to_dict())
                p = judge(wavs, idx, ranges[cfg][target])
                hit = {j: p[j].argmax(1) == labels.index(target) for j in panel.names}
                pt = {j: p[j][:, labels.index(target)] for j in panel.names}
                soft[cfg][f"{src}->{target}"] = {j: float(np.mean(v)) for j, v in pt.items()}
                target_p[cfg][f"{src}->{target}"] = {j: [round(float(x), 5) for x in v] for j, v in pt.items()}
                for j in panel.names:
                    for e in p[j].argmax(1):
                        heard[cfg][target][j][labels[int(e)]] += 1
                conv[cfg][f"{src}->{target}"] = {j: float(np.mean(h)) for j, h in hit.items()}
                for c in sorted(set(corpus[k] for k in idx)):
                    m = np.array([corpus[k] == c for k in idx])
                    conv_corpus[cfg][c][f"{src}->{target}"] = {j: float(np.mean(h[m])) for j, h in hit.items()}
                    soft_corpus[cfg][c][f"{src}->{target}"] = {j: float(np.mean(v[m])) for j, v in pt.items()}
                change[cfg] += [float(o.change_db) for o in outs]
                if emb is not None:
                    similarity[cfg] += [float(cosine(emb[k], speaker_embedding(w, sr))) for k, (w, sr) in zip(idx, wavs)]
                    for k, o in zip(idx, outs):
                        f0_out = f0_contour(o.wav, o.sample_rate, enh.bundle.mel)
                        frames = None if o.prosody is None else source_frames(
                            centred[k], o.sample_rate, o.prosody, o.options.prosody_renderer, enh.bundle.mel, len(f0_out))
                        fid = f0_fidelity(f0_src[k], f0_out, o.prosody, frames)
                        if fid is not None:
                            f0_fid[cfg].append(fid)
        print(f"[{time.perf_counter() - t0:.0f} s] {cfg}: conversion done", flush=True)

    own: dict = {}
    own_corpus: dict = {}
    if not args.no_own:
        idx = [k for k, i in enumerate(clips) if i.emotion != "neutral"]
        yo = y[idx]
        base = {j: classification_report(yo, p_orig[j][idx].argmax(1), labels).ua for j in panel.names}
        own["original"] = base
        co = np.array([corpus[k] for k in idx])

        def by_corpus(p):  # UA per corpus over the classes it has (argmax over all six, as emort eval enhance)
            out = {}
            for c in sorted(set(co)):
                m = co == c
                out[c] = {j: classification_report(yo[m], p[j][m].argmax(1), labels).ua for j in panel.names}
            return out

        own_corpus["original"] = by_corpus({j: p_orig[j][idx] for j in panel.names})
        for cfg in configs:
            over = config_options(cfg, amounts)
            wavs = []
            for k in idx:
                o = run_enhance(cfg, k, clips[k].emotion, over)
                wavs.append((o.wav, o.sample_rate))
            p = judge(wavs, idx)
            own[cfg] = {j: classification_report(yo, p[j].argmax(1), labels).ua for j in panel.names}
            own_corpus[cfg] = by_corpus(p)
            print(f"[{time.perf_counter() - t0:.0f} s] {cfg}: own emotion done", flush=True)

    mean_applied = {f"{c}|{s}->{t}": {k: float(np.mean([d[k] for d in v])) for k in v[0]} for (c, s, t), v in applied.items()}
    result = {"split": args.split, "speakers": sorted(chosen & set(spk)), "clips": len(clips), "configs": configs, "amounts": amounts,
              "judges_fitted_on": {"clips": len(train), "speakers": len({i.speaker_key for i in train})}, "ser_heard": ser_heard,
              "sources": sources, "transparency": transparency, "conversion": conv, "conversion_by_corpus": conv_corpus,
              "conversion_soft": soft, "conversion_soft_by_corpus": soft_corpus,
              "conversion_clips": {s_: [clip_ids[k] for k, i in enumerate(clips) if i.emotion == s_] for s_ in sources},
              "conversion_target_p": target_p,
              "conversion_heard": {c: {t: dict(v) for t, v in d.items()} for c, d in heard.items()},
              "far_class": far, "beyond_range_originals": {j: float(np.mean(b)) for j, b in beyond_orig.items()},
              "conversion_beyond_range": {c: {t: dict(v) for t, v in d.items()} for c, d in ranges.items()},
              "own_emotion_ua": own, "own_emotion_ua_by_corpus": own_corpus, "speaker_similarity": {c: float(np.mean(v)) for c, v in similarity.items()},
              "f0_fidelity": {c: {"f0_rmse_st_median": float(np.median([d["f0_rmse_st"] for d in v])),
                                  "voicing_agreement_mean": float(np.mean([d["voicing_agreement"] for d in v])), "clips": len(v)}
                              for c, v in f0_fid.items() if v},
              "change_db_median": {c: float(np.median(v)) for c, v in change.items() if v},
              "speaker_baselines": baselines,
              "options": recorded_options(enh, configs, amounts, edit_over),
              "prosody_applied_mean": mean_applied, "prosody_table": enh.bundle.prosody.to_dict() if enh.bundle.prosody else None,
              "seconds": round(time.perf_counter() - t0, 1)}
    args.out.mkdir(parents=True, exist_ok=True)
    write_json_atomic(args.out / f"prosody_eval_{args.split}.json", result)
    md = render_markdown(result, panel.names)
    write_text_atomic(args.out / f"prosody_eval_{args.split}.md", md)
    print(md)
    return 0


def render_markdown(r: dict, judges: list[str]) -> str:
    f3 = lambda d: " / ".join(f"{d[j]:.2f}" for j in judges)  # noqa: E731
    md = [f"# Enhancement with and without prosody ({r['split']} speakers: {', '.join(r['speakers'])}; {r['clips']} clips)\n",
          f"Judges {' / '.join(judges)}: J1 statistics, J2 eGeMAPS, J3 voice encoder. Prosody amounts: "
          + ", ".join(f"{k} {v:g}" if v is not None else f"{k} as pitch" for k, v in r.get("amounts", {}).items()) + "\n"]
    if r["transparency"]:
        md += ["## Renderers at identity (UA of all clips)\n", "| renderer | " + " | ".join(judges) + " |", "|---|" + "---|" * len(judges)]
        md += [f"| {name} | " + " | ".join(f"{t[j]['original_ua']:.3f} -> {t[j]['identity_ua']:.3f}" for j in judges) + " |"
               for name, t in r["transparency"].items()]
        md.append("")
    pairs = list(next(iter(r["conversion"].values())))
    md += ["## Conversion: share judged as the target (J1 / J2 / J3)\n", "| source -> target | " + " | ".join(r["configs"]) + " |",
           "|---|" + "---|" * len(r["configs"])]
    for pr in pairs:
        md.append(f"| {pr} | " + " | ".join(f3(r["conversion"][c][pr]) for c in r["configs"]) + " |")
    mean = {c: {j: float(np.mean([r["conversion"][c][p][j] for p in pairs])) for j in judges} for c in r["configs"]}
    worst = {c: {j: float(np.min([r["conversion"][c][p][j] for p in pairs])) for j in judges} for c in r["configs"]}
    md.append("| **mean** | " + " | ".join(f3(mean[c]) for c in r["configs"]) + " |")
    md.append("| **worst pair** | " + " | ".join(f3(worst[c]) for c in r["configs"]) + " |")
    md.append("")
    md += ["### Mean per corpus\n", "| corpus | " + " | ".join(r["configs"]) + " |", "|---|" + "---|" * len(r["configs"])]
    corpora_ = sorted({c for cfg in r["conversion_by_corpus"].values() for c in cfg})
    for c in corpora_:
        row = []
        for cfg in r["configs"]:
            d = r["conversion_by_corpus"][cfg].get(c, {})
            row.append(f3({j: float(np.mean([v[j] for v in d.values()])) for j in judges}) if d else "-")
        md.append(f"| {c} | " + " | ".join(row) + " |")
    md.append("")
    soft = r.get("conversion_soft_by_corpus") or {}
    if soft:
        md += ["### Soft, per corpus: the judge's mean probability of the target (J1 / J2 / J3)\n",
               "| corpus | " + " | ".join(r["configs"]) + " |", "|---|" + "---|" * len(r["configs"])]
        for c in corpora_:
            row = []
            for cfg in r["configs"]:
                d = soft.get(cfg, {}).get(c, {})
                row.append(f3({j: float(np.mean([v[j] for v in d.values()])) for j in judges}) if d else "-")
            md.append(f"| {c} | " + " | ".join(row) + " |")
        md.append("")
    for cfg, by_target in (r.get("conversion_heard") or {}).items():
        md += [f"### What the judges heard, {cfg}: share of each target's conversions per predicted label (J1 / J2 / J3)\n",
               "| target | " + " | ".join(judges) + " |", "|---|" + "---|" * len(judges)]
        for target, per_judge in by_target.items():
            cells = []
            for j in judges:
                counts = per_judge[j]
                n = sum(counts.values()) or 1
                cells.append(", ".join(f"{e} {c / n:.2f}" for e, c in sorted(counts.items(), key=lambda kv: -kv[1]) if c))
            md.append(f"| {target} | " + " | ".join(cells) + " |")
        md.append("")
    rng_ = r.get("conversion_beyond_range") or {}
    if rng_:
        far = r["far_class"]
        md += ["### Beyond the training range: share of each target's conversions farther from their speaker's originals than "
               "95% of training clips from theirs, and in brackets the share heard as the judge's far class "
               f"({', '.join(f'{j} {far[j]}' for j in judges)}: what it answers far from every training clip) (J1 / J2 / J3)\n",
               "originals of these speakers: " + " / ".join(f"{r['beyond_range_originals'][j]:.2f}" for j in judges) + "\n",
               "| target | " + " | ".join(rng_) + " |", "|---|" + "---|" * len(rng_)]
        for target in next(iter(rng_.values())):
            cells = []
            for cfg in rng_:
                d = rng_[cfg][target]
                cells.append(" / ".join(f"{d[j]['beyond'] / max(d[j]['clips'], 1):.2f} ({d[j]['beyond_heard_far'] / max(d[j]['clips'], 1):.2f})"
                                        for j in judges))
            md.append(f"| {target} | " + " | ".join(cells) + " |")
        md.append("")
    if r["own_emotion_ua"]:
        md += ["## Own emotion (non-neutral clips toward their label): UA\n", "| configuration | " + " | ".join(judges) + " |",
               "|---|" + "---|" * len(judges)]
        md += [f"| {c} | " + " | ".join(f"{v[j]:.3f}" for j in judges) + " |" for c, v in r["own_emotion_ua"].items()]
        md.append("")
    by = r.get("own_emotion_ua_by_corpus") or {}
    if "original" in by:
        cfgs = [c for c in by if c != "original"]
        md += ["### Own emotion per corpus: UA gain over the original, points (J1 / J2 / J3)\n",
               "| corpus | original UA | " + " | ".join(cfgs) + " |", "|---|---|" + "---|" * len(cfgs)]
        for corp, base in by["original"].items():
            md.append(f"| {corp} | " + " / ".join(f"{base[j]:.3f}" for j in judges) + " | "
                      + " | ".join(" / ".join(f"{100 * (by[c][corp][j] - base[j]):+.1f}" for j in judges) for c in cfgs) + " |")
        md.append("")
    if r["speaker_similarity"]:
        fid, ch = r.get("f0_fidelity") or {}, r.get("change_db_median") or {}
        md += ["## Fidelity over the conversions\n",
               "Speaker similarity to the source (GE2E cosine, mean); F0 RMSE against the source's F0 with the planned change "
               "(semitones, median over clips; frames voiced in both); voicing agreement with the source (mean); the spectral "
               "edit's log-mel change (dB, median).\n",
               "| configuration | speaker similarity | F0 RMSE st | voicing agreement | log-mel change dB |", "|---|---:|---:|---:|---:|"]
        fmt = lambda d, k: f"{d[k]:.2f}" if d else "-"  # noqa: E731
        md += [f"| {c} | {v:.3f} | {fmt(fid.get(c), 'f0_rmse_st_median')} | {fmt(fid.get(c), 'voicing_agreement_mean')} | "
               f"{ch[c]:.2f} |" if c in ch else f"| {c} | {v:.3f} | - | - | - |" for c, v in r["speaker_similarity"].items()]
        md.append("")
    return "\n".join(md) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())
