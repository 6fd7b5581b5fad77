/**
 * Request and response shapes of the control plane, as zod schemas: they validate
 * every body and parameter, and the OpenAPI document is generated from them.
 * Objects are strict: an unknown field is a 400.
 *
 * @module
 */

import { z } from "@hono/zod-openapi";
import { ENGINE_NAMES } from "../xmalloc/registry.ts";
import { NAME_MAX_LENGTH, RESERVATION_PAGES_MAX, VCPUS_MAX } from "../domains.ts";
import type * as types from "./types.ts";

/** Most operations one batch request may carry. */
export const BATCH_MAX_OPS = 10_000;
/** Largest size one allocation may ask for (1 TiB). */
export const SIZE_MAX_BYTES = 2 ** 40;
/** Largest alignment (1 GiB). */
export const ALIGN_MAX_BYTES = 2 ** 30;

const name = z.string().regex(/^[A-Za-z0-9._-]+$/, "letters, digits, '.', '_' or '-'").min(1).max(
  NAME_MAX_LENGTH,
).openapi({ description: "letters, digits, '.', '_' or '-'", example: "acme" });
const id = z.string().regex(/^[1-9]\d{0,9}$/, "expected a decimal integer from 1").transform(Number)
  .pipe(z.number().max(2 ** 31));
const size = z.number().int().min(1).max(SIZE_MAX_BYTES).openapi({
  description: "bytes to allocate",
  example: 4095,
});
const align = z.number().int().min(1).max(ALIGN_MAX_BYTES).refine((a) => (a & (a - 1)) === 0, {
  message: "must be a power of two",
}).openapi({ description: "a power of two (default 1)", example: 16 });
const vcpu = z.number().int().min(0).max(VCPUS_MAX - 1).openapi({
  description: "calling vCPU (default 0)",
});
const address = z.number().int().min(1).max(Number.MAX_SAFE_INTEGER).openapi({
  description: "a block's address as returned by alloc",
  example: 17592186048528,
});
const atCycles = z.number().int().min(0).max(Number.MAX_SAFE_INTEGER).openapi({
  description: "the calling vCPU's virtual time in cycles: with it, lock wait is modelled " +
    "(calls must come in the order of their times)",
});
const cause = z.enum(["quota", "exhaustion", "contiguity", "unservable"]);

/** Path parameter `:id`. */
export const IdParam = z.object({
  id: id.openapi({ param: { name: "id", in: "path" }, example: 1 }),
});

/** A JSON error: what failed and why. */
export const ErrorBody = z.object({
  error: z.object({
    code: z.string().openapi({ example: "invalid_request" }),
    message: z.string().openapi({ example: "size: Too small: expected number to be >=1" }),
  }),
}).openapi("Error");

/** GET /v1/health. */
export const HealthBody = z.object({ status: z.literal("ok") }).openapi("Health");

/** POST /v1/tenants. */
export const CreateTenantBody = z.strictObject({
  name,
  max_domains: z.number().int().min(1).max(1_000_000).openapi({
    description: "most domains the tenant may have at once",
    example: 8,
  }),
  max_pages: z.number().int().min(1).max(2 ** 31).openapi({
    description: "most pages its domains' max_pages may add up to",
    example: 65536,
  }),
}).openapi("CreateTenant");

/** A tenant as the admin sees it. */
export const TenantBody = z.object({
  id: z.number().int(),
  name: z.string(),
  max_domains: z.number().int(),
  max_pages: z.number().int(),
  domains: z.number().int().openapi({ description: "domains now" }),
  pages_reserved: z.number().int().openapi({ description: "sum of its domains' max_pages" }),
  pages_held: z.number().int().openapi({ description: "pages its domains hold now" }),
}).openapi("Tenant");

/** A new tenant, with its token (shown once). */
export const CreatedTenantBody = TenantBody.extend({
  token: z.string().openapi({
    description: "bearer token of the tenant; shown once, stored hashed",
  }),
}).openapi("CreatedTenant");

