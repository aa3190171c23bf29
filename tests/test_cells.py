"""Every cell's fast kernels against the plain NumPy reference (tests/naive.py)."""

import numpy as np
import pytest

from charlstm.cells import CELLS
from charlstm.config import ModelConfig
from charlstm.model import Model, Workspace

from . import naive


@pytest.mark.parametrize("cell", list(CELLS))
def test_fast_float32_matches_reference(cell):
    cfg = ModelConfig(cell=cell, hidden=24, layers=2, dropout=0.0, vocab_size=9)
    rng = np.random.default_rng(3)
    m = Model(cfg, np.float32).init(rng)
    m.flat[:] += rng.normal(0, 0.2, m.size).astype(np.float32)
    T, B = 12, 4
    tokens = rng.integers(0, 9, (T, B))
    h0 = rng.normal(0, 0.5, (2, B, 24)).astype(np.float32)
    c0 = naive.random_c(cell, rng, (2, B), 24).astype(np.float32)
    fast = m.forward(Workspace(cfg, T, B, np.float32), tokens, h0, c0)
    ref = naive.logits(m, tokens, h0, c0)
    np.testing.assert_allclose(fast, ref, atol=2e-5, rtol=1e-4)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("cell", [c for c in CELLS if CELLS[c].dxp_in_acts])
def test_backward_writing_over_acts_matches_a_separate_dxp(cell, dtype):
    """The model gives these cells one array for acts and dxp (kernels._same);
    their backward kernels must give the same gradients as with two arrays."""
    cfg = ModelConfig(cell=cell, hidden=16, layers=1, dropout=0.0, vocab_size=9)
    rng = np.random.default_rng(5)
    m = Model(cfg, dtype).init(rng)
    m.flat[:] += rng.normal(0, 0.3, m.size).astype(dtype)
    T, B = 7, 3
    ws = Workspace(cfg, T, B, dtype)
    w = ws.layers[0]
    assert w["dxp"] is w["acts"]
    h0, c0 = (rng.normal(0, 0.5, (1, B, 16)).astype(dtype) for _ in range(2))
    m.forward(ws, rng.integers(0, 9, (T, B)), h0, c0)
    dy = rng.normal(0, 1, (T, B, 16)).astype(dtype)
    acts = w["acts"].copy()
    _, Wh_nn = m.packed_Wh()
    out = {}
    for name, dxp in (("separate", np.zeros_like(acts)), ("in acts", w["acts"])):
        w["acts"][...] = acts
        dhs, dcs = np.zeros((T + 1, B, 16), dtype), np.zeros((T + 1, B, 16), dtype)
        m.cell.backward(dxp, dxp, dhs, dcs, dy, w["hs"], w["cs"], w["acts"], w["aux"],
                        Wh_nn[0], m._ex(0))
        out[name] = (dxp.copy(), dhs, dcs)
    for a, b in zip(out["separate"], out["in acts"]):
        np.testing.assert_array_equal(a, b)
    assert np.abs(out["separate"][0]).max() > 0


@pytest.mark.parametrize("cell", list(CELLS))
def test_every_cell_has_its_four_places(cell):
    """A cell is four things (cells.py): its row in cells.CELLS, its kernels in
    kernels/<row.kernels>.py, its forward/backward pair in reference.py and
    its names in other tools (or None) in export.py; every row has all four,
    and the row's facts name its own blocks and extras."""
    import os

    from charlstm import export, reference
    from charlstm import kernels as K
    row = CELLS[cell]
    assert os.path.isfile(os.path.join(K.HERE, row.kernels + ".py"))
    bound = K.CELL_KERNELS[cell]
    assert bound.step.py_func.__name__ == row.kernels + "_step"
    assert bound.backward.py_func.__name__ == row.kernels + "_backward"
    assert (bound.extra_grad is not None) == bool(row.extras)
    assert K.STEPS[bound.kind] is bound.step and K.FORWARD[bound.kind].__name__.endswith(
        "_" + row.kernels)
    forward, backward = reference.PAIRS[cell]
    assert forward.__name__.endswith("_forward") and backward.__name__.endswith("_backward")
    assert cell in export.NAMES
    names = export.NAMES[cell]
    assert names is None or sorted(names.onnx_order) == list(range(row.gates))
    assert row.candidate in row.blocks and row.gates >= 1
    assert all(g in row.blocks for g in (row.forget, row.output) if g is not None)
    assert row.has_c or row.output is None
    assert all(what in row.blocks + row.extras and how in ("shut", "open", "zero")
               for what, how in row.held_at_zero) and row.held_at_zero
    assert row.extras_init in ("zero", "uniform")


