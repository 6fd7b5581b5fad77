/**
 * The control plane in process (`app.request`, no socket): every route, auth rule and
 * class of bad input of issue 3. Each case asserts the status and error code and, for
 * a refused request, that nothing changed: GET /v1/stats and GET /v1/tenants before
 * and after, the page allocator's and every pool's `check()`, and the hypervisor's
 * invariants (tests/control_plane_harness.ts). Each test builds a fresh 64 MiB machine.
 */

import assert from "node:assert/strict";
import { createControlPlane } from "../hypervisor/control_plane/app.ts";
import { Hypervisor } from "../hypervisor/hypervisor.ts";
import { ENGINE_NAMES } from "../hypervisor/xmalloc/registry.ts";
import { DIRECTMAP_BASE_ADDRESS, MiB, PAGE_SIZE_BYTES } from "../src/units.ts";
import {
  ADMIN_TOKEN,
  assertError,
  assertInvariants,
  assertRejected,
  assertUnchanged,
  call,
  type CallOptions,
  createDomain,
  createTenant,
  freshPlane,
  isErrorBody,
  ok,
  parsePrometheus,
  parseSse,
  type Plane,
  readAllWithin,
  stateOf,
} from "./control_plane_harness.ts";

type OpResult = {
  ok: boolean;
  address: number;
  reserved_bytes: number;
  cause: string | null;
  steps: number;
  cycles: number;
};
type DomainStats = {
  id: number;
  tenant_id: number;
  engine: string;
  vcpus: number;
  max_pages: number;
  pages_held: number;
  reserved_pages: number;
  live_blocks: number;
  requested_bytes: number;
  reserved_bytes: number;
  ops: { allocs: number; frees: number; reallocs: number; failed: number };
  failures: Record<string, number>;
};
type BatchResult = {
  count: number;
  served: number;
  addresses: number[];
  causes: (string | null)[];
  steps: number[];
  cycles: number[];
  errors: { index: number; code: string; message: string }[];
};

/** Every route but the documentation's own, as `METHOD path` with `{id}` params. */
const API_ROUTES = [
  "GET /v1/health",
  "GET /v1/engines",
  "POST /v1/tenants",
  "GET /v1/tenants",
  "GET /v1/tenants/{id}",
  "DELETE /v1/tenants/{id}",
  "POST /v1/domains",
  "GET /v1/domains",
  "GET /v1/domains/{id}",
  "DELETE /v1/domains/{id}",
  "POST /v1/domains/{id}/alloc",
  "POST /v1/domains/{id}/free",
  "POST /v1/domains/{id}/realloc",
  "POST /v1/domains/{id}/batch",
  "POST /v1/domains/{id}/reservation",
  "POST /v1/domains/{id}/reservation/release",
  "GET /v1/stats",
  "GET /metrics",
  "GET /v1/domains/{id}/events",
  "POST /v1/domains/{id}/snapshot",
  "GET /v1/snapshots",
  "GET /v1/snapshots/{id}",
  "GET /v1/snapshots/{id}/export",
  "POST /v1/snapshots",
  "DELETE /v1/snapshots/{id}",
];

/** Routes that need a token, each with a body that would be valid. */
function protectedRoutes(domainId: number, tenantId: number): [string, string, unknown][] {
  return [
    ["POST", "/v1/tenants", { name: "t", max_domains: 1, max_pages: 1 }],
    ["GET", "/v1/tenants", undefined],
    ["GET", `/v1/tenants/${tenantId}`, undefined],
    ["DELETE", `/v1/tenants/${tenantId}`, undefined],
    ["POST", "/v1/domains", { name: "d", vcpus: 1, max_pages: 1 }],
    ["GET", "/v1/domains", undefined],
    ["GET", `/v1/domains/${domainId}`, undefined],
    ["DELETE", `/v1/domains/${domainId}`, undefined],
    ["POST", `/v1/domains/${domainId}/alloc`, { size: 64 }],
    ["POST", `/v1/domains/${domainId}/free`, { address: DIRECTMAP_BASE_ADDRESS }],
    ["POST", `/v1/domains/${domainId}/realloc`, { address: DIRECTMAP_BASE_ADDRESS, size: 8 }],
    ["POST", `/v1/domains/${domainId}/batch`, { ops: [{ op: "alloc", size: 8 }] }],
    ["POST", `/v1/domains/${domainId}/reservation`, { pages: 1 }],
    ["POST", `/v1/domains/${domainId}/reservation/release`, { pages: 1 }],
    ["GET", "/v1/stats", undefined],
    ["GET", "/metrics", undefined],
    ["GET", `/v1/domains/${domainId}/events?max_events=1`, undefined],
    ["POST", `/v1/domains/${domainId}/snapshot`, undefined],
    ["GET", "/v1/snapshots", undefined],
    ["GET", "/v1/snapshots/1", undefined],
    ["GET", "/v1/snapshots/1/export", undefined],
    ["POST", "/v1/snapshots", { format: "heapvisor-snapshot", version: 1 }],
    ["DELETE", "/v1/snapshots/1", undefined],
  ];
}

/** A refused request: what it is, how to send it, status, code, what the message names. */
type BadCase = [what: string, options: CallOptions, status: number, code: string, message?: RegExp];

/** A JSON body refused with 400 invalid_request, the message naming `field`. */
const invalid = (what: string, body: unknown, field: string): BadCase => [
  what,
  { body },
  400,
  "invalid_request",
  new RegExp(field),
];

/** Frame index of a machine address. */
const frameOf = (address: number) =>
  Math.floor((address - DIRECTMAP_BASE_ADDRESS) / PAGE_SIZE_BYTES);

async function domainStats(plane: Plane, id: number): Promise<DomainStats> {
  return ok<DomainStats>(await call(plane.app, "GET", `/v1/domains/${id}`, { token: ADMIN_TOKEN }));
}

async function alloc(plane: Plane, token: string, id: number, body: unknown): Promise<OpResult> {
  return ok<OpResult>(
    await call(plane.app, "POST", `/v1/domains/${id}/alloc`, { token, body }),
    201,
  );
}

// -- public routes and documentation ---------------------------------------------------------

Deno.test("control plane: public routes answer without a token", async (t) => {
  const plane = freshPlane();
  await t.step("GET /v1/health is 200 {status: ok}", async () => {
    assert.deepEqual(ok(await call(plane.app, "GET", "/v1/health")), { status: "ok" });
  });
  await t.step("GET /v1/engines lists every engine with what it models", async () => {
    const engines = ok<{ name: string; description: string; modelled_on: string }[]>(
      await call(plane.app, "GET", "/v1/engines"),
    );
    assert.deepEqual(engines.map((e) => e.name), [...ENGINE_NAMES]);
    for (const e of engines) {
      assert.ok(e.description.length > 0 && e.modelled_on.length > 0, e.name);
    }
  });
  await t.step("GET /v1/openapi.json is an OpenAPI document with bearer auth", async () => {
    const doc = ok<{
      openapi: string;
      paths: Record<string, Record<string, { security?: unknown; summary?: string }>>;
      components: { securitySchemes: Record<string, { scheme: string }> };
    }>(await call(plane.app, "GET", "/v1/openapi.json"));
    assert.match(doc.openapi, /^3\./);
    assert.equal(doc.components.securitySchemes["bearer"]?.scheme, "bearer");
    for (const [path, methods] of Object.entries(doc.paths)) {
      for (const [method, op] of Object.entries(methods)) {
        assert.ok(op.summary, `${method} ${path} has a summary`);
        const isPublic = path === "/v1/health" || path === "/v1/engines";
        assert.equal(op.security !== undefined, !isPublic, `${method} ${path}: security`);
      }
    }
  });
  await t.step("GET /v1/docs is an HTML page naming every documented path", async () => {
    const docs = await call(plane.app, "GET", "/v1/docs");
    assert.equal(docs.status, 200);
    assert.match(docs.contentType, /^text\/html/);
    assert.match(docs.text, /^<!doctype html>/i);
    const doc = ok<{ paths: Record<string, unknown> }>(
      await call(plane.app, "GET", "/v1/openapi.json"),
    );
    for (const path of Object.keys(doc.paths)) {
      assert.ok(docs.text.includes(`<code>${path}</code>`), `docs page lacks ${path}`);
    }
  });
  await t.step("GET / serves the dashboard, without a token (the page holds no data)", async () => {
    const root = await call(plane.app, "GET", "/");
    assert.equal(root.status, 200);
    assert.match(root.contentType, /^text\/html/);
    assert.match(root.text, /^<!DOCTYPE html>/);
    assert.ok(root.text.includes('href="/v1/docs"'));
  });
  await t.step("an unknown route is a JSON 404 (with a token)", async () => {
    await assertRejected(plane, "GET", "/v1/nope", { token: ADMIN_TOKEN }, 404, "not_found");
    await assertRejected(
      plane,
      "PUT",
      "/v1/tenants",
      { token: ADMIN_TOKEN, body: {} },
      404,
      "not_found",
    );
  });
});

Deno.test("control plane: /v1/openapi.json lists every API route the app serves", async () => {
  const plane = freshPlane();
  const doc = ok<{ paths: Record<string, Record<string, unknown>> }>(
    await call(plane.app, "GET", "/v1/openapi.json"),
  );
  const documented = Object.entries(doc.paths).flatMap(([path, methods]) =>
    Object.keys(methods).map((m) => `${m.toUpperCase()} ${path}`)
  );
  const served = new Set(
    plane.app.routes
      .filter((r) => r.method !== "ALL")
      .map((r) => `${r.method} ${r.path.replace(/:([a-z_]+)/g, "{$1}")}`)
      .filter((r) => !["GET /", "GET /v1/openapi.json", "GET /v1/docs"].includes(r)),
  );
  assert.deepEqual([...served].sort(), [...API_ROUTES].sort(), "the routes this test knows");
  const missing = API_ROUTES.filter((r) => !documented.includes(r));
  assert.deepEqual(missing, [], "routes served but missing from /v1/openapi.json");
});

