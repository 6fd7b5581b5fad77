/**
 * The TLSF pool of Xen's xmalloc: `struct xmem_pool` and `xmem_pool_alloc()` /
 * `xmem_pool_free()` of xen/common/xmalloc_tlsf.c (TLSF 2.3.2 as ported to Linux by
 * Nitin Gupta and to Xen by Dan Magenheimer), x86_64 values. Shared by the `tlsf`
 * (today's Xen) and `tlsf-2008` (Xen 3.4) front ends, whose pools are identical.
 *
 * Sections, in TLSF's own order: constants, data layout, block helpers, mapping
 * functions, list operations, pool operations, the saved state, the debug walk.
 *
 * ## Data layout
 * A region is one page from the page allocator (the pool's `grow_size` is PAGE_SIZE).
 * Each region gets a slot; every 16-byte granule of the region may hold a block
 * header, whose fields live in typed arrays at index `slot * 256 + granule`
 * (a "header index"):
 *
 * - `sizeWord`: Xen's `bhdr.size` (payload bytes | FREE_BLOCK | PREV_FREE) plus two
 *   model-only tags in the high bits: HDR_VALID (a header starts here) and HDR_PAD
 *   (the fake header `add_padding()` writes in front of an aligned pointer);
 * - `prevHdr`: `bhdr.prev_hdr`, the physically previous block (-1: NULL);
 * - `freeNext` / `freePrev`: `bhdr.ptr.free_ptr`, links of the segregated free lists.
 *
 * A region: header at granule 0 with a 4064-byte payload when fresh, blocks tile the
 * page, and a 0-size sentinel header at granule 255 (offset 4080).
 *
 * Invariants (checked by {@link TlsfPool.check}): sum over a region's blocks of
 * (payload + 16) + 16 == PAGE_SIZE; no two physically adjacent blocks are free;
 * a block's PREV_FREE bit == the previous block's FREE bit; every free block is on the
 * list MAPPING_INSERT(size) names and only there; a bitmap bit is set iff its list is
 * non-empty; no region is ever wholly free between calls (it is returned at once).
 *
 * ## Steps (per call, as the reference harness counts them)
 * +1 per FIND_SUITABLE_BLOCK (the bitmap search), +1 per INSERT_BLOCK (including the
 * one ADD_REGION makes), +1 per EXTRACT_BLOCK_HDR / EXTRACT_BLOCK.
 *
 * @module
 */

import { frameToAddress, PAGE_SIZE_BYTES } from "../../src/units.ts";
import { grown } from "../../src/typed_array.ts";
import { StateError, type StateReader, type StateWriter } from "../../src/state_codec.ts";
import type { PageSource } from "./engine.ts";

// -- constants (xmalloc_tlsf.c, x86_64) ------------------------------------------

/** MEM_ALIGN: sizeof(void *) * 2. */
export const MEM_ALIGN_BYTES = 16;
const MAX_LOG2_SLI = 5;
const MAX_SLI = 1 << MAX_LOG2_SLI; // 32 second-level lists per power of two
const FLI_OFFSET = 6;
const MAX_FLI = 30;
const REAL_FLI = MAX_FLI - FLI_OFFSET; // 24
const SMALL_BLOCK_BYTES = 128;
/** MIN_BLOCK_SIZE: sizeof(struct free_ptr). */
export const MIN_BLOCK_BYTES = 16;
/** BHDR_OVERHEAD: sizeof(struct bhdr) - MIN_BLOCK_SIZE. */
export const BHDR_OVERHEAD_BYTES = 16;
const BHDR_BYTES = BHDR_OVERHEAD_BYTES + MIN_BLOCK_BYTES; // sizeof(struct bhdr) = 32
/** Region size: the pool grows by exactly one page (`grow_size`). */
const REGION_BYTES = PAGE_SIZE_BYTES;
/** Largest payload a region holds: grow_size - 2 * BHDR_OVERHEAD = 4064. */
export const MAX_POOL_BLOCK_BYTES = REGION_BYTES - 2 * BHDR_OVERHEAD_BYTES;
/** sizeof(struct xmem_pool) on x86_64, as built for the reference figures. */
export const XMEM_POOL_STRUCT_BYTES = 6320;

