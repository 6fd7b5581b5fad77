/**
 * Tenants and domains: who may hold the machine's memory, and how much.
 *
 * A tenant owns domains, within its quotas (how many domains, how many pages their
 * `max_pages` may add up to). A domain is a guest VM: it has vCPUs, a page quota
 * (`max_pages`, Xen's `d->max_pages`), and an xmalloc pool with an engine of its own,
 * whose pages are counted under the domain's id (its `tot_pages`). Every memory
 * operation goes through {@link Domain} and is measured: steps, modelled cycles
 * (`src/cost_model.ts`), failures by cause. Destroying a domain returns every page it
 * held to the page allocator.
 *
 * Ids are small integers given in creation order (domain ids start at 1, as Xen's
 * domid 0 is the control domain's; owner 0 of the page allocator is the hypervisor
 * heap), so the same sequence of calls gives the same ids, addresses and figures.
 *
 * ## Reservations (the guest's own memory)
 *
 * Besides its pool (memory the hypervisor's xmalloc serves it), a domain can hold a
 * reservation: machine pages given to the guest itself, which runs its own allocator
 * on them (`guests/own_heap.ts`). {@link Domain.reserve} is Xen's `XENMEM_populate_physmap`,
 * {@link Domain.unreserve} its `XENMEM_decrease_reservation`.
 *
 * - **Granule: order-0 pages** (populate_physmap with `extent_order` 0, what a balloon
 *   driver asks for). The guest sees its memory through its physical-to-machine map,
 *   so its physical address space is contiguous whatever machine frames back it: a
 *   reservation never needs a contiguous machine run, and a machine whose free frames
 *   are scattered still grants it. Hence a reservation fails for `quota` or
 *   `exhaustion` only, never for `contiguity` (a larger extent order would make
 *   contiguity failures possible and save page-allocator calls, but no guest of this
 *   model needs machine-contiguous memory). Cost: per page one page-allocator call
 *   (`alloc_domheap_pages()`) and one step (the p2m entry `guest_physmap_add_page()`
 *   writes), plus the call itself: `modelledCycles(pages, pages)`; with a virtual
 *   start time the page-allocator calls hold the machine's heap lock.
 * - **All or nothing.** Xen's populate_physmap stops at the first extent it cannot
 *   allocate and returns how many it did; here the quota and the free frames are
 *   checked first (exact for order-0 pages) and a refused request changes nothing, as
 *   every refused request of the control plane.
 * - **Owner ids.** Reserved pages are counted under their own owner,
 *   `id + RESERVATION_OWNER_OFFSET`, so the pool's `PageSource` (owner = the domain
 *   id) still counts exactly the pages its engine holds. Domain ids stay below
 *   {@link DOMAIN_ID_LIMIT}, so no domain id is ever a reservation's owner. (The page
 *   allocator counts owners in a plain array; once an owner past 0x8000 appears, V8
 *   keeps it sparse: raw page-allocator calls measured about 2x slower, domain
 *   operations within noise.)
 * - **One quota.** The pool and the reservation share `max_pages`:
 *   `pool pages + reserved pages <= max_pages`. The pool's page quota is what the
 *   reservation leaves (`max_pages - reserved`), and a reservation is granted only if
 *   it fits beside what the pool holds now. The tenant's quota (the sum of its
 *   domains' `max_pages`) is unchanged by either.
 * - Pages are released last in, first out; destroying the domain returns them all.
 *
 * @module
 */

import { modelledCycles, PAGE_ALLOCATOR_CALL_CYCLES } from "../src/cost_model.ts";
import type { Percentiles } from "../src/stats.ts";
import { grown } from "../src/typed_array.ts";
import { VirtualLock } from "../src/virtual_lock.ts";
import { BuddyPageAllocator } from "./page_allocator.ts";
import {
  type AllocFailureCause,
  type EngineDescriptor,
  InvalidFreeError,
  PageSource,
  type XmallocEngine,
} from "./xmalloc/engine.ts";
import { engineDescriptor } from "./xmalloc/registry.ts";
import { type HeapFigures, HeapLedger } from "./heap_ledger.ts";
import {
  claimPoolPages,
  ForkPageSource,
  historyOps,
  packedPoolState,
  parseSnapshotDocument,
  poolState,
  savePoolPages,
  type SnapshotContent,
  snapshotDocument,
  SnapshotError,
} from "./snapshot.ts";
import { StateError, StateReader, StateWriter } from "../src/state_codec.ts";

/** Most vCPUs a domain may have (Xen's default HVM limit is 128; 4096 with x2APIC). */
export const VCPUS_MAX = 4096;
/** Longest tenant or domain name. */
export const NAME_MAX_LENGTH = 64;
/**
 * Domain ids are below this (Xen's `DOMID_FIRST_RESERVED`, 0x7FF0: ids from there on
 * name special domains), so `id + RESERVATION_OWNER_OFFSET` is never a domain id.
 */
export const DOMAIN_ID_LIMIT = 0x7ff0;
/**
 * Page-allocator owner of a domain's reservation: the domain id plus this offset
 * (the pool's pages are counted under the domain id itself).
 */
export const RESERVATION_OWNER_OFFSET = 0x8000;
/** Most pages one reservation request may name (as `max_pages`). */
export const RESERVATION_PAGES_MAX = 2 ** 31;

if (RESERVATION_OWNER_OFFSET < DOMAIN_ID_LIMIT) {
  throw new Error("domains: a reservation's owner id must never be a domain id");
}

/** An engine loaded from `bytes` (a snapshot's engine state) on `pageSource`. */
function loadEngine(
  descriptor: EngineDescriptor,
  pageSource: PageSource,
  cpuCount: number,
  bytes: Uint8Array,
): XmallocEngine {
  try {
    const r = new StateReader(bytes, `a snapshot's ${descriptor.name} engine`);
    const engine = descriptor.load({ pageSource, cpuCount }, r);
    r.done();
    return engine;
  } catch (e) {
    throw new SnapshotError((e as Error).message);
  }
}

/** A tenant or domain limit would be exceeded; nothing was created. */
export class QuotaExceededError extends Error {
  /** The error's name. */
  override name = "QuotaExceededError";
}

/** No tenant or domain with that id. */
export class NotFoundError extends Error {
  /** The error's name. */
  override name = "NotFoundError";
}

