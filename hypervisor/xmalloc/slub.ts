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
 * - `deactivate_slab()` and cpu flushes (`flush_all`, `kmem_cache_shrink`) never run:
 *   nothing in this model triggers them; {@link SlubEngine.destroy} frees everything.
 * - A large kmalloc whose order exceeds the page allocator's largest order fails
 *   without calling it (Linux warns and fails the same request).
 *
 * @module
 */

import { DIRECTMAP_BASE_ADDRESS, getOrderFromBytes, PAGE_SIZE_BYTES } from "../../src/units.ts";
import {
  type AllocFailureCause,
  assertAllocArgs,
  type EngineContext,
  type EngineDescriptor,
  type EnginePages,
  type EngineStats,
  InvalidFreeError,
  type PageSource,
  type XmallocEngine,
} from "./engine.ts";

// -- constants: tunables first, derived after ---------------------------------------

/** Highest slab order calculate_order() aims at: mm/slub.c `slub_max_order` = PAGE_ALLOC_COSTLY_ORDER. */
export const SLUB_MAX_ORDER = 3;
/** Lowest slab order: mm/slub.c `slub_min_order` (boot default 0). */
export const SLUB_MIN_ORDER = 0;
/** mm/slub.c MIN_PARTIAL: fewest node partial slabs kept even when empty. */
export const SLUB_MIN_PARTIAL = 5;
/** mm/slub.c MAX_PARTIAL: upper clamp of a cache's `min_partial`. */
export const SLUB_MAX_PARTIAL = 10;
/** mm/slub.c MAX_OBJS_PER_PAGE: `slab.objects` is a u15. */
const MAX_OBJS_PER_PAGE = 32767;
/** Smallest kmalloc object: ARCH_KMALLOC_MINALIGN on x86_64 (`__alignof__(unsigned long long)`). */
export const KMALLOC_MIN_SIZE_BYTES = 8;
/** include/linux/slab.h KMALLOC_SHIFT_HIGH for SLUB: PAGE_SHIFT + 1. */
const KMALLOC_SHIFT_HIGH = 13;
/** include/linux/slab.h KMALLOC_MAX_CACHE_SIZE: larger requests go to the page allocator. */
export const KMALLOC_MAX_CACHE_SIZE_BYTES = 1 << KMALLOC_SHIFT_HIGH; // 8 KiB = 2 pages

/** Object sizes of the kmalloc caches, ascending (mm/slab_common.c kmalloc_info[]). */
export const KMALLOC_CACHE_SIZES: readonly number[] = Object.freeze([
  8,
  16,
  32,
  64,
  96,
  128,
  192,
  256,
  512,
  1024,
  2048,
  4096,
  8192,
]);
const CACHE_COUNT = KMALLOC_CACHE_SIZES.length;
/** Index of kmalloc-192, the last cache served by the small lookup table. */
const SMALL_TABLE_MAX_BYTES = 192;

/**
 * mm/slab_common.c kmalloc_size_index[24], renumbered to indices of
 * {@link KMALLOC_CACHE_SIZES}: entry `(size - 1) / 8` for sizes 1..192.
 */
const SMALL_SIZE_INDEX = Uint8Array.from([
  0, // 8
  1, // 16
  2, // 24
  2, // 32
  3, // 40
  3, // 48
  3, // 56
  3, // 64
  4, // 72
  4, // 80
  4, // 88
  4, // 96
  5, // 104
  5, // 112
  5, // 120
  5, // 128
  6, // 136
  6, // 144
  6, // 152
  6, // 160
  6, // 168
  6, // 176
  6, // 184
  6, // 192
]);

/** Natural alignment of each cache's objects: the largest power of two dividing its size. */
const CACHE_ALIGN_BYTES = KMALLOC_CACHE_SIZES.map((size) => size & -size);

if (KMALLOC_CACHE_SIZES[CACHE_COUNT - 1] !== KMALLOC_MAX_CACHE_SIZE_BYTES) {
  throw new Error("kmalloc-8k must be the last cache: KMALLOC_MAX_CACHE_SIZE is 2 pages");
}
if (KMALLOC_CACHE_SIZES[0] !== KMALLOC_MIN_SIZE_BYTES) {
  throw new Error("kmalloc-8 must be the first cache: ARCH_KMALLOC_MINALIGN is 8 on x86_64");
}
if (KMALLOC_CACHE_SIZES[SMALL_SIZE_INDEX[23]!] !== SMALL_TABLE_MAX_BYTES) {
  throw new Error("kmalloc_size_index must end at kmalloc-192");
}

// -- steps ---------------------------------------------------------------------------

/**
 * How SLUB steps are counted: one step per unit of list work in mm/slub.c, page
 * allocator work never counted.
 *
 * - `freelistPop` +1: the object handed out is popped off the CPU's freelist
 *   (slab_alloc_node fast path, or load_freelist in ___slab_alloc). Exactly one per
 *   successful slab allocation.
 * - `freelistPush` +1: the freed object is pushed on a freelist (do_slab_free's
 *   `c->freelist`, or __slab_free's `slab->freelist`). Exactly one per slab free.
 * - `freelistRefill` +1: get_freelist() moves a cpu slab's `slab->freelist` (objects
 *   other CPUs freed) to `c->freelist`.
 * - `cpuPartialTake` +1: ___slab_alloc takes the head of `c->partial` as cpu slab.
 * - `cpuPartialPut` +1: put_cpu_partial() pushes a slab on a CPU's partial list.
 * - `nodePartialTake` +1: remove_partial() takes a slab off the node partial list
 *   (get_partial_node, or __slab_free discarding an empty slab).
 * - `nodePartialAdd` +1: add_partial() puts a slab on the node partial list
 *   (__put_partials draining a full cpu partial list).
 * - `newSlab` +1: allocate_slab() builds a slab from fresh pages (its freelist set-up
 *   loop is not counted per object).
 * - `slabDiscard` +1: discard_slab() gives a slab's pages back.
 *
 * A large kmalloc/kfree is 0 (page allocator only). A fast-path kmalloc is 1, a
 * fast-path kfree 1; a kmalloc that has to take slabs from the node partial list is
 * 1 + (1 + k) node takes + k cpu partial puts with k <= cpu_partial_slabs/2 + 1; a
 * kfree that drains a full cpu partial list is 2 + one add or discard per slab drained.
 * A reallocate in place is 0; a moving one is the allocation's steps plus the free's.
 */
