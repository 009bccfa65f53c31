"""One place that turns bad user input into one clear sentence and exit code 2."""
from __future__ import annotations

import functools
import sys
from typing import Any, Callable, Tuple, Type


class UsageError(ValueError):
    """Bad command-line input; the message names the bad value and what is accepted."""


def _usage_error_types() -> Tuple[Type[BaseException], ...]:
    types: list = [UsageError]
    try:
        from models import ModelConfigError
        types.append(ModelConfigError)
    except ImportError:
        pass
    from portable_poptorch.errors import ConfigError
    types.append(ConfigError)
    return tuple(types)


def exit_on_usage_error(main: Callable[..., Any]) -> Callable[..., Any]:
    """Run ``main``; usage errors print ``error: <sentence>`` to stderr and exit with code 2."""
    @functools.wraps(main)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return main(*args, **kwargs)
        except _usage_error_types() as exc:
            print(f"error: {exc}", file=sys.stderr)
            sys.exit(2)
    return wrapper
