"""`charlstm bench`: speed and memory on this machine, against PyTorch when it
is importable, in one run, with medians over repeats.

FLOPs counted per character (what the method does; the one-hot input is a row
gather, not a matmul, so it is not counted):
    forward  = sum over layers of [2·H·G (h Whᵀ; none for the min cells) + 2·D·G
               if the layer's input is dense (layers above the first)] + 2·H·V
               (output layer)
    training = 3 × forward (forward, the input gradients, the weight gradients)
with G = gates·H (LSTM 4H, GRU 3H, RNN H). Share of peak = achieved / GEMM peak,
the GEMM timed in turns with that row's steps (GemmProbe).
PyTorch's chars/s is converted with the same formula, so the ratio of GFLOP/s
is the ratio of chars/s.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

from ..cells import CELLS
from ..config import SAMPLING_WEIGHTS, ModelConfig, TrainConfig
from ..data import Corpus
from ..replicas import default_workers

V, T = 65, 100
TRAIN_CONFIGS = [("lstm", 1, 128, 32), ("lstm", 1, 256, 64), ("lstm", 1, 512, 64),
                 ("lstm", 2, 512, 64), ("rnn", 1, 512, 64), ("gru", 1, 512, 64),
                 ("irnn", 1, 512, 64), ("mingru", 1, 512, 64), ("minlstm", 1, 512, 64),
                 ("slstm", 1, 512, 64)]
SAMPLE_CONFIGS = [(1, 512), (2, 512)]


def train_flops_per_char(cell: str, L: int, H: int) -> float:
    G = CELLS[cell].gates * H
    rec = 2 * H * G if CELLS[cell].recurrent else 0          # the min cells have no h Whᵀ
    fwd = sum(rec + (2 * H * G if l > 0 else 0) for l in range(L)) + 2 * H * V
    return 3.0 * fwd


class GemmProbe:
    """The GEMM peak, timed in turns with the steps it is compared with: a child
    process (this one runs BLAS on one thread) holding two n×n float32
    matrices multiplies them with `threads` BLAS threads at each call. Its BLAS
    threads sleep as soon as a product ends (OPENBLAS_THREAD_TIMEOUT) rather
    than spin on into the next step timed."""

    CODE = ("import sys, numpy as np\n"
            "n = int(sys.argv[1]); a = np.random.rand(n, n).astype(np.float32); b = a.copy()\n"
            "a @ b\n"
            "for _ in sys.stdin:\n"
            "    a @ b\n"
            "    print(flush=True)\n")

    def __init__(self, threads: int, n: int = 2048):
        self.flops = 2.0 * n ** 3
        env = dict(os.environ, OPENBLAS_NUM_THREADS=str(threads), OPENBLAS_THREAD_TIMEOUT="4")
        self.proc = subprocess.Popen([sys.executable, "-c", self.CODE, str(n)], env=env,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)

    def __call__(self):
        self.proc.stdin.write("\n")
        self.proc.stdin.flush()
        if not self.proc.stdout.readline():
            raise RuntimeError(f"the GEMM process stopped (exit code {self.proc.wait()})")

    def close(self):
        self.proc.stdin.close()
        self.proc.wait()


def _median_times(fns, repeats: int, warmup: int = 2) -> list[float]:
    """Median seconds per call of each function, timed in turns (ours, theirs,
    ours, theirs, ...) so that the shared machine's changing load falls on both
    alike and the ratio is fair."""
    for f in fns:
        for _ in range(warmup):
            f()
    ts = [[] for _ in fns]
    for _ in range(repeats):
        for k, f in enumerate(fns):
            t = time.perf_counter()
            f()
            ts[k].append(time.perf_counter() - t)
    return [float(np.median(x)) for x in ts]


def ours_train_step(cell, L, H, B, workers):
    """One training step of ours on random text, as a function."""
    from ..train import Trainer
    rng = np.random.default_rng(0)
    ids = rng.integers(0, V, 2 * B * (T + 1) * 8).astype(np.uint8)
    corpus = Corpus("".join(chr(48 + k) for k in range(V)), ids, ids[:1000])
    tr = Trainer("<bench>", ModelConfig(cell=cell, hidden=H, layers=L, dropout=0.0),
                 TrainConfig(seq_len=T, batch_size=B, steps=10 ** 9, lr=1e-4), os.devnull,
                 progress=False, log=lambda m: None, corpus=corpus, workers=workers)
    return tr.step


def torch_train_step(cell, L, H, B, threads):
    from .rival import TorchTrainer
    tr = TorchTrainer(cell, V, H, L, B, T, threads=threads)
    rng = np.random.default_rng(0)
    x, y = rng.integers(0, V, (T, B)), rng.integers(0, V, (T, B))
    return lambda: tr.step(x, y)


def ours_sampler(L, H, n, weights):
    """Sampling n characters with ours, as a function, multiplying by `weights`
    (config.SAMPLING_WEIGHTS; int8 is the default of `charlstm sample`)."""
    from ..model import Model
    from ..sampling import Sampler
    m = Model(ModelConfig(hidden=H, layers=L, vocab_size=V)).init(np.random.default_rng(0))
    s = Sampler(m, "".join(chr(48 + k) for k in range(V)), weights=weights)
    return lambda: s.text("0", n, rng_seed=0)


def torch_sampler(L, H, n, threads, loop):
    """PyTorch's per-character loop (rival.TorchTrainer.sample), as a function."""
    from .rival import TorchTrainer
    tr = TorchTrainer("lstm", V, H, L, 1, 1, threads=threads)
    return lambda: tr.sample(n, loop=loop)


