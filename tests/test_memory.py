"""The measurements of memory (charlstm.lab.spans): the probe text, the context
curve, the recall scores, evaluation in bounded chunks, and compare --probe."""
import os
import shutil
import subprocess

import numpy as np
import pytest
from click.testing import CliRunner

import charlstm.lab.spans as M
from charlstm.cli import main
from charlstm.lab.compare.run import recall_scores
from charlstm.config import ModelConfig
from charlstm.model import Model

from . import naive


def tiny(cell="lstm", V=6, H=5, layers=1, seed=0):
    m = Model(ModelConfig(cell=cell, hidden=H, layers=layers, dropout=0.0, vocab_size=V),
              np.float64).init(np.random.default_rng(seed))
    m.flat[:] += np.random.default_rng(seed + 1).normal(0, 0.4, m.size)
    return m


# -- the probe text ----------------------------------------------------------

def test_probe_recall_is_determined_by_the_key():
    vocab = M.probe_vocab()
    lines = M.probe_ids(7, 500, np.random.default_rng(3))
    assert lines.shape == (500, 7 + 4)
    keys = {vocab.index(k) for k in M.PROBE_KEYS}
    assert set(lines[:, 0]) <= keys
    assert (lines[:, 7 + 2] == lines[:, 0]).all()                    # the recalled key
    assert (lines[:, 7 + 1] == vocab.index(M.PROBE_MARK)).all()
    assert (lines[:, 7 + 3] == vocab.index("\n")).all()
    text = M.probe_text(lines[:2])
    first = text.split("\n")[0]
    assert first[0] in M.PROBE_KEYS and first[-2:] == "=" + first[0]
    assert set(first[1:-2]) <= set(M.PROBE_FILLER)


def test_probe_filler_is_independent_of_the_key():
    """Conditioned on the key, every filler character is as frequent as
    overall: the key cannot be guessed from the filler (a chi-square test)."""
    vocab = M.probe_vocab()
    lines = M.probe_ids(20, 16000, np.random.default_rng(4))
    fill = lines[:, 1:21]
    assert not (np.isin(fill, [vocab.index(k) for k in M.PROBE_KEYS])).any()
    table = np.array([[np.sum(fill[lines[:, 0] == k] == f) for f in np.unique(fill)]
                      for k in np.unique(lines[:, 0])], float)
    expected = table.sum(1, keepdims=True) * table.sum(0, keepdims=True) / table.sum()
    chi2 = ((table - expected) ** 2 / expected).sum()
    dof = (table.shape[0] - 1) * (table.shape[1] - 1)                 # 105
    assert chi2 < dof + 5 * np.sqrt(2 * dof)                          # far from dependence
    # and a key planted in the filler would be caught: the test can fail
    rigged = fill.copy()
    rigged[:, 0] = lines[:, 0] % 16 + vocab.index("a")
    table = np.array([[np.sum(rigged[lines[:, 0] == k] == f) for f in np.unique(rigged)]
                      for k in np.unique(lines[:, 0])], float)
    expected = table.sum(1, keepdims=True) * table.sum(0, keepdims=True) / table.sum()
    assert ((table - expected) ** 2 / expected).sum() > dof + 5 * np.sqrt(2 * dof)


def test_probe_accuracy_counts_only_the_recall_positions():
    """A model that always predicts one key scores the share of lines with
    that key, whatever it predicts elsewhere."""
    vocab = M.probe_vocab()
    corpus = M.probe_corpus(5, train_chars=1000, val_lines=400)
    m = Model(ModelConfig(cell="rnn", hidden=3, dropout=0.0, vocab_size=len(vocab)), np.float64)
    m.p["by"][vocab.index("C")] = 5.0
    ids = corpus.val
    L = len(ids) // 32
    grid = ids[:32 * L].reshape(32, L)
    text = ["".join(vocab[i] for i in row) for row in grid]
    keys = [k for row in text for k in            # the keys of the lines whole in a stream
            [line[-1] for line in row.split("\n")[1:] if "=" in line and len(line) == 8]]
    want = np.mean([k == "C" for k in keys])
    assert 300 < len(keys) < 400
    assert M.probe_accuracy(m, ids, vocab) == pytest.approx(want)
    assert M.memory_span([5, 10, 20], [1.0, 0.95, 0.5]) == 10
    assert M.memory_span([5, 10], [0.5, 0.2]) is None


# -- evaluation in chunks -----------------------------------------------------

