"""charlstm: a character-level text generator with a hand-written Numba LSTM."""
import os

# charlstm uses the cores itself (one training worker per core, see
# model.Replicas); a multi-threaded BLAS underneath would oversubscribe them.
# This must be set before NumPy loads OpenBLAS. Set it yourself to override.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

from .errors import CharlstmError  # noqa: E402

__version__ = "0.1.0"
__all__ = ["CharlstmError", "__version__"]
