/**
 * Behaviour of the machine's buddy page allocator: the exact split and merge policy
 * of tests/fixtures/README.md (the reference harness's, which is Xen's), the cut of a
 * machine that is not a power of two, partial frees as Xen's `xmalloc_whole_pages()`
 * does them, per-owner counts, failure causes, rejected frees, and a seeded
 * differential run against a small reference model of the documented policy.
 *
 * Exact frames below are derived from the policy, not read back from the code:
 * `alloc(order)` takes the head of the lowest non-empty list j >= order and, while
 * j > order, pushes the LOWER half on list j-1 and keeps the UPPER half.
 */

import assert from "node:assert/strict";
import { BuddyPageAllocator, MAX_ORDER, PageFreeError } from "../hypervisor/page_allocator.ts";
import { Prng } from "../src/prng.ts";

/** Largest order `alloc` accepts (its documented bound); above maxOrder it just fails. */
const ORDER_LIMIT = 62;
const OWNER_A = 1;
const OWNER_B = 2;

/** A block as forEachBlock reports it: first frame, order, owner (-1 when free). */
type Block = readonly [frame: number, order: number, owner: number];

function blocksOf(pages: BuddyPageAllocator): Block[] {
  const blocks: Block[] = [];
  pages.forEachBlock((frame, order, owner) => blocks.push([frame, order, owner]));
  return blocks;
}

/** Allocate order-0 frames until the allocator refuses; the frames in order. */
function drainOrder0(pages: BuddyPageAllocator, owner: number): number[] {
  const frames: number[] = [];
  for (let i = 0; i <= pages.frameCount; i++) {
    const frame = pages.alloc(0, owner);
    if (frame < 0) return frames;
    frames.push(frame);
  }
  throw new Error(`Allocator handed out more than its ${pages.frameCount} frames`);
}

/** Everything observable without allocating: counters, blocks, owners, check(). */
function observe(pages: BuddyPageAllocator, owners: readonly number[]) {
  return {
    stats: pages.stats(),
    blocks: blocksOf(pages),
    owned: owners.map((o) => [pages.pagesOwnedBy(o), pages.peakPagesOwnedBy(o)]),
    check: pages.check(),
  };
}

/** A fresh 16-frame machine with 16 order-0 frames for OWNER_A and every even frame freed. */
function evenFramesFree(): BuddyPageAllocator {
  const pages = new BuddyPageAllocator(16);
  for (let i = 0; i < 16; i++) assert.equal(pages.alloc(0, OWNER_A), 15 - i);
  for (let frame = 0; frame < 16; frame += 2) pages.free(frame, 0);
  return pages;
}

Deno.test("constructor", async (t) => {
  await t.step("a power-of-two machine is one free block", () => {
    const pages = new BuddyPageAllocator(16);
    assert.deepEqual(blocksOf(pages), [[0, 4, -1]]);
    assert.equal(pages.freeFrameCount, 16);
    assert.equal(pages.frameCount, 16);
    assert.equal(pages.maxOrder, MAX_ORDER);
    assert.equal(pages.largestFreeOrder(), 4);
    assert.deepEqual(pages.check(), []);
  });

  await t.step("a 1 GiB machine is one order-18 block", () => {
    const pages = new BuddyPageAllocator(262144);
    assert.deepEqual(blocksOf(pages), [[0, 18, -1]]);
    assert.deepEqual(pages.check(), []);
  });

  await t.step("other sizes are cut into maximal aligned blocks in ascending order", () => {
    const cases: [number, Block[]][] = [
      [1, [[0, 0, -1]]],
      [7, [[0, 2, -1], [4, 1, -1], [6, 0, -1]]],
      [12, [[0, 3, -1], [8, 2, -1]]],
      [13, [[0, 3, -1], [8, 2, -1], [12, 0, -1]]],
      [24, [[0, 4, -1], [16, 3, -1]]],
      [3072, [[0, 11, -1], [2048, 10, -1]]],
    ];
    for (const [frameCount, expected] of cases) {
      const pages = new BuddyPageAllocator(frameCount);
      assert.deepEqual(blocksOf(pages), expected, `${frameCount} frames`);
      assert.equal(pages.freeFrameCount, frameCount);
      assert.deepEqual(pages.check(), []);
    }
  });

  await t.step("blocks never exceed maxOrder", () => {
    const pages = new BuddyPageAllocator(16, 2);
    assert.deepEqual(blocksOf(pages), [[0, 2, -1], [4, 2, -1], [8, 2, -1], [12, 2, -1]]);
    assert.equal(pages.largestFreeOrder(), 2);
  });

  await t.step("rejects frame counts and orders out of range", () => {
    for (const frameCount of [0, -1, 1.5, NaN, 2 ** 31 + 1]) {
      assert.throws(() => new BuddyPageAllocator(frameCount), RangeError, `${frameCount}`);
    }
    for (const maxOrder of [-1, 31, 2.5, NaN]) {
      assert.throws(() => new BuddyPageAllocator(16, maxOrder), RangeError, `${maxOrder}`);
    }
  });
});

