import assert from "node:assert/strict";
import { DatabaseSync } from "node:sqlite";
import { BuddyPageAllocator } from "../hypervisor/page_allocator.ts";
import { Tenancy } from "../hypervisor/domains.ts";
import {
  applyOp,
  crc32,
  Journal,
  JournalError,
  type JournalOp,
  MIGRATIONS,
  SCHEMA_VERSION,
} from "../hypervisor/journal.ts";
import { ENGINE_NAMES } from "../hypervisor/xmalloc/registry.ts";
import { Prng } from "../src/prng.ts";

const FRAMES = 16_384;

function machine(): { pages: BuddyPageAllocator; tenancy: Tenancy } {
  const pages = new BuddyPageAllocator(FRAMES);
  return { pages, tenancy: new Tenancy(pages, "tlsf") };
}

/**
 * Drive `tenancy` with a seeded mix of every kind of operation, logging each one
 * that returned (as the control plane will), and skipping ones that threw.
 */
function drive(tenancy: Tenancy, journal: Journal, seed: number, count: number): void {
  const rng = new Prng(seed);
  const ack = (op: JournalOp) => {
    try {
      applyOp(tenancy, op);
    } catch {
      return;
    }
    journal.append([op]);
  };
  ack({ kind: "create_tenant", name: "t", max_domains: 8, max_pages: FRAMES });
  ENGINE_NAMES.forEach((engine, i) =>
    ack({
      kind: "create_domain",
      tenant: 1,
      name: `d${i}`,
      vcpus: 2,
      max_pages: 1024,
      engine,
    })
  );
  const live: [number, number][] = [];
  for (let i = 0; i < count; i++) {
    const domain = 1 + rng.index(ENGINE_NAMES.length);
    const r = rng.nextFloat();
    if (r < 0.5 || live.length === 0) {
      const size = 1 + rng.index(r < 0.1 ? 20_000 : 4_200);
      const op: JournalOp = { kind: "allocate", domain, size, align: 1, vcpu: rng.index(2) };
      const res = applyOp(tenancy, op);
      journal.append([op]);
      if (res?.ok) live.push([domain, res.address]);
    } else if (r < 0.9) {
      for (const [d, address] of live.splice(rng.index(live.length), 1)) {
        ack({ kind: "free", domain: d, address, vcpu: rng.index(2) });
      }
    } else if (r < 0.95) {
      ack({ kind: "reserve", domain, pages: 1 + rng.index(8) });
    } else {
      ack({ kind: "unreserve", domain, pages: 1 + rng.index(4) });
    }
  }
}

function figures(tenancy: Tenancy): unknown {
  return tenancy.domains().map((d) => ({ id: d.id, stats: d.stats(), held: d.reservedPages }));
}

