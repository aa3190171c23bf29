"""`charlstm export`: a trained model in formats other tools run.

- **safetensors**, with torch.nn's names: an LSTM checkpoint loads into
  `nn.LSTM` + `nn.Linear` (`lstm.weight_ih_l0`, …, `decoder.weight`) with
  strict=True, a GRU into `nn.GRU` (`gru.…`), the RNN and IRNN into `nn.RNN`
  (`rnn.…`; the IRNN with nonlinearity="relu"). The peephole and CIFG cells,
  which PyTorch has no module for, keep charlstm's names (`l0.Wx`, …). The
  vocabulary and the settings are in the metadata, as JSON strings.
- **ONNX**: the whole model as one graph: the one-hot input as a Gather from
  an identity matrix, ONNX's LSTM, GRU or RNN operator per layer (their gate
  orders differ from PyTorch's, so the blocks are permuted), the output layer;
  the recurrent state as graph inputs and outputs (h0, c0 → hT, cT), so that a
  caller can run a character at a time. The vocabulary is in the metadata.

charlstm's layout (model.py) is PyTorch's: weight_ih = Wxᵀ, weight_hh = Wh,
bias_ih = b, bias_hh = 0 (the GRU's bias_hh = [0, 0, b_hn]).
"""
from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass

import numpy as np

from .config import ModelConfig
from .errors import CharlstmError


@dataclass(frozen=True)
class Names:
    """What PyTorch and ONNX call a cell."""
    torch: str                  # its torch.nn module, lower case: the tensors' prefix
    onnx: str                   # its ONNX operator
    onnx_order: tuple           # ONNX's gate blocks, as our blocks' numbers (cells.py)
    nonlinearity: str = "tanh"  # nn.RNN's and ONNX RNN's activation
    b_hn: bool = False          # ex[0] is bias_hh's n block (the GRU's b_hn)


# Every cell's names, by cells.CELLS's names; None: PyTorch has no module and
# ONNX no operator for it, and its tensors keep charlstm's names (l0.Wx, …).
# ONNX's gate orders: LSTM i, o, f, c (ours i, f, c~, o); GRU z, r, h (ours r, z, n).
NAMES = {
    "lstm": Names("lstm", "LSTM", (0, 3, 1, 2)),
    "rnn": Names("rnn", "RNN", (0,)),
    "irnn": Names("rnn", "RNN", (0,), nonlinearity="relu"),
    "lstm-peephole": None,
    "cifg": None,
    "gru": Names("gru", "GRU", (1, 0, 2), b_hn=True),
    # The min cells: torch.nn has no module for them, and ONNX no operator (its RNN,
    # GRU and LSTM all have recurrent weights, R, and a minGRU's is not an RNN with
    # R = 0: its n is linear and h mixes h_(t−1) in directly). A graph of plain
    # ops (Sigmoid, Mul, Add in a Loop) could run them; charlstm does not write one.
    "mingru": None,
    "minlstm": None,
    # The sLSTM: neither has one (an exponential input gate, a normaliser state n and
    # a stabiliser m, none of which ONNX's LSTM operator has).
    "slstm": None,
}
FORMAT = "charlstm-safetensors"


def _torch(cell: str) -> str | None:
    """The torch.nn module of a cell (lower case), or None."""
    names = NAMES[cell]
    return names and names.torch


def need(module: str):
    """Import an optional package, or say how to install it."""
    import importlib
    try:
        return importlib.import_module(module)
    except ImportError:
        from .errors import install_hint
        raise CharlstmError(f"exporting to ONNX needs the {module} package; install it "
                            f"with: {install_hint('export')}") from None


def _charlstm_names(l: int, src: dict) -> dict[str, np.ndarray]:
    """Layer l's parameters under charlstm's own names (cells PyTorch lacks)."""
    return {f"l{l}.{n}": src[f"l{l}.{n}"] for n in ("Wx", "Wh", "b", "ex") if f"l{l}.{n}" in src}


