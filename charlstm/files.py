"""The one write path: every file any charlstm command writes goes through this
module, and so does the check of every output option before any long work.

The rules, the same for every command and every output option (train --out
and its best file, inspect --html, export --out, compare's and tune's run
folders, tune --storage, show --png/--html, the training log):

- **Ownership.** An existing file is replaced only when it is charlstm's own
  file of the same kind, recognised by its content (`KINDS`), never by its
  name. The training text, a file the command reads, a folder, a device, a
  FIFO and a socket are never written. A symlink is followed, and its target
  obeys the same rules (a link to nowhere is refused).
- **Explicit choice.** Replacing an existing file needs --force, except where
  the command continues its own run (train --resume, a tune study's folder).
  --force never overrides the rule above.
- **Atomicity.** A temporary file in the same folder, then a rename: a kill at
  any moment leaves the old file or the new one, whole. Temporary files that a
  killed charlstm left behind (their pid no longer runs) are removed.
- **Locks.** While a run writes X it holds X.lock (its pid); every command
  refuses to write X while that process lives. A dead run's lock is taken over.
- **Up front.** The folder is made and a test file written into it before any
  long work, so that a read-only, full or missing folder is one line at once.
- **Permissions.** A replaced file keeps its mode; a new one gets 0666 & ~umask.
"""
from __future__ import annotations

import contextlib
import errno
import json
import os
import stat
import tempfile
import zipfile
from dataclasses import dataclass
from typing import Callable

from .errors import CharlstmError

TEMP_PREFIX = ".tmp-"                   # .tmp-<pid>-<random><suffix>
LOCK_TAG = "charlstm-lock"
RUN_MARKER = ".charlstm-run"            # in a run folder: {"charlstm": "<kind> run"}


# ---------------------------------------------------------------------------
# What a file is, from its content.

def loads(text):
    """json.loads of text from a file charlstm did not make: nesting too deep
    for the parser is a ValueError like any other malformed JSON."""
    try:
        return json.loads(text)
    except RecursionError:
        raise ValueError("nested too deeply") from None


def regular(path: str) -> bool:
    """Whether path is a regular file (through symlinks): only those are ever
    opened to be read here (opening a FIFO would wait for a writer for ever)."""
    try:
        return stat.S_ISREG(os.stat(path).st_mode)
    except OSError:
        return False


def _head(path: str, n: int = 4096) -> bytes:
    if not regular(path):
        return b""
    try:
        with open(path, "rb") as fh:
            return fh.read(n)
    except OSError:
        return b""


def _npz_format(path: str) -> str | None:
    """The `format` string of an .npz, read alone (a few bytes), or None."""
    if not regular(path):
        return None
    try:
        with zipfile.ZipFile(path) as zf:
            info = zf.getinfo("format.npy")
            if info.file_size > 4096:
                return None
            import numpy as np
            with zf.open(info) as fh:
                arr = np.lib.format.read_array(fh, allow_pickle=False)
            return str(arr) if arr.shape == () else None
    except (OSError, KeyError, ValueError, zipfile.BadZipFile, EOFError, RuntimeError,
            NotImplementedError):
        return None


def _safetensors_header(path: str) -> dict | None:
    head = _head(path, 8)               # (nothing for a file that is not regular)
    if len(head) < 8:
        return None
    n = int.from_bytes(head, "little")
    try:
        size = os.path.getsize(path)
    except OSError:
        return None
    if not 2 <= n <= min(size - 8, 100 << 20):
        return None
    try:
        with open(path, "rb") as fh:
            fh.seek(8)
            d = loads(fh.read(n).decode("utf-8"))
    except (OSError, ValueError, UnicodeDecodeError):
        return None
    return d if isinstance(d, dict) else None


def _varint(b: bytes, i: int) -> tuple[int, int]:
    out = shift = 0
    while True:
        if i >= len(b) or shift > 63:
            raise ValueError
        c = b[i]
        out |= (c & 0x7F) << shift
        i += 1
        if not c & 0x80:
            return out, i
        shift += 7


