"""The package's layers import one way: runtime <- training <- export <- evaluation <- cli.

Every ``import`` in every module of ``emort/`` is read from its syntax tree (function-level
imports included), so a violation fails here before it can grow into an import cycle or
drag torch into the runtime. Also: the runtime imports only its own dependencies, and only
``emort/runtime/bundle.py`` reads the raw bundle manifest.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "emort"

#: Lower layers first; a module may import its own layer and those before it.
LAYERS = ("runtime", "training", "export", "evaluation", "cli")
#: Modules outside the layer folders: the package root sits with the runtime (it re-exports
#: the runtime API); ``emort/bench.py`` is the ``emort bench`` command's locator, a CLI module,
#: and ``emort/__main__.py`` (``python -m emort``) runs the CLI.
TOP_LEVEL = {"emort": "runtime", "emort.bench": "cli", "emort.__main__": "cli"}
#: What the runtime may import besides the standard library and itself: the core install,
#: plus TensorRT / CUDA bindings for the ``[cuda]`` extra and WORLD / Signalsmith Stretch for
#: the ``[prosody]`` extra (imported lazily there), and openSMILE for the ``[egemaps]`` extra
#: (``emort score --egemaps``, imported lazily), and OpenVINO for the ``[openvino]`` extra
#: (``--precision bf16``, imported lazily). Not scipy: the core install has none (0.11's
#: gain smoothing imported it and failed on a runtime-only install).
RUNTIME_THIRD_PARTY = {"numpy", "soundfile", "soxr", "onnxruntime", "tensorrt", "cuda", "pyworld", "python_stretch", "threadpoolctl", "opensmile", "openvino"}

#: Modules still reading ``Bundle.manifest`` (the raw dict) instead of the typed fields.
#: Remove an entry when its module is switched; the last test fails while a stale one remains.
MANIFEST_READERS_LEFT: set[str] = set()


def _modules() -> dict[str, Path]:
    out = {}
    for p in sorted(PACKAGE.rglob("*.py")):
        rel = p.relative_to(PACKAGE.parent).with_suffix("")
        parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
        out[".".join(parts)] = p
    return out


def _is_package(path: Path) -> bool:
    return path.name == "__init__.py"


def _imports(name: str, path: Path) -> list[tuple[int, str]]:
    """(line, absolute module name) of every import in the module, at any depth."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    base = name.split(".") if _is_package(path) else name.split(".")[:-1]
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against this module's package
                pkg = base[: len(base) - node.level + 1]
                mod = ".".join(pkg + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            out.append((node.lineno, mod))
            # ``from emort.training import corpora`` imports the submodule emort.training.corpora
            out += [(node.lineno, f"{mod}.{a.name}") for a in node.names if f"{mod}.{a.name}" in MODULES]
    return out


def layer_of(module: str) -> str | None:
    """The layer of an ``emort`` module (``None`` for anything outside the package)."""
    if module in TOP_LEVEL:
        return TOP_LEVEL[module]
    parts = module.split(".")
    if parts[0] != "emort":
        return None
    if len(parts) > 1 and parts[1] in LAYERS:
        return parts[1]
    return TOP_LEVEL.get(".".join(parts[:2]), "runtime")


MODULES = _modules()


def layer_violations() -> list[str]:
    out = []
    for name, path in MODULES.items():
        src = layer_of(name)
        for line, target in _imports(name, path):
            dst = layer_of(target)
            if dst is not None and LAYERS.index(dst) > LAYERS.index(src):
                out.append(f"{path.relative_to(PACKAGE.parent)}:{line}: {src} module {name} imports {dst} module {target}")
    return out


def test_every_module_has_a_layer():
    assert {layer_of(m) for m in MODULES} <= set(LAYERS)
    assert layer_of("emort.training.ser") == "training" and layer_of("emort.bench") == "cli" and layer_of("numpy") is None


def test_layers_import_one_way():
    bad = layer_violations()
    assert not bad, "imports against runtime <- training <- export <- evaluation <- cli:\n" + "\n".join(bad)


def test_runtime_imports_only_its_dependencies():
    stdlib = set(sys.stdlib_module_names)
    bad = []
    for name, path in MODULES.items():
        if layer_of(name) != "runtime":
            continue
        for line, target in _imports(name, path):
            top = target.split(".")[0]
            if top and top != "emort" and top not in stdlib and top not in RUNTIME_THIRD_PARTY:
                bad.append(f"{path.relative_to(PACKAGE.parent)}:{line}: imports {target}")
    assert not bad, "the runtime needs only numpy, scipy, soundfile, soxr, onnxruntime, threadpoolctl (+ TensorRT, prosody, egemaps, openvino extras):\n" + "\n".join(bad)


def _manifest_readers() -> dict[str, list[int]]:
    out: dict[str, list[int]] = {}
    for path in MODULES.values():
        rel = str(path.relative_to(PACKAGE.parent))
        if rel == "emort/runtime/bundle.py":
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        lines = [n.lineno for n in ast.walk(tree) if isinstance(n, ast.Attribute) and n.attr == "manifest"]
        if lines:
            out[rel] = lines
    return out


def test_only_bundle_reads_the_raw_manifest():
    readers = _manifest_readers()
    new = {k: v for k, v in readers.items() if k not in MANIFEST_READERS_LEFT}
    assert not new, f"read the typed fields of emort.runtime.bundle.Bundle instead of .manifest: {new}"


def test_manifest_readers_left_are_current():
    stale = MANIFEST_READERS_LEFT - set(_manifest_readers())
    if stale:
        pytest.fail(f"{sorted(stale)} no longer read Bundle.manifest: remove them from MANIFEST_READERS_LEFT")
