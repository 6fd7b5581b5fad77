/**
 * One behaviour suite for every xmalloc engine (as Hono's
 * `src/router/common.case.test.ts` is for every router): an engine's test file is
 * `runConformance(descriptor)`, and a case an engine cannot pass is skipped by name
 * with its reason, which shows in the test's name.
 *
 * Every case builds the engine on a fresh {@link BuddyPageAllocator} through a
 * {@link PageSource} and checks, after every operation, the engine's and the page
 * allocator's `check()`, that live blocks never overlap and lie in pages the engine
 * holds, that `pagesHeld()` accounts for every page the engine's owner holds, and
 * that the live counters agree with what the test holds. Random runs are seeded; a
 * failure names the engine, seed, op index and op, which replay it exactly.
 *
 * @module
 */

import assert from "node:assert/strict";
import { BuddyPageAllocator } from "../hypervisor/page_allocator.ts";
import {
  type AllocFailureCause,
  type EngineDescriptor,
  InvalidFreeError,
  type InvalidFreeReason,
  PageSource,
  type XmallocEngine,
} from "../hypervisor/xmalloc/engine.ts";
import { ForkPageSource, historyOps, OpHistory } from "../hypervisor/snapshot.ts";
import { Prng } from "../src/prng.ts";
import { StateReader, StateWriter } from "../src/state_codec.ts";
import { addressToFrame, frameToAddress, PAGE_SIZE_BYTES } from "../src/units.ts";

/** The cases of the suite, by the name `skip` uses. */
export const CONFORMANCE_CASES = [
  "identity",
  "random-ops",
  "pressure",
  "free-all-returns-pages",
  "alignment",
  "invalid-free",
  "exhaustion",
  "contiguity",
  "quota",
  "reallocate",
  "bad-arguments",
  "destroy",
  "replay",
  "save-load",
] as const;

/** Name of one case of the suite. */
export type ConformanceCase = typeof CONFORMANCE_CASES[number];

/** How to run the suite for one engine. */
export interface ConformanceOptions {
  /**
   * Cases not to run, each with its reason (one non-empty sentence, shown in the
   * ignored test's name). Default: run every case.
   */
  skip?: Partial<Record<ConformanceCase, string>>;
  /** Seeds of the random runs (default {@link DEFAULT_SEEDS}); each is an unsigned 32-bit integer. */
  seeds?: readonly number[];
  /** Operations per seed in the `random-ops` and `pressure` cases (default 3000). */
  opCount?: number;
  /** CPUs the engine is built for (default 2, the reference SLUB configuration). */
  cpuCount?: number;
  /**
   * The requests the engine refuses by design, failing with cause `unservable` on any
   * machine (tlsf-2008's 4033..4063-byte hole). Checked both ways: exactly these
   * allocations fail with `unservable`. Default: none.
   */
  refuses?: (sizeBytes: number, alignBytes: number) => boolean;
  /**
   * Whether the engine keeps empty pages cached until `shrink()` (SLUB's partial
   * slabs). Default false: every page must be back as soon as nothing is live, and
   * `shrink()` must change nothing.
   */
  cachesEmptyPages?: boolean;
}

/** Seeds the random runs use unless told otherwise. */
export const DEFAULT_SEEDS: readonly number[] = [1, 2, 3, 0xc0ffee];

/** A 1 GiB machine: the reference harness's arena (one order-18 block). */
const LARGE_MACHINE_FRAMES = 262144;
/** Owner id of the engine under test; another owner shares the machine in some cases. */
const ENGINE_OWNER = 7;
const OTHER_OWNER = 3;
/** Largest size the random runs ask for. */
const RANDOM_SIZE_MAX_BYTES = 3 * PAGE_SIZE_BYTES;
/** Largest alignment the random runs ask for (the alignment case goes further). */
const RANDOM_ALIGN_MAX_BYTES = 2 * PAGE_SIZE_BYTES;
/** Largest alignment the alignment case tries (an order-12 block on the 1 GiB machine). */
const SWEEP_ALIGN_MAX_BYTES = 2 ** 24;
/** Live blocks a random run keeps at most. */
const RANDOM_LIVE_MAX = 400;

/**
 * Register the conformance cases of one engine with `Deno.test`.
 *
 * @param descriptor the engine's registry entry
 * @param options skips (with reasons), seeds, op count, CPU count, refusals by design
 * @throws {RangeError} if a skip has no reason or names no case
 *
 * @example
 * ```ts ignore
 * // tests/tlsf_conformance_test.ts
 * import { tlsfEngine } from "../hypervisor/xmalloc/tlsf.ts";
 * import { runConformance } from "./conformance.ts";
 * runConformance(tlsfEngine, { skip: { quota: "why, in one sentence" } });
 * ```
 */
export function runConformance(
  descriptor: EngineDescriptor,
  options: ConformanceOptions = {},
): void {
  const config: SuiteConfig = {
    descriptor,
    seeds: options.seeds ?? DEFAULT_SEEDS,
    opCount: options.opCount ?? 3000,
    cpuCount: options.cpuCount ?? 2,
    refuses: options.refuses ?? (() => false),
    cachesEmptyPages: options.cachesEmptyPages ?? false,
  };
  const skip: Partial<Record<string, string>> = options.skip ?? {};
  for (const [name, reason] of Object.entries(skip)) {
    if (!(CONFORMANCE_CASES as readonly string[]).includes(name)) {
      throw new RangeError(
        `Cannot skip case "${name}": expected one of ${CONFORMANCE_CASES.join(", ")}`,
      );
    }
    if (typeof reason !== "string" || reason.trim() === "") {
      throw new RangeError(`Cannot skip case "${name}": a skip must say why`);
    }
  }
  for (const name of CONFORMANCE_CASES) {
    const title = `${descriptor.name} conforms: ${name}`;
    const reason = skip[name];
    if (reason !== undefined) {
      Deno.test({ name: `${title} (skipped: ${reason})`, ignore: true, fn() {} });
    } else {
      Deno.test(title, (t) => CASES[name](config, t));
    }
  }
}

// -- rig: a machine, a page source and the engine under test ---------------------

interface SuiteConfig {
  descriptor: EngineDescriptor;
  seeds: readonly number[];
  opCount: number;
  cpuCount: number;
  refuses: (sizeBytes: number, alignBytes: number) => boolean;
  cachesEmptyPages: boolean;
}

interface Rig {
  pages: BuddyPageAllocator;
  source: PageSource;
  engine: XmallocEngine;
  live: LiveBlocks;
  cpuCount: number;
  refuses: (sizeBytes: number, alignBytes: number) => boolean;
}

function newRig(
  config: SuiteConfig,
  frameCount = LARGE_MACHINE_FRAMES,
  maxPages = Infinity,
  prepare?: (pages: BuddyPageAllocator) => void,
): Rig {
  const pages = new BuddyPageAllocator(frameCount);
  prepare?.(pages);
  const source = new PageSource(pages, ENGINE_OWNER, maxPages);
  const engine = config.descriptor.create({ pageSource: source, cpuCount: config.cpuCount });
  return {
    pages,
    source,
    engine,
    live: new LiveBlocks(),
    cpuCount: config.cpuCount,
    refuses: config.refuses,
  };
}

/** A live block as the test knows it. */
interface LiveBlock {
  address: number;
  sizeBytes: number;
  usableBytes: number;
}

