/**
 * The books of one heap: its live blocks (requested bytes and the vCPU that made
 * each), what they add up to, the count and outcome of its calls, and their steps and
 * latency. Shared by a domain's pool in the hypervisor (`domains.ts`) and a guest's
 * own heap (`guests/own_heap.ts`), so both report the same figures the same way.
 *
 * @module
 */

import { IntegerHistogram, type Percentiles, roundTo } from "../src/stats.ts";
import { DIRECTMAP_BASE_ADDRESS, PAGE_SIZE_BYTES } from "../src/units.ts";
import type { VirtualLock } from "../src/virtual_lock.ts";
import type { AllocFailureCause } from "./xmalloc/engine.ts";
import { SmpAccounting, type SmpStats } from "./smp.ts";
import type { StateReader, StateWriter } from "../src/state_codec.ts";

/** vCPU numbers packed beside a block's requested bytes (4096 vCPUs fit). */
const VCPU_SLOTS = 4096;

/** The figures every heap reports, named as in the API. */
export interface HeapFigures {
  /** Live blocks. */
  live_blocks: number;
  /** Bytes asked for by the live blocks. */
  requested_bytes: number;
  /** Bytes usable at the live blocks (>= requested). */
  reserved_bytes: number;
  /** pages * PAGE_SIZE / requested_bytes (0 when nothing is live). */
  overhead_ratio: number;
  /** Operations served (allocs, frees, reallocs) and allocations not served (failed). */
  ops: { allocs: number; frees: number; reallocs: number; failed: number };
  /** Allocations not served, by cause. */
  failures: Record<AllocFailureCause, number>;
  /** Steps per operation. */
  steps: Percentiles;
  /** Modelled cycles per operation, lock wait included (src/cost_model.ts). */
  latency_cycles: Percentiles;
  /** Lock wait, cache-line transfers, false sharing, per-vCPU latency (smp.ts). */
  smp: SmpStats;
}

