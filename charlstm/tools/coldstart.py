"""Cold start: how long charlstm takes to start when nothing is compiled.

With an empty kernel cache (a new temporary folder for each repeat), times
the first `charlstm train FILE --steps 1 --hidden 64`, then the first
`charlstm sample` of the model it wrote, each in a process of its own: wall
time and CPU time (user + sys, less sensitive to other work on the machine),
and the kernels each compiled; medians of --repeats. Then, with
--second-install, a second venv with `pip install .` of this checkout
(non-editable: another install path) trains with the cache the first made,
and should compile nothing. With --breakdown, the compile time of every
kernel those two commands compile, and of every specialisation Numba
compiles for them (the thread's CPU time, inclusive and exclusive of the
kernels it calls).

    python -m charlstm.tools.coldstart FILE [--repeats 3] [--second-install] [--breakdown]
    make coldstart [COLDSTART_TEXT=FILE]

A benchmark, not a test: it prints the targets (on a quiet machine, first
train ≤ 30 s, first sample after it ≤ 15 s) beside what it measured, and the
load average; it fails when a command does, or when the second install
compiles.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import resource
import shutil
import statistics
import subprocess
import sys
import sysconfig
import tempfile
import time

TARGETS = {"train": 30.0, "sample": 15.0}          # seconds, on a quiet machine
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _env(cache: str) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_CACHE_DIR"}
    return dict(env, CHARLSTM_CACHE_DIR=cache)


def timed(cmd: list[str], env: dict, cwd: str) -> dict:
    """Run cmd; its wall time, its CPU time (user + sys of the process and its
    children) and what it said about compiling."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    p = subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if p.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({p.returncode}):\n{p.stderr[-3000:]}")
    m = re.search(r"Compiled (\d+) kernels? in", p.stderr)
    return {"wall": wall, "cpu": (after.ru_utime - before.ru_utime) + (after.ru_stime
                                                                        - before.ru_stime),
            "kernels": int(m.group(1)) if m else 0, "stderr": p.stderr}


def cold_run(python: str, text: str, hidden: int, tmp: str) -> dict:
    """One repeat: an empty cache, train --steps 1, then sample."""
    env = _env(os.path.join(tmp, "cache"))
    out = os.path.join(tmp, "m.npz")
    load = os.getloadavg()[0]
    train = timed([python, "-m", "charlstm", "train", os.path.abspath(text), "--steps", "1",
                   "--hidden", str(hidden), "--out", out, "--no-progress"], env, tmp)
    sample = timed([python, "-m", "charlstm", "sample", out, "--length", "200",
                    "--rng-seed", "1"], env, tmp)
    return {"train": train, "sample": sample, "load": load}


def second_install(python: str, text: str, hidden: int, tmp: str) -> dict:
    """The first install trains (and compiles) into an empty cache; then a new
    venv with `pip install --no-deps .` of this checkout trains with that
    cache. Its dependencies come from this environment (a .pth file): what
    is measured is where charlstm itself is installed."""
    if not os.path.exists(os.path.join(ROOT, "pyproject.toml")):
        raise SystemExit("--second-install needs a source checkout (pyproject.toml)")
    env = _env(os.path.join(tmp, "cache"))
    first = timed([python, "-m", "charlstm", "train", os.path.abspath(text), "--steps", "1",
                   "--hidden", str(hidden), "--out", os.path.join(tmp, "a.npz"),
                   "--no-progress"], env, tmp)
    venv, src = os.path.join(tmp, "venv2"), os.path.join(tmp, "src")
    os.makedirs(src)
    for name in ("pyproject.toml", "README.md"):    # what the wheel is built from, copied:
        shutil.copy(os.path.join(ROOT, name), src)  # pip builds in the folder it is given
    shutil.copytree(os.path.join(ROOT, "charlstm"), os.path.join(src, "charlstm"),
                    ignore=shutil.ignore_patterns("__pycache__", "*.nbi", "*.nbc"))
    subprocess.run([python, "-m", "venv", venv], check=True)
    py2 = os.path.join(venv, "bin", "python")
    subprocess.run([py2, "-m", "pip", "install", "-q", "--no-deps", src], check=True, cwd=tmp)
    site2 = subprocess.run([py2, "-c", "import sysconfig; print(sysconfig.get_paths()"
                            "['purelib'])"], capture_output=True, text=True, check=True)
    with open(os.path.join(site2.stdout.strip(), "_charlstm_deps.pth"), "w") as fh:
        fh.write(sysconfig.get_paths()["purelib"] + "\n")
    env2 = {k: v for k, v in env.items() if k != "PYTHONPATH"}   # its own copy, not ours
    where = subprocess.run([py2, "-c", "import charlstm; print(charlstm.__file__)"], env=env2,
                           capture_output=True, text=True, check=True, cwd=tmp).stdout.strip()
    second = timed([py2, "-m", "charlstm", "train", os.path.abspath(text), "--steps", "1",
                    "--hidden", str(hidden), "--out", os.path.join(tmp, "b.npz"),
                    "--no-progress"], env2, tmp)
    return {"first": first, "second": second, "where": where,
            "compiled": "ompiling" in second["stderr"] or second["cpu"] > first["cpu"] / 2}