def torch_tensors(cfg: ModelConfig, p: dict) -> dict[str, np.ndarray]:
    """The parameters under torch.nn's names (or charlstm's, for the cells
    PyTorch has no module for), as float32 arrays."""
    out = {}
    mod = _torch(cfg.cell)
    H = cfg.hidden
    for l in range(cfg.layers):
        if mod is None:
            out.update(_charlstm_names(l, p))
            continue
        out[f"{mod}.weight_ih_l{l}"] = p[f"l{l}.Wx"].T
        out[f"{mod}.weight_hh_l{l}"] = p[f"l{l}.Wh"]
        out[f"{mod}.bias_ih_l{l}"] = p[f"l{l}.b"]
        bias_hh = np.zeros_like(p[f"l{l}.b"])
        if NAMES[cfg.cell].b_hn:
            bias_hh[2 * H:] = p[f"l{l}.ex"][0]            # b_hn sits inside r ⊙ (…)
        out[f"{mod}.bias_hh_l{l}"] = bias_hh
    out["decoder.weight"] = p["Wy"].T
    out["decoder.bias"] = p["by"]
    return {k: np.ascontiguousarray(v, np.float32) for k, v in out.items()}


def params_from_torch(cfg: ModelConfig, t: dict) -> dict[str, np.ndarray]:
    """torch_tensors, undone: charlstm's parameters from the exported tensors."""
    mod = _torch(cfg.cell)
    H = cfg.hidden
    p = {}
    for l in range(cfg.layers):
        if mod is None:
            p.update(_charlstm_names(l, t))
            continue
        p[f"l{l}.Wx"] = t[f"{mod}.weight_ih_l{l}"].T
        p[f"l{l}.Wh"] = t[f"{mod}.weight_hh_l{l}"]
        bhh = t[f"{mod}.bias_hh_l{l}"]
        p[f"l{l}.b"] = t[f"{mod}.bias_ih_l{l}"] + bhh     # the two biases add up ...
        if NAMES[cfg.cell].b_hn:                          # ... but the GRU's b_hn sits
            p[f"l{l}.b"][2 * H:] -= bhh[2 * H:]           # inside r ⊙ (h W_hnᵀ + b_hn)
            p[f"l{l}.ex"] = bhh[None, 2 * H:]
    p["Wy"] = t["decoder.weight"].T
    p["by"] = t["decoder.bias"]
    return p


# safetensors (https://github.com/huggingface/safetensors): 8 bytes, the length
# n of a JSON header (little-endian); the header, {name: {"dtype", "shape",
# "data_offsets": [begin, end]}, "__metadata__": {str: str}}; then the tensors'
# bytes, little-endian, at those offsets from the end of the header. charlstm
# writes and reads it itself, so that reading checks every size against the
# settings before anything is allocated.

MAX_HEADER = 16 << 20           # a charlstm header is a few KB (a 65,536-character
                                # vocabulary: under 1 MB)


def safetensors_bytes(ck) -> bytes:
    """The safetensors file of a checkpoint: torch.nn's names, float32, the
    vocabulary and settings in the metadata."""
    tensors = torch_tensors(ck.model, ck.params)
    meta = {"format": FORMAT, "vocab": json.dumps(ck.vocab, ensure_ascii=False),
            "model": json.dumps(asdict(ck.model)),
            "torch_module": _torch(ck.model.cell) or "",
            "nonlinearity": NAMES[ck.model.cell].nonlinearity if NAMES[ck.model.cell]
            else "tanh"}
    header, offset = {"__metadata__": meta}, 0
    for name in sorted(tensors):
        t = tensors[name]
        header[name] = {"dtype": "F32", "shape": list(t.shape),
                        "data_offsets": [offset, offset + t.nbytes]}
        offset += t.nbytes
    head = json.dumps(header, ensure_ascii=False).encode("utf-8")
    head += b" " * (-len(head) % 8)                    # the tensors start 8-byte aligned
    return b"".join([len(head).to_bytes(8, "little"), head]
                    + [tensors[n].astype("<f4").tobytes() for n in sorted(tensors)])


def torch_shapes(cfg: ModelConfig) -> dict[str, tuple]:
    """The name and shape of every tensor torch_tensors makes for cfg, worked
    out from the layout (nothing allocated: the settings may be a crafted
    file's)."""
    from .model import layout
    shapes = dict(layout(cfg))
    mod = _torch(cfg.cell)
    out = {}
    for l in range(cfg.layers):
        if mod is None:
            out.update({f"l{l}.{n}": shapes[f"l{l}.{n}"] for n in ("Wx", "Wh", "b", "ex")
                        if f"l{l}.{n}" in shapes})
            continue
        out[f"{mod}.weight_ih_l{l}"] = shapes[f"l{l}.Wx"][::-1]
        out[f"{mod}.weight_hh_l{l}"] = shapes[f"l{l}.Wh"]
        out[f"{mod}.bias_ih_l{l}"] = shapes[f"l{l}.b"]
        out[f"{mod}.bias_hh_l{l}"] = shapes[f"l{l}.b"]
    out["decoder.weight"] = shapes["Wy"][::-1]
    out["decoder.bias"] = shapes["by"]
    return {k: tuple(v) for k, v in out.items()}