Deno.test("split policy", async (t) => {
  await t.step("alloc(0) on a fresh 16-frame machine counts down from frame 15", () => {
    const pages = new BuddyPageAllocator(16);
    assert.deepEqual(drainOrder0(pages, OWNER_A), [
      15,
      14,
      13,
      12,
      11,
      10,
      9,
      8,
      7,
      6,
      5,
      4,
      3,
      2,
      1,
      0,
    ]);
    assert.equal(pages.freeFrameCount, 0);
    assert.deepEqual(pages.check(), []);
  });

  await t.step("the first split leaves the lower halves free, one per order", () => {
    const pages = new BuddyPageAllocator(16);
    assert.equal(pages.alloc(0, OWNER_A), 15);
    assert.deepEqual(blocksOf(pages), [
      [0, 3, -1],
      [8, 2, -1],
      [12, 1, -1],
      [14, 0, -1],
      [15, 0, OWNER_A],
    ]);
  });

  await t.step("larger orders also take the upper half", () => {
    const pages = new BuddyPageAllocator(16);
    assert.equal(pages.alloc(1, OWNER_A), 14); // 0..15 -> keep 8..15 -> 12..15 -> 14..15
    assert.equal(pages.alloc(2, OWNER_A), 8); // head of list 2
    assert.equal(pages.alloc(0, OWNER_A), 13); // list 1 holds 12: keep 13, free 12
    assert.equal(pages.alloc(1, OWNER_A), 6); // list 3 holds 0: 0..7 -> 4..7 -> 6..7
    assert.deepEqual(blocksOf(pages), [
      [0, 2, -1],
      [4, 1, -1],
      [6, 1, OWNER_A],
      [8, 2, OWNER_A],
      [12, 0, -1],
      [13, 0, OWNER_A],
      [14, 1, OWNER_A],
    ]);
    assert.deepEqual(pages.check(), []);
  });

  await t.step("the lowest non-empty list wins even when a larger block is first in memory", () => {
    const pages = new BuddyPageAllocator(12); // free: 0 (order 3), 8 (order 2)
    assert.equal(pages.alloc(0, OWNER_A), 11);
    assert.equal(pages.alloc(1, OWNER_A), 8);
    assert.equal(pages.alloc(2, OWNER_A), 4);
  });

  await t.step("a 3072-frame machine serves from the 1024 block first", () => {
    const pages = new BuddyPageAllocator(3072);
    assert.equal(pages.alloc(0, OWNER_A), 3071);
    assert.equal(pages.alloc(10, OWNER_A), 1024); // list 10 is empty now: split 0..2047
    assert.equal(pages.alloc(10, OWNER_A), 0);
    assert.equal(pages.alloc(10, OWNER_A), -1);
    assert.equal(pages.freeFrameCount, 1023);
    assert.equal(pages.stats().failedExhaustion, 1);
    assert.deepEqual(pages.check(), []);
  });

  await t.step("fresh 3072-frame machine: order 11 is frame 0, order 10 is frame 2048", () => {
    const pages = new BuddyPageAllocator(3072);
    assert.equal(pages.alloc(11, OWNER_A), 0);
    assert.equal(pages.alloc(10, OWNER_A), 2048);
    assert.equal(pages.freeFrameCount, 0);
  });

  await t.step("alloc with a capped maxOrder takes the highest of the initial blocks", () => {
    const pages = new BuddyPageAllocator(16, 2); // pushed 0, 4, 8, 12: 12 heads list 2
    assert.equal(pages.alloc(2, OWNER_A), 12);
    assert.equal(pages.alloc(2, OWNER_A), 8);
    assert.equal(pages.alloc(0, OWNER_A), 7);
    assert.equal(pages.alloc(2, OWNER_A), 0);
  });

  await t.step("a one-frame machine", () => {
    const pages = new BuddyPageAllocator(1);
    assert.equal(pages.alloc(0, OWNER_A), 0);
    assert.equal(pages.alloc(0, OWNER_A), -1);
    assert.equal(pages.stats().failedExhaustion, 1);
  });
});

Deno.test("free lists are LIFO", async (t) => {
  await t.step("the last freed block of an order is the next one handed out", () => {
    const pages = new BuddyPageAllocator(16);
    drainOrder0(pages, OWNER_A);
    for (const frame of [3, 9, 5, 12]) pages.free(frame, 0); // no two are buddies
    assert.deepEqual(drainOrder0(pages, OWNER_A), [12, 5, 9, 3]);
  });

  await t.step("a merged block goes on the head of its own order's list", () => {
    const pages = new BuddyPageAllocator(16);
    drainOrder0(pages, OWNER_A);
    pages.free(0, 0);
    pages.free(9, 0);
    pages.free(1, 0); // merges with 0: list 1 = [0]
    pages.free(4, 0);
    pages.free(5, 0); // merges with 4: list 1 = [4, 0]
    assert.equal(pages.alloc(1, OWNER_B), 4);
    assert.equal(pages.alloc(1, OWNER_B), 0);
    assert.equal(pages.alloc(0, OWNER_B), 9);
    assert.equal(pages.alloc(0, OWNER_B), -1);
  });
});

