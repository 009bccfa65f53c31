"""The repo is installable (issue 12): nothing outside the tests edits sys.path, the cnns distribution
maps the top-level folders under the ``cnns`` namespace in an editable install and in a wheel, its
console scripts run, and Hugging Face's ``datasets`` imports next to the harness."""
import ast
import json
import os
import shutil
import subprocess
import sys
import textwrap
import zipfile
from typing import Iterator, List, Tuple

import pytest

from tests.conftest import REPO_ROOT

SKIPPED_DIRS = {".git", ".venv", "__pycache__", "tests", "build", "data", "logs"}
PACKAGES = ("inference", "inference/onnx_bulk", "train", "models", "datasets", "utils")


def _is_sys_path(node: ast.AST) -> bool:
    return (isinstance(node, ast.Attribute) and node.attr == "path"
            and isinstance(node.value, ast.Name) and node.value.id == "sys")


def sys_path_edits(source: str) -> List[int]:
    """Lines that change the import path: sys.path.<method>(...), assignments to sys.path or its items,
    site.addsitedir(...), and ``from sys import path`` (which only serves to edit it)."""
    lines = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            if _is_sys_path(node.func.value):
                lines.append(node.lineno)
            elif (node.func.attr == "addsitedir" and isinstance(node.func.value, ast.Name)
                  and node.func.value.id == "site"):
                lines.append(node.lineno)
        elif isinstance(node, (ast.Assign, ast.AugAssign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for target in targets:
                if _is_sys_path(target) or (isinstance(target, ast.Subscript) and _is_sys_path(target.value)):
                    lines.append(node.lineno)
        elif isinstance(node, ast.ImportFrom) and node.module == "sys" and any(a.name == "path" for a in node.names):
            lines.append(node.lineno)
    return sorted(lines)


def project_modules() -> Iterator[str]:
    """Every .py file of the repo that is not a test (tests may arrange their own path)."""
    for folder, dirs, files in os.walk(REPO_ROOT):
        dirs[:] = [d for d in dirs if d not in SKIPPED_DIRS and not d.endswith(".egg-info")]
        for name in files:
            if name.endswith(".py"):
                yield os.path.join(folder, name)


def test_the_detector_sees_edits_and_not_comments_or_strings():
    source = textwrap.dedent('''
        import site, sys
        # sys.path.insert(0, "comment")
        doc = "sys.path.append('string')"
        sys.path.insert(0, "a")
        sys.path[0:0] = ["b"]
        sys.path += ["c"]
        site.addsitedir("d")
        from sys import path
        print(sys.path)
    ''')
    assert sys_path_edits(source) == [5, 6, 7, 8, 9]


def test_no_project_module_edits_sys_path():
    files = list(project_modules())
    names = {os.path.relpath(f, REPO_ROOT) for f in files}
    assert {"inference/run_benchmark.py", "train/train.py", "utils/poprun_node.py",
            "inference/onnx_bulk/resnext_inference_launch.py", "benchmarks/peers.py"} <= names
    edits = [f"{os.path.relpath(f, REPO_ROOT)}:{line}" for f in files
             for line in sys_path_edits(open(f, encoding="utf-8").read())]
    assert not edits, f"sys.path edited outside the tests: {edits}"


def _python(code: str, cwd: str, timeout: int = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], cwd=cwd, capture_output=True, text=True, timeout=timeout)


@pytest.mark.slow
def test_editable_install_resolves_every_mapped_package(tmp_path):
    """From a folder outside the checkout (so nothing but the install can find them), each ``cnns.X`` is
    the checkout's folder X, and the generic names are not installed as top-level packages."""
    code = textwrap.dedent(f'''
        import importlib, importlib.util, json
        found = {{p: importlib.import_module("cnns." + p.replace("/", ".")).__file__ for p in {PACKAGES!r}}}
        found["onnx_bulk_data"] = importlib.import_module("cnns.inference.onnx_bulk.data").__file__
        top = {{n: importlib.util.find_spec(n) is not None for n in ("utils", "models", "train", "inference",
                                                                  "flags", "dataloader")}}
        print(json.dumps({{"found": found, "top": top}}))
    ''')
    out = _python(code, cwd=str(tmp_path))
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    for package in PACKAGES:
        assert report["found"][package] == os.path.join(REPO_ROOT, package, "__init__.py")
    assert report["found"]["onnx_bulk_data"] == os.path.join(REPO_ROOT, "inference", "onnx_bulk", "data.py")
    assert not any(report["top"].values()), report["top"]


@pytest.mark.slow
def test_console_scripts_are_installed_next_to_python():
    bin_dir = os.path.dirname(sys.executable)
    for command, usage in [("cnns-run-benchmark", "--model"), ("cnns-train", "--model"), ("cnns-validate", "--model"),
                           ("cnns-restore", "--checkpoint-path"), ("cnns-weight-avg", "--checkpoint-path"),
                           ("poprun", "--num-instances")]:
        path = shutil.which(command, path=bin_dir)
        assert path, f"{command} is not in {bin_dir}"
        out = subprocess.run([path, "--help"], capture_output=True, text=True, timeout=120, cwd="/")
        assert out.returncode == 0 and usage in out.stdout, (command, out.stderr[-2000:])


@pytest.mark.slow
def test_console_script_usage_error_is_one_line_and_exit_2(tmp_path):
    path = shutil.which("cnns-run-benchmark", path=os.path.dirname(sys.executable))
    out = subprocess.run([path, "--model", "resnet0", "--log-path", str(tmp_path)], capture_output=True, text=True,
                         timeout=120, cwd=str(tmp_path))
    assert out.returncode == 2
    assert out.stderr.strip().startswith("error: ") and len(out.stderr.strip().splitlines()) == 1


def _not_sources(folder: str, names: List[str]) -> List[str]:
    """Caches, logs and what the ONNX launcher downloads or exports into its folder."""
    generated = {"models", "datasets"} if folder.endswith("onnx_bulk") else set()
    return [n for n in names if n in {"__pycache__", "logs"} | generated or n.endswith(".pyc")]


def _wheel_names(tmp_path) -> Tuple[List[str], str]:
    """Build the cnns wheel from a copy of its sources (no build files land in the checkout)."""
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(os.path.join(REPO_ROOT, name), src / name)
    for package in ("inference", "train", "models", "datasets", "utils"):
        shutil.copytree(os.path.join(REPO_ROOT, package), src / package, ignore=_not_sources)
    out = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                          "-w", str(tmp_path / "dist"), str(src)], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    wheel, = (tmp_path / "dist").glob("cnns-*.whl")
    with zipfile.ZipFile(wheel) as z:
        names = z.namelist()
        entry_points = next(z.read(n).decode() for n in names if n.endswith("entry_points.txt"))
    return names, entry_points


