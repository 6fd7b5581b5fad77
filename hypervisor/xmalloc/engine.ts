/**
 * The one interface every xmalloc engine implements, and the page source engines
 * draw their pages from.
 *
 * An engine is a heap in the hypervisor (Xen's `xmalloc()` pool) or in a domain.
 * It takes every page it uses from the machine's {@link BuddyPageAllocator}
 * through a {@link PageSource}, so the pages it holds are exactly what the machine
 * lost to it. Addresses are machine addresses (see `src/units.ts`); 0 means "no
 * block". An allocation that cannot be served is an expected outcome: it returns 0
 * and records why in {@link XmallocEngine.lastFailureCause}. A free of something
 * that is not a live block is a caller's bug: it throws {@link InvalidFreeError} and
 * changes nothing.
 *
 * Steps: every engine counts the work of each call in units its source code makes
 * natural (list nodes visited, bitmap searches, list inserts and removals, ...) and
 * documents the definition next to its code. Page-allocator work is never counted.
 *
 * @module
 */

import type { BuddyPageAllocator, PageFailureCause } from "../page_allocator.ts";
import { StateError, type StateReader, type StateWriter } from "../../src/state_codec.ts";

/**
 * Why an allocation failed: the page allocator's cause (`exhaustion`, `contiguity`),
 * the pool's page quota (`quota`), or a size the engine cannot serve at all
 * (`unservable`: larger than the page allocator's largest block, or tlsf-2008's pool
 * refusing 4033..4063 bytes, as Xen did until 2009).
 */
export type AllocFailureCause = PageFailureCause | "quota" | "unservable";

/** Why a free was rejected. */
export type InvalidFreeReason =
  | "double-free"
  | "unknown-address"
  | "interior-pointer";

/** A free (or realloc, or usable-size query) named something that is not a live block. */
export class InvalidFreeError extends Error {
  /** The error's name. */
  override name = "InvalidFreeError";
  /** What was wrong with the address. */
  readonly reason: InvalidFreeReason;
  /** The address given. */
  readonly address: number;

  /**
   * Describe a rejected address.
   *
   * @param address the address given
   * @param reason what was wrong with it
   * @param detail one clause saying why
   */
  constructor(address: number, reason: InvalidFreeReason, detail: string) {
    super(`Cannot free address 0x${address.toString(16)}: ${detail}`);
    this.reason = reason;
    this.address = address;
  }
}

/**
 * Pages for one pool: allocates and frees blocks of the machine's page allocator
 * under one owner id, enforces an optional page quota, and remembers why the last
 * request failed.
 */
export class PageSource {
  /** The machine's page allocator. */
  readonly pages: BuddyPageAllocator;
  /** Owner id the pages are counted under. */
  readonly owner: number;
  /** Most pages the owner may hold (Infinity: no quota). */
  maxPages: number;
  /** Why the last failed {@link allocPages} failed. */
  lastFailureCause: AllocFailureCause | null = null;
  /**
   * Where the page allocator's answers to this pool are written, in call order, when
   * set: the frame each {@link allocPages} got (or its failure, see
   * {@link encodePageFailure}) and each {@link largestFreeOrder}. With them a pool can
   * be rebuilt exactly elsewhere (hypervisor/snapshot.ts).
   */
  responses: { push(response: number): void } | null = null;

  /**
   * Pages for `owner` from `pages`, at most `maxPages` at once.
   *
   * @param pages the machine's page allocator
   * @param owner owner id for these pages
   * @param maxPages quota in pages (default: none)
   */
  constructor(pages: BuddyPageAllocator, owner: number, maxPages = Infinity) {
    this.pages = pages;
    this.owner = owner;
    this.maxPages = maxPages;
  }

  /** Pages held now by this owner. */
  get heldPages(): number {
    return this.pages.pagesOwnedBy(this.owner);
  }

  /**
   * Allocate 2^order pages.
   *
   * @returns first frame, or -1 with {@link lastFailureCause} set (`unservable` for an
   *   order above the page allocator's largest, `quota`, or the page allocator's cause)
   */
  allocPages(order: number): number {
    let frame = -1;
    if (order > this.pages.maxOrder) {
      // Xen's alloc_heap_pages(): "if ( unlikely(order > MAX_ORDER) ) return NULL;"
      // before any work: no machine has a block that large.
      this.lastFailureCause = "unservable";
    } else if (this.pages.pagesOwnedBy(this.owner) + 2 ** order > this.maxPages) {
      this.lastFailureCause = "quota";
    } else {
      frame = this.pages.alloc(order, this.owner);
      if (frame < 0) this.lastFailureCause = this.pages.failureCause(order);
    }
    this.responses?.push(frame >= 0 ? frame : encodePageFailure(this.lastFailureCause!));
    return frame;
  }

  /**
   * Largest order with a free block on the machine (-1 if none): what an engine that
   * sizes its requests by the machine's free blocks asks (Unikraft's buddy engine).
   */
  largestFreeOrder(): number {
    const order = this.pages.largestFreeOrder();
    this.responses?.push(encodeLargestFreeOrder(order));
    return order;
  }

