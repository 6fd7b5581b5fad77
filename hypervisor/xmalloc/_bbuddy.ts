/**
 * Unikraft's binary buddy page allocator, lib/ukallocbbuddy/bbuddy.c (unikraft/unikraft
 * at eaf6fda1d420; the file last changed in a9dd5f59, 2023): `bbuddy_palloc()`,
 * `bbuddy_pfree()`, `bbuddy_addmem()`, `map_alloc()`, `map_free()`,
 * `allocated_in_map()`, `map_get_memr()`, `num_pages_to_order()`; x86_64 values.
 * The ukalloc glue that turns malloc sizes into page counts is in `buddy.ts`.
 *
 * Sections, in the order of the C file: constants, data layout, the allocation
 * bitmap, free-list operations, the buddy allocator proper, adding memory, the debug
 * walk.
 *
 * ## Glossary
 *
 * - chunk: 2^level naturally aligned pages (`chunk_head_t` at its first page,
 *   `chunk_tail_t` at its last; the tail is written but never read, so it is not
 *   modelled). Alignment is of the absolute address, so a chunk's buddy is the chunk
 *   at `address ^ (PAGE_SIZE << level)`.
 * - free lists: `free_head[FREELIST_SIZE]`, one doubly linked LIFO list per level,
 *   0..51 (`FREELIST_SIZE = 64 - PAGE_SHIFT`). Push at the head, unlink anywhere.
 * - memory region (`struct uk_bbpalloc_memr`): a range handed to `bbuddy_addmem()`.
 *   Its first pages hold the memr struct (40 bytes) and `mm_alloc_bitmap`, one bit per
 *   page (1: allocated); the rest is carved into chunks. Regions sit on a singly
 *   linked list, newest first, that `map_get_memr()` walks linearly on every bitmap
 *   access ("it should be just one region in most cases").
 *
 * ## Data layout
 *
 * A region here is one 2^order block of the machine's pages (its data pages, so the
 * carve gives exactly one chunk of that order) plus `headerPages` pages taken
 * separately for its memr struct and bitmap. That is `bbuddy_addmem()` of the range
 * `[data - headerPages, data + 2^order)` with the header pages placed elsewhere (see
 * Deviations). Each region has a slot; per slot, typed arrays indexed by the page's
 * offset in the region hold the chunk head fields (`level`, the list links as frame
 * numbers, -1 for NULL), the bitmap (32-bit words), and the `struct metadata_ifpages`
 * that ukalloc writes into an allocated chunk (`num_pages`, `base`, and the model's
 * note of which pointer was handed out). Every data frame carries its slot in the
 * page allocator's private word, so finding an address's region is O(1).
 *
 * ## Invariants (checked by {@link BbuddyHeap.check})
 *
 * - every region's pages are tiled by chunks: an allocated chunk has all its bitmap
 *   bits set and carries one metadata record; a free chunk has all bits clear, its
 *   head's level is its order, it is on the list of that order and only there;
 * - no free chunk has a free buddy of the same level inside its region (bbuddy
 *   merges eagerly);
 * - `nr_free_pages == sum over free lists of 2^level == pages with a clear bit`;
 * - list links agree both ways; list lengths agree with the counts kept.
 *
 * ## Steps (per call; the front end resets {@link BbuddyHeap.steps})
 *
 * - +1 per free list the search of `bbuddy_palloc()` examines (`FREELIST_EMPTY`);
 * - +1 per free-list operation: the unlink of the chunk taken, the push of each spare
 *   half when splitting, the unlink of each buddy merged and the push of the result
 *   in `bbuddy_pfree()`, the push of each chunk `bbuddy_addmem()` carves;
 * - +1 per buddy test of the merge loop (`allocated_in_map()` and the level compare);
 * - +1 per 64-bit word of `mm_alloc_bitmap` a `map_alloc()` / `map_free()` covers;
 * - +1 per memr node `map_get_memr()` visits (the matching node included; a page
 *   outside every region visits all of them).
 * Page-allocator work (taking a region's pages from the machine) is not counted.
 *
 * ## Deviations, each deliberate
 *
 * - The header pages of a region (memr struct and bitmap) are a separate block of the
 *   machine's pages rather than the pages just below the data: the page allocator
 *   hands out only power-of-two blocks, and putting the header inside the block
 *   would halve the largest chunk of every region. Their number is what
 *   `bbuddy_addmem()` computes for that range. In C the header pages also fence
 *   regions apart: a page between two regions is in no region, so `allocated_in_map()`
 *   says "allocated" and no merge crosses. The model fences the same way: a buddy
 *   outside the freed chunk's region counts as allocated.
 * - Regions can be removed ({@link BbuddyHeap.releaseFreeRegions}); bbuddy has no
 *   such operation (ukalloc has `addmem`, no `removemem`).
 * - `map_get_memr()`'s walk is counted, not performed: the region comes from the page
 *   allocator's private word and its place on the memr list from its sequence number.
 *
 * @module
 */

import { PAGE_SHIFT, PAGE_SIZE_BYTES } from "../../src/units.ts";
import { grown } from "../../src/typed_array.ts";
import { StateError, type StateReader, type StateWriter } from "../../src/state_codec.ts";
import type { PageSource } from "./engine.ts";

// -- constants (bbuddy.c, alloc.h, x86_64) ----------------------------------------

