"""The features of a text that `charlstm inspect` scores units against: the
value of each after reading each character (line position, bracket depth,
inside quotes, word position, inside a comment, indentation, a sentence's
start, a line in capitals): FEATURES, each with what it counts, and
features(), those that vary over a text."""
from __future__ import annotations

import numpy as np


OPEN, CLOSE = "([{", ")]}"


def line_position(text: str) -> np.ndarray:
    """Characters read since the last newline (0 on the newline itself)."""
    out = np.empty(len(text), np.float32)
    n = 0
    for t, ch in enumerate(text):
        n = 0 if ch == "\n" else n + 1
        out[t] = n
    return out


def bracket_depth(text: str) -> np.ndarray:
    """How many of ( [ { are open (never below 0)."""
    out = np.empty(len(text), np.float32)
    d = 0
    for t, ch in enumerate(text):
        if ch in OPEN:
            d += 1
        elif ch in CLOSE:
            d = max(0, d - 1)
        out[t] = d
    return out


def in_quotes(text: str) -> np.ndarray:
    """1 from a '"' up to the next '"' (the opening quote counts as inside, the
    closing one as outside), else 0."""
    out = np.empty(len(text), np.float32)
    q = 0
    for t, ch in enumerate(text):
        if ch == '"':
            q = 1 - q
        out[t] = q
    return out


def word_position(text: str) -> np.ndarray:
    """Letters read since the word began (0 outside a word)."""
    out = np.empty(len(text), np.float32)
    n = 0
    for t, ch in enumerate(text):
        n = n + 1 if ch.isalpha() or (ch == "'" and n) else 0
        out[t] = n
    return out


def in_comment(text: str) -> np.ndarray:
    """1 inside a comment: # or // to the end of the line, /* to */. The
    character that makes a comment (#, the second / of //, the * of /*) and the
    closing / are inside; the newline that ends a line comment is not."""
    out = np.zeros(len(text), np.float32)
    state, prev = 0, ""                 # 0 code, 1 line comment, 2 block comment
    for t, ch in enumerate(text):
        if state == 0 and (ch == "#" or (prev == "/" and ch == "/")):
            state = 1
        elif state == 0 and prev == "/" and ch == "*":
            state = 2
        elif state == 1 and ch == "\n":
            state = 0
        elif state == 2 and prev == "*" and ch == "/":
            out[t] = 1
            state, ch = 0, ""
        out[t] = max(out[t], state > 0)
        prev = ch
    return out


def indentation(text: str) -> np.ndarray:
    """The width of the current line's leading spaces (a tab counts 4), as read so far."""
    out = np.empty(len(text), np.float32)
    width, leading = 0, True
    for t, ch in enumerate(text):
        if ch == "\n":
            width, leading = 0, True
        elif leading and ch in " \t":
            width += 4 if ch == "\t" else 1
        else:
            leading = False
        out[t] = width
    return out


def sentence_start(text: str) -> np.ndarray:
    """1 from the end of a sentence (. ! ? and the space or newline after it)
    until the next letter, which starts the next sentence."""
    out = np.zeros(len(text), np.float32)
    state = 0                           # 0 in a sentence, 1 after . ! ?, 2 waiting for a letter
    for t, ch in enumerate(text):
        if ch in ".!?":
            state = 1
        elif state == 1 and ch in " \n":
            state = 2
        elif state == 1:
            state = 0
        elif state == 2 and ch.isalpha():
            state = 0
        out[t] = state == 2
    return out


def caps_line(text: str) -> np.ndarray:
    """1 while the current line so far has two or more letters, all capitals
    (a speaker's name: "ROMEO.")."""
    out = np.zeros(len(text), np.float32)
    letters, lower = 0, False
    for t, ch in enumerate(text):
        if ch == "\n":
            letters, lower = 0, False
        elif ch.isalpha():
            letters += 1
            lower = lower or not ch.isupper()
        out[t] = letters >= 2 and not lower
    return out


FEATURES = {
    "line_position": (line_position, "characters since the last newline"),
    "bracket_depth": (bracket_depth, "nesting depth of ( [ {"),
    "in_quotes": (in_quotes, 'inside "double quotes"'),
    "word_position": (word_position, "letters since the word began"),
    "in_comment": (in_comment, "inside a # or // line comment or a /* */ block"),
    "indentation": (indentation, "leading spaces of the line"),
    "sentence_start": (sentence_start, "between a sentence's end and the next one's first letter"),
    "caps_line": (caps_line, "a line of capitals so far, such as a speaker's name"),
}


def features(text: str) -> dict[str, np.ndarray]:
    """Every feature that varies over this text (a constant one says nothing)."""
    out = {}
    for name, (fn, _) in FEATURES.items():
        v = fn(text)
        if len(v) and v.min() != v.max():
            out[name] = v
    return out
