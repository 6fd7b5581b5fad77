/**
 * A guest's own heap: the second memory path of a guest. Besides asking the
 * hypervisor's xmalloc for blocks (the domain pool, one control-plane request per
 * operation), a guest can ask the hypervisor for pages once (a reservation within its
 * `max_pages`, `POST /v1/domains/{id}/reservation`) and run an allocator of its own on
 * them, chosen from the same engine library: what a unikernel does, and the allocator
 * specialisation Unikraft measured (the right allocator cut Nginx's boot from 7.4 ms
 * to 1.5 ms).
 *
 * ## The model
 *
 * - **Guest-physical memory.** The guest's physical address space is a
 *   {@link BuddyPageAllocator} of `max_pages` frames (guest frame numbers 0 ..
 *   max_pages - 1; addresses are guest-physical, in the model's direct map at 16 TiB
 *   as machine addresses are). Its engine draws pages through a {@link PageSource}
 *   whose quota is the reservation: the engine can use reserved pages only. Which
 *   machine frames back them is the hypervisor's business (its p2m): the reservation
 *   is order-0 machine pages, the guest sees them contiguous.
 * - **Operations run locally.** `allocate` / `free` / `reallocate` call the engine in
 *   process: no control-plane request. Their cost is the same as a domain pool's:
 *   {@link SmpAccounting} (the guest allocator's own lock among its vCPUs, the
 *   guest-physical page allocator's heap lock, cache-line transfers, false sharing)
 *   and `src/cost_model.ts`.
 * - **Growth.** When the engine fails for `quota` (the reservation is used up), the
 *   heap asks the hypervisor for `growPages` more (one reservation request, whose
 *   cycles and heap-lock wait are added to the operation's) and retries once. A
 *   refused reservation fails the operation with the reservation's cause (`quota`:
 *   over the domain's `max_pages`; `exhaustion`: the machine is out of frames); a
 *   retry that still fails keeps the engine's cause. The failed try and the retry are
 *   costed as one call (their steps and page calls summed, the guest's lock taken
 *   once), so the SMP figures count one call per operation; the reservation's cycles
 *   are in the operation's `cycles` and in `latency_cycles`, not in the per-vCPU SMP
 *   latency (which is the allocator's own).
 * - **Boot** costs the reservation request's cycles plus the engine's initialisation
 *   ({@link engineInitWork}, below).
 *
 * ## Boot cost model: what each engine's initialisation does
 *
 * Units as `src/cost_model.ts`: {@link CALL_CYCLES} per function entered,
 * {@link STEP_CYCLES} per unit of list or bitmap work (a list head initialised, a
 * list insert, a bitmap word written, as the engines count steps), and
 * {@link INIT_LINE_CYCLES} per 64-byte line that boot writes (memset of memory nobody
 * touched yet). Pages an engine takes from its page allocator at initialisation are
 * costed where the model's engine takes them: at its first allocation (TLSF's pool
 * structure, bbuddy's descriptor page and regions), by the operation's page-calls.
 *
 * - `first-fit` (Xen 3.3 xen/common/xmalloc.c): `static LIST_HEAD(freelist)` and
 *   `DEFINE_SPINLOCK(freelist_lock)` are initialised statically: nothing runs, 0.
 * - `tlsf`, `tlsf-2008` (xen/common/xmalloc_tlsf.c `xmem_pool_create()`): one call;
 *   `memset(pool, 0, ROUNDUP_SIZE(sizeof(*pool)))` of the 6320-byte
 *   `struct xmem_pool` (99 lines); `list_add_tail(&pool->list, &pool_list_head)` (1
 *   step). tlsf-2008's initial region (`ADD_REGION` of `init_size`) is added by the
 *   model's engine at its first allocation, and costed there.
 * - `slub` (mm/slub.c `kmem_cache_init()` → `create_kmalloc_caches()`): the 13
 *   kmalloc caches (8 .. 8192 with 96 and 192), each `do_kmem_cache_create()`: one
 *   call; steps: `kmem_cache_zalloc()` of the `struct kmem_cache` (1, a slab fast
 *   path), `calculate_sizes()` / `calculate_order()` (1), `init_kmem_cache_nodes()`
 *   (2: the node's allocation and `init_kmem_cache_node()`), `alloc_kmem_cache_cpus()`
 *   (1 for `__alloc_percpu()`, then 1 per vCPU for `init_kmem_cache_cpus()`: tid and
 *   lock), `list_add(&s->list, &slab_caches)` (1); lines: the zeroed
 *   `struct kmem_cache` ({@link KMEM_CACHE_LINES}), the node (1) and one
 *   `struct kmem_cache_cpu` per vCPU (1 each). So 13 × (CALL + (6 + v) STEP +
 *   (5 + v) LINE): it grows with the vCPUs. The bootstrap caches `kmem_cache` and
 *   `kmem_cache_node` are left out, as the model keeps SLUB's metadata out of band.
 * - `buddy` (unikraft lib/ukallocbbuddy/bbuddy.c `uk_allocbbuddy_init()` and
 *   `bbuddy_addmem()`, given the initial reservation as Unikraft's boot gives the heap
 *   its memory, the heap starting at guest frame 0): one call; `memset(a, 0, metalen)`
 *   of the descriptor page (64 lines); the 52 free-list heads (52 steps); then
 *   `bbuddy_addmem(a, min + metalen, max - min - metalen)` (one call; Unikraft skips
 *   metalen twice, so the range is initialPages - 2 pages; under 2 pages it is
 *   refused, and the model counts the same below 2 initial pages, where Unikraft's
 *   unsigned length would wrap): the memr struct and bitmap take `round_pgup(40 + ceil(nr_pages / 8))`
 *   bytes, whose bitmap is `memset` to ~0 (the header's lines); the memr goes on its
 *   list (1 step); `map_free()` of the data pages writes floor(data / 64) + 1 bitmap
 *   words (1 step each); each chunk carved onto a free list is 1 step. The bitmap and
 *   the words grow with the memory added. (The model's engine adds its regions on
 *   demand and counts their `map_free()` again in the allocation that adds one; that
 *   overlap is at most one region's words and push per region.)
 *
 * The page faults or EPT misses of first-touching memory are not modelled.
 *
 * Everything is deterministic: the same calls give the same addresses and figures.
 *
 * @module
 */

