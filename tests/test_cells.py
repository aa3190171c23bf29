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
    c0 = rng.normal(0, 0.5, (2, B, 24)).astype(np.float32)
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
