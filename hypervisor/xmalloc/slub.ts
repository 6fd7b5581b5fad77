/**
 * `slub`: Linux SLUB as `kmalloc()`/`kfree()` use it, modelled on Linux 6.18
 * (mm/slub.c, mm/slab_common.c, mm/slab.h, include/linux/slab.h), x86_64, one NUMA
 * node, no debug flags, `CONFIG_SLUB_CPU_PARTIAL=y`, `CONFIG_SLAB_FREELIST_RANDOM=n`.
 *
 * ## Glossary
 *
 * - cache: one `kmalloc-N` kmem_cache; 13 of them, N = 8, 16, 32, 64, 96, 128, 192,
 *   256, 512, 1k, 2k, 4k, 8k bytes (`kmalloc_caches[]`).
 * - slab: 2^order pages cut into `objects` objects of the cache's size, laid end to
 *   end from offset 0 with no header; the tail (`PAGE_SIZE << order) % size` is
 *   waste. Its bookkeeping (`struct slab` in Linux, which lives in the page array)
 *   is a row of the slab table here; every page of the slab carries the row number in
 *   its page-allocator private word, so `virt_to_slab()` is O(1).
 * - freelist: a singly linked list of the free objects of one slab, kept as object
 *   indices in a typed array (Linux keeps the link inside the free object).
 * - cpu slab (`c->slab`): the slab a CPU allocates from; frozen. Its free objects are
 *   split between the CPU's lockless freelist (`c->freelist`) and the slab's own
 *   freelist (`slab->freelist`, objects freed by other CPUs).
 * - cpu partial list (`c->partial`): slabs with free objects parked on one CPU,
 *   bounded by `cpu_partial_slabs`.
 * - node partial list (`n->partial`, `n->nr_partial`): slabs with free objects
 *   shared by all CPUs (one node).
 * - full slab: every object allocated; on no list (Linux keeps no full list
 *   without debugging).
 * - large kmalloc: a request above `KMALLOC_MAX_CACHE_SIZE` (8 KiB) goes to the
 *   page allocator at `get_order(size)`, whole power-of-two blocks, no tail trim.
 *
 * ## Invariants (checked by {@link SlubEngine.check})
 *
 * - every slab is in exactly one state: cpu slab of one CPU, on one CPU's partial
 *   list, on the node partial list, or full; the lists hold exactly the slabs whose
 *   state names them, and `nr_partial == |node partial list|`;
 * - `inuse == objects - |slab->freelist|` (Linux's counter, which counts the objects
 *   on a cpu slab's `c->freelist` as in use);
 * - `allocated bits == objects - |slab->freelist| - |c->freelist if cpu slab|`;
 * - cpu partial and node partial slabs have `|slab->freelist| > 0`; full slabs 0;
 * - on a cpu partial list, `slabs(x) == slabs(next(x)) + 1` (Linux's `slab->slabs`);
 * - pool pages == sum of 2^order over slabs; whole pages == sum over large blocks;
 *   pool + whole == pages the page source's owner holds (metaPages is 0: the
 *   kmem_cache, kmem_cache_cpu and kmem_cache_node structures are not modelled as
 *   pages; Linux takes them from its boot caches).
 *
 * ## Deviations from Linux, each deliberate
 *
 * - `alignBytes`: kmalloc takes none. Alignment is honoured the way kmalloc's own
 *   guarantee gives it: the first cache whose natural object alignment (the largest
 *   power of two dividing its size: 32 for kmalloc-96, 64 for kmalloc-192) is at
 *   least `alignBytes`; beyond kmalloc-8k, whole pages of order
 *   `max(get_order(size), get_order(align))`.
 * - One node, no pfmemalloc, no memcg, no KASAN/KFENCE, no tid/cmpxchg: calls are
 *   serialised by the simulator, so `___slab_alloc`'s retry loops never loop.
 * - `deactivate_slab()` and cpu flushes run only in {@link SlubEngine.shrink}
 *   (`kmem_cache_shrink()` of every kmalloc cache): nothing else in this model
 *   triggers them (no NUMA node mismatch, no pfmemalloc, no CPU hotplug, no debug
 *   checks). `flush_all()` queues `flush_cpu_slab()` on every CPU and the works run
 *   concurrently; here they run one after another, CPU 0 first, each flushing its cpu
 *   slab and then its partial list. Which slabs `min_partial` lets the flush discard,
 *   and the order of the node list before the re-sort, follow from that order.
 *   {@link SlubEngine.destroy} frees everything without flushing.
 * - A large kmalloc whose order exceeds the page allocator's largest order fails
 *   without calling it (Linux warns and fails the same request).
 * - Invalid frees are detected and rejected ({@link InvalidFreeError}, nothing
 *   changes): an unknown address, a pointer into an object or into the unused tail of
 *   a slab, an object already free (one allocated bit per object). Linux without
 *   slub_debug would corrupt its freelist instead. A large block freed twice is an
 *   unknown address: its pages are no longer this pool's.
 * - `reallocate(0, ...)` is rejected like any unknown address (krealloc(NULL) would
 *   allocate), as every engine of this interface does.
 *
 * Files: `_slub_geometry.ts` (the numbers: caches, orders, steps), `_slub_cache.ts`
 * (slab table and per-cache algorithms), this file (kmalloc/kfree front end, large
 * blocks, checks, the registry descriptor).
 *
 * @module
 */

