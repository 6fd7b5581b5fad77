/**
 * `deno task bench:api`: load on the control plane over loopback, measured in one run.
 *
 * The control plane is served in process (`Deno.serve` on 127.0.0.1, a free port),
 * beside a bare Hono hello-world app on another free port: the ceiling, what the HTTP
 * stack alone costs per request. A tenant is created with one domain per client;
 * then N closed-loop clients (`fetch`, keep-alive) run three scenarios:
 *
 * - `hello`: GET the bare endpoint;
 * - `single-op`: allocate, then free that block, one request each;
 * - `batched`: one request of `--batch` operations, half allocations then half frees
 *   by `ref`.
 *
 * Per scenario: requests/s, simulated operations/s (memory operations served), and
 * p50/p99 request latency. The scenarios run in interleaved rounds (hello, single-op,
 * batched, hello, ...) after a warm-up, so a drift of the machine hits them alike;
 * rates and latencies pool the rounds. The clients run in a worker thread of their
 * own by default (`--threads 0`: in the server's thread).
 *
 * Targets (the README's; nothing is asserted): single-op at least 50% of the hello
 * rate, batched at least 1M simulated operations/s. Exit status: 0 done, 2 bad flags,
 * 1 if a request failed or the machine was not left clean (a bug).
 *
 * @module
 */

import { parseArgs } from "node:util";
import { Hono } from "hono";
import { SEED_MAX } from "../prng.ts";
import { renderTable } from "../table.ts";
import { MiB, PAGE_SIZE_BYTES } from "../units.ts";
import { Hypervisor } from "../../hypervisor/hypervisor.ts";
import { createControlPlane } from "../../hypervisor/control_plane/app.ts";
import { Journal } from "../../hypervisor/journal.ts";
import { newAdminToken } from "../../hypervisor/control_plane/auth.ts";
import { BATCH_MAX_OPS } from "../../hypervisor/control_plane/schemas.ts";
import { ENGINE_NAMES } from "../../hypervisor/xmalloc/registry.ts";
import { type ClientJob, type ClientResult, runClients } from "./bench_api_clients.ts";
import { numberFlag as checkedNumber } from "./_flags.ts";

/** Targets of the README. */
export const TARGET_SINGLE_OVER_HELLO = 0.5;
/** Simulated operations per second a batched client load should reach. */
export const TARGET_BATCHED_OPS_PER_S = 1_000_000;

const ROUNDS = 3;
const SIZE_MIN = 16;
const SIZE_MAX = 2048;
/** Page quota of each domain: a whole batch of the largest size fits, many times over. */
const DOMAIN_MAX_PAGES = 8192;

const HELLO_PERCENT = TARGET_SINGLE_OVER_HELLO * 100;
const BATCHED_TARGET = TARGET_BATCHED_OPS_PER_S.toLocaleString("en-US");
const USAGE = `heapvisor bench:api: load on the control plane over loopback

Usage: deno task bench:api [--clients N] [--seconds S] [--batch N] [options]

  --clients N   concurrent client loops, one domain each, 1..256 (default 8)
  --seconds S   measured seconds per scenario, 0.3..600 (default 3), in ${ROUNDS} interleaved rounds
  --batch N     operations per batch request, even, 2..${BATCH_MAX_OPS} (default 1000):
                half allocations, then half frees by ref
  --warmup S    warm-up seconds before each scenario's first round, 0..60 (default 1)
  --seed N      seed of the allocation sizes, 0..${SEED_MAX} (default 42)
  --engine E    engine of the domains: ${ENGINE_NAMES.join(", ")} (default tlsf)
  --threads T   client worker threads, 0..16; 0 runs the clients in the server's
                thread (default 1)
  --durable     journal every acknowledged change, as 'deno task serve' does without
                --ephemeral (SQLite, WAL, synchronous=FULL), into a temporary directory
                removed at the end; compare with a run without it for the cost of durability

Scenarios: hello (a bare Hono endpoint, the ceiling), single-op (alloc then free, one
request each), batched. Targets: single-op >= ${HELLO_PERCENT}% of the hello rate,
batched >= ${BATCHED_TARGET} simulated ops/s.
Exit status: 0 done, 2 bad flags, 1 a request failed (a bug).`;

