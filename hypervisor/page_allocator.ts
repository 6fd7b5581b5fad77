/**
 * The machine's page allocator: a binary buddy over 4 KiB frames.
 *
 * Modelled on Xen's `alloc_heap_pages()` / `free_heap_pages()`
 * (xen/common/page_alloc.c), with the exact policy the reference harness uses
 * (see tests/fixtures/README.md): one LIFO free list per order; an allocation takes
 * the head of the lowest non-empty list at or above the order and, while splitting,
 * pushes the LOWER half on its list and keeps the UPPER half; a free merges with its
 * buddy while the buddy heads a free block of exactly the same order, then pushes the
 * result on the head of its list. A machine that is not a power of two in size is cut
 * into maximal naturally aligned blocks, pushed in ascending address order.
 *
 * Metadata: 9 bytes per frame in three typed arrays (a state byte and two 32-bit
 * words), the same union Xen's `struct page_info` uses: a free block's head keeps its
 * free-list links there, an allocated block's head keeps its owner and a word the
 * owning allocator may use (Xen's `PFN_ORDER()`, Linux's `struct slab` pointer). Frames
 * that are no block's head cost nothing but their zeroed slots, which the OS backs
 * lazily, so a fresh 1 TiB machine's resident memory stays small.
 *
 * @module
 */

import { PAGE_SIZE_BYTES } from "../src/units.ts";
import { grown } from "../src/typed_array.ts";
import { StateError, type StateReader, type StateWriter } from "../src/state_codec.ts";

/** Largest order the allocator manages (Xen x86: MAX_ORDER 20, 4 GiB blocks). */
export const MAX_ORDER = 20;

/** Largest owner id (domain ids and their reservations' ids stay below it). */
export const OWNER_MAX = 0xffff;
/** Most frames a machine may have: 2^31 (8 TiB), so every frame index fits an Int32. */
export const FRAME_COUNT_MAX = 2 ** 31;
/** Largest order a request may name; above maxOrder it fails as no such block exists. */
const ORDER_LIMIT = 62;
const STATE_FREE = 0x80; // head of a free block; low 6 bits: order
const STATE_ALLOCATED = 0x40; // head of an allocated block; low 6 bits: order
const STATE_ORDER_MASK = 0x3f;
const NIL = -1;

/** Set while `BuddyPageAllocator.load` builds one: the constructor leaves the frames empty. */
let loading = false;

/** Why a page request failed. */
export type PageFailureCause = "exhaustion" | "contiguity";

/** Counters of the page allocator, all since boot. */
export interface PageAllocatorStats {
  /** Frames the machine has. */
  frameCount: number;
  /** Frames on the free lists now. */
  freeFrameCount: number;
  /** Largest order with a free block now, -1 if none. */
  largestFreeOrder: number;
  /** Successful and failed allocation calls. */
  allocCalls: number;
  /** Free calls. */
  freeCalls: number;
  /** Allocation calls that returned no block. */
  failedCalls: number;
  /** Failures although at least 2^order frames were free (no contiguous run). */
  failedContiguity: number;
  /** Failures with fewer than 2^order frames free. */
  failedExhaustion: number;
  /** Failures per requested order. */
  failedByOrder: Record<number, number>;
}

/** A page allocator could not free a block as asked (double free, bad order). */
export class PageFreeError extends Error {
  /** The error's name. */
  override name = "PageFreeError";
}

/**
 * Binary buddy allocator over the frames of one machine.
 *
 * @example
 * ```ts
 * import { BuddyPageAllocator } from "./page_allocator.ts";
 * import assert from "node:assert/strict";
 * const pages = new BuddyPageAllocator(1024);
 * const frame = pages.alloc(2, 7);
 * assert.equal(pages.pagesOwnedBy(7), 4);
 * pages.free(frame, 2);
 * assert.equal(pages.freeFrameCount, 1024);
 * assert.deepEqual(pages.check(), []);
 * ```
 */
export class BuddyPageAllocator {
  /** Frames the machine has. */
  readonly frameCount: number;
  /** Largest order managed. */
  readonly maxOrder: number;

