/**
 * The HTML report of a run: one self-contained page (inline CSS and SVG, no scripts,
 * no network, opens from disk) with the command that reproduces it, the comparison
 * tables (best per column marked, units in headers) and the charts; and the CSV of
 * the same figures. {@link renderReport} and {@link renderCsv} are pure and
 * deterministic; {@link writeReport} is the one function that writes files.
 *
 * @module
 */

import type { CompareResult } from "../../hypervisor/compare.ts";
import type { GuestResult, ScenarioResult } from "../../guests/scenario.ts";
import type { ReplayResult } from "../../hypervisor/replay.ts";
import {
  CSV_COLUMNS,
  type CsvRow,
  curveSeries,
  type FootprintSample,
  footprintSeries,
  latencyCdf,
  lockWaitBars,
  type PageMap,
  resultRows,
} from "./data.ts";
import {
  barChart,
  cdfChart,
  escapeXml,
  lineChart,
  pageMapChart,
  type PageMapClass,
  type Series,
  SERIES_COLORS,
  type SeriesStyle,
  seriesStyle,
} from "./svg.ts";

/** What a report shows. */
export interface ReportInput {
  /** Page title (default "heapvisor report"). */
  title?: string;
  /** The command line that reproduces the run. */
  command: string;
  /** A scenario run on every engine (`deno task sim`). */
  scenario?: ScenarioResult;
  /** A single-CPU comparison (`deno task sim compare`). */
  comparison?: CompareResult;
  /** Latency histograms (`IntegerHistogram.entries()`) per engine and guest of the scenario. */
  latency?: readonly { engine: string; guest: string; entries: readonly [number, number][] }[];
  /** Footprint samples per engine, grouped by what ran (a workload or a guest). */
  footprint?: readonly {
    source: string;
    engine: string;
    every: number;
    samples: readonly FootprintSample[];
  }[];
  /** Page maps at the peak, per engine. */
  pageMaps?: readonly { engine: string; map: PageMap }[];
}

const CSS = `
body{font:15px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;color:#111;background:#fff;max-width:940px;margin:0 auto;padding:16px 24px 48px}
h1{font-size:1.6em;margin:.4em 0}h2{margin-top:2em;border-bottom:1px solid #ccc;padding-bottom:.2em}h3{margin:1.4em 0 .4em}
pre,code{font:13px/1.4 ui-monospace,Menlo,Consolas,monospace}pre{background:#f4f4f4;padding:8px 10px;overflow-x:auto;border-radius:4px}
table{border-collapse:collapse;margin:.4em 0 1em;font-size:13px}th,td{border:1px solid #ccc;padding:3px 7px;text-align:right}
th{background:#f0f0f0;font-weight:600;vertical-align:bottom}tbody th{white-space:nowrap}td:first-child,th:first-child{text-align:left}
td.best{font-weight:700;background:#e3f1fb}td.failed{color:#8a3b00}.mark{margin-left:.2em}
figure{margin:1.2em 0 2em}figcaption{font-size:13px;color:#333;margin-top:.3em;max-width:880px}svg{max-width:100%;height:auto}
.sr{position:absolute;width:1px;height:1px;overflow:hidden;clip:rect(0 0 0 0);white-space:nowrap}
.note{color:#444;font-size:13px}nav a{margin-right:1em}
`;

const e = escapeXml;

/** Integers with thousands separators ("24,961,806"); others to at most 2 decimals. */
function formatFigure(v: number): string {
  if (Number.isInteger(v)) return String(v).replace(/\B(?=(\d{3})+(?!\d))/g, ",");
  return String(Number(v.toFixed(2)));
}

const frames = (n: number) => `${formatFigure(n)} frame${n === 1 ? "" : "s"}`;

/** A column of a results table: its header (unit in parentheses) and figure. */
interface Column<T> {
  head: string;
  value: (row: T) => number | null;
  /** Rank the column (lowest best; default true). */
  rank?: boolean;
}

/**
 * A table with one row per engine; per ranked column the lowest figure among engines
 * that failed no allocation is marked best (when not all are equal). Engines with
 * failures are marked and not ranked: they served less.
 */
