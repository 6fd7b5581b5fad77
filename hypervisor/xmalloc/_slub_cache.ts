/**
 * SLUB's data: the slab table (`struct slab` of every live slab), the state the
 * caches share, and one kmalloc cache with its per-CPU and node parts and the
 * mm/slub.c algorithms that move slabs between them. Used by `slub.ts` only.
 *
 * Layout: slab rows in typed arrays (SlabTable), recycled LIFO; a slab's row number
 * is the page-allocator private word of each of its frames. Each cache keeps its
 * objects' freelist links and allocated bits in typed arrays of `objects` entries
 * per slab slot, slots recycled LIFO: no JS object per slab or per object.
 *
 * @module
 */

import { DIRECTMAP_BASE_ADDRESS, PAGE_SIZE_BYTES } from "../../src/units.ts";
import { grown } from "../../src/typed_array.ts";
import { StateError, type StateReader, type StateWriter } from "../../src/state_codec.ts";
import {
  type AllocFailureCause,
  type PageSource,
  readFailureCause,
  writeFailureCause,
} from "./engine.ts";
import {
  type KmallocCacheGeometry,
  SLUB_SHRINK_PROMOTE_MAX,
  SLUB_STEP_KINDS,
  STEP_CPU_PARTIAL_PUT,
  STEP_CPU_PARTIAL_TAKE,
  STEP_DISCARD,
  STEP_NEW_SLAB,
  STEP_NODE_PARTIAL_ADD,
  STEP_NODE_PARTIAL_TAKE,
  STEP_POP,
  STEP_PUSH,
  STEP_REFILL,
} from "./_slub_geometry.ts";

// -- data layout -------------------------------------------------------------------------

/** No slab, no object. */
export const NIL = -1;

// Slab states (which list a slab is on).
/** Table row free. */
export const SLAB_UNUSED = 0;
const SLAB_CPU = 1; // c->slab of CPU `cpu` (frozen)
const SLAB_CPU_PARTIAL = 2; // on CPU `cpu`'s partial list
const SLAB_NODE_PARTIAL = 3; // on the node partial list
const SLAB_FULL = 4; // every object allocated, on no list
/** Names of the slab states, by state. */
export const STATE_NAMES: readonly string[] = [
  "unused",
  "cpu slab",
  "cpu partial",
  "node partial",
  "full",
];

// __kmem_cache_do_shrink()'s promote lists, one per free-object count 1..32, reused by
// every shrink (the model is single-threaded): first and last slab of each, in walk order.
const promoteFirst = new Int32Array(SLUB_SHRINK_PROMOTE_MAX);
const promoteLast = new Int32Array(SLUB_SHRINK_PROMOTE_MAX);

/** One CPU's view of a cache, from `SlubEngine.inspect()`. */
export interface SlubCpuState {
  /** First frame of the CPU's cpu slab, -1 if none. */
  slabFrame: number;
  /** Objects on the CPU's lockless freelist (`c->freelist`). */
  cpuFreelistObjects: number;
  /** Slabs on the CPU's partial list (`c->partial`). */
  partialSlabs: number;
}

/** One cache's state, from `SlubEngine.inspect()`. */
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

// -- saved state -------------------------------------------------------------------------

/**
 * Read a count written with `w.num`: an integer in [0, max].
 *
 * @throws {StateError} naming `what` otherwise
 */
export function readCount(r: StateReader, max: number, what: string): number {
  const n = r.num();
  if (!Number.isInteger(n) || n < 0 || n > max) {
    throw new StateError(`A saved slub state has ${what} ${n}, expected an integer in [0, ${max}]`);
  }
  return n;
}

/**
 * Check that a typed array read back has `length` elements.
 *
 * @throws {StateError} naming `what` otherwise
 */
export function expectLength<T extends { length: number }>(
  array: T,
  length: number,
  what: string,
): T {
  if (array.length !== length) {
    throw new StateError(
      `A saved slub state has ${array.length} entries in ${what}, expected ${length}`,
    );
  }
  return array;
}

/** A copy of `array` with `length` elements (the rest zero). */

