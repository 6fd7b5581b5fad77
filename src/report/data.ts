/**
 * The report's chart data, each derived once from the results: the near-page curve
 * per engine, footprint over time, latency CDFs, lock wait per vCPU, page maps, and
 * the CSV rows. Pure functions (sampling a footprint replays a trace on a fresh
 * hypervisor, as `hypervisor/replay.ts` does); no I/O.
 *
 * @module
 */

import { PAGE_SIZE_BYTES } from "../units.ts";
import { OP_ALLOC, type Trace } from "../trace.ts";
import { Hypervisor } from "../../hypervisor/hypervisor.ts";
import type { BuddyPageAllocator } from "../../hypervisor/page_allocator.ts";
import { RESERVATION_OWNER_OFFSET } from "../../hypervisor/domains.ts";
import {
  type CompareResult,
  type CurveResult,
  STEP_UP_MIN_RATIO,
} from "../../hypervisor/compare.ts";
import type { ScenarioResult } from "../../guests/scenario.ts";
import type { Series } from "./svg.ts";

// -- near-page curve ------------------------------------------------------------------

/**
 * Bytes one object really costs against its request size, one series per engine
 * (pages held with 1024 live objects x 4 KiB / 1024). The curve's samples are joined
 * by the exact step-ups the curve found (the last size before each jump and the first
 * after), so a step line jumps at the right byte. A null y: an allocation failed.
 */
export function curveSeries(curve: CurveResult): Series[] {
  const bytes = (pages: number | null) =>
    pages === null ? null : (pages * PAGE_SIZE_BYTES) / curve.object_count;
  return Object.entries(curve.pages_per_1024).map(([engine, pages]) => {
    const at = new Map<number, number | null>();
    curve.sizes_bytes.forEach((size, i) => at.set(size, bytes(pages[i] ?? null)));
    for (const s of curve.step_ups[engine] ?? []) {
      at.set(s.size_bytes - 1, bytes(s.pages_before));
      at.set(s.size_bytes, bytes(s.pages_after));
    }
    const points = [...at.entries()].sort((a, b) => a[0] - b[0]);
    return { name: engine, points };
  });
}

/**
 * The x of every point whose y is at least `minRatio` times the previous point's
 * (both non-null): where a step line jumps.
 */
export function stepSizes(
  points: Series["points"],
  minRatio: number = STEP_UP_MIN_RATIO,
): number[] {
  const out: number[] = [];
  for (let i = 1; i < points.length; i++) {
    const before = points[i - 1]![1], after = points[i]![1];
    if (before !== null && after !== null && before > 0 && after >= before * minRatio) {
      out.push(points[i]![0]);
    }
  }
  return out;
}

// -- footprint over time --------------------------------------------------------------

/** The footprint after one op. */
export interface FootprintSample {
  /** Ops done (0: before the first). */
  op: number;
  /** Pages held (pool + whole pages, the pool's control structure excluded). */
  pagesHeld: number;
  /** Requested bytes of the live objects. */
  liveRequestedBytes: number;
}

/** Keeps every `every`-th sample and the last one. */
export class FootprintRecorder {
  readonly #every: number;
  readonly #samples: FootprintSample[] = [];
  #last: FootprintSample | null = null;

  /**
   * A recorder keeping one sample in `every`.
   *
   * @throws {RangeError} unless `every` is a positive integer
   */
  constructor(every: number) {
    if (!Number.isSafeInteger(every) || every < 1) {
      throw new RangeError(`Invalid sampling interval ${every}: expected a positive integer`);
    }
    this.#every = every;
  }

  /** The footprint after op `op` (ops numbered from 1; 0 is the start). */
  record(op: number, pagesHeld: number, liveRequestedBytes: number): void {
    this.#last = { op, pagesHeld, liveRequestedBytes };
    if (op % this.#every === 0) this.#samples.push(this.#last);
  }