function resultsTable<T>(
  caption: string,
  rows: readonly { engine: string; failed: boolean; item: T }[],
  columns: readonly Column<T>[],
): string {
  const best = columns.map((c) => {
    if (c.rank === false) return null;
    const eligible = rows.filter((r) => !r.failed).map((r) => c.value(r.item))
      .filter((v): v is number => v !== null);
    return new Set(eligible).size > 1 ? Math.min(...eligible) : null;
  });
  const head = `<tr><th scope="col">engine</th>${
    columns.map((c) => `<th scope="col">${e(c.head)}</th>`).join("")
  }</tr>`;
  const body = rows.map((r) => {
    const name = r.failed
      ? `${
        e(r.engine)
      }<span class="mark" aria-hidden="true">!</span><span class="sr"> (some allocations failed: not ranked)</span>`
      : e(r.engine);
    const cells = columns.map((c, i) => {
      const v = c.value(r.item);
      if (v === null) return "<td>-</td>";
      if (!r.failed && v === best[i]) {
        return `<td class="best">${
          formatFigure(v)
        }<span class="mark" aria-hidden="true">★</span><span class="sr"> (best)</span></td>`;
      }
      return `<td${r.failed ? ' class="failed"' : ""}>${formatFigure(v)}</td>`;
    });
    return `<tr><th scope="row">${name}</th>${cells.join("")}</tr>`;
  }).join("");
  return `<table><caption class="sr">${
    e(caption)
  }</caption><thead>${head}</thead><tbody>${body}</tbody></table>`;
}

const failedReplay = (r: ReplayResult) => r.failures > 0;
const failedGuest = (g: GuestResult) => Object.values(g.failures).some((n) => n > 0);

function figure(svg: string, caption: string): string {
  return `<figure>${svg}<figcaption>${caption}</figcaption></figure>`;
}

/** Engine name -> style, the same in every chart. */
function engineStyles(input: ReportInput): (engine: string) => SeriesStyle {
  const engines = [
    ...new Set([...(input.scenario?.engines ?? []), ...(input.comparison?.engines ?? [])]),
  ];
  return (engine) => {
    const i = engines.indexOf(engine);
    return seriesStyle(i < 0 ? engines.length : i);
  };
}

function reproduce(input: ReportInput): string {
  let out = `<h2 id="reproduce">Reproduce</h2><pre>${e(input.command)}</pre><ul>`;
  if (input.scenario) {
    const s = input.scenario;
    out += `<li>Scenario <code>${
      e(s.scenario)
    }</code>, seed <code>${s.seed}</code>, machine ${s.machine_mib} MiB, engines ${
      e(s.engines.join(", "))
    }.</li>`;
  }
  if (input.comparison) {
    const c = input.comparison;
    out +=
      `<li>Comparison: seed <code>${c.seed}</code>, scale ${c.scale}, machine ${c.machine_mib} MiB, engines ${
        e(c.engines.join(", "))
      }, workloads ${e(c.workloads.map((w) => w.name).join(", "))}.</li>`;
  }
  out +=
    `</ul><p class="note">The same seed and flags give the same figures; host times (ns/op) are this machine's.</p>`;
  if (input.scenario) {
    const s = input.scenario;
    const file = {
      name: s.scenario,
      seed: s.seed,
      machine_mib: s.machine_mib,
      engines: s.engines,
      guests: s.guests,
    };
    out += `<details><summary>The scenario as a file (<code>--scenario FILE</code>)</summary><pre>${
      e(JSON.stringify(file, null, 2))
    }</pre></details>`;
  }
  return out;
}

