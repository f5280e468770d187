"""``emort eval augment``: does augmentation help the statistics classifier on unseen speakers and corpora?

The ablation the seed paper lacks (its Tables 10-11 compare emotion-edited data only against
DCGAN-made data): no augmentation / classic channel augmentation / emort's own edits / both,
for each seed of the augmented data, with the statistics classifier of ``emort score
--per-speaker`` (:class:`~emort.training.stats_classifier.StatsClassifier`: per-speaker z-score,
an RBF SVM as 0.8-0.18 shipped it, or since 0.19 logistic regression: ``--model``; fitted in
seconds, so every condition and seed is affordable on a CPU; the neural SER is not retrained here).

Augmented data comes from ``emort augment`` manifests (``--aug KIND:SEED=MANIFEST``); a row's
source corpus is the prefix of its ``speaker`` column (``emodb/09+emort``). Two protocols, each
with a validation row (where choices are made) and a test row (only reported):

- held-out speakers: fit on the training speakers of every corpus (+ their augmented copies);
  validation = the project's validation speakers, test = its test speakers;
- leave-one-corpus-out: for each corpus C, fit on the training and validation speakers of the
  other corpora (+ augmented copies of theirs only); validation = C's non-test speakers, test =
  C's test speakers. The label set of C is its own (nEMO has no disgust).

Every speaker is z-scored over all its clips, any emotion (as ``emort train stats``); an
augmented speaker (``emodb/09+emort``) over its own augmented clips. UA is taken over the
classes each row's clips have, predictions restricted to them (nEMO: five classes, in both
protocols; ``emort eval ser`` restricts only in its leave-one-corpus-out rows).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from emort.runtime.atomic import write_json_atomic, write_text_atomic
from emort.runtime.errors import EmortError
from emort.runtime.settings import DEFAULT_MEL, EMOTIONS
from emort.runtime.ustats import speaker_stats_from
from emort.training import corpora
from emort.training.metrics import classification_report
from emort.training.splits import TEST_SPEAKERS, VAL_SPEAKERS
from emort.training.stats_classifier import StatsClassifier
from emort.training.ustats import pool_statistics

CONDITIONS = ("none", "classic", "emort", "both")
#: The classifiers the ablation fits (:data:`~emort.training.stats_classifier.MODELS`): 0.8-0.18's and 0.19's.
MODELS = ("svm", "logreg")


@dataclass(frozen=True)
class AugSpec:
    kind: str  # "classic" or "emort"
    seed: str
    csv_path: str  # the manifest of `emort augment`

    @classmethod
    def parse(cls, spec: str) -> AugSpec:
        """``KIND:SEED=MANIFEST``, e.g. ``emort:0=runs/aug/emodb_emort_s0/manifest.csv``."""
        head, sep, path = spec.partition("=")
        kind, _, seed = head.partition(":")
        if not sep or kind not in ("classic", "emort") or not seed or not path:
            raise EmortError(f"--aug {spec!r}: expected KIND:SEED=MANIFEST with KIND classic or emort")
        return cls(kind, seed, path)


def _manifest_facts(csv_path: str) -> tuple[dict[str, str], set[str]]:
    """One read of a manifest: resolved audio path -> ``kind`` column, and the hashes of the
    bundles that made its emort rows (``edit_hash`` since 0.9, ``content_hash`` before)."""
    import csv

    base = Path(csv_path).parent
    kinds, bundles = {}, set()
    with open(csv_path, newline="") as f:
        for r in csv.DictReader(f):
            if r.get("kind"):
                kinds[str((base / r["path"]).resolve())] = r["kind"]
            if r.get("kind") == "emort" and r.get("settings"):
                bundles.add(json.loads(r["settings"]).get("bundle", "?"))
    return kinds, bundles


def bundle_corpora(hashes: set[str]) -> list[str] | None:
    """Corpora whose speakers trained (or early-stopped) the bundle that made the emort copies,
    when that bundle is the default one; None when it is another (unknown) bundle."""
    from emort.runtime.bundle import load_bundle

    b = load_bundle(None)
    if not hashes or not hashes <= {b.edit_hash, b.content_hash}:  # rows of 0.9 record edit_hash, earlier ones content_hash
        return None
    seen = {s for r in b.training.values() for s in r.split.train_speakers + r.split.val_speakers}
    return sorted({corpora.source_speaker(s).split("/")[0] for s in seen})


def source_corpus(item: corpora.Item) -> str:
    """Corpus of an augmented clip: the ``corpus/`` prefix of its manifest speaker."""
    return item.speaker.split("/", 1)[0] if "/" in item.speaker else item.corpus


def _ua(y: np.ndarray, probs: np.ndarray, labels: list[str]) -> float:
    from emort.evaluation.ser_eval import argmax_present

    return classification_report(y, argmax_present(probs, np.isin(np.arange(len(labels)), y)), labels).ua


def run_ablation(data: list[str], augs: list[AugSpec], out_dir: str | Path, features: str = "ustats", C: float | None = None,
                 model: str = "svm") -> dict:
    """Fit every condition x seed under both protocols; write ``augment_ablation.{json,md}``. ``model``, ``C``:
    the classifier (:class:`~emort.training.stats_classifier.StatsClassifier`: "svm" as 0.8-0.18 shipped it,
    "logreg" as 0.19 does; C None: the model's default, :func:`~emort.training.stats_classifier.resolve_c`).
    EmortError for another model, before any feature is computed."""
    from emort.training.stats_classifier import resolve_c

    if model not in MODELS:
        raise EmortError(f"model {model!r}: the ablation fits {' or '.join(MODELS)}")
    C = resolve_c(model, C)
    labels = list(EMOTIONS)
    every = corpora.read_specs(data)
    items = corpora.only_canonical(every, tuple(labels))
    if not items:
        raise EmortError("no clips in --data")
    held = set(TEST_SPEAKERS)
    aug_items: dict[tuple[str, str], list[corpora.Item]] = {}
    hashes: set[str] = set()
    for a in augs:
        kinds, bundles = _manifest_facts(a.csv_path)
        if a.kind == "emort":
            hashes |= bundles
        # a manifest may list both kinds (one --out for both): take this spec's rows only
        got = [i for i in corpora.only_canonical(corpora.read_specs([f"csv={a.csv_path}"]), tuple(labels))
               if kinds.get(str(Path(i.path).resolve()), a.kind) == a.kind]
        bad = sorted({i.speaker.split("+")[0] for i in got} & held)
        if bad:
            raise EmortError(f"{a.csv_path}: augmented copies of test speakers {', '.join(bad)}; remake it with `emort augment`")
        aug_items.setdefault((a.kind, a.seed), []).extend(got)
    seeds = sorted({s for _, s in aug_items})
    for s in seeds:
        for k in ("classic", "emort"):
            if (k, s) not in aug_items:
                raise EmortError(f"seed {s}: no {k} manifest given (each seed needs both kinds: --aug {k}:{s}=MANIFEST)")
    # Features once: originals (all clips of each speaker, for its statistics) and augmented clips.
    x_all, ref = pool_statistics(every, DEFAULT_MEL, features)
    at = {i.path: k for k, i in enumerate(every)}
    x = x_all[[at[i.path] for i in items]]
    y = np.array([labels.index(i.emotion) for i in items])
    spk = np.array([i.speaker_key for i in items])
    corp = np.array([i.corpus for i in items])
    aug_x: dict[tuple[str, str], tuple[np.ndarray, ...]] = {}
    for (kind, seed), its in aug_items.items():
        xa, _ = pool_statistics(its, DEFAULT_MEL, features)
        # One group per augmented speaker, kind and seed (every manifest's corpus is "manifest").
        sa = np.array([f"{i.speaker}@{kind}:{seed}" for i in its])
        ref.update(speaker_stats_from(xa, sa))
        aug_x[(kind, seed)] = (xa, np.array([labels.index(i.emotion) for i in its]), sa,
                               np.array([source_corpus(i) for i in its]), np.array([i.speaker.split("+")[0] for i in its]))
    is_test = np.isin(spk, list(held))
    is_val = np.isin(spk, list(VAL_SPEAKERS))
    corpus_names = sorted(set(corp))

    def fit_predict(train_mask: np.ndarray, cond: str, seed: str | None, allowed: set[str], skip: set[str]) -> np.ndarray:
        """Fit on the originals of ``train_mask`` plus the condition's copies from corpora in
        ``allowed`` whose source speaker is not in ``skip``; probabilities of every original."""
        xs, ys, ss = [x[train_mask]], [y[train_mask]], [spk[train_mask]]
        kinds = {"none": (), "classic": ("classic",), "emort": ("emort",), "both": ("classic", "emort")}[cond]
        for k in kinds:
            xa, ya, sa, ca, base = aug_x[(k, seed)]
            m = np.isin(ca, list(allowed)) & ~np.isin(base, list(skip))
            xs.append(xa[m]); ys.append(ya[m]); ss.append(sa[m])  # noqa: E702
        clf = StatsClassifier(labels=tuple(labels), C=C, model=model).fit(np.vstack(xs), np.concatenate(ys), np.concatenate(ss), speaker_stats=ref)
        return clf.predict_proba(x, spk, ref)

    rows: list[dict] = []
    runs = [("none", None)] + [(c, s) for s in seeds for c in CONDITIONS[1:]]
    for cond, seed in runs:
        # Held-out speakers: training speakers of every corpus; augmented copies of training speakers only.
        train = ~is_test & ~is_val
        p = fit_predict(train, cond, seed, set(corpus_names), set(VAL_SPEAKERS))
        row: dict = {"condition": cond, "seed": seed, "speakers": {}, "cross_corpus": {}}
        for c in corpus_names:
            for part, m in (("val", is_val & (corp == c)), ("test", is_test & (corp == c))):
                if m.any():
                    row["speakers"][f"{c}/{part}"] = _ua(y[m], p[m], labels)
        # Leave one corpus out: originals and copies of the other corpora only.
        for c in corpus_names:
            others = set(corpus_names) - {c}
            p = fit_predict(~is_test & (corp != c), cond, seed, others, set())
            for part, m in (("val", (corp == c) & ~is_test), ("test", (corp == c) & is_test)):
                if m.any():
                    row["cross_corpus"][f"{c}/{part}"] = _ua(y[m], p[m], labels)
        rows.append(row)
    name = {"svm": "RBF SVM", "logreg": "logistic regression"}.get(model, model)
    result = {"features": features, "C": C, "model": f"statistics classifier (per-speaker z-score, {name})",
              "emort_bundle_saw": bundle_corpora(hashes) if hashes else [],
              "augmented_clips": {f"{k}:{s}": len(v) for (k, s), v in aug_items.items()}, "rows": rows}
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    write_json_atomic(out / "augment_ablation.json", result)
    write_text_atomic(out / "augment_ablation.md", format_markdown(result, corpus_names))
    return result


def _mean_over_seeds(rows: list[dict], cond: str, block: str, key: str) -> tuple[float, float]:
    v = [r[block][key] for r in rows if r["condition"] == cond and key in r[block]]
    return float(np.mean(v)), float(np.std(v)) if len(v) > 1 else 0.0


def format_markdown(result: dict, corpus_names: list[str]) -> str:
    rows = result["rows"]
    saw = result.get("emort_bundle_saw")
    tainted = set(corpus_names) if saw is None else set(saw or [])
    md = ["# Augmentation ablation: statistics classifier\n",
          f"Features: {result['features']}; model: {result['model']}, C = {result['C']}. Augmented clips per kind:seed: "
          + ", ".join(f"{k} {v}" for k, v in result["augmented_clips"].items()) + ".\n",
          "UA; mean over the augmentation seeds (± sd). Validation rows are where choices are made; test rows are only reported.\n"]
    for block, title in (("speakers", "Held-out speakers"), ("cross_corpus", "Leave one corpus out")):
        keys = [f"{c}/{p}" for p in ("val", "test") for c in corpus_names if any(f"{c}/{p}" in r[block] for r in rows)]
        md += [f"## {title}\n", "| condition | " + " | ".join(keys) + " | mean val |", "|---" * (len(keys) + 2) + "|"]
        for cond in CONDITIONS:
            if not any(r["condition"] == cond for r in rows):
                continue
            cells = [_mean_over_seeds(rows, cond, block, k) for k in keys]
            val = [m for k, (m, _) in zip(keys, cells) if k.endswith("/val")]
            mark = [block == "cross_corpus" and cond in ("emort", "both") and k.split("/")[0] in tainted for k in keys]
            md.append(f"| {cond} | " + " | ".join(f"{m:.3f}" + (f" ± {s:.3f}" if s else "") + (" †" if t else "")
                                                  for (m, s), t in zip(cells, mark)) + f" | {np.mean(val):.3f} |")
        if block == "cross_corpus" and tainted and any(r["condition"] in ("emort", "both") for r in rows):
            md.append("\n† Not a clean leave-one-corpus-out cell: the emort copies were made by a bundle whose models "
                      f"saw speakers of {', '.join(sorted(tainted))} (training or early stopping), so the copies of the "
                      "other corpora carry what it learned there.")
        md.append("")
    return "\n".join(md)
