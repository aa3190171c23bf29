"""Text generation: the per-character loop runs inside kernels.generate; Python
only hands it chunks, so the text can be streamed as it is made."""
from __future__ import annotations

import numpy as np

from . import checkpoint as ckpt
from . import kernels as K
from .data import encode_text
from .model import Model
from .train import model_from_checkpoint


class Sampler:
    def __init__(self, model: Model, vocab: str):
        self.model, self.vocab = model, vocab
        self.chars = np.array(list(vocab))
        self.Wh_nt = model.packed_Wh(backward=False)[0]

    @classmethod
    def from_checkpoint(cls, path: str) -> "Sampler":
        ck = ckpt.load(path)
        return cls(model_from_checkpoint(ck, np.float32), ck.vocab)

    def stream(self, seed: str, length: int, temperature: float = 1.0, top_k: int = 0,
               greedy: bool = False, rng_seed: int | None = None, chunk: int = 256):
        """Yield the continuation of `seed` in pieces (the seed itself is not
        yielded). An empty seed starts from a newline, or the first symbol."""
        prime = encode_text(seed, self.vocab)
        if len(prime) == 0:
            start = "\n" if "\n" in self.vocab else self.vocab[0]
            prime = encode_text(start, self.vocab)
        m = self.model
        h, c = m.zero_state(1)
        u = np.random.default_rng(rng_seed).random(length)
        n, size = 0, 8                                   # small first piece: quick first output
        while n < length:
            k = min(size, length - n)
            out = np.empty(k, np.int64)
            K.generate(out, prime, u[n:n + k], m.flat, m.offsets, self.Wh_nt, m.cell.kind, h, c,
                       float(temperature), int(top_k), bool(greedy))
            prime = prime[:0]
            n += k
            size = min(chunk, size * 2)
            yield "".join(self.chars[out])

    def text(self, seed: str, length: int, **kw) -> str:
        return "".join(self.stream(seed, length, **kw))
