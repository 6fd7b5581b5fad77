/**
 * Snapshots: take, restore (same blocks at the same addresses), export and import as
 * a file, through the tenancy, the control plane and the journal.
 */
import assert from "node:assert/strict";
import {
  type Domain,
  MachineFullError,
  NotFoundError,
  SNAPSHOTS_PER_TENANT_MAX,
  Tenancy,
} from "../hypervisor/domains.ts";
import { Hypervisor } from "../hypervisor/hypervisor.ts";
import { createControlPlane } from "../hypervisor/control_plane/app.ts";
import { Journal } from "../hypervisor/journal.ts";
import { BuddyPageAllocator } from "../hypervisor/page_allocator.ts";
import {
  parseSnapshotDocument,
  SNAPSHOT_STATE_MAX_BYTES,
  SNAPSHOT_VERSION,
  type SnapshotDocument,
  snapshotDocument,
  SnapshotError,
} from "../hypervisor/snapshot.ts";
import { crc32 } from "../hypervisor/journal.ts";
import { ENGINE_NAMES } from "../hypervisor/xmalloc/registry.ts";
import { Prng } from "../src/prng.ts";
import { MiB } from "../src/units.ts";
import { StateWriter } from "../src/state_codec.ts";
import { Buffer } from "node:buffer";
import { deflateRawSync } from "node:zlib";
import {
  ADMIN_TOKEN,
  assertError,
  call,
  createDomain,
  createTenant,
  ok,
} from "./control_plane_harness.ts";

const FRAMES = 16_384;
const V1_FIXTURE = new URL("./fixtures/snapshots/warm-tlsf-v1.json", import.meta.url).pathname;

/**
 * A tenancy with a busy neighbour and a domain `d` warmed up by a seeded mix of
 * allocations (near-page sizes among them), frees, resizes and a reservation, the
 * neighbour's calls interleaved so the machine's answers are not trivial.
 */
function warmedUp(engine: string, seed = 11, count = 4000) {
  const pages = new BuddyPageAllocator(FRAMES);
  const tenancy = new Tenancy(pages, "tlsf");
  const t = tenancy.createTenant("t", { maxDomains: 16, maxPages: FRAMES * 4 });
  const neighbour = tenancy.createDomain(t.id, {
    name: "n",
    vcpus: 1,
    maxPages: 4000,
    engine: "tlsf",
  });
  const d = tenancy.createDomain(t.id, { name: "d", vcpus: 2, maxPages: 3000, engine });
  const rng = new Prng(seed);
  const live: number[] = [];
  for (let i = 0; i < count; i++) {
    const r = rng.nextFloat();
    if (r < 0.2) neighbour.allocate(1 + rng.index(9000), 1, 0);
    else if (r < 0.62 || live.length === 0) {
      const size = rng.nextFloat() < 0.3 ? 3900 + rng.index(400) : 1 + rng.index(2500);
      const res = d.allocate(size, rng.nextFloat() < 0.1 ? 64 : 1, rng.index(2));
      if (res.ok) live.push(res.address);
    } else if (r < 0.92) {
      d.free(live.splice(rng.index(live.length), 1)[0]!, rng.index(2));
    } else {
      const k = rng.index(live.length);
      const res = d.reallocate(live[k]!, 1 + rng.index(6000), 1, rng.index(2));
      if (res.ok) live[k] = res.address;
    }
    if (i === count / 2) d.reserve(7);
  }
  return { pages, tenancy, tenantId: t.id, d, live };
}

/** `bytes` zero bytes deflated and base64-encoded (untouched zero pages: no memory held). */
function zipBomb(bytes: number): string {
  return Buffer.from(deflateRawSync(new Uint8Array(bytes))).toString("base64");
}

/** The heap as a snapshot sees it: pages by use, live blocks with bytes and vCPU. */
function heapOf(d: Domain) {
  const c = d.snapshotContent();
  return { heap: c.heap, blocks: c.blocks };
}

