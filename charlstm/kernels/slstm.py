"""The sLSTM: step and backward. Its state is (h, c, n, m): c holds c, n and m
side by side, 3H columns a unit row (Cell.c_width = 3), so that they are
carried from batch to batch, and their gradients through dcs, as the LSTM's c."""
import math

import numpy as np
from numba import njit, types
from numba.extending import overload

from ._jit import JIT
from .gemm import matmul_packed
from .lstm import _gate
from .nonlinear import _as, _copy, exp_


# ---------------------------------------------------------------------------
# sLSTM (Beck, Pöppel, Spanring, Auer, Prudnikova, Kopp, Klambauer, Brandstetter
# & Hochreiter 2024, "xLSTM: Extended Long Short-Term Memory", arXiv:2405.04517,
# section 2.2, one head, with its stabiliser): blocks z, i, f, o; i exponential,
# f a sigmoid (log f = log σ(f~)).

def _log_sigmoid(x):
    """log σ(x) = min(x, 0) − log(1 + e^{−|x|}), finite for every finite x
    (jitted code only)."""
    return min(x, 0.0) - math.log1p(math.exp(-abs(x)))


@overload(_log_sigmoid, jit_options=JIT)
def _log_sigmoid_impl(x):
    """float32: with e = e^{−|x|} (exp_) and s = e / (2 + e) ≤ 1/3,
    log(1 + e) = 2 atanh(s) = 2 (s + s³/3 + … + s¹⁵/15), the series' next term
    under 1e-8 of it: no branch and no scalar call (math.log1p is one), so the
    step's loop vectorises. float64: math.log1p, exact for the gradient checks."""
    if isinstance(x, types.Float) and x.bitwidth == 32:
        zero, one, two = np.float32(0.0), np.float32(1.0), np.float32(2.0)
        k3, k5, k7, k9 = (np.float32(1 / 3), np.float32(1 / 5), np.float32(1 / 7),
                          np.float32(1 / 9))
        k11, k13, k15 = np.float32(1 / 11), np.float32(1 / 13), np.float32(1 / 15)

        def impl(x):
            e = exp_(-abs(x))
            s = e / (two + e)
            s2 = s * s
            p = one + s2 * (k3 + s2 * (k5 + s2 * (k7 + s2 * (k9 + s2 * (k11 + s2 * (
                k13 + s2 * k15))))))
            return min(x, zero) - two * s * p
        return impl
    return lambda x: min(x, 0.0) - math.log1p(math.exp(-abs(x)))


@njit(**JIT)
def slstm_step(t, gh, hs, cs, acts, aux, x, ex):
    """z = tanh(.), f = σ(.), o = σ(.), ĩ = (.)   with (.) = xp_t + h_{t−1} Whᵀ
    m_t = max(log f + m_{t−1}, ĩ)
    i' = exp(ĩ − m_t),  f' = exp(log f + m_{t−1} − m_t)   (the side that is the
    max gives exp(0) = 1 exactly, in float32's exp_ too: the backward tells the
    sides apart by f' = 1; at a near tie, where both round to 1, it takes the
    forget side, a gradient of the max either way to float32's precision)
    c_t = f' c_{t−1} + i' z,  n_t = f' n_{t−1} + i',  h_t = o ⊙ c_t / n_t
    acts keeps z, i', f, o; aux keeps f'."""
    B, G = x.shape
    H = G // 4
    for b in range(B):
        a, xb, r = acts[t, b], x[b], gh[b]
        _gate(a[:H], xb[:H], r[:H], True)                                 # z
        _gate(a[2 * H:], xb[2 * H:], r[2 * H:], False)                     # f, o
        c_prev, c, fp, h = cs[t, b], cs[t + 1, b], aux[t, b], hs[t + 1, b]
        for j in range(H):                 # no branch: LLVM vectorises the loop
            it = xb[H + j] + r[H + j]
            lf = _log_sigmoid(xb[2 * H + j] + r[2 * H + j]) + c_prev[2 * H + j]
            m = max(lf, it)
            c[2 * H + j] = m
            a[H + j] = exp_(it - m)
            fp[j] = exp_(lf - m)
        for j in range(H):
            fj, ij = fp[j], a[H + j]
            c[j] = fj * c_prev[j] + ij * a[j]
            c[H + j] = fj * c_prev[H + j] + ij
        for j in range(H):
            h[j] = a[3 * H + j] * c[j] / c[H + j]