/**
 * The machine has not the free pages (or not the contiguous blocks) to back a
 * snapshot's heap; nothing was created.
 */
export class MachineFullError extends Error {
  /** The error's name. */
  override name = "MachineFullError";
}

/** Most snapshots a tenant may keep at once. */
export const SNAPSHOTS_PER_TENANT_MAX = 64;

/** A snapshot kept by the hypervisor (see hypervisor/snapshot.ts). */
export interface StoredSnapshot {
  /** Id, from 1, in the order snapshots were taken or imported. */
  readonly id: number;
  /** The tenant it belongs to. */
  readonly tenantId: number;
  /** The domain it was taken of (null: imported from a file). */
  readonly sourceDomainId: number | null;
  /** Its content. */
  readonly content: SnapshotContent;
}

/** A release named more pages than the domain has reserved; nothing was released. */
export class NotReservedError extends Error {
  /** The error's name. */
  override name = "NotReservedError";
}

/** What a tenant may hold. */
export interface TenantQuota {
  /** Most domains at once. */
  maxDomains: number;
  /** Most pages the `max_pages` of its domains may add up to. */
  maxPages: number;
}

/** A tenant. */
export interface Tenant extends TenantQuota {
  /** Id, from 1. */
  readonly id: number;
  /** Name. */
  readonly name: string;
}

/** How to create a domain. */
export interface DomainSpec {
  /** Name. */
  name: string;
  /** vCPUs, 1..4096. */
  vcpus: number;
  /** Page quota. */
  maxPages: number;
  /** Engine of the domain's pool (default: the hypervisor's). */
  engine?: string;
}

/** How to create a domain whose heap is a snapshot's. */
export interface RestoreSpec {
  /** Name. */
  name: string;
  /** The snapshot. */
  fromSnapshot: number;
  /** vCPUs: the snapshot's (the heap's per-vCPU state is sized by them). */
  vcpus?: number;
  /** Page quota (default: the snapshot's); at least the pages its heap holds. */
  maxPages?: number;
  /** Engine: the snapshot's (a heap is its engine's). */
  engine?: string;
}

/** The outcome of one memory operation. */
export interface MemoryOpResult {
  /** Whether it was served. */
  ok: boolean;
  /** Address of the block (0 when not served, or after a free). */
  address: number;
  /** Bytes usable at the address (0 when not served). */
  reservedBytes: number;
  /** Why it was not served. */
  cause: AllocFailureCause | null;
  /** The engine's steps. */
  steps: number;
  /** Modelled cycles of the work (src/cost_model.ts). */
  cycles: number;
  /** Cycles waited for the pool lock and the heap lock (0 without a virtual start time). */
  lockWaitCycles: number;
}

/** Why a reservation was refused: over `max_pages`, or fewer free machine frames than asked. */
export type ReservationFailureCause = "quota" | "exhaustion";

/** The outcome of a reservation request ({@link Domain.reserve}). */
export interface ReservationResult {
  /** Whether it was granted (all the pages asked for). */
  ok: boolean;
  /** Pages this request added (0 when refused). */
  grantedPages: number;
  /** Pages the domain has reserved now. */
  reservedPages: number;
  /** Why it was refused. */
  cause: ReservationFailureCause | null;
  /** Modelled cycles of the work (src/cost_model.ts). */
  cycles: number;
  /** Cycles waited for the machine's heap lock (0 without a virtual start time). */
  lockWaitCycles: number;
}

/** The outcome of a release ({@link Domain.unreserve}). */
export interface ReleaseResult {
  /** Pages this request gave back. */
  releasedPages: number;
  /** Pages the domain has reserved now. */
  reservedPages: number;
  /** Modelled cycles of the work (src/cost_model.ts). */
  cycles: number;
  /** Cycles waited for the machine's heap lock (0 without a virtual start time). */
  lockWaitCycles: number;
}

/** Percentiles of a distribution of integers (src/stats.ts). */
export type { Percentiles };

/** A domain's figures. */
export interface DomainStats extends HeapFigures {
  /** Domain id. */
  id: number;
  /** Owning tenant. */
  tenant_id: number;
  /** Name. */
  name: string;
  /** Engine of its pool. */
  engine: string;
  /** vCPUs. */
  vcpus: number;
  /** Page quota, shared by the pool and the reservation. */
  max_pages: number;
  /** Pages the domain's pool holds now (pool + whole + meta). */
  pages_held: number;
  /**
   * Pages reserved for the guest's own heap (Xen's tot_pages is pages_held +
   * reserved_pages).
   */
  reserved_pages: number;
  /** Pages carved into blocks. */
  pool_pages: number;
  /** Pages handed out whole. */
  whole_pages: number;
  /** Pages of the pool's control structure. */
  meta_pages: number;
  /** Most pages held at once. */
  peak_pages: number;
}

/**
 * Check a name.
 *
 * @throws {RangeError} unless 1..64 characters of letters, digits, `.`, `_`, `-`
 */
export function assertName(name: string, what: string): void {
  if (typeof name !== "string" || !/^[A-Za-z0-9._-]{1,64}$/.test(name)) {
    throw new RangeError(
      `Invalid ${what} name ${
        JSON.stringify(name)
      }: expected 1..${NAME_MAX_LENGTH} letters, digits, ".", "_" or "-"`,
    );
  }
}

function assertCount(value: number, what: string, lo: number, hi: number): void {
  if (!Number.isSafeInteger(value) || value < lo || value > hi) {
    throw new RangeError(`Invalid ${what} ${value}: expected an integer in [${lo}, ${hi}]`);
  }
}

/** A guest VM: vCPUs, a page quota and an xmalloc pool of its own. */
export class Domain {
  /** Domain id (also its page owner id). */
  readonly id: number;
  /** Owning tenant. */
  readonly tenantId: number;
  /** Name. */
  readonly name: string;
  /** vCPUs. */
  readonly vcpus: number;
  /** The domain's pool. */
  readonly engine: XmallocEngine;
  /**
   * Where the pool's pages come from (owner = the domain id, quota = max_pages minus
   * the reserved pages).
   */
  readonly pageSource: PageSource;
  /** Page-allocator owner of the reserved pages (`id + RESERVATION_OWNER_OFFSET`). */
  readonly reservationOwner: number;