function scenarioSection(
  input: ReportInput,
  s: ScenarioResult,
  style: (e: string) => SeriesStyle,
): string {
  let out = `<h2 id="scenario">Scenario ${
    e(s.scenario)
  }: guests on one hypervisor, per engine</h2>`;
  const boot = s.runs.some((r) => r.guests.some((g) => g.boot_cycles > 0));
  const columns: Column<GuestResult>[] = [
    { head: "peak held (pages)", value: (g) => g.peak_pages },
    { head: "overhead (ratio)", value: (g) => g.overhead_ratio },
    {
      head: "failures (allocs)",
      value: (g) => Object.values(g.failures).reduce((a, b) => a + b, 0),
      rank: false,
    },
    { head: "latency p50 (cycles)", value: (g) => g.latency_cycles.p50 },
    { head: "latency p99 (cycles)", value: (g) => g.latency_cycles.p99 },
    { head: "latency max (cycles)", value: (g) => g.latency_cycles.max },
    { head: "lock wait (cycles)", value: (g) => g.lock_wait_cycles },
    { head: "contended takes (count)", value: (g) => g.lock_contended },
    { head: "false sharing peak (lines)", value: (g) => g.false_sharing_peak_lines },
    { head: "cache-line transfers (count)", value: (g) => g.cache_line_transfers },
    { head: "makespan (cycles)", value: (g) => g.makespan_cycles },
    ...(boot ? [{ head: "boot (cycles)", value: (g: GuestResult) => g.boot_cycles }] : []),
  ];
  s.guests.forEach((spec, i) => {
    out += `<h3>${e(spec.name)} (${e(spec.workload)}, ${spec.vcpus} vCPU${
      spec.vcpus > 1 ? "s" : ""
    }, max ${spec.max_pages} pages)</h3>`;
    const rows = s.runs.map((r) => ({
      engine: r.engine,
      failed: failedGuest(r.guests[i]!),
      item: r.guests[i]!,
    }));
    out += resultsTable(`${spec.name}: figures per engine`, rows, columns);
  });
  if (s.runs.some((r) => r.host_ns_per_op !== undefined)) {
    out += `<h3>Host time</h3>` + resultsTable(
      "Host time per engine",
      s.runs.map((r) => ({ engine: r.engine, failed: false, item: r })),
      [{ head: "all guests, requests included (ns/op)", value: (r) => r.host_ns_per_op ?? null }],
    );
  }
  out +=
    `<p class="note">★ best in its column (lowest); ! some allocations failed, so the engine served less and is not ranked. Cycles are modelled (src/cost_model.ts).</p>`;
  out += `<h3 id="latency">Latency</h3>`;
  s.guests.forEach((spec, i) => {
    const series = s.runs.flatMap((r) => {
      const h = input.latency?.find((l) => l.engine === r.engine && l.guest === spec.name);
      if (!h) return [];
      const cdf = latencyCdf(h.entries);
      return [{
        name: `${r.engine} (worst ${cdf.worstCycles})`,
        points: cdf.points,
        worst: cdf.worstCycles,
        style: style(r.engine),
      }];
    });
    if (series.length === 0) {
      out += `<p class="note">${
        e(spec.name)
      }: no latency histograms given; the percentiles are in the table above.</p>`;
      return;
    }
    out += figure(
      cdfChart({
        id: `latency-${i}`,
        title: `Latency of ${spec.name}: share of calls at or below a cost`,
        description:
          `Cumulative distribution of modelled cycles per allocator call of guest ${spec.name}, one line per engine, log x axis; a ring marks each engine's worst call.`,
        x: { label: "modelled cost per call, lock wait included", unit: "cycles" },
        series,
      }),
      `The further left and the steeper, the better; the tail to the right is the worst case (ringed). ${
        e(spec.name)
      }: ${series.map((x) => e(x.name)).join("; ")}.`,
    );
  });
  out += `<h3 id="lock-wait">Lock wait per vCPU</h3>`;
  s.guests.forEach((spec, i) => {
    const bars = lockWaitBars(s, i);
    const values = bars.series.flatMap((x) =>
      x.values.filter((v): v is number => v !== null && v > 0)
    );
    const log = values.length > 0 && Math.max(...values) / Math.min(...values) > 100;
    out += figure(
      barChart({
        id: `lockwait-${i}`,
        title: `Lock wait of ${spec.name}, per vCPU`,
        description:
          `Cycles each vCPU of guest ${spec.name} waited for the pool and heap locks, one bar per engine.`,
        categories: bars.categories,
        categoryLabel: "vCPU of the guest",
        series: bars.series.map((x) => ({ ...x, style: style(x.name) })),
        y: { label: "cycles waited for locks", unit: "cycles", scale: log ? "log" : "linear" },
      }),
      `Bars in legend order within each vCPU${
        log ? "; log scale (the engines differ by orders of magnitude)" : ""
      }. Lower is better.`,
    );
  });
  return out;
}

const FREE_COLOR = "#e4e4e4";
const XEN_COLOR = "#000000";