def test_run_streams_gives_the_same_logits_in_any_chunks(monkeypatch):
    m = tiny("gru", layers=2)
    rng = np.random.default_rng(5)
    tokens = rng.integers(0, 6, (37, 11))
    want = naive.logits(m, tokens, *m.zero_state(11)).reshape(37, 11, -1)
    for budget in (1 << 30, 3000):                  # one chunk; many in time and streams
        monkeypatch.setattr(M, "CHUNK_BYTES", budget)
        T, B = M.chunk_shape(m, 37, 11)
        assert (T, B) == ((37, 11) if budget > 1e6 else (T, B))
        got = np.full((37, 11, 6), np.nan)

        def visit(t0, s0, logits):
            got[t0:t0 + logits.shape[0], s0:s0 + logits.shape[1]] = logits

        M.run_streams(m, tokens, visit)
        np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-9)
    assert M.chunk_shape(m, 37, 11)[0] < 37             # the small budget did chunk


def test_chunk_shape_bounds_the_saved_gates():
    """The trap of a naive evaluation: 3,000 streams × 512 steps of a 1×768
    LSTM would save 3000·512·3072 floats (19 GB); chunks stay under the cap."""
    m = Model(ModelConfig(hidden=768, vocab_size=84, dropout=0.0))
    T, B = M.chunk_shape(m, 512, 3000)
    assert T * B * (4 * 768 + 84) * 4 <= M.CHUNK_BYTES and T >= 16


# -- the context curve ----------------------------------------------------------

@pytest.mark.parametrize("cell", ["lstm", "rnn", "gru"])
def test_context_curve_at_k1_is_the_loss_given_the_previous_character(cell):
    """At k = 1 the model sees one character from a zero state: the loss is
    −log softmax(h₁ W_y + b_y)[next], computed here by hand."""
    m = tiny(cell)
    rng = np.random.default_rng(7)
    ids = rng.integers(0, 6, 300)
    pos = M.context_positions(len(ids), 8, 50, seed=1)
    got = M.context_curve(m, ids, [1], pos)[0]
    p = {k: v for k, v in m.p.items()}
    losses = []
    for q in pos:
        x = np.eye(6)[ids[q - 1]]
        h, _ = naive.cell_step(cell, x, np.zeros(5), np.zeros(5), p["l0.Wx"], p["l0.Wh"],
                               p["l0.b"], p.get("l0.ex", np.zeros((0, 5))))
        z = h @ p["Wy"] + p["by"]
        losses.append(np.log(np.exp(z).sum()) - z[ids[q]])
    assert got == pytest.approx(np.mean(losses), rel=1e-10)


def test_context_curve_scores_the_same_positions_at_every_k():
    m = tiny("lstm")
    ids = np.random.default_rng(8).integers(0, 6, 400)
    pos = M.context_positions(len(ids), 16, 40, seed=2)
    assert (pos >= 16).all() and len(set(pos.tolist())) == 40
    assert (M.context_positions(len(ids), 16, 40, seed=2) == pos).all()
    curve = M.context_curve(m, ids, [1, 4, 16], pos)
    for j, k in enumerate([1, 4, 16]):          # each k by hand, on those positions
        want = []
        for q in pos:
            z = naive.logits(m, ids[q - k:q, None], *m.zero_state(1))[-1]
            want.append(np.log(np.exp(z).sum()) - z[ids[q]])
        assert curve[j] == pytest.approx(np.mean(want), rel=1e-10)


def test_context_ks_and_span():
    assert M.context_ks(512) == [1, 2, 4, 8, 16, 32, 64, 128, 256, 512]
    assert M.context_ks(100) == [1, 2, 4, 8, 16, 32, 64, 100]
    assert M.context_span([1, 2, 4, 8], [3.0, 2.5, 2.105, 2.1]) == 4
    assert M.context_span([1, 2, 4, 8], [3.0, 2.0, 2.1, 2.1]) == 2
    assert M.context_span([1, 2], [3.0, float("nan")]) is None
    with pytest.raises(Exception, match="shorter than the longest context"):
        M.context_positions(100, 512, 10)


# -- recall scores --------------------------------------------------------------

def test_exact_prefix():
    assert M.exact_prefix([1, 2, 3, 4], [1, 2, 9, 4]) == 2
    assert M.exact_prefix([1, 2, 3], [1, 2, 3]) == 3
    assert M.exact_prefix([5, 2], [1, 2]) == 0