def read_safetensors(path: str) -> tuple[ModelConfig, str, dict[str, np.ndarray]]:
    """The settings, vocabulary and parameters (nothing to resume) of a
    safetensors file charlstm exported, every tensor's name, type, shape and
    place checked against the settings before it is read (checkpoint.load
    reads such a file through this)."""
    from .config import TrainConfig, check_settings, from_dict
    from .data import vocab_from_ids
    from .file_kinds import loads, sniff
    from .files import check_memory

    def bad(what):
        return CharlstmError(f"{path} is a damaged safetensors export: {what}; export it "
                             "again or pick another file")

    size = os.path.getsize(path)
    with open(path, "rb") as fh:
        n = int.from_bytes(fh.read(8), "little")
        if not 2 <= n <= min(size - 8, MAX_HEADER):
            raise CharlstmError(f"{path} is {sniff(path)}, not a safetensors file that "
                                "charlstm exported")
        try:
            header = loads(fh.read(n).decode("utf-8"))
        except (ValueError, UnicodeDecodeError) as e:
            raise bad(f"its header is not JSON ({e.__class__.__name__})") from None
        if not isinstance(header, dict):
            raise bad("its header is not a JSON object")
        meta = header.pop("__metadata__", None)
        if not isinstance(meta, dict) or meta.get("format") != FORMAT:
            raise CharlstmError(f"{path} was not exported by charlstm (no charlstm metadata); "
                                "charlstm reads the vocabulary and settings it writes there")
        try:
            model = loads(meta["model"])
            if not isinstance(model, dict):
                raise TypeError("the settings are not a JSON object")
            cfg = from_dict(ModelConfig, model)
            vocab_list = loads(meta["vocab"])
            if not isinstance(vocab_list, str):
                raise TypeError("the vocabulary is not a string")
        except (KeyError, ValueError, TypeError) as e:
            raise bad(f"its settings or vocabulary do not parse ({e.__class__.__name__}: "
                      f"{e})") from None
        if len(vocab_list) > (1 << 20):
            raise bad("its vocabulary is too long")
        vocab = vocab_from_ids(np.array([ord(ch) for ch in vocab_list], np.int64), path)
        check_settings(cfg, TrainConfig(), vocab, path)
        want = torch_shapes(cfg)
        total = sum(int(np.prod(shape)) * 4 for shape in want.values())
        check_memory(2 * total, f"{path} ({cfg.cell} {cfg.layers}x{cfg.hidden})",
                     "it cannot be loaded on this machine")
        if total > size:
            raise bad(f"its settings ({cfg.cell} {cfg.layers}x{cfg.hidden}) need "
                      f"{total:,} bytes of weights; the file has {size:,}")
        extra = sorted(set(header) - set(want))
        missing = sorted(set(want) - set(header))
        if extra or missing:
            raise bad(f"it has tensor {extra[0]!r}, which a {cfg.cell} model does not"
                      if extra else f"tensor {missing[0]!r} is missing")
        base, total = 8 + n, 0
        for name, shape in want.items():
            e = header[name]
            got = e.get("shape") if isinstance(e, dict) else None
            if not isinstance(e, dict) or e.get("dtype") != "F32" or not isinstance(got, list) \
                    or tuple(got) != tuple(shape):
                raise bad(f"tensor {name!r} is not float32 of shape {tuple(shape)}")
            off = e.get("data_offsets")
            nbytes = int(np.prod(shape)) * 4
            if (not isinstance(off, list) or len(off) != 2
                    or not all(isinstance(x, int) and not isinstance(x, bool) for x in off)
                    or off[1] - off[0] != nbytes or off[0] < 0 or base + off[1] > size):
                raise bad(f"tensor {name!r} does not lie within the file")
        tensors = {}
        for name, shape in want.items():
            begin, end = header[name]["data_offsets"]
            fh.seek(base + begin)
            tensors[name] = np.frombuffer(fh.read(end - begin), "<f4").reshape(shape) \
                .astype(np.float32)
    return cfg, vocab, params_from_torch(cfg, tensors)


# ---------------------------------------------------------------------------
# ONNX.

def _blocks(a: np.ndarray, order, H: int) -> np.ndarray:
    """Reorder the gate blocks of a's first axis (each H long)."""
    return np.concatenate([a[k * H:(k + 1) * H] for k in order], axis=0)