const GRANULES_PER_REGION = REGION_BYTES / MEM_ALIGN_BYTES; // 256
const GRANULE_SHIFT = 4;
const REGION_SHIFT = 8; // log2(GRANULES_PER_REGION)

const FREE_BLOCK = 0x1;
const PREV_FREE = 0x2;
const HDR_VALID = 0x4000_0000; // model-only: a header starts at this granule
const HDR_PAD = 0x2000_0000; // model-only: add_padding()'s fake header
const HDR_PADDED = 0x1000_0000; // model-only: this live block's pointer is padded
const SIZE_MASK = 0x0fff_fff8; // BLOCK_SIZE_MASK without the model's tags
const NIL = -1;

if (SMALL_BLOCK_BYTES / MAX_SLI !== 4) throw new Error("TLSF: SMALL_BLOCK / MAX_SLI must be 4");
if (MAX_POOL_BLOCK_BYTES !== 4064) throw new Error("TLSF: a one-page region holds 4064 bytes");

/** flsl(): 1-based index of the most significant set bit, 0 for 0. */
function fls(x: number): number {
  return 32 - Math.clz32(x);
}

/** ffs(): 1-based index of the least significant set bit, 0 for 0. */
function ffs(x: number): number {
  return x === 0 ? 0 : 32 - Math.clz32(x & -x);
}

/** Names of the step kinds, in `stepTotals`. */
export const TLSF_STEP_KINDS = ["bitmap_searches", "list_inserts", "list_removes"] as const;

/** One TLSF pool of one-page regions. */
export class TlsfPool {
  readonly #source: PageSource;

  // data layout: one slot per region, 256 header slots per region
  #slotFrame = new Int32Array(64).fill(NIL);
  #freeSlots: number[] = [];
  #slotsUsed = 0;
  #regionCount = 0;
  #sizeWord = new Uint32Array(64 * GRANULES_PER_REGION);
  #prevHdr = new Int32Array(64 * GRANULES_PER_REGION);
  #freeNext = new Int32Array(64 * GRANULES_PER_REGION);
  #freePrev = new Int32Array(64 * GRANULES_PER_REGION);

  // struct xmem_pool: bitmaps and the matrix of list heads
  #flBitmap = 0;
  #slBitmap = new Uint32Array(REAL_FLI);
  #matrix = new Int32Array(REAL_FLI * MAX_SLI).fill(NIL);

  // results of the mapping functions (no allocation on the hot path)
  #fl = 0;
  #sl = 0;

  /** Steps of the current call; the front end resets it. */
  steps = 0;
  /** Step totals by kind. */
  bitmapSearches = 0;
  /** INSERT_BLOCK calls. */
  listInserts = 0;
  /** EXTRACT_BLOCK(_HDR) calls. */
  listRemoves = 0;
  /** Allocated blocks. */
  liveBlocks = 0;
  /** Bytes of allocated blocks including their headers. */
  liveReservedBytes = 0;

  readonly #idleRegionAllowed: boolean;

  /**
   * @param source where regions come from
   * @param idleRegionAllowed whether a wholly free region may exist between calls
   *   (Xen 3.4's initial region stays until something is carved from it)
   */
  constructor(source: PageSource, idleRegionAllowed = false) {
    this.#source = source;
    this.#idleRegionAllowed = idleRegionAllowed;
  }

  /** Regions (pages) the pool holds. */
  get regionCount(): number {
    return this.#regionCount;
  }

  // -- block helpers ----------------------------------------------------------------

  /** Machine address of the payload of header `h`. */
  payloadAddress(h: number): number {
    const frame = this.#slotFrame[h >> REGION_SHIFT]!;
    return frameToAddress(frame) +
      ((h & (GRANULES_PER_REGION - 1)) << GRANULE_SHIFT) + BHDR_OVERHEAD_BYTES;
  }