export const SLUB_STEPS_DEFINITION =
  "+1 freelistPop (object taken from the cpu freelist), +1 freelistPush (object " +
  "freed onto a freelist), +1 freelistRefill (get_freelist moves slab->freelist to " +
  "c->freelist), +1 cpuPartialTake / cpuPartialPut (slab off / onto a cpu partial " +
  "list), +1 nodePartialTake / nodePartialAdd (remove_partial / add_partial), +1 " +
  "newSlab (allocate_slab), +1 slabDiscard (discard_slab); large kmalloc/kfree 0; " +
  "page-allocator work never counted";

/** Names of the SLUB step kinds, as they appear in `stepTotals`. */
export const SLUB_STEP_KINDS: readonly string[] = Object.freeze([
  "freelistPop",
  "freelistPush",
  "freelistRefill",
  "cpuPartialTake",
  "cpuPartialPut",
  "nodePartialTake",
  "nodePartialAdd",
  "newSlab",
  "slabDiscard",
]);
const STEP_POP = 0;
const STEP_PUSH = 1;
const STEP_REFILL = 2;
const STEP_CPU_PARTIAL_TAKE = 3;
const STEP_CPU_PARTIAL_PUT = 4;
const STEP_NODE_PARTIAL_TAKE = 5;
const STEP_NODE_PARTIAL_ADD = 6;
const STEP_NEW_SLAB = 7;
const STEP_DISCARD = 8;

// -- cache geometry (pure) -------------------------------------------------------------

/** What one kmalloc cache looks like for a given CPU count (as sysfs /sys/kernel/slab shows it). */
export interface KmallocCacheGeometry {
  /** `kmalloc-8` .. `kmalloc-8k`. */
  name: string;
  /** Object (and slab stride) size in bytes. */
  objectSizeBytes: number;
  /** Slab order `oo_order(s->oo)` from calculate_order(). */
  order: number;
  /** Objects per slab of that order, `(PAGE_SIZE << order) / size`. */
  objectsPerSlab: number;
  /** Fallback order `oo_order(s->min)` = get_order(size), tried when `order` fails. */
  minOrder: number;
  /** Objects per fallback slab. */
  minObjectsPerSlab: number;
  /** Empty node partial slabs are kept while `nr_partial < minPartial`. */
  minPartial: number;
  /** `s->cpu_partial` (objects) from set_cpu_partial(). */
  cpuPartial: number;
  /** `s->cpu_partial_slabs` from slub_set_cpu_partial(): the per-CPU partial list bound. */
  cpuPartialSlabs: number;
}

/** include/asm-generic/bitops fls(): 1-based index of the highest set bit, 0 for 0. */
function fls(x: number): number {
  return x === 0 ? 0 : 32 - Math.clz32(x);
}

/** include/linux/log2.h ilog2() for a positive 32-bit integer. */
function ilog2(x: number): number {
  return 31 - Math.clz32(x);
}

/** mm/slub.c order_objects(). */
function orderObjects(order: number, sizeBytes: number): number {
  return Math.floor((PAGE_SIZE_BYTES * 2 ** order) / sizeBytes);
}

/** mm/slub.c calc_slab_order(): lowest order in [min, max] wasting at most 1/fract. */
function calcSlabOrder(
  sizeBytes: number,
  minOrder: number,
  maxOrder: number,
  fractLeftover: number,
): number {
  let order = minOrder;
  for (; order <= maxOrder; order++) {
    const slabBytes = PAGE_SIZE_BYTES * 2 ** order;
    if (slabBytes % sizeBytes <= Math.floor(slabBytes / fractLeftover)) break;
  }
  return order;
}

/**
 * mm/slub.c calculate_order(): the slab order of a cache of `sizeBytes` objects.
 *
 * `nr_cpus` is `num_present_cpus()` (or `nr_cpu_ids` when that is 1); in this model
 * every possible CPU is present, so both are `cpuCount`.
 *
 * @param sizeBytes object size (`s->size`)
 * @param cpuCount CPUs of the machine, at least 1
 * @returns the order
 * @throws {RangeError} on a CPU count or size out of range
 */
export function calculateOrder(sizeBytes: number, cpuCount: number): number {
  assertCpuCount(cpuCount);
  if (!Number.isInteger(sizeBytes) || sizeBytes < 1 || sizeBytes > 2 ** 30) {
    throw new RangeError(`Invalid object size ${sizeBytes}: expected an integer in [1, 2^30]`);
  }
  let minObjects = 4 * (fls(cpuCount) + 1);
  const maxObjects = Math.max(orderObjects(SLUB_MAX_ORDER, sizeBytes), 1);
  minObjects = Math.min(minObjects, maxObjects);
  const minOrder = Math.max(SLUB_MIN_ORDER, getOrderFromBytes(minObjects * sizeBytes));
  if (orderObjects(minOrder, sizeBytes) > MAX_OBJS_PER_PAGE) {
    return getOrderFromBytes(sizeBytes * MAX_OBJS_PER_PAGE) - 1;
  }
  // Accept 1/16 waste, then 1/8, 1/4, 1/2 (the last accepts anything that fits).
  for (let fraction = 16; fraction > 1; fraction /= 2) {
    const order = calcSlabOrder(sizeBytes, minOrder, SLUB_MAX_ORDER, fraction);
    if (order <= SLUB_MAX_ORDER) return order;
  }
  return getOrderFromBytes(sizeBytes); // the object does not fit slub_max_order
}

