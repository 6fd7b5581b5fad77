/**
 * The machine: a page allocator over the machine's frames and the hypervisor's own
 * xmalloc heap (Xen's xenheap pool), with the engine chosen by name.
 *
 * Owner ids of the page allocator: {@link XEN_HEAP_OWNER} is the hypervisor's heap;
 * domains get their own ids when they are created.
 *
 * @module
 */

import { MACHINE_BYTES_MAX, MiB, PAGE_SIZE_BYTES } from "../src/units.ts";
import { BuddyPageAllocator } from "./page_allocator.ts";
import { Tenancy } from "./domains.ts";
import { PageSource, type XmallocEngine } from "./xmalloc/engine.ts";
import { engineDescriptor } from "./xmalloc/registry.ts";

/** Owner id of the hypervisor's own heap pages. */
export const XEN_HEAP_OWNER = 0;

/** Default machine size: 1 GiB, as the reference harness. */
export const DEFAULT_MACHINE_BYTES: number = MiB(1024);

/** How to build a hypervisor. */
export interface HypervisorOptions {
  /** Machine memory in bytes, a multiple of 4 KiB (default 1 GiB). */
  machineBytes?: number;
  /** xmalloc engine of the hypervisor heap, by registry name. */
  engine: string;
  /** CPUs that call xmalloc (default 1). */
  cpuCount?: number;
}

/**
 * A model hypervisor: machine frames and the xmalloc heap.
 *
 * @example
 * ```ts
 * import { Hypervisor } from "./hypervisor.ts";
 * import assert from "node:assert/strict";
 * const hv = new Hypervisor({ engine: "tlsf", machineBytes: 64 * 1024 * 1024 });
 * const p = hv.xmalloc.allocate(4095);
 * assert.equal(hv.xmalloc.pagesHeld().wholePages, 1);
 * hv.xmalloc.free(p);
 * ```
 */
export class Hypervisor {
  /** The machine's page allocator. */
  readonly pages: BuddyPageAllocator;
  /** The hypervisor's own heap. */
  readonly xmalloc: XmallocEngine;
  /** Page source of the heap. */
  readonly xenHeapPages: PageSource;
  /** Tenants and their domains (each domain has a pool of its own). */
  readonly tenancy: Tenancy;

  /**
   * Boot a machine of `machineBytes` (all frames free) whose heap uses the named engine.
   *
   * @throws {RangeError} on a machine size that is not a positive multiple of 4 KiB
   *   up to 8 TiB, or an unknown engine
   */
  constructor(options: HypervisorOptions) {
    const machineBytes = options.machineBytes ?? DEFAULT_MACHINE_BYTES;
    assertMachineBytes(machineBytes);
    const descriptor = engineDescriptor(options.engine);
    const cpuCount = options.cpuCount ?? 1;
    if (!Number.isInteger(cpuCount) || cpuCount < 1 || cpuCount > 4096) {
      throw new RangeError(`Invalid CPU count ${cpuCount}: expected an integer in [1, 4096]`);
    }
    this.pages = new BuddyPageAllocator(machineBytes / PAGE_SIZE_BYTES);
    this.xenHeapPages = new PageSource(this.pages, XEN_HEAP_OWNER);
    this.xmalloc = descriptor.create({ pageSource: this.xenHeapPages, cpuCount });
    this.tenancy = new Tenancy(this.pages, descriptor.name);
  }
}

/**
 * Check a machine size.
 *
 * @throws {RangeError} unless a positive multiple of 4 KiB up to 8 TiB
 */
export function assertMachineBytes(machineBytes: number): void {
  if (
    !Number.isSafeInteger(machineBytes) || machineBytes < PAGE_SIZE_BYTES ||
    machineBytes > MACHINE_BYTES_MAX || machineBytes % PAGE_SIZE_BYTES !== 0
  ) {
    throw new RangeError(
      `Invalid machine size ${machineBytes} bytes: expected a multiple of 4 KiB in [4 KiB, 8 TiB]`,
    );
  }
}
