/**
 * Property test of the control plane (fast-check, fixed seeds): random sequences of
 * API calls with random, often malformed, bodies, paths, tokens (admin, tenant A,
 * tenant B, garbage, none) and addresses (live, freed, interior, another domain's,
 * random), sent in process to a fresh 8 MiB machine (small, so quotas, exhaustion and
 * contiguity are reached).
 *
 * After every call: never a 500; every error is JSON `{error: {code, message}}`; a 507
 * is an allocation outcome with its cause; a refused call changed nothing; a tenant
 * never sees another tenant's domain (the answer is the one for a domain that does not
 * exist) and lists only its own. After every call and at the end of each sequence the
 * hypervisor's invariants hold (tests/control_plane_harness.ts): page allocator and
 * every pool `check()` clean, no domain above max_pages, the domains own every frame in
 * use but the xen heap's.
 */

import assert from "node:assert/strict";
import fc from "fast-check";
import { DIRECTMAP_BASE_ADDRESS, PAGE_SIZE_BYTES } from "../src/units.ts";
import type { Hypervisor } from "../hypervisor/hypervisor.ts";
import {
  ADMIN_TOKEN,
  assertInvariants,
  call,
  createDomain,
  createTenant,
  freshPlane,
  isErrorBody,
  type Plane,
  readAllWithin,
  type Reply,
} from "./control_plane_harness.ts";

/** Who calls. */
type Who = "admin" | "a" | "b" | "garbage" | "none";
/** Which domain a call names: the caller's, the other tenant's, none, or not an id. */
type DomainPick = { kind: "mine" | "theirs" | "absent" | "bad"; index: number };
/** Which address a free or realloc names. */
type AddressPick = {
  kind: "seen" | "interior" | "foreign" | "random" | "bad";
  index: number;
};
/** A body: a JSON value, raw text, a valid alloc body padded to `padBytes`, or none. */
type Body = { json: unknown } | { raw: string } | { padBytes: number } | null;

type Action =
  | { kind: "createTenant"; who: Who; body: Body }
  | { kind: "deleteTenant"; who: Who; tenant: number }
  | { kind: "createDomain"; who: Who; body: Body }
  | { kind: "deleteDomain" | "getDomain" | "events"; who: Who; domain: DomainPick; query: string }
  | { kind: "list" | "stats" | "metrics" | "tenants"; who: Who }
  | { kind: "alloc"; who: Who; domain: DomainPick; body: Body }
  | { kind: "free" | "realloc"; who: Who; domain: DomainPick; address: AddressPick; body: Body }
  | {
    kind: "batch";
    who: Who;
    domain: DomainPick;
    ops: { op: unknown; address: AddressPick | undefined; rest: Record<string, unknown> }[];
    junk: Body;
  }
  | { kind: "raw"; who: Who; method: string; path: string; body: Body };

/** A domain id that never exists (within the id range, so it parses). */
const ABSENT_ID = 2 ** 31 - 7;
const MACHINE_MIB = 8;
const GARBAGE_TOKEN = "garbage-token-0123456789";

// -- arbitraries ------------------------------------------------------------------------------

const who = fc.constantFrom<Who>("admin", "a", "a", "b", "b", "garbage", "none");
const junkValue = fc.oneof(
  fc.constantFrom(0, -1, 1.5, "8", null, true, 2 ** 41, 1e308, [], {}, "", -0.0001),
  fc.jsonValue({ maxDepth: 2 }),
);
/** Usually a valid value from `valid` (`validWeight` to 1), else junk. */
const field = <T>(valid: fc.Arbitrary<T>, validWeight = 12) =>
  fc.oneof({ weight: validWeight, arbitrary: valid }, { weight: 1, arbitrary: junkValue });
