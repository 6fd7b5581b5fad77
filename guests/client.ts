/**
 * The typed control-plane client guests use. One type, two transports: in process
 * (`ControlPlaneClient.inProcess(app, token)`: requests go to `app.fetch` with the full
 * HTTP layer and no socket) or over a socket (`ControlPlaneClient.overHttp(url,
 * token)`). Errors come back as {@link ControlPlaneError} with the server's code and
 * message; an allocation that cannot be served is an outcome (`ok: false` and its
 * cause), not an error.
 *
 * @module
 */

import type {
  BatchOp,
  BatchResult,
  CreatedDomainInfo,
  CreatedTenant,
  DomainInfo,
  EngineInfo,
  HypervisorStats,
  OpResult,
  ReleaseResult,
  ReservationRequest,
  ReservationResult,
  SnapshotInfo,
  TenantInfo,
} from "../hypervisor/control_plane/types.ts";
import type { SnapshotDocument } from "../hypervisor/snapshot.ts";

export type {
  BatchOp,
  BatchResult,
  CreatedDomainInfo,
  CreatedTenant,
  DomainInfo,
  EngineInfo,
  HypervisorStats,
  OpResult,
  ReleaseResult,
  ReservationRequest,
  ReservationResult,
  SnapshotDocument,
  SnapshotInfo,
  TenantInfo,
};

/** What sends a request: `app.fetch`, or `fetch`. */
export type FetchLike = (request: Request) => Response | Promise<Response>;

/** The server refused a request: HTTP status, its error code and message. */
export class ControlPlaneError extends Error {
  /** The error's name. */
  override name = "ControlPlaneError";
  /** HTTP status. */
  readonly status: number;
  /** The server's error code, e.g. `double_free`. */
  readonly code: string;

  /**
   * Describe a refused request.
   *
   * @param status HTTP status
   * @param code error code
   * @param message what failed and why
   */
  constructor(status: number, code: string, message: string) {
    super(`${status} ${code}: ${message}`);
    this.status = status;
    this.code = code;
  }
}

/** Base URL of in-process requests (never resolved: `app.fetch` takes them directly). */
const IN_PROCESS_URL = "http://heapvisor.invalid";

/**
 * A client of the control plane.
 *
 * @example
 * ```ts
 * import { Hypervisor } from "../hypervisor/hypervisor.ts";
 * import { createControlPlane } from "../hypervisor/control_plane/app.ts";
 * import { ControlPlaneClient } from "./client.ts";
 * import assert from "node:assert/strict";
 * const admin = "admin-token-0123456789";
 * const { app } = createControlPlane(new Hypervisor({ engine: "tlsf", machineBytes: 2 ** 26 }), {
 *   adminToken: admin,
 * });
 * const root = ControlPlaneClient.inProcess(app, admin);
 * const tenant = await root.createTenant({ name: "acme", max_domains: 1, max_pages: 64 });
 * const client = ControlPlaneClient.inProcess(app, tenant.token);
 * const dom = await client.createDomain({ name: "web", vcpus: 1, max_pages: 64 });
 * const r = await client.alloc(dom.id, { size: 4095 });
 * assert.equal(r.ok, true);
 * await client.free(dom.id, { address: r.address });
 * ```
 */
export class ControlPlaneClient {
  readonly #send: FetchLike;
  readonly #baseUrl: string;
  readonly #token: string;

  /**
   * A client sending with `send` (see {@link inProcess} and {@link overHttp}).
   *
   * @param send what sends requests
   * @param baseUrl the server's URL
   * @param token bearer token (admin or tenant)
   */
  constructor(send: FetchLike, baseUrl: string, token: string) {
    this.#send = send;
    this.#baseUrl = baseUrl.replace(/\/$/, "");
    this.#token = token;
  }

  /** A client that calls `app.fetch` directly (no socket). */
  static inProcess(app: { fetch: FetchLike }, token: string): ControlPlaneClient {
    return new ControlPlaneClient((r) => app.fetch(r), IN_PROCESS_URL, token);
  }

  /** A client over HTTP to `baseUrl` (e.g. `http://127.0.0.1:8080`). */
  static overHttp(baseUrl: string, token: string): ControlPlaneClient {
    return new ControlPlaneClient((r) => fetch(r), baseUrl, token);
  }