// -- auth ----------------------------------------------------------------------------------

Deno.test("control plane: auth (bearer tokens: none 401, unknown 401, tenant on admin 403)", async (t) => {
  const plane = freshPlane();
  const a = await createTenant(plane, "acme");
  const domainId = await createDomain(plane, a.token);
  const routes = protectedRoutes(domainId, a.id);

  await t.step("no token: 401 unauthorized on every protected route", async () => {
    for (const [method, path, body] of routes) {
      await assertRejected(plane, method, path, { body }, 401, "unauthorized", /Bearer/);
    }
  });
  const unknown: [string, string][] = [
    ["garbage token", "Bearer not-a-token"],
    ["well-formed unknown token", `Bearer ${"x".repeat(32)}`],
    ["tenant token with a wrong secret", `Bearer hvt_${a.id}_${"A".repeat(32)}`],
    ["token of a tenant that does not exist", `Bearer hvt_99_${"A".repeat(32)}`],
    ["admin token with a character more", `Bearer ${ADMIN_TOKEN}x`],
    ["admin token cut short", `Bearer ${ADMIN_TOKEN.slice(0, -1)}`],
    ["tenant token with a character more", `Bearer ${a.token}x`],
    ["admin token in Basic auth", `Basic ${btoa(`admin:${ADMIN_TOKEN}`)}`],
    ["admin token without a scheme", ADMIN_TOKEN],
    ["empty bearer", "Bearer "],
  ];
  for (const [what, authorization] of unknown) {
    await t.step(`${what}: 401 unauthorized on every protected route`, async () => {
      for (const [method, path, body] of routes) {
        await assertRejected(plane, method, path, { authorization, body }, 401, "unauthorized");
      }
    });
  }
  await t.step("auth comes first: no token and a malformed body is 401, not 400", async () => {
    await assertRejected(
      plane,
      "POST",
      `/v1/domains/${domainId}/alloc`,
      { raw: "{not json" },
      401,
      "unauthorized",
    );
    await assertRejected(plane, "GET", "/v1/domains/abc", {}, 401, "unauthorized");
  });
  await t.step("a tenant on an admin route: 403 forbidden", async () => {
    const adminOnly: [string, string, unknown][] = [
      ["POST", "/v1/tenants", { name: "t2", max_domains: 1, max_pages: 1 }],
      ["GET", "/v1/tenants", undefined],
      ["GET", `/v1/tenants/${a.id}`, undefined],
      ["DELETE", `/v1/tenants/${a.id}`, undefined],
      ["GET", "/v1/stats", undefined],
      ["GET", "/metrics", undefined],
    ];
    for (const [method, path, body] of adminOnly) {
      await assertRejected(
        plane,
        method,
        path,
        { token: a.token, body },
        403,
        "forbidden",
        /admin/,
      );
    }
  });
  await t.step("the admin and the tenant reach the tenant's domain", async () => {
    ok(await call(plane.app, "GET", `/v1/domains/${domainId}`, { token: ADMIN_TOKEN }));
    ok(await call(plane.app, "GET", `/v1/domains/${domainId}`, { token: a.token }));
  });
  await t.step("a deleted tenant's token: 401", async () => {
    const gone = await createTenant(plane, "gone");
    await createDomain(plane, gone.token);
    assert.equal(
      (await call(plane.app, "DELETE", `/v1/tenants/${gone.id}`, { token: ADMIN_TOKEN })).status,
      204,
    );
    await assertRejected(plane, "GET", "/v1/domains", { token: gone.token }, 401, "unauthorized");
  });
});

Deno.test("control plane: an admin token createControlPlane accepts also authenticates", async (t) => {
  const tokens: [string, string][] = [
    ["dots", "admin.token.with.dots.0123"],
    ["base64 with + / =", "YWRtaW4+dG9rZW4/YWRtaW4=="],
    ["201 characters", "a".repeat(201)],
  ];
  for (const [what, token] of tokens) {
    await t.step(what, async () => {
      const hv = new Hypervisor({ engine: "tlsf", machineBytes: MiB(64) });
      let app;
      try {
        app = createControlPlane(hv, { adminToken: token }).app;
      } catch (e) {
        assert.ok(e instanceof RangeError, `refused with a RangeError, not ${e}`);
        return; // refused at start: fine, the server cannot run with a dead token
      }
      const reply = await call(app, "GET", "/v1/tenants", { token });
      assert.equal(reply.status, 200, `accepted at start, then ${reply.status}: ${reply.text}`);
    });
  }
});

// -- tenant isolation -----------------------------------------------------------------------

Deno.test("control plane: tenants never see or touch each other's domains", async (t) => {
  const plane = freshPlane();
  const a = await createTenant(plane, "alpha");
  const b = await createTenant(plane, "beta");
  const aDomain = await createDomain(plane, a.token, { name: "a-dom" });
  const bDomain = await createDomain(plane, b.token, { name: "b-dom" });
  const aBlock = await alloc(plane, a.token, aDomain, { size: 100 });
  ok(
    await call(plane.app, "POST", `/v1/domains/${aDomain}/reservation`, {
      token: a.token,
      body: { pages: 3 },
    }),
  );
  const absent = 999; // never created
  const cases: [string, string, string, CallOptions["body"]][] = [
    ["GET", "GET", "", undefined],
    ["DELETE", "DELETE", "", undefined],
    ["alloc", "POST", "/alloc", { size: 64 }],
    ["free of a live block of theirs", "POST", "/free", { address: aBlock.address }],
    ["realloc of a live block of theirs", "POST", "/realloc", {
      address: aBlock.address,
      size: 200,
    }],
    ["batch", "POST", "/batch", { ops: [{ op: "free", address: aBlock.address }] }],
    ["reservation", "POST", "/reservation", { pages: 1 }],
    ["release of their reserved pages", "POST", "/reservation/release", { pages: 1 }],
    ["events", "GET", "/events?max_events=1", undefined],
  ];
  for (const [what, method, suffix, body] of cases) {
    await t.step(`${what}: 404 not_found, the same answer as for no such domain`, async () => {
      const theirs = await assertRejected(
        plane,
        method,
        `/v1/domains/${aDomain}${suffix}`,
        { token: b.token, body },
        404,
        "not_found",
      );
      const none = await call(plane.app, method, `/v1/domains/${absent}${suffix}`, {
        token: b.token,
        body,
      });
      assert.equal(
        theirs.text.replaceAll(String(aDomain), "ID"),
        none.text.replaceAll(String(absent), "ID"),
        "another tenant's domain answers as if it did not exist",
      );
    });
  }
  await t.step("GET /v1/domains lists only the caller's domains; the admin sees all", async () => {
    const ids = (token: string) =>
      call(plane.app, "GET", "/v1/domains", { token }).then((r) =>
        ok<{ id: number }[]>(r).map((d) => d.id)
      );
    assert.deepEqual(await ids(a.token), [aDomain]);
    assert.deepEqual(await ids(b.token), [bDomain]);
    assert.deepEqual(await ids(ADMIN_TOKEN), [aDomain, bDomain]);
  });
  await t.step("freeing their block through one's own domain: 404 unknown_address", async () => {
    await assertRejected(
      plane,
      "POST",
      `/v1/domains/${bDomain}/free`,
      { token: b.token, body: { address: aBlock.address } },
      404,
      "unknown_address",
    );
    await assertRejected(
      plane,
      "POST",
      `/v1/domains/${bDomain}/realloc`,
      { token: b.token, body: { address: aBlock.address, size: 8 } },
      404,
      "unknown_address",
    );
  });
  await t.step("creating a domain for another tenant: 403 forbidden", async () => {
    await assertRejected(
      plane,
      "POST",
      "/v1/domains",
      { token: b.token, body: { name: "x", vcpus: 1, max_pages: 1, tenant_id: a.id } },
      403,
      "forbidden",
      /tenant_id/,
    );
  });
  await t.step("the owner's block and reservation survived all of it", async () => {
    const s = await domainStats(plane, aDomain);
    assert.equal(s.live_blocks, 1);
    assert.equal(s.reserved_pages, 3);
    assert.equal((await domainStats(plane, bDomain)).reserved_pages, 0);
    const freed = ok<OpResult>(
      await call(plane.app, "POST", `/v1/domains/${aDomain}/free`, {
        token: a.token,
        body: { address: aBlock.address },
      }),
    );
    assert.equal(freed.address, aBlock.address);
  });
});

// -- tenants --------------------------------------------------------------------------------

