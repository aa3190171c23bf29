"""Training end to end: the LSTM-versus-RNN recall demo, exact resume, non-English text."""
import contextlib
import math
import os
import signal

import numpy as np
import pytest

from charlstm import checkpoint as ckpt
from charlstm.config import ModelConfig, TrainConfig
from charlstm.data import load_corpus
from charlstm.sampling import Sampler
from charlstm.train import Trainer

from .conftest import POEM


def train_poem(poem, cell, steps=1000, tmp=None):
    """One stream through the whole poem, as min-char-rnn (its state carried, never
    reset within the poem); 348 transitions = 12 × 29,
    so every character is a training target. The learning rate decays (the
    default cosine schedule): with a constant 1e-2, a few runs in a hundred
    ended on a step that sent greedy decoding off the poem partway (4 of 120
    rng seeds for the LSTM; 30 of 30 recite with the decay)."""
    mc = ModelConfig(cell=cell, hidden=128, layers=1, dropout=0.0)
    tc = TrainConfig(seq_len=29, batch_size=1, lr=1e-2, schedule="cosine", steps=steps,
                     val_frac=0.0, eval_every=10000, rng_seed=1, state_reset=0.0)
    tr = Trainer(poem, mc, tc, str(tmp / f"{cell}.npz"), progress=False, log=lambda m: None)
    tr.run()
    return Sampler(tr.model, tr.corpus.vocab)


def recall(sampler, text, prime_len):
    """Characters of the true continuation reproduced by greedy decoding."""
    prime, truth = text[:prime_len], text[prime_len:]
    out = sampler.text(prime, len(truth), greedy=True)
    n = 0
    while n < len(truth) and out[n] == truth[n]:
        n += 1
    return n, out


def test_lstm_recites_the_poem(poem, tmp_path):
    """The recall demo: primed with the first line, the LSTM recites the rest."""
    first_line = POEM.index("\n") + 1
    n, out = recall(train_poem(poem, "lstm", tmp=tmp_path), POEM, first_line)
    assert n == len(POEM) - first_line, f"diverged after {n} chars: {out[:n + 20]!r}"


def test_rnn_is_scored_the_same_way(poem, tmp_path, capsys):
    first_line = POEM.index("\n") + 1
    n, _ = recall(train_poem(poem, "rnn", tmp=tmp_path), POEM, first_line)
    with capsys.disabled():
        print(f"\n[rnn recall on the poem: {n}/{len(POEM) - first_line} characters]")
    assert 0 <= n <= len(POEM) - first_line


def _resume_after_ctrl_c(tmp_path, text, interrupt, saved_at):
    """An uninterrupted run of 10 steps, and a run stopped by `interrupt(trainer)`
    (which arranges a Ctrl-C), whose checkpoint must hold `saved_at` steps,
    then resumed from it: both must end with the same weights, optimizer
    moments, carried state and history."""
    mc = ModelConfig(hidden=16, dropout=0.2)
    tc = TrainConfig(seq_len=8, batch_size=3, steps=10, eval_every=4, rng_seed=5)
    quiet = dict(progress=False, log=lambda m: None)
    full = Trainer(text, mc, tc, str(tmp_path / "a.npz"), **quiet)
    full.run()
    half = Trainer(text, mc, tc, str(tmp_path / "b.npz"), **quiet)
    with interrupt(half):
        assert half.run().interrupted
    rest = Trainer(text, mc, tc, str(tmp_path / "b.npz"), resume=str(tmp_path / "b.npz"),
                   **quiet)
    assert rest.state["step"] == saved_at
    assert len(rest.hist_train) == len(rest.hist_norm) == saved_at
    rest.run()
    assert rest.state["step"] == 10
    np.testing.assert_array_equal(rest.model.flat, full.model.flat)
    np.testing.assert_array_equal(rest.m, full.m)
    np.testing.assert_array_equal(rest.v, full.v)
    np.testing.assert_array_equal(rest.h, full.h)
    a, b = ckpt.load(str(tmp_path / "a.npz")), ckpt.load(str(tmp_path / "b.npz"))
    steps_and_losses = [0, 2]                        # (column 1 is wall time)
    np.testing.assert_array_equal(a.history_train[:, steps_and_losses],
                                  b.history_train[:, steps_and_losses])
    np.testing.assert_array_equal(a.history_norm, b.history_norm)   # norms before clipping
    assert a.history_norm.shape == (10, 2) and (a.history_norm[:, 1] > 0).all()


def test_resume_continues_exactly(tmp_path, tiny_text):
    """Ctrl-C between steps 6 and 7 saves a checkpoint; resuming it ends where an
    uninterrupted run ends."""
    @contextlib.contextmanager
    def between_steps(tr):
        step = tr.step

        def ctrl_c_at_6():
            if tr.state["step"] == 6:
                raise KeyboardInterrupt
            return step()
        tr.step = ctrl_c_at_6
        yield
    _resume_after_ctrl_c(tmp_path, tiny_text, between_steps, saved_at=6)


