/**
 * A guest's own heap (guests/own_heap.ts) on a reservation of the domain's pages:
 * boot cost by engine as the boot model says, local operations that make no
 * control-plane request, growth by exactly one reservation request, failures with
 * their causes, pages back on shutdown and on destroy, bbuddy's 32-byte header, the
 * guest's own lock, determinism. Requests are counted by a FetchLike wrapped around
 * `app.fetch`.
 */

import assert from "node:assert/strict";
import { ControlPlaneClient, ControlPlaneError, type FetchLike } from "../guests/client.ts";
import {
  engineInitWork,
  INIT_LINE_CYCLES,
  OwnHeap,
  OwnHeapBootError,
  type OwnHeapOptions,
} from "../guests/own_heap.ts";
import { createControlPlane } from "../hypervisor/control_plane/app.ts";
import { Hypervisor } from "../hypervisor/hypervisor.ts";
import { InvalidFreeError } from "../hypervisor/xmalloc/engine.ts";
import { ENGINE_NAMES } from "../hypervisor/xmalloc/registry.ts";
import { MiB, PAGE_SIZE_BYTES } from "../src/units.ts";
import { ADMIN_TOKEN } from "./control_plane_harness.ts";

/** Modelled cycles of a reservation of `pages` order-0 pages: a call, then a page call and a p2m step each. */
const reservationCycles = (pages: number) => 20 + pages * (200 + 10);

interface Setup {
  hv: Hypervisor;
  client: ControlPlaneClient;
  domainId: number;
  /** `METHOD path` of every request sent since setup (boot's included). */
  requests: string[];
}

/** A fresh machine, a tenant and one domain; requests counted from here on. */
async function setup(
  options: { machineMiB?: number; maxPages?: number; vcpus?: number } = {},
): Promise<Setup> {
  const hv = new Hypervisor({ engine: "tlsf", machineBytes: MiB(options.machineMiB ?? 64) });
  const { app } = createControlPlane(hv, { adminToken: ADMIN_TOKEN });
  const requests: string[] = [];
  const send: FetchLike = (r) => {
    requests.push(`${r.method} ${new URL(r.url).pathname}`);
    return app.fetch(r);
  };
  const admin = new ControlPlaneClient(send, "http://heapvisor.invalid", ADMIN_TOKEN);
  const tenant = await admin.createTenant({ name: "acme", max_domains: 4, max_pages: 2 ** 20 });
  const client = admin.withToken(tenant.token);
  const dom = await client.createDomain({
    name: "guest",
    vcpus: options.vcpus ?? 2,
    max_pages: options.maxPages ?? 4096,
  });
  requests.length = 0;
  return { hv, client, domainId: dom.id, requests };
}

const boot = (s: Setup, options: Partial<OwnHeapOptions> = {}) =>
  OwnHeap.boot(s.client, s.domainId, {
    engine: "tlsf",
    vcpus: 2,
    initialPages: 64,
    growPages: 16,
    ...options,
  });

// -- boot ------------------------------------------------------------------------------------