  readonly #pages: BuddyPageAllocator;
  readonly #heapLock: VirtualLock | null;
  readonly #maxPages: number;
  // Frames of the reserved order-0 pages, in the order they were granted.
  #reservedFrames = new Int32Array(0);
  #reservedCount = 0;
  #ledger: HeapLedger;
  #destroyed = false;

  /**
   * Use {@link Tenancy.createDomain}.
   *
   * With `init.snapshot`, the pool is rebuilt from a snapshot (hypervisor/snapshot.ts)
   * and checked; `verifyOnly` stops after the check, before the machine backs anything.
   * With `init.checkpoint`, the domain is the one a checkpoint saved ({@link saveState}):
   * its pool, books and reservation, on a machine already loaded from the same
   * checkpoint.
   *
   * @throws {SnapshotError} if the snapshot does not rebuild its heap
   * @throws {MachineFullError} if the machine cannot back it (nothing is held then)
   * @throws {StateError} if the checkpoint does not read back
   */
  constructor(
    id: number,
    tenantId: number,
    spec: Required<DomainSpec>,
    pages: BuddyPageAllocator,
    heapLock: VirtualLock | null,
    init?:
      | { snapshot: SnapshotContent; verifyOnly?: boolean }
      | { checkpoint: StateReader },
  ) {
    this.id = id;
    this.tenantId = tenantId;
    this.name = spec.name;
    this.vcpus = spec.vcpus;
    this.#pages = pages;
    this.#heapLock = heapLock;
    this.#maxPages = spec.maxPages;
    this.reservationOwner = id + RESERVATION_OWNER_OFFSET;
    this.#ledger = new HeapLedger(spec.vcpus, heapLock);
    const descriptor = engineDescriptor(spec.engine);
    if (init !== undefined && "checkpoint" in init) {
      const r = init.checkpoint;
      this.#reservedFrames = r.array(Int32Array);
      this.#reservedCount = this.#reservedFrames.length;
      this.pageSource = r.bool()
        ? ForkPageSource.load(pages, id, r)
        : new PageSource(pages, id, r.num());
      const layout = r.num();
      if (layout !== descriptor.stateLayout) {
        throw new StateError(
          `Domain ${id}'s ${spec.engine} state is of layout ${layout}; this heapvisor reads ` +
            `layout ${descriptor.stateLayout}`,
        );
      }
      this.engine = descriptor.load({ pageSource: this.pageSource, cpuCount: spec.vcpus }, r);
      this.#ledger.loadState(r);
      return;
    }
    const c = init?.snapshot;
    this.pageSource = c === undefined
      ? new PageSource(pages, id, spec.maxPages)
      : new ForkPageSource(
        pages,
        new BuddyPageAllocator(c.machine.frames, c.machine.maxOrder),
        id,
        c.domain.maxPages,
        c.history?.responses ?? new Int32Array(0),
      );
    if (c === undefined || c.version === 1) {
      this.engine = descriptor.create({ pageSource: this.pageSource, cpuCount: spec.vcpus });
    } else {
      claimPoolPages(this.pageSource.pages, c.state!.pages, id);
      this.engine = loadEngine(descriptor, this.pageSource, spec.vcpus, c.state!.engine);
    }
    if (c !== undefined) {
      try {
        this.#restore(c, init?.snapshot ? init.verifyOnly ?? false : false);
      } catch (e) {
        // A damaged state may make the engine's own checks throw anything.
        if (e instanceof SnapshotError || e instanceof MachineFullError) throw e;
        throw new SnapshotError(`Snapshot does not rebuild its heap: ${(e as Error).message}`);
      }
    }
  }