/** POST /v1/domains. */
export const CreateDomainBody = z.strictObject({
  name,
  vcpus: z.number().int().min(1).max(VCPUS_MAX).optional().openapi({
    description: "virtual CPUs (required, unless from_snapshot: then the snapshot's)",
    example: 2,
  }),
  max_pages: z.number().int().min(1).max(2 ** 31).optional().openapi({
    description: "the domain's page quota (Xen's max_pages; required, unless from_snapshot: " +
      "then at least the pages the snapshot's heap holds, default the snapshot's)",
    example: 4096,
  }),
  engine: z.enum(ENGINE_NAMES as [string, ...string[]]).optional().openapi({
    description: "xmalloc engine of the domain's pool (default: the hypervisor's; with " +
      "from_snapshot, the snapshot's, or another to move its blocks to)",
  }),
  from_snapshot: z.number().int().min(1).optional().openapi({
    description: "start with this snapshot's heap (POST /v1/domains/{id}/snapshot, POST " +
      "/v1/snapshots): on its engine the same blocks at the same addresses; with another " +
      "engine the same live blocks laid out that engine's way (see moved)",
  }),
  tenant_id: z.number().int().min(1).optional().openapi({
    description: "admin only: the tenant the domain is for",
  }),
}).openapi("CreateDomain");

const percentiles = z.object({
  p50: z.number(),
  p99: z.number(),
  p999: z.number(),
  max: z.number(),
  mean: z.number(),
});

/** A snapshot kept by the hypervisor. */
export const SnapshotBody = z.object({
  id: z.number().int(),
  tenant_id: z.number().int(),
  source_domain_id: z.number().int().nullable().openapi({
    description: "the domain it was taken of (null: imported from a file)",
  }),
  name: z.string().openapi({ description: "the source domain's name" }),
  engine: z.string(),
  vcpus: z.number().int(),
  max_pages: z.number().int(),
  machine_frames: z.number().int().openapi({ description: "frames of the source's machine" }),
  version: z.number().int().openapi({
    description: "2: the heap's state; 1: its history (a file imported from heapvisor before 2)",
  }),
  state_bytes: z.number().int().openapi({
    description: "bytes of its state (engine and pool pages), or of its history (version 1)",
  }),
  pages_held: z.number().int(),
  reserved_pages: z.number().int(),
  live_blocks: z.number().int(),
  requested_bytes: z.number().int(),
}).openapi("Snapshot");

/** A snapshot file (the format is documented in the README and hypervisor/snapshot.ts). */
export const SnapshotFileBody = z.looseObject({
  format: z.literal("heapvisor-snapshot"),
  version: z.number().int(),
}).openapi("SnapshotFile", {
  description: "a file from GET /v1/snapshots/{id}/export (checked in full on import)",
});

/** ?tenant_id= (admin: whom an import is for). */
export const TenantQuery = z.object({
  tenant_id: z.coerce.number().int().min(1).optional().openapi({
    param: { name: "tenant_id", in: "query" },
    description: "admin only: the tenant the snapshot is for",
  }),
});

