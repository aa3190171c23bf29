"""Float64 gradient checks of every backward kernel against centred finite
differences, with a random upstream gradient, covering every named parameter
and the initial states h0 (and c0 for cells that have one)."""
import numpy as np
import pytest

from charlstm.cells import CELLS
from charlstm.config import ModelConfig
from charlstm.model import Model, Workspace

from . import naive

T, B, H, V = 5, 3, 6, 7
EPS = 1e-5
TOL = 1e-6


def rel_err(a, n):
    return abs(a - n) / max(abs(a), abs(n), 1e-8)


def setup(cell, layers, dropout):
    cfg = ModelConfig(cell=cell, hidden=H, layers=layers, dropout=dropout, vocab_size=V)
    rng = np.random.default_rng(7)
    m = Model(cfg, np.float64).init(rng)
    m.flat[:] += rng.normal(0, 0.3, m.size)           # off the initial symmetric point
    tokens = rng.integers(0, V, (T, B))
    h0 = rng.normal(0, 0.5, (layers, B, H))
    c0 = naive.random_c(cell, rng, (layers, B), H)
    R = rng.normal(0, 1, (T * B, V))                   # random upstream gradient
    masks = None
    if dropout:
        masks = [(rng.random((T, B, H)) > dropout) / (1 - dropout) for _ in range(layers)]
    return m, Workspace(cfg, T, B, np.float64), tokens, h0, c0, R, masks, rng


@pytest.mark.parametrize("layers", [1, 2])
@pytest.mark.parametrize("cell", list(CELLS))
def test_gradients_match_finite_differences(cell, layers):
    m, ws, tokens, h0, c0, R, masks, rng = setup(cell, layers, 0.3)

    def f():
        return float(np.sum(R * m.forward(ws, tokens, h0, c0, masks)))

    f()
    m.grad[:] = 0
    dh0, dc0 = m.backward(ws, R.copy())
    checked = []

    def check(name, arr, grad, idx):
        old = arr[idx]
        arr[idx] = old + EPS
        fp = f()
        arr[idx] = old - EPS
        fm = f()
        arr[idx] = old
        num = (fp - fm) / (2 * EPS)
        checked.append((name, idx, rel_err(grad[idx], num), grad[idx], num))

    for name, w in m.p.items():
        for _ in range(6):
            idx = tuple(rng.integers(0, s) for s in w.shape)
            check(name, w, m.g[name], idx)
    states = [("h0", h0, dh0)] + ([("c0", c0, dc0)] if m.cell.has_c else [])
    for name, arr, grad in states:
        for _ in range(6):
            idx = tuple(rng.integers(0, s) for s in arr.shape)
            check(name, arr, grad, idx)
    names = {c[0] for c in checked}
    assert names == set(m.p) | {s[0] for s in states}
    worst = max(checked, key=lambda c: c[2])
    assert worst[2] < TOL, f"worst relative error {worst}"


def test_cross_entropy_gradient():
    """The full training loss (softmax + mean cross-entropy) against differences.
    The loss is about 2 while some gradient elements are about 1e-5, so a step
    of 1e-5 would leave only ~1e-10 of change to measure against rounding of
    ~1e-15 in the loss: this test steps 1e-4."""
    eps = 1e-4
    m, ws, tokens, h0, c0, R, masks, rng = setup("lstm", 2, 0.0)
    targets = rng.integers(0, V, (T, B))
    m.grad[:] = 0
    m.loss(ws, tokens, targets, h0, c0)
    for name, w in m.p.items():
        for _ in range(4):
            idx = tuple(rng.integers(0, s) for s in w.shape)
            old = w[idx]
            w[idx] = old + eps
            fp = m.loss(ws, tokens, targets, h0, c0, grad=False)
            w[idx] = old - eps
            fm = m.loss(ws, tokens, targets, h0, c0, grad=False)
            w[idx] = old
            assert rel_err(m.g[name][idx], (fp - fm) / (2 * eps)) < TOL, name
