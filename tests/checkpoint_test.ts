/**
 * Checkpoints: the journal saves the whole state now and then and drops the rows
 * before it; a restart loads the checkpoint and replays the rows after it, and the
 * result is the state an uninterrupted service holds, to the byte.
 */
import assert from "node:assert/strict";
import { mock } from "node:test";
import { DatabaseSync } from "node:sqlite";
import { Hypervisor } from "../hypervisor/hypervisor.ts";
import { createControlPlane } from "../hypervisor/control_plane/app.ts";
import { ControlPlaneClient } from "../guests/client.ts";
import { Journal, JournalError } from "../hypervisor/journal.ts";
import { ENGINE_NAMES } from "../hypervisor/xmalloc/registry.ts";
import { Prng } from "../src/prng.ts";
import { MiB } from "../src/units.ts";
import { StateWriter } from "../src/state_codec.ts";
import type { BatchOp, SnapshotDocument } from "../guests/client.ts";

const ADMIN = "admin-token-0123456789abcdef";
const V1_FIXTURE = new URL("./fixtures/snapshots/warm-tlsf-v1.json", import.meta.url).pathname;

function machine(): Hypervisor {
  return new Hypervisor({ engine: "tlsf", machineBytes: MiB(64) });
}

/** Everything a client or the admin can see, and the machine's exact state. */
async function everything(hv: Hypervisor, admin: ControlPlaneClient) {
  const w = new StateWriter();
  hv.pages.saveState(w);
  return {
    stats: await admin.stats(),
    tenants: await admin.tenants(),
    snapshots: await admin.snapshots(),
    machine: w.bytes(),
  };
}

/**
 * A seeded load through the API: tenants with tokens, a domain of every engine with
 * 2 or 4 vCPUs, batches with virtual times (lock state), reservations, a snapshot and
 * a fork, a version-1 file imported and restored, a domain destroyed.
 */
async function load(admin: ControlPlaneClient, seed: number, rounds: number) {
  const rng = new Prng(seed);
  const a = await admin.createTenant({ name: "a", max_domains: 12, max_pages: 60_000 });
  const b = await admin.createTenant({ name: "b", max_domains: 4, max_pages: 8_192 });
  const ta = admin.withToken(a.token);
  const ids: number[] = [];
  for (const engine of ENGINE_NAMES) {
    const vcpus = engine === "slub" ? 4 : 2;
    ids.push((await ta.createDomain({ name: engine, vcpus, max_pages: 4096, engine })).id);
  }
  const live = new Map<number, number[]>(ids.map((id) => [id, []]));
  let clock = 0;
  for (let round = 0; round < rounds; round++) {
    for (const id of ids) {
      const mine = live.get(id)!;
      const ops: BatchOp[] = [];
      const frees = new Set<number>();
      for (let i = 0; i < 40; i++) {
        clock += 1 + rng.index(300);
        const vcpu = rng.index(2);
        if (mine.length > frees.size && rng.nextFloat() < 0.4) {
          const k = rng.index(mine.length);
          if (!frees.has(k)) {
            frees.add(k);
            ops.push({ op: "free", address: mine[k]!, vcpu, at_cycles: clock });
            continue;
          }
        }
        const size = rng.nextFloat() < 0.3 ? 3900 + rng.index(400) : 1 + rng.index(2500);
        ops.push({ op: "alloc", size, vcpu, at_cycles: clock });
      }
      const r = await ta.batch(id, ops);
      const kept = mine.filter((_, k) => !frees.has(k));
      ops.forEach((op, i) => {
        if (op.op === "alloc" && r.addresses[i]! !== 0) kept.push(r.addresses[i]!);
      });
      live.set(id, kept);
    }
    if (round === 2) await ta.reserve(ids[0]!, { pages: 9 });
    if (round === 3) {
      const snap = await ta.snapshot(ids[2]!);
      const fork = await ta.createDomain({ name: "fork", from_snapshot: snap.id });
      ids.push(fork.id);
      live.set(fork.id, [...live.get(ids[2]!)!]);
    }
    if (round === 4) {
      const file: SnapshotDocument = JSON.parse(Deno.readTextFileSync(V1_FIXTURE));
      const imported = await admin.importSnapshot(file, b.id);
      await admin.withToken(b.token).createDomain({ name: "old", from_snapshot: imported.id });
    }
    if (round === 5) {
      await ta.destroyDomain(ids[1]!);
      live.delete(ids[1]!);
      ids.splice(1, 1);
    }
  }
  return { a, b, ids, live };
}

