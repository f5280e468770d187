"""``emort enhance``: the command over :func:`emort.runtime.batch.enhance_files` (options in, table and report out)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.markup import escape
from typer.core import TyperCommand

from emort.cli.common import (
    BatchProgress,
    BundleOpt,
    DeviceOpt,
    Precision,
    console,
    err_console,
    interrupt_status,
    one_line,
    progress,
    report_path,
    say_interrupted,
    user_errors,
)
from emort.runtime.openvino_cpu import DEFAULT_PRECISION

#: Placeholder of the options whose default the bundle sets; filled in when help is shown.
BUNDLE_DEFAULT = "the bundle's"
# option name -> EditOptions field whose bundle value is its default
_BUNDLE_FIELDS = {"amount": "amount_db", "guidance": "guidance", "max_band_db": "max_band_db", "strength": "strength",
                  "steps": "steps", "method": "method", "intensity": "intensity", "seed": "seed", "pitch": "pitch", "pitch_range": "pitch_range", "tempo": "tempo",
                  "loudness": "loudness", "prosody_renderer": "prosody_renderer", "subspace": "subspace",
                  "contrast": "contrast", "edit_part": "part"}


class BundleDefaultsCommand(TyperCommand):
    """A command whose ``--help`` shows the shipped bundle's edit defaults.

    The manifest is read only when help is shown (``load_bundle(verify=False)``: no checksums,
    no models), so importing the CLI and other commands' help stay fast.
    """

    def format_help(self, ctx, formatter) -> None:
        try:
            from emort.runtime.bundle import load_bundle

            d = load_bundle(verify=False).defaults
        except Exception:  # a broken installation still gets its help, with the placeholder
            d = None
        if d is not None:
            for p in self.params:
                f = _BUNDLE_FIELDS.get(p.name or "")
                if f is not None and p.show_default == BUNDLE_DEFAULT:
                    p.show_default = _describe_default(f, getattr(d, f), d)
        super().format_help(ctx, formatter)


def _describe_default(field: str, value, d) -> str:
    also = f"; {d.prosody_amount_db:g} dB with --prosody" if field == "amount_db" and d.prosody_amount_db is not None else ""
    if field == "subspace" and d.prosody_subspace is not None:
        also = f"; {d.prosody_subspace} with --prosody"
    if field == "contrast" and d.prosody_contrast is not None and d.prosody_contrast != d.contrast:
        also = f"; {d.prosody_contrast} with --prosody"
    if field == "amount_db" and value is None:
        return f"none: the bundle gives --guidance {d.guidance:g}" + also
    if field == "guidance" and value is None:
        return "off: --amount is used"
    if field == "amount_db":
        return f"{value:g} dB" + also
    return (f"{value:g}" if isinstance(value, float) else str(value)) + also


@user_errors
def enhance(
    paths: list[str] = typer.Argument(..., metavar="PATHS...", help="Audio files and/or folders (searched recursively)."),
    emotion: str = typer.Option(..., "--emotion", "-e", help="Target: neutral, happy, sad, angry, fear, disgust (aliases: anger, "
                                "happiness, sadness, fearful, ...), or a mix such as angry:0.7,sad:0.3 (weights are relative; a name "
                                "without one counts 1: angry,sad is an even mix; kept to two decimals)."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", show_default="enhanced/<emotion>, e.g. enhanced/angry, enhanced/sad-0.30+angry-0.70, with --prosody enhanced/angry-prosody",
                                       help="Output folder; the tree below each input folder is mirrored under it. With one input "
                                       "file, a name ending in .wav is the output file itself (an existing folder stays a folder)."),
    amount: Optional[float] = typer.Option(None, "--amount", show_default=BUNDLE_DEFAULT, help="Size of the edit, dB (0-20): the mean "
                                           "change of the log-mel over the clip's speech, reached per clip on the model's 22,050 Hz "
                                           "log-mel grid (the output's own log-mel moves about 15% less: the STFT's overlap smooths the "
                                           "gain's frame-to-frame changes). 0 returns the input."),
    guidance: Optional[float] = typer.Option(None, "--guidance", show_default=BUNDLE_DEFAULT, help="Expert override (>= 0): the raw "
                                             "multiplier of the emotion direction (samplers: the guidance scale). When given, --amount is ignored."),
    max_band_db: Optional[float] = typer.Option(None, "--max-band-db", show_default=BUNDLE_DEFAULT,
                                                help="Cap of the edit's gain, dB (0-40]: no mel band's gain exceeds it in any frame of the "
                                                "model's grid (rendered, a few cells of the output can move further where the gain "
                                                "alternates between frames)."),
    strength: Optional[float] = typer.Option(None, "--strength", show_default=BUNDLE_DEFAULT,
                                             help="How far the source is noised before the model reads the edit, 0-1 (0 = unchanged)."),
    steps: Optional[int] = typer.Option(None, "--steps", show_default=BUNDLE_DEFAULT, help="Noise levels (direction) or sampler steps, >= 1."),
    method: Optional[str] = typer.Option(None, "--method", show_default=BUNDLE_DEFAULT, help="direction | ddim | dpmpp | ddpm. direction "
                                         "edits along the emotion direction; the samplers re-generate the mel (less faithful)."),
    sampler: Optional[str] = typer.Option(None, "--sampler", hidden=True, help="Deprecated name of --method."),
    intensity: Optional[float] = typer.Option(None, "--intensity", show_default=BUNDLE_DEFAULT,
                                              help="Conditioning, 0-1: 0 = the clip's own emotion embedding, 1 = the target's."),
    seed: Optional[int] = typer.Option(None, "--seed", show_default=BUNDLE_DEFAULT, help="Noise seed, >= 0 (same seed, same output)."),
    contrast: Optional[str] = typer.Option(None, "--contrast", show_default=BUNDLE_DEFAULT, help="What the target's estimate is "
                                           "contrasted with (every --method): uncond (the unconditional estimate, classifier-free "
                                           "guidance's) | mean (the estimate conditioned on the mean of the emotion centroids)."),
    edit_part: Optional[str] = typer.Option(None, "--part", show_default=BUNDLE_DEFAULT, help="Which part of the edit is applied: "
                                       "full | dynamic (without each band's fixed offset over the clip: only what changes over time) | "
                                       "level (each frame's mean over the bands: a level contour, the spectral shape kept)."),
    subspace: Optional[int] = typer.Option(None, "--subspace", min=0, show_default=BUNDLE_DEFAULT, help="Keep each frame's "
                                           "gain to the first K shapes along which one speaker's own recordings vary (the bundle's "
                                           "edit basis, measured on its training speakers; the shipped one has 32); 0 = the "
                                           "model's whole edit."),
    prosody: bool = typer.Option(False, "--prosody/--no-prosody", help="Also move the F0 level, F0 range, tempo and level toward the "
                                 "target before the spectral edit (the bundle's per-emotion prosody, minus what the SER hears in "
                                 "the clip already), with the larger spectral edit a conversion needs unless --amount or --guidance is given. Output mono; "
                                 "its length changes with the tempo. Needs pip install 'emort[prosody]'."),
    pitch: Optional[float] = typer.Option(None, "--pitch", show_default=BUNDLE_DEFAULT, help="With --prosody: share of the F0 level change, 0-2 (0 = keep the F0 level)."),
    pitch_range: Optional[float] = typer.Option(None, "--pitch-range", show_default=BUNDLE_DEFAULT, help="With --prosody: share of the F0 range change, 0-2 (0 = keep the range; "
                                                "docs/eval/conversion/range_share/report.md)."),
    tempo: Optional[float] = typer.Option(None, "--tempo", show_default=BUNDLE_DEFAULT, help="With --prosody: share of the tempo change, 0-2 (0 = keep the overall timing; "
                                    "with an F0 range change, raised stretches still play a little faster, lowered ones slower)."),
    loudness: Optional[float] = typer.Option(None, "--loudness", show_default=BUNDLE_DEFAULT, help="With --prosody: share of the planned level change, 0-2 (0 = none planned; the stretch "
                                          "renderer's envelope step still moves the level, by about -5 to +2 dB at a few semitones: "
                                          "docs/eval/conversion/level/report.md)."),
    prosody_renderer: Optional[str] = typer.Option(None, "--prosody-renderer", show_default=BUNDLE_DEFAULT, help="With --prosody: stretch (Signalsmith Stretch, the "
                                         "voice's spectral envelope put back) | world (WORLD vocoder; "
                                         "up to 60 s at 48 kHz) | stretch-raw (formants move with the pitch)."),
    vocoder: str = typer.Option("gain", "--vocoder", help="gain: the edit applied as a mel-band gain to the input's own signal "
                                "(transparent) | griffinlim: the signal rebuilt from the edited mel (for comparison)."),
    device: str = DeviceOpt,
    precision: Precision = typer.Option(Precision(DEFAULT_PRECISION), "--precision", case_sensitive=False, help="The denoiser's arithmetic: fp32 (onnxruntime) | bf16 "
                                  "(OpenVINO on a CPU with AMX-BF16 or AVX512-BF16, pip install 'emort[openvino]'; docs/bench/0.22/bf16_avx512.md) | "
                                  "fp16 (TensorRT, --device tensorrt) | auto (bf16 on such a CPU, fp16 on TensorRT, each where the "
                                  "bundle lists its edit as checked in it against fp32). The report records which ran."),
    bundle: Optional[Path] = BundleOpt,
    json_out: Optional[Path] = typer.Option(None, "--json", parser=report_path, metavar="FILE", help="Write a JSON report here (checked before any work)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Redo outputs that exist, whatever made them."),
    shard: Optional[str] = typer.Option(None, "--shard", metavar="K/N", help="Process only part K of N (1 <= K <= N) of the files "
                                        "found, for job arrays: a file's part is the SHA-256 of its output's path below --out (its path below "
                                        "its input folder, ending in .wav), mod N, the same on every machine. Shards may share --out; give each its own --json and "
                                        "join them with emort report merge."),
    ray: Optional[str] = typer.Option(None, "--ray", metavar="ADDRESS", help="Run the edits on a Ray cluster, one model load per "
                                      "worker: local (a Ray instance on this machine), auto (the cluster this machine is in), "
                                      "ray://HEAD:10001 or HEAD:6379. This machine still reads the inputs and writes the outputs, "
                                      "marker and report. Needs pip install 'emort[cluster]'."),
    ray_workers: Optional[int] = typer.Option(None, "--ray-workers", min=1, show_default="one per CPU of the cluster (per GPU with "
                                              "--device cuda or tensorrt)", help="Ray workers (actors) to start."),
) -> None:
    """Move the emotion of speech clips toward --emotion: one WAV per input.

    \b
    Outputs: WAV, 16-bit PCM, mono, at each input's own sample rate and length
    (with --prosody the length changes with the tempo),
    at OUT/<path below the input folder>.wav (a file named directly: OUT/<name>.wav;
    files named directly from different folders with the same name: OUT/<path
    below their common folder>.wav). With one input file, --out NAME.wav writes
    that file. OUT (or the output file's folder) is marked with .emort-output.json,
    which records each output's settings: a later run does not take these outputs
    as inputs, skips outputs made with the same settings (resume), and replaces
    nothing else (outputs made with other settings, files it did not make) unless
    --overwrite is given.

    \b
    Scale-out: --shard K/N processes one part of the files (a job array's task),
    --ray ADDRESS runs the edits on a Ray cluster; outputs are the same bytes.

    \b
    Folders are searched recursively for every format libsndfile reads (WAV,
    FLAC, Ogg/Opus, MP3, AIFF, CAF, W64, ...); other audio files (.m4a, .aac,
    .wma, ...) and hidden files are reported as skipped, and every skip is counted;
    files below 8 kHz are refused.

    \b
    Exit status: 0 every file taken has its output (made now, or earlier with the
    same settings); 1 some files failed or were refused, the others are done;
    2 a usage error (bad option, emotion, bundle, device, --out or --json path),
    nothing run; 3 nothing done: no usable audio found, or every file failed or was refused (a
    --shard part that holds none of the files found: 0); 130 stopped by Ctrl-C, 143
    by SIGTERM (the report so far is written; the same command carries on).
    """
    from contextlib import ExitStack

    from emort.runtime import batch
    from emort.runtime.atomic import check_writable, write_json_atomic
    from emort.runtime.enhancer import VOCODERS, Enhancer
    from emort.runtime.errors import EmortError

    precision = Precision(precision).value
    if vocoder not in VOCODERS:  # a usage error before the models load, not one failure per file
        raise EmortError(f"--vocoder {vocoder!r}: choose one of {', '.join(VOCODERS)}")
    if json_out is not None:
        check_writable(json_out, "--json report", never=batch.AUDIO_SUFFIXES | batch.UNSUPPORTED_SUFFIXES)
    part = batch.Shard.parse(shard) if shard is not None else None
    if out is not None:
        batch.check_output(paths, out)  # a --out file name that cannot be honoured fails before the models load
        batch.check_output_record(out)  # and a record this version cannot take
    if ray is not None:
        from emort.cli.cluster import RayPool, bundle_identity, import_ray

        import_ray()  # not installed: one line before any work
    if sampler is not None:
        err_console.print("[yellow]warning:[/] --sampler is deprecated; use --method", soft_wrap=True)
        method = method or sampler
    given = [f"--{n.replace('_', '-')}" for n, v in (("pitch", pitch), ("pitch_range", pitch_range), ("tempo", tempo), ("loudness", loudness),
                                                    ("prosody_renderer", prosody_renderer)) if v is not None]
    if given and not prosody:
        raise EmortError(f"{', '.join(given)}: only with --prosody (set how much of its change is made)")
    if ray_workers is not None and ray is None:
        raise EmortError("--ray-workers: only with --ray ADDRESS (without it the edits run on this machine)")
    if guidance is not None and amount is not None:
        err_console.print(f"[yellow]note:[/] --amount {amount:g} is ignored: --guidance {guidance:g} sets the raw multiplier", soft_wrap=True)
        amount = None
    # With --ray the models here only check the bundle and give the options: the workers edit.
    enh = Enhancer.load(bundle, device="cpu" if ray is not None else device, precision="fp32" if ray is not None else precision)
    opts = enh.options(amount_db=amount, guidance=guidance, max_band_db=max_band_db, strength=strength, steps=steps, method=method,
                       intensity=intensity, seed=seed, contrast=contrast.strip().lower() if contrast else None, prosody=prosody, pitch=pitch, tempo=tempo, loudness=loudness,
                       pitch_range=pitch_range, prosody_renderer=prosody_renderer, subspace=subspace, part=edit_part.strip().lower() if edit_part else None)
    if prosody:
        from emort.runtime.prosody import check_available

        check_available(opts.prosody_renderer, enh.bundle)  # missing library or table: one line before any work
    target = batch.target_name(emotion, enh.bundle.labels)
    if opts.is_identity:  # said once for the run: no file "falls short" of an amount nobody asked for
        why = ("--strength 0" if opts.strength <= 0 else f"--guidance {opts.guidance:g}" if opts.guidance is not None
               else f"--amount {opts.amount_db:g}")
        what = "only the prosody changes" if opts.prosody else "each output is its input, unchanged (up to the 16-bit WAV format)"
        err_console.print(f"[yellow]note:[/] {escape(why)}: no spectral edit; {escape(what)}", soft_wrap=True)
    rounded = batch.rounded_mix_note(emotion, enh.bundle.labels)
    if rounded:
        err_console.print(f"[yellow]note:[/] {escape(rounded)}", soft_wrap=True)
    if prosody:  # a target the table has no row for would fail every file the same way
        from emort.runtime.prosody import missing_rows
        from emort.runtime.settings import parse_emotion_mix

        missing = missing_rows(enh.bundle.prosody, parse_emotion_mix(target, list(enh.bundle.labels)))
        if missing:
            raise EmortError(f"--prosody: the bundle's prosody table has no row for {', '.join(missing)} (its training data had "
                             "none); leave out --prosody for this target")
    out_dir = out if out is not None else batch.default_out_dir(target, prosody=bool(prosody))
    if out is None and "," in target:  # 0.30 and earlier named a mix's folder in the order it was given
        earlier = batch.default_out_dir(batch.mix_in_given_order(emotion, target, enh.bundle.labels), prosody=bool(prosody))
        if earlier != out_dir and earlier.is_dir() and not out_dir.exists():
            err_console.print(f"[yellow]note:[/] emort 0.30 and earlier wrote this mix to {escape(str(earlier))}; this run writes to "
                              f"{escape(str(out_dir))} (a mix's emotions now in label order): give --out {escape(str(earlier))} to carry on there",
                              soft_wrap=True)
    if json_out is not None and json_out.resolve() == out_dir.resolve():  # the report would land on the outputs' folder at the end
        raise EmortError(f"--json {json_out}: the same path as the outputs (--out {out_dir}); give the report its own name")
    size = (f"amount {opts.amount_db:g} dB" if opts.calibrated else f"guidance {opts.guidance:g}") + (f", subspace {opts.subspace}" if opts.subspace else "")
    size += f", {opts.part} part" if opts.part != "full" else ""
    stack = ExitStack()
    pool = None
    if ray is not None:
        err_console.print(f"starting Ray workers ({escape(ray)}) ...", soft_wrap=True)
        pool = stack.enter_context(RayPool(ray, bundle=bundle, device=device, workers=ray_workers, precision=precision, bundle_hash=bundle_identity(enh.bundle),
                                                   prosody_hash=enh.bundle.prosody_hash if opts.prosody else None,
                                                   basis_hash=enh.bundle.basis_hash() if opts.subspace else None,
                                                   prosody_renderer=opts.prosody_renderer if opts.prosody else None))
        backend = f"ray {ray}, {pool.workers} worker(s) on {pool.infos[0]['device']} ({pool.precision})"
    else:
        backend = f"{enh.device} ({enh.precision}" + (f": {enh.precision_reason})" if precision == "auto" else ")")
    backend = escape(backend)  # a reason may hold brackets (pip install 'emort[openvino]'), which rich took for markup
    ran_precision = pool.precision if pool is not None else enh.precision  # what the edits run in, for resume and report
    where = escape(str(out_dir)) + ("" if batch.output_is_file(out_dir) else "/")
    err_console.print(f"backend: {backend}; emotion {target}; {size}, method {opts.method}, strength {opts.strength:g}, steps {opts.steps}, "
                      f"seed {opts.seed}, contrast {opts.contrast}, vocoder {vocoder}" + (f", prosody ({opts.prosody_renderer}) pitch {opts.pitch:g} range {opts.prosody_options.range_share:g} tempo {opts.tempo:g} loudness {opts.loudness:g}"
                      if opts.prosody else "") + f" -> {where}" + (f"; shard {part}" if part else ""), soft_wrap=True)

    records: list = []
    finished = False
    interrupted = 0  # the exit status when a signal stopped the run (130 Ctrl-C, 143 SIGTERM)
    try:
        with stack, progress() as prog:
            bar = BatchProgress(prog, "enhance", part)

            for rec in batch.enhance_files(enh, paths, out_dir, target, opts, vocoder=vocoder, overwrite=overwrite, on_start=bar.start,
                                           shard=part, compute=pool.compute if pool is not None else None,
                                           precision=ran_precision):
                records.append(rec)
                print_record(rec)
                bar.advance()
        finished = True
    except KeyboardInterrupt as e:  # Ctrl-C: the report and a line saying how to carry on, no traceback
        interrupted = interrupt_status(e)
    finally:  # the report of what was done, also when the run stops early
        summary = batch.summarize(records, target)
        if json_out is not None:
            report = {
                "emort_version": _version(), "command": "enhance", "complete": finished, "bundle": enh.bundle.summary(),
                "settings": {"inputs": list(paths), "emotion": target, "options": opts.to_dict(), "vocoder": vocoder,
                             **({"prosody_table": enh.bundle.prosody_hash} if opts.prosody else {}),
                             **({"edit_basis": enh.bundle.basis_hash(opts.subspace)} if opts.subspace else {}),
                             "device": pool.infos[0]["device"] if pool is not None else enh.device,
                             "precision": ran_precision, "out": str(out_dir)},
                "summary": summary, "results": [r.to_dict() for r in records]}
            if part is not None:
                report["shard"] = part.to_dict()
            if pool is not None:
                report["cluster"] = {"ray": ray, "workers": pool.workers}
            write_json_atomic(json_out, report, rows="results")
    _summary_table(summary, target)
    if interrupted:
        say_interrupted(summary, json_out)
        raise typer.Exit(interrupted)
    note_if_nothing_found(records, paths, part)
    if json_out is not None:
        console.print(f"wrote {escape(str(json_out))}")
    raise typer.Exit(batch.exit_status(summary, part))



def _version() -> str:
    from emort import __version__

    return __version__


def print_record(rec) -> None:
    """One line on stderr for a record that needs the user's eye (failures, skips, notes)."""
    if rec.status == "failed":
        err_console.print(f"[red]failed[/] {one_line(rec.error or rec.path)}", soft_wrap=True)
    elif rec.status == "skipped" and rec.reason != "done":
        err_console.print(f"[yellow]skipped[/] {one_line(rec.note or rec.path)}", soft_wrap=True)
    elif rec.note:
        err_console.print(f"[yellow]note[/] {one_line(rec.note)}", soft_wrap=True)


def note_if_nothing_found(records: list, paths, part=None) -> None:
    """One note on stderr when the arguments held no file at all (an empty folder): the table of
    zeros and exit status 3 say nothing about why."""
    if not records and part is None:
        err_console.print(f"[yellow]note[/] no audio files found in {escape(', '.join(map(str, paths)))}", soft_wrap=True)


def counts_line(summary: dict) -> str:
    """``skipped: done 3, unsupported 2; failed: unreadable 1`` (file counts per reason)."""
    parts = []
    for status in ("skipped", "failed"):
        if summary[status]:
            parts.append(f"{status}: " + ", ".join(f"{k} {v}" for k, v in sorted(summary[status].items())))
    return "; ".join(parts)


def _summary_table(summary: dict, target: str) -> None:
    from rich.table import Table

    fmt = lambda v: "-" if v is None else f"{v:.3f}"  # noqa: E731  (nothing enhanced in this run)
    t = Table(title=f"emort enhance -> {target}")
    # the target (a mix is long: sad-0.30+angry-0.70) is in the title, so the columns stay narrow
    for col in ("written", "skipped", "failed", "mean P(target) before", "mean P(target) after", "mean change (dB)", "mean RTF"):
        t.add_column(col, justify="right")
    t.add_row(str(summary["processed"]), str(sum(summary["skipped"].values())), str(sum(summary["failed"].values())),
              fmt(summary["mean_p_target_before"]), fmt(summary["mean_p_target_after"]), fmt(summary["mean_change_db"]), fmt(summary["mean_rtf"]))
    console.print(t)
    if summary.get("mean_f0_shift_st") is not None:
        console.print(f"prosody (mean applied): F0 {summary['mean_f0_shift_st']:+.2f} semitones, range x{summary['mean_f0_range']:.3f}, "
                      f"tempo x{summary['mean_tempo']:.3f}, "
                      f"level {summary['mean_loudness_db']:+.1f} dB")
    line = counts_line(summary)
    if line:
        console.print(escape(line), soft_wrap=True)