const sizeValid = fc.oneof(
  fc.integer({ min: 1, max: 5000 }),
  fc.integer({ min: 4000, max: 4200 }),
  fc.integer({ min: 1, max: 2 ** 21 }),
  fc.constantFrom(2 ** 24, 2 ** 40),
);
const alignValid = fc.constantFrom(1, 1, 1, 8, 16, 64, 4096, 2 ** 20);
const vcpuValid = fc.integer({ min: 0, max: 2 });
const size = field(sizeValid);
const align = field(alignValid);
const vcpu = field(vcpuValid);
/** Optional fields of a body; `undefined` leaves the field out. */
const maybe = <T>(arb: fc.Arbitrary<T>) => fc.option(arb, { nil: undefined, freq: 2 });
/** A body from a record of fields: usually as JSON, sometimes with an extra field or broken. */
const body = (fields: fc.Arbitrary<Record<string, unknown>>): fc.Arbitrary<Body> =>
  fc.oneof(
    { weight: 8, arbitrary: fields.map((json) => ({ json })) },
    {
      weight: 1,
      arbitrary: fc.tuple(fields, fc.string({ maxLength: 6 }), junkValue).map(([f, k, v]) => ({
        json: { ...f, [k]: v },
      })),
    },
    { weight: 1, arbitrary: junkValue.map((json) => ({ json })) },
    {
      weight: 1,
      arbitrary: fc.oneof(
        fc.constantFrom("{", "", "nul", '{"size": 8,}', "[1,", "\u0000"),
        fc.string({ maxLength: 20 }),
      ).map((raw) => ({ raw })),
    },
    {
      weight: 1,
      arbitrary: fc.integer({ min: 64 * 1024 - 16, max: 70 * 1024 }).map((padBytes) => ({
        padBytes,
      })),
    },
    { weight: 1, arbitrary: fc.constant(null) },
  );
const domainPick = fc.record({
  kind: fc.constantFrom<DomainPick["kind"]>("mine", "mine", "mine", "theirs", "absent", "bad"),
  index: fc.nat(7),
});
const addressPick = fc.record({
  kind: fc.constantFrom<AddressPick["kind"]>(
    "seen",
    "seen",
    "seen",
    "interior",
    "foreign",
    "random",
    "bad",
  ),
  index: fc.nat(1000),
});
/** Addresses in a batch op: never of the wrong type (that refuses the whole batch). */
const batchAddressPick = fc.record({
  kind: fc.constantFrom<AddressPick["kind"]>(
    "seen",
    "seen",
    "seen",
    "interior",
    "foreign",
    "random",
  ),
  index: fc.nat(1000),
});
const tenantBody = body(
  fc.record({
    name: field(fc.stringMatching(/^[a-z0-9._-]{1,8}$/)),
    max_domains: field(fc.integer({ min: 1, max: 4 })),
    max_pages: field(fc.integer({ min: 1, max: 8192 })),
  }),
);
const domainBody = body(
  fc.record(
    {
      name: field(fc.stringMatching(/^[a-z0-9]{1,8}$/)),
      vcpus: field(fc.integer({ min: 1, max: 4 })),
      max_pages: field(fc.integer({ min: 1, max: 4096 })),
      engine: field(fc.constantFrom("first-fit", "tlsf-2008", "tlsf", "slub", "buddy", "hoard")),
      tenant_id: field(fc.integer({ min: 1, max: 4 })),
    },
    { requiredKeys: ["name", "vcpus", "max_pages"] },
  ),
);
const eventsQuery = fc.constantFrom(
  "?max_events=1",
  "?max_events=1&interval_ms=50",
  "?max_events=0",
  "?interval_ms=10",
  "?interval_ms=abc&max_events=1",
  "?max_events=%ZZ",
);