import { CALL_CYCLES, modelledCycles, STEP_CYCLES } from "../src/cost_model.ts";
import { CACHE_LINE_BYTES, getOrderFromBytes, PAGE_SIZE_BYTES } from "../src/units.ts";
import { VirtualLock } from "../src/virtual_lock.ts";
import {
  RESERVATION_PAGES_MAX,
  type ReservationFailureCause,
  VCPUS_MAX,
} from "../hypervisor/domains.ts";
import { BuddyPageAllocator } from "../hypervisor/page_allocator.ts";
import { type HeapFigures, HeapLedger } from "../hypervisor/heap_ledger.ts";
import {
  type AllocFailureCause,
  PageSource,
  type XmallocEngine,
} from "../hypervisor/xmalloc/engine.ts";
import { engineDescriptor } from "../hypervisor/xmalloc/registry.ts";
import { XMEM_POOL_STRUCT_BYTES } from "../hypervisor/xmalloc/_tlsf_pool.ts";
import { KMALLOC_CACHE_SIZES } from "../hypervisor/xmalloc/slub.ts";
import {
  DESCRIPTOR_PAGES,
  FREELIST_SIZE,
  MEMR_STRUCT_BYTES,
  PAGES_PER_MAPWORD,
} from "../hypervisor/xmalloc/_bbuddy.ts";
import type { ControlPlaneClient } from "./client.ts";

// -- the boot cost model --------------------------------------------------------------

/**
 * Cycles to write one 64-byte line that boot initialises: memory nobody touched yet,
 * so each line comes from DRAM for ownership; about 15 GB/s of single-core store
 * bandwidth at 3 GHz is 13 cycles a line, rounded to 12. A model figure, as the
 * constants of `src/cost_model.ts`.
 */
export const INIT_LINE_CYCLES = 12;
/**
 * Lines of a zeroed `struct kmem_cache` (a few hundred bytes on x86_64 without the
 * debug options; taken as 4 lines).
 */
