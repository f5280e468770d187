#!/usr/bin/env bash
# The runtime on an NVIDIA GPU through onnxruntime's CUDA provider, in one run: what the host offers,
# whether onnxruntime finds pip's CUDA libraries by itself or needs emort's preload, the tests
# marked `gpu` of the runtime (every graph of the shipped bundle, the enhancer and the scorer
# against the CPU; TensorRT's where it is installed), `emort enhance` and `emort score` as whole
# processes on the CPU and the GPU with their outputs compared, a folder's clips of new lengths under
# the provider's convolution-search settings, and `emort bench`'s component rows for every backend.
#   bash benchmarks/gpu_inference_check.sh OUT_DIR CLIPS_DIR [--no-bench]
# Needs onnxruntime-gpu (pip install 'emort[cuda]', README: Install, NVIDIA GPUs). Logs, JSON and
# Markdown go to OUT_DIR.
set -u
out=${1:?usage: gpu_inference_check.sh OUT_DIR CLIPS_DIR}
clips=${2:?usage: gpu_inference_check.sh OUT_DIR CLIPS_DIR}
mkdir -p "$out"
export PYTHONUNBUFFERED=1
{
  nvidia-smi -L; nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv
  lscpu | grep -m1 'Model name'; nproc
  python3 -c 'import onnxruntime as o; print("onnxruntime", o.__version__, o.get_available_providers())'
  # a bare session in a fresh process: does onnxruntime find the CUDA libraries without preload_dlls()?
  python3 - <<'PY'
import onnxruntime as ort
from emort.runtime.bundle import load_bundle
s = ort.InferenceSession(str(load_bundle().model_path("style")), providers=["CUDAExecutionProvider", "CPUExecutionProvider"])
print("bare onnxruntime session asked for CUDA runs on:", s.get_providers())
PY
  python3 - <<'PY'
from emort.runtime.bundle import load_bundle
from emort.runtime.session import OrtModel, preload_cuda_libraries
print("emort's preload_cuda_libraries():", preload_cuda_libraries())
print("emort OrtModel(device='cuda') runs on:", OrtModel(load_bundle().model_path("style"), "cuda").session.get_providers())
PY
} 2>&1 | tee "$out/host.txt"
python3 -m pytest -q -m gpu -rs -p no:cacheprovider tests/runtime/test_cuda_provider.py \
  tests/export/test_tensorrt_device.py 2>&1 | tee "$out/pytest_gpu.txt"
rc_tests=${PIPESTATUS[0]}
python3 -m pytest -q -rs -p no:cacheprovider tests/runtime/test_cuda_preload.py tests/export/test_tensorrt_logic.py \
  2>&1 | tee -a "$out/pytest_gpu.txt"  # the provider options and the preload, unit-tested
rc_tests=$(( rc_tests || PIPESTATUS[0] ))
python3 benchmarks/device_cli.py "$clips" --devices cpu,cuda --pairs 3 --json "$out/device_cli.json" 2>&1 | tee "$out/device_cli.txt"
rc_cli=${PIPESTATUS[0]}
python3 benchmarks/cuda_shapes.py "$clips" --variants cpu,cuda-heuristic,cuda-default-no-tf32 --json "$out/cuda_shapes.json" 2>&1 \
  | tee "$out/cuda_shapes.txt"
rc_shapes=${PIPESTATUS[0]}
if [ "${3:-}" = "--no-bench" ]; then
  echo "tests rc=$rc_tests cli rc=$rc_cli shapes rc=$rc_shapes (bench not run)"
  exit $(( rc_tests || rc_cli || rc_shapes ))
fi
timeout 240 python3 -m emort bench --device all --no-sweep --no-cli --repeats 10 --json "$out/bench.json" --md "$out/bench.md" \
  > "$out/bench.txt" 2>&1
rc_bench=$?
tail -40 "$out/bench.txt"
echo "tests rc=$rc_tests cli rc=$rc_cli shapes rc=$rc_shapes bench rc=$rc_bench"
exit $(( rc_tests || rc_cli || rc_shapes || rc_bench ))
