"""emort's benchmarks, run from a source checkout: ``python benchmarks/bench.py`` or ``emort bench``.

Modules: :mod:`~benchmarks.timing` (the timing harness and the machine), :mod:`~benchmarks.clips`
(benchmark audio), :mod:`~benchmarks.runtime_rows` (onnxruntime backends: latency, throughput,
the steps x sampler sweep), :mod:`~benchmarks.eager_rows` (PyTorch eager on the training runs),
:mod:`~benchmarks.peaks` (matmul peak and the denoiser's FLOPs), :mod:`~benchmarks.report`
(targets, tables, JSON and Markdown) and :mod:`~benchmarks.bench` (the run and its command line).
"""
