"""What a file is, from its content, never its name: charlstm's own kinds
(a checkpoint, an export, a page, a JSON file, a study's journal, a log, a
picture: KINDS, each with the test that recognises it) and, for any other
file, a few words that say what it is (sniff). files.py decides from these
which files an output may replace."""
from __future__ import annotations

import json
import os
import stat
import zipfile
from dataclasses import dataclass
from typing import Callable


def loads(text):
    """json.loads of text from a file charlstm did not make: nesting too deep
    for the parser is a ValueError like any other malformed JSON."""
    try:
        return json.loads(text)
    except RecursionError:
        raise ValueError("nested too deeply") from None


def regular(path: str) -> bool:
    """Whether path is a regular file (through symlinks): only those are ever
    opened to be read here (opening a FIFO would wait for a writer for ever)."""
    try:
        return stat.S_ISREG(os.stat(path).st_mode)
    except OSError:
        return False


def _head(path: str, n: int = 4096) -> bytes:
    if not regular(path):
        return b""
    try:
        with open(path, "rb") as fh:
            return fh.read(n)
    except OSError:
        return b""


def _npz_format(path: str) -> str | None:
    """The `format` string of an .npz, read alone (a few bytes), or None."""
    if not regular(path):
        return None
    try:
        with zipfile.ZipFile(path) as zf:
            info = zf.getinfo("format.npy")
            if info.file_size > 4096:
                return None
            import numpy as np
            with zf.open(info) as fh:
                arr = np.lib.format.read_array(fh, allow_pickle=False)
            return str(arr) if arr.shape == () else None
    except (OSError, KeyError, ValueError, zipfile.BadZipFile, EOFError, RuntimeError,
            NotImplementedError):
        return None


def _safetensors_header(path: str) -> dict | None:
    head = _head(path, 8)               # (nothing for a file that is not regular)
    if len(head) < 8:
        return None
    n = int.from_bytes(head, "little")
    try:
        size = os.path.getsize(path)
    except OSError:
        return None
    if not 2 <= n <= min(size - 8, 100 << 20):
        return None
    try:
        with open(path, "rb") as fh:
            fh.seek(8)
            d = loads(fh.read(n).decode("utf-8"))
    except (OSError, ValueError, UnicodeDecodeError):
        return None
    return d if isinstance(d, dict) else None


def _varint(b: bytes, i: int) -> tuple[int, int]:
    out = shift = 0
    while True:
        if i >= len(b) or shift > 63:
            raise ValueError
        c = b[i]
        out |= (c & 0x7F) << shift
        i += 1
        if not c & 0x80:
            return out, i
        shift += 7


def onnx_producer(path: str) -> str | None:
    """An ONNX ModelProto's producer_name (field 2), read from the first
    bytes without the onnx package; None if the file does not parse as one."""
    b = _head(path, 4096)
    i = 0
    try:
        while i < len(b):
            tag, i = _varint(b, i)
            field, wire = tag >> 3, tag & 7
            if wire == 0:
                _, i = _varint(b, i)
            elif wire == 2:
                n, i = _varint(b, i)
                if field == 2:
                    return b[i:i + n].decode("utf-8")
                i += n
            else:
                return None
            if field not in (1, 2, 3, 4, 5, 6, 8, 14, 20, 25):
                return None
    except (ValueError, UnicodeDecodeError):
        return None
    return None


def _png_software(path: str) -> str | None:
    b = _head(path, 65536)
    if not b.startswith(b"\x89PNG\r\n\x1a\n"):
        return None
    i = 8
    while i + 8 <= len(b):
        n = int.from_bytes(b[i:i + 4], "big")
        kind = b[i + 4:i + 8]
        data = b[i + 8:i + 8 + n]
        if kind == b"tEXt" and data.startswith(b"Software\0"):
            return data[9:].decode("latin-1")
        if kind == b"IDAT":
            return None
        i += 12 + n
    return None


def json_doc(path: str, limit: int = 64 << 20):
    if not regular(path):
        return None
    try:
        if os.path.getsize(path) > limit:
            return None
        with open(path, encoding="utf-8") as fh:
            return loads(fh.read())
    except (OSError, ValueError, UnicodeDecodeError):
        return None


def _first_json_line(path: str):
    line = _head(path, 65536).split(b"\n", 1)[0]
    try:
        return loads(line.decode("utf-8"))
    except (ValueError, UnicodeDecodeError):
        return None


