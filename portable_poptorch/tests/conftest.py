"""Shared cache folder and per-test reset of auto's choices: see session_cache.py."""
from session_cache import fresh_auto_choices, remove_folder_made_here  # noqa: F401  (fixture and hook)


def pytest_sessionfinish(session, exitstatus):
    remove_folder_made_here(session)
