/**
 * What the `tlsf` and `tlsf-2008` engines share: the glue between Xen's
 * `_xmalloc()`/`xfree()` and the TLSF pool (xen/common/xmalloc_tlsf.c): the pool's
 * creation at the first xmalloc (`tlsf_init()`: its control structure comes from the
 * page allocator), turning addresses back into blocks (`strip_padding()`), the pool
 * path of `xfree()`, statistics, checks and teardown. Each front end decides which
 * sizes go to whole pages and how whole pages are laid out.
 *
 * Per-frame words (the page allocator's private word, Xen's `PFN_ORDER()` slot):
 * a pool region holds its slot (>= 0), the control structure {@link META_WORD}, the
 * head of a whole-page block a negative value the front end encodes.
 *
 * @module
 */

import {
  addressToFrame,
  alignUp,
  getOrderFromBytes,
  PAGE_SIZE_BYTES,
  pageOffset,
} from "../../src/units.ts";
import {
  type AllocFailureCause,
  assertAllocArgs,
  type EngineContext,
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
  BHDR_OVERHEAD_BYTES,
  MEM_ALIGN_BYTES,
  MIN_BLOCK_BYTES,
  TlsfPool,
  XMEM_POOL_STRUCT_BYTES,
} from "./_tlsf_pool.ts";
import { StateError, type StateReader, type StateWriter } from "../../src/state_codec.ts";

/** Private word of the control structure's first frame. */
export const META_WORD = -0x7fff_ffff;

/** Front-end-independent half of a TLSF xmalloc engine. */
export abstract class TlsfFrontEnd implements XmallocEngine {
  abstract readonly name: string;
  abstract readonly description: string;
  /** Xen's TLSF front end pads to any power-of-two alignment. */
  readonly maxAlignBytes: number = 2 ** 30;
  lastSteps = 0;
  lastFailureCause: AllocFailureCause | null = null;
  /** One pool, one `pool->lock`: every call that reaches the pool takes it. */
  lastSharedAccess = false;

  protected readonly source: PageSource;
  protected readonly cpuCount: number;
  protected pool: TlsfPool | null = null;
  protected wholePageCount = 0;
  protected wholeBlockCount = 0;
  #metaFrame = -1;
  #metaOrder = getOrderFromBytes(alignUp(XMEM_POOL_STRUCT_BYTES, MEM_ALIGN_BYTES));
  #allocCount = 0;
  #failedAllocCount = 0;
  #freeCount = 0;

  // result of #resolve(): a pool block (header, pad) or a whole-page block (frame)
  #resolvedHeader = -1;
  #resolvedPad = 0;
  #resolvedFrame = -1;

  /** @param context page source and CPU count */
  constructor(context: EngineContext) {
    this.source = context.pageSource;
    this.cpuCount = context.cpuCount;
  }

  /** `_xmalloc()` after the pool exists: the front end's own size policy. */
  protected abstract xmalloc(pool: TlsfPool, sizeBytes: number, alignBytes: number): number;
  /** Whether frame/offset is the start of one of this front end's whole-page blocks. */
  protected abstract isWholeStart(frame: number, offset: number): boolean;
  /** Free the whole-page block headed by `frame`. */
  protected abstract freeWhole(frame: number): void;
  /** Usable bytes of the whole-page block headed by `frame`. */
  protected abstract wholeUsableBytes(frame: number): number;
  /** Whether the pool may keep a wholly free region (see TlsfPool). */
  protected readonly idleRegionAllowed: boolean = false;
  /** Extra work when the pool is created (Xen 3.4 adds an initial region). */
  protected initPool(_pool: TlsfPool): boolean {
    return true;
  }

  allocate(sizeBytes: number, alignBytes = 1, cpu = 0): number {
    assertAllocArgs(sizeBytes, alignBytes, cpu, this.cpuCount, this.maxAlignBytes);
    this.lastFailureCause = null;
    this.source.lastFailureCause = null;
    const pool = this.pool ?? this.#createPool();
    let address = 0;
    if (pool !== null) {
      pool.steps = 0;
      address = this.xmalloc(pool, sizeBytes, Math.max(alignBytes, MEM_ALIGN_BYTES));
      this.lastSteps = pool.steps;
    } else {
      this.lastSteps = 0;
    }
    this.lastSharedAccess = this.lastSteps > 0; // the pool was searched: pool->lock
    if (address === 0) {
      this.#failedAllocCount++;
      this.lastFailureCause = this.source.lastFailureCause ?? "unservable";
    } else {
      this.#allocCount++;
    }
    return address;
  }

