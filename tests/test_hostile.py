"""Hostile input: every rule of "never lose a user's data, never claim what did
not happen", with the cases that once broke it. Each case must end in one
clear line and a non-zero exit, destroy no file, claim nothing false and
never hang."""
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from click.testing import CliRunner

from charlstm import checkpoint as ckpt
from charlstm.cli import main

from .test_cli import run          # the CLI through CliRunner, never a traceback

TINY = ["--hidden", "16", "--batch-size", "2", "--seq-len", "16", "--steps", "20",
        "--no-progress"]


@pytest.fixture
def corpus(tmp_path):
    p = tmp_path / "corpus.txt"
    p.write_text("the quick brown fox jumps over the lazy dog.\n" * 40, encoding="utf-8")
    return p


@pytest.fixture
def model(tmp_path, corpus):
    out = tmp_path / "m.npz"
    r = run(["train", str(corpus), "--out", str(out), "--eval-every", "10"] + TINY)
    assert r.exit_code == 0, r.output
    return out


# -- 1. never destroy a file that is not ours to replace -----------------------------

def test_out_may_not_be_the_training_text(corpus):
    before = corpus.read_bytes()
    r = run(["train", str(corpus), "--out", str(corpus)] + TINY)
    assert r.exit_code == 1 and "training text" in r.output
    assert corpus.read_bytes() == before


def test_out_may_not_replace_a_file_that_is_not_a_checkpoint(tmp_path, corpus):
    notes = tmp_path / "notes.txt"
    notes.write_text("my notes")
    for out in (notes, tmp_path / "fake.npz"):
        if out.suffix == ".npz":
            np.savez(out, x=np.zeros(3))                 # an npz, but not ours
        before = out.read_bytes()
        r = run(["train", str(corpus), "--out", str(out)] + TINY)
        assert r.exit_code == 1 and "not a charlstm checkpoint" in r.output
        assert out.read_bytes() == before


def test_out_may_not_be_a_device_a_fifo_or_a_folder(tmp_path, corpus):
    fifo = tmp_path / "pipe.npz"
    os.mkfifo(fifo)
    for out, code, msg in (("/dev/null", 1, "not a regular file"),
                           (str(fifo), 1, "not a regular file"),
                           (str(tmp_path), 2, "is a directory"),       # Click's own check
                           (str(tmp_path / "d") + "/", 1, "is a folder"),
                           (str(corpus / "x.npz"), 1, "is a file, not a folder")):
        r = run(["train", str(corpus), "--out", out] + TINY)
        assert r.exit_code == code and msg in r.output, (out, r.output)
    assert os.path.exists("/dev/null") and not os.path.isfile("/dev/null")
    assert not (tmp_path / "d").exists() and not (tmp_path / ".best.npz").exists()


def test_a_new_run_does_not_replace_an_earlier_one_without_force(tmp_path, corpus, model):
    before = model.read_bytes()
    best = tmp_path / "m.best.npz"
    best_before = best.read_bytes()
    r = run(["train", str(corpus), "--out", str(model)] + TINY)
    assert r.exit_code == 1 and "--resume" in r.output and "--force" in r.output
    assert model.read_bytes() == before and best.read_bytes() == best_before
    r = run(["train", str(corpus), "--out", str(model), "--force"] + TINY)
    assert r.exit_code == 0 and f"saved {model}" in r.output
    assert model.read_bytes() != before


def test_a_checkpoint_being_written_by_a_live_run_is_refused(tmp_path, corpus):
    out = tmp_path / "live.npz"
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (tmp_path / "live.npz.lock").write_text(str(holder.pid))
        r = run(["train", str(corpus), "--out", str(out)] + TINY)
        assert r.exit_code == 1 and f"pid {holder.pid}" in r.output and not out.exists()
    finally:
        holder.kill()
        holder.wait()
    r = run(["train", str(corpus), "--out", str(out)] + TINY)     # a dead run's lock
    assert r.exit_code == 0 and out.exists() and not (tmp_path / "live.npz.lock").exists()


def test_two_concurrent_runs_do_not_both_claim_one_file(tmp_path, corpus):
    """While one run trains into a file, a second run on it is refused (both
    with --force, so only the lock stands between them); the first then stops
    on SIGTERM with its model saved."""
    out = tmp_path / "both.npz"
    cmd = [sys.executable, "-m", "charlstm", "train", str(corpus), "--out", str(out),
           "--hidden", "16", "--batch-size", "2", "--seq-len", "16", "--steps", "100000000",
           "--no-progress", "--force"]
    a = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while not (tmp_path / "both.npz.lock").exists() and time.time() < deadline:
        time.sleep(0.05)
    time.sleep(3)                                    # the first run is training by now
    b = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert b.returncode == 1 and "another charlstm run" in b.stderr and "saved" not in b.stdout
    a.send_signal(signal.SIGTERM)
    out_a, err_a = a.communicate(timeout=120)
    assert a.returncode == 128 + signal.SIGTERM and "saved" in err_a
    assert ckpt.load(str(out)).state["step"] > 0