Deno.test("checkpoint: a restart from a checkpoint and the rows after it is the same state, to the byte", async () => {
  const dir = await Deno.makeTempDir({ prefix: "heapvisor-checkpoint-" });
  try {
    const path = `${dir}/journal.db`;
    const hv = machine();
    const journal = new Journal(path);
    const { app, tokens } = createControlPlane(hv, {
      adminToken: ADMIN,
      journal,
      checkpointEvery: 700,
    });
    const admin = ControlPlaneClient.inProcess(app, ADMIN);
    const { a, b } = await load(admin, 7, 9);
    const before = await everything(hv, admin);
    const rowsWritten = journal.length;
    const checkpointSeq = journal.checkpointSeq;
    assert.ok(checkpointSeq > 0, "no checkpoint was taken: the test tests nothing");

    const db = new DatabaseSync(path);
    const left = db.prepare("SELECT count(*) AS n FROM ops").get() as { n: number };
    const kept = db.prepare("SELECT count(*) AS n FROM checkpoints").get() as { n: number };
    db.close();
    assert.equal(left.n, rowsWritten - checkpointSeq, "the rows up to the checkpoint are gone");
    assert.equal(kept.n, 1, "one checkpoint is kept");

    const again = machine();
    const reopened = new Journal(path);
    // In process, without a journal: the original still writes to this one.
    const restoredTokens = createControlPlane(again, { adminToken: ADMIN });
    const summary = reopened.replay(again.tenancy, again.pages, (tenant, hash) => {
      if (hash === null) restoredTokens.tokens.revokeTenant(tenant);
      else restoredTokens.tokens.restoreTenantTokenHash(tenant, hash);
    });
    assert.equal(summary.checkpoint, checkpointSeq);
    assert.equal(reopened.length, rowsWritten, "rows go on from where they were, not from 1");
    const adminAgain = ControlPlaneClient.inProcess(restoredTokens.app, ADMIN);
    assert.deepEqual(await everything(again, adminAgain), before);
    for (const t of [a, b]) {
      assert.equal(
        restoredTokens.tokens.tenantTokenHash(t.id),
        tokens.tenantTokenHash(t.id),
        "token hashes come back from the checkpoint",
      );
    }
    // Both go on the same way: the same calls, the same answers.
    const go = async (c: ControlPlaneClient) => {
      const t = c.withToken(a.token);
      const out = [];
      for (const d of await t.domains()) {
        out.push(
          await t.batch(d.id, [
            { op: "alloc", size: 5000, vcpu: 1, at_cycles: 10_000_000 },
            { op: "alloc", size: 64, vcpu: 0, at_cycles: 10_000_100 },
            { op: "free", ref: 1, vcpu: 0, at_cycles: 10_000_200 },
          ]),
        );
      }
      return [out, await c.stats()];
    };
    assert.deepEqual(await go(adminAgain), await go(admin));
    reopened.close();
    journal.close();
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("checkpoint: a damaged checkpoint stops the start, naming it, and nothing is loaded", async () => {
  const dir = await Deno.makeTempDir({ prefix: "heapvisor-checkpoint-" });
  try {
    const path = `${dir}/journal.db`;
    const hv = machine();
    const journal = new Journal(path);
    const { app } = createControlPlane(hv, { adminToken: ADMIN, journal, checkpointEvery: 200 });
    await load(ControlPlaneClient.inProcess(app, ADMIN), 3, 3);
    const seq = journal.checkpointSeq;
    assert.ok(seq > 0);
    journal.close();
    const db = new DatabaseSync(path);
    const row = db.prepare("SELECT state FROM checkpoints").get() as { state: Uint8Array };
    const damaged = new Uint8Array(row.state);
    damaged[damaged.length >> 1]! ^= 0x40;
    db.prepare("UPDATE checkpoints SET state = ?").run(damaged);
    db.close();
    const again = machine();
    const reopened = new Journal(path);
    assert.throws(
      () => reopened.replay(again.tenancy, again.pages),
      (e: unknown) =>
        e instanceof JournalError &&
        new RegExp(`checkpoint after row ${seq}: CRC mismatch`).test(e.message),
    );
    assert.equal(again.tenancy.tenants().length, 0, "nothing was loaded");
    assert.equal(again.pages.freeFrameCount, machine().pages.freeFrameCount);
    reopened.close();
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("checkpoint: the journal's rows stay bounded by the checkpoint interval", async () => {
  const dir = await Deno.makeTempDir({ prefix: "heapvisor-checkpoint-" });
  try {
    const rowsLeft = async (checkpointEvery: number) => {
      const path = `${dir}/j${checkpointEvery}.db`;
      const journal = new Journal(path);
      const { app } = createControlPlane(machine(), {
        adminToken: ADMIN,
        journal,
        checkpointEvery,
      });
      await load(ControlPlaneClient.inProcess(app, ADMIN), 5, 8);
      const total = journal.length;
      journal.close();
      const db = new DatabaseSync(path);
      const left = (db.prepare("SELECT count(*) AS n FROM ops").get() as { n: number }).n;
      db.close();
      return { total, left };
    };
    const never = await rowsLeft(0);
    const often = await rowsLeft(300);
    assert.equal(never.left, never.total, "without checkpoints every row stays");
    assert.equal(often.total, never.total);
    // A row holds at most one batch of 40 operations: 300 operations are < 9 rows.
    assert.ok(often.left < 9, `${often.left} rows left after checkpoints every 300 operations`);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("checkpoint: operations since the last checkpoint count across restarts", async () => {
  const dir = await Deno.makeTempDir({ prefix: "heapvisor-checkpoint-" });
  try {
    const path = `${dir}/journal.db`;
    const run = async (batches: number, first: boolean) => {
      const hv = machine();
      const journal = new Journal(path);
      const plane = createControlPlane(hv, { adminToken: ADMIN, journal, checkpointEvery: 500 });
      const summary = journal.replay(hv.tenancy, hv.pages, (t, h) => {
        if (h !== null) plane.tokens.restoreTenantTokenHash(t, h);
      });
      const admin = ControlPlaneClient.inProcess(plane.app, ADMIN);
      if (first) {
        const t = await admin.createTenant({ name: "a", max_domains: 1, max_pages: 4096 });
        await admin.withToken(t.token).createDomain({ name: "d", vcpus: 1, max_pages: 4096 });
      }
      for (let b = 0; b < batches; b++) {
        await admin.batch(1, [{ op: "alloc", size: 64 }, { op: "free", ref: 0 }]);
      }
      const seen = {
        replayed: summary.ops,
        since: journal.opsSinceCheckpoint,
        at: journal.checkpointSeq,
      };
      journal.close();
      return seen;
    };
    const first = await run(150, true); // 300 memory operations (+3): under 500
    assert.equal(first.at, 0, "no checkpoint yet");
    const second = await run(150, false); // 300 more: over 500 in all
    assert.equal(second.replayed, first.since, "the replay counts what the first run logged");
    assert.ok(second.at > 0, "the count went on across the restart, and a checkpoint was taken");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("checkpoint: a failed checkpoint loses nothing, the request succeeds, and it is retried later", async () => {
  const dir = await Deno.makeTempDir({ prefix: "heapvisor-checkpoint-" });
  const errors = mock.method(console, "error", () => {});
  try {
    const journal = new Journal(`${dir}/journal.db`);
    const real = journal.checkpoint.bind(journal);
    let calls = 0;
    const checkpoint = mock.method(
      journal,
      "checkpoint",
      (...args: Parameters<Journal["checkpoint"]>) => {
        calls++;
        if (calls === 1) throw new Error("database or disk is full");
        return real(...args);
      },
    );
    const { app } = createControlPlane(machine(), {
      adminToken: ADMIN,
      journal,
      checkpointEvery: 100,
    });
    const admin = ControlPlaneClient.inProcess(app, ADMIN);
    const t = await admin.createTenant({ name: "a", max_domains: 1, max_pages: 4096 });
    await admin.withToken(t.token).createDomain({ name: "d", vcpus: 1, max_pages: 4096 });
    const batch: BatchOp[] = Array.from({ length: 60 }, () => ({ op: "alloc" as const, size: 64 }));
    await admin.batch(1, batch); // 63 operations logged
    assert.equal(calls, 0);
    const r = await admin.batch(1, batch); // 123: a checkpoint is due, and fails
    assert.equal(r.served, 60, "the request that triggered the failed checkpoint succeeded");
    assert.equal(calls, 1);
    assert.equal(journal.checkpointSeq, 0, "nothing was checkpointed");
    assert.match(
      String(errors.mock.calls.at(-1)?.arguments[0]),
      /checkpoint failed \(retried later\): database or disk is full/,
    );
    await admin.batch(1, batch); // 183: not yet retried (next try at 223)
    assert.equal(calls, 1);
    await admin.batch(1, batch); // 243: retried, and it works
    assert.equal(calls, 2);
    assert.equal(journal.checkpointSeq, journal.length);
    assert.equal(journal.opsSinceCheckpoint, 0);
    checkpoint.mock.restore();
    journal.close();
  } finally {
    errors.mock.restore();
    await Deno.remove(dir, { recursive: true });
  }
});
