"""Model bundle: a folder with ``manifest.json`` + ONNX files. Read and validated here only.

The manifest is written in one place (``emort.export.onnx.write_bundle``) and
read in one place (this module); ``tests/runtime/test_bundle.py`` round-trips it.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from emort import __version__
from emort.runtime.errors import BundleError
from emort.runtime.samplers import NoiseSchedule
from emort.runtime.settings import MelSettings

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


@dataclass(frozen=True)
class ModelSpec:
    """One ONNX graph: file name and its input/output names."""

    file: str
    inputs: list[str]
    outputs: list[str]


@dataclass(frozen=True)
class ShapeRange:
    """Batch/frames ranges the graphs are built for (TensorRT optimisation profiles)."""

    batch: tuple[int, int, int] = (1, 2, 8)  # min, opt, max
    frames: tuple[int, int, int] = (8, 256, 2048)


@dataclass
class Bundle:
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
    defaults: dict = field(default_factory=dict)

    @property
    def has_speaker_scorer(self) -> bool:
        """Whether the bundle carries an SER trained on speaker-normalised input (``emort score --per-speaker``)."""
        return "ser_speaker" in self.models

    @property
    def has_stats(self) -> bool:
        """Whether the bundle carries the utterance-statistics classifier fused into per-speaker scores."""
        return "stats" in self.models

    def model_path(self, name: str) -> Path:
        return self.path / self.models[name].file

    @property
    def content_hash(self) -> str:
        """Hash of the manifest's file checksums: identifies the weights (engine cache key)."""
        files = self.manifest.get("files", {})
        return hashlib.sha256(json.dumps(files, sort_keys=True).encode()).hexdigest()[:16]

    def normalize(self, log_mel: np.ndarray) -> np.ndarray:
        return ((log_mel - self.norm_mean[:, None]) / self.norm_std[:, None]).astype(np.float32)

    def denormalize(self, mel: np.ndarray) -> np.ndarray:
        return (mel * self.norm_std[:, None] + self.norm_mean[:, None]).astype(np.float32)

    def summary(self) -> dict:
        """What reports say about the bundle used."""
        return {
            "path": str(self.path),
            "emort_version": self.manifest.get("emort_version"),
            "hash": self.content_hash,
            "labels": self.labels,
            "name": self.manifest.get("name", self.path.name),
        }


def _major_minor(v: str) -> tuple[int, int]:
    parts = (v.split("+")[0].split(".") + ["0", "0"])[:2]
    try:
        return int(parts[0]), int(parts[1])
    except ValueError:
        return (-1, -1)


def load_bundle(path: str | Path | None = None, verify: bool = True) -> Bundle:
    """Load and validate a bundle folder (default: the one shipped in the package).

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
    if m.get("format") != FORMAT:
        raise BundleError(f"{p}: not an emort bundle (format {m.get('format')!r})")
    if m.get("format_version") != FORMAT_VERSION:
        raise BundleError(f"{p}: bundle format {m.get('format_version')} is not supported by emort {__version__} (needs {FORMAT_VERSION}); re-export it")
    if _major_minor(m.get("emort_version", "0"))[0] != _major_minor(__version__)[0]:
        raise BundleError(f"{p}: made by emort {m.get('emort_version')}, incompatible with emort {__version__}; re-export it")
    try:
        models = {k: ModelSpec(file=v["file"], inputs=list(v["inputs"]), outputs=list(v["outputs"])) for k, v in m["models"].items()}
        for name in ("ser", "style", "denoiser"):
            if name not in models:
                raise KeyError(f"models.{name}")
        files = m["files"]
        for spec in models.values():
            if spec.file not in files:
                raise KeyError(f"files.{spec.file}")
        if verify:
            for fname, digest in files.items():
                fp = p / fname
                if not fp.exists():
                    raise BundleError(f"{p}: {fname} is missing")
                if sha256_file(fp) != digest:
                    raise BundleError(f"{p}: {fname} does not match its checksum in the manifest (tampered or corrupt); re-export the bundle")
        sh = m.get("shapes", {})
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
            defaults=dict(m.get("defaults", {})),
        )
    except BundleError:
        raise
    except (KeyError, TypeError, ValueError) as e:
        raise BundleError(f"{p}: manifest is incomplete or malformed ({e})") from None
    if len(b.norm_mean) != b.mel.n_mels or len(b.norm_std) != b.mel.n_mels:
        raise BundleError(f"{p}: normalisation statistics do not match n_mels={b.mel.n_mels}")
    return b
