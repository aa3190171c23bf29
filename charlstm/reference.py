"""Every cell, forward and backward, in plain NumPy: the file to read first.

Straight from the equations, one time step at a time over a batch, with no
speed tricks: charlstm/kernels/ computes the same numbers fast, and the tests
hold it to these (tests/test_reference.py, tests/test_cells.py), forward and
gradients, for every cell. The gradient checks cover these functions too.

Each cell is a pair of functions side by side, one time step and its undoing,
in the order of cells.py's table (PAIRS names them):

    <cell>_forward(a, r, h, c, p) -> (h_t, c_t, saved)
    <cell>_backward(dh, dc, s, p, g) -> (da, dr, dh_direct, dc_prev)

a = x_t Wx + b and r = h_(t−1) Whᵀ, each (B, G), are the input's and the
recurrent part of every block's pre-activation (the GRU keeps them apart; r
is None for a cell without Wh, and so is the dL/dr its backward returns);
h, c (B, H) the state before the step (c passes through a cell without one;
the sLSTM's is (B, 3H): c, n, m).
The backward step takes dh = dL/dh_t (from above and from step t + 1), dc =
dL/dc_t from step t + 1, the step's record s (its inputs x, h_prev, c_prev,
what the forward step saved, and h), and returns dL/da and dL/dr, the part of
dL/dh_(t−1) that does not go through r (the GRU's; None otherwise) and
dL/dc_(t−1) (None without a c); extra parameters' gradients are added into g.

forward() and backward() run a pair over time; logits() runs a whole model.

Shapes: x (T, B, D) inputs, h0 and c0 (B, H); per layer Wx (D, G), Wh (G, H),
b (G,), with G = gates·H, the gates side by side in Wx's columns and Wh's rows
in the order given for each cell (that of torch.nn.LSTM, nn.GRU, nn.RNN).
"""
from __future__ import annotations

import numpy as np


def sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


# ---------------------------------------------------------------------------
# The LSTM (Hochreiter & Schmidhuber 1997; the forget gate of Gers, Schmidhuber
# & Cummins 2000). Blocks i, f, c~ (g), o.

def lstm_forward(a, r, h, c, p):
    """i = σ(z_i), f = σ(z_f), g = tanh(z_g), o = σ(z_o)   with z = a + r
    c_t = f ⊙ c_(t−1) + i ⊙ g
    h_t = o ⊙ tanh(c_t)"""
    H = h.shape[1]
    z = a + r
    i, f = sigmoid(z[:, :H]), sigmoid(z[:, H:2 * H])
    g, o = np.tanh(z[:, 2 * H:3 * H]), sigmoid(z[:, 3 * H:])
    c = f * c + i * g
    return o * np.tanh(c), c, dict(i=i, f=f, g=g, o=o, c=c)


def lstm_backward(dh, dc, s, p, g):
    """do = dh ⊙ tanh(c_t);  dc_t = dc + dh ⊙ o ⊙ (1 − tanh² c_t)
    di = dc_t ⊙ g,  df = dc_t ⊙ c_(t−1),  dg = dc_t ⊙ i   (each times its slope)
    dc_(t−1) = dc_t ⊙ f"""
    i, f, gg, o, c = s["i"], s["f"], s["g"], s["o"], s["c"]
    tc = np.tanh(c)
    do = dh * tc                                # h = o ⊙ tanh(c)
    dzo = do * o * (1 - o)
    dc = dc + dh * o * (1 - tc ** 2)
    dzi = dc * gg * i * (1 - i)                 # c = f ⊙ c_prev + i ⊙ g
    dzf = dc * s["c_prev"] * f * (1 - f)
    dzg = dc * i * (1 - gg ** 2)
    da = np.concatenate([dzi, dzf, dzg, dzo], axis=1)
    return da, da, None, dc * f


# ---------------------------------------------------------------------------
# The LSTM with peepholes (Gers & Schmidhuber 2000): i and f see c_(t−1), o sees
# c_t, through p["ex"] = (p_i, p_f, p_o). Blocks i, f, c~ (g), o.

