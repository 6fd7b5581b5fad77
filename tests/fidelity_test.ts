/**
 * Fidelity: `first-fit` and `tlsf` reproduce the figures of Xen's own C allocators
 * (xen-firstfit, xen-tlsf) replaying the reference traces, exactly, and every row of
 * the calibration table of tests/fixtures/README.md.
 */

import assert from "node:assert/strict";
import { parseTrace, type Trace } from "../src/trace.ts";
import { replayTrace } from "../hypervisor/replay.ts";
import { Hypervisor } from "../hypervisor/hypervisor.ts";

const FIXTURES = new URL("./fixtures/", import.meta.url);
const TRACES = ["compcache", "frag-ramp", "near-page-uniform", "page-minus-delta"];
const ENGINES = [
  { engine: "first-fit", reference: "xen-firstfit" },
  { engine: "tlsf", reference: "xen-tlsf" },
];
/** Figures that must match the reference exactly. */
const EXACT_FIELDS = [
  "ops",
  "allocs",
  "frees",
  "failures",
  "skipped_frees",
  "peak_pages",
  "end_pages",
  "peak_pool_pages",
  "peak_whole_pages",
  "peak_pages_transient",
  "meta_pages",
  "peak_live_requested_bytes",
  "peak_live_objects",
  "overhead_ratio",
  "max_steps",
  "mean_steps",
  "p50_steps",
  "p99_steps",
  "max_steps_alloc",
  "mean_steps_alloc",
  "max_steps_free",
  "mean_steps_free",
] as const;

const traces = new Map<string, Trace>();
function trace(name: string): Trace {
  let t = traces.get(name);
  if (!t) {
    t = parseTrace(Deno.readTextFileSync(new URL(`traces/${name}.trace`, FIXTURES)), name);
    traces.set(name, t);
  }
  return t;
}

for (const { engine, reference } of ENGINES) {
  Deno.test(`fidelity: ${engine} reproduces ${reference} on every reference trace`, async (t) => {
    const runs = [...TRACES.map((n) => ({ trace: n, file: n })), {
      trace: "frag-ramp",
      file: "frag-ramp.small-arena",
    }];
    for (const run of runs) {
      await t.step(run.file, () => {
        const ref = JSON.parse(
          Deno.readTextFileSync(new URL(`${reference}/${run.file}.json`, FIXTURES)),
        );
        const got = replayTrace(trace(run.trace), { engine, machineBytes: ref.arena_bytes });
        for (const field of EXACT_FIELDS) {
          assert.equal(got[field], ref[field], `${run.file}: ${field}`);
        }
        const pa = ref.page_allocator;
        // The reference counts the pool control structure's allocation apart.
        assert.equal(got.page_allocator.alloc_calls - (got.meta_pages > 0 ? 1 : 0), pa.alloc_calls);
        assert.equal(got.page_allocator.free_calls, pa.free_calls);
        assert.equal(got.page_allocator.failed_calls, pa.failed_calls);
        assert.equal(got.page_allocator.failed_contiguity, pa.failed_with_enough_free_pages);
        assert.deepEqual({ ...got.page_allocator.failed_by_order }, pa.failed_by_order);
        for (const [kind, total] of Object.entries(ref.steps_totals)) {
          assert.equal(got.steps_totals[kind] ?? 0, total, `${run.file}: steps_totals.${kind}`);
        }
      });
    }
  });
}

/** Calibration table: pages with 1024 identical blocks live, steps of the first xmalloc. */
const CALIBRATION: [number[], number, number, number][] = [
  // sizes, xen-tlsf pages, xen-tlsf steps (1st alloc), xen-firstfit pages
  [[1, 16], 9, 5, 64],
  [[17, 32], 13, 5, 64],
  [[33, 48], 17, 5, 64],
  [[64], 21, 5, 64],
  [[100], 34, 5, 64],
  [[128], 37, 5, 64],
  [[129], 41, 5, 103],
  [[256], 69, 5, 103],
  [[500], 147, 5, 171],
  [[1000], 342, 5, 342],
  [[2000, 2016], 512, 5, 1024],
  [[2017, 2048, 3000], 1024, 5, 1024],
  [[3840, 3841, 3968], 1024, 5, 1024],
  [[3969, 4032], 1024, 5, 2048],
  [[4033, 4095], 1024, 1, 2048],
  [[4096], 1024, 0, 2048],
  [[4097, 8064], 2048, 0, 2048],
  [[8065], 2048, 0, 4096],
  [[9000], 3072, 0, 4096],
  [[65536], 16384, 0, 32768],
];

function pagesFor1024(engine: string, size: number): { pages: number; firstSteps: number } {
  const hv = new Hypervisor({ engine });
  hv.xmalloc.allocate(size);
  const firstSteps = hv.xmalloc.lastSteps;
  for (let i = 1; i < 1024; i++) assert.notEqual(hv.xmalloc.allocate(size), 0);
  const held = hv.xmalloc.pagesHeld();
  return { pages: held.poolPages + held.wholePages, firstSteps };
}

Deno.test("fidelity: every row of the calibration table", async (t) => {
  for (const [sizes, tlsfPages, tlsfSteps, firstFitPages] of CALIBRATION) {
    for (const size of sizes) {
      await t.step(`${size} bytes`, () => {
        const tlsf = pagesFor1024("tlsf", size);
        assert.equal(tlsf.pages, tlsfPages, `tlsf pages for 1024 x ${size}`);
        assert.equal(tlsf.firstSteps, tlsfSteps, `tlsf steps of the first xmalloc(${size})`);
        assert.equal(
          pagesFor1024("first-fit", size).pages,
          firstFitPages,
          `first-fit pages for 1024 x ${size}`,
        );
      });
    }
  }
});

Deno.test("fidelity: tlsf-2008 sends near-page sizes to 2^order whole pages", () => {
  // Xen 3.4: xmalloc(4095) took 2 pages (get_order_from_bytes(4095 + 16) = 1).
  const hv = new Hypervisor({ engine: "tlsf-2008" });
  const p = hv.xmalloc.allocate(4095);
  assert.notEqual(p, 0);
  assert.equal(hv.xmalloc.pagesHeld().wholePages, 2);
  hv.xmalloc.free(p);
  assert.equal(hv.xmalloc.pagesHeld().wholePages, 0);
  // 4033..4063 round past the 4064-byte region and the 2008 code had no fallback.
  assert.equal(hv.xmalloc.allocate(4040), 0);
  assert.equal(hv.xmalloc.lastFailureCause, "unservable");
  assert.equal(hv.xmalloc.allocate(4064) !== 0, true);
  assert.deepEqual(hv.xmalloc.check(), []);
});
