"""Checkpoints: one .npz file that holds everything needed to sample from a model
or to resume training exactly where it stopped.

    format            "charlstm-checkpoint"
    version           3 (versions 1 and 2 are upgraded on load)
    model, train      the two settings dataclasses, as JSON
    vocab             the vocabulary, as Unicode code points (uint32)
    param/<name>      every parameter under its name (see model.py)
    opt/m, opt/v      optimizer moments, flat, in the parameter buffer's layout
    carry/h, carry/c  the hidden state carried into the next batch, (L, B, H) and
                      (L, B, c_width·H) (the sLSTM's c holds c, n, m: cells.py)
    state             JSON: step, epoch, batch, elapsed seconds, RNG state, best
                      validation loss
    history/train     rows [step, seconds, loss]
    history/val       rows [step, seconds, val loss]
    history/grad_norm rows [step, gradient norm before clipping] (optional)

Files load with allow_pickle=False, every array's header checked against the
settings before anything is decompressed (load), and are written through
files.write_with: a temporary file in the same folder, renamed over the
target, so an existing file is never left half-written.
"""
from __future__ import annotations

import json
import os
import struct
import zipfile
from dataclasses import asdict, dataclass, field

import numpy as np

from .cells import CELLS
from .config import MAX_VOCAB, ModelConfig, TrainConfig, check_settings, from_dict
from .data import vocab_from_ids
from .errors import CharlstmError

FORMAT = "charlstm-checkpoint"
VERSION = 3


def _v1_to_v2(arrays: dict, cfg: ModelConfig) -> dict:
    """Version 2 stores each layer's Wh as (G, H), PyTorch's weight_hh layout,
    where version 1 had (H, G): transpose it, and its slots in opt/m and opt/v."""
    from .model import layout
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


def _v2_to_v3(arrays: dict, cfg: ModelConfig) -> dict:
    """Version 3 adds the training text's digest to the settings (TrainConfig.
    text_sha256, "" when unknown): no array changes."""
    return arrays


# An older version's arrays pass through UPGRADES[v] (v -> v + 1) until current.
UPGRADES: dict = {1: _v1_to_v2, 2: _v2_to_v3}


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
    """Write ck to path atomically (files.write_with: a temporary file in the
    same folder, renamed over the target; its mode kept)."""
    from .files import write_with
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
    write_with(path, lambda fh: np.savez(fh, **arrays))


# ---------------------------------------------------------------------------
# Reading: every array's header is checked against the settings before any
# array is decompressed, so that a crafted file can neither make charlstm
# allocate what it claims (a bomb) nor hand a kernel an array of the wrong
# size (which would read or write past its end).

MAX_JSON_CHARS = 1 << 20          # model, train and state are a few hundred characters
MAX_HISTORY_ROWS = 1 << 22        # a row per step: 4.2M steps (58 hours at 20 a second)
MAX_MEMBERS = 4096


def load(path: str) -> Checkpoint:
    """The checkpoint at path, validated whole: the format and version, the
    settings, every array's shape and type against them, the vocabulary, the
    state; one line naming what is wrong otherwise. A safetensors file that
    charlstm export wrote loads too (its parameters, vocabulary and settings;
    nothing to resume)."""
    from .file_kinds import sniff
    if not os.path.lexists(path):
        raise CharlstmError(f"no checkpoint at {path}; train one with: charlstm train FILE")
    if not os.path.isfile(path):
        raise CharlstmError(f"{path} is {sniff(path)}; give a .npz written by charlstm train")
    with open(path, "rb") as fh:
        head = fh.read(4)
    if head != b"PK\x03\x04":
        if sniff(path).startswith("a safetensors file exported by charlstm"):
            from .export import read_safetensors
            cfg, vocab, params = read_safetensors(path)
            return Checkpoint(model=cfg, train=TrainConfig(), vocab=vocab, params=params)
        raise CharlstmError(f"{path} is {sniff(path)}, not a charlstm checkpoint (.npz); "
                            "give a .npz written by charlstm train")
    try:
        with zipfile.ZipFile(path) as zf:
            return _load_zip(zf, path)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, OSError, RuntimeError,
            NotImplementedError, struct.error) as e:
        raise CharlstmError(f"{path} is not a readable checkpoint ({_why(e)}); it may be "
                            "truncated: retrain or pick another file") from None


def _why(e: Exception) -> str:
    return f"{e.__class__.__name__}: {e}" if str(e) else e.__class__.__name__