function fail(message: string): never {
  console.error(`bench:api: ${message}\nRun 'deno task bench:api --help' for usage.`);
  Deno.exit(2);
}

/** `raw` as a number in [lo, hi] (an integer unless `real`); exit 2 otherwise. */
function numberFlag(name: string, raw: string, lo: number, hi: number, real = false): number {
  try {
    return checkedNumber(name, raw, lo, hi, real);
  } catch (e) {
    fail((e as Error).message);
  }
}

interface Config {
  clients: number;
  seconds: number;
  batch: number;
  warmup: number;
  seed: number;
  engine: string;
  threads: number;
  durable: boolean;
}

function parseConfig(args: string[]): Config {
  let values;
  try {
    values = parseArgs({
      args,
      options: {
        clients: { type: "string", default: "8" },
        seconds: { type: "string", default: "3" },
        batch: { type: "string", default: "1000" },
        warmup: { type: "string", default: "1" },
        seed: { type: "string", default: "42" },
        engine: { type: "string", default: "tlsf" },
        threads: { type: "string", default: "1" },
        durable: { type: "boolean", default: false },
        help: { type: "boolean", short: "h" },
      },
    }).values;
  } catch (e) {
    fail((e as Error).message);
  }
  if (values.help) {
    console.log(USAGE);
    Deno.exit(0);
  }
  const batch = numberFlag("batch", values.batch, 2, BATCH_MAX_OPS);
  if (batch % 2 !== 0) fail(`Invalid --batch "${values.batch}": expected an even number`);
  if (!ENGINE_NAMES.includes(values.engine)) {
    fail(`Unknown engine "${values.engine}": expected one of ${ENGINE_NAMES.join(", ")}`);
  }
  return {
    clients: numberFlag("clients", values.clients, 1, 256),
    seconds: numberFlag("seconds", values.seconds, 0.3, 600, true),
    batch,
    warmup: numberFlag("warmup", values.warmup, 0, 60, true),
    seed: numberFlag("seed", values.seed, 0, SEED_MAX),
    engine: values.engine,
    threads: numberFlag("threads", values.threads, 0, 16),
    durable: values.durable,
  };
}

/** Element floor((n - 1) q) of the sorted values (the project's percentile definition). */
function percentile(sorted: Float64Array, q: number): number {
  return sorted.length === 0 ? NaN : sorted[Math.floor((sorted.length - 1) * q)]!;
}

/** Client threads (module workers), or the server's own thread. */
class ClientPool {
  readonly #workers: Worker[];

  constructor(threads: number) {
    this.#workers = Array.from(
      { length: threads },
      () => new Worker(new URL("./bench_api_clients.ts", import.meta.url), { type: "module" }),
    );
  }

  /** Run `job`, its client loops spread over the threads; merge what they measured. */
  async run(job: ClientJob): Promise<ClientResult> {
    if (this.#workers.length === 0) return await runClients(job);
    const parts = this.#workers.map((_, w) => ({
      ...job,
      domainIds: job.domainIds.filter((_, i) => i % this.#workers.length === w),
      seeds: job.seeds.filter((_, i) => i % this.#workers.length === w),
    })).filter((p) => p.domainIds.length > 0);
    const results = await Promise.all(
      parts.map((part, w) =>
        new Promise<ClientResult>((resolve, reject) => {
          const worker = this.#workers[w]!;
          worker.onmessage = (e) => {
            if ("fatal" in e.data) reject(new Error(`client thread: ${e.data.fatal}`));
            else resolve(e.data as ClientResult);
          };
          worker.onerror = (e) => {
            e.preventDefault();
            reject(new Error(`client thread: ${e.message}`));
          };
          worker.postMessage(part);
        })
      ),
    );
    return {
      requests: results.reduce((s, r) => s + r.requests, 0),
      ops: results.reduce((s, r) => s + r.ops, 0),
      latenciesMs: results.flatMap((r) => r.latenciesMs),
      errors: results.flatMap((r) => r.errors),
      windowMs: Math.max(...results.map((r) => r.windowMs)),
    };
  }

  close(): void {
    for (const w of this.#workers) w.terminate();
  }
}