Deno.test("merging on free", async (t) => {
  await t.step("freeing every frame in any order gives back one block", () => {
    const pages = new BuddyPageAllocator(16);
    drainOrder0(pages, OWNER_A);
    for (const frame of [7, 0, 15, 3, 8, 12, 1, 14, 6, 2, 9, 13, 4, 11, 5, 10]) {
      pages.free(frame, 0);
      assert.deepEqual(pages.check(), [], `after freeing ${frame}`);
    }
    assert.deepEqual(blocksOf(pages), [[0, 4, -1]]);
    assert.equal(pages.largestFreeOrder(), 4);
    assert.equal(pages.pagesOwnedBy(OWNER_A), 0);
  });

  await t.step("a block does not merge with a buddy that is allocated", () => {
    const pages = new BuddyPageAllocator(16);
    assert.equal(pages.alloc(0, OWNER_A), 15);
    assert.equal(pages.alloc(0, OWNER_A), 14);
    pages.free(15, 0);
    assert.deepEqual(blocksOf(pages).slice(-2), [[14, 0, OWNER_A], [15, 0, -1]]);
    pages.free(14, 0);
    assert.deepEqual(blocksOf(pages), [[0, 4, -1]]);
  });

  await t.step("a block does not merge with a free buddy of a different order", () => {
    const pages = new BuddyPageAllocator(16);
    drainOrder0(pages, OWNER_A);
    pages.free(0, 0);
    pages.free(1, 0); // 0..1 free at order 1
    pages.free(2, 0); // buddy 3 is allocated: stays order 0
    pages.free(4, 0);
    pages.free(5, 0);
    pages.free(6, 0); // its buddy 7 is allocated; 4..5 (order 1) cannot take 6 (order 0)
    assert.deepEqual(blocksOf(pages).slice(0, 5), [
      [0, 1, -1],
      [2, 0, -1],
      [3, 0, OWNER_A],
      [4, 1, -1],
      [6, 0, -1],
    ]);
    pages.free(3, 0); // 2,3 -> 2..3, then 0..1 + 2..3 -> 0..3
    assert.deepEqual(blocksOf(pages).slice(0, 3), [[0, 2, -1], [4, 1, -1], [6, 0, -1]]);
    assert.deepEqual(pages.check(), []);
  });

  await t.step("merging stops at maxOrder", () => {
    const pages = new BuddyPageAllocator(16, 2);
    drainOrder0(pages, OWNER_A);
    for (let frame = 0; frame < 16; frame++) pages.free(frame, 0);
    assert.deepEqual(blocksOf(pages), [[0, 2, -1], [4, 2, -1], [8, 2, -1], [12, 2, -1]]);
    assert.deepEqual(pages.check(), []);
  });

  await t.step("merging stops at the edge of a non-power-of-two machine", () => {
    for (const frameCount of [12, 13, 3072]) {
      const pages = new BuddyPageAllocator(frameCount);
      const before = blocksOf(pages);
      const frames = drainOrder0(pages, OWNER_A);
      assert.equal(frames.length, frameCount);
      for (const frame of frames) pages.free(frame, 0);
      assert.deepEqual(blocksOf(pages), before, `${frameCount} frames`);
      assert.deepEqual(pages.check(), []);
    }
  });
});