def peephole_forward(a, r, h, c, p):
    """i = σ(z_i + p_i ⊙ c_(t−1)),  f = σ(z_f + p_f ⊙ c_(t−1)),  g = tanh(z_g)
    c_t = f ⊙ c_(t−1) + i ⊙ g
    o = σ(z_o + p_o ⊙ c_t),  h_t = o ⊙ tanh(c_t)"""
    H = h.shape[1]
    z = a + r
    pi, pf, po = p["ex"]
    i = sigmoid(z[:, :H] + pi * c)
    f = sigmoid(z[:, H:2 * H] + pf * c)
    g = np.tanh(z[:, 2 * H:3 * H])
    c = f * c + i * g
    o = sigmoid(z[:, 3 * H:] + po * c)
    return o * np.tanh(c), c, dict(i=i, f=f, g=g, o=o, c=c)


def peephole_backward(dh, dc, s, p, g):
    """As the LSTM's, with each peephole's path: dc_t gains do' ⊙ p_o (o saw
    c_t), dc_(t−1) gains di' ⊙ p_i + df' ⊙ p_f; dp_i = Σ di' ⊙ c_(t−1),
    dp_f = Σ df' ⊙ c_(t−1), dp_o = Σ do' ⊙ c_t (', times the slope)."""
    i, f, gg, o, c = s["i"], s["f"], s["g"], s["o"], s["c"]
    pi, pf, po = p["ex"]
    tc = np.tanh(c)
    do = dh * tc
    dzo = do * o * (1 - o)
    dc = dc + dh * o * (1 - tc ** 2)
    dc = dc + dzo * po                          # o saw c_t
    dzi = dc * gg * i * (1 - i)
    dzf = dc * s["c_prev"] * f * (1 - f)
    dzg = dc * i * (1 - gg ** 2)
    g["ex"][0] += (dzi * s["c_prev"]).sum(0)
    g["ex"][1] += (dzf * s["c_prev"]).sum(0)
    g["ex"][2] += (dzo * c).sum(0)
    da = np.concatenate([dzi, dzf, dzg, dzo], axis=1)
    return da, da, None, dc * f + dzi * pi + dzf * pf


# ---------------------------------------------------------------------------
# The coupled input-forget gate LSTM (CIFG, Greff et al. 2017): the input gate
# is 1 − f. Blocks f, c~ (g), o.

def cifg_forward(a, r, h, c, p):
    """f = σ(z_f), g = tanh(z_g), o = σ(z_o)   with z = a + r
    c_t = f ⊙ c_(t−1) + (1 − f) ⊙ g
    h_t = o ⊙ tanh(c_t)"""
    H = h.shape[1]
    z = a + r
    f, g, o = sigmoid(z[:, :H]), np.tanh(z[:, H:2 * H]), sigmoid(z[:, 2 * H:])
    c = f * c + (1 - f) * g
    return o * np.tanh(c), c, dict(f=f, g=g, o=o, c=c)


def cifg_backward(dh, dc, s, p, g):
    """do = dh ⊙ tanh(c_t);  dc_t = dc + dh ⊙ o ⊙ (1 − tanh² c_t)
    df = dc_t ⊙ (c_(t−1) − g),  dg = dc_t ⊙ (1 − f)   (each times its slope)
    dc_(t−1) = dc_t ⊙ f"""
    f, gg, o, c = s["f"], s["g"], s["o"], s["c"]
    tc = np.tanh(c)
    dzo = dh * tc * o * (1 - o)
    dc = dc + dh * o * (1 - tc ** 2)
    dzf = dc * (s["c_prev"] - gg) * f * (1 - f)   # c = f c_prev + (1 − f) g
    dzg = dc * (1 - f) * (1 - gg ** 2)
    da = np.concatenate([dzf, dzg, dzo], axis=1)
    return da, da, None, dc * f


# ---------------------------------------------------------------------------
# The GRU (Cho et al. 2014), as torch.nn.GRU: blocks r, z, n; p["ex"][0] = b_hn,
# inside the reset: n = tanh(a_n + r ⊙ (h Wh_nᵀ + b_hn)).

def gru_forward(a, r, h, c, p):
    """r = σ(a_r + r_r), z = σ(a_z + r_z)   (r_·: the recurrent parts)
    n = tanh(a_n + r ⊙ q),  q = h_(t−1) Wh_nᵀ + b_hn
    h_t = (1 − z) ⊙ n + z ⊙ h_(t−1)"""
    H = h.shape[1]
    q = r[:, 2 * H:] + p["ex"][0]               # h_(t−1) Wh_nᵀ + b_hn
    rg = sigmoid(a[:, :H] + r[:, :H])
    zg = sigmoid(a[:, H:2 * H] + r[:, H:2 * H])
    n = np.tanh(a[:, 2 * H:] + rg * q)
    return (1 - zg) * n + zg * h, c, dict(r=rg, z=zg, n=n, q=q)