  /** Free 2^order pages at `frame` (a whole block or an aligned part of one). */
  freePages(frame: number, order: number): void {
    this.pages.free(frame, order);
  }

  /** Free every block this source holds (pool teardown, domain destruction). */
  releaseAll(): void {
    const held: [number, number][] = [];
    this.pages.forEachBlock((frame, order, owner) => {
      if (owner === this.owner) held.push([frame, order]);
    });
    for (const [frame, order] of held) this.pages.free(frame, order);
  }

  /** Whether `frame` heads a block this source holds. */
  holds(frame: number): boolean {
    return this.pages.isAllocatedHead(frame, this.owner);
  }
}

/** Every allocation failure cause, in the order page responses encode them. */
const PAGE_FAILURE_CAUSES: readonly AllocFailureCause[] = [
  "quota",
  "exhaustion",
  "contiguity",
  "unservable",
];

/** Write an engine's last failure cause to its saved state (null as ""). */
export function writeFailureCause(w: StateWriter, cause: AllocFailureCause | null): void {
  w.str(cause ?? "");
}

/**
 * Read a failure cause {@link writeFailureCause} wrote.
 *
 * @param whose the engine, for the message
 * @throws {StateError} if it names no cause
 */
export function readFailureCause(r: StateReader, whose: string): AllocFailureCause | null {
  const cause = r.str();
  if (cause === "") return null;
  if (!(PAGE_FAILURE_CAUSES as readonly string[]).includes(cause)) {
    throw new StateError(
      `A saved ${whose} engine names an unknown failure cause ${
        JSON.stringify(cause.slice(0, 32))
      }`,
    );
  }
  return cause as AllocFailureCause;
}

/** A failed page request as a recorded response: -1 quota .. -4 unservable. */
export function encodePageFailure(cause: AllocFailureCause): number {
  return -1 - PAGE_FAILURE_CAUSES.indexOf(cause);
}

/** The cause of a recorded failed page request, or null if `response` is not one. */
export function decodePageFailure(response: number): AllocFailureCause | null {
  return PAGE_FAILURE_CAUSES[-1 - response] ?? null;
}

/** A largest-free-order answer as a recorded response (-16 for order -1, and down). */
export function encodeLargestFreeOrder(order: number): number {
  return -17 - order;
}

/** The order of a recorded largest-free-order answer, or null if `response` is not one. */
export function decodeLargestFreeOrder(response: number): number | null {
  return response <= -16 ? -17 - response : null;
}

/** What an engine is built with. */
export interface EngineContext {
  /** Where the engine's pages come from. */
  pageSource: PageSource;
  /** CPUs (vCPUs) that may call the engine, at least 1; per-CPU engines size by it. */
  cpuCount: number;
}

/** Pages an engine holds now, by use. */
export interface EnginePages {
  /** Pages carved into blocks (TLSF regions, first-fit pages, slabs). */
  poolPages: number;
  /** Pages handed out whole for large requests. */
  wholePages: number;
  /** Pages of the engine's own control structures (TLSF's `struct xmem_pool`). */
  metaPages: number;
}

/** Counters of an engine since it was created. */
export interface EngineStats extends EnginePages {
  /** The engine's registry name. */
  engine: string;
  /** Successful allocations. */
  allocCount: number;
  /** Allocations that returned 0. */
  failedAllocCount: number;
  /** Frees. */
  freeCount: number;
  /** Live blocks. */
  liveBlockCount: number;
  /** Bytes the live blocks take from their pages, headers included. */
  liveReservedBytes: number;
  /** Sums of each kind of step, by the engine's own step names. */
  stepTotals: Record<string, number>;
}

/** A memory allocator that serves `xmalloc`/`xfree` from the machine's pages. */
export interface XmallocEngine {
  /** Registry name, e.g. `tlsf`. */
  readonly name: string;
  /** One line: what real allocator this models. */
  readonly description: string;
  /** Largest alignment `allocate` honours; a larger one is a RangeError. */
  readonly maxAlignBytes: number;
  /** Steps of the last allocate/free/reallocate/shrink call. */
  readonly lastSteps: number;
  /** Why the last failed allocation failed (null after a success). */
  readonly lastFailureCause: AllocFailureCause | null;
  /**
   * Whether the last call touched state every CPU of the pool shares, under the pool's
   * lock (Xen's `pool->lock` / `freelist_lock`, SLUB's `n->list_lock` or another CPU's
   * slab). Per-CPU fast paths do not; it is what makes vCPUs wait for each other.
   */
  readonly lastSharedAccess: boolean;

  /**
   * Allocate `sizeBytes` bytes aligned to `alignBytes`.
   *
   * @param sizeBytes 1 or more
   * @param alignBytes a power of two (default 1)
   * @param cpu calling CPU, 0..cpuCount-1 (default 0)
   * @returns the block's address, or 0 if it cannot be served
   * @throws {RangeError} on a size, alignment or CPU out of range
   */
  allocate(sizeBytes: number, alignBytes?: number, cpu?: number): number;

