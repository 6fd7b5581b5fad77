/**
 * `first-fit`: Xen's xmalloc before TLSF, xen/common/xmalloc.c as of Xen 3.3 (commit
 * 261aa81d0588, the parent of 9736b76d829b "xmalloc: use tlsf algorithm"):
 * `_xmalloc()`, `xfree()`, `maybe_split()`, `xmalloc_new_page()`,
 * `xmalloc_whole_pages()`. Release build: XMALLOC_DEBUG's canaries are off.
 *
 * - Every block starts with `struct xmalloc_hdr` (size word + list links),
 *   `__cacheline_aligned`: 128 bytes on x86 (CONFIG_X86_L1_CACHE_SHIFT 7). A request
 *   takes `align_up(size + 128, 128)` bytes, so xmalloc(1) takes 256.
 * - Blocks of 4096 bytes or more go to whole pages of order
 *   `get_order_from_bytes(block)`, header in front (no tail trimming): request
 *   3969..8064 (PAGE_SIZE - 1 and PAGE_SIZE included) takes 2 pages.
 * - Everything else comes from one global doubly linked free list, LIFO (insert at
 *   head), searched first fit from the head. The chosen block is split when the
 *   leftover is at least 256 bytes (the tail becomes a free block at the list head),
 *   else handed out whole. Nothing fits: a new page is taken and split the same way.
 * - `xfree()` walks the entire free list and coalesces with the free blocks
 *   physically adjacent in the same page; a block that becomes the whole page goes
 *   back to the page allocator, otherwise it is pushed at the head of the list.
 *
 * Steps (as the reference harness counts them): free-list nodes visited. xmalloc:
 * the 1-based position of the first block that fits, or the list length if none
 * does; whole-page requests 0. xfree: the list length at the call (the merge loop
 * never stops early); whole-page frees 0.
 *
 * Model: the merge partners of `xfree()` are found in O(1) from the page's block
 * layout instead of by walking the list; the outcome is identical because free
 * blocks are never adjacent (every free coalesces), so the walk can meet at most one
 * block ending at the freed one and one starting after it, in either order, and
 * merges the same three blocks. The step count is the walk's.
 *
 * Data layout: per page ("slot"), 32 header slots of 128 bytes in typed arrays at
 * `slot * 32 + granule`: block size (0: no header here), state, list links.
 *
 * @module
 */

import {
  addressToFrame,
  alignUp,
  frameToAddress,
  getOrderFromBytes,
  PAGE_SIZE_BYTES,
  pageOffset,
} from "../../src/units.ts";
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

/** sizeof(struct xmalloc_hdr): cache-line aligned, SMP_CACHE_BYTES = 128 in Xen 3.3. */
export const XMALLOC_HDR_BYTES = 128;
const GRANULE_SHIFT = 7;
const GRANULES_PER_PAGE = PAGE_SIZE_BYTES / XMALLOC_HDR_BYTES; // 32
const PAGE_SLOT_SHIFT = 5;
/** maybe_split(): a leftover of at least 2 * sizeof(struct xmalloc_hdr) becomes a block. */
const SPLIT_MIN_BYTES = 2 * XMALLOC_HDR_BYTES;

const STATE_NONE = 0;
const STATE_FREE = 1;
const STATE_USED = 2;
const NIL = -1;
/** Private word of a whole-page block's head: -(order + 1). */
const WHOLE_WORD_BASE = -1;

/** The `first-fit` engine. */
export class FirstFitEngine implements XmallocEngine {
  readonly name = "first-fit";
  readonly description = "Xen 3.3's xmalloc (xen/common/xmalloc.c): one global first-fit free list";
  /** `BUG_ON(align > SMP_CACHE_BYTES)`: blocks are always cache-line aligned. */
  readonly maxAlignBytes = XMALLOC_HDR_BYTES;
  lastSteps = 0;
  lastFailureCause: AllocFailureCause | null = null;
  /** Whether the last call took `freelist_lock` (whole-page calls do not). */
  lastSharedAccess = false;

  readonly #source: PageSource;
  readonly #cpuCount: number;

  #slotFrame = new Int32Array(64).fill(NIL);
  #freeSlots: number[] = [];
  #slotsUsed = 0;
  #poolPages = 0;
  #blockBytes = new Uint16Array(64 * GRANULES_PER_PAGE); // hdr->size, 0: no header
  #state = new Uint8Array(64 * GRANULES_PER_PAGE);
  #next = new Int32Array(64 * GRANULES_PER_PAGE);
  #prev = new Int32Array(64 * GRANULES_PER_PAGE);
  #freeHead = NIL;
  #freeLength = 0;