def _damaged(path: str, what: str) -> CharlstmError:
    return CharlstmError(f"{path} is a damaged checkpoint: {what}; retrain or pick another file")


def _headers(zf: zipfile.ZipFile, path: str) -> dict:
    """{key: (shape, dtype)} of every array, read from the npy headers alone."""
    infos = zf.infolist()
    if len(infos) > MAX_MEMBERS:
        raise _damaged(path, f"it holds {len(infos)} arrays")
    out = {}
    for info in infos:
        if not info.filename.endswith(".npy"):
            raise _damaged(path, f"it holds {info.filename!r}, which is not an array")
        with zf.open(info) as fh:
            try:
                version = np.lib.format.read_magic(fh)
                reader = {(1, 0): np.lib.format.read_array_header_1_0,
                          (2, 0): np.lib.format.read_array_header_2_0}.get(version)
                if reader is None:
                    raise ValueError(f"npy format version {version}")
                shape, fortran, dtype = reader(fh)
            except (ValueError, SyntaxError, TypeError, EOFError, UnicodeDecodeError) as e:
                raise _damaged(path, f"the header of {info.filename!r} does not parse "
                                     f"({e})") from None
        if dtype.hasobject:
            raise CharlstmError(f"{path} holds pickled Python objects in {info.filename!r}, "
                                "which charlstm refuses to load for safety (they can run "
                                "code); give a checkpoint written by charlstm train")
        out[info.filename[:-4]] = (tuple(shape), dtype, info)
    return out


def _read(zf, headers, key):
    with zf.open(headers[key][2]) as fh:
        try:
            return np.lib.format.read_array(fh, allow_pickle=False)
        except ValueError as e:                  # fewer bytes than its header says
            raise CharlstmError(f"{zf.filename} is a damaged checkpoint: {key!r} does not "
                                f"read ({e}); retrain or pick another file") from None


def _json_key(zf, headers, key, path):
    if key not in headers:
        raise _damaged(path, f"it has no {key!r}")
    shape, dtype, _ = headers[key]
    if shape != () or dtype.kind != "U" or dtype.itemsize // 4 > MAX_JSON_CHARS:
        raise _damaged(path, f"{key!r} is not a short JSON string")
    try:
        from .file_kinds import loads
        return loads(str(_read(zf, headers, key)))
    except ValueError as e:
        raise _damaged(path, f"{key!r} is not JSON ({e})") from None