/** mm/slub.c kmem_cache_open(): min_partial = clamp(ilog2(size) / 2, MIN_PARTIAL, MAX_PARTIAL). */
function minPartialFor(sizeBytes: number): number {
  const half = Math.floor(ilog2(sizeBytes) / 2);
  return Math.max(SLUB_MIN_PARTIAL, Math.min(SLUB_MAX_PARTIAL, half));
}

/** mm/slub.c set_cpu_partial(): objects kept on a CPU's partial list. */
function cpuPartialFor(sizeBytes: number): number {
  if (sizeBytes >= PAGE_SIZE_BYTES) return 6;
  if (sizeBytes >= 1024) return 24;
  if (sizeBytes >= 256) return 52;
  return 120;
}

/** Name of a kmalloc cache as mm/slab_common.c kmalloc_info[] spells it. */
function cacheName(sizeBytes: number): string {
  return sizeBytes >= 1024 ? `kmalloc-${sizeBytes / 1024}k` : `kmalloc-${sizeBytes}`;
}

function assertCpuCount(cpuCount: number): void {
  if (!Number.isInteger(cpuCount) || cpuCount < 1 || cpuCount > 65536) {
    throw new RangeError(`Invalid CPU count ${cpuCount}: expected an integer in [1, 65536]`);
  }
}

/**
 * The geometry of every kmalloc cache on a machine with `cpuCount` CPUs, as a running
 * kernel reports it in /sys/kernel/slab/kmalloc-N (order, objs_per_slab, min_partial,
 * cpu_partial), plus the fallback order and `cpu_partial_slabs`.
 *
 * @param cpuCount CPUs, at least 1
 * @returns one entry per cache, in {@link KMALLOC_CACHE_SIZES} order
 * @throws {RangeError} on a CPU count out of range
 *
 * @example
 * ```ts
 * import { kmallocCacheGeometry } from "./slub.ts";
 * import assert from "node:assert/strict";
 * const k512 = kmallocCacheGeometry(2).find((c) => c.name === "kmalloc-512")!;
 * assert.equal(k512.order, 1);
 * assert.equal(k512.objectsPerSlab, 16);
 * assert.equal(k512.cpuPartial, 52);
 * ```
 */
export function kmallocCacheGeometry(cpuCount: number): KmallocCacheGeometry[] {
  assertCpuCount(cpuCount);
  return KMALLOC_CACHE_SIZES.map((size) => {
    const order = calculateOrder(size, cpuCount);
    const objectsPerSlab = orderObjects(order, size);
    const minOrder = getOrderFromBytes(size); // calculate_sizes(): s->min
    const cpuPartial = cpuPartialFor(size);
    return {
      name: cacheName(size),
      objectSizeBytes: size,
      order,
      objectsPerSlab,
      minOrder,
      minObjectsPerSlab: orderObjects(minOrder, size),
      minPartial: minPartialFor(size),
      cpuPartial,
      // slub_set_cpu_partial(): DIV_ROUND_UP(nr_objects * 2, oo_objects(s->oo))
      cpuPartialSlabs: Math.ceil((cpuPartial * 2) / objectsPerSlab),
    };
  });
}

/**
 * The kmalloc cache serving `sizeBytes` (mm/slab.h kmalloc_slab(): the
 * kmalloc_size_index[] table up to 192 bytes, `fls(size - 1)` above), as an index
 * into {@link KMALLOC_CACHE_SIZES}; -1 above {@link KMALLOC_MAX_CACHE_SIZE_BYTES}.
 *
 * @param sizeBytes a request of at least 1 byte
 *
 * @example
 * ```ts
 * import { KMALLOC_CACHE_SIZES, kmallocCacheIndex } from "./slub.ts";
 * import assert from "node:assert/strict";
 * assert.equal(KMALLOC_CACHE_SIZES[kmallocCacheIndex(65)], 96);
 * assert.equal(KMALLOC_CACHE_SIZES[kmallocCacheIndex(129)], 192);
 * assert.equal(kmallocCacheIndex(8193), -1);
 * ```
 */
export function kmallocCacheIndex(sizeBytes: number): number {
  if (sizeBytes <= SMALL_TABLE_MAX_BYTES) return SMALL_SIZE_INDEX[(sizeBytes - 1) >> 3]!;
  if (sizeBytes > KMALLOC_MAX_CACHE_SIZE_BYTES) return -1;
  return fls(sizeBytes - 1) - 1; // 256 -> 7 (kmalloc-256) .. 8192 -> 12 (kmalloc-8k)
}

/** The first cache at or above `sizeBytes` whose objects are aligned to `alignBytes`; -1: none. */
function cacheIndexAligned(sizeBytes: number, alignBytes: number): number {
  let index = kmallocCacheIndex(sizeBytes);
  if (index < 0) return -1;
  while (index < CACHE_COUNT && CACHE_ALIGN_BYTES[index]! < alignBytes) index++;
  return index < CACHE_COUNT ? index : -1;
}

// -- data layout -------------------------------------------------------------------------

const NIL = -1;

// Slab states (which list a slab is on).
const SLAB_UNUSED = 0; // table row free
const SLAB_CPU = 1; // c->slab of CPU `cpu` (frozen)
const SLAB_CPU_PARTIAL = 2; // on CPU `cpu`'s partial list
const SLAB_NODE_PARTIAL = 3; // on the node partial list
const SLAB_FULL = 4; // every object allocated, on no list
const STATE_NAMES = ["unused", "cpu slab", "cpu partial", "node partial", "full"];

/** Private word of a large block's head frame: `LARGE_WORD_BASE - large index`. */
const LARGE_WORD_BASE = -2;

type GrowableArray = Int32Array | Int16Array | Uint16Array | Uint8Array;

/** A copy of `array` with `length` elements (the rest zero). */
function grown<T extends GrowableArray>(array: T, length: number): T {
  const next = new (array.constructor as new (length: number) => T)(length);
  next.set(array);
  return next;
}

/**
 * `struct slab` for every live slab of every cache: one row per slab, rows recycled
 * LIFO. Row numbers go in the private word of each of the slab's frames.
 */
