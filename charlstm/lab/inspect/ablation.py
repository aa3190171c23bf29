"""What a unit does, tested: `charlstm inspect --ablate` and `--ablate-top`.

A score says a unit's value goes with a feature of the text; it does not say
the model uses it. Ablation does: hold the unit's state at zero through the
held-out text and see what the loss does, overall and where the feature
holds (Lakretz et al. 2019 ablated single units this way and found the two
that carry number agreement; NeuroX compares ablating the top-k units of a
feature with k random units; Radford et al. 2017 clamped one unit to flip a
review's sentiment, which `charlstm sample --clamp` does).

How a unit is held at zero, through the forward kernels themselves (no
per-character Python): a copy of the model whose weights make that unit's
state stay at its zero start, by its cell's recipe (Cell.held_at_zero in
cells.py). Its candidate (c~, or the GRU's n, or the RNN's whole
pre-activation) gets zero weights and bias, so it is tanh(0) = 0 (relu(0) =
0); and the gates that would write into the state or let it go are held:
for the LSTM cells its input and forget gates are shut (bias −10^4), for
CIFG its forget gate is held open (c = f·c + (1 − f)·c~), for the GRU its
update gate is held open (h = (1 − z)·n + z·h′): nothing new is written and
the zero start is kept, exactly. The rest of the model reads the unit only
through its h, which is zero.

The loss is scored as the validation loss is: the held-out text cut into
STREAMS streams, the state carried along each (spans.run_streams), every
position's loss kept, so that it can be split by the feature's classes.
"""
from __future__ import annotations

import numpy as np

from .. import spans
from ...errors import CharlstmError
from ...model import Model

BIG = 1e4                 # a gate bias that saturates σ to within 1e-7 (float32 kernels)
STREAMS = 32              # streams the text is scored in (as validation is)
DRAWS = 5                 # random draws of k units, for --ablate-top
CHUNK_BYTES = 16 << 20    # saved gates a chunk of the streams may hold (spans.run_streams)


def held_at_zero(model: Model, units) -> Model:
    """A copy of model in which each (layer, unit) of `units` keeps its state
    (c and h, or h) at zero."""
    cfg, H, cell = model.cfg, model.cfg.hidden, model.cell
    m = Model(cfg, model.dtype, model.flat.copy())
    for layer, unit in units:
        model.check_unit(layer, unit, f"--ablate {layer}:{unit}")
        Wx, Wh, b = m.p[f"l{layer}.Wx"], m.p.get(f"l{layer}.Wh"), m.p[f"l{layer}.b"]
        for what, how in cell.held_at_zero:
            if what in cell.extras:                     # an extra parameter: 0 for this unit
                m.p[f"l{layer}.ex"][cell.extras.index(what), unit] = 0
                continue
            col = cell.blocks.index(what) * H + unit
            if how == "zero":                           # the block's pre-activation is 0
                Wx[:, col] = 0
                if Wh is not None:                      # (the min cells have none)
                    Wh[col, :] = 0
                b[col] = 0
            else:                                       # a gate held shut (σ = 0) or open (1)
                b[col] = -BIG if how == "shut" else BIG
    return m


