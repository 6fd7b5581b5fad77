/**
 * A lock on virtual time: how the model makes CPUs wait for each other without
 * threads. Operations are applied in the order of their virtual start times.
 *
 * @module
 */

import type { StateReader, StateWriter } from "./state_codec.ts";

/**
 * A lock on virtual time (a pool's spinlock): an operation that takes it at cycle
 * `at` and holds it for `holdCycles` starts when the lock is free and leaves it busy
 * until it ends. Operations must be applied in the order of their `at`.
 */
export class VirtualLock {
  #freeAt = 0;
  /** Acquisitions. */
  acquisitions = 0;
  /** Acquisitions that had to wait. */
  contended = 0;
  /** Cycles waited in all. */
  waitCycles = 0;

  /** Write the lock's state (checkpoints). */
  saveState(w: StateWriter): void {
    w.num(this.#freeAt);
    w.num(this.acquisitions);
    w.num(this.contended);
    w.num(this.waitCycles);
  }

  /** Become the lock `r` holds (from {@link saveState}). */
  loadState(r: StateReader): void {
    this.#freeAt = r.num();
    this.acquisitions = r.num();
    this.contended = r.num();
    this.waitCycles = r.num();
  }

  /**
   * Take the lock at `at` for `holdCycles`; returns the cycles waited for it.
   *
   * @example
   * ```ts
   * import { VirtualLock } from "./virtual_lock.ts";
   * import assert from "node:assert/strict";
   * const lock = new VirtualLock();
   * assert.equal(lock.acquire(0, 100), 0);
   * assert.equal(lock.acquire(40, 10), 60); // waits until cycle 100
   * assert.equal(lock.acquire(500, 10), 0);
   * ```
   */
  acquire(at: number, holdCycles: number): number {
    const start = Math.max(at, this.#freeAt);
    const wait = start - at;
    this.#freeAt = start + holdCycles;
    this.acquisitions++;
    if (wait > 0) {
      this.contended++;
      this.waitCycles += wait;
    }
    return wait;
  }
}
