/**
 * The control plane's dashboard, served at `/`: one self-contained page (inline CSS and
 * script, no request but to the same origin's API). The page holds no data: the caller
 * types an admin or tenant token, kept only in `sessionStorage`, and the page's script
 * calls the API with it: the caller's domains (GET /v1/domains), a domain's live stats
 * (GET /v1/domains/{id}/events, read with `fetch` so the bearer header can be sent,
 * which `EventSource` cannot) with a chart of pages held over time, and a comparison
 * experiment (a domain per engine, one batch of allocations then frees, the domains
 * deleted after). Beside the pages-held chart, two per-vCPU charts follow each stats
 * event: lock wait (bars, log scale when the vCPUs differ by over 100x) and latency
 * (p50 / p99 / max modelled cycles on a log axis, the worst vCPU ringed).
 *
 * Every text that comes from data is set with `textContent`; the charts are built with
 * `createElementNS`. Nothing is parsed as markup.
 *
 * @module
 */

const CSS = `
:root { color-scheme: light; }
body { font: 15px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: #111;
  background: #fff; margin: 0 auto; max-width: 1100px; padding: 0 16px 48px; }
h1 { font-size: 1.5rem; margin: 20px 0 8px; }
h2 { font-size: 1.15rem; margin: 28px 0 8px; border-bottom: 1px solid #ccc; padding-bottom: 4px; }
section[hidden] { display: none; }
label { font-weight: 600; margin-right: 6px; }
input, select, button { font: inherit; color: #111; }
input[type="text"], input[type="password"], input[type="number"] { padding: 4px 6px;
  border: 1px solid #555; border-radius: 3px; background: #fff; }
button { padding: 4px 12px; border: 1px solid #1a4d8f; border-radius: 3px; background: #1a4d8f;
  color: #fff; cursor: pointer; }
button.secondary { background: #fff; color: #1a4d8f; }
button:focus-visible, input:focus-visible { outline: 3px solid #e8a317; outline-offset: 1px; }
button:disabled { opacity: 0.6; cursor: default; }
table { border-collapse: collapse; margin: 8px 0; }
th, td { border: 1px solid #bbb; padding: 4px 10px; text-align: right; }
th[scope="col"] { background: #eef2f7; }
td.text, th.text { text-align: left; }
.row { display: flex; flex-wrap: wrap; gap: 10px 18px; align-items: center; margin: 8px 0; }
.status { min-height: 1.4em; color: #333; }
.status.error { color: #a30000; font-weight: 600; }
.note { color: #444; font-size: 0.9rem; }
dl.figures { display: grid; grid-template-columns: max-content max-content; gap: 2px 14px; }
dl.figures dt { font-weight: 600; }
dl.figures dd { margin: 0; text-align: right; font-variant-numeric: tabular-nums; }
fieldset { border: 1px solid #bbb; margin: 8px 0; }
svg text { font: 12px system-ui, sans-serif; }
`;