  /** The samples, the last op's included. */
  samples(): FootprintSample[] {
    const last = this.#last;
    if (last !== null && this.#samples.at(-1) !== last) return [...this.#samples, last];
    return [...this.#samples];
  }
}

/**
 * Replay `trace` on a fresh hypervisor with `engine` and sample the footprint every
 * `every` ops (and after the last). Pages held and live bytes are measured as
 * `replayTrace` measures `peak_pages` and `peak_live_requested_bytes`: with
 * `every` = 1 their maxima are those figures (a test holds them together). A peak
 * between two samples is not seen.
 *
 * @param observe called after every op with the hypervisor (e.g. {@link PeakPageMap})
 * @throws {RangeError} on an unknown engine, a bad machine size or interval
 */
export function sampleFootprint(
  trace: Trace,
  engine: string,
  machineBytes: number,
  every: number,
  observe?: (hv: Hypervisor, op: number) => void,
): FootprintSample[] {
  const recorder = new FootprintRecorder(every);
  const hv = new Hypervisor({ engine, machineBytes });
  const heap = hv.xmalloc;
  const held = () => {
    const p = heap.pagesHeld();
    return p.poolPages + p.wholePages;
  };
  const { kinds, ids, sizes, opCount } = trace;
  const live = new Float64Array(trace.idCount); // id -> address, 0: failed / not live
  const liveSize = new Float64Array(trace.idCount); // id -> requested bytes
  let liveBytes = 0, pages = held(), lastSourcePages = hv.xenHeapPages.heldPages;
  recorder.record(0, pages, 0);
  for (let i = 0; i < opCount; i++) {
    const id = ids[i]!;
    if (kinds[i] === OP_ALLOC) {
      const address = heap.allocate(sizes[i]!);
      if (address !== 0) {
        live[id] = address;
        liveSize[id] = sizes[i]!;
        liveBytes += sizes[i]!;
      }
    } else if (live[id] !== 0) {
      heap.free(live[id]!);
      live[id] = 0;
      liveBytes -= liveSize[id]!;
    }
    if (hv.xenHeapPages.heldPages !== lastSourcePages) { // as replay: re-read when pages moved
      lastSourcePages = hv.xenHeapPages.heldPages;
      pages = held();
    }
    recorder.record(i + 1, pages, liveBytes);
    observe?.(hv, i + 1);
  }
  return recorder.samples();
}

/**
 * Footprint lines: pages held per engine, and the live requested bytes in pages as
 * the ideal (from the run that served the most bytes), last.
 */
export function footprintSeries(
  runs: readonly { engine: string; samples: readonly FootprintSample[] }[],
): Series[] {
  const series: Series[] = runs.map((r) => ({
    name: r.engine,
    points: r.samples.map((s) => [s.op, s.pagesHeld] as const),
  }));
  const peakLive = (r: (typeof runs)[number]) =>
    Math.max(0, ...r.samples.map((s) => s.liveRequestedBytes));
  const ideal = runs.reduce<(typeof runs)[number] | null>(
    (best, r) => (best === null || peakLive(r) > peakLive(best) ? r : best),
    null,
  );
  if (ideal !== null) {
    series.push({
      name: "live requested bytes / 4 KiB (ideal)",
      points: ideal.samples.map((s) => [s.op, s.liveRequestedBytes / PAGE_SIZE_BYTES] as const),
      style: { color: "#555555", dash: "1 3", width: 3 },
    });
  }
  return series;
}

// -- latency ---------------------------------------------------------------------------

/** A latency distribution as CDF points. */
export interface LatencyCdf {
  /** [cycles, share of calls at or below] points, cycles ascending, ending at [worst, 1]. */
  points: [number, number][];
  /** The slowest call. */
  worstCycles: number;
  /** Calls counted. */
  calls: number;
}

/**
 * The CDF of a histogram's `[cycles, count]` entries (`IntegerHistogram.entries()`).
 * Points closer than 1/`binsPerDecade` of a decade are merged (keeping the later), which
 * is below a pixel on a chart; the worst case is always kept.
 */
export function latencyCdf(entries: readonly [number, number][], binsPerDecade = 400): LatencyCdf {
  const calls = entries.reduce((s, [, n]) => s + n, 0);
  const points: [number, number][] = [];
  if (calls === 0) return { points, worstCycles: 0, calls };
  let seen = 0, lastBin = NaN;
  points.push([entries[0]![0], 0]);
  for (const [cycles, n] of entries) {
    seen += n;
    const bin = Math.floor(Math.log10(Math.max(cycles, 1)) * binsPerDecade);
    if (bin === lastBin && points.length > 1) points[points.length - 1] = [cycles, seen / calls];
    else points.push([cycles, seen / calls]);
    lastBin = bin;
  }
  return { points, worstCycles: entries.at(-1)![0], calls };
}

// -- lock wait ----------------------------------------------------------------------

/** Lock wait per vCPU of one guest: the vCPUs as categories, one series per engine. */
export function lockWaitBars(scenario: ScenarioResult, guestIndex: number): {
  categories: string[];
  series: { name: string; values: (number | null)[] }[];
} {
  const vcpus = [
    ...new Set(
      scenario.runs.flatMap((r) => r.guests[guestIndex]?.per_vcpu.map((p) => p.vcpu) ?? []),
    ),
  ].sort((a, b) => a - b);
  return {
    categories: vcpus.map((v) => `vCPU ${v}`),
    series: scenario.runs.map((r) => ({
      name: r.engine,
      values: vcpus.map((v) =>
        r.guests[guestIndex]?.per_vcpu.find((p) => p.vcpu === v)?.lock_wait_cycles ?? null
      ),
    })),
  };
}

// -- page map -----------------------------------------------------------------------

/** Who holds a frame. */
export type OwnerKind = "xen-heap" | "domain" | "reservation" | "free";

/** One owner class of a page map, with its exact frame count. */
export interface PageMapClassInfo {
  /** Kind of owner. */
  kind: OwnerKind;
  /** The domain id (domain and reservation kinds), else null. */
  domain: number | null;
  /** Legend text. */
  label: string;
  /** Frames of this class in the span (exact, not downsampled). */
  frames: number;
}

/** Machine frames by owner, downsampled to cells. */
export interface PageMap {
  /** Frames of the machine. */
  frameCount: number;
  /** First frame shown. */
  fromFrame: number;
  /** One past the last frame shown. */
  toFrame: number;
  /** Frames per cell (the last cell may hold fewer). */
  framesPerCell: number;
  /** Per cell, the index in `classes` of the owner of most of its frames (ties: not free). */
  cells: Uint16Array;
  /** Owner classes: the Xen heap, domains by id (pool, then reservation), free last. */
  classes: PageMapClassInfo[];
}

/** The owner class of a page-allocator owner id (-1: free). */
export function ownerClass(owner: number): { kind: OwnerKind; domain: number | null } {
  if (owner < 0) return { kind: "free", domain: null };
  if (owner === 0) return { kind: "xen-heap", domain: null };
  if (owner >= RESERVATION_OWNER_OFFSET) {
    return { kind: "reservation", domain: owner - RESERVATION_OWNER_OFFSET };
  }
  return { kind: "domain", domain: owner };
}

/** Options of {@link pageMap}. */
export interface PageMapOptions {
  /** Most cells (default 4096); frames are grouped into equal cells to fit. */
  maxCells?: number;
  /** First frame (default 0). */
  fromFrame?: number;
  /** One past the last frame (default: the machine's end). */
  toFrame?: number;
  /** Names of domains by id, for the legend. */
  names?: ReadonlyMap<number, string>;
}

/** One past the used frames' span: [lowest used frame, highest used + 1), or null if none. */
export function usedSpan(pages: BuddyPageAllocator): [number, number] | null {
  let lo = -1, hi = -1;
  pages.forEachBlock((frame, order, owner) => {
    if (owner < 0) return;
    if (lo < 0) lo = frame;
    hi = frame + 2 ** order;
  });
  return lo < 0 ? null : [lo, hi];
}

/**
 * Machine frames in [fromFrame, toFrame) by owner class, in at most `maxCells` cells.
 *
 * @throws {RangeError} on a bad span or cell count
 */
export function pageMap(pages: BuddyPageAllocator, options: PageMapOptions = {}): PageMap {
  const from = options.fromFrame ?? 0, to = options.toFrame ?? pages.frameCount;
  const maxCells = options.maxCells ?? 4096;
  if (
    !(Number.isSafeInteger(from) && Number.isSafeInteger(to) && 0 <= from && from < to &&
      to <= pages.frameCount)
  ) {
    throw new RangeError(
      `Invalid page map span [${from}, ${to}): expected 0 <= from < to <= ${pages.frameCount}`,
    );
  }
  if (!Number.isSafeInteger(maxCells) || maxCells < 1) {
    throw new RangeError(`Invalid cell count ${maxCells}: expected a positive integer`);
  }
  const blocks: [number, number, number][] = []; // [first, end, owner] clipped to the span
  pages.forEachBlock((frame, order, owner) => {
    const a = Math.max(frame, from), b = Math.min(frame + 2 ** order, to);
    if (a < b) blocks.push([a, b, owner]);
  });
  const sortKey = (owner: number) => { // the Xen heap, domain d, its reservation, ..., free
    const c = ownerClass(owner);
    if (c.domain === null) return owner < 0 ? Infinity : -1;
    return c.domain * 2 + (c.kind === "reservation" ? 1 : 0);
  };
  const owners = [...new Set([...blocks.map((b) => b[2]), -1])].sort((a, b) =>
    sortKey(a) - sortKey(b)
  );
  const index = new Map(owners.map((o, i) => [o, i]));
  const classes = owners.map((o): PageMapClassInfo => {
    const c = ownerClass(o);
    const name = c.domain === null ? "" : options.names?.get(c.domain);
    const who = c.domain === null ? "" : `domain ${c.domain}${name ? ` (${name})` : ""}`;
    const label = c.kind === "free"
      ? "free"
      : c.kind === "xen-heap"
      ? "Xen heap"
      : c.kind === "domain"
      ? `${who} pool`
      : `${who} reservation`;
    return { ...c, label, frames: 0 };
  });
  const span = to - from;
  const framesPerCell = Math.ceil(span / maxCells);
  const cellCount = Math.ceil(span / framesPerCell);
  const counts = new Float64Array(cellCount * owners.length);
  for (const [a, b, owner] of blocks) {
    const k = index.get(owner)!;
    classes[k]!.frames += b - a;
    for (let c = Math.floor((a - from) / framesPerCell); c * framesPerCell + from < b; c++) {
      const lo = Math.max(a, from + c * framesPerCell),
        hi = Math.min(b, from + (c + 1) * framesPerCell);
      counts[c * owners.length + k]! += hi - lo;
    }
  }
  const cells = new Uint16Array(cellCount);
  for (let c = 0; c < cellCount; c++) {
    let best = 0;
    for (let k = 1; k < owners.length; k++) {
      if (counts[c * owners.length + k]! > counts[c * owners.length + best]!) best = k;
    }
    cells[c] = best;
  }
  return {
    frameCount: pages.frameCount,
    fromFrame: from,
    toFrame: to,
    framesPerCell,
    cells,
    classes,
  };
}

/**
 * The page map at the moment the most frames were in use: call {@link observe} after
 * each operation; a new peak takes a new map (of the used span, or the whole machine).
 */
export class PeakPageMap {
  #peakUsedFrames = -1;
  #map: PageMap | null = null;
  readonly #options: PageMapOptions & { span?: "used" | "machine" };

  /**
   * No map until the first observation.
   *
   * @param options page map options; `span` "used" (default) maps the used frames only
   */
  constructor(options: PageMapOptions & { span?: "used" | "machine" } = {}) {
    this.#options = options;
  }

  /** Look at the machine now. */
  observe(pages: BuddyPageAllocator): void {
    const used = pages.frameCount - pages.freeFrameCount;
    if (used <= this.#peakUsedFrames) return;
    this.#peakUsedFrames = used;
    const span = this.#options.span === "machine" ? null : usedSpan(pages);
    this.#map = pageMap(pages, {
      ...this.#options,
      ...(span ? { fromFrame: span[0], toFrame: span[1] } : {}),
    });
  }

  /** Most frames in use at once (so far). */
  get peakUsedFrames(): number {
    return Math.max(this.#peakUsedFrames, 0);
  }

  /** The map at the peak (null before the first observation). */
  get map(): PageMap | null {
    return this.#map;
  }
}

// -- CSV rows -------------------------------------------------------------------------

/** Columns of results.csv, units last in each name; a figure a row has not is empty. */
export const CSV_COLUMNS = [
  "kind", // "replay" (single-CPU comparison) or "scenario"
  "scenario",
  "seed",
  "machine_mib",
  "engine",
  "workload",
  "guest",
  "vcpus",
  "ops",
  "failures",
  "peak_pages",
  "peak_live_requested_bytes",
  "overhead_ratio",
  "max_steps",
  "mean_steps",
  "p99_steps",
  "latency_p50_cycles",
  "latency_p99_cycles",
  "latency_p999_cycles",
  "latency_max_cycles",
  "lock_wait_cycles",
  "lock_contended",
  "cache_line_transfers",
  "false_sharing_peak_lines",
  "makespan_cycles",
  "boot_cycles",
  "host_ns_per_op", // replay: its own; scenario: the engine's run, all guests
] as const;

/** A column of results.csv. */
export type CsvColumn = (typeof CSV_COLUMNS)[number];
/** A row of results.csv. */
export type CsvRow = Partial<Record<CsvColumn, string | number | null>>;

/** One row per engine x workload of a comparison, then per engine x guest of a scenario. */
export function resultRows(comparison?: CompareResult, scenario?: ScenarioResult): CsvRow[] {
  const rows: CsvRow[] = [];
  for (const r of comparison?.results ?? []) {
    rows.push({
      kind: "replay",
      seed: comparison!.seed,
      machine_mib: r.machine_mib,
      engine: r.engine,
      workload: r.trace,
      ops: r.ops,
      failures: r.failures,
      peak_pages: r.peak_pages,
      peak_live_requested_bytes: r.peak_live_requested_bytes,
      overhead_ratio: r.overhead_ratio,
      max_steps: r.max_steps,
      mean_steps: r.mean_steps,
      p99_steps: r.p99_steps,
      host_ns_per_op: r.ns_per_op ?? null,
    });
  }
  for (const run of scenario?.runs ?? []) {
    for (const g of run.guests) {
      rows.push({
        kind: "scenario",
        scenario: scenario!.scenario,
        seed: scenario!.seed,
        machine_mib: scenario!.machine_mib,
        engine: run.engine,
        workload: g.workload,
        guest: g.guest,
        vcpus: g.vcpus,
        ops: g.ops,
        failures: Object.values(g.failures).reduce((s, n) => s + n, 0),
        peak_pages: g.peak_pages,
        peak_live_requested_bytes: g.peak_live_requested_bytes,
        overhead_ratio: g.overhead_ratio,
        latency_p50_cycles: g.latency_cycles.p50,
        latency_p99_cycles: g.latency_cycles.p99,
        latency_p999_cycles: g.latency_cycles.p999,
        latency_max_cycles: g.latency_cycles.max,
        lock_wait_cycles: g.lock_wait_cycles,
        lock_contended: g.lock_contended,
        cache_line_transfers: g.cache_line_transfers,
        false_sharing_peak_lines: g.false_sharing_peak_lines,
        makespan_cycles: g.makespan_cycles,
        boot_cycles: g.boot_cycles,
        host_ns_per_op: run.host_ns_per_op ?? null,
      });
    }
  }
  return rows;
}
