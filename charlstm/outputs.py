"""Where training writes, checked before it starts: charlstm replaces only its
own checkpoints, never the training text or anything else; a new run does not
silently replace an earlier run's model; two live runs never write one file;
and a folder that cannot be written is reported before any training is lost.

The rules, for `--out X` (and its best file, X.best.npz):
- X may not be a folder, a device, a FIFO or any other non-regular file, nor
  the training text, nor a file that is not a charlstm checkpoint;
- an existing checkpoint X is continued with --resume X, or replaced with
  --force (a fresh --out is the third way): we chose an explicit flag over
  inventing a new name, so that the file a user asked for is the file written;
- while a run writes X it holds X.lock (its pid); a second run is refused
  while that process lives, and a lock left by a dead one is taken over;
- the folder must take a test file before training begins.
"""
from __future__ import annotations

import contextlib
import errno
import os
import tempfile
import zipfile

import numpy as np

from .errors import CharlstmError


def is_checkpoint(path: str) -> bool:
    """Whether path is an .npz whose format key says charlstm-checkpoint
    (read lazily: only that key)."""
    from .checkpoint import FORMAT
    try:
        with np.load(path, allow_pickle=False) as z:
            return "format" in z.files and str(z["format"]) == FORMAT
    except (OSError, ValueError, zipfile.BadZipFile, EOFError, KeyError):
        return False


def _same(a: str, b: str | None) -> bool:
    try:
        return b is not None and os.path.exists(b) and os.path.samefile(a, b)
    except OSError:
        return False


def check_out(out: str, text: str, resume: str | None, force: bool) -> None:
    """Refuse an --out that the rules above forbid, with the reason and the fix."""
    from .train import best_path
    if out.endswith(os.sep) or os.path.isdir(out):
        raise CharlstmError(f"--out {out} is a folder; give a file name, e.g. "
                            f"{os.path.join(out.rstrip(os.sep) or '.', 'model.npz')}")
    parent = os.path.dirname(os.path.abspath(out))
    probe = parent
    while not os.path.exists(probe):
        probe = os.path.dirname(probe)
    if not os.path.isdir(probe):
        raise CharlstmError(f"--out {out}: {probe} is a file, not a folder; choose another path")
    for path in (out, best_path(out)):
        if not os.path.lexists(path):
            continue
        if _same(path, text):
            raise CharlstmError(f"--out {out} would replace the training text {text}; give "
                                "another file name, e.g. model.npz")
        if not os.path.isfile(path):
            raise CharlstmError(f"{path} exists and is not a regular file; charlstm never "
                                "replaces it: give another --out")
        if not is_checkpoint(path):
            raise CharlstmError(f"{path} exists and is not a charlstm checkpoint; charlstm "
                                "replaces only its own checkpoints: give another --out")
        if not force and not (_same(out, resume)):
            raise CharlstmError(
                f"{path} holds a model already; continue it with --resume {out}, replace "
                "it with --force, or give another --out")
    check_writable(parent)


def check_writable(folder: str) -> None:
    """Make folder if need be and write a test file into it, so that a
    read-only, full or missing folder is reported before training."""
    try:
        os.makedirs(folder, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".charlstm-test-", dir=folder)
        try:
            os.write(fd, b"\0" * 4096)
            os.fsync(fd)
        finally:
            os.close(fd)
            os.unlink(tmp)
    except OSError as e:
        raise CharlstmError(f"cannot write to {folder}: {os.strerror(e.errno).lower()}; "
                            "choose another --out or free the folder") from None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def lock(out: str) -> str:
    """Take out + '.lock' for this process (refused while another live charlstm
    holds it; a dead one's is taken over). locked() releases it; a lock left
    by a killed process is taken over by the next run."""
    path = out + ".lock"
    for _ in range(2):
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            try:
                with open(path) as fh:
                    pid = int(fh.read().strip() or 0)
            except (OSError, ValueError):
                pid = 0
            if pid and pid != os.getpid() and _alive(pid):
                raise CharlstmError(f"{out} is being written by another charlstm run (pid "
                                    f"{pid}); wait for it to finish or give another --out")
            try:
                os.unlink(path)                  # a lock left by a run that died
            except FileNotFoundError:
                pass
            continue
        except OSError as e:
            raise CharlstmError(f"cannot write {path}: {os.strerror(e.errno).lower()}") from None
        with os.fdopen(fd, "w") as fh:
            fh.write(str(os.getpid()))
        return path
    raise CharlstmError(f"could not take {path}; remove it if no charlstm run is writing {out}")


@contextlib.contextmanager
def locked(out: str):
    """lock(out) for the duration of the block."""
    path = lock(out)
    try:
        yield path
    finally:
        _unlock(path)


def _unlock(path: str) -> None:
    try:
        with open(path) as fh:
            mine = fh.read().strip() == str(os.getpid())
        if mine:
            os.unlink(path)
    except OSError:
        pass


def clean_stale_temps(folder: str) -> list[str]:
    """Remove .tmp-<pid>-*.npz files that checkpoint.save left behind when its
    process was killed mid-write (their pid no longer runs)."""
    removed = []
    try:
        names = os.listdir(folder or ".")
    except OSError:
        return removed
    for n in names:
        if n.startswith(".tmp-") and n.endswith(".npz"):
            parts = n.split("-")
            try:
                pid = int(parts[1])
            except (IndexError, ValueError):
                continue
            if not _alive(pid):
                try:
                    os.unlink(os.path.join(folder or ".", n))
                    removed.append(n)
                except OSError:
                    pass
    return removed


def oserror_line(e: OSError, path: str) -> CharlstmError:
    """One line for an OSError met while writing path."""
    reason = os.strerror(e.errno).lower() if e.errno else str(e)
    hint = "; free some space" if e.errno == errno.ENOSPC else ""
    return CharlstmError(f"cannot write {path}: {reason}{hint}")