function pageMapSection(maps: NonNullable<ReportInput["pageMaps"]>): string {
  let out = `<h2 id="page-map">Page map at the peak</h2>`;
  maps.forEach(({ engine, map }, i) => {
    const classes: PageMapClass[] = map.classes.map((c) => ({
      label: `${c.label}: ${frames(c.frames)}`,
      color: c.kind === "free"
        ? FREE_COLOR
        : c.kind === "xen-heap"
        ? XEN_COLOR
        : SERIES_COLORS[((c.domain ?? 1) - 1) % (SERIES_COLORS.length - 1)]!, // black is the heap's
      hatched: c.kind === "reservation",
    }));
    const span = map.toFrame - map.fromFrame;
    const used = map.classes.filter((c) => c.kind !== "free").reduce((s, c) => s + c.frames, 0);
    const whole = span === map.frameCount;
    const cell = map.framesPerCell === 1
      ? "Each cell is one frame."
      : `Each cell is ${map.framesPerCell} frames (${
        map.framesPerCell * 4
      } KiB) and shows the owner of most of them (ties: not free), so small holdings can hide.`;
    out += figure(
      pageMapChart({
        id: `pagemap-${i}`,
        title: `Machine frames at the peak: ${engine}`,
        description: `Owner of every machine frame ${
          whole ? "" : `from ${map.fromFrame} to ${map.toFrame - 1} `
        }when the most frames were in use, engine ${engine}: free, the Xen heap, or a domain's pool or reservation.`,
        cells: map.cells,
        columns: 128,
        classes,
      }),
      `${e(engine)}: ${formatFigure(used)} frames in use. ${
        whole
          ? `The whole machine, ${formatFigure(map.frameCount)} frames.`
          : `Frames ${map.fromFrame}–${map.toFrame - 1} of ${
            formatFigure(map.frameCount)
          }, the span holding every frame in use; all others are free.`
      } ${cell} Read row by row, lowest frame at the top left; hatched: a domain's reservation.`,
    );
  });
  return out;
}

/** Request sizes of the zoom on the page boundary: 3.5 KiB to 4.5 KiB. */
const ZOOM_BYTES = [3584, 4608] as const;

/** " Refused sizes: engine a–b B, ..." from the curve's null points (sampled sizes). */
function refusals(series: readonly Series[]): string {
  const runs = series.flatMap((s) => {
    const out: string[] = [];
    let first: number | null = null, last = 0;
    for (const [x, y] of [...s.points, [Infinity, 0] as const]) {
      if (y === null) {
        first ??= x;
        last = x;
      } else if (first !== null) {
        out.push(`${e(s.name)} at ${first === last ? first : `${first}–${last}`} B`);
        first = null;
      }
    }
    return out;
  });
  return runs.length === 0 ? "" : ` Gaps: requests refused (sampled sizes): ${runs.join(", ")}.`;
}

