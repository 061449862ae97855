"""The page at `/`: one self-contained HTML file (inline CSS and vanilla JavaScript; nothing fetched from other
sites) over the server's own API.

- Generate (language models): a prompt, temperature, top-k, top-p, length and seed; the text streams in token by
  token (server-sent events read from fetch), then the activation view of `stackrnn inspect` shows every layer's
  units over the generated text (a unit picker per layer, the same view as the inspect page).
- Classify (classifiers): a sentence -> its label and the probability of every label.
- Translate (translators): a sentence -> its translation and, with attention, the attention map as a heat map.
- Forecast (forecasters): a series -> its history, the median forecast and the 80% and 95% bands, drawn as an
  inline SVG (and the held-out values, for the test split).

A panel shows only if a run of its task is served; each panel picks among those runs.
"""

from __future__ import annotations

from ..inspect.page_template import ACTIVATION_CSS, ACTIVATION_JS

_CSS = """
body { font: 14px/1.45 system-ui, sans-serif; margin: 1.5em 1.5em 3em; color: #222; max-width: 1100px; }
h1 { font-size: 1.35em; margin: 0 0 .2em; } .sub { color: #666; margin: 0 0 1em; }
fieldset.panel { border: 1px solid #ccc; border-radius: 6px; margin: 1em 0; padding: .6em 1em 1em; }
fieldset.panel legend { font-weight: 600; font-size: 1.1em; padding: 0 .3em; }
.row { display: flex; flex-wrap: wrap; gap: .4em 1.2em; align-items: center; margin: .4em 0; }
label.num input { width: 6em; }
textarea, input.wide { width: 100%; box-sizing: border-box; font: 14px ui-monospace, Menlo, Consolas, monospace; }
button { font-size: 14px; padding: .3em 1.2em; }
.out { font: 15px/1.5 ui-monospace, Menlo, Consolas, monospace; white-space: pre-wrap; word-break: break-word;
       background: #f7f7f7; border: 1px solid #ddd; border-radius: 4px; padding: .5em .7em; min-height: 2.5em; }
.out .new { color: #0b5394; }
.error { color: #b00020; } .note { color: #666; font-size: 12px; }
.label { font-size: 1.4em; font-weight: 600; }
.bars div { display: flex; align-items: center; gap: .5em; margin: 2px 0; font-size: 13px; }
.bars .bar { height: 12px; background: #4a86e8; }
table.attention { border-collapse: collapse; margin-top: .6em; font-size: 12px; }
table.attention td { width: 2.2em; height: 1.6em; border: 1px solid #eee; text-align: center; }
table.attention th { font-weight: normal; padding: 0 .4em; white-space: nowrap; }
table.attention thead th { writing-mode: vertical-rl; transform: rotate(180deg); text-align: left; }
#fc-chart svg { display: block; margin-top: .6em; background: #fcfcfc; border: 1px solid #ddd; border-radius: 4px; }
#fc-chart .axis { font: 11px system-ui, sans-serif; fill: #666; }
#status { position: fixed; bottom: 0; left: 0; right: 0; background: #333; color: #fff; font: 12px monospace;
          padding: 3px 10px; min-height: 1.3em; }
"""

