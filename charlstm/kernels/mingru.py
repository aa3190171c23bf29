"""The minGRU: step and backward. No recurrent weights: the step reads x alone
(and h_{t−1}, element-wise), gh is never written nor read, and the backward
makes no product with Wh."""

from numba import njit

from ._jit import JIT
from .lstm import _same
from .nonlinear import _as, _copy, sigmoid


# ---------------------------------------------------------------------------
# minGRU (Feng, Tung, Ahmed, Bengio & Hajimirsadeghi 2024, "Were RNNs All We
# Needed?", arXiv:2410.01201, sequential mode). Blocks z, n (the paper's h~).

@njit(**JIT)
def mingru_step(t, gh, hs, cs, acts, aux, x, ex):
    """z = σ(x_z),  n = x_n   (x = x_t Wx + b: both from the input alone)
    h_t = (1 − z) ⊙ h_{t−1} + z ⊙ n = h_{t−1} + z ⊙ (n − h_{t−1})
    acts keeps z and n."""
    B, G = x.shape
    H = G // 2
    for b in range(B):
        a, xb, h_prev, h = acts[t, b], x[b], hs[t, b], hs[t + 1, b]
        for j in range(H):
            a[j] = sigmoid(xb[j])
        for j in range(H):
            a[H + j] = xb[H + j]
        for j in range(H):
            h[j] = h_prev[j] + a[j] * (a[H + j] - h_prev[j])


@njit(**JIT)
def mingru_backward(dxp, dhp, dhs, dcs, dy, hs, cs, acts, aux, Wh_nn, ex):
    """The minGRU's backward pass (_mingru_backward below); dxp may be acts
    (Cell.dxp_in_acts: lstm._same)."""
    if _same(dxp, acts):
        _mingru_backward(acts, dhs, dy, hs, acts)
    else:
        _mingru_backward(dxp, dhs, dy, hs, acts)


@njit(**JIT, inline="always")
def _mingru_backward(dxp, dhs, dy, hs, acts):
    """dh = dy_t + dh_{t+1 → t}
    dz = dh ⊙ (n − h_{t−1}) ⊙ z(1 − z),  dn = dh ⊙ z,  dh_{t−1} = dh ⊙ (1 − z)
    (each unit's z and n read before its gradients are written over them)."""
    T, B, G = dxp.shape
    H = G // 2
    one = _as(1.0, dxp)
    dh_next = dhs[T].copy()
    for t in range(T - 1, -1, -1):
        for b in range(B):
            for j in range(H):
                dh = dy[t, b, j] + dh_next[b, j]
                dhs[t + 1, b, j] = dh
                z, n = acts[t, b, j], acts[t, b, H + j]
                dxp[t, b, j] = dh * (n - hs[t, b, j]) * z * (one - z)
                dxp[t, b, H + j] = dh * z
                dh_next[b, j] = dh * (one - z)
    _copy(dhs[0], dh_next)
