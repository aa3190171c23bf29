"""The kernel cache: one folder per version of the kernels, shared by every
install (kernels/_cache.py, on Numba's private caching API, pinned here), and
the warm-up, which compiles only what a command needs, telling the user
(warmup.py)."""
import json
import os
import shutil
import subprocess
import sys

import numba
import numpy as np
import pytest
from numba import njit
from numba.core import caching, dispatcher

from charlstm import kernels as K
from charlstm import warmup
from charlstm.kernels import _cache

ROOT = os.path.dirname(os.path.dirname(K.HERE))          # the folder charlstm is in


def env_with(cache: str, **extra) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("NUMBA_CACHE_DIR", "PYTHONPATH")}
    return dict(env, CHARLSTM_CACHE_DIR=cache, **extra)


def test_numbas_private_caching_api_is_as_the_locator_expects():
    """What kernels/_cache.py relies on (numba>=0.68,<0.69 in pyproject.toml)."""
    assert numba.__version__.startswith("0.68.")
    assert caching.CacheImpl._locator_classes[0] is _cache.KernelLocator
    assert issubclass(_cache.KernelLocator, caching._CacheLocator)
    cache = K.adam_update._cache
    assert isinstance(cache, caching.FunctionCache)
    assert cache.cache_path == K.CACHE_DIR == os.path.join(K.cache_root(), "kernels-" + K.KEY)
    assert cache._cache_file._source_stamp == K.KEY     # fresh while the kernels are the same
    assert callable(cache._index_key) and callable(caching.IndexDataCacheFile._load_index)
    line = K.adam_update.py_func.__code__.co_firstlineno
    v = sys.version_info
    assert cache._impl.filename_base == f"optim.adam_update-{line}.py{v[0]}{v[1]}"
    assert K.FORWARD[K.LSTM]._cache._impl.filename_base.startswith("recurrence.forward_lstm-")
    assert K.GENERATE[K.GRU]._cache._impl.filename_base.startswith("sampling.generate_gru-")


def test_other_functions_keep_numbas_own_locators():
    """Only charlstm's kernels go in its folder: a function defined elsewhere
    (here) is cached where Numba would cache it."""
    f = njit(cache=True)(lambda x: x + 1)
    assert f._cache.cache_path != K.CACHE_DIR


def test_compiled_reads_numbas_index(tmp_path):
    """compiled() finds a kernel's entry for these argument types, on this
    machine and for this version, without loading it."""
    w = np.zeros(5, np.float32)
    types = tuple(K.adam_update.typeof_pyval(a) for a in (w, w, w, w, 1e-3, 0.9, 0.999, 1e-8, 1))
    K.adam_update.compile(types)                     # loads or compiles it, into CACHE_DIR
    assert _cache.compiled(K.adam_update, types)
    assert not _cache.compiled(K.adam_update, types, folder=str(tmp_path))
    w16 = tuple(K.adam_update.typeof_pyval(a) for a in (w.astype(np.float16),) * 4) + types[4:]
    assert not _cache.compiled(K.adam_update, w16)
    stale = caching.IndexDataCacheFile(K.CACHE_DIR, K.adam_update._cache._impl.filename_base,
                                       "another version")
    assert stale._load_index() == {}                 # another version's stamp: nothing


SHARED = """
import sys
from numba.core import event
import charlstm, charlstm.warmup as W
print(charlstm.__file__)
units = [u for u in W.train_units("lstm") if u.kernel.py_func.__name__ in
         ("adam_update", "softmax_xent", "embed_backward")]
print("missing", len(W.missing(units)))
with event.install_recorder("numba:compile") as rec:
    W.run(units, log=print, live=False)
    for u in units:
        u.kernel(*u.args)
print("compiles", len(rec.buffer))
"""


def test_the_cache_is_shared_by_two_copies_in_two_folders(tmp_path):
    """Another install of the same code (a copy of the package in another
    folder, as another venv or `pip install .` makes) finds the kernels this
    one compiled: nothing to compile, nothing compiled."""
    copy = tmp_path / "elsewhere"
    shutil.copytree(os.path.join(ROOT, "charlstm"), copy / "charlstm",
                    ignore=shutil.ignore_patterns("__pycache__", "*.nbi", "*.nbc"))
    env = env_with(str(tmp_path / "cache"))
    first = subprocess.run([sys.executable, "-c", SHARED], env=env, cwd=tmp_path,
                           capture_output=True, text=True, timeout=600)
    assert first.returncode == 0, first.stderr[-2000:]
    assert first.stdout.splitlines()[1] == "missing 3" and "Compiling" in first.stdout
    second = subprocess.run([sys.executable, "-c", SHARED], cwd=tmp_path, capture_output=True,
                            env=dict(env, PYTHONPATH=str(copy)), text=True, timeout=600)
    assert second.returncode == 0, second.stderr[-2000:]
    out = second.stdout.splitlines()
    assert out[0].startswith(str(copy)), out                  # the copy, not this checkout
    assert out[1] == "missing 0" and out[-1] == "compiles 0" and "Compiling" not in second.stdout
    assert sorted(os.listdir(tmp_path / "cache")) == sorted([f"kernels-{K.KEY}", warmup.TIMES])