def gru_backward(dh, dc, s, p, g):
    """dn = dh ⊙ (1 − z),  dz = dh ⊙ (h_(t−1) − n),  da_n = dn ⊙ (1 − n²)
    dr = da_n ⊙ q (times its slope),  dq = da_n ⊙ r  (the recurrent part of n)
    dh_(t−1) gains dh ⊙ z directly; db_hn = Σ dq"""
    rg, zg, n, q, hp = s["r"], s["z"], s["n"], s["q"], s["h_prev"]
    dn = dh * (1 - zg)                          # h = (1 − z) n + z h_prev
    dzz = dh * (hp - n) * zg * (1 - zg)
    dan = dn * (1 - n ** 2)                     # n = tanh(a_n + r ⊙ q)
    drr = dan * q * rg * (1 - rg)
    dq = dan * rg
    g["ex"][0] += dq.sum(0)
    da = np.concatenate([drr, dzz, dan], axis=1)
    dr = np.concatenate([drr, dzz, dq], axis=1)
    return da, dr, dh * zg, None


# ---------------------------------------------------------------------------
# The vanilla RNN, and the ReLU RNN (IRNN, Le, Jaitly & Hinton 2015): one block.

def rnn_forward(a, r, h, c, p):
    """h_t = tanh(a + r)"""
    return np.tanh(a + r), c, {}


def rnn_backward(dh, dc, s, p, g):
    """da = dh ⊙ (1 − h_t²)"""
    da = dh * (1 - s["h"] ** 2)
    return da, da, None, None


def irnn_forward(a, r, h, c, p):
    """h_t = max(0, a + r)"""
    pre = a + r
    return np.maximum(0.0, pre), c, dict(pre=pre)


def irnn_backward(dh, dc, s, p, g):
    """da = dh ⊙ [a + r > 0]"""
    da = dh * (s["pre"] > 0)
    return da, da, None, None


# ---------------------------------------------------------------------------
# The min cells (Feng, Tung, Ahmed, Bengio & Hajimirsadeghi 2024, "Were RNNs
# All We Needed?", arXiv:2410.01201, sections 3.1.2 and 3.2.3, the sequential
# mode): every block from the input alone. They have no Wh, so r is None, and
# dL/dh_(t−1) is all direct.

def mingru_forward(a, r, h, c, p):
    """z = σ(a_z),  n = a_n   (the paper's h~, linear)
    h_t = (1 − z) ⊙ h_(t−1) + z ⊙ n"""
    H = h.shape[1]
    z, n = sigmoid(a[:, :H]), a[:, H:]
    return (1 - z) * h + z * n, c, dict(z=z, n=n)


def mingru_backward(dh, dc, s, p, g):
    """dz = dh ⊙ (n − h_(t−1)) (times its slope),  dn = dh ⊙ z
    dh_(t−1) = dh ⊙ (1 − z), all of it direct"""
    z, n, hp = s["z"], s["n"], s["h_prev"]
    da = np.concatenate([dh * (n - hp) * z * (1 - z), dh * z], axis=1)
    return da, None, dh * (1 - z), None


def minlstm_forward(a, r, h, c, p):
    """f = σ(a_f), i = σ(a_i), g = a_g   (the paper's h~, linear)
    f' = f / (f + i),  i' = i / (f + i)
    h_t = f' ⊙ h_(t−1) + i' ⊙ g"""
    H = h.shape[1]
    f, i, gg = sigmoid(a[:, :H]), sigmoid(a[:, H:2 * H]), a[:, 2 * H:]
    s = f + i
    return (f / s) * h + (i / s) * gg, c, dict(f=f, i=i, g=gg)