type Scenario = ClientJob["scenario"];
const SCENARIOS: readonly Scenario[] = ["hello", "single", "batch"];
const LABEL: Record<Scenario, string> = {
  hello: "hello (bare Hono)",
  single: "single-op alloc/free",
  batch: "batched alloc/free",
};

interface Measured {
  requests: number;
  ops: number;
  windowMs: number;
  latencies: number[];
  roundRates: number[];
}

async function main(config: Config): Promise<number> {
  const { clients, seconds, batch, warmup, seed, engine, threads, durable } = config;
  const machineMib = Math.max(256, (clients * DOMAIN_MAX_PAGES * PAGE_SIZE_BYTES) / MiB(1));
  console.log(
    `heapvisor bench:api  deno ${Deno.version.deno}  ${navigator.hardwareConcurrency} CPUs`,
  );
  console.log(
    `seed=${seed}  clients=${clients}  seconds=${seconds} (${ROUNDS} rounds)  warmup=${warmup}  ` +
      `batch=${batch}  engine=${engine}  sizes=${SIZE_MIN}..${SIZE_MAX} B  machine=${machineMib} MiB  ` +
      `client threads=${threads === 0 ? "0 (server's thread)" : threads}  ` +
      `durable=${durable ? "yes (journal, synchronous=FULL)" : "no (ephemeral)"}`,
  );

  // The servers: the control plane and the bare ceiling, each on a free loopback port.
  const adminToken = newAdminToken();
  const hypervisor = new Hypervisor({ engine, machineBytes: MiB(machineMib) });
  const dataDir = durable ? await Deno.makeTempDir({ prefix: "heapvisor-bench-" }) : null;
  const journal = dataDir === null ? undefined : new Journal(`${dataDir}/journal.db`);
  const { app } = createControlPlane(hypervisor, { adminToken, ...(journal ? { journal } : {}) });
  const hello = new Hono().get("/hello", (c) => c.text("hi"));
  const listen = (fetchHandler: (r: Request) => Response | Promise<Response>) => {
    const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen: () => {} }, fetchHandler);
    return { server, url: `http://127.0.0.1:${(server.addr as Deno.NetAddr).port}` };
  };
  const plane = listen(app.fetch);
  const bare = listen(hello.fetch);
  const pool = new ClientPool(threads);

  let status = 0;
  try {
    const call = async (token: string, method: string, path: string, body?: unknown) => {
      const res = await fetch(plane.url + path, {
        method,
        headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
        ...(body === undefined ? {} : { body: JSON.stringify(body) }),
      });
      const text = await res.text();
      if (!res.ok) throw new Error(`${method} ${path}: ${res.status} ${text}`);
      return text === "" ? undefined : JSON.parse(text);
    };
    const tenant = await call(adminToken, "POST", "/v1/tenants", {
      name: "bench",
      max_domains: clients,
      max_pages: clients * DOMAIN_MAX_PAGES,
    });
    const domainIds: number[] = [];
    for (let i = 0; i < clients; i++) {
      const d = await call(tenant.token, "POST", "/v1/domains", {
        name: `client-${i}`,
        vcpus: 1,
        max_pages: DOMAIN_MAX_PAGES,
      });
      domainIds.push(d.id);
    }

    const empty = (): Measured => ({
      requests: 0,
      ops: 0,
      windowMs: 0,
      latencies: [],
      roundRates: [],
    });
    const measured = new Map<Scenario, Measured>(SCENARIOS.map((s) => [s, empty()]));
    for (let round = 0; round < ROUNDS && status === 0; round++) {
      for (const scenario of SCENARIOS) {
        const r = await pool.run({
          scenario,
          baseUrl: scenario === "hello" ? bare.url : plane.url,
          token: tenant.token,
          domainIds,
          seeds: domainIds.map((_, i) => (seed + i * 7919 + round * 104729) >>> 0),
          batchOps: batch,
          sizeMin: SIZE_MIN,
          sizeMax: SIZE_MAX,
          warmupMs: round === 0 ? warmup * 1000 : 200,
          durationMs: (seconds * 1000) / ROUNDS,
        });
        if (r.errors.length > 0) {
          console.error(
            `bench:api: ${scenario}: unexpected responses:\n  ${r.errors.join("\n  ")}`,
          );
          status = 1;
          break;
        }
        const m = measured.get(scenario)!;
        m.requests += r.requests;
        m.ops += r.ops;
        m.windowMs += r.windowMs;
        for (const l of r.latenciesMs) m.latencies.push(l);
        m.roundRates.push(r.requests / (r.windowMs / 1000));
      }
    }

    // Every block was freed: no domain holds a live block. (In process: a DELETE
    // over the socket makes Deno print a notice about request.signal.)
    const inProcess = async (method: string, path: string) => {
      const res = await app.request(path, {
        method,
        headers: { authorization: `Bearer ${adminToken}` },
      });
      const text = await res.text();
      if (!res.ok) throw new Error(`${method} ${path}: ${res.status} ${text}`);
      return text === "" ? undefined : JSON.parse(text);
    };
    for (const id of domainIds) {
      const d = await inProcess("GET", `/v1/domains/${id}`);
      if (d.live_blocks !== 0) {
        console.error(`bench:api: domain ${id} still holds ${d.live_blocks} blocks (a bug)`);
        status = 1;
      }
    }
    await inProcess("DELETE", `/v1/tenants/${tenant.id}`); // every page returns, checked
    if (status === 0) report(measured, batch);
  } finally {
    pool.close();
    await plane.server.shutdown();
    await bare.server.shutdown();
    if (journal !== undefined) {
      console.log(`journal: ${journal.length.toLocaleString("en-US")} requests made durable`);
      journal.close();
    }
    if (dataDir !== null) await Deno.remove(dataDir, { recursive: true });
  }
  return status;
}