for (const engine of ENGINE_NAMES) {
  Deno.test(`snapshot (${engine}): a restored domain is the same heap at the same addresses`, () => {
    const { pages, tenancy, tenantId, d, live } = warmedUp(engine);
    const snap = tenancy.takeSnapshot(d.id);
    const free = pages.freeFrameCount;
    const f = tenancy.restoreDomain(tenantId, { name: "f", fromSnapshot: snap.id });
    assert.deepEqual(heapOf(f), heapOf(d));
    assert.ok(heapOf(d).blocks.length > 100, "the heap under test has blocks");
    // The machine backs the copy with its own pages (pool + reservation).
    const s = f.stats();
    assert.equal(pages.pagesOwnedBy(f.id), s.pages_held);
    assert.equal(pages.pagesOwnedBy(f.reservationOwner), 7);
    assert.equal(free - pages.freeFrameCount, s.pages_held + 7);
    // The books start at the fork.
    assert.deepEqual(s.ops, { allocs: 0, frees: 0, reallocs: 0, failed: 0 });
    assert.equal(s.peak_pages, s.pages_held);
    assert.equal(s.live_blocks, d.stats().live_blocks);
    assert.deepEqual(f.engine.check(), []);
    assert.deepEqual(pages.check(), []);

    // The same calls give the same answers until one needs a new page.
    for (const address of live.slice(0, 60)) {
      assert.deepEqual(f.free(address, 1).address, d.free(address, 1).address);
    }
    let same = 0;
    for (let i = 0; i < 400; i++) {
      const before = [d.pageSource.heldPages, f.pageSource.heldPages];
      const a = d.allocate(16 + ((i * 211) % 3000), 1, i % 2);
      const b = f.allocate(16 + ((i * 211) % 3000), 1, i % 2);
      if (d.pageSource.heldPages !== before[0] || f.pageSource.heldPages !== before[1]) break;
      assert.equal(b.address, a.address, `call ${i}`);
      same++;
    }
    assert.ok(same > 0, "no call ran before a new page was needed");

    // A snapshot of the copy restores the copy (its history continues the snapshot's).
    const again = tenancy.restoreDomain(tenantId, {
      name: "g",
      fromSnapshot: tenancy.takeSnapshot(f.id).id,
    });
    assert.deepEqual(heapOf(again), heapOf(f));

    // Destroying the copies gives every page back and leaves the source as it was.
    const sourceHeap = heapOf(d);
    tenancy.destroyDomain(f.id);
    tenancy.destroyDomain(again.id);
    assert.equal(pages.pagesOwnedBy(f.id) + pages.pagesOwnedBy(again.id), 0);
    assert.deepEqual(heapOf(d), sourceHeap);
    assert.deepEqual(pages.check(), []);
  });
}

Deno.test("snapshot: the file round-trips and restores the same heap", () => {
  const { tenancy, tenantId, d } = warmedUp("tlsf");
  const doc = snapshotDocument(tenancy.takeSnapshot(d.id).content);
  assert.equal(doc.format, "heapvisor-snapshot");
  assert.equal(doc.version, SNAPSHOT_VERSION);
  assert.equal(doc.state?.encoding, "deflate+base64");
  const text = JSON.stringify(doc);
  // Another machine (and tenancy) restores it: the same blocks at the same addresses.
  const other = new Tenancy(new BuddyPageAllocator(FRAMES * 2), "slub");
  const t = other.createTenant("u", { maxDomains: 2, maxPages: FRAMES });
  const imported = other.importSnapshot(t.id, parseSnapshotDocument(JSON.parse(text)));
  const f = other.restoreDomain(t.id, { name: "f", fromSnapshot: imported.id });
  assert.deepEqual(heapOf(f), heapOf(d));
  assert.equal(f.engine.name, "tlsf");
  // And exports the same file again (a copy's history is its source's).
  const again = snapshotDocument(other.takeSnapshot(f.id).content);
  assert.equal(again.domain.name, "f");
  assert.deepEqual({ ...again, domain: doc.domain, crc32: 0 }, { ...doc, crc32: 0 });
  void tenantId;
});

