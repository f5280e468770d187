"""The report: performance targets, warnings, tables, and their JSON / Markdown / terminal forms.

:func:`report_tables` turns a report (the dict :func:`benchmarks.bench.run_benchmark`
returns) into :class:`TableData`; :func:`to_markdown` and :func:`rich_tables` render
those, :func:`write_reports` writes the JSON and Markdown files.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from benchmarks.clips import TARGET_CLIP_S
from benchmarks.runtime_rows import PRECISION
from emort.runtime.atomic import write_json_atomic, write_text_atomic

#: Components of the latency table, in order; ``numpy`` ones have no backend choice.
COMPONENTS = ("frontend", "ser", "style", "denoiser_step", "denoiser_call", "vocoder", "enhance")
NUMPY_COMPONENTS = ("frontend", "vocoder")
COMPONENT_LABELS = {
    "frontend": "front-end (log-mel)",
    "ser": "SER forward",
    "style": "style encoder",
    "denoiser_step": "denoiser step (CFG, batch 2)",
    "denoiser_call": "denoiser call as the edit makes it (levels batched)",
    "vocoder": "vocoder (mel-band gain)",
    "enhance": "enhance end to end",
}


@dataclass(frozen=True)
class Target:
    """One performance target: ``measured <op> goal``."""

    key: str
    label: str
    goal: float
    op: str  # "<=" or ">="
    unit: str = ""


TARGETS = (
    Target("enhance_rtf", "enhance RTF, defaults, 3 s clip (ort-cpu, in-process)", 0.02, "<="),
    Target("ort_speedup_denoiser", "ORT vs torch eager, denoiser step, 3 s", 1.5, ">=", "x"),
    Target("ort_speedup_denoiser_spin", "ORT with spinning threads (Enhancer.load(spin=True), as torch's OpenMP threads spin; "
           "not the CLI's default) vs torch eager, denoiser step, 3 s", 1.5, ">=", "x"),
    Target("ort_speedup_ser", "ORT vs torch eager, SER forward, 3 s", 1.5, ">=", "x"),
    Target("denoiser_peak_fraction", "denoiser call as the edit makes it / float32 GEMM peak (ort-cpu, 3 s)", 0.5, ">="),
    Target("reduced_precision_speedup_denoiser", "reduced precision (bf16, OpenVINO) vs torch eager float32, denoiser step, 3 s", 3.0, ">=", "x"),
    Target("denoiser_peak_fraction_bf16", "denoiser call as the edit makes it / bf16 GEMM peak (ov-cpu-bf16, 3 s)", 0.5, ">="),
    Target("score_clips_per_s", "scoring, 3 s clips per second (ort-cpu, in-process)", 300.0, ">=", "/s"),
    Target("cli_enhance_rtf", "emort enhance, defaults, 120 files of three corpora, whole process", 0.02, "<="),
    Target("cli_score_clips_per_s", "emort score, 408 EmoDB files, whole process", 300.0, ">=", "/s"),
)


def _find(rows: list[dict], **kw) -> dict | None:
    return next((r for r in rows if all(r.get(k) == v for k, v in kw.items())), None)


def evaluate_targets(report: dict) -> list[dict]:
    """:data:`TARGETS` against the measured values (ort-cpu at 3 s; eager for the speed-ups)."""
    comp, thr = report["components"], report["throughput"]
    three = TARGET_CLIP_S
    measured: dict[str, tuple[float | None, str]] = {}

    def speedup(component: str, backend: str = "ort-cpu") -> tuple[float | None, str]:
        ort_r, eager = _find(comp, component=component, backend=backend, clip_s=three), _find(comp, component=component, backend="torch", clip_s=three)
        if ort_r is None or eager is None:
            return None, f"needs both the torch and {backend} rows: " + _why(report, "torch" if eager is None else backend)
        return eager["median_ms"] / ort_r["median_ms"], f"torch {eager['median_ms']:.2f} ms / {backend} {ort_r['median_ms']:.2f} ms"

    e2e = _find(comp, component="enhance", backend="ort-cpu", clip_s=three)
    measured["enhance_rtf"] = (e2e["rtf"], f"{e2e['median_ms']:.1f} ms for {three:g} s") if e2e else (None, _why(report, "ort-cpu"))
    measured["ort_speedup_denoiser"] = speedup("denoiser_step")
    measured["ort_speedup_denoiser_spin"] = speedup("denoiser_step", "ort-cpu-spin")
    measured["ort_speedup_ser"] = speedup("ser")
    measured["reduced_precision_speedup_denoiser"] = speedup("denoiser_step", "ov-cpu-bf16")
    den = next((d for d in report.get("cost_model", {}).get("denoiser", [])
                if d["backend"] == "ort-cpu" and d["clip_s"] == three and d.get("call") == "edit"), None)
    peak = report.get("cost_model", {}).get("matmul_peak", {}).get("gflops")
    measured["denoiser_peak_fraction"] = ((den["fraction_of_peak"], f"{den['gflops_achieved']:.1f} of {peak:.1f} GFLOP/s") if den
                                          else (None, _why(report, "ort-cpu")))
    den16 = next((d for d in report.get("cost_model", {}).get("denoiser", [])
                  if d["backend"] == "ov-cpu-bf16" and d["clip_s"] == three and d.get("call") == "edit"), None)
    pk16 = (report.get("cost_model", {}).get("precision_peaks") or {}).get("bf16", {}).get("rate")
    measured["denoiser_peak_fraction_bf16"] = ((den16["fraction_of_peak"], f"{den16['gflops_achieved']:.1f} of {pk16:.1f} GFLOP/s (bf16)")
                                               if den16 and den16.get("fraction_of_peak") is not None
                                               else (None, f"bf16 GEMM peak {(report.get('cost_model', {}).get('precision_peaks') or {}).get('bf16', {}).get('skipped', 'missing')}"
                                                     if den16 else _why(report, "ov-cpu-bf16")))
    sc = _find(thr, task="score", backend="ort-cpu")
    measured["score_clips_per_s"] = (sc["clips_per_s"], f"{sc['clips']} clips, batch {sc['batch']}, front-end included") if sc else (None, _why(report, "ort-cpu"))

    cli = report.get("cli") or {"skipped": "not run (emort bench --cli)"}
    for key, task, column in (("cli_enhance_rtf", "enhance", "rtf"), ("cli_score_clips_per_s", "score", "clips_per_s")):
        r = _find(cli.get("rows", []), task=task)
        measured[key] = ((r[column], f"{r['median_s']:.2f} s (median of {r['runs']}) for {r['files']} files, {r['audio_s']:.0f} s of audio")
                         if r else (None, cli.get("skipped", "missing")))

    out = []
    for t in TARGETS:
        value, detail = measured[t.key]
        row = {"key": t.key, "label": t.label, "goal": t.goal, "op": t.op, "unit": t.unit, "measured": value, "detail": detail}
        if value is None:
            row.update(status="n/a", factor=None)
        else:
            factor = value / t.goal if t.op == ">=" else t.goal / value if value > 0 else float("inf")
            row.update(status="pass" if factor >= 1 else "miss", factor=factor)
        out.append(row)
    return out


def _why(report: dict, backend: str) -> str:
    be = report["backends"].get(backend, {})
    return f"{backend} {be.get('status', 'missing')}" + (f" ({be['reason']})" if be.get("reason") else "")


def report_warnings(report: dict) -> list[str]:
    """What makes the numbers less trustworthy: a busy or oversubscribed machine, unpinned BLAS,
    eager and onnxruntime outputs that differ, quick mode."""
    out = []
    m = report["machine"]
    cores = m.get("cores_usable") or 1
    for key, when in (("load_average", "at the start"), ("load_average_after", "at the end")):
        la = m.get(key)
        if la and la[0] > 0.5 * cores:
            out.append(f"the machine was busy (1-min load average {la[0]} on {cores} cores {when}); timings are pessimistic, "
                       "eager torch especially (its OpenMP threads stall when preempted)")
            break
    if m["threads"] > cores:
        out.append(f"{m['threads']} threads on {cores} usable cores: oversubscribed")
    if m["blas"].startswith("unknown"):
        out.append("numpy BLAS threads not pinned (threadpoolctl missing): matmul peak and front-end use the library default")
    for name, diffs in report.get("parity", {}).items():
        # bf16 rounds every product to 8 bits of mantissa: its denoiser is held to 10%, not 1%
        bad = {k: v for k, v in diffs.items() if v > (0.1 if name in PRECISION and k == "denoiser" else 1e-2)}
        if bad:
            out.append(f"{name} outputs differ from torch eager ({bad}): the runs may not be the ones the bundle was exported from")
    if report["settings"]["quick"]:
        out.append("quick mode: few repeats and short clips; not a measurement to report")
    return out


@dataclass
class TableData:
    title: str
    headers: list[str]
    rows: list[list[str]]
    caption: str = ""
    numeric: set[int] = field(default_factory=set)  # right-aligned column indexes


def _ms(r: dict | None) -> str:
    if r is None:
        return "—"
    return f"{r['median_ms']:.2f} ({r['p90_ms']:.2f})"


def _num(x: float | None, fmt: str = ".3g") -> str:
    return "—" if x is None else format(x, fmt)


def report_tables(report: dict) -> list[TableData]:
    """The report as tables (rendered by the CLI with rich and by :func:`to_markdown`)."""
    m, s = report["machine"], report["settings"]
    live = [k for k, v in report["backends"].items() if v["status"] == "ok"]
    ort_main = "ort-cpu" if "ort-cpu" in live else next((k for k in live if k.startswith("ort")), None)
    la = f"{m['load_average']}" + (f" -> {m['load_average_after']}" if m.get("load_average_after") else "")
    env = [["CPU", m["cpu_model"]], ["cores (usable / total)", f"{m['cores_usable']} / {m['cores']}"], ["threads", str(m["threads"])],
           ["numpy BLAS", m["blas"]], ["load average (start -> end)", la], ["onnxruntime", f"{m['onnxruntime']} ({', '.join(m['onnxruntime_providers'])})"],
           ["torch", m["torch"] or "not installed"], ["numpy / python", f"{m['numpy']} / {m['python']}"]]
    if m.get("gpu"):
        env.append(["GPU", m["gpu"]])
    env += [["bundle", f"{report['bundle']['name']} ({report['bundle']['path']}, hash {report['bundle']['hash']})"],
            ["timing", f"warm-up {s['warmup']}, then up to {s['repeats']} runs (at least {s['min_runs']}, budget {s['budget_s']:g} s each); median (p90)"],
            ["clips", s["clip_source"]]]
    env += [[f"backend {k}", v["status"] + (f": {v['reason']}" if v.get("reason") else "")] for k, v in report["backends"].items()]
    tables = [TableData("environment", ["item", "value"], env)]

    # latency
    spin = "ort-cpu-spin" if "ort-cpu-spin" in live and ort_main != "ort-cpu-spin" else None
    heads = (["component", "clip s", "frames"] + [f"{b} ms" for b in ["numpy", *live]] + ["speed-up vs eager"]
             + (["speed-up vs eager (spin)"] if spin else []) + [f"RTF ({ort_main or '-'})"])
    rows = []
    comp = report["components"]
    for c in COMPONENTS:
        for sec in s["clip_lengths_s"]:
            ref = _find(comp, component=c, clip_s=sec)
            if ref is None:
                continue
            cells = [COMPONENT_LABELS[c], f"{sec:g}", str(ref["frames"])]
            cells.append(_ms(ref) if c in NUMPY_COMPONENTS else "")
            cells += ["" if c in NUMPY_COMPONENTS else _ms(_find(comp, component=c, backend=b, clip_s=sec)) for b in live]
            eager, fast = _find(comp, component=c, backend="torch", clip_s=sec), _find(comp, component=c, backend=ort_main, clip_s=sec)
            cells.append(f"{eager['median_ms'] / fast['median_ms']:.2f}x" if eager and fast else "")
            if spin:
                spun = _find(comp, component=c, backend=spin, clip_s=sec)
                cells.append(f"{eager['median_ms'] / spun['median_ms']:.2f}x" if eager and spun else "")
            main_row = ref if c in NUMPY_COMPONENTS else fast
            cells.append(_num(main_row["rtf"], ".4f") if main_row else "—")
            rows.append(cells)
    skipped = ", ".join(k for k, v in report["backends"].items() if v["status"] != "ok")
    tables.append(TableData("latency per call: median (p90), ms", heads, rows,
                            f"denoiser step = one forward of batch 2 (classifier-free guidance); enhance = Enhancer.enhance with the bundle defaults "
                            f"{_opts(s.get('enhance_options'))}; RTF = median time / clip length."
                            + (f" Skipped backends (see environment): {skipped}." if skipped else ""),
                            numeric=set(range(1, len(heads)))))

    # throughput
    rows = [[r["task"].replace("_", " "), r["backend"], str(r["clips"]), f"{r['audio_s']:.1f}", str(r["batch"]), f"{r['clips_per_s']:.1f}",
             f"{r['rtf']:.4f}", _ms(r)] for r in report["throughput"]]
    tables.append(TableData("batch throughput", ["task", "backend", "clips", "audio s", "batch", "clips/s", "RTF", "median (p90) ms"], rows,
                            "score = decoded 3 s clips -> probabilities, front-end included; enhance folder = clips of natural length, one at a time.",
                            numeric={2, 3, 4, 5, 6, 7}))

    # cost model
    cm = report.get("cost_model", {})
    pk = cm.get("matmul_peak", {})
    rows = [[d["backend"], "edit call" if d.get("call") == "edit" else "step", str(d["batch"]), f"{d['clip_s']:g}", str(d["frames_padded"]),
             f"{d['gflop']:.3f}", f"{d['gflops_achieved']:.1f}",
             "—" if d["fraction_of_peak"] is None else f"{100 * d['fraction_of_peak']:.1f}%"] for d in cm.get("denoiser", [])]
    og = cm.get("onnx_graph", {})
    check = (f"ONNX graph count: {og['flops_per_frame']:.4g} FLOPs/frame ({og['manifest_ratio']:.3f}x the manifest)" if og.get("manifest_ratio")
             else og.get("skipped", ""))
    tables.append(TableData("cost model: denoiser vs matmul peak", ["backend", "call", "batch", "clip s", "frames", "GFLOP/call", "GFLOP/s", "of peak"], rows,
                            (f"peak: the faster float32 {pk.get('n')}x{pk.get('n')} GEMM of numpy's matmul and onnxruntime's MatMul "
                             f"({pk['kernel']}), best of" if "kernel" in pk  # reports before 0.22: numpy's alone
                             else f"peak: numpy float32 {pk.get('n')}x{pk.get('n')} matmul, best of") + f" {pk.get('repeats')}, {pk.get('threads')} threads = "
                            f"{_num(pk.get('gflops'), '.1f')} GFLOP/s (the ov-cpu-bf16 rows: of the bf16 GEMM peak below). FLOPs/frame ({cm.get('flops_source')}): "
                            f"{_num(cm.get('flops_per_frame_manifest'), '.4g')}. {check} step = one forward at batch 2; edit call = the "
                            "direction edit's call, its noise levels batched.", numeric={2, 3, 4, 5, 6, 7}))

    pp = cm.get("precision_peaks") or {}
    if pp and "skipped" not in pp:
        rows = []
        kernels = {"fp32": "onnxruntime MatMul", "int8": "onnxruntime MatMulInteger (uint8 x int8)", "bf16": "OpenVINO MatMul, bf16 hint (AMX or AVX512-BF16)"}
        for name, unit in (("fp32", "GFLOP/s"), ("int8", "GOP/s"), ("bf16", "GFLOP/s")):
            r = pp.get(name, {"skipped": "not measured"})
            rows.append([name, kernels[name],
                         r.get("skipped") or f"{r['rate']:.1f} {unit}", "" if "skipped" in r else f"{r['best_ms']:.1f}"])
        numpy_rate = pk.get("numpy_gflops", pk.get("gflops", 0))  # reports before 0.22: numpy's was the peak
        rows.append(["fp32", "numpy matmul", f"{numpy_rate:.1f} GFLOP/s", _num(2 * pk.get("n", 0) ** 3 / numpy_rate / 1e6 if numpy_rate else None, ".1f")])
        rows[0 if pk.get("kernel") == "onnxruntime MatMul" else -1][1] += " (the cost model's fp32 peak)"
        tables.append(TableData(f"GEMM peaks per precision ({pp['n']}x{pp['n']}, {pp['threads']} threads, best of {pp['repeats']})",
                                ["precision", "kernel", "rate", "best ms"], rows,
                                "onnxruntime's CPU provider has no bfloat16 GEMM on x86; the bf16 row is OpenVINO's, the precision of the ov-cpu-bf16 rows "
                                "(the cost model's fraction of peak for them is of this rate).",
                                numeric={3}))
    elif pp:
        tables.append(TableData("GEMM peaks per precision", ["item", "value"], [["skipped", pp["skipped"]]]))

    sweep = cm.get("batch_sweep") or []
    if sweep:
        rows = [[str(r["batch"]), str(r["frames_padded"]), _ms(r), f"{r['median_ms'] / r['batch']:.2f}",
                 _num(r.get("gflops_achieved"), ".1f"), "—" if r.get("fraction_of_peak") is None else f"{100 * r['fraction_of_peak']:.1f}%"]
                for r in sweep]
        tables.append(TableData("denoiser batch sweep (ort-cpu, 3 s clip)", ["batch", "frames", "median (p90) ms", "ms per row", "GFLOP/s", "of peak"],
                                rows, "batch 2 = one step; 8 = one clip's edit call at 4 levels; 16, 32 = the calls of 2 and 4 clips stacked.",
                                numeric={0, 1, 2, 3, 4, 5}))

    cli = report.get("cli")
    if cli and cli.get("rows"):
        rows = [[r["task"], str(r["files"]), f"{r['audio_s']:.1f}", f"{r['median_s']:.2f} ({r['min_s']:.2f}-{r['max_s']:.2f})",
                 f"{r['clips_per_s']:.1f}", f"{r['rtf']:.4f}"] for r in cli["rows"]]
        tables.append(TableData("whole process: the CLI as a user runs it", ["command", "files", "audio s", "median s (min-max)", "clips/s", "RTF"],
                                rows, f"fresh `emort` processes (start-up, model load, reading, compute, writing), {cli['rows'][0]['runs']} runs "
                                f"each; score: EmoDB files; enhance -e {cli.get('emotion')} at the bundle's defaults: files of EmoDB, RAVDESS "
                                f"and nEMO in turn, written at their own rates; {cli.get('bytecode', '')}.", numeric={1, 2, 3, 4, 5}))
    elif cli:
        tables.append(TableData("whole process: the CLI as a user runs it", ["item", "value"], [["skipped", cli.get("skipped", "")]]))

    # targets
    rows = []
    for t in report["targets"]:
        val = "—" if t["measured"] is None else f"{t['measured']:.3g}{t['unit']}"
        if t["status"] == "n/a":
            margin = t["detail"]
        elif t["status"] == "pass":
            margin = f"{t['factor']:.2f}x better than needed; {t['detail']}"
        else:
            margin = f"needs {1 / t['factor']:.2f}x; {t['detail']}" if t["factor"] > 0 else t["detail"]
        rows.append([t["label"], val, f"{t['op']} {t['goal']:g}{t['unit']}", t["status"].upper(), margin])
    tables.append(TableData("performance targets", ["target", "measured", "goal", "status", "margin"], rows))

    # steps x sampler
    q = report.get("quality")
    if q and q.get("rows"):
        extra = [k for k in dict.fromkeys(k for r in q["rows"] for k in r) if k not in ("sampler", "steps", "rtf")]
        rows = [[r["sampler"], str(r["steps"]), f"{r['rtf']:.4f}", *[_cell(r.get(k)) for k in extra]] for r in q["rows"]]
        tables.append(TableData(f"steps x sampler ({q['backend']}, {q['clips']} x {q['clip_s']:g} s clips)", ["sampler", "steps", "RTF", *extra], rows,
                                q.get("note", ""), numeric=set(range(1, 3 + len(extra)))))

    return tables


def _cell(v) -> str:
    if isinstance(v, float):
        return f"{v:.3g}"
    return "—" if v is None else str(v)


def _opts(o: dict | None) -> str:
    if not o:
        return ""
    keys = ("method", "sampler", "steps", "amount_db", "strength", "guidance")  # "sampler": reports of emort <= 0.4
    return "(" + ", ".join(f"{k} {o[k]}" for k in keys if o.get(k) is not None) + ")"


def to_markdown(report: dict) -> str:
    """The report's tables as GitHub Markdown (for the README)."""
    out = [f"# emort benchmark ({report['created']}, emort {report['emort_version']}, bundle {report['bundle']['name']})", ""]
    for w in report.get("warnings", []):
        out.append(f"- **warning:** {w}")
    if report.get("warnings"):
        out.append("")
    for t in report_tables(report):
        out += [f"### {t.title}", ""]
        if t.caption:
            out += [t.caption, ""]
        out.append("| " + " | ".join(t.headers) + " |")
        out.append("|" + "|".join("---:" if i in t.numeric else "---" for i in range(len(t.headers))) + "|")
        out += ["| " + " | ".join(c.replace("|", "\\|") for c in r) + " |" for r in t.rows]
        out.append("")
    return "\n".join(out)


def rich_tables(report: dict) -> list:
    """The report's tables as ``rich.table.Table`` objects."""
    from rich.markup import escape
    from rich.table import Table

    out = []
    for t in report_tables(report):
        tab = Table(title=escape(t.title), caption=escape(t.caption) if t.caption else None, caption_justify="left")
        for i, h in enumerate(t.headers):
            tab.add_column(escape(h), justify="right" if i in t.numeric else "left", overflow="fold")
        for r in t.rows:
            cells = [escape(c) for c in r]
            if t.title == "performance targets":
                colour = {"PASS": "green", "MISS": "red"}.get(r[3], "yellow")
                cells[3] = f"[{colour}]{cells[3]}[/]"
            tab.add_row(*cells)
        out.append(tab)
    return out


def write_reports(report: dict, json_path: Path | None, md_path: Path | None = None) -> list[Path]:
    """The report as JSON and (optionally) its tables as Markdown, each written atomically."""
    written = []
    if json_path is not None:
        written.append(write_json_atomic(json_path, report))
    if md_path is not None:
        written.append(write_text_atomic(md_path, to_markdown(report)))
    return written