_JS = r"""
const $ = (id) => document.getElementById(id);
const statusLine = $("status");
let info = null;

async function call(name, route, body) {  // POST a JSON body; the answer's JSON, or an Error with its message
  const response = await fetch(`/v1/runs/${encodeURIComponent(name)}/${route}`, {
    method: "POST", headers: {"Content-Type": "application/json"}, body: JSON.stringify(body)});
  const answer = await response.json().catch(() => ({error: `HTTP ${response.status}`}));
  if (!response.ok) throw new Error(answer.error || `HTTP ${response.status}`);
  return answer;
}

function number(id, integer) {
  const text = $(id).value.trim();
  if (text === "") return null;
  const v = integer ? parseInt(text, 10) : parseFloat(text);
  if (Number.isNaN(v)) throw new Error(`${$(id).name || id}: not a number`);
  return v;
}

function fail(where, error) {
  where.textContent = "";
  const span = document.createElement("span");
  span.className = "error";
  span.textContent = error.message || String(error);
  where.appendChild(span);
}

function setup(task, panel) {  // the panel of a task: shown with a picker of its runs, or hidden
  const runs = info.runs.filter((r) => r.task === task);
  $(panel).hidden = runs.length === 0;
  const select = $(panel).querySelector("select.run");
  runs.forEach((r) => select.add(new Option(r.name)));
  return select;
}

// ------------------------------------------------------------------ generate: stream, then the activations
async function generate() {
  const out = $("gen-output"), button = $("gen-go"), view = $("gen-activations");
  out.textContent = ""; view.textContent = ""; out.dataset.events = "0"; out.dataset.done = "false";
  let body;
  try {
    body = {prompt: $("gen-prompt").value, max_tokens: number("gen-length", true), temperature: number("gen-temperature"),
            top_k: number("gen-top-k", true), top_p: number("gen-top-p"), seed: number("gen-seed", true), stream: true};
  } catch (e) { return fail(out, e); }
  for (const k of Object.keys(body)) if (body[k] === null) delete body[k];
  const name = $("gen-run").value;
  button.disabled = true;
  statusLine.textContent = "generating...";
  try {
    const response = await fetch(`/v1/runs/${encodeURIComponent(name)}/generate`, {
      method: "POST", headers: {"Content-Type": "application/json"}, body: JSON.stringify(body)});
    if (!response.ok) {
      const answer = await response.json().catch(() => ({}));
      throw new Error(answer.error || `HTTP ${response.status}`);
    }
    out.appendChild(document.createTextNode(body.prompt + ($("gen-run").selectedOptions[0].dataset.level === "char" ? "" : " ")));
    const fresh = document.createElement("span");
    fresh.className = "new";
    out.appendChild(fresh);
    const reader = response.body.getReader(), decoder = new TextDecoder();
    let buffer = "", result = null;
    for (;;) {
      const {value, done} = await reader.read();
      if (done) break;
      buffer += decoder.decode(value, {stream: true});
      let cut;
      while ((cut = buffer.indexOf("\n\n")) >= 0) {
        const block = buffer.slice(0, cut);
        buffer = buffer.slice(cut + 2);
        let event = "message", data = "";
        for (const line of block.split("\n")) {
          if (line.startsWith("event: ")) event = line.slice(7);
          else if (line.startsWith("data: ")) data += line.slice(6);
        }
        const payload = JSON.parse(data);
        if (event === "message") {
          fresh.textContent += payload.token;
          out.dataset.events = String(Number(out.dataset.events) + 1);
        } else if (event === "done") {
          result = payload;
        } else if (event === "error") {
          throw new Error(payload.error);
        }
      }
    }
    if (result === null) throw new Error("the stream ended early");
    out.dataset.done = "true";
    statusLine.textContent = `${result.tokens} tokens generated`;
    await activations(name, result.text);
  } catch (e) {
    fail(view.childElementCount ? view : out, e);
    statusLine.textContent = "";
  } finally {
    button.disabled = false;
  }
}

async function activations(name, text) {
  const view = $("gen-activations");
  const limit = info.limits.max_input_tokens;
  const level = $("gen-run").selectedOptions[0].dataset.level;
  if (level === "char" && [...text].length > limit) text = [...text].slice(0, limit).join("");
  view.textContent = "reading the text through the model...";
  try {
    const data = await call(name, "activations", {text: text, units: 16});
    mountActivations(view, data, statusLine, document);
    view.dataset.layers = String(data.layers.length);
  } catch (e) {
    fail(view, e);
  }
}

// ---------------------------------------------------------------------------------------------- classify
async function classify() {
  const out = $("cls-output");
  out.textContent = "...";
  try {
    const answer = await call($("cls-run").value, "predict", {text: $("cls-text").value});
    const r = answer.results[0];
    out.textContent = "";
    const label = document.createElement("div");
    label.className = "label";
    label.id = "cls-label";
    label.textContent = r.label;
    out.appendChild(label);
    const bars = document.createElement("div");
    bars.className = "bars";
    Object.entries(r.probabilities).sort((a, b) => b[1] - a[1]).forEach(([name, p]) => {
      const row = document.createElement("div"), bar = document.createElement("span"), text = document.createElement("span");
      bar.className = "bar";
      bar.style.width = `${Math.round(200 * p)}px`;
      text.textContent = `${name} ${p.toFixed(3)}`;
      row.append(bar, text);
      bars.appendChild(row);
    });
    out.appendChild(bars);
  } catch (e) { fail(out, e); }
}

// --------------------------------------------------------------------------------------------- translate
async function translate() {
  const out = $("tr-output"), map = $("tr-attention");
  out.textContent = "..."; map.textContent = "";
  const run = info.runs.find((r) => r.name === $("tr-run").value);
  try {
    const answer = await call(run.name, "translate", {text: $("tr-text").value, beam: number("tr-beam", true) || 1,
                                                      attention: run.attention});
    const r = answer.results[0];
    out.textContent = r.translation;
    if (r.unknown.length) out.insertAdjacentText("beforeend", `   (not in the vocabulary: ${r.unknown.join(", ")})`);
    if (r.attention) drawAttention(map, r.attention);
    else map.textContent = run.attention ? "" : "this run's model has no attention";
  } catch (e) { fail(out, e); }
}

function drawAttention(where, a) {  // rows: target words; columns: source words; darker = more attention
  const table = document.createElement("table");
  table.className = "attention";
  const head = table.createTHead().insertRow();
  head.appendChild(document.createElement("th"));
  a.source.forEach((w) => { const th = document.createElement("th"); th.textContent = w; head.appendChild(th); });
  const body = table.createTBody();
  a.weights.forEach((row, i) => {
    const tr = body.insertRow(), th = document.createElement("th");
    th.textContent = a.target[i];
    tr.appendChild(th);
    row.forEach((w, j) => {
      const td = tr.insertCell(), shade = Math.round(255 * (1 - w));
      td.style.backgroundColor = `rgb(${shade},${shade},255)`;
      td.title = `${a.target[i]} -> ${a.source[j]}: ${w.toFixed(3)}`;
    });
  });
  where.textContent = "";
  where.appendChild(table);
}

// ---------------------------------------------------------------------------------------------- forecast
function pickForecaster() {  // the series and horizon of the picked forecasting run
  const run = info.runs.find((r) => r.name === $("fc-run").value);
  const series = $("fc-series");
  series.textContent = "";
  run.series.forEach((s) => series.add(new Option(s)));
  $("fc-horizon").max = run.horizon;
  $("fc-horizon").value = run.horizon;
  $("fc-samples").disabled = run.head === "quantile";
}

async function forecast() {
  const out = $("fc-chart"), run = info.runs.find((r) => r.name === $("fc-run").value);
  out.textContent = "...";
  try {
    const horizon = number("fc-horizon", true) || run.horizon;
    const body = {series: [$("fc-series").value], horizon: horizon, history: 3 * run.horizon};
    if (run.head !== "quantile") body.samples = number("fc-samples", true) || 100;
    if ($("fc-split").value) body.split = $("fc-split").value;
    const answer = await call(run.name, "forecast", body);
    drawForecast(out, answer.results[0], run);
  } catch (e) { fail(out, e); }
}

function drawForecast(where, f, run) {  // history, then the 95% and 80% bands, the median and the actual values
  const NS = $("fc-proto").namespaceURI, W = 900, H = 300, pad = {l: 60, r: 15, t: 15, b: 30};
  const hist = f.history, n = hist.length, steps = f.median.length;
  const band = (lo, hi) => (String(lo) in f.quantiles && String(hi) in f.quantiles) ? [f.quantiles[String(lo)], f.quantiles[String(hi)]] : null;
  const b95 = band(0.025, 0.975), b80 = band(0.1, 0.9);
  const all = [...hist, ...f.median, ...(f.actual || []), ...(b95 ? b95.flat() : []), ...(b80 ? b80.flat() : [])]
    .filter((v) => v !== null && Number.isFinite(v));
  let lo = Math.min(...all), hi = Math.max(...all);
  if (hi === lo) { hi += 1; lo -= 1; }
  const x = (i) => pad.l + (W - pad.l - pad.r) * i / Math.max(1, n + steps - 1);
  const y = (v) => pad.t + (H - pad.t - pad.b) * (hi - v) / (hi - lo);
  const svg = document.createElementNS(NS, "svg");
  svg.setAttribute("width", W); svg.setAttribute("height", H); svg.setAttribute("viewBox", `0 0 ${W} ${H}`);
  const add = (tag, attrs, text) => {
    const e = document.createElementNS(NS, tag);
    Object.entries(attrs).forEach(([k, v]) => e.setAttribute(k, v));
    if (text !== undefined) e.textContent = text;
    svg.appendChild(e);
    return e;
  };
  const line = (values, offset) => {  // a path through the non-missing values, broken at missing ones
    let d = "", pen = "M";
    values.forEach((v, i) => {
      if (v === null || !Number.isFinite(v)) { pen = "M"; return; }
      d += `${pen}${x(offset + i).toFixed(1)},${y(v).toFixed(1)} `; pen = "L";
    });
    return d.trim();
  };
  const area = ([low, high]) => {
    const top = high.map((v, i) => `${x(n + i).toFixed(1)},${y(v).toFixed(1)}`);
    const bottom = low.map((v, i) => `${x(n + i).toFixed(1)},${y(v).toFixed(1)}`).reverse();
    return `M${top.join(" L")} L${bottom.join(" L")} Z`;
  };
  [0, 0.5, 1].forEach((t) => {
    const v = lo + t * (hi - lo);
    add("line", {x1: pad.l, x2: W - pad.r, y1: y(v), y2: y(v), stroke: "#eee"});
    add("text", {x: pad.l - 6, y: y(v) + 4, "text-anchor": "end", class: "axis"}, Number(v.toPrecision(4)).toString());
  });
  add("line", {x1: x(n - 0.5), x2: x(n - 0.5), y1: pad.t, y2: H - pad.b, stroke: "#bbb", "stroke-dasharray": "4 3"});
  if (b95) add("path", {id: "fc-band-95", d: area(b95), fill: "#4a86e8", "fill-opacity": 0.15});
  if (b80) add("path", {id: "fc-band-80", d: area(b80), fill: "#4a86e8", "fill-opacity": 0.3});
  add("path", {id: "fc-history", d: line(hist, 0), fill: "none", stroke: "#333", "stroke-width": 1.5});
  if (f.actual) add("path", {id: "fc-actual", d: line(f.actual, n), fill: "none", stroke: "#333", "stroke-width": 1.5, "stroke-dasharray": "3 2"});
  add("path", {id: "fc-median", d: line(f.median, n), fill: "none", stroke: "#0b5394", "stroke-width": 2});
  const stamp = (t) => t.replace("T", " ");
  const first = f.timestamps ? stamp(f.timestamps[0]) : `step ${n + 1}`;
  const last = f.timestamps ? stamp(f.timestamps[steps - 1]) : `step ${n + steps}`;
  add("text", {x: x(n), y: H - 8, class: "axis"}, first);
  add("text", {x: W - pad.r, y: H - 8, "text-anchor": "end", class: "axis"}, last);
  where.textContent = "";
  where.appendChild(svg);
  const note = document.createElement("p");
  note.className = "note";
  note.textContent = `${f.series}: the last ${n} values, then the median of the next ${steps} steps` +
    `${b80 ? " with its 80%" : ""}${b95 ? " and 95%" : ""}${b80 || b95 ? " bands" : ""}` +
    `${f.actual ? " and the held-out values (dashed)" : ""}; first step's median ${Number(f.median[0].toPrecision(5))}.`;
  where.appendChild(note);
  where.dataset.steps = String(steps);
}

async function start() {
  try {
    info = await (await fetch("/v1/runs")).json();
  } catch (e) { return fail($("runs"), e); }
  $("runs").textContent = info.runs.map((r) => `${r.name} (${r.task})`).join(", ");
  const gen = setup("lm", "generate");
  info.runs.filter((r) => r.task === "lm").forEach((r, i) => { gen.options[i].dataset.level = r.level; });
  setup("classify", "classify");
  setup("translate", "translate");
  if (info.runs.some((r) => r.task === "forecast")) {
    setup("forecast", "forecast");
    pickForecaster();
    $("fc-run").addEventListener("change", pickForecaster);
  } else $("forecast").hidden = true;
  $("fc-go").addEventListener("click", forecast);
  $("gen-length").max = info.limits.max_new_tokens;
  $("gen-go").addEventListener("click", generate);
  $("cls-go").addEventListener("click", classify);
  $("tr-go").addEventListener("click", translate);
  $("cls-text").addEventListener("keydown", (e) => { if (e.key === "Enter") classify(); });
  $("tr-text").addEventListener("keydown", (e) => { if (e.key === "Enter") translate(); });
  document.body.dataset.ready = "true";
}
start();
"""