  free(address: number, cpu = 0): void {
    assertAllocArgs(1, 1, cpu, this.cpuCount);
    if (address === 0) { // xfree(NULL) / kfree(NULL): nothing to do
      this.lastSteps = 0;
      this.lastSharedAccess = false;
      return;
    }
    const kind = this.#resolve(address);
    if (this.pool !== null) this.pool.steps = 0;
    if (kind === "whole") {
      this.freeWhole(this.#resolvedFrame);
    } else {
      const pool = this.pool!;
      pool.clearPadding(this.#resolvedHeader, this.#resolvedPad);
      pool.free(this.#resolvedHeader);
    }
    this.#freeCount++;
    this.lastSteps = this.pool?.steps ?? 0;
    this.lastSharedAccess = kind !== "whole"; // xmem_pool_free() takes pool->lock
  }

  /** `_xrealloc()`: in place when the current block is big enough, else move. */
  reallocate(address: number, sizeBytes: number, alignBytes = 1, cpu = 0): number {
    assertAllocArgs(sizeBytes, alignBytes, cpu, this.cpuCount, this.maxAlignBytes);
    if (address === 0) return this.allocate(sizeBytes, alignBytes, cpu); // _xrealloc(NULL, n)
    const kind = this.#resolve(address);
    const align = Math.max(alignBytes, MEM_ALIGN_BYTES);
    if (kind === "whole") {
      if (sizeBytes <= this.wholeUsableBytes(this.#resolvedFrame) && address % align === 0) {
        this.lastSteps = 0;
        this.lastFailureCause = null;
        this.lastSharedAccess = false;
        return address;
      }
    } else {
      const pool = this.pool!;
      const h = this.#resolvedHeader;
      let need = sizeBytes + align - MEM_ALIGN_BYTES;
      if (need < PAGE_SIZE_BYTES) {
        need = need < MIN_BLOCK_BYTES ? MIN_BLOCK_BYTES : alignUp(need, MEM_ALIGN_BYTES);
      }
      if (need <= pool.blockSize(h)) {
        pool.clearPadding(h, this.#resolvedPad);
        const pad = pool.addPadding(h, align);
        this.lastSteps = 0;
        this.lastFailureCause = null;
        this.lastSharedAccess = false;
        return pool.payloadAddress(h) + pad;
      }
    }
    const moved = reallocateByMoving(this, address, sizeBytes, alignBytes, cpu);
    this.lastSteps = moved.steps;
    this.lastSharedAccess = moved.shared;
    return moved.address;
  }

  usableSize(address: number): number {
    if (this.#resolve(address) === "whole") return this.wholeUsableBytes(this.#resolvedFrame);
    return this.pool!.blockSize(this.#resolvedHeader) - this.#resolvedPad;
  }

  pagesHeld(): EnginePages {
    return {
      poolPages: this.pool?.regionCount ?? 0,
      wholePages: this.wholePageCount,
      metaPages: this.#metaFrame >= 0 ? 2 ** this.#metaOrder : 0,
    };
  }

  stats(): EngineStats {
    const pool = this.pool;
    return {
      engine: this.name,
      ...this.pagesHeld(),
      allocCount: this.#allocCount,
      failedAllocCount: this.#failedAllocCount,
      freeCount: this.#freeCount,
      liveBlockCount: (pool?.liveBlocks ?? 0) + this.wholeBlockCount,
      liveReservedBytes: (pool?.liveReservedBytes ?? 0) + this.wholePageCount * PAGE_SIZE_BYTES,
      stepTotals: {
        bitmap_searches: pool?.bitmapSearches ?? 0,
        list_inserts: pool?.listInserts ?? 0,
        list_removes: pool?.listRemoves ?? 0,
      },
    };
  }

  check(): string[] {
    const errors = this.pool?.check() ?? [];
    const held = this.pagesHeld();
    const total = held.poolPages + held.wholePages + held.metaPages;
    const owned = this.source.heldPages;
    if (total !== owned) {
      errors.push(`engine counts ${total} pages, page allocator says it holds ${owned}`);
    }
    return errors;
  }

  /** Nothing cached: a page goes back as soon as it holds no block. */
  shrink(): void {}

  destroy(): void {
    this.pool?.releaseAll();
    this.source.releaseAll();
    this.pool = null;
    this.#metaFrame = -1;
    this.wholePageCount = 0;
    this.wholeBlockCount = 0;
  }

  /**
   * Write the engine's whole state, grouped as the class declares it: its name (so a
   * state loads only into the same engine), the last call's results, whether the pool
   * exists and then the pool's own state, the whole-page counts, the control
   * structure's frame and the call counters. What `#resolve()` leaves for the rest of
   * its call is not kept: every call that reads it resolves first. The pages are the
   * page allocator's, saved with it (their private words say what each one is).
   */
  saveState(w: StateWriter): void {
    w.str(this.name);
    // the last call
    w.num(this.lastSteps);
    writeFailureCause(w, this.lastFailureCause);
    w.bool(this.lastSharedAccess);
    // the pool and the pages
    w.bool(this.pool !== null);
    this.pool?.saveState(w);
    w.num(this.wholePageCount);
    w.num(this.wholeBlockCount);
    w.num(this.#metaFrame);
    // counters
    w.num(this.#allocCount);
    w.num(this.#failedAllocCount);
    w.num(this.#freeCount);
  }

  /**
   * Become the engine whose state `r` holds (from {@link saveState}); for an engine
   * just constructed, which has taken no page. Touches nothing in the page source: the
   * pool and its control structure are already held there.
   *
   * @throws {StateError} if the state does not read back, is another engine's, or
   *   disagrees with the pages the page source holds
   */
  protected loadState(r: StateReader): void {
    const name = r.str();
    if (name !== this.name) {
      const shown = /^[a-z0-9-]{1,32}$/.test(name) ? `a ${name}` : "another";
      throw new StateError(`The state of ${shown} engine does not read back as ${this.name}`);
    }
    // the last call
    this.lastSteps = r.num();
    this.lastFailureCause = readFailureCause(r, this.name);
    this.lastSharedAccess = r.bool();
    // the pool and the pages
    this.pool = r.bool() ? TlsfPool.load(this.source, this.idleRegionAllowed, r) : null;
    this.wholePageCount = r.num();
    this.wholeBlockCount = r.num();
    this.#metaFrame = r.num();
    // counters
    this.#allocCount = r.num();
    this.#failedAllocCount = r.num();
    this.#freeCount = r.num();

    const problems = this.check();
    if (problems.length > 0) {
      throw new StateError(`A saved ${name} engine is not consistent: ${problems[0]}`);
    }
  }

  /** tlsf_init(): the pool's control structure from the page allocator. */
  #createPool(): TlsfPool | null {
    const frame = this.source.allocPages(this.#metaOrder);
    if (frame < 0) return null;
    this.source.pages.setPrivateWord(frame, META_WORD);
    const pool = new TlsfPool(this.source, this.idleRegionAllowed);
    if (!this.initPool(pool)) {
      this.source.freePages(frame, this.#metaOrder);
      return null;
    }
    this.#metaFrame = frame;
    this.pool = pool;
    return pool;
  }

  /**
   * Find the live block `address` names (strip_padding()), or throw
   * InvalidFreeError saying why it is not one. Changes nothing.
   */
  #resolve(address: number): "pool" | "whole" {
    if (!Number.isSafeInteger(address)) {
      throw new InvalidFreeError(address, "unknown-address", "not an integer address");
    }
    const frame = addressToFrame(address);
    const pages = this.source.pages;
    if (frame < 0 || frame >= pages.frameCount) {
      throw new InvalidFreeError(address, "unknown-address", "outside the machine's memory");
    }
    const offset = pageOffset(address);
    if (this.isWholeStart(frame, offset)) {
      this.#resolvedFrame = frame;
      return "whole";
    }
    const slot = this.pool?.regionSlot(frame) ?? -1;
    if (slot >= 0) {
      const h = this.pool!.liveHeaderAt(slot, offset);
      if (h >= 0) {
        this.#resolvedHeader = h;
        this.#resolvedPad = this.pool!.paddingOf(h, offset);
        return "pool";
      }
      if (h === -2) throw new InvalidFreeError(address, "double-free", "block is already free");
      throw new InvalidFreeError(address, "interior-pointer", "not the start of a block");
    }
    const head = pages.blockHeadOf(frame);
    if (head >= 0 && pages.isAllocatedHead(head, this.source.owner)) {
      const what = pages.privateWord(head) === META_WORD
        ? "inside the pool's control structure"
        : "not the start of a block";
      throw new InvalidFreeError(address, "interior-pointer", what);
    }
    throw new InvalidFreeError(address, "unknown-address", "no live block of this pool there");
  }
}

export { BHDR_OVERHEAD_BYTES, MEM_ALIGN_BYTES };
