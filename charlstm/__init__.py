"""charlstm: a character-level text generator with a hand-written Numba LSTM."""
import os
import sys


def _set_blas_threads(n: int) -> int:
    """Set the thread count of every OpenBLAS already loaded in this process
    (NumPy's, under any of its builds' names); returns how many were set.
    Linux only (it reads /proc/self/maps); elsewhere it sets none."""
    import ctypes
    try:
        with open("/proc/self/maps") as fh:
            paths = {line.split()[-1] for line in fh if "openblas" in line.lower()}
    except OSError:
        return 0
    done = 0
    for path in sorted(paths):
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        for name in ("scipy_openblas_set_num_threads64_", "scipy_openblas_set_num_threads",
                     "openblas_set_num_threads64_", "openblas_set_num_threads"):
            if hasattr(lib, name):
                getattr(lib, name)(n)
                done += 1
                break
    return done


# charlstm uses the cores itself (one training worker per core, see
# model.Replicas); a multi-threaded BLAS underneath would oversubscribe them
# (1×512 training steps 45% slower). The variable works if it is set before
# NumPy loads OpenBLAS; if NumPy came first (a script that imports it before
# charlstm), OpenBLAS is told directly. Set the variable yourself to override.
if "OPENBLAS_NUM_THREADS" not in os.environ:
    os.environ["OPENBLAS_NUM_THREADS"] = "1"
    if "numpy" in sys.modules:
        _set_blas_threads(1)

from .errors import CharlstmError  # noqa: E402

__version__ = "0.1.0"
__all__ = ["CharlstmError", "__version__"]