/** Live blocks sorted by address; adding one that overlaps another fails. */
class LiveBlocks {
  #starts: number[] = [];
  #blocks = new Map<number, LiveBlock>();

  get count(): number {
    return this.#starts.length;
  }

  add(block: LiveBlock): void {
    const at = this.#lowerBound(block.address);
    const end = block.address + block.usableBytes;
    const before = at > 0 ? this.#blocks.get(this.#starts[at - 1]!)! : null;
    const after = at < this.#starts.length ? this.#blocks.get(this.#starts[at]!)! : null;
    if (before !== null) {
      assert.ok(
        before.address + before.usableBytes <= block.address,
        `block ${hex(block.address)}+${block.usableBytes} overlaps live block ${
          hex(before.address)
        }+${before.usableBytes}`,
      );
    }
    if (after !== null) {
      assert.ok(
        end <= after.address,
        `block ${hex(block.address)}+${block.usableBytes} overlaps live block ${
          hex(after.address)
        }+${after.usableBytes}`,
      );
    }
    this.#starts.splice(at, 0, block.address);
    this.#blocks.set(block.address, block);
  }

  remove(address: number): LiveBlock {
    const block = this.#blocks.get(address);
    assert.ok(block !== undefined, `test bug: ${hex(address)} is not live`);
    this.#starts.splice(this.#lowerBound(address), 1);
    this.#blocks.delete(address);
    return block;
  }

  get(address: number): LiveBlock | undefined {
    return this.#blocks.get(address);
  }

  /** The live block whose usable bytes hold `address`, if any. */
  containing(address: number): LiveBlock | undefined {
    const at = this.#lowerBound(address + 1) - 1;
    const block = at >= 0 ? this.#blocks.get(this.#starts[at]!)! : undefined;
    return block !== undefined && address < block.address + block.usableBytes ? block : undefined;
  }

  /** The `index`-th live block in address order. */
  at(index: number): LiveBlock {
    return this.#blocks.get(this.#starts[index]!)!;
  }

  /** A copy (the blocks are shared: they are never changed in place). */
  clone(): LiveBlocks {
    const c = new LiveBlocks();
    c.#starts = [...this.#starts];
    c.#blocks = new Map(this.#blocks);
    return c;
  }

  all(): LiveBlock[] {
    return this.#starts.map((a) => this.#blocks.get(a)!);
  }

  #lowerBound(address: number): number {
    let lo = 0;
    let hi = this.#starts.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (this.#starts[mid]! < address) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }
}

function hex(address: number): string {
  return `0x${address.toString(16)}`;
}

// -- operations that check their own results --------------------------------------

/**
 * Allocate and check the result; returns the address, or 0 if the engine said no
 * (then only its failure counter moved, and `unservable` only where the options say).
 */
function allocateChecked(rig: Rig, sizeBytes: number, alignBytes: number, cpu: number): number {
  const { engine, live } = rig;
  const before = countersOf(rig);
  const address = engine.allocate(sizeBytes, alignBytes, cpu);
  const refused = rig.refuses(sizeBytes, alignBytes);
  if (address === 0) {
    const cause = engine.lastFailureCause;
    assert.ok(cause !== null, "a failed allocation must say why");
    if (cause === "unservable") {
      assert.ok(refused, "unservable, but the options do not list this request");
    }
    assertFailureChangedNothing(rig, before);
    return 0;
  }
  assert.ok(!refused, "served a request the options say the engine refuses");
  assert.equal(engine.lastFailureCause, null, "lastFailureCause after a success");
  assert.equal(address % alignBytes, 0, `${hex(address)} is not aligned to ${alignBytes}`);
  const usableBytes = engine.usableSize(address);
  assert.ok(usableBytes >= sizeBytes, `usable ${usableBytes} < requested ${sizeBytes}`);
  const block = { address, sizeBytes, usableBytes };
  live.add(block);
  assertInOwnPages(rig, block);
  return address;
}

/** What a failed allocation may not change (pages too, once the engine is set up). */
function countersOf(rig: Rig) {
  const stats = rig.engine.stats();
  return {
    allocCount: stats.allocCount,
    failedAllocCount: stats.failedAllocCount,
    freeCount: stats.freeCount,
    liveBlockCount: stats.liveBlockCount,
    liveReservedBytes: stats.liveReservedBytes,
    ownedPages: rig.pages.pagesOwnedBy(ENGINE_OWNER),
    pagesHeld: rig.engine.pagesHeld(),
  };
}

/**
 * After a failed allocation: one more failure, nothing else counted, and no page
 * gained or lost when the page allocator (or quota) said no to an engine that already
 * held pages (a first call may keep the control structure it set up; tlsf-2008 keeps
 * the region it grew before refusing).
 */
function assertFailureChangedNothing(rig: Rig, before: ReturnType<typeof countersOf>): void {
  const after = countersOf(rig);
  assert.equal(after.failedAllocCount, before.failedAllocCount + 1, "failedAllocCount");
  assert.deepEqual(
    [after.allocCount, after.freeCount, after.liveBlockCount, after.liveReservedBytes],
    [before.allocCount, before.freeCount, before.liveBlockCount, before.liveReservedBytes],
    "a failed allocation counts no block",
  );
  if (rig.engine.lastFailureCause !== "unservable" && before.ownedPages > 0) {
    assert.deepEqual(after.pagesHeld, before.pagesHeld, "a failed allocation keeps no page");
    assert.equal(after.ownedPages, before.ownedPages, "a failed allocation keeps no page");
  }
}

/** Free a live block and check it is gone. */
function freeChecked(rig: Rig, address: number, cpu: number): void {
  rig.engine.free(address, cpu);
  rig.live.remove(address);
  assertNotLive(rig, address);
}

/** Reallocate a live block; on success the test's view moves with it. */
function reallocateChecked(
  rig: Rig,
  address: number,
  sizeBytes: number,
  alignBytes: number,
  cpu: number,
): number {
  const { engine, live } = rig;
  const old = live.get(address)!;
  const before = countersOf(rig);
  const moved = engine.reallocate(address, sizeBytes, alignBytes, cpu);
  if (moved === 0) {
    const cause = engine.lastFailureCause;
    assert.ok(cause !== null, "a failed reallocation must say why");
    if (cause === "unservable") {
      assert.ok(rig.refuses(sizeBytes, alignBytes), "unservable, but not listed");
    }
    assert.equal(engine.usableSize(address), old.usableBytes, "the old block must stay as it was");
    assertFailureChangedNothing(rig, before);
    return 0;
  }
  assert.equal(engine.lastFailureCause, null, "lastFailureCause after a success");
  assert.equal(moved % alignBytes, 0, `${hex(moved)} is not aligned to ${alignBytes}`);
  live.remove(address);
  const usableBytes = engine.usableSize(moved);
  assert.ok(usableBytes >= sizeBytes, `usable ${usableBytes} < requested ${sizeBytes}`);
  const block = { address: moved, sizeBytes, usableBytes };
  live.add(block);
  assertInOwnPages(rig, block);
  if (moved !== address) assertNotLive(rig, address);
  return moved;
}

/**
 * An address that was a block and is not any more: asking its size is an
 * InvalidFreeError, an interior pointer if it lies inside a live block (an in-place
 * reallocation may re-pad a block around its old address); outside every live block
 * any reason will do (the test cannot tell free space from a block's padding).
 */
