"""What `charlstm inspect` costs on a big model (a benchmark, not a test):
the peak memory (RSS) of the whole process and the page's size, for a 1×768
LSTM (random weights: the cost does not depend on training) over --chars of
a text. Targets (issue 39): at most 600 MB and a page of at most 3 MB for
20,000 characters.

    python -m charlstm.tools.inspectcost [--hidden 768] [--chars 20000] [--repeats 3]
"""
from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time

import numpy as np


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--hidden", type=int, default=768)
    ap.add_argument("--layers", type=int, default=1)
    ap.add_argument("--chars", type=int, default=20_000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--ablate-top", type=int, default=0)
    a = ap.parse_args(argv)
    from charlstm import checkpoint as ckpt
    from charlstm.config import ModelConfig, TrainConfig
    from charlstm.model import Model
    with tempfile.TemporaryDirectory() as d:
        rng = np.random.default_rng(0)
        words = ["the", "king", "(and)", '"queen"', "of", "rome", "said", "\n", "    to"]
        text = " ".join(rng.choice(words, a.chars // 3))[:a.chars + 10]
        tp = os.path.join(d, "t.txt")
        with open(tp, "w") as fh:
            fh.write(text)
        vocab = "".join(sorted(set(text)))
        cfg = ModelConfig(hidden=a.hidden, layers=a.layers, vocab_size=len(vocab))
        m = Model(cfg).init(rng)
        path = os.path.join(d, "m.npz")
        ckpt.save(ckpt.Checkpoint(model=cfg, train=TrainConfig(), vocab=vocab,
                                  params={k: v for k, v in m.p.items()}), path)
        page = os.path.join(d, "p.html")
        wrapper = ("import resource, subprocess, sys\n"
                   "p = subprocess.run(sys.argv[1:], capture_output=True)\n"
                   "print(p.returncode, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)")
        rss, secs = [], []
        for _ in range(a.repeats):
            cmd = [sys.executable, "-m", "charlstm", "inspect", path, "--text", tp, "--chars",
                   str(a.chars), "--html", page, "--force", "--json"]
            if a.ablate_top:
                cmd += ["--ablate-top", str(a.ablate_top)]
            t0 = time.time()
            out = subprocess.run([sys.executable, "-c", wrapper] + cmd, capture_output=True,
                                 text=True, check=True).stdout.split()
            secs.append(time.time() - t0)
            if out[0] != "0":
                raise SystemExit("inspect failed")
            rss.append(int(out[1]) / 1024)
        size = os.path.getsize(page) / 1e6
        print(f"inspect, lstm {a.layers}x{a.hidden}, {a.chars:,} characters: peak RSS median "
              f"{np.median(rss):.0f} MB (runs: {', '.join(f'{r:.0f}' for r in rss)}), page "
              f"{size:.2f} MB, {np.median(secs):.1f} s")
        _ = resource


if __name__ == "__main__":
    main()
