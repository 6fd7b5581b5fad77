/**
 * Property tests of snapshot import (fast-check, fixed seeds): a snapshot file changed
 * at random (a number, a string, a list cut short, bytes of the deflated state flipped),
 * with its CRC recomputed or not, sent to the control plane. The answer is 201 or a
 * clear 4xx (never a 500), a refused import keeps nothing and changes nothing, and a
 * domain started from an accepted one is sound. And a state of random bytes never
 * loads as anything but a StateError.
 */

import assert from "node:assert/strict";
import fc from "fast-check";
import { Buffer } from "node:buffer";
import { deflateRawSync, inflateRawSync } from "node:zlib";
import { crc32 } from "../hypervisor/journal.ts";
import { BuddyPageAllocator } from "../hypervisor/page_allocator.ts";
import { PageSource } from "../hypervisor/xmalloc/engine.ts";
import { ENGINES } from "../hypervisor/xmalloc/registry.ts";
import { StateError, StateReader, StateWriter } from "../src/state_codec.ts";
import {
  ADMIN_TOKEN,
  assertInvariants,
  call,
  createTenant,
  freshPlane,
  isErrorBody,
  stateOf,
} from "./control_plane_harness.ts";

const FIXTURE = new URL("./fixtures/snapshots/warm-tlsf-v2.json", import.meta.url).pathname;
const FILE = JSON.parse(Deno.readTextFileSync(FIXTURE)) as Record<string, unknown>;

/** How one file is changed. */
type Change =
  | { kind: "number"; path: string[]; delta: number }
  | { kind: "string"; path: string[]; value: string }
  | { kind: "cut"; path: string[]; keep: number }
  | { kind: "state-bytes"; which: "pages" | "engine"; at: number; xor: number }
  | { kind: "drop"; path: string[] };

const PATHS: string[][] = [
  ["version"],
  ["machine", "frames"],
  ["machine", "max_order"],
  ["domain", "vcpus"],
  ["domain", "max_pages"],
  ["domain", "engine"],
  ["domain", "name"],
  ["heap", "pages_held"],
  ["heap", "live_blocks"],
  ["heap", "requested_bytes"],
  ["heap", "reserved_pages"],
  ["blocks"],
  ["state", "pages"],
  ["state", "engine"],
  ["state", "encoding"],
];

const change: fc.Arbitrary<Change> = fc.oneof(
  fc.record({
    kind: fc.constant("number" as const),
    path: fc.constantFrom(...PATHS.filter((p) => p[0] !== "state" && p[0] !== "blocks")),
    delta: fc.oneof(fc.integer({ min: -3, max: 3 }), fc.constantFrom(1e6, -1e6, 2 ** 40)),
  }),
  fc.record({
    kind: fc.constant("string" as const),
    path: fc.constantFrom(["domain", "engine"], ["domain", "name"], ["state", "engine"]),
    value: fc.constantFrom("slub", "buddy", "first-fit", "", "x".repeat(70), "AAAA", "é"),
  }),
  fc.record({
    kind: fc.constant("cut" as const),
    path: fc.constantFrom(["blocks"], ["state", "pages"], ["state", "engine"]),
    keep: fc.integer({ min: 0, max: 40 }),
  }),
  fc.record({
    kind: fc.constant("state-bytes" as const),
    which: fc.constantFrom("pages" as const, "engine" as const),
    at: fc.nat(),
    xor: fc.integer({ min: 1, max: 255 }),
  }),
  fc.record({ kind: fc.constant("drop" as const), path: fc.constantFrom(...PATHS) }),
);

/** `FILE` with `changes` made, its CRC recomputed when `reseal`. */
function changed(changes: Change[], reseal: boolean): Record<string, unknown> {
  const doc = structuredClone(FILE);
  for (const c of changes) {
    if (c.kind === "state-bytes") {
      const state = doc.state as Record<string, string> | undefined;
      let raw: Uint8Array;
      try {
        raw = new Uint8Array(inflateRawSync(Buffer.from(state?.[c.which] ?? "", "base64")));
      } catch {
        continue; // an earlier change made it something else
      }
      if (raw.length === 0) continue;
      raw[c.at % raw.length]! ^= c.xor;
      state![c.which] = Buffer.from(deflateRawSync(raw)).toString("base64");
      continue;
    }
    const parent = c.path.slice(0, -1).reduce<Record<string, unknown> | undefined>(
      (o, k) => o?.[k] as Record<string, unknown> | undefined,
      doc,
    );
    const key = c.path.at(-1)!;
    if (parent === undefined) continue;
    if (c.kind === "drop") delete parent[key];
    else if (c.kind === "number" && typeof parent[key] === "number") {
      parent[key] = (parent[key] as number) + c.delta;
    } else if (c.kind === "string") parent[key] = c.value;
    else if (c.kind === "cut") {
      const v = parent[key];
      if (Array.isArray(v)) parent[key] = v.slice(0, c.keep);
      if (typeof v === "string") parent[key] = v.slice(0, c.keep * 4);
    }
  }
  if (reseal) {
    const { crc32: _, ...body } = doc;
    doc.crc32 = crc32(JSON.stringify(body));
  }
  return doc;
}

