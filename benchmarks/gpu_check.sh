#!/usr/bin/env bash
# The checks that need an NVIDIA GPU, in one run: what the host offers (driver, torch's CUDA,
# onnxruntime's providers, TensorRT), the tests marked `gpu` (TensorRT engines, training on CUDA),
# and the training-speed rows on the CPU and the GPU, the whole-process trainer rows included.
#   bash benchmarks/gpu_check.sh OUT_DIR [DATA_DIR]
# DATA_DIR: a folder with emodb/wav/*.flac (default ../shared/data); logs and JSON go to OUT_DIR.
set -u
out=${1:?usage: gpu_check.sh OUT_DIR [DATA_DIR]}
data=${2:-../shared/data}
mkdir -p "$out"
export EMORT_SHARED_DATA=$data PYTHONUNBUFFERED=1
{
  nvidia-smi -L; nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm --format=csv
  python3 - <<'PY'
import importlib, platform
import torch, onnxruntime as ort
print("python", platform.python_version(), "torch", torch.__version__, "cuda", torch.version.cuda, "gpu", torch.cuda.is_available() and torch.cuda.get_device_name(0))
print("onnxruntime", ort.__version__, ort.get_available_providers())
for m in ("tensorrt", "cuda.bindings"):
    try:
        importlib.import_module(m); print(m, "importable")
    except Exception as e:
        print(m, "not importable:", type(e).__name__, e)
PY
} 2>&1 | tee "$out/host.txt"
python3 -m pytest -q -m gpu -rs tests/export/test_tensorrt_device.py tests/training/test_train_cuda.py 2>&1 | tee "$out/pytest_gpu.txt"
rc_tests=${PIPESTATUS[0]}
python3 benchmarks/train_speed.py --devices cpu,cuda --data "emodb=$data/emodb" --ser emort/assets/default_bundle \
  --trainer-steps 100 --json "$out/train_speed.json" 2>&1 | tee "$out/train_speed.txt"
rc_bench=${PIPESTATUS[0]}
echo "tests rc=$rc_tests bench rc=$rc_bench"
exit $(( rc_tests || rc_bench ))