def minlstm_backward(dh, dc, s, p, g):
    """df' = dh ⊙ h_(t−1),  di' = dh ⊙ g;  with s = f + i,
    df = (df' − di') ⊙ i / s²,  di = (di' − df') ⊙ f / s²   (each times its slope)
    dg = dh ⊙ i',  dh_(t−1) = dh ⊙ f', all of it direct"""
    f, i, gg, hp = s["f"], s["i"], s["g"], s["h_prev"]
    sm = f + i
    dfp, dip = dh * hp, dh * gg                # h = f' h_prev + i' g
    df = (dfp - dip) * i / sm ** 2             # f' = f / (f + i), i' = i / (f + i)
    di = (dip - dfp) * f / sm ** 2
    da = np.concatenate([df * f * (1 - f), di * i * (1 - i), dh * i / sm], axis=1)
    return da, None, dh * f / sm, None


# ---------------------------------------------------------------------------
# The sLSTM (Beck et al. 2024, "xLSTM: Extended Long Short-Term Memory",
# arXiv:2405.04517, section 2.2, equations 8-17, one head): an exponential input
# gate, a sigmoid forget gate (the paper allows either), a normaliser n and the
# stabiliser m. Its c is (B, 3H): c, n and m side by side. Blocks z, i, f, o.

def log_sigmoid(x):
    """log σ(x), finite for every finite x."""
    return np.minimum(x, 0) - np.log1p(np.exp(-np.abs(x)))


def slstm_forward(a, r, h, c, p):
    """z = tanh(z~), ĩ, f = σ(f~), o = σ(o~)   with (z~, ĩ, f~, o~) = a + r
    m_t = max(log f + m_(t−1), ĩ)
    i' = exp(ĩ − m_t),  f' = exp(log f + m_(t−1) − m_t)
    c_t = f' c_(t−1) + i' z,  n_t = f' n_(t−1) + i'
    h_t = o ⊙ c_t / n_t
    (The unstabilised i = exp(ĩ), f in place of i', f' give the same h:
    c and n are each e^(−m_t) times theirs.)"""
    H = h.shape[1]
    pre = a + r
    z, it = np.tanh(pre[:, :H]), pre[:, H:2 * H]
    f, o = sigmoid(pre[:, 2 * H:3 * H]), sigmoid(pre[:, 3 * H:])
    cp, npv, mp = c[:, :H], c[:, H:2 * H], c[:, 2 * H:]
    lf = log_sigmoid(pre[:, 2 * H:3 * H]) + mp           # log f + m_(t−1)
    side = lf >= it                                      # which side is the max
    m = np.where(side, lf, it)
    ip, fp = np.exp(it - m), np.exp(lf - m)
    cn, nn = fp * cp + ip * z, fp * npv + ip
    return o * cn / nn, np.concatenate([cn, nn, m], axis=1), dict(
        z=z, f=f, o=o, ip=ip, fp=fp, side=side, c=cn, n=nn)


def slstm_backward(dh, dc, s, p, g):
    """q = c_t / n_t:  do = dh ⊙ q,  dc_t = dc + dh ⊙ o / n_t,
    dn_t = dn − dh ⊙ o ⊙ q / n_t
    df' = dc_t ⊙ c_(t−1) + dn_t ⊙ n_(t−1),  di' = dc_t ⊙ z + dn_t,  dz = dc_t ⊙ i'
    dĩ = di' i',  d(log f) = dm_(t−1) = df' f',  dm_t = dm − di' i' − df' f',
    and dm_t to the side of the max that m_t is (log f + m_(t−1), or ĩ)
    d f~ = d(log f) ⊙ (1 − f);  dc_(t−1) = dc_t f',  dn_(t−1) = dn_t f'"""
    H = dh.shape[1]
    z, f, o, ip, fp, side = s["z"], s["f"], s["o"], s["ip"], s["fp"], s["side"]
    cn, nn, cp, npv = s["c"], s["n"], s["c_prev"][:, :H], s["c_prev"][:, H:2 * H]
    q = cn / nn
    dzo = dh * q * o * (1 - o)                  # h = o ⊙ c / n
    dcn = dc[:, :H] + dh * o / nn
    dnn = dc[:, H:2 * H] - dh * o * q / nn
    dfp = (dcn * cp + dnn * npv) * fp           # times f' (f' = exp(·): its own slope)
    dip = (dcn * z + dnn) * ip
    dm = dc[:, 2 * H:] - dip - dfp              # m_t in i' and f'
    dit = dip + np.where(side, 0.0, dm)         # m_t = max(log f + m_(t−1), ĩ)
    dlf = dfp + np.where(side, dm, 0.0)
    da = np.concatenate([dcn * ip * (1 - z ** 2), dit, dlf * (1 - f), dzo], axis=1)
    return da, da, None, np.concatenate([dcn * fp, dnn * fp, dlf], axis=1)