// The page's script. Plain JavaScript in a string: no template literal in it.
const SCRIPT = `
"use strict";
const KEY = "heapvisor.token";
const $ = (id) => document.getElementById(id);
const state = { token: null, role: null, live: null };

function setStatus(el, text, error) {
  el.textContent = text;
  el.classList.toggle("error", Boolean(error));
}
function el(tag, text, cls) {
  const e = document.createElement(tag);
  if (text !== undefined && text !== null) e.textContent = String(text);
  if (cls) e.className = cls;
  return e;
}
function fmt(v) {
  if (typeof v !== "number" || !Number.isFinite(v)) return "-";
  if (Number.isInteger(v)) return v.toLocaleString("en-US");
  return String(Number(v.toFixed(2)));
}

class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}
async function api(method, path, body) {
  const headers = { authorization: "Bearer " + state.token };
  const init = { method, headers };
  if (body !== undefined) {
    headers["content-type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const res = await fetch(path, init);
  if (res.status === 204) return null;
  const json = await res.json().catch(() => null);
  if (!res.ok && res.status !== 507) {
    const err = json && json.error ? json.error : { code: "http_" + res.status, message: res.statusText };
    throw new ApiError(res.status, err.code, err.message);
  }
  return json;
}

// -- token ---------------------------------------------------------------------------
async function useToken(token) {
  stopLive();
  state.token = token;
  try {
    const res = await fetch("/v1/tenants", { headers: { authorization: "Bearer " + token } });
    if (res.status === 401) throw new ApiError(401, "unauthorized", "Unknown token");
    state.role = res.status === 200 ? "admin" : "tenant";
  } catch (err) {
    state.token = null;
    state.role = null;
    sessionStorage.removeItem(KEY);
    showSignedIn(false);
    setStatus($("token-status"), "Token refused: " + err.message, true);
    return;
  }
  sessionStorage.setItem(KEY, token);
  showSignedIn(true);
  setStatus($("token-status"), "Signed in as " + (state.role === "admin" ? "the admin" : "a tenant") + ". The token is kept in this tab's session storage only.", false);
  $("exp-tenant-row").hidden = state.role !== "admin";
  $("exp-tenant").required = state.role === "admin";
  await Promise.all([refreshDomains(), loadEngines()]);
}
function forget() {
  stopLive();
  sessionStorage.removeItem(KEY);
  state.token = null;
  state.role = null;
  $("token").value = "";
  $("domains-body").replaceChildren();
  $("exp-body").replaceChildren();
  showSignedIn(false);
  setStatus($("token-status"), "Token forgotten.", false);
}
function showSignedIn(on) {
  for (const id of ["domains-section", "live-section", "exp-section"]) $(id).hidden = !on;
  if (!on) $("live-section").hidden = true;
  $("role").textContent = on ? state.role : "none";
}

// -- domains -------------------------------------------------------------------------
async function refreshDomains() {
  const status = $("domains-status");
  try {
    const list = await api("GET", "/v1/domains");
    const rows = list.map((d) => {
      const tr = el("tr");
      tr.dataset.domain = String(d.id);
      tr.append(
        el("td", d.id),
        el("td", d.name, "text"),
        el("td", d.engine, "text"),
        el("td", d.pages_held),
        el("td", fmt(d.overhead_ratio)),
        el("td", d.ops.failed),
        el("td", d.latency_cycles.p99),
      );
      const cell = el("td", null, "text");
      const button = el("button", "Live stats", "secondary");
      button.type = "button";
      button.setAttribute("aria-label", "Live stats of domain " + d.id + " " + d.name);
      button.addEventListener("click", () => startLive(d.id, d.name));
      cell.append(button);
      tr.append(cell);
      return tr;
    });
    $("domains-body").replaceChildren(...rows);
    setStatus(status, list.length === 0 ? "No domains yet." : list.length + " domain" + (list.length === 1 ? "" : "s") + ".", false);
  } catch (err) {
    setStatus(status, "Cannot list domains: " + err.message, true);
  }
}

// -- live stats: Server-Sent Events read with fetch (EventSource cannot send a bearer) --
function stopLive() {
  if (state.live) {
    state.live.controller.abort();
    state.live = null;
  }
}
async function startLive(id, name) {
  stopLive();
  const controller = new AbortController();
  const live = { id, controller, points: [], t0: performance.now() };
  state.live = live;
  $("live-section").hidden = false;
  $("live-title").textContent = "Live stats: domain " + id + " (" + name + ")";
  $("live-figures").replaceChildren();
  drawChart(live.points);
  drawVcpuCharts(null);
  setStatus($("live-status"), "Connecting...", false);
  try {
    const res = await fetch("/v1/domains/" + encodeURIComponent(id) + "/events?interval_ms=250", {
      headers: { authorization: "Bearer " + state.token, accept: "text/event-stream" },
      signal: controller.signal,
    });
    if (!res.ok || !res.body) {
      const json = await res.json().catch(() => null);
      throw new Error(json && json.error ? json.error.message : "HTTP " + res.status);
    }
    setStatus($("live-status"), "Streaming every 250 ms.", false);
    const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += value.replace(/\\r\\n?/g, "\\n");
      let cut;
      while ((cut = buffer.indexOf("\\n\\n")) >= 0) {
        const block = buffer.slice(0, cut);
        buffer = buffer.slice(cut + 2);
        let event = "message";
        const data = [];
        for (const line of block.split("\\n")) {
          if (line.startsWith(":")) continue;
          const colon = line.indexOf(":");
          const field = colon < 0 ? line : line.slice(0, colon);
          let v = colon < 0 ? "" : line.slice(colon + 1);
          if (v.startsWith(" ")) v = v.slice(1);
          if (field === "event") event = v;
          else if (field === "data") data.push(v);
        }
        if (state.live !== live) return;
        onEvent(live, event, data.join("\\n"));
      }
    }
    if (state.live === live) setStatus($("live-status"), "The stream ended.", false);
  } catch (err) {
    if (controller.signal.aborted) return;
    if (state.live === live) setStatus($("live-status"), "Stream failed: " + err.message, true);
  }
}
function onEvent(live, event, data) {
  if (event === "destroyed") {
    setStatus($("live-status"), "The domain was destroyed.", false);
    return;
  }
  if (event === "shutdown") {
    setStatus($("live-status"), "The server is shutting down.", false);
    return;
  }
  if (event !== "stats") return;
  const s = JSON.parse(data);
  const t = (performance.now() - live.t0) / 1000;
  live.points.push([t, s.pages_held]);
  if (live.points.length > 240) live.points.shift();
  const figures = [
    ["pages held", s.pages_held, "pages-held"],
    ["peak pages", s.peak_pages, "peak-pages"],
    ["live blocks", s.live_blocks, "live-blocks"],
    ["requested bytes", s.requested_bytes, "requested-bytes"],
    ["overhead (ratio)", s.overhead_ratio, "overhead"],
    ["allocations", s.ops.allocs, "allocs"],
    ["frees", s.ops.frees, "frees"],
    ["failures", s.ops.failed, "failures"],
    ["p99 latency (cycles)", s.latency_cycles.p99, "p99"],
    ["events received", live.points.length, "events"],
  ];
  const items = [];
  for (const [label, value, key] of figures) {
    const dd = el("dd", fmt(value));
    dd.dataset.figure = key;
    items.push(el("dt", label), dd);
  }
  $("live-figures").replaceChildren(...items);
  drawChart(live.points);
  drawVcpuCharts(s);
}

// -- the chart: pages held over time, an inline SVG built element by element ------------
const SVG = "http://www.w3.org/2000/svg";
function svg(tag, attrs, text) {
  const e = document.createElementNS(SVG, tag);
  for (const k in attrs) e.setAttribute(k, String(attrs[k]));
  if (text !== undefined) e.textContent = String(text);
  return e;
}
function niceTicks(max, count) {
  if (!(max > 0)) return [0, 1];
  const raw = max / count;
  const mag = Math.pow(10, Math.floor(Math.log10(raw)));
  const step = [1, 2, 5, 10].map((m) => m * mag).find((s) => s >= raw) || raw;
  const ticks = [];
  for (let v = 0; v <= max + step * 1e-9; v += step) ticks.push(Number(v.toPrecision(12)));
  if (ticks[ticks.length - 1] < max) ticks.push(Number((ticks[ticks.length - 1] + step).toPrecision(12)));
  return ticks;
}
function drawChart(points) {
  const W = 640, H = 280, box = { l: 70, r: W - 16, t: 16, b: H - 46 };
  const root = svg("svg", { viewBox: "0 0 " + W + " " + H, width: W, height: H, role: "img",
    "aria-labelledby": "live-chart-title", id: "live-chart-svg" });
  root.append(svg("title", { id: "live-chart-title" }, "Pages held over time"));
  root.append(svg("rect", { x: 0, y: 0, width: W, height: H, fill: "#fff" }));
  const xMax = Math.max(1, ...points.map((p) => p[0]));
  const yTicks = niceTicks(Math.max(1, ...points.map((p) => p[1])), 5);
  const xTicks = niceTicks(xMax, 6);
  const yTop = yTicks[yTicks.length - 1], xTop = xTicks[xTicks.length - 1];
  const X = (v) => box.l + (v / xTop) * (box.r - box.l);
  const Y = (v) => box.b - (v / yTop) * (box.b - box.t);
  for (const v of yTicks) {
    root.append(svg("line", { x1: box.l, x2: box.r, y1: Y(v), y2: Y(v), stroke: "#ddd" }));
    root.append(svg("text", { x: box.l - 6, y: Y(v) + 4, "text-anchor": "end", fill: "#333" }, fmt(v)));
  }
  for (const v of xTicks) {
    root.append(svg("line", { x1: X(v), x2: X(v), y1: box.b, y2: box.b + 4, stroke: "#555" }));
    root.append(svg("text", { x: X(v), y: box.b + 17, "text-anchor": "middle", fill: "#333" }, fmt(v)));
  }
  root.append(svg("line", { x1: box.l, x2: box.r, y1: box.b, y2: box.b, stroke: "#555" }));
  root.append(svg("line", { x1: box.l, x2: box.l, y1: box.t, y2: box.b, stroke: "#555" }));
  root.append(svg("text", { class: "axis-label", x: (box.l + box.r) / 2, y: H - 8,
    "text-anchor": "middle", fill: "#111" }, "time since opened (s)"));
  root.append(svg("text", { class: "axis-label", transform: "translate(16 " + (box.t + box.b) / 2 + ") rotate(-90)",
    "text-anchor": "middle", fill: "#111" }, "pages held (4 KiB pages)"));
  if (points.length > 0) {
    let d = "";
    points.forEach((p, i) => { d += (i === 0 ? "M" : "L") + X(p[0]).toFixed(1) + " " + Y(p[1]).toFixed(1); });
    if (points.length === 1) d += "h2";
    const path = svg("path", { class: "series", d, fill: "none", stroke: "#1a4d8f", "stroke-width": 2 });
    path.append(svg("title", {}, "pages held"));
    root.append(path);
  }
  $("live-chart").replaceChildren(root);
}

// -- per-vCPU charts: lock wait (bars) and latency percentiles (grouped marks) -----------
// Okabe-Ito colours (told apart with colour-blindness), each series also by its shape.
const MARKS = [
  { key: "p50", label: "p50", colour: "#0072b2" },
  { key: "p99", label: "p99", colour: "#d55e00" },
  { key: "max", label: "max", colour: "#000000" },
];
function markShape(key, x, y, colour) {
  if (key === "p50") return svg("circle", { cx: x, cy: y, r: 5, fill: colour });
  if (key === "p99") return svg("rect", { x: x - 5, y: y - 5, width: 10, height: 10, fill: "#fff", stroke: colour, "stroke-width": 2 });
  return svg("path", { d: "M" + x + " " + (y - 7) + "L" + (x + 6) + " " + (y + 5) + "L" + (x - 6) + " " + (y + 5) + "Z", fill: colour });
}
function logTicks(lo, hi) {
  const a = Math.floor(Math.log10(Math.max(1, lo)));
  let b = Math.ceil(Math.log10(Math.max(1, hi)));
  if (b <= a) b = a + 1;
  const ticks = [];
  for (let e = a; e <= b; e++) ticks.push(Math.pow(10, e));
  return ticks;
}
// A y scale over values: log (powers of ten) when asked or when the positive values
// differ by more than 100x, else linear from 0.
function yScale(values, box, forceLog) {
  const pos = values.filter((v) => v > 0);
  const lo = pos.length ? Math.min(...pos) : 1, hi = pos.length ? Math.max(...pos) : 1;
  const log = Boolean(forceLog) || hi / lo > 100;
  if (log) {
    const ticks = logTicks(lo, hi);
    const l0 = Math.log10(ticks[0]), l1 = Math.log10(ticks[ticks.length - 1]);
    const Y = (v) => box.b - ((Math.log10(Math.max(v, ticks[0])) - l0) / (l1 - l0)) * (box.b - box.t);
    return { log, ticks, Y };
  }
  const ticks = niceTicks(hi, 5), top = ticks[ticks.length - 1];
  return { log, ticks, Y: (v) => box.b - (v / top) * (box.b - box.t) };
}
function chartFrame(id, title, W, H) {
  const root = svg("svg", { viewBox: "0 0 " + W + " " + H, width: W, height: H, role: "img",
    "aria-labelledby": id + "-title", id: id + "-svg" });
  root.append(svg("title", { id: id + "-title" }, title));
  root.append(svg("rect", { x: 0, y: 0, width: W, height: H, fill: "#fff" }));
  return root;
}
function vcpuAxes(root, box, H, scale, rows, X, yLabel) {
  for (const v of scale.ticks) {
    root.append(svg("line", { x1: box.l, x2: box.r, y1: scale.Y(v), y2: scale.Y(v), stroke: "#ddd" }));
    root.append(svg("text", { x: box.l - 6, y: scale.Y(v) + 4, "text-anchor": "end", fill: "#333" }, fmt(v)));
  }
  for (const r of rows) {
    root.append(svg("text", { x: X(r.vcpu), y: box.b + 17, "text-anchor": "middle", fill: "#333" }, String(r.vcpu)));
  }
  root.append(svg("line", { x1: box.l, x2: box.r, y1: box.b, y2: box.b, stroke: "#555" }));
  root.append(svg("line", { x1: box.l, x2: box.l, y1: box.t, y2: box.b, stroke: "#555" }));
  root.append(svg("text", { class: "axis-label", x: (box.l + box.r) / 2, y: H - 8,
    "text-anchor": "middle", fill: "#111" }, "vCPU (number)"));
  root.append(svg("text", { class: "axis-label", transform: "translate(16 " + (box.t + box.b) / 2 + ") rotate(-90)",
    "text-anchor": "middle", fill: "#111" }, yLabel));
  if (scale.log) {
    root.append(svg("text", { class: "scale-note", x: box.r, y: box.t - 6, "text-anchor": "end", fill: "#333" }, "log scale"));
  }
}
function drawLockChart(rows) {
  const W = 480, H = 280, box = { l: 80, r: W - 16, t: 40, b: H - 46 };
  const root = chartFrame("lock-chart", "Lock wait per vCPU", W, H);
  const scale = yScale(rows.map((r) => r.lock_wait_cycles), box, false);
  const slot = (box.r - box.l) / Math.max(1, rows.length);
  const X = (vcpu) => box.l + slot * (vcpu + 0.5);
  vcpuAxes(root, box, H, scale, rows, X, "lock wait (cycles)");
  const legend = svg("g", { class: "legend" });
  legend.append(svg("rect", { x: box.l, y: 8, width: 12, height: 12, fill: "#1a4d8f" }));
  legend.append(svg("text", { x: box.l + 18, y: 18, fill: "#111" }, "cycles waited for the pool and heap locks"));
  root.append(legend);
  const width = Math.min(48, slot * 0.6);
  for (const r of rows) {
    const g = svg("g", { class: "vcpu", "data-vcpu": r.vcpu });
    const v = r.lock_wait_cycles, y = scale.Y(v);
    const h = v > 0 ? Math.max(1, box.b - y) : 0;
    const bar = svg("rect", { class: "bar", x: X(r.vcpu) - width / 2, y: box.b - h, width, height: h,
      fill: "#1a4d8f", "data-value": v });
    bar.append(svg("title", {}, "vCPU " + r.vcpu + ": " + fmt(v) + " cycles waited"));
    g.append(bar, svg("text", { class: "value", x: X(r.vcpu), y: box.b - h - 4, "text-anchor": "middle", fill: "#111" }, fmt(v)));
    root.append(g);
  }
  $("live-lock-chart").replaceChildren(root);
}
function drawLatencyChart(rows) {
  const W = 480, H = 280, box = { l: 80, r: W - 16, t: 40, b: H - 46 };
  const root = chartFrame("latency-chart", "Latency per vCPU: p50, p99 and max modelled cycles", W, H);
  const values = [];
  for (const r of rows) if (r.ops > 0) for (const m of MARKS) values.push(r.latency_cycles[m.key]);
  const scale = yScale(values, box, true);
  const slot = (box.r - box.l) / Math.max(1, rows.length);
  const X = (vcpu) => box.l + slot * (vcpu + 0.5);
  vcpuAxes(root, box, H, scale, rows, X, "latency (modelled cycles)");
  let worst = null;
  for (const r of rows) {
    if (r.ops > 0 && (worst === null || r.latency_cycles.max > worst.latency_cycles.max)) worst = r;
  }
  const legend = svg("g", { class: "legend" });
  let lx = box.l;
  for (const m of MARKS) {
    legend.append(markShape(m.key, lx + 6, 14, m.colour), svg("text", { x: lx + 16, y: 18, fill: "#111" }, m.label));
    lx += 56;
  }
  legend.append(svg("circle", { cx: lx + 6, cy: 14, r: 8, fill: "none", stroke: "#a30000", "stroke-width": 2, "stroke-dasharray": "3 2" }));
  legend.append(svg("text", { x: lx + 18, y: 18, fill: "#111" }, "worst case (highest max)"));
  root.append(legend);
  const dx = Math.min(14, slot / 4);
  for (const r of rows) {
    const g = svg("g", { class: "vcpu", "data-vcpu": r.vcpu });
    const x0 = X(r.vcpu);
    if (r.ops === 0) {
      g.append(svg("text", { class: "empty", x: x0, y: box.b - 6, "text-anchor": "middle", fill: "#333" }, "no calls"));
      root.append(g);
      continue;
    }
    const pts = MARKS.map((m, i) => ({ m, x: x0 + (i - 1) * dx, v: r.latency_cycles[m.key] }));
    let d = "";
    pts.forEach((p, i) => { d += (i === 0 ? "M" : "L") + p.x.toFixed(1) + " " + scale.Y(p.v).toFixed(1); });
    g.append(svg("path", { d, fill: "none", stroke: "#999", "stroke-width": 1 }));
    for (const p of pts) {
      const mark = markShape(p.m.key, p.x, scale.Y(p.v), p.m.colour);
      mark.setAttribute("class", "mark " + p.m.key);
      mark.setAttribute("data-stat", p.m.key);
      mark.setAttribute("data-value", String(p.v));
      mark.append(svg("title", {}, "vCPU " + r.vcpu + " " + p.m.label + ": " + fmt(p.v) + " cycles"));
      g.append(mark);
    }
    const top = pts[2];
    g.append(svg("text", { class: "value", "data-stat": "max", x: top.x, y: scale.Y(top.v) - 10,
      "text-anchor": "middle", fill: "#111" }, fmt(top.v)));
    if (r === worst) {
      g.setAttribute("data-worst", "true");
      g.append(svg("circle", { class: "worst", cx: top.x, cy: scale.Y(top.v), r: 10, fill: "none",
        stroke: "#a30000", "stroke-width": 2, "stroke-dasharray": "3 2" }));
      g.append(svg("text", { class: "worst-label", x: top.x, y: scale.Y(top.v) - 24, "text-anchor": "middle",
        fill: "#a30000", "font-weight": "600" }, "worst"));
    }
    root.append(g);
  }
  $("live-latency-chart").replaceChildren(root);
}
function drawVcpuCharts(s) {
  const rows = s && s.smp && Array.isArray(s.smp.per_vcpu) ? s.smp.per_vcpu : [];
  drawLockChart(rows);
  drawLatencyChart(rows);
}

// -- the experiment ---------------------------------------------------------------------
async function loadEngines() {
  const box = $("exp-engines");
  if (box.querySelector("input")) return;
  const res = await fetch("/v1/engines");
  const engines = await res.json();
  const legend = el("legend", "engines");
  const items = engines.map((e, i) => {
    const id = "exp-engine-" + i;
    const input = document.createElement("input");
    input.type = "checkbox";
    input.id = id;
    input.name = "engine";
    input.value = e.name;
    input.checked = true;
    const label = el("label", e.name);
    label.htmlFor = id;
    const span = el("span");
    span.append(input, label);
    return span;
  });
  const row = el("div", null, "row");
  row.append(...items);
  box.replaceChildren(legend, row);
}
async function runExperiment(ev) {
  ev.preventDefault();
  const status = $("exp-status");
  const size = Number($("exp-size").value), count = Number($("exp-count").value);
  const maxPages = Number($("exp-max-pages").value);
  const engines = [...document.querySelectorAll("#exp-engines input:checked")].map((i) => i.value);
  if (engines.length === 0) return setStatus(status, "Choose at least one engine.", true);
  const tenantId = Number($("exp-tenant").value);
  if (state.role === "admin" && !(tenantId >= 1)) {
    return setStatus(status, "The admin must name the tenant the domains are for.", true);
  }
  const ops = [];
  for (let i = 0; i < count; i++) ops.push({ op: "alloc", size });
  for (let i = 0; i < count; i++) ops.push({ op: "free", ref: i });
  $("exp-run").disabled = true;
  $("exp-body").replaceChildren();
  setStatus(status, "Running...", false);
  const rows = [];
  try {
    for (const engine of engines) {
      setStatus(status, "Running " + engine + "...", false);
      const body = { name: "experiment-" + engine, vcpus: 1, max_pages: maxPages, engine };
      if (state.role === "admin") body.tenant_id = tenantId;
      const domain = await api("POST", "/v1/domains", body);
      try {
        const r = await api("POST", "/v1/domains/" + domain.id + "/batch", { ops });
        const after = await api("GET", "/v1/domains/" + domain.id);
        const sum = (a) => a.reduce((s, v) => s + v, 0);
        const served = r.addresses.slice(0, count).filter((a) => a !== 0).length;
        rows.push({ engine, served, peak: after.peak_pages, held: after.pages_held,
          steps: sum(r.steps), cycles: sum(r.cycles), p99: after.latency_cycles.p99 });
      } finally {
        await api("DELETE", "/v1/domains/" + domain.id);
      }
    }
    const trs = rows.map((r) => {
      const tr = el("tr");
      tr.dataset.engine = r.engine;
      tr.append(el("th", r.engine, "text"), el("td", fmt(r.served)), el("td", fmt(r.peak)),
        el("td", fmt(r.held)), el("td", fmt(r.steps)), el("td", fmt(r.cycles)), el("td", fmt(r.p99)));
      tr.firstChild.setAttribute("scope", "row");
      return tr;
    });
    $("exp-body").replaceChildren(...trs);
    setStatus(status, "Done: " + rows.length + " engine" + (rows.length === 1 ? "" : "s") + ", " + count + " allocations of " + size + " bytes each, then the frees; the domains are deleted.", false);
  } catch (err) {
    setStatus(status, "Experiment failed: " + err.message, true);
  } finally {
    $("exp-run").disabled = false;
    refreshDomains();
  }
}

// -- wiring ---------------------------------------------------------------------------
$("token-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  const t = $("token").value.trim();
  if (t) useToken(t);
});
$("forget").addEventListener("click", forget);
$("refresh").addEventListener("click", refreshDomains);
$("live-stop").addEventListener("click", () => {
  stopLive();
  setStatus($("live-status"), "Stopped.", false);
});
$("exp-form").addEventListener("submit", runExperiment);
const saved = sessionStorage.getItem(KEY);
if (saved) useToken(saved);
`;