def onnx_producer(path: str) -> str | None:
    """An ONNX ModelProto's producer_name (field 2), read from the first
    bytes without the onnx package; None if the file does not parse as one."""
    b = _head(path, 4096)
    i = 0
    try:
        while i < len(b):
            tag, i = _varint(b, i)
            field, wire = tag >> 3, tag & 7
            if wire == 0:
                _, i = _varint(b, i)
            elif wire == 2:
                n, i = _varint(b, i)
                if field == 2:
                    return b[i:i + n].decode("utf-8")
                i += n
            else:
                return None
            if field not in (1, 2, 3, 4, 5, 6, 8, 14, 20, 25):
                return None
    except (ValueError, UnicodeDecodeError):
        return None
    return None


def _png_software(path: str) -> str | None:
    b = _head(path, 65536)
    if not b.startswith(b"\x89PNG\r\n\x1a\n"):
        return None
    i = 8
    while i + 8 <= len(b):
        n = int.from_bytes(b[i:i + 4], "big")
        kind = b[i + 4:i + 8]
        data = b[i + 8:i + 8 + n]
        if kind == b"tEXt" and data.startswith(b"Software\0"):
            return data[9:].decode("latin-1")
        if kind == b"IDAT":
            return None
        i += 12 + n
    return None


def json_doc(path: str, limit: int = 64 << 20):
    if not regular(path):
        return None
    try:
        if os.path.getsize(path) > limit:
            return None
        with open(path, encoding="utf-8") as fh:
            return loads(fh.read())
    except (OSError, ValueError, UnicodeDecodeError):
        return None


def _first_json_line(path: str):
    line = _head(path, 65536).split(b"\n", 1)[0]
    try:
        return loads(line.decode("utf-8"))
    except (ValueError, UnicodeDecodeError):
        return None


def is_checkpoint(path: str) -> bool:
    return _npz_format(path) == "charlstm-checkpoint"


def _is_safetensors(path: str) -> bool:
    h = _safetensors_header(path)
    return bool(h) and isinstance(h.get("__metadata__"), dict) and \
        h["__metadata__"].get("format") == "charlstm-safetensors"


def _is_page(path: str) -> bool:
    head = _head(path, 2048).decode("utf-8", "replace")
    return ('<meta name="generator" content="charlstm' in head
            or "<title>charlstm " in head)              # pages of earlier versions


def _is_json(path: str) -> bool:
    d = json_doc(path)
    if not isinstance(d, dict):
        return False
    return ("charlstm" in d
            or {"models", "cells", "probe"} <= set(d)            # compare's, earlier
            or {"trials", "space", "study"} <= set(d)            # tune's, earlier
            or set(d) == {"trial", "value"})                     # tune's best.json


def _is_journal(path: str) -> bool:
    d = _first_json_line(path)
    return isinstance(d, dict) and "op_code" in d


def _is_log(path: str) -> bool:
    d = _first_json_line(path)
    return isinstance(d, dict) and str(d.get("charlstm", "")).endswith("log")


def _is_sqlite_study(path: str) -> bool:
    if not _head(path, 16).startswith(b"SQLite format 3\0"):      # (regular files only)
        return False
    import sqlite3
    try:
        con = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            names = {r[0] for r in con.execute("select name from sqlite_master where type='table'")}
        finally:
            con.close()
    except sqlite3.Error:
        return False
    return "studies" in names and "trials" in names


@dataclass(frozen=True)
class Kind:
    name: str
    what: str                             # "a charlstm checkpoint", for messages
    recognise: Callable[[str], bool]


