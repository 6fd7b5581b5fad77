/**
 * What the control-plane tests share (not a test file itself): a fresh machine and
 * control plane, a request helper that keeps the raw answer and its parsed JSON, the
 * check of a JSON error, a snapshot of everything a rejected request must leave
 * unchanged, the hypervisor's invariants, and parsers of the SSE and Prometheus text
 * formats.
 *
 * @module
 */

import assert from "node:assert/strict";
import { Hypervisor, XEN_HEAP_OWNER } from "../hypervisor/hypervisor.ts";
import { type ControlPlane, createControlPlane } from "../hypervisor/control_plane/app.ts";
import { MiB } from "../src/units.ts";

/** The admin token every in-process plane is built with. */
export const ADMIN_TOKEN = "admin-token-0123456789abcdef";

/** A machine and the control plane over it. */
export interface Plane {
  /** The hypervisor the plane drives. */
  hv: Hypervisor;
  /** The Hono app. */
  app: ControlPlane["app"];
}

/** A fresh hypervisor (default tlsf, 64 MiB) and its control plane. */
export function freshPlane(options: { engine?: string; machineMiB?: number } = {}): Plane {
  const hv = new Hypervisor({
    engine: options.engine ?? "tlsf",
    machineBytes: MiB(options.machineMiB ?? 64),
  });
  const { app } = createControlPlane(hv, { adminToken: ADMIN_TOKEN });
  return { hv, app };
}

/** One answer: status, content type, text and (when it parses) JSON. */
export interface Reply {
  /** HTTP status. */
  status: number;
  /** The content-type header ("" if none). */
  contentType: string;
  /** The body as text. */
  text: string;
  /** The body parsed as JSON, undefined if it is not JSON. */
  json: unknown;
  /** Response headers. */
  headers: Headers;
}

/** How to send one request. */
export interface CallOptions {
  /** Bearer token (null or omitted: no Authorization header). */
  token?: string | null;
  /** A value sent as JSON. */
  body?: unknown;
  /** A body sent as is (wins over `body`). */
  raw?: string;
  /** Content type of a body (default application/json; null: none). */
  contentType?: string | null;
  /** Authorization header as is (wins over `token`). */
  authorization?: string;
}

/** Send a request to `app` in process and read the whole answer. */
export async function call(
  app: Plane["app"],
  method: string,
  path: string,
  options: CallOptions = {},
): Promise<Reply> {
  const headers: Record<string, string> = {};
  if (options.authorization !== undefined) headers["authorization"] = options.authorization;
  else if (options.token) headers["authorization"] = `Bearer ${options.token}`;
  const body = options.raw ??
    (options.body === undefined ? undefined : JSON.stringify(options.body));
  if (body !== undefined && options.contentType !== null) {
    headers["content-type"] = options.contentType ?? "application/json";
  }
  const response = await app.request(path, {
    method,
    headers,
    ...(body !== undefined ? { body } : {}),
  });
  const text = await response.text();
  let json: unknown = undefined;
  try {
    json = JSON.parse(text);
  } catch {
    json = undefined; // not JSON: the callers that need JSON assert on it
  }
  return {
    status: response.status,
    contentType: response.headers.get("content-type") ?? "",
    text,
    json,
    headers: response.headers,
  };
}

/** Whether `value` is a JSON error `{error: {code, message}}` with non-empty strings. */
export function isErrorBody(value: unknown): value is { error: { code: string; message: string } } {
  if (typeof value !== "object" || value === null) return false;
  const error = (value as { error?: unknown }).error;
  if (typeof error !== "object" || error === null) return false;
  const { code, message } = error as { code?: unknown; message?: unknown };
  return typeof code === "string" && code.length > 0 && typeof message === "string" &&
    message.length > 0;
}

/** Assert `reply` is the JSON error `code` with `status` (and a message matching `message`). */
export function assertError(reply: Reply, status: number, code: string, message?: RegExp): void {
  const what = `${reply.status} ${reply.text.slice(0, 300)}`;
  assert.equal(reply.status, status, what);
  assert.match(reply.contentType, /application\/json/, what);
  assert.ok(isErrorBody(reply.json), `not {error:{code,message}}: ${what}`);
  assert.equal(reply.json.error.code, code, what);
  if (message) assert.match(reply.json.error.message, message, what);
}

/** The JSON of a 2xx reply (asserts the status). */
export function ok<T = Record<string, unknown>>(reply: Reply, status = 200): T {
  assert.equal(reply.status, status, reply.text.slice(0, 300));
  return reply.json as T;
}

