"""The time loop of every cell: forward and forward_onehot run a cell's step
kernel T times, each after the recurrent product h_(t−1) Whᵀ; cell_step
dispatches on the cell's number."""

import numpy as np
from numba import njit

from ._jit import JIT
from .cifg import cifg_step
from .gemm import matmul_packed
from .gru import gru_step
from .loss import embed
from .lstm import lstm_step
from .peephole import peephole_step
from .rnn import irnn_step, rnn_step


# ---------------------------------------------------------------------------
# The forward pass of every cell: per time step the recurrent product, then the
# cell's own equations, its _step kernel (below, next to its backward kernel).

LSTM, PEEPHOLE, CIFG, GRU, RNN, IRNN = 0, 1, 2, 3, 4, 5     # cells.Cell.kind


@njit(**JIT)
def forward(kind, hs, cs, acts, aux, xp, Wh_nt, ex):
    """For t = 0 … T−1:  gh = h_{t−1} Whᵀ,  then the cell's step (cell_step)
    with x = xp[t]."""
    gh = np.empty(xp.shape[1:], xp.dtype)
    for t in range(xp.shape[0]):
        matmul_packed(hs[t], Wh_nt, gh)
        cell_step(kind, t, gh, hs, cs, acts, aux, xp[t], ex)


@njit(**JIT)
def forward_onehot(kind, hs, cs, acts, aux, tokens, Wx, b, Wh_nt, ex):
    """forward for the first layer, whose input is one-hot (tokens (T, B)):
    x = Wx[token] + b is gathered one step at a time into a (B, G) buffer that
    stays in cache, rather than for all T steps into an xp the steps would
    read back from memory (3 MB at H=128 for 16 streams)."""
    T, B = tokens.shape
    x = np.empty((B, Wx.shape[1]), Wx.dtype)
    gh = np.empty_like(x)
    for t in range(T):
        embed(x, tokens[t], Wx, b)
        matmul_packed(hs[t], Wh_nt, gh)
        cell_step(kind, t, gh, hs, cs, acts, aux, x, ex)


@njit(**JIT)
def cell_step(kind, t, gh, hs, cs, acts, aux, x, ex):
    """Time step t of the cell numbered `kind`, given gh = h_{t−1} Whᵀ."""
    if kind == LSTM:
        lstm_step(t, gh, hs, cs, acts, aux, x, ex)
    elif kind == PEEPHOLE:
        peephole_step(t, gh, hs, cs, acts, aux, x, ex)
    elif kind == CIFG:
        cifg_step(t, gh, hs, cs, acts, aux, x, ex)
    elif kind == GRU:
        gru_step(t, gh, hs, cs, acts, aux, x, ex)
    elif kind == RNN:
        rnn_step(t, gh, hs, cs, acts, aux, x, ex)
    else:
        irnn_step(t, gh, hs, cs, acts, aux, x, ex)