import { DIRECTMAP_BASE_ADDRESS, getOrderFromBytes, PAGE_SIZE_BYTES } from "../../src/units.ts";
import { grown } from "../../src/typed_array.ts";
import { StateError, type StateReader, type StateWriter } from "../../src/state_codec.ts";
import {
  type AllocFailureCause,
  assertAllocArgs,
  type EngineContext,
  type EngineDescriptor,
  type EnginePages,
  type EngineStats,
  InvalidFreeError,
  type PageSource,
  readFailureCause,
  reallocateByMoving,
  writeFailureCause,
  type XmallocEngine,
} from "./engine.ts";
import {
  assertCpuCount,
  CACHE_COUNT,
  cacheIndexAligned,
  KMALLOC_CACHE_SIZES,
  KMALLOC_MAX_CACHE_SIZE_BYTES,
  KMALLOC_MIN_SIZE_BYTES,
  type KmallocCacheGeometry,
  kmallocCacheGeometry,
  kmallocCacheIndex,
  MAX_OBJS_PER_PAGE,
  SLUB_MAX_ORDER,
  SLUB_MAX_PARTIAL,
  SLUB_MIN_ORDER,
  SLUB_MIN_PARTIAL,
  SLUB_SHRINK_PROMOTE_MAX,
  SLUB_STEP_KINDS,
  SLUB_STEPS_DEFINITION,
} from "./_slub_geometry.ts";
import {
  expectLength,
  KmemCache,
  NIL,
  readCount,
  SLAB_UNUSED,
  type SlubCacheState,
  SlubShared,
  STATE_NAMES,
} from "./_slub_cache.ts";

export {
  calculateOrder,
  KMALLOC_CACHE_SIZES,
  KMALLOC_MAX_CACHE_SIZE_BYTES,
  KMALLOC_MIN_SIZE_BYTES,
  type KmallocCacheGeometry,
  kmallocCacheGeometry,
  kmallocCacheIndex,
  SLUB_MAX_ORDER,
  SLUB_MAX_PARTIAL,
  SLUB_MIN_ORDER,
  SLUB_MIN_PARTIAL,
  SLUB_SHRINK_PROMOTE_MAX,
  SLUB_STEP_KINDS,
  SLUB_STEPS_DEFINITION,
} from "./_slub_geometry.ts";
export type { SlubCacheState, SlubCpuState } from "./_slub_cache.ts";

/** Private word of a large block's head frame: `LARGE_WORD_BASE - large index`. */
const LARGE_WORD_BASE = -2;

/** Counters of a slub engine: the common ones plus SLUB's own. */
export interface SlubStats extends EngineStats {
  /** Live slabs over all caches. */
  slabCount: number;
  /** Live large kmalloc blocks. */
  largeBlockCount: number;
  /** Slabs built at the fallback order `s->min` (Linux's ORDER_FALLBACK stat). */
  orderFallbackCount: number;
}

