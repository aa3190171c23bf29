import numpy as np
import pytest

from charlstm.data import Batches, encode_text, load_corpus
from charlstm.errors import CharlstmError


def test_split_and_vocab(tmp_path):
    p = tmp_path / "t.txt"
    p.write_text("abcdefghij" * 10, encoding="utf-8")
    c = load_corpus(str(p), 0.1)
    assert c.vocab == "abcdefghij" and len(c.train) == 90 and len(c.val) == 10
    assert c.train.dtype == np.uint8


def test_large_vocabulary_uses_wider_ids(tmp_path):
    p = tmp_path / "cjk.txt"
    p.write_text("".join(chr(0x4E00 + k) for k in range(300)), encoding="utf-8")
    c = load_corpus(str(p), 0.0)
    assert c.train.dtype == np.uint16 and c.V == 300


def test_batches_continue_the_text_across_batches():
    ids = np.arange(1000)
    b = Batches(ids, B=4, T=10)
    x0, y0 = b.get(0)
    x1, _ = b.get(1)
    assert x0.shape == (10, 4)
    np.testing.assert_array_equal(y0, x0 + 1)              # targets are the next char
    np.testing.assert_array_equal(x1[0], x0[-1] + 1)       # batch 1 continues batch 0
    np.testing.assert_array_equal(x0[0], [0, 250, 500, 750])


def test_unknown_seed_characters_are_named():
    with pytest.raises(CharlstmError, match="'xz'"):
        encode_text("axz", "abc")
