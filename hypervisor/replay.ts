/**
 * Trace replay on a fresh hypervisor, with the measurements of the reference figures
 * (tests/fixtures/README.md), each defined once here and reused by the CLI, the
 * benchmarks and the tests:
 *
 * - pages held by xmalloc, sampled after every op: `peak_pages` (pool + whole pages,
 *   the pool's control structure excluded and reported as `meta_pages`),
 *   `peak_pool_pages`, `peak_whole_pages` (separate peaks), `end_pages`,
 *   `peak_pages_transient` (also counting pages held in the middle of an op);
 * - `peak_live_requested_bytes`: most requested bytes live at once;
 *   `overhead_ratio` = peak_pages * PAGE_SIZE / peak_live_requested_bytes;
 * - steps of every allocator call (allocations, failed ones included, and frees; not
 *   skipped frees): max, mean, and percentiles as element floor((n-1)q) of the sorted
 *   steps;
 * - failures (`a` lines that returned no block) by cause, skipped frees (`f` of a
 *   failed id), page-allocator calls and failures split into contiguity (enough free
 *   pages, no free run of the order) and exhaustion;
 * - `ns_per_op`: host wall-clock, median over timed replays; the only figure that
 *   differs between runs.
 *
 * @module
 */

import { IntegerHistogram, median, roundTo } from "../src/stats.ts";
import { OP_ALLOC, type Trace } from "../src/trace.ts";
import { PAGE_SIZE_BYTES } from "../src/units.ts";
import { DEFAULT_MACHINE_BYTES, Hypervisor } from "./hypervisor.ts";
import { pageAllocatorCalls } from "./page_allocator.ts";
import type { AllocFailureCause } from "./xmalloc/engine.ts";

/** Figures of one replay, named as in the reference JSON. */
export interface ReplayResult {
  /** Engine name. */
  engine: string;
  /** Trace name. */
  trace: string;
  /** Machine size in MiB. */
  machine_mib: number;
  /** Trace lines executed. */
  ops: number;
  /** `a` lines executed, failed ones included. */
  allocs: number;
  /** `f` lines executed (skipped ones excluded). */
  frees: number;
  /** `a` lines that returned no block. */
  failures: number;
  /** Failures by cause. */
  failures_by_cause: Record<AllocFailureCause, number>;
  /** `f` lines of failed ids, skipped. */
  skipped_frees: number;
  /** Most pages held (pool + whole), sampled after every op. */
  peak_pages: number;
  /** Pages held after the last op. */
  end_pages: number;
  /** Most pool pages held. */
  peak_pool_pages: number;
  /** Most whole pages held. */
  peak_whole_pages: number;
  /** Most pages held at any moment, inside ops too. */
  peak_pages_transient: number;
  /** Pages of the engine's control structure (excluded from the figures above). */
  meta_pages: number;
  /** Most requested bytes live at once. */
  peak_live_requested_bytes: number;
  /** Most blocks live at once. */
  peak_live_objects: number;
  /** peak_pages * PAGE_SIZE. */
  peak_pages_bytes: number;
  /** peak_pages_bytes / peak_live_requested_bytes, 6 decimals. */
  overhead_ratio: number;
  /** Most steps of one call. */
  max_steps: number;
  /** Mean steps per call, 6 decimals. */
  mean_steps: number;
  /** Median steps. */
  p50_steps: number;
  /** 99th percentile of steps. */
  p99_steps: number;
  /** 99.9th percentile of steps. */
  p999_steps: number;
  /** Most steps of one allocation. */
  max_steps_alloc: number;
  /** Mean steps per allocation. */
  mean_steps_alloc: number;
  /** Most steps of one free. */
  max_steps_free: number;
  /** Mean steps per free. */
  mean_steps_free: number;
  /** Step sums by the engine's step kinds. */
  steps_totals: Record<string, number>;
  /** Page-allocator calls and failures. */
  page_allocator: {
    alloc_calls: number;
    free_calls: number;
    failed_calls: number;
    failed_contiguity: number;
    failed_exhaustion: number;
    failed_by_order: Record<number, number>;
  };
  /** Host wall-clock ns per op, median of timed replays (absent with wall-clock off). */
  ns_per_op?: number;
}

/** Options of a replay. */
export interface ReplayOptions {
  /** Engine name. */
  engine: string;
  /** Machine size in bytes (default 1 GiB). */
  machineBytes?: number;
  /** Timed replays for ns_per_op; 0 leaves ns_per_op out (default 0). */
  timedReps?: number;
}

/**
 * Replay `trace` on a fresh hypervisor with the named engine and measure it.
 *
 * @throws {RangeError} on an unknown engine or a bad machine size
 */
