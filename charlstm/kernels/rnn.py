"""The vanilla tanh RNN: step and backward."""

from numba import njit

from ._jit import JIT
from .gemm import matmul_packed
from .nonlinear import _as, _copy, tanh_


# ---------------------------------------------------------------------------
# Vanilla tanh RNN (the ReLU RNN is in irnn.py).

@njit(**JIT)
def rnn_step(t, gh, hs, cs, acts, aux, x, ex):
    """h_t = tanh(x_t Wx + h_{t−1} Whᵀ + b)"""
    B, H = x.shape
    for b in range(B):
        for j in range(H):
            hs[t + 1, b, j] = tanh_(x[b, j] + gh[b, j])


@njit(**JIT)
def rnn_backward(dxp, dhp, dhs, dcs, dy, hs, cs, acts, aux, Wh_nn, ex):
    """da = (dy_t + dh_{t+1 → t}) ⊙ (1 − h_t²);  dh_{t−1} = da Wh"""
    T, B, H = dxp.shape
    one = _as(1.0, dxp)
    dh_next = dhs[T].copy()
    for t in range(T - 1, -1, -1):
        for b in range(B):
            for j in range(H):
                dh = dy[t, b, j] + dh_next[b, j]
                dhs[t + 1, b, j] = dh
                h = hs[t + 1, b, j]
                dxp[t, b, j] = dh * (one - h * h)
        matmul_packed(dxp[t], Wh_nn, dh_next)
    _copy(dhs[0], dh_next)