const POINTER_BYTES = 8;
const BITS_PER_BYTE = 8;
/** FREELIST_SIZE: `(sizeof(void *) << 3) - __PAGE_SHIFT`, free lists of levels 0..51. */
export const FREELIST_SIZE = POINTER_BYTES * BITS_PER_BYTE - PAGE_SHIFT;
/** PAGES_PER_MAPWORD: bits in one `unsigned long` of `mm_alloc_bitmap`. */
export const PAGES_PER_MAPWORD = POINTER_BYTES * BITS_PER_BYTE;
/** sizeof(struct uk_bbpalloc_memr): next, first_page, nr_pages, bitmap size, bitmap. */
export const MEMR_STRUCT_BYTES = 5 * POINTER_BYTES;
/** sizeof(chunk_head_t): next, pprev, level (padded to 8). */
const CHUNK_HEAD_BYTES = 3 * POINTER_BYTES;
/**
 * sizeof(struct uk_alloc) without CONFIG_LIBUKALLOC_IFSTATS / IFMALLOC: 13 function
 * pointers and `next` (`priv[]` adds nothing).
 */
export const UK_ALLOC_STRUCT_BYTES = 14 * POINTER_BYTES;
/** sizeof(struct uk_bbpalloc): nr_free_pages, free_head[], free_tail[], memr_head. */
export const UK_BBPALLOC_STRUCT_BYTES = POINTER_BYTES + FREELIST_SIZE * POINTER_BYTES +
  FREELIST_SIZE * CHUNK_HEAD_BYTES + POINTER_BYTES;
/** `uk_allocbbuddy_init()`: metalen = round_pgup(sizeof(*a) + sizeof(*b)). */
export const DESCRIPTOR_PAGES = Math.ceil(
  (UK_ALLOC_STRUCT_BYTES + UK_BBPALLOC_STRUCT_BYTES) / PAGE_SIZE_BYTES,
);
/** Largest region order: region page offsets and frame links stay Int32. */
export const REGION_ORDER_MAX = 30;

const NIL = -1;

if (FREELIST_SIZE !== 52) throw new Error("bbuddy: x86_64 has 52 free lists");
if (UK_BBPALLOC_STRUCT_BYTES !== 1680) throw new Error("bbuddy: struct uk_bbpalloc is 1680 B");
if (DESCRIPTOR_PAGES !== 1) throw new Error("bbuddy: the allocator descriptor fits one page");

/** Names of the step kinds, in `stepTotals`. */
export const BBUDDY_STEP_KINDS = [
  "list_checks",
  "list_ops",
  "buddy_checks",
  "bitmap_words",
  "memr_visits",
] as const;

/**
 * `num_pages_to_order()`: log2 of the next power of two of `numPages` (>= 1).
 *
 * @example
 * ```ts
 * import { numPagesToOrder } from "./_bbuddy.ts";
 * import assert from "node:assert/strict";
 * assert.deepEqual([1, 2, 3, 4, 5].map(numPagesToOrder), [0, 1, 2, 2, 3]);
 * ```
 */
export function numPagesToOrder(numPages: number): number {
  if (numPages <= 1) return 0;
  let order = 0;
  while (2 ** order < numPages) order++;
  return order;
}

/**
 * Header pages `bbuddy_addmem()` takes from a range whose data part is 2^order pages:
 * the smallest h with `round_pgup(sizeof(memr) + DIV_ROUND_UP(h + 2^order, 8)) ==
 * h pages` (1 page up to order 14, then growing with the bitmap).
 */
export function headerPagesFor(order: number): number {
  let h = 1;
  for (let i = 0; i < 8; i++) { // converges in two rounds; bounded anyway
    const bitmapBytes = Math.ceil((h + 2 ** order) / BITS_PER_BYTE);
    const next = Math.ceil((MEMR_STRUCT_BYTES + bitmapBytes) / PAGE_SIZE_BYTES);
    if (next === h) return h;
    h = next;
  }
  throw new Error(`bbuddy: header size of an order-${order} region does not converge`);
}

/** A region as {@link BbuddyHeap.view} shows it. */
export interface BbuddyRegionView {
  /** First data frame (`memr->first_page`). */
  dataFrame: number;
  /** Data pages are 2^order. */
  order: number;
  /** First frame of the memr struct and bitmap. */
  headerFrame: number;
  /** Pages of the memr struct and bitmap. */
  headerPages: number;
  /** Position on the memr list, 0 = head (the newest region). */
  memrIndex: number;
  /** `mm_alloc_bitmap`, one character per data page: `1` allocated, `0` free. */
  bitmap: string;
}

/** The heap's state for tests and debugging. */
export interface BbuddyView {
  /** Regions in memr-list order (newest first). */
  regions: BbuddyRegionView[];
  /** Non-empty free lists by level: chunk frames, head first. */
  freeLists: Record<number, number[]>;
  /** `nr_free_pages`. */
  nrFreePages: number;
}

// -- the allocation bitmap -----------------------------------------------------

/** Set (`value` 1) or clear the bits [first, first + count) of a bitmap. */
function fillBits(bitmap: Uint32Array, first: number, count: number, value: 0 | 1): void {
  const end = first + count;
  for (let i = first; i < end;) {
    const bit = i & 31;
    const span = Math.min(32 - bit, end - i);
    const mask = span === 32 ? -1 : ((1 << span) - 1) << bit;
    const w = i >>> 5;
    bitmap[w] = value === 1 ? bitmap[w]! | mask : bitmap[w]! & ~mask;
    i += span;
  }
}

