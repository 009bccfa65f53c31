"""Keep the calling thread's alternate signal stack as it was across a runtime's compile.

OpenVINO's CPU plugin installs a small alternate signal stack (sigaltstack) on the thread that
compiles a model and frees it when its compiled models go. Once freed, the thread is left pointing at
unmapped memory, and the next signal delivered there to a handler that asks for the alternate stack
(CPython's, for any Python-level handler such as the SIGCHLD one torch's DataLoader installs) cannot
be written: the kernel kills the process with SIGSEGV. Measured in this suite: a pytest process that
had compiled OpenVINO steps and run DataLoader workers died as soon as a child process exited.
"""
from __future__ import annotations

import contextlib
import ctypes
import sys
from typing import Any, Iterator, Optional


class _Stack(ctypes.Structure):
    _fields_ = [("ss_sp", ctypes.c_void_p), ("ss_flags", ctypes.c_int), ("ss_size", ctypes.c_size_t)]


def _libc() -> Optional[Any]:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(None, use_errno=True)
    except OSError:
        return None
    return libc if hasattr(libc, "sigaltstack") else None


_LIBC = _libc()


def current() -> Optional[tuple]:
    """(address, flags, size) of this thread's alternate signal stack; None where it cannot be read."""
    if _LIBC is None:
        return None
    stack = _Stack()
    if _LIBC.sigaltstack(None, ctypes.byref(stack)) != 0:
        return None
    return stack.ss_sp or 0, stack.ss_flags, stack.ss_size


@contextlib.contextmanager
def kept() -> Iterator[None]:
    """Run the body, then put back the thread's alternate signal stack if the body changed it."""
    if _LIBC is None:
        yield
        return
    saved = _Stack()
    readable = _LIBC.sigaltstack(None, ctypes.byref(saved)) == 0
    try:
        yield
    finally:
        if readable:
            _LIBC.sigaltstack(ctypes.byref(saved), None)
