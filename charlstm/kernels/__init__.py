"""Numba kernels: every cell's forward pass and backward pass, side by side.

One module a topic, to be read in this order:

    lstm.py, peephole.py, cifg.py, gru.py, rnn.py   each cell's step and backward
    recurrence.py   the time loop that runs a cell's step (forward, forward_onehot)
    loss.py         the one-hot input gather, the softmax cross-entropy
    optim.py        Adam, Adagrad, dropout masks
    nonlinear.py    tanh, sigmoid and exp, fast in float32
    gemm.py         the packed matrix products and their LLVM-IR micro-kernel
    sampling.py     batch-1 generation and the thread that shares its products
    _jit.py         Numba's options, for every kernel

charlstm/reference.py has the same cells in plain NumPy, and is the place to
start. Numba's on-disk cache only notices edits to the file a function is
defined in (numba#1833), so this package keys the whole cache on a hash of
every module here and Numba's version (cache_key): any edit compiles afresh.
`make clean-cache` clears it.

Notation: f forget, i input, c~ candidate, o output gate (Hochreiter &
Schmidhuber 1997; Gers, Schmidhuber & Cummins 2000);
c is the cell state (long-term memory), h the hidden state (short-term).
Shapes: T time steps, B parallel streams, H hidden units, G = gates * H.

Every cell has a step kernel for the forward pass (run by `forward`, which
makes the recurrent product) and a backward kernel, each with the same
arguments for every cell, so training, sampling and the gradient checks never
need to know which cell they run:

    forward (kind, hs, cs, acts, aux, xp, Wh_nt, ex)     kind: the cell's number
    <cell>_step(t, gh, hs, cs, acts, aux, x, ex)          gh = h_{t-1} Whᵀ  (B, G)
    <cell>_backward(dxp, dhp, dhs, dcs, dy, hs, cs, acts, aux, Wh_nn, ex)

    hs, cs  (T+1, B, H)  hs[0], cs[0] hold the initial state; step t writes hs[t+1]
    acts    (T, B, G)    gate activations saved for the backward pass
    aux     (T, B, H)    any other saved value a cell needs (GRU: h Wh_nᵀ + b_hn)
    xp      (T, B, G)    input pre-activations  x_t Wx + b  (one GEMM for all T
                         steps, done by the caller); the first layer's input is
                         one-hot, and forward_onehot gathers its rows step by step
    x       (B, G)       step t's input pre-activations (xp[t], or that gather)
    Wh_nt, Wh_nn         the recurrent weights Wh (G, H), PyTorch's weight_hh,
                         packed for the two products each step makes with it:
                         h_{t-1} Whᵀ = matmul_packed(h_{t-1}, Wh_nt)   (pack_nt)
                         dxp_t Wh    = matmul_packed(dxp_t, Wh_nn)     (pack_nn)
                         The caller packs them once per training step
                         (model.Model.packed_Wh)
    ex      (k, H)       a cell's extra per-unit parameters (peepholes, GRU's b_hn)

    dy      (T, B, H)    dL/dh_t arriving from above (output layer or next layer)
    dhs,dcs (T+1, B, H)  on entry [T] holds the gradient from beyond the window
                         (zero in truncated BPTT); on exit [t] is the total dL/dh_t,
                         dL/dc_t, so [0] is dL/dh0, dL/dc0
    dxp     (T, B, G)    dL/d(input pre-activations): gives dWx, db and dx; may be
                         acts itself, overwritten (LSTM, peephole, CIFG; see _same)
    dhp     (T, B, G)    dL/d(h_{t-1} Whᵀ): gives dWh = sum_t dhp_tᵀ h_{t-1}.
                         Equal to dxp for every cell but the GRU, and then the
                         caller passes the same array for both.

Kernels are serial; in training the cores are used by splitting the B streams
among workers (replicas.Replicas), each calling these kernels on its own rows, and
in sampling (batch 1) by a helper thread that shares every product
(post_product, finish_product, product_helper).
"""
from __future__ import annotations

import glob
import hashlib
import os
from importlib import metadata

HERE = os.path.dirname(os.path.abspath(__file__))