def _load_zip(zf: zipfile.ZipFile, path: str) -> Checkpoint:
    from .files import check_memory
    headers = _headers(zf, path)
    fmt = None
    if "format" in headers and headers["format"][0] == () and headers["format"][1].kind == "U" \
            and headers["format"][1].itemsize <= 400:
        fmt = str(_read(zf, headers, "format"))
    if fmt != FORMAT:
        raise CharlstmError(f"{path} is a ZIP archive (.npz) that charlstm did not write; "
                            "give a .npz written by charlstm train")
    try:
        shape, dtype, _ = headers["version"]
        if shape != () or dtype.kind not in "iu":
            raise ValueError
        version = int(_read(zf, headers, "version"))
        if version < 1:
            raise ValueError
    except (KeyError, ValueError, TypeError):
        raise CharlstmError(f"{path} has no valid format version; it is damaged or was not "
                            "written by charlstm: retrain or pick another file") from None
    if version > VERSION:
        raise CharlstmError(f"{path} is checkpoint version {version}, newer than this "
                            f"charlstm reads ({VERSION}); upgrade charlstm")
    try:
        mcfg = from_dict(ModelConfig, _dict(_json_key(zf, headers, "model", path)))
        tcfg = from_dict(TrainConfig, _dict(_json_key(zf, headers, "train", path)))
    except TypeError as e:
        raise _damaged(path, f"its settings do not parse ({e})") from None
    state = _json_key(zf, headers, "state", path)
    if "vocab" not in headers:
        raise _damaged(path, "it has no vocabulary")
    vshape, vdtype, _ = headers["vocab"]
    if len(vshape) != 1 or vdtype.kind not in "iu" or not 1 <= vshape[0] <= MAX_VOCAB:
        raise _damaged(path, f"its vocabulary has shape {vshape} of {vdtype}")
    vocab_ids = _read(zf, headers, "vocab")
    vocab = vocab_from_ids(vocab_ids, path)
    check_settings(mcfg, tcfg, vocab, path)
    expect = expected_arrays(mcfg, tcfg, version)
    total = 0
    for key, (shape, dtype, _) in headers.items():
        if key in ("format", "version", "model", "train", "state", "vocab"):
            continue
        rule = expect.get(key)
        if rule is None:
            raise _damaged(path, f"it holds an array charlstm does not write ({key!r})")
        want, kinds = rule
        ok_shape = (shape == want if not isinstance(want, int)
                    else len(shape) == 2 and shape[1] == want and shape[0] <= MAX_HISTORY_ROWS)
        if not ok_shape or dtype.kind not in kinds or dtype.itemsize > 8:
            raise _damaged(path, f"{key!r} has shape {shape} of {dtype}, where the settings "
                                 f"({mcfg.cell} {mcfg.layers}x{mcfg.hidden}, vocabulary "
                                 f"{mcfg.vocab_size}) need {_shape_text(want)} numbers")
        total += int(np.prod(shape)) * dtype.itemsize
    missing = [k for k in expect if k.startswith("param/") and k not in headers]
    if missing:
        raise CharlstmError(f"checkpoint parameter {missing[0][6:]} is missing from {path}; "
                            "the file is damaged: retrain or pick another file")
    check_memory(2 * total, f"{path} ({mcfg.cell} {mcfg.layers}x{mcfg.hidden})",
                 "it cannot be loaded on this machine")
    arrays = {k: _read(zf, headers, k) for k in headers
              if k not in ("format", "version", "model", "train", "state", "vocab")}
    while version < VERSION:
        arrays = UPGRADES[version](arrays, mcfg)
        version += 1
    for key in ("opt/m", "opt/v", "carry/h", "carry/c"):     # (parameters: see
        if key in arrays and not np.isfinite(arrays[key]).all():    # model_from_checkpoint)
            raise _damaged(path, f"{key!r} holds nan or inf")
    for key, cols in (("history/train", 2), ("history/val", 2), ("history/grad_norm", 1)):
        if key in arrays and not np.isfinite(arrays[key][:, :cols]).all():   # (a loss may be
            raise _damaged(path, f"{key!r} has a step or time that is nan or inf")  # inf)
    ck = Checkpoint(
        model=mcfg, train=tcfg, vocab=vocab,
        params={k[6:]: v for k, v in arrays.items() if k.startswith("param/")},
        opt_m=arrays.get("opt/m"), opt_v=arrays.get("opt/v"),
        carry_h=arrays.get("carry/h"), carry_c=arrays.get("carry/c"),
        state=check_state(state, path),
        history_train=arrays.get("history/train", np.zeros((0, 3))),
        history_val=arrays.get("history/val", np.zeros((0, 3))),
        history_norm=arrays.get("history/grad_norm", np.zeros((0, 2))))
    return ck


def _dict(d) -> dict:
    if not isinstance(d, dict):
        raise TypeError("not a JSON object")
    return d


def _shape_text(want) -> str:
    if isinstance(want, int):
        return f"(rows, {want})"
    return "×".join(map(str, want)) if want else "a scalar of"


def expected_arrays(m: ModelConfig, t: TrainConfig, version: int = VERSION) -> dict:
    """{key: (shape, dtype kinds)} of every array a checkpoint of these
    settings may hold (shape an int: rows of that many columns)."""
    from .model import layout
    out = {}
    n = 0
    for name, shape in layout(m):
        if version < 2 and name.endswith(".Wh"):
            shape = shape[::-1]                     # version 1 stored Wh as (H, G)
        out["param/" + name] = (tuple(shape), "f")
        n += int(np.prod(shape))
    state = (m.layers, t.batch_size, m.hidden)
    width = CELLS[m.cell].c_width if m.cell in CELLS else 1
    c_state = state[:2] + (m.hidden * width,)                   # the sLSTM's c, n, m
    out.update({"opt/m": ((n,), "f"), "opt/v": ((n,), "f"), "carry/h": (state, "f"),
                "carry/c": (c_state, "f"), "history/train": (3, "fiu"), "history/val": (3, "fiu"),
                "history/grad_norm": (2, "fiu")})
    return out


def check_state(state, path: str) -> dict:
    """The saved state: step, epoch and batch whole numbers, times finite,
    the best and last validation losses numbers or null, the RNG a dict."""
    if not isinstance(state, dict):
        raise _damaged(path, "its state is not a JSON object")
    for key in ("step", "epoch", "batch"):
        v = state.get(key, 0)
        if not isinstance(v, int) or isinstance(v, bool) or not 0 <= v < 1 << 53:
            raise _damaged(path, f"its state's {key} is {v!r}")
    for key in ("elapsed", "train_time"):
        v = state.get(key, 0.0)
        if not isinstance(v, (int, float)) or isinstance(v, bool) or not 0 <= v < 1e12:
            raise _damaged(path, f"its state's {key} is {v!r}")
    for key in ("best_val", "last_val"):
        v = state.get(key)
        if v is not None and (not isinstance(v, (int, float)) or isinstance(v, bool)):
            raise _damaged(path, f"its state's {key} is {v!r}")
    if state.get("rng") is not None and not isinstance(state["rng"], dict):
        raise _damaged(path, "its state's random-number state is not an object")
    return state


