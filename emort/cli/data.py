"""``emort data``: inspect corpora."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from emort.cli.common import console, report_path, sub_app, user_errors

data_app = sub_app("Inspect corpora.")


@data_app.command("scan")
@user_errors
def data_scan(
    paths: list[str] = typer.Argument(..., metavar="PATHS...", help="Corpus folders or CSV manifests; KIND=PATH names the layout."),
    json_out: Optional[Path] = typer.Option(None, "--json", parser=report_path, metavar="FILE", help="Write the counts as JSON."),
) -> None:
    """Count clips per emotion and per speaker (the paper's Table 1)."""
    from rich.table import Table

    from emort.runtime.atomic import check_writable, write_json_atomic
    from emort.runtime.settings import EMOTIONS
    from emort.training import corpora

    if json_out is not None:  # checked before any reading: it replaces only a .json file, never a folder
        check_writable(json_out, "--json report")
    items = corpora.read_specs(paths)  # a file two specs give is counted once
    all_counts: dict = corpora.count_table(items)  # once over all: two folders of one corpus add up
    labels = list(EMOTIONS) + sorted({e for c in all_counts.values() for e in c["emotions"]} - set(EMOTIONS))
    t = Table(title="clips per emotion")
    t.add_column("corpus")
    for lab in labels:
        t.add_column(lab, justify="right")
    t.add_column("total", justify="right")
    t.add_column("speakers", justify="right")
    for name, c in all_counts.items():
        t.add_row(name, *[str(c["emotions"].get(lab, 0)) for lab in labels], str(c["files"]), str(len(c["speakers"])))
    console.print(t)
    for name, c in all_counts.items():
        s = Table(title=f"{name}: clips per speaker")
        s.add_column("speaker")
        s.add_column("clips", justify="right")
        for spk, n in c["speakers"].items():
            s.add_row(spk, str(n))
        console.print(s)
    if json_out:
        write_json_atomic(json_out, all_counts)
        console.print(f"wrote {json_out}")
