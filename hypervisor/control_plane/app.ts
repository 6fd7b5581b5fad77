/**
 * The control plane: one Hono app through which tenants and their domains get
 * memory. Used three ways: served over a socket (`deno task serve`), called in
 * process (`app.fetch(request)`, `app.request(path)`: the full HTTP layer without
 * sockets), and through the typed client in `guests/client.ts`, which works over both.
 *
 * Auth: `Authorization: Bearer <token>`. The admin token manages tenants and sees
 * everything; a tenant's token sees only its own domains (another tenant's domain is
 * a 404, as if it did not exist). No token or an unknown one: 401; a tenant on an
 * admin route: 403.
 *
 * Errors are JSON `{"error": {"code", "message"}}`, mapped once in `onError`. An
 * allocation that cannot be served is an outcome, not an error: 507 with its cause.
 * A 500 is a bug.
 *
 * @module
 */

import { createRoute, OpenAPIHono, z } from "@hono/zod-openapi";
import type { Context } from "hono";
import { bodyLimit } from "hono/body-limit";
import { HTTPException } from "hono/http-exception";
import { setImmediate } from "node:timers";
import { streamSSE } from "hono/streaming";
import type { Hypervisor } from "../hypervisor.ts";
import { pageAllocatorCalls } from "../page_allocator.ts";
import {
  type Domain,
  MachineFullError,
  type MemoryOpResult,
  NotFoundError,
  NotReservedError,
  QuotaExceededError,
  type StoredSnapshot,
} from "../domains.ts";
import {
  parseSnapshotDocument,
  snapshotDocument,
  SnapshotError,
  snapshotStateBytes,
} from "../snapshot.ts";
import { type AllocFailureCause, InvalidFreeError } from "../xmalloc/engine.ts";
import { ENGINES } from "../xmalloc/registry.ts";
import { type Principal, TokenStore } from "./auth.ts";
import type { Journal, JournalOp } from "../journal.ts";
import { renderMetrics } from "./metrics.ts";
import { renderDashboard } from "./dashboard.ts";
import { renderDocs } from "./docs.ts";
import {
  AllocBody,
  BATCH_MAX_OPS,
  BatchBody,
  BatchResultBody,
  CreatedDomainBody,
  CreateDomainBody,
  CreatedTenantBody,
  CreateTenantBody,
  DomainBody,
  EnginesBody,
  ErrorBody,
  FreeBody,
  HealthBody,
  HypervisorStatsBody,
  IdParam,
  OpResultBody,
  ReallocBody,
  ReleaseBody,
  ReleaseResultBody,
  ReservationBody,
  ReservationResultBody,
  SnapshotBody,
  SnapshotFileBody,
  TenantBody,
  TenantQuery,
} from "./schemas.ts";

/** Largest snapshot file an import takes. */
export const SNAPSHOT_BODY_MAX_BYTES = 64 * 1024 * 1024;

/** Largest body of any request but a batch. */
export const BODY_MAX_BYTES = 64 * 1024;
/** Largest body of a batch request. */
export const BATCH_BODY_MAX_BYTES = 4 * 1024 * 1024;

/** Hono's environment of the control plane: who is calling. */
export type ControlPlaneEnv = { Variables: { principal: Principal } };
type Env = ControlPlaneEnv;

/** How to build the control plane. */
export interface ControlPlaneOptions {
  /** The admin's bearer token (16..512 characters of RFC 6750's b64token). */
  adminToken: string;
  /**
   * Aborted when the server shuts down: open event streams send a `shutdown` event
   * and end, so a graceful shutdown does not wait for them.
   */
  signal?: AbortSignal;
  /**
   * Where acknowledged operations are made durable before each response (none:
   * ephemeral). The rows of the requests handled in one turn of the event loop are
   * one transaction (group commit); a read waits for the rows in flight. If appending
   * fails (disk full, read-only), those requests get 503 and every later change is
   * refused with 503 too, since memory then holds operations the log does not.
   */
  journal?: Journal;
  /**
   * Take a checkpoint of the journal (`Journal.checkpoint`: the whole state, the rows
   * before it deleted) once this many operations were journaled since the last one
   * (default {@link CHECKPOINT_EVERY_OPS}; 0: never). A failed checkpoint changes
   * nothing and is retried after as many operations again.
   */
  checkpointEvery?: number;
  /** Told of each checkpoint taken: the row it follows, its size and how long it took. */
  onCheckpoint?: (checkpoint: { afterRow: number; bytes: number; ms: number }) => void;
}

/** Operations journaled between two checkpoints unless told otherwise. */
export const CHECKPOINT_EVERY_OPS = 1_000_000;

/** Most event streams open at once, in all and per tenant. */
export const EVENT_STREAMS_MAX = 64;
/** Most event streams one tenant may have open at once. */
export const EVENT_STREAMS_PER_TENANT_MAX = 8;

/** What callers use of the Hono app: send it requests, list its routes. */
export interface ControlPlaneApp {
  /** Handle one request (what `Deno.serve` and in-process clients call). */
  fetch(request: Request): Response | Promise<Response>;
  /** Handle a request built from a path or URL (Hono's `app.request`, for tests). */
  request(input: string | Request | URL, init?: RequestInit): Response | Promise<Response>;
  /** Every route the app serves. */
  readonly routes: readonly { method: string; path: string }[];
}

/** The app and the token store behind it. */
export interface ControlPlane {
  /** The Hono app. */
  app: ControlPlaneApp;
  /** Token hashes (admin and tenants). */
  tokens: TokenStore;
}

/** Throw the JSON error `code` with `status`. */
function fail(
  status: 400 | 401 | 403 | 404 | 409 | 413 | 429 | 503,
  code: string,
  message: string,
): never {
  throw new HTTPException(status, {
    res: Response.json({ error: { code, message } }, { status }),
  });
}