const BODY = `
<h1>heapvisor control plane</h1>
<p class="note">API reference: <a href="/v1/docs">/v1/docs</a>. This page holds no data; it calls the API with the token you type.</p>
<section aria-labelledby="token-h">
<h2 id="token-h">Token</h2>
<form id="token-form" class="row" autocomplete="off">
<label for="token">Admin or tenant token</label>
<input id="token" name="token" type="password" size="44" required autocomplete="off" spellcheck="false">
<button id="use-token" type="submit">Use token</button>
<button id="forget" type="button" class="secondary">Forget token</button>
<span>role: <b id="role">none</b></span>
</form>
<p id="token-status" class="status" role="status" aria-live="polite"></p>
</section>
<section id="domains-section" aria-labelledby="domains-h" hidden>
<h2 id="domains-h">Domains</h2>
<div class="row"><button id="refresh" type="button" class="secondary">Refresh</button>
<span id="domains-status" class="status" role="status" aria-live="polite"></span></div>
<table id="domains-table"><caption class="note">The domains this token sees (GET /v1/domains)</caption>
<thead><tr><th scope="col">id</th><th scope="col" class="text">name</th><th scope="col" class="text">engine</th>
<th scope="col">pages held (4 KiB pages)</th><th scope="col">overhead (ratio)</th><th scope="col">failures (allocs)</th>
<th scope="col">p99 latency (cycles)</th><th scope="col" class="text">live</th></tr></thead>
<tbody id="domains-body"></tbody></table>
</section>
<section id="live-section" aria-labelledby="live-title" hidden>
<h2 id="live-title">Live stats</h2>
<div class="row"><button id="live-stop" type="button" class="secondary">Stop</button>
<span id="live-status" class="status" role="status" aria-live="polite"></span></div>
<div class="row" style="align-items: flex-start">
<dl id="live-figures" class="figures" aria-label="the domain's figures"></dl>
<figure id="live-chart" style="margin: 0"></figure>
</div>
<div class="row" style="align-items: flex-start">
<figure id="live-lock-chart" style="margin: 0"></figure>
<figure id="live-latency-chart" style="margin: 0"></figure>
</div>
</section>
<section id="exp-section" aria-labelledby="exp-h" hidden>
<h2 id="exp-h">Experiment: the same allocations on each engine</h2>
<p class="note">For each engine chosen: create a domain, run one batch of <i>count</i> allocations of <i>size</i> bytes then their frees (by ref), read its figures, delete it.</p>
<form id="exp-form">
<div class="row">
<span><label for="exp-size">size (bytes)</label><input id="exp-size" type="number" min="1" max="1073741824" value="4000" required></span>
<span><label for="exp-count">count</label><input id="exp-count" type="number" min="1" max="5000" value="100" required></span>
<span><label for="exp-max-pages">max pages per domain</label><input id="exp-max-pages" type="number" min="1" value="4096" required></span>
<span id="exp-tenant-row" hidden><label for="exp-tenant">tenant id</label><input id="exp-tenant" type="number" min="1"></span>
</div>
<fieldset id="exp-engines"><legend>engines</legend></fieldset>
<button id="exp-run" type="submit">Run experiment</button>
</form>
<p id="exp-status" class="status" role="status" aria-live="polite"></p>
<table id="exp-table"><caption class="note">Per engine: the batch's totals and the domain's figures after it</caption>
<thead><tr><th scope="col" class="text">engine</th><th scope="col">allocs served</th><th scope="col">peak pages held (4 KiB pages)</th>
<th scope="col">pages held after frees (4 KiB pages)</th><th scope="col">steps (total)</th><th scope="col">cycles (total)</th>
<th scope="col">p99 latency (cycles)</th></tr></thead>
<tbody id="exp-body"></tbody></table>
</section>
`;

/**
 * The dashboard page: self-contained HTML with its CSS and script inline.
 *
 * @example
 * ```ts
 * import { renderDashboard } from "./dashboard.ts";
 * import assert from "node:assert/strict";
 * const html = renderDashboard();
 * assert.ok(html.startsWith("<!DOCTYPE html>"));
 * assert.ok(html.includes("sessionStorage"));
 * ```
 */
export function renderDashboard(): string {
  return `<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">` +
    `<meta name="viewport" content="width=device-width, initial-scale=1">` +
    `<title>heapvisor dashboard</title><style>${CSS}</style></head><body>${BODY}` +
    `<script>${SCRIPT}</script></body></html>\n`;
}