  #state: Uint8Array;
  /** Free head: next on list. Allocated head: owner. */
  #link0: Int32Array;
  /** Free head: previous on list. Allocated frame: the owner allocator's word. */
  #link1: Int32Array;
  #heads: Int32Array;
  #freeBlocksByOrder: Float64Array;
  #freeFrames = 0;
  // Per-owner frame counts, indexed by owner id (dense typed arrays: owner ids of a
  // domain's reservation sit near 2^15, which would make a plain array sparse and slow).
  #ownerFrames = new Float64Array(64);
  #ownerPeakFrames = new Float64Array(64);

  #allocCalls = 0;
  #freeCalls = 0;
  #failedContiguity = 0;
  #failedExhaustion = 0;
  #failedByOrder: Float64Array;

  /**
   * Boot a machine of `frameCount` frames, all free.
   *
   * @param frameCount frames of the machine, 1..2^31
   * @param maxOrder largest block order, 0..30 (default {@link MAX_ORDER})
   * @throws {RangeError} on a frame count or order out of range
   */
  constructor(frameCount: number, maxOrder: number = MAX_ORDER) {
    if (!Number.isInteger(frameCount) || frameCount < 1 || frameCount > FRAME_COUNT_MAX) {
      throw new RangeError(
        `Invalid frame count ${frameCount}: expected an integer in [1, ${FRAME_COUNT_MAX}]`,
      );
    }
    if (!Number.isInteger(maxOrder) || maxOrder < 0 || maxOrder > 30) {
      throw new RangeError(`Invalid max order ${maxOrder}: expected an integer in [0, 30]`);
    }
    this.frameCount = frameCount;
    this.maxOrder = maxOrder;
    this.#state = new Uint8Array(frameCount);
    this.#link0 = new Int32Array(frameCount);
    this.#link1 = new Int32Array(frameCount);
    this.#heads = new Int32Array(maxOrder + 1).fill(NIL);
    this.#freeBlocksByOrder = new Float64Array(maxOrder + 1);
    this.#failedByOrder = new Float64Array(ORDER_LIMIT + 1);
    if (loading) return; // a load sets every frame from the saved state
    // Maximal naturally aligned blocks, ascending address order.
    let frame = 0;
    while (frame < frameCount) {
      let order = maxOrder;
      while (order > 0 && (frame % (2 ** order) !== 0 || frame + 2 ** order > frameCount)) order--;
      this.#pushFree(frame, order);
      frame += 2 ** order;
    }
  }

  /** Frames on the free lists now. */
  get freeFrameCount(): number {
    return this.#freeFrames;
  }

  /** Allocation and free calls since boot (cheap: for per-operation cost accounting). */
  get callCount(): number {
    return this.#allocCalls + this.#freeCalls;
  }

