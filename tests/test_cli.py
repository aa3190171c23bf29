"""The command line, run through Click's CliRunner in an isolated folder: exit
codes and one-line messages for every bad input, and no traceback."""
import os

import numpy as np
import pytest
from click.testing import CliRunner

from charlstm.checkpoint import load
from charlstm.cli import main
from charlstm.config import TrainConfig, default_lr

SMALL = ["--hidden", "16", "--seq-len", "8", "--batch-size", "2", "--steps", "3",
         "--no-progress", "--eval-every", "2"]


def run(args, **kw):
    r = CliRunner().invoke(main, args, catch_exceptions=False, **kw)
    assert "Traceback" not in r.output
    return r


@pytest.fixture
def text(tmp_path):
    p = tmp_path / "t.txt"
    p.write_text("the quick brown fox jumps over the lazy dog. " * 20, encoding="utf-8")
    return str(p)


@pytest.fixture
def trained(tmp_path, text):
    out = str(tmp_path / "ck" / "m.npz")
    r = run(["train", text, "--out", out] + SMALL)
    assert r.exit_code == 0, r.output
    return out


def test_help_lists_commands():
    r = run(["--help"])
    assert r.exit_code == 0
    for cmd in ("train", "sample", "compare"):
        assert cmd in r.output


def test_train_then_sample(tmp_path, trained):
    """The text on stdout (stderr may say what compiles: training compiles no
    sampling kernel)."""
    assert os.path.exists(trained)
    assert os.path.exists(trained.replace(".npz", ".best.npz"))
    r = run(["sample", trained, "--seed", "the ", "--length", "40", "--rng-seed", "3"])
    assert r.exit_code == 0
    assert r.stdout.startswith("the ")
    assert len(r.stdout.rstrip("\n")) == 44
    again = run(["sample", trained, "--seed", "the ", "--length", "40", "--rng-seed", "3"])
    assert again.stdout == r.stdout
    other = run(["sample", trained, "--seed", "the ", "--length", "40", "--rng-seed", "4"])
    assert other.stdout != r.stdout
    exact = run(["sample", trained, "--seed", "the ", "--length", "40", "--rng-seed", "3",
                 "--weights", "float32"])
    assert exact.exit_code == 0 and exact.stdout.startswith("the ")
    half = run(["sample", trained, "--seed", "the ", "--length", "40", "--rng-seed", "3",
                "--weights", "float16"])
    assert half.exit_code == 0 and half.stdout.startswith("the ")


def test_sample_uses_the_best_of_the_newest_run_and_says_so(tmp_path, text, monkeypatch):
    monkeypatch.chdir(tmp_path)
    r = run(["train", text] + SMALL)
    assert r.exit_code == 0, r.output
    assert os.path.exists("checkpoints/t-lstm.npz")
    r = run(["train", text, "--cell", "gru"] + SMALL)
    assert r.exit_code == 0, r.output
    os.utime("checkpoints/t-gru.best.npz", (1, 1))      # a best file older than its run
    r = run(["sample", "--seed", "fox", "--length", "10"])
    assert r.exit_code == 0 and r.stdout.startswith("fox")
    assert "sampling from checkpoints/t-gru.best.npz" in r.stderr


def test_resume_goes_on_in_the_checkpoint_resumed(tmp_path, text, monkeypatch):
    """Without --out a resumed run writes to the file it resumed, not to the
    default path of the --cell given now: resuming a GRU must not write a GRU
    over an LSTM's checkpoints/t-lstm.npz."""
    monkeypatch.chdir(tmp_path)
    assert run(["train", text] + SMALL).exit_code == 0
    lstm = open("checkpoints/t-lstm.npz", "rb").read()
    gru = str(tmp_path / "g.npz")
    assert run(["train", text, "--cell", "gru", "--out", gru] + SMALL).exit_code == 0
    r = run(["train", text, "--resume", gru, "--steps", "5", "--no-progress"])
    assert r.exit_code == 0, r.output
    assert load(gru).state["step"] == 5 and load(gru).model.cell == "gru"
    assert open("checkpoints/t-lstm.npz", "rb").read() == lstm


