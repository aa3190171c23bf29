"""The LSTM's step and backward kernels, side by side (and the gate helpers
the peephole and CIFG cells share)."""

from numba import njit

from ._jit import JIT
from .gemm import matmul_packed
from .nonlinear import _as, _copy, sigmoid, tanh_


# ---------------------------------------------------------------------------
# LSTM (Hochreiter & Schmidhuber 1997, with the forget gate of Gers, Schmidhuber &
# Cummins 2000). Gate order i, f, c~, o, as PyTorch's nn.LSTM.

@njit(**JIT)
def _gate(a, x, g, squash):
    """a = σ(x + g) (squash=0) or tanh(x + g) (squash=1), over one row."""
    if squash:
        for j in range(a.shape[0]):
            a[j] = tanh_(x[j] + g[j])
    else:
        for j in range(a.shape[0]):
            a[j] = sigmoid(x[j] + g[j])


@njit(**JIT)
def lstm_step(t, gh, hs, cs, acts, aux, x, ex):
    """i = σ(.), f = σ(.), c~ = tanh(.), o = σ(.)   with (.) = xp_t + h_{t-1} Whᵀ
    c_t = f ⊙ c_{t-1} + i ⊙ c~
    h_t = o ⊙ tanh(c_t)
    Each pass below touches few arrays, so LLVM vectorises it; i and f, side
    by side, take one pass (why: docs/performance.md, "Why the kernels look so")."""
    B, G = x.shape
    H = G // 4
    for b in range(B):
        a, xb, r = acts[t, b], x[b], gh[b]
        _gate(a[:2 * H], xb[:2 * H], r[:2 * H], False)                     # i, f
        _gate(a[2 * H:3 * H], xb[2 * H:3 * H], r[2 * H:3 * H], True)       # c~
        _gate(a[3 * H:], xb[3 * H:], r[3 * H:], False)                     # o
        i, f, g, o = a[:H], a[H:2 * H], a[2 * H:3 * H], a[3 * H:]
        c_prev, c, h = cs[t, b], cs[t + 1, b], hs[t + 1, b]
        for j in range(H):
            c[j] = f[j] * c_prev[j] + i[j] * g[j]
        for j in range(H):
            h[j] = o[j] * tanh_(c[j])


@njit(**JIT, inline="always")
def _same(a, b):
    """Whether a and b are one array. model.Workspace gives the LSTM, peephole
    and CIFG cells one array for acts and dxp (Cell.dxp_in_acts): their
    backward passes read each gate's activation before writing its gradient in
    the same place: a (T, B, G) array less to stream through the caches.
    LLVM vectorises a loop over two arrays only
    after checking at run time that they do not overlap, and runs its scalar
    loop when they do (slower), so those kernels pass acts for both
    to an inlined body: that copy is compiled knowing they are one array."""
    return a.ctypes.data == b.ctypes.data


@njit(**JIT, inline="always")
def _output_backward(t, b, H, O, dxp, dhs, dcs, dy, dh_next, dc_next, cs, acts):
    """The part of the backward step every LSTM cell shares, for stream b at
    time t (o in columns O … O+H−1 of acts):
    dh = dy_t + dh_{t+1 → t},  do = dh ⊙ tanh c_t ⊙ o(1 − o),
    dc = dc_{t+1 → t} + dh ⊙ o ⊙ (1 − tanh²c_t).
    Inlined into its callers (a call per stream is slower)."""
    one = _as(1.0, dxp)
    for j in range(H):
        dhs[t + 1, b, j] = dy[t, b, j] + dh_next[b, j]
    for j in range(H):
        dh, o, tc = dhs[t + 1, b, j], acts[t, b, O + j], tanh_(cs[t + 1, b, j])
        dxp[t, b, O + j] = dh * tc * o * (one - o)
        dcs[t + 1, b, j] = dc_next[b, j] + dh * o * (one - tc * tc)


@njit(**JIT)
def lstm_backward(dxp, dhp, dhs, dcs, dy, hs, cs, acts, aux, Wh_nn, ex):
    """The LSTM's backward pass (_lstm_backward below)."""
    if _same(dxp, acts):            # see _same
        _lstm_backward(acts, acts, dhs, dcs, dy, hs, cs, acts, aux, Wh_nn, ex)
    else:
        _lstm_backward(dxp, dhp, dhs, dcs, dy, hs, cs, acts, aux, Wh_nn, ex)


@njit(**JIT, inline="always")
def _lstm_backward(dxp, dhp, dhs, dcs, dy, hs, cs, acts, aux, Wh_nn, ex):
    """dh = dy_t + dh_{t+1 → t}                      (backprop through time: dv Wv + dh_next)
    dc = dh ⊙ o ⊙ (1 − tanh²c_t) + f_{t+1} ⊙ dc_{t+1}
    do = dh ⊙ tanh c_t,  df = dc ⊙ c_{t−1},  di = dc ⊙ c~,  dc~ = dc ⊙ i
    each times its nonlinearity's slope gives dxp_t;  dh_{t−1} = dxp_t Wh
    Four passes per stream, each over a few arrays, which LLVM vectorises (one
    loop over all of them per unit is slower; so too in the other cells). Gate g
    of unit j is column g·H + j: indexing the whole arrays, rather than taking
    a view per gate and stream, saves the views' reference counting, and
    `one` keeps the arithmetic in float32 (an integer 1 would make it float64)."""
    T, B, G = dxp.shape
    H = G // 4
    I, F, C, O = 0, H, 2 * H, 3 * H                 # where each gate's columns start
    one = _as(1.0, dxp)
    dh_next = dhs[T].copy()
    dc_next = dcs[T].copy()
    for t in range(T - 1, -1, -1):
        for b in range(B):
            _output_backward(t, b, H, O, dxp, dhs, dcs, dy, dh_next, dc_next, cs, acts)
            for j in range(H):
                dc, i, g = dcs[t + 1, b, j], acts[t, b, I + j], acts[t, b, C + j]
                dxp[t, b, I + j] = dc * g * i * (one - i)
                dxp[t, b, C + j] = dc * i * (one - g * g)
            for j in range(H):
                dc, f = dcs[t + 1, b, j], acts[t, b, F + j]
                dxp[t, b, F + j] = dc * cs[t, b, j] * f * (one - f)
                dc_next[b, j] = dc * f
        matmul_packed(dxp[t], Wh_nn, dh_next)
    _copy(dhs[0], dh_next)
    _copy(dcs[0], dc_next)
