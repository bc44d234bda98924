"""OS-level thread names: what ``top -H`` and the serving benchmark see."""

from __future__ import annotations

import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from service.threads import OS_NAME_BYTES, name_os_thread, os_thread_name

linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")


def _comm(native_id: int) -> str:
    return Path(f"/proc/self/task/{native_id}/comm").read_text().strip()


def _named_in_a_thread(name: str | None, python_name: str = "worker") -> str:
    seen: list[str] = []

    def target() -> None:
        name_os_thread(name)
        seen.append(_comm(threading.get_native_id()))

    thread = threading.Thread(target=target, name=python_name)
    thread.start()
    thread.join()
    return seen[0]


def test_names_are_cut_to_what_the_kernel_keeps() -> None:
    assert os_thread_name("infer-v5") == b"infer-v5"
    assert len(os_thread_name("a-very-long-thread-name-indeed")) == OS_NAME_BYTES
    assert os_thread_name("défaut") == b"d?faut"


@linux_only
def test_a_thread_takes_the_name_given() -> None:
    assert _named_in_a_thread("image-archive") == "image-archive"
    assert _named_in_a_thread("a-very-long-thread-name-indeed") == "a-very-long-thr"


@linux_only
def test_without_a_name_a_thread_takes_its_python_name() -> None:
    assert _named_in_a_thread(None, python_name="spool-replayer") == "spool-replayer"


@linux_only
def test_an_executor_names_its_threads_through_its_initializer() -> None:
    pool = ThreadPoolExecutor(1, thread_name_prefix="postprocess", initializer=name_os_thread)
    with pool:
        assert pool.submit(lambda: _comm(threading.get_native_id())).result() == "postprocess_0"
