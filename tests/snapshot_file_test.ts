/**
 * The snapshot file as users have it: a version-1 file kept in tests/fixtures still
 * restores to the heap it describes, and `sim --from-snapshot` runs on it.
 */
import assert from "node:assert/strict";
import { Tenancy } from "../hypervisor/domains.ts";
import { BuddyPageAllocator } from "../hypervisor/page_allocator.ts";
import {
  parseSnapshotDocument,
  type SnapshotDocument,
  snapshotDocument,
} from "../hypervisor/snapshot.ts";
import { ENGINE_NAMES } from "../hypervisor/xmalloc/registry.ts";
import { type CliRun, runCli } from "./_run.ts";

const FIXTURE = new URL("./fixtures/snapshots/warm-tlsf-v1.json", import.meta.url).pathname;
const FIXTURE_V2 = new URL("./fixtures/snapshots/warm-tlsf-v2.json", import.meta.url).pathname;
const SIM = new URL("../src/cli/sim.ts", import.meta.url).pathname;

function fixture(): SnapshotDocument {
  return JSON.parse(Deno.readTextFileSync(FIXTURE));
}

function sim(...args: string[]): Promise<CliRun> {
  return runCli(SIM, ["--allow-read", "--allow-write", "--allow-net=127.0.0.1"], args);
}

Deno.test("snapshot file v1: still restores the heap it lists, block for block", () => {
  const doc = fixture();
  assert.equal(doc.version, 1);
  const tenancy = new Tenancy(new BuddyPageAllocator(doc.machine.frames), "slub");
  const t = tenancy.createTenant("t", { maxDomains: 1, maxPages: 1 << 20 });
  const snap = tenancy.importSnapshot(t.id, parseSnapshotDocument(doc));
  const d = tenancy.restoreDomain(t.id, { name: "again", fromSnapshot: snap.id });
  const c = d.snapshotContent();
  assert.deepEqual(c.heap, doc.heap);
  assert.deepEqual(c.blocks, doc.blocks);
  assert.equal(d.stats().pages_held, doc.heap.pages_held);
});

Deno.test("snapshot files v1 and v2 of the same heap: restored, they are the same heap, state for state", () => {
  const v1 = fixture();
  const v2: SnapshotDocument = JSON.parse(Deno.readTextFileSync(FIXTURE_V2));
  assert.equal(v2.version, 2);
  const restore = (doc: SnapshotDocument) => {
    const tenancy = new Tenancy(new BuddyPageAllocator(doc.machine.frames), "tlsf");
    const t = tenancy.createTenant("t", { maxDomains: 1, maxPages: 1 << 20 });
    const snap = tenancy.importSnapshot(t.id, parseSnapshotDocument(doc));
    return tenancy.restoreDomain(t.id, { name: "warm", fromSnapshot: snap.id }).snapshotContent();
  };
  const a = restore(v1); // by replaying its history
  const b = restore(v2); // by loading its state
  assert.deepEqual(a.heap, b.heap);
  assert.deepEqual(a.blocks, b.blocks);
  assert.deepEqual(a.state!.engine, b.state!.engine, "the engines' states are the same bytes");
  assert.deepEqual(a.state!.pages, b.state!.pages, "the pool pages and their words too");
  assert.deepEqual(snapshotDocument(b), v2, "and it exports as the same file");
});

Deno.test("sim --from-snapshot: each engine starts from the snapshot's heap, then runs the workload", async () => {
  const doc = fixture();
  const r = await sim("--from-snapshot", FIXTURE, "--workload", "compcache", "--json");
  assert.equal(r.code, 0, r.stderr);
  const result = JSON.parse(r.stdout) as {
    seed: number;
    workload: string;
    runs: {
      engine: string;
      start: string;
      start_unserved: number;
      start_pages: number;
      start_live_blocks: number;
      workload_unserved: number;
      end: { live_blocks: number; ops: { allocs: number }; peak_pages: number };
    }[];
  };
  assert.equal(result.seed, 42);
  assert.equal(result.workload, "compcache");
  assert.deepEqual(result.runs.map((x) => x.engine), [...ENGINE_NAMES]);
  for (const run of result.runs) {
    if (run.engine === "tlsf") {
      assert.equal(run.start, "restored");
      assert.equal(run.start_pages, doc.heap.pages_held, "the restored heap holds its pages");
    } else {
      assert.equal(run.start, "replayed");
    }
    // Every block the history left live is live at the start (unless the engine refused it).
    assert.ok(run.start_unserved >= 0);
    assert.ok(run.start_live_blocks <= doc.heap.live_blocks);
    if (run.start_unserved === 0) assert.equal(run.start_live_blocks, doc.heap.live_blocks);
    // The books are the workload's: its allocations, on top of the snapshot's blocks,
    // which stay live (the workload frees only its own).
    assert.ok(run.end.ops.allocs > 0);
    assert.ok(run.end.live_blocks >= run.start_live_blocks);
    assert.ok(run.end.peak_pages >= run.start_pages);
  }
  // Same seed and flags, same figures.
  const again = await sim("--from-snapshot", FIXTURE, "--workload", "compcache", "--json");
  assert.equal(again.stdout, r.stdout);
  const text = await sim("--from-snapshot", FIXTURE, "--engines", "tlsf,slub");
  assert.equal(text.code, 0, text.stderr);
  assert.match(text.stdout, /^seed=42 {2}snapshot=.*workload=near-page-uniform/);
  assert.match(text.stdout, /start\s+restored\s+replayed/);
  assert.match(text.stdout, /After near-page-uniform \(\d+ ops/);
});

Deno.test("sim --from-snapshot: a bad file or flag exits 2, saying what, and prints nothing", async (t) => {
  const dir = Deno.makeTempDirSync();
  const damaged = `${dir}/damaged.json`;
  const doc = fixture();
  Deno.writeTextFileSync(damaged, JSON.stringify({ ...doc, blocks: doc.blocks.slice(1) }));
  const notJson = `${dir}/not.json`;
  Deno.writeTextFileSync(notJson, "{ nope");
  const cases: [string[], RegExp][] = [
    [["--from-snapshot", `${dir}/missing.json`], /Cannot read snapshot ".*missing.json"/],
    [["--from-snapshot", notJson], /Cannot read snapshot ".*not.json": .*JSON/],
    [["--from-snapshot", damaged], /damaged.json: Snapshot CRC-32 mismatch/],
    [["--from-snapshot", FIXTURE, "--workload", "nope"], /Unknown workload "nope"/],
    [["--from-snapshot", FIXTURE, "--reps", "3"], /Option --reps does not apply/],
  ];
  for (const [args, why] of cases) {
    await t.step(args.slice(2).join(" ") || args[1]!, async () => {
      const r = await sim(...args);
      assert.equal(r.code, 2, r.stderr);
      assert.equal(r.stdout, "");
      assert.match(r.stderr, why);
    });
  }
  Deno.removeSync(dir, { recursive: true });
});
