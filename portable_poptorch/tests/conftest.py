"""Compiled artefacts and auto's executor choices are shared by every test of a session (and every
xdist worker) through PopTorch's POPTORCH_CACHE_DIR, so a model is compiled once per session."""
import os
import tempfile

_RUN = os.environ.get("PYTEST_XDIST_TESTRUNUID") or str(os.getpid())
os.environ.setdefault("POPTORCH_CACHE_DIR", os.path.join(tempfile.gettempdir(), f"portable_poptorch_tests_{_RUN}"))
