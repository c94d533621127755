"""The CPU runtime of the book's workloads: denormals flushed on every thread, and
thread counts set deliberately.

Denormal floats (``0 < |x| < 1.18e-38``) fill Adam's state late in long trainings, and
x86 cores process them many times slower. ``torch.set_flush_denormal(True)`` sets the
FTZ/DAZ bits of the *calling* thread only. Threads created afterwards inherit them
(POSIX threads copy the creator's floating-point environment), but the intra-op
OpenMP workers that already exist keep their own. :func:`flush_denormals` therefore
sets the bits on the calling thread and then inside one OpenMP parallel region on
every worker of its team, and :func:`denormals_flushed` checks the result with a
parallel multiplication of denormals: the product is 0 on a flushing thread.

The package calls :func:`flush_denormals` whenever a unit starts, a training starts
or an attack runs, not at import: importing a library should not change the
floating-point mode of a researcher's session.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import platform
from pathlib import Path
from typing import Iterator

import torch

_CALLBACK_TYPE = ctypes.CFUNCTYPE(None, ctypes.c_void_p)
_OPENMP_NAMES = ("libgomp", "libomp", "libiomp5")
_openmp: list = []  # [library or None], resolved once


def _openmp_runtime():
    """The OpenMP runtime torch loaded (GNU ``GOMP_parallel`` entry point; LLVM's and
    Intel's runtimes export it too), or None."""
    if not _openmp:
        lib = None
        try:
            with open("/proc/self/maps") as maps:
                paths = {
                    line.split()[-1]
                    for line in maps
                    if any(name in line for name in _OPENMP_NAMES)
                }
            for path in sorted(paths):
                candidate = ctypes.CDLL(path)
                if hasattr(candidate, "GOMP_parallel"):
                    candidate.GOMP_parallel.argtypes = [
                        _CALLBACK_TYPE,
                        ctypes.c_void_p,
                        ctypes.c_uint,
                        ctypes.c_uint,
                    ]
                    candidate.GOMP_parallel.restype = None
                    lib = candidate
                    break
        except OSError:  # no /proc (macOS, Windows): the calling thread only
            lib = None
        _openmp.append(lib)
    return _openmp[0]


def _flush_this_thread(_data) -> None:
    torch.set_flush_denormal(True)


_CALLBACK = _CALLBACK_TYPE(_flush_this_thread)


def flush_denormals() -> None:
    """Treat denormals as zero on the calling thread and on every thread of its
    OpenMP team of ``torch.get_num_threads()`` threads. No effect on GPUs."""
    torch.set_flush_denormal(True)
    threads = torch.get_num_threads()
    runtime = _openmp_runtime() if threads > 1 else None
    if runtime is not None:
        runtime.GOMP_parallel(_CALLBACK, None, threads, 0)


def denormals_flushed() -> bool:
    """True when every intra-op thread flushes: x · 1 for a denormal x, computed in
    parallel over all threads, is 0 everywhere. (x is made from its bit pattern, the
    smallest denormal 2⁻¹⁴⁹: a flushing thread would turn a float literal into 0.)"""
    n = 1 << 16 if torch.get_num_threads() == 1 else 1 << 20
    x = torch.ones(n, dtype=torch.int32).view(torch.float32)
    return not bool((x * 1.0).ne(0).any())


#: (integer type of the same width, exponent mask, mantissa mask) per float type
_BITS = {
    torch.float32: (torch.int32, 0x7F800000, 0x007FFFFF),
    torch.float64: (torch.int64, 0x7FF0000000000000, 0x000FFFFFFFFFFFFF),
}


def count_denormals(tensors) -> int:
    """Number of denormal entries (exponent bits 0, mantissa not) in float32/float64
    tensors, read from their bit patterns: comparisons would see them as 0 on a
    thread that flushes."""
    total = 0
    for t in tensors:
        if t.dtype in _BITS:
            kind, exponent, mantissa = _BITS[t.dtype]
            bits = t.detach().contiguous().view(kind)
            subnormal = ((bits & exponent) == 0) & ((bits & mantissa) != 0)
            total += int(subnormal.sum())
    return total


def cpu_model() -> str:
    """CPU model name from /proc/cpuinfo (else ``platform.processor()``)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def cores() -> int:
    """CPU cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def set_threads(n: int) -> None:
    """``torch.set_num_threads(n)``, then flush denormals on the (new) team."""
    if int(n) != n or n < 1:
        raise ValueError(f"threads must be an integer >= 1, got {n!r}")
    torch.set_num_threads(int(n))
    flush_denormals()


@contextlib.contextmanager
def threads(n: int | None) -> Iterator[int]:
    """Run the block with ``n`` intra-op threads (None: leave them), then restore;
    yields the number in force. Through threadpoolctl (when installed), NumPy's BLAS
    and OpenMP pools get the same limit, so a NumPy reference runs on as many
    threads as torch."""
    if n is None:
        yield torch.get_num_threads()
        return
    if int(n) != n or n < 1:
        raise ValueError(f"threads must be an integer >= 1 or None, got {n!r}")
    before = torch.get_num_threads()
    with contextlib.ExitStack() as stack:
        # entered first, left last: it restores the OpenMP pool that torch shares
        try:
            from threadpoolctl import threadpool_limits
        except ImportError:
            pass
        else:
            stack.enter_context(threadpool_limits(limits=int(n)))
        set_threads(n)
        try:
            yield torch.get_num_threads()
        finally:
            torch.set_num_threads(before)