  /**
   * Write the domain for a checkpoint (after its spec, which {@link Tenancy.saveState}
   * writes): its reserved frames, its page source, its engine, its books.
   */
  saveState(w: StateWriter): void {
    this.#assertLive();
    w.array(this.#reservedFrames.slice(0, this.#reservedCount));
    const fork = this.pageSource instanceof ForkPageSource;
    w.bool(fork);
    if (fork) (this.pageSource as ForkPageSource).saveState(w);
    else w.num(this.pageSource.maxPages);
    w.num(engineDescriptor(this.engine.name).stateLayout);
    this.engine.saveState(w);
    this.#ledger.saveState(w);
  }

  /** What a snapshot of the domain now holds: its pool's pages and engine state. */
  snapshotContent(): SnapshotContent {
    this.#assertLive();
    const held = this.engine.pagesHeld();
    const f = this.#ledger.figures(this.pageSource.heldPages);
    const blocks: [number, number, number][] = this.#ledger.liveBlocks()
      .map(([address, vcpu]) => [address, this.#ledger.requestedBytesAt(address)!, vcpu]);
    blocks.sort((a, b) => a[0] - b[0]);
    const machine = this.pageSource.pages;
    const engine = new StateWriter();
    this.engine.saveState(engine);
    return {
      version: 2,
      machine: { frames: machine.frameCount, maxOrder: machine.maxOrder },
      domain: {
        name: this.name,
        engine: this.engine.name,
        vcpus: this.vcpus,
        maxPages: this.#maxPages,
      },
      state: poolState(
        savePoolPages(machine, this.id),
        engine.bytes(),
        engineDescriptor(this.engine.name).stateLayout,
      ),
      heap: {
        pages_held: this.pageSource.heldPages,
        pool_pages: held.poolPages,
        whole_pages: held.wholePages,
        meta_pages: held.metaPages,
        reserved_pages: this.#reservedCount,
        live_blocks: f.live_blocks,
        requested_bytes: f.requested_bytes,
        reserved_bytes: f.reserved_bytes,
      },
      blocks,
    };
  }

  /**
   * Rebuild the pool from `c` (version 2: the engine is loaded, its live blocks go on
   * the books; version 1: its history is replayed on the recorded page answers), check
   * the heap against it, then have the machine back it and reserve its pages.
   */
  #restore(c: SnapshotContent, verifyOnly: boolean): void {
    const source = this.pageSource as ForkPageSource;
    let reserved = 0;
    let i = 0;
    if (c.version === 2) {
      // The engine holds the heap already: take its live blocks onto the books.
      reserved = c.heap.reserved_pages;
      for (const [address, requested, vcpu] of c.blocks) {
        let usable: number;
        try {
          usable = this.engine.usableSize(address);
        } catch (e) {
          throw new SnapshotError(
            `Snapshot does not rebuild its heap: its block at ${address} is not live in ` +
              `its engine's state (${(e as Error).message})`,
          );
        }
        if (vcpu >= this.vcpus) {
          throw new SnapshotError(`Snapshot block at ${address}: vCPU ${vcpu} of ${this.vcpus}`);
        }
        this.#ledger.track(address, requested, usable, vcpu);
      }
    }
    try {
      for (const op of c.version === 1 ? historyOps(c.history!) : []) {
        switch (op.kind) {
          case "allocate":
            this.allocate(op.size, op.align, op.vcpu);
            break;
          case "free":
            this.free(op.address, op.vcpu);
            break;
          case "reallocate":
            this.reallocate(op.address, op.size, op.align, op.vcpu);
            break;
          case "reserved":
            reserved = op.pages;
            source.maxPages = c.domain.maxPages - reserved;
        }
        i++;
      }
    } catch (e) {
      if (e instanceof SnapshotError) throw e;
      throw new SnapshotError(
        `Snapshot operation ${i} was refused on replay: ${(e as Error).message}`,
      );
    }
    const problems = this.engine.check();
    if (source.unusedResponses > 0) {
      problems.push(`${source.unusedResponses} page responses were never asked for`);
    }
    const held = this.engine.pagesHeld();
    const f = this.#ledger.figures(source.heldPages);
    const got: Record<string, number> = {
      pages_held: source.heldPages,
      pool_pages: held.poolPages,
      whole_pages: held.wholePages,
      meta_pages: held.metaPages,
      reserved_pages: reserved,
      live_blocks: f.live_blocks,
      requested_bytes: f.requested_bytes,
      reserved_bytes: f.reserved_bytes,
    };
    for (const [key, want] of Object.entries(c.heap)) {
      if (got[key] !== want) problems.push(`${key} is ${got[key]}, the snapshot says ${want}`);
    }
    const blocks = this.#ledger.liveBlocks().sort((a, b) => a[0] - b[0]);
    const firstOff = c.blocks.findIndex(([address, requested, vcpu], k) =>
      blocks[k]?.[0] !== address || blocks[k]?.[1] !== vcpu ||
      this.#ledger.requestedBytesAt(address) !== requested
    );
    if (firstOff < 0 && blocks.length !== c.blocks.length) {
      problems.push(
        `the replay made ${blocks.length} live blocks, the snapshot lists ${c.blocks.length}`,
      );
    } else if (firstOff >= 0) {
      problems.push(
        `live block ${firstOff} differs: the snapshot has ${
          JSON.stringify(c.blocks[firstOff])
        }, the replay made ${JSON.stringify(blocks[firstOff] ?? null)}`,
      );
    }
    if (problems.length > 0) {
      throw new SnapshotError(`Snapshot does not rebuild its heap: ${problems.join("; ")}`);
    }
    if (verifyOnly) return;
    const cause = source.goLive();
    if (cause !== null) {
      throw new MachineFullError(
        `The machine cannot back the snapshot's heap (${source.heldPages} pages in ` +
          `its blocks): ${cause}`,
      );
    }
    source.maxPages = this.#maxPages;
    if (reserved > 0) {
      const r = this.reserve(reserved);
      if (!r.ok) {
        source.releaseAll();
        throw new MachineFullError(
          `The machine cannot reserve the snapshot's ${reserved} guest pages: ${r.cause}`,
        );
      }
    }
    // The books restart at the fork.
    this.restartBooks();
  }

  /** Page quota (the pool and the reservation together). */
  get maxPages(): number {
    return this.#maxPages;
  }

  /** Pages reserved for the guest's own heap. */
  get reservedPages(): number {
    return this.#reservedCount;
  }

  /**
   * Reserve `pages` more order-0 machine pages for the guest (Xen's
   * `XENMEM_populate_physmap`, extent order 0): all or nothing. Refused, as an
   * outcome, for `quota` (the pool's pages, the reserved ones and these would exceed
   * `max_pages`) or `exhaustion` (fewer free machine frames than `pages`); order-0
   * pages never fail for contiguity. A refused request changes nothing and costs one
   * call.
   *
   * @param pages 1..2^31
   * @param atCycles the caller's virtual time: the page-allocator calls then hold the
   *   machine's heap lock (calls must come in the order of their times)
   * @throws {RangeError} on a page count out of range
   *
   * @example
   * ```ts
   * import { Hypervisor } from "./hypervisor.ts";
   * import assert from "node:assert/strict";
   * const hv = new Hypervisor({ engine: "tlsf", machineBytes: 64 * 1024 * 1024 });
   * const t = hv.tenancy.createTenant("acme", { maxDomains: 1, maxPages: 100 });
   * const d = hv.tenancy.createDomain(t.id, { name: "web", vcpus: 1, maxPages: 100 });
   * assert.equal(d.reserve(60).grantedPages, 60);
   * assert.equal(d.reserve(41).cause, "quota"); // 60 + 41 > max_pages
   * assert.equal(d.pageSource.maxPages, 40); // what the reservation leaves the pool
   * d.unreserve(60);
   * ```
   */
  reserve(pages: number, atCycles?: number): ReservationResult {
    this.#assertLive();
    assertCount(pages, "pages", 1, RESERVATION_PAGES_MAX);
    let cause: ReservationFailureCause | null = null;
    if (this.pageSource.heldPages + this.#reservedCount + pages > this.#maxPages) {
      cause = "quota";
    } else if (pages > this.#pages.freeFrameCount) {
      cause = "exhaustion";
    }
    if (cause !== null) {
      return {
        ok: false,
        grantedPages: 0,
        reservedPages: this.#reservedCount,
        cause,
        cycles: modelledCycles(0, 0),
        lockWaitCycles: 0,
      };
    }
    const need = this.#reservedCount + pages;
    if (need > this.#reservedFrames.length) {
      this.#reservedFrames = grown(
        this.#reservedFrames,
        Math.max(need, this.#reservedFrames.length * 2, 64),
      );
    }
    for (let i = 0; i < pages; i++) {
      const frame = this.#pages.alloc(0, this.reservationOwner);
      if (frame < 0) throw new Error(`Domain ${this.id}: no free frame after checking (a bug)`);
      this.#reservedFrames[this.#reservedCount++] = frame;
    }
    this.pageSource.maxPages = this.#maxPages - this.#reservedCount;
    const cost = this.#reservationCost(pages, atCycles);
    return {
      ok: true,
      grantedPages: pages,
      reservedPages: this.#reservedCount,
      cause: null,
      ...cost,
    };
  }

  /**
   * Give back `pages` reserved pages (Xen's `XENMEM_decrease_reservation`), the last
   * granted first; the pool's quota grows by as much.
   *
   * @param pages 1..2^31
   * @param atCycles the caller's virtual time (see {@link reserve})
   * @throws {RangeError} on a page count out of range
   * @throws {NotReservedError} if fewer than `pages` are reserved (nothing changes)
   */
  unreserve(pages: number, atCycles?: number): ReleaseResult {
    this.#assertLive();
    assertCount(pages, "pages", 1, RESERVATION_PAGES_MAX);
    if (pages > this.#reservedCount) {
      throw new NotReservedError(
        `Cannot release ${pages} pages: domain ${this.id} has ${this.#reservedCount} reserved`,
      );
    }
    this.#releaseFrames(pages);
    this.pageSource.maxPages = this.#maxPages - this.#reservedCount;
    return {
      releasedPages: pages,
      reservedPages: this.#reservedCount,
      ...this.#reservationCost(pages, atCycles),
    };
  }

  /**
   * Allocate `sizeBytes` on `vcpu`. Failure (quota, exhaustion, contiguity,
   * unservable) is an outcome, not an exception.
   *
   * @param atCycles the vCPU's virtual time when it calls (lock wait is modelled only
   *   with it; calls must then come in the order of their times)
   * @throws {RangeError} on a bad size, alignment or vCPU
   */
  allocate(sizeBytes: number, alignBytes: number, vcpu: number, atCycles?: number): MemoryOpResult {
    this.#assertLive();
    const calls = this.#pages.callCount;
    const address = this.engine.allocate(sizeBytes, alignBytes, vcpu);
    if (address !== 0) this.#ledger.allocs++;
    return this.#outcome(address, sizeBytes, vcpu, atCycles, calls);
  }

  /**
   * Free the block at `address` on `vcpu`.
   *
   * @throws {InvalidFreeError} if it is not a live block of this domain (nothing changes)
   * @throws {RangeError} on a bad vCPU
   */
  free(address: number, vcpu: number, atCycles?: number): MemoryOpResult {
    this.#assertLive();
    const reserved = this.engine.usableSize(address); // throws for a bad address
    const calls = this.#pages.callCount;
    this.engine.free(address, vcpu);
    this.#ledger.frees++;
    this.#ledger.untrack(address, reserved);
    const { steps, cycles, lockWaitCycles } = this.#cost(vcpu, atCycles, calls);
    return { ok: true, address, reservedBytes: 0, cause: null, steps, cycles, lockWaitCycles };
  }

  /**
   * Resize the block at `address` (in place if it fits, else move).
   *
   * @returns the outcome; when not served the old block stays
   * @throws {InvalidFreeError} if it is not a live block of this domain
   */
  reallocate(
    address: number,
    sizeBytes: number,
    alignBytes: number,
    vcpu: number,
    atCycles?: number,
  ): MemoryOpResult {
    this.#assertLive();
    let oldReserved: number;
    try {
      oldReserved = this.engine.usableSize(address);
    } catch (e) {
      // The engine says "Cannot free": here the caller asked to resize.
      if (e instanceof InvalidFreeError) {
        e.message = e.message.replace(/^Cannot free address/, "Cannot resize the block at");
      }
      throw e;
    }
    const calls = this.#pages.callCount;
    const moved = this.engine.reallocate(address, sizeBytes, alignBytes, vcpu);
    if (moved !== 0) {
      this.#ledger.reallocs++;
      this.#ledger.untrack(address, oldReserved);
    }
    return this.#outcome(moved, sizeBytes, vcpu, atCycles, calls);
  }

  /**
   * Start the books again from now: the live blocks stay (with their bytes and
   * vCPUs); call counts, failures, steps, latency, lock wait and the peak count from
   * here (a restored domain starts so; a warm-up can be left out of the figures).
   */
  restartBooks(): void {
    this.#assertLive();
    const fresh = new HeapLedger(this.vcpus, this.#heapLock);
    for (const [address, vcpu] of this.#ledger.liveBlocks()) {
      fresh.track(
        address,
        this.#ledger.requestedBytesAt(address)!,
        this.engine.usableSize(address),
        vcpu,
      );
    }
    fresh.notePages(this.pageSource.heldPages);
    this.#ledger = fresh;
  }

  /** Figures now. */
  stats(): DomainStats {
    const held = this.engine.pagesHeld();
    const pagesHeld = this.pageSource.heldPages;
    return {
      id: this.id,
      tenant_id: this.tenantId,
      name: this.name,
      engine: this.engine.name,
      vcpus: this.vcpus,
      max_pages: this.maxPages,
      pages_held: pagesHeld,
      reserved_pages: this.#reservedCount,
      pool_pages: held.poolPages,
      whole_pages: held.wholePages,
      meta_pages: held.metaPages,
      peak_pages: this.#ledger.peakPages,
      ...this.#ledger.figures(pagesHeld),
    };
  }

  /** Requested bytes of the live block at `address` (undefined if none). */
  requestedBytesAt(address: number): number | undefined {
    return this.#ledger.requestedBytesAt(address);
  }

  /** Whether the domain was destroyed. */
  get destroyed(): boolean {
    return this.#destroyed;
  }

  /** Give every page back, the pool's and the reserved ones; the domain is unusable afterwards. */
  destroy(): void {
    this.engine.destroy();
    this.#releaseFrames(this.#reservedCount);
    this.#destroyed = true;
    this.#ledger.clear();
    const left = this.pageSource.heldPages + this.#pages.pagesOwnedBy(this.reservationOwner);
    if (left !== 0) {
      throw new Error(`Domain ${this.id} still holds ${left} pages after destroy (a bug)`);
    }
  }

  /** Free the last `pages` reserved frames. */
  #releaseFrames(pages: number): void {
    for (let i = 0; i < pages; i++) {
      this.#pages.free(this.#reservedFrames[--this.#reservedCount]!, 0);
    }
  }

  /**
   * Cycles of a reservation or release of `pages` order-0 pages: one page-allocator call
   * and one p2m step per page; the calls hold the heap lock (with a virtual time).
   */
  #reservationCost(pages: number, atCycles: number | undefined) {
    const cycles = modelledCycles(pages, pages);
    const lockWaitCycles = atCycles === undefined || this.#heapLock === null
      ? 0
      : this.#heapLock.acquire(atCycles, pages * PAGE_ALLOCATOR_CALL_CYCLES);
    return { cycles, lockWaitCycles };
  }

  /** Steps, modelled cycles and lock wait of the call that began at `callsBefore`; recorded. */
  #cost(vcpu: number, atCycles: number | undefined, callsBefore: number) {
    const steps = this.engine.lastSteps;
    const pageCalls = this.#pages.callCount - callsBefore;
    const { cycles, lockWaitCycles } = this.#ledger.smp.account(
      vcpu,
      atCycles,
      steps,
      pageCalls,
      this.engine.lastSharedAccess,
    );
    this.#ledger.record(steps, cycles + lockWaitCycles, this.pageSource.heldPages);
    return { steps, cycles, lockWaitCycles };
  }

  /** The result of an allocation (address 0: not served), tracked and counted. */
  #outcome(
    address: number,
    sizeBytes: number,
    vcpu: number,
    atCycles: number | undefined,
    callsBefore: number,
  ): MemoryOpResult {
    const { steps, cycles, lockWaitCycles } = this.#cost(vcpu, atCycles, callsBefore);
    if (address === 0) {
      const cause = this.engine.lastFailureCause ?? "unservable";
      this.#ledger.fail(cause);
      return { ok: false, address: 0, reservedBytes: 0, cause, steps, cycles, lockWaitCycles };
    }
    const reservedBytes = this.engine.usableSize(address);
    this.#ledger.track(address, sizeBytes, reservedBytes, vcpu);
    return { ok: true, address, reservedBytes, cause: null, steps, cycles, lockWaitCycles };
  }

  #assertLive(): void {
    if (this.#destroyed) throw new NotFoundError(`Domain ${this.id} was destroyed`);
  }
}

