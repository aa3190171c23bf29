"""Checkpoints: one .npz file that holds everything needed to sample from a model
or to resume training exactly where it stopped.

    format            "charlstm-checkpoint"
    version           2 (version 1 files are upgraded on load)
    model, train      the two settings dataclasses, as JSON
    vocab             the vocabulary, as Unicode code points (uint32)
    param/<name>      every parameter under its name (see model.py)
    opt/m, opt/v      optimizer moments, flat, in the parameter buffer's layout
    carry/h, carry/c  the hidden state carried into the next batch, (L, B, H)
    state             JSON: step, epoch, batch, elapsed seconds, RNG state, best
                      validation loss
    history/train     rows [step, seconds, loss]
    history/val       rows [step, seconds, val loss]
    history/grad_norm rows [step, gradient norm before clipping] (optional)

Files load with allow_pickle=False, and are written to a temporary file in the
same folder, then renamed over the target, so an existing file is never left
half-written.
"""
from __future__ import annotations

import json
import os
import tempfile
import zipfile
from dataclasses import asdict, dataclass, field

import numpy as np

from .config import ModelConfig, TrainConfig, from_dict
from .errors import CharlstmError

FORMAT = "charlstm-checkpoint"
VERSION = 2


def _v1_to_v2(arrays: dict) -> dict:
    """Version 2 stores each layer's Wh as (G, H), PyTorch's weight_hh layout,
    where version 1 had (H, G): transpose it, and its slots in opt/m and opt/v."""
    from .model import layout
    cfg = from_dict(ModelConfig, json.loads(str(arrays["model"])))
    out = dict(arrays)
    moments = [key for key in ("opt/m", "opt/v") if out.get(key) is not None and out[key].size]
    for key in moments:
        out[key] = out[key].copy()
    k = 0
    for name, shape in layout(cfg):             # shapes as in version 2
        size = int(np.prod(shape))
        if name.endswith(".Wh"):
            G, H = shape
            if "param/" + name in out:
                out["param/" + name] = np.ascontiguousarray(out["param/" + name].reshape(H, G).T)
            for key in moments:
                out[key][k:k + size] = out[key][k:k + size].reshape(H, G).T.ravel()
        k += size
    return out


# An older version's arrays pass through UPGRADES[v] (v -> v + 1) until current.
UPGRADES: dict = {1: _v1_to_v2}


@dataclass
class Checkpoint:
    model: ModelConfig
    train: TrainConfig
    vocab: str
    params: dict[str, np.ndarray]
    opt_m: np.ndarray | None = None
    opt_v: np.ndarray | None = None
    carry_h: np.ndarray | None = None
    carry_c: np.ndarray | None = None
    state: dict = field(default_factory=dict)
    history_train: np.ndarray = field(default_factory=lambda: np.zeros((0, 3)))
    history_val: np.ndarray = field(default_factory=lambda: np.zeros((0, 3)))
    history_norm: np.ndarray = field(default_factory=lambda: np.zeros((0, 2)))


