"""Whether trials should run side by side: training speed of one process on
all the cores against several processes sharing them (docs/tune.md).

    python -m charlstm.tools.parallel [TEXT] [--seconds 25] [--repeats 2]

Each model trains for `seconds` after 3 warm-up steps, first alone on every
core, then as `cores` processes at once on one thread each; one JSON line per
model and repeat: steps/s alone, steps/s of each process, their total against
alone, and the slowest process's speed against alone.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

DEFAULT_TEXT = os.path.join(os.path.dirname(__file__), "..", "..", "..", "shared", "data",
                            "tinyshakespeare.txt")
MODELS = [("lstm", 256, 1), ("lstm", 512, 1), ("lstm", 512, 2), ("gru", 768, 1)]


def steps_per_s(text: str, cell: str, hidden: int, layers: int, threads: int,
                seconds: float) -> float:
    from ..config import ModelConfig
    from ..lab.tune.space import steps_per_s as timed
    return timed(text, ModelConfig(cell=cell, hidden=hidden, layers=layers), threads, seconds,
                 warm=3)


def _child(text, cell, hidden, layers, threads, seconds):
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1")
    return subprocess.Popen([sys.executable, "-m", "charlstm.tools.parallel", "--child", text,
                             cell, str(hidden), str(layers), str(threads), str(seconds)],
                            stdout=subprocess.PIPE, text=True, env=env)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("text", nargs="?", default=DEFAULT_TEXT)
    ap.add_argument("--seconds", type=float, default=25.0)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--child", nargs=6, help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.child:
        text, cell, hidden, layers, threads, seconds = a.child
        print(steps_per_s(text, cell, int(hidden), int(layers), int(threads), float(seconds)))
        return
    if not os.path.exists(a.text):
        sys.exit(f"error: {a.text} not found; give a text")
    cores = os.cpu_count() or 1
    for cell, hidden, layers in MODELS:
        for rep in range(a.repeats):
            alone = float(_child(a.text, cell, hidden, layers, cores, a.seconds)
                          .communicate()[0].split()[-1])
            ps = [_child(a.text, cell, hidden, layers, 1, a.seconds) for _ in range(cores)]
            each = [float(p.communicate()[0].split()[-1]) for p in ps]
            print(json.dumps({"cell": cell, "size": f"{layers}x{hidden}", "repeat": rep,
                              "alone": alone, "each": each,
                              "total_vs_alone": sum(each) / alone,
                              "slowest_vs_alone": min(each) / alone}), flush=True)


if __name__ == "__main__":
    main()
