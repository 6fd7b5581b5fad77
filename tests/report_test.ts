/**
 * The HTML report: chart data from real results (the near-page curve's steps at the
 * right sizes per engine, footprint samples agreeing with trace replay, latency CDFs,
 * lock wait, page maps), the SVG kit (well-formed, units on axes, log ticks), the CSV
 * and the page (self-contained, escaped, deterministic), and the writer.
 */

import assert from "node:assert/strict";
import { runComparison } from "../hypervisor/compare.ts";
import { replayTrace } from "../hypervisor/replay.ts";
import { BuddyPageAllocator } from "../hypervisor/page_allocator.ts";
import { RESERVATION_OWNER_OFFSET } from "../hypervisor/domains.ts";
import { ENGINE_NAMES } from "../hypervisor/xmalloc/registry.ts";
import { parseScenario, runScenario, type ScenarioResult } from "../guests/scenario.ts";
import { workloadDescriptor } from "../guests/workloads.ts";
import { deriveSeed, Prng } from "../src/prng.ts";
import { IntegerHistogram } from "../src/stats.ts";
import { MiB } from "../src/units.ts";
import {
  CSV_COLUMNS,
  curveSeries,
  FootprintRecorder,
  latencyCdf,
  lockWaitBars,
  pageMap,
  PeakPageMap,
  resultRows,
  sampleFootprint,
  stepSizes,
} from "../src/report/data.ts";
import {
  barChart,
  cdfChart,
  escapeXml,
  formatTick,
  lineChart,
  logTicks,
  niceTicks,
  pageMapChart,
} from "../src/report/svg.ts";
import { renderCsv, renderReport, type ReportInput, writeReport } from "../src/report/html.ts";

// -- helpers ------------------------------------------------------------------------

