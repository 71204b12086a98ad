"""The BLAS thread count of the running NumPy, for the model evaluation.

The model's products are many small GEMMs (inner dimension ``k = 32`` per block); on a loaded 2-core
machine OpenBLAS's worker threads spin and wait on each other, and one thread is up to four times
faster in wall time (benchmarks/README.md, "model"). One thread also fixes the summation order of
the binary32 reference GEMMs. This calls OpenBLAS's own ``*openblas_set_num_threads*`` through ctypes on
the libraries NumPy loaded (as threadpoolctl does); with another BLAS it does nothing.
"""

from __future__ import annotations

import contextlib
import ctypes
from collections.abc import Iterator

__all__ = ["blas_threads"]


def _openblas_libraries() -> list[tuple[ctypes.CDLL, str, str]]:
    libs = []
    try:
        with open("/proc/self/maps") as fh:
            paths = {line.split()[-1] for line in fh if "openblas" in line.split()[-1].lower() and ".so" in line}
    except OSError:
        return libs
    for path in sorted(paths):
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        for prefix in ("scipy_openblas", "openblas"):
            for suffix in ("64_", "_64_", ""):
                setter, getter = f"{prefix}_set_num_threads{suffix}", f"{prefix}_get_num_threads{suffix}"
                if hasattr(lib, setter) and hasattr(lib, getter):
                    libs.append((lib, setter, getter))
                    break
            else:
                continue
            break
    return libs


@contextlib.contextmanager
def blas_threads(n: int | None) -> Iterator[None]:
    """Run the block with ``n`` OpenBLAS threads (``None``: leave as is), restoring the count after."""
    if n is None:
        yield
        return
    libs = _openblas_libraries()
    saved = [(lib, setter, int(getattr(lib, getter)())) for lib, setter, getter in libs]
    try:
        for lib, setter, _ in saved:
            getattr(lib, setter)(ctypes.c_int(n))
        yield
    finally:
        for lib, setter, old in saved:
            getattr(lib, setter)(ctypes.c_int(old))
