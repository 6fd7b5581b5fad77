/**
 * SLUB's numbers, pure: the kmalloc caches and how a request maps to one
 * (mm/slab_common.c kmalloc_size_index[], mm/slab.h kmalloc_slab()), each cache's
 * geometry (mm/slub.c calculate_order(), kmem_cache_open(), set_cpu_partial()), and
 * the definition of a SLUB step. Public names are re-exported by `slub.ts`.
 *
 * @module
 */

import { getOrderFromBytes, PAGE_SIZE_BYTES } from "../../src/units.ts";

// -- constants: tunables first, derived after ---------------------------------------

/** Highest slab order calculate_order() aims at: mm/slub.c `slub_max_order` = PAGE_ALLOC_COSTLY_ORDER. */
export const SLUB_MAX_ORDER = 3;
/** Lowest slab order: mm/slub.c `slub_min_order` (boot default 0). */
export const SLUB_MIN_ORDER = 0;
/** mm/slub.c MIN_PARTIAL: fewest node partial slabs kept even when empty. */
export const SLUB_MIN_PARTIAL = 5;
/** mm/slub.c MAX_PARTIAL: upper clamp of a cache's `min_partial`. */
export const SLUB_MAX_PARTIAL = 10;
/**
 * mm/slub.c SHRINK_PROMOTE_MAX: __kmem_cache_do_shrink() moves node partial slabs with
 * 1..32 free objects to the list's head, fewest free first; the rest keep their order.
 */
export const SLUB_SHRINK_PROMOTE_MAX = 32;
/** mm/slub.c MAX_OBJS_PER_PAGE: `slab.objects` is a u15. */
export const MAX_OBJS_PER_PAGE = 32767;
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
/** Number of kmalloc caches. */
export const CACHE_COUNT = KMALLOC_CACHE_SIZES.length;
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
 * - `freelistRefill` +1: a whole freelist moves between a cpu slab and its CPU:
 *   get_freelist() moves `slab->freelist` (objects other CPUs freed) to `c->freelist`,
 *   or deactivate_slab() splices a non-empty `c->freelist` back onto the head of
 *   `slab->freelist` (its walk to the list's tail is not counted per object).
 * - `cpuPartialTake` +1: ___slab_alloc takes the head of `c->partial` as cpu slab.
 * - `cpuPartialPut` +1: put_cpu_partial() pushes a slab on a CPU's partial list.
 * - `nodePartialTake` +1: a slab leaves the node partial list: remove_partial()
 *   (get_partial_node, or __slab_free discarding an empty slab), or
 *   __kmem_cache_do_shrink() moving it to its discard or promote list.
 * - `nodePartialAdd` +1: a slab goes on the node partial list: add_partial()
 *   (__put_partials draining a cpu partial list, deactivate_slab), or
 *   __kmem_cache_do_shrink() splicing a promoted slab back at the head.
 * - `newSlab` +1: allocate_slab() builds a slab from fresh pages (its freelist set-up
 *   loop is not counted per object).
 * - `slabDiscard` +1: discard_slab() / free_slab() gives a slab's pages back.
 *
 * A large kmalloc/kfree is 0 (page allocator only). A fast-path kmalloc is 1, a
 * fast-path kfree 1; a kmalloc that has to take slabs from the node partial list is
 * 1 + (1 + k) node takes + k cpu partial puts with k <= cpu_partial_slabs/2 + 1; a
 * kfree that drains a full cpu partial list is 2 + one add or discard per slab drained.
 * A reallocate in place is 0; a moving one is the allocation's steps plus the free's.
 *
 * A shrink (kmem_cache_shrink() of every kmalloc cache) counts, per cache: for each
 * CPU's cpu slab, 1 refill if its `c->freelist` is not empty, then 1 add (to the
 * node partial list) or 1 discard (empty while nr_partial >= min_partial) or 0 (full,
 * on no list); for each slab of each CPU's partial list, 1 add or 1 discard as in
 * __put_partials; then for each node partial slab, 1 take + 1 discard if it is empty,
 * 1 take + 1 add if it has 1..SHRINK_PROMOTE_MAX free objects (re-sorted), 0
 * otherwise (left in place). A shrink of an engine holding nothing is 0.
 */
export const SLUB_STEPS_DEFINITION =
  "+1 freelistPop (object taken from the cpu freelist), +1 freelistPush (object " +
  "freed onto a freelist), +1 freelistRefill (a whole freelist moves between slab and " +
  "CPU: get_freelist, or deactivate_slab splicing c->freelist back), +1 " +
  "cpuPartialTake / cpuPartialPut (slab off / onto a cpu partial list), +1 " +
  "nodePartialTake / nodePartialAdd (slab off / onto the node partial list: " +
  "remove_partial / add_partial, or __kmem_cache_do_shrink moving it to discard or " +
  "re-sorting it), +1 newSlab (allocate_slab), +1 slabDiscard (discard_slab); large " +
  "kmalloc/kfree 0; page-allocator work never counted";

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
/** Indices of the step kinds in {@link SLUB_STEP_KINDS}. */
export const STEP_POP = 0;
export const STEP_PUSH = 1;
export const STEP_REFILL = 2;
export const STEP_CPU_PARTIAL_TAKE = 3;
export const STEP_CPU_PARTIAL_PUT = 4;
export const STEP_NODE_PARTIAL_TAKE = 5;
export const STEP_NODE_PARTIAL_ADD = 6;
export const STEP_NEW_SLAB = 7;
export const STEP_DISCARD = 8;

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

/** @throws {RangeError} unless `cpuCount` is an integer in [1, 65536] */
export function assertCpuCount(cpuCount: number): void {
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
export function cacheIndexAligned(sizeBytes: number, alignBytes: number): number {
  let index = kmallocCacheIndex(sizeBytes);
  if (index < 0) return -1;
  while (index < CACHE_COUNT && CACHE_ALIGN_BYTES[index]! < alignBytes) index++;
  return index < CACHE_COUNT ? index : -1;
}
