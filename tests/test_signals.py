"""Stop signals end every command within seconds: SIGINT, SIGTERM and SIGHUP,
whatever the command is doing; every file saved or left as it was; the
message names the signal and the exit status is 128 + n; workers whose
parent dies end themselves.

The children start with SIGINT at its default: a shell starts a background
job with SIGINT ignored, and the ignoring would be inherited."""
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from charlstm import checkpoint as ckpt

TEXT = "the quick brown fox jumps over the lazy dog.\n" * 300
SMALL = ["--hidden", "16", "--batch-size", "2", "--seq-len", "16", "--no-progress"]
TIMEOUT = 60                       # a stopped command must be gone well within this


def _default_sigint():
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def start(args, cwd):
    return subprocess.Popen([sys.executable, "-m", "charlstm"] + [str(a) for a in args],
                            cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, preexec_fn=_default_sigint)


def stop(p, sig):
    p.send_signal(sig)
    try:
        out, err = p.communicate(timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        p.kill()
        out, err = p.communicate()
        pytest.fail(f"still running {TIMEOUT} s after {signal.Signals(sig).name}:\n{err}")
    return out, err


def wait_for(path, timeout=120):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if os.path.exists(path):
            return True
        time.sleep(0.05)
    return False


@pytest.fixture
def text(tmp_path):
    p = tmp_path / "t.txt"
    p.write_text(TEXT, encoding="utf-8")
    return p


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:                              # a zombie has ended; only its parent has not reaped it
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def _children(pid):
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as fh:
            return [int(x) for x in fh.read().split()]
    except OSError:
        return []


def _descendants(pid):
    out, todo = [], [pid]
    while todo:
        kids = _children(todo.pop())
        out += kids
        todo += kids
    return out


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP])
def test_train_saves_and_stops_on_every_stop_signal(tmp_path, text, sig):
    out = tmp_path / "m.npz"
    p = start(["train", text, "--out", out, "--steps", "10000000", "--eval-every", "200"]
              + SMALL, tmp_path)
    assert wait_for(out)
    time.sleep(1.0)
    _, err = stop(p, sig)
    assert p.returncode == 128 + sig and f"stopped by {signal.Signals(sig).name}" in err
    assert ckpt.load(str(out)).state["step"] > 0


def test_a_stop_signal_ignored_when_train_starts_stays_ignored(tmp_path, text):
    """Under nohup (SIGHUP ignored) a hang-up leaves the run going; SIGTERM
    still saves and stops it."""
    def ignore_hup():
        _default_sigint()
        signal.signal(signal.SIGHUP, signal.SIG_IGN)

    out = tmp_path / "m.npz"
    p = subprocess.Popen([sys.executable, "-m", "charlstm", "train", str(text), "--out", str(out),
                          "--steps", "10000000", "--eval-every", "200"] + SMALL, cwd=tmp_path,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         preexec_fn=ignore_hup)
    assert wait_for(out)
    p.send_signal(signal.SIGHUP)
    time.sleep(3.0)
    assert p.poll() is None, p.communicate()[1]
    _, err = stop(p, signal.SIGTERM)
    assert p.returncode == 128 + signal.SIGTERM, err
    ckpt.load(str(out))


def test_compare_stops_every_model_and_names_the_signal(tmp_path, text):
    """SIGTERM to compare alone (not its process group): its workers get it
    too, save their models, and no model is begun after it."""
    run = tmp_path / "cmp"
    p = start(["compare", text, "--cells", "rnn,lstm,gru", "--jobs", "2", "--minutes", "5",
               "--out-dir", run] + SMALL, tmp_path)
    assert wait_for(run / "rnn.npz") or wait_for(run / "lstm.npz")
    time.sleep(1.0)
    t0 = time.time()
    _, err = stop(p, signal.SIGTERM)
    assert time.time() - t0 < 30, err
    assert p.returncode == 128 + signal.SIGTERM, err
    assert "stopped by SIGTERM" in err and "SIGINT" not in err
    assert f"each model's last checkpoint is in {run}" in err, err
    assert not (run / "gru.npz").exists()                 # the third was never begun
    for n in ("rnn.npz", "lstm.npz"):
        if (run / n).exists():
            ckpt.load(str(run / n))
    time.sleep(1.0)
    assert not [pid for pid in _descendants(p.pid) if _alive(pid)]