def startup_seconds(repeats=5) -> float | None:
    """Wall time of a cached `charlstm sample --length 1` (to its first character)."""
    from ..checkpoint import Checkpoint, save
    from ..model import Model
    with tempfile.TemporaryDirectory() as d:
        m = Model(ModelConfig(hidden=512, vocab_size=V)).init(np.random.default_rng(0))
        path = os.path.join(d, "m.npz")
        save(Checkpoint(m.cfg, TrainConfig(), "".join(chr(48 + k) for k in range(V)),
                        dict(m.p)), path)
        cmd = [sys.executable, "-m", "charlstm", "sample", path, "--length", "1", "--seed", "0"]
        subprocess.run(cmd, capture_output=True, check=True)         # fills the cache
        ts = []
        for _ in range(repeats):
            t = time.perf_counter()
            subprocess.run(cmd, capture_output=True, check=True)
            ts.append(time.perf_counter() - t)
        return float(np.median(ts))


def memory_100mb(size_mb=100) -> dict:
    """Peak RSS of `charlstm train` (3 steps) on a `size_mb` MB text file."""
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "big.txt")
        rng = np.random.default_rng(0)
        words = np.array(["the", "king", "and", "queen", "of", "rome", "said", "to", "thee",
                          "my", "lord", "\n", "O", "what", "a", "night!"])
        with open(path, "w") as fh:
            while fh.tell() < size_mb * 1_000_000:
                fh.write(" ".join(rng.choice(words, 100_000)))
        size = os.path.getsize(path)
        train = [sys.executable, "-m", "charlstm", "train", path, "--steps", "3", "--no-progress",
                 "--out", os.path.join(d, "m.npz"), "--eval-every", "1000000", "--val-frac", "0.001"]
        # a fresh wrapper process, so that only this run's peak is counted
        wrapper = ("import resource, subprocess, sys\n"
                   "subprocess.run(sys.argv[1:], check=True, capture_output=True)\n"
                   "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)")
        t = time.perf_counter()
        out = subprocess.run([sys.executable, "-c", wrapper] + train, capture_output=True,
                             text=True, check=True)
        peak = int(out.stdout.strip()) * 1024
        return {"file_mb": size / 1e6, "peak_rss_mb": peak / 1e6,
                "limit_mb": 2 * size / 1e6 + 300, "seconds": time.perf_counter() - t}


def sampling_row(L: int, H: int, workers: int, have_torch: bool) -> dict:
    """Sampling speeds (chars/s, medians of 5) at batch 1: ours with each
    precision of the weights, and PyTorch two ways, nn.LSTMCell copies of the
    layers and the nn.LSTM module called per character (several times slower);
    the ratios are against the faster."""
    runs = [(n, ours_sampler(L, H, n, w)) for n, w in zip((6000, 4000, 3000), SAMPLING_WEIGHTS)]
    if have_torch:                  # (characters per timed call, the call)
        runs += [(600, torch_sampler(L, H, 600, workers, "cell")),
                 (150, torch_sampler(L, H, 150, workers, "module"))]
    ts = _median_times([f for _, f in runs], 5, warmup=1)
    speeds = [n / t for (n, _), t in zip(runs, ts)]
    row = {"layers": L, "hidden": H, "ours": speeds[0], "ours_float16": speeds[1],
           "ours_float32": speeds[2], "torch": max(speeds[3:]) if have_torch else None,
           "torch_cell": speeds[3] if have_torch else None,
           "torch_module": speeds[4] if have_torch else None}
    for key in ("", "_float16", "_float32"):
        row["ratio" + key] = row["ours" + key] / row["torch"] if row["torch"] else None
    return row


