"""The input and output layers: the one-hot input as a row gather (embed) and
its gradient, and the softmax cross-entropy."""
import math

from numba import njit

from ._jit import JIT
from .nonlinear import _as, exp_


# ---------------------------------------------------------------------------
# Input layer, output layer and loss, optimizer.

@njit(**JIT)
def embed(x, tokens, Wx, b):
    """One-hot input as a row gather:  x[s] = Wx[tokens[s]] + b.
    x: (B, G), tokens: (B,), Wx: (V, G), b: (G,)"""
    B, G = x.shape
    for s in range(B):
        row = Wx[tokens[s]]
        for j in range(G):
            x[s, j] = row[j] + b[j]


@njit(**JIT)
def embed_backward(dWx, db, tokens, dxp):
    """dWx[token[t, b]] += dxp[t, b] and db += dxp[t, b], in one pass in a fixed
    order (deterministic). dWx: (V, G), db: (G,), dxp: (T, B, G)"""
    T, B, G = dxp.shape
    for t in range(T):
        for s in range(B):
            row, d = dWx[tokens[t, s]], dxp[t, s]
            for j in range(G):
                row[j] += d[j]
                db[j] += d[j]


@njit(**JIT)
def softmax_xent(dlogits, logits, targets, scale):
    """Softmax over the vocabulary and cross-entropy, fused.
    logits, dlogits: (N, V); targets: (N,). Returns sum_n -log p_n[target_n]
    (in float64) and writes dlogits = scale * (p − onehot(target)).
    A row's sums are in the logits' type, so that float32 rows vectorise."""
    N, V = logits.shape
    total = 0.0
    for n in range(N):
        x, d = logits[n], dlogits[n]
        m = x[0]
        for v in range(1, V):
            m = max(m, x[v])
        s = _as(0.0, x)
        for v in range(V):
            d[v] = exp_(x[v] - m)
            s += d[v]
        k = targets[n]
        total += math.log(s) - (x[k] - m)
        inv = _as(scale, x) / s
        for v in range(V):
            d[v] *= inv
        d[k] -= scale
    return total
