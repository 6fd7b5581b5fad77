/**
 * Tenants and domains: who may hold the machine's memory, and how much.
 *
 * A tenant owns domains, within its quotas (how many domains, how many pages their
 * `max_pages` may add up to). A domain is a guest VM: it has vCPUs, a page quota
 * (`max_pages`, Xen's `d->max_pages`), and an xmalloc pool with an engine of its own,
 * whose pages are counted under the domain's id (its `tot_pages`). Every memory
 * operation goes through {@link Domain} and is measured: steps, modelled cycles
 * (`src/cost_model.ts`), failures by cause. Destroying a domain returns every page it
 * held to the page allocator.
 *
 * Ids are small integers given in creation order (domain ids start at 1, as Xen's
 * domid 0 is the control domain's; owner 0 of the page allocator is the hypervisor
 * heap), so the same sequence of calls gives the same ids, addresses and figures.
 *
 * @module
 */

import { IntegerHistogram, roundTo } from "../src/stats.ts";
import { VirtualLock } from "../src/virtual_lock.ts";
import { DIRECTMAP_BASE_ADDRESS, PAGE_SIZE_BYTES } from "../src/units.ts";
import type { BuddyPageAllocator } from "./page_allocator.ts";
import { type AllocFailureCause, PageSource, type XmallocEngine } from "./xmalloc/engine.ts";
import { engineDescriptor } from "./xmalloc/registry.ts";
import { SmpAccounting, type SmpStats } from "./smp.ts";

/** Most vCPUs a domain may have (Xen's default HVM limit is 128; 4096 with x2APIC). */
export const VCPUS_MAX = 4096;
/** vCPU numbers packed beside a block's requested bytes (VCPUS_MAX fits). */
const VCPU_SLOTS = 4096;
/** Longest tenant or domain name. */
export const NAME_MAX_LENGTH = 64;

/** A tenant or domain limit would be exceeded; nothing was created. */
export class QuotaExceededError extends Error {
  /** The error's name. */
  override name = "QuotaExceededError";
}

/** No tenant or domain with that id. */
export class NotFoundError extends Error {
  /** The error's name. */
  override name = "NotFoundError";
}

/** What a tenant may hold. */
export interface TenantQuota {
  /** Most domains at once. */
  maxDomains: number;
  /** Most pages the `max_pages` of its domains may add up to. */
  maxPages: number;
}

/** A tenant. */
export interface Tenant extends TenantQuota {
  /** Id, from 1. */
  readonly id: number;
  /** Name. */
  readonly name: string;
}

/** How to create a domain. */
export interface DomainSpec {
  /** Name. */
  name: string;
  /** vCPUs, 1..4096. */
  vcpus: number;
  /** Page quota. */
  maxPages: number;
  /** Engine of the domain's pool (default: the hypervisor's). */
  engine?: string;
}

/** The outcome of one memory operation. */
export interface MemoryOpResult {
  /** Whether it was served. */
  ok: boolean;
  /** Address of the block (0 when not served, or after a free). */
  address: number;
  /** Bytes usable at the address (0 when not served). */
  reservedBytes: number;
  /** Why it was not served. */
  cause: AllocFailureCause | null;
  /** The engine's steps. */
  steps: number;
  /** Modelled cycles of the work (src/cost_model.ts). */
  cycles: number;
  /** Cycles waited for the pool lock and the heap lock (0 without a virtual start time). */
  lockWaitCycles: number;
}

/** Percentiles of a distribution of integers. */
export interface Percentiles {
  /** Median. */
  p50: number;
  /** 99th percentile. */
  p99: number;
  /** 99.9th percentile. */
  p999: number;
  /** Largest. */
  max: number;
  /** Mean, 3 decimals. */
  mean: number;
}