  /** Payload bytes of the block at header `h`. */
  blockSize(h: number): number {
    return this.#sizeWord[h]! & SIZE_MASK;
  }

  /** Slot of the region at `frame`, or -1 if `frame` is not one of this pool's regions. */
  regionSlot(frame: number): number {
    if (!this.#source.holds(frame)) return NIL;
    const slot = this.#source.pages.privateWord(frame);
    return slot >= 0 && slot < this.#slotsUsed && this.#slotFrame[slot] === frame ? slot : NIL;
  }

  /**
   * Header index of the live block whose (possibly padded) payload starts at byte
   * `offset` of region `slot`, with the alignment padding stripped
   * (`strip_padding()`); or a negative code: -1 interior pointer, -2 already free.
   */
  liveHeaderAt(slot: number, offset: number): number {
    if (offset < BHDR_OVERHEAD_BYTES || (offset & (MEM_ALIGN_BYTES - 1)) !== 0) return -1;
    let h = (slot << REGION_SHIFT) + ((offset - BHDR_OVERHEAD_BYTES) >> GRANULE_SHIFT);
    const h0 = h;
    let w = this.#sizeWord[h]!;
    if ((w & HDR_PAD) !== 0) {
      h -= (w & SIZE_MASK) >> GRANULE_SHIFT;
      w = this.#sizeWord[h]!;
      if ((w & HDR_VALID) === 0 || (w & FREE_BLOCK) !== 0) return -1;
    }
    if ((w & HDR_VALID) !== 0) {
      if ((w & SIZE_MASK) === 0) return -1; // the sentinel
      if ((w & FREE_BLOCK) !== 0) return -2;
      // The payload start of a padded block is not the pointer it was handed out as.
      return (w & HDR_PADDED) !== 0 && (this.#sizeWord[h0]! & HDR_PAD) === 0 ? -1 : h;
    }
    // Not a header: inside some block. Inside a free one means it was freed before.
    let g = h;
    while ((this.#sizeWord[g]! & HDR_VALID) === 0 || (this.#sizeWord[g]! & HDR_PAD) !== 0) g--;
    return (this.#sizeWord[g]! & FREE_BLOCK) !== 0 ? -2 : -1;
  }

  /** Alignment padding in front of the payload of `h` at `offset` (0 if none). */
  paddingOf(h: number, offset: number): number {
    const start = ((h & (GRANULES_PER_REGION - 1)) << GRANULE_SHIFT) + BHDR_OVERHEAD_BYTES;
    return offset - start;
  }

  /**
   * `add_padding()`: align the payload of `h` to `alignBytes` by writing a fake
   * free header in front of the returned pointer. Returns the pad in bytes.
   */
  addPadding(h: number, alignBytes: number): number {
    if (alignBytes <= MEM_ALIGN_BYTES) return 0; // payloads are always 16-byte aligned
    const address = this.payloadAddress(h);
    const pad = (alignBytes - (address % alignBytes)) % alignBytes;
    if (pad !== 0) {
      this.#sizeWord[h + (pad >> GRANULE_SHIFT)] = HDR_PAD | pad | FREE_BLOCK;
      this.#sizeWord[h] = this.#sizeWord[h]! | HDR_PADDED;
    }
    return pad;
  }

  /** Remove the fake header of a padded pointer (when its block is freed or re-padded). */
  clearPadding(h: number, pad: number): void {
    if (pad !== 0) {
      this.#sizeWord[h + (pad >> GRANULE_SHIFT)] = 0;
      this.#sizeWord[h] = this.#sizeWord[h]! & ~HDR_PADDED;
    }
  }

  // -- mapping functions ------------------------------------------------------------

  /**
   * MAPPING_SEARCH(): the list to search for a request of `r` bytes; sets fl/sl and
   * returns r rounded up to that list's size class.
   */
  #mappingSearch(r: number): number {
    if (r < SMALL_BLOCK_BYTES) {
      this.#fl = 0;
      this.#sl = r >> 2; // r / (SMALL_BLOCK / MAX_SLI)
      return r;
    }
    const t = (1 << (fls(r) - 1 - MAX_LOG2_SLI)) - 1;
    r += t;
    const fl = fls(r) - 1;
    this.#sl = (r >> (fl - MAX_LOG2_SLI)) - MAX_SLI;
    this.#fl = fl - FLI_OFFSET;
    return r & ~t;
  }

  /** MAPPING_INSERT(): the list a free block of `r` bytes belongs on. */
  #mappingInsert(r: number): void {
    if (r < SMALL_BLOCK_BYTES) {
      this.#fl = 0;
      this.#sl = r >> 2;
      return;
    }
    const fl = fls(r) - 1;
    this.#sl = (r >> (fl - MAX_LOG2_SLI)) - MAX_SLI;
    this.#fl = fl - FLI_OFFSET;
  }

  // -- list operations --------------------------------------------------------------

  /** FIND_SUITABLE_BLOCK(): head of the first non-empty list at or above (fl, sl). */
  #findSuitableBlock(): number {
    this.steps++;
    this.bitmapSearches++;
    let fl = this.#fl;
    const tmp = fl < REAL_FLI ? this.#slBitmap[fl]! & (~0 << this.#sl) : 0;
    if (tmp !== 0) {
      this.#sl = ffs(tmp) - 1;
      return this.#matrix[(fl << MAX_LOG2_SLI) + this.#sl]!;
    }
    fl = fl + 1 < 32 ? ffs(this.#flBitmap & (~0 << (fl + 1))) - 1 : -1;
    this.#fl = fl;
    if (fl > 0) {
      this.#sl = ffs(this.#slBitmap[fl]!) - 1;
      return this.#matrix[(fl << MAX_LOG2_SLI) + this.#sl]!;
    }
    return NIL;
  }

  /** EXTRACT_BLOCK_HDR(): pop `b`, the head of list (fl, sl). */
  #extractBlockHdr(b: number, fl: number, sl: number): void {
    this.steps++;
    this.listRemoves++;
    const i = (fl << MAX_LOG2_SLI) + sl;
    const next = this.#freeNext[b]!;
    this.#matrix[i] = next;
    if (next !== NIL) {
      this.#freePrev[next] = NIL;
    } else {
      this.#slBitmap[fl] = this.#slBitmap[fl]! & ~(1 << sl);
      if (this.#slBitmap[fl] === 0) this.#flBitmap &= ~(1 << fl);
    }
    this.#freeNext[b] = NIL;
    this.#freePrev[b] = NIL;
  }

  /** EXTRACT_BLOCK(): unlink `b` from anywhere in list (fl, sl). */
  #extractBlock(b: number, fl: number, sl: number): void {
    this.steps++;
    this.listRemoves++;
    const next = this.#freeNext[b]!;
    const prev = this.#freePrev[b]!;
    if (next !== NIL) this.#freePrev[next] = prev;
    if (prev !== NIL) this.#freeNext[prev] = next;
    const i = (fl << MAX_LOG2_SLI) + sl;
    if (this.#matrix[i] === b) {
      this.#matrix[i] = next;
      if (next === NIL) {
        this.#slBitmap[fl] = this.#slBitmap[fl]! & ~(1 << sl);
        if (this.#slBitmap[fl] === 0) this.#flBitmap &= ~(1 << fl);
      }
    }
    this.#freeNext[b] = NIL;
    this.#freePrev[b] = NIL;
  }

  /** INSERT_BLOCK(): push `b` on the head of list (fl, sl). */
  #insertBlock(b: number, fl: number, sl: number): void {
    this.steps++;
    this.listInserts++;
    const i = (fl << MAX_LOG2_SLI) + sl;
    const head = this.#matrix[i]!;
    this.#freePrev[b] = NIL;
    this.#freeNext[b] = head;
    if (head !== NIL) this.#freePrev[head] = b;
    this.#matrix[i] = b;
    this.#slBitmap[fl] = this.#slBitmap[fl]! | (1 << sl);
    this.#flBitmap |= 1 << fl;
  }

  // -- pool operations --------------------------------------------------------------

  /**
   * ADD_REGION(): make the page at `frame` one free block of 4064 bytes followed by
   * the sentinel, and put the block on its list.
   */
  #addRegion(frame: number): void {
    const slot = this.#takeSlot(frame);
    const b = slot << REGION_SHIFT;
    this.#sizeWord[b] = HDR_VALID | MAX_POOL_BLOCK_BYTES | FREE_BLOCK;
    this.#prevHdr[b] = NIL;
    this.#mappingInsert(MAX_POOL_BLOCK_BYTES);
    this.#insertBlock(b, this.#fl, this.#sl);
    const sentinel = b + 1 + (MAX_POOL_BLOCK_BYTES >> GRANULE_SHIFT);
    this.#prevHdr[sentinel] = b;
    this.#sizeWord[sentinel] = HDR_VALID | PREV_FREE;
    this.#regionCount++;
  }

  /** Grow the pool by one page-sized region (get_mem + ADD_REGION); false if no page. */
  grow(): boolean {
    const frame = this.#source.allocPages(0);
    if (frame < 0) return false;
    this.#addRegion(frame);
    return true;
  }

  /**
   * xmem_pool_alloc(): a block of at least `size` bytes.
   *
   * @returns its header index, or -1 (request too large for a region, or no page)
   */
  alloc(size: number): number {
    size = size < MIN_BLOCK_BYTES
      ? MIN_BLOCK_BYTES
      : (size + MEM_ALIGN_BYTES - 1) & ~(MEM_ALIGN_BYTES - 1);
    let b = NIL;
    for (let attempt = 0; attempt < 2; attempt++) { // retry_find: once after growing
      size = this.#mappingSearch(size);
      b = this.#findSuitableBlock();
      if (b !== NIL) break;
      if (attempt === 1) break;
      if (size > MAX_POOL_BLOCK_BYTES || !this.grow()) return NIL;
    }
    if (b === NIL) throw new Error("TLSF: the search failed right after the pool grew");
    this.#extractBlockHdr(b, this.#fl, this.#sl);
    const sizeWord = this.#sizeWord;
    const bsize = sizeWord[b]! & SIZE_MASK;
    const nextB = b + 1 + (bsize >> GRANULE_SHIFT);
    const rest = bsize - size;
    if (rest >= BHDR_BYTES) { // split: the rest becomes a free block after b
      const restPayload = rest - BHDR_OVERHEAD_BYTES;
      const b2 = b + 1 + (size >> GRANULE_SHIFT);
      sizeWord[b2] = HDR_VALID | restPayload | FREE_BLOCK;
      this.#prevHdr[b2] = b;
      this.#prevHdr[nextB] = b2;
      this.#mappingInsert(restPayload);
      this.#insertBlock(b2, this.#fl, this.#sl);
      sizeWord[b] = HDR_VALID | size | (sizeWord[b]! & PREV_FREE);
    } else {
      sizeWord[nextB] = sizeWord[nextB]! & ~PREV_FREE;
      sizeWord[b] = sizeWord[b]! & ~FREE_BLOCK;
    }
    this.liveBlocks++;
    this.liveReservedBytes += (sizeWord[b]! & SIZE_MASK) + BHDR_OVERHEAD_BYTES;
    return b;
  }

  /**
   * xmem_pool_free(): free the live block at header `b`, coalescing with both
   * neighbours; a region that becomes one free block goes back to the page allocator.
   */
  free(b: number): void {
    const sizeWord = this.#sizeWord;
    sizeWord[b] = sizeWord[b]! | FREE_BLOCK;
    this.liveBlocks--;
    this.liveReservedBytes -= (sizeWord[b]! & SIZE_MASK) + BHDR_OVERHEAD_BYTES;
    let next = b + 1 + ((sizeWord[b]! & SIZE_MASK) >> GRANULE_SHIFT);
    if ((sizeWord[next]! & FREE_BLOCK) !== 0) {
      const nsize = sizeWord[next]! & SIZE_MASK;
      this.#mappingInsert(nsize);
      this.#extractBlock(next, this.#fl, this.#sl);
      sizeWord[b] = sizeWord[b]! + nsize + BHDR_OVERHEAD_BYTES;
      sizeWord[next] = 0;
    }
    if ((sizeWord[b]! & PREV_FREE) !== 0) {
      const prev = this.#prevHdr[b]!;
      this.#mappingInsert(sizeWord[prev]! & SIZE_MASK);
      this.#extractBlock(prev, this.#fl, this.#sl);
      sizeWord[prev] = sizeWord[prev]! + (sizeWord[b]! & SIZE_MASK) + BHDR_OVERHEAD_BYTES;
      sizeWord[b] = 0;
      b = prev;
    }
    const size = sizeWord[b]! & SIZE_MASK;
    next = b + 1 + (size >> GRANULE_SHIFT);
    this.#prevHdr[next] = b;
    this.#mappingInsert(size);
    if (this.#prevHdr[b] === NIL && (sizeWord[next]! & SIZE_MASK) === 0) {
      this.#releaseRegion(b >> REGION_SHIFT);
      return;
    }
    this.#insertBlock(b, this.#fl, this.#sl);
    sizeWord[next] = sizeWord[next]! | PREV_FREE;
  }

  /** Give every region back to the page allocator (pool teardown). */
  releaseAll(): void {
    for (let slot = 0; slot < this.#slotsUsed; slot++) {
      if (this.#slotFrame[slot] !== NIL) this.#releaseRegion(slot);
    }
    this.#sizeWord.fill(0); // live blocks' headers too
    this.#flBitmap = 0;
    this.#slBitmap.fill(0);
    this.#matrix.fill(NIL);
    this.liveBlocks = 0;
    this.liveReservedBytes = 0;
  }

  #releaseRegion(slot: number): void {
    const frame = this.#slotFrame[slot]!;
    const base = slot << REGION_SHIFT;
    // A wholly free region has two headers left (every merge clears the absorbed one).
    this.#sizeWord[base] = 0;
    this.#sizeWord[base + GRANULES_PER_REGION - 1] = 0;
    this.#slotFrame[slot] = NIL;
    this.#freeSlots.push(slot);
    this.#regionCount--;
    this.#source.freePages(frame, 0);
  }

  #takeSlot(frame: number): number {
    let slot = this.#freeSlots.pop();
    if (slot === undefined) {
      slot = this.#slotsUsed++;
      if (slot >= this.#slotFrame.length) this.#grow(this.#slotFrame.length * 2);
    }
    this.#slotFrame[slot] = frame;
    this.#source.pages.setPrivateWord(frame, slot);
    return slot;
  }

  #grow(slots: number): void {
    this.#slotFrame = grown(this.#slotFrame, slots, NIL);
    const n = slots * GRANULES_PER_REGION;
    this.#sizeWord = grown(this.#sizeWord, n);
    this.#prevHdr = grown(this.#prevHdr, n);
    this.#freeNext = grown(this.#freeNext, n);
    this.#freePrev = grown(this.#freePrev, n);
  }