  /**
   * Free the block at `address`; 0 does nothing (as `xfree(NULL)`, `kfree(NULL)`).
   *
   * @throws {InvalidFreeError} if `address` is not 0 and not a live block; nothing changes
   */
  free(address: number, cpu?: number): void;

  /**
   * Resize the block at `address` to `sizeBytes` (Xen's `_xrealloc`): in place if it
   * fits, else allocate, copy and free. Address 0 allocates (`_xrealloc(NULL, n)`).
   *
   * @returns the new address, or 0 if it cannot be served (the old block stays)
   * @throws {InvalidFreeError} if `address` is not a live block
   */
  reallocate(address: number, sizeBytes: number, alignBytes?: number, cpu?: number): number;

  /**
   * Bytes usable at `address` (at least what was asked for).
   *
   * @throws {InvalidFreeError} if `address` is not a live block
   */
  usableSize(address: number): number;

  /** Pages held now, by use. */
  pagesHeld(): EnginePages;

  /** Counters since creation. */
  stats(): EngineStats;

  /** Walk every list and block; one message per broken invariant (empty when sound). */
  check(): string[];

  /**
   * Give back pages the engine keeps cached while they hold no live block (Linux's
   * `kmem_cache_shrink()`: SLUB keeps empty slabs on its per-CPU and node partial
   * lists). Engines that return pages as soon as they are free do nothing. Live
   * blocks are untouched.
   */
  shrink(): void;

  /** Give every page back to the page allocator (the pool is unusable afterwards). */
  destroy(): void;

  /**
   * Write the engine's whole state (every list, block, slot and counter that a later
   * call or `stats()` can see; scratch values of one call need not be kept), for a
   * checkpoint or a snapshot. The pages it holds are not part of it: they are the page
   * allocator's, saved with it (their owners and private words included).
   */
  saveState(w: StateWriter): void;
}

/** How the registry describes and builds an engine. */
export interface EngineDescriptor {
  /** Registry name. */
  name: string;
  /** One line: what real allocator this models. */
  description: string;
  /** Upstream file and function(s) modelled. */
  modelledOn: string;
  /** Key parameters as built. */
  parameters: Record<string, number | string>;
  /** Build one pool. */
  create(context: EngineContext): XmallocEngine;
  /**
   * Version of the layout `saveState` writes (from 1). Bump it whenever the fields
   * saved change: a snapshot or checkpoint of another layout is then refused by name
   * instead of misread.
   */
  stateLayout: number;
  /**
   * Build the pool whose state `r` holds (from `saveState`), touching nothing: its
   * page source already holds the same pages with the same private words (the page
   * allocator is saved and loaded with its owners and words). The context has the
   * saved engine's CPU count. From then on every call answers as the saved engine's
   * would have.
   *
   * @throws {StateError} if the state does not read back
   */
  load(context: EngineContext, r: StateReader): XmallocEngine;
}

/**
 * Validate the arguments of an allocation; shared by every engine.
 *
 * @throws {RangeError} with what and why
 */
export function assertAllocArgs(
  sizeBytes: number,
  alignBytes: number,
  cpu: number,
  cpuCount: number,
  maxAlignBytes = 2 ** 30,
): void {
  if (!Number.isSafeInteger(sizeBytes) || sizeBytes < 1 || sizeBytes > 2 ** 40) {
    throw new RangeError(`Invalid size ${sizeBytes}: expected an integer in [1, 2^40] bytes`);
  }
  if (
    !Number.isSafeInteger(alignBytes) || alignBytes < 1 || alignBytes > 2 ** 30 ||
    (alignBytes & (alignBytes - 1)) !== 0
  ) {
    throw new RangeError(`Invalid alignment ${alignBytes}: expected a power of two up to 2^30`);
  }
  if (alignBytes > maxAlignBytes) {
    throw new RangeError(
      `Invalid alignment ${alignBytes}: this engine aligns to at most ${maxAlignBytes} bytes`,
    );
  }
  if (!Number.isInteger(cpu) || cpu < 0 || cpu >= cpuCount) {
    throw new RangeError(`Invalid CPU ${cpu}: expected an integer in [0, ${cpuCount - 1}]`);
  }
}

/**
 * The moving half of a realloc (Xen's `_xrealloc()`, Linux's `krealloc()`): allocate
 * the new block, then free the old one (the model has no bytes to copy). Shared by
 * every engine.
 *
 * @returns the new address (0 if it cannot be served: the old block stays), the steps
 *   of both calls, and whether either touched the pool's shared state
 */
export function reallocateByMoving(
  engine: XmallocEngine,
  address: number,
  sizeBytes: number,
  alignBytes: number,
  cpu: number,
): { address: number; steps: number; shared: boolean } {
  const moved = engine.allocate(sizeBytes, alignBytes, cpu);
  const allocSteps = engine.lastSteps;
  const allocShared = engine.lastSharedAccess;
  if (moved === 0) return { address: 0, steps: allocSteps, shared: allocShared };
  engine.free(address, cpu);
  return {
    address: moved,
    steps: allocSteps + engine.lastSteps,
    shared: allocShared || engine.lastSharedAccess,
  };
}
