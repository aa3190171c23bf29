"""How `charlstm inspect` shows a unit: text whose characters' backgrounds are
coloured by the unit's value after reading them, blue at −1, white at 0, red
at +1 (as in Karpathy, Johnson & Fei-Fei 2015), in the terminal (print_report) or on one
self-contained HTML page (inline CSS, data and script; nothing from the
network)."""
from __future__ import annotations

import base64
import html
import os
import sys

import numpy as np

from .probe import MIN_RUNS, parse_unit, states
from .features import FEATURES


def rgb(v: float) -> tuple[int, int, int]:
    """Blue at −1, white at 0, red at +1 (values beyond are clipped)."""
    v = max(-1.0, min(1.0, float(v)))
    if v < 0:
        k = int(round(255 * (1 + v)))
        return k, k, 255
    k = int(round(255 * (1 - v)))
    return 255, k, k


def colour_mode(stream, env=os.environ) -> str:
    """'plain' where NO_COLOR is set or the stream is not a terminal;
    'truecolor' where COLORTERM says so; else '256'."""
    if env.get("NO_COLOR") or not (hasattr(stream, "isatty") and stream.isatty()):
        return "plain"
    return "truecolor" if env.get("COLORTERM", "").lower() in ("truecolor", "24bit") else "256"


def _xterm256(r, g, b) -> int:
    q = lambda x: int(round(x / 255 * 5))  # noqa: E731
    return 16 + 36 * q(r) + 6 * q(g) + q(b)


def coloured(text: str, values: np.ndarray, mode: str, width: int = 100) -> str:
    """text with each character's background coloured by values (same length),
    a newline shown as ↵ in its colour; in 'plain' mode, each line of text is
    followed by a line of digits, one under each character: 0 for −1 … 9 for
    +1 (so 4 and 5 are near 0). Lines longer than width are wrapped."""
    out, start = [], 0
    for line in text.split("\n"):
        end = start + len(line)
        nl = end < len(text)
        chars = [ch if ch.isprintable() else "·" for ch in line] + (["↵"] if nl else [])
        vals = values[start:end + nl]
        for k in range(0, max(1, len(chars)), width):
            cs, vs = chars[k:k + width], vals[k:k + width]
            if mode == "plain":
                out.append("".join(cs))
                out.append("".join(str(int(round((min(1.0, max(-1.0, float(x))) + 1) * 4.5)))
                                   for x in vs))
                continue
            row = []
            for ch, x in zip(cs, vs):
                r, g, b = rgb(x)
                fg = "30" if 0.299 * r + 0.587 * g + 0.114 * b > 110 else "97"
                bg = f"48;2;{r};{g};{b}" if mode == "truecolor" else f"48;5;{_xterm256(r, g, b)}"
                row.append(f"\x1b[{fg};{bg}m{ch}")
            out.append("".join(row) + "\x1b[0m")
        start = end + 1
    return "\n".join(out)


# ---------------------------------------------------------------------------
# Colour scales: each unit by its own range.

def unit_range(v: np.ndarray) -> tuple[float, float]:
    """The range a unit is coloured over: its 1st to 99th percentile (blue to
    red, white midway), so that a unit whose value runs from 0.1 to 29.7 is
    not one colour all along; its minimum and maximum when those percentiles
    meet (a gate shut nearly everywhere)."""
    v = np.asarray(v, np.float64)
    lo, hi = (float(x) for x in np.percentile(v, [1, 99]))
    if hi - lo <= 1e-9 * max(1.0, abs(hi)):
        lo, hi = float(v.min()), float(v.max())
    if hi <= lo:
        hi = lo + 1.0
    return lo, hi