class SlabTable {
  capacity: number;
  /** First frame. */
  frame: Int32Array;
  order: Uint8Array;
  /** Index of the cache in {@link KMALLOC_CACHE_SIZES}. */
  cache: Uint8Array;
  objects: Uint16Array;
  /** Linux's `slab->inuse`: objects not on `slab->freelist`. */
  inuse: Uint16Array;
  /** `slab->freelist`: first free object index, NIL if none. */
  freelist: Int16Array;
  state: Uint8Array;
  /** The CPU of a cpu slab or cpu partial slab. */
  cpu: Int32Array;
  /** Next on the node partial list or a cpu partial list (also the discard stack). */
  next: Int32Array;
  /** Previous on the node partial list. */
  prev: Int32Array;
  /** Linux's `slab->slabs` on a cpu partial list: slabs from here to the end. */
  chain: Int32Array;
  /** Object slot in the cache's object arrays. */
  slot: Int32Array;
  #freeRows: Int32Array;
  #freeTop = 0;
  /** Rows ever used: every live row is below it. */
  highWater = 0;

  constructor(capacity: number) {
    this.capacity = capacity;
    this.frame = new Int32Array(capacity);
    this.order = new Uint8Array(capacity);
    this.cache = new Uint8Array(capacity);
    this.objects = new Uint16Array(capacity);
    this.inuse = new Uint16Array(capacity);
    this.freelist = new Int16Array(capacity);
    this.state = new Uint8Array(capacity);
    this.cpu = new Int32Array(capacity);
    this.next = new Int32Array(capacity);
    this.prev = new Int32Array(capacity);
    this.chain = new Int32Array(capacity);
    this.slot = new Int32Array(capacity);
    this.#freeRows = new Int32Array(capacity);
  }

  acquire(): number {
    if (this.#freeTop > 0) return this.#freeRows[--this.#freeTop]!;
    if (this.highWater === this.capacity) this.#grow();
    return this.highWater++;
  }

  release(row: number): void {
    this.state[row] = SLAB_UNUSED;
    this.#freeRows[this.#freeTop++] = row;
  }

  #grow(): void {
    const n = this.capacity * 2;
    this.frame = grown(this.frame, n);
    this.order = grown(this.order, n);
    this.cache = grown(this.cache, n);
    this.objects = grown(this.objects, n);
    this.inuse = grown(this.inuse, n);
    this.freelist = grown(this.freelist, n);
    this.state = grown(this.state, n);
    this.cpu = grown(this.cpu, n);
    this.next = grown(this.next, n);
    this.prev = grown(this.prev, n);
    this.chain = grown(this.chain, n);
    this.slot = grown(this.slot, n);
    this.#freeRows = grown(this.#freeRows, n);
    this.capacity = n;
  }
}

/** What the caches share: the slab table, the page source and the step counters. */
class SlubShared {
  readonly slabs = new SlabTable(64);
  readonly source: PageSource;
  readonly stepTotals = new Float64Array(SLUB_STEP_KINDS.length);
  /** Steps of the call in progress. */
  callSteps = 0;
  /** Pages in slabs. */
  poolPages = 0;
  /** allocate_slab() fallbacks to `s->min` that succeeded (Linux's ORDER_FALLBACK). */
  orderFallbacks = 0;
  failureCause: AllocFailureCause | null = null;

  constructor(source: PageSource) {
    this.source = source;
  }

  step(kind: number): void {
    this.callSteps++;
    this.stepTotals[kind]!++;
  }

  /** 2^order pages, or -1 with {@link failureCause} set (also for orders the machine lacks). */
  allocPages(order: number): number {
    const source = this.source;
    if (order > source.pages.maxOrder) {
      this.failureCause = source.heldPages + 2 ** order > source.maxPages
        ? "quota"
        : source.pages.failureCause(order) ?? "exhaustion";
      return NIL;
    }
    const frame = source.allocPages(order);
    if (frame < 0) this.failureCause = source.lastFailureCause ?? "exhaustion";
    return frame;
  }
}

/**
 * One kmalloc cache: `struct kmem_cache` with its per-CPU `kmem_cache_cpu` and its
 * one `kmem_cache_node`, plus the object arrays of its slabs (`objects` entries per
 * slot, the oo object count; a fallback slab uses fewer).
 */
class KmemCache {
  readonly index: number;
  readonly geometry: KmallocCacheGeometry;
  readonly size: number;
  readonly stride: number;
  /** Next free object index within the slab, NIL at the end. */
  objNext: Int16Array;
  /** 1 while the object is allocated. */
  objAllocated: Uint8Array;
  /** `c->slab` per CPU (slab row or NIL). */
  readonly cpuSlab: Int32Array;
  /** `c->freelist` per CPU (object index in `c->slab` or NIL). */
  readonly cpuFreelist: Int32Array;
  /** `c->partial` per CPU (slab row or NIL). */
  readonly cpuPartial: Int32Array;
  /** `n->partial` head and tail, `n->nr_partial`. */
  partialHead = NIL;
  partialTail = NIL;
  nrPartial = 0;
  slabCount = 0;
  liveObjects = 0;
  #sh: SlubShared;
  #slotCapacity: number;
  #freeSlots: Int32Array;
  #freeSlotTop = 0;
  #slotHighWater = 0;