# -- 2. best never gets worse; no message claims a file that was not written ----------

def test_resuming_a_best_checkpoint_needs_an_out(tmp_path, corpus, model):
    best = tmp_path / "m.best.npz"
    before = best.read_bytes()
    r = run(["train", str(corpus), "--resume", str(best), "--steps", "40", "--no-progress"])
    assert r.exit_code == 1 and "--out" in r.output and best.read_bytes() == before
    assert not (tmp_path / "m.best.best.npz").exists()


def test_a_resume_past_its_budget_claims_no_file(tmp_path, corpus, model):
    other = tmp_path / "r_less.npz"
    r = run(["train", str(corpus), "--resume", str(model), "--out", str(other), "--steps", "5",
             "--no-progress"])
    assert r.exit_code == 0 and "nothing to train" in r.output and "saved" not in r.output
    assert not other.exists() and not (tmp_path / "r_less.best.npz").exists()


def test_best_is_compared_on_finite_losses(tmp_path, corpus):
    from charlstm.config import ModelConfig, TrainConfig
    from charlstm.train import Trainer
    tr = Trainer(str(corpus), ModelConfig(hidden=8, dropout=0.0),
                 TrainConfig(seq_len=8, batch_size=2, steps=4), str(tmp_path / "t.npz"),
                 progress=False, log=lambda m: None)
    tr.state["best_val"] = float("nan")                  # a NaN best must not block others
    tr.evaluate = lambda ids=None: 3.0
    tr._eval_and_save()
    assert tr.state["best_val"] == 3.0 and (tmp_path / "t.best.npz").exists()
    tr.evaluate = lambda ids=None: float("nan")
    before = (tmp_path / "t.best.npz").read_bytes()
    tr._eval_and_save()
    assert tr.state["best_val"] == 3.0 and (tmp_path / "t.best.npz").read_bytes() == before


# -- 3. non-finite numbers ------------------------------------------------------------

@pytest.mark.parametrize("opt", ["--lr", "--forget-bias", "--clip", "--minutes", "--dropout",
                                 "--epochs", "--state-reset", "--val-frac"])
@pytest.mark.parametrize("value", ["nan", "inf", "-inf"])
def test_train_refuses_non_finite_options(tmp_path, corpus, opt, value):
    r = run(["train", str(corpus), "--out", str(tmp_path / "x.npz"), opt, value,
             "--no-progress"] + (["--steps", "2"] if opt not in ("--minutes", "--epochs") else []))
    assert r.exit_code == 2 and "not a finite number" in r.output or "range" in r.output, r.output
    assert r.exit_code == 2 and not (tmp_path / "x.npz").exists()


def test_sample_refuses_a_nan_temperature(model):
    r = run(["sample", str(model), "--temperature", "nan"])
    assert r.exit_code == 2 and "finite" in r.output


def test_a_huge_learning_rate_never_saves_non_finite_parameters(tmp_path, corpus):
    out = tmp_path / "big.npz"
    r = run(["train", str(corpus), "--out", str(out), "--lr", "1e30", "--eval-every", "5"]
            + TINY)
    assert r.exit_code == 1 and "diverged" in r.output
    for path in (out, tmp_path / "big.best.npz"):
        if path.exists():
            ck = ckpt.load(str(path))
            assert all(np.isfinite(v).all() for v in ck.params.values())
            assert ckpt.model_from_checkpoint(ck) is not None
    assert ("no model was saved" in r.output) == (not out.exists())


def test_a_checkpoint_with_non_finite_weights_is_refused(tmp_path, model):
    ck = ckpt.load(str(model))
    ck.params["Wy"] = ck.params["Wy"].copy()
    ck.params["Wy"][0, 0] = np.nan
    bad = tmp_path / "nan.npz"
    ckpt.save(ck, str(bad))
    r = run(["sample", str(bad), "--length", "10"])
    assert r.exit_code == 1 and "nan or inf" in r.output


# -- 4. SIGTERM and SIGHUP save as Ctrl-C does ------------------------------------------

