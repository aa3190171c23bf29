"""The fast nonlinearities, the softmax cross-entropy, the embedding's gradient and the dropout masks."""
import math

import numpy as np

from charlstm import kernels as K



def test_fast_tanh_and_sigmoid_accuracy():
    from numba import njit

    @njit(**K.JIT)
    def apply(out_t, out_s, x):
        for j in range(x.shape[0]):
            out_t[j] = K.tanh_(x[j])
            out_s[j] = K.sigmoid(x[j])
    x = np.linspace(-30, 30, 200001).astype(np.float32)
    t, s = np.empty_like(x), np.empty_like(x)
    apply(t, s, x)
    x64 = x.astype(np.float64)
    assert np.abs(t - np.tanh(x64)).max() < 5e-7
    assert np.abs(s - 1 / (1 + np.exp(-x64))).max() < 5e-7


def test_fast_exp_accuracy():
    """float32 exp_ (a polynomial, so that it vectorises) against float64 exp,
    over the range where exp is a normal float32; and float64 exp_ is exact."""
    from numba import njit

    @njit(**K.JIT)
    def apply(out, x):
        for j in range(x.shape[0]):
            out[j] = K.exp_(x[j])
    x = np.linspace(-87, 88, 400001).astype(np.float32)
    e = np.empty_like(x)
    apply(e, x)
    ref = np.exp(x.astype(np.float64))
    assert np.max(np.abs(e - ref) / ref) < 4e-7
    tiny = np.array([-200.0, -1e30], np.float32)    # clamped: stays a tiny positive number
    apply(out := np.empty_like(tiny), tiny)
    assert np.all((out >= 0) & (out < 2e-38))
    x64 = np.linspace(-700, 700, 1001)
    apply(e64 := np.empty_like(x64), x64)
    np.testing.assert_allclose(e64, np.exp(x64), rtol=1e-14)


def test_softmax_xent_float32_matches_float64():
    rng = np.random.default_rng(1)
    logits = rng.normal(0, 4, (300, 65))
    targets = rng.integers(0, 65, 300)
    d32, d64 = np.empty((300, 65), np.float32), np.empty((300, 65))
    t32 = K.softmax_xent(d32, logits.astype(np.float32), targets, 1 / 300)
    t64 = K.softmax_xent(d64, logits, targets, 1 / 300)
    assert abs(t32 - t64) < 1e-5 * abs(t64)
    np.testing.assert_allclose(d32, d64, atol=1e-8)


def test_softmax_xent_matches_numpy():
    rng = np.random.default_rng(0)
    logits = rng.normal(0, 3, (50, 13))
    targets = rng.integers(0, 13, 50)
    d = np.empty_like(logits)
    total = K.softmax_xent(d, logits, targets, 0.5)
    p = np.exp(logits - logits.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    assert math.isclose(total, -np.log(p[np.arange(50), targets]).sum(), rel_tol=1e-12)
    p[np.arange(50), targets] -= 1
    np.testing.assert_allclose(d, 0.5 * p, atol=1e-14)


def test_embed_backward_is_a_scatter_add():
    rng = np.random.default_rng(0)
    tokens = rng.integers(0, 5, (6, 3))
    dxp = rng.normal(size=(6, 3, 10))
    dW, db = np.zeros((5, 10)), np.ones(10)
    K.embed_backward(dW, db, tokens, dxp)
    ref = np.zeros((5, 10))
    np.add.at(ref, tokens.reshape(-1), dxp.reshape(-1, 10))
    np.testing.assert_allclose(dW, ref, atol=1e-12)
    np.testing.assert_allclose(db, 1 + dxp.sum(axis=(0, 1)), atol=1e-12)


def test_dropout_mask():
    """Kept units are 1/keep, dropped ones 0, at the rate asked; a part of the
    batch made apart (a worker's) equals that part of the whole; another key
    gives an independent mask; neighbours are uncorrelated."""
    keep = 0.7
    whole = np.empty((50, 12, 200), np.float32)
    K.dropout_mask(whole, np.uint64(99), 0, keep)
    assert set(np.unique(whole)) == {0.0, np.float32(1 / keep)}
    assert abs((whole > 0).mean() - keep) < 0.01
    part = np.empty((50, 5, 200), np.float32)
    K.dropout_mask(part, np.uint64(99), 4, keep)
    np.testing.assert_array_equal(part, whole[:, 4:9])
    other = np.empty_like(whole)
    K.dropout_mask(other, np.uint64(100), 0, keep)
    both = ((whole > 0) & (other > 0)).mean()
    assert abs(both - keep * keep) < 0.01
    a = (whole > 0).astype(float)
    for x, y in [(a[1:], a[:-1]), (a[:, 1:], a[:, :-1]), (a[:, :, 1:], a[:, :, :-1])]:
        assert abs(np.corrcoef(x.ravel(), y.ravel())[0, 1]) < 0.02