Deno.test("own heap: boot costs the reservation request plus the engine's initialisation", async (t) => {
  // Hand-derived from the boot model (guests/own_heap.ts) at 64 initial pages, 2 vCPUs:
  // first-fit: nothing runs.
  // tlsf: 1 call + 1 list insert + memset of 6320 B (99 lines) = 20 + 10 + 99 * 12.
  // slub: 13 caches x (1 call + (6 + 2) steps + (5 + 2) lines) = 13 x (20 + 80 + 84).
  // buddy: 2 calls; 52 list heads + memr insert + 1 map_free word + 5 chunks (pages 3,
  //   4-7, 8-15, 16-31, 32-63) = 59 steps; descriptor page + 1 bitmap page = 128 lines.
  const expectedInit: Record<string, number> = {
    "first-fit": 0,
    "tlsf-2008": 20 + 10 + 99 * INIT_LINE_CYCLES,
    "tlsf": 20 + 10 + 99 * INIT_LINE_CYCLES,
    "slub": 13 * (20 + 8 * 10 + 7 * INIT_LINE_CYCLES),
    "buddy": 2 * 20 + 59 * 10 + 128 * INIT_LINE_CYCLES,
  };
  assert.deepEqual(Object.keys(expectedInit).sort(), [...ENGINE_NAMES].sort());
  const init: Record<string, number> = {};
  for (const engine of ENGINE_NAMES) {
    await t.step(`${engine}: boot = reservation (${reservationCycles(64)}) + init`, async () => {
      const s = await setup();
      const heap = await boot(s, { engine, initialPages: 64 });
      const b = heap.stats().boot;
      assert.equal(b.reservation_cycles, reservationCycles(64));
      assert.equal(b.init_cycles, expectedInit[engine]);
      assert.equal(b.cycles, reservationCycles(64) + expectedInit[engine]!);
      assert.equal(heap.bootCycles, b.cycles);
      assert.deepEqual(s.requests, [
        `GET /v1/domains/${s.domainId}`,
        `POST /v1/domains/${s.domainId}/reservation`,
      ]);
      init[engine] = b.init_cycles;
    });
  }
  await t.step("ordering at 64 pages, 2 vCPUs: first-fit < tlsf = tlsf-2008 < buddy < slub", () => {
    assert.ok(init["first-fit"]! < init["tlsf"]!);
    assert.equal(init["tlsf"], init["tlsf-2008"]);
    assert.ok(init["tlsf"]! < init["buddy"]!);
    assert.ok(init["buddy"]! < init["slub"]!);
  });
  await t.step("buddy's init grows with the memory it is given (its bitmap)", () => {
    // 1024 pages: 16 map_free words, 9 chunks; 4096 pages: 64 words, 11 chunks.
    assert.equal(engineInitWork("buddy", 2, 1024).cycles, 40 + (52 + 1 + 16 + 9) * 10 + 128 * 12);
    assert.equal(engineInitWork("buddy", 2, 4096).cycles, 40 + (52 + 1 + 64 + 11) * 10 + 128 * 12);
    // Under 4 pages bbuddy_addmem() refuses the range: descriptor and list heads only.
    assert.equal(engineInitWork("buddy", 1, 3).cycles, 40 + 52 * 10 + 64 * 12);
    const sizes = [4, 64, 1024, 4096, 65_536, 2 ** 20, 2 ** 24];
    const cycles = sizes.map((p) => engineInitWork("buddy", 1, p).cycles);
    for (let i = 1; i < sizes.length; i++) {
      assert.ok(cycles[i]! > cycles[i - 1]!, `${sizes[i]} pages: ${cycles[i]} <= ${cycles[i - 1]}`);
    }
    // Beyond 32768 pages the bitmap needs a second page: its memset grows too.
    assert.ok(engineInitWork("buddy", 1, 2 ** 20).lines > engineInitWork("buddy", 1, 4096).lines);
    // At 4096 pages, 2 vCPUs, buddy costs more than slub: the order depends on the memory.
    assert.ok(engineInitWork("buddy", 2, 4096).cycles > engineInitWork("slub", 2, 4096).cycles);
  });
  await t.step(
    "slub's init grows with the vCPUs (per-CPU structures of 13 caches), the others' do not",
    () => {
      for (let v = 2; v <= 64; v *= 2) {
        assert.equal(
          engineInitWork("slub", v, 64).cycles - engineInitWork("slub", v - 1, 64).cycles,
          13 * (10 + INIT_LINE_CYCLES),
        );
        for (const engine of ["first-fit", "tlsf", "tlsf-2008", "buddy"]) {
          assert.equal(engineInitWork(engine, v, 64).cycles, engineInitWork(engine, 1, 64).cycles);
        }
      }
    },
  );
  await t.step("a boot with more pages costs more for every engine (the reservation)", async () => {
    for (const engine of ENGINE_NAMES) {
      const small = await boot(await setup(), { engine, initialPages: 64 });
      const big = await boot(await setup(), { engine, initialPages: 1024 });
      assert.equal(big.stats().boot.reservation_cycles, reservationCycles(1024));
      assert.ok(big.bootCycles > small.bootCycles, engine);
      if (engine === "buddy") assert.ok(big.initWork.cycles > small.initWork.cycles);
      else assert.equal(big.initWork.cycles, small.initWork.cycles, engine);
    }
  });
});

