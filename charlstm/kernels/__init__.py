"""Numba kernels: every cell's forward pass and backward pass, side by side.

One module a topic, to be read in this order:

    lstm.py, peephole.py, cifg.py, gru.py, rnn.py, irnn.py, mingru.py, minlstm.py,
    slstm.py
                    each cell's step and backward (and its extras' gradient)
    binding.py      each cell's row of charlstm/cells.py bound to its kernels
    recurrence.py   the time loop that runs a cell's step (forward, forward_onehot)
    loss.py         the one-hot input gather, the softmax cross-entropy
    optim.py        Adam, Adagrad, dropout masks
    nonlinear.py    tanh, sigmoid and exp, fast in float32
    gemm.py         the packed matrix products and their LLVM-IR micro-kernel
    sampling.py     batch-1 generation and the thread that shares its products
    units.py        what each command calls, with its argument types (warmup.py
                    compiles them; is_cached asks the cache for them)
    _jit.py         Numba's options, for every kernel; per_cell
    _cache.py       where compiled kernels are kept

charlstm/reference.py has the same cells in plain NumPy, and is the place to
start. Compiled kernels are cached in one folder per version of this package
(a hash of every module here and of Numba's version, cache_key), shared by
every install of that version, and any edit compiles afresh (_cache.py).
`make clean-cache` clears it; charlstm/warmup.py compiles what a command needs.

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
                         (cs: (T+1, B, c_width·H); the sLSTM's holds c, n, m)
    acts    (T, B, G)    gate activations saved for the backward pass
    aux     (T, B, H)    any other saved value a cell needs (GRU: h Wh_nᵀ + b_hn;
                         sLSTM: f')
    xp      (T, B, G)    input pre-activations  x_t Wx + b  (one GEMM for all T
                         steps, done by the caller); the first layer's input is
                         one-hot, and forward_onehot gathers its rows step by step
    x       (B, G)       step t's input pre-activations (xp[t], or that gather)
    Wh_nt, Wh_nn         the recurrent weights Wh (G, H), PyTorch's weight_hh
                         (empty, never read, for a cell without: Cell.recurrent),
                         packed for the two products each step makes with it:
                         h_{t-1} Whᵀ = matmul_packed(h_{t-1}, Wh_nt)   (pack_nt)
                         dxp_t Wh    = matmul_packed(dxp_t, Wh_nn)     (pack_nn)
                         The caller packs them once per training step
                         (model.Model.packed_Wh)
    ex      (k, H)       a cell's extra per-unit parameters (peepholes, GRU's b_hn)

    dy      (T, B, H)    dL/dh_t arriving from above (output layer or next layer)
    dhs,dcs (T+1, B, H)  on entry [T] holds the gradient from beyond the window
                         (zero in truncated BPTT); on exit [t] is the total dL/dh_t,
                         dL/dc_t, so [0] is dL/dh0, dL/dc0 (dcs as wide as cs)
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

from . import _cache
from ._cache import CACHE_DIR, HERE, KEY, cache_key, cache_root, compiled  # noqa: F401

_cache.install()        # before any kernel is defined: Numba picks a locator then


from ._jit import FASTMATH, JIT  # noqa: E402,F401
from .binding import CELL_KERNELS, KIND, STEPS  # noqa: E402,F401
from .gemm import (MR, NV, PREFETCH, VBYTES, matmul_packed, matmul_panels,  # noqa: E402,F401
                   pack_int8, pack_nn, pack_nt, packed_shape, panel_width,
                   quantise_input, quantised_input_shape)
from .loss import embed, embed_backward, softmax_xent  # noqa: E402,F401
from .nonlinear import exp_, sigmoid, tanh_  # noqa: E402,F401
from .optim import adagrad_update, adam_update, dropout_mask  # noqa: E402,F401
from .recurrence import FORWARD, FORWARD_ONEHOT, forward, forward_onehot  # noqa: E402,F401
from .sampling import (CHUNK, GENERATE, MODEL_STEP, finish_product, generate,  # noqa: E402,F401
                       post_product, product_helper, shared_product)
from . import units  # noqa: E402


def is_cached(folder: str = CACHE_DIR, cells=()) -> bool:
    """Whether `folder` (default: this version's cache) holds every kernel that
    `charlstm train` needs for each of `cells`, as compiled for this version of
    the kernels and this machine, and those every cell's training shares;
    another version's or machine's do not count (units.is_cached)."""
    return units.is_cached(cells, folder=folder)

LSTM, GRU = KIND["lstm"], KIND["gru"]          # two cells' numbers, by name (every cell's: KIND)