  constructor(index: number, geometry: KmallocCacheGeometry, cpuCount: number, sh: SlubShared) {
    this.index = index;
    this.geometry = geometry;
    this.size = geometry.objectSizeBytes;
    this.stride = geometry.objectsPerSlab;
    this.#sh = sh;
    this.#slotCapacity = 4;
    this.objNext = new Int16Array(this.#slotCapacity * this.stride);
    this.objAllocated = new Uint8Array(this.#slotCapacity * this.stride);
    this.#freeSlots = new Int32Array(this.#slotCapacity);
    this.cpuSlab = new Int32Array(cpuCount).fill(NIL);
    this.cpuFreelist = new Int32Array(cpuCount).fill(NIL);
    this.cpuPartial = new Int32Array(cpuCount).fill(NIL);
  }

  /**
   * slab_alloc_node() + ___slab_alloc(): an object for `cpu`, or 0 with the failure
   * cause in the shared state.
   */
  alloc(cpu: number): number {
    const sl = this.#sh.slabs;
    let slab = this.cpuSlab[cpu]!;
    let object = this.cpuFreelist[cpu]!;
    if (object < 0) {
      if (slab >= 0) {
        // get_freelist(): take what other CPUs freed, or unfreeze the full slab.
        object = sl.freelist[slab]!;
        if (object >= 0) {
          sl.freelist[slab] = NIL;
          sl.inuse[slab] = sl.objects[slab]!;
          this.#sh.step(STEP_REFILL);
        } else {
          sl.state[slab] = SLAB_FULL; // DEACTIVATE_BYPASS: on no list
          this.cpuSlab[cpu] = NIL;
        }
      }
      if (object < 0) {
        slab = this.#acquireCpuSlab(cpu);
        if (slab < 0) return 0;
        object = this.#freeze(slab);
        sl.state[slab] = SLAB_CPU;
        sl.cpu[slab] = cpu;
        this.cpuSlab[cpu] = slab;
      }
    }
    // load_freelist: hand out the head, keep the rest as c->freelist.
    const at = sl.slot[slab]! * this.stride + object;
    this.cpuFreelist[cpu] = this.objNext[at]!;
    this.objAllocated[at] = 1;
    this.liveObjects++;
    this.#sh.step(STEP_POP);
    return DIRECTMAP_BASE_ADDRESS + sl.frame[slab]! * PAGE_SIZE_BYTES + object * this.size;
  }

  /** do_slab_free() / __slab_free() of object `object` of `slab`, on `cpu` (validated). */
  free(cpu: number, slab: number, object: number): void {
    const sl = this.#sh.slabs;
    const at = sl.slot[slab]! * this.stride + object;
    this.objAllocated[at] = 0;
    this.liveObjects--;
    this.#sh.step(STEP_PUSH);
    if (this.cpuSlab[cpu] === slab) {
      // do_slab_free() fast path: the freeing CPU's own cpu slab.
      this.objNext[at] = this.cpuFreelist[cpu]!;
      this.cpuFreelist[cpu] = object;
      return;
    }
    // __slab_free()
    const prior = sl.freelist[slab]!;
    this.objNext[at] = prior;
    sl.freelist[slab] = object;
    const inuse = sl.inuse[slab]! - 1;
    sl.inuse[slab] = inuse;
    const state = sl.state[slab]!;
    if (state === SLAB_CPU) return; // frozen: another CPU's slab, no list work
    if (prior < 0) {
      // It was full: it goes on the freeing CPU's partial list.
      this.#putCpuPartial(cpu, slab, true);
      return;
    }
    // On a cpu partial list: left there even when empty.
    if (state === SLAB_NODE_PARTIAL && inuse === 0 && this.nrPartial >= this.geometry.minPartial) {
      this.#removePartial(slab);
      this.#discardSlab(slab);
    }
  }

  /** Free every slab's pages (teardown). */
  releaseAll(): void {
    const sl = this.#sh.slabs;
    for (let s = 0; s < sl.highWater; s++) {
      if (sl.state[s] !== SLAB_UNUSED && sl.cache[s] === this.index) this.#freeSlabPages(s);
    }
    this.cpuSlab.fill(NIL);
    this.cpuFreelist.fill(NIL);
    this.cpuPartial.fill(NIL);
    this.partialHead = this.partialTail = NIL;
    this.nrPartial = 0;
    this.liveObjects = 0;
    this.objAllocated.fill(0);
  }

  /** ___slab_alloc new_slab: the next cpu slab: cpu partial, node partial, or new pages. */
  #acquireCpuSlab(cpu: number): number {
    const sl = this.#sh.slabs;
    let slab = this.cpuPartial[cpu]!;
    if (slab >= 0) {
      this.cpuPartial[cpu] = sl.next[slab]!; // slub_set_percpu_partial()
      this.#sh.step(STEP_CPU_PARTIAL_TAKE);
      return slab;
    }
    slab = this.#getPartialNode(cpu);
    return slab >= 0 ? slab : this.#allocateSlab();
  }

  /** freeze_slab() / the new-slab case: the slab's whole freelist goes to the CPU. */
  #freeze(slab: number): number {
    const sl = this.#sh.slabs;
    const freelist = sl.freelist[slab]!;
    if (freelist < 0) {
      throw new Error(`Slab ${slab} of ${this.geometry.name} became cpu slab with no free object`);
    }
    sl.freelist[slab] = NIL;
    sl.inuse[slab] = sl.objects[slab]!;
    return freelist;
  }