  /**
   * Allocate a naturally aligned block of 2^order frames for `owner`.
   *
   * @param order 0..62; above maxOrder it always fails (no block that large exists)
   * @param owner a non-negative integer naming who holds the pages
   * @returns the first frame of the block, or -1 if no free block of that order
   *   exists (counted as a contiguity failure if enough frames were free)
   * @throws {RangeError} on an order or owner out of range
   */
  alloc(order: number, owner: number): number {
    if (!(order >= 0 && order <= ORDER_LIMIT && Number.isInteger(order))) {
      throw new RangeError(
        `Invalid page order ${order}: expected an integer in [0, ${ORDER_LIMIT}]`,
      );
    }
    if (!(owner >= 0 && Number.isInteger(owner) && owner <= OWNER_MAX)) {
      throw new RangeError(`Invalid owner ${owner}: expected an integer in [0, ${OWNER_MAX}]`);
    }
    this.#allocCalls++;
    let j = order;
    while (j <= this.maxOrder && this.#heads[j] === NIL) j++;
    if (j > this.maxOrder) { // every order above maxOrder lands here too: no such block
      this.#failedByOrder[order]!++;
      if (this.#freeFrames >= 2 ** order) this.#failedContiguity++;
      else this.#failedExhaustion++;
      return NIL;
    }
    let frame = this.#heads[j]!;
    this.#unlink(frame, j);
    while (j > order) {
      j--;
      this.#pushFree(frame, j); // lower half back on the list
      frame += 1 << j; // keep the upper half
    }
    this.#markAllocated(frame, order, owner);
    this.#link1[frame] = 0;
    return frame;
  }

  /**
   * Allocate the naturally aligned block of 2^order frames at `frame` for `owner`,
   * splitting the free block that holds it (the halves not wanted go back on their
   * lists). A pool rebuilt from a snapshot claims the frames its source was given this
   * way (hypervisor/snapshot.ts); Xen has no such call.
   *
   * @throws {RangeError} if the frames are outside the machine, not aligned to the
   *   order, or not free; nothing changes then
   */
  allocAt(frame: number, order: number, owner: number): void {
    if (!(owner >= 0 && Number.isInteger(owner) && owner <= OWNER_MAX)) {
      throw new RangeError(`Invalid owner ${owner}: expected an integer in [0, ${OWNER_MAX}]`);
    }
    if (
      !Number.isInteger(order) || order < 0 || order > this.maxOrder ||
      !Number.isInteger(frame) || frame < 0 || frame + 2 ** order > this.frameCount ||
      frame % 2 ** order !== 0
    ) {
      throw new RangeError(
        `Cannot claim frames [${frame}, ${frame} + 2^${order}): not an aligned block of this ` +
          `${this.frameCount}-frame machine`,
      );
    }
    const head = this.blockHeadOf(frame);
    const s = this.#state[head]!;
    let j = s & STATE_ORDER_MASK;
    if ((s & STATE_FREE) === 0 || j < order) {
      throw new RangeError(`Cannot claim frames [${frame}, ${frame} + 2^${order}): not free`);
    }
    this.#allocCalls++;
    this.#unlink(head, j);
    let block = head;
    while (j > order) {
      j--;
      const upper = block + (1 << j);
      if (frame >= upper) {
        this.#pushFree(block, j);
        block = upper;
      } else {
        this.#pushFree(upper, j);
      }
    }
    this.#markAllocated(block, order, owner);
    this.#link1[block] = 0;
  }

  /**
   * Free the 2^order frames at `frame`: either a whole allocated block, or a
   * naturally aligned part of one (as Xen's `xmalloc_whole_pages()` frees the unused
   * tail of a block; the rest of the block stays allocated as smaller blocks).
   *
   * @throws {PageFreeError} if those frames are not allocated (double free) or not
   *   aligned to the order; nothing changes then
   */
  free(frame: number, order: number): void {
    const owner = this.#takeAllocated(frame, order);
    this.#freeCalls++;
    this.#addOwnerFrames(owner, -(2 ** order));
    let head = frame;
    let o = order;
    while (o < this.maxOrder) {
      const buddy = head ^ (1 << o);
      if (buddy >= this.frameCount || this.#state[buddy] !== (STATE_FREE | o)) break;
      this.#unlink(buddy, o);
      this.#state[buddy] = 0;
      this.#state[head] = 0;
      head = Math.min(head, buddy);
      o++;
    }
    this.#pushFree(head, o);
  }

  /** Frames `owner` holds now. */
  pagesOwnedBy(owner: number): number {
    return this.#ownerFrames[owner] ?? 0;
  }

  /** Most frames `owner` has held at once (updated on every allocation). */
  peakPagesOwnedBy(owner: number): number {
    return this.#ownerPeakFrames[owner] ?? 0;
  }

  /** Reset the peak of `owner` to what it holds now. */
  resetPeak(owner: number): void {
    this.#ownerPeakFrames[owner] = this.#ownerFrames[owner] ?? 0;
  }

  /** Whether `frame` heads an allocated block held by `owner`. */
  isAllocatedHead(frame: number, owner: number): boolean {
    return frame >= 0 && frame < this.frameCount &&
      (this.#state[frame]! & STATE_ALLOCATED) !== 0 && this.#link0[frame] === owner;
  }

  /** Order of the allocated block headed by `frame` (-1 if none). */
  allocatedOrder(frame: number): number {
    const s = this.#state[frame] ?? 0;
    return (s & STATE_ALLOCATED) !== 0 ? s & STATE_ORDER_MASK : -1;
  }

  /** Owner of the allocated block headed by `frame` (-1 if none). */
  ownerOf(frame: number): number {
    return this.allocatedOrder(frame) >= 0 ? this.#link0[frame]! : -1;
  }

  /**
   * The owning allocator's word of an allocated frame (any frame of its block; a
   * block's head starts at 0, other frames hold whatever the owner last wrote).
   */
  privateWord(frame: number): number {
    return this.#link1[frame]!;
  }

  /** Set the owning allocator's word of a frame it holds. */
  setPrivateWord(frame: number, value: number): void {
    this.#link1[frame] = value;
  }

  /**
   * First frame of the block (free or allocated) that holds `frame`, or -1 if
   * `frame` is outside the machine. Walks at most maxOrder alignments.
   */
  blockHeadOf(frame: number): number {
    if (!Number.isInteger(frame) || frame < 0 || frame >= this.frameCount) return -1;
    for (let j = 0; j <= this.maxOrder; j++) {
      const head = frame - (frame & ((1 << j) - 1));
      const s = this.#state[head]!;
      if (
        (s & (STATE_FREE | STATE_ALLOCATED)) !== 0 && head + (1 << (s & STATE_ORDER_MASK)) > frame
      ) {
        return head;
      }
    }
    return -1;
  }

  /** Largest order with a free block, -1 if none. */
  largestFreeOrder(): number {
    for (let o = this.maxOrder; o >= 0; o--) if (this.#heads[o] !== NIL) return o;
    return -1;
  }

  /**
   * Write the allocator's whole state: every frame's state byte and words (sparse:
   * the non-zero ones), the free lists' heads, the per-owner counts and every counter.
   * Time and size grow with the frames and the blocks, not with the calls made.
   */
  saveState(w: StateWriter): void {
    w.num(this.frameCount);
    w.num(this.maxOrder);
    w.num(this.#freeFrames);
    w.num(this.#allocCalls);
    w.num(this.#freeCalls);
    w.num(this.#failedContiguity);
    w.num(this.#failedExhaustion);
    w.array(this.#heads);
    w.array(this.#freeBlocksByOrder);
    w.array(this.#failedByOrder);
    w.array(this.#ownerFrames);
    w.array(this.#ownerPeakFrames);
    for (const a of [this.#state, this.#link0, this.#link1]) writeSparse(w, a);
  }

  /**
   * The allocator whose state `r` holds (from {@link saveState}).
   *
   * @throws {StateError} if the state does not read back or is not consistent
   */
  static load(r: StateReader): BuddyPageAllocator {
    try {
      loading = true;
      let pages: BuddyPageAllocator;
      try {
        pages = new BuddyPageAllocator(r.num(), r.num());
      } finally {
        loading = false;
      }
      pages.#loadRest(r);
      return pages;
    } catch (e) {
      if (e instanceof StateError) throw e;
      throw new StateError(`A saved page allocator does not load: ${(e as Error).message}`);
    }
  }

  /**
   * Become the allocator whose state `r` holds, in place (a machine that others hold
   * references to: a checkpoint loads into it). The saved machine must have this one's
   * frames and largest order.
   *
   * @throws {StateError} if the state does not read back, is of another machine, or
   *   is not consistent (this allocator is then unusable)
   */
  loadState(r: StateReader): void {
    const frames = r.num();
    const maxOrder = r.num();
    if (frames !== this.frameCount || maxOrder !== this.maxOrder) {
      throw new StateError(
        `A saved page allocator of ${frames} frames (order ${maxOrder}) cannot load into one ` +
          `of ${this.frameCount} frames (order ${this.maxOrder})`,
      );
    }
    try {
      this.#loadRest(r);
    } catch (e) {
      if (e instanceof StateError) throw e;
      throw new StateError(`A saved page allocator does not load: ${(e as Error).message}`);
    }
  }

  #loadRest(r: StateReader): void {
    const pages = this as BuddyPageAllocator;
    pages.#freeFrames = r.num();
    pages.#allocCalls = r.num();
    pages.#freeCalls = r.num();
    pages.#failedContiguity = r.num();
    pages.#failedExhaustion = r.num();
    pages.#heads = r.array(Int32Array);
    pages.#freeBlocksByOrder = r.array(Float64Array);
    pages.#failedByOrder = r.array(Float64Array);
    pages.#ownerFrames = r.array(Float64Array);
    pages.#ownerPeakFrames = r.array(Float64Array);
    pages.#clearFrames();
    readSparse(r, pages.#state);
    readSparse(r, pages.#link0);
    readSparse(r, pages.#link1);
    const problems = pages.check();
    if (problems.length > 0) {
      throw new StateError(`A saved page allocator is not consistent: ${problems[0]}`);
    }
  }

  /** Counters since boot. */
  stats(): PageAllocatorStats {
    const failedByOrder: Record<number, number> = {};
    this.#failedByOrder.forEach((n, order) => {
      if (n > 0) failedByOrder[order] = n;
    });
    return {
      frameCount: this.frameCount,
      freeFrameCount: this.#freeFrames,
      largestFreeOrder: this.largestFreeOrder(),
      allocCalls: this.#allocCalls,
      freeCalls: this.#freeCalls,
      failedCalls: this.#failedContiguity + this.#failedExhaustion,
      failedContiguity: this.#failedContiguity,
      failedExhaustion: this.#failedExhaustion,
      failedByOrder,
    };
  }

  /** Cause a request of `order` would fail with now, or null if it would succeed. */
  failureCause(order: number): PageFailureCause | null {
    for (let j = order; j <= this.maxOrder; j++) if (this.#heads[j] !== NIL) return null;
    return this.#freeFrames >= 2 ** order ? "contiguity" : "exhaustion";
  }

  /**
   * Walk every free list and every block and report each broken invariant:
   * list links agree both ways, every listed block heads a free block of that order,
   * is aligned and inside the machine; no free block has a free buddy of its order;
   * the blocks tile the machine exactly; free and per-owner frame counts add up.
   *
   * @returns one message per violation (empty when consistent)
   */
  check(): string[] {
    const errors: string[] = [];
    let listedFree = 0;
    for (let o = 0; o <= this.maxOrder; o++) {
      let prev = NIL;
      let count = 0;
      for (let f = this.#heads[o]!; f !== NIL; f = this.#link0[f]!) {
        if (++count > this.frameCount) {
          errors.push(`free list ${o} has a cycle`);
          break;
        }
        if (this.#state[f] !== (STATE_FREE | o)) {
          errors.push(`frame ${f} on list ${o} is not a free head of order ${o}`);
        }
        if (f % 2 ** o !== 0 || f + 2 ** o > this.frameCount) {
          errors.push(`frame ${f} misaligned or outside machine for order ${o}`);
        }
        if (this.#link1[f] !== prev) errors.push(`frame ${f} on list ${o} has a wrong back link`);
        const buddy = f ^ (2 ** o);
        if (
          o < this.maxOrder && buddy < this.frameCount && this.#state[buddy] === (STATE_FREE | o)
        ) {
          errors.push(`free frame ${f} and its buddy ${buddy} were not merged at order ${o}`);
        }
        prev = f;
        listedFree += 2 ** o;
      }
      if (count !== this.#freeBlocksByOrder[o]) {
        errors.push(`list ${o} holds ${count} blocks, counted ${this.#freeBlocksByOrder[o]}`);
      }
    }
    if (listedFree !== this.#freeFrames) {
      errors.push(`free lists hold ${listedFree} frames, counted ${this.#freeFrames}`);
    }
    const owned = new Map<number, number>(); // a Map: a damaged owner id may be huge
    let walkedFree = 0;
    for (let f = 0; f < this.frameCount;) {
      const s = this.#state[f]!;
      const o = s & STATE_ORDER_MASK;
      if ((s & (STATE_FREE | STATE_ALLOCATED)) === 0) {
        errors.push(`frame ${f} should head a block but does not`);
        break;
      }
      if (s & STATE_FREE) walkedFree += 2 ** o;
      else owned.set(this.#link0[f]!, (owned.get(this.#link0[f]!) ?? 0) + 2 ** o);
      f += 2 ** o;
    }
    if (walkedFree !== this.#freeFrames) {
      errors.push(`blocks hold ${walkedFree} free frames, counted ${this.#freeFrames}`);
    }
    const ids = new Set(owned.keys());
    this.#ownerFrames.forEach((n, id) => {
      if (n !== 0) ids.add(id);
    });
    for (const id of [...ids].sort((a, b) => a - b)) {
      if ((owned.get(id) ?? 0) !== (this.#ownerFrames[id] ?? 0)) {
        errors.push(
          `owner ${id} holds ${owned.get(id) ?? 0} frames, counted ${this.#ownerFrames[id] ?? 0}`,
        );
      }
    }
    return errors;
  }

  /**
   * Visit every block in address order (for page maps and audits).
   *
   * @param visit called with first frame, order, and owner (-1 for a free block)
   */
  forEachBlock(visit: (frame: number, order: number, owner: number) => void): void {
    for (let f = 0; f < this.frameCount;) {
      const s = this.#state[f]!;
      const o = s & STATE_ORDER_MASK;
      visit(f, o, (s & STATE_FREE) ? -1 : this.#link0[f]!);
      f += 2 ** o;
    }
  }

  // -- internals ---------------------------------------------------------------

  /**
   * Zero every frame's state and words, writing only where something was written
   * (block heads, and the frames of allocated blocks): a fresh machine's untouched
   * frames stay untouched, so a load does not make the OS back them.
   */
  #clearFrames(): void {
    for (let f = 0; f < this.frameCount;) {
      const s = this.#state[f]!;
      const size = s === 0 ? 1 : 2 ** (s & STATE_ORDER_MASK);
      if (s === 0) {
        if (this.#link0[f] !== 0) this.#link0[f] = 0;
        if (this.#link1[f] !== 0) this.#link1[f] = 0;
      } else if ((s & STATE_ALLOCATED) !== 0) {
        this.#link0.fill(0, f, f + size);
        this.#link1.fill(0, f, f + size);
      } else {
        this.#link0[f] = 0;
        this.#link1[f] = 0;
      }
      this.#state[f] = 0;
      f += size;
    }
  }

  #pushFree(frame: number, order: number): void {
    const head = this.#heads[order]!;
    this.#state[frame] = STATE_FREE | order;
    this.#link0[frame] = head;
    this.#link1[frame] = NIL;
    if (head !== NIL) this.#link1[head] = frame;
    this.#heads[order] = frame;
    this.#freeBlocksByOrder[order]!++;
    this.#freeFrames += 2 ** order;
  }

  #unlink(frame: number, order: number): void {
    const next = this.#link0[frame]!;
    const prev = this.#link1[frame]!;
    if (prev === NIL) this.#heads[order] = next;
    else this.#link0[prev] = next;
    if (next !== NIL) this.#link1[next] = prev;
    this.#freeBlocksByOrder[order]!--;
    this.#freeFrames -= 2 ** order;
  }

  #markAllocated(frame: number, order: number, owner: number): void {
    this.#state[frame] = STATE_ALLOCATED | order;
    this.#link0[frame] = owner;
    this.#addOwnerFrames(owner, 2 ** order);
  }

  #addOwnerFrames(owner: number, delta: number): void {
    if (owner >= this.#ownerFrames.length) {
      let n = this.#ownerFrames.length;
      while (n <= owner) n *= 2;
      this.#ownerFrames = grown(this.#ownerFrames, n);
      this.#ownerPeakFrames = grown(this.#ownerPeakFrames, n);
    }
    const now = this.#ownerFrames[owner]! + delta;
    this.#ownerFrames[owner] = now;
    if (now > (this.#ownerPeakFrames[owner] ?? 0)) this.#ownerPeakFrames[owner] = now;
  }

  /**
   * Validate a free of 2^order frames at `frame` and make them one allocated head,
   * splitting the enclosing allocated block if the frames are only part of it.
   * Returns the owner. Throws before changing anything.
   */
  #takeAllocated(frame: number, order: number): number {
    if (!Number.isInteger(frame) || frame < 0 || frame >= this.frameCount) {
      throw new PageFreeError(
        `Cannot free frame ${frame}: outside the machine's ${this.frameCount} frames`,
      );
    }
    if (
      !Number.isInteger(order) || order < 0 || order > this.maxOrder ||
      (frame & ((1 << order) - 1)) !== 0
    ) {
      throw new PageFreeError(
        `Cannot free frame ${frame} at order ${order}: not aligned to that order`,
      );
    }
    if (this.#state[frame] === (STATE_ALLOCATED | order)) return this.#link0[frame]!;
    // Find the allocated block that encloses [frame, frame + 2^order): blocks tile
    // the machine, so the first block head met at a coarser alignment decides.
    let enclosing = -1;
    let k = -1;
    for (let j = order + 1; j <= this.maxOrder; j++) {
      const head = frame - (frame & ((1 << j) - 1));
      const hs = this.#state[head]!;
      if ((hs & (STATE_FREE | STATE_ALLOCATED)) === 0) continue;
      const o = hs & STATE_ORDER_MASK;
      if ((hs & STATE_ALLOCATED) !== 0 && o > order && head + (1 << o) > frame) {
        enclosing = head;
        k = o;
      }
      break;
    }
    const s = this.#state[frame]!;
    if (enclosing < 0) {
      const what = (s & STATE_FREE)
        ? "it is already free"
        : (s & STATE_ALLOCATED)
        ? `it heads an allocated block of order ${s & STATE_ORDER_MASK}`
        : "no allocated block holds it";
      throw new PageFreeError(`Cannot free frame ${frame} at order ${order}: ${what}`);
    }
    // Split the enclosing block down to `order`; every half not holding `frame`
    // stays allocated to the same owner with its own head.
    const owner = this.#link0[enclosing]!;
    let head = enclosing;
    for (let o = k - 1; o >= order; o--) {
      const upper = head + (1 << o);
      const keep = frame >= upper ? upper : head;
      const other = keep === upper ? head : upper;
      this.#state[other] = STATE_ALLOCATED | o;
      this.#link0[other] = owner;
      if (other !== enclosing) this.#link1[other] = 0; // a new head starts at 0
      head = keep;
    }
    this.#state[frame] = STATE_ALLOCATED | order;
    this.#link0[frame] = owner;
    return owner;
  }
}

/** The page allocator's call counters as the API and reports name them. */
export function pageAllocatorCalls(pa: PageAllocatorStats): {
  alloc_calls: number;
  free_calls: number;
  failed_calls: number;
  failed_contiguity: number;
  failed_exhaustion: number;
} {
  return {
    alloc_calls: pa.allocCalls,
    free_calls: pa.freeCalls,
    failed_calls: pa.failedCalls,
    failed_contiguity: pa.failedContiguity,
    failed_exhaustion: pa.failedExhaustion,
  };
}

/** Write the non-zero elements of `a`: their indices, then their values. */
function writeSparse(w: StateWriter, a: Uint8Array | Int32Array): void {
  let n = 0;
  for (let i = 0; i < a.length; i++) if (a[i] !== 0) n++;
  const at = new Int32Array(n);
  const values = a instanceof Uint8Array ? new Uint8Array(n) : new Int32Array(n);
  for (let i = 0, k = 0; i < a.length; i++) {
    if (a[i] !== 0) {
      at[k] = i;
      values[k++] = a[i]!;
    }
  }
  w.num(a.length);
  w.array(at);
  w.array(values);
}

/** Set in `a` (all zeros: see #clearFrames) what `writeSparse` wrote. */
function readSparse(r: StateReader, a: Uint8Array | Int32Array): void {
  if (r.num() !== a.length) throw new StateError("A saved page allocator's frame count differs");
  const at = r.array(Int32Array);
  const values = a instanceof Uint8Array ? r.array(Uint8Array) : r.array(Int32Array);
  for (let k = 0; k < at.length; k++) {
    const i = at[k]!;
    if (!(i >= 0 && i < a.length) || (k > 0 && i <= at[k - 1]!)) {
      throw new StateError(`A saved page allocator's frame index ${i} is out of order or range`);
    }
    a[i] = values[k]!;
  }
}

/** Bytes of machine memory in `frameCount` frames. */
export function framesToBytes(frameCount: number): number {
  return frameCount * PAGE_SIZE_BYTES;
}