def cache_key(folder: str = HERE) -> str:
    """A hash of every kernel module's source and of Numba's and llvmlite's
    versions: it changes with any edit to any module, or an upgrade."""
    h = hashlib.sha256()
    for path in sorted(glob.glob(os.path.join(folder, "*.py"))):
        h.update(os.path.basename(path).encode() + b"\0")
        with open(path, "rb") as fh:
            h.update(fh.read() + b"\0")
    for pkg in ("numba", "llvmlite"):
        h.update(f"{pkg}={metadata.version(pkg)}".encode())
    return h.hexdigest()[:20]


def cache_root() -> str:
    """Where compiled kernels are kept: $CHARLSTM_CACHE_DIR, else
    $NUMBA_CACHE_DIR, else ~/.cache/charlstm (or $XDG_CACHE_HOME/charlstm)."""
    base = os.environ.get("CHARLSTM_CACHE_DIR") or os.environ.get("NUMBA_CACHE_DIR")
    if not base:
        base = os.path.join(os.environ.get("XDG_CACHE_HOME") or
                            os.path.join(os.path.expanduser("~"), ".cache"), "charlstm")
    return base


CACHE_DIR = os.path.join(cache_root(), "kernels-" + cache_key())


# Each cell's own kernels, as Numba names their cache index files (module.function).
CELL_KERNELS = {"lstm": ("lstm.lstm_step", "lstm.lstm_backward"),
                "lstm-peephole": ("peephole.peephole_step", "peephole.peephole_backward"),
                "cifg": ("cifg.cifg_step", "cifg.cifg_backward"),
                "gru": ("gru.gru_step", "gru.gru_backward"),
                "rnn": ("rnn.rnn_step", "rnn.rnn_backward"),
                "irnn": ("rnn.irnn_step", "rnn.irnn_backward")}


def is_cached(folder: str = CACHE_DIR, cells=()) -> bool:
    """Whether this version of the kernels has been compiled and cached for
    this copy of charlstm (and for each of `cells`): the index files Numba
    writes are in its folder for this package's path (another clone's do not
    count; they are only counted, not read)."""
    import hashlib
    sub = os.path.join(folder, "_".join([os.path.basename(HERE),
                                         hashlib.sha1(HERE.encode()).hexdigest()]))
    names = {os.path.basename(p).split("-")[0]
             for p in glob.glob(os.path.join(sub, "*.nbi"))}
    return len(names) >= 10 and all(k in names for c in cells for k in CELL_KERNELS[c])


def _use_cache_dir() -> None:
    """Point Numba's cache at CACHE_DIR before any kernel is defined (Numba
    picks a function's cache folder when it is decorated)."""
    from numba.core import config
    config.CACHE_DIR = CACHE_DIR


_use_cache_dir()

from ._jit import FASTMATH, JIT  # noqa: E402,F401
from .cifg import cifg_backward, cifg_step  # noqa: E402,F401
from .gemm import (MR, NV, PREFETCH, VBYTES, matmul_packed, matmul_panels,  # noqa: E402,F401
                   pack_int8, pack_nn, pack_nt, packed_shape, panel_width,
                   quantise_input, quantised_input_shape)
from .gru import gru_backward, gru_step  # noqa: E402,F401
from .loss import embed, embed_backward, softmax_xent  # noqa: E402,F401
from .lstm import lstm_backward, lstm_step  # noqa: E402,F401
from .nonlinear import exp_, sigmoid, tanh_  # noqa: E402,F401
from .optim import adagrad_update, adam_update, dropout_mask  # noqa: E402,F401
from .peephole import peephole_backward, peephole_step  # noqa: E402,F401
from .recurrence import (CIFG, FORWARD, FORWARD_ONEHOT, GRU, IRNN, LSTM,  # noqa: E402,F401
                         PEEPHOLE, RNN, STEPS, forward, forward_onehot)
from .rnn import irnn_backward, irnn_step, rnn_backward, rnn_step  # noqa: E402,F401
from .sampling import (CHUNK, GENERATE, MODEL_STEP, finish_product, generate,  # noqa: E402,F401
                       post_product, product_helper, shared_product)