Deno.test("own heap: a boot the hypervisor refuses, or asked wrongly, throws", async () => {
  const s = await setup({ maxPages: 100 });
  await assert.rejects(
    () => boot(s, { initialPages: 101 }),
    (e) => e instanceof OwnHeapBootError && e.reason === "quota",
  );
  await assert.rejects(() => boot(s, { vcpus: 3 }), RangeError); // the domain has 2
  await assert.rejects(() => boot(s, { engine: "no-such-engine" }), RangeError);
  await assert.rejects(() => boot(s, { growPages: -1 }), RangeError);
  await assert.rejects(
    () => OwnHeap.boot(s.client, 99, { engine: "tlsf", vcpus: 1, initialPages: 1, growPages: 0 }),
    (e) => e instanceof ControlPlaneError && e.status === 404,
  );
  assert.equal(s.hv.tenancy.domain(s.domainId).reservedPages, 0, "nothing was reserved");
  assert.deepEqual(s.hv.pages.check(), []);
});

// -- local operations ---------------------------------------------------------------------------

for (const engine of ENGINE_NAMES) {
  Deno.test(`own heap (${engine}): operations within the reservation make no control-plane request`, async () => {
    const s = await setup();
    const heap = await boot(s, { engine, initialPages: 256 });
    s.requests.length = 0;
    const domainBefore = s.hv.tenancy.domain(s.domainId).stats();
    const live: number[] = [];
    for (let i = 0; i < 200; i++) {
      const r = await heap.allocate(16 + ((i * 37) % 1000), 1, i % 2);
      assert.ok(r.ok, `alloc ${i}: ${r.cause}`);
      assert.equal(r.reservationRequests, 0);
      assert.ok(r.cycles > 0);
      live.push(r.address);
    }
    for (let i = 0; i < live.length; i += 2) {
      assert.equal(heap.free(live[i]!, 1).ok, true);
    }
    const moved = await heap.reallocate(live[1]!, 3000, 1, 0);
    assert.equal(moved.ok, true);
    assert.deepEqual(s.requests, [], "no request after boot");
    assert.deepEqual(
      s.hv.tenancy.domain(s.domainId).stats(),
      domainBefore,
      "the domain's pool and figures untouched",
    );
    const st = heap.stats();
    assert.deepEqual(st.ops, { allocs: 200, frees: 100, reallocs: 1, failed: 0 });
    assert.equal(st.live_blocks, 100);
    assert.equal(st.reserved_pages, 256);
    assert.ok(st.pages_held > 0 && st.pages_held <= 256, String(st.pages_held));
    assert.equal(st.growth.requests, 0);
    assert.equal(st.smp.per_vcpu.reduce((n, v) => n + v.ops, 0), 301);
    assert.ok(st.steps.max > 0 && st.latency_cycles.max > 0);
    assert.deepEqual(heap.check(), []);
    assert.throws(() => heap.free(live[0]!), InvalidFreeError); // freed above
  });
}

