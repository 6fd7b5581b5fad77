/**
 * The near-page wastage curve: what one object of each request size really costs,
 * per engine. For a size, a fresh hypervisor allocates {@link CURVE_OBJECT_COUNT}
 * objects of that size and the pages its xmalloc then holds (pool and whole pages,
 * the pool's control structure excluded) are counted: `pages_per_1024` and
 * `bytes_per_object` = pages * PAGE_SIZE / 1024. This is the measure of the
 * calibration table in tests/fixtures/README.md and the sawtooth that started the
 * Xen thread (xmalloc(PAGE_SIZE - 1) taking two pages).
 *
 * @module
 */

import { MiB, PAGE_SIZE_BYTES } from "../src/units.ts";
import { Hypervisor } from "./hypervisor.ts";

/** Objects allocated per curve point. */
export const CURVE_OBJECT_COUNT = 1024;
/** Machine the curve is measured on (room for 1024 objects of a few pages). */
const CURVE_MACHINE_BYTES = MiB(256);

/** Request sizes the text table shows: the edges where engines step. */
export const CURVE_TABLE_SIZES: readonly number[] = [
  1,
  8,
  16,
  24,
  32,
  48,
  64,
  96,
  128,
  129,
  192,
  256,
  512,
  1000,
  1024,
  2000,
  2016,
  2048,
  3000,
  3840,
  3841,
  3968,
  3969,
  4032,
  4033,
  4064,
  4095,
  4096,
  4097,
  6000,
  8064,
  8065,
  8192,
  8193,
  9000,
  12288,
];

/** One point of the curve. */
export interface CurvePoint {
  /** Request size. */
  size_bytes: number;
  /** Pages held with 1024 objects of that size live; null if an allocation failed. */
  pages_per_1024: number | null;
  /** pages_per_1024 * PAGE_SIZE / 1024: bytes one object really costs. */
  bytes_per_object: number | null;
}

/** A size at which an engine's cost per object jumps. */
export interface StepUp {
  /** First request size at the higher cost. */
  size_bytes: number;
  /** Pages per 1024 objects just below. */
  pages_before: number;
  /** Pages per 1024 objects at this size. */
  pages_after: number;
}

/** Pages held by `engine` with 1024 live objects of `sizeBytes` (null if one failed). */
export function pagesPer1024(engine: string, sizeBytes: number): number | null {
  const hv = new Hypervisor({ engine, machineBytes: CURVE_MACHINE_BYTES });
  for (let i = 0; i < CURVE_OBJECT_COUNT; i++) {
    if (hv.xmalloc.allocate(sizeBytes) === 0) return null;
  }
  const held = hv.xmalloc.pagesHeld();
  return held.poolPages + held.wholePages;
}

/** The curve of `engine` at `sizes`. */
export function nearPageCurve(engine: string, sizes: readonly number[]): CurvePoint[] {
  return sizes.map((size) => {
    const pages = pagesPer1024(engine, size);
    return {
      size_bytes: size,
      pages_per_1024: pages,
      bytes_per_object: pages === null ? null : (pages * PAGE_SIZE_BYTES) / CURVE_OBJECT_COUNT,
    };
  });
}

/** Sizes 1 and every multiple of `stepBytes` up to `maxBytes`: the full curve. */
export function curveSizes(maxBytes: number, stepBytes: number): number[] {
  const sizes = [1];
  for (let s = stepBytes; s <= maxBytes; s += stepBytes) sizes.push(s);
  return sizes;
}

/**
 * Every size in [lo, hi] where `engine`'s pages per 1024 objects jump by at least
 * `minRatio` from one byte to the next. The cost per object never falls as the size
 * grows, so a window whose ends differ by less than `minRatio` holds no such jump;
 * others are bisected down to single bytes (samples `stepBytes` apart to start).
 * Sizes where an allocation fails are skipped.
 */
export function findStepUps(
  engine: string,
  lo: number,
  hi: number,
  stepBytes: number,
  minRatio: number,
): StepUp[] {
  const memo = new Map<number, number | null>();
  const pages = (size: number): number | null => {
    let p = memo.get(size);
    if (p === undefined) {
      p = pagesPer1024(engine, size);
      memo.set(size, p);
    }
    return p;
  };
  const steps: StepUp[] = [];
  const search = (a: number, b: number): void => {
    const pa = pages(a);
    const pb = pages(b);
    if (pa !== null && pb !== null && pb < pa * minRatio) return;
    if (b - a === 1) {
      if (pa !== null && pb !== null) {
        steps.push({ size_bytes: b, pages_before: pa, pages_after: pb });
      }
      return;
    }
    const mid = Math.floor((a + b) / 2);
    search(a, mid);
    search(mid, b);
  };
  for (let a = lo; a < hi; a += stepBytes) search(a, Math.min(a + stepBytes, hi));
  return steps;
}
