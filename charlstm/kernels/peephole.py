"""The LSTM with peepholes: step and backward, and the peepholes' gradient."""

import numpy as np
from numba import njit

from ._jit import JIT
from .gemm import matmul_packed
from .lstm import _gate, _output_backward, _same
from .nonlinear import _as, _copy, sigmoid, tanh_


# ---------------------------------------------------------------------------
# LSTM with peepholes (Gers & Schmidhuber 2000): f and i see c_{t-1}, o sees
# c_t, through diagonal weights ex = [p_i, p_f, p_o]. Gate order i, f, c~, o.

@njit(**JIT)
def _peep_gate(a, x, g, p, c):
    """a = σ(x + g + p ⊙ c), over one row: a gate that sees the cell state."""
    for j in range(a.shape[0]):
        a[j] = sigmoid(x[j] + g[j] + p[j] * c[j])


@njit(**JIT)
def peephole_step(t, gh, hs, cs, acts, aux, x, ex):
    """i = σ(. + p_i ⊙ c_{t−1}),  f = σ(. + p_f ⊙ c_{t−1}),  c~ = tanh(.)
    c_t = f ⊙ c_{t−1} + i ⊙ c~
    o = σ(. + p_o ⊙ c_t),  h_t = o ⊙ tanh(c_t)
    In passes over a few arrays each, as lstm_step."""
    B, G = x.shape
    H = G // 4
    for b in range(B):
        a, xb, r = acts[t, b], x[b], gh[b]
        i, f, g, o = a[:H], a[H:2 * H], a[2 * H:3 * H], a[3 * H:]
        c_prev, c, h = cs[t, b], cs[t + 1, b], hs[t + 1, b]
        _peep_gate(i, xb[:H], r[:H], ex[0], c_prev)
        _peep_gate(f, xb[H:2 * H], r[H:2 * H], ex[1], c_prev)
        _gate(g, xb[2 * H:3 * H], r[2 * H:3 * H], True)
        for j in range(H):
            c[j] = f[j] * c_prev[j] + i[j] * g[j]
        _peep_gate(o, xb[3 * H:], r[3 * H:], ex[2], c)
        for j in range(H):
            h[j] = o[j] * tanh_(c[j])


@njit(**JIT)
def peephole_backward(dxp, dhp, dhs, dcs, dy, hs, cs, acts, aux, Wh_nn, ex):
    """The peephole LSTM's backward pass (_peephole_backward below)."""
    if _same(dxp, acts):            # see _same
        _peephole_backward(acts, acts, dhs, dcs, dy, hs, cs, acts, aux, Wh_nn, ex)
    else:
        _peephole_backward(dxp, dhp, dhs, dcs, dy, hs, cs, acts, aux, Wh_nn, ex)


@njit(**JIT, inline="always")
def _peephole_backward(dxp, dhp, dhs, dcs, dy, hs, cs, acts, aux, Wh_nn, ex):
    """As the LSTM, plus the peephole paths:
    dc_t += da_o ⊙ p_o;  dc_{t−1} = f ⊙ dc_t + da_i ⊙ p_i + da_f ⊙ p_f.
    (dp is summed by the caller from dxp and cs.)"""
    T, B, G = dxp.shape
    H = G // 4
    I, F, C, O = 0, H, 2 * H, 3 * H
    p_i, p_f, p_o = ex[0], ex[1], ex[2]
    one = _as(1.0, dxp)
    dh_next = dhs[T].copy()
    dc_next = dcs[T].copy()
    for t in range(T - 1, -1, -1):
        for b in range(B):
            _output_backward(t, b, H, O, dxp, dhs, dcs, dy, dh_next, dc_next, cs, acts)
            for j in range(H):
                dc = dcs[t + 1, b, j] + dxp[t, b, O + j] * p_o[j]
                dcs[t + 1, b, j] = dc
                i, g = acts[t, b, I + j], acts[t, b, C + j]
                dxp[t, b, I + j] = dc * g * i * (one - i)
                dxp[t, b, C + j] = dc * i * (one - g * g)
            for j in range(H):
                dc, f = dcs[t + 1, b, j], acts[t, b, F + j]
                df = dc * cs[t, b, j] * f * (one - f)
                dxp[t, b, F + j] = df
                dc_next[b, j] = dc * f + dxp[t, b, I + j] * p_i[j] + df * p_f[j]
        matmul_packed(dxp[t], Wh_nn, dh_next)
    _copy(dhs[0], dh_next)
    _copy(dcs[0], dc_next)


def peephole_extra_grad(dex, dxp, dhp, hs, cs):
    """The peepholes' gradient, summed over time and streams (NumPy, after
    peephole_backward): p_i and p_f see c_{t-1}, p_o sees c_t, so
    dp_i = Σ di ⊙ c_{t-1},  dp_f = Σ df ⊙ c_{t-1},  dp_o = Σ do ⊙ c_t
    (di, df, do: dxp's blocks, each times its slope already)."""
    H = dex.shape[1]
    dex[0] += np.einsum("tbh,tbh->h", dxp[:, :, 0:H], cs[:-1])
    dex[1] += np.einsum("tbh,tbh->h", dxp[:, :, H:2 * H], cs[:-1])
    dex[2] += np.einsum("tbh,tbh->h", dxp[:, :, 3 * H:4 * H], cs[1:])
