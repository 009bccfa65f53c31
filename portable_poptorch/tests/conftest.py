"""Shared cache folder and per-test reset of auto's choices: see session_cache.py."""
from session_cache import fresh_auto_choices, pytest_sessionfinish  # noqa: F401  (fixture and hook)