export const KMEM_CACHE_LINES = 4;
/** Steps of one SLUB cache creation besides the per-vCPU ones (see the module comment). */
const SLUB_CACHE_STEPS = 6;
/** Lines of one SLUB cache creation besides the per-vCPU ones: the struct and its node. */
const SLUB_CACHE_LINES = KMEM_CACHE_LINES + 1;
/** Page owner of the guest heap's pages in the guest-physical page allocator. */
export const GUEST_HEAP_OWNER = 1;

/** The work of an engine's initialisation, and its modelled cycles. */
export interface EngineInitWork {
  /** Functions entered ({@link CALL_CYCLES} each). */
  calls: number;
  /** List and bitmap work ({@link STEP_CYCLES} each). */
  steps: number;
  /** 64-byte lines written ({@link INIT_LINE_CYCLES} each). */
  lines: number;
  /** calls × CALL_CYCLES + steps × STEP_CYCLES + lines × INIT_LINE_CYCLES. */
  cycles: number;
}

function work(calls: number, steps: number, lines: number): EngineInitWork {
  return {
    calls,
    steps,
    lines,
    cycles: calls * CALL_CYCLES + steps * STEP_CYCLES + lines * INIT_LINE_CYCLES,
  };
}

const roundUp = (value: number, to: number) => Math.ceil(value / to) * to;

/**
 * `uk_allocbbuddy_init()` over `initialPages` pages starting at guest frame 0, with its
 * `bbuddy_addmem()` of the rest (see the module comment).
 */
function bbuddyInitWork(initialPages: number): EngineInitWork {
  const metalen = DESCRIPTOR_PAGES * PAGE_SIZE_BYTES; // round_pgup(sizeof(*a) + sizeof(*b))
  let calls = 1;
  let steps = FREELIST_SIZE; // free_head[i] = &free_tail[i], ... for each list
  let lines = metalen / CACHE_LINE_BYTES; // memset(a, 0, metalen)
  const rangeBytes = (initialPages - 2 * DESCRIPTOR_PAGES) * PAGE_SIZE_BYTES;
  calls++; // bbuddy_addmem()
  const bitmapWordBytes = PAGES_PER_MAPWORD / 8;
  if (
    rangeBytes < roundUp(MEMR_STRUCT_BYTES + bitmapWordBytes, PAGE_SIZE_BYTES) + PAGE_SIZE_BYTES
  ) {
    return work(calls, steps, lines); // -EINVAL: not enough space, nothing added
  }
  const nrPages = Math.floor(8 * (rangeBytes - MEMR_STRUCT_BYTES) / (8 * PAGE_SIZE_BYTES + 1));
  const memrBytes = roundUp(MEMR_STRUCT_BYTES + Math.ceil(nrPages / 8), PAGE_SIZE_BYTES);
  lines += memrBytes / CACHE_LINE_BYTES; // memset(mm_alloc_bitmap, ~0, memr_size - 40)
  steps += 1; // memr->next = b->memr_head; b->memr_head = memr
  const dataPages = (rangeBytes - memrBytes) / PAGE_SIZE_BYTES;
  steps += Math.floor(dataPages / PAGES_PER_MAPWORD) + 1; // map_free(): first .. last word
  // The carve: each chunk as large as min's alignment and the rest of the range allow.
  let min = 2 * DESCRIPTOR_PAGES + memrBytes / PAGE_SIZE_BYTES; // page index
  let range = dataPages;
  const bit = (value: number, order: number) => Math.floor(value / 2 ** order) % 2 === 1;
  while (range > 0) {
    let order = 0;
    while (2 ** (order + 1) <= range && !bit(min, order)) order++;
    min += 2 ** order;
    range -= 2 ** order;
    steps++; // the chunk pushed on free_head[order]
  }
  return work(calls, steps, lines);
}

/**
 * The modelled work of `engine`'s initialisation in a guest with `vcpus` vCPUs whose
 * allocator is given `initialPages` pages at boot (see the module comment for what
 * each engine does and where in its source).
 *
 * @throws {RangeError} on an unknown engine
 *
 * @example
 * ```ts
 * import { engineInitWork } from "./own_heap.ts";
 * import assert from "node:assert/strict";
 * assert.equal(engineInitWork("first-fit", 1, 64).cycles, 0);
 * assert.ok(engineInitWork("buddy", 1, 4096).cycles > engineInitWork("buddy", 1, 64).cycles);
 * assert.ok(engineInitWork("slub", 8, 64).cycles > engineInitWork("slub", 1, 64).cycles);
 * ```
 */
