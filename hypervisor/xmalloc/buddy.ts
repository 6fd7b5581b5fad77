/**
 * `buddy`: Unikraft's default heap, the binary buddy page allocator
 * lib/ukallocbbuddy/bbuddy.c (modelled in `_bbuddy.ts`) behind ukalloc's page
 * interface glue, lib/ukalloc/alloc.c (unikraft/unikraft at eaf6fda1d420):
 * `uk_malloc_ifpages()`, `uk_free_ifpages()`, `uk_posix_memalign_ifpages()`,
 * `uk_realloc_ifpages()`, `uk_getmallocsize()`, `uk_get_metadata()`. bbuddy only
 * implements palloc/pfree, so `uk_alloc_init_palloc()` (alloc_impl.h) wires malloc,
 * memalign, realloc and free to these `_ifpages` functions: every allocation is whole
 * pages.
 *
 * ## Sizes (x86_64, no CONFIG_HAVE_MEMTAG)
 *
 * `struct metadata_ifpages` {size, num_pages, base} is 24 bytes and is given
 * METADATA_IFPAGES_SIZE_POW2 = 32 bytes in front of a malloc'd pointer.
 *
 * - `uk_malloc(size)`: num_pages = PAGE_ALIGN_UP(size + 32) / 4096, then
 *   `bbuddy_palloc(num_pages)` takes 2^num_pages_to_order(num_pages) pages; the
 *   pointer is base + 32. Up to 4064 bytes take 1 page; 4065..8160 (PAGE_SIZE - 1 and
 *   PAGE_SIZE included) take 2; 8161..16352 take 4 (3 pages rounded up to a power of
 *   two); and so on.
 * - `uk_memalign(align, size)` (via `uk_posix_memalign_ifpages()`): align < 32 is
 *   raised to 32 with no padding (the same pages and pointer as malloc); 32 < align <
 *   4096 asks size + 24 + align bytes, align == 4096 asks size + 4096, align > 4096
 *   asks size + 4096 + align; the pointer is base + max(32, align), and for a
 *   page-aligned pointer the metadata is at the start of the page before it.
 *   Alignments 1, 2 and 4, which posix_memalign refuses with EINVAL, are served as
 *   malloc (whose pointer is 32-byte aligned anyway).
 * - usable size (`uk_getmallocsize()`): base + num_pages * 4096 - ptr (num_pages, not
 *   the power of two bbuddy really took).
 *
 * ## Memory regions (the model's mapping of `uk_alloc_addmem()`)
 *
 * A unikernel hands bbuddy its memory at boot (lib/ukboot/boot.c `heap_init()`: every
 * free memory region, or with paging on a 16-page initial heap followed by the rest
 * of RAM through `uk_alloc_addmem()`), and bbuddy never gives memory back. A pool in
 * this hypervisor has no fixed RAM size, so the engine adds memory on demand: when
 * `bbuddy_palloc()` finds no chunk large enough, the engine takes a region of
 * 2^regionOrder data pages (default {@link DEFAULT_REGION_ORDER}: 4 MiB, so the memr
 * list that `map_get_memr()` walks stays a few entries long on the built-in
 * workloads, as bbuddy expects, while the pages held still follow use) plus its
 * header page, adds it with `bbuddy_addmem()` and retries. A request larger than a
 * region gets a region of its own order. When the machine or the pool's quota cannot
 * give that much, the region is the largest that fits, down to the request's order.
 * Regions are never given back on free (bbuddy cannot), only by {@link shrink}, which
 * returns every region that is wholly free, as a balloon driver would.
 *
 * The allocator descriptor (`struct uk_alloc` + `struct uk_bbpalloc`, 1792 bytes, one
 * page) is taken at the first allocation, as TLSF takes its pool structure
 * (`uk_allocbbuddy_init()` puts it at the start of the first range instead).
 *
 * ## Steps
 *
 * bbuddy's own (see `_bbuddy.ts`): free lists searched, list unlinks and pushes, buddy
 * tests, bitmap words, memr nodes visited. An allocation that has to add a region
 * also counts its failed search (52 - order lists), the region's `map_free()` and
 * its chunk push, and the second search.
 *
 * ## Deviations from Unikraft, each deliberate
 *
 * - `reallocate` keeps the block when it already holds the new size at the requested
 *   alignment (heapvisor's contract, Xen's `_xrealloc()`); `uk_realloc_ifpages()`
 *   always allocates anew, copies and frees. A move is the same in both: allocate,
 *   then free.
 * - Memory is added on demand and can be given back by `shrink()` (above); the
 *   descriptor has a page of its own; region headers are placed apart from their data
 *   (see `_bbuddy.ts`).
 * - Bad frees are detected and rejected (Unikraft would corrupt its lists or assert).
 *
 * @module
 */

