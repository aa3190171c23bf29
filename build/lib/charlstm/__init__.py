"""charlstm: a character-level text generator with a hand-written Numba LSTM."""
from __future__ import annotations

import os
import sys


def _blas_threads(set_to: int | None = None) -> list[int]:
    """The thread count of every OpenBLAS loaded in this process (NumPy's,
    under any of its builds' names), after setting it to `set_to` if given.
    Linux only (it reads /proc/self/maps); elsewhere the list is empty."""
    import ctypes
    try:
        with open("/proc/self/maps") as fh:
            paths = sorted({line.split()[-1] for line in fh if "openblas" in line.lower()})
    except OSError:
        return []
    counts = []
    for path in paths:
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        for name in ("scipy_openblas_{}_num_threads64_", "scipy_openblas_{}_num_threads",
                     "openblas_{}_num_threads64_", "openblas_{}_num_threads"):
            if hasattr(lib, name.format("get")):
                if set_to is not None:
                    getattr(lib, name.format("set"))(set_to)
                counts.append(getattr(lib, name.format("get"))())
                break
    return counts


# charlstm uses the cores itself (one training worker per core, see
# replicas.Replicas); a multi-threaded BLAS underneath would oversubscribe them
# (1×512 training steps 45% slower). The variable works if it is set before
# NumPy loads OpenBLAS; if NumPy came first (a script that imports it before
# charlstm), OpenBLAS is told directly. Set the variable yourself to override.
if "OPENBLAS_NUM_THREADS" not in os.environ:
    os.environ["OPENBLAS_NUM_THREADS"] = "1"
    if "numpy" in sys.modules:
        _blas_threads(set_to=1)

from .errors import CharlstmError  # noqa: E402

__version__ = "0.1.0"
__all__ = ["CharlstmError", "__version__"]
