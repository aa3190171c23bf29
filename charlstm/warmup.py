"""Compile the kernels ahead of real work, on a tiny model with the same types."""
from __future__ import annotations

import glob
import hashlib
import os
import pickle
from importlib import metadata

import numpy as np


def is_cached(here: str | None = None) -> bool:
    """True when Numba's on-disk cache holds the kernels compiled from this
    kernels.py by the installed Numba. Each kernel's index file records the
    Numba version and the source file's sha256 (numba.core.caching); after an
    edit or an upgrade the old files stay but no longer count."""
    here = here or os.path.dirname(__file__)
    with open(os.path.join(here, "kernels.py"), "rb") as f:
        stamp = hashlib.sha256(f.read()).digest()
    numba_version = metadata.version("numba")
    fresh = 0
    for path in glob.glob(os.path.join(here, "__pycache__", "kernels.*.nbi")):
        try:
            with open(path, "rb") as f:
                if pickle.load(f) == numba_version and pickle.loads(f.read())[0] == stamp:
                    fresh += 1
        except Exception:       # unreadable or another format: not ours to judge
            continue
    return fresh >= 10


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