  /**
   * mm/slub.c get_partial_node(): take the first node partial slab for the cpu slab
   * and move more to the CPU's partial list until more than `cpu_partial_slabs / 2`.
   */
  #getPartialNode(cpu: number): number {
    if (this.nrPartial === 0) return NIL;
    const sl = this.#sh.slabs;
    const half = this.geometry.cpuPartialSlabs >> 1;
    let first = NIL;
    let partialSlabs = 0;
    let slab = this.partialHead;
    while (slab >= 0) {
      const next = sl.next[slab]!;
      this.#removePartial(slab);
      if (first < 0) {
        first = slab;
        if (this.geometry.cpuPartialSlabs === 0) break;
      } else {
        this.#putCpuPartial(cpu, slab, false);
        if (++partialSlabs > half) break;
      }
      slab = next;
    }
    return first;
  }

  /**
   * mm/slub.c put_cpu_partial(): push `slab` on `cpu`'s partial list; with `drain`,
   * a list already holding `cpu_partial_slabs` slabs first goes to the node
   * (__put_partials).
   */
  #putCpuPartial(cpu: number, slab: number, drain: boolean): void {
    const sl = this.#sh.slabs;
    let old = this.cpuPartial[cpu]!;
    let slabs = 0;
    let toPut = NIL;
    if (old >= 0) {
      if (drain && sl.chain[old]! >= this.geometry.cpuPartialSlabs) {
        toPut = old;
        old = NIL;
      } else {
        slabs = sl.chain[old]!;
      }
    }
    sl.chain[slab] = slabs + 1;
    sl.next[slab] = old;
    sl.state[slab] = SLAB_CPU_PARTIAL;
    sl.cpu[slab] = cpu;
    this.cpuPartial[cpu] = slab;
    this.#sh.step(STEP_CPU_PARTIAL_PUT);
    if (toPut >= 0) this.#putPartials(toPut);
  }

  /**
   * mm/slub.c __put_partials(): every slab of a detached cpu partial list goes to the
   * node list's tail, except empty ones while `nr_partial >= min_partial`, which are
   * stacked and discarded afterwards (last stacked first, as Linux does).
   */
  #putPartials(list: number): void {
    const sl = this.#sh.slabs;
    let discard = NIL;
    while (list >= 0) {
      const slab = list;
      list = sl.next[slab]!;
      if (sl.inuse[slab] === 0 && this.nrPartial >= this.geometry.minPartial) {
        sl.next[slab] = discard;
        discard = slab;
      } else {
        this.#addPartialTail(slab);
      }
    }
    while (discard >= 0) {
      const slab = discard;
      discard = sl.next[slab]!;
      this.#discardSlab(slab);
    }
  }

  /** mm/slub.c add_partial(n, slab, DEACTIVATE_TO_TAIL). */
  #addPartialTail(slab: number): void {
    const sl = this.#sh.slabs;
    sl.state[slab] = SLAB_NODE_PARTIAL;
    sl.next[slab] = NIL;
    sl.prev[slab] = this.partialTail;
    if (this.partialTail >= 0) sl.next[this.partialTail] = slab;
    else this.partialHead = slab;
    this.partialTail = slab;
    this.nrPartial++;
    this.#sh.step(STEP_NODE_PARTIAL_ADD);
  }

  /** mm/slub.c remove_partial(). The caller sets the slab's new state. */
  #removePartial(slab: number): void {
    const sl = this.#sh.slabs;
    const next = sl.next[slab]!;
    const prev = sl.prev[slab]!;
    if (prev >= 0) sl.next[prev] = next;
    else this.partialHead = next;
    if (next >= 0) sl.prev[next] = prev;
    else this.partialTail = prev;
    this.nrPartial--;
    this.#sh.step(STEP_NODE_PARTIAL_TAKE);
  }

  /**
   * mm/slub.c allocate_slab(): pages at the cache's order, or at `s->min` (get_order
   * of the size) if those fail, as Linux retries with the caller's own gfp flags; the
   * freelist runs in ascending address order (no CONFIG_SLAB_FREELIST_RANDOM).
   */
  #allocateSlab(): number {
    const sh = this.#sh;
    const g = this.geometry;
    let order = g.order;
    let objects = g.objectsPerSlab;
    let frame = sh.allocPages(order);
    if (frame < 0) {
      order = g.minOrder;
      objects = g.minObjectsPerSlab;
      frame = sh.allocPages(order);
      if (frame < 0) return NIL;
      sh.orderFallbacks++;
    }
    const sl = sh.slabs;
    const slab = sl.acquire();
    const slot = this.#acquireSlot();
    sl.frame[slab] = frame;
    sl.order[slab] = order;
    sl.cache[slab] = this.index;
    sl.objects[slab] = objects;
    sl.inuse[slab] = 0;
    sl.freelist[slab] = 0;
    sl.slot[slab] = slot;
    sl.next[slab] = sl.prev[slab] = NIL;
    const base = slot * this.stride;
    for (let i = 0; i < objects - 1; i++) this.objNext[base + i] = i + 1;
    this.objNext[base + objects - 1] = NIL;
    const pages = 2 ** order;
    for (let i = 0; i < pages; i++) sh.source.pages.setPrivateWord(frame + i, slab);
    sh.poolPages += pages;
    this.slabCount++;
    sh.step(STEP_NEW_SLAB);
    return slab;
  }

  /** mm/slub.c discard_slab(): the (empty) slab's pages go back. */
  #discardSlab(slab: number): void {
    this.#freeSlabPages(slab);
    this.#sh.step(STEP_DISCARD);
  }

  #freeSlabPages(slab: number): void {
    const sh = this.#sh;
    const sl = sh.slabs;
    const order = sl.order[slab]!;
    sh.source.freePages(sl.frame[slab]!, order);
    sh.poolPages -= 2 ** order;
    this.#freeSlots[this.#freeSlotTop++] = sl.slot[slab]!;
    sl.release(slab);
    this.slabCount--;
  }

  #acquireSlot(): number {
    if (this.#freeSlotTop > 0) return this.#freeSlots[--this.#freeSlotTop]!;
    if (this.#slotHighWater === this.#slotCapacity) {
      const n = this.#slotCapacity * 2;
      this.objNext = grown(this.objNext, n * this.stride);
      this.objAllocated = grown(this.objAllocated, n * this.stride);
      this.#freeSlots = grown(this.#freeSlots, n);
      this.#slotCapacity = n;
    }
    return this.#slotHighWater++;
  }
}

// -- engine ----------------------------------------------------------------------------

/** One CPU's view of a cache, from {@link SlubEngine.inspect}. */
export interface SlubCpuState {
  /** First frame of the CPU's cpu slab, -1 if none. */
  slabFrame: number;
  /** Objects on the CPU's lockless freelist (`c->freelist`). */
  cpuFreelistObjects: number;
  /** Slabs on the CPU's partial list (`c->partial`). */
  partialSlabs: number;
}