export function engineInitWork(
  engine: string,
  vcpus: number,
  initialPages: number,
): EngineInitWork {
  switch (engineDescriptor(engine).name) {
    case "first-fit":
      return work(0, 0, 0);
    case "tlsf":
    case "tlsf-2008":
      return work(1, 1, Math.ceil(XMEM_POOL_STRUCT_BYTES / CACHE_LINE_BYTES));
    case "slub": {
      const caches = KMALLOC_CACHE_SIZES.length;
      return work(
        caches,
        caches * (SLUB_CACHE_STEPS + vcpus),
        caches * (SLUB_CACHE_LINES + vcpus),
      );
    }
    case "buddy":
      return bbuddyInitWork(initialPages);
    default:
      throw new RangeError(`No boot cost model for engine "${engine}"`);
  }
}

// -- the heap -----------------------------------------------------------------------------

/** How to boot an own heap. */
export interface OwnHeapOptions {
  /** Engine from the registry (first-fit, tlsf-2008, tlsf, slub, buddy). */
  engine: string;
  /** vCPUs that call it, 1..the domain's vCPUs. */
  vcpus: number;
  /** Pages reserved at boot, 1..2^31. */
  initialPages: number;
  /** Pages asked for when the reservation is used up, 0..2^31 (0: never grow). */
  growPages: number;
  /** The booting vCPU's virtual time (the reservation request carries it). */
  atCycles?: number;
}

/** The outcome of one operation of an own heap. */
export interface OwnHeapOpResult {
  /** Whether it was served. */
  ok: boolean;
  /** Guest-physical address of the block (0 when not served). */
  address: number;
  /** Bytes usable at the address (0 when not served, or after a free). */
  reservedBytes: number;
  /** Why it was not served. */
  cause: AllocFailureCause | null;
  /** The engine's steps (both tries when the heap grew). */
  steps: number;
  /** Modelled cycles: the allocator's work plus a reservation request's, if one was made. */
  cycles: number;
  /** Cycles waited for the guest's locks and, when it grew, the machine's heap lock. */
  lockWaitCycles: number;
  /** Reservation requests the operation made (0 or 1). */
  reservationRequests: number;
  /** Pages the hypervisor granted during the operation. */
  grantedPages: number;
}

/** An own heap's figures; names as in DomainStats where they mean the same. */
export interface OwnHeapStats extends HeapFigures {
  /** The domain whose reservation the heap lives on. */
  domain_id: number;
  /** Engine. */
  engine: string;
  /** vCPUs that call it. */
  vcpus: number;
  /** The domain's page quota (also the size of the guest-physical address space). */
  max_pages: number;
  /** Pages the hypervisor has granted the heap (its reservation). */
  reserved_pages: number;
  /** Pages the engine holds (pool + whole + meta), at most reserved_pages. */
  pages_held: number;
  /** Pages carved into blocks. */
  pool_pages: number;
  /** Pages handed out whole. */
  whole_pages: number;
  /** Pages of the engine's control structures. */
  meta_pages: number;
  /** Most pages the engine held at once. */
  peak_pages: number;
  /** reserved_pages * PAGE_SIZE / requested_bytes: what the machine gave per live byte. */
  reservation_overhead_ratio: number;
  /** Reservation requests after boot (growth): count, pages granted, refusals, cycles. */
  growth: {
    requests: number;
    granted_pages: number;
    refused: Record<ReservationFailureCause, number>;
    cycles: number;
  };
  /** Boot: the reservation request's cycles, the engine's initialisation, the sum. */
  boot: {
    reservation_cycles: number;
    init_cycles: number;
    init: EngineInitWork;
    cycles: number;
  };
}

/** What a shutdown gave back. */
export interface OwnHeapShutdown {
  /** Live blocks freed. */
  freedBlocks: number;
  /** Reserved pages released to the hypervisor. */
  releasedPages: number;
  /** Modelled cycles of the release request. */
  cycles: number;
}

/** The boot's reservation was refused. */
export class OwnHeapBootError extends Error {
  /** The error's name. */
  override name = "OwnHeapBootError";
  /** Why the hypervisor refused the reservation. */
  readonly reason: ReservationFailureCause;