Deno.test("snapshot: a bad file is refused with what and where, and nothing is kept", async (t) => {
  const { tenancy, d } = warmedUp("tlsf", 5, 1500);
  const good = snapshotDocument(tenancy.takeSnapshot(d.id).content);
  const v1: SnapshotDocument = JSON.parse(Deno.readTextFileSync(V1_FIXTURE));
  const ops = v1.ops!;
  const resealed = (doc: Omit<SnapshotDocument, "crc32">): SnapshotDocument => {
    const { crc32: _, ...body } = doc as SnapshotDocument;
    return { ...body, crc32: crc32(JSON.stringify(body)) } as SnapshotDocument;
  };
  const state = good.state!;
  const junk = Buffer.from(deflateRawSync(new Uint8Array([1, 2, 3]))).toString("base64");
  const other = new Tenancy(new BuddyPageAllocator(FRAMES), "tlsf");
  const u = other.createTenant("u", { maxDomains: 2, maxPages: FRAMES });
  const cases: [string, unknown, RegExp][] = [
    ["not an object", 42, /Not a heapvisor snapshot/],
    ["another format", { ...good, format: "tar" }, /format/],
    ["a newer version", { ...good, version: SNAPSHOT_VERSION + 1 }, /newer than this heapvisor/],
    ["a changed byte", { ...good, heap: { ...good.heap, pages_held: 1 } }, /CRC-32/],
    ["an unknown engine", resealed({ ...good, domain: { ...good.domain, engine: "x" } }), /x/],
    [
      "another engine's state",
      resealed({ ...good, domain: { ...good.domain, engine: "slub" } }),
      /does not read back|not consistent/,
    ],
    [
      "a state that inflates past the limit",
      resealed({ ...good, state: { ...state, engine: zipBomb(SNAPSHOT_STATE_MAX_BYTES + 1) } }),
      /state\.engine does not inflate: .*(larger|length|Cannot create a Buffer)/i,
    ],
    [
      "a machine of two billion order-0 blocks",
      resealed({ ...good, machine: { frames: 2 ** 31, max_order: 0 } }),
      /is not a machine heapvisor builds/,
    ],
    [
      "an engine state of another layout",
      resealed({ ...good, state: { ...state, layout: 2 } }),
      /tlsf state is of layout 2; this heapvisor reads layout 1/,
    ],
    [
      "a state that is not deflated",
      resealed({ ...good, state: { ...state, engine: "AAAA" } }),
      /does not inflate/,
    ],
    [
      "an engine state cut short",
      resealed({ ...good, state: { ...state, engine: junk } }),
      /does not read back/,
    ],
    [
      "heap figures that differ",
      resealed({ ...good, heap: { ...good.heap, pages_held: good.heap.pages_held + 1 } }),
      /does not rebuild its heap: pages_held/,
    ],
    [
      "a block the engine does not hold",
      resealed({ ...good, blocks: [[good.blocks[0]![0] + 8, 8, 0], ...good.blocks.slice(1)] }),
      /is not live in its engine's state/,
    ],
    [
      "a block list that differs",
      resealed({ ...good, blocks: good.blocks.slice(1) }),
      /does not rebuild its heap: .*live_blocks/,
    ],
    ["version 1: an unknown op", resealed({ ...v1, ops: [["z", 1], ...ops] }), /ops\[0\].*"z"/],
    [
      "version 1: a vCPU the domain lacks",
      resealed({ ...v1, ops: [...ops.slice(0, 3), ["a", 8, 1, 9], ...ops.slice(3)] }),
      /ops\[3\].*vcpu < 2/,
    ],
    [
      "version 1: a history that builds another heap",
      resealed({ ...v1, ops: ops.slice(0, -1) }),
      /does not rebuild its heap|refused on replay|page response/,
    ],
    [
      "version 1: page answers cut short",
      resealed({ ...v1, page_responses: v1.page_responses!.slice(0, 3) }),
      /ran out of page responses/,
    ],
  ];
  for (const [what, doc, message] of cases) {
    await t.step(what, () => {
      const free = other.snapshots().length;
      assert.throws(
        () => other.importSnapshot(u.id, parseSnapshotDocument(doc)),
        (e: unknown) => e instanceof SnapshotError && message.test(e.message),
      );
      assert.equal(other.snapshots().length, free, "nothing kept");
      assert.equal(other.domains().length, 0);
    });
  }
});

Deno.test("snapshot: a machine without room refuses the restore and nothing changes", () => {
  const { tenancy: source, d } = warmedUp("tlsf");
  const content = source.takeSnapshot(d.id).content;
  const frames = Math.floor(content.heap.pages_held / 2); // fewer than the heap holds
  const pages = new BuddyPageAllocator(frames);
  const small = new Tenancy(pages, "tlsf");
  const t = small.createTenant("t", { maxDomains: 2, maxPages: 1 << 20 });
  const snap = small.importSnapshot(t.id, content);
  assert.throws(
    () => small.restoreDomain(t.id, { name: "f", fromSnapshot: snap.id }),
    MachineFullError,
  );
  assert.equal(pages.freeFrameCount, frames);
  assert.deepEqual(pages.check(), []);
  assert.equal(small.domains().length, 0);
  // The next domain still gets id 1: a refused restore uses no id.
  assert.equal(small.createDomain(t.id, { name: "x", vcpus: 1, maxPages: 8 }).id, 1);
});