import { addressToFrame, frameToAddress, PAGE_SIZE_BYTES, pageOffset } from "../../src/units.ts";
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
  BbuddyHeap,
  type BbuddyView,
  DESCRIPTOR_PAGES,
  FREELIST_SIZE,
  headerPagesFor,
  numPagesToOrder,
  REGION_ORDER_MAX,
  UK_ALLOC_STRUCT_BYTES,
  UK_BBPALLOC_STRUCT_BYTES,
} from "./_bbuddy.ts";

// -- constants (lib/ukalloc/alloc.c, x86_64) --------------------------------------

/** METADATA_IFPAGES_SIZE_POW2: the room malloc leaves in front of its pointer. */
export const METADATA_IFPAGES_BYTES = 32;
/** sizeof(struct metadata_ifpages): size, num_pages, base. */
export const METADATA_IFPAGES_STRUCT_BYTES = 24;
/** Data pages of a region added on demand: 2^10 pages, 4 MiB. */
export const DEFAULT_REGION_ORDER = 10;

const NIL = -1;
/** Private word of the descriptor page. */
const DESCRIPTOR_WORD = -0x7fff_fffe;
/** Private word of a region's header page. */
const HEADER_WORD = -0x7fff_fffd;

if (METADATA_IFPAGES_STRUCT_BYTES > METADATA_IFPAGES_BYTES) {
  throw new Error("ukalloc: struct metadata_ifpages must fit METADATA_IFPAGES_SIZE_POW2");
}

/** What the ukalloc glue asks bbuddy for, for one request. */
export interface IfpagesRequest {
  /** Bytes the glue needs from the pages (`realsize`). */
  realsizeBytes: number;
  /** `num_pages` passed to `uk_palloc()`. */
  numPages: number;
  /** Bytes from the chunk's base to the pointer returned. */
  ptrOffsetBytes: number;
  /** Page of the chunk that holds `struct metadata_ifpages` (`uk_get_metadata()`). */
  metadataPage: number;
}

/**
 * The pages `uk_malloc_ifpages()` (alignment up to 32) or
 * `uk_posix_memalign_ifpages()` asks for, and where the pointer lands.
 *
 * @param sizeBytes 1 or more
 * @param alignBytes a power of two
 *
 * @example
 * ```ts
 * import { ifpagesRequest } from "./buddy.ts";
 * import assert from "node:assert/strict";
 * assert.equal(ifpagesRequest(4064, 1).numPages, 1); // 4064 + 32 = 4096
 * assert.equal(ifpagesRequest(4065, 1).numPages, 2);
 * assert.equal(ifpagesRequest(100, 8192).numPages, 4); // 100 + 4096 + 8192 bytes
 * ```
 */
export function ifpagesRequest(sizeBytes: number, alignBytes: number): IfpagesRequest {
  let realsizeBytes: number;
  if (alignBytes <= METADATA_IFPAGES_BYTES) {
    realsizeBytes = sizeBytes + METADATA_IFPAGES_BYTES; // malloc, or memalign raised to 32
  } else if (alignBytes < PAGE_SIZE_BYTES) {
    realsizeBytes = sizeBytes + METADATA_IFPAGES_STRUCT_BYTES + alignBytes;
  } else if (alignBytes === PAGE_SIZE_BYTES) {
    realsizeBytes = sizeBytes + PAGE_SIZE_BYTES;
  } else {
    realsizeBytes = sizeBytes + PAGE_SIZE_BYTES + alignBytes;
  }
  const ptrOffsetBytes = Math.max(METADATA_IFPAGES_BYTES, alignBytes);
  return {
    realsizeBytes,
    numPages: Math.ceil(realsizeBytes / PAGE_SIZE_BYTES),
    ptrOffsetBytes,
    metadataPage: ptrOffsetBytes >= PAGE_SIZE_BYTES ? ptrOffsetBytes / PAGE_SIZE_BYTES - 1 : 0,
  };
}

