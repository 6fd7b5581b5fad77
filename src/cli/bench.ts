/**
 * `deno task bench`: speed and memory figures, measured in one run on this machine.
 *
 * 1. Every reference trace replayed per engine: host ns per op (median of timed
 *    replays after a warm-up), beside the native C figures recorded with the
 *    reference (tests/fixtures/README.md, "Timing"), and the ratio to Xen's TLSF in C.
 * 2. Page allocator: boot time and resident memory of a 64 GiB and a 1 TiB machine.
 * 3. Snapshots: a domain warmed up by about a million calls, per engine: the size of
 *    its saved state, the time to take a snapshot and to restore it (load and check),
 *    and the file's size and its write and read times.
 *
 * Timings on a shared machine are noisy (+-20% run to run); ratios within one run are
 * the figures to read. Nothing here is asserted: targets live in the README.
 *
 * @module
 */

import { parseArgs } from "node:util";
import { parseTrace } from "../trace.ts";
import { renderTable } from "../table.ts";
import { GiB, PAGE_SIZE_BYTES } from "../units.ts";
import { timeTrace } from "../../hypervisor/replay.ts";
import { BuddyPageAllocator } from "../../hypervisor/page_allocator.ts";
import { ENGINE_NAMES } from "../../hypervisor/xmalloc/registry.ts";
import { Tenancy } from "../../hypervisor/domains.ts";
import {
  parseSnapshotDocument,
  snapshotDocument,
  snapshotStateBytes,
} from "../../hypervisor/snapshot.ts";
import { workloadDescriptor } from "../../guests/workloads.ts";
import { OP_ALLOC } from "../trace.ts";
import { Prng } from "../prng.ts";

const FIXTURES = new URL("../../tests/fixtures/", import.meta.url);
const TRACES = ["compcache", "near-page-uniform", "page-minus-delta", "frag-ramp"];

function nativeNs(engine: string, trace: string): number | null {
  try {
    const ref = JSON.parse(Deno.readTextFileSync(new URL(`${engine}/${trace}.json`, FIXTURES)));
    return typeof ref.ns_per_op === "number" ? ref.ns_per_op : null;
  } catch {
    return null; // no native figure recorded for this pair
  }
}

function benchReplays(reps: number, engines: string[]): void {
  console.log(`Trace replay: host ns per op, median of ${reps} timed replays after one warm-up`);
  const header = ["trace", ...engines, "C xen-firstfit", "C xen-tlsf", "C conte-tlsf"];
  const rows = [];
  const ratios: string[] = [];
  for (const name of TRACES) {
    const trace = parseTrace(
      Deno.readTextFileSync(new URL(`traces/${name}.trace`, FIXTURES)),
      name,
    );
    const cTlsf = nativeNs("xen-tlsf", name);
    const row: (string | number | null)[] = [name];
    for (const engine of engines) {
      const ns = timeTrace(trace, engine, GiB(1), reps);
      row.push(ns.toFixed(1));
      if (cTlsf !== null && (engine === "tlsf" || engine === "slub")) {
        ratios.push(
          `${engine} on ${name}: ${(ns / cTlsf).toFixed(2)}x C xen-tlsf (${
            ns.toFixed(1)
          } / ${cTlsf} ns)`,
        );
      }
    }
    row.push(nativeNs("xen-firstfit", name), cTlsf, nativeNs("conte-tlsf", name));
    rows.push(row);
  }
  console.log(renderTable(header, rows));
  console.log("");
  console.log("Ratio to native C (target: tlsf and slub within 3x of C xen-tlsf on compcache):");
  for (const r of ratios) console.log(`  ${r}`);
}

function benchMachines(): void {
  const mib = (bytes: number) => (bytes / 2 ** 20).toFixed(0);
  console.log(
    `Page allocator: boot (construct the buddy allocator) and process resident memory (RSS before: ${
      mib(Deno.memoryUsage().rss)
    } MiB)`,
  );
  const rows = [];
  const churn = (pages: BuddyPageAllocator, frames: Int32Array) => {
    for (let i = 0; i < 100_000; i++) frames[i] = pages.alloc(0, 1);
    for (let i = 100_000; i < 101_000; i++) frames[i] = pages.alloc(9, 1);
    for (let i = 0; i < 101_000; i++) pages.free(frames[i]!, i < 100_000 ? 0 : 9);
  };
  churn(new BuddyPageAllocator(GiB(4) / PAGE_SIZE_BYTES), new Int32Array(101_000)); // warm-up, untimed
  for (const [label, bytes] of [["64 GiB", GiB(64)], ["1 TiB", GiB(1024)]] as const) {
    const t0 = performance.now();
    const pages = new BuddyPageAllocator(bytes / PAGE_SIZE_BYTES);
    const bootMs = performance.now() - t0;
    const rssBoot = Deno.memoryUsage().rss;
    // Use it: 100k single pages and 1k order-9 blocks, then give them back.
    const frames = new Int32Array(101_000);
    const t1 = performance.now();
    churn(pages, frames);
    const opsNs = ((performance.now() - t1) * 1e6) / (2 * frames.length);
    rows.push([
      label,
      pages.frameCount,
      bootMs.toFixed(2),
      mib(rssBoot),
      mib(Deno.memoryUsage().rss),
      opsNs.toFixed(1),
    ]);
  }
  console.log(
    renderTable([
      "machine",
      "frames",
      "boot ms",
      "RSS MiB after boot",
      "RSS MiB after use",
      "ns per alloc/free",
    ], rows),
  );
  console.log(
    "(metadata: 9 bytes of typed arrays per frame; the OS backs them lazily, so untouched frames cost no RSS)",
  );
}

