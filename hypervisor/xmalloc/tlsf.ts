/**
 * `tlsf`: today's Xen xmalloc, xen/common/xmalloc_tlsf.c (`_xmalloc()`, `xfree()`,
 * `xmalloc_whole_pages()`, `_xrealloc()` over `xmem_pool_alloc()` /
 * `xmem_pool_free()`; the pool itself is in `_tlsf_pool.ts`).
 *
 * Size policy (`_xmalloc()`): sizes below PAGE_SIZE try the pool first; the pool
 * cannot serve a rounded size above 4064, so 4033..4095 make one failed search and
 * then go to whole pages, and >= 4096 go straight to whole pages. A whole-page block
 * of n = PFN_UP(size) pages takes one 2^order block and frees the unused tail at once
 * as power-of-two pieces (Xen commit fb034f4264, 2013), so it holds exactly n pages;
 * `xfree()` frees those pieces again. Whole-page blocks are page aligned, which is how
 * `xfree()` tells them from pool blocks.
 *
 * @module
 */

import {
  frameToAddress,
  getOrderFromBytes,
  getOrderFromPages,
  PAGE_SIZE_BYTES,
} from "../../src/units.ts";
import type { EngineContext, EngineDescriptor } from "./engine.ts";
import type { StateReader } from "../../src/state_codec.ts";
import {
  MAX_POOL_BLOCK_BYTES,
  MEM_ALIGN_BYTES,
  type TlsfPool,
  XMEM_POOL_STRUCT_BYTES,
} from "./_tlsf_pool.ts";
import { TlsfFrontEnd } from "./_tlsf_front.ts";

/** The `tlsf` engine: Xen's xmalloc since 2008, with the 2013 near-page change. */
export class TlsfEngine extends TlsfFrontEnd {
  readonly name = "tlsf";
  readonly description =
    "Xen's TLSF xmalloc (xen/common/xmalloc_tlsf.c): O(1) two-level segregated fit";

  /** @param context page source and CPU count */
  constructor(context: EngineContext) {
    super(context);
  }

  /**
   * The engine whose state `r` holds (from `saveState`), built without touching the
   * page source, which already holds its pages with their private words.
   *
   * @param context the saved engine's page source (loaded) and CPU count
   * @param r the state
   * @throws {StateError} if the state does not read back or is not consistent
   */
  static load(context: EngineContext, r: StateReader): TlsfEngine {
    const engine = new TlsfEngine(context);
    engine.loadState(r);
    return engine;
  }

  /** `_xmalloc()`: pool for size < PAGE_SIZE, else (or on failure) whole pages. */
  protected xmalloc(pool: TlsfPool, sizeBytes: number, alignBytes: number): number {
    const padded = sizeBytes + alignBytes - MEM_ALIGN_BYTES;
    if (padded < PAGE_SIZE_BYTES) {
      const h = pool.alloc(padded);
      if (h >= 0) return pool.payloadAddress(h) + pool.addPadding(h, alignBytes);
    }
    return this.#wholePages(sizeBytes, alignBytes);
  }

  /** `xmalloc_whole_pages()`: 2^order pages, the tail beyond PFN_UP(size) freed. */
  #wholePages(sizeBytes: number, alignBytes: number): number {
    const order = getOrderFromBytes(Math.max(alignBytes, sizeBytes));
    const frame = this.source.allocPages(order);
    if (frame < 0) return 0;
    const pageCount = Math.ceil(sizeBytes / PAGE_SIZE_BYTES);
    let tail = frame + pageCount;
    for (let i = 0; i < order; i++) {
      if ((tail & (1 << i)) !== 0) {
        this.source.freePages(tail, i);
        tail += 1 << i;
      }
    }
    this.source.pages.setPrivateWord(frame, -pageCount); // PFN_ORDER(page) = PFN_UP(size)
    this.wholePageCount += pageCount;
    this.wholeBlockCount++;
    return frameToAddress(frame);
  }

  protected isWholeStart(frame: number, offset: number): boolean {
    if (offset !== 0 || !this.source.holds(frame)) return false;
    const word = this.source.pages.privateWord(frame);
    return word < 0 && word > -(2 ** 30);
  }

  /** `xfree()` of a page-aligned pointer: free the pieces, low orders first. */
  protected freeWhole(frame: number): void {
    let size = -this.source.pages.privateWord(frame);
    const pageCount = size;
    const order = getOrderFromPages(size);
    this.source.pages.setPrivateWord(frame, 0);
    for (let i = 0;; i++) {
      if ((size & (1 << i)) === 0) continue;
      size -= 1 << i;
      this.source.freePages(frame + size, i);
      if (i + 1 >= order) break;
    }
    this.wholePageCount -= pageCount;
    this.wholeBlockCount--;
  }

  protected wholeUsableBytes(frame: number): number {
    return -this.source.pages.privateWord(frame) * PAGE_SIZE_BYTES;
  }
}

/** Registry entry of the `tlsf` engine. */
export const tlsfEngine: EngineDescriptor = {
  name: "tlsf",
  description: "Xen's xmalloc today: TLSF pool of one-page regions, near-page sizes to whole pages",
  modelledOn:
    "xen/common/xmalloc_tlsf.c: _xmalloc, xfree, _xrealloc, xmalloc_whole_pages, xmem_pool_alloc, xmem_pool_free",
  parameters: {
    MEM_ALIGN: MEM_ALIGN_BYTES,
    MAX_LOG2_SLI: 5,
    FLI_OFFSET: 6,
    SMALL_BLOCK: 128,
    BHDR_OVERHEAD: 16,
    grow_size: PAGE_SIZE_BYTES,
    max_pool_block: MAX_POOL_BLOCK_BYTES,
    pool_struct_bytes: XMEM_POOL_STRUCT_BYTES,
    whole_pages: "size >= 4096, or the pool cannot serve it; tail beyond PFN_UP(size) freed",
  },
  create: (context) => new TlsfEngine(context),
  stateLayout: 1,
  load: (context, r) => TlsfEngine.load(context, r),
};