Deno.test("snapshot: on another engine, the same live blocks; all or nothing", () => {
  const { pages, tenancy, tenantId, d } = warmedUp("tlsf", 9, 2000);
  const snap = tenancy.takeSnapshot(d.id);
  const { domain, moved, unserved } = tenancy.startFromSnapshot(tenantId, {
    name: "slubbed",
    fromSnapshot: snap.id,
    engine: "slub",
  });
  const blocks = snap.content.blocks;
  assert.equal(unserved, 0);
  assert.equal(moved!.length, blocks.length);
  moved!.forEach(([from, to], i) => {
    assert.equal(from, blocks[i]![0]);
    assert.equal(domain.requestedBytesAt(to), blocks[i]![1]);
  });
  assert.equal(domain.reservedPages, 7);
  assert.deepEqual(domain.stats().ops, { allocs: 0, frees: 0, reallocs: 0, failed: 0 });
  // A quota too small for the blocks: refused, nothing held, no id used.
  const free = pages.freeFrameCount;
  const next = tenancy.createDomain(tenantId, { name: "probe", vcpus: 1, maxPages: 1 }).id;
  tenancy.destroyDomain(next);
  assert.throws(
    () =>
      tenancy.startFromSnapshot(tenantId, {
        name: "small",
        fromSnapshot: snap.id,
        engine: "buddy",
        maxPages: 64,
      }),
    (e: unknown) => e instanceof MachineFullError && /cannot (serve|reserve)/.test(e.message),
  );
  assert.equal(pages.freeFrameCount, free);
  assert.equal(tenancy.createDomain(tenantId, { name: "x", vcpus: 1, maxPages: 8 }).id, next + 1);
  assert.throws(
    () =>
      tenancy.startFromSnapshot(tenantId, {
        name: "few",
        fromSnapshot: snap.id,
        engine: "slub",
        vcpus: 1,
      }),
    /vcpus must be at least 2, not 1/,
  );
});

Deno.test("snapshot: restore options the heap cannot take are RangeErrors; limits hold", () => {
  const { tenancy, tenantId, d } = warmedUp("slub", 3, 1000);
  const snap = tenancy.takeSnapshot(d.id);
  const restore = (o: object) =>
    tenancy.restoreDomain(tenantId, { name: "f", fromSnapshot: snap.id, ...o });
  assert.throws(() => restore({ engine: "tlsf" }), /restores into slub, not tlsf/);
  assert.throws(() => restore({ vcpus: 4 }), /vcpus must be 2, not 4/);
  assert.throws(() => restore({ maxPages: 1 }), /max_pages/);
  assert.throws(() => restore({ fromSnapshot: 99 }), NotFoundError);
  const other = tenancy.createTenant("other", { maxDomains: 1, maxPages: 100 });
  assert.throws(
    () => tenancy.restoreDomain(other.id, { name: "f", fromSnapshot: snap.id }),
    NotFoundError,
    "another tenant's snapshot is not found",
  );
  for (let i = tenancy.snapshots(tenantId).length; i < SNAPSHOTS_PER_TENANT_MAX; i++) {
    tenancy.takeSnapshot(d.id);
  }
  assert.throws(() => tenancy.takeSnapshot(d.id), /keeps 64, the most allowed/);
  tenancy.deleteSnapshot(snap.id);
  assert.throws(() => tenancy.snapshot(snap.id), NotFoundError);
  tenancy.takeSnapshot(d.id);
});

