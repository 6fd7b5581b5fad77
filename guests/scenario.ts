/**
 * Scenarios: several guest unikernels, each with vCPUs running a workload, asking one
 * hypervisor for memory through its control plane; run once per engine and compared.
 *
 * A run builds a fresh hypervisor with the engine under test, its control plane, and
 * for every guest a tenant and a domain (whose pool uses that engine). Every vCPU of
 * every guest is interleaved by one discrete-event scheduler on virtual time
 * (`guests/scheduler.ts`): the vCPU with the earliest clock runs its next operation,
 * which travels as a control-plane request carrying the vCPU's virtual time
 * (`at_cycles`), so the hypervisor models lock wait; the vCPU's clock advances by the
 * operation's modelled cycles plus its lock wait. One seed decides everything.
 *
 * Measurements per guest, defined here once: operations and failures by cause; peak
 * pages held and the overhead ratio (peak pages x 4 KiB / peak live requested bytes,
 * as in trace replay); latency as the vCPU sees it (modelled cycles + lock wait:
 * p50/p99/p99.9/max, overall and per vCPU); lock wait; cache-line transfers; false
 * sharing (lines holding live objects of two vCPUs); boot cycles; the makespan (the
 * last vCPU's clock). Host wall-clock time is reported apart.
 *
 * @module
 */

import { z } from "zod";
import { deriveSeed, Prng, SEED_MAX } from "../src/prng.ts";
import { IntegerHistogram, type Percentiles, roundTo } from "../src/stats.ts";
import { MiB, PAGE_SIZE_BYTES } from "../src/units.ts";
import { assertMachineBytes, Hypervisor } from "../hypervisor/hypervisor.ts";
import { createControlPlane } from "../hypervisor/control_plane/app.ts";
import type { AllocFailureCause } from "../hypervisor/xmalloc/engine.ts";
import { ENGINE_NAMES } from "../hypervisor/xmalloc/registry.ts";
import { ControlPlaneClient, type DomainInfo, type FetchLike } from "./client.ts";
import { VcpuScheduler } from "./scheduler.ts";
import { OwnHeap, OwnHeapBootError, type OwnHeapOpResult, type OwnHeapStats } from "./own_heap.ts";
import {
  SMP_WORKLOADS,
  smpWorkloadDescriptor,
  type SmpWorkloadRun,
  traceWorkload,
} from "./smp_workloads.ts";
import { type ParsedTrace, parseTrace } from "../src/trace.ts";

/** Most operations one run may execute (a bound on every loop). */
export const SCENARIO_OPS_MAX = 5_000_000;

/**
 * A scenario that is well formed but cannot run as given (an own heap's boot refused,
 * more operations than {@link SCENARIO_OPS_MAX}): the user's to change, not a bug.
 */
export class ScenarioError extends Error {
  /** The error's name. */
  override name = "ScenarioError";
}

const guestSchema = z.strictObject({
  name: z.string().regex(/^[A-Za-z0-9._-]{1,64}$/, "1..64 letters, digits, '.', '_' or '-'"),
  vcpus: z.number().int().min(1).max(64),
  max_pages: z.number().int().min(1).max(2 ** 31),
  workload: z.string().refine((w) => SMP_WORKLOADS.some((d) => d.name === w), {
    message: `expected one of ${SMP_WORKLOADS.map((d) => d.name).join(", ")}`,
  }),
  trace_file: z.string().min(1).max(4096).optional(),
  scale: z.number().min(0.01).max(100).default(1),
  heap: z.union([
    z.literal("hypervisor"),
    z.strictObject({
      own: z.enum(ENGINE_NAMES as [string, ...string[]]),
      initial_pages: z.number().int().min(1).max(2 ** 31).default(64),
      grow_pages: z.number().int().min(0).max(2 ** 31).default(32),
    }),
  ]).default("hypervisor"),
});