/** A domain's figures. */
export interface DomainStats {
  /** Domain id. */
  id: number;
  /** Owning tenant. */
  tenant_id: number;
  /** Name. */
  name: string;
  /** Engine of its pool. */
  engine: string;
  /** vCPUs. */
  vcpus: number;
  /** Page quota. */
  max_pages: number;
  /** Pages the domain's pool holds now (pool + whole + meta), Xen's tot_pages. */
  pages_held: number;
  /** Pages carved into blocks. */
  pool_pages: number;
  /** Pages handed out whole. */
  whole_pages: number;
  /** Pages of the pool's control structure. */
  meta_pages: number;
  /** Most pages held at once. */
  peak_pages: number;
  /** Live blocks. */
  live_blocks: number;
  /** Bytes asked for by the live blocks. */
  requested_bytes: number;
  /** Bytes usable at the live blocks (>= requested). */
  reserved_bytes: number;
  /** pages_held * PAGE_SIZE / requested_bytes (0 when nothing is live). */
  overhead_ratio: number;
  /** Operations served (allocs, frees, reallocs) and allocations not served (failed). */
  ops: { allocs: number; frees: number; reallocs: number; failed: number };
  /** Allocations not served, by cause. */
  failures: Record<AllocFailureCause, number>;
  /** Steps per operation. */
  steps: Percentiles;
  /** Modelled cycles per operation, lock wait included (src/cost_model.ts). */
  latency_cycles: Percentiles;
  /** Lock wait, cache-line transfers, false sharing, per-vCPU latency (hypervisor/smp.ts). */
  smp: SmpStats;
}

function percentiles(h: IntegerHistogram): Percentiles {
  return {
    p50: h.percentile(0.5),
    p99: h.percentile(0.99),
    p999: h.percentile(0.999),
    max: h.max,
    mean: roundTo(h.mean, 3),
  };
}

/**
 * Check a name.
 *
 * @throws {RangeError} unless 1..64 characters of letters, digits, `.`, `_`, `-`
 */
export function assertName(name: string, what: string): void {
  if (typeof name !== "string" || !/^[A-Za-z0-9._-]{1,64}$/.test(name)) {
    throw new RangeError(
      `Invalid ${what} name ${
        JSON.stringify(name)
      }: expected 1..${NAME_MAX_LENGTH} letters, digits, ".", "_" or "-"`,
    );
  }
}

function assertCount(value: number, what: string, lo: number, hi: number): void {
  if (!Number.isSafeInteger(value) || value < lo || value > hi) {
    throw new RangeError(`Invalid ${what} ${value}: expected an integer in [${lo}, ${hi}]`);
  }
}

/** A guest VM: vCPUs, a page quota and an xmalloc pool of its own. */
export class Domain {
  /** Domain id (also its page owner id). */
  readonly id: number;
  /** Owning tenant. */
  readonly tenantId: number;
  /** Name. */
  readonly name: string;
  /** vCPUs. */
  readonly vcpus: number;
  /** The domain's pool. */
  readonly engine: XmallocEngine;
  /** Where the pool's pages come from (owner = the domain id, quota = max_pages). */
  readonly pageSource: PageSource;

