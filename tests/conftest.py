"""Tests import the harness as installed (``cnns.*``, ``portable_poptorch``); the repository root is on
the path only so that tests can share helpers as ``tests.<module>``.

Compiled artefacts and auto's executor choices are shared by every test of a session (and every
xdist worker) through PopTorch's POPTORCH_CACHE_DIR, so a model is compiled once per session.
"""
import os
import sys
import tempfile

import pytest

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO_ROOT not in sys.path:
    sys.path.insert(0, REPO_ROOT)

_RUN = os.environ.get("PYTEST_XDIST_TESTRUNUID") or str(os.getpid())
os.environ.setdefault("POPTORCH_CACHE_DIR", os.path.join(tempfile.gettempdir(), f"portable_poptorch_tests_{_RUN}"))


@pytest.fixture(autouse=True)
def _fresh_auto_choices():
    """auto remembers its choices for the rest of a process; each test starts as a new process would,
    with only what the shared cache folder holds."""
    from portable_poptorch.compilers import forget_choices
    forget_choices()
    yield
