/**
 * The typed client gives the same answers in process and over HTTP: one scripted
 * single-vCPU sequence runs through `ControlPlaneClient.inProcess(app)` and through
 * `ControlPlaneClient.overHttp` (Deno.serve on a loopback port chosen by the OS) on
 * two fresh identical hypervisors; the transcripts (addresses, steps, cycles, causes,
 * errors, stats JSON, metrics text) and the machines afterwards are identical.
 */

import assert from "node:assert/strict";
import { ControlPlaneClient, ControlPlaneError } from "../guests/client.ts";
import { ENGINE_NAMES } from "../hypervisor/xmalloc/registry.ts";
import { PAGE_SIZE_BYTES } from "../src/units.ts";
import { ADMIN_TOKEN, assertInvariants, freshPlane, type Plane } from "./control_plane_harness.ts";

type Entry = { call: string; result?: unknown; error?: { status: number; code: string } };

/** Run `fn`, recording its result or its ControlPlaneError (anything else is rethrown). */
async function record(log: Entry[], call: string, fn: () => Promise<unknown>): Promise<unknown> {
  try {
    const result = await fn();
    log.push({ call, result });
    return result;
  } catch (e) {
    if (!(e instanceof ControlPlaneError)) throw e;
    log.push({ call, error: { status: e.status, code: e.code } });
    return undefined;
  }
}

/** The script: every client method, successes, outcomes (507) and errors, on vCPU 0. */
async function script(admin: ControlPlaneClient): Promise<Entry[]> {
  const log: Entry[] = [];
  await record(log, "health", () => admin.health());
  await record(log, "engines", () => admin.engines());
  const tenant = await admin.createTenant({ name: "acme", max_domains: 8, max_pages: 8192 });
  const { token, ...visible } = tenant;
  log.push({ call: "createTenant", result: visible });
  const client = admin.withToken(token);
  for (const engine of ENGINE_NAMES) {
    const dom = (await record(log, `createDomain ${engine}`, () =>
      client.createDomain({ name: engine, vcpus: 1, max_pages: 512, engine }))) as { id: number };
    const addresses: number[] = [];
    for (const size of [1, 64, 100, 1000, 4095, 4097, 9000, 70_000]) {
      const r = (await record(log, `alloc ${size}`, () =>
        client.alloc(dom.id, { size, vcpu: 0 }))) as { address: number };
      addresses.push(r.address);
    }
    await record(log, "alloc aligned", () =>
      client.alloc(dom.id, { size: 48, align: 64 }));
    await record(log, "alloc over quota", () =>
      client.alloc(dom.id, { size: 600 * PAGE_SIZE_BYTES }));
    await record(log, "realloc grow", () =>
      client.realloc(dom.id, { address: addresses[1]!, size: 5000 }));
    await record(log, "realloc shrink", () =>
      client.realloc(dom.id, { address: addresses[6]!, size: 10 }));
    await record(log, "free", () =>
      client.free(dom.id, { address: addresses[2]!, vcpu: 0 }));
    await record(log, "double free", () =>
      client.free(dom.id, { address: addresses[2]! }));
    await record(log, "interior", () =>
      client.free(dom.id, { address: addresses[3]! + 8 }));
    await record(log, "unknown", () =>
      client.free(dom.id, { address: 5 }));
    await record(log, "batch", () =>
      client.batch(dom.id, [
        { op: "alloc", size: 300 },
        { op: "alloc", size: 3000 },
        { op: "realloc", ref: 1, size: 6000 },
        { op: "free", ref: 0 },
        { op: "free", address: addresses[0]! },
        { op: "free", ref: 0 },
        { op: "alloc", size: 1e6 },
      ]));
    await record(log, "domain", () =>
      client.domain(dom.id));
  }
  const snap = (await record(log, "snapshot", () => client.snapshot(3))) as { id: number };
  const file = await client.exportSnapshot(snap.id);
  log.push({ call: "exportSnapshot", result: file });
  const imported =
    (await record(log, "importSnapshot", () => admin.importSnapshot(file, tenant.id))) as {
      id: number;
    };
  await record(log, "snapshots", () => client.snapshots());
  await record(
    log,
    "createDomain from_snapshot",
    () => client.createDomain({ name: "fork", from_snapshot: imported.id }),
  );
  await record(log, "deleteSnapshot", () => client.deleteSnapshot(snap.id));
  await record(log, "domains", () => client.domains());
  await record(log, "stats", () => admin.stats());
  await record(log, "metrics", () => admin.metrics());
  await record(log, "tenants", () => admin.tenants());
  await record(log, "tenant on admin route", () => client.stats());
  await record(log, "unknown token", () => admin.withToken("x".repeat(32)).domains());
  const first = (await client.domains())[0]!;
  await record(log, "destroyDomain", () => client.destroyDomain(first.id));
  await record(log, "domain after destroy", () => client.domain(first.id));
  await record(log, "deleteTenant", () => admin.deleteTenant(tenant.id));
  await record(log, "stats after", () => admin.stats());
  return log;
}