/** One cache's state, from {@link SlubEngine.inspect}. */
export interface SlubCacheState {
  /** `kmalloc-8` .. `kmalloc-8k`. */
  name: string;
  /** Object size in bytes. */
  objectSizeBytes: number;
  /** Live slabs. */
  slabCount: number;
  /** Allocated objects. */
  liveObjects: number;
  /** `nr_partial`. */
  nodePartialSlabs: number;
  /** Node partial slabs with no object allocated. */
  nodePartialEmptySlabs: number;
  /** Slabs on no list because every object is allocated. */
  fullSlabs: number;
  /** Per CPU. */
  cpus: SlubCpuState[];
}

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

  /** Steps of the last allocate/free/reallocate call (see {@link SLUB_STEPS_DEFINITION}). */
  get lastSteps(): number {
    return this.#lastSteps;
  }

  /** Why the last failed allocation failed (null after a success). */
  get lastFailureCause(): AllocFailureCause | null {
    return this.#lastFailureCause;
  }

  /**
   * `kmalloc(size)` on `cpu`: an object of the cache `size` maps to, or for more than
   * 8 KiB a block of 2^get_order(size) pages.
   */
  allocate(sizeBytes: number, alignBytes = 1, cpu = 0): number {
    assertAllocArgs(sizeBytes, alignBytes, cpu, this.cpuCount, this.maxAlignBytes);
    const sh = this.#sh;
    sh.callSteps = 0;
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
    const slab = this.#slabAt(address);
    if (slab >= 0) {
      const cache = this.#caches[this.#sh.slabs.cache[slab]!]!;
      const object = this.#objectAt(cache, slab, address);
      this.#sh.callSteps = 0;
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
    }
    this.#freeCount++;
  }

  /**
   * `krealloc()`: in place while `sizeBytes` fits the object's size (ksize) and the
   * address meets `alignBytes`, else allocate, copy, free. Address 0 is not a block
   * here (unlike `krealloc(NULL, ...)`): every engine of this interface rejects it.
   */
  reallocate(address: number, sizeBytes: number, alignBytes = 1, cpu = 0): number {
    assertAllocArgs(sizeBytes, alignBytes, cpu, this.cpuCount, this.maxAlignBytes);
    if (sizeBytes <= this.usableSize(address) && address % alignBytes === 0) {
      this.#lastSteps = 0;
      this.#lastFailureCause = null;
      return address;
    }
    const moved = this.allocate(sizeBytes, alignBytes, cpu);
    if (moved === 0) return 0;
    const allocSteps = this.#lastSteps;
    this.free(address, cpu);
    this.#lastSteps += allocSteps;
    return moved;
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
    const sl = this.#sh.slabs;
    return this.#caches.map((cache) => {
      let nodePartialEmptySlabs = 0;
      for (let s = cache.partialHead; s >= 0; s = sl.next[s]!) {
        if (sl.inuse[s] === 0) nodePartialEmptySlabs++;
      }
      let fullSlabs = 0;
      for (let s = 0; s < sl.highWater; s++) {
        if (sl.state[s] === SLAB_FULL && sl.cache[s] === cache.index) fullSlabs++;
      }
      const cpus: SlubCpuState[] = [];
      for (let cpu = 0; cpu < this.cpuCount; cpu++) {
        const slab = cache.cpuSlab[cpu]!;
        const head = cache.cpuPartial[cpu]!;
        cpus.push({
          slabFrame: slab >= 0 ? sl.frame[slab]! : NIL,
          cpuFreelistObjects: slab >= 0
            ? this.#chainLength(cache, slab, cache.cpuFreelist[cpu]!)
            : 0,
          partialSlabs: head >= 0 ? sl.chain[head]! : 0,
        });
      }
      return {
        name: cache.geometry.name,
        objectSizeBytes: cache.size,
        slabCount: cache.slabCount,
        liveObjects: cache.liveObjects,
        nodePartialSlabs: cache.nrPartial,
        nodePartialEmptySlabs,
        fullSlabs,
        cpus,
      };
    });
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
      this.#checkSlab(cache, s, marks, errors);
    }
    for (const cache of this.#caches) this.#checkLists(cache, slabsByState, errors);
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

  // -- internals ------------------------------------------------------------------------

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

  /** Length of a freelist of `slab` starting at `object` (bounded by the slab's objects). */
  #chainLength(cache: KmemCache, slab: number, object: number): number {
    const sl = this.#sh.slabs;
    const base = sl.slot[slab]! * cache.stride;
    let n = 0;
    for (let o = object; o >= 0 && n <= sl.objects[slab]!; o = cache.objNext[base + o]!) n++;
    return n;
  }

  /**
   * Walk one freelist of `slab`: each object inside the slab, free, on no other
   * list (marks), the list acyclic. Returns its length.
   */
  #walkFreelist(
    cache: KmemCache,
    slab: number,
    head: number,
    what: string,
    marks: Uint8Array,
    errors: string[],
  ): number {
    const sl = this.#sh.slabs;
    const objects = sl.objects[slab]!;
    const base = sl.slot[slab]! * cache.stride;
    let n = 0;
    for (let o = head; o >= 0; o = cache.objNext[base + o]!) {
      if (o >= objects) {
        errors.push(`${cache.geometry.name} slab ${slab}: ${what} holds object ${o} of ${objects}`);
        break;
      }
      if (marks[o] !== 0) {
        errors.push(
          `${cache.geometry.name} slab ${slab}: object ${o} twice on freelists (${what})`,
        );
        break;
      }
      marks[o] = 1;
      if (cache.objAllocated[base + o] !== 0) {
        errors.push(`${cache.geometry.name} slab ${slab}: allocated object ${o} on ${what}`);
      }
      n++;
    }
    return n;
  }

  #checkSlab(cache: KmemCache, s: number, marks: Uint8Array, errors: string[]): void {
    const sl = this.#sh.slabs;
    const pages = this.#source.pages;
    const name = `${cache.geometry.name} slab ${s}`;
    const frame = sl.frame[s]!;
    const order = sl.order[s]!;
    const objects = sl.objects[s]!;
    const g = cache.geometry;
    if (
      !pages.isAllocatedHead(frame, this.#source.owner) || pages.allocatedOrder(frame) !== order
    ) {
      errors.push(`${name}: frame ${frame} is not an order-${order} block of this pool`);
    }
    for (let i = 0; i < 2 ** order; i++) {
      if (pages.privateWord(frame + i) !== s) {
        errors.push(`${name}: frame ${frame + i} does not name it`);
      }
    }
    const expected = order === g.order ? g.objectsPerSlab : g.minObjectsPerSlab;
    if ((order !== g.order && order !== g.minOrder) || objects !== expected) {
      errors.push(`${name}: order ${order} with ${objects} objects fits neither oo nor min`);
    }
    marks.fill(0, 0, objects);
    const state = sl.state[s]!;
    const slabFree = this.#walkFreelist(cache, s, sl.freelist[s]!, "slab freelist", marks, errors);
    let cpuFree = 0;
    if (state === SLAB_CPU) {
      const cpu = sl.cpu[s]!;
      if (cache.cpuSlab[cpu] !== s) {
        errors.push(`${name}: cpu slab of CPU ${cpu}, which has another`);
      } else {cpuFree = this.#walkFreelist(
          cache,
          s,
          cache.cpuFreelist[cpu]!,
          "cpu freelist",
          marks,
          errors,
        );}
    }
    if (sl.inuse[s] !== objects - slabFree) {
      errors.push(
        `${name}: inuse ${sl.inuse[s]} but ${objects - slabFree} objects off its freelist`,
      );
    }
    const base = sl.slot[s]! * cache.stride;
    let allocated = 0;
    for (let o = 0; o < objects; o++) allocated += cache.objAllocated[base + o]!;
    if (allocated !== objects - slabFree - cpuFree) {
      errors.push(
        `${name}: ${allocated} objects allocated, freelists leave ${objects - slabFree - cpuFree}`,
      );
    }
    if ((state === SLAB_CPU_PARTIAL || state === SLAB_NODE_PARTIAL) && slabFree === 0) {
      errors.push(`${name}: ${STATE_NAMES[state]} slab with no free object`);
    }
    if (state === SLAB_FULL && allocated !== objects) {
      errors.push(`${name}: full slab with ${objects - allocated} free objects`);
    }
  }

  #checkLists(cache: KmemCache, slabsByState: Int32Array, errors: string[]): void {
    const sl = this.#sh.slabs;
    const name = cache.geometry.name;
    const row = cache.index * STATE_NAMES.length;
    const bound = sl.highWater;
    let n = 0;
    let prev = NIL;
    for (let s = cache.partialHead; s >= 0; s = sl.next[s]!) {
      if (++n > bound) {
        errors.push(`${name}: node partial list has a cycle`);
        break;
      }
      if (sl.state[s] !== SLAB_NODE_PARTIAL || sl.cache[s] !== cache.index) {
        errors.push(`${name}: slab ${s} on the node partial list is ${STATE_NAMES[sl.state[s]!]}`);
      }
      if (sl.prev[s] !== prev) errors.push(`${name}: slab ${s} has a wrong back link`);
      prev = s;
    }
    if (prev !== cache.partialTail) {
      errors.push(`${name}: node partial tail is ${cache.partialTail}, walk ends at ${prev}`);
    }
    if (n !== cache.nrPartial) {
      errors.push(`${name}: node partial list holds ${n} slabs, nr_partial ${cache.nrPartial}`);
    }
    if (slabsByState[row + SLAB_NODE_PARTIAL] !== n) {
      errors.push(
        `${name}: ${slabsByState[row + SLAB_NODE_PARTIAL]} slabs say node partial, list holds ${n}`,
      );
    }
    let cpuPartial = 0;
    let cpuSlabs = 0;
    for (let cpu = 0; cpu < this.cpuCount; cpu++) {
      const slab = cache.cpuSlab[cpu]!;
      if (slab >= 0) {
        cpuSlabs++;
        if (sl.state[slab] !== SLAB_CPU || sl.cpu[slab] !== cpu || sl.cache[slab] !== cache.index) {
          errors.push(`${name}: cpu slab ${slab} of CPU ${cpu} is ${STATE_NAMES[sl.state[slab]!]}`);
        }
      } else if (cache.cpuFreelist[cpu] !== NIL) {
        errors.push(`${name}: CPU ${cpu} has a freelist but no cpu slab`);
      }
      let length = 0;
      for (let s = cache.cpuPartial[cpu]!; s >= 0; s = sl.next[s]!) {
        if (++length > bound) {
          errors.push(`${name}: partial list of CPU ${cpu} has a cycle`);
          break;
        }
        if (sl.state[s] !== SLAB_CPU_PARTIAL || sl.cpu[s] !== cpu || sl.cache[s] !== cache.index) {
          errors.push(
            `${name}: slab ${s} on CPU ${cpu}'s partial list is ${STATE_NAMES[sl.state[s]!]}`,
          );
        }
        const next = sl.next[s]!;
        if (sl.chain[s] !== (next >= 0 ? sl.chain[next]! + 1 : 1)) {
          errors.push(
            `${name}: slab ${s} on CPU ${cpu}'s partial list counts ${sl.chain[s]} slabs`,
          );
        }
      }
      cpuPartial += length;
    }
    if (slabsByState[row + SLAB_CPU_PARTIAL] !== cpuPartial) {
      errors.push(
        `${name}: ${
          slabsByState[row + SLAB_CPU_PARTIAL]
        } slabs say cpu partial, lists hold ${cpuPartial}`,
      );
    }
    if (slabsByState[row + SLAB_CPU] !== cpuSlabs) {
      errors.push(
        `${name}: ${slabsByState[row + SLAB_CPU]} slabs say cpu slab, CPUs hold ${cpuSlabs}`,
      );
    }
    let total = 0;
    for (let state = 1; state < STATE_NAMES.length; state++) total += slabsByState[row + state]!;
    if (total !== cache.slabCount) {
      errors.push(`${name}: ${total} slabs live, counted ${cache.slabCount}`);
    }
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
    "kfree), mm/slab_common.c kmalloc_size_index[], mm/slab.h kmalloc_slab(), " +
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
    metaPages: "0: kmem_cache structures are not modelled as pages",
    steps: SLUB_STEPS_DEFINITION,
  },
  create(context: EngineContext): XmallocEngine {
    return new SlubEngine(context);
  },
};
