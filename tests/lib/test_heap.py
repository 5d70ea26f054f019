"""A preprocessing worker keeps its freed heap (glibc): no fresh pages faulted in per image.

Issue 15: each image a forked preprocessing worker handled faulted 75 to 135 fresh, kernel-zeroed
pages back in, because glibc gave the top of the heap back after every image. The check counts
minor page faults (``ru_minflt``), not time, in a fresh interpreter so the settings stay there.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from imagenet_ops.core import heap

# One image's large buffers as the worker allocates them (decoded image, its bytes, the output), then freed.
PATTERN = textwrap.dedent(
    """
    import resource, sys
    from imagenet_ops.core.heap import keep_freed_heap
    if sys.argv[1] == "keep":
        assert keep_freed_heap()
    def image():
        decoded, pixels, output = bytearray(750_000), bytearray(562_500), bytearray(602_240)
        del decoded, pixels, output
    for _ in range(5):
        image()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(50):
        image()
    print((resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 50)
    """
)


def _faults_per_image(mode: str) -> float:
    out = subprocess.run([sys.executable, "-c", PATTERN, mode], capture_output=True, text=True, timeout=60, check=True)
    return float(out.stdout)


@pytest.mark.skipif(not heap.is_glibc(), reason="glibc malloc only")
def test_a_worker_that_keeps_its_heap_faults_no_pages_per_image() -> None:
    assert _faults_per_image("default") > 100  # glibc's own thresholds: the heap is trimmed after every image
    assert _faults_per_image("keep") < 1


def test_the_thresholds_are_glibcs_own_upper_bounds(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[int, int]] = []

    class FakeLibc:
        def mallopt(self, option: int, value: int) -> int:
            calls.append((option, value))
            return 1

    monkeypatch.setattr(heap, "is_glibc", lambda: True)
    monkeypatch.setattr(heap.ctypes, "CDLL", lambda name: FakeLibc())
    assert heap.keep_freed_heap() is True
    assert calls == [(heap.M_MMAP_THRESHOLD, 32 << 20), (heap.M_TRIM_THRESHOLD, 64 << 20)]


def test_a_refused_setting_is_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    class RefusingLibc:
        def mallopt(self, option: int, value: int) -> int:
            return 0

    monkeypatch.setattr(heap, "is_glibc", lambda: True)
    monkeypatch.setattr(heap.ctypes, "CDLL", lambda name: RefusingLibc())
    assert heap.keep_freed_heap() is False


def test_off_glibc_nothing_is_changed(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_libc(name: object) -> object:
        raise AssertionError("mallopt must not be looked up off glibc")

    monkeypatch.setattr(heap.sys, "platform", "darwin")
    monkeypatch.setattr(heap.ctypes, "CDLL", no_libc)
    assert heap.is_glibc() is False
    assert heap.keep_freed_heap() is False
