"""Record in a bundle that its denoiser's edit was checked in a reduced precision against float32
(the manifest's ``precisions``), so ``precision="auto"`` may use that precision
(:meth:`emort.runtime.bundle.Bundle.checked_precision`).

The check itself is ``benchmarks/precision_judges.py --json``: ``emort eval enhance`` reports of the
validation speakers in both precisions over several noise seeds, read by the rule of
docs/bench/0.24/bf16_parity/PREREGISTRATION.md. This module reads the verdict again from the check's
means against the rule's bar (:data:`BAR`) and writes it down only when it holds, made with this
bundle's edit (its ``edit_hash`` and the edit options it ships as defaults)."""

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

#: The rule's bar (PREREGISTRATION.md), in points: every judge's mean UA difference and every cell's
#: mean soft difference within it. Fixed here, never read from a check (benchmarks/precision_judges.py
#: writes it beside its means for the reader, and a check whose bar differs is not the rule's).
BAR = 1.0


def beyond_bar(per_judge: dict, cell_soft: dict, bar: float = BAR) -> list[str]:
    """The rule's verdict read from its statistics: each judge's mean UA difference
    (``per_judge``) and each cell's mean soft difference (``cell_soft``) beyond ``bar``, one line
    each; the check holds when there is none."""
    return ([f"{j} mean UA {v:+.3f}" for j, v in per_judge.items() if abs(v) > bar]
            + [f"{k} mean soft {v:+.3f}" for k, v in cell_soft.items() if abs(v) > bar])


def record_precision_check(bundle_dir: str | Path, check: str | Path, precision: str = "bf16") -> dict:
    """Write ``precisions.denoiser.<precision>`` into the bundle's manifest from ``check`` (the JSON
    ``benchmarks/precision_judges.py`` writes). Returns the record written: the denoiser file's
    sha256 (a later graph is not taken as checked), what it was checked on (speakers, seeds,
    amount), the per-judge mean UA differences, the largest cell's mean soft difference, the source
    file, date and emort version.

    Only a check made as docs/bench/0.24/bf16_parity/PREREGISTRATION.md says is recorded: its
    verdict, read again here from its means against :data:`BAR` (the file's own ``holds`` and
    ``bar`` must agree with it), held; every compared report ran the denoiser in ``precision`` and
    its float32 reference in float32; at least :data:`MIN_SEEDS` noise seeds, the bundle's default
    amount, no test speaker, this bundle's edit (its ``edit_hash``) and every edit option the
    reports record equal to the bundle's default. Raises EmortError (one line naming the file and
    the cause) otherwise."""
    from emort.training.splits import TEST_SPEAKERS

    check = Path(check)
    b = writable_bundle(bundle_dir)
    try:
        res = json.loads(check.read_text())
        if isinstance(res, dict) and "parity" in res and "edit" not in res:
            raise EmortError(f"{check}: written by benchmarks/precision_judges.py before it recorded the edit's options and "
                             "the precision each side ran in; run it again on the same reports")
        par, edit_hash, speakers = res["parity"], res["bundle"]["edit_hash"], list(res["speakers"])
        seeds, amount, bar = [int(x) for x in par["seeds"]], float(par["amount_db"]), float(par["bar"])
        per_judge = {str(j): float(v) for j, v in par["per_judge_ua_mean"].items()}
        cell_soft = {str(k): float(c["soft_mean"]) for k, c in par["cells"].items()}
        pairs = [p for p in res["pairs"] if float(p["amount_db"]) == amount]
        ran, reference = {str(p["ran"]) for p in pairs}, {str(p["fp32_ran"]) for p in pairs}
        holds, edit, basis = par["holds"], dict(res["edit"]), res.get("edit_basis")
        splits = [str(x) for x in res["splits"]]
        if not cell_soft or not per_judge or not pairs:
            raise ValueError(f"no cells, or no pair at {amount:g} dB")
    except (OSError, ValueError, TypeError, KeyError, AttributeError) as e:
        raise EmortError(f"{check}: not a precision check written by benchmarks/precision_judges.py --json "
                         f"({type(e).__name__}: {e})") from None
    beyond = beyond_bar(per_judge, cell_soft)  # the verdict from the file's means, not its own word
    held = not beyond
    ships = b.defaults.to_dict()
    other = [f"{k} {v} (the bundle's {ships[k]})" if k in ships else f"{k} {v} (an option the bundle does not know)"
             for k, v in edit.items() if k not in ships or ships[k] != v]
    subspace = edit.get("subspace") or 0
    why = (f"its bar is {bar:g} points, the rule's {BAR:g}" if bar != BAR
           else f"its 'holds' ({holds}) disagrees with its own means against the {BAR:g}-point bar "
                f"({'; '.join(beyond) + ' beyond it' if beyond else 'all within it'})" if holds is not held
           else f"the check did not hold ({'; '.join(beyond)} beyond {BAR:g} point)" if not held
           else f"its {precision} side ran in {', '.join(sorted(ran - {precision}))}" if ran != {precision}
           else f"its float32 side ran in {', '.join(sorted(reference - {'fp32'}))}" if reference != {"fp32"}
           else f"{len(seeds)} noise seeds; the rule asks at least {MIN_SEEDS}" if len(set(seeds)) < MIN_SEEDS
           else f"read at {amount:g} dB, not the bundle's default amount ({b.defaults.amount_db:g} dB)" if amount != b.defaults.amount_db
           else f"it reads test speakers ({', '.join(sorted(set(speakers) & set(TEST_SPEAKERS)))})" if set(speakers) & set(TEST_SPEAKERS)
           else f"its reports are of the {', '.join(splits)} split, not val alone" if splits != ["val"]
           else f"made with another edit (edit hash {edit_hash}; {b.path}'s is {b.edit_hash})" if edit_hash != b.edit_hash
           else f"made with other edit options than {b.path} ships: {', '.join(other)}" if other
           else f"made with another edit basis ({basis}; {b.path}'s first {subspace} rows: {b.basis_hash(subspace)})"
                if subspace and basis != b.basis_hash(subspace)
           else f"{b.path} has no {GRAPH} graph" if GRAPH not in b.models else None)
    if why:
        raise EmortError(f"{check}: {why}; nothing recorded")
    record = {
        "sha256": b.files[b.models[GRAPH].file],
        "checked_on": {"speakers": speakers, "seeds": seeds, "amount_db": amount},
        "per_judge_ua_mean": per_judge, "max_abs_cell_soft_mean": max(map(abs, cell_soft.values())),
        "bar": BAR, "source": str(check), "emort_version": __version__,
        "date": _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat()}
    update_manifest(b, lambda m: m.setdefault("precisions", {}).setdefault(GRAPH, {}).__setitem__(precision, record))
    return record