function assertNotLive(rig: Rig, address: number): void {
  const inside = rig.live.containing(address);
  assert.throws(() => rig.engine.usableSize(address), (e: unknown) => {
    assert.ok(e instanceof InvalidFreeError, `usableSize of a freed block threw ${e}`);
    if (inside !== undefined) assert.equal(e.reason, "interior-pointer", e.message);
    return true;
  }, `usableSize(${hex(address)}) must throw: that block was freed or moved`);
}

/** Every frame of the block belongs to a block of pages the engine's owner holds. */
function assertInOwnPages(rig: Rig, block: LiveBlock): void {
  const { pages } = rig;
  const first = addressToFrame(block.address);
  const last = addressToFrame(block.address + block.usableBytes - 1);
  for (let frame = first; frame <= last; frame++) {
    const head = pages.blockHeadOf(frame);
    assert.ok(
      head >= 0 && pages.ownerOf(head) === ENGINE_OWNER,
      `block ${
        hex(block.address)
      }+${block.usableBytes} lies in frame ${frame}, which the engine does not hold`,
    );
  }
}

/** Every invariant that holds between operations. */
function assertSound(rig: Rig): void {
  const { engine, pages, live } = rig;
  assert.deepEqual(engine.check(), [], "engine.check()");
  assert.deepEqual(pages.check(), [], "pages.check()");
  const held = engine.pagesHeld();
  assert.equal(
    held.poolPages + held.wholePages + held.metaPages,
    pages.pagesOwnedBy(ENGINE_OWNER),
    `pagesHeld() ${JSON.stringify(held)} must account for every page of the owner`,
  );
  const stats = engine.stats();
  assert.equal(stats.engine, engine.name);
  assert.deepEqual(
    { poolPages: stats.poolPages, wholePages: stats.wholePages, metaPages: stats.metaPages },
    { poolPages: held.poolPages, wholePages: held.wholePages, metaPages: held.metaPages },
    "stats() pages agree with pagesHeld()",
  );
  assert.equal(stats.liveBlockCount, live.count, "liveBlockCount");
  assert.equal(stats.allocCount - stats.freeCount, live.count, "allocCount - freeCount");
  let requested = 0;
  let usable = 0;
  for (const block of live.all()) {
    requested += block.sizeBytes;
    usable += block.usableBytes;
  }
  assert.ok(
    usable <= stats.liveReservedBytes,
    `usable ${usable} > reserved ${stats.liveReservedBytes}`,
  );
  assert.ok(requested <= usable, `usable ${usable} < requested ${requested}`);
  assert.ok(
    stats.liveReservedBytes <= (held.poolPages + held.wholePages) * PAGE_SIZE_BYTES,
    `reserved ${stats.liveReservedBytes} bytes exceed the ${
      held.poolPages + held.wholePages
    } pages held`,
  );
  assert.ok(
    Number.isInteger(engine.lastSteps) && engine.lastSteps >= 0,
    `lastSteps ${engine.lastSteps}`,
  );
  for (const [kind, n] of Object.entries(stats.stepTotals)) {
    assert.ok(Number.isInteger(n) && n >= 0, `stepTotals.${kind} = ${n}`);
  }
}

/** Check every live block still lies in the engine's pages (after pages went back). */
function assertAllInOwnPages(rig: Rig): void {
  for (const block of rig.live.all()) assertInOwnPages(rig, block);
}

/** Everything a rejected call must leave as it was. */
function observe(rig: Rig) {
  const { engine, pages } = rig;
  return {
    stats: engine.stats(),
    pagesHeld: engine.pagesHeld(),
    pageStats: pages.stats(),
    ownedPages: pages.pagesOwnedBy(ENGINE_OWNER),
    check: engine.check(),
    pagesCheck: pages.check(),
    lastFailureCause: engine.lastFailureCause,
    usable: rig.live.all().map((b) => engine.usableSize(b.address)),
  };
}

/** Run `body` and, if it fails, say which engine, seed and op to replay. */
function withContext<T>(context: () => string, body: () => T): T {
  try {
    return body();
  } catch (e) {
    throw new Error(context(), { cause: e });
  }
}

/** Free every live block, checking after each. */
function freeAll(rig: Rig, prng: Prng, label: string): void {
  for (let i = 0; rig.live.count > 0; i++) {
    const block = rig.live.at(prng.index(rig.live.count));
    withContext(() => `${label}: free-all #${i}: free(${hex(block.address)})`, () => {
      const freeCalls = rig.pages.stats().freeCalls;
      freeChecked(rig, block.address, prng.index(rig.cpuCount));
      assertSound(rig);
      if (rig.pages.stats().freeCalls !== freeCalls) assertAllInOwnPages(rig);
    });
  }
}

// -- random operations ------------------------------------------------------------

/** 1..3 pages, weighted to small sizes and to sizes just around a page multiple. */
function randomSize(prng: Prng): number {
  const r = prng.nextFloat();
  if (r < 0.35) return prng.intInclusive(1, 256);
  if (r < 0.7) {
    const near = prng.intInclusive(1, 3) * PAGE_SIZE_BYTES + prng.intInclusive(-320, 64);
    return Math.min(Math.max(near, 1), RANDOM_SIZE_MAX_BYTES);
  }
  if (r < 0.85) return prng.intInclusive(257, PAGE_SIZE_BYTES);
  return prng.intInclusive(1, RANDOM_SIZE_MAX_BYTES);
}

function randomAlign(prng: Prng, alignMaxBytes: number): number {
  if (prng.nextFloat() < 0.75) return 1;
  return 2 ** prng.index(Math.log2(alignMaxBytes) + 1);
}

/**
 * A seeded run of allocate / free / reallocate with every invariant checked after
 * every op; growth and shrink phases alternate every 250 ops. An allocation may fail
 * only with one of `allowedCauses`, or as a refusal the options list. Returns the
 * generator (to go on with), the refusals (`unservable`) and the other failures.
 */
function randomRun(
  rig: Rig,
  seed: number,
  opCount: number,
  label: string,
  allowedCauses: readonly AllocFailureCause[] = [],
) {
  const prng = new Prng(seed);
  let refusals = 0;
  let failures = 0;
  const expectFailure = () => {
    const cause = rig.engine.lastFailureCause;
    if (cause === "unservable") refusals++;
    else failures++;
    assert.ok(
      cause === "unservable" || (cause !== null && allowedCauses.includes(cause)),
      `failed with ${cause}; this machine may fail only with ${allowedCauses.join(", ") || "none"}`,
    );
  };
  const alignMax = Math.min(rig.engine.maxAlignBytes, RANDOM_ALIGN_MAX_BYTES);
  for (let op = 0; op < opCount; op++) {
    const growing = Math.floor(op / 250) % 2 === 0;
    const r = prng.nextFloat();
    const cpu = prng.index(rig.cpuCount);
    const wantAlloc = rig.live.count === 0 ||
      (rig.live.count < RANDOM_LIVE_MAX && r < (growing ? 0.65 : 0.35));
    const freeCalls = rig.pages.stats().freeCalls;
    let what = "";
    const context = () => `${label} seed=${seed} op=${op}: ${what}`;
    withContext(context, () => {
      if (wantAlloc) {
        const size = randomSize(prng);
        const align = randomAlign(prng, alignMax);
        what = `allocate(${size}, ${align}, ${cpu})`;
        if (allocateChecked(rig, size, align, cpu) === 0) expectFailure();
      } else if (r < 0.92) {
        const block = rig.live.at(prng.index(rig.live.count));
        what = `free(${hex(block.address)}) of ${block.sizeBytes} bytes`;
        freeChecked(rig, block.address, cpu);
      } else {
        const block = rig.live.at(prng.index(rig.live.count));
        const size = randomSize(prng);
        const align = randomAlign(prng, alignMax);
        what = `reallocate(${
          hex(block.address)
        } of ${block.sizeBytes} bytes, ${size}, ${align}, ${cpu})`;
        if (reallocateChecked(rig, block.address, size, align, cpu) === 0) expectFailure();
      }
      assertSound(rig);
      if (rig.pages.stats().freeCalls !== freeCalls) assertAllInOwnPages(rig);
    });
  }
  return { prng, refusals, failures };
}

