"""``emort report``: JSON reports of ``emort enhance`` / ``emort score``; ``merge`` joins the reports of shards."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.markup import escape

from emort.cli.common import console, err_console, report_path, sub_app, user_errors
from emort.runtime.errors import EmortError

report_app = sub_app("JSON reports of emort enhance and emort score.")


@report_app.command("merge")
@user_errors
def merge(
    reports: list[Path] = typer.Argument(..., metavar="REPORTS...", help="The --json reports of the shards (--shard K/N) of one batch."),
    out: Path = typer.Option(..., "--out", "-o", parser=report_path, metavar="FILE",
                             help="Write the merged report here (checked before reading the others)."),
) -> None:
    """Join the JSON reports of the shards of one batch into the report one unsharded run gives.

    \b
    The results are listed in the unsharded run's order and the summary is counted
    again from them; "shards" lists the parts. Refused, in one line: reports of
    different commands, emort versions, bundles or settings (the device may
    differ), of different splits, a shard given twice, a file in two reports.

    \b
    Exit status: 0 merged, every shard present and complete; 1 merged, but shards
    are missing or stopped early ("complete": false); 2 refused, nothing written.
    """
    from emort.runtime.atomic import check_writable, write_json_atomic
    from emort.runtime.batch import (
        AUDIO_SUFFIXES,
        EXIT_FAILED,
        EXIT_OK,
        UNSUPPORTED_SUFFIXES,
        merge_reports,
    )

    check_writable(out, "--out report", never=AUDIO_SUFFIXES | UNSUPPORTED_SUFFIXES)  # as --json: no report named like audio
    if any(p.resolve() == out.resolve() for p in reports if p.exists()):
        raise EmortError(f"{out}: --out is one of the reports to merge; give the merged report another name")
    loaded = []
    for p in reports:
        try:
            loaded.append((str(p), json.loads(p.read_text(encoding="utf-8"))))
        except FileNotFoundError:
            raise EmortError(f"{p}: no such file") from None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise EmortError(f"{p}: not a readable JSON report ({e})") from None
    merged = merge_reports(loaded)
    write_json_atomic(out, merged, rows="results")
    s = merged["summary"]
    parts = ", ".join(str(x["index"]) for x in merged["shards"])
    console.print(f"merged {len(loaded)} report(s) (shards {parts} of {merged['shards'][0]['count']}): {len(merged['results'])} "
                  f"result(s), done {s['done']}, skipped {sum(s['skipped'].values())}, failed {sum(s['failed'].values())}",
                  soft_wrap=True)
    if merged.get("missing_shards"):
        err_console.print(f"[yellow]warning:[/] shard(s) {', '.join(map(str, merged['missing_shards']))} missing: the merged report "
                          "is incomplete", soft_wrap=True)
    elif not merged["complete"]:
        err_console.print("[yellow]warning:[/] some shards stopped early: the merged report is incomplete", soft_wrap=True)
    console.print(f"wrote {escape(str(out))}")
    raise typer.Exit(EXIT_OK if merged["complete"] else EXIT_FAILED)
