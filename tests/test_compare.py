"""compare: parameter matching, the gradient-flow measurement, end to end."""
import json
import os
from dataclasses import replace

import numpy as np
import pytest
from click.testing import CliRunner

from charlstm.cli import main
from charlstm.lab.charts import text_chart
from charlstm.lab.compare.results import agreement, clip_curve
from charlstm.lab.compare.run import match_hidden
from charlstm.lab.spans import gradient_flow, horizon
from charlstm.config import CELL_NAMES, ModelConfig, TrainConfig, default_lr
from charlstm.model import Model, Workspace, n_params


@pytest.mark.parametrize("cell", CELL_NAMES)
def test_match_params_lands_near_the_lstm(cell):
    lstm = ModelConfig(cell="lstm", hidden=256, layers=2, vocab_size=65)
    target = n_params(lstm)
    h = match_hidden(replace(lstm, cell=cell), target)
    assert abs(n_params(replace(lstm, cell=cell, hidden=h)) - target) / target < 0.02


@pytest.mark.parametrize("cell", ["lstm", "rnn", "gru"])
def test_gradient_flow_matches_finite_differences(cell):
    """dL_t/dh_(t-k) from the measurement, against perturbing h_(t-k) directly:
    re-run the last steps from a perturbed state and difference the loss."""
    cfg = ModelConfig(cell=cell, hidden=5, layers=1, dropout=0.0, vocab_size=6)
    rng = np.random.default_rng(2)
    m = Model(cfg, np.float64).init(rng)
    m.flat[:] += rng.normal(0, 0.3, m.size)
    T, B = 6, 2
    ids = rng.integers(0, 6, 4000)
    flow = gradient_flow(m, ids, T, B=B)
    assert (flow["c"] is None) == (cell != "lstm")
    # rebuild the measured window exactly as gradient_flow does
    L = len(ids) // B
    streams = ids[:B * L].reshape(B, L)
    ws = Workspace(cfg, T, B, np.float64)
    h, c = m.zero_state(B)
    m.forward(ws, streams[:, :T].T, h, c)
    h, c = m.final_state(ws)
    x, y = streams[:, T:2 * T].T, streams[:, T + 1:2 * T + 1].T
    m.forward(ws, x, h, c)
    hs, cs = ws.layers[0]["hs"].copy(), ws.layers[0]["cs"].copy()
    eps = 1e-6
    grads = {}
    for k in (0, 1, 3, T - 1):
        grads[k] = np.array([[(last_loss(m, x, y, hs, cs, k, b, j, eps) -
                               last_loss(m, x, y, hs, cs, k, b, j, -eps)) / (2 * eps)
                              for j in range(5)] for b in range(B)])           # (B, H)
    norm0 = np.linalg.norm(grads[0], axis=1).mean()
    unit0 = np.abs(grads[0]).mean(axis=0)
    for k, g in grads.items():                    # every statistic, relative to k = 0
        want = {"norm": np.linalg.norm(g, axis=1).mean() / norm0,
                "max": np.abs(g).mean(axis=0).max() / unit0.max(),
                "median": np.median(np.abs(g).mean(axis=0)) / np.median(unit0),
                "p90": np.percentile(np.abs(g).mean(axis=0), 90) / np.percentile(unit0, 90)}
        for stat, v in want.items():
            got = flow["h"][stat][k]
            assert abs(got - v) < 1e-5 * max(1.0, v), (k, stat, got, v)


def last_loss(m, x, y, hs, cs, k, b, j, d):
    """Loss at the window's last step for stream b, re-run from h_(T-1-k) with
    element j moved by d (c_(T-1-k) kept)."""
    T, B = x.shape
    start = T - 1 - k
    h0 = hs[start + 1][None].copy()
    c0 = cs[start + 1][None].copy()
    h0[0, b, j] += d
    if k == 0:
        z = h0[0, b] @ m.p["Wy"] + m.p["by"]
    else:
        sub = Workspace(m.cfg, k, B, np.float64)
        z = m.forward(sub, x[start + 1:], h0, c0).reshape(k, B, -1)[-1, b].copy()
    z = z - z.max()
    return -(z[y[-1, b]] - np.log(np.exp(z).sum()))