// -- the cases ------------------------------------------------------------------

type CaseFn = (config: SuiteConfig, t: Deno.TestContext) => void | Promise<void>;

const CASES: Record<ConformanceCase, CaseFn> = {
  identity(config) {
    const rig = newRig(config);
    const { engine, descriptor } = { engine: rig.engine, descriptor: config.descriptor };
    assert.equal(engine.name, descriptor.name);
    assert.ok(descriptor.description.length > 0 && engine.description.length > 0);
    assert.ok(descriptor.modelledOn.length > 0);
    const align = engine.maxAlignBytes;
    assert.ok(
      Number.isInteger(align) && align >= 1 && (align & (align - 1)) === 0,
      `maxAlignBytes ${align}`,
    );
    const stats = engine.stats();
    assert.equal(stats.engine, descriptor.name);
    assert.deepEqual(
      [
        stats.allocCount,
        stats.failedAllocCount,
        stats.freeCount,
        stats.liveBlockCount,
        stats.liveReservedBytes,
      ],
      [0, 0, 0, 0, 0],
    );
    assert.equal(engine.lastFailureCause, null);
    assertSound(rig);
    // One page-sized request: the engine draws on its page source and nothing else.
    assert.notEqual(allocateChecked(rig, PAGE_SIZE_BYTES, 1, 0), 0);
    assert.ok(
      rig.pages.pagesOwnedBy(ENGINE_OWNER) > 0,
      "an engine takes its memory from its page source",
    );
    assert.equal(
      rig.pages.freeFrameCount + rig.pages.pagesOwnedBy(ENGINE_OWNER),
      rig.pages.frameCount,
    );
    assertSound(rig);
  },

  async "random-ops"(config, t) {
    for (const seed of config.seeds) {
      await t.step(`seed=${seed}`, () => {
        const rig = newRig(config);
        const label = `${config.descriptor.name} random-ops`;
        const { prng, refusals } = randomRun(rig, seed, config.opCount, label);
        freeAll(rig, prng, `${label} seed=${seed}`);
        const stats = rig.engine.stats();
        assert.equal(stats.liveBlockCount, 0);
        assert.equal(stats.liveReservedBytes, 0, "no live block, no reserved byte");
        assert.equal(stats.failedAllocCount, refusals, "a 1 GiB machine fails only refusals");
      });
    }
  },

  async pressure(config, t) {
    for (const seed of config.seeds.slice(0, 2)) {
      const label = `${config.descriptor.name} pressure`;
      await t.step(`seed=${seed} on a 512 KiB machine`, () => {
        const rig = newRig(config, 128);
        const { prng, failures } = randomRun(rig, seed, config.opCount, label, [
          "exhaustion",
          "contiguity",
        ]);
        assert.ok(failures > 0, "the machine never ran out: the case tests nothing");
        freeAll(rig, prng, `${label} seed=${seed}`);
      });
      await t.step(`seed=${seed} under a 48-page quota`, () => {
        const rig = newRig(config, LARGE_MACHINE_FRAMES, 48);
        const { prng, failures } = randomRun(rig, seed, config.opCount, label, ["quota"]);
        assert.ok(failures > 0, "the quota was never reached: the case tests nothing");
        assert.ok(rig.pages.peakPagesOwnedBy(ENGINE_OWNER) <= 48, "the quota held");
        assert.equal(
          rig.pages.stats().failedCalls,
          0,
          "quota failures never reach the page allocator",
        );
        freeAll(rig, prng, `${label} seed=${seed}`);
      });
    }
  },

  async "free-all-returns-pages"(config, t) {
    for (const seed of config.seeds.slice(0, 2)) {
      await t.step(`seed=${seed}`, () => {
        const rig = newRig(config);
        const label = `${config.descriptor.name} free-all-returns-pages`;
        const { prng } = randomRun(rig, seed, Math.min(config.opCount, 600), label);
        freeAll(rig, prng, `${label} seed=${seed}`);
        if (!config.cachesEmptyPages) assertEmptyEngine(rig);
        rig.engine.shrink();
        assertEmptyEngine(rig);
      });
    }
  },

  async alignment(config, t) {
    const maxAlignBytes = newRig(config, 16).engine.maxAlignBytes;
    const alignMax = Math.min(maxAlignBytes, SWEEP_ALIGN_MAX_BYTES);
    const sizes = [1, 24, 100, 1000, 4000, 4095, 4096, 5000, 3 * PAGE_SIZE_BYTES];
    await t.step(`every power of two up to ${alignMax}, kept live together`, () => {
      const rig = newRig(config);
      for (let align = 1; align <= alignMax; align *= 2) {
        for (const size of sizes) {
          withContext(() => `${config.descriptor.name} allocate(${size}, ${align})`, () => {
            if (allocateChecked(rig, size, align, 0) === 0) {
              assert.equal(
                rig.engine.lastFailureCause,
                "unservable",
                "a 1 GiB machine must serve it",
              );
            }
            assertSound(rig);
          });
        }
      }
      freeAll(rig, new Prng(1), `${config.descriptor.name} alignment`);
    });
    await t.step("the defaults align to at least 1 and mix with aligned blocks", () => {
      const rig = newRig(config);
      assert.notEqual(allocateChecked(rig, 100, Math.min(maxAlignBytes, 64), 0), 0);
      const address = rig.engine.allocate(100);
      assert.notEqual(address, 0);
      rig.live.add({ address, sizeBytes: 100, usableBytes: rig.engine.usableSize(address) });
      assertSound(rig);
      freeChecked(rig, address, 0);
      assertSound(rig);
    });
    if (maxAlignBytes < 2 ** 30) {
      await t.step(`alignment ${2 * maxAlignBytes} is a RangeError`, () => {
        const rig = newRig(config);
        assert.notEqual(allocateChecked(rig, 100, 1, 0), 0);
        assertRangeError(rig, () => rig.engine.allocate(16, 2 * maxAlignBytes));
      });
    }
  },

  async "invalid-free"(config, t) {
    await t.step("interior pointers", () => {
      const { rig, small, whole } = invalidFreeRig(config);
      const block = rig.live.get(small[5]!)!;
      expectRejected(rig, block.address + 8, "interior-pointer");
      expectRejected(rig, block.address + block.usableBytes - 1, "interior-pointer");
      const big = rig.live.get(whole)!;
      expectRejected(rig, whole + 8, "interior-pointer");
      expectRejected(rig, whole + PAGE_SIZE_BYTES, "interior-pointer");
      expectRejected(rig, whole + 2 * PAGE_SIZE_BYTES, "interior-pointer");
      expectRejected(rig, whole + big.usableBytes - 1, "interior-pointer");
      assertLiveIntact(rig);
    });

    await t.step("addresses in front of an aligned block are no block", () => {
      const { rig } = invalidFreeRig(config);
      const align = Math.min(rig.engine.maxAlignBytes, 256);
      const aligned = allocateChecked(rig, 100, align, 0);
      assert.notEqual(aligned, 0);
      assertSound(rig);
      for (let back = 8; back <= 2 * align; back += 8) {
        const address = aligned - back;
        if (rig.live.get(address) !== undefined) continue;
        const inside = rig.live.containing(address);
        expectRejected(rig, address, inside !== undefined ? "interior-pointer" : null);
      }
      assertLiveIntact(rig);
    });

    await t.step("unknown addresses", () => {
      const { rig, other } = invalidFreeRig(config);
      const { pages } = rig;
      let freeFrame = -1;
      pages.forEachBlock((frame, _order, owner) => {
        if (owner < 0 && freeFrame < 0) freeFrame = frame;
      });
      assert.ok(freeFrame >= 0);
      for (
        const address of [
          0x1234,
          2 ** 60,
          Number.MAX_SAFE_INTEGER,
          -PAGE_SIZE_BYTES,
          NaN,
          frameToAddress(freeFrame),
          frameToAddress(freeFrame) + 256,
          frameToAddress(other),
          frameToAddress(other) + 128,
          frameToAddress(pages.frameCount),
          frameToAddress(-1),
        ]
      ) {
        expectRejected(rig, address, "unknown-address");
      }
      assertLiveIntact(rig);
    });

    await t.step("address 0 is NULL: free does nothing, reallocate allocates", () => {
      const { rig } = invalidFreeRig(config);
      const before = observe(rig);
      rig.engine.free(0, 0);
      assert.deepEqual(observe(rig), before, "free(0) changed the state");
      assert.equal(rig.engine.lastSteps, 0, "free(0) does no work");
      assert.throws(() => rig.engine.usableSize(0), InvalidFreeError, "usableSize(0) must throw");
      const address = rig.engine.reallocate(0, 100, 1, 0);
      assert.notEqual(address, 0, "reallocate(0, 100) allocates");
      assert.ok(rig.engine.usableSize(address) >= 100);
      rig.live.add({ address, sizeBytes: 100, usableBytes: rig.engine.usableSize(address) });
      assertSound(rig);
      freeChecked(rig, address, 0);
      assertSound(rig);
    });

    await t.step("double frees", () => {
      const { rig, small, whole } = invalidFreeRig(config);
      freeChecked(rig, small[7]!, 0);
      assertSound(rig);
      expectRejected(rig, small[7]!, freedReason(rig, small[7]!));
      freeChecked(rig, small[8]!, 1 % rig.cpuCount);
      assertSound(rig);
      expectRejected(rig, small[8]!, freedReason(rig, small[8]!));
      expectRejected(rig, small[7]!, freedReason(rig, small[7]!));
      freeChecked(rig, whole, 0);
      assertSound(rig);
      expectRejected(rig, whole, freedReason(rig, whole));
      expectRejected(rig, whole + PAGE_SIZE_BYTES, freedReason(rig, whole + PAGE_SIZE_BYTES));
      const aligned = allocateChecked(rig, 100, Math.min(rig.engine.maxAlignBytes, 64), 0);
      assert.notEqual(allocateChecked(rig, 100, 1, 0), 0);
      freeChecked(rig, aligned, 0);
      assertSound(rig);
      expectRejected(rig, aligned, freedReason(rig, aligned));
      assertLiveIntact(rig);
    });
  },

  async exhaustion(config, t) {
    await t.step("small blocks until the machine is full", () => {
      const rig = newRig(config, 48);
      fillUntilFailure(rig, () => 100, "small");
      if (rig.pages.freeFrameCount === 0) assert.equal(rig.engine.lastFailureCause, "exhaustion");
      assertRecovers(rig);
    });
    await t.step("3-page blocks until the machine is full", () => {
      const rig = newRig(config, 48);
      fillUntilFailure(rig, () => 3 * PAGE_SIZE_BYTES - 100, "3-page");
      assertRecovers(rig);
    });
    await t.step("mixed sizes until the machine is full", () => {
      const prng = new Prng(11);
      const rig = newRig(config, 40);
      fillUntilFailure(rig, () => randomSize(prng), "mixed");
      assertRecovers(rig);
    });
    await t.step("a request larger than the machine", () => {
      const rig = newRig(config, 16);
      assert.equal(rig.engine.allocate(32 * PAGE_SIZE_BYTES), 0);
      assert.equal(rig.engine.lastFailureCause, "exhaustion");
      assert.equal(rig.engine.stats().failedAllocCount, 1);
      assertSound(rig);
    });
  },

  contiguity(config) {
    // 64 frames, every other one taken by another owner: 32 free frames, no two adjacent.
    const rig = newRig(config, 64, Infinity, (pages) => {
      for (let i = 0; i < 64; i++) pages.alloc(0, OTHER_OWNER);
      for (let frame = 0; frame < 64; frame += 2) pages.free(frame, 0);
    });
    assert.equal(rig.pages.freeFrameCount, 32);
    assert.equal(rig.engine.allocate(3 * PAGE_SIZE_BYTES), 0);
    assert.equal(rig.engine.lastFailureCause, "contiguity");
    assert.equal(rig.engine.stats().failedAllocCount, 1);
    assert.ok(
      rig.pages.stats().failedContiguity > 0,
      "the page allocator saw a contiguity failure",
    );
    assertSound(rig);
    assert.equal(rig.pages.pagesOwnedBy(OTHER_OWNER), 32);
  },

  async quota(config, t) {
    await t.step("a quota of 0 pages serves nothing", () => {
      const rig = newRig(config, LARGE_MACHINE_FRAMES, 0);
      assert.equal(rig.engine.allocate(1), 0);
      assert.equal(rig.engine.lastFailureCause, "quota");
      assert.equal(rig.pages.pagesOwnedBy(ENGINE_OWNER), 0);
      assert.equal(
        rig.pages.stats().allocCalls,
        0,
        "a quota failure never reaches the page allocator",
      );
      assertSound(rig);
    });
    await t.step("a quota of 8 pages", () => {
      const rig = newRig(config, LARGE_MACHINE_FRAMES, 8);
      fillUntilFailure(rig, () => 2000, "2000-byte");
      assert.equal(rig.engine.lastFailureCause, "quota");
      assert.equal(
        rig.pages.stats().failedCalls,
        0,
        "quota failures never reach the page allocator",
      );
      assert.ok(rig.pages.pagesOwnedBy(ENGINE_OWNER) <= 8);
      expectAllocFailure(rig, 16 * PAGE_SIZE_BYTES, "quota");
      rig.source.maxPages = Infinity;
      assert.notEqual(allocateChecked(rig, 2000, 1, 0), 0);
      assert.notEqual(allocateChecked(rig, 16 * PAGE_SIZE_BYTES, 1, 0), 0);
      assertSound(rig);
      freeAll(rig, new Prng(2), `${config.descriptor.name} quota`);
    });
  },

  async reallocate(config, t) {
    await t.step("grow and shrink keep one live block", () => {
      const rig = newRig(config);
      const neighbours = [allocateChecked(rig, 64, 1, 0), allocateChecked(rig, 64, 1, 0)];
      let address = allocateChecked(rig, 100, 1, 0);
      const steps: [number, number][] = [
        [100, 1],
        [3000, 1],
        [4095, 1],
        [2 * PAGE_SIZE_BYTES + 1, 1],
        [3 * PAGE_SIZE_BYTES, 1],
        [PAGE_SIZE_BYTES, 1],
        [50, 1],
        [300, Math.min(64, rig.engine.maxAlignBytes)],
        [1, 1],
      ];
      for (const [size, align] of steps) {
        withContext(
          () => `${config.descriptor.name} reallocate(${hex(address)}, ${size}, ${align})`,
          () => {
            const moved = reallocateChecked(rig, address, size, align, 0);
            assert.notEqual(moved, 0);
            address = moved;
            assert.equal(rig.engine.stats().liveBlockCount, 3);
            assertSound(rig);
          },
        );
      }
      const block = rig.live.get(address)!;
      assert.equal(
        reallocateChecked(rig, address, block.usableBytes, 1, 0),
        address,
        "a block that fits stays",
      );
      for (const n of neighbours) freeChecked(rig, n, 0);
      freeChecked(rig, address, 0);
      assertSound(rig);
    });
    await t.step("an impossible size returns 0 and leaves the old block (quota)", () => {
      const rig = newRig(config, LARGE_MACHINE_FRAMES, 8);
      const address = allocateChecked(rig, 100, 1, 0);
      const before = observe(rig);
      assert.equal(reallocateChecked(rig, address, 64 * PAGE_SIZE_BYTES, 1, 0), 0);
      assert.equal(rig.engine.lastFailureCause, "quota");
      assertSameExceptFailure(rig, before);
      assertSound(rig);
      // The next success, even one served in place, clears the cause.
      assert.equal(reallocateChecked(rig, address, 50, 1, 0), address, "shrinking stays in place");
      assertSound(rig);
      freeChecked(rig, address, 0);
      assertSound(rig);
    });
    await t.step("an impossible size returns 0 and leaves the old block (machine)", () => {
      const rig = newRig(config, 16);
      const address = allocateChecked(rig, 3000, 1, 0);
      const before = observe(rig);
      assert.equal(reallocateChecked(rig, address, 32 * PAGE_SIZE_BYTES, 1, 0), 0);
      assert.equal(rig.engine.lastFailureCause, "exhaustion");
      assertSameExceptFailure(rig, before);
      assertSound(rig);
      freeChecked(rig, address, 0);
      assertSound(rig);
    });
    await t.step("bad arguments are RangeErrors and change nothing", () => {
      const rig = newRig(config);
      const address = allocateChecked(rig, 100, 1, 0);
      const bad: [number, number, number][] = [
        [-1, 1, 0],
        [1.5, 1, 0],
        [NaN, 1, 0],
        [16, 3, 0],
        [16, 0, 0],
        [16, 1, -1],
        [16, 1, rig.cpuCount],
      ];
      for (const [size, align, cpu] of bad) {
        assertRangeError(rig, () => rig.engine.reallocate(address, size, align, cpu));
      }
      freeChecked(rig, address, 0);
      assertSound(rig);
    });
  },

  "bad-arguments"(config) {
    const rig = newRig(config);
    const kept = [allocateChecked(rig, 100, 1, 0), allocateChecked(rig, 5000, 1, 0)];
    assertSound(rig);
    const bad: [number, number, number][] = [
      [0, 1, 0],
      [-1, 1, 0],
      [1.5, 1, 0],
      [NaN, 1, 0],
      [Infinity, 1, 0],
      [16, 3, 0],
      [16, 0, 0],
      [16, -2, 0],
      [16, 1.5, 0],
      [16, NaN, 0],
      [16, 1, -1],
      [16, 1, rig.cpuCount],
      [16, 1, 0.5],
      [16, 1, NaN],
    ];
    for (const [size, align, cpu] of bad) {
      assertRangeError(
        rig,
        () => rig.engine.allocate(size, align, cpu),
        `allocate(${size}, ${align}, ${cpu})`,
      );
    }
    for (const cpu of [-1, rig.cpuCount, 0.5]) {
      assertRangeError(rig, () => rig.engine.free(kept[0]!, cpu), `free(.., ${cpu})`);
    }
    for (const address of kept) freeChecked(rig, address, 0);
    assertSound(rig);
  },

  async destroy(config, t) {
    await t.step("a busy engine gives back every page and no one else's", () => {
      const rig = newRig(config);
      const others = rig.pages.alloc(3, OTHER_OWNER);
      randomRun(rig, 99, 300, `${config.descriptor.name} destroy`);
      assert.ok(rig.live.count > 0 && rig.pages.pagesOwnedBy(ENGINE_OWNER) > 0);
      rig.engine.destroy();
      assert.equal(rig.pages.pagesOwnedBy(ENGINE_OWNER), 0);
      assert.equal(rig.pages.pagesOwnedBy(OTHER_OWNER), 8);
      assert.equal(rig.pages.freeFrameCount, rig.pages.frameCount - 8);
      assert.deepEqual(rig.pages.check(), []);
      assert.equal(rig.pages.ownerOf(others), OTHER_OWNER);
    });
    await t.step("a fresh engine", () => {
      const rig = newRig(config);
      rig.engine.destroy();
      assert.equal(rig.pages.pagesOwnedBy(ENGINE_OWNER), 0);
      assert.equal(rig.pages.freeFrameCount, rig.pages.frameCount);
      assert.deepEqual(rig.pages.check(), []);
    });
  },

  // Checkpoints and snapshots rest on this: an engine loaded from its saved state (on
  // a copy of its machine) answers every later call as the original does, and saving
  // the copy gives the same bytes.
  async "save-load"(config, t) {
    for (const seed of config.seeds.slice(0, 2)) {
      await t.step(`seed=${seed}: a loaded engine answers every call as the saved one`, () => {
        const frames = 1024;
        const rig = newRig(config, frames, 200);
        const prng = new Prng(seed);
        const others: number[] = [];
        const alignMax = Math.min(rig.engine.maxAlignBytes, RANDOM_ALIGN_MAX_BYTES);
        /** One random step on `r`, the same for both rigs given the same draws. */
        const step = (r: Rig, draws: Prng, mine: number[]): unknown => {
          const x = draws.nextFloat();
          const cpu = draws.index(r.cpuCount);
          if (x < 0.1) {
            const f = r.pages.alloc(draws.index(3), OTHER_OWNER);
            if (f >= 0) mine.push(f);
            return ["other", f];
          }
          if (x < 0.14 && mine.length > 0) {
            const f = mine.splice(draws.index(mine.length), 1)[0]!;
            r.pages.free(f, r.pages.allocatedOrder(f));
            return ["other-free", f];
          }
          if (r.live.count === 0 || x < 0.6) {
            const size = randomSize(draws);
            const align = randomAlign(draws, alignMax);
            return ["a", allocateChecked(r, size, align, cpu), r.engine.lastSteps];
          }
          const block = r.live.at(draws.index(r.live.count));
          if (x < 0.93) {
            freeChecked(r, block.address, cpu);
            return ["f", block.address, r.engine.lastSteps];
          }
          const size = randomSize(draws);
          const align = randomAlign(draws, alignMax);
          return ["r", reallocateChecked(r, block.address, size, align, cpu), r.engine.lastSteps];
        };
        for (let i = 0; i < 800; i++) step(rig, prng, others);

        const saveMachine = (pages: BuddyPageAllocator) => {
          const w = new StateWriter();
          pages.saveState(w);
          return w.bytes();
        };
        const saveEngine = (engine: XmallocEngine) => {
          const w = new StateWriter();
          engine.saveState(w);
          return w.bytes();
        };
        const machineBytes = saveMachine(rig.pages);
        const engineBytes = saveEngine(rig.engine);
        const pages = BuddyPageAllocator.load(new StateReader(machineBytes, "the machine"));
        const source = new PageSource(pages, ENGINE_OWNER, 200);
        const reader = new StateReader(engineBytes, config.descriptor.name);
        const engine = config.descriptor.load(
          { pageSource: source, cpuCount: config.cpuCount },
          reader,
        );
        reader.done();
        const copy: Rig = { ...rig, pages, source, engine, live: rig.live.clone() };
        assert.deepEqual(saveEngine(engine), engineBytes, "the copy saves the same state");
        assert.deepEqual(engine.stats(), rig.engine.stats());
        assert.deepEqual(engine.pagesHeld(), rig.engine.pagesHeld());
        assert.deepEqual(engine.check(), []);
        for (const block of rig.live.all()) {
          assert.equal(engine.usableSize(block.address), block.usableBytes);
        }
        // The same draws on both: the same answers, call by call.
        const a = new Prng(seed + 1000);
        const b = new Prng(seed + 1000);
        const othersCopy = [...others];
        let failures = 0;
        for (let i = 0; i < 1200; i++) {
          const x = step(rig, a, others);
          const y = step(copy, b, othersCopy);
          assert.deepEqual(y, x, `call ${i} after the load`);
          if ((x as unknown[])[0] === "a" && (x as unknown[])[1] === 0) failures++;
        }
        assert.ok(failures > 0, "no call failed after the load: failures are not compared");
        assert.deepEqual(engine.stats(), rig.engine.stats());
        assert.deepEqual(saveMachine(pages), saveMachine(rig.pages), "the machines agree");
        assert.deepEqual(saveEngine(engine), saveEngine(rig.engine), "the engines agree");
        if (config.cachesEmptyPages) {
          rig.engine.shrink();
          engine.shrink();
          assert.deepEqual(saveMachine(pages), saveMachine(rig.pages));
        }
      });
    }
    await t.step("a state cut short or of another engine does not load", () => {
      const rig = newRig(config);
      allocateChecked(rig, 100, 1, 0);
      const w = new StateWriter();
      rig.engine.saveState(w);
      const bytes = w.bytes();
      assert.throws(() => {
        const r = new StateReader(bytes.subarray(0, bytes.length - 3), "cut");
        config.descriptor.load({ pageSource: rig.source, cpuCount: config.cpuCount }, r);
        r.done();
      }, /does not read back/);
    });
  },

  // Snapshots rest on this (hypervisor/snapshot.ts): an engine given the same calls
  // and the same page-allocator answers makes the same blocks at the same addresses,
  // and asks the machine nothing but through its page source.
  async replay(config, t) {
    for (const seed of config.seeds.slice(0, 2)) {
      await t.step(`seed=${seed}: a rebuilt engine is the same heap, call by call`, () => {
        // A small machine that another owner keeps busy: the machine's answers (frames,
        // failures for exhaustion and contiguity, its largest free order) vary.
        const frames = 512;
        const others: number[] = [];
        const rig = newRig(config, frames, 150, (pages) => {
          // Every other 16-page block taken: no free block above order 4 at the start.
          for (let f = 0; f < frames; f += 16) others.push(pages.alloc(4, OTHER_OWNER));
          for (let i = others.length - 1; i >= 0; i -= 2) pages.free(others.splice(i, 1)[0]!, 4);
        });
        const history = new OpHistory();
        rig.source.responses = history;
        const results: number[] = [];
        const prng = new Prng(seed);
        const alignMax = Math.min(rig.engine.maxAlignBytes, RANDOM_ALIGN_MAX_BYTES);
        for (let op = 0; op < 1500; op++) {
          const r = prng.nextFloat();
          const cpu = prng.index(rig.cpuCount);
          if (r < 0.1) { // another owner takes or gives pages
            const f = rig.pages.alloc(prng.index(4), OTHER_OWNER);
            if (f >= 0) others.push(f);
          } else if (r < 0.12 && others.length > 0) {
            const f = others.splice(prng.index(others.length), 1)[0]!;
            rig.pages.free(f, rig.pages.allocatedOrder(f));
          } else if (rig.live.count === 0 || r < 0.6) {
            const size = randomSize(prng);
            const align = randomAlign(prng, alignMax);
            const address = allocateChecked(rig, size, align, cpu);
            history.allocate(size, align, cpu);
            results.push(address);
          } else if (r < 0.93) {
            const address = rig.live.at(prng.index(rig.live.count)).address;
            freeChecked(rig, address, cpu);
            history.free(address, cpu);
          } else {
            const address = rig.live.at(prng.index(rig.live.count)).address;
            const size = randomSize(prng);
            const align = randomAlign(prng, alignMax);
            results.push(reallocateChecked(rig, address, size, align, cpu));
            history.reallocate(address, size, align, cpu);
          }
        }
        const failed = results.filter((a) => a === 0).length;
        assert.ok(failed > 0, "no call failed: the case does not replay failures");
        assert.ok(rig.pages.stats().failedCalls > 0, "the machine never failed a request");

        const view = history.view();
        const machine = new BuddyPageAllocator(frames);
        const space = new BuddyPageAllocator(frames);
        const fork = new ForkPageSource(machine, space, ENGINE_OWNER, 150, view.responses);
        const copy = config.descriptor.create({ pageSource: fork, cpuCount: config.cpuCount });
        let k = 0;
        const replay = (
          op: { kind: string; size?: number; align?: number; vcpu?: number; address?: number },
        ) => {
          if (op.kind === "allocate") {
            assert.equal(copy.allocate(op.size!, op.align!, op.vcpu!), results[k++]);
          } else if (op.kind === "free") copy.free(op.address!, op.vcpu!);
          else {
            const got = copy.reallocate(op.address!, op.size!, op.align!, op.vcpu!);
            assert.equal(got, results[k++]);
          }
        };
        for (const op of historyOps(view)) replay(op);
        assert.equal(k, results.length);
        assert.equal(fork.unusedResponses, 0, "every recorded answer was asked for again");
        assert.deepEqual(copy.check(), []);
        assert.deepEqual(copy.pagesHeld(), rig.engine.pagesHeld());
        for (const block of rig.live.all()) {
          assert.equal(copy.usableSize(block.address), block.usableBytes);
        }
        assert.equal(fork.goLive(), null);
        assert.equal(machine.pagesOwnedBy(ENGINE_OWNER), rig.pages.pagesOwnedBy(ENGINE_OWNER));
        // Live, the copy's pages come from its machine, and go back to it.
        for (const block of rig.live.all()) copy.free(block.address, 0);
        for (let i = 0; i < 50; i++) copy.allocate(3000 + 40 * i, 1, 0);
        const held = copy.pagesHeld();
        assert.equal(
          machine.pagesOwnedBy(ENGINE_OWNER),
          held.poolPages + held.wholePages + held.metaPages,
        );
        assert.deepEqual(copy.check(), []);
        copy.destroy();
        assert.equal(machine.freeFrameCount, frames);
        assert.deepEqual(machine.check(), []);
      });
    }
  },
};