/** A scenario as JSON: what `--scenario FILE` reads. */
export const ScenarioSchema = z.strictObject({
  name: z.string().min(1).max(64),
  seed: z.number().int().min(0).max(SEED_MAX).default(42),
  machine_mib: z.number().int().min(1).max(8 * 1024 * 1024).default(1024),
  engines: z.array(z.enum(ENGINE_NAMES as [string, ...string[]])).min(1).default([...ENGINE_NAMES])
    .refine((e) => new Set(e).size === e.length, { message: "an engine is named twice" }),
  guests: z.array(guestSchema).min(1).max(64)
    .refine((g) => new Set(g.map((x) => x.name)).size === g.length, {
      message: "two guests share a name",
    }),
});

/** One guest of a scenario. */
export interface GuestSpec {
  /** Name (also its tenant's and domain's). */
  name: string;
  /** vCPUs, 1..64. */
  vcpus: number;
  /** The domain's page quota. */
  max_pages: number;
  /** An SMP workload name (see SMP_WORKLOADS). */
  workload: string;
  /** For workload "trace": the per-vCPU trace file (relative to the scenario file). */
  trace_file?: string | undefined;
  /** Multiplies the workload's length. */
  scale: number;
  /** Memory from the hypervisor's heap, or an own heap on reserved pages. */
  heap: "hypervisor" | { own: string; initial_pages: number; grow_pages: number };
}

/** A scenario (after defaults). */
export interface Scenario {
  /** Name. */
  name: string;
  /** The seed of every run. */
  seed: number;
  /** Machine size. */
  machine_mib: number;
  /** Engines of the hypervisor's pools, one run each. */
  engines: string[];
  /** The guests. */
  guests: GuestSpec[];
}

type Same<A, B> = [A] extends [B] ? ([B] extends [A] ? true : false) : false;
const agree = <T extends true>(): T => true as T;
agree<Same<z.output<typeof ScenarioSchema>, Scenario>>(); // the schema and the type agree

/**
 * Read a scenario from JSON text.
 *
 * @throws {RangeError} saying which field is wrong and why
 */
export function parseScenario(text: string, source = "scenario"): Scenario {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    throw new RangeError(`Invalid scenario ${source}: not JSON: ${(e as Error).message}`);
  }
  const parsed = ScenarioSchema.safeParse(json);
  if (!parsed.success) {
    const why = parsed.error.issues.map((i) => `${i.path.join(".") || "(root)"}: ${i.message}`)
      .join("; ");
    throw new RangeError(`Invalid scenario ${source}: ${why}`);
  }
  assertMachineBytes(MiB(parsed.data.machine_mib));
  const base = source.includes("/") ? source.slice(0, source.lastIndexOf("/") + 1) : "";
  parsed.data.guests.forEach((g, i) => {
    if (g.heap !== "hypervisor" && g.heap.initial_pages > g.max_pages) {
      throw new RangeError(
        `Invalid scenario ${source}: guests.${i}.heap.initial_pages: ${g.heap.initial_pages} is more than max_pages ${g.max_pages}`,
      );
    }
    if (g.workload === "trace" && g.trace_file === undefined) {
      throw new RangeError(
        `Invalid scenario ${source}: guests.${i}.trace_file: workload "trace" needs one`,
      );
    }
    if (g.trace_file === undefined) return;
    if (g.workload !== "trace") {
      throw new RangeError(
        `Invalid scenario ${source}: guests.${i}.trace_file: only with workload "trace"`,
      );
    }
    // Relative to the scenario file; read and checked now, so a bad line stops the run
    // before it starts.
    const path = g.trace_file.startsWith("/") ? g.trace_file : base + g.trace_file;
    g.trace_file = path;
    const trace = loadTrace(path, `guests.${i}.trace_file`, source);
    const vcpuMax = trace.vcpus.reduce((m, v) => Math.max(m, v), 0);
    if (vcpuMax >= g.vcpus) {
      throw new RangeError(
        `Invalid scenario ${source}: guests.${i}.trace_file: ${path} uses vCPU ${vcpuMax}, the guest has ${g.vcpus}`,
      );
    }
  });
  return parsed.data;
}

