/**
 * A workload run on a warmed-up heap, once per engine: `deno task sim --from-snapshot`.
 *
 * An experimenter who warmed a heap up (through the control plane, for an hour) and
 * exported its snapshot asks: how does each engine serve what comes next on a heap
 * like that? For each engine a fresh machine gets a domain that starts from the
 * snapshot, and then runs a built-in workload (whose blocks come and go among the
 * snapshot's, which stay live):
 *
 * - on the snapshot's own engine the domain is **restored**: the same blocks at the
 *   same addresses, the same free lists (hypervisor/snapshot.ts);
 * - on any other engine the same live blocks (bytes and vCPUs) are **allocated**, laid
 *   out the engine's own way: from a version-2 snapshot (the heap's state) one by one in
 *   address order; from a version-1 snapshot (the heap's history) by **replaying** the
 *   same calls in the same order, each free and resize aimed at the block the source's
 *   call made. A call the engine cannot serve is counted (and its later frees skipped).
 *
 * The domain's books start after that (`Domain.restartBooks`): the figures are the
 * workload's, on top of the warmed-up heap.
 *
 * @module
 */

import { type DomainStats, Tenancy } from "../hypervisor/domains.ts";
import { BuddyPageAllocator } from "../hypervisor/page_allocator.ts";
import {
  ForkPageSource,
  historyOps,
  type SnapshotContent,
  SnapshotError,
} from "../hypervisor/snapshot.ts";
import { engineDescriptor } from "../hypervisor/xmalloc/registry.ts";
import { OP_ALLOC, type Trace } from "../src/trace.ts";
import { PAGE_SIZE_BYTES } from "../src/units.ts";

/** How to run a workload from a snapshot. */
export interface FromSnapshotOptions {
  /** The snapshot (parsed with `parseSnapshotDocument`). */
  content: SnapshotContent;
  /** Engines to run, each on a fresh machine. */
  engines: readonly string[];
  /** The workload to run after the start. */
  trace: Trace;
  /** Machine size in bytes (raised to the snapshot's machine if smaller). */
  machineBytes: number;
  /** Called before each engine's run. */
  onProgress?: (done: number, total: number, label: string) => void;
}

/** One engine's run from the snapshot. */
export interface FromSnapshotRun {
  /** Engine. */
  engine: string;
  /**
   * "restored" (the snapshot's own heap), "allocated" (its live blocks, on another
   * engine) or "replayed" (a version-1 snapshot's history, on another engine).
   */
  start: "restored" | "allocated" | "replayed";
  /** Allocations or history calls of the start this engine could not serve (0 when restored). */
  start_unserved: number;
  /** Pages the pool held at the start. */
  start_pages: number;
  /** Live blocks at the start. */
  start_live_blocks: number;
  /** Overhead ratio at the start (pages * 4 KiB / requested bytes). */
  start_overhead_ratio: number;
  /** Allocations of the workload not served on this engine. */
  workload_unserved: number;
  /** The domain's figures after the workload (its books began after the start). */
  end: DomainStats;
}

/** What a run from a snapshot did. */
export interface FromSnapshotResult {
  /** Machine size in MiB. */
  machine_mib: number;
  /** Workload. */
  workload: string;
  /** Ops of the workload. */
  workload_ops: number;
  /** The snapshot's engine. */
  snapshot_engine: string;
  /** Runs, in the order of the engines asked for. */
  runs: FromSnapshotRun[];
}

/**
 * Run `trace` on a heap that starts as the snapshot's, once per engine.
 *
 * @throws {SnapshotError} if the snapshot does not rebuild its heap
 */
