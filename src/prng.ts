/**
 * A small, fast, seeded pseudo-random generator (sfc32, seeded by splitmix32).
 *
 * One seed drives a whole run; nothing in the model calls `Math.random`.
 *
 * @module
 */

/** Largest seed accepted (seeds are unsigned 32-bit integers). */
export const SEED_MAX = 0xffff_ffff;

/** Deterministic random source: the same seed gives the same sequence. */
export class Prng {
  #a: number;
  #b: number;
  #c: number;
  #d: number;

  /**
   * Seed a generator.
   *
   * @param seed an integer in [0, 2^32)
   * @throws {RangeError} if the seed is not such an integer
   */
  constructor(seed: number) {
    if (!Number.isInteger(seed) || seed < 0 || seed > SEED_MAX) {
      throw new RangeError(`Invalid seed ${seed}: expected an integer in [0, ${SEED_MAX}]`);
    }
    let s = seed >>> 0;
    const mix = (): number => {
      s = (s + 0x9e3779b9) >>> 0;
      let z = s;
      z = Math.imul(z ^ (z >>> 16), 0x85ebca6b);
      z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35);
      return (z ^ (z >>> 16)) >>> 0;
    };
    this.#a = mix();
    this.#b = mix();
    this.#c = mix();
    this.#d = mix();
    for (let i = 0; i < 12; i++) this.nextU32();
  }

  /** Next unsigned 32-bit integer. */
  nextU32(): number {
    const t = (((this.#a + this.#b) >>> 0) + this.#d) >>> 0;
    this.#d = (this.#d + 1) >>> 0;
    this.#a = this.#b ^ (this.#b >>> 9);
    this.#b = (this.#c + (this.#c << 3)) >>> 0;
    this.#c = ((this.#c << 21) | (this.#c >>> 11)) >>> 0;
    this.#c = (this.#c + t) >>> 0;
    return t;
  }

  /** Uniform float in [0, 1). */
  nextFloat(): number {
    return this.nextU32() / 4294967296;
  }

  /** Uniform integer in [lo, hi] (inclusive), for spans up to 2^32. */
  intInclusive(lo: number, hi: number): number {
    return lo + Math.floor(this.nextFloat() * (hi - lo + 1));
  }

  /** Uniform index in [0, n). */
  index(n: number): number {
    return Math.floor(this.nextFloat() * n);
  }
}

/**
 * A seed for one part of a run, derived from the run's seed and the part's name, so
 * that adding or reordering parts leaves the others' random streams unchanged.
 *
 * @example
 * ```ts
 * import { deriveSeed } from "./prng.ts";
 * import assert from "node:assert/strict";
 * assert.equal(deriveSeed(42, "compcache"), deriveSeed(42, "compcache"));
 * assert.notEqual(deriveSeed(42, "compcache"), deriveSeed(43, "compcache"));
 * ```
 */
export function deriveSeed(seed: number, label: string): number {
  let h = (seed ^ 0x811c9dc5) >>> 0; // FNV-1a over the label, seeded
  for (let i = 0; i < label.length; i++) {
    h ^= label.charCodeAt(i);
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h >>> 0;
}