@pytest.mark.parametrize("shift", [100.0, 1000.0])
def test_slstm_stabiliser_keeps_huge_input_gates_finite(shift):
    """The sLSTM with input-gate pre-activations ĩ ≈ shift, where exp(ĩ)
    overflows float32 (shift 100) or even float64 (1000): the float32 kernels'
    logits are finite and equal the unstabilised float64 ones where those are
    finite, and every gradient is finite, and equal in float64 to the
    reference's (which goes through the max of the stabiliser)."""
    from charlstm import reference as R
    H, L, V, T, B = 8, 2, 9, 10, 3
    cfg = ModelConfig(cell="slstm", hidden=H, layers=L, dropout=0.0, vocab_size=V)
    rng = np.random.default_rng(11)
    tokens, targets = rng.integers(0, V, (T, B)), rng.integers(0, V, (T, B))
    m64 = Model(cfg, np.float64).init(rng)
    for l in range(L):
        m64.p[f"l{l}.b"][H:2 * H] += shift                  # ĩ ≈ shift
    h0, c0 = m64.zero_state(B)
    m32 = Model(cfg, np.float32, m64.flat.astype(np.float32))
    with np.errstate(over="ignore", invalid="ignore"):
        assert not np.isfinite(np.exp(np.float32(shift)))   # unstabilised: inf
        plain = naive.logits(m64, tokens, h0, c0)            # float64, unstabilised
    fast = m32.forward(Workspace(cfg, T, B, np.float32), tokens, h0.astype(np.float32),
                       c0.astype(np.float32)).copy()
    stable = R.logits(m64, tokens, h0, c0)
    assert np.isfinite(fast).all() and np.isfinite(stable).all()
    np.testing.assert_allclose(fast, stable, atol=2e-4, rtol=1e-4)
    if shift == 100.0:
        assert np.isfinite(plain).all()
        np.testing.assert_allclose(stable, plain, rtol=1e-9, atol=1e-9)
    else:
        assert not np.isfinite(plain).all()                  # float64 overflows too
    m32.grad[:] = 0
    m32.loss(Workspace(cfg, T, B, np.float32), tokens, targets, h0.astype(np.float32),
             c0.astype(np.float32))
    assert np.isfinite(m32.grad).all() and np.abs(m32.grad).max() > 0
    # float64 kernels against the reference's backward, layer by layer
    ws = Workspace(cfg, T, B, np.float64)
    m64.grad[:] = 0
    m64.loss(ws, tokens, targets, h0, c0)
    x, steps = np.eye(V)[tokens], []
    layer = lambda l: {k: m64.p[f"l{l}.{k}"] for k in ("Wx", "Wh", "b")}  # noqa: E731
    for l in range(L):
        hs, _, st = R.forward("slstm", x, h0[l], c0[l], layer(l))
        steps.append(st)
        x = hs
    z = x @ m64.p["Wy"] + m64.p["by"]
    prob = np.exp(z - z.max(-1, keepdims=True))
    prob /= prob.sum(-1, keepdims=True)
    dh = ((prob - np.eye(V)[targets]) / (T * B)) @ m64.p["Wy"].T
    for l in range(L - 1, -1, -1):
        g = R.backward("slstm", dh, steps[l], layer(l))
        for k in ("Wx", "Wh", "b"):
            np.testing.assert_allclose(m64.g[f"l{l}.{k}"], g[k], rtol=1e-7, atol=1e-11)
        dh = g["x"]