export function runFromSnapshot(options: FromSnapshotOptions): FromSnapshotResult {
  const { content: c, trace } = options;
  const frames = Math.max(
    Math.floor(options.machineBytes / PAGE_SIZE_BYTES),
    c.machine.frames,
  );
  const runs: FromSnapshotRun[] = [];
  options.engines.forEach((engine, i) => {
    options.onProgress?.(i, options.engines.length, engine);
    const pages = new BuddyPageAllocator(frames);
    const tenancy = new Tenancy(pages, engine);
    const t = tenancy.createTenant("sim", { maxDomains: 1, maxPages: 2 ** 31 });
    let unserved = 0;
    let domain;
    const snap = tenancy.importSnapshot(t.id, c);
    if (engine === c.domain.engine || c.version === 2) {
      ({ domain, unserved } = tenancy.startFromSnapshot(
        t.id,
        { name: c.domain.name, fromSnapshot: snap.id, engine },
        { allowUnserved: true },
      ));
    } else {
      domain = tenancy.createDomain(t.id, {
        name: c.domain.name,
        vcpus: c.domain.vcpus,
        maxPages: c.domain.maxPages,
        engine,
      });
      unserved = replayHistory(c, domain);
    }
    domain.restartBooks();
    const start = domain.stats();
    const addresses = new Float64Array(trace.idCount);
    let workloadUnserved = 0;
    for (let k = 0; k < trace.opCount; k++) {
      const id = trace.ids[k]!;
      const vcpu = (trace.vcpus?.[k] ?? 0) % domain.vcpus;
      if (trace.kinds[k] === OP_ALLOC) {
        const r = domain.allocate(trace.sizes[k]!, 1, vcpu);
        addresses[id] = r.address;
        if (!r.ok) workloadUnserved++;
      } else if (addresses[id] !== 0) {
        domain.free(addresses[id]!, vcpu);
        addresses[id] = 0;
      }
    }
    const problems = [...pages.check(), ...domain.engine.check()];
    if (problems.length > 0) {
      throw new Error(`${engine}: the heap broke after the workload: ${problems.join("; ")}`);
    }
    runs.push({
      engine,
      start: engine === c.domain.engine ? "restored" : c.version === 1 ? "replayed" : "allocated",
      start_unserved: unserved,
      start_pages: start.pages_held,
      start_live_blocks: start.live_blocks,
      start_overhead_ratio: start.overhead_ratio,
      workload_unserved: workloadUnserved,
      end: domain.stats(),
    });
  });
  options.onProgress?.(options.engines.length, options.engines.length, "done");
  return {
    machine_mib: (frames * PAGE_SIZE_BYTES) / 2 ** 20,
    workload: trace.name,
    workload_ops: trace.opCount,
    snapshot_engine: c.domain.engine,
    runs,
  };
}

/**
 * Make the calls of `c`'s history on `domain` (another engine), each free and
 * resize aimed at the block the source's call made: the source's heap is rebuilt
 * alongside (in a scratch frame space) to learn each call's address there.
 *
 * @returns calls the domain could not serve
 */
function replayHistory(c: SnapshotContent, domain: ReturnType<Tenancy["createDomain"]>): number {
  const source = new ForkPageSource(
    new BuddyPageAllocator(1),
    new BuddyPageAllocator(c.machine.frames, c.machine.maxOrder),
    1,
    c.domain.maxPages,
    c.history!.responses,
  );
  const original = engineDescriptor(c.domain.engine).create({
    pageSource: source,
    cpuCount: c.domain.vcpus,
  });
  const mine = new Map<number, number>(); // source address -> this domain's (0: not served)
  let unserved = 0;
  let reserved = 0;
  let i = 0;
  try {
    for (const op of historyOps(c.history!)) {
      if (op.kind === "allocate") {
        const at = original.allocate(op.size, op.align, op.vcpu);
        const r = domain.allocate(op.size, op.align, op.vcpu);
        if (at !== 0) mine.set(at, r.address);
        if (at !== 0 && !r.ok) unserved++;
      } else if (op.kind === "free") {
        original.free(op.address, op.vcpu);
        const address = mine.get(op.address) ?? 0;
        mine.delete(op.address);
        if (address !== 0) domain.free(address, op.vcpu);
      } else if (op.kind === "reallocate") {
        const at = original.reallocate(op.address, op.size, op.align, op.vcpu);
        const address = mine.get(op.address) ?? 0;
        if (at !== 0) {
          mine.delete(op.address);
          let moved = 0;
          if (address !== 0) {
            const r = domain.reallocate(address, op.size, op.align, op.vcpu);
            moved = r.ok ? r.address : 0;
            if (!r.ok) domain.free(address, op.vcpu); // the source's block moved on; so does ours
          } else {
            moved = domain.allocate(op.size, op.align, op.vcpu).address;
          }
          if (moved === 0) unserved++;
          mine.set(at, moved);
        }
      } else {
        source.maxPages = c.domain.maxPages - op.pages;
        if (op.pages > reserved) domain.reserve(op.pages - reserved);
        else if (op.pages < reserved) domain.unreserve(reserved - op.pages);
        reserved = op.pages;
      }
      i++;
    }
  } catch (e) {
    if (e instanceof SnapshotError) throw e;
    throw new SnapshotError(
      `Snapshot operation ${i} was refused on replay: ${(e as Error).message}`,
    );
  }
  return unserved;
}
