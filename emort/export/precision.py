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

#: Noise seeds a check must cover (docs/bench/0.24/bf16_parity/PREREGISTRATION.md): one seed's
#: cell moves by a whole clip's verdict, several points, so the rule reads a mean over seeds.
MIN_SEEDS = 8


def record_precision_check(bundle_dir: str | Path, check: str | Path, precision: str = "bf16") -> dict:
    """Write ``precisions.denoiser.<precision>`` into the bundle's manifest from ``check`` (the JSON
    ``benchmarks/precision_judges.py`` writes). Returns the record written: the denoiser file's
    sha256 (a later graph is not taken as checked), what it was checked on (speakers, seeds,
    amount), the per-judge mean UA differences, the largest cell's mean soft difference, the source
    file, date and emort version.

    Only a check made as docs/bench/0.24/bf16_parity/PREREGISTRATION.md says is recorded: every
    compared report ran the denoiser in ``precision``, at least :data:`MIN_SEEDS` noise seeds, the
    bundle's default amount, no test speaker, this bundle's edit (its ``edit_hash``), and the check
    held. Raises EmortError (one line naming the file and the cause) otherwise."""
    from emort.training.splits import TEST_SPEAKERS

    check = Path(check)
    b = writable_bundle(bundle_dir)
    try:
        res = json.loads(check.read_text())
        par, edit_hash, speakers = res["parity"], res["bundle"]["edit_hash"], list(res["speakers"])
        seeds, amount, bar = [int(x) for x in par["seeds"]], float(par["amount_db"]), float(par["bar"])
        per_judge = {str(j): float(v) for j, v in par["per_judge_ua_mean"].items()}
        soft = [abs(float(c["soft_mean"])) for c in par["cells"].values()]
        ran = {str(pair["ran"]) for pair in res["pairs"] if float(pair["amount_db"]) == amount}
        holds, beyond = par["holds"], list(par.get("beyond") or [])
        splits = [str(x) for x in res["splits"]]
        if not soft or not per_judge:
            raise ValueError("no cells")
    except (OSError, ValueError, TypeError, KeyError, AttributeError) as e:
        raise EmortError(f"{check}: not a precision check written by benchmarks/precision_judges.py --json "
                         f"({type(e).__name__}: {e})") from None
    why = ("the check did not hold" + (f" ({'; '.join(beyond)} beyond {bar:g} point)" if beyond else "") if holds is not True
           else f"its bf16 side ran in {', '.join(sorted(ran - {precision}))}" if ran != {precision}
           else f"{len(seeds)} noise seeds; the rule asks at least {MIN_SEEDS}" if len(set(seeds)) < MIN_SEEDS
           else f"read at {amount:g} dB, not the bundle's default amount ({b.defaults.amount_db:g} dB)" if amount != b.defaults.amount_db
           else f"it reads test speakers ({', '.join(sorted(set(speakers) & set(TEST_SPEAKERS)))})" if set(speakers) & set(TEST_SPEAKERS)
           else f"its reports are of the {', '.join(splits)} split, not val alone" if splits != ["val"]
           else f"made with another edit (edit hash {edit_hash}; {b.path}'s is {b.edit_hash})" if edit_hash != b.edit_hash
           else f"{b.path} has no {GRAPH} graph" if GRAPH not in b.models else None)
    if why:
        raise EmortError(f"{check}: {why}; nothing recorded")
    record = {
        "sha256": b.files[b.models[GRAPH].file],
        "checked_on": {"speakers": speakers, "seeds": seeds, "amount_db": amount},
        "per_judge_ua_mean": per_judge, "max_abs_cell_soft_mean": max(soft),
        "bar": bar, "source": str(check), "emort_version": __version__,
        "date": _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat()}
    update_manifest(b, lambda m: m.setdefault("precisions", {}).setdefault(GRAPH, {}).__setitem__(precision, record))
    return record