def run(repeats=9, quick=False, memory=True, log=print) -> dict:
    from . import rival
    workers = default_workers()
    have_torch = rival.available()
    res = {"date": time.strftime("%Y-%m-%d"), "machine": _machine(), "workers": workers,
           "torch": None, "train": [], "sample": []}
    if have_torch:
        import torch
        res["torch"] = torch.__version__
    configs = TRAIN_CONFIGS[:2] if quick else TRAIN_CONFIGS
    probe = GemmProbe(workers)      # the GEMM peak, timed in turns with each row's steps
    try:
        for cell, L, H, B in configs:
            log(f"training {cell} {L}x{H} B={B}...")
            flops = train_flops_per_char(cell, L, H)
            fns = [ours_train_step(cell, L, H, B, workers)]
            if have_torch:
                fns.append(torch_train_step(cell, L, H, B, workers))
            ts = _median_times(fns + [probe], repeats)
            row = {"cell": cell, "layers": L, "hidden": H, "batch": B, "flops_per_char": flops,
                   "ours": T * B / ts[0], "torch": T * B / ts[1] if have_torch else None,
                   "peak_gflops": probe.flops / ts[-1] / 1e9}
            row["ours_gflops"] = row["ours"] * flops / 1e9
            row["ours_share"] = row["ours_gflops"] / row["peak_gflops"]
            row["ratio"] = row["ours"] / row["torch"] if row["torch"] else None
            res["train"].append(row)
    finally:
        probe.close()
    res["gemm_peak_gflops"] = float(np.median([r["peak_gflops"] for r in res["train"]]))
    for L, H in SAMPLE_CONFIGS[:1] if quick else SAMPLE_CONFIGS:
        log(f"sampling {L}x{H}...")
        res["sample"].append(sampling_row(L, H, workers, have_torch))
    log("start-up of a cached `charlstm sample`...")
    res["startup_s"] = startup_seconds()
    if memory and not quick:
        log("peak RSS training on a 100 MB file...")
        res["memory"] = memory_100mb()
    return res


def _machine() -> str:
    from ..sizing import cpu_name
    return f"{cpu_name() or 'unknown CPU'}, {os.cpu_count()} cores"


OVER_PEAK = ("(Over 100% of peak: the GEMMs timed in that row's turns read less than the "
             "machine gave our steps\n between them; its speed changes within seconds, and "
             "the GEMM is a sample of it, not a bound.)")


def table(res) -> str:
    f = lambda x, s: "-" if x is None else format(x, s)  # noqa: E731
    lines = [f"charlstm bench, {res['date']}, {res['machine']}, {res['workers']} workers; "
             f"PyTorch {res['torch'] or 'not installed'}",
             f"GEMM peak (float32 numpy matmul, {res['workers']} threads), timed in turns with "
             f"each row's steps: median {res['gemm_peak_gflops']:.0f} GFLOP/s", "",
             "Training, T=100, V=65 (chars/s, medians):",
             f"{'config':<20}{'ours':>10}{'GFLOP/s':>9}{'peak':>6}{'of peak':>9}{'PyTorch':>10}"
             f"{'ours/PT':>9}"]
    for r in res["train"]:
        cfg = f"{r['cell']} {r['layers']}x{r['hidden']} B={r['batch']}"
        lines.append(f"{cfg:<20}{r['ours']:>10,.0f}{r['ours_gflops']:>9.1f}"
                     f"{r['peak_gflops']:>6.0f}{100 * r['ours_share']:>8.0f}%"
                     f"{f(r['torch'], ',.0f'):>10}{f(r['ratio'], '.2f'):>9}")
    if any(r["ours_share"] > 1 for r in res["train"]):
        lines.append(OVER_PEAK)
    lines += ["", "Sampling, batch 1 (chars/s, medians). Ours multiplying by int8 weights (the "
              "default of `charlstm sample`), float16 and float32;", "PyTorch (float32) one "
              "character per Python step, with nn.LSTMCell and with the nn.LSTM module; ratios "
              "to the faster:",
              f"{'config':<12}{'ours i8':>9}{'ours f16':>9}{'ours f32':>9}{'PT cell':>9}"
              f"{'PT module':>10}{'i8/PT':>7}{'f16/PT':>7}{'f32/PT':>7}"]
    for r in res["sample"]:
        lines.append(f"{'lstm %dx%d' % (r['layers'], r['hidden']):<12}{r['ours']:>9,.0f}"
                     f"{r['ours_float16']:>9,.0f}{r['ours_float32']:>9,.0f}"
                     f"{f(r['torch_cell'], ',.0f'):>9}{f(r['torch_module'], ',.0f'):>10}"
                     f"{f(r['ratio'], '.1f'):>7}{f(r['ratio_float16'], '.1f'):>7}"
                     f"{f(r['ratio_float32'], '.1f'):>7}")
    lines.append(f"\nStart-up, cached `charlstm sample --length 1`: {res['startup_s']:.2f} s")
    if res.get("memory"):
        m = res["memory"]
        lines.append(f"Peak RSS training on a {m['file_mb']:.0f} MB file: {m['peak_rss_mb']:.0f} MB "
                     f"(limit 2 x size + 300 MB = {m['limit_mb']:.0f} MB)")
    return "\n".join(lines)


def dumps(res) -> str:
    return json.dumps(res, indent=1)
