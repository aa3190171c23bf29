"""Slow, plain NumPy references (float64, one stream and one step at a time),
written straight from the equations, to hold the fast kernels to."""
import numpy as np


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def random_c(cell, rng, lead, H, scale=0.5):
    """A random initial c of shape lead + (c_width·H,): normal, but for the
    sLSTM, whose c holds c, n and m, an n away from 0 (n_0 > 0, as every n_t)."""
    from charlstm.cells import CELLS
    c = rng.normal(0, scale, tuple(lead) + (CELLS[cell].c_width * H,))
    if CELLS[cell].c_width == 3:
        c[..., H:2 * H] = 0.5 + np.abs(c[..., H:2 * H])
    return c


def cell_step(cell, x, h, c, Wx, Wh, b, ex):
    """One step of one cell for one input vector x: returns (h, c)."""
    H = h.shape[0]
    a = x @ Wx + b
    if cell == "mingru":                        # no Wh (Wh is None)
        z = sigmoid(a[:H])
        return (1 - z) * h + z * a[H:], c
    if cell == "minlstm":
        f, i = sigmoid(a[:H]), sigmoid(a[H:2 * H])
        return (f * h + i * a[2 * H:]) / (f + i), c
    r = h @ Wh.T
    if cell == "slstm":                         # unstabilised: i = exp(ĩ), c = [c, n, m]
        z = a + r
        m = c[2 * H:]                           # c and n are e^(-m) times the true ones
        cc, nn = c[:H] * np.exp(m), c[H:2 * H] * np.exp(m)
        i, f = np.exp(z[H:2 * H]), sigmoid(z[2 * H:3 * H])
        cc, nn = f * cc + i * np.tanh(z[:H]), f * nn + i
        m_new = np.maximum(np.log(f) + m, z[H:2 * H])
        h = sigmoid(z[3 * H:]) * cc / nn
        return h, np.concatenate([cc * np.exp(-m_new), nn * np.exp(-m_new), m_new])
    if cell == "rnn":
        return np.tanh(a + r), c
    if cell == "irnn":
        return np.maximum(0.0, a + r), c
    if cell == "gru":
        rg = sigmoid(a[:H] + r[:H])
        z = sigmoid(a[H:2 * H] + r[H:2 * H])
        n = np.tanh(a[2 * H:] + rg * (r[2 * H:] + ex[0]))
        return (1 - z) * n + z * h, c
    if cell == "cifg":
        f = sigmoid(a[:H] + r[:H])
        g = np.tanh(a[H:2 * H] + r[H:2 * H])
        o = sigmoid(a[2 * H:] + r[2 * H:])
        c = f * c + (1 - f) * g
        return o * np.tanh(c), c
    z = a + r
    if cell == "lstm":
        i, f, g, o = sigmoid(z[:H]), sigmoid(z[H:2 * H]), np.tanh(z[2 * H:3 * H]), sigmoid(z[3 * H:])
        c = f * c + i * g
        return o * np.tanh(c), c
    if cell == "lstm-peephole":
        i = sigmoid(z[:H] + ex[0] * c)
        f = sigmoid(z[H:2 * H] + ex[1] * c)
        g = np.tanh(z[2 * H:3 * H])
        c = f * c + i * g
        o = sigmoid(z[3 * H:] + ex[2] * c)
        return o * np.tanh(c), c
    raise ValueError(cell)


def logits(model, tokens, h0, c0):
    """Reference forward of a whole Model (no dropout): logits (T·B, V)."""
    p = model.p
    cfg = model.cfg
    T, B = tokens.shape
    V = cfg.vocab_size
    out = np.zeros((T, B, V))
    for s in range(B):
        h = [h0[l, s].astype(np.float64) for l in range(cfg.layers)]
        c = [c0[l, s].astype(np.float64) for l in range(cfg.layers)]
        for t in range(T):
            x = np.zeros(V)
            x[tokens[t, s]] = 1.0
            for l in range(cfg.layers):
                ex = p.get(f"l{l}.ex", np.zeros((0, cfg.hidden)))
                h[l], c[l] = cell_step(cfg.cell, x, h[l], c[l], p[f"l{l}.Wx"].astype(np.float64),
                                       p[f"l{l}.Wh"].astype(np.float64)
                                       if f"l{l}.Wh" in p else None,
                                       p[f"l{l}.b"].astype(np.float64), ex.astype(np.float64))
                x = h[l]
            out[t, s] = x @ p["Wy"] + p["by"]
    return out.reshape(T * B, V)