def scaled(v: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """v on the colour ramp: lo → −1 (blue), midway → 0 (white), hi → +1 (red)."""
    return np.clip(2 * (np.asarray(v, np.float64) - lo) / (hi - lo) - 1, -1, 1)


RANGE_NOTE = ("coloured by the unit's own range: its 1st percentile blue, its 99th red, "
              "midway white")


# ---------------------------------------------------------------------------
# The HTML page.


def print_report(res: dict, rec: dict, text: str, model, unit: str | None, excerpt: int,
                 html_path: str, echo) -> None:
    """inspect's report in the terminal: each feature's best units, its chance
    level and what holding the best at zero costs; each unit shown as coloured
    text; the gates' saturation, the counters, the ablations, and the page."""
    mode = colour_mode(sys.stdout)
    echo(res["subtitle"])
    echo(f"recorded in {res['seconds']['record']:.2f} s; score: Spearman's |ρ| between a "
               "unit's value after each character and a count, 2·|AUC − ½| for a yes-or-no "
               "feature (1: perfect, 0: none); chance: the best score any unit gets against "
               "the feature shifted round the text")
    for feat, units in res["features"].items():
        i = res["support"][feat]
        where = (f"{i['runs']:,} run{'s' if i['runs'] != 1 else ''}, {i['positions']:,} "
                 f"character{'s' if i['positions'] != 1 else ''}")
        if not units:
            echo(f"\n{feat} ({FEATURES[feat][1]}): too few to score ({where}; fewer "
                       f"than {MIN_RUNS} runs)")
            continue
        echo(f"\n{feat} ({FEATURES[feat][1]}; {where}; chance {i['chance']:.3f}): "
                   + ", ".join(f"{u['layer']}:{u['unit']} {u['state']} {u['score']:.3f}"
                               for u in units))
        e = res["effects"].get(feat)
        if e and e["on_feature"] is not None:
            echo(f"  held at zero, unit {e['unit'][0]}:{e['unit'][1]} costs "
                       f"{e['on_feature']:+.3f} nats/char on the feature's positions beyond "
                       f"its cost elsewhere ({e['overall']:+.3f} overall)")
    shown = ([parse_unit(unit, model, rec)] if unit else
             [(u[0]["layer"], u[0]["unit"], u[0]["state"], f)
              for f, u in res["features"].items() if u])
    st = states(rec)
    for item in shown:
        l, u, s = item[:3]
        v = st[s][l, :, u].astype(np.float32)
        lo, hi = unit_range(v)
        label = f" (best for {item[3]})" if len(item) > 3 else ""
        echo(f"\nlayer {l}, unit {u}, {s}{label}, {RANGE_NOTE} ({lo:.3g} to "
                   f"{hi:.3g}):")
        echo(coloured(text[:excerpt], scaled(v[:excerpt], lo, hi), mode))
    if mode == "plain":
        echo("\n(digits under each character: the unit's value on its own range, 0 at its "
                   "1st percentile ... 9 at its 99th)")
    for g, sat in res["gates"].items():
        if "always_open" in sat:
            echo(f"\ngate {g}: {len(sat['always_open'])} units above 0.9 for 90% of the "
                       f"text (long memory), {len(sat['always_shut'])} below 0.1 for 90%")
    if res["counters"]:
        echo("\ncounters (c moves by a near-constant step while f, i > 0.9): " + ", ".join(
            f"{c['layer']}:{c['unit']} step {c['step']:+.3f} over {100 * c['coverage']:.0f}% "
            "of the text" for c in res["counters"][:5]))
    else:
        echo(f"\ncounters: {res['counters_note']}")
    for a in res["ablation"]:
        units = ", ".join(f"{l}:{u}" for l, u in a["units"])
        echo(f"\nheld at zero: {units}: loss {a['loss']:.4f} nats/char "
                   f"({a['loss_change']:+.4f}; {res['base_loss']:.4f} without)")
        for feat, by in a["by_class"].items():
            echo(f"  {feat}: " + ", ".join(f"{c} {v:+.4f}" for c, v in by.items()
                                                if v is not None))
        echo("  moved most: " + "; ".join(
            f"{m['char']!r} after {m['context'][-12:]!r} {m['p_before']:.2f}→{m['p_after']:.2f}"
            for m in a["moved"][:5]))
    for feat, t in res.get("ablation_top", {}).items():
        rand = np.array([[np.nan if v is None else v for v in row] for row in t["random"]])
        echo(f"\n{feat}: its top-k units held at zero: "
                   + " ".join(f"{v:+.3f}" if v is not None else "-" for v in t["top"])
                   + "; k random units (mean of 5): "
                   + " ".join(f"{v:+.3f}" for v in np.nanmean(rand, axis=0)))
    echo(f"\npage: {html_path}")
    if res["suggestion"]:
        echo(f"try: {res['suggestion']}")


PICK_CHARS = 800           # characters for which every unit's h and c go into the page
PAGE_CHARS = 20_000        # characters shown on the page (the scores use all of --chars)

PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><meta name="generator" content="charlstm inspect">
<title>charlstm inspect: %(title)s</title>
<style>
body{font:14px/1.45 system-ui,sans-serif;margin:20px auto;max-width:1200px;padding:0 14px;color:#222}
h1{font-size:21px;margin:0} h2{font-size:16px;margin:26px 0 6px;border-bottom:1px solid #ddd}
.note{color:#555;font-size:12.5px} table{border-collapse:collapse}
td,th{padding:2px 8px;border-bottom:1px solid #eee;text-align:right} th{background:#f5f5f5}
td:first-child,th:first-child{text-align:left}
.panel{margin:14px 0 22px} .panel h3{font-size:14px;margin:0 0 4px}
.txt{font:12.5px/1.55 ui-monospace,Menlo,Consolas,monospace;white-space:pre-wrap;word-break:break-all;
 border:1px solid #ddd;padding:6px;max-height:360px;overflow:auto;background:#fff}
.txt span{cursor:default} .nl{color:#999}
#tip{position:fixed;display:none;background:#222;color:#fff;font:12px ui-monospace,monospace;
 padding:6px 8px;border-radius:4px;pointer-events:none;z-index:9;white-space:pre}
.charts{display:flex;flex-wrap:wrap;gap:12px} svg{border:1px solid #ddd;background:#fff}
svg text{font-size:10.5px;fill:#333} .dot{cursor:pointer}
.legend span{display:inline-block;width:22px;height:12px;vertical-align:middle}
.few{color:#777}
svg.chart text{font-size:11px;fill:#333} svg .t{font-size:13px;font-weight:600}
svg .g{stroke:#eee} svg .f{fill:none;stroke:#999} svg .h{stroke:#888;stroke-dasharray:2,3}
svg .hl{fill:#777;font-size:10px} svg .lg{font-size:10.5px}
%(css)s
</style></head><body>
<h1>charlstm inspect</h1>
<p class="note">%(subtitle)s%(shown_note)s</p>
<p class="legend note">colour of each character's background: the unit's value after reading it,
on the unit's own range: <span style="background:#0000ff"></span> its 1st percentile
<span style="background:#8080ff"></span>
<span style="background:#fff;border:1px solid #ccc"></span> midway <span style="background:#ff8080"></span>
<span style="background:#ff0000"></span> its 99th percentile · hover over a character for the
value itself and the model's five likeliest next characters</p>
<h2>Cells that track features of the text</h2>
<p class="note">score, over the %(n)s characters: for a count (line position, depth), Spearman's
|ρ| between the unit's value and the feature; for a yes-or-no feature (in quotes), 2·|AUC − ½|,
how well the unit's value tells the two apart. 1: a perfect relation, whatever the unit's scale;
0: none. chance: the best score of any unit against the same feature shifted round the text
(its runs kept, their places lost): a score near it says nothing. A feature with fewer than
%(min_runs)s runs (quoted strings, bracketed groups, lines) is too few to score.</p>
<div id="panels"></div>
%(too_few)s
<h2>Any unit</h2>
<p class="note">h and c of every unit, for the first %(npick)s characters.
Layer <select id="pl"></select> unit <input id="pu" type="number" min="0" value="0" style="width:5em">
state <select id="ps"></select> <button id="pgo">show</button></p>
<div class="panel" id="picked"></div>
<h2>Gate saturation</h2>
<p class="note">Each dot is a unit: the share of characters at which its gate is below 0.1
(left-saturated, x) and above 0.9 (right-saturated, y) (Karpathy et al. 2015, section 4.2).
Click a dot to show its unit's %(first_state)s above.</p>
<div class="charts">%(scatter)s</div>
%(tables)s
<div id="tip"></div>
<script type="application/json" id="data">%(data)s</script>
<script>
(function(){
const D = JSON.parse(document.getElementById('data').textContent);
const text = D.text, N = text.length;
function b64(s){const r = atob(s), a = new Uint8Array(r.length);
  for (let i = 0; i < r.length; i++) a[i] = r.charCodeAt(i); return a.buffer;}
function half(u){const e = (u >> 10) & 31, m = u & 1023, s = u >> 15 ? -1 : 1;
  return e === 0 ? s * m * Math.pow(2, -24) : e === 31 ? s * Infinity : s * (1 + m / 1024) * Math.pow(2, e - 15);}
const nid = D.next.wide ? new Uint16Array(b64(D.next.ids)) : new Uint8Array(b64(D.next.ids));
const np_ = new Uint8Array(b64(D.next.p)), K = D.next.k;
function esc(c){return c==='<'?'&lt;':c==='>'?'&gt;':c==='&'?'&amp;':c;}
function bucket(v, lo, hi){const x = 2 * (v - lo) / (hi - lo) - 1;
  return Math.max(0, Math.min(20, Math.round((Math.max(-1, Math.min(1, x)) + 1) * 10)));}
function render(el, vals, lo, hi){
  const parts = new Array(vals.length);
  for (let i = 0; i < vals.length; i++){
    const c = text[i], k = bucket(vals[i], lo, hi);
    parts[i] = c === '\\n' ? '<span class="v'+k+' nl">↵</span>\\n' : '<span class="v'+k+'">'+esc(c)+'</span>';
  }
  el.innerHTML = parts.join('');
  el._vals = vals;
}
const tip = document.getElementById('tip');
function hover(e){
  const t = e.target;
  if (t.tagName !== 'SPAN' || !t.parentNode._vals){ tip.style.display = 'none'; return; }
  const box = t.parentNode, i = Array.prototype.indexOf.call(box.children, t);
  let s = JSON.stringify(text[i]) + '  value ' + box._vals[i].toPrecision(4) + '\\nnext:';
  for (let k = 0; k < K; k++)
    s += '\\n  ' + JSON.stringify(D.vocab[nid[i * K + k]]) + ' ' + (np_[i * K + k] / 2.55).toFixed(1) + '%%';
  tip.textContent = s; tip.style.display = 'block';
  tip.style.left = Math.min(e.clientX + 14, innerWidth - 200) + 'px'; tip.style.top = (e.clientY + 14) + 'px';
}
function panel(parent, title, note, vals, lo, hi){
  const d = document.createElement('div'); d.className = 'panel';
  d.innerHTML = '<h3></h3><div class="note"></div><div class="txt"></div>';
  d.children[0].textContent = title; d.children[1].textContent = note;
  const box = d.children[2];
  render(box, vals, lo, hi);
  box.addEventListener('mousemove', hover); box.addEventListener('mouseleave', () => tip.style.display = 'none');
  parent.appendChild(d); return d;
}
function halves(s){const u = new Uint16Array(b64(s)), out = new Float32Array(u.length);
  for (let i = 0; i < u.length; i++) out[i] = half(u[i]); return out;}
const P = document.getElementById('panels');
for (const p of D.panels) panel(P, p.title, p.note, halves(p.raw), p.lo, p.hi);
const pick = D.pick, M = pick.n, all = new Int8Array(b64(pick.b64));
const pl = document.getElementById('pl'), ps = document.getElementById('ps'), pu = document.getElementById('pu');
for (let l = 0; l < pick.layers; l++) pl.add(new Option(l, l));
for (const s of pick.states) ps.add(new Option(s, s));
pu.max = pick.hidden - 1;
function show(l, u, s){
  pl.value = l; pu.value = u; ps.value = s;           // the form says what the panel shows
  const si = pick.states.indexOf(s), H = pick.hidden, j = (si * pick.layers + l) * H + u;
  const q = all.subarray(j * M, (j + 1) * M), vals = new Float32Array(M);
  const mn = pick.min[j], mx = pick.max[j];
  for (let i = 0; i < M; i++) vals[i] = mn + (q[i] + 127) / 254 * (mx - mn);
  const holder = document.getElementById('picked'); holder.innerHTML = '';
  panel(holder, 'layer ' + l + ', unit ' + u + ', ' + s, D.range_note, vals, pick.lo[j], pick.hi[j]);
}
document.getElementById('pgo').onclick = () => show(+pl.value, Math.max(0, Math.min(pick.hidden - 1, +pu.value)), ps.value);
for (const c of document.querySelectorAll('.dot'))
  c.addEventListener('click', () => { show(+c.dataset.l, +c.dataset.u, pick.states[0]);
    document.getElementById('picked').scrollIntoView(); });
const first = D.panels.find(p => pick.states.includes(p.state));
show(first ? first.layer : 0, first ? first.unit : 0, first ? first.state : pick.states[0]);
if (location.hash === '#selftest') {          // for the browser test: hover the 5th character
  const s = document.querySelector('.txt span:nth-child(5)');
  const r = s.getBoundingClientRect();
  s.dispatchEvent(new MouseEvent('mousemove', {bubbles: true, clientX: r.left + 1, clientY: r.top + 1}));
  const out = document.createElement('pre'); out.id = 'selftest';
  out.textContent = tip.textContent + '\\npicker ' + pl.value + ':' + pu.value + ':' + ps.value;
  document.body.appendChild(out);
}
})();
</script></body></html>
"""


def _b64(a: np.ndarray) -> str:
    return base64.b64encode(np.ascontiguousarray(a).tobytes()).decode()


def _scatter(name: str, sat: dict) -> str:
    """One gate's saturation scatter: left-saturated share (x) against
    right-saturated share (y), a dot per unit, coloured by layer."""
    W, Hh, m = 250, 250, 34
    pts = []
    cols = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e"]
    for l, (xs, ys) in enumerate(zip(sat["left"], sat["right"])):
        for u, (x, y) in enumerate(zip(xs, ys)):
            px, py = m + x * (W - m - 8), Hh - m + 8 - y * (Hh - m - 8) - 8
            pts.append(f'<circle class="dot" data-l="{l}" data-u="{u}" cx="{px:.1f}" '
                       f'cy="{py:.1f}" r="2.6" fill="{cols[l % 5]}" fill-opacity="0.55">'
                       f'<title>layer {l} unit {u}: {100 * x:.0f}% below 0.1, '
                       f'{100 * y:.0f}% above 0.9</title></circle>')
    axes = (f'<line x1="{m}" y1="8" x2="{m}" y2="{Hh - m}" stroke="#999"/>'
            f'<line x1="{m}" y1="{Hh - m}" x2="{W - 8}" y2="{Hh - m}" stroke="#999"/>'
            f'<line x1="{m}" y1="{Hh - m}" x2="{W - 8}" y2="8" stroke="#ddd"/>'
            f'<text x="{(W + m) / 2}" y="{Hh - 8}" text-anchor="middle">share below 0.1</text>'
            f'<text transform="translate(11,{(Hh - m) / 2}) rotate(-90)" text-anchor="middle">'
            f'share above 0.9</text><text x="{m + 6}" y="20" font-weight="600">gate {name}</text>'
            f'<text x="{m - 3}" y="{Hh - m + 12}" text-anchor="end">0</text>'
            f'<text x="{W - 8}" y="{Hh - m + 12}" text-anchor="end">1</text>'
            f'<text x="{m - 4}" y="14" text-anchor="end">1</text>')
    return f'<svg width="{W}" height="{Hh}" viewBox="0 0 {W} {Hh}">{axes}{"".join(pts)}</svg>'


def write_page(path: str, res: dict, rec: dict, text: str, vocab: str, top_ids, top_p,
               title: str) -> str:
    """The page: a panel per scored feature's best unit (its raw values as
    float16, coloured by its own range), the features too few to score, a
    picker for any unit's h and c over the first PICK_CHARS characters
    (int8 over each unit's range), the gate-saturation scatters and the
    counters. The next-character guesses go as bytes, not JSON lists, so
    that 20,000 characters of a 1×768 model stay under 3 MB."""
    from ...files import inline_json, write_text
    st = states(rec)
    shown = min(len(text), PAGE_CHARS)
    text, top_ids, top_p = text[:shown], top_ids[:shown], top_p[:shown]
    support = res.get("support", {})
    panels = []
    for feat, units in res["features"].items():
        if not units:
            continue
        best = units[0]
        v = st[best["state"]][best["layer"], :, best["unit"]].astype(np.float32)
        lo, hi = unit_range(v)
        sup = support.get(feat, {})
        panels.append({
            "title": f"{feat} ({FEATURES[feat][1]}): layer {best['layer']}, unit "
                     f"{best['unit']}, {best['state']}",
            "note": f"score {best['score']:.3f}"
                    + (f" (chance {sup['chance']:.3f})" if sup.get("chance") is not None else "")
                    + (" (it falls as the feature rises)" if best["sign"] < 0 else "")
                    + (f"; {sup['runs']:,} runs over {sup['positions']:,} characters"
                       if sup else "")
                    + _effect_note(res.get("effects", {}).get(feat))
                    + f"; {RANGE_NOTE}: {lo:.3g} to {hi:.3g}",
            "layer": best["layer"], "unit": best["unit"], "state": best["state"],
            "lo": lo, "hi": hi, "raw": _b64(v[:shown].astype("<f2"))})
    M = min(len(text), PICK_CHARS)
    pick_states = [s for s in ("h", "c") if s in st]
    blocks, lo_, hi_, mn_, mx_ = [], [], [], [], []
    for s in pick_states:
        arr = st[s][:, :M, :].astype(np.float32)                 # (L, M, H)
        mn, mx = arr.min(axis=1), arr.max(axis=1)                # (L, H)
        span = np.where(mx > mn, mx - mn, 1.0)
        q = np.clip(np.round((arr - mn[:, None, :]) / span[:, None, :] * 254 - 127), -127, 127)
        blocks.append(q.astype(np.int8).transpose(0, 2, 1).tobytes())   # (L, H, M)
        for l in range(arr.shape[0]):
            for u in range(arr.shape[2]):
                lo, hi = unit_range(arr[l, :, u])
                lo_.append(round(lo, 5))
                hi_.append(round(hi, 5))
        mn_ += [round(float(x), 5) for x in mn.ravel()]
        mx_ += [round(float(x), 5) for x in mx.ravel()]
    V = len(vocab)
    data = {"text": text, "vocab": vocab, "range_note": RANGE_NOTE, "panels": panels,
            "next": {"k": int(top_ids.shape[1]) if len(top_ids) else 0, "wide": V > 256,
                     "ids": _b64(top_ids.astype("<u2" if V > 256 else np.uint8)),
                     "p": _b64(np.round(np.asarray(top_p) * 255).astype(np.uint8))},
            "pick": {"n": M, "layers": rec["h"].shape[0], "hidden": rec["h"].shape[2],
                     "states": pick_states, "lo": lo_, "hi": hi_, "min": mn_, "max": mx_,
                     "b64": base64.b64encode(b"".join(blocks)).decode()}}
    css = "".join(f".v{k}{{background:rgb{rgb((k - 10) / 10)}"
                  + (";color:#fff" if abs(k - 10) >= 7 else "") + "}" for k in range(21))
    few = [(f, i) for f, i in support.items() if i.get("status") != "scored"]
    too_few = ("" if not few else "<p class='note few'>Too few to score (fewer than "
               f"{MIN_RUNS} runs in this text): " + "; ".join(
                   f"{html.escape(f)} ({i['runs']} run{'s' if i['runs'] != 1 else ''} over "
                   f"{i['positions']:,} characters)" for f, i in few) + "</p>")
    page = PAGE % {
        "title": html.escape(title), "subtitle": html.escape(res["subtitle"]),
        "n": f"{res['chars']:,}", "npick": f"{M:,}", "first_state": pick_states[0], "css": css,
        "min_runs": MIN_RUNS, "too_few": too_few,
        "scatter": "".join(_scatter(g, s) for g, s in res["gates"].items()) or
                   "<p class=note>This cell has no σ gates.</p>",
        "tables": _ablation_html(res) + _tables_html(res),
        "shown_note": (f" · the page shows the first {shown:,} of them" if shown < res["chars"]
                       else ""),
        "data": inline_json(data)}
    write_text(path, page)
    return path


def _effect_note(e) -> str:
    if not e or e.get("on_feature") is None:
        return ""
    return (f"; held at zero it costs {e['on_feature']:+.3f} nats/char on the feature's "
            f"positions beyond its cost elsewhere ({e['overall']:+.3f} overall)")


def _ablation_html(res: dict) -> str:
    """The ablations asked for (--ablate) as a table, and the top-k against
    random-k curves (--ablate-top) as one chart per feature."""
    from ..charts import svg_chart
    out = []
    abl = res.get("ablation") or []
    if abl:
        out.append("<h2>Units held at zero</h2><p class=note>Each unit's state (c and h, or h) "
                   f"held at zero through the text; the loss without: {res['base_loss']:.4f} "
                   "nats/char. Change in the loss, overall and in each class of each feature; "
                   "the characters whose probability moved most.</p>")
        for a in abl:
            units = ", ".join(f"{l}:{u}" for l, u in a["units"])
            rows = "".join(f"<tr><td>{html.escape(f)}</td><td>" + ", ".join(
                f"{html.escape(c)} {v:+.4f}" for c, v in by.items() if v is not None)
                + "</td></tr>" for f, by in a["by_class"].items())
            moved = "; ".join(f"{html.escape(repr(m['char']))} after "
                              f"{html.escape(repr(m['context'][-16:]))}: {m['p_before']:.2f} → "
                              f"{m['p_after']:.2f}" for m in a["moved"][:6])
            out.append(f"<h3>{html.escape(units)}: loss {a['loss']:.4f} "
                       f"({a['loss_change']:+.4f})</h3><table><tr><th>feature</th>"
                       f"<th>change by class</th></tr>{rows}</table>"
                       f"<p class=note>moved most: {moved}</p>")
    top = res.get("ablation_top") or {}
    if top:
        charts = []
        for feat, t in top.items():
            ks = list(range(1, len(t["top"]) + 1))
            series = [{"x": ks, "y": [np.nan if v is None else v for v in row],
                       "name": f"k random units ({len(t['random'])} draws)",
                       "colour": "#999999", "dash": True, "legend": j == 0}
                      for j, row in enumerate(t["random"])]
            series.append({"x": ks, "y": [np.nan if v is None else v for v in t["top"]],
                           "name": "its top units", "colour": "#d62728"})
            charts.append(svg_chart(series, title=feat, xlabel="units held at zero (k)",
                                    ylabel="loss change on its positions", xticks=ks,
                                    hlines=[(0.0, "no change")], legend="right",
                                    width=430, height=260))
        out.append("<h2>Does a unit matter? Its top units against random ones</h2>"
                   "<p class=note>For each feature: the loss change on its positions (less the "
                   "change elsewhere) when its k best-scored units are held at zero (red), "
                   "against k random units (grey, five draws). A unit that tracks a feature "
                   "but changes nothing when removed stays with the grey lines.</p>"
                   f"<div class=charts>{''.join(charts)}</div>")
    return "\n".join(out)


def _tables_html(res: dict) -> str:
    sup = res.get("support", {})

    def row(f, units):
        i = sup.get(f, {})
        head = (f"<tr><td>{html.escape(f)}</td><td>{i.get('runs', '–')}</td>"
                f"<td>{i.get('positions', '–')}</td><td>"
                + ("–" if i.get("chance") is None else f"{i['chance']:.3f}") + "</td>")
        if not units:
            return head + "<td colspan=5 class=few>too few to score</td></tr>"
        return head + "".join(f"<td>{u['layer']}:{u['unit']} {u['state']} {u['score']:.3f}</td>"
                              for u in units[:5]) + "</tr>"
    rows = "".join(row(f, units) for f, units in res["features"].items())
    out = ["<h2>Every feature's best units</h2><table><tr><th>feature</th><th>runs</th>"
           "<th>positions</th><th>chance</th>"
           "<th colspan=5>layer:unit state score, best first</th></tr>" + rows + "</table>"]
    mem = next((m for m in map(res["gates"].get, "fz") if m and "always_open" in m), None)
    if mem is not None:
        g = "f" if "f" in res["gates"] else "z"
        out.append(f"<h2>Long memory</h2><p>{len(mem['always_open'])} units whose gate {g} is "
                   f"above 0.9 for at least 90% of the text (long-memory cells), "
                   f"{len(mem['always_shut'])} below 0.1 for at least 90% (they forget at once)."
                   "</p>")
    cs = res["counters"]
    out.append("<h2>Counters</h2>")
    if cs:
        out.append("<p class=note>Units whose c moves by a near-constant step while f and i "
                   "are both above 0.9, over runs of at least 8 characters.</p><table><tr>"
                   "<th>layer:unit</th><th>step</th><th>variation</th><th>runs</th>"
                   "<th>share of text</th></tr>" + "".join(
                       f"<tr><td>{c['layer']}:{c['unit']}</td><td>{c['step']:+.4f}</td>"
                       f"<td>{c['cv']:.2f}</td><td>{c['runs']}</td>"
                       f"<td>{100 * c['coverage']:.1f}%</td></tr>" for c in cs) + "</table>")
    else:
        out.append(f"<p class=note>{html.escape(res['counters_note'])}</p>")
    return "\n".join(out)
