"""The training loop: Python around the jitted work, one step per batch."""
from __future__ import annotations

import math
import os
import signal
import time
from dataclasses import dataclass

import numpy as np

from . import checkpoint as ckpt
from . import kernels
from . import stopping
from .config import AUTO_EVAL_MIN_STEPS, AUTO_EVAL_SHARE, ModelConfig, TrainConfig
from .data import Batches, Corpus
from .errors import CharlstmError
from .replicas import Replicas
from .start import fresh, resumed
from .stopping import Stop  # noqa: F401  (the stop signals' exception, for callers)

LN2 = math.log(2)


class Diverged(Exception):
    """The loss or gradient stopped being finite; the update was not applied."""


def best_path(out: str) -> str:
    root = out[:-4] if out.endswith(".npz") else out
    return root + ".best.npz"


def auto_eval_due(steps_since: int, seconds_since: float, last_cost: float) -> bool:
    """The automatic validation schedule (eval_every=0): at least
    AUTO_EVAL_MIN_STEPS steps since the last pass, and enough time that the
    last pass's cost stays near AUTO_EVAL_SHARE of the whole."""
    return (steps_since >= AUTO_EVAL_MIN_STEPS
            and seconds_since >= last_cost * (1 / AUTO_EVAL_SHARE - 1))


def grad_norm(g: np.ndarray) -> float:
    """||g||, inf only when g itself is not finite. A finite gradient can be
    too large to square in float32 (entries above ~1.8e19: Adam's first steps
    at a high rate on a wide layer can make one over 200 steps of BPTT); it
    is measured scaled by its largest entry, so that clipping can rein it in
    instead of the run being declared diverged."""
    with np.errstate(over="ignore", invalid="ignore"):
        norm = float(np.sqrt(np.dot(g, g)))
        if math.isfinite(norm) or not np.isfinite(g).all():
            return norm
        big = float(np.abs(g).max())
        u = g / np.float32(big)
        return big * float(np.sqrt(np.dot(u, u)))


def clip(g: np.ndarray, norm: float, max_norm: float) -> None:
    """Global-norm clipping (Pascanu, Mikolov & Bengio 2013): g, whose norm is
    `norm`, scaled in place to max_norm if it is longer."""
    if norm > max_norm:
        g *= max_norm / norm


def lr_at(cfg: TrainConfig, step: int, progress: float) -> float:
    """A linear warm-up over the first `warmup` share of the budget (or over
    warmup_steps), then constant or cosine decay to lr·min_lr_frac at the end
    of the budget (progress p in [0, 1]):
        lr·min(1, p / warmup)·(f + (1 − f)·½(1 + cos πp)),   f = min_lr_frac.
    Adam's early steps rest on a second-moment estimate from a few gradients
    (Liu et al. 2020); at 1e-2 without a warm-up, a 768-unit model sometimes
    sat near the unigram loss for hundreds of steps (docs/sizing.md)."""
    if cfg.warmup_steps > 0:
        warm = min(1.0, (step + 1) / cfg.warmup_steps)
    elif cfg.warmup > 0:
        warm = min(1.0, max(progress, 0.0) / cfg.warmup)
    else:
        warm = 1.0
    if cfg.schedule == "constant":
        return cfg.lr * warm
    cos = 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))
    return cfg.lr * warm * (cfg.min_lr_frac + (1 - cfg.min_lr_frac) * cos)


@dataclass
class Result:
    path: str
    best_path: str
    steps: int
    train_loss: float
    val_loss: float | None
    best_val: float | None
    seconds: float
    chars_per_s: float
    grad_norm: float
    interrupted: bool = False
    diverged: bool = False
    signum: int = 0                 # the stop signal, when interrupted
    written: tuple = ()             # the files this run wrote