const json = <T extends z.ZodType>(schema: T, description: string) => ({
  content: { "application/json": { schema } },
  description,
});
const errors = {
  400: json(ErrorBody, "invalid request: what and why"),
  401: json(ErrorBody, "no or unknown bearer token"),
  403: json(ErrorBody, "the admin token is needed"),
  404: json(ErrorBody, "no such resource (or not yours)"),
};
const security = [{ bearer: [] }];

/**
 * Build the control plane over `hypervisor`.
 *
 * @example
 * ```ts
 * import { Hypervisor } from "../hypervisor.ts";
 * import { createControlPlane } from "./app.ts";
 * import assert from "node:assert/strict";
 * const hv = new Hypervisor({ engine: "tlsf", machineBytes: 64 * 1024 * 1024 });
 * const { app } = createControlPlane(hv, { adminToken: "admin-token-0123456789" });
 * assert.equal((await app.request("/v1/health")).status, 200);
 * assert.equal((await app.request("/v1/tenants")).status, 401);
 * ```
 */
export function createControlPlane(
  hypervisor: Hypervisor,
  options: ControlPlaneOptions,
): ControlPlane {
  const tokens = new TokenStore(options.adminToken);
  const journal = options.journal;
  let journalFault: string | null = null;
  const checkpointEvery = options.checkpointEvery ?? CHECKPOINT_EVERY_OPS;
  let checkpointRetryAt = 0; // after a failed checkpoint: the count to try again at
  // Group commit: the rows of the requests handled in one turn of the event loop are
  // appended together, in the order they changed the model, as one transaction with
  // one fsync; each of those requests answers once its row is durable.
  let queued: JournalOp[][] = [];
  let flushing: Promise<void> | null = null;
  const flush = (): void => {
    const rows = queued;
    queued = [];
    flushing = null;
    try {
      journal!.appendRows(rows);
    } catch (e) {
      journalFault = (e as Error).message;
      console.error(`control plane: journal append failed: ${journalFault}`);
      throw e;
    }
    const since = journal!.opsSinceCheckpoint; // counted across restarts (replay sets it)
    if (checkpointEvery > 0 && since >= checkpointEvery && since >= checkpointRetryAt) {
      try {
        const t0 = performance.now();
        const bytes = journal!.checkpoint(hypervisor, tenantTokenHashes());
        checkpointRetryAt = 0;
        options.onCheckpoint?.({ afterRow: journal!.length, bytes, ms: performance.now() - t0 });
      } catch (e) {
        // The operations are durable already; the journal keeps its rows. Retried later.
        checkpointRetryAt = since + checkpointEvery;
        console.error(`control plane: checkpoint failed (retried later): ${(e as Error).message}`);
      }
    }
  };
  /**
   * Make the operations `entries()` names durable: await it before answering. It is
   * 503 (and every later change too) if the journal cannot take them. Without a
   * journal nothing is built and there is nothing to wait for.
   */
  const record = (entries: () => JournalOp[]): Promise<void> | undefined => {
    if (journal === undefined) return undefined;
    queued.push(entries());
    flushing ??= new Promise<void>((resolve, reject) =>
      setImmediate(() => {
        try {
          flush();
          resolve();
        } catch (e) {
          reject(e);
        }
      })
    );
    return flushing.then(
      () => {},
      (e) => fail(503, "journal_unavailable", `Not durable, so not done: ${(e as Error).message}`),
    );
  };
  /** Wait until every change made so far is durable (what a read may show). */
  const durable = async (): Promise<void> => {
    if (flushing !== null) await flushing.catch(() => {});
  };
  /** Every tenant's token hash, for a checkpoint. */
  const tenantTokenHashes = (): [number, string][] =>
    hypervisor.tenancy.tenants().flatMap((t) => {
      const hash = tokens.tenantTokenHash(t.id);
      return hash === undefined ? [] : [[t.id, hash] as [number, string]];
    });
  let openStreams = 0;
  const streamsByTenant = new Map<number, number>(); // 0: the admin
  const tenancy = hypervisor.tenancy;
  const app = new OpenAPIHono<Env>({
    defaultHook: (result) => {
      if (!result.success) {
        const message = result.error.issues
          .map((i) => `${i.path.length > 0 ? i.path.join(".") : "body"}: ${i.message}`)
          .join("; ");
        fail(400, "invalid_request", message);
      }
    },
  });
  app.openAPIRegistry.registerComponent("securitySchemes", "bearer", {
    type: "http",
    scheme: "bearer",
  });

  // -- errors -------------------------------------------------------------------------
  app.onError((err, c) => {
    if (err instanceof HTTPException) {
      const res = err.getResponse();
      if (res.headers.get("content-type")?.includes("application/json")) return res;
      if (err.status === 415) {
        const message = "Send the body as JSON with Content-Type: application/json";
        return c.json({ error: { code: "unsupported_media_type", message } }, 415);
      }
      const code = err.status === 413
        ? "body_too_large"
        : err.status === 400
        ? "malformed_request"
        : "http_error";
      return c.json({ error: { code, message: err.message || res.statusText } }, err.status);
    }
    if (err instanceof NotFoundError) {
      return c.json({ error: { code: "not_found", message: err.message } }, 404);
    }
    if (err instanceof QuotaExceededError) {
      return c.json({ error: { code: "quota_exceeded", message: err.message } }, 409);
    }
    if (err instanceof SnapshotError) {
      return c.json({ error: { code: "invalid_snapshot", message: err.message } }, 422);
    }
    if (err instanceof MachineFullError) {
      return c.json({ error: { code: "machine_full", message: err.message } }, 507);
    }
    if (err instanceof NotReservedError) {
      return c.json({ error: { code: "not_reserved", message: err.message } }, 409);
    }
    if (err instanceof InvalidFreeError) {
      const status = err.reason === "unknown-address" ? 404 : 409;
      return c.json(
        { error: { code: err.reason.replace("-", "_"), message: err.message } },
        status,
      );
    }
    if (err instanceof RangeError || err instanceof TypeError) {
      return c.json({ error: { code: "invalid_request", message: err.message } }, 400);
    }
    console.error(`control plane: internal error on ${c.req.method} ${c.req.path}:`, err);
    return c.json({
      error: { code: "internal", message: "Internal error (a bug): see the server log" },
    }, 500);
  });
  app.notFound((c) =>
    c.json({ error: { code: "not_found", message: `No route ${c.req.method} ${c.req.path}` } }, 404)
  );

  // -- auth and limits ----------------------------------------------------------------
  const PUBLIC = new Set(["/v1/health", "/v1/engines", "/v1/openapi.json", "/v1/docs"]);
  app.use("*", async (c, next) => {
    if (!PUBLIC.has(c.req.path) && c.req.path !== "/") {
      const principal = tokens.identify(c.req.header("authorization"));
      if (!principal) {
        fail(
          401,
          "unauthorized",
          "Missing or unknown bearer token: send Authorization: Bearer <token>",
        );
      }
      c.set("principal", principal);
    }
    await next();
  });
  const limit = (maxSize: number) =>
    bodyLimit({
      maxSize,
      onError: () => fail(413, "body_too_large", `Request body over ${maxSize} bytes`),
    });
  const batchLimit = limit(BATCH_BODY_MAX_BYTES);
  const snapshotLimit = limit(SNAPSHOT_BODY_MAX_BYTES);
  const defaultLimit = limit(BODY_MAX_BYTES);
  app.use("*", (c, next) => {
    // GET, HEAD and DELETE carry no body here: nothing to limit (and bodyLimit would
    // rewrap the request for nothing).
    const method = c.req.method;
    if (method === "GET" || method === "HEAD" || method === "DELETE") return next();
    const path = c.req.path;
    const [max, limiter] = path.endsWith("/batch")
      ? [BATCH_BODY_MAX_BYTES, batchLimit]
      : path === "/v1/snapshots"
      ? [SNAPSHOT_BODY_MAX_BYTES, snapshotLimit]
      : [BODY_MAX_BYTES, defaultLimit];
    // What bodyLimit decides from a Content-Length under the limit (go on), decided
    // without touching `request.body`, which would make a stream of the body for
    // nothing. Over the limit, or without a Content-Length, bodyLimit decides.
    const headers = c.req.raw.headers;
    const length = headers.get("content-length");
    if (
      length !== null && !headers.has("transfer-encoding") && parseInt(length || "0", 10) <= max
    ) {
      return next();
    }
    return limiter(c, next);
  });

  // A read shows only what is durable: it waits for the rows in flight.
  app.use("*", async (c, next) => {
    if (c.req.method === "GET" || c.req.method === "HEAD") await durable();
    await next();
  });

  app.use("*", (c, next) => {
    if (journalFault !== null && c.req.method !== "GET" && c.req.method !== "HEAD") {
      fail(
        503,
        "journal_unavailable",
        `Changes are refused until a restart: the journal failed (${journalFault})`,
      );
    }
    return next();
  });

  const requireAdmin = (c: Context<Env>): void => {
    if (c.var.principal.role !== "admin") {
      fail(403, "forbidden", "This route needs the admin token");
    }
  };
  /** The domain `id` if the caller may see it; 404 otherwise (other tenants' too). */
  const visibleDomain = (c: Context<Env>, id: number): Domain => {
    const p = c.var.principal;
    let domain: Domain | undefined;
    try {
      domain = tenancy.domain(id);
    } catch {
      domain = undefined;
    }
    if (!domain || (p.role === "tenant" && domain.tenantId !== p.tenantId)) {
      fail(404, "not_found", `No domain ${id}`);
    }
    return domain;
  };
  /**
   * The tenant a request acts for: a tenant itself (naming another is 403), or the
   * tenant the admin names (400 if none, 404 if no such tenant).
   */
  const targetTenant = (c: Context<Env>, named: number | undefined, what: string): number => {
    const p = c.var.principal;
    if (p.role === "admin") {
      if (named === undefined) {
        fail(400, "invalid_request", "tenant_id: the admin must name the tenant");
      }
      tenancy.tenant(named); // 404 if none
      return named;
    }
    if (named !== undefined && named !== p.tenantId) {
      fail(403, "forbidden", `tenant_id: a tenant ${what} for itself only`);
    }
    return p.tenantId;
  };
  const tenantBody = (id: number) => {
    const t = tenancy.tenant(id);
    const domains = tenancy.domains(id);
    return {
      id: t.id,
      name: t.name,
      max_domains: t.maxDomains,
      max_pages: t.maxPages,
      domains: domains.length,
      pages_reserved: domains.reduce((s, d) => s + d.maxPages, 0),
      pages_held: tenancy.pagesHeldBy(id),
    };
  };

  // -- public ---------------------------------------------------------------------------
  app.openapi(
    createRoute({
      method: "get",
      path: "/v1/health",
      summary: "Liveness (no auth)",
      responses: { 200: json(HealthBody, "ok") },
    }),
    (c) => c.json({ status: "ok" as const }, 200),
  );

  app.openapi(
    createRoute({
      method: "get",
      path: "/v1/engines",
      summary: "The xmalloc engines: what real allocator each models, key parameters (no auth)",
      responses: { 200: json(EnginesBody, "engines") },
    }),
    (c) =>
      c.json(
        ENGINES.map((e) => ({
          name: e.name,
          description: e.description,
          modelled_on: e.modelledOn,
          parameters: e.parameters,
        })),
        200,
      ),
  );

  // -- tenants (admin) -------------------------------------------------------------------
  app.openapi(
    createRoute({
      method: "post",
      path: "/v1/tenants",
      summary: "Create a tenant; its token is in the response, once (admin)",
      security,
      request: {
        body: { content: { "application/json": { schema: CreateTenantBody } }, required: true },
      },
      responses: { 201: json(CreatedTenantBody, "created"), ...errors },
    }),
    async (c) => {
      requireAdmin(c);
      const body = c.req.valid("json");
      const tenant = tenancy.createTenant(body.name, {
        maxDomains: body.max_domains,
        maxPages: body.max_pages,
      });
      const token = tokens.issueTenantToken(tenant.id);
      const answer = { ...tenantBody(tenant.id), token }; // as of this request
      await record(() => [
        {
          kind: "create_tenant",
          name: body.name,
          max_domains: body.max_domains,
          max_pages: body.max_pages,
        },
        { kind: "tenant_token", tenant: tenant.id, sha256: tokens.tenantTokenHash(tenant.id)! },
      ]);
      return c.json(answer, 201);
    },
  );

  app.openapi(
    createRoute({
      method: "get",
      path: "/v1/tenants",
      summary: "List tenants with their usage (admin)",
      security,
      responses: { 200: json(TenantBody.array(), "tenants"), 401: errors[401], 403: errors[403] },
    }),
    (c) => {
      requireAdmin(c);
      return c.json(tenancy.tenants().map((t) => tenantBody(t.id)), 200);
    },
  );

  app.openapi(
    createRoute({
      method: "get",
      path: "/v1/tenants/{id}",
      summary: "One tenant (admin)",
      security,
      request: { params: IdParam },
      responses: { 200: json(TenantBody, "tenant"), ...errors },
    }),
    (c) => {
      requireAdmin(c);
      return c.json(tenantBody(c.req.valid("param").id), 200);
    },
  );

  app.openapi(
    createRoute({
      method: "delete",
      path: "/v1/tenants/{id}",
      summary: "Delete a tenant: its domains are destroyed and every page returns (admin)",
      security,
      request: { params: IdParam },
      responses: { 204: { description: "deleted" }, ...errors },
    }),
    async (c) => {
      requireAdmin(c);
      const { id } = c.req.valid("param");
      tenancy.deleteTenant(id);
      tokens.revokeTenant(id);
      await record(() => [{ kind: "delete_tenant", tenant: id }]);
      assertMachineSound(hypervisor);
      return c.body(null, 204);
    },
  );

  // -- domains ---------------------------------------------------------------------------
  app.openapi(
    createRoute({
      method: "post",
      path: "/v1/domains",
      summary: "Create a domain (a tenant's own; the admin names tenant_id)",
      security,
      request: {
        body: { content: { "application/json": { schema: CreateDomainBody } }, required: true },
      },
      responses: {
        201: json(CreatedDomainBody, "created"),
        ...errors,
        409: json(ErrorBody, "the tenant's quota would be exceeded"),
        422: json(ErrorBody, "from_snapshot: the snapshot does not rebuild its heap"),
        507: json(ErrorBody, "from_snapshot: the machine cannot back the snapshot's heap"),
      },
    }),
    async (c) => {
      const body = c.req.valid("json");
      const tenantId = targetTenant(c, body.tenant_id, "creates domains");
      let domain: Domain;
      let moved: [number, number][] | null = null;
      if (body.from_snapshot === undefined) {
        if (body.vcpus === undefined || body.max_pages === undefined) {
          fail(
            400,
            "invalid_request",
            `${body.vcpus === undefined ? "vcpus" : "max_pages"}: required (unless from_snapshot)`,
          );
        }
        domain = tenancy.createDomain(tenantId, {
          name: body.name,
          vcpus: body.vcpus,
          maxPages: body.max_pages,
          ...(body.engine ? { engine: body.engine } : {}),
        });
      } else {
        const from = tenancy.snapshot(body.from_snapshot, tenantId).content.domain;
        const spec = {
          name: body.name,
          fromSnapshot: body.from_snapshot,
          vcpus: body.vcpus ?? from.vcpus,
          maxPages: body.max_pages ?? from.maxPages,
          engine: body.engine ?? from.engine,
        };
        try {
          ({ domain, moved } = tenancy.startFromSnapshot(tenantId, spec));
        } catch (e) {
          // Refused after the machine was asked for pages (its counters moved): logged,
          // so a replay makes the same calls and refuses too.
          if (e instanceof MachineFullError) {
            await record(() => [{
              kind: "create_domain",
              tenant: tenantId,
              name: spec.name,
              vcpus: spec.vcpus,
              max_pages: spec.maxPages,
              engine: spec.engine,
              from_snapshot: spec.fromSnapshot,
              refused: true,
            }]);
          }
          throw e;
        }
      }
      const answer = moved === null ? domain.stats() : { ...domain.stats(), moved };
      await record(() => [{
        kind: "create_domain",
        tenant: tenantId,
        name: body.name,
        vcpus: domain.vcpus,
        max_pages: domain.maxPages,
        engine: domain.engine.name,
        ...(body.from_snapshot !== undefined ? { from_snapshot: body.from_snapshot } : {}),
      }]);
      return c.json(answer, 201);
    },
  );

  // -- snapshots ---------------------------------------------------------------------------
  const snapshotBody = (s: StoredSnapshot) => ({
    id: s.id,
    tenant_id: s.tenantId,
    source_domain_id: s.sourceDomainId,
    name: s.content.domain.name,
    engine: s.content.domain.engine,
    vcpus: s.content.domain.vcpus,
    max_pages: s.content.domain.maxPages,
    machine_frames: s.content.machine.frames,
    version: s.content.version,
    state_bytes: snapshotStateBytes(s.content),
    pages_held: s.content.heap.pages_held,
    reserved_pages: s.content.heap.reserved_pages,
    live_blocks: s.content.heap.live_blocks,
    requested_bytes: s.content.heap.requested_bytes,
  });
  /** Snapshot `id` if the caller may see it; 404 otherwise. */
  const visibleSnapshot = (c: Context<Env>, id: number): StoredSnapshot => {
    const p = c.var.principal;
    return tenancy.snapshot(id, p.role === "tenant" ? p.tenantId : undefined);
  };

  app.openapi(
    createRoute({
      method: "post",
      path: "/v1/domains/{id}/snapshot",
      summary: "Snapshot a domain's heap (restore it with POST /v1/domains and from_snapshot)",
      security,
      request: { params: IdParam },
      responses: {
        201: json(SnapshotBody, "taken"),
        ...errors,
        409: json(ErrorBody, "the tenant keeps the most snapshots allowed"),
      },
    }),
    async (c) => {
      const domain = visibleDomain(c, c.req.valid("param").id);
      const s = tenancy.takeSnapshot(domain.id);
      await record(() => [{ kind: "snapshot", domain: domain.id, snapshot: s.id }]);
      return c.json(snapshotBody(s), 201);
    },
  );

  app.openapi(
    createRoute({
      method: "get",
      path: "/v1/snapshots",
      summary: "List snapshots (a tenant's own; the admin sees all)",
      security,
      responses: { 200: json(SnapshotBody.array(), "snapshots"), 401: errors[401] },
    }),
    (c) => {
      const p = c.var.principal;
      const list = tenancy.snapshots(p.role === "tenant" ? p.tenantId : undefined);
      return c.json(list.map(snapshotBody), 200);
    },
  );

  app.openapi(
    createRoute({
      method: "get",
      path: "/v1/snapshots/{id}",
      summary: "A snapshot: its source, engine, size and heap",
      security,
      request: { params: IdParam },
      responses: { 200: json(SnapshotBody, "snapshot"), ...errors },
    }),
    (c) => c.json(snapshotBody(visibleSnapshot(c, c.req.valid("param").id)), 200),
  );

  app.openapi(
    createRoute({
      method: "get",
      path: "/v1/snapshots/{id}/export",
      summary: "The snapshot as a file (JSON, format heapvisor-snapshot, version 1)",
      security,
      request: { params: IdParam },
      responses: { 200: json(SnapshotFileBody, "the snapshot file"), ...errors },
    }),
    (c) => {
      const s = visibleSnapshot(c, c.req.valid("param").id);
      c.header("Content-Disposition", `attachment; filename="heapvisor-snapshot-${s.id}.json"`);
      return c.json(
        snapshotDocument(s.content) as unknown as z.infer<typeof SnapshotFileBody>,
        200,
      );
    },
  );

  app.openapi(
    createRoute({
      method: "post",
      path: "/v1/snapshots",
      summary: "Import a snapshot file (checked: it must rebuild its heap)",
      security,
      request: {
        query: TenantQuery,
        body: { content: { "application/json": { schema: SnapshotFileBody } }, required: true },
      },
      responses: {
        201: json(SnapshotBody, "imported"),
        ...errors,
        409: json(ErrorBody, "the tenant keeps the most snapshots allowed"),
        413: json(ErrorBody, `the file is over ${SNAPSHOT_BODY_MAX_BYTES} bytes`),
        422: json(ErrorBody, "not a valid snapshot: what and where"),
      },
    }),
    async (c) => {
      const document = c.req.valid("json");
      const tenantId = targetTenant(c, c.req.valid("query").tenant_id, "imports snapshots");
      const s = tenancy.importSnapshot(tenantId, parseSnapshotDocument(document));
      await record(() => [{ kind: "import_snapshot", tenant: tenantId, snapshot: s.id, document }]);
      return c.json(snapshotBody(s), 201);
    },
  );

  app.openapi(
    createRoute({
      method: "delete",
      path: "/v1/snapshots/{id}",
      summary: "Forget a snapshot (domains restored from it keep their heaps)",
      security,
      request: { params: IdParam },
      responses: { 204: { description: "deleted" }, ...errors },
    }),
    async (c) => {
      const s = visibleSnapshot(c, c.req.valid("param").id);
      tenancy.deleteSnapshot(s.id);
      await record(() => [{ kind: "delete_snapshot", snapshot: s.id }]);
      return c.body(null, 204);
    },
  );

  app.openapi(
    createRoute({
      method: "get",
      path: "/v1/domains",
      summary: "List domains (a tenant's own; the admin sees all)",
      security,
      responses: { 200: json(DomainBody.array(), "domains"), 401: errors[401] },
    }),
    (c) => {
      const p = c.var.principal;
      const list = p.role === "admin" ? tenancy.domains() : tenancy.domains(p.tenantId);
      return c.json(list.map((d) => d.stats()), 200);
    },
  );

  app.openapi(
    createRoute({
      method: "get",
      path: "/v1/domains/{id}",
      summary:
        "A domain with its figures: pages, bytes, overhead, failures by cause, steps and latency",
      security,
      request: { params: IdParam },
      responses: { 200: json(DomainBody, "domain"), ...errors },
    }),
    (c) => c.json(visibleDomain(c, c.req.valid("param").id).stats(), 200),
  );

  app.openapi(
    createRoute({
      method: "delete",
      path: "/v1/domains/{id}",
      summary: "Destroy a domain: every page it held returns to the page allocator",
      security,
      request: { params: IdParam },
      responses: { 204: { description: "destroyed" }, ...errors },
    }),
    async (c) => {
      const domain = visibleDomain(c, c.req.valid("param").id);
      tenancy.destroyDomain(domain.id);
      await record(() => [{ kind: "destroy_domain", domain: domain.id }]);
      assertMachineSound(hypervisor);
      return c.body(null, 204);
    },
  );

  // -- memory operations -------------------------------------------------------------------
  const opResult = (r: ReturnType<Domain["allocate"]>) => ({
    ok: r.ok,
    address: r.address,
    reserved_bytes: r.reservedBytes,
    cause: r.cause,
    steps: r.steps,
    cycles: r.cycles,
    lock_wait_cycles: r.lockWaitCycles,
  });
  const served = {
    201: json(OpResultBody, "served"),
    507: json(OpResultBody, "not served: see cause"),
  };

  app.openapi(
    createRoute({
      method: "post",
      path: "/v1/domains/{id}/alloc",
      summary: "Allocate from the domain's pool (507 with the cause when it cannot be served)",
      security,
      request: {
        params: IdParam,
        body: { content: { "application/json": { schema: AllocBody } }, required: true },
      },
      responses: { ...served, ...errors },
    }),
    async (c) => {
      const domain = visibleDomain(c, c.req.valid("param").id);
      const b = c.req.valid("json");
      const r = domain.allocate(b.size, b.align ?? 1, b.vcpu ?? 0, b.at_cycles);
      await record(() => [memoryEntry("allocate", domain.id, b)]);
      return c.json(opResult(r), r.ok ? 201 : 507);
    },
  );

  app.openapi(
    createRoute({
      method: "post",
      path: "/v1/domains/{id}/free",
      summary: "Free a block (404 unknown address, 409 double free or interior pointer)",
      security,
      request: {
        params: IdParam,
        body: { content: { "application/json": { schema: FreeBody } }, required: true },
      },
      responses: {
        200: json(OpResultBody, "freed"),
        ...errors,
        409: json(ErrorBody, "double free or interior pointer"),
      },
    }),
    async (c) => {
      const domain = visibleDomain(c, c.req.valid("param").id);
      const b = c.req.valid("json");
      const r = domain.free(b.address, b.vcpu ?? 0, b.at_cycles);
      await record(() => [memoryEntry("free", domain.id, b, b.address)]);
      return c.json(opResult(r), 200);
    },
  );

  app.openapi(
    createRoute({
      method: "post",
      path: "/v1/domains/{id}/realloc",
      summary:
        "Resize a block, in place if it fits (507 when it cannot be served: the old block stays)",
      security,
      request: {
        params: IdParam,
        body: { content: { "application/json": { schema: ReallocBody } }, required: true },
      },
      responses: { ...served, ...errors, 409: json(ErrorBody, "double free or interior pointer") },
    }),
    async (c) => {
      const domain = visibleDomain(c, c.req.valid("param").id);
      const b = c.req.valid("json");
      const r = domain.reallocate(b.address, b.size, b.align ?? 1, b.vcpu ?? 0, b.at_cycles);
      await record(() => [memoryEntry("reallocate", domain.id, b, b.address)]);
      return c.json(opResult(r), r.ok ? 201 : 507);
    },
  );

  app.openapi(
    createRoute({
      method: "post",
      path: "/v1/domains/{id}/batch",
      summary: `Run up to ${BATCH_MAX_OPS} operations in order; results column by column`,
      description:
        "A free or realloc names its block by address, or by ref: the index of an earlier " +
        "alloc or realloc of the same batch. Operations that are rejected (bad address, double free, " +
        "bad ref, vCPU out of range) are listed in errors and change nothing; the others still run.",
      security,
      request: {
        params: IdParam,
        body: { content: { "application/json": { schema: BatchBody } }, required: true },
      },
      responses: {
        200: json(BatchResultBody, "results"),
        ...errors,
        413: json(ErrorBody, "body too large"),
      },
    }),
    async (c) => {
      const domain = visibleDomain(c, c.req.valid("param").id);
      const done: JournalOp[] | null = journal === undefined ? null : [];
      const result = runBatch(domain, c.req.valid("json").ops, done);
      if (done !== null) await record(() => done);
      return c.json(result, 200);
    },
  );

  // -- the guest's own memory: reservations ----------------------------------------------------
  app.openapi(
    createRoute({
      method: "post",
      path: "/v1/domains/{id}/reservation",
      summary: "Reserve order-0 pages for the guest's own heap, within max_pages " +
        "(Xen's populate_physmap; 507 with the cause when refused)",
      description: "All or nothing. The pool and the reservation share max_pages: the pool's " +
        "quota is what the reservation leaves, and a reservation must fit beside the pages the " +
        "pool holds (else cause quota). Fewer free machine frames than pages: cause exhaustion. " +
        "Order-0 pages never need a contiguous run, so contiguity is never a cause. Cycles: a " +
        "page-allocator call and a p2m step per page.",
      security,
      request: {
        params: IdParam,
        body: { content: { "application/json": { schema: ReservationBody } }, required: true },
      },
      responses: {
        200: json(ReservationResultBody, "granted"),
        507: json(ReservationResultBody, "refused: see cause (nothing changed)"),
        ...errors,
      },
    }),
    async (c) => {
      const domain = visibleDomain(c, c.req.valid("param").id);
      const b = c.req.valid("json");
      const r = domain.reserve(b.pages, b.at_cycles);
      await record(
        () => [{ kind: "reserve", domain: domain.id, pages: b.pages, ...at(b.at_cycles) }],
      );
      return c.json({
        ok: r.ok,
        granted: r.grantedPages,
        reserved_pages: r.reservedPages,
        cause: r.cause,
        cycles: r.cycles,
        lock_wait_cycles: r.lockWaitCycles,
      }, r.ok ? 200 : 507);
    },
  );

  app.openapi(
    createRoute({
      method: "post",
      path: "/v1/domains/{id}/reservation/release",
      summary: "Give reserved pages back, the last granted first (Xen's decrease_reservation; " +
        "409 if fewer are reserved)",
      security,
      request: {
        params: IdParam,
        body: { content: { "application/json": { schema: ReleaseBody } }, required: true },
      },
      responses: {
        200: json(ReleaseResultBody, "released"),
        ...errors,
        409: json(ErrorBody, "fewer pages reserved than named (nothing changed)"),
      },
    }),
    async (c) => {
      const domain = visibleDomain(c, c.req.valid("param").id);
      const b = c.req.valid("json");
      const r = domain.unreserve(b.pages, b.at_cycles);
      await record(
        () => [{ kind: "unreserve", domain: domain.id, pages: b.pages, ...at(b.at_cycles) }],
      );
      return c.json({
        released: r.releasedPages,
        reserved_pages: r.reservedPages,
        cycles: r.cycles,
        lock_wait_cycles: r.lockWaitCycles,
      }, 200);
    },
  );

  // -- stats, metrics, events ---------------------------------------------------------------
  app.openapi(
    createRoute({
      method: "get",
      path: "/v1/stats",
      summary: "Hypervisor-wide figures: machine, page allocator, every domain (admin)",
      security,
      responses: { 200: json(HypervisorStatsBody, "stats"), 401: errors[401], 403: errors[403] },
    }),
    (c) => {
      requireAdmin(c);
      const pa = hypervisor.pages.stats();
      return c.json({
        machine: {
          frames: pa.frameCount,
          free_frames: pa.freeFrameCount,
          largest_free_order: pa.largestFreeOrder,
          page_allocator: pageAllocatorCalls(pa),
        },
        default_engine: tenancy.defaultEngine,
        tenants: tenancy.tenants().length,
        domains: tenancy.domains().map((d) => d.stats()),
      }, 200);
    },
  );

  app.openAPIRegistry.registerPath({
    method: "get",
    path: "/metrics",
    summary: "The machine and every domain in the Prometheus text format (admin)",
    security,
    responses: {
      200: { description: "metrics", content: { "text/plain": { schema: { type: "string" } } } },
      401: errors[401],
      403: errors[403],
    },
  });
  app.get("/metrics", (c) => {
    requireAdmin(c);
    return c.text(renderMetrics(hypervisor), 200, {
      "content-type": "text/plain; version=0.0.4; charset=utf-8",
    });
  });

  app.openAPIRegistry.registerPath({
    method: "get",
    path: "/v1/domains/{id}/events",
    summary: "Server-Sent Events: a `stats` event (the domain's figures) every interval_ms, " +
      "max_events at most; `destroyed` when the domain goes",
    security,
    request: {
      params: IdParam,
      query: z.object({
        interval_ms: z.string().optional().openapi({ description: "50..60000 (default 1000)" }),
        max_events: z.string().optional().openapi({ description: "1..1000000 (default 3600)" }),
      }),
    },
    responses: {
      429: { description: "too many event streams open" },
      200: {
        description: "event stream",
        content: { "text/event-stream": { schema: { type: "string" } } },
      },
      ...errors,
    },
  });
  app.get("/v1/domains/:id/events", (c) => {
    const parsed = IdParam.safeParse({ id: c.req.param("id") });
    if (!parsed.success) fail(400, "invalid_request", "id: expected a positive integer");
    const domain = visibleDomain(c, parsed.data.id);
    const intervalMs = queryInt(c.req.query("interval_ms"), "interval_ms", 1000, 50, 60_000);
    const maxEvents = queryInt(c.req.query("max_events"), "max_events", 3600, 1, 1_000_000);
    const p = c.var.principal;
    const owner = p.role === "tenant" ? p.tenantId : 0;
    const mine = streamsByTenant.get(owner) ?? 0;
    if (openStreams >= EVENT_STREAMS_MAX || (owner !== 0 && mine >= EVENT_STREAMS_PER_TENANT_MAX)) {
      fail(
        429,
        "too_many_streams",
        `At most ${EVENT_STREAMS_PER_TENANT_MAX} event streams per tenant and ${EVENT_STREAMS_MAX} in all`,
      );
    }
    openStreams++;
    streamsByTenant.set(owner, mine + 1);
    const shutdown = options.signal;
    return streamSSE(c, async (stream) => {
      let aborted = false;
      stream.onAbort(() => {
        aborted = true;
      });
      // Wake from the sleep between events when the server shuts down.
      let wake = () => {};
      const onShutdown = () => wake();
      shutdown?.addEventListener("abort", onShutdown);
      try {
        for (let n = 0; n < maxEvents && !aborted; n++) {
          if (shutdown?.aborted) {
            await stream.writeSSE({ event: "shutdown", data: "{}" });
            return;
          }
          if (domain.destroyed) {
            await stream.writeSSE({ event: "destroyed", data: JSON.stringify({ id: domain.id }) });
            return;
          }
          await durable(); // an event, like a read, shows only what is durable
          const data = JSON.stringify(domain.stats());
          await stream.writeSSE({ event: "stats", id: String(n), data });
          if (n + 1 < maxEvents) {
            await new Promise<void>((resolve) => {
              const timer = setTimeout(resolve, intervalMs);
              wake = () => {
                clearTimeout(timer);
                resolve();
              };
            });
          }
        }
      } finally {
        shutdown?.removeEventListener("abort", onShutdown);
        openStreams--;
        streamsByTenant.set(owner, (streamsByTenant.get(owner) ?? 1) - 1);
      }
    });
  });

  // -- documentation ------------------------------------------------------------------------
  const document = {
    openapi: "3.0.0",
    info: {
      title: "heapvisor control plane",
      version: "1",
      description:
        "Tenants, domains and their memory on a model hypervisor. Bearer tokens: the admin's, " +
        "or a tenant's (shown once when the tenant is created).",
    },
  };
  app.doc("/v1/openapi.json", document);
  app.get(
    "/v1/docs",
    (c) =>
      c.html(renderDocs(app.getOpenAPIDocument(document) as unknown as Record<string, unknown>)),
  );
  app.get("/", (c) => c.html(renderDashboard()));

  return { app, tokens };
}