def test_ctrl_c_inside_a_step_takes_effect_after_it(tmp_path, tiny_text, monkeypatch):
    """A real SIGINT that arrives in the middle of step 6, just after Adam has
    changed the weights and before the step has moved on to the next batch and
    carried state, stops training only once that step is done and recorded: the
    checkpoint is of step 6 whole, and resuming it ends where an uninterrupted
    run ends."""
    from charlstm import train
    adam = train.kernels.adam_update

    @contextlib.contextmanager
    def inside_step(tr):
        def adam_then_ctrl_c(*args):
            adam(*args)
            if tr.state["step"] == 6:
                os.kill(os.getpid(), signal.SIGINT)
        with monkeypatch.context() as mp:
            mp.setattr(train.kernels, "adam_update", adam_then_ctrl_c)
            yield
    _resume_after_ctrl_c(tmp_path, tiny_text, inside_step, saved_at=6)


@pytest.mark.parametrize("p", [0.0, 0.5, 1.0])
def test_state_reset_zeroes_whole_streams(tmp_path, tiny_text, p):
    """Between batches a stream's carried (h, c) is either kept or zeroed whole,
    each with the configured chance."""
    tc = TrainConfig(seq_len=8, batch_size=40, steps=1, state_reset=p, rng_seed=3)
    tr = Trainer(tiny_text, ModelConfig(hidden=6, dropout=0.0), tc, str(tmp_path / "m.npz"),
                 progress=False, log=lambda m: None)
    tr.step()
    zeroed = np.all(tr.h == 0, axis=(0, 2)) & np.all(tr.c == 0, axis=(0, 2))
    assert np.all(zeroed | np.all(tr.h != 0, axis=(0, 2)))       # whole streams only
    assert (zeroed.mean() == p) if p in (0.0, 1.0) else (0.2 < zeroed.mean() < 0.8)


def test_any_utf8_text(tmp_path):
    p = tmp_path / "ru.txt"
    text = "Мой дядя самых честных правил, когда не в шутку занемог; 日本語も。\n" * 30
    p.write_text(text, encoding="utf-8")
    c = load_corpus(str(p), 0.1)
    assert set(c.vocab) == set(text)
    assert "".join(c.vocab[i] for i in np.concatenate([c.train, c.val])) == text
    mc = ModelConfig(hidden=16)
    tc = TrainConfig(seq_len=16, batch_size=2, steps=5, eval_every=5)
    tr = Trainer(str(p), mc, tc, str(tmp_path / "ru.npz"), progress=False, log=lambda m: None)
    r = tr.run()
    assert r.val_loss is not None and np.isfinite(r.val_loss)
    s = Sampler.from_checkpoint(str(tmp_path / "ru.npz"))
    out = s.text("Мой", 20, rng_seed=0)
    assert len(out) == 20 and set(out) <= set(text)


@pytest.fixture
def tiny_text(tmp_path):
    p = tmp_path / "tiny.txt"
    rng = np.random.default_rng(0)
    p.write_text("".join(rng.choice(list("abcde fgh\n"), 3000)), encoding="utf-8")
    return str(p)


def test_automatic_validation_schedule(tmp_path, tiny_text, monkeypatch):
    """eval_every=0: validation waits AUTO_EVAL_MIN_STEPS steps, then as long as
    it takes for its cost to stay near AUTO_EVAL_SHARE of the training time."""
    from charlstm import train
    mc = ModelConfig(hidden=8)
    tc = TrainConfig(seq_len=4, batch_size=2, steps=400, eval_every=0, val_frac=0.3)
    tr = Trainer(tiny_text, mc, tc, str(tmp_path / "a.npz"), progress=False, log=lambda m: None)
    clock = {"t": 0.0}
    monkeypatch.setattr(train.time, "perf_counter", lambda: clock["t"])
    step, evaluate = tr.step, tr.evaluate

    def step_1s():                      # every step takes 1 s of the fake clock
        clock["t"] += 1.0
        return step()

    def evaluate_10s(*a):               # and a validation pass 10 s
        clock["t"] += 10.0
        return evaluate(*a)
    tr.step, tr.evaluate = step_1s, evaluate_10s
    tr.run()
    # after 100 steps; then after 10 s / 0.05 - 10 s = 190 s of training; then at the end
    assert [int(r[0]) for r in tr.hist_val] == [100, 290, 400]