@njit(**JIT)
def slstm_backward(dxp, dhp, dhs, dcs, dy, hs, cs, acts, aux, Wh_nn, ex):
    """dh = dy_t + dh_{t+1 → t},  q = c_t / n_t,  do = dh ⊙ q (times o's slope)
    dc_t = dc + dh ⊙ o / n_t,  dn_t = dn − dh ⊙ o ⊙ q / n_t,  dm_t = dm
    df' = dc_t ⊙ c_{t−1} + dn_t ⊙ n_{t−1},  di' = dc_t ⊙ z + dn_t,  dz = dc_t ⊙ i'
    through i' = exp(ĩ − m_t), f' = exp(log f + m_{t−1} − m_t):
      dĩ = di' i',  dlog f = dm_{t−1} = df' f',  dm_t −= di' i' + df' f'
    through m_t = max(log f + m_{t−1}, ĩ): dm_t goes to the side that is the max
    (log f and m_{t−1} when f' = 1, else ĩ);  df~ = dlog f ⊙ (1 − f)
    dc_{t−1} = dc_t f',  dn_{t−1} = dn_t f';  dh_{t−1} = dxp_t Wh
    (dcs holds dc, dn, dm side by side, as cs holds c, n, m.)"""
    T, B, G = dxp.shape
    H = G // 4
    Z, I, F, O = 0, H, 2 * H, 3 * H
    one, zero = _as(1.0, dxp), _as(0.0, dxp)
    dh_next = dhs[T].copy()
    d_next = dcs[T].copy()                 # dc, dn, dm from step t + 1
    for t in range(T - 1, -1, -1):
        for b in range(B):
            for j in range(H):
                dhs[t + 1, b, j] = dy[t, b, j] + dh_next[b, j]
            for j in range(H):
                dh = dhs[t + 1, b, j]
                c, n = cs[t + 1, b, j], cs[t + 1, b, H + j]
                z, ip, f, o = acts[t, b, Z + j], acts[t, b, I + j], acts[t, b, F + j], \
                    acts[t, b, O + j]
                fp = aux[t, b, j]
                q = c / n
                dc = d_next[b, j] + dh * o / n
                dn = d_next[b, H + j] - dh * o * q / n
                dm = d_next[b, 2 * H + j]
                dfp = (dc * cs[t, b, j] + dn * cs[t, b, H + j]) * fp    # times f'
                dip = (dc * z + dn) * ip                                # times i'
                di = dip
                dlf = dfp
                dm_prev = dfp
                dm = dm - dip - dfp
                forget_side = fp == one             # m_t = log f + m_{t−1}, else ĩ
                dlf += dm if forget_side else zero
                dm_prev += dm if forget_side else zero
                di += zero if forget_side else dm
                dxp[t, b, O + j] = dh * q * o * (one - o)
                dxp[t, b, Z + j] = dc * ip * (one - z * z)
                dxp[t, b, I + j] = di
                dxp[t, b, F + j] = dlf * (one - f)
                dcs[t + 1, b, j] = dc
                dcs[t + 1, b, H + j] = dn
                dcs[t + 1, b, 2 * H + j] = d_next[b, 2 * H + j]
                d_next[b, j] = dc * fp
                d_next[b, H + j] = dn * fp
                d_next[b, 2 * H + j] = dm_prev
        matmul_packed(dxp[t], Wh_nn, dh_next)
    _copy(dhs[0], dh_next)
    _copy(dcs[0], d_next)
