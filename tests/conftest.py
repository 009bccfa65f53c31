"""Tests import the harness as installed (``cnns.*``, ``portable_poptorch``); the repository root is on
the path only so that tests can share helpers as ``tests.<module>``.

The session's shared cache folder and the per-test reset of auto's choices come from
portable_poptorch/tests/session_cache.py, shared with that tree's own tests.
"""
import os
import sys

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO_ROOT not in sys.path:
    sys.path.insert(0, REPO_ROOT)

sys.path.insert(0, os.path.join(REPO_ROOT, "portable_poptorch", "tests"))
from session_cache import fresh_auto_choices, pytest_sessionfinish  # noqa: E402,F401  (fixture and hook)