for (const engine of ENGINE_NAMES) {
  Deno.test(`own heap (${engine}): using up the reservation makes exactly one reservation request, then succeeds`, async () => {
    const s = await setup();
    const heap = await boot(s, { engine, initialPages: 16, growPages: 16 });
    s.requests.length = 0;
    let grown = -1;
    for (let i = 0; i < 400 && grown < 0; i++) {
      const r = await heap.allocate(4000);
      assert.equal(r.ok, true, `alloc ${i}: ${r.cause}`);
      if (r.reservationRequests === 0) {
        assert.deepEqual(s.requests, [], `alloc ${i} made no request`);
        continue;
      }
      grown = i;
      assert.equal(r.reservationRequests, 1);
      assert.equal(r.grantedPages, 16);
      assert.deepEqual(s.requests, [`POST /v1/domains/${s.domainId}/reservation`]);
      assert.ok(
        r.cycles > reservationCycles(16),
        `the request's ${reservationCycles(16)} cycles are in the op's ${r.cycles}`,
      );
    }
    assert.ok(grown > 0, "the reservation ran out");
    const st = heap.stats();
    assert.equal(st.reserved_pages, 32);
    assert.deepEqual(st.growth, {
      requests: 1,
      granted_pages: 16,
      refused: { quota: 0, exhaustion: 0 },
      cycles: reservationCycles(16),
    });
    assert.equal(st.ops.failed, 0);
    assert.ok(st.pages_held > 16 && st.pages_held <= 32, String(st.pages_held));
    assert.equal((await s.client.domain(s.domainId)).reserved_pages, 32);
    assert.deepEqual(heap.check(), []);
  });
}

Deno.test("own heap: growth beyond max_pages fails with cause quota (one refused request)", async () => {
  const s = await setup({ maxPages: 32 });
  const heap = await boot(s, { initialPages: 24, growPages: 16 });
  s.requests.length = 0;
  let failed = null;
  for (let i = 0; i < 100 && failed === null; i++) {
    const r = await heap.allocate(4000);
    if (!r.ok) failed = r;
  }
  assert.ok(failed, "an allocation failed");
  assert.equal(failed.cause, "quota");
  assert.equal(failed.reservationRequests, 1);
  assert.equal(failed.grantedPages, 0);
  assert.deepEqual(s.requests, [`POST /v1/domains/${s.domainId}/reservation`]);
  const st = heap.stats();
  assert.equal(st.failures.quota, 1);
  assert.equal(st.ops.failed, 1);
  assert.deepEqual(st.growth.refused, { quota: 1, exhaustion: 0 });
  assert.equal(st.reserved_pages, 24);
  assert.equal((await s.client.domain(s.domainId)).reserved_pages, 24, "nothing granted");
  assert.deepEqual(heap.check(), []);
});

Deno.test("own heap: one growth is sized for the request; refused growth keeps cause quota; growPages 0 never asks", async () => {
  const s = await setup();
  const heap = await boot(s, { initialPages: 8, growPages: 4 });
  s.requests.length = 0;
  // 64 pages asked for: growPages (4) would not do, so the growth asks for 2^order pages
  // with room for a header (128) plus one.
  const big = await heap.allocate(64 * PAGE_SIZE_BYTES);
  assert.deepEqual([big.ok, big.reservationRequests, big.grantedPages], [true, 1, 129]);
  assert.equal(s.requests.length, 1);
  assert.equal(heap.reservedPages, 8 + 129);
  // A domain that cannot give that much: the growth is refused, the cause stays quota.
  const small = await setup({ maxPages: 40 });
  const tight = await boot(small, { initialPages: 8, growPages: 4 });
  const refused = await tight.allocate(64 * PAGE_SIZE_BYTES);
  assert.deepEqual([refused.ok, refused.cause, refused.reservationRequests, refused.grantedPages], [
    false,
    "quota",
    1,
    0,
  ]);
  assert.equal(tight.reservedPages, 8, "nothing granted");
  const still = await boot(await setup(), { initialPages: 8, growPages: 0 });
  const r = await still.allocate(64 * PAGE_SIZE_BYTES);
  assert.deepEqual([r.ok, r.cause, r.reservationRequests], [false, "quota", 0]);
});

