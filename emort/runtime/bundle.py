"""Model bundle: a folder with ``manifest.json`` + ONNX files. Read and validated here only.

The manifest is written in one place (``emort.export.onnx.write_bundle``) and
parsed in one place (this module) into typed fields of :class:`Bundle`: the graphs
(:class:`ModelSpec`), file checksums, parity and how each model was trained
(:class:`TrainingRecord`). Other modules read those fields, never the dict.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from emort import __version__
from emort.runtime.editing import EditOptions
from emort.runtime.errors import BundleError
from emort.runtime.prosody import ProsodyTable
from emort.runtime.samplers import NoiseSchedule
from emort.runtime.settings import MelSettings, VoiceSettings
from emort.runtime.ustats import zscore

FORMAT = "emort-bundle"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
#: Where the shipped default bundle lives inside the package.
DEFAULT_BUNDLE = Path(__file__).resolve().parent.parent / "assets" / "default_bundle"


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


#: The models :class:`emort.runtime.enhancer.Enhancer` reads (its SER scores the source and the
#: output and gives the conditioning embedding).
EDIT_MODELS = ("ser", "style", "denoiser")
#: Manifest fields an edit reads besides the graphs (all written by export from the same runs).
EDIT_FIELDS = ("mel", "labels", "norm", "centroids", "schedule", "prediction", "stride")


@dataclass(frozen=True)
class ModelSpec:
    """One ONNX graph (``models.<name>`` of the manifest): file, input/output names and facts."""

    file: str
    inputs: list[str]
    outputs: list[str]
    #: Width of the graph's embedding output (ser, ser_speaker: ``embedding``; style: ``style``).
    dim: int | None = None
    #: Input normalisation: "global" (the bundle's statistics, or the graph's own below) or
    #: "speaker" (the speaker's own).
    norm: str = "global"
    #: ser_clip: the graph's own global z-score statistics ``(n_mels,)`` (it was trained apart
    #: from the SER whose statistics the manifest's ``norm`` holds); None: the bundle's.
    norm_mean: tuple[float, ...] | None = None
    norm_std: tuple[float, ...] | None = None
    #: denoiser: FLOPs of one forward per frame at batch 1 (the cost model's numerator).
    flops_per_frame: float | None = None
    #: stats: the :data:`emort.runtime.ustats.STATS_VERSION` it was fitted with, and its input width.
    stats_version: int | None = None
    n_features: int | None = None
    #: stats: the features it reads (:data:`emort.runtime.ustats.RUNTIME_FEATURES`), the
    #: :data:`emort.runtime.ustats.PITCH_VERSION` of their F0 part, and the SER's weight in the
    #: fusion (:func:`emort.runtime.ustats.fuse_weighted`). Manifests before 0.9: log-mel
    #: statistics, plain geometric mean.
    features: str = "ustats"
    pitch_version: int | None = None
    ser_weight: float = 1.0
    #: voice_encoder: its front end; voice_encoder, stats_voice: the
    #: :data:`emort.runtime.voice.VOICE_VERSION` of the embedding.
    frontend: VoiceSettings | None = None
    voice_version: int | None = None
    #: stats_egemaps: the :data:`emort.runtime.egemaps.EGEMAPS_VERSION` of its eGeMAPS part.
    egemaps_version: int | None = None

    @classmethod
    def from_manifest(cls, d: dict) -> ModelSpec:
        opt = d.get
        return cls(
            file=d["file"],
            inputs=list(d["inputs"]),
            outputs=list(d["outputs"]),
            dim=None if opt("dim") is None else int(d["dim"]),
            norm=str(opt("norm", "global")),
            norm_mean=None if opt("mean") is None else tuple(float(v) for v in d["mean"]),
            norm_std=None if opt("std") is None else tuple(float(v) for v in d["std"]),
            flops_per_frame=None if opt("flops_per_frame") is None else float(d["flops_per_frame"]),
            stats_version=None if opt("stats_version") is None else int(d["stats_version"]),
            n_features=None if opt("n_features") is None else int(d["n_features"]),
            features=str(opt("features", "ustats")),
            pitch_version=None if opt("pitch_version") is None else int(d["pitch_version"]),
            ser_weight=float(opt("ser_weight", 1.0)),
            # anything but a mapping is left out, so only the voice classifier is refused (Scorer.load)
            frontend=VoiceSettings.from_dict(d["frontend"]) if isinstance(opt("frontend"), dict) else None,
            voice_version=None if opt("voice_version") is None else int(d["voice_version"]),
            egemaps_version=None if opt("egemaps_version") is None else int(d["egemaps_version"]),
        )


@dataclass(frozen=True)
class SpeakerSplit:
    """Which speakers (``corpus/speaker``) a model was fitted on and which it never saw."""

    train_speakers: tuple[str, ...] = ()
    val_speakers: tuple[str, ...] = ()
    test_speakers: tuple[str, ...] = ()
    #: The validation speakers were fitted too (``--fit-val``).
    val_in_train: bool = False
    #: Never fitted: the test speakers, plus the validation ones unless ``val_in_train``.
    held_out_speakers: tuple[str, ...] = ()

    @property
    def fitted_speakers(self) -> tuple[str, ...]:
        """Every speaker whose clips the model was fitted on."""
        return tuple(sorted(set(self.train_speakers) | (set(self.val_speakers) if self.val_in_train else set())))


@dataclass(frozen=True)
class TrainingRecord:
    """How one model of the bundle was trained (``training.<name>`` of the manifest)."""

    split: SpeakerSplit
    #: The run's training options as recorded (its ``*TrainConfig`` as a dict): seed, norm, ...
    options: dict = field(default_factory=dict)
    #: Architecture config (SER runs), preset name, and the epoch kept with its validation scores.
    model: dict | None = None
    preset: str | None = None
    best: dict | None = None
    #: Statistics classifier: its feature version and fit summary.
    stats_version: int | None = None
    result: dict | None = None

    @classmethod
    def from_manifest(cls, d: dict) -> TrainingRecord:
        sp = d.get("split") or {}
        train = tuple(sp.get("train_speakers") or d.get("train_speakers") or ())
        val, test = tuple(sp.get("val_speakers") or ()), tuple(sp.get("test_speakers") or ())
        val_in_train = bool(sp.get("val_in_train", False))
        held = d.get("held_out_speakers")  # diffusion runs record it; SER and stats runs record val / test
        if held is None:
            held = sorted(set(test) | (set() if val_in_train else set(val)))
        return cls(
            split=SpeakerSplit(train, val, test, val_in_train, tuple(held)),
            options=dict(d.get("train") or {}),
            model=d.get("model"),
            preset=d.get("preset"),
            best=d.get("best"),
            stats_version=d.get("stats_version"),
            result=d.get("result"),
        )


@dataclass(frozen=True)
class ShapeRange:
    """Batch/frames ranges the graphs are built for (TensorRT optimisation profiles)."""

    batch: tuple[int, int, int] = (1, 2, 8)  # min, opt, max
    frames: tuple[int, int, int] = (8, 256, 2048)


@dataclass
class Bundle:
    """A loaded bundle (:func:`load_bundle`). ``manifest`` is the raw dict, kept for the
    modules not yet reading the typed fields; new code reads the fields."""

    path: Path
    manifest: dict
    mel: MelSettings
    labels: list[str]
    norm_mean: np.ndarray  # (n_mels,)
    norm_std: np.ndarray  # (n_mels,)
    centroids: dict[str, np.ndarray]  # label -> (embedding_dim,)
    schedule: NoiseSchedule
    prediction: str
    stride: int
    models: dict[str, ModelSpec]
    shapes: ShapeRange
    defaults: EditOptions = field(default_factory=EditOptions)  # the edit's defaults, typed
    # --- what the manifest says about the bundle itself ---
    name: str = ""
    emort_version: str = ""
    created: str = ""  # ISO 8601, UTC
    opset: int | None = None
    #: file name -> sha256 hex of every file the manifest lists (checked by :meth:`verify`).
    files: dict[str, str] = field(default_factory=dict)
    #: graph name -> worst relative difference from PyTorch (or scikit-learn) measured at export.
    parity: dict[str, float] = field(default_factory=dict)
    #: model name (ser, diffusion, ser_speaker, stats) -> how it was trained.
    training: dict[str, TrainingRecord] = field(default_factory=dict)
    #: per-emotion prosody relative to neutral (``emort enhance --prosody``); None: not carried.
    prosody: ProsodyTable | None = None
    #: natural within-speaker spectral variation, ``(k, n_mels)`` float64 with orthonormal rows
    #: (``emort export edit-basis``; the edit's ``subspace`` option); None: not carried.
    edit_basis: np.ndarray | None = None
    #: share of that variation each row explains ``(k,)``, and what it was measured on (clips, speakers).
    edit_basis_explained: np.ndarray | None = None
    edit_basis_source: dict = field(default_factory=dict)
    #: graph name -> reduced precision (``bf16``) -> what its edit was checked on against float32
    #: and the graph file's ``sha256`` (written by hand or a tool; emort 0.20 ships and writes
    #: none): ``precision="auto"`` uses only a precision :meth:`checked_precision` finds here.
    precisions: dict[str, dict[str, dict]] = field(default_factory=dict)
    #: whether :meth:`verify` checks checksums (``load_bundle(verify=False)``: it does not).
    checked: bool = True
    #: files whose checksum :meth:`verify` has found right (not copied by ``dataclasses.replace``:
    #: a copy with another path or other checksums checks its files again).
    verified: set[str] = field(default_factory=set, init=False, repr=False, compare=False)

    def verify(self, models: Iterable[str] | None = None) -> None:
        """Check the sha256 of the files of the graphs ``models`` (None: of every file the manifest
        lists) against the manifest, each file once per Bundle. Runtime loaders check the graphs
        they open, so ``emort score`` does not hash the 17 MB denoiser it never reads (the
        default bundle: 19.5 ms of its start-up for every graph, about 2 ms for the SER alone). Raises BundleError naming a missing or changed file."""
        unknown = [m for m in models or () if m not in self.models]
        if unknown:
            raise BundleError(f"{self.path}: no {', '.join(unknown)} graph in this bundle (it has {', '.join(self.models)})")
        self._verify_files(list(self.files) if models is None else [self.models[m].file for m in models])

    def _verify_files(self, names: Iterable[str]) -> None:
        if not self.checked:
            return
        for fname in names:
            if fname in self.verified:
                continue
            fp = self.path / fname
            if not fp.exists():
                raise BundleError(f"{self.path}: {fname} is missing")
            try:
                digest = sha256_file(fp)
            except OSError as e:  # no permission, a folder of that name
                raise BundleError(f"{fp}: cannot read it ({e.strerror or e})") from None
            if digest != self.files[fname]:
                raise BundleError(f"{self.path}: {fname} does not match its checksum in the manifest (tampered or corrupt); re-export the bundle")
            self.verified.add(fname)

    @property
    def has_speaker_scorer(self) -> bool:
        """Whether the bundle carries an SER trained on speaker-normalised input (``emort score --per-speaker``)."""
        return "ser_speaker" in self.models

    @property
    def has_clip_scorer(self) -> bool:
        """Whether the bundle carries a single-clip SER trained to ignore the recording level
        (``ser_clip``: scores clips alone in ``emort score``; the ``ser`` graph conditions the edit)."""
        return "ser_clip" in self.models

    def normalize_for(self, name: str, log_mel: np.ndarray) -> np.ndarray:
        """Raw log-mel ``(n_mels, frames)`` -> z-scored as graph ``name`` expects (its own global
        statistics when it has them, else the bundle's: :meth:`normalize`), float32."""
        spec = self.models[name]
        if spec.norm_mean is None or spec.norm_std is None:
            return self.normalize(log_mel)
        return zscore(log_mel, np.asarray(spec.norm_mean, np.float32), np.asarray(spec.norm_std, np.float32))

    @property
    def has_stats(self) -> bool:
        """Whether the bundle carries the utterance-statistics classifier fused into per-speaker scores."""
        return "stats" in self.models

    @property
    def has_voice(self) -> bool:
        """Whether the bundle carries the GE2E voice encoder and the classifier on its embeddings,
        fused with the statistics classifier into per-speaker scores (``emort export voice``)."""
        return "voice_encoder" in self.models and "stats_voice" in self.models

    @property
    def has_egemaps(self) -> bool:
        """Whether the bundle also carries the voice classifier that reads openSMILE's eGeMAPS
        functionals too (``stats_egemaps``: ``emort score --egemaps``, docs/ser/egemaps_voice/report.md)."""
        return self.has_voice and "stats_egemaps" in self.models

    def model_path(self, name: str) -> Path:
        return self.path / self.models[name].file

    def checked_precision(self, name: str, precision: str) -> bool:
        """Whether the manifest lists graph ``name``'s edit as checked in ``precision`` against
        float32 (``precisions.<name>.<precision>``) for the graph file it holds now: the entry's
        ``sha256`` must be that file's, so a replaced graph is never taken as checked."""
        entry = self.precisions.get(name, {}).get(precision)
        return bool(entry) and name in self.models and entry.get("sha256") == self.files.get(self.models[name].file)

    @property
    def content_hash(self) -> str:
        """Hash of the manifest's file checksums: identifies the weights (engine cache key)."""
        return hashlib.sha256(json.dumps(self.files, sort_keys=True).encode()).hexdigest()[:16]

    @property
    def edit_hash(self) -> str:
        """Hash of what an edit reads of the bundle: the checksums of the SER, style encoder and
        denoiser graphs (:data:`EDIT_MODELS`, whatever their file names) and the manifest fields
        :data:`EDIT_FIELDS` (mel settings, labels, normalisation, emotion centroids, noise
        schedule). An ``emort enhance`` output records it with the resolved options (and, with
        ``--prosody``, :attr:`prosody_hash`) to be taken as done on a re-run, so a new scoring-only
        graph (``ser_speaker``, ``stats``) keeps earlier outputs valid. Outputs of emort 0.8 and
        before recorded :attr:`content_hash` instead."""
        graphs = {n: self.files.get(self.models[n].file) for n in EDIT_MODELS if n in self.models}
        fields = {k: self.manifest.get(k) for k in EDIT_FIELDS}
        return hashlib.sha256(json.dumps({"graphs": graphs, **fields}, sort_keys=True).encode()).hexdigest()[:16]

    @property
    def prosody_hash(self) -> str | None:
        """Hash of the prosody table (None without one): outputs made with ``--prosody`` record
        it, as the table lives in the manifest, outside :attr:`content_hash`."""
        if self.prosody is None:
            return None
        return hashlib.sha256(json.dumps(self.prosody.emotions, sort_keys=True).encode()).hexdigest()[:16]

    def basis_hash(self, k: int | None = None) -> str | None:
        """Hash of the first ``k`` rows of the edit basis (None: all; None without a basis): outputs
        made with ``subspace`` K record it, as the basis lives in the manifest, outside
        :attr:`edit_hash` (outputs of the whole edit stay valid when a basis is added, and those of
        K components when more components are added)."""
        if self.edit_basis is None:
            return None
        rows = np.ascontiguousarray(self.edit_basis[:k], dtype="<f8")
        return hashlib.sha256(rows.tobytes()).hexdigest()[:16]

    def normalize(self, log_mel: np.ndarray) -> np.ndarray:
        """Raw log-mel ``(n_mels, frames)`` -> z-scored with the bundle's statistics, float32."""
        return zscore(log_mel, self.norm_mean, self.norm_std)

    def denormalize(self, mel: np.ndarray) -> np.ndarray:
        return (mel * self.norm_std[:, None] + self.norm_mean[:, None]).astype(np.float32)

    def summary(self) -> dict:
        """What reports say about the bundle used."""
        return {
            "path": str(self.path),
            "emort_version": self.emort_version or None,
            "hash": self.content_hash,
            "edit_hash": self.edit_hash,
            "labels": self.labels,
            "name": self.name or self.path.name,
        }


def _precisions(path: Path, raw) -> dict[str, dict[str, dict]]:
    """The manifest's ``precisions`` (graph -> precision -> record), or BundleError naming its shape."""
    if raw is None:
        return {}
    ok = isinstance(raw, dict) and all(isinstance(per, dict) and all(isinstance(v, dict) for v in per.values()) for per in raw.values())
    if not ok:
        raise BundleError(f"{path / MANIFEST}: 'precisions' must map graph -> precision -> record, not {type(raw).__name__}")
    return {str(g): {str(k): dict(v) for k, v in per.items()} for g, per in raw.items()}


def _major_minor(v: str) -> tuple[int, int]:
    parts = (v.split("+")[0].split(".") + ["0", "0"])[:2]
    try:
        return int(parts[0]), int(parts[1])
    except ValueError:
        return (-1, -1)


def _check_fields(b: Bundle, mf: Path) -> None:
    """BundleError naming the manifest for the fields a hand-edited manifest can break that
    would otherwise fail every file with an internal error, or score silently wrong: the
    prediction type, the noise schedule, the front-end's rates and sizes, the edit's defaults,
    and centroids that are not the labels' own."""
    if b.prediction not in ("eps", "v", "x0"):
        raise BundleError(f"{mf}: prediction must be eps, v or x0, got {b.prediction!r}")
    sc = b.schedule
    if sc.kind not in ("cosine", "linear") or not isinstance(sc.num_train_steps, (int, np.integer)) or sc.num_train_steps < 2:
        raise BundleError(f"{mf}: schedule must be cosine or linear with an integer num_train_steps >= 2, got {sc.kind!r}, {sc.num_train_steps!r}")
    mel = b.mel
    ints = {"sample_rate": mel.sample_rate, "n_fft": mel.n_fft, "win_length": mel.win_length, "hop_length": mel.hop_length, "n_mels": mel.n_mels}
    bad = [k for k, v in ints.items() if not isinstance(v, (int, np.integer)) or isinstance(v, bool) or v < 1]
    if bad or mel.win_length > mel.n_fft or not 0 <= mel.fmin_hz < mel.fmax_hz <= mel.sample_rate / 2 or not mel.log_floor > 0:
        raise BundleError(f"{mf}: mel settings are not a usable front-end ({', '.join(bad) or 'window, band edges or log floor'}: {mel})")
    if set(b.centroids) - set(b.labels):
        raise BundleError(f"{mf}: centroids of {', '.join(sorted(set(b.centroids) - set(b.labels)))}, which are not labels")
    try:
        b.defaults.validate()
    except Exception as e:  # EmortError for a bad value, TypeError/ValueError for a wrong type
        raise BundleError(f"{mf}: defaults are not valid edit options ({e})") from None


def load_bundle(path: str | Path | None = None, verify: bool = True, graphs: Iterable[str] | None = None) -> Bundle:
    """Load and validate a bundle folder (default: the one shipped in the package).

    ``verify``: check that every listed file exists and the sha256 of the files other than
    graphs, and of the graphs ``graphs`` (model names; None: every graph); the others are
    checked by :meth:`Bundle.verify` when a runtime loader opens them.
    Raises BundleError with one clear sentence for a missing folder, a manifest
    from another format or emort version, or a file whose sha256 differs.
    """
    p = Path(path) if path is not None else DEFAULT_BUNDLE
    mf = p / MANIFEST
    if not p.is_dir() or not mf.exists():
        if path is None:
            raise BundleError(f"the default bundle is missing from the installation ({p}); reinstall emort or pass --bundle")
        raise BundleError(f"{p}: not a model bundle (no {MANIFEST})")
    try:
        m = json.loads(mf.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise BundleError(f"{mf}: unreadable manifest ({e})") from None
    except OSError as e:  # no permission, a folder of that name
        raise BundleError(f"{mf}: cannot read the manifest ({e.strerror or e})") from None
    if not isinstance(m, dict):
        raise BundleError(f"{mf}: not a manifest (a JSON {type(m).__name__}, not an object)")
    if m.get("format") != FORMAT:
        raise BundleError(f"{p}: not an emort bundle (format {m.get('format')!r})")
    if m.get("format_version") != FORMAT_VERSION:
        raise BundleError(f"{p}: bundle format {m.get('format_version')!r} is not supported by emort {__version__} (needs {FORMAT_VERSION!r}); re-export it")
    if _major_minor(str(m.get("emort_version", "0")))[0] != _major_minor(__version__)[0]:
        raise BundleError(f"{p}: made by emort {m.get('emort_version')}, incompatible with emort {__version__}; re-export it")
    try:
        models = {k: ModelSpec.from_manifest(v) for k, v in m["models"].items()}
        for name in ("ser", "style", "denoiser"):
            if name not in models:
                raise KeyError(f"models.{name}")
        files = m["files"]
        for spec in models.values():
            if spec.file not in files:
                raise KeyError(f"files.{spec.file}")
        for fname in files:  # graphs and listed files live in the bundle's own folder: never ../x or /abs
            if not isinstance(fname, str) or fname in ("", ".", "..") or Path(fname).name != fname or "\\" in fname:
                raise BundleError(f"{mf}: file name {fname!r} is not a plain name inside the bundle folder")
        if verify:
            for fname in files:
                if not (p / fname).exists():
                    raise BundleError(f"{p}: {fname} is missing")
        sh = m.get("shapes", {})
        basis = m.get("edit_basis") or {}
        b = Bundle(
            path=p,
            manifest=m,
            mel=MelSettings.from_dict(m["mel"]),
            labels=list(m["labels"]),
            norm_mean=np.asarray(m["norm"]["mean"], np.float32),
            norm_std=np.asarray(m["norm"]["std"], np.float32),
            centroids={k: np.asarray(v, np.float32) for k, v in m["centroids"].items()},
            schedule=NoiseSchedule.from_dict(m["schedule"]),
            prediction=m["prediction"],
            stride=int(m["stride"]),
            models=models,
            shapes=ShapeRange(batch=tuple(sh.get("batch", (1, 2, 8))), frames=tuple(sh.get("frames", (8, 256, 2048)))),
            defaults=EditOptions.from_dict(m.get("defaults", {})),
            name=str(m.get("name") or p.name),
            emort_version=str(m.get("emort_version", "")),
            created=str(m.get("created", "")),
            opset=m.get("opset"),
            files={str(k): str(v) for k, v in files.items()},
            parity={str(k): float(v) for k, v in (m.get("parity") or {}).items()},
            # Entries with a split or options are model records; write_bundle's ``extra`` may add others.
            prosody=ProsodyTable.from_dict(m["prosody"]).checked() if m.get("prosody") else None,
            edit_basis=np.asarray(basis["components"], np.float64) if basis else None,
            edit_basis_explained=np.asarray(basis["explained"], np.float64) if basis.get("explained") else None,
            edit_basis_source=dict(basis.get("source") or {}),
            precisions=_precisions(p, m.get("precisions")),
            training={k: TrainingRecord.from_manifest(v) for k, v in (m.get("training") or {}).items()
                      if isinstance(v, dict) and ("split" in v or "train" in v)},
            checked=bool(verify),
        )
    except BundleError:
        raise
    except (KeyError, TypeError, ValueError, AttributeError) as e:  # a missing field, or one of the wrong type
        raise BundleError(f"{p}: manifest is incomplete or malformed ({type(e).__name__}: {e})") from None
    if len(b.norm_mean) != b.mel.n_mels or len(b.norm_std) != b.mel.n_mels:
        raise BundleError(f"{p}: normalisation statistics do not match n_mels={b.mel.n_mels}")
    # fields a hand-edited manifest can break that would otherwise fail per file (or write NaN audio)
    if not (np.all(np.isfinite(b.norm_mean)) and np.all(np.isfinite(b.norm_std)) and np.all(b.norm_std > 0)):
        raise BundleError(f"{p}: norm.std must be finite and > 0 and norm.mean finite (a zero spread divides by zero)")
    if len(set(b.labels)) != len(b.labels) or not b.labels:
        raise BundleError(f"{p}: labels must be distinct names, got {b.labels}")
    if set(b.labels) - set(b.centroids):
        raise BundleError(f"{p}: centroids lack {', '.join(sorted(set(b.labels) - set(b.centroids)))} (one per label)")
    if len({c.shape for c in b.centroids.values()}) > 1 or any(c.ndim != 1 or not np.all(np.isfinite(c)) for c in b.centroids.values()):
        raise BundleError(f"{p}: centroids must be finite vectors of one length")
    dim = getattr(b.models.get("ser"), "dim", None)
    if dim and any(c.shape != (int(dim),) for c in b.centroids.values()):
        raise BundleError(f"{p}: centroids must have the SER embedding's {dim} values")
    if b.stride < 1:
        raise BundleError(f"{p}: stride must be >= 1, got {b.stride}")
    if b.edit_basis is not None and (b.edit_basis.ndim != 2 or b.edit_basis.shape[1] != b.mel.n_mels
                                     or not np.allclose(b.edit_basis @ b.edit_basis.T, np.eye(len(b.edit_basis)), atol=1e-4)):
        raise BundleError(f"{p}: edit_basis is not a set of orthonormal rows of n_mels={b.mel.n_mels} values")
    if "stats_clip" in m["models"] and m["models"]["stats_clip"].get("norm") != "global":  # ModelSpec.norm defaults to global
        raise BundleError(f"{p}: models.stats_clip is not a globally standardised classifier (norm 'global'); re-export it "
                          "with `emort export voice`")
    if b.has_clip_scorer and b.models["ser_clip"].norm_mean is None:  # trained apart: its own statistics, never the bundle's
        raise BundleError(f"{p}: models.ser_clip has no normalisation statistics (mean, std); re-export it with `emort export clip-ser`")
    for name, spec in b.models.items():
        if (spec.norm_mean is None) != (spec.norm_std is None) or (spec.norm_mean is not None and (
                len(spec.norm_mean) != b.mel.n_mels or len(spec.norm_std) != b.mel.n_mels)):
            raise BundleError(f"{p}: models.{name}'s normalisation statistics do not match n_mels={b.mel.n_mels}")
        if spec.norm_mean is not None and not (np.all(np.isfinite(np.asarray(spec.norm_mean, np.float64)))
                                               and np.all(np.isfinite(np.asarray(spec.norm_std, np.float64)))
                                               and np.all(np.asarray(spec.norm_std, np.float64) > 0)):
            raise BundleError(f"{p}: models.{name}'s std must be finite and > 0 and its mean finite (NaN scores otherwise)")
    _check_fields(b, mf)
    if graphs is None:
        b.verify()
    else:
        graph_files = {spec.file for spec in models.values()}
        b.verify(list(graphs))
        b._verify_files([f for f in files if f not in graph_files])  # the model card and other listed files
    return b