Deno.test("control plane: tenants (admin)", async (t) => {
  const plane = freshPlane();
  let tenant = { id: 0, token: "" };
  await t.step("POST /v1/tenants: 201 with its usage and a token shown once", async () => {
    const body = ok<Record<string, unknown>>(
      await call(plane.app, "POST", "/v1/tenants", {
        token: ADMIN_TOKEN,
        body: { name: "acme", max_domains: 2, max_pages: 300 },
      }),
      201,
    );
    assert.match(String(body["token"]), /^hvt_\d+_[A-Za-z0-9_-]+$/);
    const { token, ...rest } = body;
    assert.deepEqual(rest, {
      id: 1,
      name: "acme",
      max_domains: 2,
      max_pages: 300,
      domains: 0,
      pages_reserved: 0,
      pages_held: 0,
    });
    tenant = { id: 1, token: String(token) };
  });
  await t.step("GET /v1/tenants and /v1/tenants/:id show usage, never the token", async () => {
    const d = await createDomain(plane, tenant.token, { max_pages: 100 });
    await alloc(plane, tenant.token, d, { size: 4095 });
    const list = ok<Record<string, unknown>[]>(
      await call(plane.app, "GET", "/v1/tenants", { token: ADMIN_TOKEN }),
    );
    const one = ok<Record<string, unknown>>(
      await call(plane.app, "GET", `/v1/tenants/${tenant.id}`, { token: ADMIN_TOKEN }),
    );
    assert.deepEqual(list, [one]);
    assert.equal(one["domains"], 1);
    assert.equal(one["pages_reserved"], 100);
    assert.equal(one["pages_held"], plane.hv.tenancy.pagesHeldBy(tenant.id));
    assert.ok((one["pages_held"] as number) > 0);
    assert.equal("token" in one, false);
  });
  const t0 = { name: "x", max_domains: 1, max_pages: 1 };
  const bad: BadCase[] = [
    invalid("missing name", { max_domains: 1, max_pages: 1 }, "name"),
    invalid("empty name", { ...t0, name: "" }, "name"),
    invalid("name with a space", { ...t0, name: "a b" }, "name"),
    invalid("name of 65 characters", { ...t0, name: "n".repeat(65) }, "name"),
    invalid("name not a string", { ...t0, name: 7 }, "name"),
    invalid("max_domains 0", { ...t0, max_domains: 0 }, "max_domains"),
    invalid("max_domains -1", { ...t0, max_domains: -1 }, "max_domains"),
    invalid("max_domains 1.5", { ...t0, max_domains: 1.5 }, "max_domains"),
    invalid("max_domains as a string", { ...t0, max_domains: "2" }, "max_domains"),
    invalid("max_pages 0", { ...t0, max_pages: 0 }, "max_pages"),
    invalid("max_pages over 2^31", { ...t0, max_pages: 2 ** 31 + 1 }, "max_pages"),
    invalid("unknown field", { ...t0, admin: true }, "admin"),
    invalid("array body", [], "body"),
    invalid("null body", null, "body"),
    ["malformed JSON", { raw: '{"name": "x",' }, 400, "malformed_request", /JSON/],
    ["empty body", { raw: "" }, 400, "malformed_request"],
    [
      "body over 64 KiB",
      { raw: JSON.stringify({ name: "x".repeat(70_000) }) },
      413,
      "body_too_large",
      /65536/,
    ],
  ];
  for (const [what, options, status, code, message] of bad) {
    await t.step(`POST /v1/tenants with ${what}: ${status} ${code}`, async () => {
      await assertRejected(
        plane,
        "POST",
        "/v1/tenants",
        { token: ADMIN_TOKEN, ...options },
        status,
        code,
        message,
      );
    });
  }
  await t.step("a tenant id that is not a positive integer: 400", async () => {
    for (const id of ["abc", "0", "-1", "1.5", "2147483649"]) {
      for (const method of ["GET", "DELETE"]) {
        await assertRejected(
          plane,
          method,
          `/v1/tenants/${id}`,
          { token: ADMIN_TOKEN },
          400,
          "invalid_request",
          /id/,
        );
      }
    }
  });
  await t.step("no such tenant: 404 not_found", async () => {
    await assertRejected(plane, "GET", "/v1/tenants/42", { token: ADMIN_TOKEN }, 404, "not_found");
    await assertRejected(
      plane,
      "DELETE",
      "/v1/tenants/42",
      { token: ADMIN_TOKEN },
      404,
      "not_found",
    );
  });
  await t.step("DELETE /v1/tenants/:id: 204, its domains destroyed, every page back", async () => {
    const second = await createDomain(plane, tenant.token, { max_pages: 200, engine: "slub" });
    await alloc(plane, tenant.token, second, { size: 100 });
    const ids = plane.hv.tenancy.domains(tenant.id).map((d) => d.id);
    assert.equal(ids.length, 2);
    const deleted = await call(plane.app, "DELETE", `/v1/tenants/${tenant.id}`, {
      token: ADMIN_TOKEN,
    });
    assert.equal(deleted.status, 204);
    assert.equal(deleted.text, "");
    for (const id of ids) assert.equal(plane.hv.pages.pagesOwnedBy(id), 0, `domain ${id}`);
    assert.deepEqual(plane.hv.pages.check(), []);
    const pa = plane.hv.pages.stats();
    assert.equal(pa.freeFrameCount, pa.frameCount);
    assertInvariants(plane.hv);
    await assertRejected(
      plane,
      "GET",
      `/v1/tenants/${tenant.id}`,
      { token: ADMIN_TOKEN },
      404,
      "not_found",
    );
    await assertRejected(
      plane,
      "DELETE",
      `/v1/tenants/${tenant.id}`,
      { token: ADMIN_TOKEN },
      404,
      "not_found",
    );
    for (const id of ids) {
      await assertRejected(
        plane,
        "GET",
        `/v1/domains/${id}`,
        { token: ADMIN_TOKEN },
        404,
        "not_found",
      );
    }
    await assertRejected(plane, "GET", "/v1/domains", { token: tenant.token }, 401, "unauthorized");
  });
});

// -- domains --------------------------------------------------------------------------------

Deno.test("control plane: domains", async (t) => {
  const plane = freshPlane();
  const a = await createTenant(plane, "acme", { max_domains: 2, max_pages: 1000 });
  let first = 0;
  await t.step("POST /v1/domains by a tenant: 201, its own, with empty figures", async () => {
    const d = ok<DomainStats>(
      await call(plane.app, "POST", "/v1/domains", {
        token: a.token,
        body: { name: "web", vcpus: 4, max_pages: 600, engine: "slub" },
      }),
      201,
    );
    assert.equal(d.tenant_id, a.id);
    assert.equal(d.engine, "slub");
    assert.equal(d.vcpus, 4);
    assert.equal(d.max_pages, 600);
    assert.equal(d.pages_held, 0);
    assert.equal(d.live_blocks, 0);
    assert.deepEqual(await domainStats(plane, d.id), d);
    first = d.id;
  });
  await t.step("the default engine is the hypervisor's", async () => {
    const id = await createDomain(plane, a.token, { max_pages: 10 });
    assert.equal((await domainStats(plane, id)).engine, "tlsf");
    assert.equal(
      (await call(plane.app, "DELETE", `/v1/domains/${id}`, { token: a.token })).status,
      204,
    );
  });
  await t.step("the admin creates a domain for a tenant it names; without one: 400", async () => {
    await assertRejected(
      plane,
      "POST",
      "/v1/domains",
      { token: ADMIN_TOKEN, body: { name: "x", vcpus: 1, max_pages: 1 } },
      400,
      "invalid_request",
      /tenant_id/,
    );
    await assertRejected(
      plane,
      "POST",
      "/v1/domains",
      { token: ADMIN_TOKEN, body: { name: "x", vcpus: 1, max_pages: 1, tenant_id: 77 } },
      404,
      "not_found",
      /tenant 77/,
    );
    const d = ok<DomainStats>(
      await call(plane.app, "POST", "/v1/domains", {
        token: ADMIN_TOKEN,
        body: { name: "ops", vcpus: 1, max_pages: 1, tenant_id: a.id },
      }),
      201,
    );
    assert.equal(d.tenant_id, a.id);
    assert.equal(
      (await call(plane.app, "DELETE", `/v1/domains/${d.id}`, { token: ADMIN_TOKEN })).status,
      204,
    );
  });
  const valid = { name: "d", vcpus: 1, max_pages: 1 };
  const bad: BadCase[] = [
    invalid("vcpus 0", { ...valid, vcpus: 0 }, "vcpus"),
    invalid("vcpus 4097", { ...valid, vcpus: 4097 }, "vcpus"),
    invalid("vcpus 1.5", { ...valid, vcpus: 1.5 }, "vcpus"),
    invalid("vcpus missing", { name: "d", max_pages: 1 }, "vcpus"),
    invalid("max_pages 0", { ...valid, max_pages: 0 }, "max_pages"),
    invalid("max_pages -4", { ...valid, max_pages: -4 }, "max_pages"),
    invalid("max_pages as a string", { ...valid, max_pages: "1" }, "max_pages"),
    invalid("unknown engine", { ...valid, engine: "no-such-engine" }, "engine"),
    invalid("engine not a string", { ...valid, engine: 3 }, "engine"),
    invalid("bad name", { ...valid, name: "../etc" }, "name"),
    invalid("tenant_id 0", { ...valid, tenant_id: 0 }, "tenant_id"),
    invalid("unknown field", { ...valid, memory: 5 }, "memory"),
    invalid("a string body", "d", "body"),
    ["malformed JSON", { raw: "{'name': 'd'}" }, 400, "malformed_request"],
    [
      "body over 64 KiB",
      { raw: " ".repeat(MiB(1) / 16) + JSON.stringify(valid) },
      413,
      "body_too_large",
    ],
  ];
  for (const [what, options, status, code, message] of bad) {
    await t.step(`POST /v1/domains with ${what}: ${status} ${code}`, async () => {
      await assertRejected(
        plane,
        "POST",
        "/v1/domains",
        { token: a.token, ...options },
        status,
        code,
        message,
      );
    });
  }
  await t.step("over the tenant's sum of max_pages: 409 quota_exceeded", async () => {
    await assertRejected(
      plane,
      "POST",
      "/v1/domains",
      { token: a.token, body: { ...valid, max_pages: 401 } },
      409,
      "quota_exceeded",
      /400 of its 1000 pages left/,
    );
  });
  await t.step("over the tenant's max_domains: 409 quota_exceeded", async () => {
    await createDomain(plane, a.token, { max_pages: 400 });
    await assertRejected(
      plane,
      "POST",
      "/v1/domains",
      { token: a.token, body: valid },
      409,
      "quota_exceeded",
      /2 of its 2 domains/,
    );
    assertInvariants(plane.hv);
  });
  await t.step("DELETE /v1/domains/:id: 204 and every page back; then 404", async () => {
    await alloc(plane, a.token, first, { size: 100 });
    await alloc(plane, a.token, first, { size: 100_000 });
    assert.ok(plane.hv.pages.pagesOwnedBy(first) > 0);
    const deleted = await call(plane.app, "DELETE", `/v1/domains/${first}`, { token: a.token });
    assert.equal(deleted.status, 204);
    assert.equal(plane.hv.pages.pagesOwnedBy(first), 0);
    assert.deepEqual(plane.hv.pages.check(), []);
    assertInvariants(plane.hv);
    for (
      const [method, suffix, body] of [["GET", "", undefined], ["DELETE", "", undefined], [
        "POST",
        "/alloc",
        { size: 1 },
      ]] as const
    ) {
      await assertRejected(
        plane,
        method,
        `/v1/domains/${first}${suffix}`,
        { token: a.token, body },
        404,
        "not_found",
      );
    }
    // Its quota is free again: a new domain of 600 pages fits.
    await createDomain(plane, a.token, { max_pages: 600 });
  });
});