  // -- saved state (checkpoints, snapshots) ----------------------------------------

  /**
   * Write the pool's whole state, grouped as the class declares it: the region slots
   * (frames, free-slot stack, slots used, region count), the header arrays whole (their
   * capacity included), `struct xmem_pool`'s bitmaps and list heads, then the step and
   * block counters. The mapping functions' results (`fl`, `sl`) are not kept: every
   * search and insert sets them before reading them. The regions' pages are the page
   * allocator's, saved with it (each region's private word holds its slot).
   */
  saveState(w: StateWriter): void {
    // data layout
    w.array(this.#slotFrame);
    w.numbers(this.#freeSlots);
    w.num(this.#slotsUsed);
    w.num(this.#regionCount);
    w.array(this.#sizeWord);
    w.array(this.#prevHdr);
    w.array(this.#freeNext);
    w.array(this.#freePrev);
    // struct xmem_pool
    w.num(this.#flBitmap);
    w.array(this.#slBitmap);
    w.array(this.#matrix);
    // counters
    w.num(this.steps);
    w.num(this.bitmapSearches);
    w.num(this.listInserts);
    w.num(this.listRemoves);
    w.num(this.liveBlocks);
    w.num(this.liveReservedBytes);
  }

  /**
   * The pool whose state `r` holds (from {@link saveState}), built without touching
   * `source`: its regions are already held there, with their slots as private words.
   *
   * @param source where the saved pool's regions are held
   * @param idleRegionAllowed as the saved pool was built with
   * @param r the state, at the pool's first field
   * @throws {StateError} if the state does not read back or its arrays disagree in size
   */
  static load(source: PageSource, idleRegionAllowed: boolean, r: StateReader): TlsfPool {
    const pool = new TlsfPool(source, idleRegionAllowed);
    // data layout
    pool.#slotFrame = r.array(Int32Array);
    pool.#freeSlots = r.numbers();
    pool.#slotsUsed = r.num();
    pool.#regionCount = r.num();
    pool.#sizeWord = r.array(Uint32Array);
    pool.#prevHdr = r.array(Int32Array);
    pool.#freeNext = r.array(Int32Array);
    pool.#freePrev = r.array(Int32Array);
    // struct xmem_pool
    pool.#flBitmap = r.num();
    pool.#slBitmap = r.array(Uint32Array);
    pool.#matrix = r.array(Int32Array);
    // counters
    pool.steps = r.num();
    pool.bitmapSearches = r.num();
    pool.listInserts = r.num();
    pool.listRemoves = r.num();
    pool.liveBlocks = r.num();
    pool.liveReservedBytes = r.num();

    const headers = pool.#slotFrame.length * GRANULES_PER_REGION;
    if (
      [pool.#sizeWord, pool.#prevHdr, pool.#freeNext, pool.#freePrev]
        .some((a) => a.length !== headers) ||
      pool.#slotsUsed > pool.#slotFrame.length ||
      pool.#slBitmap.length !== REAL_FLI ||
      pool.#matrix.length !== REAL_FLI * MAX_SLI
    ) {
      throw new StateError("A saved TLSF pool's arrays disagree in size");
    }
    return pool;
  }

  // -- debug walk (in the spirit of tlsf_check) ------------------------------------

  /** Walk every region, list and bitmap; one message per violation. */
  check(): string[] {
    const errors: string[] = [];
    const sizeWord = this.#sizeWord;
    let freeInRegions = 0;
    let liveBlocks = 0;
    let liveBytes = 0;
    let regions = 0;
    for (let slot = 0; slot < this.#slotsUsed; slot++) {
      const frame = this.#slotFrame[slot]!;
      if (frame === NIL) continue;
      regions++;
      if (this.regionSlot(frame) !== slot) {
        errors.push(`region ${slot}: frame ${frame} does not map back to it`);
      }
      const base = slot << REGION_SHIFT;
      let h = base;
      let prev = NIL;
      let prevFree = false;
      let bytes = 0;
      let blocks = 0;
      while (true) {
        const w = sizeWord[h]!;
        if ((w & HDR_VALID) === 0 || (w & HDR_PAD) !== 0) {
          errors.push(`region ${slot}: no block header at granule ${h - base}`);
          break;
        }
        if (this.#prevHdr[h] !== prev) {
          errors.push(`region ${slot}: granule ${h - base} has a wrong prev_hdr`);
        }
        if (((w & PREV_FREE) !== 0) !== prevFree) {
          errors.push(`region ${slot}: granule ${h - base} PREV_FREE disagrees`);
        }
        const size = w & SIZE_MASK;
        if (size === 0) {
          if (h - base !== GRANULES_PER_REGION - 1) {
            errors.push(`region ${slot}: sentinel at granule ${h - base}`);
          }
          if ((w & FREE_BLOCK) !== 0) errors.push(`region ${slot}: sentinel marked free`);
          bytes += BHDR_OVERHEAD_BYTES;
          break;
        }
        const free = (w & FREE_BLOCK) !== 0;
        if (free && prevFree) {
          errors.push(`region ${slot}: adjacent free blocks at granule ${h - base}`);
        }
        if (free) freeInRegions++;
        else {
          liveBlocks++;
          liveBytes += size + BHDR_OVERHEAD_BYTES;
        }
        for (let g = h + 1; g <= h + (size >> GRANULE_SHIFT); g++) {
          const inner = sizeWord[g]!;
          if (inner !== 0 && !(!free && (inner & HDR_PAD) !== 0)) {
            errors.push(`region ${slot}: stale header inside the block at granule ${h - base}`);
            break;
          }
        }
        bytes += size + BHDR_OVERHEAD_BYTES;
        blocks++;
        prev = h;
        prevFree = free;
        h += 1 + (size >> GRANULE_SHIFT);
        if (h - base >= GRANULES_PER_REGION) {
          errors.push(`region ${slot}: blocks run past the end of the page`);
          break;
        }
      }
      if (bytes !== REGION_BYTES) {
        errors.push(`region ${slot}: blocks cover ${bytes} bytes, not ${REGION_BYTES}`);
      }
      if (blocks === 1 && (sizeWord[base]! & FREE_BLOCK) !== 0 && !this.#idleRegionAllowed) {
        errors.push(`region ${slot}: wholly free but kept`);
      }
    }
    if (regions !== this.#regionCount) {
      errors.push(`${regions} regions found, counted ${this.#regionCount}`);
    }
    if (liveBlocks !== this.liveBlocks) {
      errors.push(`${liveBlocks} live blocks found, counted ${this.liveBlocks}`);
    }
    if (liveBytes !== this.liveReservedBytes) {
      errors.push(`${liveBytes} live bytes found, counted ${this.liveReservedBytes}`);
    }
    let listed = 0;
    for (let fl = 0; fl < REAL_FLI; fl++) {
      if (((this.#flBitmap >>> fl) & 1) !== (this.#slBitmap[fl] !== 0 ? 1 : 0)) {
        errors.push(`fl_bitmap bit ${fl} disagrees with sl_bitmap[${fl}]`);
      }
      for (let sl = 0; sl < MAX_SLI; sl++) {
        const head = this.#matrix[(fl << MAX_LOG2_SLI) + sl]!;
        if (((this.#slBitmap[fl]! >>> sl) & 1) !== (head !== NIL ? 1 : 0)) {
          errors.push(`sl_bitmap[${fl}] bit ${sl} disagrees with its list`);
        }
        let prev = NIL;
        for (let b = head, n = 0; b !== NIL; b = this.#freeNext[b]!, n++) {
          if (n > this.#regionCount * GRANULES_PER_REGION) {
            errors.push(`list (${fl}, ${sl}) has a cycle`);
            break;
          }
          const w = sizeWord[b]!;
          this.#mappingInsert(w & SIZE_MASK);
          if ((w & HDR_VALID) === 0 || (w & FREE_BLOCK) === 0) {
            errors.push(`list (${fl}, ${sl}) holds a block that is not free`);
          }
          if (this.#fl !== fl || this.#sl !== sl) {
            errors.push(`list (${fl}, ${sl}) holds a block of size ${w & SIZE_MASK}`);
          }
          if (this.#freePrev[b] !== prev) errors.push(`list (${fl}, ${sl}) has a wrong back link`);
          prev = b;
          listed++;
        }
      }
    }
    if (listed !== freeInRegions) {
      errors.push(`${listed} blocks on lists, ${freeInRegions} free blocks in regions`);
    }
    return errors;
  }
}
