/**
 * Tests of the `slub` engine (hypervisor/xmalloc/slub.ts) against Linux's rules:
 * kmalloc size classes, cache geometry (the reference a real 6.18 kernel reports,
 * and hand-derived tables for other CPU counts), large kmalloc, freelist order,
 * min_partial, per-CPU partial lists, invalid frees, and seeded random runs with
 * every invariant checked after every operation.
 */

import assert from "node:assert/strict";
import { BuddyPageAllocator } from "../hypervisor/page_allocator.ts";
import { InvalidFreeError, PageSource } from "../hypervisor/xmalloc/engine.ts";
import {
  calculateOrder,
  KMALLOC_CACHE_SIZES,
  kmallocCacheGeometry,
  kmallocCacheIndex,
  SLUB_STEP_KINDS,
  SLUB_STEPS_DEFINITION,
  type SlubCacheState,
  SlubEngine,
  slubEngine,
} from "../hypervisor/xmalloc/slub.ts";
import { addressToFrame, DIRECTMAP_BASE_ADDRESS, PAGE_SIZE_BYTES } from "../src/units.ts";
import { Prng } from "../src/prng.ts";
import reference from "./fixtures/linux-slub/kmalloc-nr_cpu_ids-2.json" with { type: "json" };

const OWNER = 1;

/** The kmalloc classes, written out independently of the engine. */
const CLASSES = [8, 16, 32, 64, 96, 128, 192, 256, 512, 1024, 2048, 4096, 8192];

function expectedClass(size: number): number {
  const found = CLASSES.find((c) => c >= size);
  if (found === undefined) throw new Error(`no class for ${size}`);
  return found;
}

interface Machine {
  pages: BuddyPageAllocator;
  source: PageSource;
  engine: SlubEngine;
}

function machine(cpuCount: number, frames = 4096, maxPages = Infinity, maxOrder?: number): Machine {
  const pages = maxOrder === undefined
    ? new BuddyPageAllocator(frames)
    : new BuddyPageAllocator(frames, maxOrder);
  const source = new PageSource(pages, OWNER, maxPages);
  const engine = new SlubEngine({ pageSource: source, cpuCount });
  return { pages, source, engine };
}

function assertSound(m: Machine): void {
  assert.deepEqual(m.engine.check(), []);
  assert.deepEqual(m.pages.check(), []);
}

function cacheState(engine: SlubEngine, size: number): SlubCacheState {
  const state = engine.inspect()[kmallocCacheIndex(size)];
  if (!state) throw new Error(`no cache for ${size}`);
  return state;
}

/** Allocate `count` objects of `size` on `cpu`, each must succeed. */
function allocMany(engine: SlubEngine, size: number, count: number, cpu = 0): number[] {
  const out: number[] = [];
  for (let i = 0; i < count; i++) {
    const a = engine.allocate(size, 1, cpu);
    assert.notEqual(a, 0, `allocation ${i} of ${size} failed`);
    out.push(a);
  }
  return out;
}

Deno.test("slub: kmalloc size classes", async (t) => {
  await t.step("every size 1..8192 maps to the smallest class at or above it", () => {
    for (let size = 1; size <= 8192; size++) {
      const index = kmallocCacheIndex(size);
      assert.equal(KMALLOC_CACHE_SIZES[index], expectedClass(size), `size ${size}`);
    }
    assert.deepEqual([...KMALLOC_CACHE_SIZES], CLASSES);
  });

  await t.step("sizes above KMALLOC_MAX_CACHE_SIZE have no cache", () => {
    for (const size of [8193, 12288, 16384, 2 ** 20, 2 ** 40]) {
      assert.equal(kmallocCacheIndex(size), -1);
    }
  });

  await t.step("the engine hands out objects of the class size at each boundary", () => {
    const m = machine(2);
    const boundaries = CLASSES.flatMap((c) => [c - 1, c, c + 1]).filter((s) => s >= 1 && s <= 8192);
    for (const size of [1, ...boundaries]) {
      const a = m.engine.allocate(size);
      assert.equal(m.engine.usableSize(a), expectedClass(size), `size ${size}`);
      assert.equal(cacheState(m.engine, expectedClass(size)).objectSizeBytes, expectedClass(size));
    }
    // 65..96 -> 96 and 129..192 -> 192, the two non-power-of-two caches
    assert.equal(m.engine.usableSize(m.engine.allocate(65)), 96);
    assert.equal(m.engine.usableSize(m.engine.allocate(96)), 96);
    assert.equal(m.engine.usableSize(m.engine.allocate(97)), 128);
    assert.equal(m.engine.usableSize(m.engine.allocate(129)), 192);
    assert.equal(m.engine.usableSize(m.engine.allocate(193)), 256);
    assertSound(m);
  });

  await t.step("objects have no header: 64 objects of 64 bytes fill exactly one page", () => {
    const m = machine(1);
    const addresses = allocMany(m.engine, 64, 64);
    assert.equal(m.engine.pagesHeld().poolPages, 1);
    assert.equal(m.engine.stats().liveReservedBytes, 64 * 64);
    assert.equal(addresses[63]! - addresses[0]!, 63 * 64);
    allocMany(m.engine, 64, 1);
    assert.equal(m.engine.pagesHeld().poolPages, 2);
    assertSound(m);
  });
});

