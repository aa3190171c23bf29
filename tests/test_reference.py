"""charlstm/reference.py, the plain NumPy cells: their gradients against
centred finite differences, and the fast kernels against them, forward and
backward, for every cell."""
import numpy as np
import pytest

from charlstm import reference as R
from charlstm.cells import CELLS as ROWS
from charlstm.config import ModelConfig
from charlstm.model import Model, Workspace

from . import naive

CELLS = list(ROWS)


def params(cell, D, H, rng):
    row = ROWS[cell]
    G = row.gates * H
    p = {"Wx": rng.normal(0, 0.5, (D, G))}
    if row.recurrent:
        p["Wh"] = rng.normal(0, 0.5, (G, H))
    p["b"] = rng.normal(0, 0.3, G)
    if row.extras:
        p["ex"] = rng.normal(0, 0.5, (row.n_extra, H))
    return p


def loss(cell, x, h0, c0, p, up, upc):
    """A scalar of every output: Σ up ⊙ h_t + Σ upc ⊙ c_T (random weights)."""
    hs, cs, _ = R.forward(cell, x, h0, c0, p)
    return float((up * hs).sum() + (upc * cs[-1]).sum())


@pytest.mark.parametrize("cell", CELLS)
def test_reference_gradients_match_finite_differences(cell):
    """Every entry of every parameter, of x and of the initial states, in
    float64 with centred differences."""
    rng = np.random.default_rng(CELLS.index(cell))
    T, B, D, H = 4, 2, 3, 3
    p = params(cell, D, H, rng)
    x = rng.normal(0, 1, (T, B, D))
    h0, c0 = rng.normal(0, 0.5, (B, H)), naive.random_c(cell, rng, (B,), H)
    up, upc = rng.normal(0, 1, (T, B, H)), rng.normal(0, 1, c0.shape)
    hs, cs, steps = R.forward(cell, x, h0, c0, p)
    has_c = ROWS[cell].has_c
    g = R.backward(cell, up, steps, p, dcT=upc if has_c else None)
    if not has_c:
        upc = np.zeros_like(upc)
    arrays = dict(p, x=x, h0=h0, c0=c0)
    eps = 1e-6
    for name, arr in arrays.items():
        for idx in np.ndindex(arr.shape):
            old = arr[idx]
            arr[idx] = old + eps
            lp = loss(cell, x, h0, c0, p, up, upc)
            arr[idx] = old - eps
            lm = loss(cell, x, h0, c0, p, up, upc)
            arr[idx] = old
            num = (lp - lm) / (2 * eps)
            ana = g[name][idx]
            assert abs(num - ana) <= 1e-6 * max(1.0, abs(num)), (name, idx, num, ana)


def one_hot(tokens, V):
    return np.eye(V)[tokens]


@pytest.mark.parametrize("cell", CELLS)
def test_fast_kernels_match_the_reference(cell):
    """Model.forward and Model.backward (the jitted kernels) against the
    reference, layer by layer, in float64: logits, every parameter's gradient
    and the initial states' gradients."""
    rng = np.random.default_rng(10 + CELLS.index(cell))
    V, H, L, T, B = 7, 5, 2, 6, 3
    cfg = ModelConfig(cell=cell, hidden=H, layers=L, dropout=0.0, vocab_size=V)
    m = Model(cfg, np.float64).init(rng)
    m.flat[:] += rng.normal(0, 0.3, m.size)
    tokens, targets = rng.integers(0, V, (T, B)), rng.integers(0, V, (T, B))
    h0, c0 = rng.normal(0, 0.5, (L, B, H)), naive.random_c(cell, rng, (L, B), H)
    ws = Workspace(cfg, T, B, np.float64)
    m.grad[:] = 0
    m.loss(ws, tokens, targets, h0, c0)
    logits = ws.logits.reshape(T, B, V).copy()

    def layer(l):
        return {k: m.p[f"l{l}.{k}"] for k in ("Wx", "Wh", "b", "ex") if f"l{l}.{k}" in m.p}

    x, steps = one_hot(tokens, V), []
    for l in range(L):                         # the reference forward, layer by layer
        hs, cs, st = R.forward(cell, x, h0[l], c0[l], layer(l))
        steps.append(st)
        x = hs
    ref_logits = x @ m.p["Wy"] + m.p["by"]
    np.testing.assert_allclose(logits, ref_logits, rtol=1e-9, atol=1e-12)
    z = ref_logits - ref_logits.max(-1, keepdims=True)
    prob = np.exp(z) / np.exp(z).sum(-1, keepdims=True)
    dlogits = (prob - one_hot(targets, V)) / (T * B)         # mean cross-entropy
    np.testing.assert_allclose(m.g["Wy"], np.einsum("tbh,tbv->hv", x, dlogits), rtol=1e-8,
                               atol=1e-12)
    np.testing.assert_allclose(m.g["by"], dlogits.sum((0, 1)), rtol=1e-8, atol=1e-12)
    dh = dlogits @ m.p["Wy"].T
    for l in range(L - 1, -1, -1):             # the reference backward, from the top
        g = R.backward(cell, dh, steps[l], layer(l))
        for name in (k for k in ("Wx", "Wh", "b", "ex") if f"l{l}.{k}" in m.p):
            np.testing.assert_allclose(m.g[f"l{l}.{name}"], g[name], rtol=1e-7, atol=1e-11,
                                       err_msg=f"layer {l} {name}")
        dh = g["x"]
    # and the initial states, through Model.backward's return value
    m.grad[:] = 0
    m.forward(ws, tokens, h0, c0)
    dlog = np.ascontiguousarray(dlogits.reshape(T * B, V))
    dh0, dc0 = m.backward(ws, dlog)
    dh = dlogits @ m.p["Wy"].T
    for l in range(L - 1, -1, -1):
        g = R.backward(cell, dh, steps[l], layer(l))
        np.testing.assert_allclose(dh0[l], g["h0"], rtol=1e-7, atol=1e-11)
        if ROWS[cell].has_c:
            np.testing.assert_allclose(dc0[l], g["c0"], rtol=1e-7, atol=1e-11)
        dh = g["x"]
