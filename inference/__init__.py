"""Inference: run_benchmark.py (the benchmark script, also the ``cnns-run-benchmark`` command) and the
ONNX bulk launcher in onnx_bulk/. Installed as ``cnns.inference``."""