Deno.test("control plane: snapshot, export, import and fork over the API, journaled", async (t) => {
  const dir = Deno.makeTempDirSync();
  const path = `${dir}/journal.db`;
  const journal = new Journal(path);
  const hv = new Hypervisor({ engine: "tlsf", machineBytes: MiB(64) });
  const { app } = createControlPlane(hv, { adminToken: ADMIN_TOKEN, journal });
  const plane = { hv, app };
  const a = await createTenant(plane, "acme");
  const b = await createTenant(plane, "bravo");
  const src = await createDomain(plane, a.token, { name: "warm", vcpus: 2, engine: "buddy" });
  const ops = Array.from({ length: 300 }, (_, i) => ({
    op: "alloc",
    size: 1 + ((i * 977) % 5000),
    vcpu: i % 2,
  }));
  const batch = ok<{ addresses: number[] }>(
    await call(app, "POST", `/v1/domains/${src}/batch`, { token: a.token, body: { ops } }),
  );
  for (const address of batch.addresses.filter((_, i) => i % 3 === 0)) {
    ok(
      await call(app, "POST", `/v1/domains/${src}/free`, { token: a.token, body: { address } }),
    );
  }

  let snapId = 0;
  await t.step("POST /v1/domains/{id}/snapshot: 201 with what it holds", async () => {
    const s = ok<Record<string, number | string | null>>(
      await call(app, "POST", `/v1/domains/${src}/snapshot`, { token: a.token }),
      201,
    );
    snapId = s.id as number;
    assert.equal(s.source_domain_id, src);
    assert.equal(s.engine, "buddy");
    assert.equal(s.version, 2);
    assert.ok((s.state_bytes as number) > 0);
    assert.equal(s.live_blocks, 200);
    const list = ok<{ id: number }[]>(await call(app, "GET", "/v1/snapshots", { token: a.token }));
    assert.deepEqual(list.map((x) => x.id), [snapId]);
    assert.deepEqual(ok(await call(app, "GET", "/v1/snapshots", { token: b.token })), []);
    assertError(
      await call(app, "GET", `/v1/snapshots/${snapId}`, { token: b.token }),
      404,
      "not_found",
    );
  });

  let forkId = 0;
  await t.step("POST /v1/domains with from_snapshot: the same blocks", async () => {
    const f = ok<{ id: number; live_blocks: number; pages_held: number; engine: string }>(
      await call(app, "POST", "/v1/domains", {
        token: a.token,
        body: { name: "fork", from_snapshot: snapId },
      }),
      201,
    );
    forkId = f.id;
    assert.equal(f.engine, "buddy");
    assert.deepEqual(heapOf(hv.tenancy.domain(forkId)), heapOf(hv.tenancy.domain(src)));
    // Freeing a block by the source's address works in the copy.
    const address = batch.addresses[1]!;
    const r = ok<{ ok: boolean }>(
      await call(app, "POST", `/v1/domains/${forkId}/free`, { token: a.token, body: { address } }),
    );
    assert.equal(r.ok, true);
    assertError(
      await call(app, "POST", "/v1/domains", {
        token: b.token,
        body: { name: "steal", from_snapshot: snapId },
      }),
      404,
      "not_found",
    );
    // Another engine: the same live blocks, laid out its way, and where each went.
    const moved = ok<{ id: number; engine: string; live_blocks: number; moved: number[][] }>(
      await call(app, "POST", "/v1/domains", {
        token: a.token,
        body: { name: "other", from_snapshot: snapId, engine: "tlsf" },
      }),
      201,
    );
    const source = hv.tenancy.domain(src).snapshotContent();
    assert.equal(moved.engine, "tlsf");
    assert.equal(moved.live_blocks, source.blocks.length);
    assert.deepEqual(moved.moved.map(([from]) => from), source.blocks.map(([at]) => at));
    const [, to] = moved.moved[5]!;
    assert.equal(hv.tenancy.domain(moved.id).requestedBytesAt(to!), source.blocks[5]![1]);
    ok(
      await call(app, "POST", `/v1/domains/${moved.id}/free`, {
        token: a.token,
        body: { address: to },
      }),
    );

    assertError(
      await call(app, "POST", "/v1/domains", { token: a.token, body: { name: "novcpus" } }),
      400,
      "invalid_request",
      /vcpus: required \(unless from_snapshot\)/,
    );
  });

  await t.step("export, then import as another tenant: the same heap again", async () => {
    const reply = await call(app, "GET", `/v1/snapshots/${snapId}/export`, { token: a.token });
    const file = ok<SnapshotDocument>(reply);
    assert.match(reply.headers.get("content-disposition") ?? "", /heapvisor-snapshot-\d+\.json/);
    assert.equal(file.format, "heapvisor-snapshot");
    const imported = ok<{ id: number; source_domain_id: null }>(
      await call(app, "POST", "/v1/snapshots", { token: b.token, body: file }),
      201,
    );
    assert.equal(imported.source_domain_id, null);
    const g = ok<{ id: number }>(
      await call(app, "POST", "/v1/domains", {
        token: b.token,
        body: { name: "copy", from_snapshot: imported.id, max_pages: 8192 },
      }),
      201,
    );
    assert.deepEqual(heapOf(hv.tenancy.domain(g.id)), heapOf(hv.tenancy.domain(src)));
    const damaged = { ...file, blocks: file.blocks.slice(1) };
    const before = hv.tenancy.snapshots().length;
    assertError(
      await call(app, "POST", "/v1/snapshots", { token: b.token, body: damaged }),
      422,
      "invalid_snapshot",
      /CRC-32 mismatch/,
    );
    assertError(
      await call(app, "POST", "/v1/snapshots", { token: ADMIN_TOKEN, body: file }),
      400,
      "invalid_request",
      /tenant_id/,
    );
    assert.equal(hv.tenancy.snapshots().length, before);
    const del = await call(app, "DELETE", `/v1/snapshots/${imported.id}`, { token: b.token });
    assert.equal(del.status, 204);
  });

  await t.step("a restart rebuilds snapshots and forks exactly from the journal", () => {
    journal.close();
    const again = new Hypervisor({ engine: "tlsf", machineBytes: MiB(64) });
    const reopened = new Journal(path);
    reopened.replay(again.tenancy, again.pages);
    reopened.close();
    const ids = (x: Hypervisor) => x.tenancy.domains().map((d) => d.id);
    assert.deepEqual(ids(again), ids(hv));
    for (const d of hv.tenancy.domains()) {
      assert.deepEqual(again.tenancy.domain(d.id).stats(), d.stats(), `domain ${d.id}`);
      assert.deepEqual(heapOf(again.tenancy.domain(d.id)), heapOf(d), `domain ${d.id}`);
    }
    assert.deepEqual(
      again.tenancy.snapshots().map((s) => s.id),
      hv.tenancy.snapshots().map((s) => s.id),
    );
    assert.deepEqual(again.pages.stats(), hv.pages.stats());
    void forkId;
  });
  Deno.removeSync(dir, { recursive: true });
});

