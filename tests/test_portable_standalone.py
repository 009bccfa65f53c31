"""portable_poptorch installs and passes its own tests without the rest of the repo: ``pip install
./portable_poptorch`` into a fresh venv that has torch only, then its tests are collected there and
the quick ones run (the slow ones run in the main suite).

The fresh venv gets torch without a second download or unpacking of several GB (a 2-core CI machine
with only the package registries): torch and the distributions it requires, and nothing else, are
linked from this venv into one folder that a .pth file puts on the new venv's path, so pip sees torch
installed and resolves only what portable-poptorch adds (numpy, pytest) from the registry.
"""
import importlib.metadata
import os
import re
import shutil
import subprocess
import sys
from typing import Iterable, Set

import pytest

from tests.conftest import REPO_ROOT

PORTABLE = os.path.join(REPO_ROOT, "portable_poptorch")


def _requirement_name(requirement: str) -> str:
    return re.split(r"[\s;<>=!~\[(]", requirement, 1)[0]


def _applies(requirement: str) -> bool:
    """Requirements with no marker or an environment marker; extras are not wanted."""
    marker = requirement.split(";", 1)[1] if ";" in requirement else ""
    if "extra" in marker:
        return False
    if not marker.strip():
        return True
    from packaging.markers import Marker
    return Marker(marker).evaluate()


def torch_closure() -> Set[str]:
    """torch and every distribution it needs here, by name."""
    seen: Set[str] = set()
    todo = ["torch"]
    while todo:
        name = todo.pop()
        key = name.lower().replace("_", "-")
        if key in seen:
            continue
        try:
            dist = importlib.metadata.distribution(name)
        except importlib.metadata.PackageNotFoundError:
            continue
        seen.add(key)
        todo += [_requirement_name(r) for r in dist.requires or [] if _applies(r)]
    return seen


def _top_level_entries(names: Iterable[str]) -> Set[str]:
    """The files and folders in site-packages that belong to the named distributions."""
    entries: Set[str] = set()
    for name in names:
        dist = importlib.metadata.distribution(name)
        for file in dist.files or []:
            first = file.parts[0]
            if first != ".." and first != "__pycache__":
                entries.add(first)
    return entries


@pytest.mark.slow
def test_portable_poptorch_installs_alone_and_passes_its_tests(tmp_path):
    closure = torch_closure()
    assert "torch" in closure and "numpy" not in closure
    site = os.path.dirname(os.path.dirname(importlib.metadata.distribution("torch").locate_file("torch/__init__.py")))
    torch_only = tmp_path / "torch_only"
    torch_only.mkdir()
    for entry in _top_level_entries(closure):
        os.symlink(os.path.join(site, entry), torch_only / entry)

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    python = str(venv / "bin" / "python")
    venv_site = subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               capture_output=True, text=True, check=True).stdout.strip()
    with open(os.path.join(venv_site, "torch_only.pth"), "w") as f:
        f.write(str(torch_only) + "\n")

    source = tmp_path / "portable_poptorch"
    shutil.copytree(PORTABLE, source, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info", "build"))
    install = subprocess.run([python, "-m", "pip", "install", "-q", str(source), "pytest"],
                             capture_output=True, text=True, timeout=600)
    assert install.returncode == 0, install.stderr[-3000:]
    installed = subprocess.run([python, "-m", "pip", "list", "--format=freeze"], capture_output=True, text=True,
                               check=True).stdout.lower()
    assert "portable-poptorch==0.1.0" in installed and "cnns" not in installed
    where = subprocess.run([python, "-c", "import importlib.util, portable_poptorch; "
                            "print(portable_poptorch.__file__, importlib.util.find_spec('cnns'))"],
                           capture_output=True, text=True, cwd=str(tmp_path), timeout=120)
    assert where.returncode == 0, where.stderr
    assert where.stdout.startswith(venv_site) and where.stdout.split()[-1] == "None"

    # Every test module is collected (imported) here; the slow ones are deselected, as they run in the main
    # suite against this same source, so the fresh venv checks what it alone can: that nothing outside
    # the distribution is needed to import and run them.
    tests = subprocess.run([python, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-m", "not slow", "tests"],
                           cwd=str(source), capture_output=True, text=True, timeout=900,
                           env={**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": ""})
    assert tests.returncode == 0, tests.stdout[-3000:] + tests.stderr[-2000:]
    passed, deselected = re.search(r"(\d+) passed.*?(\d+) deselected", tests.stdout).groups()
    assert int(passed) >= 40 and int(deselected) >= 15 and " failed" not in tests.stdout and " error" not in tests.stdout
