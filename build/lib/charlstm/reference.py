"""Every cell, forward and backward, in plain NumPy: the file to read first.

Straight from the equations, one time step at a time over a batch, with no
speed tricks: charlstm/kernels/ computes the same numbers fast, and the tests hold
it to these (tests/test_reference.py), forward and gradients, for every cell.
The gradient checks cover these functions too.

Shapes: x (T, B, D) inputs, h0 and c0 (B, H); per layer Wx (D, G), Wh (G, H),
b (G,), with G = gates·H, the gates side by side in Wx's columns and Wh's rows
in the order given for each cell (that of torch.nn.LSTM, nn.GRU, nn.RNN). The
pre-activations of a step are a = x_t Wx + b + h_(t−1) Whᵀ.

forward(cell, x, h0, c0, p) returns (hs, cs, cache): hs, cs (T, B, H) the
states after each step. backward(cell, dhs, cache, p, dhT, dcT) takes dL/dh_t
(T, B, H) from above (the output layer or the next layer) and the gradient
arriving at the final state, and returns the gradients of every parameter,
of x, and of h0 and c0.
"""
from __future__ import annotations

import numpy as np


def sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


# ---------------------------------------------------------------------------
# Forward: one function per cell, one step at a time.

def forward(cell: str, x, h0, c0, p):
    """p: {"Wx", "Wh", "b", and "ex" for the peephole (p_i, p_f, p_o) and the GRU (b_hn)}."""
    T, B, _ = x.shape
    H = h0.shape[1]
    h, c = h0, c0
    hs, cs, steps = [], [], []
    for t in range(T):
        a = x[t] @ p["Wx"] + p["b"]            # the input's part of every gate, (B, G)
        r = h @ p["Wh"].T                       # the recurrent part, (B, G)
        step = {"x": x[t], "h_prev": h, "c_prev": c}
        if cell == "lstm":                      # gates i, f, c~ (g), o
            z = a + r
            i, f = sigmoid(z[:, :H]), sigmoid(z[:, H:2 * H])
            g, o = np.tanh(z[:, 2 * H:3 * H]), sigmoid(z[:, 3 * H:])
            c = f * c + i * g                   # c_t = f ⊙ c_(t−1) + i ⊙ c~
            h = o * np.tanh(c)                  # h_t = o ⊙ tanh(c_t)
            step.update(i=i, f=f, g=g, o=o, c=c)
        elif cell == "lstm-peephole":           # i and f see c_(t−1), o sees c_t
            z = a + r
            pi, pf, po = p["ex"]
            i = sigmoid(z[:, :H] + pi * c)
            f = sigmoid(z[:, H:2 * H] + pf * c)
            g = np.tanh(z[:, 2 * H:3 * H])
            c = f * c + i * g
            o = sigmoid(z[:, 3 * H:] + po * c)
            h = o * np.tanh(c)
            step.update(i=i, f=f, g=g, o=o, c=c)
        elif cell == "cifg":                    # gates f, c~ (g), o; the input gate is 1 − f
            z = a + r
            f, g, o = sigmoid(z[:, :H]), np.tanh(z[:, H:2 * H]), sigmoid(z[:, 2 * H:])
            c = f * c + (1 - f) * g
            h = o * np.tanh(c)
            step.update(f=f, g=g, o=o, c=c)
        elif cell == "gru":                     # gates r, z, n (as torch.nn.GRU)
            q = r[:, 2 * H:] + p["ex"][0]       # h_(t−1) Wh_nᵀ + b_hn
            rg = sigmoid(a[:, :H] + r[:, :H])
            zg = sigmoid(a[:, H:2 * H] + r[:, H:2 * H])
            n = np.tanh(a[:, 2 * H:] + rg * q)
            h = (1 - zg) * n + zg * h           # h_t = (1 − z) ⊙ n + z ⊙ h_(t−1)
            step.update(r=rg, z=zg, n=n, q=q)
        elif cell == "rnn":
            h = np.tanh(a + r)
        elif cell == "irnn":
            step["pre"] = a + r
            h = np.maximum(0.0, step["pre"])
        else:
            raise ValueError(f"unknown cell {cell!r}")
        step["h"] = h
        hs.append(h)
        cs.append(c)
        steps.append(step)
    return np.stack(hs), np.stack(cs), steps