BREAKDOWN = r"""
import json, sys, time
from numba.core import event
from charlstm import warmup
records, stack = [], []
class Timer(event.Listener):
    def on_start(self, ev):
        stack.append([time.thread_time(), 0.0])
    def on_end(self, ev):
        t0, inner = stack.pop()
        dt = time.thread_time() - t0
        if stack:
            stack[-1][1] += dt
        d = ev.data["dispatcher"]
        records.append([unit, len(stack), d.py_func.__module__.rsplit(".", 1)[-1] + "."
                        + d.py_func.__qualname__, ", ".join(map(str, ev.data["args"])), dt,
                        dt - inner])
event.register("numba:compile", Timer())
cell = sys.argv[1]
units = []
for command, todo in (("train", warmup.train_units(cell)),
                      ("sample", warmup.sample_units(cell, "int8"))):
    for u in warmup.missing(todo):
        unit = f"{command}: {u.label}"
        t0, c0 = time.perf_counter(), time.thread_time()
        u.kernel.compile(u.argtypes)
        units.append([unit, time.perf_counter() - t0, time.thread_time() - c0])
print(json.dumps({"units": units, "records": records}))
"""


def breakdown(python: str, cell: str, tmp: str) -> dict:
    """Every kernel `train --cell CELL` and then `sample` compile (default
    settings), in an empty cache, and the specialisations Numba compiles for each."""
    p = subprocess.run([python, "-c", BREAKDOWN, cell], env=_env(os.path.join(tmp, "cache")),
                       capture_output=True, text=True, cwd=tmp)
    if p.returncode != 0:
        raise SystemExit(f"the breakdown failed:\n{p.stderr[-3000:]}")
    return json.loads(p.stdout)


def _median(runs, command, key):
    return statistics.median(r[command][key] for r in runs)


def report(runs, second, parts) -> str:
    lines = [f"cold start, {time.strftime('%Y-%m-%d %H:%M')}, {os.cpu_count()} cores; "
             "load average (1 min) at each start in the last column", "",
             f"{'run':<8}{'train wall':>11}{'CPU':>8}{'kernels':>8}"
             f"{'sample wall':>13}{'CPU':>8}{'kernels':>8}{'load':>7}"]
    for k, r in enumerate(runs, 1):
        lines.append(f"{k:<8}{r['train']['wall']:>10.1f}s{r['train']['cpu']:>7.1f}s"
                     f"{r['train']['kernels']:>8}{r['sample']['wall']:>12.1f}s"
                     f"{r['sample']['cpu']:>7.1f}s{r['sample']['kernels']:>8}{r['load']:>7.1f}")
    if runs:
        lines.append(f"{'median':<8}{_median(runs, 'train', 'wall'):>10.1f}s"
                     f"{_median(runs, 'train', 'cpu'):>7.1f}s{'':>8}"
                     f"{_median(runs, 'sample', 'wall'):>12.1f}s"
                     f"{_median(runs, 'sample', 'cpu'):>7.1f}s")
        lines.append(f"targets on a quiet machine: first train ≤ {TARGETS['train']:.0f} s, "
                     f"first sample after it ≤ {TARGETS['sample']:.0f} s (wall)")
    if second:
        lines += ["", f"second install ({second['where']}):",
                  f"  first install's train: {second['first']['wall']:.1f} s wall, "
                  f"{second['first']['cpu']:.1f} s CPU, {second['first']['kernels']} kernels "
                  "compiled",
                  f"  second install's train: {second['second']['wall']:.1f} s wall, "
                  f"{second['second']['cpu']:.1f} s CPU, "
                  + ("COMPILED AGAIN" if second["compiled"] else "nothing compiled")]
    if parts:
        lines += ["", "compile breakdown (s: the compiling thread's CPU time, then wall time):"]
        for unit, wall, cpu in parts["units"]:
            lines.append(f"  {cpu:6.2f} {wall:6.2f}  {unit}")
        lines += ["", "every specialisation compiled, by its own time (exclusive of the kernels "
                  "it calls; inclusive beside it):"]
        recs = sorted(parts["records"], key=lambda r: -r[5])
        for unit, depth, name, args, inc, exc in recs[:40]:
            lines.append(f"  {exc:6.2f} {inc:6.2f}  {name}({args[:90]})")
        lines.append(f"  ({len(recs)} in all, {sum(r[5] for r in recs):.1f} s)")
    return "\n".join(lines)


def _without_stderr(x):
    if isinstance(x, dict):
        return {k: _without_stderr(v) for k, v in x.items() if k != "stderr"}
    return [_without_stderr(v) for v in x] if isinstance(x, list) else x


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("text", help="a UTF-8 text to train on")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--hidden", type=int, default=64)
    ap.add_argument("--second-install", action="store_true",
                    help="also check that a second venv (pip install .) compiles nothing")
    ap.add_argument("--breakdown", action="store_true",
                    help="also time every kernel and specialisation compiled (LSTM)")
    ap.add_argument("--json", help="also write the measurements to this file")
    a = ap.parse_args(argv)
    python = sys.executable
    runs, second, parts = [], None, None
    for _ in range(a.repeats):
        tmp = tempfile.mkdtemp(prefix="charlstm-coldstart-")
        try:
            runs.append(cold_run(python, a.text, a.hidden, tmp))
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        print(f"run {len(runs)}: train {runs[-1]['train']['wall']:.1f} s, sample "
              f"{runs[-1]['sample']['wall']:.1f} s", file=sys.stderr, flush=True)
    if a.second_install:
        tmp = tempfile.mkdtemp(prefix="charlstm-coldstart-")
        try:
            second = second_install(python, a.text, a.hidden, tmp)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    if a.breakdown:
        tmp = tempfile.mkdtemp(prefix="charlstm-coldstart-")
        try:
            parts = breakdown(python, "lstm", tmp)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    print(report(runs, second, parts))
    if a.json:
        with open(a.json, "w") as fh:
            json.dump(_without_stderr({"runs": runs, "second": second, "breakdown": parts}), fh,
                      indent=1)
    if second and second["compiled"]:
        sys.exit(1)


if __name__ == "__main__":
    main()
