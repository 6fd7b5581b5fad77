/**
 * What several vCPUs cost a pool: lock wait on virtual time, cache-line transfers, and
 * false sharing. One {@link SmpAccounting} per domain pool; the machine's page
 * allocator has one heap lock for every domain (Xen's `heap_lock`).
 *
 * - **Pool lock**: a call that touches the pool's shared state
 *   (`XmallocEngine.lastSharedAccess`) holds the pool's lock for its whole modelled
 *   cost; a vCPU that comes while another holds it waits (lock wait). Per-CPU fast
 *   paths (SLUB's) take no lock and never wait.
 * - **Heap lock**: page-allocator calls hold the machine-wide heap lock for their cost.
 * - **Cache-line transfer**: a call that touches the pool's shared state after another
 *   vCPU did pulls the lock's and list heads' lines from that vCPU's cache.
 * - **False sharing**: a 64-byte line holding live objects of two or more vCPUs (what
 *   Hoard's cache-thrash and cache-scratch expose). Only the first and the last line
 *   of a block can hold another object, so those are the lines tracked.
 *
 * Lock wait needs the vCPU's virtual time (`atCycles`); without it calls are costed but
 * never wait. Calls must come in the order of their virtual start times.
 *
 * @module
 */

import {
  CACHE_LINE_TRANSFER_CYCLES,
  modelledCycles,
  PAGE_ALLOCATOR_CALL_CYCLES,
} from "../src/cost_model.ts";
import { IntegerHistogram, type Percentiles } from "../src/stats.ts";
import { CACHE_LINE_BYTES } from "../src/units.ts";
import { VirtualLock } from "../src/virtual_lock.ts";
import type { StateReader, StateWriter } from "../src/state_codec.ts";

if (CACHE_LINE_TRANSFER_CYCLES <= 0) throw new Error("SMP: a line transfer must cost something");

/** Cost and wait of one call. */
export interface SmpCost {
  /** Modelled cycles of the work (steps, page calls, line transfers). */
  cycles: number;
  /** Cycles spent waiting for the pool lock and the heap lock. */
  lockWaitCycles: number;
}

/** Percentiles of a distribution of integers (src/stats.ts). */
export type SmpPercentiles = Percentiles;

/** SMP figures of one pool. */
export interface SmpStats {
  /** The pool lock: acquisitions, how many waited, cycles waited in all. */
  pool_lock: { acquisitions: number; contended: number; wait_cycles: number };
  /** Cache lines pulled from another vCPU's cache. */
  cache_line_transfers: number;
  /** Lines holding live objects of two or more vCPUs: now, at most, and allocations that made one. */
  false_sharing: { shared_lines: number; peak_shared_lines: number; events: number };
  /** Per vCPU: calls, cycles waited for locks, latency (work + wait) percentiles. */
  per_vcpu: {
    vcpu: number;
    ops: number;
    lock_wait_cycles: number;
    latency_cycles: SmpPercentiles;
  }[];
}

/** Lines holding live objects of several vCPUs. */
class FalseSharing {
  // line -> [vcpu, count, vcpu, count, ...] of the live objects touching it
  readonly #lines = new Map<number, number[]>();
  sharedLines = 0;
  peakSharedLines = 0;
  events = 0;

  saveState(w: StateWriter): void {
    const flat: number[] = [];
    for (const [line, owners] of this.#lines) flat.push(line, owners.length, ...owners);
    w.numbers(flat);
    w.num(this.sharedLines);
    w.num(this.peakSharedLines);
    w.num(this.events);
  }

  loadState(r: StateReader): void {
    const flat = r.numbers();
    this.#lines.clear();
    for (let i = 0; i < flat.length;) {
      const line = flat[i++]!;
      const n = flat[i++]!;
      this.#lines.set(line, flat.slice(i, i + n));
      i += n;
    }
    this.sharedLines = r.num();
    this.peakSharedLines = r.num();
    this.events = r.num();
  }

  add(address: number, bytes: number, vcpu: number): void {
    const first = Math.floor(address / CACHE_LINE_BYTES);
    const last = Math.floor((address + Math.max(bytes, 1) - 1) / CACHE_LINE_BYTES);
    if (this.#addLine(first, vcpu) | (last !== first ? this.#addLine(last, vcpu) : 0)) {
      this.events++;
    }
  }

  remove(address: number, bytes: number, vcpu: number): void {
    const first = Math.floor(address / CACHE_LINE_BYTES);
    const last = Math.floor((address + Math.max(bytes, 1) - 1) / CACHE_LINE_BYTES);
    this.#removeLine(first, vcpu);
    if (last !== first) this.#removeLine(last, vcpu);
  }

  /** Returns 1 if the line now holds another vCPU's object too. */
  #addLine(line: number, vcpu: number): number {
    const owners = this.#lines.get(line);
    if (owners === undefined) {
      this.#lines.set(line, [vcpu, 1]);
      return 0;
    }
    for (let i = 0; i < owners.length; i += 2) {
      if (owners[i] === vcpu) {
        owners[i + 1]!++;
        return owners.length > 2 ? 1 : 0;
      }
    }
    owners.push(vcpu, 1);
    if (owners.length === 4) {
      this.sharedLines++;
      if (this.sharedLines > this.peakSharedLines) this.peakSharedLines = this.sharedLines;
    }
    return 1;
  }

