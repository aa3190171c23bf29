"""Text in, integer ids out.

The vocabulary is the sorted set of Unicode characters in the file. The text is
decoded and encoded in chunks, so memory stays near one byte per character
(uint8 ids when the vocabulary has at most 256 symbols), and no one-hot matrix
of the corpus is ever built. The corpora of the Makefile are made by
tools/corpora.py.
"""
from __future__ import annotations

import codecs
import hashlib
import os
import stat
import tempfile
from dataclasses import dataclass

import numpy as np

from .errors import CharlstmError

CHUNK = 1 << 22          # bytes decoded at a time
MMAP_BYTES = 32 << 20    # files larger than this are encoded into a memory-mapped file


@dataclass
class Corpus:
    vocab: str            # the symbols, sorted; id = index
    train: np.ndarray     # ids of the first (1 - val_frac) of the text
    val: np.ndarray       # ids of the rest
    sha256: str = ""      # the file's digest ("" for a text made in memory)

    @property
    def V(self) -> int:
        return len(self.vocab)


def _chunks(path: str, digest=None):
    """Decoded text of `path`, in pieces (`digest`, a hashlib object, is fed
    the raw bytes). Raises CharlstmError on bad input."""
    if not os.path.exists(path):
        raise CharlstmError(f"{path}: no such file; check the path")
    if os.path.isdir(path):
        raise CharlstmError(f"{path} is a folder; give a UTF-8 text file")
    if not stat.S_ISREG(os.stat(path).st_mode):
        raise CharlstmError(f"{path} is not a regular file (a pipe, a device or standard "
                            "input); charlstm reads its text more than once: save it to a "
                            "file first, e.g. cat ... > text.txt")
    dec = codecs.getincrementaldecoder("utf-8")()
    done = 0
    first = True
    try:
        with open(path, "rb") as fh:
            while True:
                raw = fh.read(CHUNK)
                if digest is not None:
                    digest.update(raw)
                try:
                    text = dec.decode(raw, final=not raw)
                except UnicodeDecodeError as e:
                    raise CharlstmError(
                        f"{path} is not UTF-8 text (bad byte at offset {done + e.start}); "
                        "convert it first, e.g. iconv -f latin1 -t utf-8") from None
                done += len(raw)
                if first and text:
                    text = text.removeprefix("\ufeff")     # a byte-order mark is not text
                    first = False
                if text:
                    yield text
                if not raw:
                    return
    except PermissionError:
        raise CharlstmError(f"{path}: permission denied; check the file's permissions") from None
    except IsADirectoryError:
        raise CharlstmError(f"{path} is a folder; give a UTF-8 text file") from None


def read_vocab(path: str, digest=None) -> str:
    chars: set[str] = set()
    for text in _chunks(path, digest):
        chars.update(text)
    if not chars:
        raise CharlstmError(f"{path} is empty; give a file with some text in it")
    return "".join(sorted(chars))


def id_dtype(V: int):
    return np.uint8 if V <= 256 else np.uint16 if V <= 65536 else np.uint32


def encode_file(path: str, vocab: str) -> np.ndarray:
    """The file's characters as ids into `vocab`, chunk by chunk. Large files
    go into an unlinked temporary file, memory-mapped, so the OS can page them."""
    table = np.full(max(map(ord, vocab)) + 1, -1, np.int32)
    table[[ord(ch) for ch in vocab]] = np.arange(len(vocab))
    size = os.path.getsize(path)
    dtype = id_dtype(len(vocab))
    if size > MMAP_BYTES:
        out = np.memmap(tempfile.TemporaryFile(), dtype, "w+", shape=(size,))
    else:
        out = np.empty(size, dtype)                # at most one char per byte
    n = 0
    for text in _chunks(path):
        if n + len(text) > len(out):
            raise CharlstmError(f"{path} grew while it was being read; train on a copy "
                                "that stays put")
        cps = np.frombuffer(text.encode("utf-32-le"), "<u4")
        ids = table[np.minimum(cps, len(table) - 1)]
        if (ids < 0).any() or cps.max() >= len(table):
            bad = sorted(set(text) - set(vocab))
            raise CharlstmError(f"characters {bad!r} are not in the vocabulary")
        out[n:n + len(ids)] = ids
        n += len(ids)
    return out[:n]