/** Run a batch; rejected operations are listed and change nothing. */
/** `at_cycles` for a journal entry, when the request gave one. */
function at(atCycles: number | undefined): { at_cycles?: number } {
  return atCycles === undefined ? {} : { at_cycles: atCycles };
}

/** The journal entry of a memory operation on `domain`, from its request's fields. */
function memoryEntry(
  kind: "allocate" | "free" | "reallocate",
  domain: number,
  b: {
    size?: number;
    align?: number | undefined;
    vcpu?: number | undefined;
    at_cycles?: number | undefined;
  },
  address = 0,
): JournalOp {
  const vcpu = b.vcpu ?? 0;
  const size = b.size ?? 0;
  const align = b.align ?? 1;
  switch (kind) {
    case "allocate":
      return { kind, domain, size, align, vcpu, ...at(b.at_cycles) };
    case "free":
      return { kind, domain, address, vcpu, ...at(b.at_cycles) };
    case "reallocate":
      return { kind, domain, address, size, align, vcpu, ...at(b.at_cycles) };
  }
}

/** Run a batch; each operation that returned is pushed, resolved, onto `done` (if any). */
function runBatch(
  domain: Domain,
  ops: z.infer<typeof BatchBody>["ops"],
  done: JournalOp[] | null,
) {
  const n = ops.length;
  const addresses: number[] = new Array(n).fill(0);
  const live: number[] = new Array(n).fill(0); // block each op still holds, for refs
  const madeBy = new Map<number, number>(); // live block -> the op of this batch that made it
  const release = (address: number): void => { // a block is gone: refs to its op are void
    const j = madeBy.get(address);
    if (j !== undefined) {
      live[j] = 0;
      madeBy.delete(address);
    }
  };
  const causes: (AllocFailureCause | null)[] = new Array(n).fill(null);
  const steps: number[] = new Array(n).fill(0);
  const cycles: number[] = new Array(n).fill(0);
  const lockWait: number[] = new Array(n).fill(0);
  const errors: { index: number; code: string; message: string }[] = [];
  let served = 0;
  const target = (
    op: { address?: number | undefined; ref?: number | undefined },
    i: number,
  ): number => {
    if ((op.address === undefined) === (op.ref === undefined)) {
      throw new RangeError("Invalid operation: give exactly one of address or ref");
    }
    if (op.ref === undefined) return op.address!;
    if (op.ref >= i) {
      throw new RangeError(`Invalid ref ${op.ref}: expected an earlier operation (< ${i})`);
    }
    if (live[op.ref] === 0) {
      throw new RangeError(`Invalid ref ${op.ref}: that operation holds no block`);
    }
    return live[op.ref]!;
  };
  for (let i = 0; i < n; i++) {
    const op = ops[i]!;
    try {
      let r: MemoryOpResult;
      if (op.op === "alloc") {
        r = domain.allocate(op.size, op.align ?? 1, op.vcpu ?? 0, op.at_cycles);
        done?.push(memoryEntry("allocate", domain.id, op));
        if (r.ok) {
          live[i] = r.address;
          madeBy.set(r.address, i);
        }
      } else if (op.op === "free") {
        const address = target(op, i);
        r = domain.free(address, op.vcpu ?? 0, op.at_cycles);
        done?.push(memoryEntry("free", domain.id, op, address));
        release(address);
      } else {
        const address = target(op, i);
        r = domain.reallocate(address, op.size, op.align ?? 1, op.vcpu ?? 0, op.at_cycles);
        done?.push(memoryEntry("reallocate", domain.id, op, address));
        if (r.ok) {
          release(address);
          live[i] = r.address;
          madeBy.set(r.address, i);
        }
      }
      addresses[i] = r.address;
      causes[i] = r.cause;
      steps[i] = r.steps;
      cycles[i] = r.cycles;
      lockWait[i] = r.lockWaitCycles;
      if (r.ok) served++;
    } catch (e) {
      if (e instanceof InvalidFreeError) {
        errors.push({ index: i, code: e.reason.replace("-", "_"), message: e.message });
      } else if (e instanceof RangeError) {
        errors.push({ index: i, code: "invalid_request", message: e.message });
      } else throw e;
    }
  }
  return { count: n, served, addresses, causes, steps, cycles, lock_wait_cycles: lockWait, errors };
}

function queryInt(
  raw: string | undefined,
  name: string,
  fallback: number,
  lo: number,
  hi: number,
): number {
  if (raw === undefined) return fallback;
  const v = /^\d+$/.test(raw) ? Number(raw) : NaN;
  if (!(v >= lo && v <= hi)) {
    fail(400, "invalid_request", `${name}: expected an integer in [${lo}, ${hi}]`);
  }
  return v;
}

/** After pages return: the page allocator must be sound, or this is a bug (500). */
function assertMachineSound(hypervisor: Hypervisor): void {
  const errors = hypervisor.pages.check();
  if (errors.length > 0) {
    throw new Error(`Page allocator inconsistent: ${errors.slice(0, 3).join("; ")}`);
  }
}
