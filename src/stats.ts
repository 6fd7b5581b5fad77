/**
 * Statistics shared by every measurement: exact histograms of integer samples
 * (steps, modelled cycles) with the reference percentile definition, and medians.
 *
 * @module
 */

import { grown } from "./typed_array.ts";
import type { StateReader, StateWriter } from "./state_codec.ts";

/** Samples below this are counted in a dense array, larger ones in a map. */
const DENSE_LIMIT = 1 << 20;

/** Percentiles of a distribution of integers (element floor((n-1)q) of the sorted samples). */
export interface Percentiles {
  /** Median. */
  p50: number;
  /** 99th percentile. */
  p99: number;
  /** 99.9th percentile. */
  p999: number;
  /** Largest. */
  max: number;
  /** Mean, 3 decimals. */
  mean: number;
}

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
  // Values below DENSE_LIMIT in a typed array (steps, most cycle counts); larger ones,
  // rare and far apart (a reservation's cycles grow with its pages), in a map.
  #counts = new Float64Array(64);
  readonly #large = new Map<number, number>();
  /** Samples added. */
  count = 0;
  /** Sum of the samples. */
  sum = 0;
  /** Largest sample (0 when empty). */
  max = 0;

  /** Write the histogram (checkpoints). */
  saveState(w: StateWriter): void {
    w.array(this.#counts);
    w.numbers([...this.#large].flat());
    w.num(this.count);
    w.num(this.sum);
    w.num(this.max);
  }

  /** Become the histogram `r` holds (from {@link saveState}). */
  loadState(r: StateReader): void {
    this.#counts = r.array(Float64Array);
    const large = r.numbers();
    this.#large.clear();
    for (let i = 0; i < large.length; i += 2) this.#large.set(large[i]!, large[i + 1]!);
    this.count = r.num();
    this.sum = r.num();
    this.max = r.num();
  }

  /** Add one sample (a non-negative integer). */
  add(value: number): void {
    this.addCount(value, 1);
  }

  /** Add `n` samples of `value`. */
  addCount(value: number, n: number): void {
    if (value >= DENSE_LIMIT) {
      this.#large.set(value, (this.#large.get(value) ?? 0) + n);
    } else {
      if (value >= this.#counts.length) {
        let size = this.#counts.length;
        while (size <= value) size *= 2;
        this.#counts = grown(this.#counts, size);
      }
      this.#counts[value]! += n;
    }
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
    for (const [v, n] of this.entries()) {
      seen += n;
      if (seen > rank) return v;
    }
    return this.max;
  }

  /** p50, p99, p99.9, max and mean (3 decimals): the summary every report uses. */
  summary(): Percentiles {
    return {
      p50: this.percentile(0.5),
      p99: this.percentile(0.99),
      p999: this.percentile(0.999),
      max: this.max,
      mean: roundTo(this.mean, 3),
    };
  }

  /** The samples as [value, count] pairs, ascending (to send a histogram elsewhere). */
  entries(): [number, number][] {
    const out: [number, number][] = [];
    const top = Math.min(this.max, this.#counts.length - 1);
    for (let v = 0; v <= top; v++) if (this.#counts[v]! > 0) out.push([v, this.#counts[v]!]);
    for (const v of [...this.#large.keys()].sort((a, b) => a - b)) {
      out.push([v, this.#large.get(v)!]);
    }
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
    for (const [v, n] of other.entries()) this.addCount(v, n);
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