function comparisonSection(c: CompareResult, style: (e: string) => SeriesStyle): string {
  let out = `<h2 id="comparison">Single-CPU comparison: every engine on every workload</h2>`;
  const columns: Column<ReplayResult>[] = [
    { head: "peak held (pages)", value: (r) => r.peak_pages },
    { head: "overhead (ratio)", value: (r) => r.overhead_ratio },
    { head: "failures (allocs)", value: (r) => r.failures, rank: false },
    { head: "max steps (steps)", value: (r) => r.max_steps },
    { head: "p99 steps (steps)", value: (r) => r.p99_steps },
    { head: "mean steps (steps)", value: (r) => r.mean_steps },
    ...(c.results.some((r) => r.ns_per_op !== undefined)
      ? [{ head: "host time (ns/op)", value: (r: ReplayResult) => r.ns_per_op ?? null }]
      : []),
  ];
  for (const w of c.workloads) {
    out += `<h3>${e(w.name)} (${formatFigure(w.ops)} ops)</h3><p class="note">${
      e(w.description)
    }</p>`;
    const rows = c.results.filter((r) => r.trace === w.name)
      .map((r) => ({ engine: r.engine, failed: failedReplay(r), item: r }));
    out += resultsTable(`${w.name}: figures per engine`, rows, columns);
  }
  out +=
    `<p class="note">★ best in its column (lowest); ! some allocations failed: not ranked. Overhead = peak pages × 4 KiB / peak live requested bytes.</p>`;
  if (!c.curve) return out;
  const series = curveSeries(c.curve).map((s) => ({ ...s, style: style(s.name) }));
  out += `<h2 id="curve">Near-page wastage</h2>`;
  out += figure(
    lineChart({
      id: "curve-log",
      title: "Bytes one object costs, 1 B to 3 pages",
      description:
        `Bytes consumed per object (pages held with ${c.curve.object_count} live objects × 4 KiB / ${c.curve.object_count}) against request size, one step line per engine, both axes logarithmic.`,
      x: { label: "request size", unit: "bytes", scale: "log", min: 1, max: 12288 },
      y: { label: "bytes consumed per object", unit: "bytes", scale: "log" },
      series,
      step: true,
      guides: [{ x: 4096, label: "1 page" }],
    }),
    `Log axes, so every step shows: SLUB's power-of-two classes, TLSF's finer classes, first fit's jumps. Each line steps at the exact sizes the curve found (listed below).${
      refusals(series)
    }`,
  );
  out += figure(
    lineChart({
      id: "curve-page",
      title: "Near the page size: 3.5 KiB to 4.5 KiB requests",
      description: "The same curve with linear axes, zoomed on request sizes around one page.",
      x: {
        label: "request size",
        unit: "bytes",
        min: ZOOM_BYTES[0],
        max: ZOOM_BYTES[1],
        tickStep: 128,
      },
      y: { label: "bytes consumed per object", unit: "bytes", min: 0, max: 12288, tickStep: 2048 },
      series,
      step: true,
      guides: Object.entries(c.curve.step_ups).flatMap(([engine, steps]) =>
        steps.filter((s) => s.size_bytes >= ZOOM_BYTES[0] && s.size_bytes <= ZOOM_BYTES[1])
          .map((s) => ({
            x: s.size_bytes,
            label: `${engine}: ${s.size_bytes} B`,
            color: style(engine).color,
          }))
      ),
      height: 340,
    }),
    `Where each engine's cost doubles (marked, with the first size at the higher cost): before the page when its header pushes a block over one page (first fit), at the page when whole pages are given (PFN_UP). Lines that coincide are drawn over one another.${
      refusals(series)
    }`,
  );
  out += `<ul class="note">` +
    Object.entries(c.curve.step_ups).map(([engine, steps]) =>
      `<li><b>${e(engine)}</b> steps up at ${
        steps.map((s) =>
          `${s.size_bytes} B (${s.pages_before}→${s.pages_after} pages per ${
            c.curve!.object_count
          })`
        )
          .join(", ") || "no size"
      }</li>`
    ).join("") + "</ul>";
  return out;
}

function footprintSection(
  runs: NonNullable<ReportInput["footprint"]>,
  style: (e: string) => SeriesStyle,
): string {
  let out = `<h2 id="footprint">Footprint over time</h2>`;
  const sources = [...new Set(runs.map((r) => r.source))];
  sources.forEach((source, i) => {
    const mine = runs.filter((r) => r.source === source);
    const series = footprintSeries(mine).map((s) =>
      mine.some((r) => r.engine === s.name) ? { ...s, style: style(s.name) } : s
    );
    // An engine far above the rest would flatten them: cap the axis at 3x the ideal's peak.
    const peak = (s: (typeof series)[number]) => Math.max(0, ...s.points.map((p) => p[1] ?? 0));
    const ideal3 = 3 * peak(series.at(-1)!);
    const unit = 10 ** Math.max(0, Math.floor(Math.log10(Math.max(ideal3, 1))) - 1);
    const cap = Math.ceil(ideal3 / unit) * unit; // two significant digits, rounded up
    const over = series.filter((s) => peak(s) > cap);
    const offChart = over.length === 0
      ? ""
      : ` Off the top (axis capped at 3x the ideal's peak): ${
        over.map((s) => `${e(s.name)} (${formatFigure(peak(s))} pages at its peak)`).join(", ")
      }.`;
    out += figure(
      lineChart({
        id: `footprint-${i}`,
        title: `Pages held over time: ${source}`,
        description:
          `Pages the allocator held after each operation of ${source}, one line per engine, and the live requested bytes in pages as the ideal.`,
        x: {
          label: "operations done",
          unit: "ops",
          min: 0,
          max: Math.max(1, ...mine.map((r) => r.samples.at(-1)?.op ?? 0)),
        },
        y: { label: "pages held", unit: "4 KiB pages", ...(over.length > 0 ? { max: cap } : {}) },
        series,
      }),
      `Sampled every ${
        mine[0]?.every ?? 1
      } ops. The dotted grey line is the live requested bytes / 4 KiB: what an allocator with no overhead would hold; the gap above it is overhead and fragmentation.${offChart}`,
    );
  });
  return out;
}