function testBit(bitmap: Uint32Array, i: number): boolean {
  return ((bitmap[i >>> 5]! >>> (i & 31)) & 1) === 1;
}

/** Words of PAGES_PER_MAPWORD bits that hold the bits [first, first + count). */
function mapWords(first: number, count: number): number {
  return Math.floor((first + count - 1) / PAGES_PER_MAPWORD) -
    Math.floor(first / PAGES_PER_MAPWORD) + 1;
}

/** One bbuddy allocator (`struct uk_bbpalloc`) over regions from a page source. */
export class BbuddyHeap {
  readonly #source: PageSource;
  readonly #headerWord: number;

  // data layout: region slots, then per-slot page arrays
  #slotFrame = new Int32Array(8).fill(NIL);
  #slotOrder = new Uint8Array(8);
  #slotHeaderFrame = new Int32Array(8).fill(NIL);
  #slotHeaderPages = new Int32Array(8);
  /** Sequence number: 0 = oldest live region, so memr index = regionCount - 1 - seq. */
  #slotSeq = new Int32Array(8);
  #next: Int32Array[] = [];
  #prev: Int32Array[] = [];
  #level: Uint8Array[] = [];
  #bitmap: Uint32Array[] = [];
  #metaNumPages: Uint32Array[] = [];
  #metaBase: Int32Array[] = [];
  #metaPtrOffset: Uint32Array[] = [];
  #freeSlots: number[] = [];
  #slotsUsed = 0;
  #regionCount = 0;
  #regionPages = 0;

  // struct uk_bbpalloc
  #nrFreePages = 0;
  #freeHead = new Int32Array(FREELIST_SIZE).fill(NIL);
  #freeChunks = new Float64Array(FREELIST_SIZE); // model-only: list lengths

  /** Steps of the current call; the front end resets it. */
  steps = 0;
  /** Step totals by kind. */
  listChecks = 0;
  /** Free-list unlinks and pushes. */
  listOps = 0;
  /** Buddy tests of the merge loop. */
  buddyChecks = 0;
  /** Bitmap words covered by map_alloc / map_free. */
  bitmapWords = 0;
  /** memr nodes visited by map_get_memr. */
  memrVisits = 0;
  /** Allocated chunks. */
  allocatedChunks = 0;
  /** Pages of allocated chunks. */
  allocatedPages = 0;

  /**
   * @param source where regions come from
   * @param headerWord private word of a region's header frame (negative: not a slot)
   */
  constructor(source: PageSource, headerWord: number) {
    if (headerWord >= 0) throw new RangeError(`Invalid header word ${headerWord}: must be < 0`);
    this.#source = source;
    this.#headerWord = headerWord;
  }

  /** Regions on the memr list. */
  get regionCount(): number {
    return this.#regionCount;
  }

  /** Pages of every region, headers included. */
  get regionPages(): number {
    return this.#regionPages;
  }

  /** `nr_free_pages`. */
  get nrFreePages(): number {
    return this.#nrFreePages;
  }

  // -- regions and pages --------------------------------------------------------

