"""Corpus readers that need no metadata files, label maps, and split helpers.

Every reader yields :class:`Item` (path, emotion, speaker, corpus). Labels are
mapped onto the canonical six (``EMOTIONS``) by the explicit tables below;
labels outside the six (calm, surprised, boredom) keep their own names and are
dropped only where a caller asks for the six (:func:`only_canonical`).
Pure standard library: ``emort data scan`` runs on a core install.
"""

from __future__ import annotations

import csv
import random
import re
from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from emort.runtime.audio import AUDIO_EXTENSIONS
from emort.runtime.errors import EmortError
from emort.runtime.settings import EMOTIONS


@dataclass(frozen=True)
class Item:
    path: str
    emotion: str
    speaker: str
    corpus: str

    @property
    def speaker_key(self) -> str:
        """Speaker id unique across corpora (speaker ids repeat between corpora)."""
        return f"{self.corpus}/{self.speaker}"

    @property
    def source_speaker_key(self) -> str:
        """The speaker whose voice this is: :func:`source_speaker` of :attr:`speaker_key`."""
        return source_speaker(self.speaker_key)


def source_speaker(speaker_key: str) -> str:
    """``corpus/speaker`` of the original speaker behind a key: an augmented copy listed by
    ``emort augment`` (speaker ``emodb/09+emort`` in ``manifest.csv``, key
    ``manifest/emodb/09+emort``) is ``emodb/09``; any other key is itself. Splits and
    leakage checks hold out a speaker's copies with the speaker."""
    key = speaker_key.split("+", 1)[0]
    parts = key.split("/")
    return "/".join(parts[1:]) if len(parts) > 2 else key


# --- label maps (documented in the README) --------------------------------------------------

#: EmoDB emotion letter (German) -> label.
EMODB_LABELS = {
    "W": "angry",  # Wut
    "L": "boredom",  # Langeweile (outside the six)
    "E": "disgust",  # Ekel
    "A": "fear",  # Angst
    "F": "happy",  # Freude
    "T": "sad",  # Trauer
    "N": "neutral",
}
#: RAVDESS emotion code -> label.
RAVDESS_LABELS = {
    "01": "neutral",
    "02": "calm",  # outside the six
    "03": "happy",
    "04": "sad",
    "05": "angry",
    "06": "fear",
    "07": "disgust",
    "08": "surprised",  # outside the six
}
#: CREMA-D emotion code -> label.
CREMAD_LABELS = {"ANG": "angry", "DIS": "disgust", "FEA": "fear", "HAP": "happy", "NEU": "neutral", "SAD": "sad"}
#: TESS folder/file emotion word -> label.
TESS_LABELS = {
    "angry": "angry",
    "disgust": "disgust",
    "fear": "fear",
    "happy": "happy",
    "neutral": "neutral",
    "sad": "sad",
    "ps": "surprised",
    "pleasant_surprise": "surprised",
    "pleasant_surprised": "surprised",
}
#: nEMO file-name emotion word -> label. nEMO has no disgust.
NEMO_LABELS = {
    "anger": "angry",
    "fear": "fear",
    "happiness": "happy",
    "neutral": "neutral",
    "sadness": "sad",
    "surprised": "surprised",  # outside the six
}
#: Free-form label (folder names, CSV cells) -> label.
GENERIC_LABELS = {
    **{e: e for e in EMOTIONS},
    "anger": "angry",
    "happiness": "happy",
    "joy": "happy",
    "sadness": "sad",
    "fearful": "fear",
    "disgusted": "disgust",
    "calm": "calm",
    "surprise": "surprised",
    "surprised": "surprised",
    "boredom": "boredom",
    "bored": "boredom",
}

_EMODB_RE = re.compile(r"^(\d\d)([a-z]\d\d)([WLEAFTN])([a-z])$")
_RAVDESS_RE = re.compile(r"^(\d\d)-(\d\d)-(\d\d)-(\d\d)-(\d\d)-(\d\d)-(\d\d)$")
_CREMAD_RE = re.compile(r"^(\d{4})_([A-Z]{3})_([A-Z]{3})_([A-Z]{2})$")
_TESS_RE = re.compile(r"^(OAF|YAF)_(\w+?)_(angry|disgust|fear|happy|neutral|sad|ps)$", re.IGNORECASE)
# The nEMO name shape with any emotion word, so that an unknown word is refused rather than skipped.
_NEMO_RE = re.compile(r"^([A-Z]{2}\d)_([a-z]+)_(\d+)$")

