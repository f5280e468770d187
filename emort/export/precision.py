"""Record in a bundle that its denoiser's edit was checked in a reduced precision against float32
(the manifest's ``precisions``), so ``precision="auto"`` may use that precision
(:meth:`emort.runtime.bundle.Bundle.checked_precision`).

The check itself is ``benchmarks/precision_judges.py --json``: ``emort eval enhance`` reports of the
validation speakers in both precisions over several noise seeds, read by the rule of
docs/bench/0.24/bf16_parity/PREREGISTRATION.md. This module only writes its verdict down, and only a
verdict that holds, made with this bundle's edit (its ``edit_hash``)."""

from __future__ import annotations

import datetime as _dt
import json
from pathlib import Path

from emort import __version__
from emort.export.manifest import update_manifest, writable_bundle
from emort.runtime.errors import EmortError

#: The graph a reduced precision runs (``emort.runtime.openvino_cpu``): the denoiser only.
GRAPH = "denoiser"


def record_precision_check(bundle_dir: str | Path, check: str | Path, precision: str = "bf16") -> dict:
    """Write ``precisions.denoiser.<precision>`` into the bundle's manifest from ``check`` (the JSON
    ``benchmarks/precision_judges.py`` writes). Returns the record written: the denoiser file's
    sha256 (a later graph is not taken as checked), what it was checked on (speakers, seeds,
    amount), the per-judge mean UA differences, the largest cell's mean soft difference, the source
    file, date and emort version. Raises EmortError (one line) when the file is unreadable, the
    check did not hold, or it was made with another bundle's edit."""
    check = Path(check)
    b = writable_bundle(bundle_dir)
    try:
        res = json.loads(check.read_text())
        par, bundle = res["parity"], res["bundle"]
    except (OSError, ValueError, TypeError, KeyError) as e:
        raise EmortError(f"{check}: not a precision check written by benchmarks/precision_judges.py --json ({e})") from None
    if par.get("holds") is not True:
        raise EmortError(f"{check}: the check did not hold (per judge {par.get('per_judge_ua_mean')}); nothing recorded")
    if bundle.get("edit_hash") != b.edit_hash:
        raise EmortError(f"{check}: made with another edit (edit hash {bundle.get('edit_hash')}, {b.path}'s is {b.edit_hash}); nothing recorded")
    if GRAPH not in b.models:
        raise EmortError(f"{b.path}: no {GRAPH} graph")
    record = {
        "sha256": b.files[b.models[GRAPH].file],
        "checked_on": {"speakers": res.get("speakers"), "seeds": par["seeds"], "amount_db": par["amount_db"]},
        "per_judge_ua_mean": par["per_judge_ua_mean"],
        "max_abs_cell_soft_mean": max(abs(c["soft_mean"]) for c in par["cells"].values()),
        "bar": par["bar"], "source": str(check), "emort_version": __version__,
        "date": _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat()}
    update_manifest(b, lambda m: m.setdefault("precisions", {}).setdefault(GRAPH, {}).__setitem__(precision, record))
    return record