  #wholePages = 0;
  #wholeBlocks = 0;
  #liveBlocks = 0;
  #liveBytes = 0;
  #allocCount = 0;
  #failedAllocCount = 0;
  #freeCount = 0;
  #nodesVisited = 0;

  // result of #resolve()
  #resolvedHeader = NIL;
  #resolvedFrame = NIL;

  /** @param context page source and CPU count */
  constructor(context: EngineContext) {
    this.#source = context.pageSource;
    this.#cpuCount = context.cpuCount;
  }

  /** `_xmalloc()`. */
  allocate(sizeBytes: number, alignBytes = 1, cpu = 0): number {
    assertAllocArgs(sizeBytes, alignBytes, cpu, this.#cpuCount, this.maxAlignBytes);
    this.lastFailureCause = null;
    this.#source.lastFailureCause = null;
    this.lastSteps = 0;
    const block = alignUp(sizeBytes + XMALLOC_HDR_BYTES, XMALLOC_HDR_BYTES);
    const address = block >= PAGE_SIZE_BYTES
      ? this.#wholePagesAlloc(block)
      : this.#listAlloc(block);
    this.lastSharedAccess = block < PAGE_SIZE_BYTES;
    if (address === 0) {
      this.#failedAllocCount++;
      this.lastFailureCause = this.#source.lastFailureCause ?? "unservable";
    } else {
      this.#allocCount++;
    }
    return address;
  }

  /** `xfree()`. */
  free(address: number, cpu = 0): void {
    assertAllocArgs(1, 1, cpu, this.#cpuCount);
    if (address === 0) { // xfree(NULL) / kfree(NULL): nothing to do
      this.lastSteps = 0;
      this.lastSharedAccess = false;
      return;
    }
    if (this.#resolve(address) === "whole") {
      this.#wholePagesFree(this.#resolvedFrame);
      this.lastSteps = 0;
      this.lastSharedAccess = false;
    } else {
      // "Big allocs free directly", before spin_lock(&freelist_lock)
      this.lastSharedAccess = this.#blockBytes[this.#resolvedHeader]! < PAGE_SIZE_BYTES;
      this.#listFree(this.#resolvedHeader);
    }
    this.#freeCount++;
  }

  /** In place if the block already holds the new size, else move (allocate, copy, free). */
  reallocate(address: number, sizeBytes: number, alignBytes = 1, cpu = 0): number {
    assertAllocArgs(sizeBytes, alignBytes, cpu, this.#cpuCount, this.maxAlignBytes);
    if (address === 0) return this.allocate(sizeBytes, alignBytes, cpu); // _xrealloc(NULL, n)
    if (sizeBytes <= this.usableSize(address)) {
      this.lastSteps = 0;
      this.lastFailureCause = null;
      this.lastSharedAccess = false;
      return address;
    }
    const moved = reallocateByMoving(this, address, sizeBytes, alignBytes, cpu);
    this.lastSteps = moved.steps;
    this.lastSharedAccess = moved.shared;
    return moved.address;
  }

  usableSize(address: number): number {
    if (this.#resolve(address) === "whole") {
      const order = WHOLE_WORD_BASE - this.#source.pages.privateWord(this.#resolvedFrame);
      return (PAGE_SIZE_BYTES << order) - XMALLOC_HDR_BYTES;
    }
    return this.#blockBytes[this.#resolvedHeader]! - XMALLOC_HDR_BYTES;
  }

  pagesHeld(): EnginePages {
    return { poolPages: this.#poolPages, wholePages: this.#wholePages, metaPages: 0 };
  }

  stats(): EngineStats {
    return {
      engine: this.name,
      ...this.pagesHeld(),
      allocCount: this.#allocCount,
      failedAllocCount: this.#failedAllocCount,
      freeCount: this.#freeCount,
      liveBlockCount: this.#liveBlocks + this.#wholeBlocks,
      liveReservedBytes: this.#liveBytes + this.#wholePages * PAGE_SIZE_BYTES,
      stepTotals: { list_nodes_visited: this.#nodesVisited },
    };
  }

  /** Nothing cached: a page goes back as soon as it holds no block. */
  shrink(): void {}

  destroy(): void {
    this.#source.releaseAll();
    this.#slotFrame.fill(NIL);
    this.#blockBytes.fill(0);
    this.#state.fill(0);
    this.#freeSlots = [];
    this.#slotsUsed = 0;
    this.#poolPages = 0;
    this.#freeHead = NIL;
    this.#freeLength = 0;
    this.#wholePages = 0;
    this.#wholeBlocks = 0;
    this.#liveBlocks = 0;
    this.#liveBytes = 0;
  }

  /**
   * Write the engine's whole state, fields grouped as declared: the last call's
   * answers (steps, failure cause, "" for none, shared access), the CPU count, the
   * page slots (frames, free-slot stack, slots used, pages), the header tables whole
   * with their spare capacity, the free list's head and length, then the counters.
   * The page source is the context's; `#resolve()`'s results are read only within
   * the call that sets them.
   */
  saveState(w: StateWriter): void {
    w.num(this.lastSteps);
    writeFailureCause(w, this.lastFailureCause);
    w.bool(this.lastSharedAccess);
    w.num(this.#cpuCount);
    w.array(this.#slotFrame);
    w.numbers(this.#freeSlots);
    w.num(this.#slotsUsed);
    w.num(this.#poolPages);
    w.array(this.#blockBytes);
    w.array(this.#state);
    w.array(this.#next);
    w.array(this.#prev);
    w.num(this.#freeHead);
    w.num(this.#freeLength);
    w.num(this.#wholePages);
    w.num(this.#wholeBlocks);
    w.num(this.#liveBlocks);
    w.num(this.#liveBytes);
    w.num(this.#allocCount);
    w.num(this.#failedAllocCount);
    w.num(this.#freeCount);
    w.num(this.#nodesVisited);
  }

  /**
   * The engine whose state `r` holds (from {@link saveState}), touching nothing: its
   * pages (list pages with their slots, whole-page blocks with their orders, in the
   * private words) are already the page source's.
   *
   * @param context the saved engine's page source and CPU count
   * @param r the state
   * @throws {StateError} if the state does not read back, is of another CPU count,
   *   or its tables do not fit together
   */
  static load(context: EngineContext, r: StateReader): FirstFitEngine {
    // The constructor takes no page: pages are taken by allocations only.
    const engine = new FirstFitEngine(context);
    engine.lastSteps = r.num();
    const cause = readFailureCause(r, "first-fit");
    engine.lastSharedAccess = r.bool();
    const cpuCount = r.num();
    engine.#slotFrame = r.array(Int32Array);
    engine.#freeSlots = r.numbers();
    engine.#slotsUsed = r.num();
    engine.#poolPages = r.num();
    engine.#blockBytes = r.array(Uint16Array);
    engine.#state = r.array(Uint8Array);
    engine.#next = r.array(Int32Array);
    engine.#prev = r.array(Int32Array);
    engine.#freeHead = r.num();
    engine.#freeLength = r.num();
    engine.#wholePages = r.num();
    engine.#wholeBlocks = r.num();
    engine.#liveBlocks = r.num();
    engine.#liveBytes = r.num();
    engine.#allocCount = r.num();
    engine.#failedAllocCount = r.num();
    engine.#freeCount = r.num();
    engine.#nodesVisited = r.num();
    engine.lastFailureCause = cause;
    if (cpuCount !== context.cpuCount) {
      throw new StateError(
        `A saved first-fit engine of ${cpuCount} CPUs cannot load for ${context.cpuCount}`,
      );
    }
    const problem = engine.#shapeProblem();
    if (problem !== null) {
      throw new StateError(`A saved first-fit engine does not fit together: ${problem}`);
    }
    return engine;
  }

  /** What is wrong with the sizes of the loaded tables, or null. */
  #shapeProblem(): string | null {
    const slots = this.#slotFrame.length;
    const headers = slots * GRANULES_PER_PAGE;
    if (
      slots === 0 || this.#blockBytes.length !== headers || this.#state.length !== headers ||
      this.#next.length !== headers || this.#prev.length !== headers
    ) {
      return `the header tables do not have ${GRANULES_PER_PAGE} entries per page slot`;
    }
    const used = this.#slotsUsed;
    if (!Number.isInteger(used) || used < 0 || used > slots) {
      return `${used} slots used of ${slots}`;
    }
    if (this.#freeSlots.some((s) => !Number.isInteger(s) || s < 0 || s >= used)) {
      return "a free slot is out of range";
    }
    const head = this.#freeHead;
    if (head !== NIL && !(Number.isInteger(head) && head >= 0 && head < used * GRANULES_PER_PAGE)) {
      return `the free list starts at header ${head}, out of range`;
    }
    return null;
  }

  // -- the free list ----------------------------------------------------------------

  /** Search the free list first fit; take a new page if nothing fits. */
  #listAlloc(block: number): number {
    const blockBytes = this.#blockBytes;
    let visited = 0;
    for (let h = this.#freeHead; h !== NIL; h = this.#next[h]!) {
      visited++;
      if (blockBytes[h]! < block) continue;
      this.#unlink(h);
      this.#maybeSplit(h, block, blockBytes[h]!);
      this.#countSteps(visited);
      return this.#dataAddress(h);
    }
    this.#countSteps(visited);
    return this.#newPage(block);
  }

  /** `xmalloc_new_page()`. */
  #newPage(block: number): number {
    const frame = this.#source.allocPages(0);
    if (frame < 0) return 0;
    let slot = this.#freeSlots.pop();
    if (slot === undefined) {
      slot = this.#slotsUsed++;
      if (slot >= this.#slotFrame.length) this.#grow(this.#slotFrame.length * 2);
    }
    this.#slotFrame[slot] = frame;
    this.#source.pages.setPrivateWord(frame, slot);
    this.#poolPages++;
    const h = slot << PAGE_SLOT_SHIFT;
    this.#maybeSplit(h, block, PAGE_SIZE_BYTES);
    return this.#dataAddress(h);
  }

  /** `maybe_split()`: hand out `block` bytes of the free block `h` of `total` bytes. */
  #maybeSplit(h: number, block: number, total: number): void {
    const leftover = total - block;
    if (leftover >= SPLIT_MIN_BYTES) {
      const extra = h + (block >> GRANULE_SHIFT);
      this.#blockBytes[extra] = leftover;
      this.#push(extra);
    } else {
      block = total;
    }
    this.#blockBytes[h] = block;
    this.#state[h] = STATE_USED;
    this.#liveBlocks++;
    this.#liveBytes += block;
  }

  /** The list half of `xfree()`. */
  #listFree(h: number): void {
    const blockBytes = this.#blockBytes;
    let size = blockBytes[h]!;
    this.#liveBlocks--;
    this.#liveBytes -= size;
    if (size >= PAGE_SIZE_BYTES) { // "Big allocs free directly": a page handed out whole
      this.lastSteps = 0;
      this.#releasePage(h >> PAGE_SLOT_SHIFT);
      return;
    }
    this.#countSteps(this.#freeLength);
    const pageStart = h & ~(GRANULES_PER_PAGE - 1);
    const after = h + (size >> GRANULE_SHIFT);
    if (after < pageStart + GRANULES_PER_PAGE && this.#state[after] === STATE_FREE) {
      this.#unlink(after); // "We precede this block? Swallow it."
      size += blockBytes[after]!;
      blockBytes[after] = 0;
      this.#state[after] = STATE_NONE;
    }
    let before = h - 1;
    while (before >= pageStart && this.#state[before] === STATE_NONE) before--;
    if (before >= pageStart && this.#state[before] === STATE_FREE) {
      this.#unlink(before); // "We follow this block? Swallow it."
      size += blockBytes[before]!;
      blockBytes[h] = 0;
      this.#state[h] = STATE_NONE;
      h = before;
    }
    blockBytes[h] = size;
    if (size === PAGE_SIZE_BYTES) { // "Did we merge an entire page?"
      this.#releasePage(h >> PAGE_SLOT_SHIFT);
      return;
    }
    this.#push(h);
  }

  #push(h: number): void {
    const head = this.#freeHead;
    this.#state[h] = STATE_FREE;
    this.#prev[h] = NIL;
    this.#next[h] = head;
    if (head !== NIL) this.#prev[head] = h;
    this.#freeHead = h;
    this.#freeLength++;
  }

  #unlink(h: number): void {
    const next = this.#next[h]!;
    const prev = this.#prev[h]!;
    if (prev === NIL) this.#freeHead = next;
    else this.#next[prev] = next;
    if (next !== NIL) this.#prev[next] = prev;
    this.#state[h] = STATE_NONE;
    this.#freeLength--;
  }

  #releasePage(slot: number): void {
    const frame = this.#slotFrame[slot]!;
    const base = slot << PAGE_SLOT_SHIFT;
    this.#blockBytes.fill(0, base, base + GRANULES_PER_PAGE);
    this.#state.fill(STATE_NONE, base, base + GRANULES_PER_PAGE);
    this.#slotFrame[slot] = NIL;
    this.#freeSlots.push(slot);
    this.#poolPages--;
    this.#source.freePages(frame, 0);
  }

  #countSteps(visited: number): void {
    this.lastSteps = visited;
    this.#nodesVisited += visited;
  }

  // -- whole pages ------------------------------------------------------------------

  /** `xmalloc_whole_pages()`: 2^order pages, the header in front of the data. */
  #wholePagesAlloc(block: number): number {
    const order = getOrderFromBytes(block);
    const frame = this.#source.allocPages(order);
    if (frame < 0) return 0;
    this.#source.pages.setPrivateWord(frame, WHOLE_WORD_BASE - order);
    this.#wholePages += 1 << order;
    this.#wholeBlocks++;
    return frameToAddress(frame) + XMALLOC_HDR_BYTES;
  }

  #wholePagesFree(frame: number): void {
    const order = WHOLE_WORD_BASE - this.#source.pages.privateWord(frame);
    this.#source.pages.setPrivateWord(frame, 0);
    this.#source.freePages(frame, order);
    this.#wholePages -= 1 << order;
    this.#wholeBlocks--;
  }

  // -- addresses --------------------------------------------------------------------

  #dataAddress(h: number): number {
    return frameToAddress(this.#slotFrame[h >> PAGE_SLOT_SHIFT]!) +
      ((h & (GRANULES_PER_PAGE - 1)) << GRANULE_SHIFT) + XMALLOC_HDR_BYTES;
  }

  /** Find the live block `address` names, or throw saying why it is none. */
  #resolve(address: number): "list" | "whole" {
    if (!Number.isSafeInteger(address)) {
      throw new InvalidFreeError(address, "unknown-address", "not an integer address");
    }
    const pages = this.#source.pages;
    const frame = addressToFrame(address);
    if (frame < 0 || frame >= pages.frameCount) {
      throw new InvalidFreeError(address, "unknown-address", "outside the machine's memory");
    }
    const offset = pageOffset(address);
    const word = this.#source.holds(frame) ? pages.privateWord(frame) : 0;
    if (word < 0 && offset === XMALLOC_HDR_BYTES) {
      this.#resolvedFrame = frame;
      return "whole";
    }
    const slot = word >= 0 && this.#source.holds(frame) && this.#slotFrame[word] === frame
      ? word
      : NIL;
    if (slot !== NIL && offset >= XMALLOC_HDR_BYTES && offset % XMALLOC_HDR_BYTES === 0) {
      const h = (slot << PAGE_SLOT_SHIFT) + (offset >> GRANULE_SHIFT) - 1;
      if (this.#state[h] === STATE_USED) {
        this.#resolvedHeader = h;
        return "list";
      }
      if (this.#state[h] === STATE_FREE) {
        throw new InvalidFreeError(address, "double-free", "block is already free");
      }
      let g = h;
      while ((g & (GRANULES_PER_PAGE - 1)) !== 0 && this.#state[g] === STATE_NONE) g--;
      if (this.#state[g] === STATE_FREE) {
        throw new InvalidFreeError(address, "double-free", "block is already free");
      }
    }
    const head = pages.blockHeadOf(frame);
    if (head >= 0 && pages.isAllocatedHead(head, this.#source.owner)) {
      throw new InvalidFreeError(address, "interior-pointer", "not the start of a block");
    }
    throw new InvalidFreeError(address, "unknown-address", "no live block of this pool there");
  }

  #grow(slots: number): void {
    this.#slotFrame = grown(this.#slotFrame, slots, NIL);
    const n = slots * GRANULES_PER_PAGE;
    this.#blockBytes = grown(this.#blockBytes, n);
    this.#state = grown(this.#state, n);
    this.#next = grown(this.#next, n);
    this.#prev = grown(this.#prev, n);
  }

  // -- debug walk -------------------------------------------------------------------

  /** Walk every page and the free list; one message per violation. */
  check(): string[] {
    const errors: string[] = [];
    let pages = 0;
    let freeBlocks = 0;
    let liveBlocks = 0;
    let liveBytes = 0;
    for (let slot = 0; slot < this.#slotsUsed; slot++) {
      const frame = this.#slotFrame[slot]!;
      if (frame === NIL) continue;
      pages++;
      if (!this.#source.holds(frame) || this.#source.pages.privateWord(frame) !== slot) {
        errors.push(`page slot ${slot}: frame ${frame} is not held or does not map back`);
      }
      const base = slot << PAGE_SLOT_SHIFT;
      let covered = 0;
      let prevFree = false;
      for (let g = 0; g < GRANULES_PER_PAGE;) {
        const h = base + g;
        const size = this.#blockBytes[h]!;
        const state = this.#state[h]!;
        if (state === STATE_NONE || size === 0 || size % XMALLOC_HDR_BYTES !== 0) {
          errors.push(`page slot ${slot}: no valid block at granule ${g}`);
          break;
        }
        for (let i = h + 1; i < h + size / XMALLOC_HDR_BYTES; i++) {
          if (this.#state[i] !== STATE_NONE) {
            errors.push(`page slot ${slot}: header inside a block at granule ${i - base}`);
          }
        }
        if (state === STATE_FREE) {
          if (prevFree) errors.push(`page slot ${slot}: adjacent free blocks at granule ${g}`);
          freeBlocks++;
        } else {
          liveBlocks++;
          liveBytes += size;
        }
        prevFree = state === STATE_FREE;
        covered += size;
        g += size / XMALLOC_HDR_BYTES;
      }
      if (covered !== PAGE_SIZE_BYTES) {
        errors.push(`page slot ${slot}: blocks cover ${covered} bytes`);
      }
      if (
        covered === PAGE_SIZE_BYTES && this.#state[base] === STATE_FREE &&
        this.#blockBytes[base] === PAGE_SIZE_BYTES
      ) {
        errors.push(`page slot ${slot}: wholly free but kept`);
      }
    }
    if (pages !== this.#poolPages) errors.push(`${pages} pages found, counted ${this.#poolPages}`);
    if (liveBlocks !== this.#liveBlocks) {
      errors.push(`${liveBlocks} live blocks found, counted ${this.#liveBlocks}`);
    }
    if (liveBytes !== this.#liveBytes) {
      errors.push(`${liveBytes} live bytes found, counted ${this.#liveBytes}`);
    }
    let listed = 0;
    let prev = NIL;
    for (let h = this.#freeHead; h !== NIL; h = this.#next[h]!) {
      if (++listed > this.#freeLength + 1) {
        errors.push("free list longer than counted (cycle?)");
        break;
      }
      if (this.#state[h] !== STATE_FREE) errors.push(`free list holds a block that is not free`);
      if (this.#prev[h] !== prev) errors.push(`free list has a wrong back link`);
      prev = h;
    }
    if (listed !== this.#freeLength) {
      errors.push(`free list holds ${listed} blocks, counted ${this.#freeLength}`);
    }
    if (listed !== freeBlocks) {
      errors.push(`${freeBlocks} free blocks in pages, ${listed} on the list`);
    }
    const total = this.#poolPages + this.#wholePages;
    if (total !== this.#source.heldPages) {
      errors.push(
        `engine counts ${total} pages, page allocator says it holds ${this.#source.heldPages}`,
      );
    }
    return errors;
  }
}

/** Registry entry of the `first-fit` engine. */
export const firstFitEngine: EngineDescriptor = {
  name: "first-fit",
  description: "Xen's xmalloc before 2008: one global first-fit free list, 128-byte headers",
  modelledOn:
    "xen/common/xmalloc.c @261aa81d0588 (Xen 3.3): _xmalloc, xfree, maybe_split, xmalloc_new_page, xmalloc_whole_pages",
  parameters: {
    header_bytes: XMALLOC_HDR_BYTES,
    block_bytes: "align_up(size + 128, 128)",
    split_if_leftover_at_least: SPLIT_MIN_BYTES,
    whole_pages_if_block_at_least: PAGE_SIZE_BYTES,
    whole_page_order: "get_order_from_bytes(block), no tail trim",
    free_list: "one global LIFO list, first fit from the head; xfree walks all of it",
  },
  create: (context: EngineContext) => new FirstFitEngine(context),
  stateLayout: 1,
  load: (context: EngineContext, r: StateReader) => FirstFitEngine.load(context, r),
};
