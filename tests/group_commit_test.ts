/**
 * Group commit: the changes of the requests handled in one turn of the event loop are
 * journaled together (one transaction, one fsync), each request answers only once its
 * row is durable, a read waits for the rows in flight, and a failed commit fails every
 * request in it.
 */
import assert from "node:assert/strict";
import { mock } from "node:test";
import { Hypervisor } from "../hypervisor/hypervisor.ts";
import { createControlPlane } from "../hypervisor/control_plane/app.ts";
import { Journal } from "../hypervisor/journal.ts";
import { MiB } from "../src/units.ts";
import { ControlPlaneClient, ControlPlaneError } from "../guests/client.ts";

const ADMIN = "admin-token-0123456789abcdef";

async function plane(dir: string) {
  const journal = new Journal(`${dir}/journal.db`);
  const hv = new Hypervisor({ engine: "tlsf", machineBytes: MiB(64) });
  const { app } = createControlPlane(hv, { adminToken: ADMIN, journal });
  const admin = ControlPlaneClient.inProcess(app, ADMIN);
  const t = await admin.createTenant({ name: "a", max_domains: 1, max_pages: 4096 });
  const client = admin.withToken(t.token);
  await client.createDomain({ name: "d", vcpus: 2, max_pages: 4096 });
  return { journal, hv, client };
}

Deno.test("group commit: concurrent requests share one transaction, in order, each answered when durable", async () => {
  const dir = await Deno.makeTempDir({ prefix: "heapvisor-group-" });
  try {
    const { journal, client } = await plane(dir);
    const appended: number[] = [];
    const original = journal.appendRows.bind(journal);
    const appendRows = mock.method(journal, "appendRows", (
      rows: Parameters<Journal["appendRows"]>[0],
    ) => {
      appended.push(rows.length);
      original(rows);
    });
    const before = journal.length;
    const answers = await Promise.all(
      Array.from({ length: 8 }, (_, i) => client.alloc(1, { size: 100 + i, vcpu: i % 2 })),
    );
    assert.deepEqual(appended, [8], "eight requests, one append of eight rows");
    assert.equal(journal.length, before + 8);
    // In the order the model saw them: the journal replays to the same addresses.
    const logged = [...journal.entries()].slice(-8);
    assert.deepEqual(
      logged.map((op) => (op as { size: number }).size),
      answers.map((_, i) => 100 + i),
    );
    // One request alone is its own transaction, answered at once.
    await client.alloc(1, { size: 64 });
    assert.deepEqual(appended, [8, 1]);
    appendRows.mock.restore();
    journal.close();
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("group commit: a read waits for the rows in flight, and shows what they did", async () => {
  const dir = await Deno.makeTempDir({ prefix: "heapvisor-group-" });
  try {
    const { journal, client, hv } = await plane(dir);
    let durableRows = journal.length;
    let appended = 0;
    const original = journal.appendRows.bind(journal);
    const appendRows = mock.method(journal, "appendRows", (
      rows: Parameters<Journal["appendRows"]>[0],
    ) => {
      original(rows);
      appended++;
      durableRows = journal.length;
    });
    const alloc = client.alloc(1, { size: 5000 });
    // Wait (in microtasks only: the commit is a later task) until the model holds the
    // allocation but the journal does not yet; then read.
    for (let i = 0; i < 10_000 && hv.tenancy.domain(1).stats().ops.allocs === 0; i++) {
      await Promise.resolve();
    }
    assert.equal(hv.tenancy.domain(1).stats().ops.allocs, 1, "the allocation is in the model");
    assert.ok(durableRows < journal.length + 1 && appended === 0, "and not yet in the journal");
    const read = client.domain(1).then((d) => ({ d, durableRows }));
    const [, seen] = await Promise.all([alloc, read]);
    assert.equal(seen.d.ops.allocs, 1, "the read shows the allocation");
    assert.equal(seen.durableRows, journal.length, "and it was durable when the read answered");
    appendRows.mock.restore();
    journal.close();
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("group commit: a commit that fails fails every request in it with 503, and later changes", async () => {
  const dir = await Deno.makeTempDir({ prefix: "heapvisor-group-" });
  const errors = mock.method(console, "error", () => {});
  try {
    const { journal, client } = await plane(dir);
    const appendRows = mock.method(journal, "appendRows", () => {
      throw new Error("database or disk is full");
    });
    const outcomes = await Promise.allSettled(
      Array.from({ length: 4 }, () => client.alloc(1, { size: 64 })),
    );
    for (const o of outcomes) {
      assert.equal(o.status, "rejected");
      const e = (o as PromiseRejectedResult).reason;
      assert.ok(e instanceof ControlPlaneError && e.status === 503, String(e));
      assert.equal((e as ControlPlaneError).code, "journal_unavailable");
      assert.match((e as Error).message, /Not durable, so not done: database or disk is full/);
    }
    assert.equal(appendRows.mock.callCount(), 1, "one commit for the four");
    await assert.rejects(() => client.alloc(1, { size: 64 }), /503 journal_unavailable/);
    assert.equal(appendRows.mock.callCount(), 1, "later changes are refused before the journal");
    assert.equal((await client.domain(1)).ops.allocs, 4, "reads go on (they show memory)");
    appendRows.mock.restore();
    journal.close();
  } finally {
    errors.mock.restore();
    await Deno.remove(dir, { recursive: true });
  }
});