/**
 * `struct slab` for every live slab of every cache: one row per slab, rows recycled
 * LIFO. Row numbers go in the private word of each of the slab's frames.
 */
export class SlabTable {
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

  /**
   * Write the table: its capacity, every column whole (capacity rows, unused ones
   * included), the stack of free rows and its top, and the high-water mark.
   */
  saveState(w: StateWriter): void {
    w.num(this.capacity);
    w.array(this.frame);
    w.array(this.order);
    w.array(this.cache);
    w.array(this.objects);
    w.array(this.inuse);
    w.array(this.freelist);
    w.array(this.state);
    w.array(this.cpu);
    w.array(this.next);
    w.array(this.prev);
    w.array(this.chain);
    w.array(this.slot);
    w.array(this.#freeRows);
    w.num(this.#freeTop);
    w.num(this.highWater);
  }

  /**
   * Become the table `r` holds (from {@link saveState}), replacing every column.
   *
   * @throws {StateError} if it does not read back or its columns disagree on the capacity
   */
  loadState(r: StateReader): void {
    const capacity = readCount(r, 2 ** 31 - 1, "a slab table capacity");
    const column = <T extends { length: number }>(array: T, what: string): T =>
      expectLength(array, capacity, `the slab table's ${what} column`);
    const frame = column(r.array(Int32Array), "frame");
    const order = column(r.array(Uint8Array), "order");
    const cache = column(r.array(Uint8Array), "cache");
    const objects = column(r.array(Uint16Array), "objects");
    const inuse = column(r.array(Uint16Array), "inuse");
    const freelist = column(r.array(Int16Array), "freelist");
    const state = column(r.array(Uint8Array), "state");
    const cpu = column(r.array(Int32Array), "cpu");
    const next = column(r.array(Int32Array), "next");
    const prev = column(r.array(Int32Array), "prev");
    const chain = column(r.array(Int32Array), "chain");
    const slot = column(r.array(Int32Array), "slot");
    const freeRows = column(r.array(Int32Array), "free row");
    const freeTop = readCount(r, capacity, "a free slab row count");
    const highWater = readCount(r, capacity, "a slab table high-water mark");
    this.capacity = capacity;
    this.frame = frame;
    this.order = order;
    this.cache = cache;
    this.objects = objects;
    this.inuse = inuse;
    this.freelist = freelist;
    this.state = state;
    this.cpu = cpu;
    this.next = next;
    this.prev = prev;
    this.chain = chain;
    this.slot = slot;
    this.#freeRows = freeRows;
    this.#freeTop = freeTop;
    this.highWater = highWater;
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
export class SlubShared {
  readonly slabs = new SlabTable(256);
  readonly source: PageSource;
  readonly stepTotals = new Float64Array(SLUB_STEP_KINDS.length);
  /** Steps of the call in progress. */
  callSteps = 0;
  /**
   * Whether the call in progress touched state all CPUs share: the node partial list
   * (`n->list_lock`), a new or discarded slab, or another CPU's slab.
   */
  callShared = false;
  /** Pages in slabs. */
  poolPages = 0;
  /** allocate_slab() fallbacks to `s->min` that succeeded (Linux's ORDER_FALLBACK). */
  orderFallbacks = 0;
  /** Why the last page request of the call in progress failed. */
  failureCause: AllocFailureCause | null = null;

  constructor(source: PageSource) {
    this.source = source;
  }

  step(kind: number): void {
    this.callSteps++;
    this.stepTotals[kind]!++;
    if (kind >= STEP_NODE_PARTIAL_TAKE) this.callShared = true; // node list, new slab, discard
  }

  /**
   * Write the shared state: the slab table, the step totals, the call in progress's
   * steps, shared flag and failure cause (what `lastSharedAccess` reads), the pool
   * pages and the order fallbacks. The page source is not saved: it is the context's.
   */
  saveState(w: StateWriter): void {
    this.slabs.saveState(w);
    w.array(this.stepTotals);
    w.num(this.callSteps);
    w.bool(this.callShared);
    w.num(this.poolPages);
    w.num(this.orderFallbacks);
    writeFailureCause(w, this.failureCause);
  }

  /**
   * Become the shared state `r` holds (from {@link saveState}); the page source stays.
   *
   * @throws {StateError} if it does not read back
   */
  loadState(r: StateReader): void {
    this.slabs.loadState(r);
    const stepTotals = r.array(Float64Array);
    this.stepTotals.set(expectLength(stepTotals, this.stepTotals.length, "the step totals"));
    this.callSteps = r.num();
    this.callShared = r.bool();
    this.poolPages = readCount(r, Number.MAX_SAFE_INTEGER, "a pool page count");
    this.orderFallbacks = r.num();
    this.failureCause = readFailureCause(r, "slub");
  }

  /** 2^order pages, or -1 with {@link failureCause} set (also for orders the machine lacks). */
  allocPages(order: number): number {
    const source = this.source;
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
export class KmemCache {
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
    this.#slotCapacity = 8;
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
    // __slab_free(): the slab's freelist is shared with whichever CPU holds the slab
    this.#sh.callShared = true;
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
    // A slab on a CPU's partial list stays there even when it empties; a node partial
    // slab that empties is discarded while nr_partial (itself included) >= min_partial.
    if (state === SLAB_NODE_PARTIAL && inuse === 0 && this.nrPartial >= this.geometry.minPartial) {
      this.#removePartial(slab);
      this.#discardSlab(slab);
    }
  }

  /**
   * mm/slub.c __kmem_cache_shrink(): flush_all(), then __kmem_cache_do_shrink() on the
   * one node. Afterwards no CPU holds a slab, every empty slab's pages are back, and
   * the node partial list holds every slab with free objects (those with at most
   * SHRINK_PROMOTE_MAX free first, fullest first). Live objects stay where they are.
   */
  shrink(): void {
    // flush_all(): Linux queues flush_cpu_slab() on every CPU that has_cpu_slab() and
    // waits for all; the model runs them one after another, CPU 0 first.
    for (let cpu = 0; cpu < this.cpuSlab.length; cpu++) this.#flushCpuSlab(cpu);
    this.#doShrink();
  }

  /**
   * Write the cache's state: its object arrays whole (every slot of the capacity),
   * its per-CPU `c->slab`, `c->freelist` and `c->partial`, its node partial list
   * (head, tail, `nr_partial`), its slab and live object counts, and its slot
   * capacity, free-slot stack and top, and slot high-water mark. Its geometry is not
   * saved: the engine's CPU count gives it.
   */
  saveState(w: StateWriter): void {
    w.array(this.objNext);
    w.array(this.objAllocated);
    w.array(this.cpuSlab);
    w.array(this.cpuFreelist);
    w.array(this.cpuPartial);
    w.num(this.partialHead);
    w.num(this.partialTail);
    w.num(this.nrPartial);
    w.num(this.slabCount);
    w.num(this.liveObjects);
    w.num(this.#slotCapacity);
    w.array(this.#freeSlots);
    w.num(this.#freeSlotTop);
    w.num(this.#slotHighWater);
  }

  /**
   * Become the cache `r` holds (from {@link saveState}); its geometry and CPU count
   * must be the saved cache's.
   *
   * @throws {StateError} if it does not read back or does not fit this cache's shape
   */
  loadState(r: StateReader): void {
    const name = this.geometry.name;
    const objNext = r.array(Int16Array);
    const objAllocated = r.array(Uint8Array);
    const cpus = this.cpuSlab.length;
    const cpuSlab = expectLength(r.array(Int32Array), cpus, `${name}'s cpu slabs`);
    const cpuFreelist = expectLength(r.array(Int32Array), cpus, `${name}'s cpu freelists`);
    const cpuPartial = expectLength(r.array(Int32Array), cpus, `${name}'s cpu partial lists`);
    const partialHead = r.num();
    const partialTail = r.num();
    const nrPartial = readCount(r, Number.MAX_SAFE_INTEGER, `${name}'s nr_partial`);
    const slabCount = readCount(r, Number.MAX_SAFE_INTEGER, `${name}'s slab count`);
    const liveObjects = readCount(r, Number.MAX_SAFE_INTEGER, `${name}'s live objects`);
    const slotCapacity = readCount(r, 2 ** 31 - 1, `${name}'s slot capacity`);
    expectLength(objNext, slotCapacity * this.stride, `${name}'s object links`);
    expectLength(objAllocated, slotCapacity * this.stride, `${name}'s allocated bits`);
    const freeSlots = expectLength(r.array(Int32Array), slotCapacity, `${name}'s free slots`);
    const freeSlotTop = readCount(r, slotCapacity, `${name}'s free slot count`);
    const slotHighWater = readCount(r, slotCapacity, `${name}'s slot high-water mark`);
    this.objNext = objNext;
    this.objAllocated = objAllocated;
    this.cpuSlab.set(cpuSlab);
    this.cpuFreelist.set(cpuFreelist);
    this.cpuPartial.set(cpuPartial);
    this.partialHead = partialHead;
    this.partialTail = partialTail;
    this.nrPartial = nrPartial;
    this.slabCount = slabCount;
    this.liveObjects = liveObjects;
    this.#slotCapacity = slotCapacity;
    this.#freeSlots = freeSlots;
    this.#freeSlotTop = freeSlotTop;
    this.#slotHighWater = slotHighWater;
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

  /** The cache's lists and per-CPU parts (for tests and reports). */
  state(): SlubCacheState {
    const sl = this.#sh.slabs;
    let nodePartialEmptySlabs = 0;
    for (let s = this.partialHead; s >= 0; s = sl.next[s]!) {
      if (sl.inuse[s] === 0) nodePartialEmptySlabs++;
    }
    let fullSlabs = 0;
    for (let s = 0; s < sl.highWater; s++) {
      if (sl.state[s] === SLAB_FULL && sl.cache[s] === this.index) fullSlabs++;
    }
    const cpus: SlubCpuState[] = [];
    for (let cpu = 0; cpu < this.cpuSlab.length; cpu++) {
      const slab = this.cpuSlab[cpu]!;
      const head = this.cpuPartial[cpu]!;
      cpus.push({
        slabFrame: slab >= 0 ? sl.frame[slab]! : NIL,
        cpuFreelistObjects: slab >= 0 ? this.#chainLength(slab, this.cpuFreelist[cpu]!) : 0,
        partialSlabs: head >= 0 ? sl.chain[head]! : 0,
      });
    }
    return {
      name: this.geometry.name,
      objectSizeBytes: this.size,
      slabCount: this.slabCount,
      liveObjects: this.liveObjects,
      nodePartialSlabs: this.nrPartial,
      nodePartialEmptySlabs,
      fullSlabs,
      cpus,
    };
  }

  /**
   * Check one live slab of this cache: its pages, its private words, its object
   * count, its freelists (inside the slab, acyclic, free objects only, no object on
   * two), `inuse` and the allocated bits against them, and its state against them.
   * `marks` has room for `stride` objects.
   */
  checkSlab(s: number, marks: Uint8Array, errors: string[]): void {
    const sl = this.#sh.slabs;
    const source = this.#sh.source;
    const name = `${this.geometry.name} slab ${s}`;
    const frame = sl.frame[s]!;
    const order = sl.order[s]!;
    const objects = sl.objects[s]!;
    const g = this.geometry;
    if (!source.holds(frame) || source.pages.allocatedOrder(frame) !== order) {
      errors.push(`${name}: frame ${frame} is not an order-${order} block of this pool`);
    }
    for (let i = 0; i < 2 ** order; i++) {
      if (source.pages.privateWord(frame + i) !== s) {
        errors.push(`${name}: frame ${frame + i} does not name it`);
      }
    }
    const expected = order === g.order ? g.objectsPerSlab : g.minObjectsPerSlab;
    if ((order !== g.order && order !== g.minOrder) || objects !== expected) {
      errors.push(`${name}: order ${order} with ${objects} objects fits neither oo nor min`);
    }
    marks.fill(0, 0, objects);
    const state = sl.state[s]!;
    const slabFree = this.#walkFreelist(s, sl.freelist[s]!, "slab freelist", marks, errors);
    let cpuFree = 0;
    if (state === SLAB_CPU) {
      const cpu = sl.cpu[s]!;
      if (this.cpuSlab[cpu] !== s) {
        errors.push(`${name}: cpu slab of CPU ${cpu}, which has another`);
      } else {
        cpuFree = this.#walkFreelist(s, this.cpuFreelist[cpu]!, "cpu freelist", marks, errors);
      }
    }
    if (sl.inuse[s] !== objects - slabFree) {
      errors.push(
        `${name}: inuse ${sl.inuse[s]} but ${objects - slabFree} objects off its freelist`,
      );
    }
    const base = sl.slot[s]! * this.stride;
    let allocated = 0;
    for (let o = 0; o < objects; o++) allocated += this.objAllocated[base + o]!;
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

  /**
   * Check the node partial list, each CPU's slab and partial list against the slabs'
   * states; `slabsByState[state]` counts this cache's live slabs by state.
   */
  checkLists(slabsByState: Int32Array, errors: string[]): void {
    const sl = this.#sh.slabs;
    const name = this.geometry.name;
    const bound = sl.highWater;
    let n = 0;
    let prev = NIL;
    for (let s = this.partialHead; s >= 0; s = sl.next[s]!) {
      if (++n > bound) {
        errors.push(`${name}: node partial list has a cycle`);
        break;
      }
      if (sl.state[s] !== SLAB_NODE_PARTIAL || sl.cache[s] !== this.index) {
        errors.push(`${name}: slab ${s} on the node partial list is ${STATE_NAMES[sl.state[s]!]}`);
      }
      if (sl.prev[s] !== prev) errors.push(`${name}: slab ${s} has a wrong back link`);
      prev = s;
    }
    if (prev !== this.partialTail) {
      errors.push(`${name}: node partial tail is ${this.partialTail}, walk ends at ${prev}`);
    }
    if (n !== this.nrPartial) {
      errors.push(`${name}: node partial list holds ${n} slabs, nr_partial ${this.nrPartial}`);
    }
    if (slabsByState[SLAB_NODE_PARTIAL] !== n) {
      errors.push(
        `${name}: ${slabsByState[SLAB_NODE_PARTIAL]} slabs say node partial, list holds ${n}`,
      );
    }
    let cpuPartial = 0;
    let cpuSlabs = 0;
    for (let cpu = 0; cpu < this.cpuSlab.length; cpu++) {
      const slab = this.cpuSlab[cpu]!;
      if (slab >= 0) {
        cpuSlabs++;
        if (sl.state[slab] !== SLAB_CPU || sl.cpu[slab] !== cpu || sl.cache[slab] !== this.index) {
          errors.push(`${name}: cpu slab ${slab} of CPU ${cpu} is ${STATE_NAMES[sl.state[slab]!]}`);
        }
      } else if (this.cpuFreelist[cpu] !== NIL) {
        errors.push(`${name}: CPU ${cpu} has a freelist but no cpu slab`);
      }
      cpuPartial += this.#checkCpuPartial(cpu, errors);
    }
    if (slabsByState[SLAB_CPU_PARTIAL] !== cpuPartial) {
      errors.push(
        `${name}: ${
          slabsByState[SLAB_CPU_PARTIAL]
        } slabs say cpu partial, lists hold ${cpuPartial}`,
      );
    }
    if (slabsByState[SLAB_CPU] !== cpuSlabs) {
      errors.push(`${name}: ${slabsByState[SLAB_CPU]} slabs say cpu slab, CPUs hold ${cpuSlabs}`);
    }
    let total = 0;
    for (let state = 1; state < STATE_NAMES.length; state++) total += slabsByState[state]!;
    if (total !== this.slabCount) {
      errors.push(`${name}: ${total} slabs live, counted ${this.slabCount}`);
    }
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

  /**
   * mm/slub.c flush_cpu_slab() on `cpu`: flush_slab() detaches `c->slab` and
   * `c->freelist` and deactivate_slab()s them, then put_partials() detaches
   * `c->partial` and hands it to __put_partials().
   */
  #flushCpuSlab(cpu: number): void {
    const slab = this.cpuSlab[cpu]!;
    if (slab >= 0) {
      const freelist = this.cpuFreelist[cpu]!;
      this.cpuSlab[cpu] = NIL;
      this.cpuFreelist[cpu] = NIL;
      this.#deactivateSlab(slab, freelist);
    }
    const partial = this.cpuPartial[cpu]!;
    if (partial >= 0) {
      this.cpuPartial[cpu] = NIL;
      this.#putPartials(partial);
    }
  }

  /**
   * mm/slub.c deactivate_slab(): unfreeze a former cpu slab. Stage one walks the CPU's
   * freelist (`freelist`, detached by the caller) to count it and find its tail;
   * stage two splices it in front of `slab->freelist` and lowers `inuse` by its
   * length; stage three discards the slab if it is now empty and the node already
   * holds `min_partial` partial slabs, else puts it on the node partial list if it has
   * free objects (at the tail if `slab->freelist` had remote frees before the splice,
   * DEACTIVATE_TO_TAIL, else at the head), else leaves it full on no list.
   */
  #deactivateSlab(slab: number, freelist: number): void {
    const sl = this.#sh.slabs;
    const toTail = sl.freelist[slab]! >= 0; // DEACTIVATE_REMOTE_FREES
    if (freelist >= 0) {
      const base = sl.slot[slab]! * this.stride;
      let tail = freelist;
      let freeDelta = 1;
      for (let next = this.objNext[base + tail]!; next >= 0; next = this.objNext[base + next]!) {
        tail = next;
        freeDelta++;
      }
      this.objNext[base + tail] = sl.freelist[slab]!;
      sl.freelist[slab] = freelist;
      sl.inuse[slab] = sl.inuse[slab]! - freeDelta;
      this.#sh.step(STEP_REFILL);
    }
    if (sl.inuse[slab] === 0 && this.nrPartial >= this.geometry.minPartial) {
      this.#discardSlab(slab); // DEACTIVATE_EMPTY
    } else if (sl.freelist[slab]! >= 0) {
      if (toTail) this.#addPartialTail(slab);
      else this.#addPartialHead(slab);
    } else {
      sl.state[slab] = SLAB_FULL; // DEACTIVATE_FULL: on no list
    }
  }

  /**
   * mm/slub.c __kmem_cache_do_shrink() on the one node. One walk of `n->partial`:
   * every empty slab moves to the discard list (nr_partial drops), whatever
   * min_partial says; a slab with `free` objects free, 1 <= free <= SHRINK_PROMOTE_MAX,
   * moves to promote list `free - 1`; slabs with more free objects stay in place. Each
   * list_move() puts the slab at its list's head, so each list ends up in reverse walk
   * order. The promote lists are then spliced at the head of `n->partial` from the
   * last to the first, which leaves the slabs with 1 free object first, then 2, ...,
   * then the unmoved slabs in their old order. Last, the discard list is freed from
   * its head.
   */
  #doShrink(): void {
    const sl = this.#sh.slabs;
    promoteFirst.fill(NIL);
    promoteLast.fill(NIL);
    let discard = NIL;
    let slab = this.partialHead;
    while (slab >= 0) {
      const next = sl.next[slab]!;
      const objects = sl.objects[slab]!;
      const free = objects - sl.inuse[slab]!;
      if (free === objects) {
        this.#removePartial(slab);
        sl.next[slab] = discard; // list_move() to the discard list's head
        discard = slab;
      } else if (free <= SLUB_SHRINK_PROMOTE_MAX) {
        this.#removePartial(slab);
        // Kept in walk order here; pushing each at the node list's head below
        // reverses it, as list_move() to the promote list's head does.
        const list = free - 1;
        sl.next[slab] = NIL;
        const last = promoteLast[list]!;
        if (last >= 0) sl.next[last] = slab;
        else promoteFirst[list] = slab;
        promoteLast[list] = slab;
      }
      slab = next;
    }
    for (let list = SLUB_SHRINK_PROMOTE_MAX - 1; list >= 0; list--) {
      for (let s = promoteFirst[list]!; s >= 0;) {
        const next = sl.next[s]!;
        this.#addPartialHead(s);
        s = next;
      }
    }
    while (discard >= 0) {
      const s = discard;
      discard = sl.next[s]!;
      this.#discardSlab(s);
    }
  }

  /** mm/slub.c add_partial(n, slab, DEACTIVATE_TO_HEAD). */
  #addPartialHead(slab: number): void {
    const sl = this.#sh.slabs;
    sl.state[slab] = SLAB_NODE_PARTIAL;
    sl.prev[slab] = NIL;
    sl.next[slab] = this.partialHead;
    if (this.partialHead >= 0) sl.prev[this.partialHead] = slab;
    else this.partialTail = slab;
    this.partialHead = slab;
    this.nrPartial++;
    this.#sh.step(STEP_NODE_PARTIAL_ADD);
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
   * mm/slub.c allocate_slab(): pages at the cache's order (`s->oo`), or if those fail
   * at `s->min` = get_order(size), as Linux retries alloc_slab_page() with the
   * caller's own gfp flags. Linux retries even when both orders are equal (kmalloc-8
   * .. kmalloc-4k at 1 CPU, say); the model does too, so such a failure costs two
   * failed page-allocator calls, as in Linux. The freelist runs in ascending address
   * order (CONFIG_SLAB_FREELIST_RANDOM off).
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

  /** Check CPU `cpu`'s partial list; returns its length. */
  #checkCpuPartial(cpu: number, errors: string[]): number {
    const sl = this.#sh.slabs;
    const name = this.geometry.name;
    let length = 0;
    for (let s = this.cpuPartial[cpu]!; s >= 0; s = sl.next[s]!) {
      if (++length > sl.highWater) {
        errors.push(`${name}: partial list of CPU ${cpu} has a cycle`);
        break;
      }
      if (sl.state[s] !== SLAB_CPU_PARTIAL || sl.cpu[s] !== cpu || sl.cache[s] !== this.index) {
        errors.push(
          `${name}: slab ${s} on CPU ${cpu}'s partial list is ${STATE_NAMES[sl.state[s]!]}`,
        );
      }
      const next = sl.next[s]!;
      if (sl.chain[s] !== (next >= 0 ? sl.chain[next]! + 1 : 1)) {
        errors.push(`${name}: slab ${s} on CPU ${cpu}'s partial list counts ${sl.chain[s]} slabs`);
      }
    }
    return length;
  }

  /** Length of a freelist of `slab` from `object` (bounded by the slab's objects). */
  #chainLength(slab: number, object: number): number {
    const sl = this.#sh.slabs;
    const base = sl.slot[slab]! * this.stride;
    let n = 0;
    for (let o = object; o >= 0 && n <= sl.objects[slab]!; o = this.objNext[base + o]!) n++;
    return n;
  }

  /**
   * Walk one freelist of `slab`: each object inside the slab, free, on no other
   * list (marks), the list acyclic. Returns its length.
   */
  #walkFreelist(
    slab: number,
    head: number,
    what: string,
    marks: Uint8Array,
    errors: string[],
  ): number {
    const sl = this.#sh.slabs;
    const objects = sl.objects[slab]!;
    const base = sl.slot[slab]! * this.stride;
    const name = `${this.geometry.name} slab ${slab}`;
    let n = 0;
    for (let o = head; o >= 0; o = this.objNext[base + o]!) {
      if (o >= objects) {
        errors.push(`${name}: ${what} holds object ${o} of ${objects}`);
        break;
      }
      if (marks[o] !== 0) {
        errors.push(`${name}: object ${o} twice on freelists (${what})`);
        break;
      }
      marks[o] = 1;
      if (this.objAllocated[base + o] !== 0) {
        errors.push(`${name}: allocated object ${o} on ${what}`);
      }
      n++;
    }
    return n;
  }
}
