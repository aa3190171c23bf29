"""Batch-1 sampling: two threads as one, the state as the forward pass leaves it, rounded weights, top-k."""

import numpy as np
import pytest

from charlstm import kernels as K
from charlstm.cells import CELLS
from charlstm.config import SAMPLING_WEIGHTS, ModelConfig
from charlstm.model import Model, Workspace



@pytest.mark.parametrize("weights", SAMPLING_WEIGHTS)
@pytest.mark.parametrize("cell", list(CELLS))
def test_sampling_on_two_cores_matches_one(cell, weights):
    """The helper thread's share of each product changes nothing: the same ids
    and the same final state, for every cell, two layers, an odd panel count,
    and every precision of the weights."""
    from charlstm.sampling import Sampler
    cfg = ModelConfig(cell=cell, hidden=264, layers=2, vocab_size=11)
    m = Model(cfg, np.float32).init(np.random.default_rng(5))
    runs = []
    for threads in (1, 2):
        s = Sampler(m, threads=threads, weights=weights)
        assert s.Wp.shape[1] > K.CHUNK and s.Wp.shape[1] % 2 and s.threads == threads
        h, c = m.zero_state(1)
        out = np.empty(300, np.int64)
        u = np.random.default_rng(0).random(300)
        s.generate(out, np.array([1, 2, 3], np.int64), u, h, c)
        runs.append((out, h, c))
    np.testing.assert_array_equal(runs[0][0], runs[1][0])
    np.testing.assert_array_equal(runs[0][1], runs[1][1])
    np.testing.assert_array_equal(runs[0][2], runs[1][2])


@pytest.mark.parametrize("cell", ["lstm", "mingru", "minlstm", "slstm"])
def test_sampling_state_matches_the_forward_pass(cell):
    """Feeding ids through the sampler leaves the state Model.forward computes
    (the LSTM, and each cell whose sampling step differs: no Wh, or a wider c)."""
    from charlstm.sampling import Sampler
    cfg = ModelConfig(cell=cell, hidden=40, layers=2, vocab_size=11)
    m = Model(cfg, np.float32).init(np.random.default_rng(5))
    ids = np.random.default_rng(1).integers(0, 11, 50)
    h, c = m.zero_state(1)
    Sampler(m, threads=2).generate(np.empty(0, np.int64), ids, np.zeros(0), h, c)
    ws = Workspace(cfg, len(ids), 1, np.float32)
    m.forward(ws, ids[:, None], *m.zero_state(1))
    hT, cT = m.final_state(ws)
    np.testing.assert_allclose(h, hT, atol=1e-5)
    np.testing.assert_allclose(c, cT, atol=1e-5)


@pytest.mark.parametrize("weights,tol", [("float16", 2e-3), ("int8", 2e-2)])
def test_sampling_with_rounded_weights_stays_close(weights, tol):
    """float16 and int8 weights move the sampler's state by about their
    rounding, for every layer: after 200 characters, h and c within tol of
    float32's."""
    from charlstm.sampling import Sampler
    cfg = ModelConfig(cell="lstm", hidden=64, layers=2, vocab_size=11)
    m = Model(cfg, np.float32).init(np.random.default_rng(5))
    ids = np.random.default_rng(1).integers(0, 11, 200)
    states = []
    for w in ("float32", weights):
        h, c = m.zero_state(1)
        Sampler(m, threads=2, weights=w).generate(np.empty(0, np.int64), ids, np.zeros(0), h, c)
        states.append((h, c))
    assert 0 < np.abs(states[0][0] - states[1][0]).max() < tol
    assert np.abs(states[0][1] - states[1][1]).max() < tol
    with pytest.raises(ValueError, match="float32 models"):
        Model(cfg, np.float64).init(np.random.default_rng(5)).sampling_packs(weights)
    with pytest.raises(ValueError, match="int8, float16, float32"):
        m.sampling_packs("int4")


@pytest.mark.parametrize("weights", SAMPLING_WEIGHTS)
def test_sampling_from_a_broken_model_stays_in_the_vocabulary(weights):
    """NaN weights (a diverged model) give NaN logits: every sampled id must still
    be a symbol of the vocabulary, not a read past the end of the table; packing
    them warns of nothing."""
    from charlstm.sampling import Sampler
    cfg = ModelConfig(cell="irnn", hidden=16, layers=1, vocab_size=5)
    m = Model(cfg, np.float32).init(np.random.default_rng(0))
    m.flat[:] = np.nan
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        text = Sampler(m, "abcde", weights=weights).text("ab", 50, rng_seed=0, temperature=0.8)
    assert len(text) == 50 and set(text) <= set("abcde")


def test_top_k_keeps_only_the_likeliest():
    """--top-k 1 is greedy decoding; with top_k = 3 every sampled character is
    one of the 3 likeliest after the text before it (checked by feeding the
    text back one character at a time)."""
    from charlstm.sampling import Sampler
    cfg = ModelConfig(hidden=32, layers=2, vocab_size=7)
    m = Model(cfg, np.float32).init(np.random.default_rng(4))
    s = Sampler(m, "abcdefg", threads=1, weights="float32")
    greedy = s.text("ab", 60, greedy=True)
    assert s.text("ab", 60, top_k=1, rng_seed=2) == greedy
    text = s.text("ab", 60, top_k=3, rng_seed=2, temperature=2.0)
    assert text != s.text("ab", 60, top_k=1, rng_seed=2)
    for n in range(len(text)):
        nxt = s.text("ab" + text[:n], 1, greedy=True)   # the likeliest next character
        tops = {s.text("ab" + text[:n], 1, top_k=3, rng_seed=r, temperature=50.0)
                for r in range(40)}                       # near-uniform over the top 3
        assert nxt in tops and text[n] in tops and len(tops) <= 3


def test_stream_pieces_join_to_text():
    """text() makes the continuation in one piece, stream() in growing pieces
    (one generate call each): the same random numbers, so the same text."""
    from charlstm.sampling import Sampler
    cfg = ModelConfig(hidden=32, layers=2, vocab_size=5)
    m = Model(cfg, np.float32).init(np.random.default_rng(3))
    s = Sampler(m, "abcde", threads=2, weights="int8")
    whole = s.text("ab", 300, rng_seed=5, temperature=0.9)
    pieces = list(s.stream("ab", 300, rng_seed=5, temperature=0.9, chunk=64, first=3))
    assert [len(p) for p in pieces] == [3, 6, 12, 24, 48, 64, 64, 64, 15]
    assert "".join(pieces) == whole and len(set(whole)) > 1