def test_horizon():
    assert horizon(np.array([1.0, 0.5, 0.02, 0.005])) == 3
    assert horizon(np.array([1.0, 0.5])) is None


def test_text_chart_draws_every_series():
    lines = text_chart({"a": ([0, 1, 2], [1, 2, 3]), "b": ([0, 1, 2], [3, 2, 1])})
    body = "\n".join(lines)
    assert "*" in body and "o" in body and "* a" in body and "o b" in body


def test_text_chart_clips_at_ymax():
    lines = text_chart({"a": ([0, 1, 2], [1e7, 2, 1])}, ymax=4.0)
    assert lines[0].startswith("       >4 |*")           # 1e7 drawn on a top line of its own
    assert lines[1].startswith("        2 |")            # the rest fits the points below 4
    assert "1e+07" not in "\n".join(lines)


def test_compare_end_to_end(tmp_path):
    p = tmp_path / "t.txt"
    rng = np.random.default_rng(0)
    words = ["the", "cat", "sat", "on", "a", "mat", "and", "then", "it", "ran"]
    p.write_text("\n".join(" ".join(rng.choice(words, 8)) for _ in range(300)), encoding="utf-8")
    out = tmp_path / "run"
    r = CliRunner().invoke(main, [
        "compare", str(p), "--cells", "rnn,lstm,gru", "--hidden", "24", "--seq-len", "20",
        "--batch-size", "4", "--steps", "30", "--eval-every", "10", "--out-dir", str(out),
        "--no-progress", "--jobs", "1", "--length", "40", "--seed", "the cat"],
        catch_exceptions=False)
    assert r.exit_code == 0, r.output
    res = json.loads((out / "results.json").read_text())
    assert [m["cell"] for m in res["models"]] == ["rnn", "lstm", "gru"]
    assert [m["lr"] for m in res["models"]] == [default_lr(c) for c in ("rnn", "lstm", "gru")]
    assert default_lr("rnn") < default_lr("lstm") == TrainConfig.lr      # no --lr: each its own
    for m in res["models"]:
        assert m["steps"] == 30 and np.isfinite(m["val_loss"])
        rec = m["recall"]
        assert 0 <= rec["teacher_forced"] <= 1 and 0 <= rec["prefix_mean"] <= 200
        for p in rec["passages"]:
            assert len(p["prime"]) == 100 and len(p["truth"]) == len(p["output"]) == 200
            assert p["output"][:p["prefix"]] == p["truth"][:p["prefix"]]
            assert p["prefix"] == 200 or p["output"][p["prefix"]] != p["truth"][p["prefix"]]
        flow = m["grad_flow"]
        assert flow["T"] >= 20 and len(flow["h"]["max"]) == flow["T"] + 1
        assert flow["h"]["max"][0] == 1.0
        ctx = res["context"][m["cell"]]
        assert ctx["k"][0] == 1 and ctx["k"][-1] == res["context_max"]
        assert ctx["span"] in ctx["k"] and len(ctx["loss"]) == len(ctx["k"])
        assert os.path.exists(m["checkpoint"])
    assert res["models"][1]["grad_flow"]["c"] is not None
    assert res["models"][0]["grad_flow"]["c"] is None
    page = (out / "report.html").read_text()
    assert "<svg" in page and "Context curve" in page and "Passage 1" in page
    assert "http://" not in page.replace('xmlns="http://www.w3.org/2000/svg"', "")
    try:
        import matplotlib  # noqa: F401
        assert os.path.getsize(out / "compare.png") > 10000
    except ImportError:
        assert not (out / "compare.png").exists()
    for word in ("params", "val@", "chars/s", "[lstm]", "Gradient flow", "Context curve",
                 "Recall of a training passage", "results:", "report:"):
        assert word in r.output