# ---------------------------------------------------------------------------
# Backward: the same steps in reverse, each rule beside the one it undoes.

def backward(cell: str, dhs, steps, p, dhT=None, dcT=None):
    """Backprop through time. dhs (T, B, H): dL/dh_t from above; dhT, dcT: the
    gradient at the final state (default 0). Returns {"Wx", "Wh", "b", "ex",
    "x", "h0", "c0"}, gradients of the same shapes."""
    T, B, H = dhs.shape
    g = {k: np.zeros_like(v) for k, v in p.items()}
    dx = np.zeros((T, B, p["Wx"].shape[0]))
    dh_next = np.zeros((B, H)) if dhT is None else dhT.copy()
    dc_next = np.zeros((B, H)) if dcT is None else dcT.copy()
    for t in range(T - 1, -1, -1):
        s = steps[t]
        dh = dhs[t] + dh_next                   # from above, and from step t + 1
        dc_prev = np.zeros((B, H))
        if cell in ("lstm", "lstm-peephole"):
            i, f, gg, o, c = s["i"], s["f"], s["g"], s["o"], s["c"]
            tc = np.tanh(c)
            do = dh * tc                        # h = o ⊙ tanh(c)
            dzo = do * o * (1 - o)
            dc = dc_next + dh * o * (1 - tc ** 2)
            if cell == "lstm-peephole":
                pi, pf, po = p["ex"]
                dc = dc + dzo * po              # o saw c_t
            dzi = dc * gg * i * (1 - i)         # c = f ⊙ c_prev + i ⊙ g
            dzf = dc * s["c_prev"] * f * (1 - f)
            dzg = dc * i * (1 - gg ** 2)
            dc_prev = dc * f
            if cell == "lstm-peephole":
                dc_prev = dc_prev + dzi * pi + dzf * pf
                g["ex"][0] += (dzi * s["c_prev"]).sum(0)
                g["ex"][1] += (dzf * s["c_prev"]).sum(0)
                g["ex"][2] += (dzo * c).sum(0)
            da = np.concatenate([dzi, dzf, dzg, dzo], axis=1)
            dr = da
        elif cell == "cifg":
            f, gg, o, c = s["f"], s["g"], s["o"], s["c"]
            tc = np.tanh(c)
            dzo = dh * tc * o * (1 - o)
            dc = dc_next + dh * o * (1 - tc ** 2)
            dzf = dc * (s["c_prev"] - gg) * f * (1 - f)   # c = f c_prev + (1 − f) g
            dzg = dc * (1 - f) * (1 - gg ** 2)
            dc_prev = dc * f
            da = np.concatenate([dzf, dzg, dzo], axis=1)
            dr = da
        elif cell == "gru":
            rg, zg, n, q, hp = s["r"], s["z"], s["n"], s["q"], s["h_prev"]
            dn = dh * (1 - zg)                  # h = (1 − z) n + z h_prev
            dzz = dh * (hp - n) * zg * (1 - zg)
            dan = dn * (1 - n ** 2)             # n = tanh(a_n + r ⊙ q)
            drr = dan * q * rg * (1 - rg)
            dq = dan * rg
            g["ex"][0] += dq.sum(0)
            da = np.concatenate([drr, dzz, dan], axis=1)
            dr = np.concatenate([drr, dzz, dq], axis=1)
            dh = dh * zg                        # the direct path to h_prev, added below
        elif cell == "rnn":
            da = dh * (1 - s["h"] ** 2)
            dr = da
        elif cell == "irnn":
            da = dh * (s["pre"] > 0)
            dr = da
        g["Wx"] += s["x"].T @ da                # a = x Wx + b + h_prev Whᵀ
        g["b"] += da.sum(0)
        g["Wh"] += dr.T @ s["h_prev"]
        dx[t] = da @ p["Wx"].T
        dh_next = dr @ p["Wh"] + (dh if cell == "gru" else 0)
        dc_next = dc_prev
    g["x"], g["h0"], g["c0"] = dx, dh_next, dc_next
    return g
