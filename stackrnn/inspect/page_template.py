"""The HTML of the activation page that stackrnn.inspect.page writes: one self-contained file.

Everything is inline (CSS, vanilla JavaScript and the activations as JSON), so the page opens from file:// on a
machine without network, can be mailed or archived as one file, and loads no script from anywhere.

The JSON data (see page.page_data) is read from a <script type="application/json"> element; render_page escapes
every "<" in it so that no text (not even "</script>") can end that element early.
"""

from __future__ import annotations

import html
import json

_CSS = """
body { font: 14px/1.45 system-ui, sans-serif; margin: 1.5em 1.5em 3em; color: #222; max-width: 1100px; }
h1 { font-size: 1.3em; margin: 0 0 .3em; } h2 { font-size: 1.1em; margin: 0 0 .4em; }
.notice { background: #fff3cd; border: 1px solid #e0c36a; padding: .4em .7em; margin: .6em 0; }
table.sat { border-collapse: collapse; margin: .5em 0 1em; }
table.sat td, table.sat th { border: 1px solid #ccc; padding: 2px 8px; text-align: right; }
table.sat th { background: #f4f4f4; }
#status { position: fixed; bottom: 0; left: 0; right: 0; background: #333; color: #fff; font: 12px monospace;
          padding: 3px 10px; min-height: 1.3em; }
"""

#: the activation view's own style (shared with the page of `stackrnn serve`)
ACTIVATION_CSS = """
.legend { display: inline-block; width: 180px; height: 12px; vertical-align: middle; border: 1px solid #999;
          background: linear-gradient(to right, rgb(0,0,255), #fff, rgb(255,0,0)); }
section.layer { border: 1px solid #ccc; border-radius: 4px; padding: .7em .9em; margin: 1em 0; outline: none; }
section.layer h2 { font-size: 1.1em; margin: 0 0 .4em; }
section.layer.active { border-color: #555; box-shadow: 0 0 0 2px #bbb; }
.controls { margin-bottom: .4em; } .controls select { max-width: 60ch; }
.info { color: #555; font-size: 12px; margin: .2em 0 .5em; }
.text { font: 15px/1.6 ui-monospace, Menlo, Consolas, monospace; white-space: pre-wrap; word-break: break-all;
        max-height: 24em; overflow-y: auto; }  /* a long text scrolls inside its layer: the layers stay close */
.text span { cursor: pointer; }
"""

# Colours as in Karpathy's char-rnn visualisations: white at 0, red for positive, blue for negative, full colour
# at the unit's scale (1 for a bounded state such as an LSTM's h; its largest |value| where that is above 1).
ACTIVATION_JS = r"""
"use strict";
// The activation view: one block per layer (#layer0, #layer1, ...), each a unit picker over the text coloured
// by the picked unit. mountActivations(root, data, statusLine, keys) fills `root` from page.page_data's dict;
// keys is where the arrow keys are listened for (the document on the inspect page).
function mountActivations(root, data, statusLine, keys) {
  root.textContent = "";
  let active = 0;

  function colour(v) {
    const x = Math.max(-1, Math.min(1, v));
    const w = Math.round(255 * (1 - Math.abs(x)));
    return x >= 0 ? `rgb(255,${w},${w})` : `rgb(${w},${w},255)`;
  }

  function show(li, ui) {
    const layer = data.layers[li], unit = layer.units[ui], view = views[li];
    view.select.selectedIndex = ui;
    view.info.textContent = `${unit.label}; colour scale ±${unit.scale}`;
    unit.values.forEach((v, t) => { view.spans[t].style.backgroundColor = colour(v / unit.scale); });
  }

  function activate(li) {
    active = li;
    views.forEach((v, i) => v.section.classList.toggle("active", i === li));
  }

  function strongest(li, t) {  // the offered unit most active at step t, on its own scale
    let best = 0, bestValue = -1;
    data.layers[li].units.forEach((u, i) => {
      const a = Math.abs(u.values[t]) / u.scale;
      if (a > bestValue) { best = i; bestValue = a; }
    });
    return best;
  }

  function element(tag, className, parent) {
    const e = document.createElement(tag);
    if (className) e.className = className;
    parent.appendChild(e);
    return e;
  }

  const views = data.layers.map((layer, li) => {
    const section = element("section", "layer", root);
    section.id = `layer${li}`;
    section.tabIndex = 0;
    element("h2", "", section).textContent = layer.title;
    const label = element("label", "", element("div", "controls", section));
    label.append("unit ");
    const select = element("select", "", label);
    select.setAttribute("aria-label", `unit of ${layer.name}`);
    const info = element("div", "info", section), box = element("div", "text", section);
    layer.units.forEach((u) => select.add(new Option(u.label)));
    const spans = data.shown.map((s, t) => {
      const span = element("span", "", box);
      span.textContent = s;
      span.dataset.t = t;
      return span;
    });
    select.addEventListener("change", () => { activate(li); show(li, select.selectedIndex); });
    section.addEventListener("focusin", () => activate(li));
    section.addEventListener("mousedown", () => activate(li));
    box.addEventListener("click", (e) => {
      if (e.target.dataset.t === undefined) return;
      show(li, strongest(li, Number(e.target.dataset.t)));
    });
    box.addEventListener("mouseover", (e) => {
      if (e.target.dataset.t === undefined || !statusLine) return;
      const t = Number(e.target.dataset.t), unit = layer.units[select.selectedIndex];
      statusLine.textContent = `step ${t}  token ${JSON.stringify(data.tokens[t])}  ` +
        `${layer.name} ${unit.name} = ${unit.values[t].toFixed(3)}`;
    });
    return { section, select, info, spans };
  });

  (keys || root).addEventListener("keydown", (e) => {
    if (e.target.tagName === "SELECT" || e.target.tagName === "TEXTAREA" || e.target.tagName === "INPUT" ||
        e.altKey || e.ctrlKey || e.metaKey) return;  // the select steps itself; typing is typing
    const step = { ArrowDown: 1, j: 1, ArrowUp: -1, k: -1 }[e.key];
    if (step === undefined || !views.length || !root.isConnected || !root.contains(views[0].section)) return;
    const view = views[active], n = view.select.options.length;
    show(active, (view.select.selectedIndex + step + n) % n);
    e.preventDefault();
  });

  views.forEach((_, li) => show(li, 0));
  activate(0);
  return views;
}
"""