  /**
   * Describe a refused boot.
   *
   * @param reason why the hypervisor refused the reservation
   * @param message what was asked and why it was refused
   */
  constructor(reason: ReservationFailureCause, message: string) {
    super(message);
    this.reason = reason;
  }
}

function assertInt(value: number, what: string, lo: number, hi: number): void {
  if (!Number.isSafeInteger(value) || value < lo || value > hi) {
    throw new RangeError(`Invalid ${what} ${value}: expected an integer in [${lo}, ${hi}]`);
  }
}

/** A reservation request's part of an operation. */
interface Growth {
  requests: number;
  granted: number;
  cause: ReservationFailureCause | null;
  cycles: number;
  lockWaitCycles: number;
}

const NO_GROWTH: Growth = { requests: 0, granted: 0, cause: null, cycles: 0, lockWaitCycles: 0 };

/**
 * A guest's own allocator on pages reserved from the hypervisor.
 *
 * @example
 * ```ts
 * import { Hypervisor } from "../hypervisor/hypervisor.ts";
 * import { createControlPlane } from "../hypervisor/control_plane/app.ts";
 * import { ControlPlaneClient } from "./client.ts";
 * import { OwnHeap } from "./own_heap.ts";
 * import assert from "node:assert/strict";
 * const admin = "admin-token-0123456789";
 * const hv = new Hypervisor({ engine: "tlsf", machineBytes: 2 ** 26 });
 * const { app } = createControlPlane(hv, { adminToken: admin });
 * const root = ControlPlaneClient.inProcess(app, admin);
 * const tenant = await root.createTenant({ name: "acme", max_domains: 1, max_pages: 256 });
 * const client = root.withToken(tenant.token);
 * const dom = await client.createDomain({ name: "web", vcpus: 2, max_pages: 256 });
 * const heap = await OwnHeap.boot(client, dom.id, {
 *   engine: "buddy",
 *   vcpus: 2,
 *   initialPages: 64,
 *   growPages: 32,
 * });
 * const r = await heap.allocate(4065); // 4065 + 32 bytes: two pages
 * assert.equal(r.reservedBytes, 2 * 4096 - 32);
 * assert.equal((await client.domain(dom.id)).reserved_pages, 64);
 * await heap.shutdown();
 * assert.equal((await client.domain(dom.id)).reserved_pages, 0);
 * ```
 */
export class OwnHeap {
  /** The domain. */
  readonly domainId: number;
  /** The guest's allocator. */
  readonly engine: XmallocEngine;
  /** vCPUs that call it. */
  readonly vcpus: number;
  /** The domain's max_pages: frames of the guest-physical address space. */
  readonly maxPages: number;
  /** Pages asked for when the reservation is used up. */
  readonly growPages: number;
  /** The guest-physical address space (its page allocator). */
  readonly physical: BuddyPageAllocator;
  /** The engine's pages: owner {@link GUEST_HEAP_OWNER}, quota = the reservation. */
  readonly pageSource: PageSource;
  /** The engine's initialisation work at boot. */
  readonly initWork: EngineInitWork;
  /** Cycles of the boot's reservation request. */
  readonly bootReservationCycles: number;

  readonly #client: ControlPlaneClient;
  readonly #ledger: HeapLedger;
  #reservedPages: number;
  #growthRequests = 0;
  #growthGranted = 0;
  #growthCycles = 0;
  readonly #growthRefused: Record<ReservationFailureCause, number> = { quota: 0, exhaustion: 0 };
  #shutDown = false;

  private constructor(
    client: ControlPlaneClient,
    domainId: number,
    maxPages: number,
    options: OwnHeapOptions,
    reservation: { pages: number; cycles: number },
  ) {
    this.#client = client;
    this.domainId = domainId;
    this.vcpus = options.vcpus;
    this.maxPages = maxPages;
    this.growPages = options.growPages;
    this.#reservedPages = reservation.pages;
    this.bootReservationCycles = reservation.cycles;
    this.physical = new BuddyPageAllocator(maxPages);
    this.pageSource = new PageSource(this.physical, GUEST_HEAP_OWNER, reservation.pages);
    this.engine = engineDescriptor(options.engine).create({
      pageSource: this.pageSource,
      cpuCount: options.vcpus,
    });
    this.initWork = engineInitWork(options.engine, options.vcpus, options.initialPages);
    // The guest's own locks: its allocator's, and its page allocator's heap lock.
    this.#ledger = new HeapLedger(options.vcpus, new VirtualLock());
  }