def test_resume_refuses_options_that_would_change_the_model(text, trained):
    """Settings given again as saved are fine; one that differs is an error that
    names it and the saved value, and nothing is trained or written."""
    before = open(trained, "rb").read()
    r = run(["train", text, "--resume", trained, "--hidden", "32", "--lr", "0.5",
             "--steps", "5", "--no-progress"])
    assert r.exit_code == 1
    assert "--hidden 16" in r.output and "--lr 0.01" in r.output and "keeps" in r.output
    assert open(trained, "rb").read() == before
    r = run(["train", text, "--resume", trained, "--hidden", "16", "--steps", "5",
             "--no-progress"])
    assert r.exit_code == 0, r.output
    assert load(trained).state["step"] == 5


@pytest.mark.parametrize("content,expect", [
    (b"", "empty"),
    (b"caf\xe9 au lait", "not UTF-8"),
])
def test_bad_text_files(tmp_path, content, expect):
    p = tmp_path / "bad.txt"
    p.write_bytes(content)
    r = run(["train", str(p)] + SMALL)
    assert r.exit_code == 1 and expect in r.output


def test_missing_file(tmp_path):
    r = run(["train", str(tmp_path / "nope.txt")])
    assert r.exit_code == 2 and "does not exist" in r.output


def test_unreadable_file(tmp_path):
    if os.geteuid() == 0:
        pytest.skip("root can read any file")
    p = tmp_path / "locked.txt"
    p.write_text("hello")
    p.chmod(0)
    r = run(["train", str(p)] + SMALL)
    assert r.exit_code != 0 and "permission" in r.output.lower()


def test_file_too_short_for_one_batch(tmp_path):
    p = tmp_path / "short.txt"
    p.write_text("hello world")
    r = run(["train", str(p)] + SMALL)
    assert r.exit_code == 1
    assert "too short for one batch" in r.output and "--batch-size" in r.output


def test_seed_with_unknown_characters(trained):
    r = run(["sample", trained, "--seed", "Zebra €"])
    assert r.exit_code == 1
    assert "never saw" in r.output and "Z" in r.output


@pytest.mark.parametrize("args", [
    ["--hidden", "0"], ["--lr", "-1"], ["--dropout", "1.5"], ["--cell", "transformer"],
    ["--steps", "5", "--minutes", "1"],
])
def test_out_of_range_options(text, args):
    r = run(["train", text] + args)
    assert r.exit_code == 2
    assert "Error" in r.output


def test_bad_sample_options(trained):
    r = run(["sample", trained, "--temperature", "0"])
    assert r.exit_code == 2 and "temperature" in r.output
    r = run(["sample", trained, "--weights", "int4"])
    assert r.exit_code == 2 and "--weights" in r.output and "int8" in r.output


def test_missing_checkpoint(tmp_path, monkeypatch):
    r = run(["sample", str(tmp_path / "none.npz")])
    assert r.exit_code == 1 and "no checkpoint" in r.output
    monkeypatch.chdir(tmp_path)
    r = run(["sample"])
    assert r.exit_code == 1 and "charlstm train" in r.output