def position_losses(model: Model, ids: np.ndarray, streams: int = STREAMS) -> np.ndarray:
    """-log p(next character) at every position of ids but the first of each
    stream, in the text's order (nan where not scored): the text is cut into
    `streams` streams, the state carried along each."""
    N = len(ids)
    S = max(1, min(streams, (N - 1) // 8))
    L = N // S
    tok = ids[:S * L].reshape(S, L).T                      # (L, S)
    out = np.full(N, np.nan)
    lp = np.empty((L - 1, S))

    def visit(t0, s0, logits):
        t, b = logits.shape[:2]
        rows = slice(t0, min(t0 + t, L - 1))
        k = rows.stop - rows.start
        if k > 0:
            lp[rows, s0:s0 + b] = spans.log_softmax_at(logits[:k],
                                                        tok[t0 + 1:t0 + 1 + k, s0:s0 + b])

    spans.run_streams(model, tok, visit, budget=CHUNK_BYTES)
    scored = (np.arange(S)[None, :] * L + np.arange(1, L)[:, None])   # target positions
    out[scored.ravel()] = -lp.ravel()
    return out


def classes(feats: dict[str, np.ndarray]) -> dict[str, dict[str, np.ndarray]]:
    """Each feature's classes, as masks: inside and outside for a yes-or-no
    feature; 0, 1 and 2 or more for a count that is a depth (bracket depth),
    else 0, 1-9 and 10 or more."""
    out = {}
    for name, f in feats.items():
        if np.isin(f, (0.0, 1.0)).all():
            out[name] = {"inside": f == 1, "outside": f == 0}
        elif name == "bracket_depth":
            out[name] = {"0": f == 0, "1": f == 1, "2+": f >= 2}
        else:
            out[name] = {"0": f == 0, "1-9": (f >= 1) & (f < 10), "10+": f >= 10}
    return out


def _mean(x, mask=None):
    ok = np.isfinite(x) if mask is None else np.isfinite(x) & mask
    return float(x[ok].mean()) if ok.any() else None


def predictors(f: np.ndarray) -> np.ndarray:
    """The feature at the position whose state predicts each character: the
    loss of predicting the character at p belongs to the class of p − 1."""
    return np.concatenate([f[:1], f[:-1]])


def effect(base: np.ndarray, ablated: np.ndarray, feats, text: str, units, mode="zero",
           top_moved: int = 8) -> dict:
    """The ablation's effect: the loss with the units held at zero, its
    change overall and in each class of each feature (the class of the state
    that made each prediction: predictors), and the characters whose
    probability moved most (by the change in -log p)."""
    delta = ablated - base
    by_class = {}
    for name, cls in classes({k: predictors(v) for k, v in feats.items()}).items():
        by_class[name] = {c: (None if _mean(delta, m) is None else round(_mean(delta, m), 4))
                          for c, m in cls.items()}
    order = np.argsort(-np.nan_to_num(np.abs(delta), nan=-1))[:top_moved]
    moved = []
    for i in order:
        if not np.isfinite(delta[i]):
            continue
        moved.append({"position": int(i), "char": text[i],
                      "context": text[max(0, i - 20):i], "p_before": round(float(np.exp(-base[i])), 4),
                      "p_after": round(float(np.exp(-ablated[i])), 4)})
    return {"units": [[int(layer), int(u)] for layer, u in units], "mode": mode,
            "loss": round(_mean(ablated), 4), "loss_change": round(_mean(delta), 4),
            "by_class": by_class, "moved": moved}


def feature_effect(delta: np.ndarray, f: np.ndarray) -> float | None:
    """The loss change where a feature holds (a yes-or-no feature's inside, a
    count's positions above 0), less its change elsewhere: what holding the
    units at zero costs the feature's positions in particular (each
    prediction in the class of the state that made it: predictors)."""
    on = predictors(f) > 0
    a, b = _mean(delta, on), _mean(delta, ~on)
    return None if a is None or b is None else a - b


def ablate_top(model: Model, ids, feats: dict, ranked: dict, K: int, base: np.ndarray,
               draws: int = DRAWS, seed: int = 0) -> dict:
    """For each scored feature: the loss change on its positions (less
    elsewhere, feature_effect) when its top-k units are held at zero, for k =
    1 … K (K distinct units: a unit ranked in several states counts once),
    against `draws` draws of k random units (any layer; the same draws
    for every feature). A unit that tracks a feature but changes nothing when
    removed shows as a top curve no higher than the random ones."""
    rng = np.random.default_rng(seed)
    L, H = model.cfg.layers, model.cfg.hidden
    random = []                          # random[j][k-1]: the deltas of draw j with k units
    for j in range(draws):
        row = []
        for k in range(1, K + 1):
            pick = rng.choice(L * H, size=min(k, L * H), replace=False)
            units = [(int(x) // H, int(x) % H) for x in pick]
            row.append(position_losses(held_at_zero(model, units), ids) - base)
        random.append(row)
    out = {}
    for name, units in ranked.items():
        if not units:
            continue
        f = feats[name]
        top = list(dict.fromkeys((u["layer"], u["unit"]) for u in units))[:K]   # distinct units
        curve = [rounded(feature_effect(position_losses(held_at_zero(model, top[:k]), ids)
                                        - base, f)) for k in range(1, len(top) + 1)]
        out[name] = {"units": [list(u) for u in top], "top": curve,
                     "random": [[rounded(feature_effect(d, f)) for d in row[:len(top)]]
                                for row in random]}
    return out


def rounded(x):
    return None if x is None else round(float(x), 4)


def parse_units(spec: str, model: Model) -> list[tuple[int, int]]:
    """'L:U[,L:U…]' → [(layer, unit)], checked against the model."""
    out = []
    for part in spec.split(","):
        part = part.strip()
        try:
            layer, unit = (int(x) for x in part.split(":"))
        except ValueError:
            raise CharlstmError(f"--ablate {spec!r}: write LAYER:UNIT[,LAYER:UNIT…], "
                                "e.g. 0:17,0:40") from None
        model.check_unit(layer, unit, f"--ablate {part}")
        out.append((layer, unit))
    return out