// -- helpers of the cases -------------------------------------------------------

/**
 * A machine of 4096 frames with 16 blocks of 100 bytes, one 3-page block, and one
 * frame held by another owner.
 */
function invalidFreeRig(config: SuiteConfig) {
  const rig = newRig(config, 4096);
  const small: number[] = [];
  for (let i = 0; i < 16; i++) small.push(allocateChecked(rig, 100, 1, 0));
  const whole = allocateChecked(rig, 2 * PAGE_SIZE_BYTES + 100, 1, 0);
  assert.ok(small.every((a) => a !== 0) && whole !== 0);
  const other = rig.pages.alloc(0, OTHER_OWNER);
  assertSound(rig);
  return { rig, small, whole, other };
}

/** After rejected calls: every live block is as it was, and all of them free cleanly. */
function assertLiveIntact(rig: Rig): void {
  for (const block of rig.live.all()) {
    assert.equal(rig.engine.usableSize(block.address), block.usableBytes);
  }
  freeAll(rig, new Prng(5), `${rig.engine.name} after rejected calls`);
  assert.equal(rig.pages.pagesOwnedBy(OTHER_OWNER), 1);
  assertSound(rig);
}

/** What a free of a just-freed address should say: double free while the engine holds its page. */
function freedReason(rig: Rig, address: number): InvalidFreeReason {
  const head = rig.pages.blockHeadOf(addressToFrame(address));
  return head >= 0 && rig.pages.ownerOf(head) === ENGINE_OWNER ? "double-free" : "unknown-address";
}

