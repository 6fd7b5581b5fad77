/**
 * Seeded workloads for guests with several vCPUs.
 *
 * A workload is a program per vCPU. The guest model asks a run for the next op of the
 * vCPU whose virtual clock is earliest ({@link SmpWorkloadRun.next}), executes it and,
 * right after an allocation, reports whether it was served
 * ({@link SmpWorkloadRun.allocated}). Objects are named by handles unique in the guest,
 * so one vCPU can free what another allocated: the hand-offs of larson, xmalloc-test
 * and cache-scratch live in state the run shares between its vCPUs. A vCPU that must
 * wait for another (a consumer with nothing to consume, a thread not yet started)
 * returns a `compute` op, a back-off that doubles up to {@link WAIT_BACKOFF_MAX_CYCLES}.
 *
 * Rules every run keeps, and checks:
 * - the same seed, vCPU count, scale and driver give the same ops; each vCPU draws
 *   from a random stream of its own, so what one vCPU chooses does not depend on how
 *   the others were interleaved (what it finds in shared state does);
 * - a free names an object that is live; the free of an object whose allocation was
 *   refused is skipped (the program sees a refused allocation as no object, as C
 *   code sees `NULL`);
 * - every loop and every wait is bounded, every vCPU ends, and when the last one ends
 *   nothing is live;
 * - the work between allocator calls is one `compute` op, emitted before the next
 *   call, in modelled cycles of the program's own loop (writing an object, parsing a
 *   request): the figures are orders of magnitude, not measurements.
 *
 * Where each workload's sizes and shape come from is said in its description, with
 * the constant names and default values of the original where there is one. Sizes
 * marked "approx." are our estimates of C struct sizes on x86-64.
 *
 * @module
 */

import { deriveSeed, Prng } from "../src/prng.ts";
import { formatTrace, OP_ALLOC, parseTrace, type Trace, TRACE_VCPU_MAX } from "../src/trace.ts";
import { grown } from "../src/typed_array.ts";
import { KiB, PAGE_SIZE_BYTES } from "../src/units.ts";
import { workloadDescriptor } from "./workloads.ts";

// ---------------------------------------------------------------------------------
// Interface

/** One op of one vCPU. */
export type SmpOp =
  /** Allocate `size` bytes and name the object `handle` (unique in the guest). */
  | { kind: "alloc"; handle: number; size: number }
  /** Free a live object, possibly allocated by another vCPU. */
  | { kind: "free"; handle: number }
  /** Work between allocator calls, or a vCPU's back-off while it waits for another. */
  | { kind: "compute"; cycles: number };

/** One run of a workload on a guest's vCPUs. */
export interface SmpWorkloadRun {
  /** The next op of `vcpu`, or null when that vCPU is done. Ops of one vCPU come in program order. */
  next(vcpu: number): SmpOp | null;
  /** The result of `vcpu`'s last alloc of `handle`: false if it was not served (its object does not exist: never free it). */
  allocated(handle: number, ok: boolean): void;
}

/** A named workload for guests with several vCPUs. */
export interface SmpWorkloadDescriptor {
  /** Registry name. */
  name: string;
  /** What it models and where its sizes and shape come from. */
  description: string;
  /**
   * Build a run for `vcpus` vCPUs; `scale` multiplies its length (1 = default,
   * ~5k..50k ops in total).
   *
   * @throws {RangeError} unless `vcpus` is an integer in [1, {@link SMP_VCPU_MAX}] and
   *   `scale` a number in (0, {@link SMP_SCALE_MAX}]
   */
  create(prng: Prng, vcpus: number, scale: number): SmpWorkloadRun;
}

// ---------------------------------------------------------------------------------
// Constants

/** Most vCPUs a run takes: the trace format's vCPU column names vCPUs 0..4095. */
export const SMP_VCPU_MAX = TRACE_VCPU_MAX + 1;
/** Largest scale a run takes. */
export const SMP_SCALE_MAX = 1000;
/** A waiting vCPU's first back-off (about a futex wake-up). */
export const WAIT_BACKOFF_MIN_CYCLES = 1000;
/** A waiting vCPU's back-off doubles up to this. */
export const WAIT_BACKOFF_MAX_CYCLES = 100_000;
/** Consecutive back-offs after which a wait is a bug (the run cannot progress). */
export const WAIT_ROUNDS_MAX = 1_000_000;

/** What an allocation the allocator refused returns to the program (C's `NULL`). */
const NO_OBJECT = -1;
/** Bytes of a pointer on x86-64. */
const POINTER_BYTES = 8;

// ---------------------------------------------------------------------------------
// Machinery: handles, the per-vCPU program context, the run

const HANDLE_PENDING = 0; // its alloc was returned, the result not reported yet
const HANDLE_LIVE = 1;
const HANDLE_REFUSED = 2;
const HANDLE_FREED = 3;

/** Every handle of a run and where it stands; at most one alloc awaits its result. */
class Handles {
  #state = new Uint8Array(1024);
  #count = 0;
  #live = 0;
  #awaiting = -1;

  constructor(readonly workload: string) {}

  /** Objects live now. */
  get live(): number {
    return this.#live;
  }