/** Tenants and their domains on one machine. */
export class Tenancy {
  /** The machine's heap lock (Xen's `heap_lock`): every page-allocator call holds it. */
  readonly heapLock: VirtualLock = new VirtualLock();
  /**
   * Whether domains wait for the heap lock. Off when domains' callers run on clocks
   * that are not one timeline (guests in Workers): their virtual times cannot be
   * compared, so waiting across domains would be invented.
   */
  modelHeapLock = true;
  readonly #pages: BuddyPageAllocator;
  readonly #defaultEngine: string;
  readonly #tenants = new Map<number, Tenant>();
  readonly #domains = new Map<number, Domain>();
  readonly #snapshots = new Map<number, StoredSnapshot>();
  #nextTenantId = 1;
  #nextDomainId = 1;
  #nextSnapshotId = 1;

  /**
   * No tenants yet, on the machine `pages`.
   *
   * @param pages the machine
   * @param defaultEngine engine of domains that name none
   */
  constructor(pages: BuddyPageAllocator, defaultEngine: string) {
    engineDescriptor(defaultEngine);
    this.#pages = pages;
    this.#defaultEngine = defaultEngine;
  }

  /** The default engine of new domains. */
  get defaultEngine(): string {
    return this.#defaultEngine;
  }

  /**
   * Write every tenant, domain (with its pool, books and reservation) and snapshot,
   * the id counters and the heap lock: with the machine's state (saved apart), a
   * checkpoint. Its size grows with the state, not with the calls that made it.
   */
  saveState(w: StateWriter): void {
    this.heapLock.saveState(w);
    w.bool(this.modelHeapLock);
    w.num(this.#nextTenantId);
    w.num(this.#nextDomainId);
    w.num(this.#nextSnapshotId);
    w.num(this.#tenants.size);
    for (const t of this.#tenants.values()) {
      w.num(t.id);
      w.str(t.name);
      w.num(t.maxDomains);
      w.num(t.maxPages);
    }
    w.num(this.#domains.size);
    for (const d of this.#domains.values()) {
      w.num(d.id);
      w.num(d.tenantId);
      w.str(d.name);
      w.num(d.vcpus);
      w.num(d.maxPages);
      w.str(d.engine.name);
      d.saveState(w);
    }
    w.num(this.#snapshots.size);
    for (const s of this.#snapshots.values()) {
      w.num(s.id);
      w.num(s.tenantId);
      w.num(s.sourceDomainId ?? -1);
      w.str(JSON.stringify(snapshotDocument(s.content)));
    }
  }

  /**
   * Become the tenancy `r` holds (from {@link saveState}), on this tenancy's machine,
   * which must already hold the same checkpoint's machine state. The tenancy must be
   * new (no tenant yet).
   *
   * @throws {StateError} if the state does not read back
   */
  loadState(r: StateReader): void {
    if (this.#tenants.size > 0 || this.#nextTenantId !== 1) {
      throw new Error("Tenancy.loadState: the tenancy is not new (a bug)");
    }
    this.heapLock.loadState(r);
    this.modelHeapLock = r.bool();
    this.#nextTenantId = r.num();
    this.#nextDomainId = r.num();
    this.#nextSnapshotId = r.num();
    for (let n = r.num(); n > 0; n--) {
      const t: Tenant = { id: r.num(), name: r.str(), maxDomains: r.num(), maxPages: r.num() };
      this.#tenants.set(t.id, t);
    }
    for (let n = r.num(); n > 0; n--) {
      const id = r.num();
      const tenantId = r.num();
      const spec = { name: r.str(), vcpus: r.num(), maxPages: r.num(), engine: r.str() };
      const lock = this.modelHeapLock ? this.heapLock : null;
      this.#domains.set(id, new Domain(id, tenantId, spec, this.#pages, lock, { checkpoint: r }));
    }
    for (let n = r.num(); n > 0; n--) {
      const id = r.num();
      const tenantId = r.num();
      const source = r.num();
      const content = parseSnapshotDocument(JSON.parse(r.str()));
      this.#snapshots.set(id, {
        id,
        tenantId,
        sourceDomainId: source < 0 ? null : source,
        content,
      });
    }
  }

  /**
   * Create a tenant.
   *
   * @throws {RangeError} on a bad name or quota
   */
  createTenant(name: string, quota: TenantQuota): Tenant {
    assertName(name, "tenant");
    assertCount(quota.maxDomains, "max_domains", 1, 1_000_000);
    assertCount(quota.maxPages, "max_pages", 1, 2 ** 31);
    const tenant: Tenant = { id: this.#nextTenantId++, name, ...quota };
    this.#tenants.set(tenant.id, tenant);
    return tenant;
  }

  /** Every tenant, by id. */
  tenants(): Tenant[] {
    return [...this.#tenants.values()];
  }

  /**
   * The tenant with `id`.
   *
   * @throws {NotFoundError} if there is none
   */
  tenant(id: number): Tenant {
    const t = this.#tenants.get(id);
    if (!t) throw new NotFoundError(`No tenant ${id}`);
    return t;
  }

  /**
   * Delete a tenant and destroy its domains (every page returns).
   *
   * @throws {NotFoundError} if there is none
   */
  deleteTenant(id: number): void {
    this.tenant(id);
    for (const d of this.domains(id)) this.destroyDomain(d.id);
    for (const s of this.snapshots(id)) this.#snapshots.delete(s.id);
    this.#tenants.delete(id);
  }

  /**
   * Create a domain for tenant `tenantId`.
   *
   * @throws {NotFoundError} if there is no such tenant
   * @throws {RangeError} on a bad name, vCPU count, page quota or engine
   * @throws {QuotaExceededError} if the tenant's limits would be exceeded
   */
  createDomain(tenantId: number, spec: DomainSpec): Domain {
    const tenant = this.tenant(tenantId);
    assertName(spec.name, "domain");
    assertCount(spec.vcpus, "vcpus", 1, VCPUS_MAX);
    assertCount(spec.maxPages, "max_pages", 1, 2 ** 31);
    const engine = spec.engine ?? this.#defaultEngine;
    engineDescriptor(engine);
    this.#assertRoomForDomain(tenant, spec.maxPages);
    const domain = new Domain(
      this.#nextDomainId++,
      tenantId,
      { ...spec, engine },
      this.#pages,
      this.modelHeapLock ? this.heapLock : null,
    );
    this.#domains.set(domain.id, domain);
    return domain;
  }

  /**
   * Create a domain for tenant `tenantId` whose heap is snapshot `spec.fromSnapshot`'s:
   * the same blocks at the same addresses, checked (hypervisor/snapshot.ts).
   *
   * @throws {NotFoundError} if there is no such tenant, or no such snapshot of it
   * @throws {RangeError} on a bad name or page quota, or a vCPU count or engine that
   *   is not the snapshot's
   * @throws {QuotaExceededError} if the tenant's limits would be exceeded
   * @throws {SnapshotError} if the snapshot does not rebuild its heap
   * @throws {MachineFullError} if the machine cannot back the heap
   */
  restoreDomain(tenantId: number, spec: RestoreSpec): Domain {
    const tenant = this.tenant(tenantId);
    const snap = this.snapshot(spec.fromSnapshot, tenantId);
    const c = snap.content;
    assertName(spec.name, "domain");
    if (spec.engine !== undefined && spec.engine !== c.domain.engine) {
      throw new RangeError(
        `Snapshot ${snap.id} is a ${c.domain.engine} heap: it restores into ${c.domain.engine}, ` +
          `not ${spec.engine} (startFromSnapshot moves its blocks to another engine)`,
      );
    }
    if (spec.vcpus !== undefined && spec.vcpus !== c.domain.vcpus) {
      throw new RangeError(
        `Snapshot ${snap.id} has per-vCPU state for ${c.domain.vcpus} vCPUs: vcpus must be ` +
          `${c.domain.vcpus}, not ${spec.vcpus}`,
      );
    }
    const maxPages = spec.maxPages ?? c.domain.maxPages;
    assertCount(maxPages, "max_pages", c.heap.pages_held + c.heap.reserved_pages, 2 ** 31);
    this.#assertRoomForDomain(tenant, maxPages);
    const domain = new Domain(
      this.#nextDomainId,
      tenantId,
      { name: spec.name, vcpus: c.domain.vcpus, maxPages, engine: c.domain.engine },
      this.#pages,
      this.modelHeapLock ? this.heapLock : null,
      { snapshot: c },
    );
    this.#nextDomainId++;
    this.#domains.set(domain.id, domain);
    return domain;
  }

  /**
   * Create a domain for tenant `tenantId` that starts from snapshot `spec.fromSnapshot`:
   * on the snapshot's engine (`spec.engine` omitted or the same) its very heap
   * ({@link restoreDomain}: same blocks, same addresses, `moved` null); on another
   * engine the same live blocks, allocated one by one by address (bytes and vCPU as in
   * the snapshot, its reservation first), laid out that engine's way, and `moved` maps
   * each block's address in the snapshot to its address here. The books start after.
   *
   * @throws {NotFoundError} if there is no such tenant, or no such snapshot of it
   * @throws {RangeError} on a bad name, page quota or engine, or (on another engine)
   *   fewer vCPUs than the snapshot's blocks name
   * @throws {QuotaExceededError} if the tenant's limits would be exceeded
   * @throws {SnapshotError} if the snapshot does not rebuild its heap
   * @param options `allowUnserved`: on another engine, leave out the blocks it cannot
   *   serve (counted in `unserved`, absent from `moved`) instead of refusing
   * @throws {MachineFullError} if the machine cannot back the heap, or (on another
   *   engine) cannot serve one of its blocks within the domain's quota: nothing is held
   */
  startFromSnapshot(
    tenantId: number,
    spec: RestoreSpec,
    options: { allowUnserved?: boolean } = {},
  ): { domain: Domain; moved: [number, number][] | null; unserved: number } {
    const c = this.snapshot(spec.fromSnapshot, tenantId).content;
    if (spec.engine === undefined || spec.engine === c.domain.engine) {
      return { domain: this.restoreDomain(tenantId, spec), moved: null, unserved: 0 };
    }
    const vcpus = spec.vcpus ?? c.domain.vcpus;
    const needed = c.blocks.reduce((most, [, , vcpu]) => Math.max(most, vcpu + 1), 1);
    if (vcpus < needed) {
      throw new RangeError(
        `Snapshot ${spec.fromSnapshot} has blocks of vCPU ${needed - 1}: vcpus must be at ` +
          `least ${needed}, not ${vcpus}`,
      );
    }
    const domain = this.createDomain(tenantId, {
      name: spec.name,
      vcpus,
      maxPages: spec.maxPages ?? c.domain.maxPages,
      engine: spec.engine,
    });
    const moved: [number, number][] = [];
    let unserved = 0;
    try {
      if (c.heap.reserved_pages > 0) {
        const r = domain.reserve(c.heap.reserved_pages);
        if (!r.ok) {
          throw new MachineFullError(
            `Cannot reserve the snapshot's ${c.heap.reserved_pages} guest pages: ${r.cause}`,
          );
        }
      }
      c.blocks.forEach(([address, requested, vcpu], i) => {
        const r = domain.allocate(requested, 1, vcpu);
        if (!r.ok && options.allowUnserved) {
          unserved++;
          return;
        }
        if (!r.ok) {
          throw new MachineFullError(
            `${spec.engine} cannot serve the snapshot's block ${i} of ${c.blocks.length} ` +
              `(${requested} bytes): ${r.cause}`,
          );
        }
        moved.push([address, r.address]);
      });
    } catch (e) {
      this.destroyDomain(domain.id);
      this.#nextDomainId--; // a refused start uses no id, as a refused restore
      throw e;
    }
    domain.restartBooks();
    return { domain, moved, unserved };
  }

  /**
   * Snapshot domain `domainId` (its tenant keeps it).
   *
   * @throws {NotFoundError} if there is no such domain
   * @throws {QuotaExceededError} if its tenant keeps {@link SNAPSHOTS_PER_TENANT_MAX}
   */
  takeSnapshot(domainId: number): StoredSnapshot {
    const d = this.domain(domainId);
    return this.#keepSnapshot(d.tenantId, d.id, d.snapshotContent());
  }

  /**
   * Keep an imported snapshot for tenant `tenantId`, after checking that its state
   * rebuilds its heap (in a scratch space: the machine is not touched).
   *
   * @throws {NotFoundError} if there is no such tenant
   * @throws {SnapshotError} if it does not rebuild its heap
   * @throws {QuotaExceededError} if the tenant keeps {@link SNAPSHOTS_PER_TENANT_MAX}
   */
  importSnapshot(tenantId: number, content: SnapshotContent): StoredSnapshot {
    this.tenant(tenantId);
    this.#assertRoomForSnapshot(tenantId);
    new Domain(
      0,
      tenantId,
      { ...content.domain },
      this.#pages,
      null,
      { snapshot: content, verifyOnly: true },
    );
    return this.#keepSnapshot(tenantId, null, content);
  }

  /**
   * Snapshot `id` (of tenant `tenantId` when given: another tenant's is not found).
   *
   * @throws {NotFoundError} if there is none
   */
  snapshot(id: number, tenantId?: number): StoredSnapshot {
    const s = this.#snapshots.get(id);
    if (s === undefined || (tenantId !== undefined && s.tenantId !== tenantId)) {
      throw new NotFoundError(`No snapshot ${id}`);
    }
    return s;
  }

  /** Snapshots, all or a tenant's, by id. */
  snapshots(tenantId?: number): StoredSnapshot[] {
    const all = [...this.#snapshots.values()];
    return tenantId === undefined ? all : all.filter((s) => s.tenantId === tenantId);
  }

  /**
   * Forget snapshot `id` (domains restored from it keep their heaps).
   *
   * @throws {NotFoundError} if there is none
   */
  deleteSnapshot(id: number): void {
    this.snapshot(id);
    this.#snapshots.delete(id);
  }

  #keepSnapshot(tenantId: number, domainId: number | null, content: SnapshotContent) {
    this.#assertRoomForSnapshot(tenantId);
    const s: StoredSnapshot = {
      id: this.#nextSnapshotId++,
      tenantId,
      sourceDomainId: domainId,
      // Kept deflated: a few percent of the engine's arrays.
      content: content.state === undefined
        ? content
        : { ...content, state: packedPoolState(content.state) },
    };
    this.#snapshots.set(s.id, s);
    return s;
  }

  #assertRoomForSnapshot(tenantId: number): void {
    const kept = this.snapshots(tenantId).length;
    if (kept >= SNAPSHOTS_PER_TENANT_MAX) {
      throw new QuotaExceededError(
        `Cannot keep another snapshot: tenant ${tenantId} keeps ${kept}, the most allowed; ` +
          `delete one first`,
      );
    }
  }

  #assertRoomForDomain(tenant: Tenant, maxPages: number): void {
    const tenantId = tenant.id;
    const mine = this.domains(tenantId);
    if (mine.length + 1 > tenant.maxDomains) {
      throw new QuotaExceededError(
        `Cannot create domain: tenant ${tenantId} already has ${mine.length} of its ${tenant.maxDomains} domains`,
      );
    }
    if (this.#nextDomainId >= DOMAIN_ID_LIMIT) {
      throw new QuotaExceededError(
        `Cannot create domain: every domain id below ${DOMAIN_ID_LIMIT} has been used`,
      );
    }
    const reserved = mine.reduce((sum, d) => sum + d.maxPages, 0);
    if (reserved + maxPages > tenant.maxPages) {
      throw new QuotaExceededError(
        `Cannot create domain with max_pages ${maxPages}: tenant ${tenantId} has ${
          tenant.maxPages - reserved
        } of its ${tenant.maxPages} pages left`,
      );
    }
  }

  /** Domains, all or a tenant's, by id. */
  domains(tenantId?: number): Domain[] {
    const all = [...this.#domains.values()];
    return tenantId === undefined ? all : all.filter((d) => d.tenantId === tenantId);
  }

  /**
   * The domain with `id`.
   *
   * @throws {NotFoundError} if there is none
   */
  domain(id: number): Domain {
    const d = this.#domains.get(id);
    if (!d) throw new NotFoundError(`No domain ${id}`);
    return d;
  }

  /**
   * Destroy a domain: every page it held returns to the page allocator.
   *
   * @throws {NotFoundError} if there is none
   */
  destroyDomain(id: number): void {
    this.domain(id).destroy();
    this.#domains.delete(id);
  }

  /** Pages a tenant's domains hold now (their pools' and their reservations). */
  pagesHeldBy(tenantId: number): number {
    return this.domains(tenantId).reduce(
      (sum, d) => sum + d.pageSource.heldPages + d.reservedPages,
      0,
    );
  }
}