def save(ck: Checkpoint, path: str) -> None:
    arrays = {
        "format": np.array(FORMAT), "version": np.array(VERSION),
        "model": np.array(json.dumps(asdict(ck.model))),
        "train": np.array(json.dumps(asdict(ck.train))),
        "vocab": np.array([ord(ch) for ch in ck.vocab], np.uint32),
        "state": np.array(json.dumps(ck.state)),
        "history/train": np.asarray(ck.history_train, np.float64).reshape(-1, 3),
        "history/val": np.asarray(ck.history_val, np.float64).reshape(-1, 3),
        "history/grad_norm": np.asarray(ck.history_norm, np.float64).reshape(-1, 2),
    }
    arrays.update({f"param/{k}": v for k, v in ck.params.items()})
    for key, val in (("opt/m", ck.opt_m), ("opt/v", ck.opt_v),
                     ("carry/h", ck.carry_h), ("carry/c", ck.carry_c)):
        if val is not None:
            arrays[key] = val
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".tmp-{os.getpid()}-", suffix=".npz", dir=folder)
    try:
        with os.fdopen(fd, "wb") as fh:
            np.savez(fh, **arrays)
            fh.flush()
            os.fsync(fh.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)          # mkstemp makes 0600; use the usual mode
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def load(path: str) -> Checkpoint:
    if not os.path.exists(path):
        raise CharlstmError(f"no checkpoint at {path}; train one with: charlstm train FILE")
    if not os.path.isfile(path):
        raise CharlstmError(f"{path} is not a regular file; give a .npz written by "
                            "charlstm train")
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except ValueError as e:
        with open(path, "rb") as fh:
            head = fh.read(2)
        if "Object arrays" in str(e) or ("pickled" in str(e) and head[:1] == b"\x80"):
            raise CharlstmError(f"{path} holds pickled Python objects, which charlstm refuses "
                                "to load for safety (they can run code); give a checkpoint "
                                "written by charlstm train") from None
        raise CharlstmError(f"{path} is not a readable checkpoint ({e}); it may be truncated: "
                            "retrain or pick another file") from None
    except (zipfile.BadZipFile, OSError, EOFError, KeyError) as e:
        raise CharlstmError(f"{path} is not a readable checkpoint ({e.__class__.__name__}); "
                            "it may be truncated: retrain or pick another file") from None
    if str(arrays.get("format", "")) != FORMAT:
        raise CharlstmError(f"{path} is not a charlstm checkpoint; "
                            "give a .npz written by charlstm train")
    try:
        version = int(arrays["version"])
        if version < 1:
            raise ValueError
    except (KeyError, ValueError, TypeError):
        raise CharlstmError(f"{path} has no valid format version; it is damaged or was not "
                            "written by charlstm: retrain or pick another file") from None
    if version > VERSION:
        raise CharlstmError(f"{path} is checkpoint version {version}, newer than this "
                            f"charlstm reads ({VERSION}); upgrade charlstm")
    while version < VERSION:
        arrays = UPGRADES[version](arrays)
        version += 1
    try:
        ck = Checkpoint(
            model=from_dict(ModelConfig, json.loads(str(arrays["model"]))),
            train=from_dict(TrainConfig, json.loads(str(arrays["train"]))),
            vocab="".join(map(chr, arrays["vocab"].tolist())),
            params={k[6:]: v for k, v in arrays.items() if k.startswith("param/")},
            opt_m=arrays.get("opt/m"), opt_v=arrays.get("opt/v"),
            carry_h=arrays.get("carry/h"), carry_c=arrays.get("carry/c"),
            state=json.loads(str(arrays["state"])),
            history_train=arrays["history/train"], history_val=arrays["history/val"],
            history_norm=arrays.get("history/grad_norm", np.zeros((0, 2))))
    except (KeyError, ValueError, TypeError, AttributeError) as e:
        raise CharlstmError(f"{path} is a damaged checkpoint ({e.__class__.__name__}: {e}); "
                            "retrain or pick another file") from None
    _check_settings(ck, path)
    return ck


def _check_settings(ck: Checkpoint, path: str) -> None:
    """The settings must describe a model this charlstm can build, for this vocabulary."""
    from .cells import CELLS
    m = ck.model
    problems = []
    if m.cell not in CELLS:
        problems.append(f"cell {m.cell!r} is not one of {', '.join(CELLS)}")
    for key, top in (("hidden", 65536), ("layers", 64), ("vocab_size", 1 << 21)):
        v = getattr(m, key)
        if not isinstance(v, int) or isinstance(v, bool) or not 1 <= v <= top:
            problems.append(f"{key} is {v!r}, not a whole number from 1 to {top}")
    if isinstance(m.vocab_size, int) and m.vocab_size != len(ck.vocab):
        problems.append(f"vocab_size is {m.vocab_size} but the vocabulary has "
                        f"{len(ck.vocab)} symbols")
    for key in ("dropout", "forget_bias"):
        v = getattr(m, key)
        if not isinstance(v, (int, float)) or not np.isfinite(v):
            problems.append(f"{key} is {v!r}, not a finite number")
    if problems:
        raise CharlstmError(f"{path} has settings charlstm cannot use: " + "; ".join(problems)
                            + "; retrain or pick another file")


def newest(folder: str = "checkpoints") -> str:
    """The most recently written checkpoint in `folder`."""
    try:
        names = [os.path.join(folder, n) for n in os.listdir(folder)
                 if n.endswith(".npz") and not n.startswith(".")
                 and os.path.isfile(os.path.join(folder, n))]
    except FileNotFoundError:
        names = []
    if not names:
        raise CharlstmError(f"no checkpoint in {folder}/; train one first: "
                            "charlstm train FILE (or give a checkpoint path)")
    return max(names, key=os.path.getmtime)


def model_from_checkpoint(ck: Checkpoint, dtype=np.float32):
    """The model.Model a checkpoint holds, its parameters checked by name and shape."""
    from .model import Model
    m = Model(ck.model, dtype)
    for name, shape in m.layout:
        arr = ck.params.get(name)
        if arr is None or arr.shape != shape:
            raise CharlstmError(f"checkpoint parameter {name} is missing or has the wrong "
                                "shape; the file is damaged: retrain or pick another file")
        if not np.issubdtype(arr.dtype, np.floating):
            raise CharlstmError(f"checkpoint parameter {name} holds {arr.dtype} values, not "
                                "numbers; the file is damaged: retrain or pick another file")
        if not np.isfinite(arr).all():
            raise CharlstmError(f"checkpoint parameter {name} holds nan or inf: the model "
                                "diverged before it was saved; use an earlier checkpoint "
                                "or retrain with a lower --lr")
        m.p[name][...] = arr
    return m
