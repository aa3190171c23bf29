"""The memory tasks: lines as described, the scored positions where only the
memory predicts the next character, and the accuracy counted there."""
import numpy as np
import pytest

from charlstm.lab import tasks as K
from charlstm.config import ModelConfig
from charlstm.model import Model


def test_parity_lines_end_in_the_parity_of_their_bits():
    ids, scored = K.parity_lines(7, 400, np.random.default_rng(0))
    assert ids.shape == (400, 10)
    lengths = []
    for row, mark in zip(ids, scored):
        line = K.TASKS["parity"].text(row)
        assert line.endswith("\n") and line.count("=") == 1
        bits, par = line[:-1].lstrip("\n").split("=")   # blank lines pad it in front
        assert set(bits) <= {"0", "1"} and 1 <= len(bits) <= 7
        assert par == str(bits.count("1") % 2)
        assert list(np.flatnonzero(mark)) == ([7] if len(bits) > 3 else [])   # the longer half's "="
        lengths.append(len(bits))
    assert set(lengths) == set(range(1, 8))                  # every length, short to long


def test_mqar_queries_every_key_once_with_its_value():
    ids, scored = K.mqar_lines(5, 100, np.random.default_rng(1))
    for line, row in zip(K.TASKS["mqar"].text(ids).split("\n")[:-1], scored):
        pairs, queries = line.split(":")
        kv = dict(zip(pairs[0::2], pairs[1::2]))
        assert len(kv) == 5 and sorted(queries[0::2]) == sorted(kv)
        assert all(kv[k] == v for k, v in zip(queries[0::2], queries[1::2]))
        q0 = 2 * 5 + 1
        assert list(np.flatnonzero(row)) == list(range(q0, q0 + 10, 2))   # each query key


def test_lag_lines_match_the_probe():
    from charlstm.lab import spans as M
    a, _ = K.lag_lines(6, 50, np.random.default_rng(3))
    b = M.probe_ids(6, 50, np.random.default_rng(3))
    assert K.LAG_VOCAB == M.probe_vocab() and (a == b).all()


@pytest.mark.parametrize("name", list(K.TASKS))
def test_accuracy_counts_only_scored_positions_after_a_streams_first_newline(name):
    """A model that predicts nothing useful scores near chance; scoring the
    held-out lines of every task runs and stays in [0, 1]."""
    task = K.TASKS[name]
    corpus, scored = task.corpus(task.difficulties[1], train_chars=2000, val_lines=300)
    m = Model(ModelConfig(hidden=8, dropout=0.0, vocab_size=len(task.vocab)))
    m.init(np.random.default_rng(0))
    acc = K.accuracy(m, task, corpus.val, scored)
    assert 0.0 <= acc <= 1.0
    assert len(scored) == len(corpus.val) and scored.any()