CORPUS_KINDS = ("emodb", "ravdess", "cremad", "tess", "nemo", "folders", "csv")


class CorpusError(EmortError):
    pass


def _audio_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in AUDIO_EXTENSIONS)


def read_emodb(root: str | Path) -> Iterator[Item]:
    """EmoDB: ``SSTTTEv.(wav|flac)``: speaker SS, text TTT, emotion letter E, version v."""
    for p in _audio_files(Path(root)):
        m = _EMODB_RE.match(p.stem)
        if m:
            yield Item(str(p), EMODB_LABELS[m.group(3)], m.group(1), "emodb")


def read_ravdess(root: str | Path) -> Iterator[Item]:
    """RAVDESS speech: ``03-01-EE-II-SS-RR-AA``; audio-only speech (modality 03, channel 01)."""
    for p in _audio_files(Path(root)):
        m = _RAVDESS_RE.match(p.stem)
        if m and m.group(2) == "01" and m.group(3) in RAVDESS_LABELS:
            yield Item(str(p), RAVDESS_LABELS[m.group(3)], m.group(7), "ravdess")


def read_cremad(root: str | Path) -> Iterator[Item]:
    """CREMA-D: ``AAAA_SSS_EEE_LL`` (actor, sentence, emotion, level)."""
    for p in _audio_files(Path(root)):
        m = _CREMAD_RE.match(p.stem)
        if m and m.group(3) in CREMAD_LABELS:
            yield Item(str(p), CREMAD_LABELS[m.group(3)], m.group(1), "cremad")


def read_tess(root: str | Path) -> Iterator[Item]:
    """TESS: ``OAF_word_emotion`` / ``YAF_word_emotion`` (two speakers)."""
    for p in _audio_files(Path(root)):
        m = _TESS_RE.match(p.stem)
        if m:
            yield Item(str(p), TESS_LABELS[m.group(3).lower()], m.group(1).upper(), "tess")


def read_nemo(root: str | Path) -> Iterator[Item]:
    """nEMO: ``SPK_EMOTION_N`` (speaker code, emotion word, sentence id), e.g. ``IC0_anger_1``.

    Speaker and label come from the file name alone (``NEMO_LABELS``); the sentence id stays
    in the path. ``surprised`` is kept under its own name, like RAVDESS's calm and EmoDB's
    boredom, so that it is counted and then dropped by :func:`only_canonical`. Raises
    CorpusError naming the file for a name of that shape whose emotion word is not nEMO's;
    other names are skipped, as in the other readers.
    """
    for p in _audio_files(Path(root)):
        m = _NEMO_RE.match(p.stem)
        if not m:
            continue
        label = NEMO_LABELS.get(m.group(2))
        if label is None:
            raise CorpusError(f"{p}: unknown nEMO emotion {m.group(2)!r}; expected one of {', '.join(NEMO_LABELS)}")
        yield Item(str(p), label, m.group(1), "nemo")


def read_folders(root: str | Path, corpus: str = "folders") -> Iterator[Item]:
    """``root/<emotion>/[<speaker>/]file``: emotion from the first folder; speaker from a
    second folder level when present, else unknown (``?``)."""
    root = Path(root)
    for p in _audio_files(root):
        rel = p.relative_to(root).parts
        if len(rel) < 2:
            continue
        label = GENERIC_LABELS.get(rel[0].lower())
        if label is None:
            continue
        speaker = rel[1] if len(rel) >= 3 else "?"
        yield Item(str(p), label, speaker, corpus)


def folders_not_read(root: str | Path) -> int:
    """Audio files under ``root`` that :func:`read_folders` does not read: at the top level, or in
    a first-level folder that names no emotion (``root/weird/a.wav``): counted, so a summary can
    say they were left out (a new user's ``emort augment folders=...`` said "none left out")."""
    root = Path(root)
    parts = (p.relative_to(root).parts for p in _audio_files(root))
    return sum(1 for rel in parts if len(rel) < 2 or GENERIC_LABELS.get(rel[0].lower()) is None)


