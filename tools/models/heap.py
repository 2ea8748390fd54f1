"""Keep freed memory in the process heap instead of handing it back to the OS.

glibc serves every block over its mmap threshold (at most 32 MB) with a fresh mmap and unmaps
it on free, so each training step first-touches its large buffers again (the softmax's
[positions x items] logit gradient alone is about 50 MB on ML-1M): thousands of page faults a
step. With mmap off and trimming off, the heap grows once to a step's peak and is reused.
Measured on a 2-core AVX2 machine: one SASRec step 0.24 -> 0.195 s (docs/benchmarks.md).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

M_TRIM_THRESHOLD, M_MMAP_MAX = -1, -4  # glibc's mallopt parameters (malloc.h)
NEVER = 2**31 - 1  # mallopt takes an int
# Past glibc's largest mmap threshold a step's dense item-table gradients, made afresh each step,
# fragment a kept heap: at a million items (256 MB a table) it grew to 19 GB within one epoch,
# against about 5 GB with glibc's defaults, which map them afresh at 2.2x the time a step
# (docs/size.md)
KEEP_UP_TO_BYTES = 32 * 2**20


def keep_heap(table_bytes: int) -> bool:
    """Configure glibc's allocator for a long training loop over an item table of
    `table_bytes`; False where it is not glibc or the table is too large to keep."""
    if table_bytes > KEEP_UP_TO_BYTES or not sys.platform.startswith("linux"):
        return False
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    libc = ctypes.CDLL(name)
    if not hasattr(libc, "mallopt") or not hasattr(libc, "gnu_get_libc_version"):
        return False
    return bool(libc.mallopt(M_MMAP_MAX, 0)) and bool(libc.mallopt(M_TRIM_THRESHOLD, NEVER))