_BODY = """
<h1>stackrnn serve</h1>
<p class="sub">Serving: <span id="runs">...</span>. The API: <a href="docs">/docs</a>. Nothing on this page
comes from another site.</p>

<fieldset class="panel" id="generate" hidden><legend>Generate</legend>
  <div class="row"><label>run <select class="run" id="gen-run"></select></label></div>
  <textarea id="gen-prompt" rows="3" aria-label="prompt">The </textarea>
  <div class="row">
    <label class="num">tokens <input id="gen-length" name="tokens" type="number" min="1" value="200"></label>
    <label class="num">temperature <input id="gen-temperature" name="temperature" type="number" min="0" step="0.1" value="0.8"></label>
    <label class="num">top-k <input id="gen-top-k" name="top-k" type="number" min="0" value="0"></label>
    <label class="num">top-p <input id="gen-top-p" name="top-p" type="number" min="0.01" max="1" step="0.05" value="1"></label>
    <label class="num">seed <input id="gen-seed" name="seed" type="number" min="0" placeholder="any"></label>
    <button id="gen-go">Generate</button>
  </div>
  <div class="out" id="gen-output" aria-live="polite"></div>
  <p class="note">Then every layer's units over the text, as <code>stackrnn inspect</code> shows them: each token
  coloured by the picked unit's activation <span class="legend"></span> (blue negative, red positive); units most
  correlated with simple text features first; click a token to pick the unit most active there.</p>
  <div id="gen-activations"></div>
</fieldset>

<fieldset class="panel" id="classify" hidden><legend>Classify</legend>
  <div class="row"><label>run <select class="run" id="cls-run"></select></label></div>
  <input class="wide" id="cls-text" aria-label="sentence to classify" value="a great movie">
  <div class="row"><button id="cls-go">Classify</button></div>
  <div class="out" id="cls-output"></div>
</fieldset>

<fieldset class="panel" id="translate" hidden><legend>Translate</legend>
  <div class="row"><label>run <select class="run" id="tr-run"></select></label>
    <label class="num">beam <input id="tr-beam" name="beam" type="number" min="1" max="16" value="5"></label></div>
  <input class="wide" id="tr-text" aria-label="sentence to translate">
  <div class="row"><button id="tr-go">Translate</button></div>
  <div class="out" id="tr-output"></div>
  <div id="tr-attention"></div>
</fieldset>
<fieldset class="panel" id="forecast" hidden><legend>Forecast</legend>
  <div class="row"><label>run <select class="run" id="fc-run"></select></label>
    <label>series <select id="fc-series"></select></label>
    <label class="num">horizon <input id="fc-horizon" name="horizon" type="number" min="1"></label>
    <label class="num">samples <input id="fc-samples" name="samples" type="number" min="1" value="200"></label>
    <label>of <select id="fc-split"><option value="">the future</option><option value="test">the test steps</option>
    </select></label>
    <button id="fc-go">Forecast</button></div>
  <div id="fc-chart"></div><svg id="fc-proto" width="0" height="0" hidden></svg>
</fieldset>
<div id="status"></div>
"""


def render_page() -> str:
    """The whole page (the same for every server: it asks the API which runs there are)."""
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>stackrnn serve</title>
<style>{_CSS}{ACTIVATION_CSS}</style></head>
<body>{_BODY}
<script>{ACTIVATION_JS}{_JS}</script>
</body></html>
"""