  readonly #pages: BuddyPageAllocator;
  // Bytes asked for by each live block, keyed by its offset in the direct map
  // (address - DIRECTMAP_BASE_ADDRESS) rather than its address: on a machine up to
  // 1 GiB every offset is below 2^30, a small integer to V8, which a Map hashes and
  // stores at about half the cost of an address (a heap number).
  readonly #requested = new Map<number, number>();
  #requestedBytes = 0;
  #reservedBytes = 0;
  #peakPages = 0;
  #allocs = 0;
  #frees = 0;
  #reallocs = 0;
  #failed = 0;
  readonly #failures: Record<AllocFailureCause, number> = {
    exhaustion: 0,
    contiguity: 0,
    quota: 0,
    unservable: 0,
  };
  readonly #steps = new IntegerHistogram();
  readonly #cycles = new IntegerHistogram();
  readonly #smp: SmpAccounting;
  #destroyed = false;

  /** Use {@link Tenancy.createDomain}. */
  constructor(
    id: number,
    tenantId: number,
    spec: Required<DomainSpec>,
    pages: BuddyPageAllocator,
    heapLock: VirtualLock,
  ) {
    this.id = id;
    this.tenantId = tenantId;
    this.name = spec.name;
    this.vcpus = spec.vcpus;
    this.#pages = pages;
    this.#smp = new SmpAccounting(spec.vcpus, heapLock);
    this.pageSource = new PageSource(pages, id, spec.maxPages);
    this.engine = engineDescriptor(spec.engine).create({
      pageSource: this.pageSource,
      cpuCount: spec.vcpus,
    });
  }

  /** Page quota. */
  get maxPages(): number {
    return this.pageSource.maxPages;
  }

  /**
   * Allocate `sizeBytes` on `vcpu`. Failure (quota, exhaustion, contiguity,
   * unservable) is an outcome, not an exception.
   *
   * @param atCycles the vCPU's virtual time when it calls (lock wait is modelled only
   *   with it; calls must then come in the order of their times)
   * @throws {RangeError} on a bad size, alignment or vCPU
   */
  allocate(sizeBytes: number, alignBytes: number, vcpu: number, atCycles?: number): MemoryOpResult {
    this.#assertLive();
    const calls = this.#pages.callCount;
    const address = this.engine.allocate(sizeBytes, alignBytes, vcpu);
    if (address !== 0) this.#allocs++;
    return this.#outcome(address, sizeBytes, vcpu, atCycles, calls);
  }

  /**
   * Free the block at `address` on `vcpu`.
   *
   * @throws {InvalidFreeError} if it is not a live block of this domain (nothing changes)
   * @throws {RangeError} on a bad vCPU
   */
  free(address: number, vcpu: number, atCycles?: number): MemoryOpResult {
    this.#assertLive();
    const reserved = this.engine.usableSize(address); // throws for a bad address
    const calls = this.#pages.callCount;
    this.engine.free(address, vcpu);
    this.#frees++;
    this.#untrack(address, reserved);
    const { steps, cycles, lockWaitCycles } = this.#cost(vcpu, atCycles, calls);
    return { ok: true, address, reservedBytes: 0, cause: null, steps, cycles, lockWaitCycles };
  }

  /**
   * Resize the block at `address` (in place if it fits, else move).
   *
   * @returns the outcome; when not served the old block stays
   * @throws {InvalidFreeError} if it is not a live block of this domain
   */
  reallocate(
    address: number,
    sizeBytes: number,
    alignBytes: number,
    vcpu: number,
    atCycles?: number,
  ): MemoryOpResult {
    this.#assertLive();
    const oldReserved = this.engine.usableSize(address);
    const calls = this.#pages.callCount;
    const moved = this.engine.reallocate(address, sizeBytes, alignBytes, vcpu);
    if (moved !== 0) {
      this.#reallocs++;
      this.#untrack(address, oldReserved);
    }
    return this.#outcome(moved, sizeBytes, vcpu, atCycles, calls);
  }

  /** Figures now. */
  stats(): DomainStats {
    const held = this.engine.pagesHeld();
    const pagesHeld = this.pageSource.heldPages;
    return {
      id: this.id,
      tenant_id: this.tenantId,
      name: this.name,
      engine: this.engine.name,
      vcpus: this.vcpus,
      max_pages: this.maxPages,
      pages_held: pagesHeld,
      pool_pages: held.poolPages,
      whole_pages: held.wholePages,
      meta_pages: held.metaPages,
      peak_pages: this.#peakPages,
      live_blocks: this.#requested.size,
      requested_bytes: this.#requestedBytes,
      reserved_bytes: this.#reservedBytes,
      overhead_ratio: this.#requestedBytes === 0
        ? 0
        : roundTo((pagesHeld * PAGE_SIZE_BYTES) / this.#requestedBytes, 6),
      ops: {
        allocs: this.#allocs,
        frees: this.#frees,
        reallocs: this.#reallocs,
        failed: this.#failed,
      },
      failures: { ...this.#failures },
      steps: percentiles(this.#steps),
      latency_cycles: percentiles(this.#cycles),
      smp: this.#smp.stats(),
    };
  }

  /** Requested bytes of the live block at `address` (undefined if none). */
  requestedBytesAt(address: number): number | undefined {
    const packed = this.#requested.get(address - DIRECTMAP_BASE_ADDRESS);
    return packed === undefined ? undefined : Math.floor(packed / VCPU_SLOTS);
  }

  /** Whether the domain was destroyed. */
  get destroyed(): boolean {
    return this.#destroyed;
  }

  /** Give every page back; the domain is unusable afterwards. */
  destroy(): void {
    this.engine.destroy();
    this.#destroyed = true;
    this.#requested.clear();
    const left = this.pageSource.heldPages;
    if (left !== 0) {
      throw new Error(`Domain ${this.id} still holds ${left} pages after destroy (a bug)`);
    }
  }

  /** Steps, modelled cycles and lock wait of the call that began at `callsBefore`; recorded. */
  #cost(vcpu: number, atCycles: number | undefined, callsBefore: number) {
    const steps = this.engine.lastSteps;
    const pageCalls = this.#pages.callCount - callsBefore;
    const { cycles, lockWaitCycles } = this.#smp.account(
      vcpu,
      atCycles,
      steps,
      pageCalls,
      this.engine.lastSharedAccess,
    );
    this.#steps.add(steps);
    this.#cycles.add(cycles + lockWaitCycles);
    const held = this.pageSource.heldPages;
    if (held > this.#peakPages) this.#peakPages = held;
    return { steps, cycles, lockWaitCycles };
  }

  /** The result of an allocation (address 0: not served), tracked and counted. */
  #outcome(
    address: number,
    sizeBytes: number,
    vcpu: number,
    atCycles: number | undefined,
    callsBefore: number,
  ): MemoryOpResult {
    const { steps, cycles, lockWaitCycles } = this.#cost(vcpu, atCycles, callsBefore);
    if (address === 0) {
      const cause = this.engine.lastFailureCause ?? "unservable";
      this.#failed++;
      this.#failures[cause]++;
      return { ok: false, address: 0, reservedBytes: 0, cause, steps, cycles, lockWaitCycles };
    }
    const reservedBytes = this.engine.usableSize(address);
    this.#track(address, sizeBytes, reservedBytes, vcpu);
    return { ok: true, address, reservedBytes, cause: null, steps, cycles, lockWaitCycles };
  }

  // Live blocks: key the direct-map offset, value requested bytes * VCPU_SLOTS + the
  // allocating vCPU (exact: requests are below 2^40 and vCPUs below 2^12).
  #track(address: number, requested: number, reserved: number, vcpu: number): void {
    this.#requested.set(address - DIRECTMAP_BASE_ADDRESS, requested * VCPU_SLOTS + vcpu);
    this.#requestedBytes += requested;
    this.#reservedBytes += reserved;
    this.#smp.blockLive(address, reserved, vcpu);
  }

  #untrack(address: number, reserved: number): void {
    const key = address - DIRECTMAP_BASE_ADDRESS;
    const packed = this.#requested.get(key) ?? 0;
    this.#requestedBytes -= Math.floor(packed / VCPU_SLOTS);
    this.#reservedBytes -= reserved;
    this.#requested.delete(key);
    this.#smp.blockFreed(address, reserved, packed % VCPU_SLOTS);
  }

  #assertLive(): void {
    if (this.#destroyed) throw new NotFoundError(`Domain ${this.id} was destroyed`);
  }
}