Deno.test("freeing an aligned part of an allocated block (xmalloc_whole_pages)", async (t) => {
  await t.step("3 of 4 pages: the tail goes back, the rest merges later", () => {
    const pages = new BuddyPageAllocator(16);
    const frame = pages.alloc(2, OWNER_A);
    assert.equal(frame, 12);
    pages.free(frame + 3, 0);
    assert.equal(pages.pagesOwnedBy(OWNER_A), 3);
    assert.equal(pages.peakPagesOwnedBy(OWNER_A), 4);
    assert.deepEqual(blocksOf(pages), [
      [0, 3, -1],
      [8, 2, -1],
      [12, 1, OWNER_A],
      [14, 0, OWNER_A],
      [15, 0, -1],
    ]);
    assert.deepEqual(pages.check(), []);
    assert.equal(pages.allocatedOrder(12), 1);
    assert.equal(pages.allocatedOrder(14), 0);
    assert.equal(pages.ownerOf(14), OWNER_A);

    pages.free(frame, 1);
    assert.deepEqual(pages.check(), []);
    assert.equal(pages.pagesOwnedBy(OWNER_A), 1);
    pages.free(frame + 2, 0);
    assert.deepEqual(blocksOf(pages), [[0, 4, -1]]);
    assert.equal(pages.pagesOwnedBy(OWNER_A), 0);
    assert.equal(pages.freeFrameCount, 16);
    assert.deepEqual(pages.check(), []);
  });

  await t.step("the head half of a block", () => {
    const pages = new BuddyPageAllocator(16);
    assert.equal(pages.alloc(2, OWNER_A), 12);
    pages.free(12, 1);
    assert.deepEqual(blocksOf(pages).slice(-2), [[12, 1, -1], [14, 1, OWNER_A]]);
    assert.equal(pages.pagesOwnedBy(OWNER_A), 2);
    pages.free(14, 1);
    assert.deepEqual(blocksOf(pages), [[0, 4, -1]]);
  });

  await t.step("a middle page of an order-3 block", () => {
    const pages = new BuddyPageAllocator(16);
    assert.equal(pages.alloc(3, OWNER_A), 8);
    pages.free(13, 0);
    assert.deepEqual(blocksOf(pages), [
      [0, 3, -1],
      [8, 2, OWNER_A],
      [12, 0, OWNER_A],
      [13, 0, -1],
      [14, 1, OWNER_A],
    ]);
    assert.equal(pages.pagesOwnedBy(OWNER_A), 7);
    assert.deepEqual(pages.check(), []);
  });

  await t.step("each new head's word starts at 0, other frames keep theirs", () => {
    const pages = new BuddyPageAllocator(16);
    const frame = pages.alloc(3, OWNER_A);
    assert.equal(frame, 8);
    assert.equal(pages.privateWord(frame), 0);
    for (let i = 0; i < 8; i++) pages.setPrivateWord(frame + i, 100 + i);
    pages.free(frame + 7, 0); // new heads: 12 (order 1), 14 (order 0)
    assert.deepEqual(
      [0, 1, 2, 3, 4, 5, 6].map((i) => pages.privateWord(frame + i)),
      [100, 101, 102, 103, 0, 105, 0],
    );
  });
});

Deno.test("owners: counts, peaks and heads", async (t) => {
  await t.step("counts and peaks are per owner", () => {
    const pages = new BuddyPageAllocator(64);
    const a = pages.alloc(3, OWNER_A);
    const b = pages.alloc(0, OWNER_B);
    const a2 = pages.alloc(1, OWNER_A);
    assert.equal(pages.pagesOwnedBy(OWNER_A), 10);
    assert.equal(pages.pagesOwnedBy(OWNER_B), 1);
    assert.equal(pages.pagesOwnedBy(99), 0);
    pages.free(a, 3);
    assert.equal(pages.pagesOwnedBy(OWNER_A), 2);
    assert.equal(pages.peakPagesOwnedBy(OWNER_A), 10);
    assert.equal(pages.peakPagesOwnedBy(OWNER_B), 1);
    assert.equal(pages.peakPagesOwnedBy(99), 0);
    pages.resetPeak(OWNER_A);
    assert.equal(pages.peakPagesOwnedBy(OWNER_A), 2);
    pages.free(a2, 1);
    assert.equal(pages.peakPagesOwnedBy(OWNER_A), 2);
    pages.free(b, 0);
    assert.equal(pages.pagesOwnedBy(OWNER_B), 0);
    assert.equal(pages.peakPagesOwnedBy(OWNER_B), 1);
    assert.equal(pages.freeFrameCount, 64);
  });

  await t.step("heads, orders and owners of allocated blocks", () => {
    const pages = new BuddyPageAllocator(16);
    const a = pages.alloc(1, OWNER_A); // 14
    assert.equal(pages.isAllocatedHead(a, OWNER_A), true);
    assert.equal(pages.isAllocatedHead(a, OWNER_B), false);
    assert.equal(pages.isAllocatedHead(a + 1, OWNER_A), false); // inside, not a head
    assert.equal(pages.isAllocatedHead(12, OWNER_A), false); // free
    assert.equal(pages.isAllocatedHead(-1, OWNER_A), false);
    assert.equal(pages.isAllocatedHead(16, OWNER_A), false);
    assert.equal(pages.allocatedOrder(a), 1);
    assert.equal(pages.allocatedOrder(a + 1), -1);
    assert.equal(pages.allocatedOrder(12), -1);
    assert.equal(pages.ownerOf(a), OWNER_A);
    assert.equal(pages.ownerOf(12), -1);
  });

  await t.step("alloc rejects orders and owners out of range and counts nothing", () => {
    const pages = new BuddyPageAllocator(16);
    const before = observe(pages, [OWNER_A]);
    for (const order of [-1, ORDER_LIMIT + 1, 0.5, NaN, Infinity]) {
      assert.throws(() => pages.alloc(order, OWNER_A), RangeError, `order ${order}`);
    }
    for (const owner of [-1, 1.5, NaN, 2 ** 31]) {
      assert.throws(() => pages.alloc(0, owner), RangeError, `owner ${owner}`);
    }
    assert.deepEqual(observe(pages, [OWNER_A]), before);
  });
});

