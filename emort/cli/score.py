"""``emort score``: the command over :func:`emort.runtime.batch.score_files` (options in, table and report out)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

import typer
from rich.markup import escape

from emort.cli.common import (
    BatchProgress,
    BundleOpt,
    DeviceOpt,
    console,
    err_console,
    fail,
    flat,
    interrupt_status,
    one_line,
    progress,
    report_path,
    say_interrupted,
    user_errors,
)
from emort.cli.enhance import counts_line, note_if_nothing_found, print_record

#: A folder with this many clips gets a note in the per-speaker modes: it may hold several speakers
#: (the corpora's speakers have 35-69 clips each; the six test speakers' 361 clips in one folder,
#: scored as one: UA 0.759 / 0.677 / 0.445 against 0.901 / 0.833 / 0.591 by speaker, 0.19's bundle).
LARGE_GROUP = 150


@user_errors
def score(
    paths: list[str] = typer.Argument(..., metavar="PATHS...", help="Audio files and/or folders (searched recursively)."),
    json_out: Optional[Path] = typer.Option(None, "--json", parser=report_path, metavar="FILE", help="Write a JSON report here (checked before any work)."),
    device: str = DeviceOpt,
    bundle: Optional[Path] = BundleOpt,
    per_speaker: bool = typer.Option(False, "--per-speaker", help="Speaker-normalised scoring, more accurate on unseen voices: the "
                                     "files in one folder are one speaker's and are normalised together (give it >= 5 varied clips "
                                     "per folder; several speakers in one folder: use --speaker-pattern)."),
    speaker_pattern: Optional[str] = typer.Option(None, "--speaker-pattern", metavar="REGEX", help="Read the speaker from each file "
                                                  "name without its extension (first non-empty group, else the whole match), for "
                                                  "folders that hold several speakers: '^(\\d\\d)' for EmoDB. Implies --per-speaker."),
    reference: Optional[Path] = typer.Option(None, "--reference", metavar="ORIGINALS", help="Normalise each speaker with the statistics "
                                             "of the same speaker's original clips under ORIGINALS (matched by the folder path below "
                                             "the input, or by --speaker-pattern), so an edit applied to all of a speaker's clips is "
                                             "measured rather than normalised away. Implies --per-speaker."),
    stats: bool = typer.Option(True, "--stats/--no-stats", help="Per-speaker modes: score with the bundle's utterance-statistics "
                               "classifier (log-mel and F0 statistics), combined with the per-speaker SER by the weight the bundle "
                               "sets (the shipped one: the classifier alone); --no-stats: the SER alone. Single clips: no effect."),
    voice: Optional[bool] = typer.Option(None, "--voice/--no-voice", show_default="on where the bundle carries it",
                                         help="Per-speaker modes with the statistics classifier: read the bundle's classifier on "
                                         "the statistics and GE2E voice embeddings together in its place (the shipped bundle "
                                         "carries one; a 0.12 bundle's, on the embeddings alone, is fused with it by the geometric "
                                         "mean; --voice insists, a usage error where it cannot); --no-voice: the statistics "
                                         "classifier alone (faster: no voice encoder). Single clips: read only with --clip-stats (else --voice is a usage error)."),
    egemaps: bool = typer.Option(False, "--egemaps", help="Per-speaker modes: read the bundle's voice classifier that also reads "
                                 "openSMILE's eGeMAPS functionals (stats_egemaps; better off-corpus on the test speakers, "
                                 "docs/ser/egemaps_voice/report.md), in place of the joint one. Needs pip install 'emort[egemaps]' "
                                 "(openSMILE: research and non-commercial use only) and makes per-speaker scoring several times as long."),
    level_robust: bool = typer.Option(True, "--level-robust/--no-level-robust", help="Single clips: score with the bundle's "
                                      "single-clip SER trained to ignore the recording level (ser_clip, when the bundle has one); "
                                      "--no-level-robust: with the SER that conditions the edit, whose scores move with the level. "
                                      "Per-speaker modes: no effect (they remove a gain common to a speaker's clips)."),
    clip_stats: bool = typer.Option(False, "--clip-stats", help="Single clips: fuse the single-clip SER with the bundle's single-clip "
                                    "classifier on each clip's log-mel and F0 statistics and GE2E voice embedding (stats_clip, "
                                    "JSON method single-clip+stats; per-speaker modes read it for speakers of 1-4 clips without this option). On the test speakers as recorded UA EmoDB 0.583 -> 0.743, RAVDESS "
                                    "0.542 -> 0.688, nEMO 0.464 -> 0.482; chosen on two validation groups (docs/ser/single_v2/report.md). "
                                    "For clean recordings: with noise or a telephone band it reads worse than the SER alone "
                                    "(docs/ser/conditions/report.md). "
                                    "About 3.5 times as long (F0 analysis and voice encoder; 408 EmoDB files: 4.7 s against 1.3 s)."),
    shard: Optional[str] = typer.Option(None, "--shard", metavar="K/N", help="Score only part K of N (1 <= K <= N) of the files found, "
                                        "for job arrays: a file's part is the SHA-256 of its path below its input folder (per-speaker "
                                        "modes: of its speaker, so a speaker's clips stay together), mod N. Give each shard its own "
                                        "--json and join them with emort report merge."),
) -> None:
    """Speech-emotion recognition: the predicted emotion and the probabilities of each file.

    \b
    Each result says how its clip was normalised (JSON "method"): single-clip (the
    single-clip SER's training statistics; JSON "model" names that SER), per-speaker (the speaker's clips in this batch),
    reference (the speaker's clips under --reference); "+stats" when fused with
    the statistics classifier (speakers with >= 5 clips), or, unless --no-voice, the voice
    classifier that reads the statistics and GE2E embeddings in its place (JSON "model" and
    "settings" say which); "+clip-stats" for a speaker with 1-4 clips (not with --reference,
    --no-voice or --no-stats, nor with a bundle without a single-clip classifier this emort reads):
    the SER fused with the single-clip classifier, on each clip alone (docs/ser/small_groups/report.md).

    \b
    Exit status: 0 every file taken is scored; 1 some files failed, the others
    are scored; 2 a usage error (bad option, pattern, --reference, bundle, device
    or --json path), nothing run; 3 nothing scored: no usable audio found, or
    every file failed (a --shard part that holds none of the files found: 0); 130
    stopped by Ctrl-C, 143 by SIGTERM (the report so far is written).
    """
    from emort.runtime import batch
    from emort.runtime.atomic import check_writable, write_json_atomic
    from emort.runtime.scorer import Scorer
    from emort.runtime.ustats import MIN_GROUP

    if json_out is not None:
        check_writable(json_out, "--json report", never=batch.AUDIO_SUFFIXES | batch.UNSUPPORTED_SUFFIXES)
    part = batch.Shard.parse(shard) if shard is not None else None
    per_speaker = per_speaker or speaker_pattern is not None or reference is not None
    if speaker_pattern is not None:
        batch.compile_speaker_pattern(speaker_pattern)  # a bad pattern fails before the models load
    # Single clips are scored batch.READ_THREADS at a time in worker threads, so each SER call
    # gets its share of the cores (2 cores: one each; 408 EmoDB files 1.35 -> 1.31 s whole
    # process against two threads each); EMORT_THREADS overrides.
    from emort.runtime.session import default_threads

    threads = None if per_speaker or os.environ.get("EMORT_THREADS") else max(1, default_threads() // batch.READ_THREADS)
    if clip_stats and (not stats or voice is False or not level_robust):
        fail("--clip-stats: it fuses the level-robust single-clip SER with a classifier on the clip's statistics and voice "
             "embedding; drop --no-stats / --no-voice / --no-level-robust")
    if clip_stats and per_speaker:
        fail("--clip-stats: it reads clips alone; per-speaker modes (--per-speaker, --speaker-pattern, --reference) have their own classifiers")
    if egemaps and not per_speaker:
        fail("--egemaps: clips scored alone never read it (add --per-speaker or --speaker-pattern)")
    if egemaps and (not stats or voice is False):
        fail("--egemaps: the eGeMAPS classifier reads the statistics and the voice embedding too; drop --no-stats / --no-voice")
    scorer = Scorer.load(bundle, device=device, threads=threads, per_speaker=per_speaker, stats=stats, level_robust=level_robust,
                         voice=voice is not False, egemaps=egemaps, clip_stats=clip_stats)
    if voice and not scorer.needs_voice:  # asked for explicitly: say why it cannot be, rather than score without it
        why = (f"clips scored alone never read it (add --per-speaker or --speaker-pattern{', or --clip-stats' if level_robust and 'stats_clip' in scorer.bundle.models else ''})"
               if not per_speaker
               else "it is fused into the statistics classifier, which --no-stats turns off" if not stats
               else f"{scorer.bundle.path} carries no voice classifier (emort export voice)")
        fail(f"--voice: {why}")
    if per_speaker:
        by = f"file-name pattern '{speaker_pattern}'" if speaker_pattern is not None else "folder"
        norm = f"per speaker ({by}" + (f"; statistics of the same speaker under {reference})" if reference is not None else ")")
        if scorer.fused:
            spec = scorer.stats_spec
            how = ("geometric mean" if spec.ser_weight == 1.0 else "the SER not weighed in (weight 0)" if spec.ser_weight == 0
                   else f"geometric mean, SER weight {spec.ser_weight:g}")
            if scorer.needs_egemaps:
                graph, what = "stats_egemaps", f"{scorer.bundle.models['stats_egemaps'].features}: statistics, GE2E voice embeddings and eGeMAPS, in place of stats"
            elif scorer.joint:
                graph, what = "stats_voice", f"{scorer.bundle.models['stats_voice'].features}: statistics and GE2E voice embeddings, in place of stats"
            else:
                graph, what = "stats", spec.features + (" with stats_voice (GE2E voice embeddings; geometric mean)" if scorer.needs_voice else "")
            small = ("ser_speaker + stats_clip (each clip's statistics and GE2E embedding, not normalised per speaker; geometric mean)"
                     if scorer.reads_small_groups and reference is None else "ser_speaker alone")
            model = f"ser_speaker + {graph} ({what}; {how}; groups of >= {MIN_GROUP} clips; smaller groups: {small})"
        else:
            model = "ser_speaker"
    else:
        norm, model = "global", scorer.ser_name  # ser_clip: the level-robust single-clip SER
        if scorer.clip_stats is not None:
            model += " + stats_clip (ustats+pitch+ge2e, not normalised per speaker; geometric mean)"
    records: list = []
    unmatched: dict[tuple, int] = {}  # (speaker, cause) of clips without reference clips -> count
    finished = False
    interrupted = 0  # the exit status when a signal stopped the run (130 Ctrl-C, 143 SIGTERM)
    try:
        with progress() as prog:
            bar = BatchProgress(prog, "score", part)

            notes: set[str] = set()
            for rec in batch.score_files(scorer, paths, per_speaker=per_speaker, speaker_pattern=speaker_pattern, reference=reference,
                                         on_start=bar.start, shard=part):
                records.append(rec)
                if (speaker_pattern is None and rec.group_size is not None and rec.group_size >= LARGE_GROUP
                        and rec.speaker_group not in notes):  # a folder is one speaker: say so where that may be wrong
                    notes.add(rec.speaker_group)
                    err_console.print(f"[yellow]note[/] {escape(rec.speaker_group)}: {rec.group_size} clips normalised as one speaker "
                                      "(a folder is one speaker); if it holds several, give --speaker-pattern or one folder per "
                                      "speaker", soft_wrap=True)
                if rec.status == "scored" and (rec.note or rec.clip_note):  # a speaker's note once, a clip's for that clip
                    if rec.note and rec.note not in notes:
                        notes.add(rec.note)
                        err_console.print(f"[yellow]note[/] {one_line(rec.note)}", soft_wrap=True)
                    if rec.clip_note:
                        err_console.print(f"[yellow]note[/] {one_line(rec.clip_note)}", soft_wrap=True)
                elif rec.reason == "no-reference":  # one line per speaker, not per clip: the cause is the speaker's
                    key = (rec.speaker_group, (rec.error or "").removeprefix(f"{rec.path}: "))
                    if key not in unmatched:
                        print_record(rec)
                    unmatched[key] = unmatched.get(key, 0) + 1
                elif rec.reason == "no-speaker":  # one line for all: a pattern that matches no name failed every file (a new user)
                    key = (None, "file name gives no speaker with --speaker-pattern")
                    if key not in unmatched:
                        print_record(rec)
                    unmatched[key] = unmatched.get(key, 0) + 1
                else:
                    print_record(rec)
                if rec.reason != "reference-unreadable":
                    bar.advance()
        finished = True
    except KeyboardInterrupt as e:  # Ctrl-C: the report and the results so far, no traceback
        interrupted = interrupt_status(e)
    finally:  # the report of what was done, also when the run stops early
        summary = batch.summarize(records)
        if json_out is not None:
            from emort import __version__

            report = {
                "emort_version": __version__, "command": "score", "complete": finished, "bundle": scorer.bundle.summary(),
                "normalisation": norm, "model": model,
                "settings": {"inputs": list(paths), "per_speaker": per_speaker, "speaker_pattern": speaker_pattern, "reference": str(reference) if reference else None,
                             "stats": stats, "voice": scorer.needs_voice, "egemaps": scorer.needs_egemaps, "clip_stats": scorer.clip_stats is not None, "level_robust": level_robust, "device": scorer.device},
                "summary": summary, "results": [r.to_dict() for r in records]}
            if part is not None:
                report["shard"] = part.to_dict()
            write_json_atomic(json_out, report, rows="results")
    for (speaker, cause), n in unmatched.items():
        if n > 1:
            whose = f" of speaker {one_line(speaker)}" if speaker is not None else ""
            err_console.print(f"[red]failed[/] {n - 1} more clip(s){whose}: {one_line(cause)}", soft_wrap=True)
    if any(r.status in ("scored", "failed") for r in records):
        console.out(results_table(records, scorer.bundle.labels), highlight=False)
    methods = sorted({r.method for r in records if r.method})
    methods = [f"single-clip: {scorer.ser_name}" if m == "single-clip" else f"single-clip+stats: {scorer.ser_name} + stats_clip"
               if m == "single-clip+stats" else m for m in methods]  # which SER read the clips alone
    line = "; ".join(x for x in (f"scored: {summary['processed']}" + (f" ({', '.join(methods)})" if methods else ""), counts_line(summary)) if x)
    console.print(escape(line), soft_wrap=True)
    if interrupted:
        say_interrupted(summary, json_out, resumes=False)
        raise typer.Exit(interrupted)
    note_if_nothing_found(records, paths, part)
    if not per_speaker:  # the accurate path needs no labels, only a folder per speaker: point to it
        from collections import Counter

        folders = Counter(os.path.dirname(r.path) for r in records if r.status == "scored")
        many = sum(1 for n in folders.values() if n >= MIN_GROUP)
        if many:
            err_console.print(f"[yellow]note[/] each clip was scored alone; if each folder holds one speaker ({many} folder(s) here "
                              f"with {MIN_GROUP} or more clips), --per-speaker reads them better; if the speaker is in each file's "
                              "name instead, --speaker-pattern REGEX (README: Results)"
                              + ("; clips of many speakers recorded cleanly: --clip-stats reads each alone better, in about 3.5 times the time "
                                 "(not on noisy or telephone recordings)"
                                 if scorer.clip_stats is None and "stats_clip" in scorer.bundle.models else ""), soft_wrap=True)
    if json_out is not None:
        console.print(f"wrote {escape(str(json_out))}")
    raise typer.Exit(batch.exit_status(summary, part))


def results_table(records, labels) -> str:
    """The per-file results as plain aligned text: one line per scored or failed file.

    Plain text, not a rich Table: laying out a rich Table measures every cell, which took
    longer than scoring the files (0.8 s for 408 rows, against 1.1 s of scoring).
    """
    rows = [("file", "prediction", *labels)]
    for r in records:
        if r.status == "scored":
            rows.append((flat(r.path), r.prediction, *[f"{r.scores[lab]:.2f}" for lab in labels]))
        elif r.status == "failed":
            rows.append((flat(r.path), "failed", *[""] * len(labels)))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["emort score"]
    for row in rows:
        cells = [row[0].ljust(widths[0]), row[1].ljust(widths[1])] + [c.rjust(w) for c, w in zip(row[2:], widths[2:])]
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines)
