"""The coupled input-forget gate LSTM: step and backward."""

from numba import njit

from ._jit import JIT
from .gemm import matmul_packed
from .lstm import _gate, _output_backward, _same
from .nonlinear import _as, _copy, tanh_


# ---------------------------------------------------------------------------
# Coupled input-forget gate (CIFG, Greff et al. 2017). Gate order f, c~, o.

@njit(**JIT)
def cifg_step(t, gh, hs, cs, acts, aux, x, ex):
    """f = σ(.), c~ = tanh(.), o = σ(.)
    c_t = f ⊙ c_{t−1} + (1 − f) ⊙ c~
    h_t = o ⊙ tanh(c_t)"""
    B, G = x.shape
    H = G // 3
    one = _as(1.0, x)
    for b in range(B):
        a, xb, r = acts[t, b], x[b], gh[b]
        _gate(a[:H], xb[:H], r[:H], False)                                 # f
        _gate(a[H:2 * H], xb[H:2 * H], r[H:2 * H], True)                   # c~
        _gate(a[2 * H:], xb[2 * H:], r[2 * H:], False)                     # o
        f, g, o = a[:H], a[H:2 * H], a[2 * H:]
        c_prev, c, h = cs[t, b], cs[t + 1, b], hs[t + 1, b]
        for j in range(H):
            c[j] = f[j] * c_prev[j] + (one - f[j]) * g[j]
        for j in range(H):
            h[j] = o[j] * tanh_(c[j])


@njit(**JIT)
def cifg_backward(dxp, dhp, dhs, dcs, dy, hs, cs, acts, aux, Wh_nn, ex):
    """The CIFG cell's backward pass (_cifg_backward below)."""
    if _same(dxp, acts):            # see _same
        _cifg_backward(acts, acts, dhs, dcs, dy, hs, cs, acts, aux, Wh_nn, ex)
    else:
        _cifg_backward(dxp, dhp, dhs, dcs, dy, hs, cs, acts, aux, Wh_nn, ex)


@njit(**JIT, inline="always")
def _cifg_backward(dxp, dhp, dhs, dcs, dy, hs, cs, acts, aux, Wh_nn, ex):
    """dc = dh ⊙ o ⊙ (1 − tanh²c_t) + f_{t+1} ⊙ dc_{t+1}
    df = dc ⊙ (c_{t−1} − c~),  dc~ = dc ⊙ (1 − f),  do = dh ⊙ tanh c_t"""
    T, B, G = dxp.shape
    H = G // 3
    F, C, O = 0, H, 2 * H
    one = _as(1.0, dxp)
    dh_next = dhs[T].copy()
    dc_next = dcs[T].copy()
    for t in range(T - 1, -1, -1):
        for b in range(B):
            _output_backward(t, b, H, O, dxp, dhs, dcs, dy, dh_next, dc_next, cs, acts)
            for j in range(H):
                dc, f, g = dcs[t + 1, b, j], acts[t, b, F + j], acts[t, b, C + j]
                dxp[t, b, F + j] = dc * (cs[t, b, j] - g) * f * (one - f)
                dxp[t, b, C + j] = dc * (one - f) * (one - g * g)
                dc_next[b, j] = dc * f
        matmul_packed(dxp[t], Wh_nn, dh_next)
    _copy(dhs[0], dh_next)
    _copy(dcs[0], dc_next)
