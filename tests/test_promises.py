"""The promises, for every command: no file that is not charlstm's own is ever
written, a crafted file never crashes the process, and every problem is one
line with a non-zero exit and no traceback.

Every writer (train --out, inspect --html, export --out, show --png/--html,
tune --storage; compare's and tune's --out-dir) is run against every kind of
file it must never touch, with and without --force; every reader (sample,
inspect, export, train --resume, show) against crafted files of every format.
The signal tests are in test_signals.py."""
import json
import os
import shutil
import stat
import subprocess
import sys
import time
import tracemalloc
import zipfile

import numpy as np
import pytest
from click.testing import CliRunner

from charlstm import checkpoint as ckpt
from charlstm import files
from charlstm.cli import main

TINY = ["--hidden", "16", "--batch-size", "2", "--seq-len", "16", "--steps", "20",
        "--no-progress"]
TEXT = "the quick brown fox jumps over the lazy dog.\n" * 60


def run(args):
    r = CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)
    assert "Traceback" not in r.output, r.output
    return r


def refused(r):
    """A refusal: non-zero exit, and its message is one line."""
    lines = [ln for ln in r.output.splitlines() if ln.strip()]
    errors = [ln for ln in lines if ln.startswith("Error:")]
    assert r.exit_code != 0, r.output
    assert len(errors) == 1, r.output
    return errors[0]


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    """A text and a model trained on it (with its best file), made once."""
    d = tmp_path_factory.mktemp("home")
    text = d / "small.txt"
    text.write_text(TEXT, encoding="utf-8")
    r = run(["train", text, "--out", d / "base.npz", "--eval-every", "10"] + TINY)
    assert r.exit_code == 0, r.output
    return d


@pytest.fixture
def env(home, tmp_path):
    """Per test: a copy of the model (its recorded text is home's, unchanged)."""
    for n in ("base.npz", "base.best.npz"):
        shutil.copy(home / n, tmp_path / n)
    e = {"text": str(home / "small.txt"), "ckpt": str(tmp_path / "base.npz"),
         "best": str(tmp_path / "base.best.npz"), "tmp": tmp_path}
    yield e
    assert (home / "small.txt").read_text(encoding="utf-8") == TEXT     # never written


@pytest.fixture(scope="module")
def sleeper():
    """A live process whose pid holds a lock."""
    p = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    yield p.pid
    p.kill()
    p.wait()


# -- what a file is, to see that it was not changed --------------------------------

def snapshot(path):
    p = str(path)
    if os.path.islink(p):
        return ("link", os.readlink(p), snapshot(os.path.realpath(p)) if os.path.exists(p)
                else None)
    if not os.path.lexists(p):
        return ("missing",)
    st = os.stat(p)
    if stat.S_ISREG(st.st_mode):
        with open(p, "rb") as fh:
            return ("file", fh.read(), stat.S_IMODE(st.st_mode), st.st_ino)
    return ("special", stat.S_IFMT(st.st_mode))


# -- the targets an output option is pointed at --------------------------------------

def _user_file(e, sleeper):
    p = e["tmp"] / "notes.txt"
    p.write_text("my own notes\n")
    return p


def _user_npz(e, sleeper):
    p = e["tmp"] / "fake.npz"
    np.savez(p, weights=np.arange(3.0))
    return p


def _symlink_to_text(e, sleeper):
    p = e["tmp"] / "link.txt"
    p.symlink_to(e["text"])
    return p


def _hardlink_to_text(e, sleeper):
    p = e["tmp"] / "hard.txt"
    os.link(e["text"], p)
    return p


def _fifo(e, sleeper):
    p = e["tmp"] / "fifo"
    os.mkfifo(p)
    return p


def _dangling_symlink(e, sleeper):
    p = e["tmp"] / "dangling"
    p.symlink_to(e["tmp"] / "nowhere" / "x")
    return p


def _locked_new(e, sleeper):
    p = e["tmp"] / "live.out"
    (e["tmp"] / "live.out.lock").write_text(str(sleeper))
    return p


def _foreign_lock(e, sleeper):
    p = e["tmp"] / "other.out"
    (e["tmp"] / "other.out.lock").write_text("my lock, not charlstm's\n")
    return p


TARGETS = {
    "the training text": lambda e, s: e["text"],
    "the checkpoint read": lambda e, s: e["ckpt"],
    "the best file": lambda e, s: e["best"],
    "a user's file": _user_file,
    "a user's npz": _user_npz,
    "a symlink to the text": _symlink_to_text,
    "a hard link to the text": _hardlink_to_text,
    "a FIFO": _fifo,
    "a device": lambda e, s: "/dev/null",
    "a symlink to nowhere": _dangling_symlink,
    "an unwritable folder": lambda e, s: "/proc/charlstm-test/out",
    "a live run's file": _locked_new,
    "a lock file not charlstm's": _foreign_lock,
}

# Each writer: the command line with its output option pointed at T.
WRITERS = {
    "train --out": lambda e, t: ["train", e["text"], "--out", t] + TINY,
    "inspect --html": lambda e, t: ["inspect", e["ckpt"], "--html", t, "--chars", "300"],
    "export safetensors --out": lambda e, t: ["export", e["ckpt"], "--format", "safetensors",
                                              "--out", t],
    "export onnx --out": lambda e, t: ["export", e["ckpt"], "--format", "onnx", "--out", t],
    "show --png": lambda e, t: ["show", e["ckpt"], "--png", t],
    "show --html": lambda e, t: ["show", e["ckpt"], "--html", t],
    "tune --storage": lambda e, t: ["tune", e["text"], "--storage", t, "--trials", "1",
                                    "--trial-minutes", "0.05", "--out-dir",
                                    e["tmp"] / "tune-run", "--no-progress"],
}
NO_FORCE = ("tune --storage",)
# train --out may replace a checkpoint: the checkpoint read by train is none, and
# its best file is a checkpoint, which --force replaces (tested below).
ALLOWED = {("train --out", "the checkpoint read", True), ("train --out", "the best file", True)}