Deno.test("own heap: growth on a machine out of frames fails with cause exhaustion", async () => {
  const s = await setup({ machineMiB: 1, maxPages: 1000 }); // 256 frames
  const heap = await boot(s, { initialPages: 200, growPages: 100 });
  let failed = null;
  for (let i = 0; i < 400 && failed === null; i++) {
    const r = await heap.allocate(4000);
    if (!r.ok) failed = r;
  }
  assert.ok(failed);
  assert.equal(failed.cause, "exhaustion");
  assert.equal(heap.stats().growth.refused.exhaustion, 1);
  assert.equal(heap.stats().failures.exhaustion, 1);
});

// -- pages back ---------------------------------------------------------------------------------

Deno.test("own heap: the domain shows reserved_pages; shutdown releases them, destroy returns them", async (t) => {
  for (const engine of ENGINE_NAMES) {
    await t.step(
      `${engine}: shutdown frees everything live and releases the reservation`,
      async () => {
        const s = await setup();
        const frames = s.hv.pages.frameCount;
        const heap = await boot(s, { engine, initialPages: 24, growPages: 8 });
        const domain = s.hv.tenancy.domain(s.domainId);
        assert.equal((await s.client.domain(s.domainId)).reserved_pages, 24);
        assert.equal(s.hv.pages.pagesOwnedBy(domain.reservationOwner), 24);
        for (let i = 0; i < 40; i++) assert.ok((await heap.allocate(100 + i * 97, 1, i % 2)).ok);
        const reserved = heap.reservedPages;
        assert.ok(reserved > 24, "it grew");
        assert.equal(s.hv.pages.pagesOwnedBy(domain.reservationOwner), reserved);
        s.requests.length = 0;
        const out = await heap.shutdown();
        assert.deepEqual(out, {
          freedBlocks: 40,
          releasedPages: reserved,
          cycles: reservationCycles(reserved),
        });
        assert.deepEqual(s.requests, [`POST /v1/domains/${s.domainId}/reservation/release`]);
        assert.equal((await s.client.domain(s.domainId)).reserved_pages, 0);
        assert.equal(s.hv.pages.pagesOwnedBy(domain.reservationOwner), 0);
        assert.equal(s.hv.pages.freeFrameCount, frames);
        assert.deepEqual(s.hv.pages.check(), []);
        assert.equal(heap.physical.freeFrameCount, heap.physical.frameCount);
        assert.deepEqual(heap.physical.check(), []);
        const st = heap.stats();
        assert.deepEqual([st.live_blocks, st.requested_bytes, st.reserved_pages], [0, 0, 0]);
        await assert.rejects(() => heap.allocate(8), /shut down/);
      },
    );
  }
  await t.step(
    "destroying the domain returns the reserved pages; a late shutdown is refused",
    async () => {
      const s = await setup();
      const heap = await boot(s, { engine: "slub", initialPages: 40 });
      for (let i = 0; i < 10; i++) assert.ok((await heap.allocate(512)).ok);
      const owner = s.hv.tenancy.domain(s.domainId).reservationOwner;
      assert.equal(s.hv.pages.pagesOwnedBy(owner), 40);
      await s.client.destroyDomain(s.domainId);
      assert.equal(s.hv.pages.pagesOwnedBy(owner), 0);
      assert.equal(s.hv.pages.freeFrameCount, s.hv.pages.frameCount);
      assert.deepEqual(s.hv.pages.check(), []);
      await assert.rejects(
        () => heap.shutdown(),
        (e) => e instanceof ControlPlaneError && e.status === 404,
      );
    },
  );
});

// -- what the engine's choice shows -------------------------------------------------------------