/**
 * free, usableSize and reallocate of `address` all throw InvalidFreeError with
 * `reason` (any reason if null) and change nothing.
 */
function expectRejected(rig: Rig, address: number, reason: InvalidFreeReason | null): void {
  const calls: [string, () => unknown][] = [
    ["free", () => rig.engine.free(address, 0)],
    ["usableSize", () => rig.engine.usableSize(address)],
    ["reallocate", () => rig.engine.reallocate(address, 64, 1, 0)],
  ];
  for (const [name, call] of calls) {
    const before = observe(rig);
    assert.throws(call, (e: unknown) => {
      assert.ok(
        e instanceof InvalidFreeError,
        `${name}(${hex(address)}) threw ${e}, not InvalidFreeError`,
      );
      if (reason !== null) assert.equal(e.reason, reason, `${name}(${hex(address)}): ${e.message}`);
      assert.ok(Object.is(e.address, address), `${name}: error names ${e.address}, not ${address}`);
      return true;
    }, `${name}(${hex(address)}) must throw`);
    assert.deepEqual(observe(rig), before, `${name}(${hex(address)}) changed the state`);
  }
}

/** `call` throws RangeError and changes nothing. */
function assertRangeError(rig: Rig, call: () => unknown, what = "call"): void {
  const before = observe(rig);
  assert.throws(call, RangeError, `${what} must throw RangeError`);
  assert.deepEqual(observe(rig), before, `${what} changed the state`);
}