def _needs(writer):
    if "onnx" in writer:
        pytest.importorskip("onnx")
    if writer.startswith("show") and "--png" in writer:
        pytest.importorskip("matplotlib")
    if writer.startswith("tune"):
        pytest.importorskip("optuna")


@pytest.mark.parametrize("force", [False, True], ids=["", "force"])
@pytest.mark.parametrize("target", list(TARGETS))
@pytest.mark.parametrize("writer", list(WRITERS))
def test_no_writer_touches_a_file_that_is_not_its_own(env, sleeper, writer, target, force):
    if force and writer in NO_FORCE or (writer, target, force) in ALLOWED:
        pytest.skip("no --force" if force and writer in NO_FORCE else "allowed: tested below")
    _needs(writer)
    t = str(TARGETS[target](env, sleeper))
    watched = {p: snapshot(p) for p in {t, env["text"], env["ckpt"], env["best"]}}
    r = run(WRITERS[writer](env, t) + (["--force"] if force else []))
    refused(r)
    for p, before in watched.items():
        assert snapshot(p) == before, (p, r.output)
    assert not [n for n in os.listdir(env["tmp"]) if n.startswith(".tmp-")]


OWN = {   # each file writer: its own kind of file (files.KINDS), and the name it takes
    "train --out": ("checkpoint", ".npz"), "inspect --html": ("page", ".html"),
    "export safetensors --out": ("safetensors", ".safetensors"),
    "export onnx --out": ("onnx", ".onnx"), "show --png": ("png", ".png"),
    "show --html": ("page", ".html"),
}


@pytest.mark.parametrize("writer", list(OWN))
def test_an_own_file_is_replaced_only_with_force_and_keeps_its_mode(env, writer):
    _needs(writer)
    kind, suffix = OWN[writer]
    t = str(env["tmp"] / ("own" + suffix))
    r = run(WRITERS[writer](env, t))
    assert r.exit_code == 0, r.output
    os.chmod(t, 0o600)
    before = snapshot(t)
    r = run(WRITERS[writer](env, t))
    assert "--force" in refused(r) and snapshot(t) == before
    r = run(WRITERS[writer](env, t) + ["--force"])
    assert r.exit_code == 0, r.output
    assert stat.S_IMODE(os.stat(t).st_mode) == 0o600
    assert files.KINDS[kind].recognise(t)


def test_a_page_of_another_command_is_still_a_page(env):
    """show --html may replace inspect's page and the reverse: both are charlstm pages."""
    t = str(env["tmp"] / "page.html")
    assert run(["inspect", env["ckpt"], "--html", t, "--chars", "300"]).exit_code == 0
    r = run(["show", env["ckpt"], "--html", t, "--force"])
    assert r.exit_code == 0, r.output


def test_train_resume_keeps_the_checkpoints_mode(env):
    os.chmod(env["ckpt"], 0o600)
    os.chmod(env["best"], 0o600)
    r = run(["train", env["text"], "--resume", env["ckpt"], "--steps", "30", "--no-progress"])
    assert r.exit_code == 0, r.output
    assert stat.S_IMODE(os.stat(env["ckpt"]).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(env["best"]).st_mode) == 0o600


def test_a_new_file_gets_the_usual_mode(env):
    out = env["tmp"] / "new.safetensors"
    assert run(["export", env["ckpt"], "--format", "safetensors", "--out", out]).exit_code == 0
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(os.stat(out).st_mode) == 0o666 & ~umask


def test_a_symlink_to_an_own_file_is_written_through(env):
    """A link to charlstm's own file (--force given) is followed: the file it
    names is replaced, and the link stays a link."""
    t = env["tmp"] / "real.safetensors"
    assert run(["export", env["ckpt"], "--format", "safetensors", "--out", t]).exit_code == 0
    link = env["tmp"] / "link.safetensors"
    link.symlink_to(t)
    r = run(["export", env["ckpt"], "--format", "safetensors", "--out", link, "--force"])
    assert r.exit_code == 0 and os.path.islink(link)


# -- run folders: compare --out-dir and tune --out-dir ---------------------------------

def _folder_of_user_files(e, sleeper):
    d = e["tmp"] / "mine"
    d.mkdir()
    (d / "notes.txt").write_text("mine")
    return d


def _folder_with_a_users_checkpoint(e, sleeper):
    d = e["tmp"] / "models"
    d.mkdir()
    shutil.copy(e["ckpt"], d / "best.npz")
    shutil.copy(e["ckpt"], d / "lstm.npz")
    return d


def _folder_with_a_users_log(e, sleeper):
    d = e["tmp"] / "logs"
    d.mkdir()
    (d / "study.log").write_text("2026-12-07 my log\n")
    (d / "results.json").write_text('{"mine": true}')
    return d


def _symlink_to_a_user_folder(e, sleeper):
    d = _folder_of_user_files(e, sleeper)
    link = e["tmp"] / "linkdir"
    link.symlink_to(d)
    return link


def _run_folder_of(kind):
    def make(e, sleeper):
        d = e["tmp"] / f"{kind}-run"
        d.mkdir()
        (d / files.RUN_MARKER).write_text(json.dumps({"charlstm": f"{kind} run"}))
        (d / "results.json").write_text(json.dumps({"charlstm": "x"}))
        return d
    return make


def _live_compare_run(e, sleeper):
    d = _run_folder_of("compare")(e, sleeper)
    (d / (files.RUN_MARKER + ".lock")).write_text(str(sleeper))
    (d / "lstm.npz.lock").write_text(str(sleeper))
    return d


