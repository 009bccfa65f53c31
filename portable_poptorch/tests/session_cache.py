"""The test session's shared cache folder, for both test trees' conftest files.

Compiled artefacts and auto's executor choices are shared by every test of a session (and every xdist
worker) through PopTorch's POPTORCH_CACHE_DIR, so a model is compiled once per session. Inductor's
own kernel cache goes there too. The process that made the folder (the xdist controller, or the only
process) removes it when the session ends: a suite run leaves nothing behind in the temporary folder.
"""
import os
import shutil
import tempfile

import pytest

_RUN = os.environ.get("PYTEST_XDIST_TESTRUNUID") or str(os.getpid())
_MADE_HERE = "POPTORCH_CACHE_DIR" not in os.environ
FOLDER = os.environ.setdefault("POPTORCH_CACHE_DIR",
                               os.path.join(tempfile.gettempdir(), f"portable_poptorch_tests_{_RUN}"))
if _MADE_HERE:
    os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", os.path.join(FOLDER, "inductor_default"))


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Remove the cache folder if this process chose it (never a folder the user named)."""
    if _MADE_HERE and not hasattr(session.config, "workerinput"):
        shutil.rmtree(FOLDER, ignore_errors=True)


@pytest.fixture(autouse=True)
def fresh_auto_choices():
    """auto remembers its choices for the rest of a process; each test starts as a new process would,
    with only what the shared cache folder holds."""
    from portable_poptorch.compilers import forget_choices
    forget_choices()
    yield