/** A domain's figures. */
export const DomainBody = z.object({
  id: z.number().int(),
  tenant_id: z.number().int(),
  name: z.string(),
  engine: z.string(),
  vcpus: z.number().int(),
  max_pages: z.number().int().openapi({
    description: "page quota, shared by the pool and the reservation",
  }),
  pages_held: z.number().int().openapi({ description: "pages the pool holds" }),
  reserved_pages: z.number().int().openapi({
    description: "pages reserved for the guest's own heap (POST /v1/domains/{id}/reservation)",
  }),
  pool_pages: z.number().int(),
  whole_pages: z.number().int(),
  meta_pages: z.number().int(),
  peak_pages: z.number().int(),
  live_blocks: z.number().int(),
  requested_bytes: z.number().int(),
  reserved_bytes: z.number().int(),
  overhead_ratio: z.number(),
  ops: z.object({
    allocs: z.number(),
    frees: z.number(),
    reallocs: z.number(),
    failed: z.number(),
  }),
  failures: z.object({
    quota: z.number(),
    exhaustion: z.number(),
    contiguity: z.number(),
    unservable: z.number(),
  }),
  steps: percentiles,
  smp: z.object({
    pool_lock: z.object({
      acquisitions: z.number(),
      contended: z.number(),
      wait_cycles: z.number(),
    }),
    cache_line_transfers: z.number(),
    false_sharing: z.object({
      shared_lines: z.number(),
      peak_shared_lines: z.number(),
      events: z.number(),
    }),
    per_vcpu: z.array(z.object({
      vcpu: z.number(),
      ops: z.number(),
      lock_wait_cycles: z.number(),
      latency_cycles: percentiles,
    })),
  }).openapi({ description: "lock wait, cache-line transfers, false sharing, per-vCPU latency" }),
  latency_cycles: percentiles.openapi({
    description: "modelled cycles per operation (src/cost_model.ts)",
  }),
}).openapi("Domain");

/** A new domain's figures; from a snapshot on another engine, where its blocks went. */
export const CreatedDomainBody = DomainBody.extend({
  moved: z.array(z.tuple([z.number().int(), z.number().int()])).optional().openapi({
    description: "from_snapshot on another engine: [address in the snapshot, address here] " +
      "of every block (on the snapshot's own engine the addresses are the same: absent)",
  }),
}).openapi("CreatedDomain");

/** POST /v1/domains/:id/alloc. */
export const AllocBody = z.strictObject({
  size,
  align: align.optional(),
  vcpu: vcpu.optional(),
  at_cycles: atCycles.optional(),
})
  .openapi(
    "Alloc",
  );
/** POST /v1/domains/:id/free. */
export const FreeBody = z.strictObject({
  address,
  vcpu: vcpu.optional(),
  at_cycles: atCycles.optional(),
}).openapi("Free");
/** POST /v1/domains/:id/realloc. */
export const ReallocBody = z.strictObject({
  address,
  size,
  align: align.optional(),
  vcpu: vcpu.optional(),
  at_cycles: atCycles.optional(),
})
  .openapi("Realloc");

/** The outcome of one memory operation. */
export const OpResultBody = z.object({
  ok: z.boolean(),
  address: z.number().int().openapi({ description: "the block (0 if not served)" }),
  reserved_bytes: z.number().int().openapi({ description: "bytes usable at the address" }),
  cause: cause.nullable().openapi({ description: "why it was not served" }),
  steps: z.number().int(),
  cycles: z.number().int().openapi({ description: "modelled cycles of the work" }),
  lock_wait_cycles: z.number().openapi({ description: "cycles waited for locks (with at_cycles)" }),
}).openapi("OpResult");

const pages = z.number().int().min(1).max(RESERVATION_PAGES_MAX);

/** POST /v1/domains/:id/reservation. */
export const ReservationBody = z.strictObject({
  pages: pages.openapi({
    description: "order-0 pages (4 KiB) to add to the reservation, all or nothing",
    example: 256,
  }),
  at_cycles: atCycles.optional(),
}).openapi("Reservation");

/** POST /v1/domains/:id/reservation/release. */
export const ReleaseBody = z.strictObject({
  pages: pages.openapi({
    description: "reserved pages to give back (at most the domain's reserved_pages)",
    example: 256,
  }),
  at_cycles: atCycles.optional(),
}).openapi("ReservationRelease");

/** The outcome of a reservation request. */
export const ReservationResultBody = z.object({
  ok: z.boolean().openapi({ description: "whether every page asked for was granted" }),
  granted: z.number().int().openapi({ description: "pages this request added (0: refused)" }),
  reserved_pages: z.number().int().openapi({ description: "pages reserved now" }),
  cause: z.enum(["quota", "exhaustion"]).nullable().openapi({
    description: "why it was refused: quota (pool pages + reserved + pages > max_pages) or " +
      "exhaustion (fewer free machine frames); order-0 pages never fail for contiguity",
  }),
  cycles: z.number().int().openapi({
    description: "modelled cycles: a page-allocator call and a p2m step per page",
  }),
  lock_wait_cycles: z.number().openapi({
    description: "cycles waited for the heap lock (with at_cycles)",
  }),
}).openapi("ReservationResult");