/** Everything a rejected request must leave as it was: GET /v1/stats and GET /v1/tenants. */
export async function stateOf(plane: Plane): Promise<unknown> {
  const stats = ok(await call(plane.app, "GET", "/v1/stats", { token: ADMIN_TOKEN }));
  const tenants = ok(await call(plane.app, "GET", "/v1/tenants", { token: ADMIN_TOKEN }));
  return { stats, tenants };
}

/** Assert nothing changed since `before` (from {@link stateOf}) and the invariants hold. */
export async function assertUnchanged(plane: Plane, before: unknown): Promise<void> {
  assert.deepEqual(await stateOf(plane), before, "a rejected request changed the state");
  assertInvariants(plane.hv);
}

/**
 * The hypervisor's invariants: the page allocator and every pool are sound, no domain
 * holds more than its quota (pool and reservation together), its stats account for
 * every page it owns, the domains own exactly the frames in use but the xen heap's,
 * and no tenant is over its quotas.
 */
export function assertInvariants(hv: Hypervisor): void {
  assert.deepEqual(hv.pages.check(), [], "page allocator check()");
  assert.deepEqual(hv.xmalloc.check(), [], "xen heap check()");
  let domainPages = 0;
  for (const d of hv.tenancy.domains()) {
    assert.deepEqual(d.engine.check(), [], `domain ${d.id} (${d.engine.name}) check()`);
    const owned = hv.pages.pagesOwnedBy(d.id);
    const reserved = hv.pages.pagesOwnedBy(d.reservationOwner);
    const s = d.stats();
    assert.ok(
      owned + reserved <= d.maxPages,
      `domain ${d.id} holds ${owned} + ${reserved} reserved pages > max_pages ${d.maxPages}`,
    );
    assert.equal(s.pages_held, owned, `domain ${d.id} pages_held`);
    assert.equal(s.reserved_pages, reserved, `domain ${d.id} reserved_pages`);
    assert.equal(s.pool_pages + s.whole_pages + s.meta_pages, owned, `domain ${d.id} pages by use`);
    domainPages += owned + reserved;
  }
  const pa = hv.pages.stats();
  assert.equal(
    domainPages,
    pa.frameCount - pa.freeFrameCount - hv.pages.pagesOwnedBy(XEN_HEAP_OWNER),
    "domains own every frame in use but the xen heap's",
  );
  for (const t of hv.tenancy.tenants()) {
    const mine = hv.tenancy.domains(t.id);
    assert.ok(mine.length <= t.maxDomains, `tenant ${t.id} has ${mine.length} domains`);
    const reserved = mine.reduce((sum, d) => sum + d.maxPages, 0);
    assert.ok(reserved <= t.maxPages, `tenant ${t.id} reserves ${reserved} > ${t.maxPages} pages`);
  }
}

/** A tenant made through the API, with its token. */
export interface TenantHandle {
  /** Tenant id. */
  id: number;
  /** Its bearer token. */
  token: string;
}

/** Create a tenant as the admin (201 asserted). */
export async function createTenant(
  plane: Plane,
  name: string,
  quota: { max_domains?: number; max_pages?: number } = {},
): Promise<TenantHandle> {
  const body = ok<{ id: number; token: string }>(
    await call(plane.app, "POST", "/v1/tenants", {
      token: ADMIN_TOKEN,
      body: { name, max_domains: quota.max_domains ?? 8, max_pages: quota.max_pages ?? 65536 },
    }),
    201,
  );
  return { id: body.id, token: body.token };
}

/** Create a domain with a tenant's token (201 asserted); returns its id. */
export async function createDomain(
  plane: Plane,
  token: string,
  spec: { name?: string; vcpus?: number; max_pages?: number; engine?: string } = {},
): Promise<number> {
  const body = ok<{ id: number }>(
    await call(plane.app, "POST", "/v1/domains", {
      token,
      body: {
        name: spec.name ?? "dom",
        vcpus: spec.vcpus ?? 1,
        max_pages: spec.max_pages ?? 4096,
        ...(spec.engine ? { engine: spec.engine } : {}),
      },
    }),
    201,
  );
  return body.id;
}

/** One Server-Sent Event. */
export interface SseEvent {
  /** `event:` (default "message"). */
  event: string;
  /** `id:` (undefined if none). */
  id: string | undefined;
  /** `data:` lines joined with newlines. */
  data: string;
}