export function replayTrace(trace: Trace, options: ReplayOptions): ReplayResult {
  const machineBytes = options.machineBytes ?? DEFAULT_MACHINE_BYTES;
  const hv = new Hypervisor({ engine: options.engine, machineBytes });
  const engine = hv.xmalloc;
  const source = hv.xenHeapPages;
  const { kinds, ids, sizes, opCount } = trace;
  const live = new Float64Array(trace.idCount); // id -> address, 0: failed / not live
  const liveSize = new Float64Array(trace.idCount); // id -> requested bytes
  const allocSteps = new IntegerHistogram();
  const freeSteps = new IntegerHistogram();
  const failuresByCause: Record<AllocFailureCause, number> = {
    exhaustion: 0,
    contiguity: 0,
    quota: 0,
    unservable: 0,
  };
  let allocs = 0, frees = 0, failures = 0, skipped = 0;
  let liveBytes = 0, liveObjects = 0, peakLiveBytes = 0, peakLiveObjects = 0;
  let peakPages = 0, peakPool = 0, peakWhole = 0, endPages = 0, metaPages = 0;
  let lastHeld = -1;
  for (let i = 0; i < opCount; i++) {
    const id = ids[i]!;
    if (kinds[i] === OP_ALLOC) {
      allocs++;
      const size = sizes[i]!;
      const address = engine.allocate(size);
      allocSteps.add(engine.lastSteps);
      if (address === 0) {
        failures++;
        failuresByCause[engine.lastFailureCause ?? "unservable"]++;
      } else {
        live[id] = address;
        liveSize[id] = size;
        liveBytes += size;
        liveObjects++;
        if (liveBytes > peakLiveBytes) peakLiveBytes = liveBytes;
        if (liveObjects > peakLiveObjects) peakLiveObjects = liveObjects;
      }
    } else {
      const address = live[id]!;
      if (address === 0) {
        skipped++;
      } else {
        frees++;
        engine.free(address);
        freeSteps.add(engine.lastSteps);
        live[id] = 0;
        liveBytes -= liveSize[id]!;
        liveObjects--;
      }
    }
    const held = source.heldPages;
    if (held !== lastHeld) {
      lastHeld = held;
      const p = engine.pagesHeld();
      metaPages = p.metaPages;
      endPages = p.poolPages + p.wholePages;
      if (endPages > peakPages) peakPages = endPages;
      if (p.poolPages > peakPool) peakPool = p.poolPages;
      if (p.wholePages > peakWhole) peakWhole = p.wholePages;
    }
  }
  const steps = new IntegerHistogram();
  steps.merge(allocSteps);
  steps.merge(freeSteps);
  const pa = hv.pages.stats();
  const result: ReplayResult = {
    engine: engine.name,
    trace: trace.name,
    machine_mib: machineBytes / 2 ** 20,
    ops: opCount,
    allocs,
    frees,
    failures,
    failures_by_cause: failuresByCause,
    skipped_frees: skipped,
    peak_pages: peakPages,
    end_pages: endPages,
    peak_pool_pages: peakPool,
    peak_whole_pages: peakWhole,
    peak_pages_transient: hv.pages.peakPagesOwnedBy(source.owner) - metaPages,
    meta_pages: metaPages,
    peak_live_requested_bytes: peakLiveBytes,
    peak_live_objects: peakLiveObjects,
    peak_pages_bytes: peakPages * PAGE_SIZE_BYTES,
    overhead_ratio: overheadRatio(peakPages, peakLiveBytes),
    max_steps: steps.max,
    mean_steps: roundTo(steps.mean, 6),
    p50_steps: steps.percentile(0.5),
    p99_steps: steps.percentile(0.99),
    p999_steps: steps.percentile(0.999),
    max_steps_alloc: allocSteps.max,
    mean_steps_alloc: roundTo(allocSteps.mean, 6),
    max_steps_free: freeSteps.max,
    mean_steps_free: roundTo(freeSteps.mean, 6),
    steps_totals: engine.stats().stepTotals,
    page_allocator: { ...pageAllocatorCalls(pa), failed_by_order: pa.failedByOrder },
  };
  if ((options.timedReps ?? 0) > 0 && opCount > 0) {
    result.ns_per_op = roundTo(
      timeTrace(trace, options.engine, machineBytes, options.timedReps!),
      3,
    );
  }
  return result;
}

/**
 * Pages held per requested byte: `pages * PAGE_SIZE / requestedBytes`, 6 decimals
 * (0 when nothing was requested).
 */
export function overheadRatio(pages: number, requestedBytes: number): number {
  return requestedBytes === 0 ? 0 : roundTo((pages * PAGE_SIZE_BYTES) / requestedBytes, 6);
}

/**
 * Host wall-clock ns per op of replaying `trace`: one untimed warm-up replay, then
 * `reps` timed replays on the same engine (each ends with everything freed), median.
 */
export function timeTrace(
  trace: Trace,
  engineName: string,
  machineBytes: number,
  reps: number,
): number {
  const hv = new Hypervisor({ engine: engineName, machineBytes });
  const engine = hv.xmalloc;
  const { kinds, ids, sizes, opCount } = trace;
  const live = new Float64Array(trace.idCount);
  const run = (): number => {
    const t0 = performance.now();
    for (let i = 0; i < opCount; i++) {
      const id = ids[i]!;
      if (kinds[i] === OP_ALLOC) {
        live[id] = engine.allocate(sizes[i]!);
      } else if (live[id] !== 0) {
        engine.free(live[id]!);
        live[id] = 0;
      }
    }
    const t1 = performance.now();
    for (let id = 0; id < live.length; id++) { // untimed: back to the empty state
      if (live[id] !== 0) engine.free(live[id]!);
      live[id] = 0;
    }
    return ((t1 - t0) * 1e6) / opCount;
  };
  run();
  const samples: number[] = [];
  for (let r = 0; r < reps; r++) samples.push(run());
  return median(samples);
}