const action: fc.Arbitrary<Action> = fc.oneof(
  {
    weight: 1,
    arbitrary: fc.record({ kind: fc.constant("createTenant" as const), who, body: tenantBody }),
  },
  {
    weight: 1,
    arbitrary: fc.record({
      kind: fc.constant("deleteTenant" as const),
      who,
      tenant: fc.integer({ min: 1, max: 5 }),
    }),
  },
  {
    weight: 3,
    arbitrary: fc.record({ kind: fc.constant("createDomain" as const), who, body: domainBody }),
  },
  {
    weight: 3,
    arbitrary: fc.record({
      kind: fc.constantFrom("deleteDomain" as const, "getDomain" as const, "events" as const),
      who,
      domain: domainPick,
      query: eventsQuery,
    }),
  },
  {
    weight: 2,
    arbitrary: fc.record({
      kind: fc.constantFrom(
        "list" as const,
        "stats" as const,
        "metrics" as const,
        "tenants" as const,
      ),
      who,
    }),
  },
  {
    weight: 10,
    arbitrary: fc.record({
      kind: fc.constant("alloc" as const),
      who,
      domain: domainPick,
      body: body(fc.record({ size, align, vcpu }, { requiredKeys: ["size"] })),
    }),
  },
  {
    weight: 8,
    arbitrary: fc.record({
      kind: fc.constantFrom("free" as const, "realloc" as const),
      who,
      domain: domainPick,
      address: addressPick,
      body: body(fc.record({ size, align, vcpu }, { requiredKeys: ["size"] })),
    }),
  },
  {
    weight: 4,
    arbitrary: fc.record({
      kind: fc.constant("batch" as const),
      who,
      domain: domainPick,
      ops: fc.array(
        fc.record({
          op: fc.oneof({ weight: 300, arbitrary: fc.constantFrom("alloc", "free", "realloc") }, {
            weight: 1,
            arbitrary: junkValue,
          }),
          address: maybe(batchAddressPick),
          rest: fc.record(
            {
              size: field(sizeValid, 300),
              align: field(alignValid, 300),
              vcpu: field(vcpuValid, 300),
              ref: field(fc.nat(40), 300),
            },
            { requiredKeys: ["size"] },
          ),
        }),
        { minLength: 0, maxLength: 40, size: "max" },
      ),
      junk: fc.oneof({ weight: 9, arbitrary: fc.constant(null) }, {
        weight: 1,
        arbitrary: body(fc.constant({})),
      }),
    }),
  },
  {
    weight: 1,
    arbitrary: fc.record({
      kind: fc.constant("raw" as const),
      who,
      method: fc.constantFrom("GET", "POST", "DELETE", "PUT", "PATCH"),
      path: fc.oneof(
        fc.constantFrom(
          "/",
          "/v1",
          "/v1/tenants/1",
          "/v1/domains/1/alloc/",
          "/v1/domains/%ZZ/free",
          "/v1/domains/1/batch/x",
          "/v1/health",
          "/v1/openapi.json",
        ),
        fc.stringMatching(/^\/v1\/[a-z0-9%/._-]{0,20}$/),
      ),
      body: domainBody,
    }),
  },
);

// -- the model: who exists, which addresses were seen ------------------------------------------

interface World {
  plane: Plane;
  tokens: Map<"a" | "b", string>;
  tenantIds: Map<"a" | "b", number>;
  /** Addresses the API returned, by domain. */
  seen: Map<number, number[]>;
}

function tokenOf(world: World, who: Who): string | null {
  if (who === "admin") return ADMIN_TOKEN;
  if (who === "garbage") return GARBAGE_TOKEN;
  if (who === "none") return null;
  return world.tokens.get(who) ?? null;
}

/** The live tenant a token belongs to, if any. */
function tenantOf(world: World, who: Who): number | undefined {
  if (who !== "a" && who !== "b") return undefined;
  const id = world.tenantIds.get(who)!;
  return world.plane.hv.tenancy.tenants().some((t) => t.id === id) ? id : undefined;
}

function domainsOf(hv: Hypervisor, tenantId: number | undefined): number[] {
  return hv.tenancy.domains(tenantId).map((d) => d.id);
}

function resolveDomain(world: World, caller: Who, pick: DomainPick): string {
  const hv = world.plane.hv;
  const a = world.tenantIds.get("a")!;
  const b = world.tenantIds.get("b")!;
  const mine = caller === "b" ? b : a;
  const theirs = caller === "b" ? a : b;
  const from = (ids: number[]) => ids.length > 0 ? String(ids[pick.index % ids.length]) : "1";
  switch (pick.kind) {
    case "mine":
      return from(caller === "admin" ? domainsOf(hv, undefined) : domainsOf(hv, mine));
    case "theirs":
      return from(domainsOf(hv, theirs));
    case "absent":
      return String(ABSENT_ID);
    case "bad":
      return ["abc", "0", "-1", "1.5", "9999999999", "%ZZ", "1e400"][pick.index % 7]!;
  }
}

function resolveAddress(world: World, domain: string, pick: AddressPick): unknown {
  const seenHere = world.seen.get(Number(domain)) ?? [];
  const all = [...world.seen.values()].flat();
  const at = (xs: number[]) => xs.length > 0 ? xs[pick.index % xs.length]! : DIRECTMAP_BASE_ADDRESS;
  switch (pick.kind) {
    case "seen":
      return at(seenHere);
    case "interior":
      return at(seenHere) + [8, 16, 64, PAGE_SIZE_BYTES][pick.index % 4]!;
    case "foreign":
      return at(all.filter((x) => !seenHere.includes(x)));
    case "random":
      return DIRECTMAP_BASE_ADDRESS + pick.index * 4096 * 3 + (pick.index % 5) * 16;
    case "bad":
      return [0, -8, 1.5, "0x10", null, 2 ** 53][pick.index % 6];
  }
}