def test_tune_stops_on_sigterm(tmp_path, text):
    pytest.importorskip("optuna")
    run = tmp_path / "tune"
    p = start(["tune", text, "--trials", "3", "--trial-minutes", "2", "--out-dir", run,
               "--cell", "lstm", "--hidden", "16", "--batch-size", "2", "--seq-len", "16",
               "--no-progress"], tmp_path)
    assert wait_for(run / "trials", timeout=180)
    time.sleep(2.0)
    _, err = stop(p, signal.SIGTERM)
    assert p.returncode == 128 + signal.SIGTERM, err
    assert "stopped by SIGTERM" in err


def test_sample_stops_on_sigterm(tmp_path, text):
    out = tmp_path / "m.npz"
    assert subprocess.run([sys.executable, "-m", "charlstm", "train", str(text), "--out",
                           str(out), "--steps", "5"] + SMALL, capture_output=True).returncode == 0
    p = start(["sample", out, "--length", "1000000000"], tmp_path)
    p.stdout.read(1000)
    _, err = stop(p, signal.SIGTERM)
    assert p.returncode == 128 + signal.SIGTERM and "stopped by SIGTERM" in err


@pytest.mark.parametrize("command", ["compare", "tune"])
def test_workers_end_when_their_parent_is_killed(tmp_path, text, command):
    """kill -9 of compare or tune: its worker processes end by themselves."""
    if command == "tune":
        pytest.importorskip("optuna")
        args = ["tune", text, "--trials", "3", "--trial-minutes", "2", "--out-dir",
                tmp_path / "run", "--cell", "lstm", "--hidden", "16", "--batch-size", "2",
                "--seq-len", "16", "--no-progress"]
        ready = tmp_path / "run" / "trials"
    else:
        args = ["compare", text, "--cells", "rnn,lstm", "--jobs", "2", "--minutes", "5",
                "--out-dir", tmp_path / "run"] + SMALL
        ready = tmp_path / "run" / "rnn.npz.lock"
    p = start(args, tmp_path)
    assert wait_for(ready, timeout=180)
    time.sleep(1.0)
    workers = _descendants(p.pid)
    assert workers
    p.kill()
    p.communicate()
    deadline = time.time() + 40
    while time.time() < deadline and any(_alive(w) for w in workers):
        time.sleep(0.2)
    assert not [w for w in workers if _alive(w)]


# -- the loop: stop signals at random moments ------------------------------------------

def _loop_case(tmp_path, text, k, rng):
    kind = ["train", "train", "compare", "tune"][k % 4]
    sig = [signal.SIGTERM, signal.SIGHUP, signal.SIGINT][k % 3]
    run = tmp_path / f"run{k}"
    if kind == "train":
        args = ["train", text, "--out", run / "m.npz", "--steps", "10000000",
                "--eval-every", str(int(rng.integers(1, 50)))] + SMALL
    elif kind == "compare":
        args = ["compare", text, "--cells", "rnn,lstm", "--minutes", "3", "--out-dir", run,
                "--jobs", str(int(rng.integers(1, 3)))] + SMALL
    else:
        args = ["tune", text, "--trials", "4", "--trial-minutes", "1", "--out-dir", run,
                "--cell", "lstm", "--hidden", "16", "--batch-size", "2", "--seq-len", "16",
                "--no-progress"]
    p = start(args, tmp_path)
    time.sleep(float(rng.uniform(0.3, 9.0)))          # compiling, loading, training, ...
    kids = _descendants(p.pid)
    out, err = stop(p, sig)
    assert p.returncode in (128 + sig, 0), (kind, sig, p.returncode, err)
    assert "Traceback" not in err, err
    if p.returncode:
        assert f"stopped by {signal.Signals(sig).name}" in err, err
    deadline = time.time() + 40
    while time.time() < deadline and any(_alive(w) for w in kids):
        time.sleep(0.2)
    assert not [w for w in kids if _alive(w)], (kind, sig)
    for path in run.rglob("*.npz") if run.exists() else []:
        ckpt.load(str(path))                               # every file whole
    assert not [q for q in (run.rglob(".tmp-*") if run.exists() else [])]


@pytest.mark.slow
def test_stop_signals_at_random_moments_never_hang(tmp_path, text):
    """36 stop signals at random moments (0.3-9 s in) across train, compare and
    tune: every process ends, with every file whole."""
    rng = np.random.default_rng(35)
    for k in range(36):
        _loop_case(tmp_path, text, k, rng)