Deno.test("failures: contiguity and exhaustion are counted apart", async (t) => {
  await t.step("plenty of free frames but no order-1 block is a contiguity failure", () => {
    const pages = evenFramesFree();
    assert.equal(pages.freeFrameCount, 8);
    assert.equal(pages.largestFreeOrder(), 0);
    assert.equal(pages.failureCause(1), "contiguity");
    assert.equal(pages.failureCause(3), "contiguity");
    assert.equal(pages.failureCause(0), null);
    assert.equal(pages.alloc(1, OWNER_B), -1);
    assert.equal(pages.alloc(3, OWNER_B), -1);
    const stats = pages.stats();
    assert.equal(stats.failedCalls, 2);
    assert.equal(stats.failedContiguity, 2);
    assert.equal(stats.failedExhaustion, 0);
    assert.deepEqual(stats.failedByOrder, { 1: 1, 3: 1 });
    assert.equal(pages.pagesOwnedBy(OWNER_B), 0);
    assert.equal(pages.freeFrameCount, 8);
    assert.deepEqual(pages.check(), []);
  });

  await t.step("fewer free frames than asked for is an exhaustion failure", () => {
    const pages = evenFramesFree();
    assert.equal(pages.failureCause(4), "exhaustion");
    assert.equal(pages.alloc(4, OWNER_B), -1);
    assert.equal(pages.alloc(0, OWNER_B), 14); // LIFO: the last even frame freed
    const stats = pages.stats();
    assert.equal(stats.failedExhaustion, 1);
    assert.equal(stats.failedContiguity, 0);
    assert.deepEqual(stats.failedByOrder, { 4: 1 });
    assert.equal(stats.allocCalls, 16 + 2);
    assert.equal(stats.freeCalls, 8);
  });

  await t.step("an order above the machine's size is exhaustion, not contiguity", () => {
    const pages = new BuddyPageAllocator(16);
    assert.equal(pages.alloc(5, OWNER_A), -1);
    assert.equal(pages.stats().failedExhaustion, 1);
    const odd = new BuddyPageAllocator(12);
    assert.equal(odd.failureCause(4), "exhaustion");
    assert.equal(odd.alloc(3, OWNER_A), 0);
    assert.equal(odd.failureCause(3), "exhaustion");
  });

  await t.step("orders above maxOrder fail as no such block exists, counted by cause", () => {
    const pages = new BuddyPageAllocator(16);
    assert.equal(pages.alloc(MAX_ORDER + 1, OWNER_A), -1);
    assert.equal(pages.alloc(ORDER_LIMIT, OWNER_A), -1);
    const capped = new BuddyPageAllocator(16, 2); // 16 frames free, no block above order 2
    assert.equal(capped.failureCause(3), "contiguity");
    assert.equal(capped.alloc(3, OWNER_A), -1);
    assert.equal(capped.failureCause(5), "exhaustion");
    assert.equal(capped.alloc(5, OWNER_A), -1);
    assert.deepEqual(pages.stats().failedByOrder, { [MAX_ORDER + 1]: 1, [ORDER_LIMIT]: 1 });
    assert.deepEqual(capped.stats().failedByOrder, { 3: 1, 5: 1 });
    for (const machine of [pages, capped]) {
      assert.equal(machine.freeFrameCount, 16);
      assert.deepEqual(machine.check(), []);
    }
    assert.equal(pages.stats().failedExhaustion, 2);
    assert.equal(capped.stats().failedContiguity, 1);
    assert.equal(capped.stats().failedExhaustion, 1);
  });

  await t.step("an empty machine fails every order with exhaustion", () => {
    const pages = new BuddyPageAllocator(16);
    drainOrder0(pages, OWNER_A);
    assert.equal(pages.largestFreeOrder(), -1);
    assert.equal(pages.stats().largestFreeOrder, -1);
    assert.equal(pages.failureCause(0), "exhaustion");
    assert.deepEqual(pages.stats().failedByOrder, { 0: 1 }); // drainOrder0's last call
  });
});

/** Build the same machine twice: one to hurt with a bad free, one to compare with. */
function twinMachines(build: (pages: BuddyPageAllocator) => void) {
  const make = () => {
    const pages = new BuddyPageAllocator(16);
    build(pages);
    return pages;
  };
  return [make(), make()] as const;
}