  /** Slot of the region whose data pages hold `frame`, or -1. */
  regionOf(frame: number): number {
    const s = this.#source.pages.privateWord(frame);
    if (!(s >= 0 && s < this.#slotsUsed)) return NIL;
    const base = this.#slotFrame[s]!;
    return base !== NIL && frame >= base && frame - base < 2 ** this.#slotOrder[s]! ? s : NIL;
  }

  /** Whether the data page `frame` is allocated in its region's bitmap. */
  pageAllocated(frame: number): boolean {
    const s = this.#source.pages.privateWord(frame);
    return testBit(this.#bitmap[s]!, frame - this.#slotFrame[s]!);
  }

  /** `metadata->base` of the record at data page `frame`, or -1 if it holds none. */
  metadataBase(frame: number): number {
    const s = this.#source.pages.privateWord(frame);
    return this.#metaBase[s]![frame - this.#slotFrame[s]!]!;
  }

  /** `metadata->num_pages` of the record at data page `frame`. */
  metadataNumPages(frame: number): number {
    const s = this.#source.pages.privateWord(frame);
    return this.#metaNumPages[s]![frame - this.#slotFrame[s]!]!;
  }

  /** Bytes from `metadata->base` to the pointer handed out (model-only). */
  metadataPtrOffset(frame: number): number {
    const s = this.#source.pages.privateWord(frame);
    return this.#metaPtrOffset[s]![frame - this.#slotFrame[s]!]!;
  }

  /** Write a `struct metadata_ifpages` at data page `metaFrame` (ukalloc's job). */
  writeMetadata(metaFrame: number, baseFrame: number, numPages: number, ptrOffset: number): void {
    const s = this.#source.pages.privateWord(metaFrame);
    const x = metaFrame - this.#slotFrame[s]!;
    this.#metaBase[s]![x] = baseFrame;
    this.#metaNumPages[s]![x] = numPages;
    this.#metaPtrOffset[s]![x] = ptrOffset;
  }

  /** Forget the record at `metaFrame` (the chunk is being freed). */
  clearMetadata(metaFrame: number): void {
    const s = this.#source.pages.privateWord(metaFrame);
    const x = metaFrame - this.#slotFrame[s]!;
    this.#metaBase[s]![x] = NIL;
    this.#metaNumPages[s]![x] = 0;
    this.#metaPtrOffset[s]![x] = 0;
  }

  /** Steps of one map_get_memr() that finds region `slot`. */
  #memrWalk(slot: number): void {
    const visited = this.#regionCount - this.#slotSeq[slot]!;
    this.steps += visited;
    this.memrVisits += visited;
  }

  /** `map_alloc()`: mark 2^order pages at `frame` allocated. */
  #mapAlloc(frame: number, pageCount: number): void {
    const s = this.#source.pages.privateWord(frame);
    const x = frame - this.#slotFrame[s]!;
    this.#memrWalk(s);
    fillBits(this.#bitmap[s]!, x, pageCount, 1);
    const words = mapWords(x, pageCount);
    this.steps += words;
    this.bitmapWords += words;
    this.#nrFreePages -= pageCount;
  }

  /** `map_free()`: mark pages free. */
  #mapFree(frame: number, pageCount: number): void {
    const s = this.#source.pages.privateWord(frame);
    const x = frame - this.#slotFrame[s]!;
    this.#memrWalk(s);
    fillBits(this.#bitmap[s]!, x, pageCount, 0);
    const words = mapWords(x, pageCount);
    this.steps += words;
    this.bitmapWords += words;
    this.#nrFreePages += pageCount;
  }

  // -- free-list operations -----------------------------------------------------

  /** Link `frame` as a free chunk of `level` at the head of its list. */
  #push(frame: number, level: number): void {
    this.steps++;
    this.listOps++;
    const pages = this.#source.pages;
    const s = pages.privateWord(frame);
    const x = frame - this.#slotFrame[s]!;
    const head = this.#freeHead[level]!;
    this.#level[s]![x] = level;
    this.#next[s]![x] = head;
    this.#prev[s]![x] = NIL;
    if (head !== NIL) {
      const hs = pages.privateWord(head);
      this.#prev[hs]![head - this.#slotFrame[hs]!] = frame;
    }
    this.#freeHead[level] = frame;
    this.#freeChunks[level]!++;
  }

  /** Unlink the free chunk `frame` from the list of `level`. */
  #unlink(frame: number, level: number): void {
    this.steps++;
    this.listOps++;
    const pages = this.#source.pages;
    const s = pages.privateWord(frame);
    const x = frame - this.#slotFrame[s]!;
    const next = this.#next[s]![x]!;
    const prev = this.#prev[s]![x]!;
    if (prev === NIL) {
      this.#freeHead[level] = next;
    } else {
      const ps = pages.privateWord(prev);
      this.#next[ps]![prev - this.#slotFrame[ps]!] = next;
    }
    if (next !== NIL) {
      const ns = pages.privateWord(next);
      this.#prev[ns]![next - this.#slotFrame[ns]!] = prev;
    }
    this.#freeChunks[level]!--;
  }

  // -- the buddy allocator --------------------------------------------------------