@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP])
def test_stop_signals_save_the_model(tmp_path, corpus, sig):
    out = tmp_path / "sig.npz"
    p = subprocess.Popen([sys.executable, "-m", "charlstm", "train", str(corpus), "--out",
                          str(out), "--hidden", "16", "--batch-size", "2", "--seq-len", "16",
                          "--steps", "1000000", "--eval-every", "100000", "--no-progress"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 90
    while time.time() < deadline:                     # wait until it is training
        time.sleep(0.5)
        if (tmp_path / "sig.npz.lock").exists():
            break
    time.sleep(4)
    p.send_signal(sig)
    _, err = p.communicate(timeout=60)
    assert p.returncode == 128 + sig, err
    assert f"stopped by {signal.Signals(sig).name}" in err
    ck = ckpt.load(str(out))
    assert ck.state["step"] > 0


# -- 5. the budget of a resumed run is the saved one -------------------------------------

def test_resume_without_a_budget_finishes_the_saved_one(tmp_path, corpus, model):
    r = run(["train", str(corpus), "--resume", str(model), "--no-progress"])
    assert r.exit_code == 0 and "nothing to train" in r.output
    ck = ckpt.load(str(model))
    assert ck.state["step"] == 20 and ck.train.steps == 20 and ck.train.minutes == 0


def test_an_extended_cosine_budget_is_said_plainly(tmp_path, corpus, model):
    r = run(["train", str(corpus), "--resume", str(model), "--steps", "30", "--no-progress"])
    assert r.exit_code == 0 and "stretches the cosine schedule" in r.output


# -- 6. output problems are found before training, in one line ----------------------------

def test_an_unwritable_folder_is_found_before_training(tmp_path, corpus):
    r = run(["train", str(corpus), "--out", "/proc/charlstm/x.npz"] + TINY)
    assert r.exit_code == 1 and r.output.startswith("Error: cannot write to /proc")
    assert "step" not in r.output


def test_stale_temp_files_of_dead_runs_are_removed(tmp_path, corpus):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = tmp_path / f".tmp-{dead.pid}-abc.npz"
    stale.write_bytes(b"half a checkpoint")
    mine = tmp_path / f".tmp-{os.getpid()}-abc.npz"        # a live process's: kept
    mine.write_bytes(b"x")
    r = run(["train", str(corpus), "--out", str(tmp_path / "n.npz")] + TINY)
    assert r.exit_code == 0 and not stale.exists() and mine.exists()


# -- 7. inputs that hang or crash ------------------------------------------------------------

def test_a_fifo_is_refused_without_hanging(tmp_path):
    fifo = tmp_path / "in.txt"
    os.mkfifo(fifo)
    p = subprocess.run([sys.executable, "-m", "charlstm", "train", str(fifo), "--out",
                        str(tmp_path / "f.npz")] + TINY, capture_output=True, text=True,
                       timeout=60)
    assert p.returncode == 1 and "not a regular file" in p.stderr


def test_standard_input_is_refused(tmp_path):
    p = subprocess.run(f"cat /etc/hostname | {sys.executable} -m charlstm train /dev/stdin "
                       f"--out {tmp_path / 's.npz'} --steps 2", shell=True, capture_output=True,
                       text=True, timeout=60)
    assert p.returncode == 1 and "save it to a file first" in p.stderr


def test_a_byte_order_mark_is_not_learned(tmp_path):
    p = tmp_path / "bom.txt"
    p.write_bytes(("\ufeff" + "hello world, hello there.\n" * 50).encode("utf-8"))
    out = tmp_path / "b.npz"
    assert run(["train", str(p), "--out", str(out)] + TINY).exit_code == 0
    assert "\ufeff" not in ckpt.load(str(out)).vocab


def test_resuming_on_a_shorter_text_is_one_line(tmp_path, corpus, model):
    short = tmp_path / "short.txt"
    short.write_text("the quick brown fox jumps over the lazy dog.\n" * 3)
    r = run(["train", str(short), "--resume", str(model), "--steps", "40", "--out",
             str(tmp_path / "s2.npz"), "--no-progress"])
    assert r.exit_code == 1 and ("shorter" in r.output or "too short" in r.output), r.output


# -- 8. checkpoints from elsewhere: one clear line ------------------------------------------

def crafted(tmp_path, src, name, **changes):
    with np.load(src, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    for k, v in changes.items():
        k = k.replace("__", "/")
        if v is None:
            arrays.pop(k, None)
        else:
            arrays[k] = v
    path = tmp_path / name
    np.savez(path, **arrays)
    return path


@pytest.mark.parametrize("changes", [
    {"version": None}, {"version": np.array("two")}, {"version": np.array(0)},
    {"model": np.array(json.dumps({"cell": "lstm", "hidden": -4, "layers": 1, "dropout": 0.0,
                                   "forget_bias": 1.0, "vocab_size": 20}))},
    {"model": np.array(json.dumps({"cell": "lstm", "hidden": "big", "layers": 1,
                                   "dropout": 0.0, "forget_bias": 1.0, "vocab_size": 20}))},
    {"vocab": np.array([97, 98], np.uint32)},
    {"param__Wy": np.array(["a", "b"])},
    {"state": np.array("{not json")},
])
def test_crafted_checkpoints_get_one_line(tmp_path, model, changes):
    bad = crafted(tmp_path, model, "bad.npz", **changes)
    r = run(["sample", str(bad), "--length", "5"])
    assert r.exit_code == 1 and r.output.startswith("Error:") and r.output.count("\n") == 1


def test_a_pickled_array_is_refused_for_safety(tmp_path, model):
    bad = crafted(tmp_path, model, "pickle.npz", param__Wy=np.array([object()], dtype=object))
    r = run(["sample", str(bad)])
    assert r.exit_code == 1 and "for safety" in r.output


def test_resume_without_optimizer_moments_is_one_line(tmp_path, corpus, model):
    bad = crafted(tmp_path, model, "nomoments.npz", opt__m=None, opt__v=None)
    r = run(["train", str(corpus), "--resume", str(bad), "--steps", "30", "--no-progress"])
    assert r.exit_code == 1 and r.output.startswith("Error:")


# -- 9. the rest ---------------------------------------------------------------------------

def test_sample_picks_a_real_checkpoint_over_a_folder(tmp_path, model, monkeypatch):
    folder = tmp_path / "ckdir"
    folder.mkdir()
    (folder / "zzz.npz").mkdir()
    os.link(model, folder / "real.npz")
    monkeypatch.chdir(tmp_path)
    os.rename(folder, tmp_path / "checkpoints")
    r = run(["sample", "--length", "5"])
    assert r.exit_code == 0, r.output


def test_negative_rng_seed_is_a_usage_error(tmp_path, corpus, model):
    assert run(["train", str(corpus), "--rng-seed", "-1"] + TINY).exit_code == 2
    assert run(["sample", str(model), "--rng-seed", "-1"]).exit_code == 2


def test_an_unknown_seed_is_refused_before_anything_is_printed(model):
    r = CliRunner().invoke(main, ["sample", str(model), "--seed", "Zürich"])
    assert r.exit_code == 1 and r.stdout == "" and "never saw" in r.stderr


def test_a_full_stdout_is_one_line(model):
    p = subprocess.run(f"{sys.executable} -m charlstm sample {model} --length 2000 > /dev/full",
                       shell=True, capture_output=True, text=True, timeout=60)
    assert p.returncode == 1 and "Traceback" not in p.stderr
    assert "no space left on device" in p.stderr and p.stderr.count("\n") == 1


def test_compare_on_a_text_too_short_fails_before_training(tmp_path):
    p = tmp_path / "tiny.txt"
    p.write_text("abc def " * 30)
    r = run(["compare", str(p), "--steps", "5", "--no-progress", "--jobs", "1",
             "--out-dir", str(tmp_path / "run")])
    assert r.exit_code == 1 and r.output.startswith("Error:")
    assert not (tmp_path / "run" / "rnn.npz").exists()


def test_compare_never_writes_into_a_folder_of_other_files(tmp_path, corpus):
    (tmp_path / "mine").mkdir()
    keep = tmp_path / "mine" / "results.json"
    keep.write_text("my own results")
    r = run(["compare", str(corpus), "--steps", "2", "--hidden", "8", "--no-progress",
             "--jobs", "1", "--batch-size", "4", "--seq-len", "16",
             "--out-dir", str(tmp_path / "mine")])
    assert r.exit_code == 1 and "not a charlstm compare run" in r.output
    assert keep.read_text() == "my own results"


# -- 10. kill -9, twenty times -------------------------------------------------------------

@pytest.mark.slow
def test_kill_9_never_leaves_a_broken_checkpoint(tmp_path, corpus):
    """Twenty kill -9 at random moments of a run that checkpoints every step:
    the checkpoint on disk always loads, and the next run cleans up the
    temporary files a killed write left behind."""
    out = tmp_path / "k.npz"
    rng = np.random.default_rng(0)
    cmd = [sys.executable, "-m", "charlstm", "train", str(corpus), "--out", str(out),
           "--hidden", "16", "--batch-size", "2", "--seq-len", "16", "--steps", "100000",
           "--eval-every", "1", "--no-progress", "--force"]
    for k in range(20):
        before = out.stat().st_mtime_ns if out.exists() else 0
        p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.time() + 60                   # until this run has saved once
        while time.time() < deadline and (not out.exists()
                                          or out.stat().st_mtime_ns == before):
            time.sleep(0.01)
        time.sleep(float(rng.uniform(0.0, 0.3)))      # then at any moment of its saving
        p.kill()
        p.wait()
        ck = ckpt.load(str(out))                      # whole, every time
        assert all(np.isfinite(v).all() for v in ck.params.values())
    r = run(["train", str(corpus), "--out", str(out), "--force"] + TINY)
    assert r.exit_code == 0
    assert not [n for n in os.listdir(tmp_path) if n.startswith(".tmp-")]
