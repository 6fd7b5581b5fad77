/**
 * The control plane's bodies as plain TypeScript types, for clients and readers.
 * `schemas.ts` validates them at run time; a compile-time check there keeps the two
 * in agreement.
 *
 * @module
 */

import type { DomainStats, ReservationFailureCause } from "../domains.ts";
import type { AllocFailureCause } from "../xmalloc/engine.ts";

/** A tenant, as the admin sees it. */
export interface TenantInfo {
  /** Id. */
  id: number;
  /** Name. */
  name: string;
  /** Most domains at once. */
  max_domains: number;
  /** Most pages its domains' max_pages may add up to. */
  max_pages: number;
  /** Domains now. */
  domains: number;
  /** Sum of its domains' max_pages. */
  pages_reserved: number;
  /** Pages its domains hold now. */
  pages_held: number;
}

/** A new tenant with its bearer token (shown once). */
export interface CreatedTenant extends TenantInfo {
  /** The tenant's bearer token. */
  token: string;
}

/** A domain's figures. */
export type DomainInfo = DomainStats;

/** A new domain's figures; from a snapshot on another engine, where its blocks went. */
export type CreatedDomainInfo = DomainInfo & {
  /** [address in the snapshot, address here] of every block (another engine only). */
  moved?: [number, number][] | undefined;
};

/** A snapshot the hypervisor keeps (POST /v1/domains/{id}/snapshot, POST /v1/snapshots). */
export interface SnapshotInfo {
  /** Id. */
  id: number;
  /** Owning tenant. */
  tenant_id: number;
  /** The domain it was taken of (null: imported from a file). */
  source_domain_id: number | null;
  /** The source domain's name. */
  name: string;
  /** Engine of its heap (a restore uses it). */
  engine: string;
  /** vCPUs of its heap. */
  vcpus: number;
  /** The source's page quota. */
  max_pages: number;
  /** Frames of the source's machine. */
  machine_frames: number;
  /** 2: the heap's state; 1: its history (a file imported from heapvisor before 2). */
  version: number;
  /** Bytes of its state (engine and pool pages), or of its history (version 1). */
  state_bytes: number;
  /** Pages its heap holds. */
  pages_held: number;
  /** Pages reserved for the guest's own heap. */
  reserved_pages: number;
  /** Live blocks. */
  live_blocks: number;
  /** Bytes asked for by the live blocks. */
  requested_bytes: number;
}

/** The outcome of one memory operation. */
export interface OpResult {
  /** Whether it was served. */
  ok: boolean;
  /** The block (0 if not served). */
  address: number;
  /** Bytes usable at the address. */
  reserved_bytes: number;
  /** Why it was not served. */
  cause: AllocFailureCause | null;
  /** The engine's steps. */
  steps: number;
  /** Modelled cycles of the work. */
  cycles: number;
  /** Cycles waited for locks (with at_cycles). */
  lock_wait_cycles: number;
}

/** A reservation request or a release: how many pages. */
export interface ReservationRequest {
  /** Order-0 pages, 1..2^31. */
  pages: number;
  /** The caller's virtual time in cycles (with it, heap-lock wait is modelled). */
  at_cycles?: number | undefined;
}

/** The outcome of a reservation request (200 granted, 507 refused). */
export interface ReservationResult {
  /** Whether every page asked for was granted. */
  ok: boolean;
  /** Pages this request added (0: refused). */
  granted: number;
  /** Pages reserved now. */
  reserved_pages: number;
  /** Why it was refused. */
  cause: ReservationFailureCause | null;
  /** Modelled cycles of the work. */
  cycles: number;
  /** Cycles waited for the heap lock (with at_cycles). */
  lock_wait_cycles: number;
}

/** The outcome of a release. */
export interface ReleaseResult {
  /** Pages given back. */
  released: number;
  /** Pages reserved now. */
  reserved_pages: number;
  /** Modelled cycles of the work. */
  cycles: number;
  /** Cycles waited for the heap lock (with at_cycles). */
  lock_wait_cycles: number;
}

/** One operation of a batch; free and realloc name their block by address or by ref. */
export type BatchOp =
  | {
    op: "alloc";
    size: number;
    align?: number | undefined;
    vcpu?: number | undefined;
    at_cycles?: number | undefined;
  }
  | {
    op: "free";
    address?: number | undefined;
    ref?: number | undefined;
    vcpu?: number | undefined;
    at_cycles?: number | undefined;
  }
  | {
    op: "realloc";
    address?: number | undefined;
    ref?: number | undefined;
    size: number;
    align?: number | undefined;
    vcpu?: number | undefined;
    at_cycles?: number | undefined;
  };

/** Per-operation results of a batch, column by column (index i is op i). */
export interface BatchResult {
  /** Operations. */
  count: number;
  /** Operations that succeeded. */
  served: number;
  /** Block of each op (0: none). */
  addresses: number[];
  /** Why each op was not served (null: served or not an allocation). */
  causes: (AllocFailureCause | null)[];
  /** Steps of each op. */
  steps: number[];
  /** Modelled cycles of each op. */
  cycles: number[];
  /** Cycles each op waited for locks. */
  lock_wait_cycles: number[];
  /** Operations rejected (bad address, double free, bad ref): they changed nothing. */
  errors: { index: number; code: string; message: string }[];
}

/** An engine, as `GET /v1/engines` lists it. */
export interface EngineInfo {
  /** Registry name. */
  name: string;
  /** What real allocator it models. */
  description: string;
  /** Upstream file and functions. */
  modelled_on: string;
  /** Key parameters. */
  parameters: Record<string, number | string>;
}

/** Hypervisor-wide figures (`GET /v1/stats`, admin). */
export interface HypervisorStats {
  /** The machine and its page allocator. */
  machine: {
    frames: number;
    free_frames: number;
    largest_free_order: number;
    page_allocator: {
      alloc_calls: number;
      free_calls: number;
      failed_calls: number;
      failed_contiguity: number;
      failed_exhaustion: number;
    };
  };
  /** Engine of domains that name none. */
  default_engine: string;
  /** Tenants now. */
  tenants: number;
  /** Every domain's figures. */
  domains: DomainInfo[];
}