function remember(world: World, domain: string, ...addresses: unknown[]): void {
  const id = Number(domain);
  if (!Number.isSafeInteger(id)) return;
  const list = world.seen.get(id) ?? [];
  for (const x of addresses) {
    if (typeof x === "number" && x > 0 && !list.includes(x)) list.push(x);
  }
  world.seen.set(id, list.slice(-64));
}

/** The request an action makes: method, path, body. */
function requestOf(
  world: World,
  a: Action,
): { method: string; path: string; body: Body; domain?: string } {
  switch (a.kind) {
    case "createTenant":
      return { method: "POST", path: "/v1/tenants", body: a.body };
    case "deleteTenant":
      return { method: "DELETE", path: `/v1/tenants/${a.tenant}`, body: null };
    case "createDomain":
      return { method: "POST", path: "/v1/domains", body: a.body };
    case "deleteDomain":
    case "getDomain":
    case "events": {
      const domain = resolveDomain(world, a.who, a.domain);
      const path = `/v1/domains/${domain}${a.kind === "events" ? `/events${a.query}` : ""}`;
      return { method: a.kind === "deleteDomain" ? "DELETE" : "GET", path, body: null, domain };
    }
    case "list":
      return { method: "GET", path: "/v1/domains", body: null };
    case "stats":
      return { method: "GET", path: "/v1/stats", body: null };
    case "metrics":
      return { method: "GET", path: "/metrics", body: null };
    case "tenants":
      return { method: "GET", path: "/v1/tenants", body: null };
    case "alloc": {
      const domain = resolveDomain(world, a.who, a.domain);
      return { method: "POST", path: `/v1/domains/${domain}/alloc`, body: a.body, domain };
    }
    case "free":
    case "realloc": {
      const domain = resolveDomain(world, a.who, a.domain);
      const address = resolveAddress(world, domain, a.address);
      const body: Body = a.body && "json" in a.body && typeof a.body.json === "object" &&
          a.body.json !== null && !Array.isArray(a.body.json)
        ? {
          json: a.kind === "free"
            ? {
              address,
              ...("vcpu" in a.body.json ? { vcpu: (a.body.json as { vcpu: unknown }).vcpu } : {}),
            }
            : { address, ...a.body.json },
        }
        : a.body;
      return { method: "POST", path: `/v1/domains/${domain}/${a.kind}`, body, domain };
    }
    case "batch": {
      const domain = resolveDomain(world, a.who, a.domain);
      const ops = a.ops.map((o) => {
        const op: Record<string, unknown> = { op: o.op };
        if (o.address && o.op !== "alloc") op["address"] = resolveAddress(world, domain, o.address);
        for (const [k, v] of Object.entries(o.rest)) {
          if (o.op === "alloc" && k === "ref") continue;
          if (o.op === "free" && (k === "size" || k === "align")) continue;
          if (k === "ref" && o.address) continue;
          op[k] = v;
        }
        return op;
      });
      return {
        method: "POST",
        path: `/v1/domains/${domain}/batch`,
        body: a.junk ?? { json: { ops } },
        domain,
      };
    }
    case "raw":
      return { method: a.method, path: a.path, body: a.body };
  }
}

async function send(
  world: World,
  who: Who,
  method: string,
  path: string,
  body: Body,
): Promise<Reply> {
  const token = tokenOf(world, who);
  const options = body === null || method === "GET" || method === "HEAD"
    ? {}
    : "raw" in body
    ? { raw: body.raw }
    : "padBytes" in body
    ? { raw: `{"size":${" ".repeat(body.padBytes)}8}` }
    : { body: body.json };
  if (!path.includes("/events")) {
    return await call(world.plane.app, method, path, { token, ...options });
  }
  // SSE: read the stream to its end (max_events is at most 1 here), bounded in time.
  const response = await world.plane.app.request(path, {
    method,
    headers: token ? { authorization: `Bearer ${token}` } : {},
  });
  const text = await readAllWithin(response.body!, 5000);
  let json: unknown = undefined;
  try {
    json = JSON.parse(text);
  } catch {
    json = undefined; // an event stream
  }
  return {
    status: response.status,
    contentType: response.headers.get("content-type") ?? "",
    text,
    json,
    headers: response.headers,
  };
}

/** Everything a refused request must leave as it was. */
function snapshot(hv: Hypervisor): string {
  return JSON.stringify({
    pages: hv.pages.stats(),
    tenants: hv.tenancy.tenants(),
    domains: hv.tenancy.domains().map((d) => d.stats()),
  });
}

