"""Adam, Adagrad and the dropout masks (a hash, so any split of the batch
gives the same masks)."""
import math

import numpy as np
from numba import njit

from ._jit import JIT
from .nonlinear import _as


# ---------------------------------------------------------------------------
# Optimizers and dropout masks.

@njit(**JIT)
def _mix64(z):
    """SplitMix64's finaliser: a bijection of uint64 that scrambles every bit."""
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


@njit(**JIT)
def dropout_mask(mask, key, b0, keep):
    """Inverted-dropout mask (T, B, H): 1/keep where a unit is kept, else 0.
    Unit (t, b0 + b, j) is kept when a hash of (key, t, b0 + b, j) falls below
    keep. The mask depends on the key and on the stream's number in the whole
    batch only, so workers make their own parts, in parallel, and any split
    of the batch gives the same masks."""
    T, B, H = mask.shape
    golden = np.uint64(0x9E3779B97F4A7C15)
    thresh = np.uint64(min(keep, 1.0) * 2.0 ** 53)
    scale = mask.dtype.type(1.0 / keep)
    zero = mask.dtype.type(0.0)
    k = _mix64(np.uint64(key))
    for t in range(T):
        kt = _mix64(k + np.uint64(t) * golden)
        for b in range(B):
            base = _mix64(kt + np.uint64(b0 + b) * golden)
            for j in range(H):
                z = _mix64(base + np.uint64(j) * golden)
                mask[t, b, j] = scale if (z >> np.uint64(11)) < thresh else zero


@njit(**JIT)
def adam_update(w, g, m, v, lr, beta1, beta2, eps, step):
    """Adam on the flat parameter buffer: m, v share w's layout. The constants
    are cast to w's type, so that float32 training runs in float32 (vectorised)."""
    b1, b2 = _as(beta1, w), _as(beta2, w)
    c1 = _as(lr / (1.0 - beta1 ** step), w)
    c2 = _as(1.0 / (1.0 - beta2 ** step), w)
    e, one = _as(eps, w), _as(1.0, w)
    for k in range(w.size):
        m[k] = b1 * m[k] + (one - b1) * g[k]
        v[k] = b2 * v[k] + (one - b2) * g[k] * g[k]
        w[k] -= c1 * m[k] / (math.sqrt(v[k] * c2) + e)


@njit(**JIT)
def adagrad_update(w, g, m, lr, eps):
    """Adagrad, as in min-char-rnn: m accumulates g²."""
    for k in range(w.size):
        m[k] += g[k] * g[k]
        w[k] -= lr * g[k] / (math.sqrt(m[k]) + eps)