Deno.test("control plane: a domain id that is not a positive integer is 400 on every domain route", async (t) => {
  const plane = freshPlane();
  const a = await createTenant(plane, "acme");
  await createDomain(plane, a.token);
  const routes: [string, string, unknown][] = [
    ["GET", "", undefined],
    ["DELETE", "", undefined],
    ["POST", "/alloc", { size: 8 }],
    ["POST", "/free", { address: DIRECTMAP_BASE_ADDRESS }],
    ["POST", "/realloc", { address: DIRECTMAP_BASE_ADDRESS, size: 8 }],
    ["POST", "/batch", { ops: [{ op: "alloc", size: 8 }] }],
    ["POST", "/reservation", { pages: 1 }],
    ["POST", "/reservation/release", { pages: 1 }],
    ["GET", "/events?max_events=1", undefined],
  ];
  for (const [method, suffix, body] of routes) {
    await t.step(`${method} /v1/domains/:id${suffix}`, async () => {
      for (const id of ["abc", "0", "-1", "1.5", "2147483649", "%20"]) {
        await assertRejected(
          plane,
          method,
          `/v1/domains/${id}${suffix}`,
          { token: a.token, body },
          400,
          "invalid_request",
          /id/,
        );
      }
      await assertRejected(
        plane,
        method,
        `/v1/domains/12345${suffix}`,
        { token: a.token, body },
        404,
        "not_found",
      );
    });
  }
});

Deno.test("control plane: a domain id is a plain decimal integer (no hex, exponent, sign or spaces)", async (t) => {
  const plane = freshPlane();
  const a = await createTenant(plane, "acme");
  const id = await createDomain(plane, a.token);
  assert.equal(id, 1);
  for (const spelled of ["0x1", "1e0", "+1", "%201", "1%20", "1.0"]) {
    await t.step(`GET /v1/domains/${spelled}: 400, not domain 1`, async () => {
      await assertRejected(
        plane,
        "GET",
        `/v1/domains/${spelled}`,
        { token: a.token },
        400,
        "invalid_request",
        /id/,
      );
    });
  }
});

// -- bodies ---------------------------------------------------------------------------------

Deno.test("control plane: every POST route refuses bodies that are not a JSON object of its shape", async (t) => {
  const plane = freshPlane();
  const a = await createTenant(plane, "acme");
  const d = await createDomain(plane, a.token);
  const routes: [string, string][] = [
    ["/v1/tenants", ADMIN_TOKEN],
    ["/v1/domains", a.token],
    [`/v1/domains/${d}/alloc`, a.token],
    [`/v1/domains/${d}/free`, a.token],
    [`/v1/domains/${d}/realloc`, a.token],
    [`/v1/domains/${d}/batch`, a.token],
    [`/v1/domains/${d}/reservation`, a.token],
    [`/v1/domains/${d}/reservation/release`, a.token],
  ];
  const classes: [string, CallOptions, number, string][] = [
    ["malformed JSON", { raw: "{" }, 400, "malformed_request"],
    ["trailing garbage after JSON", { raw: '{"size": 8} x' }, 400, "malformed_request"],
    ["no body", {}, 400, "invalid_request"],
    ["an array", { body: [1, 2] }, 400, "invalid_request"],
    ["null", { body: null }, 400, "invalid_request"],
    ["a number", { body: 8 }, 400, "invalid_request"],
    ["an empty object", { body: {} }, 400, "invalid_request"],
    ["an object with only an unknown field", { body: { zzz: 1 } }, 400, "invalid_request"],
    ["a prototype key", { raw: '{"__proto__": {"size": 8}}' }, 400, "invalid_request"],
  ];
  for (const [path, token] of routes) {
    await t.step(`POST ${path}`, async () => {
      for (const [what, options, status, code] of classes) {
        const before = await stateOf(plane);
        const reply = await call(plane.app, "POST", path, { token, ...options });
        assertError(reply, status, code);
        assert.ok(reply.json && isErrorBody(reply.json), what);
        await assertUnchanged(plane, before);
      }
      // Not JSON at all: refused as an unsupported media type, still a JSON error.
      const before = await stateOf(plane);
      const typed = await call(plane.app, "POST", path, {
        token,
        raw: '{"size": 8}',
        contentType: "text/plain",
      });
      assert.equal(typed.status, 415, typed.text);
      assert.ok(isErrorBody(typed.json), typed.text);
      await assertUnchanged(plane, before);
    });
  }
});

Deno.test("control plane: a body of the wrong media type is a 415 that says what to send", async () => {
  const plane = freshPlane();
  const reply = await call(plane.app, "POST", "/v1/tenants", {
    token: ADMIN_TOKEN,
    raw: JSON.stringify({ name: "x", max_domains: 1, max_pages: 1 }),
    contentType: "text/plain",
  });
  assertError(reply, 415, "unsupported_media_type", /application\/json/);
});

// -- memory operations, every engine ----------------------------------------------------------