Deno.test("own heap (buddy): the 32-byte header in front: 4064 B takes 1 page, 4065 B takes 2", async () => {
  const s = await setup();
  const heap = await boot(s, { engine: "buddy", initialPages: 64 });
  const pagesOf = () => heap.engine.stats().liveReservedBytes / PAGE_SIZE_BYTES;
  const a = await heap.allocate(4064);
  assert.equal(a.reservedBytes, 4064);
  assert.equal(pagesOf(), 1);
  const b = await heap.allocate(4065);
  assert.equal(b.reservedBytes, 2 * PAGE_SIZE_BYTES - 32);
  assert.equal(pagesOf(), 3);
  for (const size of [PAGE_SIZE_BYTES - 1, PAGE_SIZE_BYTES]) {
    const r = await heap.allocate(size);
    assert.equal(r.reservedBytes, 2 * PAGE_SIZE_BYTES - 32, `${size} B`);
  }
  assert.equal(pagesOf(), 7);
  const st = heap.stats();
  assert.equal(st.requested_bytes, 4064 + 4065 + 4095 + 4096);
  assert.equal(st.reserved_bytes, 4064 + 3 * 8160);
  // TLSF's own heap serves 4065 B from one page (whole page, tail freed).
  const tlsf = await boot(await setup(), { engine: "tlsf", initialPages: 64 });
  const t = await tlsf.allocate(4065);
  assert.ok(t.reservedBytes < 2 * PAGE_SIZE_BYTES - 32, String(t.reservedBytes));
  assert.equal(tlsf.stats().whole_pages, 1);
});

Deno.test("own heap: the guest's own lock makes its vCPUs wait (tlsf), SLUB's per-CPU fast path does not", async () => {
  const tlsf = await boot(await setup(), { engine: "tlsf" });
  const warm = await tlsf.allocate(64, 1, 0, 0); // creates the pool
  const t0 = 1_000_000;
  const first = await tlsf.allocate(64, 1, 0, t0);
  const second = await tlsf.allocate(64, 1, 1, t0);
  assert.ok(warm.ok && first.ok && second.ok);
  assert.equal(first.lockWaitCycles, 0);
  assert.equal(second.lockWaitCycles, first.cycles, "vCPU 1 waits for vCPU 0's call");
  assert.equal(tlsf.stats().smp.pool_lock.contended, 1);
  const slub = await boot(await setup(), { engine: "slub" });
  await slub.allocate(64, 1, 0, 0);
  await slub.allocate(64, 1, 1, 0);
  const a = await slub.allocate(64, 1, 0, t0);
  const b = await slub.allocate(64, 1, 1, t0);
  assert.deepEqual([a.lockWaitCycles, b.lockWaitCycles], [0, 0]);
});

Deno.test("own heap: the same calls give the same addresses and figures", async () => {
  const run = async () => {
    const s = await setup();
    const heap = await boot(s, { engine: "slub", initialPages: 32, growPages: 8, vcpus: 2 });
    const addresses: number[] = [];
    for (let i = 0; i < 300; i++) {
      const r = await heap.allocate(8 + ((i * 131) % 3000), 1, i % 2, i * 500);
      addresses.push(r.address);
      if (i % 3 === 2 && addresses[i - 1]) heap.free(addresses[i - 1]!, (i + 1) % 2, i * 500 + 1);
    }
    return { addresses, stats: heap.stats(), shutdown: await heap.shutdown() };
  };
  const [x, y] = [await run(), await run()];
  assert.ok(x.stats.growth.requests > 0, "the script grows the heap");
  assert.deepEqual(x, y);
});

Deno.test("client: reserve and release (507 is an outcome, over-release is 409 not_reserved)", async () => {
  const s = await setup({ maxPages: 10 });
  const r = await s.client.reserve(s.domainId, { pages: 6 });
  assert.deepEqual([r.ok, r.granted, r.reserved_pages, r.cause], [true, 6, 6, null]);
  const refused = await s.client.reserve(s.domainId, { pages: 5 });
  assert.deepEqual([refused.ok, refused.granted, refused.cause], [false, 0, "quota"]);
  await assert.rejects(
    () => s.client.release(s.domainId, { pages: 7 }),
    (e) => e instanceof ControlPlaneError && e.status === 409 && e.code === "not_reserved",
  );
  const back = await s.client.release(s.domainId, { pages: 6 });
  assert.deepEqual([back.released, back.reserved_pages], [6, 0]);
});
