"""`charlstm inspect`: what the cells of a trained model do (Karpathy, Johnson &
Fei-Fei 2015, "Visualizing and Understanding Recurrent Networks").

record() runs a text through the model as one stream, through the jitted
forward kernels in chunks, and keeps every layer's h, c and gate activations.
features() (features.py) computes properties of the text itself (line position, bracket
depth, inside quotes, ...). rank_units() scores every unit of every layer and
state against each feature; saturation() and counters() read the gates.
The terminal and HTML views are in view.py.

The score of a unit for a feature is a rank statistic of its value after each
character against the feature's value there, 1 for a perfect relation and 0
for none, whatever the unit's scale or squashing (tanh, σ):
- a count (line position, depth): Spearman's |ρ|;
- a yes-or-no feature (in quotes): 2·|AUC − ½| (Somers' D), where AUC is the
  chance that the unit is higher at a random character inside than at one
  outside. Spearman's ρ would not do here: against a feature that holds for
  10% of the text, a unit that separates the two perfectly reaches only 0.53,
  so rare features would never look tracked; the AUC does not depend on how
  rare the feature is.
"""
from __future__ import annotations

import numpy as np

from ... import stopping
from ...errors import CharlstmError
from ...words import path_arg, shell_line
from ...cells import CELLS
from ...model import Model, Workspace
from .features import features
# The features, as tests read them here.
from .features import (FEATURES, bracket_depth, caps_line, in_comment,  # noqa: F401
                       in_quotes, indentation,
                       line_position, sentence_start, word_position)

CHUNK_BYTES = 16 << 20         # the forward pass's workspace, a chunk of text at a time


# ---------------------------------------------------------------------------
# Recording.

