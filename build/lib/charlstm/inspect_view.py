"""How `charlstm inspect` shows a unit: text whose characters' backgrounds are
coloured by the unit's value after reading them, blue at −1, white at 0, red
at +1 (as in Karpathy, Johnson & Fei-Fei 2015), in the terminal or on one
self-contained HTML page (inline CSS, data and script; nothing from the
network)."""
from __future__ import annotations

import base64
import html
import os

import numpy as np

from .inspect import FEATURES, states


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
# The HTML page.

PICK_CHARS = 2000          # characters for which every unit's h and c go into the page
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
%(css)s
</style></head><body>
<h1>charlstm inspect</h1>
<p class="note">%(subtitle)s%(shown_note)s</p>
<p class="legend note">colour of each character's background: the unit's value after reading it:
<span style="background:#0000ff"></span> −1 <span style="background:#8080ff"></span>
<span style="background:#fff;border:1px solid #ccc"></span> 0 <span style="background:#ff8080"></span>
<span style="background:#ff0000"></span> +1 · hover over a character for the value and the model's
five likeliest next characters</p>
<h2>Cells that track features of the text</h2>
<p class="note">score, over the %(n)s characters: for a count (line position, depth), Spearman's
|ρ| between the unit's value and the feature; for a yes-or-no feature (in quotes), 2·|AUC − ½|,
how well the unit's value tells the two apart. 1: a perfect relation, whatever the unit's scale;
0: none.</p>
<div id="panels"></div>
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
function esc(c){return c==='<'?'&lt;':c==='>'?'&gt;':c==='&'?'&amp;':c;}
function render(el, vals, n, scale, squash){
  const parts = new Array(n);
  for (let i = 0; i < n; i++){
    let v = vals[i] / 127 * scale; if (squash) v = Math.tanh(v);
    const c = text[i], k = Math.max(0, Math.min(20, Math.round((v + 1) * 10)));
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
  const v = box._vals[i] / 127 * box._scale;
  let s = JSON.stringify(text[i]) + '  value ' + v.toFixed(3) + '\\nnext:';
  for (let k = 0; k < D.top_ids[i].length; k++)
    s += '\\n  ' + JSON.stringify(D.vocab[D.top_ids[i][k]]) + ' ' + (D.top_p[i][k] * 100).toFixed(1) + '%%';
  tip.textContent = s; tip.style.display = 'block';
  tip.style.left = Math.min(e.clientX + 14, innerWidth - 200) + 'px'; tip.style.top = (e.clientY + 14) + 'px';
}
function panel(parent, title, note, vals, scale, n, squash){
  const d = document.createElement('div'); d.className = 'panel';
  d.innerHTML = '<h3></h3><div class="note"></div><div class="txt"></div>';
  d.children[0].textContent = title; d.children[1].textContent = note;
  const box = d.children[2]; box._scale = scale;
  render(box, vals, n, scale, squash);
  box.addEventListener('mousemove', hover); box.addEventListener('mouseleave', () => tip.style.display = 'none');
  parent.appendChild(d); return d;
}
const P = document.getElementById('panels');
for (const p of D.panels)
  panel(P, p.title, p.note, p.values, p.scale, N, p.squash);
const pick = D.pick, M = pick.n, raw = atob(pick.b64), all = new Int8Array(raw.length);
for (let i = 0; i < raw.length; i++) all[i] = raw.charCodeAt(i) << 24 >> 24;
const pl = document.getElementById('pl'), ps = document.getElementById('ps'), pu = document.getElementById('pu');
for (let l = 0; l < pick.layers; l++) pl.add(new Option(l, l));
for (const s of pick.states) ps.add(new Option(s, s));
pu.max = pick.hidden - 1;
function show(l, u, s){
  const si = pick.states.indexOf(s), H = pick.hidden;
  const off = ((si * pick.layers + l) * H + u) * M, vals = all.subarray(off, off + M);
  const holder = document.getElementById('picked'); holder.innerHTML = '';
  panel(holder, 'layer ' + l + ', unit ' + u + ', ' + s, s === 'c' ?
        'coloured by tanh(c), the part of c that reaches h' : '', vals,
        pick.scale[si][l][u], M, s === 'c');
}
document.getElementById('pgo').onclick = () => show(+pl.value, Math.max(0, Math.min(pick.hidden - 1, +pu.value)), ps.value);
for (const c of document.querySelectorAll('.dot'))
  c.addEventListener('click', () => { pl.value = c.dataset.l; pu.value = c.dataset.u;
    show(+c.dataset.l, +c.dataset.u, pick.states[0]); document.getElementById('picked').scrollIntoView(); });
show(D.panels.length ? D.panels[0].layer : 0, D.panels.length ? D.panels[0].unit : 0, pick.states[0]);
if (location.hash === '#selftest') {          // for the browser test: hover the 5th character
  const s = document.querySelector('.txt span:nth-child(5)');
  const r = s.getBoundingClientRect();
  s.dispatchEvent(new MouseEvent('mousemove', {bubbles: true, clientX: r.left + 1, clientY: r.top + 1}));
  const out = document.createElement('pre'); out.id = 'selftest'; out.textContent = tip.textContent;
  document.body.appendChild(out);
}
})();
</script></body></html>
"""


def _q(v: np.ndarray, scale: float) -> list[int]:
    return np.clip(np.round(v / scale * 127), -127, 127).astype(int).tolist()


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
    """The page: a panel per feature's best unit, a picker for any unit's h and
    c over the first PICK_CHARS characters, the gate-saturation scatters and
    the counters."""
    from .files import inline_json, write_text
    st = states(rec)
    shown = min(len(text), PAGE_CHARS)
    text, top_ids, top_p = text[:shown], top_ids[:shown], top_p[:shown]
    panels = []
    for feat, units in res["features"].items():
        if not units:
            continue
        best = units[0]
        v = st[best["state"]][best["layer"], :shown, best["unit"]]
        squash = best["state"] == "c"
        scale = float(max(1.0, np.abs(v).max())) if squash else 1.0
        panels.append({"title": f"{feat} ({FEATURES[feat][1]}): layer {best['layer']}, unit "
                                f"{best['unit']}, {best['state']}",
                       "note": f"score {best['score']:.3f}" + (" (it falls as the feature rises)"
                                                               if best["sign"] < 0 else "")
                               + ("; coloured by tanh(c), the part of c that reaches h"
                                  if squash else ""),
                       "layer": best["layer"], "unit": best["unit"], "scale": scale,
                       "squash": squash, "values": _q(v, scale)})
    M = min(len(text), PICK_CHARS)
    pick_states = [s for s in ("h", "c") if s in st]
    blocks, scales = [], []
    for s in pick_states:
        arr = st[s][:, :M, :]                                    # (L, M, H)
        sc = np.maximum(1.0, np.abs(arr).max(axis=1)) if s == "c" else np.ones(arr.shape[::2])
        scales.append(sc.round(4).tolist())
        q = np.clip(np.round(arr / sc[:, None, :] * 127), -127, 127).astype(np.int8)
        blocks.append(q.transpose(0, 2, 1).tobytes())           # (L, H, M)
    data = {"text": text, "vocab": vocab, "top_ids": top_ids.tolist(),
            "top_p": np.round(top_p, 3).tolist(), "panels": panels,
            "pick": {"n": M, "layers": rec["h"].shape[0], "hidden": rec["h"].shape[2],
                     "states": pick_states, "scale": scales,
                     "b64": base64.b64encode(b"".join(blocks)).decode()}}
    css = "".join(f".v{k}{{background:rgb{rgb((k - 10) / 10)}"
                  + (";color:#fff" if abs(k - 10) >= 7 else "") + "}" for k in range(21))
    tables = _tables_html(res)
    page = PAGE % {
        "title": html.escape(title), "subtitle": html.escape(res["subtitle"]), "n": f"{res['chars']:,}",
        "npick": f"{M:,}", "first_state": pick_states[0], "css": css,
        "scatter": "".join(_scatter(g, s) for g, s in res["gates"].items()) or
                   "<p class=note>This cell has no σ gates.</p>",
        "tables": tables,
        "shown_note": (f" · the page shows the first {shown:,} of them" if shown < res["chars"]
                       else ""),
        "data": inline_json(data)}
    write_text(path, page)
    return path


def _tables_html(res: dict) -> str:
    rows = "".join(f"<tr><td>{html.escape(f)}</td>" + "".join(
        f"<td>{u['layer']}:{u['unit']} {u['state']} {u['score']:.3f}</td>" for u in units[:5])
        + "</tr>" for f, units in res["features"].items())
    out = ["<h2>Every feature's best units</h2><table><tr><th>feature</th>"
           "<th colspan=5>layer:unit state score, best first</th></tr>" + rows + "</table>"]
    mem = res["gates"].get("f") or res["gates"].get("z")
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