const ENTITY = /&(?!(?:#\d+|#x[0-9a-fA-F]+|amp|lt|gt|quot|apos);)/;

/**
 * Throw unless `text` is well-formed markup: every tag closed in order (or
 * self-closed, or in `voids`), attributes double-quoted, no stray `<` or `&`.
 */
function assertWellFormed(text: string, voids: ReadonlySet<string> = new Set()): void {
  const token =
    /<(\/?)([a-zA-Z][\w:-]*)((?:\s+[\w:-]+="[^"<]*")*)\s*(\/?)>|<!--[\s\S]*?-->|<!DOCTYPE html>|([^<]+)|(<)/g;
  const stack: string[] = [];
  let at = 0;
  for (let m = token.exec(text); m !== null; m = token.exec(text)) {
    if (m.index !== at) throw new Error(`Malformed markup at ${at}: ${text.slice(at, at + 40)}`);
    at = token.lastIndex;
    if (m[6] !== undefined) {
      throw new Error(`Stray < at ${m.index}: ${text.slice(m.index, m.index + 40)}`);
    }
    const chunk = m[5] ?? m[3] ?? "";
    if (ENTITY.test(chunk)) throw new Error(`Stray & near ${m.index}: ${chunk.slice(0, 60)}`);
    if (m[2] === undefined) continue;
    if (m[1] === "/") {
      const open = stack.pop();
      if (open !== m[2]) throw new Error(`</${m[2]}> at ${m.index} closes <${open}>`);
    } else if (m[4] !== "/" && !voids.has(m[2])) stack.push(m[2]);
  }
  if (at !== text.length) throw new Error(`Malformed markup at ${at}`);
  if (stack.length > 0) throw new Error(`Unclosed <${stack.join("> <")}>`);
}

/** The src/href/xlink:href values and CSS url()s of a page that leave it. */
function externalReferences(html: string): string[] {
  const refs = [...html.matchAll(/\b(?:src|href|xlink:href|action)\s*=\s*"([^"]*)"/g)].map((m) =>
    m[1]!
  );
  refs.push(...[...html.matchAll(/url\(\s*['"]?([^)'"]*)/g)].map((m) => m[1]!));
  return refs.filter((r) => !r.startsWith("#"));
}

const count = (text: string, re: RegExp) => [...text.matchAll(re)].length;
/** The `<svg>` with `id` prefix `id` in a page. */
const svgOf = (html: string, id: string) => {
  const start = html.indexOf(`<svg`, html.indexOf(`aria-labelledby="${id}-title`) - 300);
  return html.slice(start, html.indexOf("</svg>", start) + 6);
};
const texts = (svg: string) => [...svg.matchAll(/<text[^>]*>([^<]*)</g)].map((m) => m[1]!);

// -- shared real results (computed once) --------------------------------------------

let curveResult: ReturnType<typeof runComparison> | undefined;
function fullCurve() {
  curveResult ??= runComparison({ seed: 42, workloads: [] });
  return curveResult;
}

const SMALL_SCENARIO = parseScenario(JSON.stringify({
  name: "report-test",
  seed: 7,
  machine_mib: 64,
  engines: ["tlsf", "first-fit", "slub"],
  guests: [
    { name: "web", vcpus: 3, max_pages: 4096, workload: "nginx", scale: 0.05 },
    { name: "kv", vcpus: 2, max_pages: 4096, workload: "redis", scale: 0.05 },
  ],
}));
let scenarioResult: ScenarioResult | undefined;
async function smallScenario(): Promise<ScenarioResult> {
  scenarioResult ??= await runScenario(SMALL_SCENARIO, { timing: false });
  return structuredClone(scenarioResult);
}
let comparisonResult: ReturnType<typeof runComparison> | undefined;
function smallComparison() {
  comparisonResult ??= runComparison({
    seed: 3,
    engines: ["first-fit", "tlsf"],
    workloads: ["compcache", "small-objects"],
    scale: 0.05,
    curve: false,
  });
  return comparisonResult;
}

// -- the near-page curve -----------------------------------------------------------

Deno.test("curve series: each engine's line steps exactly where findStepUps says", () => {
  const curve = fullCurve().curve!;
  const series = curveSeries(curve);
  assert.deepEqual(series.map((s) => s.name), [...ENGINE_NAMES]);
  for (const s of series) {
    assert.deepEqual(
      stepSizes(s.points),
      curve.step_ups[s.name]!.map((u) => u.size_bytes),
      `${s.name}: the series' steps are the curve's step-ups`,
    );
  }
});

Deno.test("curve series: first fit doubles at 3969 B, tlsf at 4097, tlsf-2008 at 4081, slub at 2^k + 1", () => {
  const series = new Map(curveSeries(fullCurve().curve!).map((s) => [s.name, s]));
  const y = (engine: string, size: number) =>
    series.get(engine)!.points.find((p) => p[0] === size)?.[1];
  const steps = (engine: string) => stepSizes(series.get(engine)!.points);
  // bytes per object = pages per 1024 objects x 4096 / 1024
  assert.equal(y("first-fit", 3968), 4096);
  assert.equal(y("first-fit", 3969), 8192);
  assert.ok(steps("first-fit").includes(3969));
  assert.ok(!steps("first-fit").includes(4097), "first fit has already doubled before the page");
  assert.equal(y("tlsf", 4096), 4096);
  assert.equal(y("tlsf", 4097), 8192);
  assert.ok(steps("tlsf").includes(4097) && steps("tlsf").includes(8193));
  assert.ok(!steps("tlsf").includes(3969));
  assert.equal(y("tlsf-2008", 4080), 1025 * 4);
  assert.equal(y("tlsf-2008", 4081), 2049 * 4);
  assert.ok(steps("tlsf-2008").includes(4081));
  assert.equal(y("tlsf-2008", 4048), null, "tlsf-2008 refuses 4033..4063 B: a gap");
  for (let k = 3; k <= 13; k++) {
    assert.ok(steps("slub").includes(2 ** k + 1), `slub steps at ${2 ** k + 1} B`);
  }
  assert.equal(y("slub", 2048)! * 2, y("slub", 2049), "slub's cost doubles past a power of two");
});

Deno.test("curve series: bytes per object, a point each side of every step-up, sorted", () => {
  const series = curveSeries({
    object_count: 1024,
    sizes_bytes: [1, 100],
    pages_per_1024: { e: [10, 20] },
    step_ups: { e: [{ size_bytes: 50, pages_before: 10, pages_after: 20 }] },
  });
  assert.deepEqual(series, [{ name: "e", points: [[1, 40], [49, 40], [50, 80], [100, 80]] }]);
});

Deno.test("curve charts: one line per engine, axis titles with units, log ticks at powers of ten", () => {
  const c = fullCurve();
  const html = renderReport({ command: "deno task sim compare", comparison: c });
  for (const id of ["curve-log", "curve-page"]) {
    const svg = svgOf(html, id);
    assertWellFormed(svg);
    assert.equal(count(svg, /<path class="series"/g), c.engines.length, id);
    assert.ok(texts(svg).includes("request size (bytes)"), id);
    assert.ok(texts(svg).includes("bytes consumed per object (bytes)"), id);
  }
  const log = texts(svgOf(html, "curve-log"));
  for (const tick of ["1", "10", "100", "1000", "10k"]) {
    assert.ok(log.includes(tick), `x tick ${tick}`);
  }
  assert.ok(!log.includes("5000"), "no ticks between powers of ten over 4 decades");
  // the zoom marks each engine's step inside it, at its size
  const zoom = texts(svgOf(html, "curve-page"));
  for (const label of ["first-fit: 3969 B", "tlsf: 4097 B", "tlsf-2008: 4081 B", "slub: 4097 B"]) {
    assert.ok(zoom.includes(label), label);
  }
});

// -- the SVG kit ---------------------------------------------------------------------

Deno.test("ticks: log axes at powers of ten, linear at round steps, short labels", () => {
  assert.deepEqual(logTicks(1, 12288), [1, 10, 100, 1000, 10000]);
  assert.deepEqual(logTicks(20, 20000), [100, 1000, 10000]);
  assert.deepEqual(logTicks(10, 100), [10, 20, 50, 100], "under 3 powers: 2x and 5x too");
  assert.deepEqual(niceTicks(0, 30750), [0, 10000, 20000, 30000]);
  assert.deepEqual(niceTicks(3584, 4608, 8), [3600, 3800, 4000, 4200, 4400, 4600]);
  assert.deepEqual(niceTicks(0, 1), [0, 0.2, 0.4, 0.6, 0.8, 1]);
  assert.equal(formatTick(20000), "20k");
  assert.equal(formatTick(3e6), "3M");
  assert.equal(formatTick(10240), "10240", "not abbreviated when it would round");
  assert.equal(formatTick(0.25), "0.25");
});

Deno.test("line chart: well-formed, titled, one path per series, nulls break the line, step paths", () => {
  const svg = lineChart({
    id: "t",
    title: "T",
    description: "D",
    x: { label: "size", unit: "bytes" },
    y: { label: "cost", unit: "cycles", scale: "log" },
    series: [
      { name: "a", points: [[1, 10], [2, 100], [3, null], [4, 1000]] },
      { name: "b", points: [[1, 20], [4, 30]] },
    ],
    step: true,
    markers: [{ x: 4, y: 1000, label: "worst" }],
  });
  assertWellFormed(svg);
  assert.match(svg, /^<svg [^>]*role="img" aria-labelledby="t-title t-desc"/);
  assert.match(svg, /<title id="t-title">T<\/title><desc id="t-desc">D<\/desc>/);
  const paths = [...svg.matchAll(/<path class="series" d="([^"]*)"/g)].map((m) => m[1]!);
  assert.equal(paths.length, 2);
  assert.equal(count(paths[0]!, /M/g), 2, "the null point breaks series a in two");
  assert.match(paths[0]!, /H[\d.]+V[\d.]+/, "steps: horizontal then vertical");
  assert.equal(count(svg, /<circle class="marker"/g), 1);
  assert.ok(texts(svg).includes("size (bytes)") && texts(svg).includes("cost (cycles)"));
  assert.ok(["10", "100", "1000"].every((t) => texts(svg).includes(t)), "log y ticks");
  assert.throws(() => assertWellFormed(svg.replace("</title>", "")), /closes|Unclosed/);
  assert.throws(() => assertWellFormed("<svg><text>a & b</text></svg>"), /Stray &/);
});

Deno.test("escaping: text stays text in every chart", () => {
  const name = `<b>&x"'`;
  const svgs = [
    lineChart({
      id: name,
      title: name,
      description: name,
      x: { label: name, unit: name },
      y: { label: "y", unit: "u" },
      series: [{ name, points: [[1, 1], [2, 2]] }],
      guides: [{ x: 1, label: name }],
      markers: [{ x: 1, y: 1, label: name }],
    }),
    barChart({
      id: "b",
      title: name,
      description: name,
      categories: [name],
      categoryLabel: name,
      series: [{ name, values: [5] }],
      y: { label: "y", unit: name },
    }),
    pageMapChart({
      id: "p",
      title: name,
      description: name,
      cells: [0],
      columns: 1,
      classes: [{ label: name, color: "#000" }],
    }),
  ];
  for (const svg of svgs) {
    assertWellFormed(svg);
    assert.ok(!svg.includes("<b>") && !svg.includes("&x"), "raw markup would have been injected");
    assert.ok(svg.includes(escapeXml(name)));
  }
  assert.equal(escapeXml(`<b>&x"'`), "&#60;b&#62;&#38;x&#34;&#39;");
});

Deno.test("bar chart: one bar per figure, grouped by category; a log axis shows bars too low to draw as text", () => {
  const svg = barChart({
    id: "lw",
    title: "Lock wait",
    description: "d",
    categories: ["vCPU 0", "vCPU 1"],
    categoryLabel: "vCPU",
    series: [{ name: "a", values: [1000, 2_000_000] }, { name: "b", values: [0, null] }],
    y: { label: "lock wait", unit: "cycles", scale: "log" },
  });
  assertWellFormed(svg);
  assert.equal(count(svg, /<g class="bar">/g), 2, "a's two bars; b's zero and null are not bars");
  assert.equal(count(svg, /<text class="bar-floor"/g), 1, "b's zero is said as text");
  assert.ok(texts(svg).includes("lock wait (cycles)"));
  assert.ok(["1000", "10k", "100k", "1M"].every((t) => texts(svg).includes(t)));
});

// -- footprint -----------------------------------------------------------------------

Deno.test("sampleFootprint: with every op sampled, its peaks are replayTrace's figures", () => {
  const trace = workloadDescriptor("frag-ramp").generate(
    new Prng(deriveSeed(5, "frag-ramp")),
    0.05,
  );
  for (const engine of ["first-fit", "tlsf", "slub"]) {
    const samples = sampleFootprint(trace, engine, MiB(64), 1);
    const replay = replayTrace(trace, { engine, machineBytes: MiB(64) });
    assert.equal(samples.length, trace.opCount + 1);
    assert.equal(Math.max(...samples.map((s) => s.pagesHeld)), replay.peak_pages, engine);
    assert.equal(samples.at(-1)!.pagesHeld, replay.end_pages, engine);
    assert.equal(
      Math.max(...samples.map((s) => s.liveRequestedBytes)),
      replay.peak_live_requested_bytes,
    );
  }
  const sparse = sampleFootprint(trace, "tlsf", MiB(64), 100);
  assert.ok(sparse.slice(0, -1).every((s) => s.op % 100 === 0));
  assert.equal(sparse.at(-1)!.op, trace.opCount, "the last op is always sampled");
  assert.equal(
    sparse.length,
    Math.floor(trace.opCount / 100) + 1 + (trace.opCount % 100 === 0 ? 0 : 1),
  );
});

Deno.test("FootprintRecorder: rejects a bad interval, keeps every n-th and the last", () => {
  assert.throws(() => new FootprintRecorder(0), RangeError);
  const r = new FootprintRecorder(3);
  for (let op = 0; op <= 7; op++) r.record(op, op * 2, op);
  assert.deepEqual(r.samples().map((s) => s.op), [0, 3, 6, 7]);
});

// -- latency and lock wait -----------------------------------------------------------

Deno.test("latencyCdf: cumulative shares ending at the worst case; close points merge", () => {
  const h = new IntegerHistogram();
  for (const [v, n] of [[20, 50], [30, 30], [1000, 19], [17690, 1]] as const) h.addCount(v, n);
  const cdf = latencyCdf(h.entries());
  assert.deepEqual(cdf.points, [[20, 0], [20, 0.5], [30, 0.8], [1000, 0.99], [17690, 1]]);
  assert.equal(cdf.worstCycles, 17690);
  assert.equal(cdf.calls, 100);
  const merged = latencyCdf([[1000, 1], [1001, 1], [1002, 2]], 10);
  assert.deepEqual(merged.points, [[1000, 0], [1002, 1]], "one point per tenth of a decade");
  const svg = cdfChart({
    id: "c",
    title: "t",
    description: "d",
    x: { label: "cost", unit: "cycles" },
    series: [{ name: "tlsf", points: cdf.points, worst: cdf.worstCycles }],
  });
  assertWellFormed(svg);
  assert.match(svg, /<circle class="marker"[^>]*><title>tlsf: worst case 17690 cycles<\/title>/);
  assert.ok(texts(svg).includes("10k") && texts(svg).includes("cost (cycles)"));
});

Deno.test("lockWaitBars: one series per engine, one category per vCPU, the per-vCPU figures", async () => {
  const s = await smallScenario();
  const bars = lockWaitBars(s, 0);
  assert.deepEqual(bars.categories, ["vCPU 0", "vCPU 1", "vCPU 2"]);
  assert.deepEqual(bars.series.map((x) => x.name), SMALL_SCENARIO.engines);
  s.runs.forEach((run, i) => {
    assert.deepEqual(
      bars.series[i]!.values,
      run.guests[0]!.per_vcpu.map((p) => p.lock_wait_cycles),
    );
  });
  assert.ok(bars.series.some((x) => x.values.some((v) => v! > 0)), "some lock wait to show");
});

// -- page map --------------------------------------------------------------------------

function smallMachine(): BuddyPageAllocator {
  const pages = new BuddyPageAllocator(1000); // not a power of two: cut into aligned blocks
  pages.alloc(3, 0); // Xen heap: 8 frames
  pages.alloc(0, 1); // domain 1 pool
  pages.alloc(4, 2); // domain 2 pool: 16 frames
  pages.alloc(2, 1 + RESERVATION_OWNER_OFFSET); // domain 1's reservation: 4 frames
  return pages;
}

Deno.test("pageMap: one cell per frame when it fits, owner classes exact, frames add up", () => {
  const pages = smallMachine();
  const map = pageMap(pages, { names: new Map([[1, "tmem"]]) });
  assert.equal(map.framesPerCell, 1);
  assert.equal(map.cells.length, 1000);
  assert.deepEqual(
    map.classes.map((c) => [c.label, c.frames]),
    [["Xen heap", 8], ["domain 1 (tmem) pool", 1], ["domain 1 (tmem) reservation", 4], [
      "domain 2 pool",
      16,
    ], [
      "free",
      971,
    ]],
  );
  assert.equal(map.classes.reduce((s, c) => s + c.frames, 0), pages.frameCount);
  for (let f = 0; f < 1000; f++) {
    const c = map.classes[map.cells[f]!]!;
    const owner = pages.ownerOf(pages.blockHeadOf(f));
    const expected = owner < 0
      ? "free"
      : owner === 0
      ? "xen-heap"
      : owner >= RESERVATION_OWNER_OFFSET
      ? "reservation"
      : "domain";
    assert.equal(c.kind, expected, `frame ${f}`);
  }
});

Deno.test("pageMap: downsampled cells cover every frame once and show the dominant owner", () => {
  const pages = smallMachine();
  const map = pageMap(pages, { maxCells: 7 });
  assert.equal(map.framesPerCell, 143);
  assert.equal(map.cells.length, 7);
  const covered = Array.from(map.cells, (_, i) => Math.min(map.toFrame, (i + 1) * 143) - i * 143);
  assert.equal(covered.reduce((a, b) => a + b, 0), pages.frameCount);
  assert.ok(
    [...map.cells].every((k) => map.classes[k]!.kind === "free"),
    "29 used frames are never most of 143",
  );
  const span = pageMap(pages, { fromFrame: 960, toFrame: 1000 });
  assert.equal(span.cells.length, 40);
  assert.equal(span.classes.reduce((s, c) => s + c.frames, 0), 40);
  assert.throws(() => pageMap(pages, { fromFrame: 5, toFrame: 5 }), RangeError);
  const svg = pageMapChart({
    id: "pm",
    title: "t",
    description: "d",
    cells: map.cells,
    columns: 3,
    classes: map.classes.map((c) => ({
      label: c.label,
      color: "#123456",
      hatched: c.kind === "reservation",
    })),
  });
  assertWellFormed(svg);
  assert.equal(
    count(svg, /<rect x="\d+" y="\d+" width="\d+" height="\d+" fill="#123456"\/>/g),
    3,
    "one run per row",
  );
});

Deno.test("pageMap: a cell half used and half free shows its owner", () => {
  const pages = new BuddyPageAllocator(4);
  const frame = pages.alloc(0, 3);
  const map = pageMap(pages, { maxCells: 2 });
  assert.equal(map.framesPerCell, 2);
  assert.equal(map.classes[map.cells[frame >> 1]!]!.label, "domain 3 pool");
  assert.equal(map.classes[map.cells[1 - (frame >> 1)]!]!.kind, "free");
});

Deno.test("PeakPageMap: keeps the map of the moment the most frames were in use", () => {
  const pages = new BuddyPageAllocator(256);
  const peak = new PeakPageMap();
  const a = pages.alloc(4, 1);
  peak.observe(pages);
  const b = pages.alloc(5, 2);
  peak.observe(pages);
  pages.free(b, 5);
  pages.free(a, 4);
  peak.observe(pages);
  assert.equal(peak.peakUsedFrames, 48);
  const map = peak.map!;
  const from = Math.min(a, b), to = Math.max(a + 16, b + 32);
  assert.deepEqual([map.fromFrame, map.toFrame], [from, to], "the used span at the peak");
  assert.deepEqual(map.classes.map((c) => [c.label, c.frames]), [
    ["domain 1 pool", 16],
    ["domain 2 pool", 32],
    ["free", to - from - 48],
  ]);
  assert.equal(new PeakPageMap({ span: "machine" }).map, null);
  const whole = new PeakPageMap({ span: "machine" });
  whole.observe(pages);
  assert.equal(whole.map!.toFrame - whole.map!.fromFrame, 256);
});

// -- CSV, page, writer ------------------------------------------------------------------

Deno.test("CSV: units in the header, one row per engine x workload and engine x guest", async () => {
  const c = smallComparison();
  const s = await smallScenario();
  const csv = renderCsv(resultRows(c, s));
  const lines = csv.trimEnd().split("\n");
  const header = lines[0]!.split(",");
  for (
    const col of [
      "peak_pages",
      "overhead_ratio",
      "latency_p99_cycles",
      "host_ns_per_op",
      "lock_wait_cycles",
    ]
  ) {
    assert.ok(header.includes(col), col);
  }
  assert.equal(
    lines.length - 1,
    c.engines.length * c.workloads.length + s.engines.length * s.guests.length,
  );
  const rows = lines.slice(1).map((l) => l.split(","));
  const at = (row: string[], col: string) => row[header.indexOf(col)];
  const kv = rows.find((r) => at(r, "guest") === "kv" && at(r, "engine") === "slub")!;
  const kvResult = s.runs.find((r) => r.engine === "slub")!.guests[1]!;
  assert.equal(at(kv, "latency_p99_cycles"), String(kvResult.latency_cycles.p99));
  assert.equal(at(kv, "peak_pages"), String(kvResult.peak_pages));
  const replay = rows.find((r) => at(r, "workload") === "compcache" && at(r, "engine") === "tlsf")!;
  assert.equal(at(replay, "kind"), "replay");
  assert.equal(
    at(replay, "max_steps"),
    String(c.results.find((r) => r.trace === "compcache" && r.engine === "tlsf")!.max_steps),
  );
  assert.equal(at(replay, "latency_p99_cycles"), "", "a figure the row has not is empty");
});

Deno.test("CSV: quoting and formula guard", () => {
  const line = (v: string) => renderCsv([{ guest: v }]).split("\n")[1]!;
  const col = CSV_COLUMNS.indexOf("guest");
  assert.equal(
    line('a,"b"'),
    ",".repeat(col) + '"a,""b"""' + ",".repeat(CSV_COLUMNS.length - col - 1),
  );
  assert.equal(line("=cmd()").split(",")[col], "'=cmd()");
  assert.equal(line("web").split(",")[col], "web");
});

async function fullInput(): Promise<ReportInput> {
  const s = await smallScenario();
  s.guests[0]!.name = `<b>&x`; // what a hostile name would do
  for (const run of s.runs) run.guests[0]!.guest = `<b>&x`;
  const pages = smallMachine();
  const trace = workloadDescriptor("compcache").generate(
    new Prng(deriveSeed(3, "compcache")),
    0.05,
  );
  return {
    command: "deno task sim --seed 7 --out <dir>",
    scenario: s,
    comparison: { ...smallComparison(), curve: fullCurve().curve! },
    latency: s.runs.map((r) => ({
      engine: r.engine,
      guest: `<b>&x`,
      entries: [[20, 3], [450, 1]] as [number, number][],
    })),
    footprint: ["first-fit", "tlsf"].map((engine) => ({
      source: "compcache",
      engine,
      every: 50,
      samples: sampleFootprint(trace, engine, MiB(64), 50),
    })),
    pageMaps: [{ engine: "tlsf", map: pageMap(pages, { names: new Map([[1, `<b>&x`]]) }) }],
  };
}

Deno.test("report: well-formed, self-contained, every chart present, escaped, deterministic", async () => {
  const input = await fullInput();
  const html = renderReport(input);
  assertWellFormed(html, new Set(["meta"]));
  assert.deepEqual(externalReferences(html), [], "nothing outside the file");
  assert.ok(!/<script|<link|<iframe|<img|@import/i.test(html));
  assert.deepEqual(
    externalReferences(
      `<a href="https://x.org">x</a><img src="//cdn/x.png"><i style="background:url(http://y)">`,
    ),
    ["https://x.org", "//cdn/x.png", "http://y"],
    "the check finds what it looks for",
  );
  assert.ok(!html.includes("<b>&x"), "the guest name stays text");
  assert.ok(html.includes("&#60;b&#62;&#38;x"));
  assert.ok(
    html.includes("deno task sim --seed 7 --out &#60;dir&#62;"),
    "the command that reproduces it",
  );
  const svgs = [...html.matchAll(/<svg /g)].length;
  // latency of the guest with histograms, 2 lock wait (guests), 1 page map, 2 curve, 1 footprint
  assert.equal(svgs, 7);
  assert.ok(html.includes("kv: no latency histograms given"), "a guest without histograms is said");
  for (const id of ["latency-0", "lockwait-1", "pagemap-0", "curve-log", "footprint-0"]) {
    assert.ok(html.includes(`aria-labelledby="${id}-title ${id}-desc"`), id);
  }
  assert.equal(
    count(svgOf(html, "footprint-0"), /<path class="series"/g),
    3,
    "two engines and the ideal",
  );
  assert.equal(
    count(svgOf(html, "latency-0"), /<circle class="marker"/g),
    input.scenario!.engines.length,
  );
  assert.equal(renderReport(input), html, "the same input gives the same bytes");
});

Deno.test("report tables: units in headers, best per column marked, failed engines not ranked", async () => {
  const s = await smallScenario();
  const html = renderReport({ command: "x", scenario: s });
  const table = html.slice(html.indexOf("<table>"), html.indexOf("</table>"));
  for (
    const head of [
      "peak held (pages)",
      "overhead (ratio)",
      "latency p99 (cycles)",
      "lock wait (cycles)",
    ]
  ) {
    assert.ok(table.includes(`<th scope="col">${head}</th>`), head);
  }
  const peaks = s.runs.map((r) => r.guests[0]!.peak_pages);
  const bestEngine = s.runs[peaks.indexOf(Math.min(...peaks))]!.engine;
  const row = table.slice(table.indexOf(`<th scope="row">${bestEngine}`));
  assert.match(
    row,
    /^<th scope="row">[^<]+<\/th><td class="best">[\d,]+<span class="mark"/,
    "lowest peak is marked",
  );
  assert.equal(count(table, /class="best"/g) > 0, true);
  // an engine that failed allocations is marked and never best, even with the best figure
  s.runs[0]!.guests[0]!.failures.quota = 1;
  s.runs[0]!.guests[0]!.peak_pages = Math.min(...peaks.slice(1));
  const failed = renderReport({ command: "x", scenario: s });
  const t2 = failed.slice(failed.indexOf("<table>"), failed.indexOf("</table>"));
  const r0 = t2.slice(
    t2.indexOf(`<th scope="row">${s.runs[0]!.engine}`),
    t2.indexOf("</tr>", t2.indexOf(`<th scope="row">${s.runs[0]!.engine}`)),
  );
  assert.ok(r0.includes("not ranked") && !r0.includes('class="best"'));
  assert.ok(
    /<td class="best">/.test(
      t2.slice(t2.indexOf("</tr>", t2.indexOf(`<th scope="row">${s.runs[0]!.engine}`))),
    ),
  );
});

Deno.test("writeReport: writes the three files; a clear error when the directory cannot be made", async () => {
  const input = await fullInput();
  const dir = Deno.makeTempDirSync();
  try {
    const out = `${dir}/nested/report`;
    const paths = writeReport(out, input);
    assert.deepEqual(
      paths,
      ["results.json", "results.csv", "report.html"].map((f) => `${out}/${f}`),
    );
    assert.equal(Deno.readTextFileSync(`${out}/report.html`), renderReport(input));
    assert.equal(JSON.parse(Deno.readTextFileSync(`${out}/results.json`)).scenario.seed, 7);
    assert.ok(Deno.readTextFileSync(`${out}/results.csv`).startsWith("kind,scenario,seed,"));
    Deno.writeTextFileSync(`${dir}/file`, "");
    assert.throws(
      () => writeReport(`${dir}/file/sub`, input),
      /^Error: Cannot write the report to .*\/file\/sub: /,
    );
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
});