class Trainer:
    """Trains one model on one text. `log` gets one-line messages; `progress`
    switches the tqdm bar."""

    def __init__(self, text: str, model_cfg: ModelConfig, cfg: TrainConfig, out: str,
                 resume: str | None = None, progress: bool = True, log=print,
                 corpus: Corpus | None = None, bar_position: int | None = None,
                 workers: int | None = None, stop_when=None, log_path: str | None = None):
        """resume: a checkpoint to go on from, exactly where it stopped, with its
        saved settings (model_cfg and cfg give only a new budget: start.resumed);
        otherwise a new model of model_cfg (start.fresh; corpus: the text read
        already).
        stop_when: None, or a function of the trainer called after every
        validation pass (and its checkpoint); when it returns True, training
        ends there as if the budget were spent (compare's memory probe stops a
        model that has solved its task; a search could prune a poor trial).
        log_path: a file to which a JSON line is appended after every
        validation pass (TrainLog), so that another terminal can follow."""
        self.log, self.progress, self.out = log, progress, out
        self.log_path = log_path
        self.stop_when = stop_when
        self.bar_desc = None            # the progress bar's label (default: the model)
        self.stopped_early = False
        self.bar_position = bar_position
        self.text_path = text
        start = resumed(resume, text, cfg) if resume else fresh(text, model_cfg, cfg, corpus)
        self.cfg, self.corpus, self.batches = start.cfg, start.corpus, start.batches
        self.model, self.rng, self.state = start.model, start.rng, start.state
        self.m, self.v = start.m, start.v           # the optimizer's moments
        self.h, self.c = start.h, start.c           # the state carried into the next batch
        self.hist_train, self.hist_val, self.hist_norm = (start.hist_train, start.hist_val,
                                                          start.hist_norm)
        T, B = self.cfg.seq_len, self.cfg.batch_size
        self.replicas = Replicas(self.model, T, B, workers)
        self.written: list[str] = []
        self.corrupt = False            # an update made the parameters non-finite
        self.saved_step = None          # the step of the last checkpoint written
        self._val = None
        self.grad_norm = 0.0
        self._last_eval = (self.state["step"], 0.0, 0.0)   # step, train time, its cost (s)

    # -- budget -------------------------------------------------------------

    def total_steps(self) -> float:
        c = self.cfg
        if c.steps:
            return c.steps
        if c.epochs:
            return max(1, round(c.epochs * self.batches.n))
        return math.inf

    def progress_frac(self) -> float:
        c, s = self.cfg, self.state
        by_steps = s["step"] / self.total_steps()
        by_time = s["elapsed"] / (60 * c.minutes) if c.minutes else 0.0
        return min(1.0, max(by_steps, by_time))

    # -- one step -----------------------------------------------------------

    def step(self) -> float:
        """One optimizer step on the next batch, line by line as nanoGPT's loop
        takes one: zero the gradient; the forward and the backward pass (the
        batch's streams split among the cores: replicas.py); clip the gradient
        by its global norm; update the parameters; carry the state into the
        next batch. A loss or gradient that is not finite, or an update that
        made a parameter so, raises Diverged; the update is then not kept."""
        cfg, s, model = self.cfg, self.state, self.model
        x, y = self.batches.get(s["batch"])
        self.replicas.zero_grad()
        loss, h, c = self.replicas.loss(x, y, self.h, self.c, self._dropout_key())
        self.grad_norm = norm = grad_norm(model.grad)         # recorded before clipping
        if not math.isfinite(norm) or not math.isfinite(loss):
            raise Diverged(s["step"])
        clip(model.grad, norm, cfg.clip)
        self.update()
        self.carry(h, c)
        return loss

    def update(self) -> None:
        """Adam (or Adagrad) at this step's learning rate (lr_at)."""
        cfg, s, model = self.cfg, self.state, self.model
        lr = lr_at(cfg, s["step"], self.progress_frac())
        s["step"] += 1
        if cfg.optimizer == "adagrad":
            kernels.adagrad_update(model.flat, model.grad, self.m, lr, 1e-8)
        else:
            kernels.adam_update(model.flat, model.grad, self.m, self.v, lr, 0.9, 0.999, 1e-8,
                                s["step"])
        # An update too large for float32 (a huge --lr) leaves inf or nan in the
        # parameters; a float64 sum sees either (cheaper than a copy a step).
        with np.errstate(invalid="ignore", over="ignore"):
            total = float(np.sum(model.flat, dtype=np.float64))
        if not math.isfinite(total):
            self.corrupt = True
            raise Diverged(s["step"])

    def carry(self, h, c) -> None:
        """Truncated BPTT: stream b of the next batch goes on in the text where
        stream b of this one stopped (data.Batches cuts the text so), so this
        batch's final state (h_T, c_T, each (L, B, H), from Replicas.loss) is
        the next one's initial state; the gradient stops there. Each stream's
        state is zeroed with chance state_reset, so that it cannot become a
        clock (docs/design.md), and every stream's at a new epoch, where the
        streams start the text over."""
        cfg, s = self.cfg, self.state
        if cfg.state_reset > 0:
            lost = self.rng.random(cfg.batch_size) < cfg.state_reset
            h[:, lost] = 0
            c[:, lost] = 0
        self.h, self.c = h, c
        s["batch"] += 1
        if s["batch"] >= self.batches.n:                     # new epoch: start afresh
            s["batch"], s["epoch"] = 0, s["epoch"] + 1
            self.h, self.c = self.model.zero_state(cfg.batch_size)

    def _dropout_key(self) -> int | None:
        """This step's dropout masks are a hash of (seed, step, layer, stream,
        unit): see kernels.dropout_mask. Resuming at a step gives its masks."""
        if self.model.cfg.dropout <= 0:
            return None
        return (self.cfg.rng_seed * 0x9E3779B97F4A7C15 + self.state["step"] * 256) % 2 ** 64

    def evaluate(self, ids: np.ndarray | None = None) -> float | None:
        """Mean loss (nats/char) over `ids` (default: the validation text), in
        streams with the state carried, no dropout: every character but the
        first of each stream is scored, the rest of each stream after the whole
        windows too (data.Batches)."""
        if ids is None:
            ids = self.corpus.val[:self.cfg.eval_chars or None]
        if len(ids) < 2:
            return None
        T = min(self.cfg.seq_len, len(ids) - 1)
        B = max(1, min(self.cfg.batch_size, (len(ids) - 1) // T // 4 or 1))
        if (T, B) == (self.replicas.T, self.replicas.B):
            self._val = self.replicas          # the training buffers are free between steps
        elif self._val is None or (self._val.T, self._val.B) != (T, B):
            self._val = Replicas(self.model, T, B, len(self.replicas.parts))
        batches = Batches(ids, B, T)
        h, c = self.model.zero_state(B)
        total = 0.0
        for k in range(batches.n + 1):      # the whole windows, then the rest (< T steps)
            stopping.check()                # a stop loses only this score
            x, y = batches.get(k)
            if len(x) == 0:
                break
            val = self._val if len(x) == T else self._val.first(len(x))
            loss, h, c = val.loss(x, y, h, c, grad=False, repack=k == 0)   # packed once
            total += loss * x.size
        return total / (B * (batches.L - 1))

    # -- checkpoints --------------------------------------------------------

    def checkpoint(self) -> ckpt.Checkpoint:
        s = dict(self.state, rng=self.rng.bit_generator.state)
        return ckpt.Checkpoint(
            model=self.model.cfg, train=self.cfg, vocab=self.corpus.vocab,
            params={k: v for k, v in self.model.p.items()},
            opt_m=self.m, opt_v=self.v, carry_h=self.h, carry_c=self.c, state=s,
            history_train=np.array(self.hist_train).reshape(-1, 3),
            history_val=np.array(self.hist_val).reshape(-1, 3),
            history_norm=np.array(self.hist_norm).reshape(-1, 2))

    def save(self, best: bool = False):
        """Write the checkpoint (and the best one); an OSError is one line."""
        if not np.isfinite(self.model.flat).all():
            raise Diverged(self.state["step"])       # never saved as a model
        ck = self.checkpoint()
        for path in ([best_path(self.out)] if best else []) + [self.out]:
            if os.path.lexists(path) and not _still_ours(path):
                raise CharlstmError(f"{path} was replaced by something that is not a charlstm "
                                    "checkpoint while this run trained; charlstm does not "
                                    "write over it: the run stops here (move that file and "
                                    f"resume from {self.out if path != self.out else 'it'})")
            try:
                ckpt.save(ck, path)
            except OSError as e:
                from .files import oserror_line
                raise oserror_line(e, path) from None
            if path not in self.written:
                self.written.append(path)
        self.saved_step = self.state["step"]

    # -- the loop -----------------------------------------------------------

    def run(self) -> Result:
        cfg, s = self.cfg, self.state
        bar = Bar(self)
        chars = cfg.seq_len * cfg.batch_size
        val = s.get("last_val")
        ema = None
        interrupted = diverged = False
        signum = 0
        t_last = time.perf_counter()
        with stopping.installed():          # a stop signal is taken between steps
            try:
                while not self._budget_spent():
                    t0 = time.perf_counter()
                    loss = self.step()
                    dt = time.perf_counter() - t0
                    s["train_time"] += dt
                    now = time.perf_counter()
                    s["elapsed"] += now - t_last
                    t_last = now
                    self.hist_train.append([s["step"], s["elapsed"], loss])
                    self.hist_norm.append([s["step"], self.grad_norm])
                    stopping.check()        # the step is whole and recorded: stop here
                    ema = loss if ema is None else 0.95 * ema + 0.05 * loss
                    if self._eval_due() or self._budget_spent():
                        val = self._eval_and_save()
                        t_last = time.perf_counter()
                        s["elapsed"] += t_last - now
                        self._last_eval = (s["step"], s["train_time"], t_last - now)
                        if self.stop_when is not None and self.stop_when(self):
                            self.stopped_early = True
                            bar.update(ema, val)
                            break
                    bar.update(ema, val)
                if not self.corrupt and (not self.hist_val or self.hist_val[-1][0] != s["step"]):
                    val = self._eval_and_save()
                stopping.check()
            except KeyboardInterrupt as e:      # a stop signal (or a test's Ctrl-C)
                interrupted = True
                signum = getattr(e, "signum", signal.SIGINT)
                self.save()                     # a second signal waits for this checkpoint
            except Diverged:
                diverged = True    # the update was refused: the model is the last finite one
                if not self.corrupt and (not self.hist_val or self.hist_val[-1][0] != s["step"]):
                    try:
                        val = self._eval_and_save()
                    except KeyboardInterrupt:
                        pass       # stopping: the last checkpoint stands
        bar.close()
        if interrupted:
            self.log(f"stopped by {stopping.signal_name(signum)} at step {s['step']}: "
                     f"saved {self.out}")
        return Result(self.out, best_path(self.out), s["step"], self.recent_train_loss(), val,
                      s["best_val"], s["elapsed"],
                      s["step"] * chars / max(s["train_time"], 1e-9), self.grad_norm, interrupted,
                      diverged, signum, tuple(self.written))

    def _eval_due(self) -> bool:
        """Every eval_every steps; or, with 0, by auto_eval_due on the training
        time (a 500k-character validation text then costs ~4% of a run, not
        ~25% as every 200 steps did)."""
        s, every = self.state, self.cfg.eval_every
        if every:
            return s["step"] % every == 0
        step, train_time, cost = self._last_eval
        return auto_eval_due(s["step"] - step, s["train_time"] - train_time, cost)

    def _budget_spent(self) -> bool:
        s, c = self.state, self.cfg
        return s["step"] >= self.total_steps() or bool(c.minutes and s["elapsed"] >= 60 * c.minutes)

    def recent_train_loss(self) -> float:
        """Mean training loss over the last 50 steps."""
        return float(np.mean([r[2] for r in self.hist_train[-50:]])) if self.hist_train else float("nan")

    def _eval_and_save(self):
        s = self.state
        val = self.evaluate()       # changes nothing: a stop here loses only this score
        # The score, the best so far and both files, together (a stop signal only
        # takes effect at the next stopping.check()).
        s["last_val"] = val
        score = val if val is not None else self.recent_train_loss()
        if val is not None:
            self.hist_val.append([s["step"], s["elapsed"], val])
        best = math.isfinite(score) and (s["best_val"] is None
                                         or not math.isfinite(s["best_val"])
                                         or score < s["best_val"])
        if best:
            s["best_val"] = score
            s["best_step"] = s["step"]
        self.save(best=best)
        if self.log_path:
            TrainLog(self.log_path).append(self, val, best)
        return val


class Bar:
    """The progress bar (tqdm, on stderr): steps against a step or epoch
    budget; against a minutes budget, the share of the time gone and the time
    left. Its postfix: the step, the training loss (a running mean), the
    latest validation loss and characters per second."""

    def __init__(self, tr: Trainer):
        from tqdm import tqdm
        self.tr = tr
        c, s = tr.cfg, tr.state
        self.minutes = bool(c.minutes) and not c.steps and not c.epochs
        desc = tr.bar_desc or f"{tr.model.cfg.cell} {tr.model.cfg.layers}x{tr.model.cfg.hidden}"
        kw = dict(disable=not tr.progress, dynamic_ncols=True, position=tr.bar_position,
                  desc=desc, mininterval=0.5)
        if self.minutes:
            self.bar = tqdm(total=round(60 * c.minutes), initial=min(round(s["elapsed"]),
                                                                     round(60 * c.minutes)),
                            bar_format="{desc}: {percentage:3.0f}%|{bar}| {elapsed}<{remaining}"
                                       "{postfix}", **kw)
        else:
            total = tr.total_steps()
            self.bar = tqdm(total=None if math.isinf(total) else int(total), initial=s["step"],
                            unit="step", **kw)

    def update(self, ema, val):
        tr, s = self.tr, self.tr.state
        chars = tr.cfg.seq_len * tr.cfg.batch_size
        post = dict(loss=f"{ema:.3f}", val="-" if val is None else f"{val:.3f}",
                    cps=f"{s['step'] * chars / max(s['train_time'], 1e-9):,.0f}")
        if self.minutes:
            post = dict(step=f"{s['step']:,}", **post)
            self.bar.n = min(int(s["elapsed"]), self.bar.total)
        else:
            self.bar.n = s["step"]
        self.bar.set_postfix(post, refresh=False)
        self.bar.refresh() if self.bar.n == self.bar.total else self.bar.update(0)

    def close(self):
        if self.minutes and not self.bar.disable:
            self.bar.n = min(int(self.tr.state["elapsed"]), self.bar.total)
        self.bar.close()


class TrainLog:
    """`<checkpoint>.log.jsonl`: a header line (the settings), then one JSON
    line per validation pass: step, minutes, train loss (a running mean of 50
    steps), validation loss, learning rate, characters per second, and
    whether it is the best so far. Appended and flushed line by line, so that
    `tail -f` and plotting tools can follow a run from another terminal."""

    def __init__(self, path: str):
        self.path = path

    @staticmethod
    def path_for(out: str) -> str:
        return (out[:-4] if out.endswith(".npz") else out) + ".log.jsonl"

    def start(self, tr: Trainer, fresh: bool) -> None:
        """A new log (a fresh run), or the one a resumed run goes on in."""
        import json
        from dataclasses import asdict
        if fresh or not os.path.exists(self.path):
            from .files import write_text
            write_text(self.path, json.dumps({"charlstm": "train log",
                                              "model": asdict(tr.model.cfg),
                                              "train": asdict(tr.cfg)}) + "\n")

    def append(self, tr: Trainer, val, best: bool) -> None:
        import json
        s, c = tr.state, tr.cfg
        row = {"step": s["step"], "minutes": round(s["elapsed"] / 60, 4),
               "train_loss": _round(tr.recent_train_loss()), "val_loss": _round(val),
               "lr": float(f"{lr_at(c, s['step'], tr.progress_frac()):.6g}"),
               "chars_per_s": round(s["step"] * c.seq_len * c.batch_size
                                    / max(s["train_time"], 1e-9)),
               "best": bool(best)}
        try:
            with open(self.path, "a", encoding="utf-8") as fh:
                fh.write(json.dumps(row) + "\n")
        except OSError:
            pass                     # the log is a convenience; the checkpoint is the record


def _round(x):
    return None if x is None or not math.isfinite(x) else round(float(x), 5)


def _still_ours(path: str) -> bool:
    """Whether a file this run writes is still a charlstm checkpoint (a user
    may have put another file there since the run began)."""
    from .file_kinds import is_checkpoint, regular
    return regular(path) and is_checkpoint(path)


def unigram_loss(corpus: Corpus) -> float:
    """The loss (nats/char) of a guess from the characters' frequencies in
    the training text alone: the level a model that learned nothing else
    reaches."""
    counts = np.bincount(np.asarray(corpus.train, np.int64), minlength=corpus.V)
    p = counts[counts > 0] / counts.sum()
    return float(-(p * np.log(p)).sum())


def bits(nats: float | None) -> float | None:
    return None if nats is None else nats / LN2


def default_out(text: str, cell: str, folder: str = "checkpoints") -> str:
    stem = os.path.splitext(os.path.basename(text))[0] or "model"
    return os.path.join(folder, f"{stem}-{cell}.npz")