/**
 * The `slub` engine: 13 kmalloc caches over the machine's pages, large requests to
 * the page allocator.
 *
 * @example
 * ```ts
 * import { SlubEngine } from "./slub.ts";
 * import { PageSource } from "./engine.ts";
 * import { BuddyPageAllocator } from "../page_allocator.ts";
 * import assert from "node:assert/strict";
 * const pages = new BuddyPageAllocator(1024);
 * const slub = new SlubEngine({ pageSource: new PageSource(pages, 1), cpuCount: 2 });
 * const a = slub.allocate(100); // kmalloc-128
 * assert.equal(slub.usableSize(a), 128);
 * assert.equal(slub.pagesHeld().poolPages, 1); // one order-0 slab of 32 objects
 * slub.free(a);
 * assert.deepEqual(slub.check(), []);
 * slub.destroy();
 * assert.equal(pages.freeFrameCount, 1024);
 * ```
 */
export class SlubEngine implements XmallocEngine {
  /** Registry name. */
  readonly name = "slub";
  /** One line: what this models. */
  readonly description: string = SLUB_DESCRIPTION;
  /** Alignments up to 2^30: by cache choice up to 8 KiB, by page order above. */
  readonly maxAlignBytes: number = 2 ** 30;
  /** CPUs this pool serves. */
  readonly cpuCount: number;
  /** Geometry of each cache (see {@link kmallocCacheGeometry}). */
  readonly geometry: readonly KmallocCacheGeometry[];

  #lastSteps = 0;
  #lastFailureCause: AllocFailureCause | null = null;
  #sh: SlubShared;
  #caches: KmemCache[];
  #source: PageSource;

  // Large kmalloc blocks: index -> first frame and order; index in the head's private word.
  #largeFrame = new Int32Array(16);
  #largeOrder = new Int16Array(16).fill(NIL);
  #largeFree = new Int32Array(16);
  #largeFreeTop = 0;
  #largeHighWater = 0;
  #largeCount = 0;
  #wholePages = 0;

  #allocCount = 0;
  #failedAllocCount = 0;
  #freeCount = 0;
  #liveReservedBytes = 0;

  /**
   * @param context page source and CPU count
   * @throws {RangeError} on a CPU count out of range
   */
  constructor(context: EngineContext) {
    assertCpuCount(context.cpuCount);
    this.cpuCount = context.cpuCount;
    this.#source = context.pageSource;
    this.geometry = Object.freeze(kmallocCacheGeometry(context.cpuCount));
    this.#sh = new SlubShared(context.pageSource);
    this.#caches = this.#newCaches();
  }

  /** Steps of the last allocate/free/reallocate/shrink call (see {@link SLUB_STEPS_DEFINITION}). */
  get lastSteps(): number {
    return this.#lastSteps;
  }

  /** Why the last failed allocation failed (null after a success). */
  get lastFailureCause(): AllocFailureCause | null {
    return this.#lastFailureCause;
  }

  /**
   * Whether the last call left the per-CPU fast path for state all CPUs share: the
   * node partial list (`n->list_lock`), a new or discarded slab, or another CPU's slab.
   */
  get lastSharedAccess(): boolean {
    return this.#sh.callShared;
  }

  /**
   * `kmalloc(size)` on `cpu`: an object of the cache `size` maps to, or for more than
   * 8 KiB a block of 2^get_order(size) pages.
   */
  allocate(sizeBytes: number, alignBytes = 1, cpu = 0): number {
    assertAllocArgs(sizeBytes, alignBytes, cpu, this.cpuCount, this.maxAlignBytes);
    const sh = this.#sh;
    sh.callSteps = 0;
    sh.callShared = false;
    sh.failureCause = null;
    const index = alignBytes <= KMALLOC_MIN_SIZE_BYTES
      ? kmallocCacheIndex(sizeBytes)
      : cacheIndexAligned(sizeBytes, alignBytes);
    let address: number;
    let reservedBytes: number;
    if (index >= 0) {
      const cache = this.#caches[index]!;
      address = cache.alloc(cpu);
      reservedBytes = cache.size;
    } else {
      // __kmalloc_large_node(): get_order(size), whole pages
      const order = Math.max(getOrderFromBytes(sizeBytes), getOrderFromBytes(alignBytes));
      address = this.#allocLarge(order);
      reservedBytes = PAGE_SIZE_BYTES * 2 ** order;
    }
    this.#lastSteps = sh.callSteps;
    if (address === 0) {
      this.#failedAllocCount++;
      this.#lastFailureCause = sh.failureCause ?? "exhaustion";
      return 0;
    }
    this.#allocCount++;
    this.#liveReservedBytes += reservedBytes;
    this.#lastFailureCause = null;
    return address;
  }