/** Assert `bad` throws PageFreeError and leaves `pages` exactly as its untouched twin. */
function assertRejectedFree(
  build: (pages: BuddyPageAllocator) => void,
  frame: number,
  order: number,
  message: RegExp,
): void {
  const [pages, twin] = twinMachines(build);
  const owners = [OWNER_A, OWNER_B];
  const before = observe(pages, owners);
  assert.throws(() => pages.free(frame, order), (e: unknown) => {
    assert.ok(e instanceof PageFreeError, `free(${frame}, ${order}) threw ${e}`);
    assert.match(e.message, message);
    return true;
  });
  assert.deepEqual(observe(pages, owners), before, `free(${frame}, ${order}) changed state`);
  assert.deepEqual(observe(pages, owners), observe(twin, owners));
  // Free-list order is not visible in blocks: hand everything out and compare.
  assert.deepEqual(drainOrder0(pages, OWNER_B), drainOrder0(twin, OWNER_B));
}

Deno.test("rejected frees throw PageFreeError and change nothing", async (t) => {
  const one15 = (pages: BuddyPageAllocator) => assert.equal(pages.alloc(0, OWNER_A), 15);
  const frames15and14 = (pages: BuddyPageAllocator) => {
    assert.equal(pages.alloc(0, OWNER_A), 15);
    assert.equal(pages.alloc(0, OWNER_A), 14);
    assert.equal(pages.alloc(2, OWNER_B), 8);
  };

  await t.step("double free of a block that merged away", () => {
    assertRejectedFree(
      (pages) => {
        one15(pages);
        pages.free(15, 0);
      },
      15,
      0,
      /^Cannot free frame 15 at order 0: /,
    );
  });

  await t.step("double free of a block still on its list", () => {
    assertRejectedFree(
      (pages) => {
        frames15and14(pages);
        pages.free(15, 0);
      },
      15,
      0,
      /already free/,
    );
  });

  await t.step("frames that were never allocated", () => {
    assertRejectedFree(frames15and14, 0, 0, /Cannot free frame 0 at order 0/);
    assertRejectedFree(frames15and14, 0, 3, /already free/);
    assertRejectedFree(frames15and14, 12, 1, /Cannot free frame 12 at order 1/);
  });

  await t.step("an order larger than the block", () => {
    assertRejectedFree(frames15and14, 14, 1, /allocated block of order 0/);
    assertRejectedFree(frames15and14, 8, 3, /Cannot free frame 8 at order 3/);
    assertRejectedFree(one15, 14, 1, /already free/); // 15 allocated, 14 free
  });

  await t.step("misaligned to the order", () => {
    assertRejectedFree(frames15and14, 9, 1, /not aligned/);
    assertRejectedFree(frames15and14, 10, 2, /not aligned/);
    assertRejectedFree(frames15and14, 15, 1, /not aligned/);
  });

  await t.step("out of range", () => {
    const outside: [number, number][] = [[16, 0], [-1, 0], [1.5, 0], [NaN, 0], [2 ** 40, 0]];
    for (const [frame, order] of outside) {
      assertRejectedFree(frames15and14, frame, order, /outside the machine/);
    }
    const badOrders: [number, number][] = [[8, -1], [8, MAX_ORDER + 1], [8, 0.5], [0, NaN]];
    for (const [frame, order] of badOrders) {
      assertRejectedFree(frames15and14, frame, order, /Cannot free frame/);
    }
  });

  await t.step("a rejected free still lets the real free work", () => {
    const pages = new BuddyPageAllocator(16);
    frames15and14(pages);
    assert.throws(() => pages.free(14, 1), PageFreeError);
    pages.free(14, 0);
    pages.free(15, 0);
    pages.free(8, 2);
    assert.deepEqual(blocksOf(pages), [[0, 4, -1]]);
    assert.equal(pages.stats().freeCalls, 3);
  });
});

// -- seeded differential run -----------------------------------------------------

/** The documented policy, written plainly with arrays (list heads first). */
class ReferenceBuddy {
  readonly #lists: number[][];
  readonly #freeOrderOf = new Map<number, number>();
  readonly #maxOrder: number;
  freeFrameCount = 0;

  constructor(frameCount: number, maxOrder: number) {
    this.#maxOrder = maxOrder;
    this.#lists = Array.from({ length: maxOrder + 1 }, () => []);
    for (let frame = 0; frame < frameCount;) {
      let order = maxOrder;
      while (frame % 2 ** order !== 0 || frame + 2 ** order > frameCount) order--;
      this.#push(frame, order);
      frame += 2 ** order;
    }
  }

