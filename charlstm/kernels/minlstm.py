"""The minLSTM: step and backward. No recurrent weights (as the minGRU,
mingru.py): gh is never written nor read, and the backward makes no product
with Wh."""

from numba import njit

from ._jit import JIT
from .lstm import _same
from .nonlinear import _as, _copy, sigmoid


# ---------------------------------------------------------------------------
# minLSTM (Feng, Tung, Ahmed, Bengio & Hajimirsadeghi 2024, "Were RNNs All We
# Needed?", arXiv:2410.01201, section 3.2.3, sequential mode, with its
# normalised gates). Blocks f, i, g (the paper's h~).

@njit(**JIT)
def minlstm_step(t, gh, hs, cs, acts, aux, x, ex):
    """f = σ(x_f),  i = σ(x_i),  g = x_g   (x = x_t Wx + b: all from the input)
    h_t = (f ⊙ h_{t−1} + i ⊙ g) / (f + i)
    acts keeps f, i (before the normalisation) and g."""
    B, G = x.shape
    H = G // 3
    for b in range(B):
        a, xb, h_prev, h = acts[t, b], x[b], hs[t, b], hs[t + 1, b]
        for j in range(2 * H):
            a[j] = sigmoid(xb[j])
        for j in range(H):
            a[2 * H + j] = xb[2 * H + j]
        for j in range(H):
            f, i = a[j], a[H + j]
            h[j] = (f * h_prev[j] + i * a[2 * H + j]) / (f + i)


@njit(**JIT)
def minlstm_backward(dxp, dhp, dhs, dcs, dy, hs, cs, acts, aux, Wh_nn, ex):
    """The minLSTM's backward pass (_minlstm_backward below); dxp may be acts
    (Cell.dxp_in_acts: lstm._same)."""
    if _same(dxp, acts):
        _minlstm_backward(acts, dhs, dy, hs, acts)
    else:
        _minlstm_backward(dxp, dhs, dy, hs, acts)


@njit(**JIT, inline="always")
def _minlstm_backward(dxp, dhs, dy, hs, acts):
    """With s = f + i, f' = f/s, i' = i/s:  h_t = f' ⊙ h_{t−1} + i' ⊙ g, so
    dh = dy_t + dh_{t+1 → t},  d = dh ⊙ (h_{t−1} − g) / s²
    df = d ⊙ i ⊙ f(1 − f),  di = −d ⊙ f ⊙ i(1 − i),  dg = dh ⊙ i',
    dh_{t−1} = dh ⊙ f'   (each unit's f, i, g read before its gradients are
    written over them)."""
    T, B, G = dxp.shape
    H = G // 3
    one = _as(1.0, dxp)
    dh_next = dhs[T].copy()
    for t in range(T - 1, -1, -1):
        for b in range(B):
            for j in range(H):
                dh = dy[t, b, j] + dh_next[b, j]
                dhs[t + 1, b, j] = dh
                f, i, g = acts[t, b, j], acts[t, b, H + j], acts[t, b, 2 * H + j]
                r = one / (f + i)
                d = dh * (hs[t, b, j] - g) * r * r
                dxp[t, b, j] = d * i * f * (one - f)
                dxp[t, b, H + j] = -d * f * i * (one - i)
                dxp[t, b, 2 * H + j] = dh * i * r
                dh_next[b, j] = dh * f * r
    _copy(dhs[0], dh_next)