  /**
   * `bbuddy_palloc()`: 2^num_pages_to_order(numPages) pages from the lowest non-empty
   * list at or above that order; a larger chunk is split in halves, keeping the lower
   * half and pushing the upper one.
   *
   * @returns the chunk's first frame, or -1 if no list has a chunk large enough
   */
  palloc(numPages: number): number {
    const order = numPagesToOrder(numPages);
    let i = order;
    for (; i < FREELIST_SIZE; i++) {
      this.steps++;
      this.listChecks++;
      if (this.#freeHead[i] !== NIL) break;
    }
    if (i >= FREELIST_SIZE) return NIL; // no_memory
    const chunk = this.#freeHead[i]!;
    this.#unlink(chunk, i);
    while (i !== order) {
      i--;
      this.#push(chunk + 2 ** i, i); // the spare is the upper half
    }
    this.#mapAlloc(chunk, 2 ** order);
    this.allocatedChunks++;
    this.allocatedPages += 2 ** order;
    return chunk;
  }

  /**
   * `bbuddy_pfree()`: free the chunk at `frame` that `palloc(numPages)` returned, and
   * merge it with its buddy while the buddy's first page is free in the bitmap and
   * heads a chunk of the same level; push the result.
   */
  pfree(frame: number, numPages: number): void {
    let order = numPagesToOrder(numPages);
    this.#mapFree(frame, 2 ** order);
    this.allocatedChunks--;
    this.allocatedPages -= 2 ** order;
    const s = this.#source.pages.privateWord(frame);
    const base = this.#slotFrame[s]!;
    const regionOrder = this.#slotOrder[s]!;
    const bitmap = this.#bitmap[s]!;
    const level = this.#level[s]!;
    let x = frame - base;
    while (order < FREELIST_SIZE) {
      this.steps++;
      this.buddyChecks++;
      if (order >= regionOrder) {
        // The buddy lies outside this region: map_get_memr() walks the whole list and
        // allocated_in_map() treats the page as allocated.
        this.steps += this.#regionCount;
        this.memrVisits += this.#regionCount;
        break;
      }
      const mask = 2 ** order;
      const buddy = (x & mask) !== 0 ? x - mask : x + mask; // predecessor : successor
      this.#memrWalk(s);
      if (testBit(bitmap, buddy) || level[buddy] !== order) break;
      this.#unlink(base + buddy, order);
      if (buddy < x) x = buddy;
      order++;
    }
    this.#push(base + x, order);
  }

  // -- adding memory --------------------------------------------------------------

  /**
   * Take 2^order data pages and their header pages from the page source and hand
   * them to `bbuddy_addmem()`: the bitmap starts all allocated, `map_free()` frees
   * the data pages, and the carve loop pushes one chunk of `order` (the data start
   * is aligned to the range's size).
   *
   * @returns false, with the source's failure cause, if either block is refused
   */
  addRegion(order: number): boolean {
    if (!Number.isInteger(order) || order < 0 || order > REGION_ORDER_MAX) {
      throw new RangeError(`Invalid region order ${order}: expected 0..${REGION_ORDER_MAX}`);
    }
    const source = this.#source;
    const frame = source.allocPages(order);
    if (frame < 0) return false;
    const headerPages = headerPagesFor(order);
    const header = this.#takePages(headerPages);
    if (header < 0) {
      source.freePages(frame, order);
      return false;
    }
    const slot = this.#takeSlot();
    const pageCount = 2 ** order;
    this.#slotFrame[slot] = frame;
    this.#slotOrder[slot] = order;
    this.#slotHeaderFrame[slot] = header;
    this.#slotHeaderPages[slot] = headerPages;
    this.#slotSeq[slot] = this.#regionCount; // memr->next = b->memr_head: the new head
    this.#next[slot] = new Int32Array(pageCount);
    this.#prev[slot] = new Int32Array(pageCount);
    this.#level[slot] = new Uint8Array(pageCount);
    this.#bitmap[slot] = new Uint32Array(Math.ceil(pageCount / 32)).fill(0xffff_ffff);
    this.#metaNumPages[slot] = new Uint32Array(pageCount);
    this.#metaBase[slot] = new Int32Array(pageCount).fill(NIL);
    this.#metaPtrOffset[slot] = new Uint32Array(pageCount);
    const pages = source.pages;
    for (let f = frame; f < frame + pageCount; f++) pages.setPrivateWord(f, slot);
    pages.setPrivateWord(header, this.#headerWord);
    this.#regionCount++;
    this.#regionPages += pageCount + headerPages;
    this.#mapFree(frame, pageCount);
    this.#push(frame, order);
    return true;
  }

  /**
   * Give back every region whose data pages form one free chunk (model-only: bbuddy
   * keeps its memory for ever). Steps: one unlink per region.
   *
   * @returns regions released
   */
  releaseFreeRegions(): number {
    let released = 0;
    for (let slot = 0; slot < this.#slotsUsed; slot++) {
      const frame = this.#slotFrame[slot]!;
      if (frame === NIL) continue;
      const order = this.#slotOrder[slot]!;
      if (testBit(this.#bitmap[slot]!, 0) || this.#level[slot]![0] !== order) continue;
      this.#unlink(frame, order);
      this.#nrFreePages -= 2 ** order;
      this.#releaseRegion(slot);
      released++;
    }
    return released;
  }

  /** Forget every region and list (the page source frees the pages). */
  reset(): void {
    this.#slotFrame.fill(NIL);
    this.#slotHeaderFrame.fill(NIL);
    this.#next = [];
    this.#prev = [];
    this.#level = [];
    this.#bitmap = [];
    this.#metaNumPages = [];
    this.#metaBase = [];
    this.#metaPtrOffset = [];
    this.#freeSlots = [];
    this.#slotsUsed = 0;
    this.#regionCount = 0;
    this.#regionPages = 0;
    this.#nrFreePages = 0;
    this.#freeHead.fill(NIL);
    this.#freeChunks.fill(0);
    this.allocatedChunks = 0;
    this.allocatedPages = 0;
  }

  #releaseRegion(slot: number): void {
    const seq = this.#slotSeq[slot]!;
    for (let s = 0; s < this.#slotsUsed; s++) {
      if (this.#slotFrame[s] !== NIL && this.#slotSeq[s]! > seq) this.#slotSeq[s]!--;
    }
    const order = this.#slotOrder[slot]!;
    const headerPages = this.#slotHeaderPages[slot]!;
    this.#source.freePages(this.#slotFrame[slot]!, order);
    this.#releasePages(this.#slotHeaderFrame[slot]!, headerPages);
    this.#slotFrame[slot] = NIL;
    this.#slotHeaderFrame[slot] = NIL;
    const empty = new Int32Array(0);
    this.#next[slot] = empty;
    this.#prev[slot] = empty;
    this.#metaBase[slot] = empty;
    this.#level[slot] = new Uint8Array(0);
    this.#bitmap[slot] = new Uint32Array(0);
    this.#metaNumPages[slot] = new Uint32Array(0);
    this.#metaPtrOffset[slot] = new Uint32Array(0);
    this.#freeSlots.push(slot);
    this.#regionCount--;
    this.#regionPages -= 2 ** order + headerPages;
  }

  /** Exactly `count` pages: a 2^order block with the tail beyond `count` freed. */
  #takePages(count: number): number {
    const order = numPagesToOrder(count);
    const frame = this.#source.allocPages(order);
    if (frame < 0) return NIL;
    let tail = frame + count;
    for (let i = 0; i < order; i++) {
      if ((tail & (1 << i)) !== 0) {
        this.#source.freePages(tail, i);
        tail += 1 << i;
      }
    }
    return frame;
  }

  /** Free the `count` pages {@link #takePages} returned, largest piece last. */
  #releasePages(frame: number, count: number): void {
    let size = count;
    for (let i = 0; size > 0; i++) {
      if ((size & (1 << i)) === 0) continue;
      size -= 1 << i;
      this.#source.freePages(frame + size, i);
    }
  }

  #takeSlot(): number {
    const reused = this.#freeSlots.pop();
    if (reused !== undefined) return reused;
    const slot = this.#slotsUsed++;
    if (slot >= this.#slotFrame.length) {
      const n = this.#slotFrame.length * 2;
      this.#slotFrame = grown(this.#slotFrame, n, NIL);
      this.#slotOrder = grown(this.#slotOrder, n);
      this.#slotHeaderFrame = grown(this.#slotHeaderFrame, n, NIL);
      this.#slotHeaderPages = grown(this.#slotHeaderPages, n);
      this.#slotSeq = grown(this.#slotSeq, n);
    }
    return slot;
  }

  // -- checkpoints ------------------------------------------------------------------

  /**
   * Write the heap's whole state, fields grouped as declared: the slot tables (whole,
   * with their spare capacity), each per-slot page array (the slot count, then one
   * array per slot), the free-slot stack and region counts, `struct uk_bbpalloc`
   * (nr_free_pages, list heads, list lengths), then the step counters and chunk
   * counts. The page source and header word are the constructor's; the pages are the
   * page allocator's, saved with it.
   */
  saveState(w: StateWriter): void {
    w.array(this.#slotFrame);
    w.array(this.#slotOrder);
    w.array(this.#slotHeaderFrame);
    w.array(this.#slotHeaderPages);
    w.array(this.#slotSeq);
    writeArrays(w, this.#next);
    writeArrays(w, this.#prev);
    writeArrays(w, this.#level);
    writeArrays(w, this.#bitmap);
    writeArrays(w, this.#metaNumPages);
    writeArrays(w, this.#metaBase);
    writeArrays(w, this.#metaPtrOffset);
    w.numbers(this.#freeSlots);
    w.num(this.#slotsUsed);
    w.num(this.#regionCount);
    w.num(this.#regionPages);

    w.num(this.#nrFreePages);
    w.array(this.#freeHead);
    w.array(this.#freeChunks);

    w.num(this.steps);
    w.num(this.listChecks);
    w.num(this.listOps);
    w.num(this.buddyChecks);
    w.num(this.bitmapWords);
    w.num(this.memrVisits);
    w.num(this.allocatedChunks);
    w.num(this.allocatedPages);
  }

  /**
   * Become the heap whose state `r` holds (from {@link saveState}), in place. Touches
   * no page: the page source already holds the regions, with their slots in the
   * private words.
   *
   * @throws {StateError} if the state does not read back or its tables do not fit
   *   together (this heap is then unusable)
   */
  loadState(r: StateReader): void {
    this.#slotFrame = r.array(Int32Array);
    this.#slotOrder = r.array(Uint8Array);
    this.#slotHeaderFrame = r.array(Int32Array);
    this.#slotHeaderPages = r.array(Int32Array);
    this.#slotSeq = r.array(Int32Array);
    this.#next = readArrays(r, Int32Array);
    this.#prev = readArrays(r, Int32Array);
    this.#level = readArrays(r, Uint8Array);
    this.#bitmap = readArrays(r, Uint32Array);
    this.#metaNumPages = readArrays(r, Uint32Array);
    this.#metaBase = readArrays(r, Int32Array);
    this.#metaPtrOffset = readArrays(r, Uint32Array);
    this.#freeSlots = r.numbers();
    this.#slotsUsed = r.num();
    this.#regionCount = r.num();
    this.#regionPages = r.num();

    this.#nrFreePages = r.num();
    this.#freeHead = r.array(Int32Array);
    this.#freeChunks = r.array(Float64Array);

    this.steps = r.num();
    this.listChecks = r.num();
    this.listOps = r.num();
    this.buddyChecks = r.num();
    this.bitmapWords = r.num();
    this.memrVisits = r.num();
    this.allocatedChunks = r.num();
    this.allocatedPages = r.num();
    const problem = this.#shapeProblem();
    if (problem !== null) {
      throw new StateError(`A saved bbuddy heap does not fit together: ${problem}`);
    }
  }

  /** What is wrong with the sizes of the loaded tables, or null. */
  #shapeProblem(): string | null {
    const slots = this.#slotFrame.length;
    const used = this.#slotsUsed;
    if (
      slots === 0 || this.#slotOrder.length !== slots || this.#slotHeaderFrame.length !== slots ||
      this.#slotHeaderPages.length !== slots || this.#slotSeq.length !== slots
    ) {
      return "the slot tables differ in length";
    }
    if (!Number.isInteger(used) || used < 0 || used > slots) {
      return `${used} slots used of ${slots}`;
    }
    const perSlot = [
      this.#next,
      this.#prev,
      this.#level,
      this.#bitmap,
      this.#metaNumPages,
      this.#metaBase,
      this.#metaPtrOffset,
    ];
    if (perSlot.some((arrays) => arrays.length !== used)) {
      return `the page arrays are not one per used slot (${used})`;
    }
    for (let slot = 0; slot < used; slot++) {
      const live = this.#slotFrame[slot] !== NIL;
      const order = this.#slotOrder[slot]!;
      if (live && order > REGION_ORDER_MAX) return `region ${slot} has order ${order}`;
      const pages = live ? 2 ** order : 0;
      for (let k = 0; k < perSlot.length; k++) {
        const length = perSlot[k]![slot]!.length;
        if (length !== (k === 3 ? Math.ceil(pages / 32) : pages)) {
          return `region ${slot} has a page array of ${length} for ${pages} pages`;
        }
      }
    }
    if (this.#freeSlots.some((s) => !Number.isInteger(s) || s < 0 || s >= used)) {
      return "a free slot is out of range";
    }
    if (this.#freeHead.length !== FREELIST_SIZE || this.#freeChunks.length !== FREELIST_SIZE) {
      return `the free lists are not ${FREELIST_SIZE}`;
    }
    return null;
  }

  // -- views and the debug walk ---------------------------------------------------

  /** The regions, lists and bitmap as plain data. */
  view(): BbuddyView {
    const regions: BbuddyRegionView[] = [];
    for (let slot = 0; slot < this.#slotsUsed; slot++) {
      const frame = this.#slotFrame[slot]!;
      if (frame === NIL) continue;
      const bitmap = this.#bitmap[slot]!;
      let bits = "";
      for (let x = 0; x < 2 ** this.#slotOrder[slot]!; x++) bits += testBit(bitmap, x) ? "1" : "0";
      regions.push({
        dataFrame: frame,
        order: this.#slotOrder[slot]!,
        headerFrame: this.#slotHeaderFrame[slot]!,
        headerPages: this.#slotHeaderPages[slot]!,
        memrIndex: this.#regionCount - 1 - this.#slotSeq[slot]!,
        bitmap: bits,
      });
    }
    regions.sort((a, b) => a.memrIndex - b.memrIndex);
    const freeLists: Record<number, number[]> = {};
    const pages = this.#source.pages;
    for (let level = 0; level < FREELIST_SIZE; level++) {
      const list: number[] = [];
      for (let c = this.#freeHead[level]!; c !== NIL && list.length <= this.#regionPages;) {
        list.push(c);
        const s = pages.privateWord(c);
        c = this.#next[s]![c - this.#slotFrame[s]!]!;
      }
      if (list.length > 0) freeLists[level] = list;
    }
    return { regions, freeLists, nrFreePages: this.#nrFreePages };
  }

  /** Walk every list, region, chunk and bitmap; one message per violation. */
  check(): string[] {
    const errors: string[] = [];
    const listed = this.#checkLists(errors);
    let freePages = 0;
    let chunks = 0;
    let allocatedPages = 0;
    let freeChunks = 0;
    let regions = 0;
    let regionPages = 0;
    const seqSeen = new Uint8Array(this.#regionCount);
    for (let slot = 0; slot < this.#slotsUsed; slot++) {
      if (this.#slotFrame[slot] === NIL) continue;
      regions++;
      regionPages += 2 ** this.#slotOrder[slot]! + this.#slotHeaderPages[slot]!;
      const seq = this.#slotSeq[slot]!;
      if (seq < 0 || seq >= this.#regionCount || seqSeen[seq] === 1) {
        errors.push(`region ${slot}: memr sequence ${seq} is out of range or repeated`);
      } else {
        seqSeen[seq] = 1;
      }
      const walked = this.#checkRegion(slot, listed[slot]!, errors);
      freePages += walked.freePages;
      freeChunks += walked.freeChunks;
      chunks += walked.allocatedChunks;
      allocatedPages += walked.allocatedPages;
    }
    if (regions !== this.#regionCount) {
      errors.push(`${regions} regions found, counted ${this.#regionCount}`);
    }
    if (regionPages !== this.#regionPages) {
      errors.push(`regions hold ${regionPages} pages, counted ${this.#regionPages}`);
    }
    if (freePages !== this.#nrFreePages) {
      errors.push(`free chunks hold ${freePages} pages, nr_free_pages is ${this.#nrFreePages}`);
    }
    let listedChunks = 0;
    for (let level = 0; level < FREELIST_SIZE; level++) listedChunks += this.#freeChunks[level]!;
    if (listedChunks !== freeChunks) {
      errors.push(`${listedChunks} chunks on the free lists, ${freeChunks} free chunks walked`);
    }
    if (chunks !== this.allocatedChunks || allocatedPages !== this.allocatedPages) {
      errors.push(
        `${chunks} allocated chunks of ${allocatedPages} pages walked, counted ${this.allocatedChunks} of ${this.allocatedPages}`,
      );
    }
    return errors;
  }

  /** Walk the free lists; returns, per slot, a mark on every listed chunk head. */
  #checkLists(errors: string[]): Uint8Array[] {
    const listed: Uint8Array[] = [];
    for (let slot = 0; slot < this.#slotsUsed; slot++) {
      listed[slot] = new Uint8Array(
        this.#slotFrame[slot] === NIL ? 0 : 2 ** this.#slotOrder[slot]!,
      );
    }
    for (let level = 0; level < FREELIST_SIZE; level++) {
      let prev = NIL;
      let count = 0;
      for (let c = this.#freeHead[level]!; c !== NIL; count++) {
        if (count > this.#regionPages) {
          errors.push(`free list ${level} has a cycle`);
          break;
        }
        const s = this.regionOf(c);
        if (s < 0) {
          errors.push(`free list ${level} holds frame ${c}, which is in no region`);
          break;
        }
        const x = c - this.#slotFrame[s]!;
        if (testBit(this.#bitmap[s]!, x)) {
          errors.push(`free list ${level}: frame ${c} is allocated`);
        }
        if (this.#level[s]![x] !== level) {
          errors.push(`free list ${level}: frame ${c} has level ${this.#level[s]![x]}`);
        }
        if (x % 2 ** level !== 0 || level > this.#slotOrder[s]!) {
          errors.push(`free list ${level}: frame ${c} is misaligned or larger than its region`);
        }
        if (this.#prev[s]![x] !== prev) {
          errors.push(`free list ${level}: frame ${c} has a wrong back link`);
        }
        if (listed[s]![x] === 1) errors.push(`frame ${c} is listed twice`);
        listed[s]![x] = 1;
        prev = c;
        c = this.#next[s]![x]!;
      }
      if (count !== this.#freeChunks[level]) {
        errors.push(`free list ${level} holds ${count} chunks, counted ${this.#freeChunks[level]}`);
      }
    }
    return listed;
  }

  /** Walk one region chunk by chunk. */
  #checkRegion(slot: number, listed: Uint8Array, errors: string[]) {
    const result = { freePages: 0, freeChunks: 0, allocatedChunks: 0, allocatedPages: 0 };
    const pages = this.#source.pages;
    const frame = this.#slotFrame[slot]!;
    const order = this.#slotOrder[slot]!;
    const size = 2 ** order;
    const owner = this.#source.owner;
    if (!pages.isAllocatedHead(frame, owner) || pages.allocatedOrder(frame) !== order) {
      errors.push(`region ${slot}: frame ${frame} is not an order-${order} block of the heap`);
    }
    const header = this.#slotHeaderFrame[slot]!;
    if (!pages.isAllocatedHead(header, owner) || pages.privateWord(header) !== this.#headerWord) {
      errors.push(`region ${slot}: header frame ${header} is not held or not marked`);
    }
    for (let x = 0; x < size; x++) {
      if (pages.privateWord(frame + x) !== slot) {
        errors.push(`region ${slot}: page ${x} does not map back to the region`);
        break;
      }
    }
    const bitmap = this.#bitmap[slot]!;
    const level = this.#level[slot]!;
    const metaBase = this.#metaBase[slot]!;
    for (let x = 0; x < size;) {
      if (testBit(bitmap, x)) {
        const chunkOrder = this.#allocatedChunkOrder(slot, x);
        if (chunkOrder < 0 || x % 2 ** chunkOrder !== 0 || x + 2 ** chunkOrder > size) {
          errors.push(`region ${slot}: allocated page ${x} heads no chunk with a metadata record`);
          break;
        }
        for (let i = x; i < x + 2 ** chunkOrder; i++) {
          if (!testBit(bitmap, i)) {
            errors.push(`region ${slot}: allocated chunk at ${x} has a clear bit at ${i}`);
            break;
          }
        }
        result.allocatedChunks++;
        result.allocatedPages += 2 ** chunkOrder;
        x += 2 ** chunkOrder;
        continue;
      }
      const l = level[x]!;
      if (l > order || x % 2 ** l !== 0) {
        errors.push(`region ${slot}: free chunk at ${x} has level ${l}`);
        break;
      }
      if (listed[x] !== 1) errors.push(`region ${slot}: free chunk at ${x} is on no list`);
      for (let i = x; i < x + 2 ** l; i++) {
        if (testBit(bitmap, i) || metaBase[i] !== NIL || (i > x && listed[i] === 1)) {
          errors.push(`region ${slot}: free chunk at ${x} has a used page at ${i}`);
          break;
        }
      }
      if (l < order) {
        const buddy = x ^ 2 ** l;
        if (!testBit(bitmap, buddy) && level[buddy] === l && listed[buddy] === 1) {
          errors.push(`region ${slot}: free chunks at ${x} and ${buddy} were not merged`);
        }
      }
      result.freePages += 2 ** l;
      result.freeChunks++;
      x += 2 ** l;
    }
    return result;
  }

  /**
   * Order of the allocated chunk headed by page `x` of region `slot`, from the one
   * metadata record inside it that names it; -1 if there is none or more than one.
   */
  #allocatedChunkOrder(slot: number, x: number): number {
    const base = this.#slotFrame[slot]! + x;
    const metaBase = this.#metaBase[slot]!;
    const size = 2 ** this.#slotOrder[slot]!;
    let at = NIL;
    for (let i = x; i < size && at === NIL; i++) {
      if (metaBase[i] === NIL) continue;
      if (metaBase[i] !== base) return NIL; // another chunk's record comes first
      at = i;
    }
    if (at === NIL) return NIL;
    const order = numPagesToOrder(this.#metaNumPages[slot]![at]!);
    if (at - x >= 2 ** order || x + 2 ** order > size) return NIL;
    for (let i = x; i < x + 2 ** order; i++) {
      if (i !== at && metaBase[i] !== NIL) return NIL;
    }
    return order;
  }
}

/** A list of typed arrays: their count, then each. */
function writeArrays(
  w: StateWriter,
  arrays: readonly (Int32Array | Uint8Array | Uint32Array)[],
): void {
  w.num(arrays.length);
  for (const a of arrays) w.array(a);
}

/** A list of typed arrays of one type, as {@link writeArrays} wrote it. */
function readArrays<T extends Int32Array | Uint8Array | Uint32Array>(
  r: StateReader,
  ctor: new (length: number) => T,
): T[] {
  const count = r.num();
  if (!Number.isInteger(count) || count < 0) {
    throw new StateError(`A saved bbuddy heap lists ${count} page arrays`);
  }
  const arrays: T[] = [];
  for (let i = 0; i < count; i++) arrays.push(r.array(ctor));
  return arrays;
}
