/**
 * A discrete-event scheduler of vCPUs on virtual time.
 *
 * Every vCPU has a clock in modelled cycles. The scheduler always runs the vCPU whose
 * clock is earliest (ties: the lowest index, so the order never depends on the host),
 * and the operation it runs advances that clock by what the operation cost, waits
 * included. Nothing here reads the wall clock or depends on async ordering, so one
 * seed gives one interleaving.
 *
 * @module
 */

/** A binary min-heap of vCPUs keyed by (clock, index). */
export class VcpuScheduler {
  readonly #clock: Float64Array;
  readonly #heap: Int32Array; // vCPU indices
  readonly #position: Int32Array; // index -> position in #heap, -1 when parked
  #size = 0;

  /**
   * All `vcpuCount` vCPUs runnable at cycle 0.
   *
   * @throws {RangeError} unless 1..65536 vCPUs
   */
  constructor(vcpuCount: number) {
    if (!Number.isInteger(vcpuCount) || vcpuCount < 1 || vcpuCount > 65536) {
      throw new RangeError(`Invalid vCPU count ${vcpuCount}: expected an integer in [1, 65536]`);
    }
    this.#clock = new Float64Array(vcpuCount);
    this.#heap = new Int32Array(vcpuCount);
    this.#position = new Int32Array(vcpuCount).fill(-1);
    for (let v = 0; v < vcpuCount; v++) this.#push(v);
  }

  /** vCPUs scheduled (runnable or parked). */
  get vcpuCount(): number {
    return this.#clock.length;
  }

  /** vCPUs still runnable. */
  get runnable(): number {
    return this.#size;
  }

  /** The clock of `vcpu` in cycles. */
  clock(vcpu: number): number {
    return this.#clock[vcpu]!;
  }

  /** The latest clock of all vCPUs: when the last one finished. */
  makespan(): number {
    let max = 0;
    for (const c of this.#clock) if (c > max) max = c;
    return max;
  }

  /** The runnable vCPU with the earliest clock (lowest index on ties), or -1 if none. */
  peek(): number {
    return this.#size === 0 ? -1 : this.#heap[0]!;
  }

  /**
   * Advance `vcpu`'s clock by `cycles` (>= 0) and reschedule it.
   *
   * @throws {RangeError} on a negative or non-finite cost, or a parked vCPU
   */
  advance(vcpu: number, cycles: number): void {
    if (!(cycles >= 0 && Number.isFinite(cycles))) {
      throw new RangeError(`Invalid cost ${cycles}: expected finite cycles >= 0`);
    }
    const at = this.#position[vcpu];
    if (at === undefined || at < 0) throw new RangeError(`vCPU ${vcpu} is not runnable`);
    this.#clock[vcpu] = this.#clock[vcpu]! + cycles;
    this.#siftDown(at);
  }

  /** Stop scheduling `vcpu` (its workload is done); its clock stays. */
  park(vcpu: number): void {
    const at = this.#position[vcpu];
    if (at === undefined || at < 0) return;
    const last = this.#heap[--this.#size]!;
    this.#position[vcpu] = -1;
    if (last !== vcpu) {
      this.#heap[at] = last;
      this.#position[last] = at;
      this.#siftDown(at);
      this.#siftUp(this.#position[last]!);
    }
  }

  #before(a: number, b: number): boolean {
    const ca = this.#clock[a]!;
    const cb = this.#clock[b]!;
    return ca < cb || (ca === cb && a < b);
  }

  #push(v: number): void {
    this.#heap[this.#size] = v;
    this.#position[v] = this.#size;
    this.#siftUp(this.#size++);
  }

  #swap(i: number, j: number): void {
    const a = this.#heap[i]!;
    const b = this.#heap[j]!;
    this.#heap[i] = b;
    this.#heap[j] = a;
    this.#position[b] = i;
    this.#position[a] = j;
  }

  #siftUp(i: number): void {
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (!this.#before(this.#heap[i]!, this.#heap[parent]!)) return;
      this.#swap(i, parent);
      i = parent;
    }
  }

  #siftDown(i: number): void {
    for (;;) {
      const l = 2 * i + 1;
      const r = l + 1;
      let m = i;
      if (l < this.#size && this.#before(this.#heap[l]!, this.#heap[m]!)) m = l;
      if (r < this.#size && this.#before(this.#heap[r]!, this.#heap[m]!)) m = r;
      if (m === i) return;
      this.#swap(i, m);
      i = m;
    }
  }
}

export { VirtualLock } from "../src/virtual_lock.ts";