/** After a failed allocation: only the failure counters moved. */
function assertSameExceptFailure(rig: Rig, before: ReturnType<typeof observe>): void {
  const after = observe(rig);
  assert.equal(after.stats.failedAllocCount, before.stats.failedAllocCount + 1, "failedAllocCount");
  assert.deepEqual(after.pagesHeld, before.pagesHeld, "a failed allocation keeps no page");
  assert.equal(after.ownedPages, before.ownedPages);
  assert.equal(after.pageStats.freeFrameCount, before.pageStats.freeFrameCount);
  assert.deepEqual(
    [
      after.stats.allocCount,
      after.stats.freeCount,
      after.stats.liveBlockCount,
      after.stats.liveReservedBytes,
    ],
    [
      before.stats.allocCount,
      before.stats.freeCount,
      before.stats.liveBlockCount,
      before.stats.liveReservedBytes,
    ],
  );
  assert.deepEqual(after.usable, before.usable, "live blocks unchanged");
  assert.deepEqual(after.check, []);
}

/** One allocation that must fail with `cause` and change nothing but the failure count. */
function expectAllocFailure(rig: Rig, sizeBytes: number, cause: string): void {
  const before = observe(rig);
  assert.equal(rig.engine.allocate(sizeBytes), 0, `allocate(${sizeBytes}) must fail`);
  assert.equal(rig.engine.lastFailureCause, cause);
  assertSameExceptFailure(rig, before);
}