  /** `kfree(address)` on `cpu`. */
  free(address: number, cpu = 0): void {
    assertAllocArgs(1, 1, cpu, this.cpuCount);
    if (address === 0) { // xfree(NULL) / kfree(NULL): nothing to do
      this.#lastSteps = 0;
      this.#sh.callShared = false;
      return;
    }
    const slab = this.#slabAt(address);
    if (slab >= 0) {
      const cache = this.#caches[this.#sh.slabs.cache[slab]!]!;
      const object = this.#objectAt(cache, slab, address);
      this.#sh.callSteps = 0;
      this.#sh.callShared = false;
      cache.free(cpu, slab, object);
      this.#lastSteps = this.#sh.callSteps;
      this.#liveReservedBytes -= cache.size;
    } else {
      const large = this.#largeAt(address);
      const order = this.#largeOrder[large]!;
      this.#source.freePages(this.#largeFrame[large]!, order);
      this.#largeOrder[large] = NIL;
      this.#largeFree[this.#largeFreeTop++] = large;
      this.#largeCount--;
      this.#wholePages -= 2 ** order;
      this.#liveReservedBytes -= PAGE_SIZE_BYTES * 2 ** order;
      this.#lastSteps = 0;
      this.#sh.callShared = false;
    }
    this.#freeCount++;
  }

  /**
   * `krealloc()`: in place while `sizeBytes` fits the object's size (ksize) and the
   * address meets `alignBytes`, else allocate, copy, free (mm/slab_common.c
   * __do_krealloc(): never shrinks to a smaller cache). Address 0 allocates, as
   * `krealloc(NULL, ...)`.
   */
  reallocate(address: number, sizeBytes: number, alignBytes = 1, cpu = 0): number {
    assertAllocArgs(sizeBytes, alignBytes, cpu, this.cpuCount, this.maxAlignBytes);
    if (address === 0) return this.allocate(sizeBytes, alignBytes, cpu); // _xrealloc(NULL, n)
    if (sizeBytes <= this.usableSize(address) && address % alignBytes === 0) {
      this.#lastSteps = 0;
      this.#lastFailureCause = null;
      this.#sh.callShared = false;
      return address;
    }
    const moved = reallocateByMoving(this, address, sizeBytes, alignBytes, cpu);
    this.#lastSteps = moved.steps;
    this.#sh.callShared = moved.shared;
    return moved.address;
  }

  /** `ksize()`: the cache's object size, or the large block's pages in bytes. */
  usableSize(address: number): number {
    const slab = this.#slabAt(address);
    if (slab >= 0) {
      const cache = this.#caches[this.#sh.slabs.cache[slab]!]!;
      this.#objectAt(cache, slab, address);
      return cache.size;
    }
    return PAGE_SIZE_BYTES * 2 ** this.#largeOrder[this.#largeAt(address)]!;
  }

