"""The memory tasks of `compare --probe --task …`: generated texts whose
held-out lines are scored where only a memory of a certain kind can predict
the next character.

- **lag** (Hochreiter & Schmidhuber 1997, in small): a key, `lag` random
  filler characters, "=" and the key again. One item kept across a span.
- **parity** (as in Beck et al. 2024, xLSTM, after Delétang et al. 2023):
  strings of random bits of every length up to the difficulty, "=" and
  their parity, scored on the longer half. The state must track a
  running XOR: each bit flips it. A recurrence that is linear in its state
  and whose gates see only the input (minGRU, minLSTM) is expected to fail
  it as the strings grow.
- **mqar** (multi-query associative recall, Arora et al. 2023, used in
  xLSTM): `pairs` key-value pairs, ":" and then each key again, in another
  order, each followed by its value. Several items stored at once and
  recalled by content.

Each task makes lines (ids into its vocabulary) and says which input
positions are scored: the model's likeliest next character there must be
the right one. Every line ends in a newline, and the lines are independent.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np


@dataclass(frozen=True)
class Task:
    name: str
    vocab: str
    difficulties: tuple            # the default ones, easy to hard
    unit: str                      # what a difficulty counts: "lag", "bits", "pairs"
    chance: float                  # accuracy of a guess
    make: Callable                 # (difficulty, n_lines, rng) -> (ids (n, L), scored (n, L))
    need: str                      # what it needs of a memory, for the report

    def corpus(self, difficulty: int, train_chars: int = 1_000_000, val_lines: int = 2000,
               seed: int = 0):
        """(data.Corpus, scored mask of the held-out ids): the training text,
        about train_chars characters of whole lines, and held-out lines,
        from separate random streams."""
        from ..data import Corpus
        probe, _ = self.make(difficulty, 1, np.random.default_rng(0))
        line = probe.shape[1]
        n = max(1000, train_chars // line)
        tr, _ = self.make(difficulty, n, np.random.default_rng([seed, difficulty, 0]))
        va, scored = self.make(difficulty, val_lines, np.random.default_rng([seed, difficulty, 1]))
        return Corpus(self.vocab, tr.reshape(-1), va.reshape(-1)), scored.reshape(-1)

    def text(self, ids) -> str:
        return "".join(self.vocab[i] for i in np.asarray(ids).reshape(-1))


def _code(vocab: str, chars: str) -> np.ndarray:
    return np.array([vocab.index(ch) for ch in chars], np.uint8)


# -- lag --------------------------------------------------------------------------

LAG_KEYS, LAG_FILLER = "ABCDEFGH", "abcdefghijklmnop"
LAG_VOCAB = "".join(sorted(set(LAG_KEYS + LAG_FILLER + "=\n")))


def lag_lines(lag: int, n: int, rng: np.random.Generator):
    """key, `lag` filler characters, "=", the key, "\\n"; scored: the "=" (the
    key comes next)."""
    v = LAG_VOCAB
    keys = _code(v, LAG_KEYS)[rng.integers(0, len(LAG_KEYS), n)]
    out = np.empty((n, lag + 4), np.uint8)
    out[:, 0] = keys
    out[:, 1:lag + 1] = _code(v, LAG_FILLER)[rng.integers(0, len(LAG_FILLER), (n, lag))]
    out[:, lag + 1] = v.index("=")
    out[:, lag + 2] = keys
    out[:, lag + 3] = v.index("\n")
    scored = np.zeros_like(out, bool)
    scored[:, lag + 1] = True
    return out, scored


# -- parity -----------------------------------------------------------------------

PARITY_VOCAB = "\n01="


def parity_lines(bits: int, n: int, rng: np.random.Generator):
    """Strings of 1 to `bits` random 0s and 1s (every length equally often),
    "=", their parity (the number of 1s, mod 2), "\\n". Each line is padded
    in front with newlines (blank lines) to `bits` + 3 characters, so that
    the lines have one width. Scored: the "=" of the strings longer than
    `bits` // 2, the hard half. Nothing but the running XOR of every bit read
    predicts it: each bit, wherever it stands, flips the answer.

    Training on every length up to the longest at once is Delétang et al.'s
    (2023) set-up, which the xLSTM paper's parity results use: the short
    strings are where a learner finds the XOR, and the long ones test that
    it is carried. With only strings of one length (the version before
    this), no cell learned 8 bits in the probe's minutes."""
    v = PARITY_VOCAB
    length = rng.integers(1, bits + 1, n)
    b = rng.integers(0, 2, (n, bits))
    present = np.arange(bits)[None, :] >= (bits - length)[:, None]   # right-aligned
    out = np.empty((n, bits + 3), np.uint8)
    out[:, :bits] = np.where(present, np.where(b == 1, v.index("1"), v.index("0")),
                             v.index("\n"))
    out[:, bits] = v.index("=")
    out[:, bits + 1] = np.where((b * present).sum(axis=1) % 2 == 1, v.index("1"), v.index("0"))
    out[:, bits + 2] = v.index("\n")
    scored = np.zeros_like(out, bool)
    scored[:, bits] = length > bits // 2
    return out, scored


