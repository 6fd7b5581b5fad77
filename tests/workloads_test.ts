import assert from "node:assert/strict";
import { workloadDescriptor, WORKLOADS } from "../guests/workloads.ts";
import { deriveSeed, Prng } from "../src/prng.ts";
import { formatTrace, OP_ALLOC, parseTrace } from "../src/trace.ts";

Deno.test("workloads: seeded, valid traces that free everything", async (t) => {
  for (const w of WORKLOADS) {
    await t.step(w.name, () => {
      const a = w.generate(new Prng(deriveSeed(7, w.name)), 0.2);
      const b = w.generate(new Prng(deriveSeed(7, w.name)), 0.2);
      const c = w.generate(new Prng(deriveSeed(8, w.name)), 0.2);
      const text = formatTrace(a);
      assert.equal(text, formatTrace(b), "same seed, same trace");
      assert.notEqual(text, formatTrace(c), "another seed, another trace");
      const parsed = parseTrace(text, w.name); // validates every line
      let live = 0;
      for (let i = 0; i < parsed.opCount; i++) live += parsed.kinds[i] === OP_ALLOC ? 1 : -1;
      assert.equal(live, 0, "everything freed at the end");
      assert.ok(parsed.opCount > 1000);
    });
  }
});

Deno.test("workloads: sizes stay in each workload's documented range", () => {
  const ranges: Record<string, [number, number]> = {
    "near-page-uniform": [1, 4096],
    "near-page-tight": [3968, 4224],
    "page-minus-delta": [4000, 4095],
    "compcache": [100, 4096],
    "small-objects": [8, 512],
    "mixed-large": [16, 65536],
    "frag-ramp": [16, 4096],
  };
  for (const [name, [lo, hi]] of Object.entries(ranges)) {
    const t = workloadDescriptor(name).generate(new Prng(1), 0.2);
    let min = Infinity, max = 0;
    for (let i = 0; i < t.opCount; i++) {
      if (t.kinds[i] !== OP_ALLOC) continue;
      min = Math.min(min, t.sizes[i]!);
      max = Math.max(max, t.sizes[i]!);
    }
    assert.ok(min >= lo && max <= hi, `${name}: sizes ${min}..${max} outside ${lo}..${hi}`);
  }
  assert.throws(() => workloadDescriptor("nope"), /Unknown workload "nope": expected one of/);
});