for (const engine of ENGINE_NAMES) {
  Deno.test(`control plane (${engine}): alloc, free, realloc, batch and their bad inputs`, async (t) => {
    const plane = freshPlane();
    const a = await createTenant(plane, "acme");
    const id = await createDomain(plane, a.token, { engine, vcpus: 2, max_pages: 1024 });
    const other = await createDomain(plane, a.token, {
      engine,
      vcpus: 1,
      max_pages: 64,
      name: "other",
    });
    const path = (op: string) => `/v1/domains/${id}/${op}`;
    const refuse = (op: string, body: unknown, status: number, code: string, message?: RegExp) =>
      assertRejected(plane, "POST", path(op), { token: a.token, body }, status, code, message);
    const post = (op: string, body: unknown) =>
      call(plane.app, "POST", path(op), { token: a.token, body });
    const live = new Map<number, number>(); // address -> size

    const maxAlign = plane.hv.tenancy.domain(id).engine.maxAlignBytes;
    await t.step({
      name: maxAlign < 2 ** 30
        ? `alloc aligned to ${
          maxAlign * 2
        } (above ${engine}'s ${maxAlign}): 400, a fresh pool takes no pages`
        : `alloc aligned above the engine's limit: not applicable, ${engine} honours every alignment the API accepts`,
      ignore: maxAlign >= 2 ** 30,
      fn: async () => {
        assert.equal(plane.hv.pages.pagesOwnedBy(id), 0, "precondition: the pool is not made yet");
        await refuse("alloc", { size: 16, align: maxAlign * 2 }, 400, "invalid_request", /align/);
        assert.equal(plane.hv.pages.pagesOwnedBy(id), 0, "a refused alloc took pages");
      },
    });
    await t.step("alloc: 201 with an address, usable bytes >= size, counted in stats", async () => {
      const cases: [number, number][] = [[1, 0], [64, 1], [100, 0], [4095, 1], [5000, 0], [
        20_000,
        0,
      ]];
      for (const [size, vcpu] of cases) {
        const r = ok<OpResult>(await post("alloc", { size, vcpu }), 201);
        assert.equal(r.ok, true);
        assert.equal(r.cause, null);
        assert.ok(
          Number.isSafeInteger(r.address) && r.address > DIRECTMAP_BASE_ADDRESS,
          String(r.address),
        );
        assert.ok(r.reserved_bytes >= size, `${r.reserved_bytes} usable for ${size}`);
        assert.ok(Number.isInteger(r.steps) && r.steps >= 0);
        assert.ok(Number.isInteger(r.cycles) && r.cycles > 0);
        assert.ok(!live.has(r.address), "a fresh address");
        live.set(r.address, size);
      }
      const s = await domainStats(plane, id);
      assert.equal(s.live_blocks, live.size);
      assert.equal(s.requested_bytes, [...live.values()].reduce((x, y) => x + y, 0));
      assert.equal(s.ops.allocs, live.size);
      assert.ok(s.pages_held > 0 && s.pages_held <= s.max_pages);
      assertInvariants(plane.hv);
    });
    await t.step("alloc with an alignment: the address is aligned", async () => {
      const r = ok<OpResult>(await post("alloc", { size: 40, align: 64 }), 201);
      assert.equal(r.address % 64, 0, r.address.toString(16));
      live.set(r.address, 40);
    });
    const bad: [string, unknown, RegExp][] = [
      ["no size", {}, /size/],
      ["size 0", { size: 0 }, /size/],
      ["size -1", { size: -1 }, /size/],
      ["size 1.5", { size: 1.5 }, /size/],
      ["size as a string", { size: "8" }, /size/],
      ["size null", { size: null }, /size/],
      ["size true", { size: true }, /size/],
      ["size 2^40 + 1", { size: 2 ** 40 + 1 }, /size/],
      ["size 1e300", { size: 1e300 }, /size/],
      ["align 3", { size: 8, align: 3 }, /align/],
      ["align 0", { size: 8, align: 0 }, /align/],
      ["align 2^31", { size: 8, align: 2 ** 31 }, /align/],
      ["vcpu -1", { size: 8, vcpu: -1 }, /vcpu/],
      ["vcpu 0.5", { size: 8, vcpu: 0.5 }, /vcpu/],
      ["vcpu = vcpus (out of range for this domain)", { size: 8, vcpu: 2 }, /CPU 2|vcpu/],
      ["vcpu 4096", { size: 8, vcpu: 4096 }, /vcpu/],
      ["unknown field", { size: 8, flags: 1 }, /flags/],
    ];
    await t.step(
      "alloc with a bad body: 400 invalid_request naming the field, nothing changes",
      async (t) => {
        for (const [what, body, message] of bad) {
          await t.step(what, async () => {
            await refuse("alloc", body, 400, "invalid_request", message);
          });
        }
      },
    );
    const p = ok<OpResult>(await post("alloc", { size: 64 }), 201).address;
    const q = ok<OpResult>(await post("alloc", { size: 64 }), 201).address;
    live.set(p, 64).set(q, 64);
    await t.step("free: 200 and the block is gone from the stats", async () => {
      const before = await domainStats(plane, id);
      const r = ok<OpResult>(await post("free", { address: p, vcpu: 1 }));
      assert.deepEqual({ ok: r.ok, address: r.address, cause: r.cause }, {
        ok: true,
        address: p,
        cause: null,
      });
      live.delete(p);
      const after = await domainStats(plane, id);
      assert.equal(after.live_blocks, before.live_blocks - 1);
      assert.equal(after.requested_bytes, before.requested_bytes - 64);
      assert.equal(after.ops.frees, before.ops.frees + 1);
      assertInvariants(plane.hv);
    });
    await t.step(
      "double free (its page still in use): 409 double_free, nothing changes",
      async () => {
        await refuse("free", { address: p }, 409, "double_free", /already free/);
      },
    );
    await t.step("interior pointer: 409 interior_pointer, nothing changes", async () => {
      await refuse("free", { address: q + 8 }, 409, "interior_pointer");
      await refuse("realloc", { address: q + 8, size: 8 }, 409, "interior_pointer");
    });
    await t.step("unknown address: 404 unknown_address, nothing changes", async () => {
      const outside = DIRECTMAP_BASE_ADDRESS + MiB(64) + PAGE_SIZE_BYTES; // past the machine
      const freeFrame = DIRECTMAP_BASE_ADDRESS; // frame 0: nobody's (allocations come from the top)
      assert.notEqual(plane.hv.pages.ownerOf(plane.hv.pages.blockHeadOf(0)), id);
      const otherBlock = ok<OpResult>(
        await call(plane.app, "POST", `/v1/domains/${other}/alloc`, {
          token: a.token,
          body: { size: 64 },
        }),
        201,
      ).address;
      for (const address of [5, outside, freeFrame, otherBlock]) {
        await refuse("free", { address }, 404, "unknown_address", /^Cannot free address 0x/);
        await refuse(
          "realloc",
          { address, size: 8 },
          404,
          "unknown_address",
          /^Cannot resize the block at 0x/,
        );
      }
    });
    await t.step("free or realloc with a bad body: 400, nothing changes", async () => {
      const freeBodies: unknown[] = [
        {},
        { address: 0 },
        { address: -4096 },
        { address: 1.5 },
        { address: String(q) },
        { address: 2 ** 53 },
        { address: q, vcpu: 2 },
        { address: q, vcpu: -1 },
        { address: q, size: 8 },
      ];
      for (const body of freeBodies) {
        await refuse("free", body, 400, "invalid_request");
      }
      const reallocBodies: unknown[] = [
        { address: q },
        { size: 8 },
        { address: q, size: 0 },
        { address: q, size: 2 ** 40 + 1 },
        { address: q, size: 8, align: 6 },
        { address: q, size: 8, vcpu: 2 },
        { address: q, size: 8, whatever: null },
      ];
      for (const body of reallocBodies) {
        await refuse("realloc", body, 400, "invalid_request");
      }
    });
    await t.step(
      "realloc: grow and shrink, counted; the old address is no longer a block",
      async () => {
        const before = await domainStats(plane, id);
        const grown = ok<OpResult>(await post("realloc", { address: q, size: 10_000 }), 201);
        assert.equal(grown.ok, true);
        assert.ok(grown.reserved_bytes >= 10_000);
        live.delete(q);
        live.set(grown.address, 10_000);
        if (grown.address !== q) {
          const stale = await call(plane.app, "POST", path("free"), {
            token: a.token,
            body: { address: q },
          });
          assert.ok([404, 409].includes(stale.status), stale.text);
        }
        const shrunk = ok<OpResult>(
          await post("realloc", { address: grown.address, size: 16, vcpu: 1 }),
          201,
        );
        assert.ok(shrunk.reserved_bytes >= 16);
        live.delete(grown.address);
        live.set(shrunk.address, 16);
        const after = await domainStats(plane, id);
        assert.equal(after.ops.reallocs, before.ops.reallocs + 2);
        assert.equal(after.live_blocks, before.live_blocks);
        assert.equal(after.requested_bytes, before.requested_bytes - 64 + 16);
        assertInvariants(plane.hv);
      },
    );
    await t.step(
      "alloc or realloc beyond max_pages: 507 with cause quota; the old block stays",
      async () => {
        const tooBig = (1024 + 1) * PAGE_SIZE_BYTES;
        const before = await domainStats(plane, id);
        const r = await post("alloc", { size: tooBig });
        assert.equal(r.status, 507, r.text);
        assert.deepEqual(
          {
            ok: (r.json as OpResult).ok,
            address: (r.json as OpResult).address,
            cause: (r.json as OpResult).cause,
          },
          { ok: false, address: 0, cause: "quota" },
        );
        const [addr] = [...live.keys()];
        const rr = await post("realloc", { address: addr, size: tooBig });
        assert.equal(rr.status, 507, rr.text);
        assert.equal((rr.json as OpResult).cause, "quota");
        const after = await domainStats(plane, id);
        assert.equal(after.failures["quota"], before.failures["quota"]! + 2);
        assert.equal(after.ops.failed, before.ops.failed + 2);
        assert.equal(after.live_blocks, before.live_blocks);
        assert.equal(after.pages_held, before.pages_held);
        ok(await post("free", { address: addr })); // still a live block
        live.delete(addr!);
      },
    );
    await t.step("under pressure the domain never holds more than max_pages", async () => {
      const sizes = [24, 100, 1000, 3000, 5000, 9000]; // none that tlsf-2008 refuses
      const ops = Array.from(
        { length: 3000 },
        (_, i) => ({ op: "alloc" as const, size: sizes[i % 6]! }),
      );
      const r = ok<BatchResult>(await post("batch", { ops }));
      assert.ok(r.causes.includes("quota"), "the batch ran into the quota");
      assert.ok(r.causes.every((c) => c === null || c === "quota"), r.causes.join());
      const s = await domainStats(plane, id);
      assert.ok(s.pages_held <= 1024, `${s.pages_held} pages held`);
      assert.equal(s.failures["quota"], 2 + r.causes.filter((c) => c === "quota").length);
      assertInvariants(plane.hv);
      // Give them back, so the batch cases below have room.
      const frees = r.addresses.flatMap((address) =>
        address === 0 ? [] : [{ op: "free" as const, address }]
      );
      const back = ok<BatchResult>(await post("batch", { ops: frees }));
      assert.deepEqual(back.errors, []);
      assert.equal(back.served, frees.length);
    });
    await t.step(
      "batch: ops run in order, refs name earlier blocks, rejected ops listed",
      async () => {
        const [held] = [...live.keys()];
        const before = await domainStats(plane, id);
        const ops = [
          { op: "alloc", size: 100 }, // 0
          { op: "alloc", size: 200, vcpu: 1 }, // 1
          { op: "free", ref: 0 }, // 2
          { op: "realloc", ref: 1, size: 300 }, // 3
          { op: "free", address: held }, // 4
          { op: "free", ref: 0 }, // 5: op 0's block is gone
          { op: "free", address: 5 }, // 6: unknown
          { op: "realloc", ref: 4, size: 8 }, // 7: a free holds no block
          { op: "free", ref: 9 }, // 8: not earlier
          { op: "alloc", size: 8, vcpu: 2 }, // 9: vCPU out of range
          { op: "alloc", size: 1025 * PAGE_SIZE_BYTES }, // 10: not served (quota)
          { op: "free", ref: 3 }, // 11
          { op: "free", address: held, ref: 0 }, // 12: both
          { op: "free" }, // 13: neither
          { op: "alloc", size: 2 ** 40 }, // 14: not served (larger than any block)
        ];
        const r = ok<BatchResult>(await post("batch", { ops }));
        live.delete(held!);
        assert.equal(r.count, ops.length);
        for (const column of [r.addresses, r.causes, r.steps, r.cycles]) {
          assert.equal(column.length, ops.length);
        }
        assert.deepEqual(
          r.errors.map((e) => [e.index, e.code]),
          [
            [5, "invalid_request"],
            [6, "unknown_address"],
            [7, "invalid_request"],
            [8, "invalid_request"],
            [
              9,
              "invalid_request",
            ],
            [12, "invalid_request"],
            [13, "invalid_request"],
          ],
        );
        for (const e of r.errors) {
          assert.ok(e.message.length > 0);
        }
        assert.equal(r.served, 6); // 0, 1, 2, 3, 4, 11
        assert.deepEqual(r.causes.map((c, i) => c === null ? null : [i, c]).filter(Boolean), [
          [10, "quota"],
          [14, "unservable"],
        ]);
        assert.ok(r.addresses[0]! > 0 && r.addresses[1]! > 0 && r.addresses[3]! > 0);
        assert.equal(r.addresses[2], r.addresses[0], "a free reports the address it freed");
        assert.equal(r.addresses[11], r.addresses[3]);
        const after = await domainStats(plane, id);
        assert.equal(after.live_blocks, before.live_blocks - 1);
        assert.equal(after.ops.allocs, before.ops.allocs + 2);
        assert.equal(after.ops.frees, before.ops.frees + 3);
        assert.equal(after.ops.reallocs, before.ops.reallocs + 1);
        assertInvariants(plane.hv);
      },
    );
    await t.step("batch refused as a whole: 400 or 413, nothing changes", async (t) => {
      const cases: BadCase[] = [
        ["no ops", { body: { ops: [] } }, 400, "invalid_request", /ops/],
        ["ops missing", { body: {} }, 400, "invalid_request", /ops/],
        [
          "ops not an array",
          { body: { ops: { op: "alloc", size: 1 } } },
          400,
          "invalid_request",
          /ops/,
        ],
        [
          "10001 ops",
          { body: { ops: Array(10_001).fill({ op: "alloc", size: 1 }) } },
          400,
          "invalid_request",
          /10000/,
        ],
        [
          "unknown op",
          { body: { ops: [{ op: "alloc", size: 1 }, { op: "memset", size: 1 }] } },
          400,
          "invalid_request",
          /ops\.1/,
        ],
        [
          "op with an unknown field",
          { body: { ops: [{ op: "alloc", size: 1, zero: true }] } },
          400,
          "invalid_request",
          /ops\.0/,
        ],
        [
          "alloc of size 0",
          { body: { ops: [{ op: "alloc", size: 1 }, { op: "alloc", size: 0 }] } },
          400,
          "invalid_request",
          /ops\.1/,
        ],
        [
          "negative ref",
          { body: { ops: [{ op: "alloc", size: 1 }, { op: "free", ref: -1 }] } },
          400,
          "invalid_request",
          /ops\.1/,
        ],
        [
          "unknown top-level field",
          { body: { ops: [{ op: "alloc", size: 1 }], atomic: true } },
          400,
          "invalid_request",
          /atomic/,
        ],
        [
          "body over 4 MiB",
          { raw: `{"ops": [{"op": "alloc", "size": 1}]${" ".repeat(MiB(4))}}` },
          413,
          "body_too_large",
          /4194304/,
        ],
      ];
      for (const [what, options, status, code, message] of cases) {
        await t.step(what, async () => {
          await assertRejected(
            plane,
            "POST",
            path("batch"),
            { token: a.token, ...options },
            status,
            code,
            message,
          );
        });
      }
    });
    await t.step("batch of exactly 10000 ops (over 64 KiB) runs", async () => {
      // Each alloc freed right after (by ref): a page-granular engine (buddy) fits the quota too.
      const ops = Array.from(
        { length: 10_000 },
        (_, i) => (i % 2 === 0 ? { op: "alloc", size: 24 } : { op: "free", ref: i - 1 }),
      );
      assert.ok(JSON.stringify({ ops }).length > 64 * 1024);
      const before = await domainStats(plane, id);
      const r = ok<BatchResult>(await post("batch", { ops }));
      assert.equal(r.count, 10_000);
      assert.deepEqual(r.errors, []);
      assert.equal(r.served, 10_000);
      const after = await domainStats(plane, id);
      assert.equal(after.live_blocks, before.live_blocks);
      assert.equal(after.ops.allocs, before.ops.allocs + 5000);
      assertInvariants(plane.hv);
    });
    await t.step("DELETE the domain: every page back, the machine sound", async () => {
      assert.ok(plane.hv.pages.pagesOwnedBy(id) > 0);
      assert.equal(
        (await call(plane.app, "DELETE", `/v1/domains/${id}`, { token: a.token })).status,
        204,
      );
      assert.equal(
        (await call(plane.app, "DELETE", `/v1/domains/${other}`, { token: a.token })).status,
        204,
      );
      assert.equal(plane.hv.pages.pagesOwnedBy(id), 0);
      assert.equal(plane.hv.pages.pagesOwnedBy(other), 0);
      assert.deepEqual(plane.hv.pages.check(), []);
      const pa = plane.hv.pages.stats();
      assert.equal(pa.freeFrameCount, pa.frameCount);
      await refuse("free", { address: q }, 404, "not_found");
    });
  });
}