const STATUSES = new Set([200, 201, 204, 302, 400, 401, 403, 404, 409, 413, 415, 507]);
const CAUSES = new Set(["quota", "exhaustion", "contiguity", "unservable"]);

/** Run one action and check everything the answer must satisfy. */
async function step(world: World, a: Action, n: number): Promise<void> {
  const hv = world.plane.hv;
  const req = requestOf(world, a);
  const where = `action ${n} ${a.kind} by ${a.who}: ${req.method} ${req.path}`;
  const caller = tenantOf(world, a.who);
  const targetId = req.domain !== undefined && /^\d+$/.test(req.domain) ? Number(req.domain) : NaN;
  const target = hv.tenancy.domains().find((d) => d.id === targetId);
  const before = snapshot(hv);

  const reply = await send(world, a.who, req.method, req.path, req.body);
  const what = `${where} -> ${reply.status} ${reply.text.slice(0, 300)}`;

  assert.notEqual(reply.status, 500, `a 500 is a bug: ${what}`);
  assert.ok(STATUSES.has(reply.status), `unexpected status: ${what}`);
  if (reply.status === 507) {
    assert.ok(a.kind === "alloc" || a.kind === "realloc", what);
    const r = reply.json as { ok: boolean; cause: string; address: number };
    assert.equal(r.ok, false, what);
    assert.equal(r.address, 0, what);
    assert.ok(CAUSES.has(r.cause), what);
  } else if (reply.status >= 400) {
    assert.match(reply.contentType, /application\/json/, what);
    assert.ok(isErrorBody(reply.json), `not {error:{code,message}}: ${what}`);
    assert.equal(snapshot(hv), before, `a refused request changed the state: ${what}`);
  }
  // Isolation: a tenant naming another tenant's domain gets what an absent domain gets.
  if (caller !== undefined && target !== undefined && target.tenantId !== caller) {
    assert.ok([400, 404, 413, 415].includes(reply.status), `another tenant's domain: ${what}`);
    const absentPath = req.path.replace(`/domains/${targetId}`, `/domains/${ABSENT_ID}`);
    const control = await send(world, a.who, req.method, absentPath, req.body);
    const normal = (text: string, id: number) => text.replace(`No domain ${id}`, "No domain ID");
    assert.equal(
      normal(reply.text, targetId),
      normal(control.text, ABSENT_ID),
      `another tenant's domain answers differently from an absent one: ${what}`,
    );
    assert.equal(snapshot(hv), before, what);
  }
  if (reply.status === 201 && (a.kind === "alloc" || a.kind === "realloc")) {
    const r = reply.json as { ok: boolean; address: number; reserved_bytes: number; cause: null };
    assert.ok(r.ok && r.cause === null && Number.isSafeInteger(r.address) && r.address > 0, what);
    assert.ok(r.reserved_bytes >= 1, what);
  }
  if (reply.status === 200 && a.kind === "batch") {
    const r = reply.json as {
      count: number;
      served: number;
      addresses: number[];
      causes: (string | null)[];
      errors: { index: number }[];
    };
    assert.equal(r.addresses.length, r.count, what);
    assert.equal(r.causes.length, r.count, what);
    const failed = r.causes.filter((c) => c !== null).length;
    assert.equal(r.served, r.count - r.errors.length - failed, what);
    for (const e of r.errors) assert.equal(r.addresses[e.index], 0, what);
  }
  const adminOnly = ["createTenant", "deleteTenant", "stats", "metrics", "tenants"];
  if (caller !== undefined && adminOnly.includes(a.kind)) {
    assert.ok(reply.status >= 400 && reply.status < 500, `a tenant on an admin route: ${what}`);
  }
  if (reply.status >= 200 && reply.status < 300 && caller !== undefined) {
    if (a.kind === "list") {
      for (const d of reply.json as { tenant_id: number }[]) {
        assert.equal(d.tenant_id, caller, what);
      }
    }
    if (target !== undefined) assert.equal(target.tenantId, caller, what);
  }
  if (a.who === "garbage" || a.who === "none" || (a.who !== "admin" && caller === undefined)) {
    const pathname = new URL(req.path, "http://x").pathname;
    const isPublic = ["/", "/v1/health", "/v1/engines", "/v1/openapi.json", "/v1/docs"]
      .includes(pathname);
    if (!isPublic) assert.equal(reply.status, 401, `no valid token: ${what}`);
  }
  // Remember addresses the API gave out (for later frees, interior pointers, foreign frees).
  const memoryOp = a.kind === "alloc" || a.kind === "free" || a.kind === "realloc" ||
    a.kind === "batch";
  if (memoryOp && req.domain !== undefined && (reply.status === 201 || reply.status === 200)) {
    const r = reply.json as { address?: number; addresses?: number[] };
    remember(world, req.domain, r.address, ...(r.addresses ?? []));
  }
  assertInvariants(hv);
}

