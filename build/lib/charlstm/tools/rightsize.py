"""The default model against a grid, at the same budget (`make rightsize`).

For each text and each budget in minutes: `charlstm train TEXT --minutes M`
with the defaults (the model sizing.choose picks), then the same with
`--hidden H` for every H of the grid (1-layer LSTMs; every other setting
chosen as the defaults choose it). Each run is a separate process, one at a
time, on a quiet machine. Reported: each run's best validation loss and
steps, the grid's best, and the default's gap to it.

    python -m charlstm.tools.rightsize TEXT [TEXT ...] --minutes 1 3 10 \\
        --json rightsize.json

Texts the rule was not fitted on belong here (docs/sizing.md names the
ones it was).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

GRID = (128, 256, 512, 768)


def run_one(text: str, minutes: float, hidden: int | None, folder: str) -> dict:
    out = os.path.join(folder, f"{'default' if hidden is None else hidden}-{minutes:g}.npz")
    cmd = [sys.executable, "-m", "charlstm", "train", text, "--minutes", f"{minutes:g}",
           "--out", out, "--no-progress", "--force"]
    if hidden is not None:
        cmd += ["--hidden", str(hidden)]
    t0 = time.time()
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode != 0:
        raise SystemExit(f"failed: {' '.join(cmd)}\n{p.stderr}")
    from charlstm import checkpoint as ckpt
    ck = ckpt.load(out)
    chosen = next((ln for ln in p.stderr.splitlines() if ln.startswith("model: ")), "")
    return {"charlstm": "rightsize log", "text": os.path.basename(text), "minutes": minutes, "hidden": ck.model.hidden,
            "default": hidden is None, "dropout": ck.model.dropout, "lr": ck.train.lr,
            "steps": ck.state["step"], "best_val": ck.state["best_val"],
            "wall_s": round(time.time() - t0, 1), "choice": chosen}


def table(rows: list[dict]) -> str:
    lines = ["| text | minutes | default (hidden: best val, steps) | " +
             " | ".join(f"{h}" for h in GRID) + " | grid's best | gap |",
             "|---|---|---|" + "---|" * len(GRID) + "---|---|"]
    keys = sorted({(r["text"], r["minutes"]) for r in rows}, key=lambda k: (k[0], k[1]))
    for text, minutes in keys:
        rs = [r for r in rows if r["text"] == text and r["minutes"] == minutes]
        d = next((r for r in rs if r["default"]), None)
        grid = {r["hidden"]: r for r in rs if not r["default"]}
        best = min((r["best_val"] for r in grid.values()), default=None)
        cells = [f"{grid[h]['best_val']:.4f} ({grid[h]['steps']:,})" if h in grid else "–"
                 for h in GRID]
        gap = f"{d['best_val'] - best:+.4f}" if d and best is not None else "–"
        dcell = (f"{d['hidden']}: {d['best_val']:.4f} ({d['steps']:,})" if d else "–")
        best_s = "–" if best is None else f"{best:.4f}"
        lines.append(f"| {text} | {minutes:g} | {dcell} | " + " | ".join(cells)
                     + f" | {best_s} | {gap} |")
    return "\n".join(lines)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("texts", nargs="+")
    ap.add_argument("--minutes", type=float, nargs="+", default=[1.0, 3.0])
    ap.add_argument("--grid", type=int, nargs="+", default=list(GRID))
    ap.add_argument("--json", default=None, help="append each run here as it ends (resumable)")
    a = ap.parse_args(argv)
    rows = []
    if a.json:
        from charlstm import files
        files.check_output(a.json, "log", option="--json", continuing=True)
    if a.json and os.path.exists(a.json):
        with open(a.json) as fh:
            rows = [json.loads(line) for line in fh if line.strip()]
    done = {(r["text"], r["minutes"], None if r["default"] else r["hidden"]) for r in rows}
    with tempfile.TemporaryDirectory() as folder:
        for text in a.texts:
            for minutes in a.minutes:
                for hidden in [None] + a.grid:
                    if (os.path.basename(text), minutes, hidden) in done:
                        continue
                    r = run_one(text, minutes, hidden, folder)
                    rows.append(r)
                    print(f"{r['text']} {minutes:g} min, "
                          f"{'default ' + str(r['hidden']) if hidden is None else hidden}: "
                          f"best {r['best_val']:.4f} in {r['steps']:,} steps", flush=True)
                    if a.json:
                        with open(a.json, "a") as fh:
                            fh.write(json.dumps(r) + "\n")
    print(table(rows))


if __name__ == "__main__":
    main()