/** How a `buddy` engine is built. */
export interface BuddyOptions {
  /**
   * Data pages of a region added on demand are 2^regionOrder (default
   * {@link DEFAULT_REGION_ORDER}); an integer in [0, 30].
   */
  regionOrder?: number;
}

/** The `buddy` engine. */
export class BuddyEngine implements XmallocEngine {
  readonly name = "buddy";
  readonly description =
    "Unikraft's binary buddy (lib/ukallocbbuddy) behind ukalloc's page glue: power-of-two pages per malloc";
  /** `uk_posix_memalign_ifpages()` takes any power-of-two alignment. */
  readonly maxAlignBytes = 2 ** 30;
  lastSteps = 0;
  lastFailureCause: AllocFailureCause | null = null;
  /**
   * One `struct uk_bbpalloc` with global free lists and bitmaps (bbuddy itself takes
   * no lock): every call that reaches it touches shared state.
   */
  lastSharedAccess = false;

  readonly #source: PageSource;
  readonly #cpuCount: number;
  readonly #regionOrder: number;
  readonly #heap: BbuddyHeap;
  #descriptorFrame = NIL;
  #allocCount = 0;
  #failedAllocCount = 0;
  #freeCount = 0;

  // result of #resolve(): the chunk's first frame and the page with its metadata
  #resolvedBase = NIL;
  #resolvedMeta = NIL;

  /**
   * @param context page source and CPU count
   * @param options region size
   * @throws {RangeError} on a region order out of range
   */
  constructor(context: EngineContext, options: BuddyOptions = {}) {
    const regionOrder = options.regionOrder ?? DEFAULT_REGION_ORDER;
    if (!Number.isInteger(regionOrder) || regionOrder < 0 || regionOrder > REGION_ORDER_MAX) {
      throw new RangeError(
        `Invalid region order ${regionOrder}: expected an integer in [0, ${REGION_ORDER_MAX}]`,
      );
    }
    this.#source = context.pageSource;
    this.#cpuCount = context.cpuCount;
    this.#regionOrder = regionOrder;
    this.#heap = new BbuddyHeap(context.pageSource, HEADER_WORD);
  }