/** Tenants and their domains on one machine. */
export class Tenancy {
  /** The machine's heap lock (Xen's `heap_lock`): every page-allocator call holds it. */
  readonly heapLock: VirtualLock = new VirtualLock();
  readonly #pages: BuddyPageAllocator;
  readonly #defaultEngine: string;
  readonly #tenants = new Map<number, Tenant>();
  readonly #domains = new Map<number, Domain>();
  #nextTenantId = 1;
  #nextDomainId = 1;

  /**
   * No tenants yet, on the machine `pages`.
   *
   * @param pages the machine
   * @param defaultEngine engine of domains that name none
   */
  constructor(pages: BuddyPageAllocator, defaultEngine: string) {
    engineDescriptor(defaultEngine);
    this.#pages = pages;
    this.#defaultEngine = defaultEngine;
  }

  /** The default engine of new domains. */
  get defaultEngine(): string {
    return this.#defaultEngine;
  }

  /**
   * Create a tenant.
   *
   * @throws {RangeError} on a bad name or quota
   */
  createTenant(name: string, quota: TenantQuota): Tenant {
    assertName(name, "tenant");
    assertCount(quota.maxDomains, "max_domains", 1, 1_000_000);
    assertCount(quota.maxPages, "max_pages", 1, 2 ** 31);
    const tenant: Tenant = { id: this.#nextTenantId++, name, ...quota };
    this.#tenants.set(tenant.id, tenant);
    return tenant;
  }

  /** Every tenant, by id. */
  tenants(): Tenant[] {
    return [...this.#tenants.values()];
  }

  /**
   * The tenant with `id`.
   *
   * @throws {NotFoundError} if there is none
   */
  tenant(id: number): Tenant {
    const t = this.#tenants.get(id);
    if (!t) throw new NotFoundError(`No tenant ${id}`);
    return t;
  }

  /**
   * Delete a tenant and destroy its domains (every page returns).
   *
   * @throws {NotFoundError} if there is none
   */
  deleteTenant(id: number): void {
    this.tenant(id);
    for (const d of this.domains(id)) this.destroyDomain(d.id);
    this.#tenants.delete(id);
  }

  /**
   * Create a domain for tenant `tenantId`.
   *
   * @throws {NotFoundError} if there is no such tenant
   * @throws {RangeError} on a bad name, vCPU count, page quota or engine
   * @throws {QuotaExceededError} if the tenant's limits would be exceeded
   */
  createDomain(tenantId: number, spec: DomainSpec): Domain {
    const tenant = this.tenant(tenantId);
    assertName(spec.name, "domain");
    assertCount(spec.vcpus, "vcpus", 1, VCPUS_MAX);
    assertCount(spec.maxPages, "max_pages", 1, 2 ** 31);
    const engine = spec.engine ?? this.#defaultEngine;
    engineDescriptor(engine);
    const mine = this.domains(tenantId);
    if (mine.length + 1 > tenant.maxDomains) {
      throw new QuotaExceededError(
        `Cannot create domain: tenant ${tenantId} already has ${mine.length} of its ${tenant.maxDomains} domains`,
      );
    }
    const reserved = mine.reduce((sum, d) => sum + d.maxPages, 0);
    if (reserved + spec.maxPages > tenant.maxPages) {
      throw new QuotaExceededError(
        `Cannot create domain with max_pages ${spec.maxPages}: tenant ${tenantId} has ${
          tenant.maxPages - reserved
        } of its ${tenant.maxPages} pages left`,
      );
    }
    const domain = new Domain(
      this.#nextDomainId++,
      tenantId,
      { ...spec, engine },
      this.#pages,
      this.heapLock,
    );
    this.#domains.set(domain.id, domain);
    return domain;
  }

  /** Domains, all or a tenant's, by id. */
  domains(tenantId?: number): Domain[] {
    const all = [...this.#domains.values()];
    return tenantId === undefined ? all : all.filter((d) => d.tenantId === tenantId);
  }

  /**
   * The domain with `id`.
   *
   * @throws {NotFoundError} if there is none
   */
  domain(id: number): Domain {
    const d = this.#domains.get(id);
    if (!d) throw new NotFoundError(`No domain ${id}`);
    return d;
  }

  /**
   * Destroy a domain: every page it held returns to the page allocator.
   *
   * @throws {NotFoundError} if there is none
   */
  destroyDomain(id: number): void {
    this.domain(id).destroy();
    this.#domains.delete(id);
  }

  /** Pages a tenant's domains hold now. */
  pagesHeldBy(tenantId: number): number {
    return this.domains(tenantId).reduce((sum, d) => sum + d.pageSource.heldPages, 0);
  }
}