KINDS = {k.name: k for k in (
    Kind("checkpoint", "a charlstm checkpoint", is_checkpoint),
    Kind("safetensors", "a safetensors file exported by charlstm", _is_safetensors),
    Kind("onnx", "an ONNX model exported by charlstm", lambda p: onnx_producer(p) == "charlstm"),
    Kind("page", "a page written by charlstm", _is_page),
    Kind("png", "a picture drawn by charlstm",
         lambda p: (_png_software(p) or "").startswith("charlstm")),
    Kind("json", "a JSON report written by charlstm", _is_json),
    Kind("journal", "a charlstm tune study journal", _is_journal),
    Kind("log", "a charlstm training log", _is_log),
    Kind("sqlite", "a tune study database", _is_sqlite_study),
)}


def sniff(path: str) -> str:
    """What a file looks like, for messages: 'a text file', 'a PNG image', ..."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return "missing"
    except OSError as e:
        return f"unreadable ({os.strerror(e.errno).lower()})"
    if stat.S_ISDIR(st.st_mode):
        return "a folder"
    if not stat.S_ISREG(st.st_mode):
        return "not a regular file (a device, a pipe or a socket)"
    head = _head(path, 4096)
    if not head:
        return "an empty file"
    if head.startswith(b"PK\x03\x04"):
        fmt = _npz_format(path)
        if fmt == "charlstm-checkpoint":
            return "a charlstm checkpoint (.npz)"
        return "a ZIP archive (.npz) that charlstm did not write"
    if head.startswith(b"\x93NUMPY"):
        return "a single NumPy array (.npy)"
    if _safetensors_header(path) is not None:          # (its length may start with 0x80)
        return ("a safetensors file exported by charlstm" if _is_safetensors(path)
                else "a safetensors file that charlstm did not export")
    if head[:1] == b"\x80":
        return "a Python pickle"
    if head.startswith(b"\x89PNG"):
        return "a PNG image"
    if head.startswith(b"SQLite format 3\0"):
        return "an SQLite database"
    if head.startswith((b"\x7fELF", b"MZ")):
        return "a program"
    producer = onnx_producer(path)
    if producer is not None:
        return f"an ONNX model ({producer or 'no producer'})"
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError as e:
        if e.start < len(head) - 4:
            return "a binary file"
        text = head[:e.start].decode("utf-8")
    low = text.lstrip().lower()
    if low.startswith(("<!doctype html", "<html")):
        return "an HTML page"
    if low.startswith(("{", "[")) and json_doc(path) is not None:
        return "a JSON file"
    return "a text file"


# ---------------------------------------------------------------------------
# Checking an output before any long work.

def same_file(a: str, b: str) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def _plain(path: str) -> str:
    return path.rstrip(os.sep) or path


@dataclass(frozen=True)
class Target:
    """A checked output: `path` as the user gave it, `real` the file written
    (a symlink's target), whether it exists already."""
    path: str
    real: str
    kind: str
    option: str
    exists: bool


def resolve(path: str, option: str) -> str:
    """The file `path` names, through any symlinks; a link to nowhere is refused."""
    if os.path.islink(path):
        real = os.path.realpath(path)
        if not os.path.exists(real):
            raise CharlstmError(f"{option} {path} is a symlink to {real}, which does not "
                                "exist; charlstm does not write through it: give another "
                                f"{option}")
        return real
    return os.path.abspath(path)


def check_output(path: str, kind: str, *, option: str, inputs=(), force: bool = False,
                 continuing: bool = False, make_folder: bool = True,
                 exists_hint: str | None = None) -> Target:
    """Refuse, with the reason and the fix, an output that the rules above
    forbid; make its folder and test that it takes a file. `inputs`: the
    files the command reads, {path: what it is} (never written, whatever they
    are); `force`: the
    user's --force; `continuing`: the file is this run's own, carried on
    (train --resume, a tune study), and may be replaced without --force;
    `exists_hint`: what to say when it exists and neither is given."""
    k = KINDS[kind]
    if path.endswith(os.sep) or os.path.isdir(path):
        raise CharlstmError(f"{option} {path} is a folder; give a file name, e.g. "
                            f"{os.path.join(_plain(path), 'out' + _suffix(kind))}")
    real = resolve(path, option)
    parent = os.path.dirname(real)
    probe = parent
    while not os.path.exists(probe):
        probe = os.path.dirname(probe)
    if not os.path.isdir(probe):
        raise CharlstmError(f"{option} {path}: {probe} is a file, not a folder; choose "
                            "another path")
    for inp, label in dict(inputs).items():
        if inp and os.path.lexists(real) and same_file(real, inp):
            raise CharlstmError(f"{option} {path} would replace {label} {inp}, which this "
                                f"command reads; charlstm never writes over it: give another "
                                f"{option}, e.g. {_example(path, kind)}")
    exists = os.path.lexists(real)
    if exists:
        if not stat.S_ISREG(os.stat(real).st_mode):
            raise CharlstmError(f"{option} {path} exists and is not a regular file (a folder, "
                                f"device, pipe or socket); charlstm never writes to it: give "
                                f"another {option}")
        if not k.recognise(real):
            raise CharlstmError(f"{option} {path} exists and is {sniff(real)}, not {k.what}; "
                                f"charlstm replaces only its own files: give another {option}")
        if not force and not continuing:
            raise CharlstmError(f"{option} {path} exists ({k.what}); " + (
                exists_hint or f"replace it with --force, or give another {option}"))
    check_unlocked(real, option)
    if make_folder:
        check_writable(parent, option)
    return Target(path, real, kind, option, exists)


def _suffix(kind: str) -> str:
    return {"checkpoint": ".npz", "safetensors": ".safetensors", "onnx": ".onnx",
            "page": ".html", "png": ".png", "json": ".json", "journal": ".log",
            "log": ".jsonl", "sqlite": ".db"}[kind]


def _example(path: str, kind: str) -> str:
    return os.path.join(os.path.dirname(path), "out" + _suffix(kind))


def check_writable(folder: str, option: str = "--out") -> None:
    """Make folder if need be and write a test file into it, so that a
    read-only, full or missing folder is reported before any long work."""
    try:
        os.makedirs(folder, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f"{TEMP_PREFIX}{os.getpid()}-test-", dir=folder)
        try:
            os.write(fd, b"\0" * 4096)
            os.fsync(fd)
        finally:
            os.close(fd)
            os.unlink(tmp)
    except OSError as e:
        raise CharlstmError(f"cannot write to {folder}: {_reason(e)}; choose another "
                            f"{option} or free the folder") from None


def _reason(e: OSError) -> str:
    return os.strerror(e.errno).lower() if e.errno else str(e)


def oserror_line(e: OSError, path: str) -> CharlstmError:
    """One line for an OSError met while writing path."""
    hint = "; free some space" if e.errno == errno.ENOSPC else ""
    return CharlstmError(f"cannot write {path}: {_reason(e)}{hint}")


# ---------------------------------------------------------------------------
# Run folders (compare --out-dir, tune --out-dir).

def check_run_folder(folder: str, kind: str, *, option: str = "--out-dir",
                     force: bool = False, continuing: bool = False,
                     legacy: Callable[[str], bool] | None = None) -> None:
    """A run folder is new, empty, or one of this kind's run folders (its
    marker file says so, or `legacy(folder)` recognises an earlier version's).
    An earlier run's folder needs --force, unless the run goes on in it
    (continuing). The marker is written here; the folder is tested."""
    if os.path.lexists(folder) and not os.path.isdir(folder):
        raise CharlstmError(f"{option} {folder} is {sniff(folder)}, not a folder; give a folder")
    if os.path.isdir(folder):
        every = os.listdir(folder)
        mark = json_doc(os.path.join(folder, RUN_MARKER)) if RUN_MARKER in every else None
        names = [n for n in every if not n.startswith((TEMP_PREFIX, RUN_MARKER))
                 and not (n.endswith(".lock")
                          and _lock_pid(os.path.join(folder, n)) is not None)]
        ours = (isinstance(mark, dict) and mark.get("charlstm") == f"{kind} run") or \
            (legacy is not None and bool(names) and legacy(folder))
        if names and not ours:
            if isinstance(mark, dict) and "charlstm" in mark:
                raise CharlstmError(f"{option} {folder} is a {mark['charlstm']} folder, not a "
                                    f"{kind} run's; give a new or empty folder")
            shown = ", ".join(sorted(names)[:3])
            raise CharlstmError(f"{option} {folder} holds files that are not a charlstm "
                                f"{kind} run's ({shown}); give a new or empty folder")
        if names and ours and not force and not continuing:
            raise CharlstmError(f"{option} {folder} holds an earlier {kind} run; replace it "
                                f"with --force, or give a new --out-dir")
    check_writable(folder, option)
    marker = os.path.join(folder, RUN_MARKER)
    if not os.path.exists(marker):
        write_text(marker, json.dumps({"charlstm": f"{kind} run"}) + "\n")


def own_run_folder(folder: str, kind: str) -> bool:
    mark = json_doc(os.path.join(folder, RUN_MARKER))
    return isinstance(mark, dict) and mark.get("charlstm") == f"{kind} run"


# ---------------------------------------------------------------------------
# Writing.

def _mode_for(real: str) -> int:
    try:
        return stat.S_IMODE(os.stat(real).st_mode)
    except OSError:
        umask = os.umask(0)
        os.umask(umask)
        return 0o666 & ~umask


def write_with(path: str, fill: Callable, *, binary: bool = True) -> str:
    """Write a file atomically: fill(fh) writes a temporary file in the
    target's folder, which is then renamed over the target (a symlink's
    target). The target's mode is kept. Returns the file written."""
    real = resolve(path, "output")
    folder = os.path.dirname(real)
    os.makedirs(folder, exist_ok=True)
    clean_stale_temps(folder)
    suffix = os.path.splitext(real)[1]
    mode = _mode_for(real)
    fd, tmp = tempfile.mkstemp(prefix=f"{TEMP_PREFIX}{os.getpid()}-", suffix=suffix, dir=folder)
    try:
        with os.fdopen(fd, "wb" if binary else "w", **({} if binary else
                                                         {"encoding": "utf-8"})) as fh:
            fill(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, real)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    with contextlib.suppress(OSError):
        dfd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    return real


def write_bytes(path: str, data: bytes) -> str:
    return write_with(path, lambda fh: fh.write(data))


def write_text(path: str, text: str) -> str:
    return write_with(path, lambda fh: fh.write(text), binary=False)


def write_json(path: str, obj, **kw) -> str:
    return write_text(path, json.dumps(obj, **kw))


def save_figure(fig, path: str, **kw) -> str:
    """A matplotlib figure as a PNG that says charlstm drew it (so that the
    next run recognises it as its own)."""
    from . import __version__
    return write_with(path, lambda fh: fig.savefig(
        fh, format="png", metadata={"Software": f"charlstm {__version__}"}, **kw))


def inline_json(obj) -> str:
    """JSON to put inside a <script> element of a page: every <, > and & is
    escaped, so that no text inside it (</script>, <!--, <script) can end
    the element or change how the browser parses it."""
    s = json.dumps(obj, ensure_ascii=False, separators=(",", ":"))
    return (s.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
            .replace("\u2028", "\\u2028").replace("\u2029", "\\u2029"))


# ---------------------------------------------------------------------------
# Locks.

def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _lock_pid(path: str) -> int | None:
    """The pid in a charlstm lock file; 0 for none or an empty one of ours;
    None for anything that is not a charlstm lock (a FIFO, a folder, ...)."""
    if not os.path.lexists(path):
        return 0
    if os.path.islink(path) or not regular(path):
        return None
    try:
        with open(path, "rb") as fh:
            raw = fh.read(200)
    except FileNotFoundError:
        return 0
    except OSError:
        return None
    text = raw.decode("ascii", "replace").strip()
    if text.startswith(LOCK_TAG):
        text = text[len(LOCK_TAG):].strip()
    if not text:
        return 0
    return int(text) if text.isdigit() else None


def lock_holder(real: str) -> int | None:
    """The pid of the live process (not this one) that holds real's lock, or None."""
    pid = _lock_pid(real + ".lock")
    if pid and pid != os.getpid() and pid_alive(pid):
        return pid
    return None


def check_unlocked(real: str, option: str = "--out") -> None:
    pid = lock_holder(real)
    if pid:
        raise CharlstmError(f"{real} is being written by another charlstm run (pid {pid}); "
                            f"wait for it to finish or give another {option}")
    if os.path.lexists(real + ".lock") and _lock_pid(real + ".lock") is None:
        raise CharlstmError(f"{real}.lock exists and is not a charlstm lock; charlstm never "
                            f"replaces it: move it, or give another {option}")


def lock(path: str) -> str:
    """Take path + '.lock' for this process: refused while another live
    charlstm holds it; a dead one's is taken over. Returns the lock's path."""
    real = resolve(path, "output")
    lpath = real + ".lock"
    for _ in range(3):
        try:
            fd = os.open(lpath, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            pid = _lock_pid(lpath)
            if pid is None:
                raise CharlstmError(f"{lpath} exists and is not a charlstm lock; charlstm never "
                                    "replaces it: move it, or give another output") from None
            if pid == os.getpid():
                return lpath
            if pid and pid_alive(pid):
                raise CharlstmError(f"{real} is being written by another charlstm run (pid "
                                    f"{pid}); wait for it to finish or give another output") \
                    from None
            with contextlib.suppress(FileNotFoundError):
                os.unlink(lpath)                 # a lock left by a run that died
            continue
        except OSError as e:
            raise CharlstmError(f"cannot write {lpath}: {_reason(e)}") from None
        with os.fdopen(fd, "w") as fh:
            fh.write(f"{LOCK_TAG} {os.getpid()}\n")
        return lpath
    raise CharlstmError(f"could not take {lpath}; remove it if no charlstm run is writing "
                        f"{real}")


def unlock(lpath: str) -> None:
    if _lock_pid(lpath) == os.getpid():
        with contextlib.suppress(OSError):
            os.unlink(lpath)


@contextlib.contextmanager
def locked(*paths: str):
    """Hold the locks of paths for the duration of the block."""
    taken = []
    try:
        for p in paths:
            taken.append(lock(p))
        yield taken
    finally:
        for lp in reversed(taken):
            unlock(lp)


def clean_stale_temps(folder: str) -> list[str]:
    """Remove the temporary files (.tmp-<pid>-…) that a charlstm process left
    in folder when it was killed mid-write (their pid no longer runs)."""
    removed = []
    try:
        names = os.listdir(folder or ".")
    except OSError:
        return removed
    for n in names:
        if not n.startswith(TEMP_PREFIX):
            continue
        try:
            pid = int(n[len(TEMP_PREFIX):].split("-")[0])
        except ValueError:
            continue
        if not pid_alive(pid):
            with contextlib.suppress(OSError):
                os.unlink(os.path.join(folder or ".", n))
                removed.append(n)
    return removed


# ---------------------------------------------------------------------------
# Memory, checked before allocating.

def available_memory() -> int:
    """Bytes this machine can give now (MemAvailable), or its RAM, or 8 GiB."""
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return 8 << 30


def check_memory(nbytes: float, what: str, fix: str) -> None:
    """Refuse, naming the option that causes it, work that needs more memory
    than the machine has free."""
    have = available_memory()
    if nbytes > have:
        raise CharlstmError(f"{what} needs about {_size(nbytes)} of memory, more than the "
                            f"{_size(have)} free; {fix}")


def _size(n: float) -> str:
    for unit in ("bytes", "KB", "MB", "GB", "TB", "PB"):
        if n < 1000 or unit == "PB":
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} PB"
