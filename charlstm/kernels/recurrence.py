"""The time loop of every cell: forward and forward_onehot run a cell's step
kernel T times, each after the recurrent product h_(t−1) Whᵀ. Each loop is
written once and compiled once per cell (per_cell), so that a command compiles
only the cell it runs."""

import numpy as np

from ._jit import per_cell
from .binding import RECURRENT, STEPS
from .gemm import matmul_packed
from .loss import embed


# ---------------------------------------------------------------------------
# The forward pass of every cell: per time step the recurrent product, then the
# cell's own equations, its _step kernel (next to its backward kernel). STEPS
# holds every cell's, by its number (binding.py).


def step(t, gh, hs, cs, acts, aux, x, ex):
    """Time step t of a cell, given gh = h_{t−1} Whᵀ: in the loops below (and in
    sampling's), per_cell puts one cell's step kernel in this name's place, and
    in `recurrent` whether the cell has a Wh (a constant: Numba drops the
    product of a cell without one, whose step does not read gh)."""
    raise NotImplementedError("the loops are compiled per cell: see per_cell")


def _forward(hs, cs, acts, aux, xp, Wh_nt, ex):
    """For t = 0 … T−1:  gh = h_{t−1} Whᵀ,  then the cell's step with x = xp[t]."""
    gh = np.empty(xp.shape[1:], xp.dtype)
    for t in range(xp.shape[0]):
        if recurrent:
            matmul_packed(hs[t], Wh_nt, gh)
        step(t, gh, hs, cs, acts, aux, xp[t], ex)


def _forward_onehot(hs, cs, acts, aux, tokens, Wx, b, Wh_nt, ex):
    """forward for the first layer, whose input is one-hot (tokens (T, B)):
    x = Wx[token] + b is gathered one step at a time into a (B, G) buffer that
    stays in cache, rather than for all T steps into an xp the steps would
    read back from memory (3 MB at H=128 for 16 streams)."""
    T, B = tokens.shape
    x = np.empty((B, Wx.shape[1]), Wx.dtype)
    gh = np.empty_like(x)
    for t in range(T):
        embed(x, tokens[t], Wx, b)
        if recurrent:
            matmul_packed(hs[t], Wh_nt, gh)
        step(t, gh, hs, cs, acts, aux, x, ex)


recurrent = True     # bound per cell by per_cell (RECURRENT), as `step` is

FORWARD = per_cell(_forward, STEPS, recurrent=RECURRENT)       # forward_lstm, forward_peephole, …
FORWARD_ONEHOT = per_cell(_forward_onehot, STEPS, recurrent=RECURRENT)  # forward_onehot_lstm, …


def forward(kind, hs, cs, acts, aux, xp, Wh_nt, ex):
    """The time loop of the cell numbered `kind` over input pre-activations xp
    (T, B, G): for t = 0 … T−1, gh = h_{t−1} Whᵀ, then the cell's step."""
    FORWARD[kind](hs, cs, acts, aux, xp, Wh_nt, ex)


def forward_onehot(kind, hs, cs, acts, aux, tokens, Wx, b, Wh_nt, ex):
    """forward for the first layer, whose input is one-hot: tokens (T, B),
    x_t = Wx[tokens[t]] + b gathered step by step (_forward_onehot)."""
    FORWARD_ONEHOT[kind](hs, cs, acts, aux, tokens, Wx, b, Wh_nt, ex)