FOLDERS = {
    "a folder of user files": _folder_of_user_files,
    "a folder with a user's checkpoints": _folder_with_a_users_checkpoint,
    "a folder with a user's log": _folder_with_a_users_log,
    "a symlink to a user folder": _symlink_to_a_user_folder,
    "the training text": lambda e, s: e["text"],
    "an unwritable place": lambda e, s: "/proc/charlstm-test/run",
}
FOLDER_WRITERS = {
    "compare --out-dir": lambda e, d: ["compare", e["text"], "--out-dir", d, "--steps", "2",
                                       "--hidden", "8", "--batch-size", "2", "--seq-len", "8",
                                       "--jobs", "1", "--no-progress"],
    "tune --out-dir": lambda e, d: ["tune", e["text"], "--out-dir", d, "--trials", "1",
                                    "--trial-minutes", "0.05", "--no-progress"],
}


def _tree(path):
    p = str(path)
    if not os.path.isdir(p):
        return snapshot(p)
    out = {}
    for root, _, names in os.walk(p, followlinks=False):
        for n in names:
            out[os.path.relpath(os.path.join(root, n), p)] = snapshot(os.path.join(root, n))
    return out


@pytest.mark.parametrize("force", [False, True], ids=["", "force"])
@pytest.mark.parametrize("target", list(FOLDERS) + ["another command's run folder",
                                                    "a live compare run"])
@pytest.mark.parametrize("writer", list(FOLDER_WRITERS))
def test_no_run_folder_is_made_of_a_users_folder(env, sleeper, writer, target, force):
    if writer.startswith("tune"):
        pytest.importorskip("optuna")
        if force:
            pytest.skip("tune goes on in its own folder; it has no --force")
        if target == "a live compare run":
            target = "another command's run folder"
    if target == "another command's run folder":
        make = _run_folder_of("tune" if writer.startswith("compare") else "compare")
    elif target == "a live compare run":
        make = _live_compare_run
    else:
        make = FOLDERS[target]
    d = str(make(env, sleeper))
    before = _tree(d)
    r = run(FOLDER_WRITERS[writer](env, d) + (["--force"] if force else []))
    refused(r)
    assert _tree(d) == before


def test_compare_replaces_its_own_run_only_with_force(env):
    d = env["tmp"] / "cmp"
    args = FOLDER_WRITERS["compare --out-dir"](env, d)
    assert run(args).exit_code == 0
    assert "--force" in refused(run(args))
    r = run(args + ["--force"])
    assert r.exit_code == 0, r.output


def test_compare_refuses_a_model_file_a_live_train_run_holds(env, sleeper):
    d = env["tmp"] / "cmp"
    d.mkdir()
    (d / "lstm.npz.lock").write_text(str(sleeper))
    r = run(FOLDER_WRITERS["compare --out-dir"](env, d))
    assert "being written by another charlstm run" in refused(r)
    assert not (d / "lstm.npz").exists() and not (d / "rnn.npz").exists()


def test_tune_storage_refuses_a_database_that_is_not_a_study(env):
    pytest.importorskip("optuna")
    import sqlite3
    db = env["tmp"] / "mine.db"
    con = sqlite3.connect(db)
    con.execute("create table notes (t text)")
    con.commit()
    con.close()
    before = snapshot(db)
    r = run(["tune", env["text"], "--storage", f"sqlite:///{db}", "--trials", "1",
             "--trial-minutes", "0.05", "--out-dir", env["tmp"] / "run", "--no-progress"])
    assert "not a tune study database" in refused(r) or "not a" in refused(r)
    assert snapshot(db) == before


def test_tune_storage_never_prints_a_password(env):
    pytest.importorskip("optuna")
    for url in ("postgresql://alice:S3cretPW@127.0.0.1:1/db",
                "postgresql://127.0.0.1:1/db?password=S3cretPW&user=alice",
                "postgresql://alice:S3c@retPW@127.0.0.1:1/db",
                "notascheme://alice:S3cretPW@/x?"):
        r = run(["tune", env["text"], "--storage", url, "--trials", "1", "--trial-minutes",
                 "0.05", "--out-dir", env["tmp"] / "run", "--no-progress"])
        assert r.exit_code != 0
        assert "S3cret" not in r.output and "retPW" not in r.output, r.output


# -- crafted files, for every reader ---------------------------------------------------

READERS = {
    "sample": lambda e, p: ["sample", p, "--length", "20"],
    "inspect": lambda e, p: ["inspect", p, "--chars", "200", "--html", e["tmp"] / "p.html"],
    "export": lambda e, p: ["export", p, "--format", "safetensors", "--out",
                            e["tmp"] / "o.safetensors"],
    "train --resume": lambda e, p: ["train", e["text"], "--resume", p, "--out",
                                    e["tmp"] / "r.npz", "--steps", "25", "--no-progress"],
    "show": lambda e, p: ["show", p],
}