/** The outcome of a release. */
export const ReleaseResultBody = z.object({
  released: z.number().int().openapi({ description: "pages given back" }),
  reserved_pages: z.number().int().openapi({ description: "pages reserved now" }),
  cycles: z.number().int().openapi({ description: "modelled cycles of the work" }),
  lock_wait_cycles: z.number().openapi({
    description: "cycles waited for the heap lock (with at_cycles)",
  }),
}).openapi("ReleaseResult");

const batchOp = z.discriminatedUnion("op", [
  z.strictObject({
    op: z.literal("alloc"),
    size,
    align: align.optional(),
    vcpu: vcpu.optional(),
    at_cycles: atCycles.optional(),
  }),
  z.strictObject({
    op: z.literal("free"),
    address: address.optional(),
    ref: z.number().int().min(0).optional().openapi({
      description: "index of an earlier alloc in this batch whose block to free",
    }),
    vcpu: vcpu.optional(),
    at_cycles: atCycles.optional(),
  }),
  z.strictObject({
    op: z.literal("realloc"),
    address: address.optional(),
    ref: z.number().int().min(0).optional(),
    size,
    align: align.optional(),
    vcpu: vcpu.optional(),
    at_cycles: atCycles.optional(),
  }),
]);

/** POST /v1/domains/:id/batch. */
export const BatchBody = z.strictObject({
  ops: z.array(batchOp).min(1).max(BATCH_MAX_OPS).openapi({
    description: `1..${BATCH_MAX_OPS} operations, run in order: {"op":"alloc","size","align"?,` +
      `"vcpu"?}, {"op":"free","address" or "ref","vcpu"?}, {"op":"realloc","address" or "ref",` +
      `"size","align"?,"vcpu"?}`,
  }),
}).openapi("Batch");

/** Per-operation results of a batch, column by column (index i is op i). */
export const BatchResultBody = z.object({
  count: z.number().int(),
  served: z.number().int().openapi({ description: "operations that succeeded" }),
  addresses: z.array(z.number().int()).openapi({ description: "block of each op (0: none)" }),
  causes: z.array(cause.nullable()),
  steps: z.array(z.number().int()),
  cycles: z.array(z.number().int()),
  lock_wait_cycles: z.array(z.number()),
  errors: z.array(z.object({ index: z.number().int(), code: z.string(), message: z.string() }))
    .openapi({
      description: "operations rejected (bad address, double free, bad ref): they changed nothing",
    }),
}).openapi("BatchResult");

/** GET /v1/engines. */
export const EnginesBody = z.array(z.object({
  name: z.string(),
  description: z.string(),
  modelled_on: z.string(),
  parameters: z.record(z.string(), z.union([z.number(), z.string()])),
})).openapi("Engines");

/** GET /v1/stats (admin). */
export const HypervisorStatsBody = z.object({
  machine: z.object({
    frames: z.number().int(),
    free_frames: z.number().int(),
    largest_free_order: z.number().int(),
    page_allocator: z.object({
      alloc_calls: z.number(),
      free_calls: z.number(),
      failed_calls: z.number(),
      failed_contiguity: z.number(),
      failed_exhaustion: z.number(),
    }),
  }),
  default_engine: z.string(),
  tenants: z.number().int(),
  domains: z.array(DomainBody),
}).openapi("HypervisorStats");

// -- the schemas and types.ts describe the same bodies (checked at compile time) ------