def encode_text(text: str, vocab: str) -> np.ndarray:
    """Ids of `text`; names the characters missing from `vocab`."""
    index = {ch: k for k, ch in enumerate(vocab)}
    bad = sorted(set(text) - set(index))
    if bad:
        raise CharlstmError(
            f"seed text has characters the model never saw: {''.join(bad)!r}; "
            "remove them or train on a text that has them")
    return np.array([index[ch] for ch in text], np.int64)


def vocab_from_ids(ids: np.ndarray, path: str) -> str:
    """The vocabulary of the file at `path` (a checkpoint or an export) from its
    code points: distinct Unicode scalar values (no surrogates), each a
    character that can be printed or written."""
    ids = np.asarray(ids).astype(np.int64)
    bad = ids[(ids < 0) | (ids > 0x10FFFF) | ((ids >= 0xD800) & (ids <= 0xDFFF))]
    if len(bad):
        raise CharlstmError(f"{path} is a damaged checkpoint: its vocabulary holds "
                            f"{int(bad[0]):#x}, which is not a Unicode character; retrain or "
                            "pick another file")
    if len(np.unique(ids)) != len(ids):
        raise CharlstmError(f"{path} is a damaged checkpoint: its vocabulary lists a "
                            "character twice; retrain or pick another file")
    return "".join(map(chr, ids.tolist()))


def read_text_for(path: str, vocab: str, label: str) -> str:
    """The whole text of `path`, every character of which must be in vocab."""
    text = "".join(_chunks(path))
    bad = sorted(set(text) - set(vocab))
    if bad:
        shown = "".join(bad[:20]) + ("…" if len(bad) > 20 else "")
        raise CharlstmError(f"{label} has {len(bad)} characters the model never saw "
                            f"({shown!r}); give a text in the model's alphabet")
    return text


def load_corpus(path: str, val_frac: float) -> Corpus:
    before = os.stat(path)
    h = hashlib.sha256()
    vocab = read_vocab(path, h)
    ids = encode_file(path, vocab)
    after = os.stat(path)
    if (before.st_size, before.st_mtime_ns) != (after.st_size, after.st_mtime_ns):
        raise CharlstmError(f"{path} changed while it was being read; train on a copy "
                            "that stays put")
    n_val = int(len(ids) * val_frac)
    return Corpus(vocab, ids[:len(ids) - n_val], ids[len(ids) - n_val:], h.hexdigest())


def file_sha256(path: str) -> str | None:
    """The SHA-256 of a regular file's bytes, read in blocks; None for
    anything else, or a file that yields more bytes than its size says (a
    /proc file, one growing), which is then no text charlstm trained on."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    if not stat.S_ISREG(st.st_mode):
        return None
    h = hashlib.sha256()
    left = st.st_size + 1
    with open(path, "rb") as fh:
        while left > 0:
            block = fh.read(min(1 << 20, left))
            if not block:
                break
            h.update(block)
            left -= len(block)
    return None if left <= 0 else h.hexdigest()


class Batches:
    """B streams through `ids`, each a contiguous stretch of L = len(ids) // B
    characters (the last len(ids) mod B < B are left out); batch k takes
    positions [kT, kT + T] of every stream, so the hidden state carried from one
    batch to the next continues the same text. Training takes the n whole
    batches of an epoch; batch n, the rest of each stream, is shorter than T."""

    def __init__(self, ids: np.ndarray, B: int, T: int):
        self.B, self.T = B, T
        self.L = L = len(ids) // B
        self.streams = ids[:B * L].reshape(B, L)
        self.n = (L - 1) // T        # whole batches per epoch

    def get(self, k: int):
        """Inputs and targets of batch k, each (T, B); for k = n, each (L − 1 − nT, B)."""
        T = self.T
        win = self.streams[:, k * T:k * T + T + 1].T
        return win[:-1], win[1:]
