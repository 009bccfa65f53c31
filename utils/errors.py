"""One place that turns any failure of an entry point into one sentence and a non-zero exit code.

Scripts run unattended by other scripts: bad input ends with ``error: <sentence>`` and exit code 2; a
failure mid-run (disk full, a file vanishing, SIGTERM) ends with one sentence naming what failed and a
non-zero code, and the run's log folder records the error. ``--debug`` or ``HARNESS_DEBUG=1`` shows the
traceback instead.
"""
from __future__ import annotations

import functools
import os
import signal
import subprocess
import sys
from typing import Any, Callable, List, Optional, Sequence, Tuple, Type

DEBUG_ENV = "HARNESS_DEBUG"
USAGE_EXIT = 2
FAILURE_EXIT = 1


class UsageError(ValueError):
    """Bad command-line input; the message names the bad value and what is accepted."""


class ChildFailed(RuntimeError):
    """A child process failed; the message is already the one sentence to show (what the child was, how
    it ended and its own error line), so the parent does not re-raise the child's traceback."""


class Stopped(Exception):
    """The process was asked to stop (SIGTERM or SIGINT); ``code`` is the conventional 128 + signal."""

    def __init__(self, signum: int) -> None:
        self.code = 128 + signum
        super().__init__(f"Stopped by {signal.Signals(signum).name}")


_failure_hooks: List[Callable[[str], None]] = []


def on_failure(hook: Callable[[str], None]) -> Callable[[], None]:
    """Registers ``hook(message)`` to run when the entry point fails (e.g. record it in the log folder);
    returns a function that unregisters it."""
    _failure_hooks.append(hook)
    return lambda: _failure_hooks.remove(hook) if hook in _failure_hooks else None


def _usage_error_types() -> Tuple[Type[BaseException], ...]:
    types: list = [UsageError]
    try:
        from cnns.models import ModelConfigError
        types.append(ModelConfigError)
    except ImportError:
        pass
    from cnns.datasets.errors import DataError
    types.append(DataError)
    from portable_poptorch.errors import ConfigError
    types.append(ConfigError)
    return tuple(types)


def debug_from_environment() -> bool:
    """True when ``HARNESS_DEBUG`` asks every entry point for tracebacks."""
    return os.environ.get(DEBUG_ENV, "") not in ("", "0")


def debug_requested(argv: Optional[Sequence[str]]) -> bool:
    args = sys.argv[1:] if argv is None else argv
    return "--debug" in args or debug_from_environment()


def failure_sentence(error: BaseException) -> str:
    """One sentence for an unexpected failure, naming the file when the OS names one."""
    if isinstance(error, ChildFailed):
        return str(error)
    if isinstance(error, OSError):
        what = error.strerror or str(error) or type(error).__name__
        if error.filename is not None:
            return f"{what}: {error.filename!r}."
        return f"{what}."
    memory = _out_of_memory(error)
    if memory:
        return f"Out of {memory} memory; lower the batch size, device iterations, replicas or image size."
    first = (str(error).strip().splitlines() or [""])[0][:300]
    return (f"{type(error).__name__}: {first or 'no message'} "
            f"(run again with --debug or {DEBUG_ENV}=1 for the traceback).")


def _out_of_memory(error: BaseException) -> Optional[str]:
    """'host' or 'device' when ``error`` is an allocator's refusal (the up-front estimate is a lower
    bound, so a run can still run short), else None."""
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(error, getattr(torch, "OutOfMemoryError", ())):
        return "device"
    if isinstance(error, MemoryError) or (isinstance(error, RuntimeError) and "can't allocate memory" in str(error)):
        return "host"
    return None


def describe_exit(code: int) -> str:
    """'was killed by SIGKILL' or 'exited with code 2', from a ``returncode``."""
    if code < 0:
        try:
            return f"was killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"was killed by signal {-code}"
    return f"exited with code {code}"


def last_error_line(stderr: str) -> str:
    """A child's own sentence: its last ``error: ...`` line (also when a launcher prefixed it), else its last
    line (a traceback's ends with the exception), without the prefix and the full stop."""
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    for line in reversed(lines):
        if "error: " in line:
            return line[line.index("error: ") + len("error: "):].rstrip(".")
    return lines[-1].rstrip(".") if lines else ""


def run_child(command: Sequence[str], what: str, **kwargs: Any) -> "subprocess.CompletedProcess[str]":
    """``subprocess.run`` with stdout and stderr captured as text; a failure raises ChildFailed naming
    ``what``, how it ended and its error line, so a benchmark ends in one sentence, not a traceback."""
    proc = subprocess.run(list(command), capture_output=True, text=True, **kwargs)
    if proc.returncode != 0:
        detail = last_error_line(proc.stderr)
        raise ChildFailed(f"{what} {describe_exit(proc.returncode)}{': ' + detail if detail else ''}.")
    return proc


_handler_pid = 0


def _raise_stopped(signum: int, _frame: Any) -> None:
    """In the entry point's own process: unwind. In a forked child (loader worker, pool process) that
    inherited the handler: die by the signal as before, so pools and loaders stop their workers as usual."""
    if os.getpid() != _handler_pid:
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)
        return
    raise Stopped(signum)


def _install_stop_handler() -> Any:
    """SIGTERM stops like Ctrl-C: unwinding runs every cleanup (temporary files, log folder).
    Returns the previous handler, or None off the main thread where handlers cannot be set."""
    global _handler_pid
    try:
        previous = signal.signal(signal.SIGTERM, _raise_stopped)
    except ValueError:
        return None
    _handler_pid = os.getpid()
    return previous


def _fail(message: str, code: int) -> None:
    for hook in list(_failure_hooks):
        try:
            hook(message)
        except OSError:
            pass
    print(f"error: {message}", file=sys.stderr, flush=True)
    sys.exit(code)


def exit_on_usage_error(main: Callable[..., Any]) -> Callable[..., Any]:
    """Run ``main``; usage errors exit 2, other failures exit 1 (128 + signal when stopped), each with
    one ``error:`` line on stderr, unless a traceback is asked for."""
    @functools.wraps(main)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        argv = args[0] if args else kwargs.get("argv")
        debug = debug_requested(argv)
        previous = _install_stop_handler()
        try:
            return main(*args, **kwargs)
        except _usage_error_types() as exc:
            if debug:
                raise
            _fail(str(exc), USAGE_EXIT)
        except KeyboardInterrupt:
            if debug:
                raise
            _fail("Stopped by SIGINT; files already written are complete, the current step was not finished.",
                  128 + signal.SIGINT)
        except Stopped as exc:
            if debug:
                raise
            _fail(f"{exc}; files already written are complete, the current step was not finished.", exc.code)
        except Exception as exc:  # noqa: BLE001 - the last line of defence: one sentence, not a traceback
            if debug:
                raise
            _fail(failure_sentence(exc), FAILURE_EXIT)
        finally:
            _failure_hooks.clear()
            if previous is not None:
                signal.signal(signal.SIGTERM, previous)
    return wrapper
