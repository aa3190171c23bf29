"""Where compiled kernels are kept: one folder per machine (per user) and
version of the kernels, shared by every install of that version.

Numba's own cache locators key a function's cache files on the folder its
source file is in (a hash of the path), so each clone, venv or `pip install .`
compiled every kernel afresh, into a folder of its own. KernelLocator files
the kernels of this package by what they are instead: the folder
<cache root>/kernels-<cache_key> (a hash of every kernel module and of Numba's
and llvmlite's versions), the same for every copy of the same code, with
cache_key as the files' source stamp, so that an edit to any module, or an
upgrade, compiles afresh (Numba alone notices edits only to the file a
function is defined in, numba#1833). Index entries are still per CPU (Numba
keys them on the target machine), so one folder can serve several machines.

This uses Numba's private caching API, pinned by tests/test_cache.py (and
numba>=0.68 in pyproject.toml): caching._CacheLocator, whose subclasses are
tried in turn from caching.CacheImpl._locator_classes when a function is
decorated; Cache._index_key, Cache._impl.filename_base and
IndexDataCacheFile._load_index, to read an index without loading anything.
"""
from __future__ import annotations

import glob
import hashlib
import os
from importlib import metadata

from numba.core import caching

HERE = os.path.dirname(os.path.abspath(__file__))


def cache_key(folder: str = HERE) -> str:
    """A hash of every kernel module's source and of Numba's and llvmlite's
    versions: it changes with any edit to any module, or an upgrade."""
    h = hashlib.sha256()
    for path in sorted(glob.glob(os.path.join(folder, "*.py"))):
        h.update(os.path.basename(path).encode() + b"\0")
        with open(path, "rb") as fh:
            h.update(fh.read() + b"\0")
    for pkg in ("numba", "llvmlite"):
        h.update(f"{pkg}={metadata.version(pkg)}".encode())
    return h.hexdigest()[:20]


def cache_root() -> str:
    """Where compiled kernels are kept: $CHARLSTM_CACHE_DIR, else
    $NUMBA_CACHE_DIR, else ~/.cache/charlstm (or $XDG_CACHE_HOME/charlstm)."""
    base = os.environ.get("CHARLSTM_CACHE_DIR") or os.environ.get("NUMBA_CACHE_DIR")
    if not base:
        base = os.path.join(os.environ.get("XDG_CACHE_HOME") or
                            os.path.join(os.path.expanduser("~"), ".cache"), "charlstm")
    return base


KEY = cache_key()
CACHE_DIR = os.path.join(cache_root(), "kernels-" + KEY)


class KernelLocator(caching._CacheLocator):
    """Numba's cache locator for the functions defined in this package (and the
    overloads and copies made from them): their files go in CACHE_DIR, named
    module.function-line.pyXY.nbi/.nbc as Numba names them, and are fresh
    while KEY is the same. Any other function is left to Numba's locators."""

    def __init__(self, py_func, py_file):
        self._py_file = py_file
        self._lineno = py_func.__code__.co_firstlineno

    def get_cache_path(self) -> str:
        return CACHE_DIR

    def get_source_stamp(self) -> str:
        return KEY

    def get_disambiguator(self) -> str:
        return str(self._lineno)

    @classmethod
    def from_function(cls, py_func, py_file):
        if os.path.dirname(os.path.realpath(py_file)) != os.path.realpath(HERE):
            return None                     # not a kernel: Numba's next locator
        self = cls(py_func, py_file)
        try:
            self.ensure_cache_path()
        except OSError:                     # not writable: Numba's next locator
            return None
        return self


def install() -> None:
    """Put KernelLocator first among Numba's locators (before any kernel is
    decorated: Numba picks a function's locator then). Should a later Numba
    lack the list, its own locators are left to cache the kernels (per
    install, as before) rather than fail."""
    locators = getattr(caching.CacheImpl, "_locator_classes", None)
    if isinstance(locators, list) and KernelLocator not in locators:
        locators.insert(0, KernelLocator)


def compiled(kernel, argtypes: tuple, folder: str = CACHE_DIR) -> bool:
    """Whether `folder` holds kernel (a Numba dispatcher) compiled for these
    argument types on this machine, for this version of the kernels: its key,
    as Numba computes it, in the kernel's index file there (read, not loaded).
    False when in doubt (then the kernel is compiled, or loaded, as usual)."""
    cache = getattr(kernel, "_cache", None)
    if not isinstance(cache, caching.Cache) or cache.cache_path != CACHE_DIR:
        return False                        # not cached, or not by KernelLocator
    try:
        key = cache._index_key(tuple(argtypes), kernel.targetctx.codegen())
        index = caching.IndexDataCacheFile(folder, cache._impl.filename_base, KEY)
        return key in index._load_index()
    except Exception:                       # an unreadable index: Numba's would fail too
        return False