Deno.test("control plane: a batch ref names the block its op made, not one that reused its address", async () => {
  const plane = freshPlane();
  const a = await createTenant(plane, "acme");
  const id = await createDomain(plane, a.token);
  const post = (op: string, body: unknown) =>
    call(plane.app, "POST", `/v1/domains/${id}/${op}`, { token: a.token, body });
  // Learn the address the next 100-byte alloc gets (tlsf's lists are LIFO), then free it.
  const x = ok<OpResult>(await post("alloc", { size: 100 }), 201).address;
  ok(await post("free", { address: x }));
  const r = ok<BatchResult>(
    await post("batch", {
      ops: [
        { op: "alloc", size: 100 }, // 0: gets x
        { op: "free", address: x }, // 1: frees op 0's block by address
        { op: "alloc", size: 100 }, // 2: gets x again: a new block
        { op: "free", ref: 0 }, // 3: op 0 holds no block any more
      ],
    }),
  );
  assert.equal(r.addresses[0], x, "precondition: op 0 got x");
  assert.equal(r.addresses[2], x, "precondition: op 2 reused x");
  assert.deepEqual(
    r.errors.map((e) => e.index),
    [3],
    "ref 0 must be refused: op 0's block was freed by op 1; freeing x would free op 2's block",
  );
  assert.equal((await domainStats(plane, id)).live_blocks, 1, "op 2's block is still live");
});

// -- allocation failures ---------------------------------------------------------------------

Deno.test("control plane: allocation failure is an outcome: 507 with its cause (quota, exhaustion, contiguity)", async (t) => {
  const plane = freshPlane();
  const frames = plane.hv.pages.frameCount;
  assert.equal(frames, 16_384);
  const a = await createTenant(plane, "big", { max_domains: 2, max_pages: 2 ** 20 });
  const id = await createDomain(plane, a.token, { max_pages: 2 ** 19 });
  const post = (op: string, body: unknown) =>
    call(plane.app, "POST", `/v1/domains/${id}/${op}`, { token: a.token, body });
  const failures = async () => (await domainStats(plane, id)).failures;

  await t.step("quota: over max_pages", async () => {
    const small = await createDomain(plane, a.token, { max_pages: 4, name: "small" });
    const r = await call(plane.app, "POST", `/v1/domains/${small}/alloc`, {
      token: a.token,
      body: { size: 5 * PAGE_SIZE_BYTES },
    });
    assert.equal(r.status, 507, r.text);
    assert.equal((r.json as OpResult).cause, "quota");
    assert.equal((r.json as OpResult).ok, false);
    assert.equal(plane.hv.pages.pagesOwnedBy(small), 2, "only the pool's meta pages");
  });
  await t.step("unservable: larger than the largest block the machine could have", async () => {
    const r = await post("alloc", { size: 2 ** 40 });
    assert.equal(r.status, 507, r.text);
    assert.equal((r.json as OpResult).cause, "unservable");
  });
  const addresses: number[] = [];
  await t.step("exhaustion: fewer free frames than asked for", async () => {
    // Fill the machine with one-page blocks (xmalloc(4095) is one page in tlsf).
    for (let round = 0; round < 2; round++) {
      const r = ok<BatchResult>(
        await post("batch", { ops: Array(10_000).fill({ op: "alloc", size: 4095 }) }),
      );
      addresses.push(...r.addresses.filter((x) => x !== 0));
      if (round === 1) {
        assert.ok(r.causes.includes("exhaustion"), "the machine filled up");
        assert.ok(r.causes.every((c) => c === null || c === "exhaustion"), r.causes.join());
      }
    }
    assert.equal(plane.hv.pages.freeFrameCount, 0);
    const r = await post("alloc", { size: 4095 });
    assert.equal(r.status, 507, r.text);
    assert.deepEqual(r.json, {
      ok: false,
      address: 0,
      reserved_bytes: 0,
      cause: "exhaustion",
      steps: (r.json as OpResult).steps,
      cycles: (r.json as OpResult).cycles,
      lock_wait_cycles: 0,
    });
    assert.ok((await failures())["exhaustion"]! > 1);
    assertInvariants(plane.hv);
  });
  await t.step("contiguity: enough free frames, no free run long enough", async () => {
    // Free the blocks on even frames: no two free frames are buddies.
    const even = addresses.filter((x) => frameOf(x) % 2 === 0);
    for (let i = 0; i < even.length; i += 10_000) {
      const chunk = even.slice(i, i + 10_000).map((address) => ({ op: "free", address }));
      assert.deepEqual(ok<BatchResult>(await post("batch", { ops: chunk })).errors, []);
    }
    const stats = ok<{ machine: { free_frames: number; largest_free_order: number } }>(
      await call(plane.app, "GET", "/v1/stats", { token: ADMIN_TOKEN }),
    );
    assert.ok(stats.machine.free_frames > 4000, String(stats.machine.free_frames));
    assert.equal(stats.machine.largest_free_order, 0);
    const before = (await failures())["contiguity"]!;
    const r = await post("alloc", { size: 3 * PAGE_SIZE_BYTES });
    assert.equal(r.status, 507, r.text);
    assert.equal((r.json as OpResult).cause, "contiguity");
    assert.equal((await failures())["contiguity"], before + 1);
    assertInvariants(plane.hv);
  });
  await t.step("the machine-wide stats count the page allocator's failures by cause", async () => {
    const stats = ok<{ machine: { page_allocator: Record<string, number> } }>(
      await call(plane.app, "GET", "/v1/stats", { token: ADMIN_TOKEN }),
    );
    const pa = stats.machine.page_allocator;
    assert.ok(pa["failed_contiguity"]! >= 1 && pa["failed_exhaustion"]! >= 1, JSON.stringify(pa));
    assert.equal(pa["failed_calls"], pa["failed_contiguity"]! + pa["failed_exhaustion"]!);
  });
  await t.step("deleting the tenant returns every frame", async () => {
    assert.equal(
      (await call(plane.app, "DELETE", `/v1/tenants/${a.id}`, { token: ADMIN_TOKEN })).status,
      204,
    );
    assert.equal(plane.hv.pages.pagesOwnedBy(id), 0);
    assert.equal(plane.hv.pages.freeFrameCount, frames);
    assert.deepEqual(plane.hv.pages.check(), []);
  });
});

