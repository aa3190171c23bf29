"""The GRU: step and backward, and the gradient of b_hn."""

import numpy as np
from numba import njit

from ._jit import JIT
from .gemm import matmul_packed
from .lstm import _gate
from .nonlinear import _as, _copy, tanh_


# ---------------------------------------------------------------------------
# GRU (Cho et al. 2014), as PyTorch's nn.GRU. Gate order r, z, n; ex[0] = b_hn.

@njit(**JIT)
def gru_step(t, gh, hs, cs, acts, aux, x, ex):
    """r = σ(.), z = σ(.),  n = tanh(xp_n + r ⊙ (h_{t−1} Wh_nᵀ + b_hn))
    h_t = (1 − z) ⊙ n + z ⊙ h_{t−1}"""
    B, G = x.shape
    H = G // 3
    b_hn = ex[0]
    one = _as(1.0, x)
    for b in range(B):
        act, xb, gr = acts[t, b], x[b], gh[b]
        _gate(act[:2 * H], xb[:2 * H], gr[:2 * H], False)                  # r, z
        r, z, n = act[:H], act[H:2 * H], act[2 * H:]
        a, xn, rn, h_prev, h = aux[t, b], xb[2 * H:], gr[2 * H:], hs[t, b], hs[t + 1, b]
        for j in range(H):
            a[j] = rn[j] + b_hn[j]
            n[j] = tanh_(xn[j] + r[j] * a[j])
        for j in range(H):
            h[j] = (one - z[j]) * n[j] + z[j] * h_prev[j]


@njit(**JIT)
def gru_backward(dxp, dhp, dhs, dcs, dy, hs, cs, acts, aux, Wh_nn, ex):
    """dn = dh ⊙ (1 − z),  dz = dh ⊙ (h_{t−1} − n),  da_n = dn ⊙ (1 − n²)
    dr = da_n ⊙ (h_{t−1} Wh_nᵀ + b_hn);  the recurrent part of n sees r ⊙ da_n
    dh_{t−1} = dhp_t Wh + dh ⊙ z
    (Indexing as lstm_backward: gate g of unit j is column g·H + j.)"""
    T, B, G = dxp.shape
    H = G // 3
    R, Z, N = 0, H, 2 * H
    one = _as(1.0, dxp)
    dh_next = dhs[T].copy()
    direct = np.empty((B, H), dxp.dtype)
    for t in range(T - 1, -1, -1):
        for b in range(B):
            for j in range(H):
                dh = dy[t, b, j] + dh_next[b, j]
                dhs[t + 1, b, j] = dh
                direct[b, j] = dh * acts[t, b, Z + j]
            for j in range(H):
                dh, r = dhs[t + 1, b, j], acts[t, b, R + j]
                z, n = acts[t, b, Z + j], acts[t, b, N + j]
                dn = dh * (one - z) * (one - n * n)
                dr = dn * aux[t, b, j] * r * (one - r)
                dxp[t, b, N + j] = dn
                dhp[t, b, N + j] = dn * r
                dxp[t, b, R + j] = dr
                dhp[t, b, R + j] = dr
            for j in range(H):
                dh, z, n = dhs[t + 1, b, j], acts[t, b, Z + j], acts[t, b, N + j]
                dz = dh * (hs[t, b, j] - n) * z * (one - z)
                dxp[t, b, Z + j] = dz
                dhp[t, b, Z + j] = dz
        matmul_packed(dhp[t], Wh_nn, dh_next)
        dh_next += direct
    _copy(dhs[0], dh_next)


def gru_extra_grad(dex, dxp, dhp, hs, cs):
    """The gradient of b_hn, summed over time and streams (NumPy, after
    gru_backward): b_hn sits inside r ⊙ (h Wh_nᵀ + b_hn), so its gradient is
    that of h Wh_nᵀ, dhp's n block."""
    H = dex.shape[1]
    dex[0] += dhp[:, :, 2 * H:].sum(axis=(0, 1))
