/**
 * Engine against engine: every chosen engine replays every chosen built-in workload
 * on a fresh hypervisor (figures from {@link replayTrace}), and the near-page wastage
 * curve is measured for each engine (figures from {@link nearPageCurve}). One seed
 * decides every workload; the same options give the same result, wall-clock
 * `ns_per_op` aside (left out when `timedReps` is 0).
 *
 * @module
 */

import { deriveSeed, Prng } from "../src/prng.ts";
import { workloadDescriptor, WORKLOADS } from "../guests/workloads.ts";
import { type ReplayResult, replayTrace } from "./replay.ts";
import {
  CURVE_OBJECT_COUNT,
  CURVE_TABLE_SIZES,
  curveSizes,
  findStepUps,
  nearPageCurve,
  type StepUp,
} from "./wastage.ts";
import { DEFAULT_MACHINE_BYTES } from "./hypervisor.ts";
import { ENGINE_NAMES, engineDescriptor } from "./xmalloc/registry.ts";

/** Largest request size of the curve: 3 pages. */
export const CURVE_MAX_BYTES = 12288;
/** Spacing of the full curve. */
export const CURVE_STEP_BYTES = 16;
/** A jump of at least this factor from one byte to the next is reported as a step-up. */
export const STEP_UP_MIN_RATIO = 1.25;

/** What to compare. */
export interface CompareOptions {
  /** The run's seed. */
  seed: number;
  /** Engine names (default: all). */
  engines?: readonly string[];
  /** Workload names (default: all). */
  workloads?: readonly string[];
  /** Multiplies each workload's op count (default 1). */
  scale?: number;
  /** Machine size in bytes (default 1 GiB). */
  machineBytes?: number;
  /** Timed replays per engine and workload for ns_per_op; 0 leaves it out. */
  timedReps?: number;
  /** Whether to measure the near-page curve (default true). */
  curve?: boolean;
  /** Called before each unit of work, for progress displays. */
  onProgress?: (done: number, total: number, label: string) => void;
}

/** The near-page curve of every engine. */
export interface CurveResult {
  /** Objects allocated per point. */
  object_count: number;
  /** Request sizes of the points. */
  sizes_bytes: number[];
  /** Per engine, pages held per point (null: an allocation failed). */
  pages_per_1024: Record<string, (number | null)[]>;
  /** Per engine, the sizes where the cost per object jumps. */
  step_ups: Record<string, StepUp[]>;
}

/** Everything a comparison measured. */
export interface CompareResult {
  /** The run's seed. */
  seed: number;
  /** Workload scale. */
  scale: number;
  /** Machine size in MiB. */
  machine_mib: number;
  /** Engines compared, in order. */
  engines: string[];
  /** Workloads replayed. */
  workloads: { name: string; description: string; ops: number }[];
  /** One result per workload and engine, workload-major. */
  results: ReplayResult[];
  /** The near-page curve, if measured. */
  curve?: CurveResult;
}

/**
 * Run a comparison.
 *
 * @throws {RangeError} on an unknown engine or workload, or a bad scale
 */
export function runComparison(options: CompareOptions): CompareResult {
  const engines = [...(options.engines ?? ENGINE_NAMES)];
  engines.forEach((e) => engineDescriptor(e));
  const workloads = (options.workloads ?? WORKLOADS.map((w) => w.name)).map(workloadDescriptor);
  const scale = options.scale ?? 1;
  if (!(scale > 0 && scale <= 100)) {
    throw new RangeError(`Invalid scale ${scale}: expected a number in (0, 100]`);
  }
  const machineBytes = options.machineBytes ?? DEFAULT_MACHINE_BYTES;
  const timedReps = options.timedReps ?? 0;
  const wantCurve = options.curve ?? true;
  const total = workloads.length * engines.length + (wantCurve ? engines.length : 0);
  let done = 0;
  const progress = (label: string) => options.onProgress?.(done++, total, label);

  const result: CompareResult = {
    seed: options.seed,
    scale,
    machine_mib: machineBytes / 2 ** 20,
    engines,
    workloads: [],
    results: [],
  };
  for (const workload of workloads) {
    const trace = workload.generate(new Prng(deriveSeed(options.seed, workload.name)), scale);
    result.workloads.push({
      name: workload.name,
      description: workload.description,
      ops: trace.opCount,
    });
    for (const engine of engines) {
      progress(`${workload.name} on ${engine}`);
      result.results.push(replayTrace(trace, { engine, machineBytes, timedReps }));
    }
  }
  if (wantCurve) {
    const sizes = [
      ...new Set([...curveSizes(CURVE_MAX_BYTES, CURVE_STEP_BYTES), ...CURVE_TABLE_SIZES]),
    ]
      .sort((a, b) => a - b);
    const curve: CurveResult = {
      object_count: CURVE_OBJECT_COUNT,
      sizes_bytes: sizes,
      pages_per_1024: {},
      step_ups: {},
    };
    for (const engine of engines) {
      progress(`near-page curve of ${engine}`);
      curve.pages_per_1024[engine] = nearPageCurve(engine, sizes).map((p) => p.pages_per_1024);
      curve.step_ups[engine] = findStepUps(engine, 1, CURVE_MAX_BYTES, 64, STEP_UP_MIN_RATIO);
    }
    result.curve = curve;
  }
  options.onProgress?.(total, total, "done");
  return result;
}