/**
 * Render the report as one self-contained HTML page.
 *
 * @example
 * ```ts
 * import { renderReport } from "./html.ts";
 * import assert from "node:assert/strict";
 * const html = renderReport({ command: "deno task sim --seed 1" });
 * assert.ok(html.startsWith("<!DOCTYPE html>"));
 * assert.ok(html.includes("deno task sim --seed 1"));
 * ```
 */
export function renderReport(input: ReportInput): string {
  const title = input.title ?? "heapvisor report";
  const style = engineStyles(input);
  const nav = [
    ["reproduce", "Reproduce"],
    ...(input.scenario
      ? [["scenario", "Scenario"], ["latency", "Latency"], ["lock-wait", "Lock wait"]]
      : []),
    ...(input.pageMaps?.length ? [["page-map", "Page map"]] : []),
    ...(input.comparison ? [["comparison", "Comparison"]] : []),
    ...(input.comparison?.curve ? [["curve", "Near-page curve"]] : []),
    ...(input.footprint?.length ? [["footprint", "Footprint"]] : []),
  ];
  const parts = [
    `<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">`,
    `<title>${e(title)}</title><style>${CSS}</style></head><body>`,
    `<h1>${e(title)}</h1><nav>${
      nav.map(([id, label]) => `<a href="#${id}">${label}</a>`).join("")
    }</nav>`,
    reproduce(input),
    input.scenario ? scenarioSection(input, input.scenario, style) : "",
    input.pageMaps?.length ? pageMapSection(input.pageMaps) : "",
    input.comparison ? comparisonSection(input.comparison, style) : "",
    input.footprint?.length ? footprintSection(input.footprint, style) : "",
    `</body></html>\n`,
  ];
  return parts.join("\n");
}

/** A CSV cell (RFC 4180 quoting; text that a spreadsheet would run as a formula gets a leading '). */
function csvCell(v: string | number | null | undefined): string {
  if (v === null || v === undefined) return "";
  if (typeof v === "number") return String(v);
  const text = /^[=+\-@\t\r]/.test(v) ? `'${v}` : v;
  return /[",\n\r]/.test(text) ? `"${text.replaceAll('"', '""')}"` : text;
}

/** results.csv: a header of {@link CSV_COLUMNS} (units in the names), one line per row. */
export function renderCsv(rows: readonly CsvRow[]): string {
  const lines = [CSV_COLUMNS.join(",")];
  for (const row of rows) lines.push(CSV_COLUMNS.map((c) => csvCell(row[c])).join(","));
  return lines.join("\n") + "\n";
}

/** results.json: the command and the results as `--json` prints them. */
export function renderResultsJson(input: ReportInput): string {
  return JSON.stringify(
    { command: input.command, scenario: input.scenario, comparison: input.comparison },
    null,
    2,
  ) + "\n";
}

/**
 * Write results.json, results.csv and report.html into `dir` (created if missing).
 *
 * @returns the paths written
 * @throws {Error} naming the directory and why, if it cannot be created or written
 */
export function writeReport(dir: string, input: ReportInput): string[] {
  const files: [string, string][] = [
    ["results.json", renderResultsJson(input)],
    ["results.csv", renderCsv(resultRows(input.comparison, input.scenario))],
    ["report.html", renderReport(input)],
  ];
  const paths: string[] = [];
  try {
    Deno.mkdirSync(dir, { recursive: true });
    for (const [name, text] of files) {
      const path = `${dir.replace(/\/+$/, "")}/${name}`;
      Deno.writeTextFileSync(path, text);
      paths.push(path);
    }
  } catch (err) {
    throw new Error(`Cannot write the report to ${dir}: ${(err as Error).message}`, { cause: err });
  }
  return paths;
}
