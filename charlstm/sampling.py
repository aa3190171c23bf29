"""Text generation: the per-character loop runs inside kernels.generate; Python
only hands it chunks, so the text can be streamed as it is made. With two or
more cores a helper thread shares every product (kernels.product_helper)."""
from __future__ import annotations

import os
import threading

import numpy as np

from . import checkpoint as ckpt
from . import kernels
from . import stopping
from .data import encode_text
from .errors import CharlstmError
from .model import Model


class Sampler:
    """weights: the precision of the weight copies the products multiply by
    (Model.sampling_packs): "float32" (exact), "float16" or "int8" (a half or a
    quarter of the bytes to read per character; the sums stay float32, or
    int32 with int8)."""

    def __init__(self, model: Model, vocab: str = "", threads: int | None = None,
                 weights: str = "float32", clamp=()):
        """clamp: (layer, unit, value) triples, 0-based: that unit's state (c for
        the cells whose h = o ⊙ tanh(c), Cell.output; h for the others, the
        sLSTM among them) is held at value after every step."""
        self.model, self.vocab = model, vocab
        self.clamp_at, self.clamp_to = check_clamp(model, clamp)
        self.chars = np.array(list(vocab))
        self.Wp, self.Wyp = model.sampling_packs(weights)
        H = model.cfg.hidden
        self.hs = np.zeros((2, 1, H), model.dtype)              # shared with the helper
        self.gh = np.zeros((1, model.cell.gates * H), model.dtype)
        self.A = (np.zeros(kernels.quantised_input_shape(H), np.int16) if weights == "int8"
                  else self.hs[0])                              # the products' input
        self.threads = min(2, threads or os.cpu_count() or 1)
        if self.threads > 1:         # compile (or load) the helper here, so that a failure
            kernels.product_helper(self._sync(stop=True), self.A, self.Wp, self.gh)  # shows now

    @classmethod
    def from_checkpoint(cls, path: str, weights: str = "float32", clamp=()) -> "Sampler":
        """From a checkpoint, or a safetensors file that charlstm export wrote
        (checkpoint.load reads both)."""
        ck = ckpt.load(path)
        return cls(ckpt.model_from_checkpoint(ck, np.float32), ck.vocab, weights=weights,
                   clamp=clamp)

    def generate(self, out, prime, u, h, c, temperature=1.0, top_k=0, greedy=False):
        """kernels.generate: feed `prime` (token ids), then write len(out) sampled
        ids into out; h, c (L, 1, H) carry the state and are updated."""
        m = self.model
        sync = self._sync()
        helper = None
        if self.threads > 1:
            helper = threading.Thread(target=kernels.product_helper,
                                      args=(sync, self.A, self.Wp, self.gh), daemon=True)
            helper.start()
        try:
            kernels.generate(out, prime, u, m.flat, m.offsets, self.A, self.Wp, self.Wyp,
                             m.cell.kind, h, c, float(temperature), int(top_k), bool(greedy),
                             self.hs, self.gh, sync, self.clamp_at, self.clamp_to,
                             m.cell.output_gate)
        finally:
            sync[3] = 1                                          # the helper stops
            if helper is not None:
                helper.join()

    def _sync(self, stop: bool = False) -> np.ndarray:
        """The array the sampling thread and its helper meet through (its layout: the
        comment above kernels.CHUNK)."""
        sync = np.zeros(8, np.int64)
        sync[3], sync[4] = stop, self.threads
        return sync

    def stream(self, seed: str, length: int, temperature: float = 1.0, top_k: int = 0,
               greedy: bool = False, rng_seed: int | None = None, chunk: int = 256,
               first: int = 8, state=None, rng=None):
        """Yield the continuation of `seed` in pieces (the seed itself is not
        yielded): `first` characters, then twice as many each time, up to
        `chunk`. An empty seed starts from a newline, or the first symbol.
        Each piece is one call of generate, which starts and stops the helper
        thread, so the pieces should not be small. state: None (start from a
        zero state), or (h, c) from zero_state(1) or an earlier stream, carried
        on and updated in place (an interactive session that keeps its state);
        rng: a numpy Generator to draw from instead of one seeded by rng_seed."""
        prime = encode_text(seed, self.vocab)
        if len(prime) == 0 and state is None:
            start = "\n" if "\n" in self.vocab else self.vocab[0]
            prime = encode_text(start, self.vocab)
        h, c = state if state is not None else self.model.zero_state(1)
        rng = rng if rng is not None else np.random.default_rng(rng_seed)
        n, size = 0, first                       # as drawn at once (so the same text), and
        while n < length:                        # memory that does not grow with --length
            stopping.check()
            k = min(size, length - n)
            out = np.empty(k, np.int64)
            self.generate(out, prime, rng.random(k), h, c, temperature, top_k, greedy)
            prime = prime[:0]
            n += k
            size = min(chunk, size * 2)
            yield "".join(self.chars[out])

    def text(self, seed: str, length: int, **kw) -> str:
        """The whole continuation, made in one piece (as stream makes it)."""
        return "".join(self.stream(seed, length, chunk=max(1, length), first=max(1, length),
                                   **kw))


def check_clamp(model: Model, clamp) -> tuple[np.ndarray, np.ndarray]:
    """The kernel's arrays for (layer, unit, value) triples, each checked
    against the model: ([layer, unit] rows (K, 2) int64, values (K,))."""
    rows, vals = [], []
    for layer, unit, value in clamp:
        model.check_unit(layer, unit, f"--clamp {layer}:{unit}")
        if not np.isfinite(value) or abs(value) > float(np.finfo(model.dtype).max):
            raise CharlstmError(f"--clamp {layer}:{unit}={value}: the value must be a "
                                f"finite number within ±{np.finfo(model.dtype).max:.3g}, "
                                f"the range of the model's {model.dtype} numbers")
        rows.append([layer, unit])
        vals.append(value)
    return (np.array(rows, np.int64).reshape(-1, 2), np.array(vals, model.dtype))


class StopAt:
    """Text cut after the first occurrence of any of `stops`, fed piece by
    piece: feed() returns what can be shown now (never a part of the text
    that could still turn out to be the start of a stop), and `done` is set
    once a stop has appeared; flush() returns what is left at the end."""

    def __init__(self, stops=()):
        self.stops = [x for x in stops if x]
        self.keep = max((len(x) for x in self.stops), default=1) - 1
        self.buf = ""
        self.done = False

    def feed(self, piece: str) -> str:
        if self.done:
            return ""
        self.buf += piece
        ends = [self.buf.find(x) + len(x) for x in self.stops if x in self.buf]
        if ends:
            out, self.buf, self.done = self.buf[:min(ends)], "", True
            return out
        cut = max(0, len(self.buf) - self.keep)
        out, self.buf = self.buf[:cut], self.buf[cut:]
        return out

    def flush(self) -> str:
        out, self.buf = self.buf, ""
        return out