def is_checkpoint(path: str) -> bool:
    return _npz_format(path) == "charlstm-checkpoint"


def _is_safetensors(path: str) -> bool:
    h = _safetensors_header(path)
    return bool(h) and isinstance(h.get("__metadata__"), dict) and \
        h["__metadata__"].get("format") == "charlstm-safetensors"


def _is_page(path: str) -> bool:
    head = _head(path, 2048).decode("utf-8", "replace")
    return ('<meta name="generator" content="charlstm' in head
            or "<title>charlstm " in head)              # pages of earlier versions


def _is_json(path: str) -> bool:
    d = json_doc(path)
    if not isinstance(d, dict):
        return False
    return ("charlstm" in d
            or {"models", "cells", "probe"} <= set(d)            # compare's, earlier
            or {"trials", "space", "study"} <= set(d)            # tune's, earlier
            or set(d) == {"trial", "value"})                     # tune's best.json


def _is_journal(path: str) -> bool:
    d = _first_json_line(path)
    return isinstance(d, dict) and "op_code" in d


def _is_log(path: str) -> bool:
    d = _first_json_line(path)
    return isinstance(d, dict) and str(d.get("charlstm", "")).endswith("log")


def _is_sqlite_study(path: str) -> bool:
    if not _head(path, 16).startswith(b"SQLite format 3\0"):      # (regular files only)
        return False
    import sqlite3
    try:
        con = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            names = {r[0] for r in con.execute("select name from sqlite_master where type='table'")}
        finally:
            con.close()
    except sqlite3.Error:
        return False
    return "studies" in names and "trials" in names


@dataclass(frozen=True)
class Kind:
    name: str
    what: str                             # "a charlstm checkpoint", for messages
    recognise: Callable[[str], bool]


KINDS = {k.name: k for k in (
    Kind("checkpoint", "a charlstm checkpoint", is_checkpoint),
    Kind("safetensors", "a safetensors file exported by charlstm", _is_safetensors),
    Kind("onnx", "an ONNX model exported by charlstm", lambda p: onnx_producer(p) == "charlstm"),
    Kind("page", "a page written by charlstm", _is_page),
    Kind("png", "a picture drawn by charlstm",
         lambda p: (_png_software(p) or "").startswith("charlstm")),
    Kind("json", "a JSON report written by charlstm", _is_json),
    Kind("journal", "a charlstm tune study journal", _is_journal),
    Kind("log", "a charlstm training log", _is_log),
    Kind("sqlite", "a tune study database", _is_sqlite_study),
)}


def sniff(path: str) -> str:
    """What a file looks like, for messages: 'a text file', 'a PNG image', ..."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return "missing"
    except OSError as e:
        return f"unreadable ({os.strerror(e.errno).lower()})"
    if stat.S_ISDIR(st.st_mode):
        return "a folder"
    if not stat.S_ISREG(st.st_mode):
        return "not a regular file (a device, a pipe or a socket)"
    head = _head(path, 4096)
    if not head:
        return "an empty file"
    if head.startswith(b"PK\x03\x04"):
        fmt = _npz_format(path)
        if fmt == "charlstm-checkpoint":
            return "a charlstm checkpoint (.npz)"
        return "a ZIP archive (.npz) that charlstm did not write"
    if head.startswith(b"\x93NUMPY"):
        return "a single NumPy array (.npy)"
    if _safetensors_header(path) is not None:          # (its length may start with 0x80)
        return ("a safetensors file exported by charlstm" if _is_safetensors(path)
                else "a safetensors file that charlstm did not export")
    if head[:1] == b"\x80":
        return "a Python pickle"
    if head.startswith(b"\x89PNG"):
        return "a PNG image"
    if head.startswith(b"SQLite format 3\0"):
        return "an SQLite database"
    if head.startswith((b"\x7fELF", b"MZ")):
        return "a program"
    producer = onnx_producer(path)
    if producer is not None:
        return f"an ONNX model ({producer or 'no producer'})"
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError as e:
        if e.start < len(head) - 4:
            return "a binary file"
        text = head[:e.start].decode("utf-8")
    low = text.lstrip().lower()
    if low.startswith(("<!doctype html", "<html")):
        return "an HTML page"
    if low.startswith(("{", "[")) and json_doc(path) is not None:
        return "a JSON file"
    return "a text file"