/** Allocate until the engine returns 0; check the failure and return the count. */
function fillUntilFailure(rig: Rig, nextSize: () => number, label: string): number {
  const bound = rig.pages.frameCount * PAGE_SIZE_BYTES; // no engine serves more 1-byte blocks
  for (let i = 0; i < bound; i++) {
    const size = nextSize();
    const cpu = i % rig.cpuCount;
    const done = withContext(
      () => `${rig.engine.name} ${label} fill #${i}: allocate(${size})`,
      () => {
        const before = observe(rig);
        const address = allocateChecked(rig, size, 1, cpu);
        const cause = rig.engine.lastFailureCause;
        if (address === 0 && cause !== "unservable") {
          assert.ok(i > 0, "the first allocation must succeed");
          assert.ok(
            cause === "exhaustion" || cause === "contiguity" || cause === "quota",
            `cause ${cause}`,
          );
          assertSameExceptFailure(rig, before);
        }
        assertSound(rig);
        return address === 0 && cause !== "unservable";
      },
    );
    if (done) return i;
  }
  throw new Error(`${rig.engine.name} ${label}: never ran out of memory`);
}

/** After an exhaustion: freeing one block makes room again, and everything frees cleanly. */
function assertRecovers(rig: Rig): void {
  const cause = rig.engine.lastFailureCause;
  assert.ok(cause === "exhaustion" || cause === "contiguity", `cause ${cause}`);
  assert.ok(rig.live.count > 0);
  freeAll(rig, new Prng(3), `${rig.engine.name} recovery`);
  assert.notEqual(allocateChecked(rig, 100, 1, 0), 0, "an emptied machine serves again");
  assertSound(rig);
}

/** Nothing live: pool and whole pages went back; only the control structure stays. */
function assertEmptyEngine(rig: Rig): void {
  const held = rig.engine.pagesHeld();
  assert.equal(held.poolPages, 0, "poolPages with nothing live");
  assert.equal(held.wholePages, 0, "wholePages with nothing live");
  assert.equal(rig.pages.freeFrameCount, rig.pages.frameCount - held.metaPages);
  assert.equal(rig.engine.stats().liveReservedBytes, 0);
  assertSound(rig);
}