_JS = """
mountActivations(document.getElementById("layers"), JSON.parse(document.getElementById("data").textContent),
                 document.getElementById("status"), document);
"""


def _saturation_table(layers: list[dict]) -> str:
    rows = []
    for layer in layers:
        if not layer["saturation"]:
            rows.append(f"<tr><th>{html.escape(layer['name'])}</th><td colspan=4>no gates ({layer['cell']})</td></tr>")
        for gate, s in layer["saturation"].items():
            between = 1.0 - s["below_0.1"] - s["above_0.9"]
            rows.append(f"<tr><th>{html.escape(layer['name'])}</th><td>{html.escape(gate)}</td><td>{s['below_0.1']:.1%}</td>"
                        f"<td>{between:.1%}</td><td>{s['above_0.9']:.1%}</td></tr>")
    return ("<table class=sat><tr><th>layer</th><th>gate</th><th>below 0.1</th><th>in between</th><th>above 0.9</th></tr>"
            + "".join(rows) + "</table>")


def render_page(data: dict) -> str:
    """The whole page for page.page_data's dict: a header, the gate saturation table and one block per layer."""
    payload = json.dumps(data, ensure_ascii=False, separators=(",", ":")).replace("<", "\\u003c")
    notice = f'<p class="notice">{html.escape(data["notice"])}</p>' if data.get("notice") else ""
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>stackrnn inspect: {html.escape(data["run"])}</title>
<style>{_CSS}{ACTIVATION_CSS}</style></head>
<body>
<h1>Activations of {html.escape(data["run"])}</h1>
<p>{data["n_tokens"]} {html.escape(data["level"])} tokens, read once left to right. Each token is coloured by the
chosen unit's activation after reading it: <span class="legend"></span> blue negative, white 0, red positive.
Units are listed most interpretable first: by their largest |Pearson r| with a text feature over this text.
Pick a unit in a layer's list, or click a token to pick the unit most active there; with a layer selected,
&darr;/&uarr; (or j/k) step through its units. Hover over a token to read the value.</p>
{notice}
<h2>Gate saturation</h2>
<p>The fraction of each gate's values (every step, unit and direction) below 0.1 (nearly closed) and above 0.9
(nearly open), as in Karpathy et al. 2015.</p>
{_saturation_table(data["layers"])}
<div id="layers"></div>
<div id="status">hover over a token</div>
<script type="application/json" id="data">{payload}</script>
<script>{ACTIVATION_JS}{_JS}</script>
</body></html>
"""