  #removeLine(line: number, vcpu: number): void {
    const owners = this.#lines.get(line);
    if (owners === undefined) return;
    for (let i = 0; i < owners.length; i += 2) {
      if (owners[i] !== vcpu) continue;
      if (--owners[i + 1]! === 0) {
        owners.splice(i, 2);
        if (owners.length === 2) this.sharedLines--;
        if (owners.length === 0) this.#lines.delete(line);
      }
      return;
    }
  }
}

/** The SMP accounting of one pool. */
export class SmpAccounting {
  readonly #poolLock = new VirtualLock();
  readonly #heapLock: VirtualLock | null;
  readonly #ops: Float64Array;
  readonly #lockWait: Float64Array;
  readonly #latency: IntegerHistogram[];
  readonly #falseSharing = new FalseSharing();
  #lastSharedVcpu = -1;
  #transfers = 0;

  /**
   * No calls yet.
   *
   * @param vcpus vCPUs of the pool
   * @param heapLock the machine's heap lock, shared by every pool (null: not modelled,
   *   when pools run on clocks that are not one timeline)
   */
  constructor(vcpus: number, heapLock: VirtualLock | null) {
    this.#heapLock = heapLock;
    this.#ops = new Float64Array(vcpus);
    this.#lockWait = new Float64Array(vcpus);
    this.#latency = Array.from({ length: vcpus }, () => new IntegerHistogram());
  }

  /**
   * Cost one call of `vcpu` that started at virtual cycle `atCycles` (undefined: no
   * waiting is modelled), did `steps`, made `pageCalls` page-allocator calls, and
   * touched the pool's shared state or not.
   */
  account(
    vcpu: number,
    atCycles: number | undefined,
    steps: number,
    pageCalls: number,
    shared: boolean,
  ): SmpCost {
    let transfers = 0;
    if (shared) {
      if (this.#lastSharedVcpu >= 0 && this.#lastSharedVcpu !== vcpu) transfers = 1;
      this.#lastSharedVcpu = vcpu;
    }
    this.#transfers += transfers;
    const cycles = modelledCycles(steps, pageCalls, transfers);
    let wait = 0;
    if (atCycles !== undefined) {
      if (shared) wait += this.#poolLock.acquire(atCycles, cycles);
      if (pageCalls > 0 && this.#heapLock !== null) {
        wait += this.#heapLock.acquire(atCycles + wait, pageCalls * PAGE_ALLOCATOR_CALL_CYCLES);
      }
    }
    this.#ops[vcpu]!++;
    this.#lockWait[vcpu]! += wait;
    this.#latency[vcpu]!.add(cycles + wait);
    return { cycles, lockWaitCycles: wait };
  }

  /**
   * Write the accounting (checkpoints): pool lock, per-vCPU counts and latency, line
   * owners. The machine's heap lock is shared by every pool: its owner saves it.
   */
  saveState(w: StateWriter): void {
    this.#poolLock.saveState(w);
    w.array(this.#ops);
    w.array(this.#lockWait);
    for (const h of this.#latency) h.saveState(w);
    this.#falseSharing.saveState(w);
    w.num(this.#lastSharedVcpu);
    w.num(this.#transfers);
  }

  /** Become the accounting `r` holds (from {@link saveState}, for as many vCPUs). */
  loadState(r: StateReader): void {
    this.#poolLock.loadState(r);
    this.#ops.set(r.array(Float64Array));
    this.#lockWait.set(r.array(Float64Array));
    for (const h of this.#latency) h.loadState(r);
    this.#falseSharing.loadState(r);
    this.#lastSharedVcpu = r.num();
    this.#transfers = r.num();
  }

  /** A block of `bytes` at `address` became live for `vcpu`. */
  blockLive(address: number, bytes: number, vcpu: number): void {
    this.#falseSharing.add(address, bytes, vcpu);
  }

  /** The block of `bytes` at `address`, live for `vcpu`, was freed. */
  blockFreed(address: number, bytes: number, vcpu: number): void {
    this.#falseSharing.remove(address, bytes, vcpu);
  }

  /** Figures now. */
  stats(): SmpStats {
    const fs = this.#falseSharing;
    return {
      pool_lock: {
        acquisitions: this.#poolLock.acquisitions,
        contended: this.#poolLock.contended,
        wait_cycles: this.#poolLock.waitCycles,
      },
      cache_line_transfers: this.#transfers,
      false_sharing: {
        shared_lines: fs.sharedLines,
        peak_shared_lines: fs.peakSharedLines,
        events: fs.events,
      },
      per_vcpu: this.#latency.map((h, vcpu) => ({
        vcpu,
        ops: this.#ops[vcpu]!,
        lock_wait_cycles: this.#lockWait[vcpu]!,
        latency_cycles: h.summary(),
      })),
    };
  }
}