Deno.test("snapshot import fuzz: a changed file is 201 or a clear 4xx, never a 500; a refusal keeps nothing", async () => {
  const plane = freshPlane({ machineMiB: 128 });
  const a = await createTenant(plane, "acme", { max_domains: 64, max_pages: 1 << 20 });
  let accepted = 0;
  let refused = 0;
  await fc.assert(
    fc.asyncProperty(
      fc.array(change, { minLength: 1, maxLength: 3 }),
      fc.boolean(),
      async (changes, reseal) => {
        const before = await stateOf(plane);
        const snapshotsBefore = plane.hv.tenancy.snapshots().length;
        const reply = await call(plane.app, "POST", "/v1/snapshots", {
          token: a.token,
          body: changed(changes, reseal),
        });
        const what = `${JSON.stringify(changes)} reseal=${reseal}: ${reply.status} ${
          reply.text.slice(0, 300)
        }`;
        assert.notEqual(reply.status, 500, what);
        if (reply.status !== 201) {
          refused++;
          assert.ok([400, 422].includes(reply.status), what);
          assert.ok(isErrorBody(reply.json), what);
          assert.deepEqual(await stateOf(plane), before, what);
          assert.equal(plane.hv.tenancy.snapshots().length, snapshotsBefore, what);
          return;
        }
        accepted++;
        const id = (reply.json as { id: number }).id;
        const fork = await call(plane.app, "POST", "/v1/domains", {
          token: a.token,
          body: { name: "fork", from_snapshot: id },
        });
        assert.ok([201, 507].includes(fork.status), `${what}; fork: ${fork.status} ${fork.text}`);
        if (fork.status === 201) {
          const d = (fork.json as { id: number }).id;
          assert.equal(
            (await call(plane.app, "DELETE", `/v1/domains/${d}`, { token: a.token })).status,
            204,
          );
        }
        await call(plane.app, "DELETE", `/v1/snapshots/${id}`, { token: a.token });
        assertInvariants(plane.hv);
      },
    ),
    { seed: 20261122, numRuns: 150 },
  );
  assert.ok(refused > 10, `only ${refused} changed files were refused: the test tests little`);
  assert.ok(
    accepted > 0,
    "no changed file was accepted (a changed name, say): the 201 path is untested",
  );
  void ADMIN_TOKEN;
});

Deno.test("state fuzz: a damaged or cut state loads as a StateError, never another error", () => {
  const what = (e: unknown) => `${(e as Error).name}: ${(e as Error).message}`;
  // A real state of each engine (and of its machine), after some calls.
  const saved = ENGINES.map((descriptor) => {
    const machine = new BuddyPageAllocator(1024);
    const engine = descriptor.create({ pageSource: new PageSource(machine, 3), cpuCount: 2 });
    const live: number[] = [];
    for (let i = 0; i < 200; i++) {
      if (i % 3 === 2) engine.free(live.shift()!, i % 2);
      else live.push(engine.allocate(1 + ((i * 911) % 6000), 1, i % 2));
    }
    const w = new StateWriter();
    engine.saveState(w);
    const m = new StateWriter();
    machine.saveState(m);
    return { descriptor, machine, engine: w.bytes(), pages: m.bytes() };
  });
  fc.assert(
    fc.property(
      fc.constantFrom(...saved),
      fc.boolean(),
      fc.nat(),
      fc.integer({ min: 1, max: 255 }),
      ({ descriptor, machine, engine, pages }, cut, at, xor) => {
        const damage = (bytes: Uint8Array) => {
          const b = bytes.slice(0, cut ? at % bytes.length : bytes.length);
          if (!cut) b[at % b.length]! ^= xor;
          return b;
        };
        try {
          const r = new StateReader(damage(pages), "a machine");
          BuddyPageAllocator.load(r);
          r.done();
        } catch (e) {
          assert.ok(e instanceof StateError, `machine: ${what(e)}`);
        }
        try {
          const r = new StateReader(damage(engine), descriptor.name);
          descriptor.load({ pageSource: new PageSource(machine, 3), cpuCount: 2 }, r);
          r.done();
        } catch (e) {
          assert.ok(e instanceof StateError, `${descriptor.name}: ${what(e)}`);
        }
      },
    ),
    { seed: 7, numRuns: 1500 },
  );
});
