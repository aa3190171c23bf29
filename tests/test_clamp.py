"""sample --clamp: a unit's state held at a value while sampling, against a
plain NumPy sampler; without a clamp, sampling is what it was."""
import numpy as np
import pytest
from click.testing import CliRunner

from charlstm.cli import main
from charlstm.config import ModelConfig
from charlstm.model import Model
from charlstm.sampling import Sampler

from . import naive


def reference_sample(m, prime, u, clamp=(), temperature=1.0):
    """Sampling one character at a time in float64 NumPy, as kernels.generate
    does it: feed the prime, then draw each character from
    softmax(logits / temperature) with the given uniform numbers, feeding it
    back. clamp: (layer, unit, value), applied after every step."""
    cfg, p = m.cfg, m.p
    H, V = cfg.hidden, cfg.vocab_size
    h = [np.zeros(H) for _ in range(cfg.layers)]
    c = [np.zeros(H) for _ in range(cfg.layers)]
    o_gate = m.cell.output_gate

    def step(tok):
        x = np.eye(V)[tok]
        for l in range(cfg.layers):
            ex = p.get(f"l{l}.ex", np.zeros((0, H)))
            h_new, c_new = naive.cell_step(cfg.cell, x, h[l], c[l], p[f"l{l}.Wx"], p[f"l{l}.Wh"],
                                           p[f"l{l}.b"], ex)
            for layer, unit, value in clamp:
                if layer == l:
                    if o_gate >= 0:       # h = o ⊙ tanh(c): recompute o for this step
                        z = x @ p[f"l{l}.Wx"] + p[f"l{l}.b"] + h[l] @ p[f"l{l}.Wh"].T
                        o = 1 / (1 + np.exp(-z[o_gate * H + unit]))
                        c_new[unit] = value
                        h_new[unit] = o * np.tanh(value)
                    else:
                        h_new[unit] = value
            h[l], c[l] = h_new, c_new
            x = h[l]

    for tok in prime:
        step(tok)
    out = []
    for uk in u:
        z = h[-1] @ p["Wy"] + p["by"]
        q = np.exp((z - z.max()) / temperature)
        pick = min(int(np.searchsorted(np.cumsum(q), uk * q.sum(), side="right")), V - 1)
        out.append(pick)
        step(pick)
    return np.array(out)


@pytest.mark.parametrize("cell", ["lstm", "cifg", "gru", "rnn"])
def test_clamped_sampling_matches_the_reference(cell):
    cfg = ModelConfig(cell=cell, hidden=12, layers=2, dropout=0.0, vocab_size=7)
    m = Model(cfg, np.float64).init(np.random.default_rng(3))
    m.flat[:] *= 3                                       # a model with opinions
    prime = np.array([1, 4, 2, 2, 0])
    u = np.random.default_rng(4).random(150)
    for clamp in [(), ((1, 5, 0.9),), ((0, 2, -1.5), (1, 11, 2.0))]:
        s = Sampler(m, "abcdefg", threads=1, clamp=clamp)
        out = np.empty(len(u), np.int64)
        h, c = m.zero_state(1)
        s.generate(out, prime, u, h, c)
        ref = reference_sample(m, prime, u, clamp)
        assert (out == ref).mean() == 1.0, (clamp, np.flatnonzero(out != ref)[:5])


def test_a_clamp_changes_the_text_and_no_clamp_changes_nothing():
    cfg = ModelConfig(cell="lstm", hidden=16, layers=1, dropout=0.0, vocab_size=9)
    m = Model(cfg, np.float32).init(np.random.default_rng(0))
    m.flat[:] *= 4
    free = Sampler(m, "abcdefghi").text("ab", 200, rng_seed=1)
    again = Sampler(m, "abcdefghi", clamp=()).text("ab", 200, rng_seed=1)
    held = Sampler(m, "abcdefghi", clamp=[(0, 3, 5.0)]).text("ab", 200, rng_seed=1)
    held2 = Sampler(m, "abcdefghi", clamp=[(0, 3, 5.0)]).text("ab", 200, rng_seed=1)
    assert free == again and held == held2 and held != free


@pytest.fixture
def trained(tmp_path):
    p = tmp_path / "t.txt"
    p.write_text('say "hello there" (and (then) go) now.\n' * 60, encoding="utf-8")
    out = str(tmp_path / "m.npz")
    r = CliRunner().invoke(main, ["train", str(p), "--out", out, "--hidden", "16", "--seq-len",
                                  "16", "--batch-size", "4", "--steps", "40", "--no-progress"],
                           catch_exceptions=False)
    assert r.exit_code == 0, r.output
    return out


def test_sample_clamp_on_the_command_line(trained):
    def run(*extra):
        r = CliRunner().invoke(main, ["sample", trained, "--seed", "say", "--length", "120",
                                      "--rng-seed", "3", *extra], catch_exceptions=False)
        return r
    plain, plain2 = run(), run()
    held, held2 = run("--clamp", "0:3=0.95"), run("--clamp", "0:3=0.95", "--clamp", "0:7=-1")
    assert plain.exit_code == held.exit_code == held2.exit_code == 0
    # the text alone (stdout): a cold kernel cache's compile lines go to stderr
    assert plain.stdout == plain2.stdout                   # deterministic without a clamp
    assert held.stdout != plain.stdout and held2.stdout != held.stdout
    bad = run("--clamp", "1:0=0.5")
    assert bad.exit_code == 1 and "layers 0-0" in bad.output and "Traceback" not in bad.output
    bad = run("--clamp", "0:16=0.5")
    assert bad.exit_code == 1 and "units 0-15" in bad.output
    for v in ("0:3", "a:b=1", "0:3=nan"):
        bad = run("--clamp", v)
        assert bad.exit_code == 2 and "--clamp" in bad.output, v