def test_corrupt_checkpoint(tmp_path, trained):
    bad = tmp_path / "corrupt.npz"
    data = open(trained, "rb").read()
    bad.write_bytes(data[: len(data) // 2])
    r = run(["sample", str(bad)])
    assert r.exit_code == 1 and "not a readable checkpoint" in r.output
    junk = tmp_path / "junk.npz"
    junk.write_bytes(os.urandom(1000))
    r = run(["sample", str(junk)])
    assert r.exit_code == 1 and "is a binary file, not a charlstm checkpoint" in r.output


def test_foreign_checkpoint(tmp_path):
    p = tmp_path / "foreign.npz"
    np.savez(p, weights=np.zeros(3))
    r = run(["sample", str(p)])
    assert r.exit_code == 1 and "that charlstm did not write" in r.output


def test_checkpoint_write_is_atomic(tmp_path, text, monkeypatch):
    """A failed write leaves the existing checkpoint as it was, and no temp file."""
    from charlstm import checkpoint as ckpt
    out = str(tmp_path / "ck" / "m.npz")
    assert run(["train", text, "--out", out] + SMALL).exit_code == 0
    before = open(out, "rb").read()
    ck = ckpt.load(out)

    def boom(*a, **k):
        raise OSError("disk full")
    monkeypatch.setattr(np, "savez", boom)
    with pytest.raises(OSError):
        ckpt.save(ck, out)
    assert open(out, "rb").read() == before
    assert sorted(os.listdir(tmp_path / "ck")) == ["m.best.npz", "m.log.jsonl", "m.npz"]


def test_python_dash_m(text, tmp_path):
    import subprocess
    import sys
    r = subprocess.run([sys.executable, "-m", "charlstm", "--help"], capture_output=True, text=True)
    assert r.returncode == 0 and "train" in r.stdout


def test_divergence_is_reported_and_the_last_finite_model_kept(tmp_path, text):
    import warnings
    out = str(tmp_path / "irnn.npz")
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        r = run(["train", text, "--cell", "irnn", "--lr", "1e6", "--out", out] + SMALL)
    assert r.exit_code == 1 and "diverged" in r.output and "--lr" in r.output
    assert not [w for w in seen if issubclass(w.category, RuntimeWarning)]   # no NumPy noise
    from charlstm import checkpoint as ckpt
    ck = ckpt.load(out)
    assert all(np.isfinite(v).all() for v in ck.params.values())


def test_the_cache_key_follows_every_kernel_module(tmp_path):
    """An edit to any one module of charlstm/kernels gives a new cache key
    (Numba alone would miss an edit to a module a kernel calls into)."""
    import shutil

    from charlstm import kernels
    copy = tmp_path / "kernels"
    shutil.copytree(kernels.HERE, copy, ignore=shutil.ignore_patterns("__pycache__"))
    key = kernels.cache_key(str(copy))
    assert key == kernels.cache_key(kernels.HERE) == kernels.cache_key(str(copy))
    for name in sorted(p.name for p in copy.glob("*.py")):
        text = (copy / name).read_text()
        (copy / name).write_text(text + "\n# an edit\n")
        assert kernels.cache_key(str(copy)) != key, name
        (copy / name).write_text(text)
    assert kernels.cache_key(str(copy)) == key
    assert kernels.CACHE_DIR.endswith(key) and not kernels.is_cached(str(tmp_path))


@pytest.mark.slow
def test_the_compile_notice_after_a_real_compile(tmp_path, trained):
    """In a fresh cache folder the first command compiles and says so; the
    second finds the cache and is silent."""
    import subprocess
    import sys
    env = dict(os.environ, CHARLSTM_CACHE_DIR=str(tmp_path / "cache"))
    cmd = [sys.executable, "-m", "charlstm", "sample", trained, "--length", "5"]
    first = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
    assert first.returncode == 0 and "Compiling the Numba kernels" in first.stderr
    second = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert second.returncode == 0 and "Compiling" not in second.stderr, second.stderr


@pytest.mark.parametrize("args, lr", [(["--cell", "rnn"], default_lr("rnn")),
                                      (["--cell", "rnn", "--lr", "0.05"], 0.05),
                                      ([], TrainConfig.lr)])
def test_learning_rate_defaults_by_cell(tmp_path, text, args, lr):
    out = str(tmp_path / "m.npz")
    r = run(["train", text, "--out", out] + SMALL + args)
    assert r.exit_code == 0, r.output
    assert load(out).train.lr == lr


def test_compare_sizes_each_cell_unless_hidden_is_given(monkeypatch, text, tmp_path):
    """compare sizes every cell for its budget and share of the cores
    (sizing.choose) unless --hidden is given, which then holds for all."""
    import charlstm.lab.compare.run
    monkeypatch.chdir(tmp_path)          # its run folders go to checkpoints/ here
    seen = []
    monkeypatch.setattr(charlstm.lab.compare.run, "run_compare",
                        lambda text, cells, mcfg, tcfg, **kw: seen.append(
                            (kw["given"], mcfg.hidden)))
    assert run(["compare", text, "--steps", "1"]).exit_code == 0
    assert run(["compare", text, "--steps", "1", "--hidden", "24"]).exit_code == 0
    assert "hidden" not in seen[0][0] and "hidden" in seen[1][0] and seen[1][1] == 24