/** The books of one heap. */
export class HeapLedger {
  /** The heap's SMP accounting (its lock, line transfers, false sharing). */
  readonly smp: SmpAccounting;
  // Keyed by the direct-map offset (a small integer to V8 on machines up to 1 GiB);
  // the value packs requested bytes * VCPU_SLOTS + the allocating vCPU (exact: requests
  // are below 2^40).
  readonly #live = new Map<number, number>();
  #requestedBytes = 0;
  #reservedBytes = 0;
  #peakPages = 0;
  /** Served allocations. */
  allocs = 0;
  /** Frees. */
  frees = 0;
  /** Served reallocations. */
  reallocs = 0;
  readonly #failures: Record<AllocFailureCause, number> = {
    exhaustion: 0,
    contiguity: 0,
    quota: 0,
    unservable: 0,
  };
  #failed = 0;
  readonly #steps = new IntegerHistogram();
  readonly #latency = new IntegerHistogram();

  /**
   * Empty books for a heap of `vcpus`.
   *
   * @param vcpus vCPUs that call the heap
   * @param heapLock the machine's heap lock (null: not modelled)
   */
  constructor(vcpus: number, heapLock: VirtualLock | null) {
    this.smp = new SmpAccounting(vcpus, heapLock);
  }

  /** Write the books (checkpoints): live blocks, bytes, counts, histograms, SMP. */
  saveState(w: StateWriter): void {
    w.numbers([...this.#live].flat());
    w.num(this.#requestedBytes);
    w.num(this.#reservedBytes);
    w.num(this.#peakPages);
    w.num(this.allocs);
    w.num(this.frees);
    w.num(this.reallocs);
    w.numbers(Object.values(this.#failures));
    w.num(this.#failed);
    this.#steps.saveState(w);
    this.#latency.saveState(w);
    this.smp.saveState(w);
  }

  /** Become the books `r` holds (from {@link saveState}, for as many vCPUs). */
  loadState(r: StateReader): void {
    const live = r.numbers();
    this.#live.clear();
    for (let i = 0; i < live.length; i += 2) this.#live.set(live[i]!, live[i + 1]!);
    this.#requestedBytes = r.num();
    this.#reservedBytes = r.num();
    this.#peakPages = r.num();
    this.allocs = r.num();
    this.frees = r.num();
    this.reallocs = r.num();
    const failures = r.numbers();
    (Object.keys(this.#failures) as AllocFailureCause[]).forEach((cause, i) => {
      this.#failures[cause] = failures[i]!;
    });
    this.#failed = r.num();
    this.#steps.loadState(r);
    this.#latency.loadState(r);
    this.smp.loadState(r);
  }

  /** A block of `requested` bytes (`reserved` usable) at `address` is live for `vcpu`. */
  track(address: number, requested: number, reserved: number, vcpu: number): void {
    this.#live.set(address - DIRECTMAP_BASE_ADDRESS, requested * VCPU_SLOTS + vcpu);
    this.#requestedBytes += requested;
    this.#reservedBytes += reserved;
    this.smp.blockLive(address, reserved, vcpu);
  }

  /** The block at `address` (`reserved` usable bytes) is gone. */
  untrack(address: number, reserved: number): void {
    const key = address - DIRECTMAP_BASE_ADDRESS;
    const packed = this.#live.get(key) ?? 0;
    this.#requestedBytes -= Math.floor(packed / VCPU_SLOTS);
    this.#reservedBytes -= reserved;
    this.#live.delete(key);
    this.smp.blockFreed(address, reserved, packed % VCPU_SLOTS);
  }

  /** Requested bytes of the live block at `address` (undefined if none). */
  requestedBytesAt(address: number): number | undefined {
    const packed = this.#live.get(address - DIRECTMAP_BASE_ADDRESS);
    return packed === undefined ? undefined : Math.floor(packed / VCPU_SLOTS);
  }

  /** Every live block: [address, the vCPU that made it]. */
  liveBlocks(): [number, number][] {
    return [...this.#live].map((
      [key, packed],
    ) => [key + DIRECTMAP_BASE_ADDRESS, packed % VCPU_SLOTS]);
  }

  /** Forget every live block (the heap was torn down). */
  clear(): void {
    this.#live.clear();
    this.#requestedBytes = 0;
    this.#reservedBytes = 0;
  }

  /** Bytes asked for by the live blocks. */
  get requestedBytes(): number {
    return this.#requestedBytes;
  }

  /** Most pages held after any call. */
  get peakPages(): number {
    return this.#peakPages;
  }

  /** `pagesHeld` pages are held now (raises the peak without recording a call). */
  notePages(pagesHeld: number): void {
    if (pagesHeld > this.#peakPages) this.#peakPages = pagesHeld;
  }

  /** Record one call: its steps, its latency (cycles + lock wait), the pages held after. */
  record(steps: number, latencyCycles: number, pagesHeld: number): void {
    this.#steps.add(steps);
    this.#latency.add(latencyCycles);
    if (pagesHeld > this.#peakPages) this.#peakPages = pagesHeld;
  }

  /** An allocation was not served, for `cause`. */
  fail(cause: AllocFailureCause): void {
    this.#failed++;
    this.#failures[cause]++;
  }

  /** pages * PAGE_SIZE / requested bytes (0 when nothing is live), 6 decimals. */
  overheadRatio(pages: number): number {
    return this.#requestedBytes === 0
      ? 0
      : roundTo((pages * PAGE_SIZE_BYTES) / this.#requestedBytes, 6);
  }

  /** The figures now; `pagesHeld` for the overhead ratio. */
  figures(pagesHeld: number): HeapFigures {
    return {
      live_blocks: this.#live.size,
      requested_bytes: this.#requestedBytes,
      reserved_bytes: this.#reservedBytes,
      overhead_ratio: this.overheadRatio(pagesHeld),
      ops: {
        allocs: this.allocs,
        frees: this.frees,
        reallocs: this.reallocs,
        failed: this.#failed,
      },
      failures: { ...this.#failures },
      steps: this.#steps.summary(),
      latency_cycles: this.#latency.summary(),
      smp: this.smp.stats(),
    };
  }
}