def read_csv_manifest(csv_path: str | Path, corpus: str | None = None) -> Iterator[Item]:
    """CSV with a header containing ``path, emotion`` and optionally ``speaker``.

    Relative paths are taken from the CSV's folder. Unknown labels raise, naming the row.
    """
    csv_path = Path(csv_path)
    corpus = corpus or csv_path.stem
    with open(csv_path, newline="") as f:
        reader = csv.DictReader(f)
        fields = {k.strip().lower(): k for k in (reader.fieldnames or [])}
        if "path" not in fields or "emotion" not in fields:
            raise CorpusError(f"{csv_path}: needs a header with 'path' and 'emotion' columns")
        for i, row in enumerate(reader, start=2):
            raw = (row.get(fields["emotion"]) or "").strip().lower()  # a short row fills the missing cells with None
            path_cell = (row.get(fields["path"]) or "").strip()
            if not path_cell or not raw:
                raise CorpusError(f"{csv_path}:{i}: no {'path' if not path_cell else 'emotion'} in this row")
            label = GENERIC_LABELS.get(raw)
            if label is None:
                raise CorpusError(f"{csv_path}:{i}: unknown emotion {raw!r}")
            p = Path(path_cell)
            if not p.is_absolute():
                p = csv_path.parent / p
            speaker = row.get(fields.get("speaker", ""), "") or "?"
            yield Item(str(p), label, speaker.strip() or "?", corpus)


def detect_kind(path: str | Path) -> str:
    """Guess a corpus layout from names alone."""
    p = Path(path)
    if p.is_file():
        if p.suffix.lower() == ".csv":
            return "csv"
        raise CorpusError(f"{p}: a corpus is a folder or a CSV manifest")
    if not p.is_dir():
        raise CorpusError(f"{p}: no such folder")
    files = _audio_files(p)
    if not files:
        raise CorpusError(f"{p}: no audio files found")
    stems = [f.stem for f in files[:200]]
    for kind, rx in (("ravdess", _RAVDESS_RE), ("emodb", _EMODB_RE), ("cremad", _CREMAD_RE), ("tess", _TESS_RE), ("nemo", _NEMO_RE)):
        if sum(bool(rx.match(s)) for s in stems) > len(stems) / 2:
            return kind
    if any(c.is_dir() and c.name.lower() in GENERIC_LABELS for c in p.iterdir()):
        return "folders"
    raise CorpusError(
        f"{p}: layout not recognised; name it, e.g. --data emodb=PATH (kinds: {', '.join(CORPUS_KINDS)})"
    )


def read_corpus(path: str | Path, kind: str | None = None) -> list[Item]:
    """Read a corpus of the given (or detected) kind; raise CorpusError if it yields nothing."""
    kind = kind or detect_kind(path)
    readers = {
        "emodb": read_emodb,
        "ravdess": read_ravdess,
        "cremad": read_cremad,
        "tess": read_tess,
        "nemo": read_nemo,
        "folders": read_folders,
        "csv": read_csv_manifest,
    }
    if kind not in readers:
        raise CorpusError(f"unknown corpus kind {kind!r}; kinds: {', '.join(CORPUS_KINDS)}")
    if not Path(path).exists():
        raise CorpusError(f"{path}: no such file or folder")
    items = list(readers[kind](path))
    if not items:
        raise CorpusError(f"{path}: no {kind} files found")
    return items


def parse_data_spec(spec: str) -> tuple[str | None, str]:
    """``emodb=PATH`` -> ("emodb", PATH); ``PATH`` -> (None, PATH) (kind detected).

    Raises CorpusError for ``WORD=PATH`` with an unknown kind (a typo such as ``emdob=``)
    unless the whole spec is an existing path (a folder whose name holds ``=``)."""
    if "=" in spec:
        kind, path = spec.split("=", 1)
        if kind in CORPUS_KINDS:
            return kind, path
        if re.fullmatch(r"[A-Za-z][A-Za-z0-9_-]*", kind) and not Path(spec).exists():
            raise CorpusError(f"{spec}: unknown corpus kind {kind!r}; kinds: {', '.join(CORPUS_KINDS)}")
    return None, spec