def _index(folder: str) -> dict:
    """Every index file of a cache folder: name -> its entries' signatures."""
    out = {}
    for name in os.listdir(folder):
        if name.endswith(".nbi"):
            base = name[:-len(".nbi")]
            index = caching.IndexDataCacheFile(folder, base, K.KEY)._load_index()
            out[base.split("-")[0]] = [str(key[0]) for key in index]
    return out


def test_train_compiles_its_cell_only_and_sample_its_precision(tmp_path, poem):
    """With an empty cache, `train --cell rnn` compiles the RNN's kernels in
    float32 and Adam's, telling the user kernel by kernel; no other cell, no
    float64, no sampling. Then `sample --weights float32` compiles the
    sampler in float32 alone. Each is silent the second time."""
    env = env_with(str(tmp_path / "cache"))
    folder = str(tmp_path / "cache" / f"kernels-{K.KEY}")
    out = str(tmp_path / "m.npz")
    train = [sys.executable, "-m", "charlstm", "train", poem, "--cell", "rnn", "--hidden", "8",
             "--steps", "1", "--batch-size", "2", "--seq-len", "8", "--dropout", "0.5",
             "--out", out, "--no-progress", "--force"]
    r = subprocess.run(train, env=env, capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-2000:]
    n = len(warmup.train_units("rnn"))
    assert "Compiling the Numba kernels this command needs: " + str(n) in r.stderr
    for k in range(1, n + 1):                   # a plain line a kernel: stderr is a pipe
        assert f"  compiling {k}/{n} " in r.stderr
    index = _index(folder)
    assert "rnn.rnn_backward" in index and "recurrence.forward_onehot_rnn" in index
    assert not [name for name in index if name.startswith("sampling.")]
    assert not [name for name in index if "irnn" in name or "lstm" in name or "gru" in name
                or "cifg" in name or "peephole" in name or "adagrad" in name]
    assert not [sig for sigs in index.values() for sig in sigs if "array(float64" in sig]
    assert K.is_cached(folder, ["rnn"]) and K.is_cached(folder)
    assert not K.is_cached(folder, ["gru"]) and not K.is_cached(folder, ["rnn", "lstm"])
    times = json.load(open(tmp_path / "cache" / warmup.TIMES))
    assert "rnn_backward (float32)" in times and "generate_rnn (float32)" not in times

    again = subprocess.run(train, env=env, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0 and "ompiling" not in again.stderr, again.stderr

    sample = [sys.executable, "-m", "charlstm", "sample", out, "--length", "5",
              "--weights", "float32"]
    s = subprocess.run(sample, env=env, capture_output=True, text=True, timeout=900)
    assert s.returncode == 0, s.stderr[-2000:]
    assert "compiling" in s.stderr and "generate_rnn (float32)" in s.stderr
    index = _index(folder)
    assert len(index["sampling.generate_rnn"]) == 1              # float32 alone
    assert not [name for name in index if name.startswith("sampling.generate_")
                and name != "sampling.generate_rnn"]
    s2 = subprocess.run(sample, env=env, capture_output=True, text=True, timeout=300)
    assert s2.returncode == 0 and "ompiling" not in s2.stderr, s2.stderr


def test_is_cached_asks_for_the_training_units_of_the_cells_named(monkeypatch, tmp_path):
    """is_cached(folder, cells): every unit of `charlstm train --cell c` (default
    settings) for each cell, and with no cells those every cell shares."""
    asked = []

    def compiled(kernel, argtypes, folder):
        asked.append((kernel.py_func.__name__, folder))
        return True
    monkeypatch.setattr(_cache, "compiled", compiled)
    assert K.is_cached(str(tmp_path), ["gru"])
    names = {n for n, _ in asked}
    assert {"forward_onehot_gru", "gru_backward", "adam_update", "pack_nt"} <= names
    assert {folder for _, folder in asked} == {str(tmp_path)}
    asked.clear()
    assert K.is_cached(str(tmp_path))
    assert "adam_update" in {n for n, _ in asked}
    assert not [n for n, _ in asked if "lstm" in n or "backward" in n and n != "embed_backward"]


def _unit(what="test"):
    @njit
    def f(x):
        return x + 1
    return warmup.Unit(f, (1.0,), what)


def test_progress_names_the_kernel_k_of_n_and_the_time_left(monkeypatch, tmp_path, capsys):
    """Plain lines when not live; the estimate is the last compile's time, and
    this compile's time is recorded for the next."""
    monkeypatch.setenv("CHARLSTM_CACHE_DIR", str(tmp_path))
    (tmp_path / warmup.TIMES).write_text(json.dumps({"f (test)": 30}))
    logged = []
    warmup.run([_unit(), _unit("other")], log=logged.append, live=False)
    err = capsys.readouterr().err
    assert logged[0].startswith("Compiling the Numba kernels this command needs: 2")
    assert logged[-1].startswith("Compiled 2 kernels in ")
    assert "compiling 1/2 f (test), 0 s" in err and "compiling 2/2 f (other)" in err
    first, second = err.splitlines()
    assert "left" not in second                  # f (other) was never timed
    assert "about 30 s left (as last time)" not in first   # (and it is still to come)
    times = json.loads((tmp_path / warmup.TIMES).read_text())
    assert times["f (test)"] < 30 and "f (other)" in times
    (tmp_path / warmup.TIMES).write_text(json.dumps({"f (test)": 42}))
    warmup.run([_unit()], log=logged.append, live=False)
    assert "compiling 1/1 f (test), 0 s, about 42 s left (as last time)" in capsys.readouterr().err


def test_a_live_progress_line_is_rewritten_in_place(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("CHARLSTM_CACHE_DIR", str(tmp_path))
    warmup.run([_unit()], log=lambda m: None, live=True)
    err = capsys.readouterr().err
    assert err.startswith("\r  compiling 1/1 f (test), 0 s\x1b[K") and err.endswith("\r\x1b[K")
    assert "\n" not in err


def test_nothing_is_said_when_everything_is_cached(capsys):
    w = np.zeros(3, np.float32)
    unit = warmup.Unit(K.adagrad_update, (w, w, w, 1e-3, 1e-8), "float32")
    K.adagrad_update.compile(unit.argtypes)          # now in the cache, whatever it held
    logged = []
    warmup.run([unit, unit], log=logged.append, live=True)
    assert logged == [] and capsys.readouterr().err == ""


@pytest.fixture
def python_calls(monkeypatch):
    """The kernels called from Python with argument types they were not
    compiled (or loaded) for: each such call goes through
    Dispatcher._compile_for_args."""
    calls = []
    orig = dispatcher.Dispatcher._compile_for_args

    def record(self, *args, **kws):
        calls.append((self.py_func.__name__, [type(a).__name__ for a in args]))
        return orig(self, *args, **kws)
    monkeypatch.setattr(dispatcher.Dispatcher, "_compile_for_args", record)
    return calls


def _load(units):
    for u in units:
        u.kernel.compile(u.argtypes)                 # compiled, or loaded from the cache


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_the_units_are_every_kernel_that_training_calls(cell, tmp_path, poem, python_calls):
    """After the warm-up's units are loaded, training (two layers, dropout,
    two workers, validation; then Adagrad) calls no kernel with other types."""
    from charlstm.config import ModelConfig, TrainConfig
    from charlstm.train import Trainer
    for opt in ("adam", "adagrad"):
        _load(warmup.train_units(cell, "float32", layers=2, dropout=True, optimizer=opt))
        python_calls.clear()
        tr = Trainer(poem, ModelConfig(cell=cell, hidden=8, layers=2, dropout=0.3),
                     TrainConfig(seq_len=8, batch_size=4, steps=2, eval_every=1, optimizer=opt),
                     str(tmp_path / f"{opt}.npz"), progress=False, log=lambda m: None,
                     workers=2)
        tr.run()
        assert python_calls == []


def test_the_units_are_every_kernel_that_sampling_and_gradient_flow_call(python_calls):
    from charlstm.lab import spans as memory
    from charlstm.config import ModelConfig
    from charlstm.model import Model
    from charlstm.sampling import Sampler
    m = Model(ModelConfig(hidden=8, layers=2, vocab_size=5)).init(np.random.default_rng(0))
    for weights in ("int8", "float16", "float32"):
        for threads in (1, 2):
            _load(warmup.sample_units("lstm", weights, threads))
            python_calls.clear()
            Sampler(m, "abcde", threads=threads, weights=weights, clamp=[(1, 2, 0.5)]).text(
                "ab", 20, top_k=2, rng_seed=1)
            assert python_calls == [], (weights, threads)
    _load(warmup.gradient_units("lstm", "float64", layers=2))
    python_calls.clear()
    memory.gradient_flow(m, np.arange(400) % 5, T=8, B=2)
    assert python_calls == []