def test_compare_rejects_unknown_cells(tmp_path):
    p = tmp_path / "t.txt"
    p.write_text("abc " * 500)
    r = CliRunner().invoke(main, ["compare", str(p), "--cells", "rnn,tree"])
    assert r.exit_code == 2 and "tree" in r.output


@pytest.mark.slow
@pytest.mark.skipif(not os.path.exists("/proc/self/task"), reason="needs Linux /proc")
def test_killing_compare_ends_its_workers(tmp_path):
    """SIGTERM to compare leaves no worker training on, orphaned."""
    import signal
    import subprocess
    import sys
    import time
    p = tmp_path / "t.txt"
    p.write_text("the cat sat on the mat and then it ran\n" * 400, encoding="utf-8")
    proc = subprocess.Popen(
        [sys.executable, "-m", "charlstm", "compare", str(p), "--cells", "rnn,lstm",
         "--hidden", "16", "--minutes", "3", "--jobs", "2", "--no-progress",
         "--out-dir", str(tmp_path / "run")], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def workers():
        try:
            with open(f"/proc/{proc.pid}/task/{proc.pid}/children") as fh:
                kids = [int(k) for k in fh.read().split()]
        except OSError:
            return []
        out = []
        for k in kids:
            try:
                with open(f"/proc/{k}/cmdline", "rb") as fh:
                    if b"spawn_main" in fh.read():
                        out.append(k)
            except OSError:
                pass
        return out

    deadline = time.time() + 120
    while len(workers()) < 2 and time.time() < deadline:
        time.sleep(0.5)
    kids = workers()
    assert len(kids) >= 2, "compare did not start its workers"
    time.sleep(5)                                   # they are training now
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=30)
    deadline = time.time() + 20
    alive = kids
    while alive and time.time() < deadline:
        time.sleep(0.5)
        alive = [k for k in kids if os.path.exists(f"/proc/{k}")
                 and open(f"/proc/{k}/stat").read().split()[2] != "Z"]
    for k in alive:
        os.kill(k, signal.SIGKILL)
    assert not alive, f"workers still running after compare was killed: {alive}"


def test_clip_curve_keeps_a_diverged_model_from_flattening_the_rest():
    y, over = clip_curve([2.0, 3.2e6, float("nan"), 1.5], 4.4)
    assert y.tolist() == [2.0, 4.4, 4.4, 1.5] and over.tolist() == [False, True, True, False]


def test_the_png_stays_readable_with_a_diverged_model():
    """A model whose validation loss reached 3.2 million must not squash the
    others' curves: the loss panel's y axis stays near ln V."""
    pytest.importorskip("matplotlib")
    from charlstm.lab.compare.figure import _figure
    V = 65

    def model(cell, vals):
        return {"cell": cell, "hidden": 8, "params": 1000,
                "val_curve": [[50 * (k + 1), k, v] for k, v in enumerate(vals)],
                "context": {"k": [1, 2, 4], "loss": [3.0, 2.5, 2.4], "span": 4},
                "grad_flow": {"T": 3, "h": {"max": [1, 0.1, 0.01, 0.001]}, "c": None}}
    rep = {"vocab_size": V, "probe": None,
           "models": [model("rnn", [3.0, 2.5, 2.2]), model("irnn", [3.1, 3.2e6, 2.9])]}
    fig = _figure(rep)
    lo, hi = fig.axes[0].get_ylim()
    assert hi < 1.2 * np.log(V) and lo > 1.5


def test_agreement_names_a_clash_and_an_agreement():
    def m(cell, reach, span):
        return {"cell": cell, "horizon": {"T": 200, "reach": reach},
                "context": {"span": span}}
    rep = {"cells": ["rnn", "lstm"], "models": [m("rnn", 20, 8), m("lstm", None, 16)],
           "probe": {"span": {"rnn": 20, "lstm": 100}}}
    lines = agreement(rep)
    assert "lstm >200" in lines[0] and lines[-1].startswith("the measures agree")
    rep["probe"]["span"] = {"rnn": 50, "lstm": 10}
    assert agreement(rep)[-1] == "the measures disagree on the order of rnn and lstm"