def record(model: Model, ids: np.ndarray) -> dict:
    """Run ids (N,) through the model as one stream from a zero state.
    Returns {"h": (L, N, H), "c": (L, N, H) or None, "gates": {name: (L, N, H)},
    "logits": (N, V)}: the state after reading each character, each gate's
    activation at that step, and the scores of the next character."""
    cfg, cell = model.cfg, model.cell
    N, L, H = len(ids), cfg.layers, cfg.hidden
    G = cell.gates * H
    T = int(max(1, min(N, CHUNK_BYTES // ((G + 3 * H + cfg.vocab_size) * L * 4 * 2))))
    ws = Workspace(cfg, T, 1, model.dtype, backward=False)
    packs = model.packed_Wh(backward=False)
    names = cell.gate_names
    out = {"h": np.empty((L, N, H), np.float16),                 # (in [-1, 1])
           "c": np.empty((L, N, H), np.float32) if cell.has_c else None,
           "gates": {g: np.empty((L, N, H), np.float16) for g in names},   # (in [0, 1]
                                                                           # or [-1, 1])
           "logits": np.empty((N, cfg.vocab_size), np.float32)}
    h, c = model.zero_state(1)
    with np.errstate(over="ignore", invalid="ignore"):
        for t0 in range(0, N, T):
            stopping.check()
            t = min(T, N - t0)
            w = ws if t == T else ws.first(t)
            out["logits"][t0:t0 + t] = model.forward(w, ids[t0:t0 + t, None], h, c,
                                                     packs=packs)
            for l, lay in enumerate(w.layers):
                out["h"][l, t0:t0 + t] = lay["hs"][1:, 0]
                if out["c"] is not None:
                    out["c"][l, t0:t0 + t] = lay["cs"][1:, 0, :H]    # (sLSTM: c, not n, m)
                for k, g in enumerate(names):
                    out["gates"][g][l, t0:t0 + t] = lay["acts"][:, 0, k * H:(k + 1) * H]
            h, c = model.final_state(w)
    return out


def states(rec: dict) -> dict[str, np.ndarray]:
    """Every recorded quantity by name, each (L, N, H): c first (the memory),
    then h, then the gates."""
    out = {} if rec["c"] is None else {"c": rec["c"]}
    out["h"] = rec["h"]
    out.update(rec["gates"])
    return out


# ---------------------------------------------------------------------------
# Scoring units against features.

def rank_average(x: np.ndarray) -> np.ndarray:
    """Ranks of x (1-d), tied values sharing their average rank."""
    order = np.argsort(x, kind="mergesort")
    xs = x[order]
    edges = np.flatnonzero(np.diff(xs)) + 1
    starts = np.concatenate([[0], edges])
    ends = np.concatenate([edges, [len(x)]])
    avg = (starts + ends - 1) / 2.0
    ranks = np.empty(len(x))
    ranks[order] = np.repeat(avg, ends - starts)
    return ranks


def rank_columns(values: np.ndarray) -> np.ndarray:
    """rank_average of every column of values (N, U) at once, counting from 0:
    sort each column, give each run of equal values the mean of its
    positions, and put the ranks back in the columns' order. Works on rows of
    the transpose, so that every sort runs over contiguous memory; ranks are
    float32, exact for halves below 2²³."""
    v = np.ascontiguousarray(values.T)                     # (U, N)
    U, N = v.shape
    order = np.argsort(v, axis=1).astype(np.int32)
    srt = np.take_along_axis(v, order, 1)
    pos = np.broadcast_to(np.arange(N, dtype=np.int32), (U, N))
    new = np.ones((U, N), bool)
    np.not_equal(srt[:, 1:], srt[:, :-1], out=new[:, 1:])   # a run of ties starts here
    if new.all():                                          # no ties: ranks are positions
        ranks = pos.astype(np.float32)
    else:
        start = np.maximum.accumulate(np.where(new, pos, 0), axis=1)
        last = np.ones((U, N), bool)
        last[:, :-1] = new[:, 1:]                          # ... and ends here
        end = np.minimum.accumulate(np.where(last, pos, N)[:, ::-1], axis=1)[:, ::-1]
        ranks = (start + end).astype(np.float32) * np.float32(0.5)
    out = np.empty((U, N), np.float32)
    np.put_along_axis(out, order, ranks, 1)
    return out.T


def centred_ranks(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each column of values (N, U) as average ranks minus their mean, and each
    column's norm: Spearman's ρ of two columns is then a dot product of unit
    vectors."""
    r = rank_columns(values).astype(np.float64)
    r -= r.mean(axis=0)
    return r, np.sqrt((r * r).sum(axis=0))


def spearman(values: np.ndarray, feature: np.ndarray) -> np.ndarray:
    """Spearman's ρ between each column of values (N, U) and feature (N,),
    tied ranks averaged; 0 for a constant column."""
    r, rn = centred_ranks(values)
    f, fn = centred_ranks(feature[:, None])
    den = rn * fn[0]
    return np.where(den > 0, (f[:, 0] @ r) / np.where(den > 0, den, 1), 0.0)


def is_binary(f: np.ndarray) -> bool:
    return bool(np.isin(f, (0.0, 1.0)).all())


def unit_scores(ranks: np.ndarray, feature: np.ndarray) -> np.ndarray:
    """Signed scores in [−1, 1] of units whose values have the average ranks
    `ranks` (N, U), against a feature (N,): Spearman's ρ for a count, 2·AUC − 1
    for a yes-or-no feature (see the module's docstring)."""
    N = len(feature)
    if is_binary(feature):
        pos = feature == 1
        n1 = int(pos.sum())
        n0 = N - n1
        auc = (ranks[pos].sum(axis=0) + n1 - n1 * (n1 + 1) / 2) / (n1 * n0)   # ranks from 0
        return 2 * auc - 1
    f, fn = centred_ranks(feature[:, None])
    r = ranks - ranks.mean(axis=0, dtype=np.float64).astype(np.float32)
    den = np.sqrt(np.einsum("nu,nu->u", r, r, dtype=np.float64)) * fn[0]
    num = f[:, 0].astype(np.float32) @ r
    return np.where(den > 0, num / np.where(den > 0, den, 1), 0.0)


MIN_RUNS = 20          # a feature with fewer runs is "too few to score" (see support)
NULL_SHIFTS = 19       # circular shifts for the chance level: the largest of 19 is about
                       # the 95th percentile of the best score a feature's runs get by chance
BLOCK = 64             # units ranked at a time: ranking work of ~40 bytes a value


def support(f: np.ndarray) -> dict:
    """How much of the text a feature covers: the positions where it is above
    0, and how many runs of them there are (quoted strings, bracketed groups,
    lines, words). A score can only be as good as its runs are many: with a
    handful of runs, among thousands of units some separate them by chance."""
    on = f > 0
    runs = int(np.count_nonzero(np.diff(on.view(np.int8), prepend=0) == 1))
    return {"positions": int(on.sum()), "runs": runs}


def _columns(f: np.ndarray, shifts) -> np.ndarray:
    """The feature's scoring columns (N, 1 + len(shifts)): for a yes-or-no
    feature the indicator, for a count its centred ranks; then the same
    circularly shifted by each of `shifts` (the runs keep their lengths and
    spacing but no longer line up with the text)."""
    if is_binary(f):
        base = (f == 1).astype(np.float32)
    else:
        base = centred_ranks(f[:, None])[0][:, 0].astype(np.float32)
    return np.stack([base] + [np.roll(base, int(k)) for k in shifts], axis=1)


def _block_scores(ranks: np.ndarray, f: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """Signed scores (1 + shifts, U) of units with average ranks `ranks`
    (N, U) against the columns of _columns: 2·AUC − 1 for a yes-or-no feature,
    Spearman's ρ for a count (unit_scores, for many columns at once)."""
    N = len(f)
    if is_binary(f):
        n1 = float(cols[:, 0].sum())
        n0 = N - n1
        sums = cols.T @ ranks                                  # ranks from 0
        return 2 * (sums + n1 - n1 * (n1 + 1) / 2) / (n1 * n0) - 1
    r = ranks - ranks.mean(axis=0, dtype=np.float64).astype(np.float32)
    den = (np.sqrt(np.einsum("nu,nu->u", r, r, dtype=np.float64))
           * np.sqrt(float(cols[:, 0] @ cols[:, 0])))
    return np.where(den > 0, (cols.T @ r) / np.where(den > 0, den, 1), 0.0)


def rank_units(rec: dict, feats: dict[str, np.ndarray], top: int = 5,
               shifts: int = NULL_SHIFTS, seed: int = 0) -> tuple[dict, dict]:
    """For each feature, the `top` units of any layer and state that track it
    best: [{"layer", "unit", "state", "score", "sign"}], best first; ties (equal
    to the 4 decimals reported) go to c, then h, then the gates (the order of
    states()). And for each feature its support and chance level:
    {"positions", "runs", "chance", "status"}, where chance is the best score
    any unit reaches against the feature shifted round the text (the largest
    over `shifts` shifts), and status is "scored", or "too few to score"
    below MIN_RUNS runs, when no unit is ranked. Every unit's values are
    ranked once, a block of BLOCK units at a time (bounded memory)."""
    rng = np.random.default_rng(seed)
    info, cols, rows, null = {}, {}, {}, {}
    for name, f in feats.items():
        N = len(f)
        info[name] = support(f)
        lo, hi = max(1, N // 10), max(2, N - N // 10)
        cols[name] = _columns(f, rng.integers(lo, hi, shifts) if N > 20 else [])
        rows[name], null[name] = [], np.zeros(cols[name].shape[1] - 1)
    for order, (state, arr) in enumerate(states(rec).items()):
        L, N, H = arr.shape
        flat = arr.transpose(1, 0, 2).reshape(N, L * H)
        for b0 in range(0, L * H, BLOCK):
            stopping.check()
            ranks = rank_columns(flat[:, b0:b0 + BLOCK])
            for name, f in feats.items():
                sc = _block_scores(ranks, f, cols[name])
                if len(null[name]):
                    null[name] = np.maximum(null[name], np.abs(sc[1:]).max(axis=1))
                for k in np.argsort(-np.abs(sc[0]), kind="stable")[:top]:
                    unit = b0 + int(k)
                    rows[name].append((-round(abs(float(sc[0, k])), 4), order, unit // H,
                                       unit % H, state, float(sc[0, k])))
    ranked = {}
    for name, rs in rows.items():
        rs.sort()
        i = info[name]
        i["chance"] = round(float(null[name].max()), 4) if len(null[name]) else None
        i["status"] = "scored" if i["runs"] >= MIN_RUNS else "too few to score"
        ranked[name] = [] if i["status"] != "scored" else [
            {"layer": l, "unit": u, "state": s, "score": round(-a, 4),
             "sign": 1 if r >= 0 else -1} for a, _, l, u, s, r in rs[:top]]
    return ranked, info


def saturation(rec: dict, cell, lo: float = 0.1, hi: float = 0.9, most: float = 0.9) -> dict:
    """Gate saturation (Karpathy et al. 2015, section 4.2): for each σ gate of
    `cell` (its row of cells.py) and layer, every unit's share of characters
    below lo (left-saturated) and above hi (right-saturated); and, for the
    forget gate (the GRU's z plays its part: Cell.forget), the units open
    (f > hi) or shut (f < lo) for at least `most` of the text: long-memory
    cells and cells that forget at once."""
    out = {}
    for g, arr in rec["gates"].items():
        if g not in cell.sigmoid_gates:
            continue
        left = (arr < lo).mean(axis=1)
        right = (arr > hi).mean(axis=1)
        out[g] = {"left": left.round(4).tolist(), "right": right.round(4).tolist()}
        if g == cell.forget:
            out[g]["always_open"] = [[int(l), int(u)] for l, u in zip(*np.nonzero(right >= most))]
            out[g]["always_shut"] = [[int(l), int(u)] for l, u in zip(*np.nonzero(left >= most))]
    return out


def counters(rec: dict, min_run: int = 8, open_: float = 0.9, max_cv: float = 0.3,
             min_step: float = 0.02, top: int = 10) -> list[dict]:
    """Cells that count, in the sense of the lecture notes: with f ≈ 1 and
    i ≈ 1 (both > open_) over a run of at least min_run characters, c moves by
    a near-constant step: c_t − c_(t−1) over all such runs has a mean of at
    least min_step in size and a coefficient of variation under max_cv.
    Returns the best `top`, most of the text covered first: layer, unit, the
    step, its coefficient of variation, and the share of characters in runs."""
    g = rec["gates"]
    if rec["c"] is None or "i" not in g or "f" not in g:
        return []
    c = rec["c"]
    L, N, H = c.shape
    both = (g["i"] > open_) & (g["f"] > open_)
    dc = np.empty_like(c)                  # c_t − c_(t−1), in c's float32 (np.diff with a
    dc[:, 0] = c[:, 0]                     # prepend would make a float64 copy of it all)
    np.subtract(c[:, 1:], c[:, :-1], out=dc[:, 1:])
    found = []
    for l in range(L):
        for u in range(H):
            on = both[l, :, u]
            if on.sum() < min_run:
                continue
            edges = np.flatnonzero(np.diff(np.concatenate([[0], on.view(np.int8), [0]])))
            runs = [(a, b) for a, b in zip(edges[::2], edges[1::2]) if b - a >= min_run]
            if not runs:
                continue
            steps = np.concatenate([dc[l, a + 1:b, u] for a, b in runs])
            mean, sd = float(steps.mean()), float(steps.std())
            if abs(mean) >= min_step and sd <= max_cv * abs(mean):
                found.append({"layer": l, "unit": u, "step": round(mean, 4),
                              "cv": round(sd / abs(mean), 3),
                              "coverage": round(sum(b - a for a, b in runs) / N, 4),
                              "runs": len(runs)})
    found.sort(key=lambda r: -r["coverage"])
    return found[:top]


def top_next(logits: np.ndarray, vocab: str, k: int = 5):
    """The k likeliest next characters after each position: (N, k) ids and
    probabilities."""
    z = logits.astype(np.float64)
    z -= z.max(axis=1, keepdims=True)
    p = np.exp(z)
    p /= p.sum(axis=1, keepdims=True)
    k = min(k, p.shape[1])
    idx = np.argsort(-p, axis=1)[:, :k]
    return idx, np.take_along_axis(p, idx, 1)


def state_names(cfg) -> list[str]:
    """The states record() keeps for a cell, in states()'s order."""
    return (["c"] if CELLS[cfg.cell].has_c else []) + ["h"] + list(CELLS[cfg.cell].gate_names)


def parse_unit(spec: str, model: Model, rec: dict | None = None) -> tuple[int, int, str]:
    """'L:U' or 'L:U:state' → (layer, unit, state), checked against the model
    (before anything is recorded)."""
    parts = spec.split(":")
    st = state_names(model.cfg)
    try:
        layer, unit = int(parts[0]), int(parts[1])
        state = parts[2] if len(parts) > 2 else next(iter(st))
        if len(parts) > 3:
            raise ValueError
    except (ValueError, IndexError):
        raise CharlstmError(f"--unit {spec!r}: write LAYER:UNIT or LAYER:UNIT:STATE, e.g. "
                            "0:17 or 0:17:h") from None
    model.check_unit(layer, unit, f"--unit {spec}")
    if state not in st:
        raise CharlstmError(f"--unit {spec}: this cell has no state {state!r}; choose from "
                            + ", ".join(st))
    return layer, unit, state


# ---------------------------------------------------------------------------
# The command.

def held_out_text(ck, path: str) -> tuple[str, int]:
    """The text the checkpoint at `path` was trained on and where its held-out
    part starts. The path stored in the checkpoint is read only while the file
    there is still that text (its SHA-256, stored beside it, matches): a
    checkpoint cannot make inspect read, or put on its page, any other file."""
    import os

    from ...data import file_sha256, read_text_for
    text_path, digest = ck.train.text, ck.train.text_sha256
    if not text_path:
        raise CharlstmError(f"{path} does not record the text it was trained on; give the "
                            "text to run it over with --text FILE")
    if not digest:
        raise CharlstmError(f"{path} records {text_path} as its training text but not the "
                            "text's digest (it was written by an earlier charlstm), so "
                            "charlstm cannot tell that the file there is that text; give "
                            "it with --text FILE")
    if not os.path.isfile(text_path):
        raise CharlstmError(f"the training text recorded in {path}, {text_path}, is not there "
                            "any more; give the text with --text FILE")
    if file_sha256(text_path) != digest:          # (None: not a regular, stable file)
        raise CharlstmError(f"{text_path}, recorded in {path} as its training text, has changed "
                            "since training (its SHA-256 differs), so its held-out part is not "
                            "the one held out; give a text with --text FILE")
    text = read_text_for(text_path, ck.vocab, f"the training text {text_path}")
    return text, len(text) - int(len(text) * ck.train.val_frac)


MAX_CHARS = 200_000               # --chars at most (and at most what fits MEMORY_BUDGET)
MEMORY_BUDGET = 1.5e9             # bytes of recorded states and ranking work


def bytes_per_char(cfg) -> float:
    """Memory inspect needs per character of text, for this model: c (4 bytes
    a unit), h and every gate (2 bytes: float16), the logits and their
    probabilities, and the ranking of BLOCK units at a time (about 40 bytes a
    value: rank_columns)."""
    LH = cfg.layers * cfg.hidden
    states = 2 + CELLS[cfg.cell].has_c * 4 + len(CELLS[cfg.cell].gate_names) * 2
    return LH * states + cfg.vocab_size * 12 + BLOCK * 40


def check_chars(cfg, chars: int) -> None:
    """Refuse, before any work, a --chars whose work would not fit MEMORY_BUDGET."""
    fits = int(MEMORY_BUDGET // bytes_per_char(cfg))
    if chars > fits:
        raise CharlstmError(f"--chars {chars:,} would need about "
                            f"{chars * bytes_per_char(cfg) / 1e9:.1f} GB for a {cfg.cell} "
                            f"{cfg.layers}x{cfg.hidden}; inspect uses at most "
                            f"{MEMORY_BUDGET / 1e9:g} GB: give --chars {fits:,} or fewer")


def run_inspect(path: str, text_path: str | None, chars: int, unit: str | None, top: int,
                log=print, ck=None, ablate=(), ablate_top: int = 0
                ) -> tuple[dict, dict, str, Model, object]:
    """Record the model over the text, find the cells, score the gates; then
    what holding units at zero does (ablation.py): each found unit alone
    (res["effects"]), each spec of `ablate` (res["ablation"]), and with
    ablate_top K the top-k curves against random units (res["ablation_top"]).
    Returns (result, recording, text, model, checkpoint)."""
    import time

    from ... import checkpoint as ckpt
    from ...data import read_text_for
    ck = ck or ckpt.load(path)
    check_chars(ck.model, chars)
    model = ckpt.model_from_checkpoint(ck, np.float32)
    if text_path:
        whole, start = read_text_for(text_path, ck.vocab, text_path), 0
        source = text_path
    else:
        whole, start = held_out_text(ck, path)
        source = f"the held-out part of {ck.train.text}"
    text = whole[start:start + chars]
    if len(text) < 2:
        raise CharlstmError(f"{source} has fewer than 2 characters to inspect")
    ids = np.array([ck.vocab.index(ch) for ch in text], np.intp)
    if unit:
        parse_unit(unit, model)                           # checked before the work
    from . import ablation
    specs = [ablation.parse_units(spec, model) for spec in ablate]
    t0 = time.perf_counter()
    rec = record(model, ids)
    t_rec = time.perf_counter() - t0
    # The features are computed from the start of the file, so that a text
    # that starts inside a string, a bracket or a comment is read right.
    feats = {k: v[start:start + len(text)] for k, v in features(whole[:start + len(text)]).items()}
    feats = {k: v for k, v in feats.items() if v.min() != v.max()}
    t0 = time.perf_counter()
    # --ablate-top K holds up to K of each feature's best units, though --top lists fewer;
    # a unit may rank in several states (its c, h and gates), so rank deeper for K distinct.
    deeper, support_ = rank_units(rec, feats, max(top, 8 * ablate_top))
    ranked = {k: v[:top] for k, v in deeper.items()}
    t_rank = time.perf_counter() - t0
    cfg = model.cfg
    res = {"checkpoint": path, "text": source, "chars": len(text),
           "model": {"cell": cfg.cell, "layers": cfg.layers, "hidden": cfg.hidden},
           "subtitle": f"{path}: {cfg.cell} {cfg.layers}×{cfg.hidden}, on {len(text):,} "
                       f"characters of {source}",
           "features": ranked, "support": support_, "gates": saturation(rec, model.cell),
           "counters": counters(rec),
           "seconds": {"record": round(t_rec, 3), "rank": round(t_rank, 3)}}
    res["counters_note"] = ("no unit counts in this text" if rec["c"] is not None and
                            "i" in rec["gates"] else
                            f"a {cfg.cell} cell has no input and forget gates both to open, "
                            "so it cannot count in this sense")
    res["suggestion"] = clamp_suggestion(res, rec, path)
    t0 = time.perf_counter()
    base = ablation.position_losses(model, ids)
    res["base_loss"] = round(float(np.nanmean(base)), 4)
    res["effects"] = {}
    for feat, units in ranked.items():               # each found unit, held at zero alone
        if units:
            u = (units[0]["layer"], units[0]["unit"])
            d = ablation.position_losses(ablation.held_at_zero(model, [u]), ids) - base
            eff = ablation.feature_effect(d, feats[feat])
            res["effects"][feat] = {"unit": list(u), "on_feature": ablation.rounded(eff),
                                    "overall": ablation.rounded(np.nanmean(d))}
    res["ablation"] = [ablation.effect(base, ablation.position_losses(
                           ablation.held_at_zero(model, units), ids), feats, text, units)
                       for units in specs]
    if ablate_top:
        res["ablation_top"] = ablation.ablate_top(model, ids, feats, deeper, ablate_top, base)
    res["seconds"]["ablate"] = round(time.perf_counter() - t0, 3)
    return res, rec, text, model, ck


def clamp_suggestion(res: dict, rec: dict, path: str) -> str | None:
    """A sample --clamp command that holds the best unit found (of in_quotes
    when one scores 0.5 or more, else of the best-scored feature) at twice the
    furthest value it reaches, on the side where the feature is high: a push
    well past what the text ever made it do, so that its effect shows. When
    that side is the unit's resting value (a ReLU unit's 0), twice its other
    extreme instead; no suggestion for a unit that never moves."""
    cands = [(f, u[0]) for f, u in res["features"].items() if u]
    if not cands:
        return None
    quotes = [c for c in cands if c[0] == "in_quotes" and c[1]["score"] >= 0.5]
    feat, best = quotes[0] if quotes else max(cands, key=lambda c: c[1]["score"])
    state = "c" if CELLS[res["model"]["cell"]].output else "h"   # what --clamp holds
    arr = states(rec)[state][best["layer"], :, best["unit"]]
    hi, lo = float(arr.max()), float(arr.min())
    value = 2 * (hi if best["sign"] > 0 else lo)
    if abs(value) < 1e-6 * max(1.0, abs(hi), abs(lo)):
        value = 2 * (lo if best["sign"] > 0 else hi)
        if abs(value) < 1e-12:
            return None
    return (shell_line(["charlstm", "sample", path_arg(path), "--clamp",
                        f"{best['layer']}:{best['unit']}={value:.4g}", "--length", "400"])
            + f"   # holds the {feat} unit's {state} at twice its furthest value")