# ---------------------------------------------------------------------------
# Resuming. A checkpoint that loads whole may still not be a run that can go
# on: start.resumed asks these in turn, and the command line asks
# check_same_settings of the options it was given.

def check_not_export(ck: Checkpoint, path: str) -> None:
    """An export (a safetensors file) holds a model and no training state."""
    if not (ck.opt_m is not None or ck.state):
        raise CharlstmError(f"{path} holds a model but no training state (it is an "
                            "export); resume the .npz checkpoint it came from")


def check_same_text(text: str, ck: Checkpoint, path: str) -> None:
    """A resumed run goes on on the text it was trained on: the digest stored
    in the checkpoint must be that of the file given."""
    want = ck.train.text_sha256
    if want and os.path.isfile(text):
        from .data import file_sha256
        if file_sha256(text) != want:            # (None: not a regular, stable file)
            raise CharlstmError(f"{text} is not the text {path} was trained on (its SHA-256 "
                                f"differs from the one recorded, {want[:12]}…); resume on that "
                                "text, or train a new model")


def check_position(ck: Checkpoint, path: str, text: str, n_batches: int) -> None:
    """The batch the run stopped at must be one of this text's (n_batches an epoch)."""
    if ck.state["batch"] > n_batches:
        raise CharlstmError(
            f"{text} is shorter than the text {path} was trained on (it stopped at "
            f"batch {ck.state['batch']} of an epoch; this text has {n_batches}); "
            "resume on the same text")


def check_training_state(ck: Checkpoint, path: str) -> None:
    """Everything a run needs to go on besides the model: the optimizer's
    moments, the carried state and the random-number state."""
    missing = [name for name, v in (("optimizer moments", ck.opt_m),
                                    ("optimizer moments", ck.opt_v),
                                    ("carried state", ck.carry_h),
                                    ("carried state", ck.carry_c)) if v is None]
    if "rng" not in ck.state or not isinstance(ck.state.get("rng"), dict):
        missing.append("random-number state")
    if missing:
        raise CharlstmError(f"{path} lacks the {', '.join(sorted(set(missing)))} "
                            "needed to resume it; it can still be sampled from: "
                            "train a new model to go on")


def check_same_settings(given: dict, saved: dict, path: str) -> None:
    """A resumed run keeps the settings saved in its checkpoint: a setting
    given on the command line (given: {name: value}) that would change one
    (saved: {name: value}) is an error, not ignored; only the budget may."""
    changed = [k for k, v in given.items() if k not in ("epochs", "steps", "minutes")
               and saved.get(k) != v]
    if changed:
        saved_as = ", ".join(f"--{k.replace('_', '-')} {saved[k]}" for k in changed)
        raise CharlstmError(f"{path} was trained with {saved_as}, and a resumed run keeps "
                            "its settings: leave those options out (only the budget, "
                            "--steps, --epochs or --minutes, can change), or train a new "
                            "model")


def newest(folder: str = "checkpoints") -> str:
    """The best checkpoint of the newest run in `folder`: the most recently
    written checkpoint that is not a best file, then its best file if it has
    one (the model with the lowest validation loss, which is what a user
    wants to sample from), else itself."""
    from .file_kinds import is_checkpoint
    try:
        names = [os.path.join(folder, n) for n in os.listdir(folder)
                 if n.endswith(".npz") and not n.startswith(".")
                 and os.path.isfile(os.path.join(folder, n))]
    except (FileNotFoundError, NotADirectoryError):
        names = []
    runs = [p for p in names if not p.endswith(".best.npz") and is_checkpoint(p)]
    if not runs:
        runs = [p for p in names if is_checkpoint(p)]
    if not runs:
        raise CharlstmError(f"no checkpoint in {folder}/; train one first: "
                            "charlstm train FILE (or give a checkpoint path)")
    last = max(runs, key=os.path.getmtime)
    root = last[:-4]
    best = root + ".best.npz"
    return best if not last.endswith(".best.npz") and os.path.isfile(best) else last


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