function benchSnapshots(engines: string[]): void {
  const trace = workloadDescriptor("compcache").generate(new Prng(42), 15);
  // Warm up to the call after which the most blocks are live (the trace then frees
  // them all): the heap a snapshot is worth taking of.
  let live = 0;
  let most = 0;
  let peakAt = 0;
  for (let k = 0; k < trace.opCount; k++) {
    live += trace.kinds[k] === OP_ALLOC ? 1 : -1;
    if (live > most) [most, peakAt] = [live, k + 1];
  }
  console.log(
    `Snapshots: a domain warmed up by compcache x15 up to its most live blocks (${peakAt} ` +
      `calls, 2 vCPUs), per engine`,
  );
  const rows = [];
  for (const engine of engines) {
    const pages = new BuddyPageAllocator(GiB(4) / PAGE_SIZE_BYTES);
    const tenancy = new Tenancy(pages, engine);
    const t = tenancy.createTenant("bench", { maxDomains: 4, maxPages: 2 ** 31 });
    const d = tenancy.createDomain(t.id, { name: "warm", vcpus: 2, maxPages: 2 ** 20 });
    const addresses = new Float64Array(trace.idCount);
    const w0 = performance.now();
    for (let k = 0; k < peakAt; k++) {
      const id = trace.ids[k]!;
      if (trace.kinds[k] === OP_ALLOC) {
        addresses[id] = d.allocate(trace.sizes[k]!, 1, k & 1).address;
      } else if (addresses[id] !== 0) d.free(addresses[id]!, k & 1);
    }
    const warmMs = performance.now() - w0;
    const t0 = performance.now();
    const snap = tenancy.takeSnapshot(d.id);
    const takeMs = performance.now() - t0;
    const r0 = performance.now();
    const f = tenancy.restoreDomain(t.id, { name: "fork", fromSnapshot: snap.id });
    const restoreMs = performance.now() - r0;
    const x0 = performance.now();
    const text = JSON.stringify(snapshotDocument(snap.content));
    const exportMs = performance.now() - x0;
    const i0 = performance.now();
    parseSnapshotDocument(JSON.parse(text));
    const importMs = performance.now() - i0;
    if (f.stats().live_blocks !== d.stats().live_blocks) {
      throw new Error(`${engine}: the restored heap differs (a bug)`);
    }
    const s = d.stats();
    rows.push([
      engine,
      s.live_blocks,
      s.pages_held,
      ((warmMs * 1e6) / peakAt).toFixed(0),
      (snapshotStateBytes(snap.content) / 1024).toFixed(0),
      takeMs.toFixed(1),
      restoreMs.toFixed(1),
      (text.length / 1024).toFixed(0),
      exportMs.toFixed(1),
      importMs.toFixed(1),
    ]);
  }
  console.log(
    renderTable([
      "engine",
      "live blocks",
      "pages",
      "warm-up ns/call",
      "state KiB",
      "take ms",
      "restore ms",
      "file KiB",
      "write ms",
      "read ms",
    ], rows),
  );
  console.log(
    "(state: the engine's and the pool pages' saved state, typed arrays whole; take = save " +
      "it; restore = claim the pages in a private frame space, load the engine, check the heap, " +
      "back it with machine pages; file: deflated and base64-encoded; read = parse and inflate, " +
      "not the check an import adds)",
  );
}

if (import.meta.main) {
  const usage =
    "Usage: deno task bench [--reps N (1..100, default 9)] [--engines A,B (default all)]";
  let values;
  try {
    values = parseArgs({
      args: Deno.args[0] === "--" ? Deno.args.slice(1) : Deno.args,
      options: {
        reps: { type: "string" },
        engines: { type: "string" },
        help: { type: "boolean", short: "h" },
      },
    }).values;
  } catch (e) {
    console.error(`bench: ${(e as Error).message}\n${usage}`);
    Deno.exit(2);
  }
  if (values.help) {
    console.log(usage);
    Deno.exit(0);
  }
  const reps = values.reps === undefined
    ? 9
    : /^\d+$/.test(values.reps)
    ? Number(values.reps)
    : NaN;
  if (!(reps >= 1 && reps <= 100)) {
    console.error(
      `bench: Invalid --reps "${values.reps}": expected an integer in [1, 100]\n${usage}`,
    );
    Deno.exit(2);
  }
  const engines = values.engines?.split(",") ?? [...ENGINE_NAMES];
  const unknown = engines.filter((e) => !ENGINE_NAMES.includes(e));
  if (unknown.length > 0) {
    console.error(
      `bench: Unknown engine "${unknown[0]}": expected one of ${ENGINE_NAMES.join(", ")}`,
    );
    Deno.exit(2);
  }
  console.log(`heapvisor bench  deno ${Deno.version.deno}  ${navigator.hardwareConcurrency} CPUs`);
  benchMachines(); // first, so the process's resident memory is not inflated by the replays
  console.log("");
  benchReplays(reps, engines);
  console.log("");
  benchSnapshots(engines);
}