Deno.test("journal: replaying the log rebuilds every domain exactly", async (t) => {
  const dir = await Deno.makeTempDir({ prefix: "heapvisor-journal-" });
  try {
    for (const seed of [1, 2, 3]) {
      await t.step(`seed ${seed}`, () => {
        const path = `${dir}/s${seed}.db`;
        const a = machine();
        const journal = new Journal(path);
        drive(a.tenancy, journal, seed, 3_000);
        const logged = journal.length;
        journal.close();

        const b = machine();
        const reopened = new Journal(path);
        assert.equal(reopened.length, logged);
        const summary = reopened.replay(b.tenancy, b.pages);
        reopened.close();
        assert.equal(summary.ops, logged);
        assert.equal(summary.domains, ENGINE_NAMES.length);
        assert.deepEqual(figures(b.tenancy), figures(a.tenancy));
        assert.equal(b.pages.freeFrameCount, a.pages.freeFrameCount);
      });
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("journal: a batch is one transaction and the log keeps appending after reopen", async () => {
  const dir = await Deno.makeTempDir({ prefix: "heapvisor-journal-" });
  try {
    const path = `${dir}/j.db`;
    const j = new Journal(path);
    j.append([
      { kind: "create_tenant", name: "t", max_domains: 1, max_pages: 64 },
      { kind: "create_domain", tenant: 1, name: "d", vcpus: 1, max_pages: 64, engine: "slub" },
    ]);
    j.close();
    const k = new Journal(path);
    k.append([{ kind: "allocate", domain: 1, size: 100, align: 1, vcpu: 0 }]);
    assert.deepEqual([...k.entries()].map((op) => op.kind), [
      "create_tenant",
      "create_domain",
      "allocate",
    ]);
    k.close();
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("journal: a database of an older schema is migrated in place and replays the same", async () => {
  const dir = await Deno.makeTempDir({ prefix: "heapvisor-journal-" });
  try {
    // A journal as an older heapvisor wrote it: the first migrations only.
    const path = `${dir}/old.db`;
    const old = new DatabaseSync(path);
    for (const sql of MIGRATIONS.slice(0, SCHEMA_VERSION - 1)) old.exec(sql);
    old.exec(`PRAGMA user_version = ${SCHEMA_VERSION - 1}`);
    const ops: JournalOp[] = [
      { kind: "create_tenant", name: "t", max_domains: 1, max_pages: 64 },
      { kind: "create_domain", tenant: 1, name: "d", vcpus: 1, max_pages: 64, engine: "tlsf" },
      { kind: "allocate", domain: 1, size: 5000, align: 1, vcpu: 0 },
    ];
    ops.forEach((op, i) => {
      const text = JSON.stringify(op);
      old.prepare("INSERT INTO ops (seq, op, crc) VALUES (?, ?, ?)").run(i + 1, text, crc32(text));
    });
    old.close();
    const j = new Journal(path);
    const m = machine();
    const summary = j.replay(m.tenancy, m.pages);
    assert.equal(summary.ops, 3);
    assert.equal(m.tenancy.domain(1).stats().whole_pages, 2);
    j.append([{
      kind: "free",
      domain: 1,
      address: m.tenancy.domain(1).snapshotContent().blocks[0]![0],
      vcpu: 0,
    }]);
    j.close();
    const check = new DatabaseSync(path);
    const v = check.prepare("PRAGMA user_version").get() as { user_version: number };
    check.close();
    assert.equal(v.user_version, SCHEMA_VERSION, "migrated to the current schema");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("journal: a corrupt, gapped, foreign or newer log is refused, naming the row", async (t) => {
  const dir = await Deno.makeTempDir({ prefix: "heapvisor-journal-" });
  const seeded = (name: string) => {
    const path = `${dir}/${name}.db`;
    const j = new Journal(path);
    const m = machine();
    drive(m.tenancy, j, 7, 50);
    j.close();
    return path;
  };
  const replayInto = (path: string) => {
    const j = new Journal(path);
    try {
      const m = machine();
      j.replay(m.tenancy, m.pages);
      return m;
    } finally {
      j.close();
    }
  };
  try {
    await t.step("a row whose body changed fails its CRC", () => {
      const path = seeded("crc");
      const db = new DatabaseSync(path);
      db.exec(`UPDATE ops SET op = replace(op, '"vcpu":0', '"vcpu":1') WHERE seq = (
        SELECT min(seq) FROM ops WHERE op LIKE '%"vcpu":0%')`);
      db.close();
      assert.throws(() => replayInto(path), /Journal row \d+: CRC mismatch/);
    });
    await t.step("a missing row is a gap", () => {
      const path = seeded("gap");
      const db = new DatabaseSync(path);
      db.exec("DELETE FROM ops WHERE seq = 5");
      db.close();
      assert.throws(() => replayInto(path), /row 5 is missing \(next is 6\)/);
    });
    await t.step("a body with a good CRC but a bad field is named", () => {
      const path = seeded("field");
      const text = JSON.stringify({ kind: "free", domain: 1, address: "x", vcpu: 0 });
      const db = new DatabaseSync(path);
      db.prepare("UPDATE ops SET op = ?, crc = ? WHERE seq = 3").run(text, crc32(text));
      db.close();
      assert.throws(() => replayInto(path), /Journal row 3: free has a bad address/);
    });
    await t.step("an operation the model refuses stops the replay", () => {
      const path = seeded("refused");
      const j = new Journal(path);
      j.append([{ kind: "free", domain: 1, address: 12345, vcpu: 0 }]);
      const n = j.length;
      j.close();
      assert.throws(() => replayInto(path), new RegExp(`Journal row ${n}: free was refused`));
    });
    await t.step("a file that is not SQLite", async () => {
      const path = `${dir}/garbage.db`;
      await Deno.writeTextFile(path, "this is not a database ".repeat(200));
      assert.throws(() => new Journal(path), JournalError);
    });
    await t.step("a truncated database file", async () => {
      const path = seeded("truncated");
      const bytes = await Deno.readFile(path);
      await Deno.writeFile(path, bytes.subarray(0, Math.floor(bytes.length / 2)));
      for (const side of ["-wal", "-shm"]) await Deno.remove(path + side).catch(() => {});
      assert.throws(() => replayInto(path), JournalError);
    });
    await t.step("a schema newer than this heapvisor's", () => {
      const path = seeded("newer");
      const db = new DatabaseSync(path);
      db.exec(`PRAGMA user_version = ${SCHEMA_VERSION + 1}`);
      db.close();
      assert.throws(() => new Journal(path), /schema version \d+ is newer/);
    });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("journal: when appending fails the request gets 503 and later changes are refused", async () => {
  const { Hypervisor } = await import("../hypervisor/hypervisor.ts");
  const { createControlPlane } = await import("../hypervisor/control_plane/app.ts");
  const hv = new Hypervisor({ engine: "tlsf", machineBytes: 64 * 1024 * 1024 });
  const journal = new Journal(":memory:");
  const admin = "admin-token-0123456789";
  const { app } = createControlPlane(hv, { adminToken: admin, journal });
  const post = (path: string, body: unknown) =>
    app.request(path, {
      method: "POST",
      headers: { authorization: `Bearer ${admin}`, "content-type": "application/json" },
      body: JSON.stringify(body),
    });
  const ok = await post("/v1/tenants", { name: "t", max_domains: 1, max_pages: 64 });
  assert.equal(ok.status, 201);
  assert.deepEqual([...journal.entries()].map((op) => op.kind), ["create_tenant", "tenant_token"]);
  assert.ok(
    [...journal.entries()].every((op) => !JSON.stringify(op).includes("hvt_")),
    "the journal keeps token hashes, never tokens",
  );
  journal.close(); // every append fails from now on, as on a full or read-only disk
  const refused = await post("/v1/tenants", { name: "u", max_domains: 1, max_pages: 64 });
  assert.equal(refused.status, 503);
  assert.equal((await refused.json()).error.code, "journal_unavailable");
  const later = await post("/v1/tenants", { name: "v", max_domains: 1, max_pages: 64 });
  assert.equal(later.status, 503);
  assert.match((await later.json()).error.message, /refused until a restart/);
  assert.equal(hv.tenancy.tenants().length, 2, "the later change did not reach the model");
  const read = await app.request("/v1/tenants", { headers: { authorization: `Bearer ${admin}` } });
  assert.equal(read.status, 200, "reads still work");
});

Deno.test("journal: crc32 is the IEEE CRC-32 (check value of 123456789)", () => {
  assert.equal(crc32("123456789"), 0xcbf43926);
  assert.equal(crc32(""), 0);
});

Deno.test("journal: closing twice is harmless", () => {
  const j = new Journal(":memory:");
  j.close();
  assert.doesNotThrow(() => j.close());
});
