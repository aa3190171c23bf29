"""How far back a trained model remembers: the measurements behind `compare`.

- The memory probe (Hochreiter & Schmidhuber 1997, in small): a generated text
  in which one character per line can be predicted only by remembering a key
  seen `lag` characters earlier.
- The context curve (Khandelwal et al. 2018): the loss of the next character
  given only the last k characters, the state zeroed before each context.
- The recall scores of a passage from the training text (the LSTM-versus-RNN
  demo of the lecture notes the project grew from): the exact prefix a greedy
  continuation reproduces, and the teacher-forced accuracy.
- Gradient flow: |∂L_t/∂h_(t−k)| and |∂L_t/∂c_(t−k)| per unit, k steps back.

Everything runs through Model.forward, the jitted kernels, in windows of a
bounded number of steps and streams, so memory stays bounded whatever the
number of positions or the length of a context (chunk_shape).
"""
from __future__ import annotations

import numpy as np

from .. import kernels
from .. import stopping
from ..errors import CharlstmError
from ..model import Model, Workspace

# ---------------------------------------------------------------------------
# Evaluation in bounded chunks.

CHUNK_BYTES = 128 << 20      # a Workspace's saved gates (T·B·G floats) stay under this


def chunk_shape(model: Model, steps: int, streams: int,
                budget: int | None = None) -> tuple[int, int]:
    """(T, B) for running `streams` streams of `steps` steps through
    Model.forward with at most CHUNK_BYTES of saved gates: the forward pass
    saves every gate for backprop, T·B·G floats, so a naive single pass over
    thousands of streams of hundreds of steps runs out of memory."""
    budget = CHUNK_BYTES if budget is None else budget
    G = model.cell.gates * model.cfg.hidden * model.cfg.layers
    per = max(1, G + model.cfg.vocab_size) * model.dtype.itemsize
    B = max(1, min(streams, 512))
    T = max(1, min(steps, budget // (per * B)))
    if T < 16 and B > 16:                       # a very wide model: fewer streams at once
        B = max(1, min(streams, budget // (per * 16)))
        T = max(1, min(steps, budget // (per * B)))
    return T, B


def run_streams(model: Model, tokens: np.ndarray, visit, h=None, c=None,
                budget: int | None = None):
    """Feed tokens (N, S) — S streams of N steps — through the model, the state
    carried from step to step (zero at the start unless h, c (L, S, H) are
    given), in chunks of chunk_shape. visit(t0, s0, logits) gets each chunk's
    logits (T, b, V) for steps t0.. and streams s0.. (a view: copy what is
    kept). budget: bytes of saved gates a chunk may hold (chunk_shape).
    Returns the final (h, c)."""
    N, S = tokens.shape
    T, B = chunk_shape(model, N, S, budget)
    zero_h, zero_c = model.zero_state(S)
    h = zero_h if h is None else h
    c = zero_c if c is None else c
    ws = Workspace(model.cfg, T, B, model.dtype, backward=False)
    packs = model.packed_Wh(backward=False)
    hT, cT = np.empty_like(h), np.empty_like(c)
    with np.errstate(over="ignore", invalid="ignore"):
        for s0 in range(0, S, B):
            b = min(B, S - s0)
            hb, cb = np.zeros_like(h[:, :B]), np.zeros_like(c[:, :B])
            hb[:, :b], cb[:, :b] = h[:, s0:s0 + b], c[:, s0:s0 + b]
            for t0 in range(0, N, T):
                stopping.check()             # between chunks: safe to stop
                t = min(T, N - t0)
                w = ws if t == T else ws.first(t)
                tok = np.zeros((t, B), np.intp)
                tok[:, :b] = tokens[t0:t0 + t, s0:s0 + b]
                logits = model.forward(w, tok, hb, cb, packs=packs).reshape(t, B, -1)
                visit(t0, s0, logits[:, :b])
                hb, cb = model.final_state(w)
            hT[:, s0:s0 + b], cT[:, s0:s0 + b] = hb[:, :b], cb[:, :b]
    return hT, cT


def log_softmax_at(logits: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """log p(target) for rows of logits (..., V), in float64."""
    z = logits.astype(np.float64)
    z = z - z.max(axis=-1, keepdims=True)
    lse = np.log(np.exp(z).sum(axis=-1))
    return np.take_along_axis(z, targets[..., None].astype(np.intp), -1)[..., 0] - lse


# ---------------------------------------------------------------------------
# The memory probe.

PROBE_KEYS = "ABCDEFGH"                 # the remembered character: chance is 1/8
PROBE_FILLER = "abcdefghijklmnop"       # what comes between, independent of the key
PROBE_MARK = "="                        # "now recall the key"


def probe_vocab() -> str:
    return "".join(sorted(set(PROBE_KEYS + PROBE_FILLER + PROBE_MARK + "\n")))


def probe_ids(lag: int, n: int, rng: np.random.Generator) -> np.ndarray:
    """n lines of the memory probe at this lag, as ids into probe_vocab(),
    (n, lag + 4):

        key, then `lag` filler characters, then "=", then the key again, "\n"

    e.g. "C" + "hpkd…" + "=" + "C". The key is uniform over PROBE_KEYS and the
    filler uniform over PROBE_FILLER, drawn independently of the key, so the
    last key can only be predicted by remembering the first across lag + 1
    steps (from reading the key to reading "="); every other character is
    either unpredictable (keys, filler) or predictable without memory
    ("=" by counting, "\n" after the recalled key)."""
    vocab = probe_vocab()
    code = lambda chars: np.array([vocab.index(ch) for ch in chars], np.uint8)  # noqa: E731
    keys = code(PROBE_KEYS)[rng.integers(0, len(PROBE_KEYS), n)]
    out = np.empty((n, lag + 4), np.uint8)
    out[:, 0] = keys
    out[:, 1:lag + 1] = code(PROBE_FILLER)[rng.integers(0, len(PROBE_FILLER), (n, lag))]
    out[:, lag + 1] = vocab.index(PROBE_MARK)
    out[:, lag + 2] = keys
    out[:, lag + 3] = vocab.index("\n")
    return out


def probe_text(ids: np.ndarray) -> str:
    vocab = probe_vocab()
    return "".join(vocab[i] for i in np.asarray(ids).reshape(-1))


def probe_corpus(lag: int, train_chars: int = 1_000_000, val_lines: int = 2000,
                 seed: int = 0):
    """The probe's training text (about train_chars characters of whole lines)
    and held-out lines, drawn from separate random streams."""
    from ..data import Corpus
    line = lag + 4
    train = probe_ids(lag, max(1000, train_chars // line), np.random.default_rng([seed, lag, 0]))
    val = probe_ids(lag, val_lines, np.random.default_rng([seed, lag, 1]))
    return Corpus(probe_vocab(), train.reshape(-1), val.reshape(-1))


def probe_accuracy(model: Model, ids: np.ndarray, vocab: str, streams: int = 32) -> float:
    """Share of the recall positions in ids (held-out probe lines: the "=" of
    each line) at which the model's likeliest next character is the line's
    key (scored_accuracy)."""
    return scored_accuracy(model, ids, ids == vocab.index(PROBE_MARK), vocab.index("\n"),
                           streams, "probe")


def scored_accuracy(model: Model, ids: np.ndarray, scored: np.ndarray, newline: int,
                    streams: int = 32, what: str = "task") -> float:
    """Share of the scored positions of held-out lines (ids, scored: flat) at
    which the model's likeliest next character is the right one. The text
    runs as `streams` contiguous streams with the state carried, as in
    training; a stream starts inside a line, so only the positions after its
    first newline (id `newline`), whose line it has read from the start, are
    scored."""
    L = len(ids) // streams
    if L < 2:
        raise CharlstmError(f"too few held-out {what} lines to score")
    grid = ids[:streams * L].reshape(streams, L)
    mask = np.asarray(scored)[:streams * L].reshape(streams, L)
    first_nl = np.argmax(grid == newline, axis=1)                # per stream
    t_of = np.arange(L)[:, None]
    right = total = 0

    def visit(t0, s0, logits):
        nonlocal right, total
        t, b = logits.shape[:2]
        n = min(t, L - 1 - t0)                                    # steps with a next char
        at = mask[s0:s0 + b, t0:t0 + n].T & (t_of[t0:t0 + n] > first_nl[None, s0:s0 + b])
        nxt = grid[s0:s0 + b, t0 + 1:t0 + n + 1].T                # their next characters
        guess = logits[:n].argmax(axis=-1)
        right += int((guess[at] == nxt[at]).sum())
        total += int(at.sum())

    run_streams(model, np.ascontiguousarray(grid.T), visit)
    return right / total if total else float("nan")


def memory_span(lags, accuracy, threshold: float = 0.9):
    """The largest lag solved to at least `threshold`, or None."""
    ok = [lag for lag, a in zip(lags, accuracy) if a is not None and a >= threshold]
    return max(ok) if ok else None


# ---------------------------------------------------------------------------
# The context curve.

def context_ks(k_max: int = 512) -> list[int]:
    """1, 2, 4, … up to k_max, which is included."""
    ks, k = [], 1
    while k < k_max:
        ks.append(k)
        k *= 2
    return ks + [k_max]


def context_positions(n_ids: int, k_max: int, n: int, seed: int = 0) -> np.ndarray:
    """n scored positions p, each with k_max characters before it (p ≥ k_max),
    drawn without replacement with a fixed seed and sorted. The same positions
    serve every k."""
    avail = n_ids - k_max
    if avail <= 0:
        raise CharlstmError(f"the held-out text ({n_ids:,} characters) is shorter than the "
                            f"longest context ({k_max}); lower --context-max or use a longer "
                            "text")
    n = min(n, avail)
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(avail, n, replace=False)) + k_max


def context_curve(model: Model, ids: np.ndarray, ks, positions: np.ndarray) -> np.ndarray:
    """Mean loss (nats/char) of ids[p] given only ids[p−k : p], from a zero
    state, over the same positions p for every k in ks. Returns (len(ks),)."""
    out = np.empty(len(ks))
    for j, k in enumerate(ks):
        ctx = ids[positions[None, :] + np.arange(-k, 0)[:, None]]        # (k, P)
        last = np.empty((len(positions), model.cfg.vocab_size), model.dtype)

        def visit(t0, s0, logits, k=k, last=last):
            if t0 + logits.shape[0] == k:                                  # the last chunk
                last[s0:s0 + logits.shape[1]] = logits[-1]

        run_streams(model, np.ascontiguousarray(ctx), visit)
        out[j] = -log_softmax_at(last, ids[positions]).mean()
    return out


def context_span(ks, loss, tol: float = 0.01):
    """The smallest k whose loss is within tol nats/char of the loss at the
    largest k (None when the curve is not finite)."""
    loss = np.asarray(loss, float)
    if not np.all(np.isfinite(loss)):
        return None
    return int(ks[int(np.flatnonzero(loss <= loss[-1] + tol)[0])])


# ---------------------------------------------------------------------------
# Recall of training passages.

def exact_prefix(guess, truth) -> int:
    """Characters of `truth` reproduced before the first mistake."""
    guess, truth = np.asarray(guess), np.asarray(truth)
    n = min(len(guess), len(truth))
    wrong = np.flatnonzero(guess[:n] != truth[:n])
    return int(wrong[0]) if len(wrong) else n


def teacher_forced_accuracy(model: Model, prime: np.ndarray, truth: np.ndarray) -> float:
    """Share of truth's characters that are the model's likeliest next character
    given the true history (prime, then truth so far), from a zero state: how
    much of the passage is memorised, without the cascade that follows a
    greedy continuation's first miss."""
    seq = np.concatenate([prime, truth]).astype(np.intp)
    guess = np.empty(len(seq) - 1, np.int64)

    def visit(t0, s0, logits):
        guess[t0:t0 + logits.shape[0]] = logits[:, 0].argmax(axis=-1)[:len(seq) - 1 - t0]

    run_streams(model, seq[:-1, None].copy(), visit)
    return float((guess[len(prime) - 1:] == truth).mean())


# ---------------------------------------------------------------------------
# Gradient flow.

def gradient_flow(model: Model, ids: np.ndarray, T: int, B: int = 16) -> dict:
    """How much of the loss at one step reaches the state k steps back.

    L_t is the loss at the last step of a T-step window of held-out text, in B
    streams, each first run T steps for a realistic state; h, c are the first
    layer's states, so every path back through time and through the layers
    above counts. For k = 0..T and each unit j, g[k, j] is the mean over the
    streams of |∂L_t/∂h_(t−k), j|, and likewise for c where the cell has one.
    Runs on a float64 copy of the model, so that a vanishing gradient is
    measured rather than underflowing.

    Returns, for "h" and (or None) "c", lists over k of "norm" (mean over the
    streams of the whole vector's norm) and "median", "p90" and "max" over the
    units of g[k]; each list is divided by its own value at k = 0."""
    model = Model(model.cfg, np.float64, model.flat.astype(np.float64))
    T = min(T, (len(ids) - 1) // (2 * B) - 1)
    if T < 2:
        raise CharlstmError("too little held-out text to measure gradient flow")
    L = len(ids) // B
    streams = ids[:B * L].reshape(B, L)
    ws = Workspace(model.cfg, T, B, model.dtype)
    h, c = model.zero_state(B)
    with np.errstate(over="ignore", invalid="ignore"):
        model.forward(ws, streams[:, :T].T, h, c)                  # warm-up window
        h, c = model.final_state(ws)
        x, y = streams[:, T:2 * T].T, streams[:, T + 1:2 * T + 1].T
        logits = model.forward(ws, x, h, c)
        dlogits = np.zeros_like(logits)
        last = slice((T - 1) * B, T * B)                             # only L at the last step
        kernels.softmax_xent(dlogits[last], np.ascontiguousarray(logits[last]),
                             np.ascontiguousarray(y[-1], dtype=np.intp), 1.0)
        model.grad[:] = 0
        model.backward(ws, dlogits)
    w, H = ws.layers[0], model.cfg.hidden
    out = {"T": T, "h": _flow_stats(w["dhs"][T::-1]),                # c alone: the sLSTM's
           "c": _flow_stats(w["dcs"][T::-1, :, :H]) if model.cell.has_c else None}  # n, m follow it
    return out


def _flow_stats(d: np.ndarray) -> dict:
    """d: (k, B, H) gradients → per-k statistics, each relative to k = 0."""
    per_unit = np.abs(d).mean(axis=1)                               # (k, H)
    stats = {"norm": np.linalg.norm(d, axis=2).mean(axis=1),
             "median": np.median(per_unit, axis=1),
             "p90": np.percentile(per_unit, 90, axis=1),
             "max": per_unit.max(axis=1)}
    out = {}
    for name, s in stats.items():
        s0 = s[0] if s[0] > 0 else 1.0
        out[name] = [float(v) for v in s / s0]
    return out


def horizon(g, frac: float = 0.01):
    """The first k at which g(k) < frac * g(0); None if it never does."""
    g = np.asarray(g, float)
    below = np.flatnonzero(~(g >= frac * g[0]))
    return int(below[0]) if len(below) else None