  /** `uk_malloc()` / `uk_memalign()`. */
  allocate(sizeBytes: number, alignBytes = 1, cpu = 0): number {
    assertAllocArgs(sizeBytes, alignBytes, cpu, this.#cpuCount, this.maxAlignBytes);
    this.lastFailureCause = null;
    this.#source.lastFailureCause = null;
    const heap = this.#heap;
    heap.steps = 0;
    this.lastSharedAccess = true;
    const ready = this.#descriptorFrame !== NIL || this.#initDescriptor();
    const address = ready ? this.#mallocIfpages(sizeBytes, alignBytes) : 0;
    this.lastSteps = heap.steps;
    if (address === 0) {
      this.#failedAllocCount++;
      this.lastFailureCause = this.#source.lastFailureCause ?? "unservable";
    } else {
      this.#allocCount++;
    }
    return address;
  }

  /** `uk_free()`: `uk_free_ifpages()` then `bbuddy_pfree()`. */
  free(address: number, cpu = 0): void {
    assertAllocArgs(1, 1, cpu, this.#cpuCount);
    if (address === 0) { // uk_free_ifpages(): "if (!ptr) return;"
      this.lastSteps = 0;
      this.lastSharedAccess = false;
      return;
    }
    this.#resolve(address);
    const heap = this.#heap;
    heap.steps = 0;
    this.lastSharedAccess = true;
    const numPages = heap.metadataNumPages(this.#resolvedMeta);
    heap.clearMetadata(this.#resolvedMeta);
    heap.pfree(this.#resolvedBase, numPages);
    this.lastSteps = heap.steps;
    this.#freeCount++;
  }

  /** In place if the block holds `sizeBytes` at `alignBytes`, else allocate and free. */
  reallocate(address: number, sizeBytes: number, alignBytes = 1, cpu = 0): number {
    assertAllocArgs(sizeBytes, alignBytes, cpu, this.#cpuCount, this.maxAlignBytes);
    if (address === 0) return this.allocate(sizeBytes, alignBytes, cpu); // realloc(NULL, n)
    if (sizeBytes <= this.usableSize(address) && address % alignBytes === 0) {
      this.lastSteps = 0;
      this.lastSharedAccess = false;
      this.lastFailureCause = null;
      return address;
    }
    const moved = reallocateByMoving(this, address, sizeBytes, alignBytes, cpu);
    this.lastSteps = moved.steps;
    this.lastSharedAccess = moved.shared;
    return moved.address;
  }

  /** `uk_getmallocsize()`: base + num_pages * PAGE_SIZE - ptr. */
  usableSize(address: number): number {
    this.#resolve(address);
    const heap = this.#heap;
    return heap.metadataNumPages(this.#resolvedMeta) * PAGE_SIZE_BYTES -
      heap.metadataPtrOffset(this.#resolvedMeta);
  }

  pagesHeld(): EnginePages {
    return {
      poolPages: this.#heap.regionPages,
      wholePages: 0,
      metaPages: this.#descriptorFrame !== NIL ? DESCRIPTOR_PAGES : 0,
    };
  }

  stats(): EngineStats {
    const heap = this.#heap;
    return {
      engine: this.name,
      ...this.pagesHeld(),
      allocCount: this.#allocCount,
      failedAllocCount: this.#failedAllocCount,
      freeCount: this.#freeCount,
      liveBlockCount: heap.allocatedChunks,
      liveReservedBytes: heap.allocatedPages * PAGE_SIZE_BYTES,
      stepTotals: {
        list_checks: heap.listChecks,
        list_ops: heap.listOps,
        buddy_checks: heap.buddyChecks,
        bitmap_words: heap.bitmapWords,
        memr_visits: heap.memrVisits,
      },
    };
  }

  /**
   * Give back every region that is wholly free (bbuddy itself never returns memory).
   * Steps: one list unlink per region given back.
   */
  shrink(): void {
    this.#heap.steps = 0;
    this.lastSharedAccess = true;
    this.#heap.releaseFreeRegions();
    this.lastSteps = this.#heap.steps;
  }

  destroy(): void {
    this.#heap.reset();
    this.#source.releaseAll();
    this.#descriptorFrame = NIL;
  }

  /**
   * Write the engine's whole state, fields grouped as declared: the last call's
   * answers (steps, failure cause, "" for none, shared access), the CPU count and
   * region order it was built with, the bbuddy heap (see {@link BbuddyHeap.saveState}),
   * the descriptor's frame and the call counters. The page source is the context's;
   * `#resolve()`'s results are read only within the call that sets them.
   */
  saveState(w: StateWriter): void {
    w.num(this.lastSteps);
    writeFailureCause(w, this.lastFailureCause);
    w.bool(this.lastSharedAccess);
    w.num(this.#cpuCount);
    w.num(this.#regionOrder);
    this.#heap.saveState(w);
    w.num(this.#descriptorFrame);
    w.num(this.#allocCount);
    w.num(this.#failedAllocCount);
    w.num(this.#freeCount);
  }

  /**
   * The engine whose state `r` holds (from {@link saveState}), touching nothing: the
   * descriptor page and the regions are already the page source's, with their private
   * words. The engine has the saved region order.
   *
   * @param context the saved engine's page source and CPU count
   * @param r the state
   * @param options if it names a region order, the saved one must be it
   * @throws {StateError} if the state does not read back, is of another CPU count or
   *   region order, or its tables do not fit together
   */
  static load(context: EngineContext, r: StateReader, options: BuddyOptions = {}): BuddyEngine {
    const lastSteps = r.num();
    const cause = readFailureCause(r, "buddy");
    const lastSharedAccess = r.bool();
    const cpuCount = r.num();
    const regionOrder = r.num();
    if (cpuCount !== context.cpuCount) {
      throw new StateError(
        `A saved buddy engine of ${cpuCount} CPUs cannot load for ${context.cpuCount}`,
      );
    }
    if (options.regionOrder !== undefined && regionOrder !== options.regionOrder) {
      throw new StateError(
        `A saved buddy engine has region order ${regionOrder}, expected ${options.regionOrder}`,
      );
    }
    if (!Number.isInteger(regionOrder) || regionOrder < 0 || regionOrder > REGION_ORDER_MAX) {
      throw new StateError(`A saved buddy engine has region order ${regionOrder}`);
    }
    // The constructor takes no page: the descriptor page is taken at the first allocation.
    const engine = new BuddyEngine(context, { regionOrder });
    engine.lastSteps = lastSteps;
    engine.lastFailureCause = cause;
    engine.lastSharedAccess = lastSharedAccess;
    engine.#heap.loadState(r);
    engine.#descriptorFrame = r.num();
    engine.#allocCount = r.num();
    engine.#failedAllocCount = r.num();
    engine.#freeCount = r.num();
    return engine;
  }

  /** Regions, free lists and bitmaps as plain data (tests, debugging). */
  view(): BbuddyView {
    return this.#heap.view();
  }

  /** Walk the heap; also check the descriptor and the page accounting. */
  check(): string[] {
    const errors = this.#heap.check();
    const pages = this.#source.pages;
    if (
      this.#descriptorFrame !== NIL &&
      (!this.#source.holds(this.#descriptorFrame) ||
        pages.privateWord(this.#descriptorFrame) !== DESCRIPTOR_WORD)
    ) {
      errors.push(`descriptor frame ${this.#descriptorFrame} is not held or not marked`);
    }
    const live = this.#allocCount - this.#freeCount;
    if (live !== this.#heap.allocatedChunks) {
      errors.push(`${live} blocks allocated and not freed, ${this.#heap.allocatedChunks} chunks`);
    }
    const held = this.pagesHeld();
    const total = held.poolPages + held.wholePages + held.metaPages;
    if (total !== this.#source.heldPages) {
      errors.push(
        `engine counts ${total} pages, page allocator says it holds ${this.#source.heldPages}`,
      );
    }
    return errors;
  }

  // -- the ukalloc glue -------------------------------------------------------------

  /** `uk_allocbbuddy_init()`: the allocator descriptor's page. */
  #initDescriptor(): boolean {
    const frame = this.#source.allocPages(0);
    if (frame < 0) return false;
    this.#source.pages.setPrivateWord(frame, DESCRIPTOR_WORD);
    this.#descriptorFrame = frame;
    return true;
  }

  /** `uk_malloc_ifpages()` / `uk_posix_memalign_ifpages()`: 0 if no pages. */
  #mallocIfpages(sizeBytes: number, alignBytes: number): number {
    const request = ifpagesRequest(sizeBytes, alignBytes);
    const heap = this.#heap;
    let base = heap.palloc(request.numPages);
    if (base < 0 && this.#addMemory(numPagesToOrder(request.numPages))) {
      base = heap.palloc(request.numPages);
      if (base < 0) throw new Error("buddy: no chunk right after adding a region that fits it");
    }
    if (base < 0) return 0;
    const address = frameToAddress(base) + request.ptrOffsetBytes;
    if (address % alignBytes !== 0) throw new Error("buddy: a chunk is not aligned to its size");
    heap.writeMetadata(base + request.metadataPage, base, request.numPages, request.ptrOffsetBytes);
    return address;
  }

  /**
   * Add a region that can hold a chunk of `order`: 2^max(regionOrder, order) data
   * pages, or the largest the machine and the quota can give, down to `order`.
   */
  #addMemory(order: number): boolean {
    let regionOrder = Math.max(this.#regionOrder, order);
    regionOrder = Math.max(order, Math.min(regionOrder, this.#largestObtainableOrder()));
    for (; regionOrder >= order; regionOrder--) {
      if (this.#heap.addRegion(regionOrder)) return true;
    }
    return false;
  }

  /** Largest region order the machine's free blocks and the quota allow (-1: none). */
  #largestObtainableOrder(): number {
    const source = this.#source;
    const room = source.maxPages - source.heldPages;
    let order = Math.min(source.largestFreeOrder(), REGION_ORDER_MAX);
    while (order >= 0 && 2 ** order + headerPagesFor(order) > room) order--;
    return order;
  }

  /**
   * Find the live block `address` names, as `uk_get_metadata()` does (the metadata is
   * on the pointer's page, or the page before for a page-aligned pointer), or throw
   * InvalidFreeError saying why it is not one. Changes nothing.
   */
  #resolve(address: number): void {
    if (!Number.isSafeInteger(address)) {
      throw new InvalidFreeError(address, "unknown-address", "not an integer address");
    }
    const pages = this.#source.pages;
    const frame = addressToFrame(address);
    if (frame < 0 || frame >= pages.frameCount) {
      throw new InvalidFreeError(address, "unknown-address", "outside the machine's memory");
    }
    const heap = this.#heap;
    if (heap.regionOf(frame) < 0) {
      const head = pages.blockHeadOf(frame);
      if (head >= 0 && this.#source.holds(head)) {
        throw new InvalidFreeError(
          address,
          "interior-pointer",
          "inside the allocator's descriptor or a region header",
        );
      }
      throw new InvalidFreeError(address, "unknown-address", "no live block of this heap there");
    }
    if (!heap.pageAllocated(frame)) {
      throw new InvalidFreeError(address, "double-free", "block is already free");
    }
    const meta = pageOffset(address) === 0 ? frame - 1 : frame;
    const base = meta >= 0 && heap.regionOf(meta) >= 0 ? heap.metadataBase(meta) : NIL;
    if (base === NIL || frameToAddress(base) + heap.metadataPtrOffset(meta) !== address) {
      throw new InvalidFreeError(address, "interior-pointer", "not the start of a block");
    }
    this.#resolvedBase = base;
    this.#resolvedMeta = meta;
  }
}

/**
 * A registry entry for a `buddy` engine with the given options.
 *
 * @param options region size
 * @returns the descriptor
 * @throws {RangeError} on a region order out of range (when an engine is created)
 */
export function buddyEngineDescriptor(options: BuddyOptions = {}): EngineDescriptor {
  const regionOrder = options.regionOrder ?? DEFAULT_REGION_ORDER;
  return {
    name: "buddy",
    description:
      "Unikraft's binary buddy allocator: every malloc takes 2^order whole pages, 32-byte header in front",
    modelledOn:
      "unikraft lib/ukallocbbuddy/bbuddy.c @eaf6fda1d420: bbuddy_palloc, bbuddy_pfree, bbuddy_addmem, map_alloc, map_free, allocated_in_map; lib/ukalloc/alloc.c: uk_malloc_ifpages, uk_free_ifpages, uk_posix_memalign_ifpages, uk_realloc_ifpages, uk_getmallocsize",
    parameters: {
      metadata_ifpages_bytes: METADATA_IFPAGES_BYTES,
      num_pages: "PAGE_ALIGN_UP(size + 32) / 4096; align > 32: size + 24 + align, " +
        "+ 4096 (align = 4096), + 4096 + align (align > 4096)",
      chunk: "2^num_pages_to_order(num_pages) pages, naturally aligned",
      FREELIST_SIZE,
      free_lists: "one LIFO list per order; palloc takes the lowest non-empty order, " +
        "splits keeping the lower half; pfree merges while the buddy's first page is free " +
        "in mm_alloc_bitmap and heads a chunk of the same level",
      region_pages: `2^${regionOrder} data + ${headerPagesFor(regionOrder)} header ` +
        "(memr + mm_alloc_bitmap), added when palloc fails; larger requests get a region " +
        "of their own order; given back only by shrink()",
      descriptor_bytes: UK_ALLOC_STRUCT_BYTES + UK_BBPALLOC_STRUCT_BYTES,
      steps: "+1 per free list searched, per list unlink/push, per buddy test, " +
        "per 64-bit bitmap word written, per memr node visited",
    },
    create: (context: EngineContext) => new BuddyEngine(context, { regionOrder }),
    stateLayout: 1,
    load: (context: EngineContext, r: StateReader) => BuddyEngine.load(context, r, { regionOrder }),
  };
}

/** Registry entry of the `buddy` engine (4 MiB regions). */
export const buddyEngine: EngineDescriptor = buddyEngineDescriptor();
