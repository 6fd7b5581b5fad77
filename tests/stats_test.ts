import assert from "node:assert/strict";
import { IntegerHistogram, median } from "../src/stats.ts";
import { Prng } from "../src/prng.ts";

Deno.test("stats: percentiles are element floor((n-1)q) of the sorted samples", () => {
  const prng = new Prng(9);
  const values: number[] = [];
  const h = new IntegerHistogram();
  for (let i = 0; i < 1001; i++) {
    const v = prng.intInclusive(0, 300);
    values.push(v);
    h.add(v);
  }
  values.sort((a, b) => a - b);
  for (const q of [0, 0.5, 0.9, 0.99, 0.999, 1]) {
    assert.equal(h.percentile(q), values[Math.floor((values.length - 1) * q)], `q=${q}`);
  }
  assert.equal(h.max, values.at(-1));
  assert.equal(h.mean, values.reduce((a, b) => a + b, 0) / values.length);
});

Deno.test("stats: merge adds every sample; empty histogram reads 0", () => {
  const a = new IntegerHistogram();
  const b = new IntegerHistogram();
  assert.equal(a.percentile(0.5), 0);
  assert.equal(a.mean, 0);
  [1, 2, 3].forEach((v) => a.add(v));
  [100, 100].forEach((v) => b.add(v));
  a.merge(b);
  assert.equal(a.count, 5);
  assert.equal(a.sum, 206);
  assert.equal(a.max, 100);
  assert.equal(a.percentile(0.75), 100);
  assert.equal(median([3, 1, 2]), 2);
  assert.equal(median([4, 1, 2, 3]), 2.5);
});

Deno.test("prng: same seed same stream, different seeds differ, bad seeds rejected", () => {
  const a = new Prng(42);
  const b = new Prng(42);
  const c = new Prng(43);
  const sa = Array.from({ length: 8 }, () => a.nextU32());
  assert.deepEqual(sa, Array.from({ length: 8 }, () => b.nextU32()));
  assert.notDeepEqual(sa, Array.from({ length: 8 }, () => c.nextU32()));
  for (const bad of [-1, 1.5, 2 ** 32, NaN]) assert.throws(() => new Prng(bad), RangeError);
  const p = new Prng(1);
  for (let i = 0; i < 1000; i++) {
    const v = p.intInclusive(3, 7);
    assert.ok(v >= 3 && v <= 7 && Number.isInteger(v));
  }
});
