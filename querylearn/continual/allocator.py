"""Process memory of train-sequence: hand freed tensor memory back to the operating system.

glibc's malloc serves large blocks with ``mmap`` (returned to the OS when freed) only above a
threshold that it raises, by default, to the size of every such block freed, up to 32 MiB. After a
few training steps every activation tensor below 32 MiB (a [630, 30, 256] fp32 activation of a
batch of 1,024 rows is 19 MiB) then comes from the heap, whose freed pieces stay resident and
fragment: the process's resident memory grows well above what it holds live. A fixed threshold
(``mmap_threshold_mb``) turns that adjustment off (docs/train-sequence.md, "Memory").
"""

from __future__ import annotations

import ctypes
import sys

M_MMAP_THRESHOLD = -3  # glibc's mallopt parameter number (malloc.h)


def set_mmap_threshold(megabytes: int) -> bool:
    """Serve allocations of at least ``megabytes`` MiB with mmap, with no dynamic adjustment
    (glibc ``mallopt(M_MMAP_THRESHOLD)``). 0 leaves the allocator as it is. Returns whether the
    setting was applied (False on other C libraries or operating systems, where it does nothing)."""
    if megabytes <= 0 or not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False  # not glibc (e.g. musl)
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    return mallopt(M_MMAP_THRESHOLD, megabytes << 20) == 1
