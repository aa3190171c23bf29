"""charlstm: a character-level text generator with a hand-written Numba LSTM."""
from .errors import CharlstmError

__version__ = "0.1.0"
__all__ = ["CharlstmError", "__version__"]
