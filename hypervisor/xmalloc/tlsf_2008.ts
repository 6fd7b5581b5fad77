/**
 * `tlsf-2008`: Xen's first TLSF xmalloc, as added by commit 9736b76d829b "xmalloc:
 * use tlsf algorithm" (2008-10-16, Xen 3.4): xen/common/xmalloc_tlsf.c `_xmalloc()`,
 * `xfree()`, `tlsf_xenheap_malloc_whole_pages()`, `tlsf_xenheap_init()`. The pool is
 * the same TLSF pool as today's (`_tlsf_pool.ts`); the differences are at the edges:
 *
 * - the pool starts with one region (`init_size` = PAGE_SIZE) taken when it is
 *   created at the first xmalloc; like every region it goes back once wholly free;
 * - sizes >= 4064 (PAGE_SIZE - 2 * BHDR_OVERHEAD) go to whole pages of order
 *   `get_order_from_bytes(size + 16)` with a TLSF header in front and no tail trim,
 *   so xmalloc(4095) takes 2 pages (fixed in 2013 by fb034f4264, see `tlsf`);
 * - a pool failure is final (no fallback to whole pages), so requests of 4033..4063
 *   bytes, which MAPPING_SEARCH rounds past the 4064-byte region, fail outright with
 *   cause `unservable` (fixed in 2009 by ba0d6cfc6b, whose message reports the same
 *   range for 128-byte aligned requests: 3921..3951 + 112 bytes of padding).
 *
 * Model limit: alignments of PAGE_SIZE and above are refused: the 16-byte header in
 * front of a whole-page block would put the padded pointer on the block's second page.
 *
 * @module
 */

import { frameToAddress, getOrderFromBytes, PAGE_SIZE_BYTES } from "../../src/units.ts";
import type { EngineContext, EngineDescriptor } from "./engine.ts";
import type { StateReader } from "../../src/state_codec.ts";
import {
  BHDR_OVERHEAD_BYTES,
  MAX_POOL_BLOCK_BYTES,
  MEM_ALIGN_BYTES,
  type TlsfPool,
} from "./_tlsf_pool.ts";
import { TlsfFrontEnd } from "./_tlsf_front.ts";

const ORDER_BITS = 32; // private word of a whole-page head: -(1 + order + 32 * pad)

/** The `tlsf-2008` engine. */
export class Tlsf2008Engine extends TlsfFrontEnd {
  readonly name = "tlsf-2008";
  readonly description =
    "Xen's first TLSF xmalloc (9736b76d829b, 2008): sizes >= 4064 to 2^order whole pages";
  override readonly maxAlignBytes: number = PAGE_SIZE_BYTES / 2;
  protected override readonly idleRegionAllowed = true;

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
  static load(context: EngineContext, r: StateReader): Tlsf2008Engine {
    const engine = new Tlsf2008Engine(context);
    engine.loadState(r);
    return engine;
  }

  /** tlsf_create_memory_pool(): the initial one-page region. */
  protected override initPool(pool: TlsfPool): boolean {
    return pool.grow();
  }

  /** `_xmalloc()` of 2008. */
  protected xmalloc(pool: TlsfPool, sizeBytes: number, alignBytes: number): number {
    const padded = sizeBytes + alignBytes - MEM_ALIGN_BYTES;
    if (padded >= MAX_POOL_BLOCK_BYTES) return this.#wholePages(padded, alignBytes);
    const h = pool.alloc(padded);
    return h < 0 ? 0 : pool.payloadAddress(h) + pool.addPadding(h, alignBytes);
  }

  /** `tlsf_xenheap_malloc_whole_pages()`: 2^order pages, a block header in front. */
  #wholePages(sizeBytes: number, alignBytes: number): number {
    const order = getOrderFromBytes(sizeBytes + BHDR_OVERHEAD_BYTES);
    const frame = this.source.allocPages(order);
    if (frame < 0) return 0;
    const pad = (alignBytes - BHDR_OVERHEAD_BYTES % alignBytes) % alignBytes;
    this.source.pages.setPrivateWord(frame, -(1 + order + ORDER_BITS * pad));
    this.wholePageCount += 1 << order;
    this.wholeBlockCount++;
    return frameToAddress(frame) + BHDR_OVERHEAD_BYTES + pad;
  }

  #decode(frame: number): { order: number; pad: number } {
    const code = -this.source.pages.privateWord(frame) - 1;
    return { order: code % ORDER_BITS, pad: Math.floor(code / ORDER_BITS) };
  }

  protected isWholeStart(frame: number, offset: number): boolean {
    if (!this.source.holds(frame)) return false;
    const word = this.source.pages.privateWord(frame);
    if (!(word < 0 && word > -(2 ** 30))) return false;
    return offset === BHDR_OVERHEAD_BYTES + this.#decode(frame).pad;
  }

  /** `xfree()` of a block whose size is >= 4064: free_xenheap_pages(b, order). */
  protected freeWhole(frame: number): void {
    const { order } = this.#decode(frame);
    this.source.pages.setPrivateWord(frame, 0);
    this.source.freePages(frame, order);
    this.wholePageCount -= 1 << order;
    this.wholeBlockCount--;
  }

  protected wholeUsableBytes(frame: number): number {
    const { order, pad } = this.#decode(frame);
    return (PAGE_SIZE_BYTES << order) - BHDR_OVERHEAD_BYTES - pad;
  }
}

/** Registry entry of the `tlsf-2008` engine. */
export const tlsf2008Engine: EngineDescriptor = {
  name: "tlsf-2008",
  description:
    "Xen's first TLSF xmalloc (2008): sizes >= 4064 to 2^order whole pages, no tail trim",
  modelledOn:
    "xen/common/xmalloc_tlsf.c @9736b76d829b: _xmalloc, xfree, tlsf_xenheap_malloc_whole_pages, tlsf_malloc, tlsf_free",
  parameters: {
    MEM_ALIGN: MEM_ALIGN_BYTES,
    MAX_LOG2_SLI: 5,
    FLI_OFFSET: 6,
    init_size: PAGE_SIZE_BYTES,
    grow_size: PAGE_SIZE_BYTES,
    whole_pages: "size >= 4064: order get_order_from_bytes(size + 16), header in front",
  },
  create: (context) => new Tlsf2008Engine(context),
  stateLayout: 1,
  load: (context, r) => Tlsf2008Engine.load(context, r),
};