Deno.test("control plane: a start the machine cannot back is 507 machine_full, and a replay makes the same calls", async () => {
  const dir = await Deno.makeTempDir({ prefix: "heapvisor-snapshot-" });
  try {
    const journal = new Journal(`${dir}/journal.db`);
    const hv = new Hypervisor({ engine: "tlsf", machineBytes: MiB(4) });
    const { app } = createControlPlane(hv, { adminToken: ADMIN_TOKEN, journal });
    const plane = { hv, app };
    const a = await createTenant(plane, "acme");
    const src = await createDomain(plane, a.token, { max_pages: 1000 });
    for (let i = 0; i < 700; i++) {
      const r = await call(plane.app, "POST", `/v1/domains/${src}/alloc`, {
        token: a.token,
        body: { size: 4000 },
      });
      if (r.status !== 201) break;
    }
    const snap = ok<{ id: number }>(
      await call(plane.app, "POST", `/v1/domains/${src}/snapshot`, { token: a.token }),
      201,
    );
    const free = plane.hv.pages.freeFrameCount;
    for (const engine of [undefined, "buddy"]) {
      assertError(
        await call(plane.app, "POST", "/v1/domains", {
          token: a.token,
          body: { name: "fork", from_snapshot: snap.id, ...(engine ? { engine } : {}) },
        }),
        507,
        "machine_full",
        /cannot (back the snapshot's heap|serve the snapshot's block)/,
      );
      assert.equal(plane.hv.pages.freeFrameCount, free, "nothing is held");
      assert.equal(plane.hv.tenancy.domains().length, 1);
    }
    // The refused starts asked the machine for pages (its counters moved): a replay of
    // the journal makes the same calls, and the machine is the same, byte for byte.
    const again = new Hypervisor({ engine: "tlsf", machineBytes: MiB(4) });
    const reopened = new Journal(`${dir}/journal.db`);
    reopened.replay(again.tenancy, again.pages);
    const bytes = (x: Hypervisor) => {
      const w = new StateWriter();
      x.pages.saveState(w);
      return w.bytes();
    };
    assert.deepEqual(again.pages.stats(), hv.pages.stats());
    assert.deepEqual(bytes(again), bytes(hv));
    reopened.close();
    journal.close();
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
