"""Compile the kernels ahead of real work, on a tiny model with the same types."""
from __future__ import annotations

import numpy as np


def is_cached(cells=()) -> bool:
    """True when Numba's cache holds this version of the kernels, for each
    of `cells` (see charlstm.kernels: the cache folder is keyed on their
    sources)."""
    from . import kernels
    return kernels.is_cached(cells=cells)


def run(cells) -> None:
    from . import kernels as K
    from .config import SAMPLING_WEIGHTS, ModelConfig
    from .model import Model, Workspace
    from .sampling import Sampler
    for cell in cells:
        cfg = ModelConfig(cell=cell, hidden=4, layers=2, dropout=0.5, vocab_size=3)
        m = Model(cfg, np.float32).init(np.random.default_rng(0))
        ws = Workspace(cfg, 2, 2, np.float32)
        tok = np.zeros((2, 2), np.intp)
        h, c = m.zero_state(2)
        masks = [np.ones((2, 2, 4), np.float32)] * 2
        m.loss(ws, tok, tok, h, c, masks)
        K.dropout_mask(masks[0], np.uint64(1), 0, 0.5)
        K.adam_update(m.flat, m.grad, m.grad.copy(), m.grad.copy(), 1e-3, 0.9, 0.999, 1e-8, 1)
        K.adagrad_update(m.flat, m.grad, m.grad.copy(), 1e-3, 1e-8)
        hs, cs = m.zero_state(1)
        out = np.empty(2, np.int64)
        prime = np.zeros(1, np.int64)
        for weights in SAMPLING_WEIGHTS:                                   # with the helper
            Sampler(m, threads=2, weights=weights).generate(out, prime, np.zeros(2), hs, cs)