  /** The same server with another token. */
  withToken(token: string): ControlPlaneClient {
    return new ControlPlaneClient(this.#send, this.#baseUrl, token);
  }

  async #call<T>(method: string, path: string, body?: unknown, outcome: number[] = []): Promise<T> {
    const headers: Record<string, string> = { authorization: `Bearer ${this.#token}` };
    if (body !== undefined) headers["content-type"] = "application/json";
    const response = await this.#send(
      new Request(this.#baseUrl + path, {
        method,
        headers,
        ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
      }),
    );
    if (response.ok || outcome.includes(response.status)) {
      if (response.status === 204) return undefined as T;
      const type = response.headers.get("content-type") ?? "";
      return (type.includes("json") ? await response.json() : await response.text()) as T;
    }
    let code = "http_error";
    let message = response.statusText;
    try {
      const e = (await response.json()) as { error?: { code?: string; message?: string } };
      code = e.error?.code ?? code;
      message = e.error?.message ?? message;
    } catch {
      // not JSON: keep the status text
    }
    throw new ControlPlaneError(response.status, code, message);
  }

  /** `GET /v1/health`. */
  health(): Promise<{ status: "ok" }> {
    return this.#call("GET", "/v1/health");
  }

  /** `GET /v1/engines`. */
  engines(): Promise<EngineInfo[]> {
    return this.#call("GET", "/v1/engines");
  }

  /** `POST /v1/tenants` (admin): the response carries the tenant's token. */
  createTenant(
    body: { name: string; max_domains: number; max_pages: number },
  ): Promise<CreatedTenant> {
    return this.#call("POST", "/v1/tenants", body);
  }

  /** `GET /v1/tenants` (admin). */
  tenants(): Promise<TenantInfo[]> {
    return this.#call("GET", "/v1/tenants");
  }

  /** `DELETE /v1/tenants/:id` (admin). */
  deleteTenant(id: number): Promise<void> {
    return this.#call("DELETE", `/v1/tenants/${id}`);
  }

  /**
   * `POST /v1/domains`. With `from_snapshot` the domain starts with that snapshot's
   * heap: on its engine the same blocks at the same addresses; with another `engine`
   * the same live blocks, and `moved` says where each went. vcpus and max_pages
   * default to the snapshot's.
   */
  createDomain(
    body:
      | { name: string; vcpus: number; max_pages: number; engine?: string; tenant_id?: number }
      | {
        name: string;
        from_snapshot: number;
        vcpus?: number;
        max_pages?: number;
        engine?: string;
        tenant_id?: number;
      },
  ): Promise<CreatedDomainInfo> {
    return this.#call("POST", "/v1/domains", body);
  }

  /** `POST /v1/domains/:id/snapshot`: snapshot a domain's heap. */
  snapshot(domainId: number): Promise<SnapshotInfo> {
    return this.#call("POST", `/v1/domains/${domainId}/snapshot`);
  }

  /** `GET /v1/snapshots`. */
  snapshots(): Promise<SnapshotInfo[]> {
    return this.#call("GET", "/v1/snapshots");
  }

  /** `GET /v1/snapshots/:id/export`: the snapshot file. */
  exportSnapshot(id: number): Promise<SnapshotDocument> {
    return this.#call("GET", `/v1/snapshots/${id}/export`);
  }

  /** `POST /v1/snapshots`: import a snapshot file (the admin names `tenantId`). */
  importSnapshot(file: SnapshotDocument, tenantId?: number): Promise<SnapshotInfo> {
    const query = tenantId === undefined ? "" : `?tenant_id=${tenantId}`;
    return this.#call("POST", `/v1/snapshots${query}`, file);
  }

  /** `DELETE /v1/snapshots/:id`. */
  deleteSnapshot(id: number): Promise<void> {
    return this.#call("DELETE", `/v1/snapshots/${id}`);
  }

  /** `GET /v1/domains`. */
  domains(): Promise<DomainInfo[]> {
    return this.#call("GET", "/v1/domains");
  }

  /** `GET /v1/domains/:id`. */
  domain(id: number): Promise<DomainInfo> {
    return this.#call("GET", `/v1/domains/${id}`);
  }

  /** `DELETE /v1/domains/:id`. */
  destroyDomain(id: number): Promise<void> {
    return this.#call("DELETE", `/v1/domains/${id}`);
  }

  /** `POST /v1/domains/:id/alloc`: not served is `ok: false` with the cause. */
  alloc(
    domainId: number,
    body: { size: number; align?: number; vcpu?: number; at_cycles?: number },
  ): Promise<OpResult> {
    return this.#call("POST", `/v1/domains/${domainId}/alloc`, body, [507]);
  }

  /** `POST /v1/domains/:id/free`. */
  free(
    domainId: number,
    body: { address: number; vcpu?: number; at_cycles?: number },
  ): Promise<OpResult> {
    return this.#call("POST", `/v1/domains/${domainId}/free`, body);
  }

  /** `POST /v1/domains/:id/realloc`: not served is `ok: false` (the old block stays). */
  realloc(
    domainId: number,
    body: { address: number; size: number; align?: number; vcpu?: number; at_cycles?: number },
  ): Promise<OpResult> {
    return this.#call("POST", `/v1/domains/${domainId}/realloc`, body, [507]);
  }

  /**
   * `POST /v1/domains/:id/reservation`: order-0 pages for the guest's own heap, all or
   * nothing; refused (507) is `ok: false` with the cause (`quota`, `exhaustion`).
   */
  reserve(domainId: number, body: ReservationRequest): Promise<ReservationResult> {
    return this.#call("POST", `/v1/domains/${domainId}/reservation`, body, [507]);
  }

  /**
   * `POST /v1/domains/:id/reservation/release`: give reserved pages back (a
   * {@link ControlPlaneError} 409 `not_reserved` if fewer are reserved).
   */
  release(domainId: number, body: ReservationRequest): Promise<ReleaseResult> {
    return this.#call("POST", `/v1/domains/${domainId}/reservation/release`, body);
  }

  /** `POST /v1/domains/:id/batch`. */
  batch(domainId: number, ops: BatchOp[]): Promise<BatchResult> {
    return this.#call("POST", `/v1/domains/${domainId}/batch`, { ops });
  }

  /** `GET /v1/stats` (admin). */
  stats(): Promise<HypervisorStats> {
    return this.#call("GET", "/v1/stats");
  }

  /** `GET /metrics` (admin): Prometheus text. */
  metrics(): Promise<string> {
    return this.#call("GET", "/metrics");
  }
}