type Same<A, B> = [A] extends [B] ? ([B] extends [A] ? true : false) : false;
const agree = <T extends true>(): T => true as T;
agree<Same<z.infer<typeof TenantBody>, types.TenantInfo>>();
agree<Same<z.infer<typeof CreatedTenantBody>, types.CreatedTenant>>();
agree<Same<z.infer<typeof DomainBody>, types.DomainInfo>>();
agree<Same<z.infer<typeof CreatedDomainBody>, types.CreatedDomainInfo>>();
agree<Same<z.infer<typeof OpResultBody>, types.OpResult>>();
agree<Same<z.infer<typeof BatchBody>["ops"][number], types.BatchOp>>();
agree<Same<z.infer<typeof BatchResultBody>, types.BatchResult>>();
agree<Same<z.infer<typeof EnginesBody>[number], types.EngineInfo>>();
agree<Same<z.infer<typeof HypervisorStatsBody>, types.HypervisorStats>>();
agree<Same<z.infer<typeof ReservationBody>, types.ReservationRequest>>();
agree<Same<z.infer<typeof ReleaseBody>, types.ReservationRequest>>();
agree<Same<z.infer<typeof ReservationResultBody>, types.ReservationResult>>();
agree<Same<z.infer<typeof ReleaseResultBody>, types.ReleaseResult>>();
agree<Same<z.infer<typeof SnapshotBody>, types.SnapshotInfo>>();

// -- fast paths of the request schemas ---------------------------------------------------
//
// zod costs about 0.3 us per batch operation, most of a big batch's time. So the
// schemas the requests go through first try a hand check that only *accepts*: a value
// it passes is one zod accepts, and the data is what zod would return (fresh objects,
// keys in schema order, absent optional keys left out). Anything else, every error
// included, goes through zod itself, so each rejection and its message stay zod's.

/** A JSON object (what `JSON.parse` makes), not an array or anything exotic. */
function isJsonObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && Object.getPrototypeOf(v) === Object.prototype;
}

/** An integer in [lo, hi] (both within the safe integers), as zod's `.int().min().max()`. */
function isInt(v: unknown, lo: number, hi: number): v is number {
  return Number.isSafeInteger(v) && (v as number) >= lo && (v as number) <= hi;
}

const isSize = (v: unknown) => isInt(v, 1, SIZE_MAX_BYTES);
const isAlign = (v: unknown) =>
  isInt(v, 1, ALIGN_MAX_BYTES) && ((v as number) & ((v as number) - 1)) === 0;
const isVcpu = (v: unknown) => isInt(v, 0, VCPUS_MAX - 1);
const isAddress = (v: unknown) => isInt(v, 1, Number.MAX_SAFE_INTEGER);
const isRef = (v: unknown) => isInt(v, 0, Number.MAX_SAFE_INTEGER);
const isCycles = (v: unknown) => isInt(v, 0, Number.MAX_SAFE_INTEGER);

/** Keys `for...in` visits: what zod's strict check looks at. */
function keyCount(o: object): number {
  let n = 0;
  for (const _ in o) n++;
  return n;
}

/**
 * Copy the optional field `key` of `o` to `out` if it is present and passes `check`.
 *
 * @returns 1 copied, 0 absent, -1 present but not valid
 */
function optional(
  o: Record<string, unknown>,
  key: string,
  check: (v: unknown) => boolean,
  out: Record<string, unknown>,
): number {
  const v = o[key];
  if (v === undefined) return 0;
  if (!check(v)) return -1;
  out[key] = v;
  return 1;
}

type Checked = Record<string, unknown> | undefined;

/** `{op?, size, align?, vcpu?}` (op: the batch form). */
function acceptAlloc(o: Record<string, unknown>, op: boolean): Checked {
  if (!isSize(o.size)) return undefined;
  const out: Record<string, unknown> = op ? { op: "alloc", size: o.size } : { size: o.size };
  let a, v, t;
  if ((a = optional(o, "align", isAlign, out)) < 0) return undefined;
  if ((v = optional(o, "vcpu", isVcpu, out)) < 0) return undefined;
  if ((t = optional(o, "at_cycles", isCycles, out)) < 0) return undefined;
  return keyCount(o) === (op ? 2 : 1) + a + v + t ? out : undefined;
}