@pytest.mark.slow
def test_wheel_holds_the_packages_under_cnns_only(tmp_path):
    names, entry_points = _wheel_names(tmp_path)
    for package in PACKAGES:
        assert f"cnns/{package}/__init__.py" in names
    for data_file in ("cnns/inference/configs.yml", "cnns/train/configs.yml", "cnns/inference/onnx_bulk/data.py",
                      "cnns/utils/poprun_node.py", "cnns/models/registry.py", "cnns/datasets/preprocess.py"):
        assert data_file in names
    tops = {n.split("/")[0] for n in names if not n.split("/")[0].endswith((".dist-info", ".data"))}
    assert tops == {"cnns"}, tops
    assert "poprun = cnns.utils.poprun:main" in entry_points
    assert "cnns-run-benchmark = cnns.inference.run_benchmark:cli" in entry_points


@pytest.mark.slow
def test_hugging_face_datasets_imports_next_to_the_harness(tmp_path):
    """Hugging Face's ``datasets`` (installed by requirements.txt) is what ``import datasets`` gives, in the
    same process as the harness's ``cnns.datasets``, and a short benchmark still runs. It runs from a
    folder outside the checkout: started from the checkout's root, Python puts the current folder first
    on the path, where the folder ``datasets/`` is (the scripts and console scripts never do)."""
    code = textwrap.dedent(f'''
        import json
        import datasets as hf
        from cnns import datasets as ours
        from cnns.inference import run_benchmark
        results = run_benchmark.main(["--data", "generated", "--model", "resnet18", "--batch-size", "2",
                                      "--iterations", "2", "--warmup-iterations", "0", "--precision", "32.32",
                                      "--random-weights", "--executor", "eager", "--dataloader-worker", "0",
                                      "--log-path", {str(tmp_path / "logs")!r}])
        print(json.dumps({{"hf": hf.__file__, "hf_load": hasattr(hf, "load_dataset"), "ours": ours.__file__,
                          "same_after": __import__("datasets") is hf,
                          "throughput": results["metrics"]["throughput_mean"]}}))
    ''')
    out = _python(code, cwd=str(tmp_path), timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    report = json.loads(out.stdout.strip().splitlines()[-1])
    assert report["hf_load"] and "site-packages" in report["hf"]
    assert report["ours"] == os.path.join(REPO_ROOT, "datasets", "__init__.py")
    assert report["same_after"] and report["throughput"] > 0