def read_specs(specs: Iterable[str]) -> list[Item]:
    """The items of every ``KIND=PATH`` spec, each audio file once: a file an earlier spec already
    gave (the same corpus named twice, e.g. ``emodb=x`` and ``emodb=x/``) is read once, with a
    warning naming the spec (before 0.24 it was counted and trained on twice)."""
    import logging
    import os

    items: list[Item] = []
    seen: set[str] = set()
    for s in specs:
        kind, path = parse_data_spec(s)
        new = 0
        got = list(read_corpus(path, kind))
        mine: set[str] = set()
        for it in got:  # a spec's own rows are kept as it lists them; only files of an earlier spec are dropped
            key = os.path.realpath(it.path)
            if key not in seen:
                mine.add(key)
                items.append(it)
                new += 1
        seen |= mine
        if new < len(got):
            logging.getLogger(__name__).warning("%s: %d of its %d files were given already by an earlier corpus argument; each file is read once",
                                                s, len(got) - new, len(got))
    return items


def only_canonical(items: Iterable[Item], labels: tuple[str, ...] = EMOTIONS) -> list[Item]:
    """Keep the items whose label is one of ``labels`` (the six by default)."""
    return [it for it in items if it.emotion in labels]


# --- splits -------------------------------------------------------------------------------


def split_by_speakers(items: Iterable[Item], held_out: Iterable[str]) -> tuple[list[Item], list[Item]]:
    """(train, test) with every item of the ``held_out`` speaker keys (``corpus/speaker``,
    or bare speaker ids) in test, augmented copies of those speakers included
    (:attr:`Item.source_speaker_key`)."""
    held = set(held_out)
    train, test = [], []
    for it in items:
        (test if it.speaker_key in held or it.speaker in held or it.source_speaker_key in held else train).append(it)
    return train, test


def leave_one_speaker_out(items: Iterable[Item]) -> list[tuple[str, list[Item], list[Item]]]:
    """One fold per speaker key: (speaker_key, train, test)."""
    items = list(items)
    speakers = sorted({it.speaker_key for it in items})
    return [(s, [i for i in items if i.speaker_key != s], [i for i in items if i.speaker_key == s]) for s in speakers]


def random_split(items: Iterable[Item], train_fraction: float = 0.8, seed: int = 0) -> tuple[list[Item], list[Item]]:
    """The paper's random 8:2 split, stratified by (corpus, emotion), seeded."""
    groups: dict[tuple[str, str], list[Item]] = defaultdict(list)
    for it in items:
        groups[(it.corpus, it.emotion)].append(it)
    rng = random.Random(seed)
    train, test = [], []
    for key in sorted(groups):
        g = sorted(groups[key], key=lambda i: i.path)
        rng.shuffle(g)
        k = round(len(g) * train_fraction)
        train += g[:k]
        test += g[k:]
    return train, test


def holdout_validation_speakers(items: Iterable[Item], per_corpus: int = 1, seed: int = 0) -> list[str]:
    """Pick ``per_corpus`` speakers of each corpus (seeded) for early stopping."""
    by_corpus: dict[str, set[str]] = defaultdict(set)
    for it in items:
        if it.speaker != "?":
            by_corpus[it.corpus].add(it.speaker_key)
    rng = random.Random(seed)
    out: list[str] = []
    for c in sorted(by_corpus):
        spk = sorted(by_corpus[c])
        if len(spk) > per_corpus:
            out += rng.sample(spk, per_corpus)
    return sorted(out)


def count_table(items: Iterable[Item]) -> dict:
    """Counts per corpus: ``{corpus: {"files": n, "emotions": {e: n}, "speakers": {s: n}}}``."""
    out: dict = {}
    for it in items:
        c = out.setdefault(it.corpus, {"files": 0, "emotions": defaultdict(int), "speakers": defaultdict(int)})
        c["files"] += 1
        c["emotions"][it.emotion] += 1
        c["speakers"][it.speaker] += 1
    return {
        k: {"files": v["files"], "emotions": dict(sorted(v["emotions"].items())), "speakers": dict(sorted(v["speakers"].items()))}
        for k, v in out.items()
    }