# Each cell's pair, by its name in cells.py.
PAIRS = {"lstm": (lstm_forward, lstm_backward), "rnn": (rnn_forward, rnn_backward),
         "irnn": (irnn_forward, irnn_backward),
         "lstm-peephole": (peephole_forward, peephole_backward),
         "cifg": (cifg_forward, cifg_backward), "gru": (gru_forward, gru_backward),
         "mingru": (mingru_forward, mingru_backward),
         "minlstm": (minlstm_forward, minlstm_backward),
         "slstm": (slstm_forward, slstm_backward)}


def _pair(cell: str):
    if cell not in PAIRS:
        raise ValueError(f"unknown cell {cell!r}")
    return PAIRS[cell]


# ---------------------------------------------------------------------------
# Through time: a layer, then the whole model.

def forward(cell: str, x, h0, c0, p):
    """A layer of `cell` over x (T, B, D) from (h0, c0). p: {"Wx", "Wh" (not
    for the min cells), "b", and "ex" for the peephole (p_i, p_f, p_o) and the
    GRU (b_hn)}. Returns
    (hs, cs, steps): the states after each step, each (T, B, H), and each
    step's record for backward."""
    step = _pair(cell)[0]
    h, c = h0, c0
    hs, cs, steps = [], [], []
    for t in range(x.shape[0]):
        a = x[t] @ p["Wx"] + p["b"]            # the input's part of every block, (B, G)
        r = h @ p["Wh"].T if "Wh" in p else None    # the recurrent part, (B, G)
        s = {"x": x[t], "h_prev": h, "c_prev": c}
        h, c, saved = step(a, r, h, c, p)
        s.update(saved, h=h)
        hs.append(h)
        cs.append(c)
        steps.append(s)
    return np.stack(hs), np.stack(cs), steps


def backward(cell: str, dhs, steps, p, dhT=None, dcT=None):
    """Backprop through time. dhs (T, B, H): dL/dh_t from above; dhT, dcT: the
    gradient at the final state (default 0). Returns {"Wx", "Wh", "b", "ex",
    "x", "h0", "c0"}, gradients of the same shapes."""
    step_back = _pair(cell)[1]
    T, B, H = dhs.shape
    g = {k: np.zeros_like(v) for k, v in p.items()}
    dx = np.zeros((T, B, p["Wx"].shape[0]))
    dh_next = np.zeros((B, H)) if dhT is None else dhT.copy()
    dc_next = np.zeros_like(steps[0]["c_prev"]) if dcT is None else dcT.copy()   # (B, c_width·H)
    for t in range(T - 1, -1, -1):
        s = steps[t]
        dh = dhs[t] + dh_next                   # from above, and from step t + 1
        da, dr, dh_direct, dc_prev = step_back(dh, dc_next, s, p, g)
        g["Wx"] += s["x"].T @ da                # a = x Wx + b, r = h_prev Whᵀ
        g["b"] += da.sum(0)
        dx[t] = da @ p["Wx"].T
        dh_next = np.zeros((B, H))
        if dr is not None:
            g["Wh"] += dr.T @ s["h_prev"]
            dh_next = dh_next + dr @ p["Wh"]
        if dh_direct is not None:
            dh_next = dh_next + dh_direct
        dc_next = np.zeros_like(s["c_prev"]) if dc_prev is None else dc_prev
    g["x"], g["h0"], g["c0"] = dx, dh_next, dc_next
    return g


def logits(model, tokens, h0, c0):
    """A whole model.Model's forward pass (no dropout), in float64: the one-hot
    input through each layer, then the output layer. tokens (T, B); h0, c0
    (L, B, H). Returns the logits (T·B, V)."""
    cfg, p = model.cfg, model.p
    T, B = tokens.shape
    x = np.eye(cfg.vocab_size)[tokens]          # (T, B, V)
    for l in range(cfg.layers):
        layer = {k: p[f"l{l}.{k}"].astype(np.float64) for k in ("Wx", "Wh", "b", "ex")
                 if f"l{l}.{k}" in p}
        x, _, _ = forward(cfg.cell, x, h0[l].astype(np.float64), c0[l].astype(np.float64),
                          layer)
    return (x @ p["Wy"] + p["by"]).reshape(T * B, -1)