  /**
   * Boot: reserve `initialPages` through the control plane, build the guest-physical
   * address space and the engine on the reserved pages.
   *
   * @param client a client whose token reaches the domain
   * @param domainId the domain
   * @param options engine, vCPUs, initial and growth pages
   * @throws {RangeError} on an unknown engine, or a count out of range (vCPUs above
   *   the domain's)
   * @throws {OwnHeapBootError} if the hypervisor refuses the reservation
   * @throws {ControlPlaneError} if a request is refused (no such domain, ...)
   */
  static async boot(
    client: ControlPlaneClient,
    domainId: number,
    options: OwnHeapOptions,
  ): Promise<OwnHeap> {
    engineDescriptor(options.engine);
    assertInt(options.vcpus, "vcpus", 1, VCPUS_MAX);
    assertInt(options.initialPages, "initial pages", 1, RESERVATION_PAGES_MAX);
    assertInt(options.growPages, "growth pages", 0, RESERVATION_PAGES_MAX);
    if (options.atCycles !== undefined) {
      assertInt(options.atCycles, "virtual time", 0, Number.MAX_SAFE_INTEGER);
    }
    const domain = await client.domain(domainId);
    if (options.vcpus > domain.vcpus) {
      throw new RangeError(
        `Invalid vcpus ${options.vcpus}: domain ${domainId} has ${domain.vcpus}`,
      );
    }
    const r = await client.reserve(domainId, {
      pages: options.initialPages,
      ...(options.atCycles !== undefined ? { at_cycles: options.atCycles } : {}),
    });
    if (!r.ok) {
      throw new OwnHeapBootError(
        r.cause!,
        `Cannot boot an own heap on domain ${domainId}: the reservation of ${options.initialPages} pages was refused (${r.cause})`,
      );
    }
    return new OwnHeap(client, domainId, domain.max_pages, options, {
      pages: options.initialPages,
      cycles: r.cycles,
    });
  }

  /** Pages reserved now. */
  get reservedPages(): number {
    return this.#reservedPages;
  }

  /** Boot cost: the reservation request's cycles plus the engine's initialisation. */
  get bootCycles(): number {
    return this.bootReservationCycles + this.initWork.cycles;
  }