function report(measured: Map<Scenario, Measured>, batch: number): void {
  const rate = (m: Measured) => m.requests / (m.windowMs / 1000);
  const helloRate = rate(measured.get("hello")!);
  const rows = SCENARIOS.map((s) => {
    const m = measured.get(s)!;
    const sorted = new Float64Array(m.latencies).sort();
    const perSecond = rate(m);
    return [
      LABEL[s],
      Math.round(perSecond).toLocaleString("en-US"),
      s === "hello" ? null : Math.round(m.ops / (m.windowMs / 1000)).toLocaleString("en-US"),
      percentile(sorted, 0.5).toFixed(2),
      percentile(sorted, 0.99).toFixed(2),
      `${(perSecond / helloRate).toFixed(2)}x`,
      m.requests,
    ];
  });
  console.log("");
  console.log(
    renderTable(
      ["scenario", "requests/s", "sim ops/s", "p50 ms", "p99 ms", "vs hello", "requests"],
      rows,
    ),
  );
  const single = measured.get("single")!;
  const batched = measured.get("batch")!;
  const ratio = rate(single) / helloRate;
  const roundRatios = single.roundRates.map((r, i) =>
    (r / measured.get("hello")!.roundRates[i]!).toFixed(2)
  );
  const batchedOps = batched.ops / (batched.windowMs / 1000);
  const met = (ok: boolean) => (ok ? "met" : "NOT met");
  console.log("");
  console.log(
    `single-op / hello: ${ratio.toFixed(2)} (rounds ${roundRatios.join(", ")}); target >= ${
      TARGET_SINGLE_OVER_HELLO.toFixed(2)
    }: ${met(ratio >= TARGET_SINGLE_OVER_HELLO)}`,
  );
  console.log(
    `batched (${batch} ops per request): ${
      Math.round(batchedOps).toLocaleString("en-US")
    } simulated ops/s; target >= ${TARGET_BATCHED_OPS_PER_S.toLocaleString("en-US")}: ${
      met(batchedOps >= TARGET_BATCHED_OPS_PER_S)
    }`,
  );
}

if (import.meta.main) {
  Deno.exit(await main(parseConfig(Deno.args)));
}
