"""``emort export``: trained runs to an ONNX bundle; a bundle to TensorRT engines."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer
from rich.markup import escape

from emort.cli.common import console, err_console, need, sub_app, user_errors
from emort.runtime.errors import EmortError

export_app = sub_app("Export trained runs to ONNX bundles and TensorRT engines.")


#: How each graph ``export onnx`` does not write again is put back into a bundle.
_RESTORE = {"ser_clip": "emort export clip-ser", "stats": "emort export stats", "stats_voice": "emort export voice",
            "stats_clip": "emort export voice",
            "stats_egemaps": "emort export voice", "voice_encoder": "emort export voice", "ser_speaker": "export onnx --speaker-ser"}


def _graphs_replacing_drops(out: Path, speaker_ser: bool, stats: bool) -> list[str]:
    """What of an existing bundle at ``out`` ``export onnx`` would not write again (it writes the
    SER, style encoder and denoiser, and the per-speaker SER and statistics classifier when given):
    graphs (the single-clip SER, voice classifiers, the voice encoder, ...), each with the command
    that puts it back, then the manifest's own sections (prosody table, edit basis, checked
    precisions, defaults and their record) and other files (model card, licences)."""
    from emort.runtime.bundle import MANIFEST, load_bundle
    from emort.runtime.editing import EditOptions

    if not (out / MANIFEST).is_file():
        return []
    try:
        b = load_bundle(out, verify=False)  # the manifest is read in one place: runtime/bundle.py
    except EmortError:  # not a bundle this emort reads: nothing to name
        return []
    written = {"ser", "style", "denoiser"} | ({"ser_speaker"} if speaker_ser else set()) | ({"stats"} if stats else set())
    graphs = [f"{k} ({_RESTORE.get(k, 'export it again')})" for k in sorted(set(b.models) - written)]
    sections = [name for name, present in (("the prosody table", b.prosody is not None), ("the edit basis", b.edit_basis is not None),
                                           ("the checked precisions", bool(b.precisions)),
                                           ("the defaults and their record (set them again with emort export defaults)",
                                            b.defaults.to_dict() != EditOptions().to_dict()))
                if present]
    graph_files = {spec.file for spec in b.models.values()}
    others = sorted(f.name for f in out.iterdir() if f.is_file() and f.name not in graph_files and f.name != MANIFEST
                    and not f.name.startswith("."))  # the model card, licences, ...
    return graphs + sections + ([f"the files {', '.join(others)}"] if others else [])


@export_app.command("onnx")
@user_errors
def export_onnx_cmd(
    run_dir: Path = typer.Argument(Path("runs"), help="Folder holding ser/ and diffusion/ runs (or use --ser/--diffusion)."),
    out: Path = typer.Option(..., "--out", help="Bundle folder to write."),
    ser: Optional[Path] = typer.Option(None, "--ser", show_default="RUN_DIR/ser", help="SER run."),
    diffusion: Optional[Path] = typer.Option(None, "--diffusion", show_default="RUN_DIR/diffusion", help="Diffusion run."),
    parity_clip: list[str] = typer.Option([], "--parity-clip", help="Real clips for the torch-vs-onnxruntime parity check (repeatable)."),
    defaults: Optional[Path] = typer.Option(None, "--defaults", help="JSON with default enhance options (from `emort eval enhance`)."),
    steps: Optional[int] = typer.Option(None, "--steps", min=1, help="Override the default step count of --defaults (e.g. to meet a "
                                        "speed target); recorded in the manifest."),
    name: Optional[str] = typer.Option(None, "--name", show_default="the --out folder's name",
                                       help="Bundle name (the shipped bundle's is emort-default; 0.31 gave every bundle that name)."),
    speaker_ser: Optional[Path] = typer.Option(None, "--speaker-ser", help="Also ship an SER trained with norm = \"speaker\" "
                                               "(recipes/ser_speaker.toml), for `emort score --per-speaker`."),
    stats: Optional[Path] = typer.Option(None, "--stats", help="Also ship an utterance-statistics classifier (`emort train stats`), "
                                         "fused with the --speaker-ser SER by `emort score --per-speaker`."),
    stats_weight: float = typer.Option(1.0, "--stats-ser-weight", min=0.0, help="The per-speaker SER's weight in that fusion "
                                       "(p ∝ (p_ser^w · p_stats)^(1/(1+w)); 0: the statistics classifier alone)."),
) -> None:
    """Export SER, style encoder and denoiser to an ONNX bundle (fails loudly on a parity error)."""
    need("torch", "train")
    need("onnx", "export")
    if stats is not None:
        need("skl2onnx", "export")
    from emort.export.onnx import write_bundle

    if defaults is not None:
        try:
            defaults_d = json.loads(defaults.read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise EmortError(f"{defaults}: not a readable JSON file ({e})") from None
    else:
        defaults_d = None
    extra = None
    if steps is not None:
        from emort.runtime.editing import EditOptions

        defaults_d = {**(defaults_d or EditOptions().to_dict()), "steps": steps}
        extra = {"defaults_override": {"steps": steps, "defaults_file": str(defaults) if defaults else None}}
    dropped = _graphs_replacing_drops(out, speaker_ser is not None, stats is not None)
    if dropped:  # said before the (minutes-long) export, so it can still be stopped
        err_console.print(f"[yellow]note[/] {escape(str(out))} is a bundle: writing it anew drops its {escape('; '.join(dropped))} "
                          "(put them back afterwards as named, or give another --out)", soft_wrap=True)
    man = write_bundle(out, ser_run=ser or run_dir / "ser", diffusion_run=diffusion or run_dir / "diffusion", parity_clips=list(parity_clip),
                       defaults=defaults_d, name=name or out.resolve().name, extra=extra, speaker_ser_run=speaker_ser, stats_run=stats,
                       stats_weight=stats_weight)
    size = sum(f.stat().st_size for f in out.iterdir()) / 1e6
    console.print(f"wrote {out} ({size:.1f} MB); parity (max relative diff): " + ", ".join(f"{k} {v:.1e}" for k, v in man["parity"].items()))


@export_app.command("clip-ser")
@user_errors
def export_clip_ser_cmd(
    ser: Path = typer.Option(..., "--ser", help="SER run (`emort train ser`, norm = \"global\"), e.g. trained with a gain_db "
                             "recipe (recipes/ser_global_gain10.toml) to ignore the recording level."),
    bundle: Path = typer.Option(..., "--bundle", help="Bundle folder to put it in (the shipped one: emort/assets/default_bundle in a clone)."),
) -> None:
    """Put a single-clip SER into an existing bundle (replacing the one there): `emort score` then
    scores clips without a speaker folder with it. The SER that conditions the edit is untouched."""
    need("torch", "train")
    need("onnx", "export")
    from emort.export.onnx import replace_clip_ser

    m = replace_clip_ser(bundle, ser)
    spec = m["models"]["ser_clip"]
    trained = f"trained with random gains of +-{spec['gain_db']:g} dB" if spec["gain_db"] else "trained without level augmentation"
    console.print(f"{bundle}: {spec['file']} from {ser} ({trained}); "
                  f"parity {m['parity']['ser_clip']:.1e}")


@export_app.command("stats")
@user_errors
def export_stats_cmd(
    stats: Path = typer.Option(..., "--stats", help="Statistics-classifier run (`emort train stats`, features ustats or ustats+pitch)."),
    bundle: Path = typer.Option(..., "--bundle", help="Bundle folder to put it in (the shipped one: emort/assets/default_bundle in a clone)."),
    ser_weight: Optional[float] = typer.Option(None, "--ser-weight", min=0.0, show_default="the bundle's weight, else 1",
                                               help="The per-speaker SER's weight in the fusion (p ∝ (p_ser^w · p_stats)^(1/(1+w)); "
                                               "1: the plain geometric mean; 0: the statistics classifier alone)."),
) -> None:
    """Put a statistics classifier into an existing bundle (replacing the one there),
    fused with its per-speaker SER by `emort score --per-speaker`. The other graphs are untouched,
    except a voice classifier that reads the statistics classifier's features and no longer
    matches them: it is removed, and the command says so."""
    need("sklearn", "train")
    need("skl2onnx", "export")
    from emort.export.stats import replace_stats
    from emort.runtime.bundle import load_bundle

    had_voice = "stats_voice" in load_bundle(bundle, graphs=()).models
    m = replace_stats(bundle, stats, ser_weight)
    spec = m["models"]["stats"]
    console.print(f"{bundle}: {spec['file']} from {stats} ({spec['features']}, {spec['n_features']} features, SER weight "
                  f"{spec['ser_weight']:g}); parity {m['parity']['stats']:.1e}")
    if had_voice and "stats_voice" not in m["models"]:
        console.print(f"{bundle}: removed the voice classifier (stats_voice), which read the previous statistics classifier's "
                      "features; put one fitted with these statistics back with `emort export voice`")


@export_app.command("voice")
@user_errors
def export_voice_cmd(
    stats: Path = typer.Option(..., "--stats", help="Classifier run on GE2E voice embeddings: `emort train stats --features ustats+pitch+ge2e` (read in place of "
                                "the statistics classifier), `--features ge2e` (fused with it by the geometric mean) or `--features "
                                "ustats+pitch+ge2e+egemaps` (beside the first, read by `emort score --egemaps`); a `--features ustats+pitch+ge2e --norm global` "
                                "run goes in as the single-clip classifier (`emort score --clip-stats`, and `--per-speaker` for speakers of 1-4 clips)."),
    bundle: Path = typer.Option(..., "--bundle", help="Bundle folder to put it in (the shipped one: emort/assets/default_bundle in a clone)."),
) -> None:
    """Put the GE2E voice encoder (the speaker encoder resemblyzer ships, converted to ONNX) and a
    classifier on its embeddings into an existing bundle, replacing those there: `emort score
    --per-speaker` then reads it in place of the statistics classifier (a ustats+pitch+ge2e run)
    or fuses it with that one (a ge2e run: geometric mean). A ustats+pitch+ge2e+egemaps run goes
    in as stats_egemaps, beside the first (`emort score --egemaps`). Needs
    `pip install --no-deps resemblyzer==0.1.4`."""
    need("torch", "train")
    need("sklearn", "train")
    need("onnx", "export")
    need("skl2onnx", "export")
    from emort.export.voice import replace_voice
    from emort.runtime.egemaps import EGEMAPS_FEATURES

    m = replace_voice(bundle, stats)  # refuses, with one line, a run it cannot put in
    run = json.loads((stats / "stats.json").read_text())
    if run.get("norm") == "global":
        console.print(escape(f"{bundle}: {m['models']['stats_clip']['file']} from {stats} (single-clip classifier, read by "
                             f"`emort score --clip-stats` and for per-speaker groups of 1-4 clips; parity {m['parity']['stats_clip']:.1e})"))
        return
    if run.get("features") == EGEMAPS_FEATURES:
        console.print(f"{bundle}: {m['models']['stats_egemaps']['file']} from {stats} (eGeMAPS voice classifier; parity "
                      f"{m['parity']['stats_egemaps']:.1e})")
        return
    enc, cls = m["models"]["voice_encoder"], m["models"]["stats_voice"]
    console.print(f"{bundle}: {enc['file']} (GE2E encoder; parity {m['parity']['voice_encoder']:.1e}) and {cls['file']} "
                  f"from {stats} (parity {m['parity']['stats_voice']:.1e})")


@export_app.command("prosody")
@user_errors
def export_prosody_cmd(
    data: list[str] = typer.Option(..., "--data", help="KIND=PATH of a corpus (repeatable), e.g. emodb=../shared/data/emodb."),
    bundle: Path = typer.Option(..., "--bundle", help="Bundle folder whose manifest gets the table (the shipped one: "
                                "emort/assets/default_bundle in a clone)."),
) -> None:
    """Measure the per-emotion prosody table (F0 level, F0 range, tempo and level relative to each
    speaker's neutral clips) on the training speakers of --data and write it into the bundle's manifest,
    for `emort enhance --prosody`. Validation, test and every speaker a model of the bundle
    held out are left out."""
    from emort.export.prosody import add_prosody_table
    from emort.runtime.prosody import check_available

    check_available("world")  # F0 analysis: pyworld
    table = add_prosody_table(bundle, data)
    console.print(f"prosody table from {len(table['source']['speakers'])} speakers, {table['source']['clips']} clips:")
    for e, d in table["emotions"].items():
        console.print(f"  {e:8s} F0 {d['semitones']:+6.2f} st  range x{d['f0_range']:.3f}  tempo x{d['tempo']:.3f}  "
                      f"level {d['loudness_db']:+5.1f} dB  ({d['speakers']} speakers)")


@export_app.command("edit-basis")
@user_errors
def export_edit_basis_cmd(
    data: list[str] = typer.Option(..., "--data", help="KIND=PATH of a corpus (repeatable), e.g. emodb=../shared/data/emodb."),
    bundle: Path = typer.Option(..., "--bundle", help="Bundle folder whose manifest gets the basis (the shipped one: "
                                "emort/assets/default_bundle in a clone)."),
) -> None:
    """Measure the natural within-speaker spectral variation (principal components of each clip's mean
    log-mel minus its speaker's mean clip) on the training speakers of --data and write it into the
    bundle's manifest, for `emort enhance --subspace K`. Validation, test and every speaker a model of
    the bundle held out are left out."""
    from emort.export.edit_basis import add_edit_basis

    entry = add_edit_basis(bundle, data)
    ex = entry["explained"]
    console.print(f"edit basis: {len(ex)} components from {entry['source']['clips']} clips of "
                  f"{len(entry['source']['speakers'])} speakers; variance explained by 4 / 8 / 16: "
                  f"{sum(ex[:4]):.3f} / {sum(ex[:8]):.3f} / {sum(ex[:16]):.3f}")


@export_app.command("defaults")
@user_errors
def export_defaults_cmd(
    bundle: Path = typer.Option(..., "--bundle", help="Bundle folder whose manifest gets the defaults (the shipped one: "
                                "emort/assets/default_bundle in a clone)."),
    defaults: Optional[Path] = typer.Option(None, "--defaults", help="JSON of options (the defaults.json `emort eval enhance --split val` writes)."),
    steps: Optional[int] = typer.Option(None, "--steps", min=1, help="Set the default steps (after --defaults)."),
) -> None:
    """Set the default edit options of an existing bundle (what `emort enhance` uses when an option is not given);
    the options are validated and their source recorded in the manifest."""
    from emort.export.defaults import set_defaults

    values: dict = {}
    source = []
    if defaults is not None:
        try:
            values = dict(json.loads(defaults.read_text()))
        except (OSError, ValueError, TypeError) as e:
            raise EmortError(f"{defaults}: not a readable JSON object ({e})") from None
        source.append(str(defaults))
    if steps is not None:
        values["steps"] = steps
        source.append(f"--steps {steps}")
    if not values:
        raise EmortError("give --defaults and/or --steps")
    new = set_defaults(bundle, values, " + ".join(source))
    console.print("defaults: " + ", ".join(f"{k} {v}" for k, v in new.to_dict().items()))


@export_app.command("precision")
@user_errors
def export_precision_cmd(
    bundle: Path = typer.Option(..., "--bundle", help="Bundle folder whose manifest records the check (the shipped one: "
                                "emort/assets/default_bundle in a clone)."),
    check: Path = typer.Option(..., "--check", help="JSON written by `python benchmarks/precision_judges.py --json` "
                               "(float32 and bf16 evaluations of the validation speakers over several noise seeds)."),
) -> None:
    """Record that the bundle's denoiser keeps the judges' verdicts in bf16 (the manifest's
    `precisions`), so `--precision auto` may run it in bf16 on CPUs where that is faster. Only a
    check that held, made with this bundle's edit, is recorded; the denoiser file's checksum is
    kept with it, so a later graph is not taken as checked."""
    from emort.export.precision import record_precision_check

    rec = record_precision_check(bundle, check)
    console.print("denoiser bf16 recorded as checked: per judge mean UA difference "
                  + ", ".join(f"{j} {v:+.2f}" for j, v in rec["per_judge_ua_mean"].items())
                  + f"; largest cell mean soft difference {rec['max_abs_cell_soft_mean']:.2f} (bar {rec['bar']:g} point)")


@export_app.command("optimize")
@user_errors
def export_optimize_cmd(
    bundle: Path = typer.Option(..., "--bundle", help="Bundle folder whose graphs are rewritten in place (the shipped one: "
                                "emort/assets/default_bundle in a clone)."),
) -> None:
    """Rewrite the bundle's graphs in the forms onnxruntime's CPU provider runs faster: the denoiser
    in 4-D throughout (needs torch), the style encoder's 1-D convolutions as 2-D ones of height 1;
    outputs equal to float rounding (checked, else nothing is written). `emort export onnx` writes
    new bundles this way; this command updates an existing one. Graphs already in that form are
    left as they are. Without torch the denoiser is left as it is, with a note and exit status 1."""
    need("onnx", "export")
    from emort.export.optimize import optimize_bundle

    done = optimize_bundle(bundle)
    for name, r in done.items():
        if "skipped" in r:
            err_console.print(f"[yellow]note[/] {name}: not rewritten: {escape(r['skipped'])}", soft_wrap=True)
            continue
        console.print(f"{name}: " + (f"{r['rewrite']}, {r['convolutions']} convolutions, outputs within {r['max_rel_diff']:.1e} (relative)"
                                     if r["convolutions"] else "nothing to rewrite"))
    if any("skipped" in r for r in done.values()):  # the others were rewritten; this one was not
        raise typer.Exit(1)


@export_app.command("tensorrt")
@user_errors
def export_tensorrt_cmd(
    bundle: Optional[Path] = typer.Argument(None, show_default="the shipped one", help="Bundle folder."),
    fp16: bool = typer.Option(True, "--fp16/--no-fp16", help="Also build an FP16 engine of the denoiser (every graph gets an FP32 one); "
                              "it runs with --precision fp16 (auto would take it only for a bundle listing an fp16 edit "
                              "checked against fp32; no such check has been made)."),
    cache: Optional[Path] = typer.Option(None, "--cache", show_default="$EMORT_CACHE or ~/.cache/emort", help="Cache root; engines go to "
                                         "ROOT/engines/<bundle hash>/. emort enhance and score look under $EMORT_CACHE: set it to ROOT for them."),
) -> None:
    """Build TensorRT engines for this GPU from a bundle (cached by GPU, TensorRT version and bundle hash)."""
    from emort.export.tensorrt import build_engines, engine_dir
    from emort.runtime.bundle import load_bundle
    from emort.runtime.trt import default_cache_root

    b = load_bundle(bundle)
    paths = build_engines(b, out_dir=engine_dir(b, cache), fp16=fp16)
    for k, v in paths.items():
        console.print(escape(f"{k}: {v}"))
    if cache is not None and cache.expanduser().resolve() != default_cache_root().resolve():
        # enhance and score read the engines of $EMORT_CACHE only: engines elsewhere would go unused, silently
        console.print(escape(f"note: emort enhance and emort score find these engines only with EMORT_CACHE={cache.expanduser().resolve()} "
                             f"(now they look under {default_cache_root()})"))