  /** A new handle and its alloc op. */
  alloc(size: number): SmpOp & { kind: "alloc" } {
    if (!Number.isInteger(size) || size < 1) {
      throw new RangeError(`${this.workload}: invalid size ${size}: expected an integer >= 1`);
    }
    this.assertSettled();
    const handle = this.#count++;
    if (handle === this.#state.length) this.#state = grown(this.#state, handle * 2);
    this.#state[handle] = HANDLE_PENDING;
    this.#awaiting = handle;
    return { kind: "alloc", handle, size };
  }

  /** Record the result of the alloc that awaits it. */
  settle(handle: number, ok: boolean): void {
    if (handle !== this.#awaiting) {
      throw new Error(
        `${this.workload}: cannot report handle ${handle}: ` +
          (this.#awaiting < 0 ? "no alloc awaits its result" : `handle ${this.#awaiting} does`),
      );
    }
    this.#state[handle] = ok ? HANDLE_LIVE : HANDLE_REFUSED;
    if (ok) this.#live++;
    this.#awaiting = -1;
  }

  /** Whether the alloc of `handle` has been reported (served or refused). */
  settled(handle: number): boolean {
    return handle >= 0 && handle < this.#count && this.#state[handle] !== HANDLE_PENDING;
  }

  /** Whether the alloc of `handle` was refused. */
  refused(handle: number): boolean {
    return handle >= 0 && handle < this.#count && this.#state[handle] === HANDLE_REFUSED;
  }

  /** The free op of a live object. */
  free(handle: number): SmpOp & { kind: "free" } {
    if (!(handle >= 0 && handle < this.#count && this.#state[handle] === HANDLE_LIVE)) {
      throw new Error(`${this.workload}: free of handle ${handle}, which is not live (a bug)`);
    }
    this.#state[handle] = HANDLE_FREED;
    this.#live--;
    return { kind: "free", handle };
  }

  /** Throws unless the last alloc's result was reported. */
  assertSettled(): void {
    if (this.#awaiting >= 0) {
      throw new Error(
        `${this.workload}: the result of the alloc of handle ${this.#awaiting} was not reported: ` +
          "call allocated() right after an alloc",
      );
    }
  }
}

/** A vCPU's program: a generator of its ops. */
type Program = Generator<SmpOp, void, void>;

/** One vCPU's side of a run: its random stream, its pending work, program-order calls. */
class Vcpu {
  #workCycles = 0;

  constructor(
    readonly index: number,
    readonly prng: Prng,
    readonly handles: Handles,
  ) {}

  /** Work to do before the next allocator call, in cycles. */
  work(cycles: number): void {
    this.#workCycles += cycles;
  }

  /** Allocate; returns the handle, or {@link NO_OBJECT} if the allocation was refused. */
  *alloc(size: number): Generator<SmpOp, number, void> {
    yield* this.flush();
    const op = this.handles.alloc(size);
    yield op;
    return this.handles.refused(op.handle) ? NO_OBJECT : op.handle;
  }

  /** Free `handle`; nothing for {@link NO_OBJECT} (`free(NULL)`). */
  *free(handle: number): Generator<SmpOp, void, void> {
    if (handle === NO_OBJECT) return;
    yield* this.flush();
    yield this.handles.free(handle);
  }

  /** Emit the pending work as one compute op. */
  *flush(): Generator<SmpOp, void, void> {
    const cycles = Math.round(this.#workCycles);
    this.#workCycles = 0;
    if (cycles > 0) yield { kind: "compute", cycles };
  }

  /**
   * Back off until `ready()`: compute ops of {@link WAIT_BACKOFF_MIN_CYCLES}, doubling
   * up to {@link WAIT_BACKOFF_MAX_CYCLES}.
   *
   * @throws {Error} after {@link WAIT_ROUNDS_MAX} rounds: the run cannot progress
   */
  *waitUntil(ready: () => boolean, what: string): Generator<SmpOp, void, void> {
    if (ready()) return;
    yield* this.flush();
    let backoff = WAIT_BACKOFF_MIN_CYCLES;
    for (let round = 0; !ready(); round++) {
      if (round === WAIT_ROUNDS_MAX) {
        throw new Error(
          `${this.handles.workload}: vCPU ${this.index} waited ${WAIT_ROUNDS_MAX} times for ${what}`,
        );
      }
      yield { kind: "compute", cycles: backoff };
      backoff = Math.min(backoff * 2, WAIT_BACKOFF_MAX_CYCLES);
    }
  }
}

/** A run made of one program per vCPU over shared handles. */
class ProgramRun implements SmpWorkloadRun {
  readonly #handles: Handles;
  readonly #programs: Program[];
  readonly #done: Uint8Array;
  #running: number;

  constructor(handles: Handles, programs: Program[]) {
    this.#handles = handles;
    this.#programs = programs;
    this.#done = new Uint8Array(programs.length);
    this.#running = programs.length;
  }

  next(vcpu: number): SmpOp | null {
    const program = Number.isInteger(vcpu) ? this.#programs[vcpu] : undefined;
    if (program === undefined) {
      throw new RangeError(
        `Invalid vCPU ${vcpu}: this run has vCPUs 0..${this.#programs.length - 1}`,
      );
    }
    if (this.#done[vcpu]) return null;
    this.#handles.assertSettled();
    const step = program.next();
    if (!step.done) return step.value;
    this.#done[vcpu] = 1;
    if (--this.#running === 0 && this.#handles.live > 0) {
      throw new Error(
        `${this.#handles.workload}: every vCPU is done with ${this.#handles.live} objects live (a bug)`,
      );
    }
    return null;
  }

  allocated(handle: number, ok: boolean): void {
    this.#handles.settle(handle, ok);
  }
}

/** Throws a RangeError unless the vCPU count and scale are in range. */
function checkRunArguments(workload: string, vcpus: number, scale: number): void {
  if (!Number.isInteger(vcpus) || vcpus < 1 || vcpus > SMP_VCPU_MAX) {
    throw new RangeError(
      `Invalid vCPU count ${vcpus} for ${workload}: expected an integer in [1, ${SMP_VCPU_MAX}]`,
    );
  }
  if (!(scale > 0 && scale <= SMP_SCALE_MAX)) {
    throw new RangeError(
      `Invalid scale ${scale} for ${workload}: expected a number in (0, ${SMP_SCALE_MAX}]`,
    );
  }
}

/**
 * A run of `vcpus` programs: `program(vcpu)` builds each vCPU's program; state the
 * vCPUs share lives in the closure that made `program`. Each vCPU gets a random stream
 * of its own, drawn from `prng` in vCPU order.
 */
function programRun(
  workload: string,
  prng: Prng,
  vcpus: number,
  program: (vcpu: Vcpu) => Program,
): SmpWorkloadRun {
  const handles = new Handles(workload);
  const programs: Program[] = [];
  for (let v = 0; v < vcpus; v++) {
    programs.push(program(new Vcpu(v, new Prng(prng.nextU32()), handles)));
  }
  return new ProgramRun(handles, programs);
}

/** `base * scale`, rounded, at least `min`. */
function scaled(base: number, scale: number, min = 1): number {
  return Math.max(min, Math.round(base * scale));
}

/** `cycles` with +-1/16 seeded jitter: the timing noise of a real run. */
function jittered(prng: Prng, cycles: number): number {
  return Math.round(cycles * (1 + (prng.nextFloat() - 0.5) / 8));
}

/** Handles live in a pool any vCPU may take from, with random removal. */
class SharedObjects {
  readonly #a: number[] = [];
  readonly #b: number[] = [];

  get size(): number {
    return this.#a.length;
  }

  push(a: number, b = NO_OBJECT): void {
    this.#a.push(a);
    this.#b.push(b);
  }

  /** Remove a random entry and return it as [a, b]. */
  takeRandom(prng: Prng): [number, number] {
    const i = prng.index(this.#a.length);
    const a = this.#a[i]!;
    const b = this.#b[i]!;
    this.#a[i] = this.#a[this.#a.length - 1]!;
    this.#b[i] = this.#b[this.#b.length - 1]!;
    this.#a.pop();
    this.#b.pop();
    return [a, b];
  }
}

// ---------------------------------------------------------------------------------
// near-page and compcache: compressed pages put by every vCPU, flushed by any

/**
 * Xen tmem's pool for compressed pages grows a page at a time, so the largest block it
 * serves is `xmem_pool_maxalloc()`: PAGE_SIZE - 2 * BHDR_OVERHEAD (16 bytes on x86-64);
 * a page that compresses to more is kept whole, off xmalloc.
 */
const TMEM_MAXALLOC_BYTES = PAGE_SIZE_BYTES - 2 * 16;
/** sizeof(struct tmem_page_descriptor) on x86-64, approx. */
const TMEM_PAGE_DESCRIPTOR_BYTES = 80;
/** LZO1X over a 4 KiB page at about 5 cycles a byte (tmem: "about 10x more CPU" than a copy). */
const COMPRESS_PAGE_CYCLES = PAGE_SIZE_BYTES * 5;
/** Looking a page up and unlinking it. */
const FLUSH_PAGE_CYCLES = 500;

/** Compressed sizes of compcache's study (the single-vCPU `compcache` workload's mix). */
function compcacheSize(prng: Prng): number {
  const r = prng.nextFloat();
  return r < 0.25
    ? prng.intInclusive(100, 1000)
    : r < 0.75
    ? prng.intInclusive(1000, 3000)
    : prng.intInclusive(3000, PAGE_SIZE_BYTES);
}

/**
 * Puts and flushes of compressed pages: each vCPU makes `iterations` steps; below
 * `liveTarget` pages stored (all vCPUs together) a step puts a page, above it a step
 * puts or flushes a random stored page (any vCPU's) with probability 1/2 each; at the
 * end each vCPU flushes what is stored until nothing is. With a descriptor, a put
 * allocates the descriptor, compresses, then allocates the data (tmem's order); a
 * refused descriptor fails the put, a refused data block frees the descriptor.
 */
function compressedStoreRun(
  name: string,
  prng: Prng,
  vcpus: number,
  iterations: number,
  liveTarget: number,
  descriptorBytes: number,
  dataSize: (prng: Prng) => number,
): SmpWorkloadRun {
  const stored = new SharedObjects(); // [data, descriptor]
  function* flushOne(cpu: Vcpu): Program {
    const [data, descriptor] = stored.takeRandom(cpu.prng);
    cpu.work(FLUSH_PAGE_CYCLES);
    yield* cpu.free(data);
    yield* cpu.free(descriptor);
  }
  return programRun(name, prng, vcpus, function* (cpu) {
    for (let i = 0; i < iterations; i++) {
      if (stored.size < liveTarget || cpu.prng.nextFloat() < 0.5) {
        let descriptor = NO_OBJECT;
        if (descriptorBytes > 0) {
          descriptor = yield* cpu.alloc(descriptorBytes);
          if (descriptor === NO_OBJECT) continue;
        }
        cpu.work(COMPRESS_PAGE_CYCLES);
        const data = yield* cpu.alloc(dataSize(cpu.prng));
        if (data === NO_OBJECT) {
          yield* cpu.free(descriptor);
          continue;
        }
        stored.push(data, descriptor);
      } else {
        yield* flushOne(cpu);
      }
    }
    while (stored.size > 0) yield* flushOne(cpu);
  });
}

const nearPage: SmpWorkloadDescriptor = {
  name: "near-page",
  description: "tmem puts of poorly compressible pages, the case Xen moved xmalloc to TLSF for: " +
    "each put allocates a page descriptor (80 B, approx. sizeof(struct tmem_page_descriptor)) " +
    "and the compressed data, U[2048, 4063] B: between PAGE_SIZE/2 and the tmem pool's " +
    "xmem_pool_maxalloc() = PAGE_SIZE - 2 * BHDR_OVERHEAD (larger pages are kept whole, off " +
    "xmalloc); sizes 80..4063 B. Puts on every vCPU, flushes (eviction, frontswap " +
    "invalidate) of any vCPU's page; 400 pages stored per vCPU, 2000 steps per vCPU. " +
    'Sources: Xen commit "xmalloc: use tlsf algorithm" (Dan Magenheimer, 2008: ' +
    '"especially for allocation sizes between PAGE_SIZE/2 and PAGE_SIZE"), ' +
    "xen/common/tmem.c do_tmem_put_compress() and tmem_mempool_init()",
  create(prng, vcpus, scale) {
    checkRunArguments("near-page", vcpus, scale);
    return compressedStoreRun(
      "near-page",
      prng,
      vcpus,
      scaled(2000, scale),
      scaled(400, scale) * vcpus,
      TMEM_PAGE_DESCRIPTOR_BYTES,
      (p) => p.intInclusive(PAGE_SIZE_BYTES / 2, TMEM_MAXALLOC_BYTES - 1),
    );
  },
};

const compcache: SmpWorkloadDescriptor = {
  name: "compcache",
  description: "compcache/zram stores of compressed 4 KiB pages, one allocation each, sizes " +
    "25% U[100,1000], 50% U[1000,3000], 25% U[3000,4096] (compcache's xvmalloc/TLSF study, " +
    "code.google.com/p/compcache/wiki/TLSFAllocator; the single-vCPU `compcache` workload " +
    "and reference trace); sizes 100..4096 B. Every vCPU swaps out (compresses, ~20k cycles " +
    "a page), a swap slot is freed by whichever vCPU faults it back in; 750 pages stored per " +
    "vCPU, 2000 steps per vCPU",
  create(prng, vcpus, scale) {
    checkRunArguments("compcache", vcpus, scale);
    return compressedStoreRun(
      "compcache",
      prng,
      vcpus,
      scaled(2000, scale),
      scaled(750, scale) * vcpus,
      0,
      compcacheSize,
    );
  },
};

// ---------------------------------------------------------------------------------
// cache-thrash and cache-scratch (Hoard's false-sharing benchmarks)

/** mimalloc-bench's bench.sh runs `cache-thrash N 1000 1 2000000 N` (same for cache-scratch). */
const HOARD_ITERATIONS = 1000;
const HOARD_OBJECT_BYTES = 1;
const HOARD_REPETITIONS = 2_000_000;
/** Per byte per repetition: a store, a volatile load, an increment. */
const HOARD_WRITE_CYCLES = 3;

/** Hoard's worker loop: allocate, write the object `repetitions` times, free. */
function* hoardWorker(cpu: Vcpu, iterations: number, repetitions: number): Program {
  for (let i = 0; i < iterations; i++) {
    const object = yield* cpu.alloc(HOARD_OBJECT_BYTES);
    cpu.work(jittered(cpu.prng, repetitions * HOARD_OBJECT_BYTES * HOARD_WRITE_CYCLES));
    yield* cpu.free(object);
  }
}

const cacheThrash: SmpWorkloadDescriptor = {
  name: "cache-thrash",
  description: "Hoard's cache-thrash (active false sharing) as mimalloc-bench runs it, " +
    "`cache-thrash N 1000 1 2000000 N` (bench/cache-thrash/cache-thrash.cpp, bench.sh): " +
    "each vCPU, 1000 times, allocates a 1-byte object, writes it 2000000/N times (3 cycles " +
    "a write) and frees it itself; sizes 1..1 B. An allocator that gives two vCPUs objects " +
    "on one cache line makes every write a line transfer. The only randomness is +-1/16 " +
    "jitter on the write time (the timing noise of a real run)",
  create(prng, vcpus, scale) {
    checkRunArguments("cache-thrash", vcpus, scale);
    const iterations = scaled(HOARD_ITERATIONS, scale);
    const repetitions = Math.floor(HOARD_REPETITIONS / vcpus);
    return programRun(
      "cache-thrash",
      prng,
      vcpus,
      (cpu) => hoardWorker(cpu, iterations, repetitions),
    );
  },
};

/** sizeof(pthread_t), sizeof(workerArg) (a pointer and three ints, padded), a pointer. */
const SCRATCH_THREAD_BYTES = 8;
const SCRATCH_WORKER_ARG_BYTES = 24;

const cacheScratch: SmpWorkloadDescriptor = {
  name: "cache-scratch",
  description: "Hoard's cache-scratch (passive false sharing) as mimalloc-bench runs it, " +
    "`cache-scratch N 1000 1 2000000 N` (bench/cache-scratch/cache-scratch.cpp, bench.sh): " +
    "the main thread (vCPU 0) allocates its per-thread arrays (pthread_t 8 B, workerArg 24 " +
    "B and a pointer 8 B per thread) and one 1-byte object per thread, hands object v to " +
    "vCPU v, which frees it (a free on another vCPU than the allocating one), then runs " +
    "cache-thrash's loop; main frees its arrays after joining; sizes 1..24*N B. An " +
    "allocator that reuses the freed object's line for the next thread's objects makes " +
    "the vCPUs share lines. Randomness: +-1/16 jitter on the write time only",
  create(prng, vcpus, scale) {
    checkRunArguments("cache-scratch", vcpus, scale);
    const iterations = scaled(HOARD_ITERATIONS, scale);
    const repetitions = Math.floor(HOARD_REPETITIONS / vcpus);
    const given = new Int32Array(vcpus).fill(NO_OBJECT);
    let started = false;
    let finished = 0;
    return programRun("cache-scratch", prng, vcpus, function* (cpu) {
      const arrays: number[] = [];
      if (cpu.index === 0) {
        arrays.push(yield* cpu.alloc(SCRATCH_THREAD_BYTES * vcpus)); // calloc(nthreads, pthread_t)
        arrays.push(yield* cpu.alloc(SCRATCH_WORKER_ARG_BYTES * vcpus)); // new workerArg[nthreads]
        arrays.push(yield* cpu.alloc(POINTER_BYTES * vcpus)); // new char *[nthreads]
        for (let v = 0; v < vcpus; v++) given[v] = yield* cpu.alloc(HOARD_OBJECT_BYTES);
        started = true; // pthread_create
      }
      yield* cpu.waitUntil(() => started, "the main thread to start its workers");
      yield* cpu.free(given[cpu.index]!); // delete w->_object
      yield* hoardWorker(cpu, iterations, repetitions);
      finished++;
      if (cpu.index === 0) {
        yield* cpu.waitUntil(() => finished === vcpus, "its workers to finish (pthread_join)");
        yield* cpu.free(arrays[0]!); // free(threads)
        yield* cpu.free(arrays[2]!); // delete [] objs
        yield* cpu.free(arrays[1]!); // delete [] w
      }
    });
  },
};

// ---------------------------------------------------------------------------------
// larson: a server's objects, freed by the thread that takes over their slots

/** bench.sh: `larson 5 8 1000 5000 100 4141 N` (min 8, max 1000, 5000 chunks a thread, 100 rounds). */
const LARSON_MIN_BYTES = 8;
const LARSON_MAX_BYTES = 1000;
/** Chunks (slots) per thread: 5000 in bench.sh, scaled down. */
const LARSON_CHUNKS_PER_VCPU = 200;
/** Rounds over its slots a thread makes before its successor takes over: 100 in bench.sh. */
const LARSON_ROUNDS = 2;
/** Threads that work each slot region in turn (bench.sh: as many as fit in 5 s). */
const LARSON_GENERATIONS = 3;
/** Two lran2 calls and a 2-byte write per step. */
const LARSON_STEP_CYCLES = 20;

/** larson's block size: `min_size + lran2() % (max_size - min_size)`. */
function larsonSize(prng: Prng): number {
  return LARSON_MIN_BYTES + prng.index(LARSON_MAX_BYTES - LARSON_MIN_BYTES);
}

const larson: SmpWorkloadDescriptor = {
  name: "larson",
  description: "Larson and Krishnan's server benchmark as mimalloc-bench runs it, `larson 5 " +
    "8 1000 5000 100 4141 N` (bench/larson/larson.cpp, bench.sh), sizes min + rand % (max - " +
    "min), 8..999 B. The main thread (vCPU 0) warms up: allocates 200 chunks per vCPU " +
    "(5000 in bench.sh), shuffles them, frees and reallocates a random one 4x as many times. " +
    "vCPU v then owns region v and frees a random slot's block and allocates a new one " +
    "2 x 200 times (100 rounds in bench.sh); when a thread ends, larson starts a new one " +
    "on the same slots: generation g of region r runs on vCPU (r + g) mod N, after " +
    "generation g - 1 is done, for 3 generations, so blocks are freed by another vCPU than " +
    "the one that allocated them. The last generation frees its region (larson leaks it at " +
    "exit)",
  create(prng, vcpus, scale) {
    checkRunArguments("larson", vcpus, scale);
    const chunks = scaled(LARSON_CHUNKS_PER_VCPU, scale);
    const blocks = new Int32Array(chunks * vcpus).fill(NO_OBJECT);
    const generationsDone = new Int32Array(vcpus); // per region
    let warm = false;
    function* warmup(cpu: Vcpu): Program {
      const n = blocks.length;
      for (let i = 0; i < n; i++) blocks[i] = yield* cpu.alloc(larsonSize(cpu.prng));
      for (let i = n; i > 0; i--) { // a random permutation, as larson's warmup()
        const victim = cpu.prng.index(i);
        const t = blocks[victim]!;
        blocks[victim] = blocks[i - 1]!;
        blocks[i - 1] = t;
      }
      for (let i = 0; i < 4 * n; i++) {
        const victim = cpu.prng.index(n);
        yield* cpu.free(blocks[victim]!);
        blocks[victim] = yield* cpu.alloc(larsonSize(cpu.prng));
      }
      warm = true;
    }
    return programRun("larson", prng, vcpus, function* (cpu) {
      if (cpu.index === 0) yield* warmup(cpu);
      let region = cpu.index;
      for (let g = 0; g < LARSON_GENERATIONS; g++) {
        region = (cpu.index - (g % vcpus) + vcpus) % vcpus;
        yield* cpu.waitUntil(
          () => warm && generationsDone[region] === g,
          g === 0 ? "the warm-up" : `generation ${g - 1} of region ${region}`,
        );
        const base = region * chunks;
        for (let i = 0; i < LARSON_ROUNDS * chunks; i++) {
          const victim = base + cpu.prng.index(chunks);
          yield* cpu.free(blocks[victim]!);
          blocks[victim] = yield* cpu.alloc(larsonSize(cpu.prng));
          cpu.work(LARSON_STEP_CYCLES);
        }
        generationsDone[region] = g + 1;
      }
      for (let i = region * chunks; i < (region + 1) * chunks; i++) {
        yield* cpu.free(blocks[i]!);
        blocks[i] = NO_OBJECT;
      }
    });
  },
};

// ---------------------------------------------------------------------------------
// xmalloc-test: producers allocate batches, consumers free them

/** bench.sh: `xmalloc-test -w N -t 5 -s 64`. */
const XMALLOC_OBJECT_BYTES = 64;
/** OBJECTS_PER_BATCH: 4096 in the source, scaled down. */
const XMALLOC_OBJECTS_PER_BATCH = 512;
/** sizeof(struct batch): the next pointer and the object pointers. */
const XMALLOC_BATCH_BYTES = POINTER_BYTES * (1 + XMALLOC_OBJECTS_PER_BATCH);
/** batch_count_limit: 100 in the source, scaled down with the batch. */
const XMALLOC_QUEUE_LIMIT = 16;
/** Batches each producer makes (the source runs for 5 s). */
const XMALLOC_BATCHES_PER_PRODUCER = 6;
/** memset of min(size, 128) bytes and the loop. */
const XMALLOC_FILL_CYCLES = 16;

interface XmallocBatch {
  header: number;
  objects: Int32Array;
}

const xmallocTest: SmpWorkloadDescriptor = {
  name: "xmalloc-test",
  description: "Lever and Boreham's producer/consumer test (USENIX 2000) as mimalloc-bench " +
    "runs it, `xmalloc-test -w N -t 5 -s 64` (bench/xmalloc-test/xmalloc-test.c, bench.sh): " +
    "allocator threads (odd vCPUs) allocate a batch header (8 + 8 * 512 = 4104 B: " +
    "OBJECTS_PER_BATCH scaled from 4096 to 512) and 512 objects of 64 B, writing each, and " +
    "push the batch on a shared stack (at most 16 batches, 100 in the source); releaser " +
    "threads (even vCPUs) pop batches and free every object and the header: every free is " +
    "on another vCPU than its allocation. 6 batches per allocator thread; one vCPU plays " +
    "both roles in turn; sizes 64..4104 B. Randomness: +-1/16 jitter on the write time only",
  create(prng, vcpus, scale) {
    checkRunArguments("xmalloc-test", vcpus, scale);
    const batchesPerProducer = scaled(XMALLOC_BATCHES_PER_PRODUCER, scale);
    const producers = vcpus === 1 ? 1 : Math.floor(vcpus / 2);
    let producing = producers;
    const stack: XmallocBatch[] = [];
    function* produce(cpu: Vcpu): Program {
      const header = yield* cpu.alloc(XMALLOC_BATCH_BYTES);
      const objects = new Int32Array(XMALLOC_OBJECTS_PER_BATCH);
      for (let i = 0; i < objects.length; i++) {
        objects[i] = yield* cpu.alloc(XMALLOC_OBJECT_BYTES);
        cpu.work(jittered(cpu.prng, XMALLOC_FILL_CYCLES));
      }
      stack.push({ header, objects });
    }
    function* release(cpu: Vcpu, batch: XmallocBatch): Program {
      for (const object of batch.objects) yield* cpu.free(object);
      yield* cpu.free(batch.header);
    }
    return programRun("xmalloc-test", prng, vcpus, function* (cpu) {
      if (vcpus === 1) {
        for (let b = 0; b < batchesPerProducer; b++) {
          yield* produce(cpu);
          yield* release(cpu, stack.pop()!);
        }
      } else if (cpu.index % 2 === 1) {
        for (let b = 0; b < batchesPerProducer; b++) {
          yield* cpu.waitUntil(() => stack.length < XMALLOC_QUEUE_LIMIT, "room on the stack");
          yield* produce(cpu);
        }
        producing--;
      } else {
        for (;;) {
          yield* cpu.waitUntil(() => stack.length > 0 || producing === 0, "a batch");
          const batch = stack.pop();
          if (batch === undefined) break;
          yield* release(cpu, batch);
        }
      }
    });
  },
};

// ---------------------------------------------------------------------------------
// mstress: mimalloc's stress test, objects exchanged through a shared buffer

/** bench.sh: `mstress N 50 25` (SCALE 50, ITER 25); scaled down to these. */
const MSTRESS_SCALE = 1;
const MSTRESS_ITERATIONS = 5;
/** TRANSFERS: slots of the shared exchange buffer. */
const MSTRESS_TRANSFERS = 1000;
/** The data array grows by 100000 pointers (`data_size += 100000`). */
const MSTRESS_DATA_ARRAY_BYTES = 100_000 * POINTER_BYTES;
/** Cycles per word written at allocation and checked at free. */
const MSTRESS_WRITE_WORD_CYCLES = 1;
const MSTRESS_CHECK_WORD_CYCLES = 2;

/** mstress's `chance(perc)`: `pick() % 100 <= perc`, so perc + 1 in 100. */
function chance(prng: Prng, percent: number): boolean {
  return prng.index(100) <= percent;
}

const mstress: SmpWorkloadDescriptor = {
  name: "mstress",
  description: "mimalloc's stress test as mimalloc-bench runs it, `mstress N 50 25` " +
    "(bench/mstress/mstress.c, bench.sh), with SCALE 1 and 5 iterations: per iteration " +
    "thread t (vCPU t) makes 100 * (t % 8 + 1) allocations and half as many retained, of " +
    "1 << (rand % 5) words (data) or 1 << (rand % 7) words (retained), 8 B each; 2% are " +
    "enlarged, 10000x (2% of those), else 1000x (11% of the rest), else 100x (chance(p) is " +
    "`% 100 <= p`, as in the source); 67% of " +
    "steps free a random data object, 26% exchange one with a random slot of a 1000-slot " +
    "buffer shared by all threads (so objects are freed by other vCPUs); a thread also " +
    "allocates its retained array (8 B per retained) and its data array (100000 pointers, " +
    "800000 B). After each iteration the main thread (vCPU 0) frees the buffer's objects " +
    "with probability 51%, all of them after the last; sizes 8..5120000 B",
  create(prng, vcpus, scale) {
    checkRunArguments("mstress", vcpus, scale);
    const transfer = new Int32Array(MSTRESS_TRANSFERS).fill(NO_OBJECT);
    let words = new Int32Array(1024); // handle -> words written into it
    let iterationStarted = 0;
    const threadsFinished = new Int32Array(MSTRESS_ITERATIONS);

    function* allocItems(cpu: Vcpu, items: number): Generator<SmpOp, number, void> {
      if (chance(cpu.prng, 1)) {
        if (chance(cpu.prng, 1)) items *= 10000; // giant
        else if (chance(cpu.prng, 10)) items *= 1000; // huge
        else items *= 100; // large
      }
      const handle = yield* cpu.alloc(items * POINTER_BYTES);
      if (handle !== NO_OBJECT) {
        if (handle >= words.length) words = grown(words, Math.max(handle + 1, words.length * 2));
        words[handle] = items;
        cpu.work(items * MSTRESS_WRITE_WORD_CYCLES);
      }
      return handle;
    }
    function* freeItems(cpu: Vcpu, handle: number): Program {
      if (handle !== NO_OBJECT) cpu.work(words[handle]! * MSTRESS_CHECK_WORD_CYCLES);
      yield* cpu.free(handle);
    }
    function* stress(cpu: Vcpu): Program {
      let allocs = scaled(100 * MSTRESS_SCALE * (cpu.index % 8 + 1), scale);
      let retain = Math.floor(allocs / 2);
      const data: number[] = [];
      let dataArray = NO_OBJECT;
      const retainedArray = retain > 0 ? yield* cpu.alloc(retain * POINTER_BYTES) : NO_OBJECT;
      const retained: number[] = [];
      while (allocs > 0 || retain > 0) {
        if (retain === 0 || (chance(cpu.prng, 50) && allocs > 0)) {
          allocs--;
          if (data.length === 0) dataArray = yield* cpu.alloc(MSTRESS_DATA_ARRAY_BYTES);
          data.push(yield* allocItems(cpu, 1 << cpu.prng.index(5)));
        } else {
          retained.push(yield* allocItems(cpu, 1 << cpu.prng.index(7)));
          retain--;
        }
        if (chance(cpu.prng, 66) && data.length > 0) {
          const i = cpu.prng.index(data.length);
          yield* freeItems(cpu, data[i]!);
          data[i] = NO_OBJECT;
        }
        if (chance(cpu.prng, 25) && data.length > 0) {
          const i = cpu.prng.index(data.length);
          const slot = cpu.prng.index(MSTRESS_TRANSFERS);
          const mine = data[i]!;
          data[i] = transfer[slot]!;
          transfer[slot] = mine;
        }
      }
      for (const handle of retained) yield* freeItems(cpu, handle);
      for (const handle of data) yield* freeItems(cpu, handle);
      yield* cpu.free(retainedArray);
      yield* cpu.free(dataArray);
    }
    return programRun("mstress", prng, vcpus, function* (cpu) {
      for (let n = 0; n < MSTRESS_ITERATIONS; n++) {
        yield* cpu.waitUntil(() => iterationStarted >= n, `iteration ${n} to start`);
        yield* stress(cpu);
        threadsFinished[n]!++;
        if (cpu.index !== 0) continue;
        yield* cpu.waitUntil(() => threadsFinished[n] === vcpus, "its threads (join)");
        const last = n + 1 === MSTRESS_ITERATIONS;
        for (let i = 0; i < MSTRESS_TRANSFERS; i++) {
          if (chance(cpu.prng, 50) || last) {
            const handle = transfer[i]!;
            transfer[i] = NO_OBJECT;
            yield* freeItems(cpu, handle);
          }
        }
        iterationStarted = n + 1;
      }
    });
  },
};

// ---------------------------------------------------------------------------------
// boot: a unikernel's init burst, then a small steady state

/** Allocations of one boot step: `count` of `bytes` each, or of U[bytes[0], bytes[1]]. */
interface BootStep {
  what: string;
  bytes: number | readonly [number, number];
  count: number;
}

/** Unikraft's thread stacks: uk_palloc(STACK_SIZE_PAGE_ORDER = 4), 16 pages. */
const UNIKRAFT_STACK_BYTES = KiB(64);
/** sizeof(struct uk_thread), approx. */
const UNIKRAFT_THREAD_BYTES = 320;
/** A thread's TLS block (.tdata + .tbss of a small image), approx. */
const UNIKRAFT_TLS_BYTES = 512;
/** Legacy virtio vring_size(256, 4096): descriptors and avail ring, page-aligned, then the used ring. */
const VIRTIO_VRING_BYTES = 8192 + 6 + 8 * 256;

/** What the boot vCPU allocates, in order. */
const BOOT_BSP_STEPS: readonly BootStep[] = [
  { what: "uk_thread of the idle and main threads", bytes: UNIKRAFT_THREAD_BYTES, count: 2 },
  { what: "their stacks", bytes: UNIKRAFT_STACK_BYTES, count: 2 },
  { what: "their TLS blocks", bytes: UNIKRAFT_TLS_BYTES, count: 2 },
  { what: "PCI device structs", bytes: 192, count: 6 },
  { what: "virtio-net rx and tx vrings", bytes: VIRTIO_VRING_BYTES, count: 2 },
  { what: "virtqueue bookkeeping, 256 entries", bytes: 256 * POINTER_BYTES, count: 2 },
  { what: "rx buffers: 1514-byte frame, virtio-net header, uk_netbuf", bytes: 2112, count: 256 },
  { what: "lwIP netif, ARP table, listening PCB", bytes: [64, 512], count: 12 },
  { what: "vfscore fd table, 1024 entries", bytes: 1024 * POINTER_BYTES, count: 1 },
  { what: "ramfs/devfs mounts, vnodes, dentries", bytes: [96, 256], count: 8 },
  { what: "application configuration objects", bytes: [16, 512], count: 64 },
  { what: "application memory pools", bytes: KiB(16), count: 4 },
];

/** What each further vCPU allocates when it comes up. */
const BOOT_AP_STEPS: readonly BootStep[] = [
  { what: "uk_thread of its idle thread", bytes: UNIKRAFT_THREAD_BYTES, count: 1 },
  { what: "its stack", bytes: UNIKRAFT_STACK_BYTES, count: 1 },
  { what: "its TLS block", bytes: UNIKRAFT_TLS_BYTES, count: 1 },
  { what: "its interrupt stack, approx.", bytes: KiB(16), count: 1 },
  { what: "its scheduler state, approx.", bytes: 256, count: 1 },
];

/** Steady-state steps per vCPU, and live objects a vCPU keeps at most. */
const BOOT_STEADY_STEPS = 1500;
const BOOT_STEADY_LIVE_MAX = 32;
/** An event's handling between allocator calls. */
const BOOT_EVENT_CYCLES = 2000;

const boot: SmpWorkloadDescriptor = {
  name: "boot",
  description: "a Unikraft-style unikernel boot (the Lefeuvre thesis, KIT 2020, cut an " +
    "Nginx unikernel's boot from 7.4 to 1.5 ms by choosing the allocator): vCPU 0 " +
    "allocates its idle and main threads (uk_thread ~320 B, 64 KiB stacks: " +
    "STACK_SIZE_PAGE_ORDER 4, TLS ~512 B), PCI devices, two virtio vrings " +
    "(vring_size(256, 4096) = 10246 B), 256 rx buffers of 2112 B, lwIP, vfscore's fd table " +
    "(8 KiB), mounts, 64 application config objects U[16,512] and 4 pools of 16 KiB; then " +
    "each other vCPU brings up its idle thread, stack, TLS, a 16 KiB interrupt stack and " +
    "per-CPU state. Steady state: 1500 steps per vCPU of timer, event and socket objects " +
    "(90% U[16,256], 10% U[64,1514] B), at most 32 live per vCPU, freed by their vCPU. " +
    "Struct sizes are approx.; sizes 16..65536 B. Shutdown frees everything",
  create(prng, vcpus, scale) {
    checkRunArguments("boot", vcpus, scale);
    const steadySteps = scaled(BOOT_STEADY_STEPS, scale);
    let booted = false;
    let finished = 0;
    function* bring(cpu: Vcpu, steps: readonly BootStep[], into: number[]): Program {
      for (const step of steps) {
        for (let i = 0; i < step.count; i++) {
          const b = step.bytes;
          into.push(
            yield* cpu.alloc(typeof b === "number" ? b : cpu.prng.intInclusive(b[0], b[1])),
          );
        }
      }
    }
    return programRun("boot", prng, vcpus, function* (cpu) {
      const kept: number[] = [];
      if (cpu.index === 0) {
        yield* bring(cpu, BOOT_BSP_STEPS, kept);
        booted = true;
      } else {
        yield* cpu.waitUntil(() => booted, "the boot vCPU to start it");
        yield* bring(cpu, BOOT_AP_STEPS, kept);
      }
      const live: number[] = [];
      for (let i = 0; i < steadySteps; i++) {
        cpu.work(BOOT_EVENT_CYCLES);
        if (
          live.length < BOOT_STEADY_LIVE_MAX && (live.length === 0 || cpu.prng.nextFloat() < 0.5)
        ) {
          const size = cpu.prng.nextFloat() < 0.9
            ? cpu.prng.intInclusive(16, 256)
            : cpu.prng.intInclusive(64, 1514);
          live.push(yield* cpu.alloc(size));
        } else {
          const i = cpu.prng.index(live.length);
          const handle = live[i]!;
          live[i] = live[live.length - 1]!;
          live.pop();
          yield* cpu.free(handle);
        }
      }
      for (const handle of live) yield* cpu.free(handle);
      finished++;
      if (cpu.index === 0) yield* cpu.waitUntil(() => finished === vcpus, "the others to stop");
      for (let i = kept.length - 1; i >= 0; i--) yield* cpu.free(kept[i]!);
    });
  },
};

// ---------------------------------------------------------------------------------
// redis: redis-benchmark SET then GET, with I/O threads parsing queries

/** redis-benchmark as the Unikraft paper ran it (fig. 18): -c 30 -P 16 -d 3 -t set,get. */
const REDIS_CONNECTIONS = 30;
const REDIS_PIPELINE = 16;
const REDIS_VALUE_BYTES = 3;
/** Keys "key:" + 12 digits (redis-benchmark's __rand_int__) from -r 1000 (our choice). */
const REDIS_KEY_CHARS = 16;
const REDIS_KEYSPACE = 1000;
/** Rounds (every connection sends one pipeline) per test, our choice. */
const REDIS_ROUNDS_PER_TEST = 4;
/** sizeof(robj), of a dictEntry, the sdshdr8 header. */
const REDIS_ROBJ_BYTES = 16;
const REDIS_DICT_ENTRY_BYTES = 24;
const REDIS_SDSHDR8_BYTES = 3;
/** DICT_HT_INITIAL_SIZE. */
const REDIS_DICT_INITIAL_SLOTS = 4;
/** sizeof(client), approx. */
const REDIS_CLIENT_BYTES = 1024;
/** PROTO_REPLY_CHUNK_BYTES: the reply buffer, zmalloc'd at createClient(). */
const REDIS_REPLY_BUFFER_BYTES = KiB(16);
/** sdsMakeRoomFor(querybuf, PROTO_IOBUF_LEN = 16 KiB) doubles: 32 KiB + sdshdr16 + NUL. */
const REDIS_QUERY_BUFFER_BYTES = 2 * KiB(16) + 5 + 1;
/** Parsing and executing one pipelined command, about a microsecond. */
const REDIS_PARSE_CYCLES = 1000;
const REDIS_EXECUTE_CYCLES = 1500;

/** createEmbeddedStringObject: robj, sdshdr8, the bytes and a NUL in one allocation. */
function embeddedString(chars: number): number {
  return REDIS_ROBJ_BYTES + REDIS_SDSHDR8_BYTES + chars + 1;
}

/** One parsed command: its argv array and argument objects, and the key it names. */
interface RedisCommand {
  set: boolean;
  argvArray: number;
  argv: number[];
  key: number;
}

const redis: SmpWorkloadDescriptor = {
  name: "redis",
  description: "Redis under redis-benchmark as the Unikraft paper measured allocators " +
    "(EuroSys 2021, fig. 18: 30 connections, pipeline 16, 3-byte values, SET and GET; " +
    'unikraft/eurosys21-artifacts experiments/common/redis.sh), keys "key:" + 12 digits ' +
    "from a keyspace of 1000 (-r 1000), 4 rounds of 30 x 16 commands per test. Sizes from " +
    "Redis's source: argv array 8 B per argument, arguments as embedded strings " +
    '(createEmbeddedStringObject: 16 B robj + 3 B sdshdr8 + len + 1: 23 B for "SET" and ' +
    "3-byte values, 36 B for keys), a new key's sds copy 20 B and dictEntry 24 B, the " +
    "dict's table 8 B a slot from 4 slots, doubling; per connection a client (~1 KiB, " +
    "approx.), a 16 KiB reply buffer (PROTO_REPLY_CHUNK_BYTES) and a query buffer of " +
    "32774 B (sdsMakeRoomFor doubling PROTO_IOBUF_LEN). With N > 1 vCPUs, vCPUs 1..N-1 " +
    "are I/O threads (io-threads-do-reads): connection c is read and parsed by vCPU c mod " +
    "N, which allocates its argument objects; vCPU 0 executes every command, freeing the " +
    "arguments and overwritten values other vCPUs allocated. Sizes 16..32774 B",
  create(prng, vcpus, scale) {
    checkRunArguments("redis", vcpus, scale);
    const rounds = scaled(REDIS_ROUNDS_PER_TEST, scale);
    const totalRounds = 2 * rounds; // SET rounds, then GET rounds
    const queryBuffer = new Int32Array(REDIS_CONNECTIONS).fill(NO_OBJECT);
    const parsed: RedisCommand[][] = Array.from({ length: REDIS_CONNECTIONS }, () => []);
    const keySds = new Int32Array(REDIS_KEYSPACE).fill(NO_OBJECT);
    const keyEntry = new Int32Array(REDIS_KEYSPACE).fill(NO_OBJECT);
    const value = new Int32Array(REDIS_KEYSPACE).fill(NO_OBJECT);
    const stored = new Uint8Array(REDIS_KEYSPACE);
    let keys = 0;
    let table = NO_OBJECT;
    let tableSlots = 0;
    let accepted = false;
    let executedRounds = 0; // rounds vCPU 0 has executed
    const parsedRounds = new Int32Array(vcpus); // per vCPU

    function* parseRound(cpu: Vcpu, round: number): Program {
      const set = round < rounds;
      for (let c = cpu.index; c < REDIS_CONNECTIONS; c += vcpus) {
        if (queryBuffer[c] === NO_OBJECT) {
          queryBuffer[c] = yield* cpu.alloc(REDIS_QUERY_BUFFER_BYTES);
        }
        for (let i = 0; i < REDIS_PIPELINE; i++) {
          const key = cpu.prng.index(REDIS_KEYSPACE);
          const argc = set ? 3 : 2;
          const argvArray = yield* cpu.alloc(argc * POINTER_BYTES);
          const argv = [
            yield* cpu.alloc(embeddedString(3)), // "SET" or "GET"
            yield* cpu.alloc(embeddedString(REDIS_KEY_CHARS)),
          ];
          if (set) argv.push(yield* cpu.alloc(embeddedString(REDIS_VALUE_BYTES)));
          parsed[c]!.push({ set, argvArray, argv, key });
        }
        cpu.work(REDIS_PIPELINE * REDIS_PARSE_CYCLES);
      }
    }
    function* addKey(cpu: Vcpu, key: number): Program {
      if (keys >= tableSlots) { // _dictExpandIfNeeded: a table twice as large, rehashed
        const slots = Math.max(REDIS_DICT_INITIAL_SLOTS, tableSlots * 2);
        const old = table;
        table = yield* cpu.alloc(slots * POINTER_BYTES);
        tableSlots = slots;
        yield* cpu.free(old);
      }
      keySds[key] = yield* cpu.alloc(REDIS_SDSHDR8_BYTES + REDIS_KEY_CHARS + 1);
      keyEntry[key] = yield* cpu.alloc(REDIS_DICT_ENTRY_BYTES);
      stored[key] = 1;
      keys++;
    }
    function* execute(cpu: Vcpu, command: RedisCommand): Program {
      const [name, key, newValue] = command.argv;
      if (command.set) {
        if (stored[command.key]) yield* cpu.free(value[command.key]!); // dbOverwrite
        else yield* addKey(cpu, command.key);
        value[command.key] = newValue!; // the value object is kept, not copied
      }
      cpu.work(REDIS_EXECUTE_CYCLES);
      yield* cpu.free(name!); // freeClientArgv
      yield* cpu.free(key!);
      yield* cpu.free(command.argvArray);
    }
    return programRun("redis", prng, vcpus, function* (cpu) {
      const clients: number[] = [];
      if (cpu.index === 0) {
        for (let c = 0; c < REDIS_CONNECTIONS; c++) {
          clients.push(yield* cpu.alloc(REDIS_CLIENT_BYTES));
          clients.push(yield* cpu.alloc(REDIS_REPLY_BUFFER_BYTES));
        }
        accepted = true;
      }
      yield* cpu.waitUntil(() => accepted, "the connections");
      for (let round = 0; round < totalRounds; round++) {
        yield* cpu.waitUntil(() => executedRounds === round, `round ${round - 1} to execute`);
        yield* parseRound(cpu, round);
        parsedRounds[cpu.index] = round + 1;
        if (cpu.index !== 0) continue;
        yield* cpu.waitUntil(
          () => parsedRounds.every((r) => r === round + 1),
          `the I/O threads to parse round ${round}`,
        );
        for (const commands of parsed) {
          for (const command of commands) yield* execute(cpu, command);
          commands.length = 0;
        }
        executedRounds = round + 1;
      }
      if (cpu.index !== 0) return;
      for (let c = 0; c < REDIS_CONNECTIONS; c++) yield* cpu.free(queryBuffer[c]!); // freeClient
      for (const handle of clients) yield* cpu.free(handle);
      for (let key = 0; key < REDIS_KEYSPACE; key++) { // FLUSHALL
        if (!stored[key]) continue;
        yield* cpu.free(keyEntry[key]!);
        yield* cpu.free(keySds[key]!);
        yield* cpu.free(value[key]!);
      }
      yield* cpu.free(table);
    });
  },
};

// ---------------------------------------------------------------------------------
// nginx: a static page over keep-alive connections, one worker per vCPU

/** NGX_CYCLE_POOL_SIZE: the configuration cycle's pool blocks. */
const NGINX_CYCLE_POOL_BYTES = KiB(16);
/** Blocks the configuration fills, and its large allocations (hashes), approx. */
const NGINX_CYCLE_POOL_BLOCKS = 8;
const NGINX_CYCLE_LARGE: readonly [number, number] = [4096, KiB(16)];
const NGINX_CYCLE_LARGE_COUNT = 6;
/** worker_connections (default 512): the connection and event arrays of a worker. */
const NGINX_WORKER_CONNECTIONS = 512;
/** sizeof(ngx_connection_t), sizeof(ngx_event_t), approx. */
const NGINX_CONNECTION_BYTES = 232;
const NGINX_EVENT_BYTES = 96;
/** connection_pool_size: 64 * sizeof(void *). */
const NGINX_CONNECTION_POOL_BYTES = 64 * POINTER_BYTES;
/** request_pool_size. */
const NGINX_REQUEST_POOL_BYTES = 4096;
/** Blocks a request pool takes (ngx_http_request_t, header lists, ctx, variables), approx. */
const NGINX_REQUEST_POOL_BLOCKS = 2;
/** client_header_buffer_size. */
const NGINX_HEADER_BUFFER_BYTES = 1024;
/** wrk -c 30 (the Unikraft paper's nginx runs). */
const NGINX_CONNECTIONS = 30;
/** Requests each worker serves, our choice. */
const NGINX_REQUESTS_PER_WORKER = 700;
/** Parsing, the static handler, writing the response: ~10 us. */
const NGINX_REQUEST_CYCLES = 20_000;

const nginx: SmpWorkloadDescriptor = {
  name: "nginx",
  description: "Nginx serving a static 612-byte page to wrk over 30 keep-alive connections " +
    "(the Unikraft paper's runs, EuroSys 2021, fig. 15; unikraft/eurosys21-artifacts " +
    "experiments/common/nginx.sh), one worker per vCPU, connection c on worker c mod N. " +
    "vCPU 0 builds the configuration cycle: 8 pool blocks of 16 KiB (NGX_CYCLE_POOL_SIZE) " +
    "and 6 large allocations U[4 KiB, 16 KiB] (hashes), approx.; each worker then allocates " +
    "its connection and event arrays (worker_connections 512 x ~232 B and 2 x 512 x ~96 B, " +
    "approx.: 118784 and 49152 B) and a 512 B pool per connection (connection_pool_size " +
    "64 * sizeof(void *)). Per request: the 1 KiB header buffer (client_header_buffer_size, " +
    "freed when the connection goes idle by ngx_http_set_keepalive), a request pool of " +
    "4096 B blocks (request_pool_size; 2 blocks, approx.), ~20k cycles of work, the pool " +
    "destroyed at the end; 700 requests per worker; all frees on the allocating vCPU; " +
    "sizes 512..118784 B. Sources: nginx src/core/ngx_cycle.h, src/core/ngx_palloc.c, " +
    "src/http/ngx_http_core_module.c, src/http/ngx_http_request.c",
  create(prng, vcpus, scale) {
    checkRunArguments("nginx", vcpus, scale);
    const requests = scaled(NGINX_REQUESTS_PER_WORKER, scale);
    let configured = false;
    let finished = 0;
    return programRun("nginx", prng, vcpus, function* (cpu) {
      const cycle: number[] = [];
      if (cpu.index === 0) {
        for (let i = 0; i < NGINX_CYCLE_POOL_BLOCKS; i++) {
          cycle.push(yield* cpu.alloc(NGINX_CYCLE_POOL_BYTES));
          if (i < NGINX_CYCLE_LARGE_COUNT) {
            const [lo, hi] = NGINX_CYCLE_LARGE;
            cycle.push(yield* cpu.alloc(cpu.prng.intInclusive(lo, hi)));
          }
        }
        configured = true;
      }
      yield* cpu.waitUntil(() => configured, "the configuration cycle");
      const arrays = [ // ngx_event_process_init
        yield* cpu.alloc(NGINX_WORKER_CONNECTIONS * NGINX_CONNECTION_BYTES),
        yield* cpu.alloc(NGINX_WORKER_CONNECTIONS * NGINX_EVENT_BYTES),
        yield* cpu.alloc(NGINX_WORKER_CONNECTIONS * NGINX_EVENT_BYTES),
      ];
      const pools: number[] = [];
      for (let c = cpu.index; c < NGINX_CONNECTIONS; c += vcpus) {
        pools.push(yield* cpu.alloc(NGINX_CONNECTION_POOL_BYTES));
      }
      if (pools.length > 0) {
        for (let r = 0; r < requests; r++) {
          const header = yield* cpu.alloc(NGINX_HEADER_BUFFER_BYTES);
          const blocks: number[] = [];
          for (let b = 0; b < NGINX_REQUEST_POOL_BLOCKS; b++) {
            blocks.push(yield* cpu.alloc(NGINX_REQUEST_POOL_BYTES));
          }
          cpu.work(jittered(cpu.prng, NGINX_REQUEST_CYCLES));
          for (const block of blocks) yield* cpu.free(block); // ngx_destroy_pool
          yield* cpu.free(header);
        }
      }
      for (const pool of pools) yield* cpu.free(pool);
      for (const array of arrays) yield* cpu.free(array);
      finished++;
      if (cpu.index !== 0) return;
      yield* cpu.waitUntil(() => finished === vcpus, "the workers to exit");
      for (const handle of cycle) yield* cpu.free(handle);
    });
  },
};

// ---------------------------------------------------------------------------------
// sqlite: autocommitted INSERTs, one connection per vCPU

/** SQLITE_DEFAULT_LOOKASIDE 1200,40: one 48000-byte block at open (30 x 1200 + 93 x 128 slots). */
const SQLITE_LOOKASIDE_BYTES = 1200 * 40;
/** SQLITE_DEFAULT_PCACHE_INITSZ: pages of the bulk allocation at the first fetch. */
const SQLITE_PCACHE_INITSZ = 20;
/** szAlloc - szPage: MemPage + ROUND8(sizeof(PgHdr)) + ROUND8(sizeof(PgHdr1)), approx. */
const SQLITE_PAGE_EXTRA_BYTES = 272;
/** BITVEC_SZ: the journal's Bitvec, one per write transaction. */
const SQLITE_BITVEC_BYTES = 512;
/** cache_size -2000: 2000 KiB of pages. */
const SQLITE_CACHE_BYTES = KiB(2000);
/** pcache1ResizeHash: at least 256 slots, doubling when pages reach the slot count. */
const SQLITE_HASH_MIN_SLOTS = 256;
/** sizeof(sqlite3), approx. */
const SQLITE_CONNECTION_BYTES = 896;
/** Schema, hash tables, Pager and file handles at open, approx. */
const SQLITE_OPEN_OBJECTS = 12;
/** INSERTs per connection (the Unikraft benchmark ran 10..100000, 60000 by default). */
const SQLITE_INSERTS = 2000;
/** Row payload, our choice (the benchmark's schema is not in the artifact). */
const SQLITE_ROW_BYTES: readonly [number, number] = [100, 400];
/** An autocommitted INSERT: parse, execute, journal and commit in memory, ~10 us. */
const SQLITE_INSERT_CYCLES = 20_000;

const sqlite: SmpWorkloadDescriptor = {
  name: "sqlite",
  description: "SQLite running autocommitted INSERTs, as the Unikraft paper's benchmark " +
    "(EuroSys 2021, fig. 16: 10..100000 queries, 60000 by default; " +
    "unikraft/eurosys21-artifacts experiments/fig_16_unikraft-sqlite-alloc); one connection " +
    "and database per vCPU, 2000 INSERTs each, rows U[100,400] B (our choice). Sizes from " +
    "SQLite's source: the connection (~896 B, approx.), one 48000 B lookaside block " +
    "(SQLITE_DEFAULT_LOOKASIDE 1200,40: 30 x 1200 + 93 x 128 slots, so statement memory " +
    "never reaches malloc), 12 open-time objects U[32,512] (approx.), the pager's temp page, " +
    "the page cache's hash (8 B a slot, 256 slots, doubling) and pages of page size + " +
    "~272 B of headers (pcache1 szAlloc; page size 1024 or 4096, the defaults before and " +
    "since 3.12.0, drawn per connection), the first 20 from one bulk allocation " +
    "(SQLITE_DEFAULT_PCACHE_INITSZ), the rest one by one up to cache_size -2000 (2000 KiB), " +
    "then recycled; a 512 B Bitvec (BITVEC_SZ) per transaction; all frees on the " +
    "allocating vCPU; sizes 32..87360 B",
  create(prng, vcpus, scale) {
    checkRunArguments("sqlite", vcpus, scale);
    const inserts = scaled(SQLITE_INSERTS, scale);
    return programRun("sqlite", prng, vcpus, function* (cpu) {
      const pageBytes = cpu.prng.nextFloat() < 0.5 ? 1024 : 4096;
      const slotBytes = pageBytes + SQLITE_PAGE_EXTRA_BYTES; // pcache1's szAlloc
      const maxPages = Math.floor(SQLITE_CACHE_BYTES / slotBytes);
      const opened: number[] = [
        yield* cpu.alloc(SQLITE_CONNECTION_BYTES),
        yield* cpu.alloc(SQLITE_LOOKASIDE_BYTES),
      ];
      for (let i = 0; i < SQLITE_OPEN_OBJECTS; i++) {
        opened.push(yield* cpu.alloc(cpu.prng.intInclusive(32, 512)));
      }
      opened.push(yield* cpu.alloc(pageBytes)); // pTmpSpace
      let hashSlots = SQLITE_HASH_MIN_SLOTS;
      let hash = yield* cpu.alloc(hashSlots * POINTER_BYTES);
      const bulkPages = Math.min(SQLITE_PCACHE_INITSZ, maxPages);
      const bulk = yield* cpu.alloc(bulkPages * slotBytes);
      const pages: number[] = [];
      let cachedPages = 1;
      let rowBytes = 0;
      for (let i = 0; i < inserts; i++) {
        const bitvec = yield* cpu.alloc(SQLITE_BITVEC_BYTES); // pager_open_journal
        rowBytes += cpu.prng.intInclusive(SQLITE_ROW_BYTES[0], SQLITE_ROW_BYTES[1]);
        if (rowBytes > pageBytes) { // the leaf is full: a new page
          rowBytes = 0;
          if (cachedPages < maxPages) {
            cachedPages++;
            if (cachedPages > bulkPages) pages.push(yield* cpu.alloc(slotBytes));
            if (cachedPages >= hashSlots) { // pcache1ResizeHash
              const old = hash;
              hashSlots *= 2;
              hash = yield* cpu.alloc(hashSlots * POINTER_BYTES);
              yield* cpu.free(old);
            }
          }
        }
        cpu.work(jittered(cpu.prng, SQLITE_INSERT_CYCLES));
        yield* cpu.free(bitvec); // commit
      }
      for (const page of pages) yield* cpu.free(page); // sqlite3_close
      yield* cpu.free(bulk);
      yield* cpu.free(hash);
      for (let i = opened.length - 1; i >= 0; i--) yield* cpu.free(opened[i]!);
    });
  },
};

// ---------------------------------------------------------------------------------
// trace: replay of a trace with a vCPU column

/**
 * A workload that replays `trace` on the vCPUs its vCPU column names (a trace without
 * the column runs on vCPU 0).
 *
 * Each vCPU plays its own ops in file order. Ops of different vCPUs are ordered by one
 * rule only: a free waits until the allocation of its object has happened (its result
 * was reported), backing off with compute ops meanwhile; nothing else orders them, so
 * the vCPUs run concurrently as far as the trace allows. This never deadlocks: the file
 * order is a valid sequential order (the parser checks every free follows its
 * allocation), so the earliest op in the file not yet played can always run. A free
 * whose allocation was refused is skipped. Objects the trace leaves live are freed at
 * the end by the vCPU that allocated them, after its own ops. The seed and the scale
 * do not change a replay.
 *
 * @param trace the trace (from {@link parseTrace} or built in code)
 * @returns a descriptor named `trace:<name>`
 * @throws {RangeError} at `create` if the trace names a vCPU the guest does not have,
 *   and here if the trace frees an id that is not live (only traces built in code can)
 *
 * @example
 * ```ts
 * import { traceWorkload } from "./smp_workloads.ts";
 * import { parseTrace } from "../src/trace.ts";
 * import { Prng } from "../src/prng.ts";
 * import assert from "node:assert/strict";
 * const run = traceWorkload(parseTrace("a x 64 0\nf x 1\n", "t")).create(new Prng(1), 2, 1);
 * assert.deepEqual(run.next(0), { kind: "alloc", handle: 0, size: 64 });
 * run.allocated(0, true);
 * assert.deepEqual(run.next(1), { kind: "free", handle: 0 }); // freed by vCPU 1
 * assert.equal(run.next(0), null);
 * assert.equal(run.next(1), null);
 * ```
 */
export function traceWorkload(trace: Trace): SmpWorkloadDescriptor {
  const name = `trace:${trace.name}`;
  const n = trace.opCount;
  const vcpuOf = trace.vcpus ?? new Uint16Array(n);
  // Each free's allocation, each id's current allocation, in file order.
  const allocOf = new Int32Array(n).fill(-1);
  const current = new Int32Array(trace.idCount).fill(-1);
  let vcpuMax = 0;
  for (let i = 0; i < n; i++) {
    const id = trace.ids[i]!;
    vcpuMax = Math.max(vcpuMax, vcpuOf[i]!);
    if (trace.kinds[i] === OP_ALLOC) {
      if (current[id] !== -1) {
        throw new RangeError(
          `Invalid trace ${trace.name}: op ${i} allocates id ${id}, which is live`,
        );
      }
      current[id] = i;
    } else {
      if (current[id] === -1) {
        throw new RangeError(
          `Invalid trace ${trace.name}: op ${i} frees id ${id}, which is not live`,
        );
      }
      allocOf[i] = current[id]!;
      current[id] = -1;
    }
  }
  return {
    name,
    description: `replay of trace ${trace.name} (${n} ops on vCPUs 0..${vcpuMax}): each vCPU ` +
      "plays its ops in file order, a free waits until its allocation has happened",
    create(prng, vcpus, scale) {
      checkRunArguments(name, vcpus, scale);
      if (vcpuMax >= vcpus) {
        throw new RangeError(
          `Trace ${trace.name} has ops on vCPU ${vcpuMax}: the guest needs at least ${
            vcpuMax + 1
          } vCPUs, not ${vcpus}`,
        );
      }
      const handleOf = new Int32Array(n).fill(-1); // alloc op -> its handle
      const opsOf = Array.from({ length: vcpus }, () => [] as number[]); // in file order
      for (let i = 0; i < n; i++) opsOf[vcpuOf[i]!]!.push(i);
      const leftover = Array.from({ length: vcpus }, () => [] as number[]); // alloc ops
      for (const i of current) if (i >= 0) leftover[vcpuOf[i]!]!.push(i);
      return programRun(name, prng, vcpus, function* (cpu) {
        const handles = cpu.handles;
        for (const i of opsOf[cpu.index]!) {
          if (trace.kinds[i] === OP_ALLOC) {
            const op = handles.alloc(trace.sizes[i]!);
            handleOf[i] = op.handle;
            yield op;
          } else {
            const a = allocOf[i]!;
            yield* cpu.waitUntil(
              () => handles.settled(handleOf[a]!),
              `the allocation of id ${trace.ids[i]} (op ${a}) on vCPU ${vcpuOf[a]}`,
            );
            if (!handles.refused(handleOf[a]!)) yield* cpu.free(handleOf[a]!);
          }
        }
        for (const a of leftover[cpu.index]!) {
          if (!handles.refused(handleOf[a]!)) yield* cpu.free(handleOf[a]!);
        }
      });
    },
  };
}

/** Of a trace's ops, the share freed on another vCPU than the allocating one. */
const TRACE_CROSS_FREE_SHARE = 0.5;

const traceDemo: SmpWorkloadDescriptor = {
  name: "trace",
  description: "replay of a trace with a vCPU column (traceWorkload; for a trace file, use " +
    "traceWorkload(parseTrace(text))): here the single-vCPU `compcache` workload at scale " +
    "0.25 with each allocation on a random vCPU and half of the frees on another random " +
    "vCPU, written in the trace format and parsed back; sizes 100..4096 B",
  create(prng, vcpus, scale) {
    checkRunArguments("trace", vcpus, scale);
    const built = workloadDescriptor("compcache").generate(new Prng(prng.nextU32()), 0.25 * scale);
    const spread = new Prng(deriveSeed(prng.nextU32(), "vcpus"));
    const vcpuOfId = new Uint16Array(built.idCount);
    const vcpuOfOp = new Uint16Array(built.opCount);
    for (let i = 0; i < built.opCount; i++) {
      const id = built.ids[i]!;
      if (built.kinds[i] === OP_ALLOC) {
        vcpuOfId[id] = spread.index(vcpus);
        vcpuOfOp[i] = vcpuOfId[id]!;
      } else {
        vcpuOfOp[i] = spread.nextFloat() < TRACE_CROSS_FREE_SHARE
          ? spread.index(vcpus)
          : vcpuOfId[id]!;
      }
    }
    const text = formatTrace({ ...built, vcpus: vcpuOfOp });
    return traceWorkload(parseTrace(text, "compcache-smp")).create(prng, vcpus, 1);
  },
};

// ---------------------------------------------------------------------------------
// Registry

/** Every workload for guests with several vCPUs, in the order reports print them. */
export const SMP_WORKLOADS: readonly SmpWorkloadDescriptor[] = [
  nearPage,
  compcache,
  cacheThrash,
  cacheScratch,
  larson,
  xmallocTest,
  mstress,
  boot,
  redis,
  nginx,
  sqlite,
  traceDemo,
];

/** Names of every workload for guests with several vCPUs. */
export const SMP_WORKLOAD_NAMES: readonly string[] = SMP_WORKLOADS.map((w) => w.name);

/**
 * The workload for guests with several vCPUs called `name`.
 *
 * @throws {RangeError} naming the known workloads if there is none
 *
 * @example
 * ```ts
 * import { smpWorkloadDescriptor } from "./smp_workloads.ts";
 * import assert from "node:assert/strict";
 * assert.equal(smpWorkloadDescriptor("larson").name, "larson");
 * assert.throws(() => smpWorkloadDescriptor("nope"), /expected one of near-page, /);
 * ```
 */
export function smpWorkloadDescriptor(name: string): SmpWorkloadDescriptor {
  const found = SMP_WORKLOADS.find((w) => w.name === name);
  if (!found) {
    throw new RangeError(
      `Unknown SMP workload "${name}": expected one of ${SMP_WORKLOAD_NAMES.join(", ")}`,
    );
  }
  return found;
}