/** `{address, vcpu?}`, or in a batch `{op, address?, ref?, vcpu?}`. */
function acceptFree(o: Record<string, unknown>, op: boolean): Checked {
  const out: Record<string, unknown> = op ? { op: "free" } : {};
  let d, r = 0, v, t;
  if ((d = optional(o, "address", isAddress, out)) < 0 || (!op && d === 0)) return undefined;
  if (op && (r = optional(o, "ref", isRef, out)) < 0) return undefined;
  if ((v = optional(o, "vcpu", isVcpu, out)) < 0) return undefined;
  if ((t = optional(o, "at_cycles", isCycles, out)) < 0) return undefined;
  return keyCount(o) === (op ? 1 : 0) + d + r + v + t ? out : undefined;
}

/** `{address, size, align?, vcpu?}`, or in a batch `{op, address?, ref?, size, ...}`. */
function acceptRealloc(o: Record<string, unknown>, op: boolean): Checked {
  const out: Record<string, unknown> = op ? { op: "realloc" } : {};
  let d, r = 0, a, v, t;
  if ((d = optional(o, "address", isAddress, out)) < 0 || (!op && d === 0)) return undefined;
  if (op && (r = optional(o, "ref", isRef, out)) < 0) return undefined;
  if (!isSize(o.size)) return undefined;
  out.size = o.size;
  if ((a = optional(o, "align", isAlign, out)) < 0) return undefined;
  if ((v = optional(o, "vcpu", isVcpu, out)) < 0) return undefined;
  if ((t = optional(o, "at_cycles", isCycles, out)) < 0) return undefined;
  return keyCount(o) === (op ? 2 : 1) + d + r + a + v + t ? out : undefined;
}

function acceptBatch(v: unknown): z.output<typeof BatchBody> | undefined {
  if (!isJsonObject(v) || keyCount(v) !== 1) return undefined;
  const ops = v.ops;
  if (!Array.isArray(ops) || ops.length < 1 || ops.length > BATCH_MAX_OPS) return undefined;
  const out = new Array(ops.length);
  for (let i = 0; i < ops.length; i++) {
    const o: unknown = ops[i];
    if (!isJsonObject(o)) return undefined;
    const checked = o.op === "alloc"
      ? acceptAlloc(o, true)
      : o.op === "free"
      ? acceptFree(o, true)
      : o.op === "realloc"
      ? acceptRealloc(o, true)
      : undefined;
    if (checked === undefined) return undefined;
    out[i] = checked;
  }
  return { ops: out };
}

/**
 * Put `accept` in front of `schema.safeParseAsync`, the method the request validator
 * calls: what it accepts is a success with the data it returns, the rest goes to zod.
 */
function withFastPath<T extends z.ZodType>(
  schema: T,
  accept: (v: unknown) => Checked,
): void {
  const zod = schema.safeParseAsync.bind(schema);
  schema.safeParseAsync = (value, params) => {
    const data = accept(value) as z.output<T> | undefined;
    return data === undefined ? zod(value, params) : Promise.resolve({ success: true, data });
  };
}

withFastPath(IdParam, (v) => {
  // What the id schema accepts: a decimal integer in [1, 2^31], no sign, spaces or exponent.
  const id = isJsonObject(v) ? v.id : undefined;
  if (typeof id !== "string" || !/^[1-9]\d{0,9}$/.test(id)) return undefined;
  const n = Number(id);
  return n <= 2 ** 31 ? { id: n } : undefined;
});
withFastPath(AllocBody, (v) => (isJsonObject(v) ? acceptAlloc(v, false) : undefined));
withFastPath(FreeBody, (v) => (isJsonObject(v) ? acceptFree(v, false) : undefined));
withFastPath(ReallocBody, (v) => (isJsonObject(v) ? acceptRealloc(v, false) : undefined));
withFastPath(BatchBody, acceptBatch);