Deno.test("slub: cache geometry", async (t) => {
  await t.step("equals what Linux 6.18 reports in sysfs with 2 CPUs (reference JSON)", () => {
    assert.equal(reference.nr_cpu_ids, 2);
    assert.equal(reference.page_size, PAGE_SIZE_BYTES);
    const geometry = kmallocCacheGeometry(2);
    assert.equal(geometry.length, reference.caches.length);
    reference.caches.forEach((ref, i) => {
      const g = geometry[i]!;
      assert.equal(g.name, ref.cache);
      assert.equal(g.objectSizeBytes, ref.object_size, ref.cache);
      assert.equal(g.objectSizeBytes, ref.slab_size, ref.cache);
      assert.equal(g.order, ref.order, `${ref.cache} order`);
      assert.equal(g.objectsPerSlab, ref.objs_per_slab, `${ref.cache} objs_per_slab`);
      assert.equal(g.minPartial, ref.min_partial, `${ref.cache} min_partial`);
      assert.equal(g.cpuPartial, ref.cpu_partial, `${ref.cache} cpu_partial`);
    });
  });

  await t.step("the engine's slabs follow it: objs_per_slab objects per 2^order pages", () => {
    for (const ref of reference.caches) {
      const m = machine(reference.nr_cpu_ids);
      allocMany(m.engine, ref.object_size, ref.objs_per_slab);
      assert.equal(m.engine.pagesHeld().poolPages, 2 ** ref.order, ref.cache);
      assert.equal(cacheState(m.engine, ref.object_size).slabCount, 1, ref.cache);
      allocMany(m.engine, ref.object_size, 1);
      assert.equal(m.engine.pagesHeld().poolPages, 2 * 2 ** ref.order, ref.cache);
      assert.equal(cacheState(m.engine, ref.object_size).slabCount, 2, ref.cache);
      assertSound(m);
    }
  });

  // Derived by hand from mm/slub.c, for the caches 8 .. 8k in order:
  //   min_objects = 4 * (fls(cpus) + 1): 1 CPU -> 8, 2 -> 12, 8 -> 20, 64 -> 32, capped at
  //   the objects of an order-3 slab (8 for 4k, 4 for 8k);
  //   order = get_order(min_objects * size) raised until the waste (PAGE_SIZE << order) %
  //   size is at most 1/16 of the slab (it is already at that order for every kmalloc
  //   size except where noted); e.g. 8 CPUs, 256 B: 20 * 256 = 5120 B -> order 1;
  //   64 CPUs, 192 B: 32 * 192 = 6144 B -> order 1, waste 8192 % 192 = 128 <= 512;
  //   objs = (4096 << order) / size;
  //   cpu_partial_slabs = ceil(2 * cpu_partial / objs) with cpu_partial 120 below 256 B,
  //   52 below 1 KiB, 24 below 4 KiB, 6 from 4 KiB (set_cpu_partial);
  //   min_partial = clamp(ilog2(size) / 2, 5, 10): 6 for 4k and 8k, else 5.
  const MIN_PARTIAL = [5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 6, 6];
  const CPU_PARTIAL = [120, 120, 120, 120, 120, 120, 120, 52, 52, 24, 24, 6, 6];
  const HAND: Record<number, { order: number[]; objs: number[]; cpuPartialSlabs: number[] }> = {
    1: {
      order: [0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3, 3],
      objs: [512, 256, 128, 64, 42, 32, 21, 16, 8, 8, 8, 8, 4],
      cpuPartialSlabs: [1, 1, 2, 4, 6, 8, 12, 7, 13, 6, 6, 2, 3],
    },
    2: {
      order: [0, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3, 3, 3],
      objs: [512, 256, 128, 64, 42, 32, 21, 16, 16, 16, 16, 8, 4],
      cpuPartialSlabs: [1, 1, 2, 4, 6, 8, 12, 7, 7, 3, 3, 2, 3],
    },
    8: {
      order: [0, 0, 0, 0, 0, 0, 0, 1, 2, 3, 3, 3, 3],
      objs: [512, 256, 128, 64, 42, 32, 21, 32, 32, 32, 16, 8, 4],
      cpuPartialSlabs: [1, 1, 2, 4, 6, 8, 12, 4, 4, 2, 3, 2, 3],
    },
    64: {
      order: [0, 0, 0, 0, 0, 0, 1, 1, 2, 3, 3, 3, 3],
      objs: [512, 256, 128, 64, 42, 32, 42, 32, 32, 32, 16, 8, 4],
      cpuPartialSlabs: [1, 1, 2, 4, 6, 8, 6, 4, 4, 2, 3, 2, 3],
    },
  };

  for (const cpus of [1, 2, 8, 64]) {
    await t.step(`calculate_order at ${cpus} CPU(s) matches the hand-derived table`, () => {
      const hand = HAND[cpus]!;
      const geometry = kmallocCacheGeometry(cpus);
      assert.deepEqual(geometry.map((g) => g.order), hand.order);
      assert.deepEqual(geometry.map((g) => g.objectsPerSlab), hand.objs);
      assert.deepEqual(geometry.map((g) => g.cpuPartialSlabs), hand.cpuPartialSlabs);
      assert.deepEqual(geometry.map((g) => g.minPartial), MIN_PARTIAL);
      assert.deepEqual(geometry.map((g) => g.cpuPartial), CPU_PARTIAL);
      // the fallback order s->min = get_order(size): order 1 only for 8k (one object)
      assert.deepEqual(geometry.map((g) => g.minOrder), [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
      assert.equal(geometry[12]!.minObjectsPerSlab, 1);
    });
  }

  await t.step("calculate_order's waste rule and fallback, on sizes kmalloc does not use", () => {
    // 1500 B, 1 CPU: min_objects 8, get_order(12000) = 2; order 2 wastes 16384 % 1500 =
    // 1384 > 16384/16, order 3 wastes 1268 <= 32768/16 -> 3 (at 1/2 waste it would be 2).
    assert.equal(calculateOrder(1500, 1), 3);
    // 700 B, 1 CPU: get_order(5600) = 1, 8192 % 700 = 492 <= 512 -> 1.
    assert.equal(calculateOrder(700, 1), 1);
    // 40000 B: no object fits an order-3 slab -> get_order(40000) = 4.
    assert.equal(calculateOrder(40000, 2), 4);
  });

  await t.step("a CPU count out of range is refused", () => {
    assert.throws(() => kmallocCacheGeometry(0), RangeError);
    assert.throws(() => machine(0), RangeError);
  });
});

Deno.test("slub: large kmalloc goes to the page allocator at get_order(size)", async (t) => {
  await t.step("8193 -> 4 pages, 16384 -> 4 pages, 16385 -> 8 pages, no tail trim", () => {
    const m = machine(1);
    const cases: [number, number][] = [[8193, 4], [16384, 4], [16385, 8], [40000, 16]];
    const addresses: number[] = [];
    let whole = 0;
    for (const [size, pages] of cases) {
      const a = m.engine.allocate(size);
      assert.notEqual(a, 0);
      assert.equal(m.engine.lastSteps, 0);
      assert.equal(
        (a - DIRECTMAP_BASE_ADDRESS) % (pages * PAGE_SIZE_BYTES),
        0,
        "naturally aligned",
      );
      assert.equal(m.engine.usableSize(a), pages * PAGE_SIZE_BYTES);
      assert.equal(m.pages.allocatedOrder(addressToFrame(a)), Math.log2(pages));
      whole += pages;
      assert.deepEqual(m.engine.pagesHeld(), { poolPages: 0, wholePages: whole, metaPages: 0 });
      addresses.push(a);
    }
    assert.equal(m.source.heldPages, whole);
    assertSound(m);
    for (const a of addresses) {
      m.engine.free(a);
      assert.equal(m.engine.lastSteps, 0);
      assertSound(m);
    }
    assert.deepEqual(m.engine.pagesHeld(), { poolPages: 0, wholePages: 0, metaPages: 0 });
    assert.equal(m.pages.freeFrameCount, m.pages.frameCount);
  });

  await t.step("8192 still comes from kmalloc-8k (order-3 slab of 4 objects)", () => {
    const m = machine(2);
    const a = m.engine.allocate(8192);
    assert.equal(m.engine.usableSize(a), 8192);
    assert.deepEqual(m.engine.pagesHeld(), { poolPages: 8, wholePages: 0, metaPages: 0 });
  });
});

Deno.test("slub: freelists and steps", async (t) => {
  await t.step("a new slab hands out ascending addresses, frees are LIFO", () => {
    const m = machine(1);
    const a = allocMany(m.engine, 64, 6);
    for (let i = 1; i < 6; i++) assert.equal(a[i]! - a[i - 1]!, 64);
    assert.equal((a[0]! - DIRECTMAP_BASE_ADDRESS) % PAGE_SIZE_BYTES, 0, "object 0 at offset 0");
    m.engine.free(a[1]!);
    m.engine.free(a[3]!);
    assert.equal(m.engine.allocate(64), a[3]);
    assert.equal(m.engine.allocate(64), a[1]);
    assert.equal(m.engine.allocate(64), a[5]! + 64);
    assertSound(m);
  });

  await t.step("steps: new slab 2, fast alloc 1, fast free 1, totals add up", () => {
    const m = machine(1);
    let sum = 0;
    const a = m.engine.allocate(32);
    assert.equal(m.engine.lastSteps, 2); // newSlab + freelistPop
    sum += m.engine.lastSteps;
    const b = m.engine.allocate(32);
    assert.equal(m.engine.lastSteps, 1);
    sum += m.engine.lastSteps;
    m.engine.free(a);
    assert.equal(m.engine.lastSteps, 1);
    sum += m.engine.lastSteps;
    m.engine.free(b);
    sum += m.engine.lastSteps;
    const totals = m.engine.stats().stepTotals;
    assert.deepEqual(Object.keys(totals), [...SLUB_STEP_KINDS]);
    assert.equal(totals.newSlab, 1);
    assert.equal(totals.freelistPop, 2);
    assert.equal(totals.freelistPush, 2);
    assert.equal(Object.values(totals).reduce((x, y) => x + y, 0), sum);
  });

  await t.step("the descriptor documents the step definition", () => {
    assert.equal(slubEngine.name, "slub");
    assert.equal(slubEngine.parameters.steps, SLUB_STEPS_DEFINITION);
    assert.match(slubEngine.modelledOn, /mm\/slub\.c/);
    const engine = slubEngine.create({
      pageSource: new PageSource(new BuddyPageAllocator(64), OWNER),
      cpuCount: 1,
    });
    assert.equal(engine.name, "slub");
  });
});

Deno.test("slub: min_partial keeps empty slabs on the node partial list", async (t) => {
  // kmalloc-64 at 1 CPU: 64 objects per order-0 slab, cpu_partial_slabs 4, min_partial 5.
  await t.step("__slab_free discards an empty node partial slab once nr_partial >= 5", () => {
    const m = machine(1);
    const a = allocMany(m.engine, 64, 12 * 64); // slabs 0..10 full, slab 11 the cpu slab
    const slab = (k: number) => a.slice(k * 64, k * 64 + 64);
    // One free in each full slab puts it on CPU 0's partial list; the put that finds 4
    // there drains them to the node first: slabs 3,2,1,0 at the 5th put, 7,6,5,4 at the
    // 9th; 10,9,8 stay on the CPU.
    for (let k = 0; k <= 10; k++) {
      m.engine.free(slab(k)[0]!);
      if (k === 4 || k === 8) assert.equal(m.engine.lastSteps, 1 + 1 + 4); // push, put, 4 adds
      assertSound(m);
    }
    let s = cacheState(m.engine, 64);
    assert.equal(s.nodePartialSlabs, 8);
    assert.equal(s.cpus[0]!.partialSlabs, 3);
    assert.equal(s.fullSlabs, 0);
    assert.equal(s.slabCount, 12);
    // Empty slabs 0..7 one by one: a slab whose last object goes is discarded while
    // nr_partial (itself included) >= 5: slabs 0,1,2,3 go (8 -> 4), 4..7 stay.
    for (let k = 0; k <= 7; k++) {
      const objects = slab(k);
      for (let i = 1; i < 64; i++) m.engine.free(objects[i]!);
      const frame = addressToFrame(objects[0]!);
      assert.equal(m.pages.isAllocatedHead(frame, OWNER), k >= 4, `slab ${k}`);
      assert.equal(m.engine.lastSteps, k < 4 ? 3 : 1); // push (+ remove_partial + discard)
      assertSound(m);
    }
    s = cacheState(m.engine, 64);
    assert.equal(s.nodePartialSlabs, 4);
    assert.equal(s.nodePartialEmptySlabs, 4);
    assert.equal(s.slabCount, 8);
    assert.equal(m.engine.pagesHeld().poolPages, 8);
  });

  await t.step("__put_partials discards empty cpu partial slabs once nr_partial >= 5", () => {
    const m = machine(1);
    const a = allocMany(m.engine, 64, 15 * 64); // slabs 0..13 full, 14 the cpu slab
    const slab = (k: number) => a.slice(k * 64, k * 64 + 64);
    for (let k = 0; k <= 4; k++) m.engine.free(slab(k)[0]!); // 3,2,1,0 to node; CPU holds 4
    // Slabs 5, 6, 7 go on the CPU's partial list and empty there (a cpu partial slab
    // stays on its list when it empties).
    for (let k = 5; k <= 7; k++) for (const x of slab(k)) m.engine.free(x);
    let s = cacheState(m.engine, 64);
    assert.equal(s.nodePartialSlabs, 4);
    assert.equal(s.cpus[0]!.partialSlabs, 4);
    assert.equal(s.slabCount, 15);
    // The next put drains 7,6,5,4: 7 is added (nr_partial 4 < 5 -> 5), 6 and 5 are
    // discarded (nr_partial >= 5), 4 is added (it is not empty).
    m.engine.free(slab(8)[0]!);
    assert.equal(m.engine.lastSteps, 1 + 1 + 2 + 2); // push, put, 2 adds, 2 discards
    s = cacheState(m.engine, 64);
    assert.equal(s.nodePartialSlabs, 6);
    assert.equal(s.nodePartialEmptySlabs, 1);
    assert.equal(s.cpus[0]!.partialSlabs, 1);
    assert.equal(s.slabCount, 13);
    assert.equal(m.engine.pagesHeld().poolPages, 13);
    for (const k of [5, 6]) {
      assert.equal(m.pages.isAllocatedHead(addressToFrame(slab(k)[0]!), OWNER), false);
    }
    assert.equal(m.pages.isAllocatedHead(addressToFrame(slab(7)[0]!), OWNER), true);
    assertSound(m);
  });
});

Deno.test("slub: per-CPU slabs and partial lists with 2 CPUs", async (t) => {
  await t.step("a full slab freed on CPU 1 goes on CPU 1's partial list, not CPU 0's", () => {
    const m = machine(2);
    const a = allocMany(m.engine, 64, 128, 0); // slab 0 full, slab 1 CPU 0's (exhausted)
    const victim = a[10]!;
    m.engine.free(victim, 1);
    assert.equal(m.engine.lastSteps, 2); // push + cpuPartialPut
    let s = cacheState(m.engine, 64);
    assert.equal(s.cpus[1]!.partialSlabs, 1);
    assert.equal(s.cpus[0]!.partialSlabs, 0);
    assertSound(m);
    // CPU 0 does not see it: its next object comes from a new slab.
    const fromCpu0 = m.engine.allocate(64, 1, 0);
    assert.notEqual(addressToFrame(fromCpu0), addressToFrame(victim));
    assert.notEqual(addressToFrame(fromCpu0), addressToFrame(a[127]!));
    // CPU 1 takes the slab off its partial list and gets the freed object back.
    assert.equal(m.engine.allocate(64, 1, 1), victim);
    assert.equal(m.engine.lastSteps, 2); // cpuPartialTake + freelistPop
    s = cacheState(m.engine, 64);
    assert.equal(s.cpus[1]!.slabFrame, addressToFrame(victim));
    assert.equal(s.cpus[1]!.partialSlabs, 0);
    assertSound(m);
  });

  await t.step("a free into another CPU's cpu slab goes to slab->freelist, refilled later", () => {
    const m = machine(2);
    const a = allocMany(m.engine, 32, 2, 0); // kmalloc-32: 128 objects per slab
    m.engine.free(a[0]!, 1); // remote free: CPU 0's frozen slab, no list work
    assert.equal(m.engine.lastSteps, 1);
    assert.equal(cacheState(m.engine, 32).cpus[1]!.partialSlabs, 0);
    assert.equal(cacheState(m.engine, 32).cpus[0]!.cpuFreelistObjects, 126);
    assertSound(m);
    const rest = allocMany(m.engine, 32, 126, 0);
    assert.equal(rest[125]! - a[0]!, 127 * 32, "c->freelist used first");
    assert.equal(m.engine.allocate(32, 1, 0), a[0]);
    assert.equal(m.engine.lastSteps, 2); // freelistRefill + freelistPop
    assert.equal(m.engine.stats().stepTotals.freelistRefill, 1);
    assertSound(m);
  });

  await t.step("get_partial_node moves up to cpu_partial_slabs/2 + 1 more slabs to the CPU", () => {
    // kmalloc-64 at 2 CPUs: cpu_partial_slabs 4. Build node partial 3,2,1,0,7,6,5,4 on
    // CPU 0 as in the min_partial test, then allocate on CPU 1, which has nothing.
    const m = machine(2);
    const a = allocMany(m.engine, 64, 12 * 64, 0);
    for (let k = 0; k <= 10; k++) m.engine.free(a[k * 64]!, 0);
    assert.equal(cacheState(m.engine, 64).nodePartialSlabs, 8);
    // Slab 3 (the list head) becomes CPU 1's slab; 2, 1, 0 go to its partial list:
    // the third put makes partial_slabs 3 > 4 / 2, which stops the walk.
    assert.equal(m.engine.allocate(64, 1, 1), a[3 * 64]);
    assert.equal(m.engine.lastSteps, 4 + 3 + 1); // 4 node takes, 3 puts, 1 pop
    const s = cacheState(m.engine, 64);
    assert.equal(s.nodePartialSlabs, 4);
    assert.equal(s.cpus[1]!.partialSlabs, 3);
    assert.equal(s.cpus[1]!.slabFrame, addressToFrame(a[3 * 64]!));
    assert.equal(s.cpus[0]!.partialSlabs, 3);
    assertSound(m);
    // put_cpu_partial() pushes at the head, so CPU 1's list runs 0, 1, 2; each slab
    // has one free object.
    for (const k of [0, 1, 2]) assert.equal(m.engine.allocate(64, 1, 1), a[k * 64]);
    assert.equal(cacheState(m.engine, 64).cpus[1]!.partialSlabs, 0);
    assertSound(m);
  });

  await t.step("a CPU out of range is refused", () => {
    const m = machine(2);
    assert.throws(() => m.engine.allocate(8, 1, 2), RangeError);
    const a = m.engine.allocate(8, 1, 1);
    assert.throws(() => m.engine.free(a, -1), RangeError);
    assert.equal(m.engine.stats().liveBlockCount, 1);
  });
});

Deno.test("slub: invalid frees are rejected and change nothing", async (t) => {
  const m = machine(1, 256);
  const small = allocMany(m.engine, 64, 3);
  const k96 = m.engine.allocate(96);
  const freed = m.engine.allocate(32);
  m.engine.free(freed);
  const large = m.engine.allocate(10000); // 4 pages
  const gone = m.engine.allocate(9000);
  m.engine.free(gone);
  let freeFrame = -1;
  m.pages.forEachBlock((frame, _order, owner) => {
    if (owner === -1 && freeFrame < 0) freeFrame = frame;
  });
  assert.ok(freeFrame >= 0);
  const snapshot = () =>
    JSON.stringify({
      stats: m.engine.stats(),
      caches: m.engine.inspect(),
      pages: m.pages.stats(),
      held: m.engine.pagesHeld(),
    });
  const before = snapshot();
  const frameBase = (a: number) => a - ((a - DIRECTMAP_BASE_ADDRESS) % PAGE_SIZE_BYTES);
  const cases: [string, number, string][] = [
    ["not an integer", small[0]! + 0.5, "unknown-address"],
    ["below the machine", DIRECTMAP_BASE_ADDRESS - 8, "unknown-address"],
    ["beyond the machine", DIRECTMAP_BASE_ADDRESS + 256 * PAGE_SIZE_BYTES, "unknown-address"],
    ["a free page", DIRECTMAP_BASE_ADDRESS + freeFrame * PAGE_SIZE_BYTES, "unknown-address"],
    ["inside a 64-byte object", small[1]! + 1, "interior-pointer"],
    ["the last byte of an object", small[1]! + 63, "interior-pointer"],
    ["the unused tail of a kmalloc-96 slab", frameBase(k96) + 42 * 96, "unknown-address"],
    ["an object already freed", freed, "double-free"],
    ["an object never handed out", small[0]! + 10 * 64, "double-free"],
    ["the second page of a large block", large + PAGE_SIZE_BYTES, "interior-pointer"],
    ["8 bytes into a large block", large + 8, "interior-pointer"],
    ["a large block already freed", gone, "unknown-address"],
  ];
  await t.step("null: free(0) does nothing, usableSize(0) is an unknown address", () => {
    m.engine.free(0);
    assert.equal(m.engine.lastSteps, 0);
    assert.throws(() => m.engine.usableSize(0), InvalidFreeError);
    assert.equal(snapshot(), before);
  });
  for (const [what, address, reason] of cases) {
    await t.step(`${what}: ${reason}`, () => {
      for (const call of [() => m.engine.free(address), () => m.engine.usableSize(address)]) {
        assert.throws(call, (e: unknown) => {
          assert.ok(e instanceof InvalidFreeError, `${what}: ${e}`);
          assert.equal(e.reason, reason, `${what}: ${e.message}`);
          assert.equal(e.address, address);
          return true;
        });
      }
      assert.throws(() => m.engine.reallocate(address, 100), InvalidFreeError);
      assert.equal(snapshot(), before);
      assertSound(m);
    });
  }

  await t.step("the same pool still works afterwards", () => {
    for (const a of [...small, k96, large]) m.engine.free(a);
    assert.equal(m.engine.stats().liveBlockCount, 0);
    assertSound(m);
  });
});

Deno.test("slub: reallocate is krealloc", async (t) => {
  await t.step("in place within the object's class, moves when it outgrows it", () => {
    const m = machine(1);
    const a = m.engine.allocate(50);
    assert.equal(m.engine.reallocate(a, 64), a);
    assert.equal(m.engine.lastSteps, 0);
    assert.equal(m.engine.reallocate(a, 1), a, "never shrinks to a smaller class");
    const b = m.engine.reallocate(a, 65);
    assert.notEqual(b, a);
    assert.equal(m.engine.usableSize(b), 96);
    assert.equal(m.engine.lastSteps, 2 + 1); // new kmalloc-96 slab + pop, then the free
    assert.throws(() => m.engine.free(a), InvalidFreeError);
    const stats = m.engine.stats();
    assert.equal(stats.allocCount, 2);
    assert.equal(stats.freeCount, 1);
    assert.equal(stats.liveBlockCount, 1);
    assertSound(m);
  });

  await t.step("large blocks: in place within their pages", () => {
    const m = machine(1);
    const c = m.engine.allocate(9000);
    assert.equal(m.engine.reallocate(c, 16384), c);
    const d = m.engine.reallocate(c, 16385);
    assert.notEqual(d, c);
    assert.equal(m.engine.pagesHeld().wholePages, 8);
    const e = m.engine.reallocate(d, 100); // krealloc keeps a block that still fits
    assert.equal(e, d);
    assertSound(m);
  });

  await t.step("an alignment the address misses moves the block", () => {
    const m = machine(1);
    const x = m.engine.allocate(96);
    m.engine.allocate(96);
    const y = m.engine.allocate(96); // object 2: offset 192, not 4096-aligned
    const z = m.engine.reallocate(y, 10, 4096);
    assert.notEqual(z, y);
    assert.equal((z - DIRECTMAP_BASE_ADDRESS) % 4096, 0);
    assert.equal(m.engine.usableSize(z), 4096);
    assert.equal(m.engine.reallocate(x, 10, 32), x, "offset 0 is aligned");
    assertSound(m);
  });
});

Deno.test("slub: alignment picks a cache whose objects are aligned", () => {
  const m = machine(1);
  const cases: [number, number, number][] = [
    [70, 32, 96], // kmalloc-96 objects are 32-aligned
    [70, 64, 128],
    [130, 64, 192], // kmalloc-192 objects are 64-aligned
    [130, 128, 256],
    [1, 8192, 8192],
    [1, 16384, 16384], // large: order 2
  ];
  for (const [size, align, usable] of cases) {
    for (let i = 0; i < 5; i++) {
      const a = m.engine.allocate(size, align);
      assert.equal((a - DIRECTMAP_BASE_ADDRESS) % align, 0, `${size}/${align}`);
      assert.equal(m.engine.usableSize(a), usable, `${size}/${align}`);
    }
  }
  assertSound(m);
});

Deno.test("slub: page failures, order fallback and quota", async (t) => {
  /** A 16-frame machine where only single frames are free (odd frames held by owner 2). */
  function fragmented(): Machine {
    const m = machine(1, 16);
    const frames = Array.from({ length: 16 }, () => m.pages.alloc(0, 2));
    for (const f of frames) if (f % 2 === 0) m.pages.free(f, 0);
    assert.equal(m.pages.largestFreeOrder(), 0);
    return m;
  }

  await t.step("allocate_slab falls back to s->min when the slab order is not available", () => {
    const m = fragmented();
    const a = m.engine.allocate(2048); // kmalloc-2k: order 3 fails, get_order(2048) = 0
    assert.notEqual(a, 0);
    assert.equal(m.engine.pagesHeld().poolPages, 1);
    assert.equal(m.engine.stats().orderFallbackCount, 1);
    m.engine.allocate(2048); // second object of the 2-object fallback slab
    assert.equal(m.engine.pagesHeld().poolPages, 1);
    m.engine.allocate(2048);
    assert.equal(m.engine.pagesHeld().poolPages, 2);
    assert.equal(m.engine.stats().orderFallbackCount, 2);
    assert.ok(m.pages.stats().failedContiguity >= 2);
    assertSound(m);
  });

  await t.step("a failed large kmalloc returns 0 with the page allocator's cause", () => {
    const m = fragmented();
    assert.equal(m.engine.allocate(8193), 0); // 4 contiguous pages: none, 8 free
    assert.equal(m.engine.lastFailureCause, "contiguity");
    assert.equal(m.engine.stats().failedAllocCount, 1);
    // kmalloc-4k falls back to single pages, one object each, until none is left
    const got = [];
    for (let i = 0; i < 9; i++) got.push(m.engine.allocate(4096));
    assert.equal(got.filter((x) => x !== 0).length, 8);
    assert.equal(got[8], 0);
    assert.equal(m.engine.lastFailureCause, "exhaustion");
    assert.equal(m.engine.allocate(8), 0);
    m.engine.free(got[0]!);
    assert.notEqual(m.engine.allocate(4096), 0, "the freed object is reused");
    assert.equal(m.engine.lastFailureCause, null);
    assertSound(m);
  });

  await t.step("the pool's page quota fails with 'quota'", () => {
    const m = machine(1, 64, 2);
    assert.equal(m.engine.allocate(8193), 0);
    assert.equal(m.engine.lastFailureCause, "quota");
    assert.notEqual(m.engine.allocate(64), 0); // 1 page
    // kmalloc-1k: order 1 would make 3 pages; the order-0 fallback makes exactly 2
    assert.notEqual(m.engine.allocate(1024), 0);
    assert.equal(m.engine.stats().orderFallbackCount, 1);
    assert.equal(m.engine.allocate(2048), 0); // order 2 and order 0 both over quota
    assert.equal(m.engine.lastFailureCause, "quota");
    assert.equal(m.source.heldPages, 2);
    assertSound(m);
  });

  await t.step("orders beyond the page allocator's largest fail or fall back cleanly", () => {
    const m = machine(1, 64, Infinity, 2);
    assert.equal(m.engine.allocate(2 ** 20), 0); // order 8 > max order 2: no such block
    assert.equal(m.engine.lastFailureCause, "unservable");
    const a = m.engine.allocate(4096); // kmalloc-4k's order-3 slab is impossible: order 0
    assert.notEqual(a, 0);
    assert.equal(m.engine.pagesHeld().poolPages, 1);
    assertSound(m);
  });
});

Deno.test("slub: destroy returns every page", () => {
  const m = machine(2, 1024);
  const rng = new Prng(5);
  for (let i = 0; i < 300; i++) {
    m.engine.allocate(1 + rng.index(20000), 1, rng.index(2));
  }
  assert.ok(m.engine.pagesHeld().poolPages > 0 && m.engine.pagesHeld().wholePages > 0);
  m.engine.destroy();
  assert.deepEqual(m.engine.pagesHeld(), { poolPages: 0, wholePages: 0, metaPages: 0 });
  assert.equal(m.pages.freeFrameCount, m.pages.frameCount);
  assert.equal(m.engine.stats().liveBlockCount, 0);
  assertSound(m);
});

/** One seeded run: random kmalloc/kfree/krealloc on random CPUs, everything checked each op. */
function randomRun(seed: number, cpuCount: number, ops: number): string {
  const m = machine(cpuCount, 8192);
  const rng = new Prng(seed);
  const live = new Map<number, number>(); // address -> requested size
  const order: number[] = [];
  let stepSum = 0;
  const usableOf = (size: number) =>
    size <= 8192 ? expectedClass(size) : PAGE_SIZE_BYTES * 2 ** Math.ceil(Math.log2(size / 4096));
  // Two hot sizes fill whole slabs, so slabs go full, partial, empty and back.
  const hot = [CLASSES[rng.index(7)]!, CLASSES[7 + rng.index(5)]!];
  const pickSize = () => {
    const r = rng.nextFloat();
    if (r < 0.55) return hot[rng.index(2)]! - rng.index(8);
    if (r < 0.7) return 1 + rng.index(256);
    if (r < 0.8) return 257 + rng.index(8192 - 256);
    if (r < 0.93) {
      const c = CLASSES[rng.index(CLASSES.length)]!;
      return Math.max(1, c - 1 + rng.index(3));
    }
    return 8193 + rng.index(40000);
  };
  const noOverlap = () => {
    const spans = [...live.keys()].map((a) => [a, a + m.engine.usableSize(a)] as const);
    spans.sort((x, y) => x[0] - y[0]);
    for (let i = 1; i < spans.length; i++) {
      assert.ok(spans[i]![0] >= spans[i - 1]![1], `blocks overlap at seed ${seed}`);
    }
  };
  for (let op = 0; op < ops; op++) {
    const cpu = rng.index(cpuCount);
    const r = rng.nextFloat();
    const freeShare = Math.floor(op / 1500) % 2 === 0 ? 0.25 : 0.7; // grow, then shrink
    if (live.size > 0 && r < freeShare) {
      const i = rng.index(order.length);
      const address = order[i]!;
      order[i] = order[order.length - 1]!;
      order.pop();
      live.delete(address);
      m.engine.free(address, cpu);
    } else if (live.size > 0 && r < freeShare + 0.05) {
      const i = rng.index(order.length);
      const address = order[i]!;
      const size = pickSize();
      const moved = m.engine.reallocate(address, size, 1, cpu);
      if (moved !== 0) {
        live.delete(address);
        assert.ok(!live.has(moved), "realloc handed out a live block");
        live.set(moved, size);
        order[i] = moved;
        assert.ok(m.engine.usableSize(moved) >= size);
      }
    } else {
      const size = pickSize();
      const address = m.engine.allocate(size, 1, cpu);
      if (address === 0) {
        assert.notEqual(m.engine.lastFailureCause, null);
      } else {
        assert.ok(!live.has(address), `seed ${seed} op ${op}: a live block handed out twice`);
        assert.equal(m.engine.usableSize(address), usableOf(size), `size ${size}`);
        live.set(address, size);
        order.push(address);
      }
    }
    stepSum += m.engine.lastSteps;
    const problems = [...m.engine.check(), ...m.pages.check()];
    assert.deepEqual(problems, [], `seed ${seed} op ${op}`);
    assert.equal(m.engine.stats().liveBlockCount, live.size);
    if (op % 250 === 0) noOverlap();
  }
  noOverlap();
  const totals = m.engine.stats().stepTotals;
  assert.equal(Object.values(totals).reduce((x, y) => x + y, 0), stepSum);
  for (const kind of SLUB_STEP_KINDS) {
    if (kind !== "freelistRefill" || cpuCount > 1) assert.ok(totals[kind]! > 0, `no ${kind} step`);
  }
  for (const address of order) m.engine.free(address, rng.index(cpuCount));
  assertSound(m);
  assert.equal(m.engine.stats().liveBlockCount, 0);
  assert.equal(m.engine.pagesHeld().wholePages, 0);
  const summary = JSON.stringify(m.engine.stats());
  m.engine.destroy();
  assert.equal(m.pages.freeFrameCount, m.pages.frameCount);
  assertSound(m);
  return summary;
}

Deno.test("slub: seeded random runs keep every invariant", async (t) => {
  for (const [seed, cpus] of [[11, 1], [22, 2], [33, 2], [44, 4]] as const) {
    await t.step(`seed ${seed}, ${cpus} CPU(s)`, () => {
      const first = randomRun(seed, cpus, 6000);
      assert.equal(randomRun(seed, cpus, 6000), first, "same seed, same result");
    });
  }
});

// -- shrink(): kmem_cache_shrink() -------------------------------------------------------

/** Sum of every kind of step since the engine was created. */
function stepTotalsOf(engine: SlubEngine): Record<string, number> {
  return { ...engine.stats().stepTotals };
}

/** Steps by kind between two `stepTotalsOf` snapshots. */
function stepDelta(
  before: Record<string, number>,
  after: Record<string, number>,
): Record<string, number> {
  return Object.fromEntries(SLUB_STEP_KINDS.map((k) => [k, after[k]! - before[k]!]));
}

/** Every live address answers usableSize with at least its size, and no two overlap. */
function assertLiveValid(engine: SlubEngine, live: Map<number, number>, label: string): void {
  const spans = [...live].map(([a, size]) => {
    const usable = engine.usableSize(a);
    assert.ok(usable >= size, `${label}: block 0x${a.toString(16)} shrank to ${usable}`);
    return [a, a + usable] as const;
  });
  spans.sort((x, y) => x[0] - y[0]);
  for (let i = 1; i < spans.length; i++) {
    assert.ok(spans[i]![0] >= spans[i - 1]![1], `${label}: blocks overlap`);
  }
}

/**
 * Random kmalloc/kfree on random CPUs (grow, then shrink phases), checked each op;
 * with `shrinkEvery`, shrink() every that many ops and check the live blocks survive.
 * Returns the live blocks (address -> requested size).
 */
function shrinkRun(
  m: Machine,
  seed: number,
  ops: number,
  shrinkEvery = 0,
): Map<number, number> {
  const rng = new Prng(seed);
  const cpus = m.engine.cpuCount;
  const live = new Map<number, number>();
  const order: number[] = [];
  const hot = CLASSES[rng.index(CLASSES.length)]!;
  for (let op = 0; op < ops; op++) {
    const cpu = rng.index(cpus);
    const freeShare = Math.floor(op / 700) % 2 === 0 ? 0.3 : 0.75;
    if (order.length > 0 && rng.nextFloat() < freeShare) {
      const i = rng.index(order.length);
      const address = order[i]!;
      order[i] = order[order.length - 1]!;
      order.pop();
      live.delete(address);
      m.engine.free(address, cpu);
    } else {
      const r = rng.nextFloat();
      const size = r < 0.5
        ? hot - rng.index(4)
        : r < 0.95
        ? 1 + rng.index(8192)
        : 8193 + rng.index(20000);
      const address = m.engine.allocate(size, 1, cpu);
      assert.notEqual(address, 0, `seed ${seed} op ${op}: allocate(${size}) failed`);
      assert.ok(!live.has(address), `seed ${seed} op ${op}: a live block handed out twice`);
      live.set(address, size);
      order.push(address);
    }
    if (shrinkEvery > 0 && op % shrinkEvery === shrinkEvery - 1) {
      const before = stepTotalsOf(m.engine);
      m.engine.shrink();
      const delta = stepDelta(before, stepTotalsOf(m.engine));
      assert.equal(Object.values(delta).reduce((x, y) => x + y, 0), m.engine.lastSteps);
      assert.equal(delta.freelistPop, 0, "a shrink allocates nothing");
      assert.equal(delta.newSlab, 0, "a shrink builds no slab");
      for (const state of m.engine.inspect()) {
        assert.equal(state.nodePartialEmptySlabs, 0, `${state.name}: empty slab kept`);
        for (const c of state.cpus) {
          assert.deepEqual(c, { slabFrame: -1, cpuFreelistObjects: 0, partialSlabs: 0 });
        }
      }
      assertLiveValid(m.engine, live, `seed ${seed} after shrink at op ${op}`);
    }
    assert.deepEqual([...m.engine.check(), ...m.pages.check()], [], `seed ${seed} op ${op}`);
    assert.equal(m.engine.stats().liveBlockCount, live.size);
  }
  return live;
}

Deno.test("slub: shrink() is kmem_cache_shrink()", async (t) => {
  for (const [seed, cpus] of [[101, 1], [202, 2], [303, 4]] as const) {
    await t.step(`seed ${seed}, ${cpus} CPU(s): after freeing everything, 0 pages`, () => {
      const m = machine(cpus, 8192);
      const live = shrinkRun(m, seed, 3000);
      for (const address of live.keys()) m.engine.free(address, (address >> 6) % cpus);
      assertSound(m);
      assert.equal(m.engine.stats().liveBlockCount, 0);
      const held = m.engine.pagesHeld();
      assert.equal(held.wholePages, 0);
      assert.ok(held.poolPages > 0, "SLUB keeps empty slabs cached until a shrink");
      const slabs = m.engine.stats().slabCount;
      const before = stepTotalsOf(m.engine);
      m.engine.shrink();
      const delta = stepDelta(before, stepTotalsOf(m.engine));
      assert.deepEqual(m.engine.pagesHeld(), { poolPages: 0, wholePages: 0, metaPages: 0 });
      assert.equal(m.source.heldPages, 0);
      assert.equal(m.pages.freeFrameCount, m.pages.frameCount);
      assert.equal(m.engine.stats().slabCount, 0);
      assertSound(m);
      // Every slab was discarded exactly once, and lastSteps is what the kinds add up to.
      assert.equal(delta.slabDiscard, slabs);
      assert.deepEqual([delta.freelistPop, delta.freelistPush, delta.newSlab], [0, 0, 0]);
      assert.equal(Object.values(delta).reduce((x, y) => x + y, 0), m.engine.lastSteps);
      for (const state of m.engine.inspect()) {
        assert.equal(state.slabCount, 0, state.name);
        assert.equal(state.nodePartialSlabs, 0, state.name);
      }
      // A second shrink finds nothing; the engine still serves and frees.
      m.engine.shrink();
      assert.equal(m.engine.lastSteps, 0);
      const a = m.engine.allocate(100, 1, cpus - 1);
      assert.equal(m.engine.usableSize(a), 128);
      m.engine.free(a, 0);
      assertSound(m);
    });
  }

  await t.step("shrinks during a run keep every live block valid and usable", () => {
    const m = machine(2, 8192);
    const live = shrinkRun(m, 404, 3000, 250);
    assert.ok(live.size > 0);
    assertLiveValid(m.engine, live, "end of run");
    for (const address of live.keys()) m.engine.free(address, 1);
    m.engine.shrink();
    assert.deepEqual(m.engine.pagesHeld(), { poolPages: 0, wholePages: 0, metaPages: 0 });
    assertSound(m);
  });

  await t.step("with live objects on 2 CPUs: lists as Linux leaves them", () => {
    // kmalloc-64 at 2 CPUs: 64 objects per order-0 slab, cpu_partial_slabs 4,
    // min_partial 5. Slab k of CPU 0's allocations is S<k>.
    const m = machine(2);
    const a = allocMany(m.engine, 64, 12 * 64 + 10, 0); // S0..S11 full, S12 CPU 0's (10 used)
    const b = allocMany(m.engine, 64, 64 + 5, 1); // S13 full, S14 CPU 1's (5 used)
    const slab = (k: number) => a.slice(k * 64, k * 64 + 64);
    const frameOf = (address: number) => addressToFrame(address);
    const s12 = frameOf(a[12 * 64]!);
    const s13 = frameOf(b[0]!);
    const s14 = frameOf(b[64]!);
    const live = new Map<number, number>([...a, ...b].map((x) => [x, 64]));
    const freeOn = (cpu: number, k: number, count: number) => {
      for (const x of slab(k).slice(0, count)) {
        m.engine.free(x, cpu);
        live.delete(x);
      }
    };
    freeOn(0, 0, 64); // S0 empties on CPU 0's partial list
    freeOn(0, 1, 40);
    freeOn(0, 2, 1);
    freeOn(0, 3, 3);
    freeOn(0, 4, 1); // drains S3, S2, S1, S0 to the node (S0 kept: nr_partial 3 < 5)
    freeOn(0, 5, 64);
    freeOn(0, 6, 33);
    freeOn(1, 7, 3);
    freeOn(1, 8, 64);
    m.engine.free(a[12 * 64]!, 1); // a remote free into CPU 0's cpu slab
    live.delete(a[12 * 64]!);
    // kmalloc-32: CPU 0's cpu slab has handed out all 128 objects (deactivated full).
    for (const x of allocMany(m.engine, 32, 128, 0)) live.set(x, 32);
    // kmalloc-16 (256 objects, cpu_partial_slabs 1): T0..T4 on the node with one free
    // object each, T5 on CPU 0's partial list, CPU 0's cpu slab T6 entirely free.
    const c = allocMany(m.engine, 16, 7 * 256, 0);
    for (const x of c) live.set(x, 16);
    for (let k = 0; k <= 5; k++) {
      m.engine.free(c[k * 256]!, 0);
      live.delete(c[k * 256]!);
    }
    for (const x of c.slice(6 * 256)) {
      m.engine.free(x, 0);
      live.delete(x);
    }
    assertSound(m);
    let k64 = cacheState(m.engine, 64);
    assert.equal(k64.nodePartialSlabs, 4);
    assert.equal(k64.nodePartialEmptySlabs, 1); // S0
    assert.equal(k64.slabCount, 15);
    assert.deepEqual(k64.cpus, [
      { slabFrame: s12, cpuFreelistObjects: 54, partialSlabs: 3 },
      { slabFrame: s14, cpuFreelistObjects: 59, partialSlabs: 2 },
    ]);
    assert.equal(cacheState(m.engine, 16).nodePartialSlabs, 5);
    const poolBefore = m.engine.pagesHeld().poolPages;
    const before = stepTotalsOf(m.engine);

    m.engine.shrink();

    // kmalloc-64: CPU 0: deactivate S12 (remote frees: to the tail) 1 refill + 1 add;
    // __put_partials S6 add, S5 discard (nr_partial 6 >= 5), S4 add. CPU 1: deactivate
    // S14 (no remote frees: to the head) 1 refill + 1 add; S8 discard, S7 add. Node:
    // S14 S3 S2 S1 S0 S12 S6 S4 S7. Shrink: S0 empty: take + discard; S3 (3 free), S2
    // (1), S4 (1), S7 (3) promoted: take + add each; S14 (59), S1 (40), S12 (55),
    // S6 (33) stay. 19 steps. kmalloc-32: the full cpu slab goes on no list, 0 steps.
    // kmalloc-16: deactivate T6: 1 refill, empty with nr_partial 5 >= 5: 1 discard;
    // T5 added; T0..T5 (1 free each) promoted: 6 takes + 6 adds. 15 steps.
    const delta = stepDelta(before, stepTotalsOf(m.engine));
    assert.deepEqual(delta, {
      freelistPop: 0,
      freelistPush: 0,
      freelistRefill: 3,
      cpuPartialTake: 0,
      cpuPartialPut: 0,
      nodePartialTake: 5 + 6,
      nodePartialAdd: 9 + 7,
      newSlab: 0,
      slabDiscard: 3 + 1,
    });
    assert.equal(m.engine.lastSteps, 34);
    assertSound(m);
    // Only the empty slabs went back: S0, S5, S8 and T6.
    for (const k of [0, 5, 8]) {
      assert.equal(m.pages.isAllocatedHead(frameOf(slab(k)[0]!), OWNER), false, `S${k}`);
    }
    assert.equal(m.pages.isAllocatedHead(frameOf(c[6 * 256]!), OWNER), false, "T6");
    assert.equal(m.engine.pagesHeld().poolPages, poolBefore - 4);
    for (const address of live.keys()) {
      assert.ok(m.pages.isAllocatedHead(frameOf(address), OWNER), "a live slab was freed");
    }
    k64 = cacheState(m.engine, 64);
    assert.equal(k64.slabCount, 12);
    assert.equal(k64.nodePartialSlabs, 8);
    assert.equal(k64.nodePartialEmptySlabs, 0);
    assert.equal(k64.fullSlabs, 4); // S9, S10, S11, S13
    assert.ok(m.pages.isAllocatedHead(s13, OWNER), "S13 (full, no longer a cpu slab) stays");
    for (const state of m.engine.inspect()) {
      for (const cpu of state.cpus) {
        assert.deepEqual(cpu, { slabFrame: -1, cpuFreelistObjects: 0, partialSlabs: 0 });
      }
    }
    const k32 = cacheState(m.engine, 32);
    assert.equal(k32.fullSlabs, 1);
    assert.equal(k32.liveObjects, 128);
    const k16 = cacheState(m.engine, 16);
    assert.equal(k16.slabCount, 6);
    assert.equal(k16.nodePartialSlabs, 6);
    assert.equal(k16.liveObjects, 6 * 255);
    assert.equal(m.engine.stats().liveBlockCount, live.size);
    assertLiveValid(m.engine, live, "after shrink");

    // The node list is S4 S2 S7 S3 S14 S1 S12 S6: fullest first, each promote list in
    // reverse walk order, the rest as they were. CPU 0 allocating shows it:
    // get_partial_node takes S4 as cpu slab and puts S2, S7, S3 on its partial list
    // (pushed at the head: S3 S7 S2); then S14 with S1, S12, S6 (partial S6 S12 S1).
    const expected: [number, number][] = [
      [frameOf(slab(4)[0]!), 1],
      [frameOf(slab(3)[0]!), 3],
      [frameOf(slab(7)[0]!), 3],
      [frameOf(slab(2)[0]!), 1],
      [s14, 59],
      [frameOf(slab(6)[0]!), 33],
      [s12, 55],
      [frameOf(slab(1)[0]!), 40],
    ];
    const got: number[] = [];
    for (const [frame, count] of expected) {
      for (let i = 0; i < count; i++) {
        const x = m.engine.allocate(64, 1, 0);
        assert.equal(frameOf(x), frame, `object ${got.length} after shrink`);
        assert.ok(!live.has(x), "a live object handed out again");
        live.set(x, 64);
        got.push(x);
      }
    }
    assert.equal(got[0], slab(4)[0], "S4's one free object comes first");
    assert.equal(cacheState(m.engine, 64).nodePartialSlabs, 0);
    assert.equal(cacheState(m.engine, 64).slabCount, 12, "no new slab was needed");
    // kmalloc-16: the node list is T5 T4 .. T0; CPU 1 takes T5 first.
    assert.equal(m.engine.allocate(16, 1, 1), c[5 * 256]);
    live.set(c[5 * 256]!, 16);
    assertSound(m);
    assertLiveValid(m.engine, live, "after allocating again");

    // Every live object still frees, on either CPU; a last shrink returns every page.
    let i = 0;
    for (const address of live.keys()) m.engine.free(address, i++ % 2);
    assertSound(m);
    m.engine.shrink();
    assert.deepEqual(m.engine.pagesHeld(), { poolPages: 0, wholePages: 0, metaPages: 0 });
    assert.equal(m.pages.freeFrameCount, m.pages.frameCount);
    assertSound(m);
  });

  await t.step("a fresh engine: shrink changes nothing and counts nothing", () => {
    for (const cpus of [1, 2]) {
      const m = machine(cpus, 256);
      const snapshot = () =>
        JSON.stringify({
          stats: m.engine.stats(),
          caches: m.engine.inspect(),
          pages: m.pages.stats(),
          blocks: m.pages.check(),
        });
      const before = snapshot();
      m.engine.shrink();
      assert.equal(m.engine.lastSteps, 0);
      assert.equal(snapshot(), before);
      assert.deepEqual(m.engine.pagesHeld(), { poolPages: 0, wholePages: 0, metaPages: 0 });
      assertSound(m);
      // A large block is never cached: a shrink leaves it alone.
      const big = m.engine.allocate(20000);
      const withBig = snapshot();
      m.engine.shrink();
      assert.equal(snapshot(), withBig);
      assert.equal(m.engine.usableSize(big), 8 * PAGE_SIZE_BYTES);
      m.engine.free(big);
      assert.equal(m.pages.freeFrameCount, m.pages.frameCount);
    }
  });

  await t.step("lastSteps of a shrink replaces the previous call's", () => {
    const m = machine(1);
    m.engine.free(m.engine.allocate(64));
    m.engine.shrink(); // refill + add (nr_partial 0 < 5) + take + discard
    assert.equal(m.engine.lastSteps, 4);
    m.engine.allocate(64);
    assert.equal(m.engine.lastSteps, 2); // newSlab + pop
    m.engine.shrink(); // CPU 0's slab has 63 free on c->freelist: refill + add, kept
    assert.equal(m.engine.lastSteps, 2);
    assert.equal(cacheState(m.engine, 64).nodePartialSlabs, 1);
    assert.equal(m.engine.pagesHeld().poolPages, 1);
    assertSound(m);
  });
});
