"""Thread names the operating system sees, so that ``top -H``, ``ps -L``, ``py-spy`` and
``/proc/<pid>/task/*/comm`` tell the service's threads apart (the serving benchmark splits the
CPU per strip by them). Python 3.11 names a thread for itself only: to the kernel every thread
of the process is called like the process."""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import sys
import threading
from collections.abc import Callable

OS_NAME_BYTES = 15
"""Longest thread name Linux keeps (16 bytes with the terminating NUL)."""
_PR_SET_NAME = 15


@functools.cache
def _prctl() -> Callable[..., int] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True).prctl
    except (OSError, AttributeError):
        return None


def os_thread_name(name: str) -> bytes:
    """``name`` as the kernel keeps it: ASCII, at most ``OS_NAME_BYTES`` bytes."""
    return name.encode("ascii", "replace")[:OS_NAME_BYTES]


def name_os_thread(name: str | None = None) -> None:
    """Give the calling thread ``name`` (default: its Python name) at the OS level; where the
    platform has no such call, nothing happens. Call it first thing in a thread's target or
    an executor's ``initializer``."""
    prctl = _prctl()
    if prctl is None:
        return
    prctl(_PR_SET_NAME, os_thread_name(name or threading.current_thread().name), 0, 0, 0)