def _arrays(path):
    with np.load(path, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def _save(path, arrays, compressed=False):
    (np.savez_compressed if compressed else np.savez)(path, **arrays)


def _with(change):
    def make(e):
        a = _arrays(e["ckpt"])
        change(a)
        p = e["tmp"] / "crafted.npz"
        _save(p, a)
        return p
    return make


def _json(key, **kw):
    def change(a):
        d = json.loads(str(a[key]))
        d.update(kw)
        a[key] = np.array(json.dumps(d))
    return change


def _bomb(e):
    a = _arrays(e["ckpt"])
    a["junk"] = np.zeros(50_000_000, np.float32)       # 200 MB of zeros, 200 KB compressed
    p = e["tmp"] / "bomb.npz"
    _save(p, a, compressed=True)
    return p


def _huge_shapes(e):
    """A zip whose npy headers declare a model of 2^36 parameters, with no data."""
    a = _arrays(e["ckpt"])
    m = json.loads(str(a["model"]))
    m.update(hidden=65536, layers=4)
    a["model"] = np.array(json.dumps(m))
    p = e["tmp"] / "huge.npz"
    with zipfile.ZipFile(p, "w") as zf:
        for k, v in a.items():
            if k.startswith("param/"):
                continue
            with zf.open(k + ".npy", "w") as fh:
                np.lib.format.write_array(fh, v, allow_pickle=False)
        from charlstm.config import ModelConfig
        from charlstm.model import layout
        cfg = ModelConfig(**{k: v for k, v in m.items()})
        for name, shape in layout(cfg):
            with zf.open(f"param/{name}.npy", "w") as fh:
                np.lib.format.write_array_header_2_0(
                    fh, {"descr": "<f4", "fortran_order": False, "shape": shape})
    return p


def _pickled(e):
    a = _arrays(e["ckpt"])
    a["param/Wy"] = np.array([{"x": 1}], dtype=object)
    p = e["tmp"] / "pickled.npz"
    np.savez(p, **a)
    return p


def _truncated(e):
    p = e["tmp"] / "cut.npz"
    data = open(e["ckpt"], "rb").read()
    p.write_bytes(data[: len(data) // 2])
    return p


def _named(content):
    def make(e):
        p = e["tmp"] / "thing.npz"
        if callable(content):
            content(e, p)
        else:
            p.write_bytes(content)
        return p
    return make


def _an_export(e, p):
    out = e["tmp"] / "exp.safetensors"
    assert run(["export", e["ckpt"], "--format", "safetensors", "--out", out]).exit_code == 0
    shutil.copy(out, p)


NPZ = {
    "opt/m of 7 elements": _with(lambda a: a.update({"opt/m": np.zeros(7, np.float32)})),
    "opt/v of 7 elements": _with(lambda a: a.update({"opt/v": np.zeros(7, np.float32)})),
    "a decompression bomb": _bomb,
    "declared shapes of 2^36 numbers": _huge_shapes,
    "state []": _with(lambda a: a.update({"state": np.array("[]")})),
    "state step -1": _with(_json("state", step=-1)),
    "a 1-D history/train": _with(lambda a: a.update({"history/train": np.zeros(6)})),
    "a misshaped carry/h": _with(lambda a: a.update({"carry/h": np.zeros((1, 3, 16), np.float32)})),
    "nan in carry/c": _with(lambda a: a["carry/c"].__setitem__((0, 0, 0), np.nan)),
    "a lone surrogate in the vocabulary": _with(lambda a: a["vocab"].__setitem__(0, 0xD800)),
    "a vocabulary listing a character twice": _with(lambda a: a["vocab"].__setitem__(1, a["vocab"][0])),
    "a code point past Unicode": _with(lambda a: a["vocab"].__setitem__(0, 0x110000)),
    "Wy of the wrong shape": _with(lambda a: a.update({"param/Wy": np.zeros((3, 3), np.float32)})),
    "parameters as integers": _with(lambda a: a.update({"param/by": a["param/by"].astype(np.int64)})),
    "a parameter missing": _with(lambda a: a.pop("param/by")),
    "an extra array": _with(lambda a: a.update({"extra": np.zeros(3)})),
    "hidden -5": _with(_json("model", hidden=-5)),
    "layers 0": _with(_json("model", layers=0)),
    "cell xyz": _with(_json("model", cell="xyz")),
    "vocab_size 3": _with(_json("model", vocab_size=3)),
    "an unknown setting": _with(_json("model", colour="red")),
    "batch_size 0": _with(_json("train", batch_size=0)),
    "schedule wobbly": _with(_json("train", schedule="wobbly")),
    "a garbled RNG state": _with(_json("state", rng={"bit_generator": "PCG64", "state": 5})),
    "model settings not JSON": _with(lambda a: a.update({"model": np.array("{hidden")})),
    "version 99": _with(lambda a: a.update({"version": np.array(99)})),
    "no format key": _with(lambda a: a.pop("format")),
    "a pickled object array": _pickled,
    "a truncated file": _truncated,
    "a text file": _named(b"just some text\n"),
    "an empty file": _named(b""),
    "a PNG": _named(b"\x89PNG\r\n\x1a\n" + b"\0" * 40),
    "a pickle": _named(b"\x80\x04\x95" + b"\0" * 20),
    "a safetensors export named .npz": _named(_an_export),
}

RESUME_ONLY = {"opt/m of 7 elements", "opt/v of 7 elements", "state []", "state step -1",
               "a 1-D history/train", "a misshaped carry/h", "nan in carry/c",
               "a garbled RNG state", "batch_size 0", "schedule wobbly"}


@pytest.mark.parametrize("reader", list(READERS))
@pytest.mark.parametrize("craft", list(NPZ))
def test_a_crafted_checkpoint_is_one_line(env, reader, craft):
    if reader == "show":
        pytest.importorskip("matplotlib")
    path = NPZ[craft](env)
    r = run(READERS[reader](env, path))
    if craft == "a safetensors export named .npz":
        if reader == "train --resume":
            assert "training state" in refused(r)
        elif reader != "inspect":
            assert r.exit_code == 0, r.output               # charlstm reads its own export
        return
    if craft in RESUME_ONLY and reader != "train --resume":
        # Damage only a resumed run meets: the model itself is fine; but every
        # reader checks the whole file and may refuse it all the same.
        assert r.exit_code in (0, 1), r.output
        return
    refused(r)


def test_the_segfault_checkpoint_never_crashes_the_process(env):
    """`train --resume` of a checkpoint whose opt/m has 7 elements once indexed
    past the array in the Adam kernel (exit 139); run as its own process."""
    path = NPZ["opt/m of 7 elements"](env)
    p = subprocess.run([sys.executable, "-m", "charlstm", "train", env["text"], "--resume",
                        str(path), "--out", str(env["tmp"] / "r.npz"), "--steps", "40",
                        "--no-progress"], capture_output=True, text=True, timeout=300)
    assert p.returncode == 1 and "opt/m" in p.stderr and "Traceback" not in p.stderr


def test_a_bomb_is_refused_before_it_is_decompressed(env):
    path = _bomb(env)
    tracemalloc.start()
    try:
        with pytest.raises(ckpt.CharlstmError, match="does not write"):
            ckpt.load(str(path))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 20e6, peak


def test_declared_sizes_are_checked_before_allocating(env):
    path = _huge_shapes(env)
    tracemalloc.start()
    try:
        with pytest.raises(ckpt.CharlstmError, match="memory|65536"):
            ckpt.load(str(path))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 20e6, peak


# -- crafted safetensors ------------------------------------------------------------

def _st(e, change):
    out = e["tmp"] / "base.safetensors"
    if not out.exists():
        assert run(["export", e["ckpt"], "--format", "safetensors", "--out", out]).exit_code == 0
    raw = out.read_bytes()
    n = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8:8 + n])
    body = raw[8 + n:]
    header, body = change(header, body)
    head = json.dumps(header).encode() if not isinstance(header, bytes) else header
    head += b" " * (-len(head) % 8)
    p = e["tmp"] / "crafted.safetensors"
    p.write_bytes(len(head).to_bytes(8, "little") + head + body)
    return p


def _meta(key, fn):
    def change(h, b):
        m = json.loads(h["__metadata__"][key])
        h["__metadata__"][key] = json.dumps(fn(m))
        return h, b
    return change


def _tensor(name, **kw):
    def change(h, b):
        h[name].update(kw)
        return h, b
    return change


SAFETENSORS = {
    "a header that is not JSON": lambda h, b: (b"{not json", b),
    "no charlstm metadata": lambda h, b: ({k: v for k, v in h.items() if k != "__metadata__"}, b),
    "model JSON broken": lambda h, b: (h | {"__metadata__": h["__metadata__"] | {"model": "{"}}, b),
    "hidden -5": _meta("model", lambda m: m | {"hidden": -5}),
    "layers 0": _meta("model", lambda m: m | {"layers": 0}),
    "another cell's settings": _meta("model", lambda m: m | {"cell": "gru"}),
    "a vocabulary shorter than V": _meta("vocab", lambda v: v[:-3]),
    "a lone surrogate in the vocabulary": lambda h, b: (
        h | {"__metadata__": h["__metadata__"] | {"vocab": json.dumps("\ud800abc")}}, b),
    "a tensor missing": lambda h, b: ({k: v for k, v in h.items() if k != "decoder.bias"}, b),
    "a tensor too many": lambda h, b: (h | {"extra": {"dtype": "F32", "shape": [1],
                                                      "data_offsets": [0, 4]}}, b),
    "float16 weights": _tensor("decoder.bias", dtype="F16"),
    "a wrong shape": _tensor("decoder.bias", shape=[3]),
    "offsets past the end": _tensor("decoder.bias", data_offsets=[10 ** 9, 10 ** 9 + 4]),
    "a truncated body": lambda h, b: (h, b[:len(b) // 2]),
}


@pytest.mark.parametrize("reader", ["sample", "export", "show", "inspect"])
@pytest.mark.parametrize("craft", list(SAFETENSORS))
def test_a_crafted_safetensors_file_is_one_line(env, reader, craft):
    if reader == "show":
        pytest.importorskip("matplotlib")
    path = _st(env, SAFETENSORS[craft])
    refused(run(READERS[reader](env, path)))


def test_a_safetensors_header_length_past_the_file_is_one_line(env):
    p = env["tmp"] / "x.safetensors"
    p.write_bytes((10 ** 12).to_bytes(8, "little") + b"{}")
    refused(run(["sample", p]))


def test_an_export_cannot_be_resumed(env):
    out = env["tmp"] / "e.safetensors"
    assert run(["export", env["ckpt"], "--format", "safetensors", "--out", out]).exit_code == 0
    assert "training state" in refused(run(READERS["train --resume"](env, out)))


# -- inspect reads only the training text asked for ------------------------------------

def test_a_stored_path_to_another_file_is_never_read(env):
    """A checkpoint that names /etc/passwd as its text (with or without a
    digest) is refused: the page embeds only the text the model was trained on."""
    for digest in ("", "0" * 64):
        p = _with(_json("train", text="/etc/passwd", text_sha256=digest))(env)
        page = env["tmp"] / "p.html"
        line = refused(run(["inspect", p, "--html", page, "--chars", "200"]))
        assert "--text" in line and not page.exists()


def test_a_changed_training_text_is_not_taken_for_the_held_out_part(env, home):
    moved = env["tmp"] / "text.txt"
    shutil.copy(env["text"], moved)
    p = _with(_json("train", text=str(moved)))(env)
    run(["inspect", p, "--chars", "200", "--html", env["tmp"] / "a.html"]).exit_code == 0
    moved.write_text(TEXT.replace("fox", "cat"), encoding="utf-8")
    line = refused(run(["inspect", p, "--chars", "200", "--html", env["tmp"] / "b.html"]))
    assert "changed" in line and "--text" in line


def test_a_missing_recorded_text_says_where_the_path_came_from(env):
    p = _with(_json("train", text=str(env["tmp"] / "gone.txt")))(env)
    line = refused(run(["inspect", p, "--chars", "200", "--html", env["tmp"] / "a.html"]))
    assert "recorded in" in line and "--text" in line


def test_inline_data_cannot_end_the_pages_script(env, tmp_path):
    text = tmp_path / "t.txt"
    text.write_text(('say "<!--<script>" and </script> & more\n' * 80), encoding="utf-8")
    out = tmp_path / "m.npz"
    assert run(["train", text, "--out", out] + TINY).exit_code == 0
    page = tmp_path / "m.html"
    assert run(["inspect", out, "--html", page, "--chars", "500"]).exit_code == 0
    html = page.read_text(encoding="utf-8")
    data = html[html.index('id="data">') + 10:]
    data = data[:data.index("</script>")]
    assert "<" not in data and ">" not in data and "&" not in data
    assert json.loads(data)["text"].startswith('say "<!--<script>"')


def test_printed_commands_are_quoted_for_the_shell(env, tmp_path):
    nasty = tmp_path / "m;touch PWNED;.npz"
    shutil.copy(env["ckpt"], nasty)
    r = run(["inspect", nasty, "--chars", "300", "--html", tmp_path / "p.html"])
    assert r.exit_code == 0, r.output
    line = next(ln for ln in r.output.splitlines() if ln.startswith("try: "))
    cmd = line[5:].split("   #")[0]
    subprocess.run(["bash", "-n", "-c", cmd], check=True)            # it parses ...
    import shlex
    assert shlex.split(cmd)[2] == str(nasty)                         # ... as one argument
    assert not (tmp_path / "PWNED").exists()


# -- bounded resources ---------------------------------------------------------------

def test_sample_streams_its_random_numbers(env):
    """--length 10^9 | head: the first characters come at once, in little memory."""
    p = subprocess.Popen([sys.executable, "-m", "charlstm", "sample", env["ckpt"], "--length",
                          "1000000000"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    t0 = time.time()
    first = p.stdout.read(100)
    took = time.time() - t0
    p.kill()
    p.wait()
    assert len(first) == 100 and took < 60


def test_the_same_seed_gives_the_same_text_in_pieces(env):
    from charlstm.sampling import Sampler
    s = Sampler.from_checkpoint(env["ckpt"])
    whole = s.text("the", 600, rng_seed=3)
    pieces = "".join(s.stream("the", 600, rng_seed=3))
    assert whole == pieces


def test_inspect_chars_are_bounded_up_front(env):
    line = refused(run(["inspect", env["ckpt"], "--chars", "1000000"]))
    assert "--chars" in line


def test_a_clamp_beyond_float32_is_refused(env):
    line = refused(run(["sample", env["ckpt"], "--clamp", "0:0=1e39", "--length", "5"]))
    assert "float32" in line


def test_compare_length_is_bounded_up_front(env):
    r = run(["compare", env["text"], "--length", "1000000000", "--steps", "2"])
    assert r.exit_code == 2 and "100000" in r.output


def test_the_irnn_clamp_suggestion_moves_the_unit(tmp_path):
    text = tmp_path / "t.txt"
    text.write_text('he said "yes" and (then) "no"\n' * 60, encoding="utf-8")
    out = tmp_path / "i.npz"
    assert run(["train", text, "--out", out, "--cell", "irnn"] + TINY).exit_code == 0
    r = run(["inspect", out, "--chars", "500", "--html", tmp_path / "p.html"])
    for line in r.output.splitlines():
        if line.startswith("try: "):
            value = float(line.split("=")[1].split()[0])
            assert value != 0


def test_tune_space_files_with_impossible_ranges_are_one_line(env, tmp_path):
    pytest.importorskip("optuna")
    for space in ({"dropout": {"low": 0, "high": 0.5, "log": True}},
                  {"seq_len": {"low": 10, "high": 100, "step": 0.5}},
                  {"lr": {"low": 0.001, "high": 0.002, "step": 0.1}},
                  {"lr": {"low": 0.001, "high": 0.002, "log": "yes"}}):
        f = tmp_path / "space.json"
        f.write_text(json.dumps(space))
        refused(run(["tune", env["text"], "--space", f, "--trials", "1", "--out-dir",
                     tmp_path / "run", "--no-progress"]))
    f = tmp_path / "space.json"
    f.write_bytes(open(env["ckpt"], "rb").read())
    assert "not a search space" in refused(run(["tune", env["text"], "--space", f, "--trials",
                                                "1", "--out-dir", tmp_path / "run",
                                                "--no-progress"]))


def test_tune_on_a_small_text_measures_at_a_batch_it_holds(tmp_path):
    pytest.importorskip("optuna")
    from charlstm.data import load_corpus
    from charlstm.lab.tune.run import measure_speed
    text = tmp_path / "t.txt"
    text.write_text("abc def ghi\n" * 60, encoding="utf-8")           # 720 characters
    speed = measure_speed(str(text), load_corpus(str(text), 0.1), 1, seconds=0.2)
    assert speed is not None and speed.flops_rate > 0


# -- the second hostile pass's cases ---------------------------------------------------

def _deep_json(path):
    path.write_text("[" * 100_000 + "]" * 100_000)
    return path


@pytest.mark.parametrize("where", ["sample", "train --out", "inspect --html", "show --png",
                                   "tune --space", "export --out"])
def test_json_nested_too_deeply_is_one_line(env, where):
    deep = _deep_json(env["tmp"] / ("deep" + {"sample": ".json", "train --out": ".npz",
                                              "inspect --html": ".html", "show --png": ".png",
                                              "tune --space": ".json",
                                              "export --out": ".safetensors"}[where]))
    args = {"sample": ["sample", deep],
            "train --out": ["train", env["text"], "--out", deep] + TINY,
            "inspect --html": ["inspect", env["ckpt"], "--html", deep, "--chars", "200"],
            "show --png": ["show", env["ckpt"], "--png", deep],
            "tune --space": ["tune", env["text"], "--space", deep, "--trials", "1",
                             "--out-dir", env["tmp"] / "run", "--no-progress"],
            "export --out": ["export", env["ckpt"], "--format", "safetensors", "--out", deep,
                             "--force"]}[where]
    if where.startswith("tune"):
        pytest.importorskip("optuna")
    before = snapshot(deep)
    refused(run(args))
    assert snapshot(deep) == before


def test_a_fifo_named_like_a_lock_never_hangs(env):
    os.mkfifo(env["tmp"] / "o.npz.lock")
    p = subprocess.run([sys.executable, "-m", "charlstm", "train", env["text"], "--out",
                        str(env["tmp"] / "o.npz")] + TINY, capture_output=True, text=True,
                       timeout=120)
    assert p.returncode == 1 and "not a charlstm lock" in p.stderr


@pytest.mark.parametrize("change", [
    lambda a: a["history/val"].__setitem__((0, 0), np.nan),
    lambda a: a["history/val"].__setitem__((0, 0), np.inf),
    lambda a: a["history/train"].__setitem__((0, 1), np.nan),
], ids=["nan step", "inf step", "nan time"])
def test_a_history_with_steps_that_are_not_numbers_is_one_line(env, change):
    refused(run(["show", _with(change)(env)]))


def test_a_history_of_nan_losses_shows(env):
    p = _with(lambda a: a["history/val"].__setitem__((slice(None), 2), np.nan))(env)
    assert run(["show", p]).exit_code == 0


def test_an_array_shorter_than_its_header_is_one_line(env):
    a = _arrays(env["ckpt"])
    p = env["tmp"] / "short.npz"
    with zipfile.ZipFile(p, "w") as zf:
        for k, v in a.items():
            with zf.open(k + ".npy", "w") as fh:
                data = v.tobytes() if k != "param/Wy" else v.tobytes()[:-100]
                np.lib.format.write_array_header_1_0(
                    fh, np.lib.format.header_data_from_array_1_0(v))
                fh.write(data if v.dtype.kind != "U" else np.asarray(v).tobytes())
    for reader in ("sample", "show"):
        refused(run(READERS[reader](env, p)))


def test_a_safetensors_shape_that_is_not_a_list_is_one_line(env):
    refused(run(["sample", _st(env, _tensor("decoder.bias", shape=5))]))


def test_every_sqlite_url_is_checked(env):
    pytest.importorskip("optuna")
    import sqlite3
    db = env["tmp"] / "user.db"
    con = sqlite3.connect(db)
    con.execute("create table notes (t text)")
    con.commit()
    con.close()
    before = snapshot(db)
    for url in (f"sqlite+pysqlite:///{db}", f"SQLITE:///{db}"):
        refused(run(["tune", env["text"], "--storage", url, "--trials", "1", "--trial-minutes",
                     "0.05", "--out-dir", env["tmp"] / "run", "--no-progress"]))
    assert snapshot(db) == before


def test_show_refuses_one_path_for_both_pictures(env):
    pytest.importorskip("matplotlib")
    out = env["tmp"] / "x"
    assert "--png and --html" in refused(run(["show", env["ckpt"], "--png", out, "--html", out]))
    assert not out.exists()


def test_tune_never_writes_through_a_trials_symlink(env, tmp_path):
    pytest.importorskip("optuna")
    run_dir = tmp_path / "run"
    (run_dir / "trials").mkdir(parents=True)
    (run_dir / files.RUN_MARKER).write_text(json.dumps({"charlstm": "tune run"}))
    keep = tmp_path / "keep.txt"
    keep.write_text("mine")
    for n in range(4):
        (run_dir / "trials" / f"trial-{n:04d}.npz").symlink_to(env["text"])
        (run_dir / "trials" / f"trial-{n:04d}.best.npz").symlink_to(keep)
    r = run(["tune", env["text"], "--trials", "1", "--trial-minutes", "0.05", "--out-dir",
             run_dir, "--cell", "lstm", "--hidden", "16", "--layers", "1", "--batch-size", "2",
             "--seq-len", "16", "--no-progress"])
    assert r.exit_code != 0
    assert keep.read_text() == "mine"                 # (and the env fixture checks the text)


def test_a_newline_in_a_path_keeps_the_message_on_one_line(env):
    out = env["tmp"] / "a\nb" / "m.npz"
    (env["tmp"] / "a\nb").write_text("a file where the folder would be")
    line = refused(run(["train", env["text"], "--out", out] + TINY))
    assert "\\n" in line


def test_a_text_named_like_an_option_gets_a_command_that_runs(env, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    shutil.copy(env["text"], tmp_path / "-t.txt")
    r = run(["train"] + TINY + ["--", "-t.txt"])
    assert r.exit_code == 0, r.output
    again = next(ln for ln in r.output.splitlines() if ln.startswith("the same run again: "))
    assert " ./-t.txt " in again


def test_a_file_put_at_an_output_during_training_is_never_replaced(env):
    """A run checks its files again at every save: a user's file that has taken
    a checkpoint's place since the run began is left alone, and the run stops."""
    from charlstm.config import ModelConfig, TrainConfig
    from charlstm.train import Trainer
    out = env["tmp"] / "t.npz"
    tr = Trainer(env["text"], ModelConfig(hidden=8), TrainConfig(seq_len=8, batch_size=2,
                                                                 steps=40, eval_every=10),
                 str(out), progress=False, log=lambda m: None)
    step = tr.step

    def swap():
        if tr.state["step"] == 15:
            (env["tmp"] / "t.best.npz").write_text("mine now")
        return step()
    tr.step = swap
    with pytest.raises(ckpt.CharlstmError, match="replaced"):
        tr.run()
    assert (env["tmp"] / "t.best.npz").read_text() == "mine now"


# -- a failed command leaves no folder behind ----------------------------------------

def _listing(root):
    return sorted(os.path.relpath(os.path.join(r, n), root)
                  for r, ds, fs in os.walk(root) for n in ds + fs)


def _empty_text(e):
    p = e["tmp"] / "empty.txt"
    p.write_text("")
    return str(p)


def _on_empty_text(writer, storage=None):
    """A run-folder writer given an empty text, its run folder d/run (and
    --storage storage(d))."""
    return lambda e, d: FOLDER_WRITERS[writer](dict(e, text=_empty_text(e)), d / "run") + (
        ["--storage", storage(d)] if storage else [])


# A command refused for its input after it has made its output's folder.
REFUSED_AFTER_THE_FOLDER = {
    "train --out": lambda e, d: ["train", _empty_text(e), "--out", d / "deep" / "m.npz"] + TINY,
    "compare --out-dir": _on_empty_text("compare --out-dir"),
    "tune --out-dir": _on_empty_text("tune --out-dir"),
    "tune --storage journal": _on_empty_text("tune --out-dir", lambda d: d / "j" / "study.log"),
    "tune --storage sqlite": _on_empty_text("tune --out-dir",
                                            lambda d: f"sqlite:///{d}/s/study.db"),
}


@pytest.fixture
def made(monkeypatch):
    """The folders files.make_folder was asked for: that a refusal came after
    the command made its output's folder, so that the test tests something."""
    asked = []
    real = files.make_folder

    def spy(folder):
        asked.append(str(folder))
        return real(folder)
    monkeypatch.setattr(files, "make_folder", spy)
    return asked


@pytest.mark.parametrize("writer", list(REFUSED_AFTER_THE_FOLDER))
def test_a_refused_command_takes_back_the_folders_it_made(env, writer, made):
    if writer.startswith("tune"):
        pytest.importorskip("optuna")
    before = _listing(env["tmp"])
    r = run(REFUSED_AFTER_THE_FOLDER[writer](env, env["tmp"] / "new"))
    refused(r)
    assert any(str(env["tmp"] / "new") in f for f in made), made
    assert _listing(env["tmp"]) == before + ["empty.txt"]


@pytest.mark.parametrize("writer", [w for w in REFUSED_AFTER_THE_FOLDER if "--out-dir" in w])
def test_a_refused_run_leaves_no_marker_in_an_empty_folder_that_was_there(env, writer):
    """compare and tune mark their run folder; refused, they take the mark
    back from a folder the user made, which stays, empty."""
    if writer.startswith("tune"):
        pytest.importorskip("optuna")
    (env["tmp"] / "new" / "run").mkdir(parents=True)
    before = _listing(env["tmp"])
    r = run(REFUSED_AFTER_THE_FOLDER[writer](env, env["tmp"] / "new"))
    refused(r)
    assert _listing(env["tmp"]) == sorted(before + ["empty.txt"])


def test_a_folder_another_process_made_meanwhile_is_not_taken(env, monkeypatch):
    """Another run makes the folder between the look and the mkdir: it is
    that run's, and stays."""
    theirs = env["tmp"] / "theirs"
    real = os.mkdir

    def racing(path, *a, **kw):
        if str(path) == str(theirs):
            real(path)
            (theirs / files.RUN_MARKER).write_text('{"charlstm": "compare run"}')
        return real(path, *a, **kw)
    monkeypatch.setattr(files.os, "mkdir", racing)
    r = run(REFUSED_AFTER_THE_FOLDER["train --out"](env, theirs))
    refused(r)
    assert os.listdir(theirs) == [files.RUN_MARKER]


def test_folders_made_before_a_failure_partway_are_taken_back(env):
    """A path whose last level cannot be made (its name is too long): the
    levels made before it are taken back."""
    r = run(["train", env["text"], "--out", env["tmp"] / "new" / "x" / ("a" * 300) / "m.npz"]
            + TINY)
    refused(r)
    assert not os.path.exists(env["tmp"] / "new")


def test_a_path_through_a_symlink_and_up_is_taken_back_where_it_was_made(env):
    """link/../run is made beside the link's target, as the system resolves
    it, and taken back from there; nothing is taken from beside the link."""
    (env["tmp"] / "elsewhere" / "sub").mkdir(parents=True)
    (env["tmp"] / "work").mkdir()
    os.symlink(env["tmp"] / "elsewhere" / "sub", env["tmp"] / "work" / "link")
    before = _listing(env["tmp"])
    r = run(REFUSED_AFTER_THE_FOLDER["compare --out-dir"](
        env, env["tmp"] / "work" / "link" / ".."))
    refused(r)
    assert _listing(env["tmp"]) == sorted(before + ["empty.txt"])


def test_a_refused_train_leaves_no_checkpoints_folder(env, monkeypatch):
    monkeypatch.chdir(env["tmp"])
    r = run(["train", _empty_text(env)] + TINY)
    refused(r)
    assert not os.path.exists(env["tmp"] / "checkpoints")


def _into_new_folders(writer, e, d):
    """writer's command, its output two new folders down in d."""
    if writer in FOLDER_WRITERS:
        return FOLDER_WRITERS[writer](e, d / "new" / "run")
    return WRITERS[writer](e, d / "new" / "deep" / ("out" + OWN[writer][1]))


@pytest.mark.parametrize("writer", list(OWN) + list(FOLDER_WRITERS))
def test_a_write_that_fails_leaves_no_folder(env, writer, monkeypatch):
    """Every writer, with its disk full at its first write: one line, and the
    folders it made for the output are gone again; the folders that were
    there before are kept."""
    _needs(writer)

    def full(path, fill, **kw):
        raise OSError(28, os.strerror(28), str(path))
    monkeypatch.setattr(files, "write_with", full)
    before = _listing(env["tmp"])
    r = run(_into_new_folders(writer, env, env["tmp"]))
    refused(r)
    assert _listing(env["tmp"]) == before, r.output


@pytest.mark.parametrize("inside", ["nothing", "a user's file"])
def test_a_folder_that_was_there_is_kept(env, inside):
    """Only the folders the command made are taken back: an empty folder the
    user made, and one holding the user's files, stay as they were."""
    d = env["tmp"] / "mine"
    d.mkdir()
    if inside != "nothing":
        (d / "notes.txt").write_text("mine")
    before = _listing(env["tmp"])
    r = run(REFUSED_AFTER_THE_FOLDER["train --out"](env, d))
    refused(r)
    assert _listing(env["tmp"]) == sorted(before + ["empty.txt"])


def test_a_failed_command_keeps_what_it_saved(env, monkeypatch):
    """A folder the command made and saved into before it failed is kept,
    with what it saved."""
    real = files.write_with
    calls = []

    def fail_second(path, fill, **kw):
        calls.append(path)
        if len(calls) > 1:
            raise OSError(28, os.strerror(28), str(path))
        return real(path, fill, **kw)
    monkeypatch.setattr(files, "write_with", fail_second)
    out = env["tmp"] / "new" / "m.npz"
    r = run(["train", env["text"], "--out", out, "--eval-every", "5"] + TINY)
    refused(r)
    assert os.listdir(env["tmp"] / "new"), r.output