def onnx_model(ck):
    """The ONNX graph of a checkpoint: inputs tokens (T, B) int64, h0 and (LSTM)
    c0 (L, B, H); outputs logits (T, B, V), hT and (LSTM) cT."""
    onnx = need("onnx")
    from onnx import TensorProto, helper, numpy_helper
    from .cells import CELLS
    cfg, p = ck.model, ck.params
    names = NAMES[cfg.cell]
    if names is None:
        raise CharlstmError(f"ONNX has no operator for a {cfg.cell} cell; export it with "
                            "--format safetensors (charlstm's names)")
    L, H, V = cfg.layers, cfg.hidden, cfg.vocab_size
    op, order = names.onnx, list(names.onnx_order)
    has_c = CELLS[cfg.cell].has_c
    f32 = lambda a: np.ascontiguousarray(a, np.float32)  # noqa: E731
    inits = [numpy_helper.from_array(np.eye(V, dtype=np.float32), "onehot")]
    nodes = [helper.make_node("Gather", ["onehot", "tokens"], ["x0"], axis=0)]   # (T, B, V)
    nodes.append(helper.make_node("Split", ["h0"], [f"h0_{l}" for l in range(L)], axis=0,
                                  num_outputs=L) if L > 1 else
                 helper.make_node("Identity", ["h0"], ["h0_0"]))
    if has_c:
        nodes.append(helper.make_node("Split", ["c0"], [f"c0_{l}" for l in range(L)], axis=0,
                                      num_outputs=L) if L > 1 else
                     helper.make_node("Identity", ["c0"], ["c0_0"]))
    x = "x0"
    for l in range(L):
        W = _blocks(p[f"l{l}.Wx"].T, order, H)[None]                    # (1, G, D)
        R = _blocks(p[f"l{l}.Wh"], order, H)[None]                      # (1, G, H)
        Wb = _blocks(p[f"l{l}.b"], order, H)
        Rb = np.zeros_like(Wb)
        if names.b_hn:
            Rb = _blocks(np.concatenate([np.zeros(2 * H, np.float32), p[f"l{l}.ex"][0]]),
                         order, H)
        inits += [numpy_helper.from_array(f32(W), f"W{l}"),
                  numpy_helper.from_array(f32(R), f"R{l}"),
                  numpy_helper.from_array(f32(np.concatenate([Wb, Rb])[None]), f"B{l}")]
        ins = [x, f"W{l}", f"R{l}", f"B{l}", "", f"h0_{l}"] + ([f"c0_{l}"] if has_c else [])
        outs = [f"y{l}", f"hT_{l}"] + ([f"cT_{l}"] if has_c else [])
        kw = {"hidden_size": H}
        if names.b_hn:
            kw["linear_before_reset"] = 1                  # as PyTorch: r ⊙ (h W_hnᵀ + b_hn)
        if op == "RNN":
            kw["activations"] = [names.nonlinearity.capitalize()]
        nodes.append(helper.make_node(op, ins, outs, **kw))
        nodes.append(helper.make_node("Squeeze", [f"y{l}", "axis1"], [f"x{l + 1}"]))
        x = f"x{l + 1}"
    inits.append(numpy_helper.from_array(np.array([1], np.int64), "axis1"))
    inits += [numpy_helper.from_array(f32(p["Wy"]), "Wy"),
              numpy_helper.from_array(f32(p["by"]), "by")]
    nodes += [helper.make_node("MatMul", [x, "Wy"], ["z"]),
              helper.make_node("Add", ["z", "by"], ["logits"]),
              helper.make_node("Concat", [f"hT_{l}" for l in range(L)], ["hT"], axis=0)]
    if has_c:
        nodes.append(helper.make_node("Concat", [f"cT_{l}" for l in range(L)], ["cT"], axis=0))
    state = lambda n: helper.make_tensor_value_info(n, TensorProto.FLOAT, [L, "B", H])  # noqa: E731
    inputs = [helper.make_tensor_value_info("tokens", TensorProto.INT64, ["T", "B"]),
              state("h0")] + ([state("c0")] if has_c else [])
    outputs = [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["T", "B", V]),
               state("hT")] + ([state("cT")] if has_c else [])
    graph = helper.make_graph(nodes, f"charlstm_{cfg.cell}", inputs, outputs, inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)],
                              producer_name="charlstm")
    model.ir_version = 8
    helper.set_model_props(model, {"vocab": json.dumps(ck.vocab, ensure_ascii=False),
                                   "model": json.dumps(asdict(cfg))})
    onnx.checker.check_model(model)
    return model
