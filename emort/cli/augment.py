"""``emort augment``: emotion-edited (or channel-augmented) copies of training clips plus a CSV manifest."""

from __future__ import annotations

import enum
from pathlib import Path
from typing import Optional

import typer
from rich.markup import escape

from emort.cli.common import console, err_console, need, one_line, user_errors

Kind = enum.Enum("Kind", {k: k for k in ("emort", "classic")}, type=str)


@user_errors
def augment(
    data: list[str] = typer.Argument(..., metavar="KIND=PATH...", help="Corpora to augment, KIND=PATH (emodb, ravdess, nemo, cremad, tess, folders, csv)."),
    out: Path = typer.Option(..., "--out", help="Output folder: audio files and manifest.csv (read it back with --data csv=OUT/manifest.csv)."),
    kind: Kind = typer.Option(Kind.emort, "--kind", help="emort: the enhancement's calibrated edit toward --targets; "
                              "classic: band limit, MP3, reverberation, noise, level (the [augment] extra)."),
    targets: str = typer.Option("own", "--targets", help="emort: own (each clip toward its own emotion), all, or a comma list "
                                "(e.g. angry,sad); an edited copy is labelled with its target."),
    copies: int = typer.Option(1, "--copies", min=1, help="classic: copies per clip, each with its own random chain."),
    seed: int = typer.Option(0, "--seed", min=0, help="Seed of the edits' noise (emort) or of the chains (classic)."),
    amount: Optional[float] = typer.Option(None, "--amount", min=0.0, show_default="bundle default", help="emort: size of the edit, dB."),
    contrast: Optional[str] = typer.Option(None, "--contrast", show_default="bundle default", help="emort: the direction's reference, "
                                           "uncond | mean (as `emort enhance --contrast`; the copies of emort <= 0.20 were made with uncond at 0.5 dB)."),
    bundle: Optional[Path] = typer.Option(None, "--bundle", show_default="the default bundle", help="emort: bundle folder."),
    include_val: bool = typer.Option(False, "--include-val", help="Also augment the validation speakers (test speakers never are)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace outputs made with other settings."),
    shard: Optional[str] = typer.Option(None, "--shard", help="emort: K/N, this machine's part of the clips; the parts add their rows to one manifest under a "
                                        "file lock (where the file system's locks do not reach every machine, run once more without "
                                        "--shard: it lists every copy, making none again)."),
) -> None:
    """Write augmented copies of training clips and OUT/manifest.csv (path, emotion, speaker, source, kind, target, copy, settings).

    The project's test speakers are never augmented; validation speakers only with --include-val.
    Reruns resume: outputs made with the same settings are kept, other settings are refused.
    """
    from emort.training.augment_data import AugmentConfig
    from emort.training.augment_data import augment as run

    if kind is Kind.classic:
        need("audiomentations", "augment")
    counts: dict[str, int] = {}

    def on_record(rec) -> None:
        status = rec["status"] if isinstance(rec, dict) else rec.status
        reason = None if isinstance(rec, dict) else rec.reason
        key = "done" if reason == "done" else status
        counts[key] = counts.get(key, 0) + 1
        if status == "failed":
            err_console.print(f"[red]failed[/] {one_line(rec['error'] if isinstance(rec, dict) else (rec.error or rec.path))}", soft_wrap=True)
        elif status == "skipped" and reason != "done":
            err_console.print(f"[yellow]skipped[/] {one_line(rec.note or rec.path)}", soft_wrap=True)

    cfg = AugmentConfig(data=list(data), out=str(out), kind=kind.value, targets=targets, copies=copies, seed=seed, amount_db=amount,
                        contrast=contrast.strip().lower() if contrast else None, bundle=str(bundle) if bundle else None, include_val=include_val, overwrite=overwrite, shard=shard)
    res = run(cfg, on_record)
    left = ", ".join(f"{k} {v}" for k, v in res["left_out"].items() if v)
    console.print(f"{res['sources']} source clips ({'left out: ' + left if left else 'none left out'}); "
                  + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())) + f"; manifest {escape(res['manifest'])} ({res['rows']} rows of this run)")
    if shard and not counts:  # a --shard part that holds none of the files: nothing to do is success, as for enhance and score
        return
    if counts.get("failed") or not res["rows"]:
        raise typer.Exit(1 if res["rows"] else 3)
