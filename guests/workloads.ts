/**
 * Built-in seeded workloads: generators of traces, so every workload can be replayed,
 * saved in the trace format and compared engine against engine. The same seed and
 * scale give the same trace.
 *
 * Where each size distribution comes from is said in its description; the first
 * four follow the generators behind the reference traces (tests/fixtures/traces,
 * whose headers describe them).
 *
 * @module
 */

import type { Prng } from "../src/prng.ts";
import { OP_ALLOC, OP_FREE, type Trace } from "../src/trace.ts";
import { KiB } from "../src/units.ts";
import { grown } from "../src/typed_array.ts";

/** A named, seeded generator of a trace. */
export interface WorkloadDescriptor {
  /** Registry name. */
  name: string;
  /** What it models and where its sizes come from. */
  description: string;
  /**
   * Generate the trace.
   *
   * @param prng the run's random source
   * @param scale multiplies the op count (1 = the default size)
   */
  generate(prng: Prng, scale: number): Trace;
}

/** Collects ops into growable typed arrays and keeps the live set for random frees. */
class TraceBuilder {
  #kinds = new Uint8Array(1024);
  #ids = new Int32Array(1024);
  #sizes = new Float64Array(1024);
  #n = 0;
  #nextId = 0;
  /** Ids live now, in no particular order. */
  readonly live: number[] = [];

  alloc(size: number): void {
    const id = this.#nextId++;
    this.#push(OP_ALLOC, id, size);
    this.live.push(id);
  }

  /** Free the live id at `index` of {@link live} (swap-remove). */
  freeAt(index: number): void {
    const id = this.live[index]!;
    this.live[index] = this.live[this.live.length - 1]!;
    this.live.pop();
    this.#push(OP_FREE, id, 0);
  }

  /** Free every live id in a random order. */
  freeAll(prng: Prng): void {
    while (this.live.length > 0) this.freeAt(prng.index(this.live.length));
  }

  #push(kind: number, id: number, size: number): void {
    if (this.#n === this.#kinds.length) {
      this.#kinds = grown(this.#kinds, this.#n * 2);
      this.#ids = grown(this.#ids, this.#n * 2);
      this.#sizes = grown(this.#sizes, this.#n * 2);
    }
    this.#kinds[this.#n] = kind;
    this.#ids[this.#n] = id;
    this.#sizes[this.#n] = size;
    this.#n++;
  }

  build(name: string): Trace {
    return {
      name,
      opCount: this.#n,
      kinds: this.#kinds.subarray(0, this.#n),
      ids: this.#ids.subarray(0, this.#n),
      sizes: this.#sizes.subarray(0, this.#n),
      idCount: this.#nextId,
    };
  }
}

/**
 * Steady state around a live target: allocate up to `liveTarget`, then `steadyOps`
 * ops that allocate or free a random live object with probability 1/2 each, then
 * free everything in a random order (the reference generators' shape).
 */
function steadyState(
  name: string,
  prng: Prng,
  liveTarget: number,
  steadyOps: number,
  size: (prng: Prng) => number,
): Trace {
  const b = new TraceBuilder();
  for (let i = 0; i < liveTarget; i++) b.alloc(size(prng));
  for (let i = 0; i < steadyOps; i++) {
    if (b.live.length === 0 || prng.nextFloat() < 0.5) b.alloc(size(prng));
    else b.freeAt(prng.index(b.live.length));
  }
  b.freeAll(prng);
  return b.build(name);
}

const uniform = (lo: number, hi: number) => (prng: Prng): number => prng.intInclusive(lo, hi);

/** Every built-in workload, in the order comparisons print them. */
export const WORKLOADS: readonly WorkloadDescriptor[] = [
  {
    name: "near-page-uniform",
    description: "sizes uniform in [1, 4096], 2000 live (reference trace near-page-uniform)",
    generate: (prng, scale) =>
      steadyState("near-page-uniform", prng, 2000, Math.round(60_000 * scale), uniform(1, 4096)),
  },
  {
    name: "near-page-tight",
    description:
      "sizes uniform in [3968, 4224], straddling PAGE_SIZE: where headers push a block over a page",
    generate: (prng, scale) =>
      steadyState("near-page-tight", prng, 1000, Math.round(60_000 * scale), uniform(3968, 4224)),
  },
  {
    name: "page-minus-delta",
    description:
      "sizes uniform in [4000, 4095], 1000 live: the xmalloc(PAGE_SIZE - d) pattern of the Xen thread (reference trace)",
    generate: (prng, scale) =>
      steadyState("page-minus-delta", prng, 1000, Math.round(60_000 * scale), uniform(4000, 4095)),
  },
  {
    name: "compcache",
    description:
      "compressed 4 KiB pages: 25% U[100,1000], 50% U[1000,3000], 25% U[3000,4096], 3000 live (compcache's xvmalloc/TLSF study; reference trace)",
    generate: (prng, scale) =>
      steadyState("compcache", prng, 3000, Math.round(60_000 * scale), (p) => {
        const r = p.nextFloat();
        return r < 0.25
          ? p.intInclusive(100, 1000)
          : r < 0.75
          ? p.intInclusive(1000, 3000)
          : p.intInclusive(3000, 4096);
      }),
  },
  {
    name: "small-objects",
    description:
      "kernel-object sizes: 8..512 bytes, log-uniform (most objects small, as in slabinfo of a running hypervisor), 20000 live",
    generate: (prng, scale) =>
      steadyState("small-objects", prng, 20_000, Math.round(60_000 * scale), (p) => {
        return Math.max(8, Math.round(2 ** (3 + p.nextFloat() * 6)));
      }),
  },
  {
    name: "mixed-large",
    description:
      "70% small U[16,512], 20% U[4 KiB,16 KiB], 10% U[16 KiB,64 KiB] (grant tables, p2m pieces, domain structs), 500 live",
    generate: (prng, scale) =>
      steadyState("mixed-large", prng, 500, Math.round(40_000 * scale), (p) => {
        const r = p.nextFloat();
        return r < 0.7
          ? p.intInclusive(16, 512)
          : r < 0.9
          ? p.intInclusive(KiB(4), KiB(16))
          : p.intInclusive(KiB(16), KiB(64));
      }),
  },
  {
    name: "frag-ramp",
    description:
      "30000 small U[16,256], free a random 90%, then 3000 near-page U[3000,4096] kept, then free all: holes small objects leave (reference trace frag-ramp)",
    generate: (prng, scale) => {
      const b = new TraceBuilder();
      const small = Math.round(30_000 * scale);
      for (let i = 0; i < small; i++) b.alloc(prng.intInclusive(16, 256));
      const toFree = Math.round(small * 0.9);
      for (let i = 0; i < toFree; i++) b.freeAt(prng.index(b.live.length));
      for (let i = 0; i < Math.round(3000 * scale); i++) b.alloc(prng.intInclusive(3000, 4096));
      b.freeAll(prng);
      return b.build("frag-ramp");
    },
  },
];

/** Names of every built-in workload. */
export const WORKLOAD_NAMES: readonly string[] = WORKLOADS.map((w) => w.name);

/**
 * The workload called `name`.
 *
 * @throws {RangeError} naming the known workloads if there is none
 */
export function workloadDescriptor(name: string): WorkloadDescriptor {
  const found = WORKLOADS.find((w) => w.name === name);
  if (!found) {
    throw new RangeError(
      `Unknown workload "${name}": expected one of ${WORKLOAD_NAMES.join(", ")}`,
    );
  }
  return found;
}
