"""The ReLU RNN (IRNN): step and backward."""

from numba import njit

from ._jit import JIT
from .gemm import matmul_packed
from .nonlinear import _as, _copy


# ---------------------------------------------------------------------------
# The ReLU RNN (IRNN, Le, Jaitly & Hinton 2015): the tanh RNN of rnn.py with
# relu for tanh, its Wh starting as the identity (model.Model.init).

@njit(**JIT)
def irnn_step(t, gh, hs, cs, acts, aux, x, ex):
    """h_t = max(0, x_t Wx + h_{t−1} Whᵀ + b),  Wh initialised to the identity"""
    B, H = x.shape
    zero = _as(0.0, x)
    for b in range(B):
        for j in range(H):
            a = x[b, j] + gh[b, j]
            hs[t + 1, b, j] = a if a > zero else zero


@njit(**JIT)
def irnn_backward(dxp, dhp, dhs, dcs, dy, hs, cs, acts, aux, Wh_nn, ex):
    """da = (dy_t + dh_{t+1 → t}) ⊙ [h_t > 0];  dh_{t−1} = da Wh"""
    T, B, H = dxp.shape
    zero = _as(0.0, dxp)
    dh_next = dhs[T].copy()
    for t in range(T - 1, -1, -1):
        for b in range(B):
            for j in range(H):
                dh = dy[t, b, j] + dh_next[b, j]
                dhs[t + 1, b, j] = dh
                dxp[t, b, j] = dh if hs[t + 1, b, j] > zero else zero
        matmul_packed(dxp[t], Wh_nn, dh_next)
    _copy(dhs[0], dh_next)
