"""Where a run starts, two ways: fresh, a new model for a text; or resumed,
exactly where a checkpoint stopped (its settings, weights, optimizer
moments, carried state, random-number state, step and history). Trainer
takes either, and from there the two are one run.

A resumed run is checked before it starts, by the checks in checkpoint.py
beside the file's own validation (an export holds no training state; the
text must be the one trained on; the batch it stopped at must be in this
text; the training state must be whole), in that order."""
from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass

import numpy as np

from . import checkpoint as ckpt
from .config import ModelConfig, TrainConfig
from .data import Batches, Corpus, encode_file, load_corpus
from .errors import CharlstmError
from .model import Model


@dataclass
class Start:
    """Everything a run goes on from."""
    cfg: TrainConfig            # the training settings (a resumed run's: the saved ones)
    corpus: Corpus
    batches: Batches            # the training text as B streams cut into windows of T
    model: Model
    rng: np.random.Generator    # state resets (the dropout masks are hashed: kernels.dropout_mask)
    m: np.ndarray               # the optimizer's moments, in the parameters' layout
    v: np.ndarray
    h: np.ndarray               # the state carried into the next batch, (L, B, H)
    c: np.ndarray
    state: dict                 # step, epoch, batch, elapsed and training seconds, best loss
    hist_train: list            # rows [step, seconds, loss]
    hist_val: list              # rows [step, seconds, validation loss]
    hist_norm: list             # rows [step, gradient norm before clipping]


def fresh(text: str, model_cfg: ModelConfig, cfg: TrainConfig,
          corpus: Corpus | None = None) -> Start:
    """A new model of model_cfg for `text` (or the corpus given, read from
    it), initialised from cfg.rng_seed, at step 0."""
    corpus = corpus or load_corpus(text, cfg.val_frac)
    model_cfg = dataclasses.replace(model_cfg, vocab_size=corpus.V)
    if os.path.isfile(text):
        cfg = dataclasses.replace(cfg, text=os.path.abspath(text), text_sha256=corpus.sha256)
    batches = batches_of(corpus, cfg, text)
    rng = np.random.default_rng(cfg.rng_seed)
    model = Model(model_cfg, np.dtype(cfg.dtype)).init(rng)
    h, c = model.zero_state(cfg.batch_size)
    state = dict(step=0, epoch=0, batch=0, elapsed=0.0, train_time=0.0, best_val=None, rng=None)
    return Start(cfg, corpus, batches, model, rng, np.zeros_like(model.flat),
                 np.zeros_like(model.flat), h, c, state, [], [], [])


def resumed(path: str, text: str, given: TrainConfig) -> Start:
    """The run the checkpoint at `path` holds, on `text`: its saved settings,
    with the budget of `given` if it names one."""
    ck = ckpt.load(path)
    ckpt.check_not_export(ck, path)
    ckpt.check_same_text(text, ck, path)
    ids = encode_file_for(text, ck.vocab)
    n_val = int(len(ids) * ck.train.val_frac)
    corpus = Corpus(ck.vocab, ids[:len(ids) - n_val], ids[len(ids) - n_val:])
    cfg = resume_cfg(ck.train, given)
    batches = batches_of(corpus, cfg, text)
    ckpt.check_position(ck, path, text, batches.n)
    ckpt.check_training_state(ck, path)
    dtype = np.dtype(cfg.dtype)
    rng = np.random.default_rng(cfg.rng_seed)
    model = ckpt.model_from_checkpoint(ck, dtype)
    try:
        rng.bit_generator.state = ck.state["rng"]
    except (TypeError, ValueError, KeyError, OverflowError) as e:
        raise CharlstmError(f"{path} is a damaged checkpoint: its random-number "
                            f"state does not load ({e.__class__.__name__}); retrain "
                            "or pick another file") from None
    return Start(cfg, corpus, batches, model, rng, ck.opt_m.astype(dtype),
                 ck.opt_v.astype(dtype), ck.carry_h.astype(dtype), ck.carry_c.astype(dtype),
                 dict(ck.state), [list(r) for r in ck.history_train],
                 [list(r) for r in ck.history_val], [list(r) for r in ck.history_norm])


def batches_of(corpus: Corpus, cfg: TrainConfig, text: str) -> Batches:
    """The training text as cfg.batch_size streams in windows of cfg.seq_len;
    a text too short for one batch is refused."""
    T, B = cfg.seq_len, cfg.batch_size
    need = B * (T + 1)
    if len(corpus.train) < need:
        raise CharlstmError(
            f"{text} is too short for one batch: the training part has "
            f"{len(corpus.train)} characters and one batch needs batch-size × "
            f"(seq-len + 1) = {need}; lower --batch-size or --seq-len, or use a longer text")
    return Batches(corpus.train, B, T)


def encode_file_for(path: str, vocab: str) -> np.ndarray:
    try:
        return encode_file(path, vocab)
    except CharlstmError as e:
        raise CharlstmError(f"{path} does not fit the checkpoint being resumed: {e}; "
                            "resume on the text it was trained on") from None


def resume_cfg(saved: TrainConfig, given: TrainConfig) -> TrainConfig:
    """Resume keeps the saved settings; only the budget may be extended."""
    changes = {}
    for key in ("epochs", "steps", "minutes"):
        if getattr(given, key):
            changes = {"epochs": 0.0, "steps": 0, "minutes": 0.0, key: getattr(given, key)}
    return dataclasses.replace(saved, **changes)