  alloc(order: number): number {
    let j = order;
    while (j <= this.#maxOrder && this.#lists[j]!.length === 0) j++;
    if (j > this.#maxOrder) return -1;
    let frame = this.#lists[j]!.shift()!;
    this.#freeOrderOf.delete(frame);
    this.freeFrameCount -= 2 ** j;
    while (j > order) {
      j--;
      this.#push(frame, j);
      frame += 2 ** j;
    }
    return frame;
  }

  free(frame: number, order: number): void {
    let head = frame;
    let o = order;
    while (o < this.#maxOrder) {
      const buddy = head ^ 2 ** o;
      if (this.#freeOrderOf.get(buddy) !== o) break;
      const list = this.#lists[o]!;
      list.splice(list.indexOf(buddy), 1);
      this.#freeOrderOf.delete(buddy);
      this.freeFrameCount -= 2 ** o;
      head = Math.min(head, buddy);
      o++;
    }
    this.#push(head, o);
  }

  /** Free blocks in address order. */
  freeBlocks(): Block[] {
    return [...this.#freeOrderOf].sort((x, y) => x[0] - y[0]).map(([f, o]) => [f, o, -1]);
  }

  #push(frame: number, order: number): void {
    this.#lists[order]!.unshift(frame);
    this.#freeOrderOf.set(frame, order);
    this.freeFrameCount += 2 ** order;
  }
}

interface LivePiece {
  frame: number;
  order: number;
  owner: number;
}

/**
 * The pieces that stay allocated when the 2^sub frames at `target` are freed from
 * `piece`: at each level, the half not holding `target`.
 */
function remainingPieces(piece: LivePiece, target: number, sub: number): LivePiece[] {
  const rest: LivePiece[] = [];
  let head = piece.frame;
  for (let o = piece.order - 1; o >= sub; o--) {
    const upper = head + 2 ** o;
    const inUpper = target >= upper;
    rest.push({ frame: inUpper ? head : upper, order: o, owner: piece.owner });
    if (inUpper) head = upper;
  }
  return rest;
}

function runDifferential(seed: number, frameCount: number, maxOrder: number, opCount: number) {
  const prng = new Prng(seed);
  const pages = new BuddyPageAllocator(frameCount, maxOrder);
  const ref = new ReferenceBuddy(frameCount, maxOrder);
  const owners = [1, 2, 3];
  const live: LivePiece[] = [];
  const peak = [0, 0, 0, 0];
  const counts = { allocCalls: 0, freeCalls: 0, contiguity: 0, exhaustion: 0 };
  const failedByOrder: Record<number, number> = {};
  const orderMax = Math.min(maxOrder, 5);

  for (let op = 0; op < opCount; op++) {
    const r = prng.nextFloat();
    let what: string;
    if (live.length === 0 || r < 0.5) {
      let order = 0;
      while (order < orderMax && prng.nextFloat() < 0.4) order++;
      const owner = owners[prng.index(owners.length)]!;
      const expected = ref.alloc(order);
      const freeBefore = pages.freeFrameCount;
      what = `alloc(${order}, ${owner}) expecting ${expected}`;
      assert.equal(pages.alloc(order, owner), expected, `seed=${seed} op=${op} ${what}`);
      counts.allocCalls++;
      if (expected < 0) {
        failedByOrder[order] = (failedByOrder[order] ?? 0) + 1;
        if (freeBefore >= 2 ** order) counts.contiguity++;
        else counts.exhaustion++;
      } else {
        live.push({ frame: expected, order, owner });
        const held = live.filter((p) => p.owner === owner).reduce((s, p) => s + 2 ** p.order, 0);
        peak[owner] = Math.max(peak[owner]!, held);
      }
    } else {
      const index = prng.index(live.length);
      const piece = live[index]!;
      live.splice(index, 1);
      if (piece.order > 0 && r < 0.7) {
        const sub = prng.index(piece.order);
        const target = piece.frame + prng.index(2 ** (piece.order - sub)) * 2 ** sub;
        live.push(...remainingPieces(piece, target, sub));
        what = `free(${target}, ${sub}) inside block ${piece.frame}/${piece.order}`;
        pages.free(target, sub);
        ref.free(target, sub);
      } else {
        what = `free(${piece.frame}, ${piece.order})`;
        pages.free(piece.frame, piece.order);
        ref.free(piece.frame, piece.order);
      }
      counts.freeCalls++;
    }

    const context = `seed=${seed} frames=${frameCount} op=${op} ${what}`;
    assert.deepEqual(pages.check(), [], context);
    const blocks = blocksOf(pages);
    const byFrame = (x: Block, y: Block) => x[0] - y[0];
    assert.deepEqual(blocks.filter((b) => b[2] < 0), ref.freeBlocks(), `${context}: free blocks`);
    assert.deepEqual(
      blocks.filter((b) => b[2] >= 0),
      live.map((p): Block => [p.frame, p.order, p.owner]).sort(byFrame),
      `${context}: allocated blocks`,
    );
    assert.equal(pages.freeFrameCount, ref.freeFrameCount, context);
    for (const owner of owners) {
      const held = live.filter((p) => p.owner === owner).reduce((s, p) => s + 2 ** p.order, 0);
      assert.equal(pages.pagesOwnedBy(owner), held, `${context}: owner ${owner}`);
      assert.equal(pages.peakPagesOwnedBy(owner), peak[owner], `${context}: peak ${owner}`);
    }
    const stats = pages.stats();
    assert.equal(stats.allocCalls, counts.allocCalls, context);
    assert.equal(stats.freeCalls, counts.freeCalls, context);
    assert.equal(stats.failedContiguity, counts.contiguity, context);
    assert.equal(stats.failedExhaustion, counts.exhaustion, context);
    assert.deepEqual(stats.failedByOrder, failedByOrder, context);
    assertTiles(blocks, frameCount, maxOrder, context);
    if (op % 100 === 0) assertBlockHeads(pages, context);
  }
  return counts;
}

/** Blocks are in address order, aligned, within maxOrder and cover every frame once. */
function assertTiles(blocks: readonly Block[], frameCount: number, maxOrder: number, context = "") {
  let next = 0;
  for (const [frame, order] of blocks) {
    assert.equal(frame, next, `${context}: block at ${frame} should start at ${next}`);
    assert.ok(order >= 0 && order <= maxOrder, `${context}: order ${order}`);
    assert.equal(frame % 2 ** order, 0, `${context}: block ${frame} misaligned for ${order}`);
    next = frame + 2 ** order;
  }
  assert.equal(next, frameCount, `${context}: blocks end at ${next}`);
}

Deno.test("seeded random alloc/free sequences match the documented policy", async (t) => {
  const machines: [frameCount: number, maxOrder: number][] = [[1000, MAX_ORDER], [64, MAX_ORDER], [
    100,
    3,
  ]];
  let failures = { contiguity: 0, exhaustion: 0 };
  for (const seed of [1, 2, 3, 0xdeadbeef]) {
    for (const [frameCount, maxOrder] of machines) {
      await t.step(`seed=${seed} frames=${frameCount} maxOrder=${maxOrder}`, () => {
        const counts = runDifferential(seed, frameCount, maxOrder, 1200);
        failures = {
          contiguity: failures.contiguity + counts.contiguity,
          exhaustion: failures.exhaustion + counts.exhaustion,
        };
      });
    }
  }
  await t.step("the runs reached both kinds of failure", () => {
    assert.ok(failures.contiguity > 0, "no contiguity failure was exercised");
    assert.ok(failures.exhaustion > 0, "no exhaustion failure was exercised");
  });
});

/** Assert blockHeadOf agrees with forEachBlock for every frame and rejects outside frames. */
function assertBlockHeads(pages: BuddyPageAllocator, context: string): void {
  for (const [frame, order] of blocksOf(pages)) {
    for (let f = frame; f < frame + 2 ** order; f++) {
      assert.equal(pages.blockHeadOf(f), frame, `${context}: blockHeadOf(${f})`);
    }
  }
  for (const f of [-1, pages.frameCount, 0.5, NaN]) {
    assert.equal(pages.blockHeadOf(f), -1, `${context}: blockHeadOf(${f})`);
  }
}

Deno.test("blockHeadOf finds the block holding a frame", async (t) => {
  await t.step("after a split", () => {
    const pages = new BuddyPageAllocator(16);
    assert.equal(pages.alloc(0, OWNER_A), 15);
    assert.deepEqual(
      [0, 7, 8, 11, 12, 13, 14, 15].map((f) => pages.blockHeadOf(f)),
      [0, 0, 8, 8, 12, 12, 14, 15],
    );
    assertBlockHeads(pages, "16 frames");
  });

  await t.step("after a partial free and on odd machines", () => {
    const pages = new BuddyPageAllocator(13);
    assert.equal(pages.alloc(3, OWNER_A), 0);
    pages.free(5, 0);
    assert.deepEqual([0, 3, 4, 5, 6, 7, 12].map((f) => pages.blockHeadOf(f)), [
      0,
      0,
      4,
      5,
      6,
      6,
      12,
    ]);
    assertBlockHeads(pages, "13 frames");
  });
});

Deno.test("forEachBlock tiles the machine", async (t) => {
  await t.step("fresh and busy machines of several sizes", () => {
    for (const frameCount of [1, 7, 12, 13, 16, 24, 1000, 3072]) {
      const pages = new BuddyPageAllocator(frameCount);
      assertTiles(blocksOf(pages), frameCount, MAX_ORDER, `${frameCount} fresh`);
      const prng = new Prng(frameCount);
      for (let i = 0; i < 50; i++) pages.alloc(prng.index(4), OWNER_A);
      const blocks = blocksOf(pages);
      assertTiles(blocks, frameCount, MAX_ORDER, `${frameCount} busy`);
      const free = blocks.filter((b) => b[2] < 0).reduce((s, b) => s + 2 ** b[1], 0);
      const owned = blocks.filter((b) => b[2] === OWNER_A).reduce((s, b) => s + 2 ** b[1], 0);
      assert.equal(free, pages.freeFrameCount);
      assert.equal(owned, pages.pagesOwnedBy(OWNER_A));
      assert.equal(free + owned, frameCount);
      assertBlockHeads(pages, `${frameCount} busy`);
    }
  });
});