/** What the machine looks like after the script. */
function machine(plane: Plane): unknown {
  return {
    pages: plane.hv.pages.stats(),
    tenants: plane.hv.tenancy.tenants(),
    domains: plane.hv.tenancy.domains().map((d) => d.stats()),
  };
}

Deno.test("client: the same script gives identical results in process and over HTTP", async () => {
  const local = freshPlane();
  const inProcess = await script(ControlPlaneClient.inProcess(local.app, ADMIN_TOKEN));

  const remote = freshPlane();
  const server = Deno.serve(
    { hostname: "127.0.0.1", port: 0, onListen: () => {} },
    remote.app.fetch,
  );
  let overHttp: Entry[];
  try {
    const url = `http://127.0.0.1:${server.addr.port}`;
    overHttp = await script(ControlPlaneClient.overHttp(url, ADMIN_TOKEN));
  } finally {
    await server.shutdown();
  }

  // The script did what it says: blocks served, an outcome of 507, each error kind.
  const calls = new Map(inProcess.map((e) => [e.call, e]));
  assert.ok((calls.get("alloc 4095")?.result as { address: number }).address > 0);
  assert.equal((calls.get("alloc over quota")?.result as { cause: string }).cause, "quota");
  assert.deepEqual(calls.get("double free")?.error, { status: 409, code: "double_free" });
  assert.deepEqual(calls.get("interior")?.error, { status: 409, code: "interior_pointer" });
  assert.deepEqual(calls.get("unknown")?.error, { status: 404, code: "unknown_address" });
  assert.deepEqual(calls.get("tenant on admin route")?.error, { status: 403, code: "forbidden" });
  assert.deepEqual(calls.get("unknown token")?.error, { status: 401, code: "unauthorized" });
  assert.deepEqual(calls.get("domain after destroy")?.error, { status: 404, code: "not_found" });
  assert.match(String(calls.get("metrics")?.result), /^# HELP heapvisor_machine_frames /);
  const fork = calls.get("createDomain from_snapshot")?.result as { live_blocks: number };
  const source = (calls.get("domains")?.result as { id: number; live_blocks: number }[])
    .find((d) => d.id === 3)!;
  assert.equal(fork.live_blocks, source.live_blocks, "the fork has the snapshot's blocks");
  assert.equal(
    (calls.get("exportSnapshot")?.result as { format: string }).format,
    "heapvisor-snapshot",
  );

  assert.equal(overHttp.length, inProcess.length);
  for (let i = 0; i < inProcess.length; i++) {
    assert.deepEqual(overHttp[i], inProcess[i], `entry ${i}: ${inProcess[i]!.call}`);
  }
  assert.deepEqual(machine(remote), machine(local));
  assertInvariants(local.hv);
  assertInvariants(remote.hv);
});