// -- reservations: the guest's own pages -------------------------------------------------------

type ReservationResult = {
  ok: boolean;
  granted: number;
  reserved_pages: number;
  cause: string | null;
  cycles: number;
  lock_wait_cycles: number;
};
type ReleaseResult = {
  released: number;
  reserved_pages: number;
  cycles: number;
  lock_wait_cycles: number;
};

/** Modelled cycles of reserving or releasing `pages` order-0 pages (cost_model.ts). */
const reservationCycles = (pages: number) => 20 + pages * (10 + 200);

/** Frames the machine's blocks of `owner` cover, and whether every block is one page. */
function ownedBlocks(plane: Plane, owner: number): { frames: number; allOrder0: boolean } {
  let frames = 0;
  let allOrder0 = true;
  plane.hv.pages.forEachBlock((_frame, order, o) => {
    if (o !== owner) return;
    frames += 2 ** order;
    if (order !== 0) allOrder0 = false;
  });
  return { frames, allOrder0 };
}

Deno.test("control plane: reservations of order-0 pages within max_pages, released and returned", async (t) => {
  const plane = freshPlane();
  const a = await createTenant(plane, "acme", { max_pages: 1000 });
  const id = await createDomain(plane, a.token, { max_pages: 100 });
  const domain = plane.hv.tenancy.domain(id);
  const owner = domain.reservationOwner;
  const post = (op: string, body: unknown, token = a.token) =>
    call(plane.app, "POST", `/v1/domains/${id}/${op}`, { token, body });
  const frames = plane.hv.pages.frameCount;

  await t.step(
    "POST reservation: 200, pages under the reservation's own owner, counted",
    async () => {
      assert.notEqual(owner, id, "the reservation has an owner of its own");
      const r = ok<ReservationResult>(await post("reservation", { pages: 60 }));
      assert.deepEqual(r, {
        ok: true,
        granted: 60,
        reserved_pages: 60,
        cause: null,
        cycles: reservationCycles(60),
        lock_wait_cycles: 0,
      });
      assert.deepEqual(ownedBlocks(plane, owner), { frames: 60, allOrder0: true });
      assert.equal(plane.hv.pages.pagesOwnedBy(id), 0, "the pool's own count is untouched");
      assert.equal(plane.hv.pages.freeFrameCount, frames - 60);
      const s = await domainStats(plane, id);
      assert.equal(s.reserved_pages, 60);
      assert.equal(s.pages_held, 0);
      assert.equal(s.max_pages, 100);
      const tenant = ok<{ pages_held: number; pages_reserved: number }>(
        await call(plane.app, "GET", `/v1/tenants/${a.id}`, { token: ADMIN_TOKEN }),
      );
      assert.equal(tenant.pages_held, 60, "a tenant holds its domains' reserved pages");
      assert.equal(
        tenant.pages_reserved,
        100,
        "the tenant's quota (sum of max_pages) is unchanged",
      );
      assertInvariants(plane.hv);
    },
  );
  await t.step("the pool's quota is what the reservation leaves (40 pages)", async () => {
    assert.equal(domain.pageSource.maxPages, 40);
    const tooBig = await post("alloc", { size: 41 * PAGE_SIZE_BYTES });
    assert.equal(tooBig.status, 507, tooBig.text);
    assert.equal((tooBig.json as OpResult).cause, "quota");
    const fits = ok<OpResult>(await post("alloc", { size: 20 * PAGE_SIZE_BYTES }), 201);
    assert.equal(fits.ok, true);
    assertInvariants(plane.hv);
  });
  await t.step(
    "a reservation must fit beside the pool's pages: else 507 quota, unchanged",
    async () => {
      const s = await domainStats(plane, id);
      assert.ok(s.pages_held > 20, `the pool holds ${s.pages_held}`);
      const room = s.max_pages - s.pages_held - s.reserved_pages;
      const before = await stateOf(plane);
      const refused = await post("reservation", { pages: room + 1 });
      assert.equal(refused.status, 507, refused.text);
      assert.deepEqual(refused.json, {
        ok: false,
        granted: 0,
        reserved_pages: 60,
        cause: "quota",
        cycles: 20,
        lock_wait_cycles: 0,
      });
      await assertUnchanged(plane, before);
      const r = ok<ReservationResult>(await post("reservation", { pages: room }));
      assert.equal(r.reserved_pages, 60 + room);
      // The pool may now keep only what it holds: a block needing a new page is refused.
      const full = await post("alloc", { size: 2 * PAGE_SIZE_BYTES });
      assert.equal(full.status, 507, full.text);
      assert.equal((full.json as OpResult).cause, "quota");
      assertInvariants(plane.hv);
      ok(await post("reservation/release", { pages: room }));
    },
  );
  await t.step("release: 200, pages back to the machine, the pool's quota back", async () => {
    const heldByPool = plane.hv.pages.pagesOwnedBy(id);
    const r = ok<ReleaseResult>(await post("reservation/release", { pages: 25 }));
    assert.deepEqual(r, {
      released: 25,
      reserved_pages: 35,
      cycles: reservationCycles(25),
      lock_wait_cycles: 0,
    });
    assert.equal(domain.pageSource.maxPages, 65);
    assert.deepEqual(ownedBlocks(plane, owner), { frames: 35, allOrder0: true });
    assert.equal(plane.hv.pages.freeFrameCount, frames - 35 - heldByPool);
    assertInvariants(plane.hv);
  });
  await t.step("releasing more than is reserved: 409 not_reserved, nothing changes", async () => {
    await assertRejected(
      plane,
      "POST",
      `/v1/domains/${id}/reservation/release`,
      { token: a.token, body: { pages: 36 } },
      409,
      "not_reserved",
      /36 pages.*35 reserved/,
    );
  });
  const bad: [string, unknown, RegExp][] = [
    ["no pages", {}, /pages/],
    ["pages 0", { pages: 0 }, /pages/],
    ["pages -1", { pages: -1 }, /pages/],
    ["pages 1.5", { pages: 1.5 }, /pages/],
    ["pages as a string", { pages: "1" }, /pages/],
    ["pages null", { pages: null }, /pages/],
    ["pages 2^31 + 1", { pages: 2 ** 31 + 1 }, /pages/],
    ["at_cycles -1", { pages: 1, at_cycles: -1 }, /at_cycles/],
    ["at_cycles 0.5", { pages: 1, at_cycles: 0.5 }, /at_cycles/],
    ["unknown field", { pages: 1, order: 9 }, /order/],
  ];
  for (const op of ["reservation", "reservation/release"]) {
    await t.step(`POST ${op} with a bad body: 400 naming the field, nothing changes`, async (t) => {
      for (const [what, body, message] of bad) {
        await t.step(what, async () => {
          await assertRejected(
            plane,
            "POST",
            `/v1/domains/${id}/${op}`,
            { token: a.token, body },
            400,
            "invalid_request",
            message,
          );
        });
      }
    });
  }
  await t.step("pages 2^31 is valid: refused as an outcome (quota), not a 400", async () => {
    const before = await stateOf(plane);
    const r = await post("reservation", { pages: 2 ** 31 });
    assert.equal(r.status, 507, r.text);
    assert.equal((r.json as ReservationResult).cause, "quota");
    await assertUnchanged(plane, before);
  });
  await t.step("at_cycles: the page-allocator calls hold the machine's heap lock", async () => {
    const first = ok<ReservationResult>(await post("reservation", { pages: 4, at_cycles: 1000 }));
    assert.equal(first.lock_wait_cycles, 0);
    const second = ok<ReservationResult>(await post("reservation", { pages: 2, at_cycles: 1000 }));
    assert.equal(second.lock_wait_cycles, 4 * 200, "waits for the first request's 4 page calls");
    const release = ok<ReleaseResult>(
      await post("reservation/release", { pages: 6, at_cycles: 1000 }),
    );
    assert.equal(release.lock_wait_cycles, 6 * 200, "waits for both requests");
    assert.equal(release.reserved_pages, 35);
  });
  await t.step("the admin reserves for a tenant's domain too", async () => {
    const r = ok<ReservationResult>(await post("reservation", { pages: 5 }, ADMIN_TOKEN));
    assert.equal(r.reserved_pages, 40);
    ok(await post("reservation/release", { pages: 5 }, ADMIN_TOKEN));
  });
  await t.step("DELETE the domain: its reserved pages return with the pool's", async () => {
    assert.equal(plane.hv.pages.pagesOwnedBy(owner), 35);
    assert.equal(
      (await call(plane.app, "DELETE", `/v1/domains/${id}`, { token: a.token })).status,
      204,
    );
    assert.equal(plane.hv.pages.pagesOwnedBy(owner), 0);
    assert.equal(plane.hv.pages.pagesOwnedBy(id), 0);
    assert.equal(plane.hv.pages.freeFrameCount, frames);
    assert.deepEqual(plane.hv.pages.check(), []);
    await assertRejected(
      plane,
      "POST",
      `/v1/domains/${id}/reservation`,
      { token: a.token, body: { pages: 1 } },
      404,
      "not_found",
    );
  });
});