async function runSequence(actions: Action[]): Promise<void> {
  const plane = freshPlane({ machineMiB: MACHINE_MIB });
  const a = await createTenant(plane, "tenant-a", { max_domains: 3, max_pages: 4000 });
  const b = await createTenant(plane, "tenant-b", { max_domains: 3, max_pages: 4000 });
  const world: World = {
    plane,
    tokens: new Map([["a", a.token], ["b", b.token]]),
    tenantIds: new Map([["a", a.id], ["b", b.id]]),
    seen: new Map(),
  };
  await createDomain(plane, a.token, { name: "a0", max_pages: 1536, engine: "tlsf" });
  await createDomain(plane, b.token, { name: "b0", max_pages: 1536, engine: "slub", vcpus: 2 });
  for (let i = 0; i < actions.length; i++) await step(world, actions[i]!, i);
  assertInvariants(plane.hv);
  // Deleting both tenants gives every frame back.
  for (const id of [a.id, b.id]) {
    if (plane.hv.tenancy.tenants().some((t) => t.id === id)) {
      const r = await call(plane.app, "DELETE", `/v1/tenants/${id}`, { token: ADMIN_TOKEN });
      assert.equal(r.status, 204, r.text);
    }
  }
  for (const d of plane.hv.tenancy.domains()) {
    assert.equal(
      (await call(plane.app, "DELETE", `/v1/domains/${d.id}`, { token: ADMIN_TOKEN })).status,
      204,
    );
  }
  const pa = plane.hv.pages.stats();
  assert.equal(
    pa.freeFrameCount + plane.hv.pages.pagesOwnedBy(0),
    pa.frameCount,
    "every frame back",
  );
  assert.deepEqual(plane.hv.pages.check(), []);
}

for (const seed of [1, 3, 2024]) {
  Deno.test(`control plane fuzz: random call sequences keep the hypervisor sound (seed=${seed})`, async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(action, { minLength: 1, maxLength: 60, size: "max" }), runSequence),
      { seed, numRuns: 400, interruptAfterTimeLimit: 60_000 },
    );
  });
}

Deno.test("control plane fuzz: long sequences of valid memory calls fill the machine soundly", async () => {
  // Well-formed calls by the owners, allocating more than they free: quotas, exhaustion
  // and contiguity failures happen, and frees and reallocs work on a fragmented machine.
  const owner = fc.constantFrom<Who>("a", "b");
  const mine = fc.constant<DomainPick>({ kind: "mine", index: 0 });
  const validSize = fc.oneof(
    fc.integer({ min: 1, max: 5000 }),
    fc.integer({ min: 1, max: 2 ** 20 }),
  );
  const seen = fc.record({ kind: fc.constant<AddressPick["kind"]>("seen"), index: fc.nat(100) });
  const valid: fc.Arbitrary<Action> = fc.oneof(
    {
      weight: 4,
      arbitrary: fc.record({
        kind: fc.constant("alloc" as const),
        who: owner,
        domain: mine,
        body: fc.record({ size: validSize }).map((json): Body => ({ json })),
      }),
    },
    {
      weight: 2,
      arbitrary: fc.record({
        kind: fc.constantFrom("free" as const, "realloc" as const),
        who: owner,
        domain: mine,
        address: seen,
        body: fc.record({ size: validSize }).map((json): Body => ({ json })),
      }),
    },
    {
      weight: 1,
      arbitrary: fc.record({
        kind: fc.constant("batch" as const),
        who: owner,
        domain: mine,
        ops: fc.array(
          fc.record({
            op: fc.constantFrom("alloc", "alloc", "free"),
            address: fc.option(seen, { nil: undefined }),
            rest: fc.record({ size: validSize }),
          }),
          { minLength: 1, maxLength: 30 },
        ),
        junk: fc.constant(null),
      }),
    },
  );
  await fc.assert(
    fc.asyncProperty(fc.array(valid, { minLength: 20, maxLength: 120, size: "max" }), runSequence),
    { seed: 7, numRuns: 80, interruptAfterTimeLimit: 60_000 },
  );
});
