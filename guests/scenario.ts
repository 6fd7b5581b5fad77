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
import { IntegerHistogram, roundTo } from "../src/stats.ts";
import { MiB, PAGE_SIZE_BYTES } from "../src/units.ts";
import { assertMachineBytes, Hypervisor } from "../hypervisor/hypervisor.ts";
import { createControlPlane } from "../hypervisor/control_plane/app.ts";
import type { AllocFailureCause } from "../hypervisor/xmalloc/engine.ts";
import { ENGINE_NAMES } from "../hypervisor/xmalloc/registry.ts";
import { ControlPlaneClient, type FetchLike } from "./client.ts";
import { VcpuScheduler } from "./scheduler.ts";
import { OwnHeap, type OwnHeapOpResult } from "./own_heap.ts";
import { SMP_WORKLOADS, smpWorkloadDescriptor, type SmpWorkloadRun } from "./smp_workloads.ts";

/** Most operations one run may execute (a bound on every loop). */
export const SCENARIO_OPS_MAX = 5_000_000;

const guestSchema = z.strictObject({
  name: z.string().regex(/^[A-Za-z0-9._-]{1,64}$/, "1..64 letters, digits, '.', '_' or '-'"),
  vcpus: z.number().int().min(1).max(64),
  max_pages: z.number().int().min(1).max(2 ** 31),
  workload: z.string().refine((w) => SMP_WORKLOADS.some((d) => d.name === w), {
    message: `expected one of ${SMP_WORKLOADS.map((d) => d.name).join(", ")}`,
  }),
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

/** A scenario (after defaults). */
export type Scenario = z.output<typeof ScenarioSchema>;
/** One guest of a scenario. */
export type GuestSpec = Scenario["guests"][number];

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
  return parsed.data;
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

/** Percentiles of latency in cycles. */
export interface LatencyPercentiles {
  /** Median. */
  p50: number;
  /** 99th percentile. */
  p99: number;
  /** 99.9th percentile. */
  p999: number;
  /** Largest. */
  max: number;
}

/** What one guest did on one engine. */
export interface GuestResult {
  guest: string;
  workload: string;
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
  engine: string;
  guests: GuestResult[];
  /** Host wall-clock ns per operation (requests included); absent with timing off. */
  host_ns_per_op?: number;
}

/** A scenario run on every engine. */
export interface ScenarioResult {
  scenario: string;
  seed: number;
  machine_mib: number;
  engines: string[];
  guests: GuestSpec[];
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

function latency(h: IntegerHistogram): LatencyPercentiles {
  return { p50: h.percentile(0.5), p99: h.percentile(0.99), p999: h.percentile(0.999), max: h.max };
}

/** Per-guest state while a run goes on. */
interface GuestState {
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

/**
 * Run `scenario` with every hypervisor pool on `engine`.
 *
 * @throws {Error} if an invariant breaks (a bug), naming the seed
 */
export async function runScenarioOnEngine(
  scenario: Scenario,
  engine: string,
  options: RunOptions = {},
): Promise<EngineRunResult> {
  const hv = new Hypervisor({ engine, machineBytes: MiB(scenario.machine_mib) });
  const { app } = createControlPlane(hv, { adminToken: ADMIN_TOKEN });
  const served = options.transport ? await options.transport(app) : undefined;
  const send: FetchLike = served ? served.send : (r) => app.fetch(r);
  const baseUrl = served?.baseUrl ?? "http://heapvisor.invalid";
  try {
    const admin = new ControlPlaneClient(send, baseUrl, ADMIN_TOKEN);
    const guests: GuestState[] = [];
    let vcpuTotal = 0;
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
      const prng = new Prng(deriveSeed(scenario.seed, `${spec.name}/${spec.workload}`));
      const own = spec.heap === "hypervisor" ? null : await OwnHeap.boot(client, domain.id, {
        engine: spec.heap.own,
        vcpus: spec.vcpus,
        initialPages: spec.heap.initial_pages,
        growPages: spec.heap.grow_pages,
        atCycles: 0,
      });
      guests.push({
        spec,
        client,
        domainId: domain.id,
        own,
        run: smpWorkloadDescriptor(spec.workload).create(prng, spec.vcpus, spec.scale),
        firstVcpu: vcpuTotal,
        handles: new Map(),
        liveBytes: 0,
        peakLiveBytes: 0,
        ops: 0,
        failures: { exhaustion: 0, contiguity: 0, quota: 0, unservable: 0 },
        latency: new IntegerHistogram(),
      });
      vcpuTotal += spec.vcpus;
    }
    const owner: GuestState[] = [];
    for (const g of guests) for (let v = 0; v < g.spec.vcpus; v++) owner.push(g);
    const scheduler = new VcpuScheduler(vcpuTotal);
    for (const g of guests) { // a guest's vCPUs start once its heap has booted
      const boot = g.own?.bootCycles ?? 0;
      for (let v = 0; v < g.spec.vcpus; v++) scheduler.advance(g.firstVcpu + v, boot);
    }
    const t0 = performance.now();
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
        throw new Error(
          `Scenario ${scenario.name} (seed ${scenario.seed}) ran over ${SCENARIO_OPS_MAX} ops`,
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
            `Workload ${g.spec.workload} (seed ${scenario.seed}) freed handle ${op.handle}, not live`,
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
    const hostNs = ((performance.now() - t0) * 1e6) / Math.max(ops, 1);
    const results: GuestResult[] = [];
    for (const g of guests) {
      if (g.handles.size !== 0) {
        throw new Error(
          `Workload ${g.spec.workload} (seed ${scenario.seed}) ended with ${g.handles.size} live objects`,
        );
      }
      // The guest's memory as the machine sees it: the domain's pool, or for an own heap
      // the reservation (it only grows until shutdown, so its end is its peak).
      const ownStats = g.own?.stats();
      const d = await g.client.domain(g.domainId);
      const smp = ownStats ? ownStats.smp : d.smp;
      const peakPages = ownStats ? ownStats.reserved_pages : d.peak_pages;
      let makespan = 0;
      for (let v = 0; v < g.spec.vcpus; v++) {
        makespan = Math.max(makespan, scheduler.clock(g.firstVcpu + v));
      }
      results.push({
        guest: g.spec.name,
        workload: g.spec.workload,
        vcpus: g.spec.vcpus,
        ops: g.ops,
        failures: g.failures,
        peak_pages: peakPages,
        peak_live_requested_bytes: g.peakLiveBytes,
        overhead_ratio: g.peakLiveBytes === 0
          ? 0
          : roundTo((peakPages * PAGE_SIZE_BYTES) / g.peakLiveBytes, 6),
        latency_cycles: latency(g.latency),
        per_vcpu: smp.per_vcpu.map((p) => ({
          vcpu: p.vcpu,
          ops: p.ops,
          lock_wait_cycles: p.lock_wait_cycles,
          latency_cycles: {
            p50: p.latency_cycles.p50,
            p99: p.latency_cycles.p99,
            p999: p.latency_cycles.p999,
            max: p.latency_cycles.max,
          },
        })),
        lock_wait_cycles: smp.per_vcpu.reduce((s, p) => s + p.lock_wait_cycles, 0),
        lock_contended: smp.pool_lock.contended,
        cache_line_transfers: smp.cache_line_transfers,
        false_sharing_peak_lines: smp.false_sharing.peak_shared_lines,
        false_sharing_events: smp.false_sharing.events,
        makespan_cycles: makespan,
        heap: g.spec.heap === "hypervisor" ? "hypervisor" : `own:${g.spec.heap.own}`,
        boot_cycles: g.own?.bootCycles ?? 0,
      });
      await g.own?.shutdown();
      await g.client.destroyDomain(g.domainId);
      if (hv.pages.pagesOwnedBy(g.domainId) !== 0) {
        throw new Error(
          `Domain ${g.domainId} kept pages after it was destroyed (seed ${scenario.seed})`,
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
  scenario: string;
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