def test_recall_scores_on_a_model_that_always_says_the_same():
    """A model whose output is always symbol 1 (zero weights, a large bias):
    greedy decoding writes 1s, so the prefix ends at the first other symbol of
    the truth; teacher-forced, it is right exactly where the truth is 1."""
    from charlstm.sampling import Sampler
    m = Model(ModelConfig(cell="lstm", hidden=4, dropout=0.0, vocab_size=3))
    m.p["by"][:] = [0, 5, 0]
    s = Sampler(m, "abc", threads=1)
    prime, truth = np.array([0, 2, 0]), np.array([1, 1, 0, 1, 2, 1, 1, 1])
    r = recall_scores(s, [(prime, truth)])
    p = r["passages"][0]
    assert p["output"] == "bbbbbbbb" and p["truth"] == "bbabcbbb" and p["prime"] == "aca"
    assert p["prefix"] == 2 and r["prefix_mean"] == 2
    assert p["teacher_forced"] == pytest.approx(6 / 8) and r["teacher_forced"] == pytest.approx(0.75)


def test_teacher_forced_accuracy_against_the_reference():
    m = tiny("lstm")
    ids = np.random.default_rng(9).integers(0, 6, 30)
    prime, truth = ids[:10], ids[10:]
    z = naive.logits(m, ids[:-1, None], *m.zero_state(1))
    want = (z.argmax(axis=1)[9:] == truth).mean()
    assert M.teacher_forced_accuracy(m, prime, truth) == pytest.approx(want)


# -- compare --probe, end to end ---------------------------------------------------

def test_compare_probe_end_to_end(tmp_path, run_probe):
    out = tmp_path / "run"
    r, res = run_probe("--probe", "--cells", "rnn,lstm", "--lags", "3,6", minutes=0.03,
                       hidden=16)
    pr = res["probe"]
    assert pr["lags"] == [3, 6] and pr["chance"] == 1 / 8
    assert set(pr["accuracy"]) == {"rnn", "lstm"} and set(pr["span"]) == {"rnn", "lstm"}
    for cell, acc in pr["accuracy"].items():
        assert len(acc) == 2 and all(0 <= a <= 1 for a in acc)
        assert pr["span"][cell] == M.memory_span([3, 6], acc)
    runs = {(x["cell"], x["lag"]): x for x in pr["runs"]}
    assert runs[("lstm", 6)]["seq_len"] >= 2 * (6 + 4)        # BPTT reaches past the lag
    assert "Memory probe" in r.output and "span" in r.output
    page = (out / "report.html").read_text()
    assert "Memory probe" in page and "<svg" in page


def test_compare_needs_a_file_or_the_probe():
    r = CliRunner().invoke(main, ["compare"])
    assert r.exit_code == 2 and "--probe" in r.output


def test_compare_rejects_bad_lags():
    r = CliRunner().invoke(main, ["compare", "--probe", "--lags", "5,x"])
    assert r.exit_code == 2 and "whole numbers" in r.output


# -- the report page in a real browser -------------------------------------------------

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def chromium_dom(page: str, tmp_path) -> str:
    """The DOM headless Chromium renders from a file on disk, with the network off."""
    r = subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
         "--no-first-run", "--disable-background-networking", "--disable-component-update",
         "--disable-sync", f"--user-data-dir={tmp_path / 'profile'}",
         "--proxy-server=127.0.0.1:9", "--dump-dom", "file://" + os.path.abspath(page)],
        capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    return r.stdout


@pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed")
def test_report_page_renders_in_chromium(tmp_path):
    out = tmp_path / "run"
    p = tmp_path / "t.txt"
    rng = np.random.default_rng(0)
    words = ["the", "cat", "sat", "on", "a", "mat", "and", "then", "it", "ran"]
    p.write_text("\n".join(" ".join(rng.choice(words, 8)) for _ in range(300)), encoding="utf-8")
    r = CliRunner().invoke(main, [
        "compare", str(p), "--cells", "rnn,lstm", "--hidden", "16", "--seq-len", "20",
        "--batch-size", "4", "--steps", "20", "--eval-every", "10", "--out-dir", str(out),
        "--no-progress", "--jobs", "1", "--length", "40", "--context-positions", "50",
        "--probe", "--lags", "3", "--probe-minutes", "0.02", "--probe-hidden", "8"],
        catch_exceptions=False)
    assert r.exit_code == 0, r.output
    dom = chromium_dom(str(out / "report.html"), tmp_path)
    for text in ("Models", "Context curve on held-out text", "Gradient flow on held-out text",
                 "Recall of training passages", "Passage 1", "Memory probe",
                 "Do the measures of memory agree?"):
        assert text in dom, text
    assert dom.count("<svg") >= 4 and dom.count('class="miss') >= 1    # "miss" or "miss sp"
