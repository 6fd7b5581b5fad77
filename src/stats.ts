/**
 * Statistics shared by every measurement: exact histograms of integer samples
 * (steps, modelled cycles) with the reference percentile definition, and medians.
 *
 * @module
 */

import { grown } from "./typed_array.ts";

/**
 * Exact histogram of non-negative integer samples, with the percentile definition
 * of the reference figures: sort all n samples ascending, take element
 * `floor((n - 1) * q)` (0-based).
 *
 * @example
 * ```ts
 * import { IntegerHistogram } from "./stats.ts";
 * import assert from "node:assert/strict";
 * const h = new IntegerHistogram();
 * for (const v of [5, 1, 3, 3, 2]) h.add(v);
 * assert.equal(h.percentile(0.5), 3);
 * assert.equal(h.max, 5);
 * assert.equal(h.mean, 2.8);
 * ```
 */
export class IntegerHistogram {
  #counts = new Float64Array(64);
  /** Samples added. */
  count = 0;
  /** Sum of the samples. */
  sum = 0;
  /** Largest sample (0 when empty). */
  max = 0;

  /** Add one sample (a non-negative integer). */
  add(value: number): void {
    this.addCount(value, 1);
  }

  /** Add `n` samples of `value`. */
  addCount(value: number, n: number): void {
    if (value >= this.#counts.length) {
      let size = this.#counts.length;
      while (size <= value) size *= 2;
      this.#counts = grown(this.#counts, size);
    }
    this.#counts[value]! += n;
    this.count += n;
    this.sum += value * n;
    if (value > this.max) this.max = value;
  }

  /** Mean of the samples (0 when empty). */
  get mean(): number {
    return this.count === 0 ? 0 : this.sum / this.count;
  }

  /**
   * Element `floor((count - 1) * q)` of the sorted samples (0 when empty).
   *
   * @param q quantile in [0, 1]
   */
  percentile(q: number): number {
    if (this.count === 0) return 0;
    const rank = Math.floor((this.count - 1) * q);
    let seen = 0;
    for (let v = 0; v <= this.max; v++) {
      seen += this.#counts[v]!;
      if (seen > rank) return v;
    }
    return this.max;
  }

  /** The samples as [value, count] pairs, ascending (to send a histogram elsewhere). */
  entries(): [number, number][] {
    const out: [number, number][] = [];
    for (let v = 0; v <= this.max; v++) if (this.#counts[v]! > 0) out.push([v, this.#counts[v]!]);
    return out;
  }

  /** A histogram of the [value, count] pairs that {@link entries} gave. */
  static fromEntries(entries: readonly [number, number][]): IntegerHistogram {
    const h = new IntegerHistogram();
    for (const [v, n] of entries) h.addCount(v, n);
    return h;
  }

  /** Add every sample of `other`. */
  merge(other: IntegerHistogram): void {
    for (let v = 0; v <= other.max; v++) {
      const n = other.#counts[v]!;
      if (n > 0) this.addCount(v, n);
    }
  }
}

/** Median of a list of numbers (mean of the middle two for an even count). */
export function median(values: readonly number[]): number {
  if (values.length === 0) return NaN;
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

/** Round to `digits` decimals (as the reference JSON prints ratios and means). */
export function roundTo(value: number, digits: number): number {
  const f = 10 ** digits;
  return Math.round(value * f) / f;
}
