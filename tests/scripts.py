"""Loading the repository's scripts (benchmarks/*.py, inference/run_benchmark.py) as modules in a test."""
import importlib.util
import os
from types import ModuleType

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def load_script(name: str, path: str) -> ModuleType:
    """The script at ``path`` run as a module named ``name`` (its ``main`` guarded, so nothing runs)."""
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def load_benchmark(script: str) -> ModuleType:
    """benchmarks/<script>.py as a module."""
    return load_script(f"benchmark_{script}", os.path.join(REPO, "benchmarks", f"{script}.py"))