/** Parse a `text/event-stream` body into its events (blank line ends an event). */
export function parseSse(text: string): SseEvent[] {
  const events: SseEvent[] = [];
  for (const block of text.replace(/\r\n/g, "\n").split("\n\n")) {
    if (block.trim() === "") continue;
    let event = "message";
    let id: string | undefined;
    const data: string[] = [];
    for (const line of block.split("\n")) {
      if (line.startsWith(":")) continue;
      const colon = line.indexOf(":");
      const field = colon < 0 ? line : line.slice(0, colon);
      const value = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
      if (field === "event") event = value;
      else if (field === "id") id = value;
      else if (field === "data") data.push(value);
      else assert.fail(`unknown SSE field in line ${JSON.stringify(line)}`);
    }
    events.push({ event, id, data: data.join("\n") });
  }
  return events;
}

/** Read a stream's text until it ends or `timeoutMs` passes (then cancel it and fail). */
export async function readAllWithin(
  body: ReadableStream<Uint8Array>,
  timeoutMs: number,
): Promise<string> {
  const reader = body.getReader();
  const decoder = new TextDecoder();
  let text = "";
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const left = deadline - Date.now();
    let timer: ReturnType<typeof setTimeout> | undefined;
    const timeout = new Promise<"timeout">((resolve) => {
      timer = setTimeout(() => resolve("timeout"), Math.max(left, 0));
    });
    const next = await Promise.race([reader.read(), timeout]);
    clearTimeout(timer);
    if (next === "timeout") {
      await reader.cancel();
      assert.fail(`stream did not end within ${timeoutMs} ms; read so far: ${text.slice(0, 500)}`);
    }
    if (next.done) return text + decoder.decode();
    text += decoder.decode(next.value, { stream: true });
  }
}

/** One Prometheus sample. */
export interface Sample {
  /** Metric name. */
  name: string;
  /** Its labels. */
  labels: Record<string, string>;
  /** Its value. */
  value: number;
}

/**
 * Parse the Prometheus text format (0.0.4), asserting its grammar: every sample line is
 * `name{label="value",...} number`, and every metric has HELP and TYPE lines before its
 * samples, once each.
 */
export function parsePrometheus(text: string): Sample[] {
  assert.ok(text.endsWith("\n"), "exposition ends with a newline");
  const samples: Sample[] = [];
  const help = new Set<string>();
  const type = new Map<string, string>();
  for (const line of text.slice(0, -1).split("\n")) {
    const comment = /^# (HELP|TYPE) ([a-zA-Z_:][a-zA-Z0-9_:]*) (.+)$/.exec(line);
    if (comment) {
      const [, kind, name, rest] = comment as unknown as [string, string, string, string];
      if (kind === "HELP") {
        assert.ok(!help.has(name), `second HELP for ${name}`);
        help.add(name);
      } else {
        assert.ok(!type.has(name), `second TYPE for ${name}`);
        assert.match(rest, /^(counter|gauge|summary|histogram|untyped)$/, line);
        type.set(name, rest);
      }
      continue;
    }
    const sample = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    assert.ok(sample, `not a sample line: ${JSON.stringify(line)}`);
    const [, name, rawLabels, rawValue] = sample as unknown as [
      string,
      string,
      string | undefined,
      string,
    ];
    assert.ok(help.has(name) && type.has(name), `${name}: sample before its HELP and TYPE`);
    const value = Number(rawValue);
    assert.ok(!Number.isNaN(value) || rawValue === "NaN", `${name}: bad value ${rawValue}`);
    const labels: Record<string, string> = {};
    if (rawLabels) {
      const re = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"(,|$)/y;
      let at = 0;
      while (at < rawLabels.length) {
        re.lastIndex = at;
        const m = re.exec(rawLabels);
        assert.ok(m, `${name}: bad labels {${rawLabels}}`);
        labels[m[1]!] = m[2]!;
        at = re.lastIndex;
      }
    }
    samples.push({ name, labels, value });
  }
  return samples;
}

/**
 * Send a request that must be refused: assert the JSON error (status, code, message)
 * and that nothing changed.
 */
export async function assertRejected(
  plane: Plane,
  method: string,
  path: string,
  options: CallOptions,
  status: number,
  code: string,
  message?: RegExp,
): Promise<Reply> {
  const before = await stateOf(plane);
  const reply = await call(plane.app, method, path, options);
  assertError(reply, status, code, message);
  await assertUnchanged(plane, before);
  return reply;
}