def test_validation_scores_the_whole_held_out_text(tiny_text):
    """evaluate() in windows, the rest of each stream included, equals one pass
    over each whole stream: every character but a stream's first is scored."""
    from charlstm.model import Workspace
    tr = Trainer(tiny_text, ModelConfig(hidden=16, dropout=0.0),
                 TrainConfig(seq_len=8, batch_size=3, steps=1), "/dev/null", progress=False,
                 log=lambda m: None)
    ids = np.random.default_rng(0).integers(0, tr.corpus.V, 230).astype(np.uint8)
    B, L = 3, 230 // 3                       # T = 8 and B = 3, as evaluate picks them
    assert (L - 1) % 8, "the streams should not be whole windows"
    streams = ids[:B * L].reshape(B, L)
    m = tr.model
    h0, c0 = m.zero_state(B)
    whole = m.loss(Workspace(m.cfg, L - 1, B, m.dtype), streams[:, :-1].T, streams[:, 1:].T,
                   h0, c0, grad=False)
    assert tr.evaluate(ids) == pytest.approx(whole, rel=1e-5)


@pytest.mark.skipif((os.cpu_count() or 1) < 2 or not os.path.exists("/proc/self/maps"),
                    reason="needs two cores and Linux")
def test_blas_runs_on_one_thread_when_numpy_was_imported_first():
    """A script that imports NumPy before charlstm loads OpenBLAS before
    charlstm can set OPENBLAS_NUM_THREADS; charlstm then tells OpenBLAS
    directly (otherwise its threads and the training workers oversubscribe
    the cores: 1×512 steps 255 against 176 ms)."""
    import subprocess
    import sys
    env = {k: v for k, v in os.environ.items() if k != "OPENBLAS_NUM_THREADS"}
    code = "import numpy, charlstm; print(*charlstm._blas_threads())"
    out = subprocess.run([sys.executable, "-c", code], env=env, text=True,
                         capture_output=True, check=True).stdout.split()
    if not out:
        pytest.skip("NumPy here does not use OpenBLAS")
    assert out == ["1"] * len(out)


def test_grad_norm_measures_a_finite_gradient_too_large_to_square():
    """A finite gradient whose square overflows float32 is clipped, not taken
    for divergence (found at 1x1024, batch 64x200, lr 0.009: step 2's
    gradient reached 3e20); only a non-finite gradient has an infinite norm."""
    from charlstm.train import grad_norm
    g = np.full(1000, 3e20, np.float32)
    g[0] = -1e21
    want = float(np.linalg.norm(g.astype(np.float64)))
    assert grad_norm(g) == pytest.approx(want, rel=1e-5)
    small = np.random.default_rng(0).standard_normal(5000).astype(np.float32)
    assert grad_norm(small) == pytest.approx(float(np.linalg.norm(small)), rel=1e-5)
    g[3] = np.inf
    assert grad_norm(g) == np.inf
    g[3] = np.nan
    assert not np.isfinite(grad_norm(g))


@pytest.mark.parametrize("schedule", ["cosine", "constant"])
def test_the_learning_rate_follows_its_schedule(schedule):
    """A linear warm-up over the first `warmup` share of the budget, then from
    the peak down to lr·min_lr_frac at the end (constant: the peak
    throughout), never falling during the warm-up nor rising after it."""
    from charlstm.train import lr_at
    cfg = TrainConfig(lr=0.02, schedule=schedule, min_lr_frac=0.1, warmup=0.1, steps=100)
    rates = [lr_at(cfg, k, k / 100) for k in range(101)]
    decay = (lambda p: 0.002 + 0.018 * 0.5 * (1 + math.cos(math.pi * p))) \
        if schedule == "cosine" else (lambda p: 0.02)
    assert rates[0] == 0.0
    assert rates[5] == pytest.approx(0.5 * decay(0.05))
    assert rates[10] == pytest.approx(decay(0.1)) and rates[60] == pytest.approx(decay(0.6))
    assert rates[-1] == pytest.approx(decay(1.0))
    assert all(a <= b for a, b in zip(rates[:10], rates[1:11]))
    assert all(a >= b - 1e-15 for a, b in zip(rates[10:], rates[11:]))
    off = TrainConfig(lr=0.02, schedule=schedule, min_lr_frac=0.1, warmup=0.0, steps=100)
    assert lr_at(off, 0, 0.0) == pytest.approx(decay(0.0))
    steps = TrainConfig(lr=0.02, schedule=schedule, min_lr_frac=0.1, warmup_steps=10)
    assert lr_at(steps, 0, 0.0) == pytest.approx(0.1 * decay(0.0))


def test_a_checkpoint_from_before_the_warm_up_resumes_without_one():
    """Settings saved before the warm-up share existed had no warm-up: read
    back, they still have none; new settings keep theirs."""
    from dataclasses import asdict
    from charlstm.config import from_dict
    old = asdict(TrainConfig(steps=10))
    del old["warmup"]
    assert from_dict(TrainConfig, old).warmup == 0.0
    assert from_dict(TrainConfig, asdict(TrainConfig(steps=10))).warmup == TrainConfig().warmup
