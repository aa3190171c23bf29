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
  A folder a command made is removed again when the command fails and the
  folder holds nothing of its work (`remove_made_folders`).
- **Permissions.** A replaced file keeps its mode; a new one gets 0666 & ~umask.
"""
from __future__ import annotations

import contextlib
import errno
import json
import os
import stat
import tempfile
from dataclasses import dataclass
from typing import Callable

from .errors import CharlstmError
from .file_kinds import KINDS, is_checkpoint, json_doc, regular, sniff  # noqa: F401 (checked here)

TEMP_PREFIX = ".tmp-"                   # .tmp-<pid>-<random><suffix>
LOCK_TAG = "charlstm-lock"
RUN_MARKER = ".charlstm-run"            # in a run folder: {"charlstm": "<kind> run"}


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


# What this command made for its outputs, so that a command that fails takes
# it back: each folder it made (its path as made, and the identity of the
# folder made there), outermost first, and each run marker it wrote.
_made: list[tuple[str, tuple[int, int]]] = []
_markers: set[str] = set()


def _identity(path: str) -> tuple[int, int] | None:
    try:
        st = os.lstat(path)
    except OSError:
        return None
    return (st.st_dev, st.st_ino) if stat.S_ISDIR(st.st_mode) else None


def make_folder(folder: str) -> None:
    """os.makedirs(folder, exist_ok=True), one level at a time, remembering
    each folder this call made: one that another process made meanwhile
    (mkdir finds it there) is not ours. The levels are the path as given,
    unnormalised (a `..` after a symlink goes where the system takes it)."""
    folder = folder.rstrip(os.sep) or folder
    if not os.path.isabs(folder):
        folder = os.path.join(os.getcwd(), folder)
    levels = []
    probe = folder
    while not os.path.lexists(probe):
        levels.append(probe)
        parent = os.path.dirname(probe)
        if parent == probe:
            break
        probe = parent
    for level in reversed(levels):
        try:
            os.mkdir(level)
        except FileExistsError:
            continue
        ident = _identity(level)
        if ident is not None:
            _made.append((level, ident))
    if not os.path.isdir(folder):
        os.makedirs(folder, exist_ok=True)       # raises the reason it is not a folder


def forget_made_folders() -> None:
    """At a command's start: what was made so far is not its own."""
    _made.clear()
    _markers.clear()


def remove_made_folders() -> None:
    """After a failed command: take back the run markers it wrote into
    folders that hold nothing else, and the folders it made (innermost
    first) that are then empty, so that a refused command leaves no trace. A
    folder holding anything else (a checkpoint saved before a stop, a file
    someone else put there) is kept, and so are its parents; a folder that is
    no longer the one made (replaced, or a symlink now) is left alone."""
    for marker in sorted(_markers, reverse=True):
        with contextlib.suppress(OSError):
            if os.listdir(os.path.dirname(marker)) == [RUN_MARKER]:
                os.unlink(marker)
    _markers.clear()
    while _made:
        folder, ident = _made.pop()
        if _identity(folder) == ident:
            with contextlib.suppress(OSError):
                os.rmdir(folder)


def check_writable(folder: str, option: str = "--out") -> None:
    """Make folder if need be and write a test file into it, so that a
    read-only, full or missing folder is reported before any long work."""
    try:
        make_folder(folder)
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
        _markers.add(marker)


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
    make_folder(folder)
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
