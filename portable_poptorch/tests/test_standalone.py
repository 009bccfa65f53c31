"""portable_poptorch stands alone: it imports only the standard library, torch's public modules, numpy
and its optional executors' runtimes, so it installs and runs without the harness around it."""
import ast
import pathlib
import sys

import portable_poptorch

PACKAGE = pathlib.Path(portable_poptorch.__file__).resolve().parent
ALLOWED_THIRD_PARTY = {"torch", "numpy", "onnxruntime", "openvino", "onnx", "onnxscript"}
# Private torch modules with no public equivalent, each with why. Inductor's config: its ``freezing`` has
# to be in force while Dynamo traces (torch.compile's ``options`` reach only Inductor's compile, which
# left the weights unfrozen; tests/test_executors.py::test_inductor_freezes_the_weights_into_the_graph).
PRIVATE_ALLOWED = {"torch._inductor.config"}


def _imports(path: pathlib.Path):
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node, alias.name
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            yield node, node.module
            for alias in node.names:
                yield node, f"{node.module}.{alias.name}"


def _sources():
    files = sorted(PACKAGE.rglob("*.py"))
    assert len(files) > 10, f"portable_poptorch's sources not found under {PACKAGE}"
    return files


def test_imports_only_stdlib_torch_numpy_and_optional_runtimes():
    foreign = []
    for path in _sources():
        for node, name in _imports(path):
            top = name.split(".")[0]
            if top not in sys.stdlib_module_names and top not in ALLOWED_THIRD_PARTY and top != "portable_poptorch":
                foreign.append(f"{path.name}:{node.lineno} imports {name}")
    assert not foreign, foreign


def test_uses_no_private_torch_module_or_function():
    private = []
    for path in _sources():
        for node, name in _imports(path):
            if (name.split(".")[0] == "torch" and any(part.startswith("_") for part in name.split("."))
                    and name not in PRIVATE_ALLOWED):
                private.append(f"{path.name}:{node.lineno} imports {name}")
        for node in ast.walk(ast.parse(path.read_text())):
            if (isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.startswith("__")
                    and isinstance(node.value, ast.Name) and node.value.id == "torch"):
                private.append(f"{path.name}:{node.lineno} uses torch.{node.attr}")
    assert not private, private