  /**
   * Allocate `sizeBytes` on `vcpu`, locally; if the reservation is used up, reserve
   * `growPages` more and retry once. Failure is an outcome with its cause.
   *
   * @param atCycles the vCPU's virtual time (lock wait is modelled only with it)
   * @throws {RangeError} on a bad size, alignment or vCPU
   */
  async allocate(
    sizeBytes: number,
    alignBytes = 1,
    vcpu = 0,
    atCycles?: number,
  ): Promise<OwnHeapOpResult> {
    this.#assertLive();
    const calls = this.physical.callCount;
    const engine = this.engine;
    let address = engine.allocate(sizeBytes, alignBytes, vcpu);
    let steps = engine.lastSteps;
    let shared = engine.lastSharedAccess;
    let growth = NO_GROWTH;
    if (address === 0 && engine.lastFailureCause === "quota") {
      growth = await this.#grow(
        atCycles,
        modelledCycles(steps, this.physical.callCount - calls),
        sizeBytes,
        alignBytes,
      );
      if (growth.granted > 0) {
        address = engine.allocate(sizeBytes, alignBytes, vcpu);
        steps += engine.lastSteps;
        shared ||= engine.lastSharedAccess;
      }
    }
    if (address !== 0) this.#ledger.allocs++;
    return this.#outcome(address, sizeBytes, vcpu, atCycles, calls, steps, shared, growth);
  }

  /**
   * Free the block at `address` on `vcpu`, locally.
   *
   * @throws {InvalidFreeError} if it is not a live block of this heap (nothing changes)
   * @throws {RangeError} on a bad vCPU
   */
  free(address: number, vcpu = 0, atCycles?: number): OwnHeapOpResult {
    this.#assertLive();
    const reserved = this.engine.usableSize(address); // throws for a bad address
    const calls = this.physical.callCount;
    this.engine.free(address, vcpu);
    this.#ledger.frees++;
    this.#ledger.untrack(address, reserved);
    const { cycles, lockWaitCycles, steps } = this.#cost(
      vcpu,
      atCycles,
      calls,
      this.engine.lastSteps,
      this.engine.lastSharedAccess,
      NO_GROWTH,
    );
    return {
      ok: true,
      address,
      reservedBytes: 0,
      cause: null,
      steps,
      cycles,
      lockWaitCycles,
      reservationRequests: 0,
      grantedPages: 0,
    };
  }

  /**
   * Resize the block at `address` (in place if it fits, else move), growing the
   * reservation once if needed.
   *
   * @returns the outcome; when not served the old block stays
   * @throws {InvalidFreeError} if it is not a live block of this heap
   */
  async reallocate(
    address: number,
    sizeBytes: number,
    alignBytes = 1,
    vcpu = 0,
    atCycles?: number,
  ): Promise<OwnHeapOpResult> {
    this.#assertLive();
    const oldReserved = this.engine.usableSize(address);
    const calls = this.physical.callCount;
    const engine = this.engine;
    let moved = engine.reallocate(address, sizeBytes, alignBytes, vcpu);
    let steps = engine.lastSteps;
    let shared = engine.lastSharedAccess;
    let growth = NO_GROWTH;
    if (moved === 0 && engine.lastFailureCause === "quota") {
      growth = await this.#grow(
        atCycles,
        modelledCycles(steps, this.physical.callCount - calls),
        sizeBytes,
        alignBytes,
      );
      if (growth.granted > 0) {
        moved = engine.reallocate(address, sizeBytes, alignBytes, vcpu);
        steps += engine.lastSteps;
        shared ||= engine.lastSharedAccess;
      }
    }
    if (moved !== 0) {
      this.#ledger.reallocs++;
      this.#ledger.untrack(address, oldReserved);
    }
    return this.#outcome(moved, sizeBytes, vcpu, atCycles, calls, steps, shared, growth);
  }

  /** Requested bytes of the live block at `address` (undefined if none). */
  requestedBytesAt(address: number): number | undefined {
    return this.#ledger.requestedBytesAt(address);
  }

  /** Figures now. */
  stats(): OwnHeapStats {
    const held = this.engine.pagesHeld();
    const pagesHeld = this.pageSource.heldPages;
    return {
      domain_id: this.domainId,
      engine: this.engine.name,
      vcpus: this.vcpus,
      max_pages: this.maxPages,
      reserved_pages: this.#reservedPages,
      pages_held: pagesHeld,
      pool_pages: held.poolPages,
      whole_pages: held.wholePages,
      meta_pages: held.metaPages,
      peak_pages: this.#ledger.peakPages,
      ...this.#ledger.figures(pagesHeld),
      reservation_overhead_ratio: this.#ledger.overheadRatio(this.#reservedPages),
      growth: {
        requests: this.#growthRequests,
        granted_pages: this.#growthGranted,
        refused: { ...this.#growthRefused },
        cycles: this.#growthCycles,
      },
      boot: {
        reservation_cycles: this.bootReservationCycles,
        init_cycles: this.initWork.cycles,
        init: { ...this.initWork },
        cycles: this.bootCycles,
      },
    };
  }

  /**
   * Walk the engine and the guest-physical page allocator; one message per broken
   * invariant (empty when sound), including the engine holding more than the
   * reservation.
   */
  check(): string[] {
    const errors = [...this.engine.check(), ...this.physical.check()];
    if (this.pageSource.heldPages > this.#reservedPages) {
      errors.push(
        `the engine holds ${this.pageSource.heldPages} pages, more than the ${this.#reservedPages} reserved`,
      );
    }
    return errors;
  }

  /** Whether the heap was shut down. */
  get shutDown(): boolean {
    return this.#shutDown;
  }

  /**
   * Free every live block, tear the engine down, and release the whole reservation to
   * the hypervisor (one control-plane request). The heap is unusable afterwards.
   *
   * @param atCycles the vCPU's virtual time (the release request carries it)
   * @throws {ControlPlaneError} if the release is refused
   */
  async shutdown(atCycles?: number): Promise<OwnHeapShutdown> {
    this.#assertLive();
    const live = this.#ledger.liveBlocks();
    for (const [address, vcpu] of live) {
      const reserved = this.engine.usableSize(address);
      this.engine.free(address, vcpu);
      this.#ledger.untrack(address, reserved);
    }
    this.engine.destroy();
    if (this.pageSource.heldPages !== 0) {
      throw new Error(`Own heap still holds ${this.pageSource.heldPages} pages (a bug)`);
    }
    this.#shutDown = true;
    const pages = this.#reservedPages;
    const r = await this.#client.release(this.domainId, {
      pages,
      ...(atCycles !== undefined ? { at_cycles: atCycles } : {}),
    });
    this.#reservedPages = 0;
    this.pageSource.maxPages = 0;
    return { freedBlocks: live.length, releasedPages: r.released, cycles: r.cycles };
  }

  // -- internals ------------------------------------------------------------------------

  /** Ask the hypervisor for `growPages` more, `offsetCycles` after `atCycles`. */
  /**
   * Ask the hypervisor for more pages: `growPages`, or enough for a request of
   * `needBytes` aligned to `alignBytes` if that is more (2^order pages with room for a
   * header, plus a page for an allocator's region header), so one growth serves it.
   */
  async #grow(
    atCycles: number | undefined,
    offsetCycles: number,
    needBytes: number,
    alignBytes: number,
  ): Promise<Growth> {
    if (this.growPages === 0) return NO_GROWTH;
    const at = atCycles === undefined ? undefined : atCycles + offsetCycles;
    const forRequest = 2 ** getOrderFromBytes(needBytes + alignBytes + PAGE_SIZE_BYTES) + 1;
    const r = await this.#client.reserve(this.domainId, {
      pages: Math.max(this.growPages, forRequest),
      ...(at !== undefined ? { at_cycles: at } : {}),
    });
    this.#growthRequests++;
    this.#growthCycles += r.cycles;
    if (r.ok) {
      this.#reservedPages += r.granted;
      this.#growthGranted += r.granted;
      this.pageSource.maxPages = this.#reservedPages;
    } else {
      this.#growthRefused[r.cause!]++;
    }
    return {
      requests: 1,
      granted: r.granted,
      cause: r.cause,
      cycles: r.cycles,
      lockWaitCycles: r.lock_wait_cycles,
    };
  }

  /** Cost of a call that began at `callsBefore`, recorded. */
  #cost(
    vcpu: number,
    atCycles: number | undefined,
    callsBefore: number,
    steps: number,
    shared: boolean,
    growth: Growth,
  ) {
    const pageCalls = this.physical.callCount - callsBefore;
    const smp = this.#ledger.smp.account(vcpu, atCycles, steps, pageCalls, shared);
    const cycles = smp.cycles + growth.cycles;
    const lockWaitCycles = smp.lockWaitCycles + growth.lockWaitCycles;
    this.#ledger.record(steps, cycles + lockWaitCycles, this.pageSource.heldPages);
    return { steps, cycles, lockWaitCycles };
  }

  #outcome(
    address: number,
    sizeBytes: number,
    vcpu: number,
    atCycles: number | undefined,
    callsBefore: number,
    engineSteps: number,
    shared: boolean,
    growth: Growth,
  ): OwnHeapOpResult {
    const { steps, cycles, lockWaitCycles } = this.#cost(
      vcpu,
      atCycles,
      callsBefore,
      engineSteps,
      shared,
      growth,
    );
    const common = {
      steps,
      cycles,
      lockWaitCycles,
      reservationRequests: growth.requests,
      grantedPages: growth.granted,
    };
    if (address === 0) {
      const cause: AllocFailureCause = growth.cause ?? this.engine.lastFailureCause ??
        "unservable";
      this.#ledger.fail(cause);
      return { ok: false, address: 0, reservedBytes: 0, cause, ...common };
    }
    const reservedBytes = this.engine.usableSize(address);
    this.#ledger.track(address, sizeBytes, reservedBytes, vcpu);
    return { ok: true, address, reservedBytes, cause: null, ...common };
  }

  #assertLive(): void {
    if (this.#shutDown) throw new Error(`The own heap of domain ${this.domainId} was shut down`);
  }
}
