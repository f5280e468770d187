"""The benchmarks (``benchmarks/``, run by ``emort bench``) on the tiny bundle: the report has every
section and sane numbers; eager rows without training runs are skipped with a one-line reason;
``emort bench`` finds the checkout's ``benchmarks/`` or says in one line that it cannot.

No timing assertions: these machines are shared and the numbers are only meaningful
from a full run on a quiet machine.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from emort.bench import benchmarks_module
from emort.runtime.errors import EmortError

REPO = Path(__file__).resolve().parent.parent


def _positive(x) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x) and x > 0


def test_bench_script_help_runs_from_a_checkout():
    r = subprocess.run([sys.executable, str(REPO / "benchmarks" / "bench.py"), "--help"], capture_output=True, text=True, timeout=120,
                       cwd=REPO.parent)  # not the repo root: the script puts the checkout on sys.path itself
    assert r.returncode == 0, r.stderr
    assert "--ser-run" in r.stdout and "--quick" in r.stdout


def test_emort_bench_without_a_source_tree_says_so(tmp_path, monkeypatch):
    import emort.bench

    monkeypatch.setattr(emort.bench, "CHECKOUT", tmp_path)  # an installed package: no benchmarks/ beside it
    with pytest.raises(EmortError, match="installed without one") as e:
        emort.bench.main(["--help"])
    assert "\n" not in str(e.value)


def test_bench_quick_writes_report(tiny, tmp_path: Path, capsys):
    out_json, out_md = tmp_path / "bench.json", tmp_path / "bench.md"
    code = benchmarks_module().main(["--bundle", str(tiny["bundle"]), "--ser-run", str(tiny["ser"]), "--diffusion-run", str(tiny["diffusion"]),
                                     "--quick", "--threads", "1", "--device", "cpu", "--json", str(out_json), "--md", str(out_md)])
    assert code == 0, capsys.readouterr().err
    rep = json.loads(out_json.read_text())
    for key in ("machine", "settings", "bundle", "backends", "components", "throughput", "parity", "cost_model", "targets", "quality", "warnings"):
        assert key in rep, key
    m = rep["machine"]
    assert m["threads"] == 1 and m["cores"] >= 1 and m["cpu_model"] and m["onnxruntime"] and m["torch"]

    assert rep["backends"]["torch"]["status"] == "ok"
    assert rep["backends"]["ort-cpu"]["status"] == "ok"
    assert rep["backends"]["ort-cpu-spin"]["status"] == "ok"  # the denoiser's threads spinning (Enhancer.load(spin=True))
    for name in ("ort-cuda", "ort-tensorrt", "trt-fp16"):  # --device cpu: listed, with the reason
        assert rep["backends"][name]["status"] == "skipped" and rep["backends"][name]["reason"]

    seen = {(c["component"], c["backend"], c["clip_s"]) for c in rep["components"]}
    for sec in (1.0, 3.0):
        for comp in ("frontend", "vocoder"):
            assert (comp, "numpy", sec) in seen
        for comp in ("ser", "style", "denoiser_step", "denoiser_call", "enhance"):
            for be in ("torch", "ort-cpu", "ort-cpu-spin"):
                assert (comp, be, sec) in seen, (comp, be, sec)
    for c in rep["components"]:
        assert all(_positive(c[k]) for k in ("median_ms", "p90_ms", "min_ms", "rtf", "frames")), c
        assert c["p90_ms"] >= c["median_ms"] >= c["min_ms"]
    assert all(c["denoiser_calls"] >= 1 for c in rep["components"] if c["component"] == "enhance")

    tasks = {(t["task"], t["backend"]) for t in rep["throughput"]}
    assert {("score", "ort-cpu"), ("enhance_folder", "ort-cpu"), ("score", "torch")} <= tasks
    assert all(_positive(t["clips_per_s"]) and _positive(t["rtf"]) for t in rep["throughput"])

    cm = rep["cost_model"]
    assert _positive(cm["matmul_peak"]["gflops"]) and _positive(cm["flops_per_frame_manifest"])
    assert 0.5 < cm["onnx_graph"]["manifest_ratio"] < 2  # the graph count agrees with the manifest's formula
    assert all(_positive(d["gflop"]) and _positive(d["fraction_of_peak"]) for d in cm["denoiser"])
    assert {d["call"] for d in cm["denoiser"]} == {"step", "edit"}
    assert [r["batch"] for r in cm["batch_sweep"]] == [2, 8, 16, 32] and all(_positive(r["gflops_achieved"]) for r in cm["batch_sweep"])
    assert _positive(cm["precision_peaks"]["fp32"]["rate"]) and _positive(cm["precision_peaks"]["int8"]["rate"])
    # the cost model's float32 peak is the faster of the two GEMMs measured, named
    pk = cm["matmul_peak"]
    assert pk["gflops"] == pytest.approx(max(pk["numpy_gflops"], cm["precision_peaks"]["fp32"]["rate"]))
    assert pk["kernel"] in ("numpy matmul", "onnxruntime MatMul")
    call = next(c for c in rep["components"] if c["component"] == "denoiser_call" and c["backend"] == "ort-cpu")
    assert call["batch"] == 2 * min(rep["settings"]["enhance_options"]["steps"], 4)  # the levels of one call, up to the batch limit 8

    # eager and onnxruntime ran the same weights
    assert all(v < 1e-3 for v in rep["parity"]["ort-cpu"].values())

    targets = {t["key"]: t for t in rep["targets"]}
    assert set(targets) == {"enhance_rtf", "ort_speedup_denoiser", "ort_speedup_denoiser_spin", "ort_speedup_ser", "denoiser_peak_fraction",
                            "score_clips_per_s", "reduced_precision_speedup_denoiser", "denoiser_peak_fraction_bf16",
                            "cli_enhance_rtf", "cli_score_clips_per_s"}
    for key in ("cli_enhance_rtf", "cli_score_clips_per_s"):  # --quick leaves out the whole-process rows: n/a, saying so
        assert targets.pop(key)["status"] == "n/a" and "cli" not in rep
    bf16 = rep["backends"]["ov-cpu-bf16"]
    for key, t in targets.items():
        if key in ("reduced_precision_speedup_denoiser", "denoiser_peak_fraction_bf16") and bf16["status"] == "skipped":
            # no AMX-BF16 or no OpenVINO here: N/A with the reason, never a pass
            assert t["status"] == "n/a" and t["measured"] is None and bf16["reason"] in t["detail"]
            continue
        assert t["status"] in ("pass", "miss") and _positive(t["measured"]) and _positive(t["factor"])

    assert rep["quality"]["rows"] and all(_positive(q["rtf"]) for q in rep["quality"]["rows"])
    md = out_md.read_text()
    for title in ("latency per call", "batch throughput", "cost model", "GEMM peaks per precision", "denoiser batch sweep", "performance targets",
                  "steps x sampler"):
        assert title in md
    assert "| SER forward | 3 |" in md
    assert "speed-up vs eager (spin)" in md
    assert f"wrote {out_json}" in capsys.readouterr().out


def test_fp32_peak_is_the_faster_gemm():
    from benchmarks.peaks import fp32_peak

    numpy_peak = {"n": 2048, "repeats": 5, "best_ms": 80.0, "gflops": 215.0, "threads": 2}
    faster = fp32_peak(numpy_peak, {"fp32": {"rate": 420.0, "best_ms": 41.0}})
    assert faster["gflops"] == 420.0 and faster["kernel"] == "onnxruntime MatMul" and faster["numpy_gflops"] == 215.0
    assert faster["best_ms"] == 41.0 and numpy_peak["gflops"] == 215.0  # the input is not changed
    slower = fp32_peak(numpy_peak, {"fp32": {"rate": 100.0, "best_ms": 170.0}})
    assert slower["gflops"] == 215.0 and slower["kernel"] == "numpy matmul"
    assert fp32_peak(numpy_peak, {"fp32": {"skipped": "no onnx"}})["gflops"] == 215.0  # not measured: numpy's


def test_bench_skips_eager_rows_with_unusable_runs(tiny, tmp_path: Path):
    from emort.runtime.bundle import load_bundle

    torch_backend = benchmarks_module("eager_rows").torch_backend
    b = load_bundle(tiny["bundle"])
    be = torch_backend(b, tmp_path / "no-such-run", tiny["diffusion"])  # rebuilt from the bundle (tests/export/test_to_torch.py)
    assert be.status == "ok" and "not found" in be.reason and "rebuilt from the bundle" in be.reason and "\n" not in be.reason
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "ser.json").write_text("{}")  # a run folder whose files do not load
    pytest.importorskip("torch")
    be = torch_backend(b, tmp_path / "broken", tiny["diffusion"])
    assert be.status == "skipped" and be.reason.startswith("could not load the runs") and "\n" not in be.reason
    be = torch_backend(b, tiny["ser_speaker"], tiny["diffusion"])  # the wrong SER for eager rows
    assert be.status == "skipped" and "speaker-normalised" in be.reason
    assert torch_backend(b, tiny["ser"], tiny["diffusion"]).status == "ok"


def test_quality_sweep_takes_extra_columns(tiny):
    from emort.runtime.enhancer import Enhancer

    quality_sweep = benchmarks_module("runtime_rows").quality_sweep
    report_tables = benchmarks_module("report").report_tables
    synth_speech = benchmarks_module("clips").synth_speech
    enh = Enhancer.load(tiny["bundle"], device="cpu", threads=1)
    clip = synth_speech(1.0, enh.bundle.mel.sample_rate)
    seen = []

    def evaluate(sources, outputs, sample_rate, emotion, options):
        seen.append((len(sources), len(outputs), sample_rate, emotion, options.steps))
        return {"judge P(target)": 0.5}

    rows = quality_sweep(enh, [clip], "happy", grid=[("ddim", 2)], evaluate=evaluate)
    assert rows == [{"sampler": "ddim", "steps": 2, "rtf": rows[0]["rtf"], "judge P(target)": 0.5}] and rows[0]["rtf"] > 0
    assert seen == [(1, 1, enh.bundle.mel.sample_rate, "happy", 2)]
    # the table grows a column per metric
    rep = {"machine": {"cpu_model": "x", "cores": 1, "cores_usable": 1, "threads": 1, "blas": "", "load_average": None, "onnxruntime": "",
                       "onnxruntime_providers": [], "torch": None, "numpy": "", "python": ""},
           "settings": {"clip_lengths_s": [], "warmup": 1, "repeats": 1, "min_runs": 1, "budget_s": 1, "clip_source": ""},
           "bundle": {"name": "b", "path": "p", "hash": "h"}, "backends": {}, "components": [], "throughput": [], "targets": [],
           "quality": {"backend": "ort-cpu", "clips": 1, "clip_s": 1.0, "rows": rows}}
    sweep = report_tables(rep)[-1]
    assert sweep.headers == ["sampler", "steps", "RTF", "judge P(target)"] and sweep.rows[0][-1] == "0.5"


def test_spin_backend_spins_the_denoiser_only(tiny):
    """``ort-cpu-spin`` is the shipped runtime with ``Enhancer.load(spin=True)``: the denoiser's
    threads spin unbounded, the SER's and style encoder's as shipped; ``ort-cpu`` is as shipped
    (every session spinning at most SPIN_US)."""
    sys.path.insert(0, str(REPO))
    from benchmarks.runtime_rows import ort_backend
    from emort.runtime.bundle import load_bundle

    b = load_bundle(tiny["bundle"])
    spun, plain = ort_backend("ort-cpu-spin", b, "cpu", 1), ort_backend("ort-cpu", b, "cpu", 1)
    assert spun.status == plain.status == "ok" and spun.device == "cpu"
    from emort.runtime.session import SPIN_US

    assert spun.enhancer.denoiser.spin is True and spun.enhancer.style.spin == spun.enhancer.scorer.ser.spin == SPIN_US
    assert plain.enhancer.denoiser.spin == plain.enhancer.style.spin == plain.enhancer.scorer.ser.spin == SPIN_US
    assert ort_backend("ort-cpu-spin", b, "cuda", 1).status == "skipped"  # --device cuda: not requested


def test_whole_process_rows_time_the_cli_on_real_files(shared_data: Path, tmp_path: Path):
    from benchmarks.cli_throughput import bench_rows
    from benchmarks.report import evaluate_targets

    got = bench_rows(shared_data, repeats=1, emotion="angry", n_score=3, n_enhance=3)
    assert [r["task"] for r in got["rows"]] == ["score", "enhance"]
    for r in got["rows"]:
        assert r["files"] == 3 and r["runs"] == 1 and _positive(r["median_s"]) and r["rtf"] == pytest.approx(r["median_s"] / r["audio_s"], rel=0.01)
    rep = {"components": [], "throughput": [], "backends": {}, "cost_model": {}, "cli": got}
    t = {x["key"]: x for x in evaluate_targets(rep)}
    assert t["cli_enhance_rtf"]["measured"] == got["rows"][1]["rtf"] and t["cli_score_clips_per_s"]["status"] in ("pass", "miss")
    few = bench_rows(tmp_path, repeats=1, emotion="angry")  # a folder without the corpora: skipped, saying why
    assert "skipped" in few and "rows" not in few