/** Read and parse a guest's trace file (errors name the scenario and the field). */
function loadTrace(path: string, field: string, source: string): ParsedTrace {
  let text: string;
  try {
    text = Deno.readTextFileSync(path);
  } catch (e) {
    throw new RangeError(
      `Invalid scenario ${source}: ${field}: cannot read ${path}: ${(e as Error).message}`,
    );
  }
  try {
    return parseTrace(text, path.replace(/^.*\//, "").replace(/\.trace$/, ""), path);
  } catch (e) {
    throw new RangeError(`Invalid scenario ${source}: ${field}: ${(e as Error).message}`);
  }
}

/**
 * The default scenario: a tmem-heavy guest putting near-page objects into the
 * hypervisor, an Nginx-like and a Redis-like guest, several vCPUs each.
 */
export const DEFAULT_SCENARIO: Scenario = ScenarioSchema.parse({
  name: "multi-tenant",
  guests: [
    { name: "tmem", vcpus: 2, max_pages: 8192, workload: "near-page" },
    { name: "nginx", vcpus: 4, max_pages: 8192, workload: "nginx" },
    { name: "redis", vcpus: 2, max_pages: 8192, workload: "redis" },
  ],
});

/** Percentiles of latency in cycles (src/stats.ts). */
export type LatencyPercentiles = Percentiles;

/** What one guest did on one engine. */
export interface GuestResult {
  /** Guest name. */
  guest: string;
  /** Its workload. */
  workload: string;
  /** Its vCPUs. */
  vcpus: number;
  /** Allocator calls (allocations, frees). */
  ops: number;
  /** Allocations not served, by cause. */
  failures: Record<AllocFailureCause, number>;
  /** Most pages the guest's pool held. */
  peak_pages: number;
  /** Most requested bytes live at once. */
  peak_live_requested_bytes: number;
  /** peak_pages * 4 KiB / peak_live_requested_bytes (0 when nothing was live). */
  overhead_ratio: number;
  /** Latency as the vCPU sees it: modelled cycles + lock wait. */
  latency_cycles: LatencyPercentiles;
  /** The same latencies as [cycles, calls] pairs, ascending (for CDF charts). */
  latency_histogram: [number, number][];
  /** Per vCPU: latency percentiles and cycles waited for locks. */
  per_vcpu: {
    vcpu: number;
    ops: number;
    lock_wait_cycles: number;
    latency_cycles: LatencyPercentiles;
  }[];
  /** Cycles waited for locks in all. */
  lock_wait_cycles: number;
  /** Pool lock acquisitions that had to wait. */
  lock_contended: number;
  /** Cache lines pulled from another vCPU's cache. */
  cache_line_transfers: number;
  /** Most 64-byte lines holding live objects of two or more vCPUs at once. */
  false_sharing_peak_lines: number;
  /** Allocations that put an object on a line another vCPU's live object was on. */
  false_sharing_events: number;
  /** The last vCPU's clock at the end. */
  makespan_cycles: number;
  /** Where the guest's memory came from: "hypervisor" or "own:<engine>". */
  heap: string;
  /** Cycles before the vCPUs start: the own heap's reservation and initialisation. */
  boot_cycles: number;
}

/** One engine's run of a scenario. */
export interface EngineRunResult {
  /** The engine of the hypervisor's pools. */
  engine: string;
  /** Every guest's figures, in scenario order. */
  guests: GuestResult[];
  /** Host wall-clock ns per operation (requests included); absent with timing off. */
  host_ns_per_op?: number;
}

/** A scenario run on every engine. */
export interface ScenarioResult {
  /** Scenario name. */
  scenario: string;
  /** The seed that reproduces it. */
  seed: number;
  /** Machine size. */
  machine_mib: number;
  /** Engines run, in order. */
  engines: string[];
  /** The guests as specified. */
  guests: GuestSpec[];
  /** One run per engine. */
  runs: EngineRunResult[];
}

/** How to run. */
export interface RunOptions {
  /** Measure host wall-clock time (default true). */
  timing?: boolean;
  /** Called as the run proceeds, for progress displays. */
  onProgress?: (done: number, total: number, label: string) => void;
  /**
   * Send requests over a real server instead of in process: `(app) => FetchLike`
   * starts serving `app` and returns what sends to it (tests and `--listen`).
   */
  transport?: (
    app: { fetch: FetchLike },
  ) => Promise<{ send: FetchLike; baseUrl: string; close(): Promise<void> }>;
  /** With a transport: each guest in a Worker of its own (real concurrency between guests). */
  workers?: boolean;
  /**
   * Called after every in-process control-plane request with the engine and the
   * hypervisor (reports take the page map at the peak this way). Not with a transport.
   */
  observe?: (engine: string, hv: Hypervisor) => void;
}

const ADMIN_TOKEN = "scenario-admin-token-0000";

/** An own heap's outcome in the shape of a control-plane result. */
function own(r: OwnHeapOpResult) {
  return {
    ok: r.ok,
    address: r.address,
    cause: r.cause,
    cycles: r.cycles,
    lock_wait_cycles: r.lockWaitCycles,
  };
}

/** Per-guest state while a run goes on. */
export interface GuestState {
  spec: GuestSpec;
  client: ControlPlaneClient;
  domainId: number;
  own: OwnHeap | null;
  run: SmpWorkloadRun;
  firstVcpu: number;
  handles: Map<number, { address: number; size: number }>;
  liveBytes: number;
  peakLiveBytes: number;
  ops: number;
  failures: Record<AllocFailureCause, number>;
  latency: IntegerHistogram;
}

/** What a guest's driver measured (guest-side figures), in every transport. */
export interface GuestRunFigures {
  ops: number;
  failures: Record<AllocFailureCause, number>;
  peakLiveBytes: number;
  /** Latency histogram counts, as [cycles, count] pairs. */
  latency: [number, number][];
  makespanCycles: number;
  bootCycles: number;
  /** The own heap's figures at the end (before shutdown), if the guest has one. */
  own: OwnHeapStats | null;
}

/** Boot one guest whose tenant and domain exist: its own heap (if any) and workload. */
async function bootGuest(
  spec: GuestSpec,
  seed: number,
  client: ControlPlaneClient,
  domainId: number,
  firstVcpu: number,
): Promise<GuestState> {
  const prng = new Prng(deriveSeed(seed, `${spec.name}/${spec.workload}`));
  let own: OwnHeap | null = null;
  if (spec.heap !== "hypervisor") {
    try {
      own = await OwnHeap.boot(client, domainId, {
        engine: spec.heap.own,
        vcpus: spec.vcpus,
        initialPages: spec.heap.initial_pages,
        growPages: spec.heap.grow_pages,
        atCycles: 0,
      });
    } catch (e) {
      if (!(e instanceof OwnHeapBootError)) throw e;
      throw new ScenarioError(`Guest ${spec.name}: its own heap could not boot: ${e.message}`);
    }
  }
  return {
    spec,
    client,
    domainId,
    own,
    run:
      (spec.trace_file !== undefined
        ? traceWorkload(loadTrace(spec.trace_file, "trace_file", spec.name))
        : smpWorkloadDescriptor(spec.workload)).create(prng, spec.vcpus, spec.scale),
    firstVcpu,
    handles: new Map(),
    liveBytes: 0,
    peakLiveBytes: 0,
    ops: 0,
    failures: { exhaustion: 0, contiguity: 0, quota: 0, unservable: 0 },
    latency: new IntegerHistogram(),
  };
}

/**
 * Drive `guests`' vCPUs to the end on one virtual-time scheduler; returns the figures
 * per guest (after its own heap, if any, is shut down) and the operation count.
 */
export async function driveGuests(guests: GuestState[], seed: number): Promise<GuestRunFigures[]> {
  const owner: GuestState[] = [];
  for (const g of guests) for (let v = 0; v < g.spec.vcpus; v++) owner.push(g);
  const scheduler = new VcpuScheduler(owner.length);
  for (const g of guests) { // a guest's vCPUs start once its heap has booted
    const boot = g.own?.bootCycles ?? 0;
    for (let v = 0; v < g.spec.vcpus; v++) scheduler.advance(g.firstVcpu + v, boot);
  }
  let ops = 0;
  for (let v = scheduler.peek(); v >= 0; v = scheduler.peek()) {
    const g = owner[v]!;
    const local = v - g.firstVcpu;
    const op = g.run.next(local);
    if (op === null) {
      scheduler.park(v);
      continue;
    }
    if (++ops > SCENARIO_OPS_MAX) {
      throw new ScenarioError(
        `The scenario ran over ${SCENARIO_OPS_MAX} operations: lower a guest's scale or vCPUs`,
      );
    }
    const at = scheduler.clock(v);
    if (op.kind === "compute") {
      scheduler.advance(v, op.cycles);
      continue;
    }
    let cost: number;
    if (op.kind === "alloc") {
      const r = g.own
        ? own(await g.own.allocate(op.size, 1, local, at))
        : await g.client.alloc(g.domainId, { size: op.size, vcpu: local, at_cycles: at });
      g.run.allocated(op.handle, r.ok);
      if (r.ok) {
        g.handles.set(op.handle, { address: r.address, size: op.size });
        g.liveBytes += op.size;
        if (g.liveBytes > g.peakLiveBytes) g.peakLiveBytes = g.liveBytes;
      } else {
        g.failures[r.cause!]++;
      }
      cost = r.cycles + r.lock_wait_cycles;
    } else {
      const block = g.handles.get(op.handle);
      if (block === undefined) {
        throw new Error(
          `Workload ${g.spec.workload} (seed ${seed}) freed handle ${op.handle}, not live`,
        );
      }
      const r = g.own
        ? own(g.own.free(block.address, local, at))
        : await g.client.free(g.domainId, { address: block.address, vcpu: local, at_cycles: at });
      g.handles.delete(op.handle);
      g.liveBytes -= block.size;
      cost = r.cycles + r.lock_wait_cycles;
    }
    g.ops++;
    g.latency.add(cost);
    scheduler.advance(v, cost);
  }
  const figures: GuestRunFigures[] = [];
  for (const g of guests) {
    if (g.handles.size !== 0) {
      throw new Error(
        `Workload ${g.spec.workload} (seed ${seed}) ended with ${g.handles.size} live objects`,
      );
    }
    let makespan = 0;
    for (let v = 0; v < g.spec.vcpus; v++) {
      makespan = Math.max(makespan, scheduler.clock(g.firstVcpu + v));
    }
    const ownStats = g.own?.stats() ?? null;
    await g.own?.shutdown();
    figures.push({
      ops: g.ops,
      failures: g.failures,
      peakLiveBytes: g.peakLiveBytes,
      latency: g.latency.entries(),
      makespanCycles: makespan,
      bootCycles: g.own?.bootCycles ?? 0,
      own: ownStats,
    });
  }
  return figures;
}

/** Run one guest in a Worker over HTTP (`--listen`): real concurrency between guests. */
function driveInWorker(
  spec: GuestSpec,
  seed: number,
  baseUrl: string,
  token: string,
  domainId: number,
): Promise<GuestRunFigures> {
  const worker = new Worker(new URL("./_guest_worker.ts", import.meta.url).href, {
    type: "module",
  });
  return new Promise((resolve, reject) => {
    worker.onmessage = (e: MessageEvent) => {
      worker.terminate();
      if (e.data.userError) reject(new ScenarioError(e.data.userError));
      else if (e.data.error) {
        reject(new Error(`Guest ${spec.name} failed in its worker: ${e.data.error}`));
      } else resolve(e.data.figures as GuestRunFigures);
    };
    worker.onerror = (e) => {
      worker.terminate();
      e.preventDefault();
      reject(new Error(`Guest ${spec.name} failed in its worker: ${e.message}`));
    };
    worker.postMessage({ spec, seed, baseUrl, token, domainId });
  });
}

/** The guest's figures, from the driver and the hypervisor's view of its domain. */
function guestResult(spec: GuestSpec, f: GuestRunFigures, d: DomainInfo): GuestResult {
  // The guest's memory as the machine sees it: the domain's pool, or for an own heap
  // the reservation (it only grows until shutdown, so its end is its peak).
  const smp = f.own ? f.own.smp : d.smp;
  const peakPages = f.own ? f.own.reserved_pages : d.peak_pages;
  const histogram = IntegerHistogram.fromEntries(f.latency);
  return {
    guest: spec.name,
    workload: spec.workload,
    vcpus: spec.vcpus,
    ops: f.ops,
    failures: f.failures,
    peak_pages: peakPages,
    peak_live_requested_bytes: f.peakLiveBytes,
    overhead_ratio: f.peakLiveBytes === 0
      ? 0
      : roundTo((peakPages * PAGE_SIZE_BYTES) / f.peakLiveBytes, 6),
    latency_cycles: histogram.summary(),
    latency_histogram: f.latency,
    per_vcpu: smp.per_vcpu,
    lock_wait_cycles: smp.per_vcpu.reduce((s, p) => s + p.lock_wait_cycles, 0),
    lock_contended: smp.pool_lock.contended,
    cache_line_transfers: smp.cache_line_transfers,
    false_sharing_peak_lines: smp.false_sharing.peak_shared_lines,
    false_sharing_events: smp.false_sharing.events,
    makespan_cycles: f.makespanCycles,
    heap: spec.heap === "hypervisor" ? "hypervisor" : `own:${spec.heap.own}`,
    boot_cycles: f.bootCycles,
  };
}

/**
 * Run `scenario` with every hypervisor pool on `engine`. In process (the default) every
 * vCPU of every guest is on one scheduler: one seed, one interleaving. With
 * `workers` (and a transport), each guest runs in a Worker over HTTP: guests really run
 * concurrently, each still on its own virtual clock.
 *
 * @throws {Error} if an invariant breaks (a bug), naming the seed
 */
export async function runScenarioOnEngine(
  scenario: Scenario,
  engine: string,
  options: RunOptions = {},
): Promise<EngineRunResult> {
  const hv = new Hypervisor({ engine, machineBytes: MiB(scenario.machine_mib) });
  const inWorkers = options.workers === true && options.transport !== undefined;
  hv.tenancy.modelHeapLock = !inWorkers; // guests in Workers: one clock each
  const { app } = createControlPlane(hv, { adminToken: ADMIN_TOKEN });
  const served = options.transport ? await options.transport(app) : undefined;
  const observe = options.observe;
  const send: FetchLike = served ? served.send : observe
    ? async (r) => {
      const response = await app.fetch(r);
      observe(engine, hv);
      return response;
    }
    : (r) => app.fetch(r);
  const baseUrl = served?.baseUrl ?? "http://heapvisor.invalid";
  try {
    const admin = new ControlPlaneClient(send, baseUrl, ADMIN_TOKEN);
    const domains: { client: ControlPlaneClient; token: string; domainId: number }[] = [];
    for (const spec of scenario.guests) {
      const tenant = await admin.createTenant({
        name: spec.name,
        max_domains: 1,
        max_pages: spec.max_pages,
      });
      const client = admin.withToken(tenant.token);
      const domain = await client.createDomain({
        name: spec.name,
        vcpus: spec.vcpus,
        max_pages: spec.max_pages,
      });
      domains.push({ client, token: tenant.token, domainId: domain.id });
    }
    const t0 = performance.now();
    let figures: GuestRunFigures[];
    if (inWorkers && served) {
      figures = await Promise.all(
        scenario.guests.map((spec, i) =>
          driveInWorker(
            spec,
            scenario.seed,
            served.baseUrl,
            domains[i]!.token,
            domains[i]!.domainId,
          )
        ),
      );
    } else {
      const guests: GuestState[] = [];
      let first = 0;
      for (const [i, spec] of scenario.guests.entries()) {
        guests.push(
          await bootGuest(spec, scenario.seed, domains[i]!.client, domains[i]!.domainId, first),
        );
        first += spec.vcpus;
      }
      figures = await driveGuests(guests, scenario.seed);
    }
    const ops = figures.reduce((s, f) => s + f.ops, 0);
    const hostNs = ((performance.now() - t0) * 1e6) / Math.max(ops, 1);
    const results: GuestResult[] = [];
    for (const [i, spec] of scenario.guests.entries()) {
      const { client, domainId } = domains[i]!;
      results.push(guestResult(spec, figures[i]!, await client.domain(domainId)));
      await client.destroyDomain(domainId);
      if (hv.pages.pagesOwnedBy(domainId) !== 0) {
        throw new Error(
          `Domain ${domainId} kept pages after it was destroyed (seed ${scenario.seed})`,
        );
      }
    }
    const problems = hv.pages.check();
    if (problems.length > 0) throw new Error(`Page allocator broken after the run: ${problems[0]}`);
    const out: EngineRunResult = { engine, guests: results };
    if (options.timing ?? true) out.host_ns_per_op = roundTo(hostNs, 1);
    return out;
  } finally {
    await served?.close();
  }
}

/** Boot and drive one guest (the body of a guest Worker). */
export async function runGuestOverHttp(
  spec: GuestSpec,
  seed: number,
  baseUrl: string,
  token: string,
  domainId: number,
): Promise<GuestRunFigures> {
  const client = ControlPlaneClient.overHttp(baseUrl, token);
  const guest = await bootGuest(spec, seed, client, domainId, 0);
  return (await driveGuests([guest], seed))[0]!;
}

/** Run `scenario` once per engine it names. */
export async function runScenario(
  scenario: Scenario,
  options: RunOptions = {},
): Promise<ScenarioResult> {
  const runs: EngineRunResult[] = [];
  for (const [i, engine] of scenario.engines.entries()) {
    options.onProgress?.(i, scenario.engines.length, engine);
    runs.push(await runScenarioOnEngine(scenario, engine, options));
  }
  return {
    scenario: scenario.name,
    seed: scenario.seed,
    machine_mib: scenario.machine_mib,
    engines: [...scenario.engines],
    guests: scenario.guests,
    runs,
  };
}

/** Which own-heap allocator wins for which guest. */
export interface SpecialisationResult {
  /** Scenario name. */
  scenario: string;
  /** The seed that reproduces it. */
  seed: number;
  /** Own-heap engines tried. */
  engines: string[];
  /** Per guest, per engine: the guest's figures with that own heap. */
  guests: { guest: string; workload: string; results: GuestResult[] }[];
}

/**
 * Run every guest of `scenario` on its own heap with each of `engines` (the
 * Unikraft question: which allocator for which unikernel), the hypervisor's pools on
 * `tlsf`. The guests of one run share the machine as in the scenario.
 */
export async function runSpecialisation(
  scenario: Scenario,
  engines: readonly string[],
  options: RunOptions = {},
): Promise<SpecialisationResult> {
  const perEngine: EngineRunResult[] = [];
  for (const [i, engine] of engines.entries()) {
    options.onProgress?.(i, engines.length, `own heaps on ${engine}`);
    const guests = scenario.guests.map((g) => ({
      ...g,
      heap: {
        own: engine,
        initial_pages: g.heap === "hypervisor" ? 64 : g.heap.initial_pages,
        grow_pages: g.heap === "hypervisor" ? 32 : g.heap.grow_pages,
      },
    }));
    perEngine.push(await runScenarioOnEngine({ ...scenario, guests }, "tlsf", options));
  }
  return {
    scenario: scenario.name,
    seed: scenario.seed,
    engines: [...engines],
    guests: scenario.guests.map((g, i) => ({
      guest: g.name,
      workload: g.workload,
      results: perEngine.map((run) => run.guests[i]!),
    })),
  };
}