Deno.test("control plane: a reservation needs free frames, never a contiguous run (order-0 pages)", async (t) => {
  const plane = freshPlane({ machineMiB: 16 });
  const frames = plane.hv.pages.frameCount;
  assert.equal(frames, 4096);
  const a = await createTenant(plane, "big", { max_pages: 2 ** 20 });
  const pool = await createDomain(plane, a.token, { name: "pool", max_pages: 8192 });
  const guest = await createDomain(plane, a.token, { name: "guest", max_pages: 8192 });
  const post = (id: number, op: string, body: unknown) =>
    call(plane.app, "POST", `/v1/domains/${id}/${op}`, { token: a.token, body });

  await t.step("fragment the machine: no two free frames are buddies", async () => {
    const r = ok<BatchResult>(
      await post(pool, "batch", { ops: Array(frames).fill({ op: "alloc", size: 4095 }) }),
    );
    const addresses = r.addresses.filter((x) => x !== 0);
    assert.equal(plane.hv.pages.freeFrameCount, 0);
    const even = addresses.filter((x) => frameOf(x) % 2 === 0);
    assert.deepEqual(
      ok<BatchResult>(
        await post(pool, "batch", { ops: even.map((address) => ({ op: "free", address })) }),
      ).errors,
      [],
    );
    assert.equal(plane.hv.pages.largestFreeOrder(), 0);
    assert.ok(plane.hv.pages.freeFrameCount > 1000, String(plane.hv.pages.freeFrameCount));
  });
  await t.step(
    "a two-page block fails for contiguity, a reservation of every free frame succeeds",
    async () => {
      const blocked = await post(guest, "alloc", { size: 2 * PAGE_SIZE_BYTES });
      assert.equal(blocked.status, 507, blocked.text);
      assert.equal((blocked.json as OpResult).cause, "contiguity");
      const free = plane.hv.pages.freeFrameCount;
      const r = ok<ReservationResult>(await post(guest, "reservation", { pages: free }));
      assert.equal(r.granted, free);
      assert.equal(plane.hv.pages.freeFrameCount, 0);
      assertInvariants(plane.hv);
    },
  );
  await t.step(
    "exhaustion: fewer free frames than asked: 507, no page-allocator call, unchanged",
    async () => {
      ok(await post(guest, "reservation/release", { pages: 10 }));
      const paBefore = plane.hv.pages.stats();
      const before = await stateOf(plane);
      const r = await post(guest, "reservation", { pages: 11 });
      assert.equal(r.status, 507, r.text);
      assert.equal((r.json as ReservationResult).cause, "exhaustion");
      assert.equal((r.json as ReservationResult).granted, 0);
      await assertUnchanged(plane, before);
      assert.deepEqual(plane.hv.pages.stats(), paBefore);
      assert.equal(
        ok<ReservationResult>(await post(guest, "reservation", { pages: 10 })).granted,
        10,
      );
    },
  );
  await t.step("deleting the tenant returns every frame", async () => {
    assert.equal(
      (await call(plane.app, "DELETE", `/v1/tenants/${a.id}`, { token: ADMIN_TOKEN })).status,
      204,
    );
    assert.equal(plane.hv.pages.freeFrameCount, frames);
    assert.deepEqual(plane.hv.pages.check(), []);
  });
});

// -- stats, metrics, events -------------------------------------------------------------------

Deno.test("control plane: GET /v1/stats and GET /metrics (Prometheus, per-domain series)", async (t) => {
  const plane = freshPlane();
  const a = await createTenant(plane, "acme");
  const d1 = await createDomain(plane, a.token, { name: "web", engine: "slub", max_pages: 100 });
  const d2 = await createDomain(plane, a.token, { name: "db", engine: "first-fit", max_pages: 8 });
  await alloc(plane, a.token, d1, { size: 4000 });
  await alloc(plane, a.token, d2, { size: 100 });
  const r = await call(plane.app, "POST", `/v1/domains/${d2}/alloc`, {
    token: a.token,
    body: { size: 9 * PAGE_SIZE_BYTES },
  });
  assert.equal(r.status, 507);

  await t.step("GET /v1/stats: the machine, its page allocator and every domain", async () => {
    const s = ok<{
      machine: { frames: number; free_frames: number; largest_free_order: number };
      default_engine: string;
      tenants: number;
      domains: DomainStats[];
    }>(await call(plane.app, "GET", "/v1/stats", { token: ADMIN_TOKEN }));
    assert.equal(s.machine.frames, 16_384);
    assert.equal(s.machine.free_frames, plane.hv.pages.freeFrameCount);
    assert.equal(s.default_engine, "tlsf");
    assert.equal(s.tenants, 1);
    assert.deepEqual(s.domains, [await domainStats(plane, d1), await domainStats(plane, d2)]);
  });
  await t.step("GET /metrics: Prometheus text 0.0.4 with a series per domain", async () => {
    const m = await call(plane.app, "GET", "/metrics", { token: ADMIN_TOKEN });
    assert.equal(m.status, 200);
    assert.match(m.contentType, /^text\/plain; version=0\.0\.4/);
    const samples = parsePrometheus(m.text);
    const one = (name: string, labels: Record<string, string> = {}) => {
      const found = samples.filter((s) =>
        s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v)
      );
      assert.equal(found.length, 1, `${name} ${JSON.stringify(labels)}: ${found.length} samples`);
      return found[0]!.value;
    };
    assert.equal(one("heapvisor_machine_frames"), 16_384);
    assert.equal(one("heapvisor_machine_free_frames"), plane.hv.pages.freeFrameCount);
    for (const id of [d1, d2]) {
      const s = await domainStats(plane, id);
      const l = { domain: String(id), tenant: String(a.id), engine: s.engine };
      assert.equal(one("heapvisor_domain_pages_held", l), s.pages_held);
      assert.equal(one("heapvisor_domain_max_pages", l), s.max_pages);
      assert.equal(one("heapvisor_domain_live_blocks", l), s.live_blocks);
      assert.equal(one("heapvisor_domain_requested_bytes", l), s.requested_bytes);
      assert.equal(one("heapvisor_domain_ops_total", { ...l, op: "allocs" }), s.ops.allocs);
      for (const cause of ["quota", "exhaustion", "contiguity", "unservable"]) {
        assert.equal(
          one("heapvisor_domain_alloc_failures_total", { ...l, cause }),
          s.failures[cause],
        );
      }
    }
    assert.equal(
      one("heapvisor_domain_alloc_failures_total", { domain: String(d2), cause: "quota" }),
      1,
    );
  });
  await t.step("a destroyed domain's series are gone", async () => {
    assert.equal(
      (await call(plane.app, "DELETE", `/v1/domains/${d2}`, { token: a.token })).status,
      204,
    );
    const samples = parsePrometheus(
      (await call(plane.app, "GET", "/metrics", { token: ADMIN_TOKEN })).text,
    );
    const domains = new Set(samples.flatMap((s) => s.labels["domain"] ?? []));
    assert.deepEqual([...domains], [String(d1)]);
  });
});

Deno.test("control plane: SSE /v1/domains/:id/events streams stats, ends with destroyed", async (t) => {
  const plane = freshPlane();
  const a = await createTenant(plane, "acme");
  const id = await createDomain(plane, a.token, { engine: "tlsf" });
  await alloc(plane, a.token, id, { size: 1000 });
  const open = (query: string, token = a.token) =>
    plane.app.request(`/v1/domains/${id}/events${query}`, {
      headers: { authorization: `Bearer ${token}` },
    });

  await t.step(
    "?interval_ms=50&max_events=3: three stats events, then the stream ends",
    async () => {
      const started = performance.now();
      const response = await open("?interval_ms=50&max_events=3");
      assert.equal(response.status, 200);
      assert.match(response.headers.get("content-type") ?? "", /^text\/event-stream/);
      const events = parseSse(await readAllWithin(response.body!, 5000));
      assert.deepEqual(events.map((e) => [e.event, e.id]), [["stats", "0"], ["stats", "1"], [
        "stats",
        "2",
      ]]);
      const expected = await domainStats(plane, id);
      for (const e of events) assert.deepEqual(JSON.parse(e.data), expected);
      assert.ok(performance.now() - started >= 90, "two 50 ms intervals between three events");
    },
  );
  await t.step("the admin may watch it too", async () => {
    const response = await open("?max_events=1", ADMIN_TOKEN);
    assert.equal(response.status, 200);
    assert.equal(parseSse(await readAllWithin(response.body!, 5000)).length, 1);
  });
  await t.step("bad query parameters: 400 invalid_request", async () => {
    for (
      const query of [
        "?interval_ms=49",
        "?interval_ms=60001",
        "?interval_ms=abc",
        "?interval_ms=-50",
        "?interval_ms=50.5",
        "?max_events=0",
        "?max_events=x",
        "?max_events=1000001",
      ]
    ) {
      const response = await open(query);
      const text = await response.text();
      assert.equal(response.status, 400, `${query}: ${text}`);
      const body = JSON.parse(text);
      assert.ok(isErrorBody(body), text);
      assert.equal(body.error.code, "invalid_request");
      assert.match(body.error.message, /interval_ms|max_events/);
    }
  });
  await t.step("destroying the domain ends the stream with a destroyed event", async () => {
    const response = await open("?interval_ms=50&max_events=1000");
    assert.equal(response.status, 200);
    const reader = response.body!.getReader();
    const first = await reader.read();
    assert.ok(!first.done && new TextDecoder().decode(first.value).startsWith("event: stats"));
    reader.releaseLock();
    assert.equal(
      (await call(plane.app, "DELETE", `/v1/domains/${id}`, { token: a.token })).status,
      204,
    );
    const events = parseSse(await readAllWithin(response.body!, 5000));
    assert.ok(events.length >= 1);
    assert.deepEqual(events.at(-1), {
      event: "destroyed",
      id: undefined,
      data: JSON.stringify({ id }),
    });
    assert.ok(events.slice(0, -1).every((e) => e.event === "stats"));
  });
  await t.step("a destroyed domain has no stream: 404", async () => {
    const response = await open("?max_events=1");
    assertError(
      {
        status: response.status,
        contentType: response.headers.get("content-type") ?? "",
        text: "",
        json: await response.json(),
        headers: response.headers,
      },
      404,
      "not_found",
    );
  });
});
