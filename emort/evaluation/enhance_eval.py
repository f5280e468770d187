"""``emort eval enhance``: does the edit make the emotion clearer, to judges that share nothing with it?

Protocol (each choice is stated in the report it produces):

* Clips: the fixed validation or test speakers (``emort.training.splits``), never used to
  train the diffusion model, its SER, or any judge. Defaults are chosen on the *validation*
  speakers (:func:`sweep`); the *test* speakers are only reported (:func:`report`).
* Three judges of three feature families (``emort.evaluation.judge_panel``): utterance
  statistics (J1), openSMILE eGeMAPSv02 functionals (J2) and a GE2E voice-encoder embedding
  (J3), each an RBF SVM trained on the training speakers only, each z-scoring a speaker with
  the statistics of that speaker's ORIGINAL clips, all analysing audio at 16 kHz.
* Target = each clip's own emotion. Rows on the same clips: the original; the identity path
  (``amount_db`` 0: must equal the original exactly); a fixed per-emotion EQ (the training
  speakers' mean log-mel offset of the target emotion from each speaker's own mean, one gain
  per band for every clip) rendered through the same calibrated path at the SAME amount, so
  the two edits change a clip by the same number of dB; and emort.
* Fidelity: the applied change (dB), GE2E speaker similarity to the source, and the same
  quantities between two natural takes of one sentence (``fidelity.take_to_take``).
* Selection rule: the setting that maximises the worst (corpus x judge) gain over the
  original, not the mean; ties (a UA cell of one validation speaker moves in steps of a clip)
  go to the larger mean gain. The gain is the UA's (``rule="ua"``, 0.7-0.20) or, since 0.21,
  the soft UA's (``rule="soft"``: each clip's hit replaced by the judge's probability of its
  own emotion; docs/eval/soft/PREREGISTRATION.md).
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)


@dataclass
class EvalConfig:
    data: list[str]
    bundle: str | None = None
    out: str = "reports/enhance"
    split: str = "val"  # "val": sweep + choose defaults; "test": report at the given (or bundle) defaults
    amounts: list[float] = field(default_factory=lambda: [1.0, 2.0, 3.0, 4.5, 6.0])
    smooths: list[float] = field(default_factory=lambda: [0.0])  # time smoothing of the edit, s (inf: one gain per band)
    band_smooths: list[int] = field(default_factory=lambda: [0])  # smoothing over neighbouring mel bands
    contrasts: list[str] = field(default_factory=lambda: ["uncond"])  # the direction's reference: uncond | mean
    parts: list[str] = field(default_factory=lambda: ["full"])  # the part of the edit applied (EditOptions.part)
    strength: float | None = None  # None: the bundle's
    steps: int | None = None  # noise levels of the direction; None: the bundle's
    edit_seed: int | None = None  # the edit's noise seed; None: the bundle's
    precision: str = "fp32"  # the denoiser's arithmetic (Enhancer.load); float32 unless asked
    max_clips: int | None = None  # per corpus, a seeded subset (quick runs)
    conversion: bool = True  # neutral -> every other target (hit rates per judge)
    rule: str = "ua"  # the selection statistic of each corpus x judge cell: "ua" | "soft" (RULES)
    # Other evaluation speakers than the split's (a second validation group, held out of a
    # bundle trained for that purpose): the judges and the fixed EQ are trained without them.
    speakers: list[str] | None = None
    seed: int = 0


@dataclass
class Clip:
    path: str
    corpus: str
    speaker: str
    emotion: str
    wav: np.ndarray  # as read, the file's own rate
    sample_rate: int


def _ua_wa(y: np.ndarray, pred: np.ndarray, n_labels: int) -> tuple[float, float, list[float | None]]:
    recalls: list[float | None] = []
    for k in range(n_labels):
        m = y == k
        recalls.append(float((pred[m] == k).mean()) if m.any() else None)
    present = [r for r in recalls if r is not None]
    return float(np.mean(present)) if present else float("nan"), float((pred == y).mean()) if len(y) else float("nan"), recalls


#: Resamples of the paired bootstrap of a UA gain (:func:`gain_interval`).
BOOTSTRAP = 2000


def gain_interval(y: np.ndarray, base: np.ndarray, row: np.ndarray, n_labels: int, resamples: int = BOOTSTRAP,
                  seed: int = 0, level: float = 0.95) -> tuple[float, float]:
    """Percentile interval of the UA gain ``UA(row) - UA(base)`` (the same clips, labels ``y``)
    under a paired bootstrap: the clips are resampled with replacement, within each emotion (the
    class counts stay the corpus's, as UA weighs classes equally), and both predictions are read
    on the same resample. Returns ``(low, high)`` at ``level`` (default 95%). What it measures:
    how much the gain could move with other clips of these speakers; not other speakers. A class
    where both rows agree on every clip adds no spread, so with few clips a class the interval is
    if anything too narrow."""
    y = np.asarray(y)
    return score_gain_interval(y, (np.asarray(base) == y).astype(np.float64), (np.asarray(row) == y).astype(np.float64),
                               n_labels, resamples, seed, level)


def score_gain_interval(y: np.ndarray, score_base: np.ndarray, score_row: np.ndarray, n_labels: int, resamples: int = BOOTSTRAP,
                        seed: int = 0, level: float = 0.95) -> tuple[float, float]:
    """:func:`gain_interval` of any per-clip score ``(N,)`` averaged per emotion, then over the
    emotions: a hit (1/0) gives UA, the judge's probability of the clip's own emotion gives the
    soft UA (:func:`soft_ua`)."""
    y = np.asarray(y)
    rng = np.random.default_rng(seed)
    groups = [np.flatnonzero(y == k) for k in range(n_labels) if (y == k).any()]
    hit_b = np.asarray(score_base, np.float64)
    hit_r = np.asarray(score_row, np.float64)
    gains = np.zeros(resamples)
    for g in groups:  # each class's recall per resample; UA is their mean
        idx = g[rng.integers(0, len(g), size=(resamples, len(g)))]
        gains += hit_r[idx].mean(axis=1) - hit_b[idx].mean(axis=1)
    gains /= max(len(groups), 1)
    a = (1.0 - level) / 2.0
    return float(np.quantile(gains, a)), float(np.quantile(gains, 1.0 - a))


def soft_ua(y: np.ndarray, p_true: np.ndarray, n_labels: int) -> float:
    """The class-balanced mean of a judge's probability of each clip's own emotion ``p_true``
    ``(N,)``: UA with each clip's hit (0 or 1) replaced by that probability, so it moves with
    every clip's verdict instead of in steps of one clip (on one validation speaker, 3 to 5 UA
    points). NaN without clips."""
    per = [v for v in soft_recall(y, p_true, list(range(n_labels))).values() if v is not None]
    return float(np.mean(per)) if per else float("nan")


def soft_recall(y: np.ndarray, p_true: np.ndarray, labels: list) -> dict:
    """Per emotion, the judge's mean probability of each clip's own emotion (None: no clip of it):
    the parts :func:`soft_ua` averages, kept so that a policy that treats emotions apart (an
    amount per target emotion, docs/eval/per_emotion/report.md) can be composed in soft UA too."""
    y, p = np.asarray(y), np.asarray(p_true, np.float64)
    return {lab: (float(p[y == k].mean()) if (y == k).any() else None) for k, lab in enumerate(labels)}


def emotion_eq(train_items, labels: list[str], settings) -> dict[str, np.ndarray]:
    """Per emotion, the training speakers' mean log-mel offset from their own mean, dB ``(n_mels,)``.

    Each clip contributes its mean log-mel over active frames; each speaker's emotion means
    are taken relative to that speaker's mean over all its clips; speakers are averaged.
    """
    from emort.runtime.frontend import NATS_TO_DB, active_frames
    from emort.training.data import load_mel

    per: dict[str, dict[str, list[np.ndarray]]] = {}
    for it in train_items:
        m = load_mel(it.path, settings)
        v = m[:, active_frames(m)].mean(axis=1)
        per.setdefault(it.speaker_key, {}).setdefault(it.emotion, []).append(v)
    offsets: dict[str, list[np.ndarray]] = {e: [] for e in labels}
    for by_e in per.values():
        allv = np.mean([v for vs in by_e.values() for v in vs], axis=0)
        for e, vs in by_e.items():
            if e in offsets:
                offsets[e].append(np.mean(vs, axis=0) - allv)
    return {e: (np.mean(v, axis=0) * NATS_TO_DB if v else np.zeros(settings.n_mels)) for e, v in offsets.items()}


def check_evaluation_speakers(enhancer, split: str, extra: set[str]) -> list[str]:
    """Refuse a bundle whose models heard the speakers an evaluation reads; returns the extra
    speakers (``--speakers``) its SER heard (named in the report as ``ser_heard``).

    Neither model the edit runs may have heard the fixed validation or test speakers, nor the
    diffusion model an extra one. The SER may have heard an extra one (a second validation group
    of a bundle retrained for it keeps the shipped SER): at intensity 1 the edit reads only its
    emotion centroids, to which those speakers' clips contributed. Augmented copies count as their
    source speaker (emodb/10+emort is emodb/10). Raises EmortError (one line) otherwise, and for
    test speakers among ``extra`` with ``split`` "val" (test speakers never choose a default)."""
    from emort.runtime.errors import EmortError
    from emort.training import corpora
    from emort.training.splits import TEST_SPEAKERS, VAL_SPEAKERS

    if extra & set(TEST_SPEAKERS) and split == "val":
        raise EmortError(f"--speakers {', '.join(sorted(extra & set(TEST_SPEAKERS)))}: test speakers never choose a default (--split val)")
    b = enhancer.bundle
    fitted = {k: {corpora.source_speaker(s) for s in b.training[k].split.fitted_speakers} for k in ("ser", "diffusion") if k in b.training}
    held = set(TEST_SPEAKERS) | set(VAL_SPEAKERS) | extra
    seen = (fitted.get("ser", set()) & (held - extra)) | (fitted.get("diffusion", set()) & held)
    if seen:
        raise EmortError(f"the bundle was trained on evaluation speakers {sorted(seen)}; evaluate another bundle")
    ser_heard = sorted(extra & fitted.get("ser", set()))
    if ser_heard and enhancer.defaults.intensity != 1.0:
        raise EmortError(f"the bundle's SER heard {', '.join(ser_heard)} and its edit reads the clip's own embedding "
                         f"(intensity {enhancer.defaults.intensity:g}): evaluate other speakers")
    return ser_heard


class Context:
    """Enhancer, judges, clips of one split and the originals' reference statistics."""

    def __init__(self, cfg: EvalConfig, progress: bool = False):
        from emort.evaluation.judge_panel import JudgePanel
        from emort.runtime.audio import read_audio
        from emort.runtime.enhancer import Enhancer
        from emort.runtime.errors import EmortError
        from emort.training import corpora
        from emort.training.splits import TEST_SPEAKERS, VAL_SPEAKERS

        self.cfg = cfg
        self.enhancer = Enhancer.load(cfg.bundle, device="cpu", precision=cfg.precision)
        b = self.enhancer.bundle
        self.labels = list(b.labels)
        # the models the edit runs (the statistics classifier only fuses into `score --per-speaker`)
        extra = set(cfg.speakers or ())
        held = set(TEST_SPEAKERS) | set(VAL_SPEAKERS) | extra
        self.ser_heard = check_evaluation_speakers(self.enhancer, cfg.split, extra)
        items = corpora.only_canonical(corpora.read_specs(cfg.data), tuple(self.labels))
        unknown = extra - {i.speaker_key for i in items}
        if unknown:
            raise EmortError(f"--speakers {', '.join(sorted(unknown))}: no such speaker in --data (keys are corpus/speaker, e.g. emodb/09)")
        split_spk = extra or set(VAL_SPEAKERS if cfg.split == "val" else TEST_SPEAKERS)
        self.train = [i for i in items if i.source_speaker_key not in held]  # no copy of a held-out voice either
        chosen = [i for i in items if i.speaker_key in split_spk]
        if not chosen:
            raise EmortError(f"no {cfg.split} clips in --data (the {cfg.split} speakers are {', '.join(sorted(split_spk))})")
        if cfg.max_clips:
            rng = np.random.default_rng(cfg.seed)
            keep = []
            for c in sorted({i.corpus for i in chosen}):
                v = [i for i in chosen if i.corpus == c]
                keep += [v[j] for j in sorted(rng.choice(len(v), min(cfg.max_clips, len(v)), replace=False))]
            chosen = keep
        self.clips = []
        for i in chosen:
            a = read_audio(i.path)
            self.clips.append(Clip(i.path, i.corpus, i.speaker_key, i.emotion, a.samples, a.sample_rate))
        self.items = chosen
        log.info("judges: fitting on %d clips of %d training speakers", len(self.train), len({i.speaker_key for i in self.train}))
        t0 = time.perf_counter()
        self.panel = JudgePanel(labels=tuple(self.labels)).fit(self.train, progress=progress)
        self.fit_s = time.perf_counter() - t0
        self.speakers = [c.speaker for c in self.clips]
        self.y = np.array([self.labels.index(c.emotion) for c in self.clips])
        self.f_orig = self.panel.items_features(chosen)
        self.reference = self.panel.reference(self.f_orig, self.speakers)
        self.eq = emotion_eq(self.train, self.labels, b.mel)
        self.far = self.panel.far_classes()
        self.progress = progress

    # -- rows
    def judge(self, features: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return {n: p.argmax(axis=1) for n, p in self.judge_proba(features).items()}

    def judge_proba(self, features: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Each judge's probabilities ``(N, len(labels))`` for this split's clips."""
        return self.panel.predict_proba(features, self.speakers, self.reference)

    def p_true(self, proba: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Each judge's probability of each clip's own emotion ``(N,)``."""
        return {n: p[np.arange(len(self.y)), self.y] for n, p in proba.items()}

    def verdicts(self, features: dict[str, np.ndarray]) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
        """Each judge's predicted labels and its probability of each clip's own emotion (:meth:`p_true`)."""
        proba = self.judge_proba(features)
        return {n: p.argmax(axis=1) for n, p in proba.items()}, self.p_true(proba)

    def soft_intervals(self, base: dict[str, np.ndarray], row: dict[str, np.ndarray]) -> dict:
        """:meth:`intervals` of the soft UA gain (``base``/``row``: :meth:`p_true` of two rows)."""
        return self._intervals(base, row)

    def corpus_clips(self) -> dict[str, int]:
        """Clips of this split per corpus, corpora sorted."""
        return {c: int(sum(1 for x in self.clips if x.corpus == c)) for c in sorted({x.corpus for x in self.clips})}

    def intervals(self, base: dict[str, np.ndarray], preds: dict[str, np.ndarray]) -> dict:
        """Per corpus and judge, the 95% paired-bootstrap interval of the UA gain of ``preds`` over
        ``base`` (:func:`gain_interval`)."""
        hit = lambda p: (p == self.y).astype(np.float64)  # noqa: E731
        return self._intervals({n: hit(p) for n, p in base.items()}, {n: hit(p) for n, p in preds.items()})

    def _intervals(self, base: dict[str, np.ndarray], row: dict[str, np.ndarray]) -> dict:
        """Per corpus and judge, :func:`score_gain_interval` of per-clip scores ``row`` over ``base``."""
        corp = np.array([c.corpus for c in self.clips])
        return {c: {n: list(score_gain_interval(self.y[corp == c], base[n][corp == c], s[corp == c], len(self.labels))) for n, s in row.items()}
                for c in sorted(set(corp))}

    def table(self, preds: dict[str, np.ndarray], y: np.ndarray | None = None, corpora_: list[str] | None = None,
              p_true: dict[str, np.ndarray] | None = None) -> dict:
        """Per corpus and judge: UA, WA, per-emotion recall, clips; with ``p_true``
        (:meth:`p_true`) also the soft UA (:func:`soft_ua`)."""
        y = self.y if y is None else y
        corp = np.array([c.corpus for c in self.clips]) if corpora_ is None else np.array(corpora_)
        out: dict = {}
        for c in sorted(set(corp)):
            m = corp == c
            out[c] = {}
            for n, p in preds.items():
                ua, wa, rec = _ua_wa(y[m], p[m], len(self.labels))
                out[c][n] = {"ua": ua, "wa": wa, "recall": dict(zip(self.labels, rec)), "n": int(m.sum())}
                if p_true is not None:
                    out[c][n]["soft_ua"] = soft_ua(y[m], p_true[n][m], len(self.labels))
                    out[c][n]["soft_recall"] = soft_recall(y[m], p_true[n][m], self.labels)
        return out

    def plans(self, targets: list[str] | None = None, clips: list[Clip] | None = None, **opts):
        """One edit plan per clip (the model runs once; amounts are rendered from it)."""
        enh = self.enhancer
        clips = self.clips if clips is None else clips
        targets = [c.emotion for c in clips] if targets is None else targets
        o = enh.options(**opts)
        out = []
        t0 = time.perf_counter()
        for c, t in zip(clips, targets):
            out.append(enh.plan(c.wav, c.sample_rate, t, o))
        return out, o, time.perf_counter() - t0

    def eq_plans(self, plans, targets: list[str]):
        return [replace(p, raw_db=np.repeat(self.eq[t][:, None], p.mel.shape[1], axis=1).astype(np.float64)) for p, t in zip(plans, targets)]

    def render(self, plans, options) -> tuple[list[tuple[np.ndarray, int]], np.ndarray]:
        wavs, change = [], []
        for p in plans:
            y, _, ch, _ = self.enhancer.render(p, options)
            wavs.append((y, p.sample_rate))
            change.append(ch)
        return wavs, np.array(change)


def _gains(base: dict, cond: dict, key: str = "ua") -> dict:
    return {c: {n: cond[c][n][key] - base[c][n][key] for n in base[c]} for c in base}


def _worst(g: dict) -> float:
    return min(v for c in g.values() for v in c.values())


def _mean(g: dict) -> float:
    return float(np.mean([v for c in g.values() for v in c.values()]))


def _similarity(ctx: Context, feats: dict[str, np.ndarray]) -> np.ndarray:
    """GE2E speaker similarity of each output to its source: J3's feature row is that embedding
    (``fidelity.speaker_similarity_resemblyzer`` computes the same from the audio)."""
    from emort.evaluation.speaker_embedding import cosine

    return np.array([float(cosine(a, b)) for a, b in zip(ctx.f_orig["J3"], feats["J3"])])


def _range(ctx: Context, feats: dict[str, np.ndarray], preds: dict[str, np.ndarray], base: dict[str, np.ndarray] | None = None) -> dict:
    """Per judge: share of the clips beyond the judge's training range from their speaker's
    originals (``JudgePanel.beyond_range``), and share beyond it AND given the judge's far class.
    With ``base`` (the originals' predictions): UA (pooled over corpora) of the clips that stay
    within the range, original vs this row on that same subset (``ua_within``: ``[original, row,
    clips]``): whether the judge, where it can still judge, hears the emotion more clearly."""
    far = ctx.far
    b = ctx.panel.beyond_range(feats, ctx.speakers, ctx.reference)
    out = {"beyond": {n: float(v.mean()) for n, v in b.items()},
           "beyond_heard_far": {n: float((v & (preds[n] == ctx.labels.index(far[n]))).mean()) for n, v in b.items()}}
    if base is not None:
        k = len(ctx.labels)
        out["ua_within"] = {n: [_ua_wa(ctx.y[~v], base[n][~v], k)[0], _ua_wa(ctx.y[~v], preds[n][~v], k)[0], int((~v).sum())]
                            for n, v in b.items()}
    return out


def grid(cfg: EvalConfig) -> list[tuple[str, float, float, int, str, str]]:
    """The rows :func:`run` renders, in order, as ``(condition, amount_db, smooth_s, smooth_bands,
    contrast, part)``: at each amount, emort at every contrast x part x smoothing x band smoothing,
    then the fixed EQ (one gain per band: full part, no smoothing)."""
    out = []
    for a in cfg.amounts:
        out += [("emort", a, sm, bs, c, pt) for c in cfg.contrasts for pt in cfg.parts for sm in cfg.smooths for bs in cfg.band_smooths]
        out.append(("eq", a, 0.0, 0, "uncond", "full"))
    return out


def cell_options(base, cell: tuple):
    """The edit options of one :func:`grid` row over the run's ``base`` options."""
    name, a, sm, bs, con, pt = cell
    # the EQ is one gain per band: never projected onto the edit basis
    return replace(base, amount_db=a, guidance=None, smooth_s=sm, smooth_bands=bs, contrast=con, part=pt,
                   subspace=base.subspace if name == "emort" else 0)


def check_grid(cfg: EvalConfig) -> None:
    """Every row of :func:`grid` validated as ``emort enhance`` validates its options
    (``EditOptions.validate``), over the bundle's defaults with ``--strength/--steps/--edit-seed``,
    before the judges are fitted: a combination (``--parts dynamic`` with ``--smooths inf``) fails
    like a single bad value, in one line naming the flags."""
    from emort.runtime.bundle import load_bundle
    from emort.runtime.errors import EmortError

    defaults = load_bundle(cfg.bundle, verify=False).defaults
    given = {"strength": cfg.strength, "steps": cfg.steps, "seed": cfg.edit_seed}
    for flag, k in (("--strength", "strength"), ("--steps", "steps"), ("--edit-seed", "seed")):
        try:
            defaults.with_overrides(from_defaults=True, **{k: given[k]}).validate()
        except EmortError as e:
            raise EmortError(f"{flag} {given[k]}: {e}") from None
    base = defaults.with_overrides(from_defaults=True, **given)  # as Enhancer.options makes the run's
    for cell in grid(cfg):
        try:
            cell_options(base, cell).validate()
        except EmortError as e:
            name, a, sm, bs, con, pt = cell
            where = (f"--amounts {a:g}" if name == "eq" else
                     f"--amounts {a:g}, --smooths {sm:g}, --band-smooths {bs}, --contrasts {con}, --parts {pt}")
            raise EmortError(f"{where}: {e}") from None


def run(cfg: EvalConfig, progress: bool = False, console=None) -> dict:
    """Validation split: sweep ``amounts`` (emort and the EQ at each) and choose the default by
    the worst (corpus x judge) gain. Test split: report at the first of ``amounts``.
    Writes ``report.json`` and ``report.md`` under ``cfg.out``; returns the report dict."""
    from emort.runtime.atomic import write_json_atomic, write_text_atomic
    from emort.runtime.errors import EmortError

    if cfg.rule not in RULES:  # before the sweep, not after it
        raise EmortError(f"unknown selection statistic {cfg.rule!r} (one of {', '.join(RULES)})")
    from emort.runtime.editing import EDIT_PARTS

    bad = [p for p in cfg.parts if p not in EDIT_PARTS]
    if bad or not cfg.parts:  # before the judges are fitted
        raise EmortError(f"--parts: give one or more of {', '.join(EDIT_PARTS)}" + (f" (not {', '.join(bad)})" if bad else ""))
    check_grid(cfg)  # every cell emort enhance would refuse, before the judges are fitted
    t_start = time.perf_counter()
    ctx = Context(cfg, progress)
    out = Path(cfg.out)
    labels = ctx.labels
    base_pred, base_true = ctx.verdicts(ctx.f_orig)
    base = ctx.table(base_pred, p_true=base_true)
    opts = {k: v for k, v in (("strength", cfg.strength), ("steps", cfg.steps), ("seed", cfg.edit_seed)) if v is not None}
    plans, o, plan_s = ctx.plans(**opts)
    plan_sets = {"uncond": plans} if o.contrast == "uncond" else {o.contrast: plans}
    for c in cfg.contrasts:
        if c not in plan_sets:
            plan_sets[c] = ctx.plans(**opts, contrast=c)[0]
    plans = plan_sets.get("uncond", plans)
    # identity: the calibrated path at amount 0
    ident_w, _ = ctx.render(plans, replace(o, amount_db=0.0, guidance=None))
    identical = all(np.array_equal(w, c.wav) for (w, _), c in zip(ident_w, ctx.clips))
    ident_f = ctx.panel.wav_features(ident_w)
    ident_pred, ident_true = ctx.verdicts(ident_f)
    ident = ctx.table(ident_pred, p_true=ident_true)
    targets = [c.emotion for c in ctx.clips]
    eqp = ctx.eq_plans(plans, targets)
    rows = []
    amounts = cfg.amounts
    for cell in grid(cfg):
        name, a, sm, bs, con, pt = cell
        pl = plan_sets[con] if name == "emort" else eqp
        wavs, change = ctx.render(pl, cell_options(o, cell))
        feats = ctx.panel.wav_features(wavs)
        pred, true = ctx.verdicts(feats)
        tab = ctx.table(pred, p_true=true)
        sim = _similarity(ctx, feats)
        g = _gains(base, tab)
        sg = _gains(base, tab, "soft_ua")
        rows.append({"condition": name, "amount_db": a, "smooth_s": sm, "smooth_bands": bs, "contrast": con, "part": pt, "table": tab, "gain": g, "worst_gain": _worst(g), "mean_gain": _mean(g),
                     "soft_gain": sg, "worst_soft_gain": _worst(sg), "mean_soft_gain": _mean(sg),
                     "gain_ci95": ctx.intervals(base_pred, pred), "soft_gain_ci95": ctx.soft_intervals(base_true, true),
                     "change_db": _pct(change), "speaker_similarity": _pct(sim), "range": _range(ctx, feats, pred, base_pred)})
        if console is not None:
            console.print(f"{cfg.split} {name:5s} amount {a:4.1f} dB smooth {sm:g} s {bs} bands contrast {con} part {pt}: worst gain {_worst(g) * 100:+.1f} pts (soft {_worst(sg) * 100:+.1f}); "
                          + "; ".join(f"{c} " + " ".join(f"{n} {v * 100:+.1f}" for n, v in gc.items()) for c, gc in g.items()))
    emort_rows = [r for r in rows if r["condition"] == "emort"]
    best = choose(emort_rows, cfg.rule)
    report = {
        "split": cfg.split,
        "bundle": ctx.enhancer.bundle.summary(),
        "options": o.to_dict(),
        # the denoiser's arithmetic as asked (--precision) and as it ran (Enhancer.load resolves auto)
        "precision": {"asked": cfg.precision, "ran": ctx.enhancer.precision, "why": ctx.enhancer.precision_reason},
        "edit_basis": ctx.enhancer.bundle.basis_hash(o.subspace) if o.subspace else None,
        "clips": ctx.corpus_clips(),
        "speakers": sorted(set(ctx.speakers)),
        "ser_heard": ctx.ser_heard,
        "judges": {"J1": "utterance statistics + SVM", "J2": "eGeMAPSv02 functionals + SVM", "J3": "GE2E voice-encoder embedding + SVM"},
        "judge_training": {"clips": len(ctx.train), "speakers": sorted({i.speaker_key for i in ctx.train}), "fit_s": round(ctx.fit_s, 1)},
        "original": base,
        "identity": ident,
        "identity_equals_original_samples": identical,
        "far_class": ctx.far,
        "range": {"original": _range(ctx, ctx.f_orig, base_pred), "identity": _range(ctx, ident_f, ident_pred)},
        "rows": rows,
        "chosen": {"amount_db": best["amount_db"], "smooth_s": best["smooth_s"], "smooth_bands": best["smooth_bands"],
                   "contrast": best.get("contrast", "uncond"), "part": best.get("part", "full"), "worst_gain": best["worst_gain"],
                   "worst_soft_gain": best["worst_soft_gain"], "statistic": cfg.rule, "rule": rule_text(cfg.rule)} if cfg.split == "val" else None,
        "plan_seconds": round(plan_s, 2),
    }
    if cfg.conversion:
        conv_o = replace(o, smooth_s=best["smooth_s"] if cfg.split == "val" else cfg.smooths[0],
                         smooth_bands=best["smooth_bands"] if cfg.split == "val" else cfg.band_smooths[0],
                         contrast=best.get("contrast", "uncond") if cfg.split == "val" else cfg.contrasts[0],
                         part=best.get("part", "full") if cfg.split == "val" else cfg.parts[0])
        report["conversion"] = conversion(ctx, conv_o, best["amount_db"] if cfg.split == "val" else amounts[0])
    try:
        from emort.evaluation.fidelity import take_to_take

        report["take_to_take"] = take_to_take(ctx.train)
    except Exception as e:  # the yardstick is context, not the result: say why it is missing
        report["take_to_take"] = {"error": f"{type(e).__name__}: {e}"}
    report["seconds"] = round(time.perf_counter() - t_start, 1)
    write_json_atomic(out / "report.json", _jsonable(report))
    write_text_atomic(out / "report.md", render_markdown(report, labels))
    if cfg.split == "val":
        write_json_atomic(out / "defaults.json", {"amount_db": best["amount_db"], "smooth_s": best["smooth_s"], "smooth_bands": best["smooth_bands"],
                                                   "contrast": best.get("contrast", "uncond"), "part": best.get("part", "full"), "strength": o.strength, "steps": o.steps, "method": o.method,
                                                   "precision": ctx.enhancer.precision,
                                                   "rule": report["chosen"]["rule"], "split": "val"})
    return report


def conversion(ctx: Context, o, amount: float) -> dict:
    """Neutral clips -> every other target at ``amount``: share judged as the target, per judge."""
    neutral = [c for c in ctx.clips if c.emotion == "neutral"]
    if not neutral:
        return {}
    idx = [i for i, c in enumerate(ctx.clips) if c.emotion == "neutral"]
    spk = [ctx.speakers[i] for i in idx]
    res: dict = {"amount_db": amount, "clips": len(neutral), "targets": {}}
    base_f = {n: v[idx] for n, v in ctx.f_orig.items()}
    base_p = {n: p.argmax(axis=1) for n, p in ctx.panel.predict_proba(base_f, spk, ctx.reference).items()}
    for t in ctx.labels:
        if t == "neutral":
            continue
        k = ctx.labels.index(t)
        plans, _, _ = ctx.plans(targets=[t] * len(neutral), clips=neutral, strength=o.strength, steps=o.steps, seed=o.seed, contrast=o.contrast)
        row = {}
        for name, pl in (("emort", plans), ("eq", ctx.eq_plans(plans, [t] * len(neutral)))):
            wavs, change = ctx.render(pl, replace(o, amount_db=amount, guidance=None, smooth_s=o.smooth_s if name == "emort" else 0.0,
                                                  smooth_bands=o.smooth_bands if name == "emort" else 0, part=o.part if name == "emort" else "full",
                                                  subspace=o.subspace if name == "emort" else 0))
            p = ctx.panel.predict_proba(ctx.panel.wav_features(wavs), spk, ctx.reference)
            row[name] = {n: float((v.argmax(axis=1) == k).mean()) for n, v in p.items()}
        row["original"] = {n: float((v == k).mean()) for n, v in base_p.items()}
        res["targets"][t] = row
    return res


#: Selection statistics of a corpus x judge cell: the UA gain (the rule of 0.7-0.20), or the soft
#: UA gain (:func:`soft_ua`), which moves with every clip's verdict instead of in steps of a clip.
RULES = {"ua": "UA gain", "soft": "soft UA gain (class-balanced mean probability of the clip's own emotion)"}


def rule_text(statistic: str = "ua", seeds: str = "") -> str:
    """The selection rule in words (reports and defaults files)."""
    over = f" of the mean over noise seeds {seeds}" if seeds else ""
    tie = "soft UA gain" if statistic == "soft" else "gain"
    return f"max over settings of the worst (corpus x judge) {RULES[statistic]}{over}, ties broken by the mean {tie}"


def choose(emort_rows: list[dict], statistic: str = "ua") -> dict:
    """The selection rule: the largest worst (corpus x judge) gain of ``statistic`` (:data:`RULES`);
    among ties (a UA cell of one validation speaker moves in steps of one clip), the larger mean
    gain of the same statistic."""
    if statistic not in RULES:
        raise ValueError(f"unknown selection statistic {statistic!r} (one of {', '.join(RULES)})")
    gain = "soft_gain" if statistic == "soft" else "gain"
    mean = lambda r: r[f"mean_{gain}"] if f"mean_{gain}" in r else _mean(r[gain])  # noqa: E731
    return max(emort_rows, key=lambda r: (round(r[f"worst_{gain}"], 6), mean(r)))


def _pct(v: np.ndarray) -> dict:
    v = np.asarray(v, float)
    if v.size == 0:
        return {}
    return {"median": float(np.median(v)), "p10": float(np.percentile(v, 10)), "p90": float(np.percentile(v, 90))}


def _jsonable(x):
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, (np.floating, np.integer)):
        return x.item()
    if isinstance(x, np.ndarray):
        return x.tolist()
    if hasattr(x, "__dataclass_fields__"):
        return _jsonable(asdict(x))
    return x


def _iv(pair) -> str:
    """A gain interval ``(low, high)`` in points, as the reports print it."""
    return f"[{pair[0] * 100:+.1f}, {pair[1] * 100:+.1f}]"


def _sm(r: dict) -> str:
    con, pt = r.get("contrast", "uncond"), r.get("part", "full")
    return (f"{r.get('smooth_s', 0):g} s, {r.get('smooth_bands', 0)} bands" + ("" if con == "uncond" else f", contrast {con}")
            + ("" if pt == "full" else f", {pt} part"))


JUDGE_NAMES = {"J1": "statistics SVM", "J2": "eGeMAPS SVM", "J3": "voice-encoder SVM"}


def summary_table(rep: dict, amount: float | None = None, smooth_bands: int | None = None, contrast: str | None = None,
                  part: str | None = None, smooth_s: float | None = None) -> str:
    """The README's table: corpus x judge rows; original / identity / fixed EQ / emort (WA / UA) at
    one setting (default for each of amount, contrast, part, band and time smoothing: the first emort
    row's, i.e. a test run's first ``--amounts``, ``--contrasts``, ...), with the median applied
    change and speaker similarity. Raises StopIteration when no emort row has that setting."""
    rows = rep["rows"]
    first = next(r for r in rows if r["condition"] == "emort")
    amount = first["amount_db"] if amount is None else amount
    contrast = first.get("contrast", "uncond") if contrast is None else contrast
    part = first.get("part", "full") if part is None else part
    smooth_bands = first.get("smooth_bands", 0) if smooth_bands is None else smooth_bands
    smooth_s = first.get("smooth_s", 0.0) if smooth_s is None else smooth_s
    em = next(r for r in rows if r["condition"] == "emort" and r["amount_db"] == amount and r.get("smooth_bands", 0) == smooth_bands
              and r.get("contrast", "uncond") == contrast and r.get("part", "full") == part and r.get("smooth_s", 0.0) == smooth_s)
    eq = next(r for r in rows if r["condition"] == "eq" and r["amount_db"] == amount)
    cell = lambda t, c, j: f"{t[c][j]['wa']:.3f} / {t[c][j]['ua']:.3f}"  # noqa: E731
    ci = em.get("gain_ci95")
    soft = "soft_gain" in em
    L = ["| corpus | judge | original | identity | fixed EQ | emort | emort - original (UA pts)" + (" [95% interval]" if ci else "")
         + (" | soft UA gain (pts) [95% interval]" if soft else "") + " |",
         "|---|---|---|---|---|---|---|" + ("---|" if soft else "")]
    for c in rep["original"]:
        for j in rep["original"][c]:
            iv = f" {_iv(ci[c][j])}" if ci else ""
            L.append(f"| {c} | {JUDGE_NAMES.get(j, j)} | {cell(rep['original'], c, j)} | {cell(rep['identity'], c, j)} | "
                     f"{cell(eq['table'], c, j)} | {cell(em['table'], c, j)} | {em['gain'][c][j] * 100:+.1f}{iv} |"
                     + (f" {em['soft_gain'][c][j] * 100:+.1f}" + (f" {_iv(em['soft_gain_ci95'][c][j])}" if em.get("soft_gain_ci95") else "")
                        + " |" if soft else ""))
    L.append("")
    L.append(f"Amount {amount:g} dB, contrast {contrast}" + ("" if part == "full" else f", {part} part") + f". Applied change, median [p10, p90]: emort {em['change_db']['median']:.2f} "
             f"[{em['change_db']['p10']:.2f}, {em['change_db']['p90']:.2f}] dB; speaker similarity to the source (GE2E cosine): "
             f"emort {em['speaker_similarity']['median']:.3f}, EQ {eq['speaker_similarity']['median']:.3f}.")
    return "\n".join(L) + "\n"


def chosen_summary(rep: dict) -> str | None:
    """:func:`summary_table` of the setting the rule chose (``rep["chosen"]``: amount, contrast,
    part, band and time smoothing), or of the first emort row when nothing was chosen (a test
    run); None when the report has no such row."""
    ch = rep.get("chosen")
    try:
        if not ch:
            return summary_table(rep)
        return summary_table(rep, ch["amount_db"], ch.get("smooth_bands", 0), ch.get("contrast", "uncond"), ch.get("part", "full"),
                             ch.get("smooth_s", 0.0))
    except (StopIteration, KeyError):
        return None


def render_markdown(rep: dict, labels: list[str]) -> str:
    f = lambda v: "-" if v is None or (isinstance(v, float) and not np.isfinite(v)) else f"{v:.3f}"  # noqa: E731
    L = [f"# Enhancement, {rep['split']} speakers ({', '.join(rep['speakers'])})", ""]
    L.append(f"Judges trained on {rep['judge_training']['clips']} clips of {len(rep['judge_training']['speakers'])} training speakers; "
             "each speaker z-scored with its original clips' statistics; audio analysed at 16 kHz. Target = each clip's own emotion. "
             f"Base options (each row's amount, smoothing, contrast and part are its own): {json.dumps(rep['options'])}; "
             f"denoiser precision {(rep.get('precision') or {}).get('ran', 'fp32')}. Identity path returns the input samples exactly: {rep['identity_equals_original_samples']}.")
    if rep.get("ser_heard"):
        L.append("")
        L.append(f"The bundle's SER (not its diffusion model) was trained on {', '.join(rep['ser_heard'])}: the edit reads only its "
                 "emotion centroids, to which those speakers' clips contributed.")
    L.append("")
    summary = chosen_summary(rep)
    if summary is not None:
        L += ["## Summary", "", summary, "## All rows", ""]
    L.append("UA (WA) per corpus and judge. `eq` = fixed per-emotion EQ at the same amount through the same path.")
    L.append("")
    corp = list(rep["original"])
    judges = list(next(iter(rep["original"].values())))
    L.append("| row | amount dB | smoothing (s, bands) | " + " | ".join(f"{c} {j}" for c in corp for j in judges) + " | change dB median | speaker sim. median |")
    L.append("|---|---|---|" + "---|" * (len(corp) * len(judges) + 2))
    cell = lambda t, c, j: f"{t[c][j]['ua']:.3f} ({t[c][j]['wa']:.3f})"  # noqa: E731
    L.append("| original | 0 | - | " + " | ".join(cell(rep["original"], c, j) for c in corp for j in judges) + " | 0 | 1 |")
    L.append("| identity | 0 | - | " + " | ".join(cell(rep["identity"], c, j) for c in corp for j in judges) + " | 0 | 1 |")
    for r in rep["rows"]:
        L.append(f"| {r['condition']} | {r['amount_db']:g} | {_sm(r)} | " + " | ".join(cell(r["table"], c, j) for c in corp for j in judges)
                 + f" | {f(r['change_db'].get('median'))} | {f(r['speaker_similarity'].get('median'))} |")
    L.append("")
    L.append("UA gain over the original, points (worst cell last):")
    L.append("")
    L.append("| row | amount dB | smoothing (s, bands) | " + " | ".join(f"{c} {j}" for c in corp for j in judges) + " | worst |")
    L.append("|---|---|---|" + "---|" * (len(corp) * len(judges) + 1))
    for r in rep["rows"]:
        L.append(f"| {r['condition']} | {r['amount_db']:g} | {_sm(r)} | " + " | ".join(f"{r['gain'][c][j] * 100:+.1f}" for c in corp for j in judges)
                 + f" | {r['worst_gain'] * 100:+.1f} |")
    if all(r.get("soft_gain") for r in rep["rows"]):
        L += ["", "Soft UA gain over the original, points: UA with each clip's hit replaced by the judge's probability of its own "
              "emotion (moves with every clip, not in steps of one); in brackets its 95% interval (paired bootstrap, as below):", ""]
        L.append("| row | amount dB | smoothing (s, bands) | " + " | ".join(f"{c} {j}" for c in corp for j in judges) + " | worst |")
        L.append("|---|---|---|" + "---|" * (len(corp) * len(judges) + 1))
        sci = lambda r, c, j: f" {_iv(r['soft_gain_ci95'][c][j])}" if r.get("soft_gain_ci95") else ""  # noqa: E731
        for r in rep["rows"]:
            L.append(f"| {r['condition']} | {r['amount_db']:g} | {_sm(r)} | " + " | ".join(f"{r['soft_gain'][c][j] * 100:+.1f}{sci(r, c, j)}" for c in corp for j in judges)
                     + f" | {r['worst_soft_gain'] * 100:+.1f} |")
    if any(r.get("gain_ci95") for r in rep["rows"]):
        L += ["", "95% intervals of those gains, points (paired bootstrap over these speakers' clips, within each emotion: "
              "how much a gain could move with other clips of the same speakers, not with other speakers):", ""]
        L.append("| row | amount dB | smoothing (s, bands) | " + " | ".join(f"{c} {j}" for c in corp for j in judges) + " |")
        L.append("|---|---|---|" + "---|" * (len(corp) * len(judges)))
        L += [f"| {r['condition']} | {r['amount_db']:g} | {_sm(r)} | " + " | ".join(_iv(r["gain_ci95"][c][j]) for c in corp for j in judges) + " |"
              for r in rep["rows"] if r.get("gain_ci95")]
    if rep.get("chosen"):
        L += ["", f"Chosen on these (validation) speakers: amount {rep['chosen']['amount_db']:g} dB, smoothing {_sm(rep['chosen'])} "
              f"({rep['chosen']['rule']})."]
    L += ["", "Per-emotion recall (original -> emort, first amount row of emort):", ""]
    ch = rep.get("chosen")
    er = next((r for r in rep["rows"] if r["condition"] == "emort" and (not ch or (r["amount_db"] == ch["amount_db"] and _sm(r) == _sm(ch)))), None)
    if er:
        L.append("| corpus | judge | " + " | ".join(labels) + " |")
        L.append("|---|---|" + "---|" * len(labels))
        for c in corp:
            for j in judges:
                a, b = rep["original"][c][j]["recall"], er["table"][c][j]["recall"]
                L.append(f"| {c} | {j} | " + " | ".join("-" if a[k] is None else f"{a[k]:.2f} -> {b[k]:.2f}" for k in labels) + " |")
    if rep.get("range"):
        far = rep["far_class"]
        L += ["", "Beyond the training range: share of clips farther from their speaker's originals than 95% of the judges' training "
              "clips from theirs, and in brackets the share beyond it AND given the judge's far class ("
              + ", ".join(f"{j} {far[j]}" for j in judges) + ": what it answers far from every training clip):", ""]
        L.append("| row | amount dB | smoothing (s, bands) | " + " | ".join(judges) + " |")
        L.append("|---|---|---|" + "---|" * len(judges))
        fr = lambda g: " | ".join(f"{g['beyond'][j]:.2f} ({g['beyond_heard_far'][j]:.2f})" for j in judges)  # noqa: E731
        L += [f"| {k} | 0 | - | {fr(g)} |" for k, g in rep["range"].items()]
        L += [f"| {r['condition']} | {r['amount_db']:g} | {_sm(r)} | {fr(r['range'])} |" for r in rep["rows"] if r.get("range")]
        within = [r for r in rep["rows"] if (r.get("range") or {}).get("ua_within")]
        if within:
            L += ["", "Within the range: UA (all corpora pooled) of the clips each row leaves within the judge's range, original -> "
                  "this row on the same clips (clips):", ""]
            L.append("| row | amount dB | smoothing (s, bands) | " + " | ".join(judges) + " |")
            L.append("|---|---|---|" + "---|" * len(judges))
            fw = lambda w: f"{w[0]:.3f} -> {w[1]:.3f} ({w[2]})"  # noqa: E731
            L += [f"| {r['condition']} | {r['amount_db']:g} | {_sm(r)} | " + " | ".join(fw(r["range"]["ua_within"][j]) for j in judges) + " |"
                  for r in within]
    conv = rep.get("conversion") or {}
    if conv.get("targets"):
        L += ["", f"Conversion: {conv['clips']} neutral clips -> each target at {conv['amount_db']:g} dB; share judged as the target "
              "(original / eq / emort):", ""]
        L.append("| target | " + " | ".join(judges) + " |")
        L.append("|---|" + "---|" * len(judges))
        for t, row in conv["targets"].items():
            L.append(f"| {t} | " + " | ".join(f"{row['original'][j]:.2f} / {row['eq'][j]:.2f} / {row['emort'][j]:.2f}" for j in judges) + " |")
    t2t = rep.get("take_to_take") or {}
    if t2t and "error" not in t2t:
        L += ["", f"Take-to-take yardstick (two natural takes of one sentence, training speakers): {json.dumps(t2t.get('summary', t2t))[:600]}"]
    L += ["", f"Run time {rep['seconds']:.0f} s (judge fitting {rep['judge_training']['fit_s']:.0f} s)."]
    return "\n".join(L) + "\n"