# -- multi-query associative recall -------------------------------------------------

MQAR_KEYS, MQAR_VALUES = "abcdefghijklmnopqrstuvwxyz", "0123456789"
MQAR_VOCAB = "".join(sorted(set(MQAR_KEYS + MQAR_VALUES + ":\n")))


def mqar_lines(pairs: int, n: int, rng: np.random.Generator):
    """`pairs` distinct keys each followed by its value ("k3q7…"), ":", then
    every key again in a new order, each followed by its value, "\\n";
    scored: each key after ":" (its value comes next). The values are drawn
    afresh for every line, so only the pairs read in that line predict them.
    Every line at once: the keys of a line are the first `pairs` of a random
    ordering of all of them, and the queries another random ordering of those."""
    if pairs > len(MQAR_KEYS):
        raise ValueError(f"at most {len(MQAR_KEYS)} pairs")
    v = MQAR_VOCAB
    keys_c, vals_c = _code(v, MQAR_KEYS), _code(v, MQAR_VALUES)
    L = 4 * pairs + 2
    keys = np.argsort(rng.random((n, len(MQAR_KEYS))), axis=1)[:, :pairs]    # distinct
    vals = rng.integers(0, len(MQAR_VALUES), (n, pairs))
    order = np.argsort(rng.random((n, pairs)), axis=1)
    out = np.empty((n, L), np.uint8)
    out[:, 0:2 * pairs:2] = keys_c[keys]
    out[:, 1:2 * pairs:2] = vals_c[vals]
    out[:, 2 * pairs] = v.index(":")
    q0 = 2 * pairs + 1
    out[:, q0:q0 + 2 * pairs:2] = keys_c[np.take_along_axis(keys, order, axis=1)]
    out[:, q0 + 1:q0 + 2 * pairs:2] = vals_c[np.take_along_axis(vals, order, axis=1)]
    out[:, L - 1] = v.index("\n")
    scored = np.zeros((n, L), bool)
    scored[:, q0:q0 + 2 * pairs:2] = True
    return out, scored


TASKS = {t.name: t for t in (
    Task("lag", LAG_VOCAB, (5, 10, 20, 50, 100, 200), "lag", 1 / len(LAG_KEYS), lag_lines,
         "to keep one character across a span of filler"),
    Task("parity", PARITY_VOCAB, (2, 4, 8, 16, 32, 64), "bits", 0.5, parity_lines,
         "to track a state that every input changes (a running XOR)"),
    Task("mqar", MQAR_VOCAB, (1, 2, 4, 8, 16), "pairs", 1 / len(MQAR_VALUES), mqar_lines,
         "to store several items at once and recall each by its key"),
)}


def accuracy(model, task: Task, ids: np.ndarray, scored: np.ndarray,
             streams: int = 32) -> float:
    """Share of the scored positions of held-out lines (ids, scored: flat, as
    Task.corpus gives them) at which the model's likeliest next character is
    the right one, the lines run as streams with the state carried
    (spans.scored_accuracy)."""
    from .spans import scored_accuracy
    return scored_accuracy(model, ids, scored, task.vocab.index("\n"), streams,
                           f"{task.name} task")