  /** Pool pages = pages in slabs; whole pages = large kmalloc blocks; no meta pages. */
  pagesHeld(): EnginePages {
    return { poolPages: this.#sh.poolPages, wholePages: this.#wholePages, metaPages: 0 };
  }

  /** Counters since creation, steps by kind. */
  stats(): SlubStats {
    const stepTotals: Record<string, number> = {};
    SLUB_STEP_KINDS.forEach((kind, i) => stepTotals[kind] = this.#sh.stepTotals[i]!);
    let liveObjects = 0;
    let slabCount = 0;
    for (const cache of this.#caches) {
      liveObjects += cache.liveObjects;
      slabCount += cache.slabCount;
    }
    return {
      engine: this.name,
      ...this.pagesHeld(),
      allocCount: this.#allocCount,
      failedAllocCount: this.#failedAllocCount,
      freeCount: this.#freeCount,
      liveBlockCount: liveObjects + this.#largeCount,
      liveReservedBytes: this.#liveReservedBytes,
      stepTotals,
      slabCount,
      largeBlockCount: this.#largeCount,
      orderFallbackCount: this.#sh.orderFallbacks,
    };
  }

  /** The state of every cache (lists and per-CPU parts), in {@link KMALLOC_CACHE_SIZES} order. */
  inspect(): SlubCacheState[] {
    return this.#caches.map((cache) => cache.state());
  }

  /** Walk every slab, list, freelist and large block; one message per broken invariant. */
  check(): string[] {
    const errors: string[] = [];
    const sl = this.#sh.slabs;
    const marks = new Uint8Array(Math.max(...this.#caches.map((c) => c.stride)));
    const slabsByState = new Int32Array(CACHE_COUNT * STATE_NAMES.length);
    let poolPages = 0;
    for (let s = 0; s < sl.highWater; s++) {
      const state = sl.state[s]!;
      if (state === SLAB_UNUSED) continue;
      const c = sl.cache[s]!;
      const cache = this.#caches[c];
      if (!cache || state >= STATE_NAMES.length) {
        errors.push(`slab ${s} has cache ${c} and state ${state}, out of range`);
        continue;
      }
      slabsByState[c * STATE_NAMES.length + state]!++;
      poolPages += 2 ** sl.order[s]!;
      cache.checkSlab(s, marks, errors);
    }
    for (const cache of this.#caches) {
      const row = cache.index * STATE_NAMES.length;
      cache.checkLists(slabsByState.subarray(row, row + STATE_NAMES.length), errors);
    }
    if (poolPages !== this.#sh.poolPages) {
      errors.push(`slabs hold ${poolPages} pages, counted ${this.#sh.poolPages}`);
    }
    this.#checkLarge(errors);
    const held = this.#source.heldPages;
    if (held !== this.#sh.poolPages + this.#wholePages) {
      errors.push(
        `owner ${this.#source.owner} holds ${held} pages, engine counts ` +
          `${this.#sh.poolPages} pool + ${this.#wholePages} whole`,
      );
    }
    let reserved = 0;
    for (const cache of this.#caches) reserved += cache.liveObjects * cache.size;
    for (let i = 0; i < this.#largeHighWater; i++) {
      const order = this.#largeOrder[i]!;
      if (order >= 0) reserved += PAGE_SIZE_BYTES * 2 ** order;
    }
    if (reserved !== this.#liveReservedBytes) {
      errors.push(`live blocks reserve ${reserved} bytes, counted ${this.#liveReservedBytes}`);
    }
    return errors;
  }

  /**
   * `kmem_cache_shrink()` (mm/slub.c __kmem_cache_shrink()) of every kmalloc cache, in
   * {@link KMALLOC_CACHE_SIZES} order: flush every CPU's cpu slab (deactivate_slab())
   * and partial list (__put_partials()) to the node, then __kmem_cache_do_shrink():
   * discard every empty node partial slab, whatever min_partial says, and move the
   * slabs with 1..32 free objects to the head of the node partial list, fewest free
   * first. Live objects stay valid and in place; large blocks are never cached. With
   * nothing live the engine holds no page afterwards. Steps: see
   * {@link SLUB_STEPS_DEFINITION}.
   *
   * @example
   * ```ts
   * import { SlubEngine } from "./slub.ts";
   * import { PageSource } from "./engine.ts";
   * import { BuddyPageAllocator } from "../page_allocator.ts";
   * import assert from "node:assert/strict";
   * const pages = new BuddyPageAllocator(256);
   * const slub = new SlubEngine({ pageSource: new PageSource(pages, 1), cpuCount: 1 });
   * slub.free(slub.allocate(64)); // the empty slab stays as CPU 0's cpu slab
   * assert.equal(slub.pagesHeld().poolPages, 1);
   * slub.shrink(); // deactivate_slab() keeps it (nr_partial 0 < 5), the shrink discards it
   * assert.equal(slub.pagesHeld().poolPages, 0);
   * assert.equal(slub.lastSteps, 1 + 1 + 1 + 1); // refill, add, take, discard
   * ```
   */
  shrink(): void {
    const sh = this.#sh;
    sh.callSteps = 0;
    sh.callShared = false;
    for (const cache of this.#caches) cache.shrink();
    this.#lastSteps = sh.callSteps;
  }

  /** Every slab and large block goes back to the page allocator; the pool is empty after. */
  destroy(): void {
    for (const cache of this.#caches) cache.releaseAll();
    for (let i = 0; i < this.#largeHighWater; i++) {
      const order = this.#largeOrder[i]!;
      if (order >= 0) this.#source.freePages(this.#largeFrame[i]!, order);
    }
    const stepTotals = this.#sh.stepTotals;
    const fallbacks = this.#sh.orderFallbacks;
    this.#sh = new SlubShared(this.#source);
    this.#sh.stepTotals.set(stepTotals);
    this.#sh.orderFallbacks = fallbacks;
    this.#caches = this.#newCaches();
    this.#largeOrder.fill(NIL);
    this.#largeFreeTop = this.#largeHighWater = this.#largeCount = 0;
    this.#wholePages = 0;
    this.#liveReservedBytes = 0;
  }

  /**
   * Write the engine's whole state, in this order: its CPU count (which fixes every
   * cache's geometry), the last call's steps and failure cause, the shared state
   * (slab table, step totals, the last call's shared flag, pool pages, order
   * fallbacks), each cache in {@link KMALLOC_CACHE_SIZES} order, the large-block
   * table (frames, orders and free-index stack whole, its top, high-water mark and
   * count, whole pages) and the counters. The page source and the pages are not
   * saved: they are the context's and the page allocator's.
   */
  saveState(w: StateWriter): void {
    w.num(this.cpuCount);
    w.num(this.#lastSteps);
    writeFailureCause(w, this.#lastFailureCause);
    this.#sh.saveState(w);
    for (const cache of this.#caches) cache.saveState(w);
    w.array(this.#largeFrame);
    w.array(this.#largeOrder);
    w.array(this.#largeFree);
    w.num(this.#largeFreeTop);
    w.num(this.#largeHighWater);
    w.num(this.#largeCount);
    w.num(this.#wholePages);
    w.num(this.#allocCount);
    w.num(this.#failedAllocCount);
    w.num(this.#freeCount);
    w.num(this.#liveReservedBytes);
  }

  /**
   * The engine whose state `r` holds (from {@link saveState}), over `context`'s page
   * source, which must already hold the saved engine's pages with their private
   * words. Touches no page: the constructor takes none (caches make slabs on demand),
   * and the state then replaces every table it built.
   *
   * @param context the page source and the saved engine's CPU count
   * @param r the saved state
   * @throws {StateError} if the state does not read back or was saved with another
   *   CPU count
   * @throws {RangeError} on a CPU count out of range
   */
  static load(context: EngineContext, r: StateReader): SlubEngine {
    const engine = new SlubEngine(context);
    engine.#loadState(r);
    return engine;
  }

  // -- internals ------------------------------------------------------------------------

  /** Read the fields {@link saveState} writes, in its order, into this fresh engine. */
  #loadState(r: StateReader): void {
    const cpuCount = r.num();
    if (cpuCount !== this.cpuCount) {
      throw new StateError(
        `A slub state saved with ${cpuCount} CPUs cannot load into ${this.cpuCount} CPUs`,
      );
    }
    this.#lastSteps = r.num();
    this.#lastFailureCause = readFailureCause(r, "slub");
    this.#sh.loadState(r);
    for (const cache of this.#caches) cache.loadState(r);
    const largeFrame = r.array(Int32Array);
    const capacity = largeFrame.length;
    const largeOrder = expectLength(r.array(Int16Array), capacity, "the large block orders");
    const largeFree = expectLength(r.array(Int32Array), capacity, "the free large indices");
    this.#largeFrame = largeFrame;
    this.#largeOrder = largeOrder;
    this.#largeFree = largeFree;
    this.#largeFreeTop = readCount(r, capacity, "a free large index count");
    this.#largeHighWater = readCount(r, capacity, "a large block high-water mark");
    this.#largeCount = readCount(r, capacity, "a large block count");
    this.#wholePages = readCount(r, Number.MAX_SAFE_INTEGER, "a whole page count");
    this.#allocCount = r.num();
    this.#failedAllocCount = r.num();
    this.#freeCount = r.num();
    this.#liveReservedBytes = r.num();
  }

  #newCaches(): KmemCache[] {
    return this.geometry.map((g, i) => new KmemCache(i, g, this.cpuCount, this.#sh));
  }

  /** virt_to_slab(): the slab row whose pages hold `address`, or NIL. */
  #slabAt(address: number): number {
    const offset = address - DIRECTMAP_BASE_ADDRESS;
    if (!(offset >= 0) || !Number.isSafeInteger(address)) return NIL;
    const frame = Math.floor(offset / PAGE_SIZE_BYTES);
    const pages = this.#source.pages;
    if (frame >= pages.frameCount) return NIL;
    const slab = pages.privateWord(frame);
    const sl = this.#sh.slabs;
    if (slab < 0 || slab >= sl.highWater || sl.state[slab] === SLAB_UNUSED) return NIL;
    const first = sl.frame[slab]!;
    return frame >= first && frame < first + 2 ** sl.order[slab]! ? slab : NIL;
  }

  /** The object `address` names in `slab`; throws unless it is an allocated object's start. */
  #objectAt(cache: KmemCache, slab: number, address: number): number {
    const sl = this.#sh.slabs;
    const offset = address - DIRECTMAP_BASE_ADDRESS - sl.frame[slab]! * PAGE_SIZE_BYTES;
    const object = Math.floor(offset / cache.size);
    const name = cache.geometry.name;
    if (object >= sl.objects[slab]!) {
      throw new InvalidFreeError(
        address,
        "unknown-address",
        `it lies in the unused tail of a ${name} slab`,
      );
    }
    if (object * cache.size !== offset) {
      const into = offset - object * cache.size;
      throw new InvalidFreeError(
        address,
        "interior-pointer",
        `it points ${into} bytes into a ${name} object`,
      );
    }
    if (cache.objAllocated[sl.slot[slab]! * cache.stride + object] === 0) {
      throw new InvalidFreeError(address, "double-free", `block is already free (${name})`);
    }
    return object;
  }

  /** __kmalloc_large_node(): 2^order whole pages; 0 with the failure cause set if none. */
  #allocLarge(order: number): number {
    const frame = this.#sh.allocPages(order);
    if (frame < 0) return 0;
    let index: number;
    if (this.#largeFreeTop > 0) {
      index = this.#largeFree[--this.#largeFreeTop]!;
    } else {
      if (this.#largeHighWater === this.#largeFrame.length) {
        const n = this.#largeFrame.length * 2;
        this.#largeFrame = grown(this.#largeFrame, n);
        const orders = new Int16Array(n).fill(NIL);
        orders.set(this.#largeOrder);
        this.#largeOrder = orders;
        this.#largeFree = grown(this.#largeFree, n);
      }
      index = this.#largeHighWater++;
    }
    this.#largeFrame[index] = frame;
    this.#largeOrder[index] = order;
    this.#source.pages.setPrivateWord(frame, LARGE_WORD_BASE - index);
    this.#largeCount++;
    this.#wholePages += 2 ** order;
    return DIRECTMAP_BASE_ADDRESS + frame * PAGE_SIZE_BYTES;
  }

  /** The live large block at `address`; throws with the right reason otherwise. */
  #largeAt(address: number): number {
    const offset = address - DIRECTMAP_BASE_ADDRESS;
    if (!Number.isSafeInteger(address) || offset < 0) {
      throw new InvalidFreeError(address, "unknown-address", "not an address of the machine");
    }
    const pages = this.#source.pages;
    const frame = Math.floor(offset / PAGE_SIZE_BYTES);
    if (frame >= pages.frameCount) {
      throw new InvalidFreeError(address, "unknown-address", "outside the machine's memory");
    }
    // A large block is naturally aligned to its order: its head is `frame` with low bits cleared.
    for (let order = 0; order <= pages.maxOrder; order++) {
      const head = frame - (frame % 2 ** order);
      const large = this.#largeIndexAt(head);
      if (large >= 0 && frame < head + 2 ** this.#largeOrder[large]!) {
        if (head === frame && offset % PAGE_SIZE_BYTES === 0) return large;
        const into = offset - head * PAGE_SIZE_BYTES;
        throw new InvalidFreeError(
          address,
          "interior-pointer",
          `it points ${into} bytes into a large kmalloc block`,
        );
      }
    }
    throw new InvalidFreeError(address, "unknown-address", "no live block of this pool there");
  }

  /** The live large block headed by `frame`, or NIL. */
  #largeIndexAt(frame: number): number {
    const pages = this.#source.pages;
    if (!pages.isAllocatedHead(frame, this.#source.owner)) return NIL;
    const index = LARGE_WORD_BASE - pages.privateWord(frame);
    if (index < 0 || index >= this.#largeHighWater) return NIL;
    return this.#largeFrame[index] === frame && this.#largeOrder[index]! >= 0 ? index : NIL;
  }

  #checkLarge(errors: string[]): void {
    const pages = this.#source.pages;
    let count = 0;
    let wholePages = 0;
    for (let i = 0; i < this.#largeHighWater; i++) {
      const order = this.#largeOrder[i]!;
      if (order < 0) continue;
      count++;
      wholePages += 2 ** order;
      const frame = this.#largeFrame[i]!;
      if (
        !pages.isAllocatedHead(frame, this.#source.owner) || pages.allocatedOrder(frame) !== order
      ) {
        errors.push(`large block ${i}: frame ${frame} is not an order-${order} block of this pool`);
      } else if (pages.privateWord(frame) !== LARGE_WORD_BASE - i) {
        errors.push(`large block ${i}: head frame ${frame} does not name it`);
      }
    }
    if (count !== this.#largeCount) {
      errors.push(`${count} large blocks live, counted ${this.#largeCount}`);
    }
    if (wholePages !== this.#wholePages) {
      errors.push(`large blocks hold ${wholePages} pages, counted ${this.#wholePages}`);
    }
  }
}

const SLUB_DESCRIPTION = "Linux SLUB as kmalloc uses it: 13 kmalloc caches (8 B..8 KiB incl. 96 " +
  "and 192), per-CPU slabs and partial lists, node partial list, metadata out of band, " +
  "sizes above 8 KiB straight to the page allocator";

/**
 * The `slub` engine as the registry lists it.
 *
 * @example
 * ```ts
 * import { slubEngine } from "./slub.ts";
 * import { PageSource } from "./engine.ts";
 * import { BuddyPageAllocator } from "../page_allocator.ts";
 * import assert from "node:assert/strict";
 * const pages = new BuddyPageAllocator(256);
 * const engine = slubEngine.create({ pageSource: new PageSource(pages, 3), cpuCount: 1 });
 * const big = engine.allocate(8193); // large kmalloc: order 2, 4 pages
 * assert.equal(engine.pagesHeld().wholePages, 4);
 * assert.equal(engine.lastSteps, 0);
 * engine.free(big);
 * assert.equal(engine.pagesHeld().wholePages, 0);
 * ```
 */
export const slubEngine: EngineDescriptor = {
  name: "slub",
  description: SLUB_DESCRIPTION,
  modelledOn: "Linux 6.18 mm/slub.c (calculate_order, calc_slab_order, set_cpu_partial, " +
    "slub_set_cpu_partial, kmem_cache_open, allocate_slab, ___slab_alloc, get_partial_node, " +
    "put_cpu_partial, __put_partials, __slab_free, do_slab_free, __kmalloc_large_node, " +
    "kfree, __kmem_cache_shrink: flush_all, flush_cpu_slab, deactivate_slab, " +
    "__kmem_cache_do_shrink), mm/slab_common.c kmalloc_size_index[], mm/slab.h kmalloc_slab(), " +
    "include/linux/slab.h KMALLOC_MAX_CACHE_SIZE",
  parameters: {
    kmallocCacheSizesBytes: KMALLOC_CACHE_SIZES.join(","),
    kmallocMinSizeBytes: KMALLOC_MIN_SIZE_BYTES,
    kmallocMaxCacheSizeBytes: KMALLOC_MAX_CACHE_SIZE_BYTES,
    slubMinOrder: SLUB_MIN_ORDER,
    slubMaxOrder: SLUB_MAX_ORDER,
    minPartial: SLUB_MIN_PARTIAL,
    maxPartial: SLUB_MAX_PARTIAL,
    maxObjsPerPage: MAX_OBJS_PER_PAGE,
    minObjects: "4 * (fls(cpuCount) + 1)",
    freelistOrder: "ascending addresses at slab creation, LIFO pushes on free",
    largeKmalloc: "size > 8 KiB: 2^get_order(size) pages, no tail trim",
    shrinkPromoteMax: SLUB_SHRINK_PROMOTE_MAX,
    metaPages: "0: kmem_cache structures are not modelled as pages",
    steps: SLUB_STEPS_DEFINITION,
  },
  create(context: EngineContext): XmallocEngine {
    return new SlubEngine(context);
  },
  stateLayout: 1,
  load(context: EngineContext, r: StateReader): XmallocEngine {
    return SlubEngine.load(context, r);
  },
};
