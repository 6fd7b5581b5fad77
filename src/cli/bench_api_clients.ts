/**
 * The client side of `deno task bench:api`: closed-loop clients that send requests
 * over loopback with `fetch` (keep-alive connections) and time each one. Runs in the
 * benchmark's own thread or, as a module worker, in a thread of its own (the default:
 * then the clients' work does not share the server's thread).
 *
 * @module
 */

import { Prng } from "../prng.ts";

/** What one client thread runs. */
export interface ClientJob {
  /** `hello`: GET the bare Hono endpoint; `single`: alloc then free, one request each; `batch`. */
  scenario: "hello" | "single" | "batch";
  /** Base URL of the server of this scenario. */
  baseUrl: string;
  /** Bearer token (the tenant's). */
  token: string;
  /** One domain per client loop. */
  domainIds: number[];
  /** Seed of each loop (sizes come from it). */
  seeds: number[];
  /** Operations per batch (half allocs, half frees by ref). */
  batchOps: number;
  /** Allocation sizes: uniform in [sizeMin, sizeMax] bytes. */
  sizeMin: number;
  /** Largest allocation size. */
  sizeMax: number;
  /** Warm-up before the measured window, ms (requests then are not counted). */
  warmupMs: number;
  /** Measured window, ms. */
  durationMs: number;
}

/** What the client loops measured in the window. */
export interface ClientResult {
  /** Requests completed in the window. */
  requests: number;
  /** Simulated memory operations those requests carried (served). */
  ops: number;
  /** Latency of each counted request, ms. */
  latenciesMs: number[];
  /** Unexpected responses (any at all means the run is broken). */
  errors: string[];
  /** Length of the window actually spanned, ms. */
  windowMs: number;
}

/** A batch that allocates `n / 2` blocks of seeded sizes, then frees them by ref. */
export function batchBody(prng: Prng, n: number, sizeMin: number, sizeMax: number): string {
  const half = n >> 1;
  const ops: object[] = [];
  for (let i = 0; i < half; i++) {
    ops.push({ op: "alloc", size: prng.intInclusive(sizeMin, sizeMax) });
  }
  for (let i = 0; i < half; i++) ops.push({ op: "free", ref: i });
  return JSON.stringify({ ops });
}

/** Run `job.domainIds.length` concurrent client loops; resolve with what they measured. */
export async function runClients(job: ClientJob): Promise<ClientResult> {
  const result: ClientResult = { requests: 0, ops: 0, latenciesMs: [], errors: [], windowMs: 0 };
  const start = performance.now();
  const windowStart = start + job.warmupMs;
  const windowEnd = windowStart + job.durationMs;
  const authorization = `Bearer ${job.token}`;
  const postHeaders = { authorization, "content-type": "application/json" };
  const fail = (what: string) => {
    if (result.errors.length < 10) result.errors.push(what);
  };
  /** Count a request that ended at `t1` after starting at `t0`, if it is in the window. */
  const record = (t0: number, t1: number, ops: number) => {
    if (t0 >= windowStart && t1 <= windowEnd) {
      result.requests++;
      result.ops += ops;
      result.latenciesMs.push(t1 - t0);
    }
  };

  const loop = async (client: number) => {
    const domainId = job.domainIds[client]!;
    const prng = new Prng(job.seeds[client]!);
    const url = `${job.baseUrl}/v1/domains/${domainId}`;
    // A few batch bodies per client, cycled: each frees all it allocates, so a body
    // can be sent again and again.
    const bodies = job.scenario === "batch"
      ? Array.from({ length: 4 }, () => batchBody(prng, job.batchOps, job.sizeMin, job.sizeMax))
      : [];
    for (let n = 0; performance.now() < windowEnd && result.errors.length === 0; n++) {
      if (job.scenario === "hello") {
        const t0 = performance.now();
        const res = await fetch(`${job.baseUrl}/hello`);
        const text = await res.text();
        const t1 = performance.now();
        if (res.status !== 200 || text !== "hi") fail(`hello: ${res.status} ${text}`);
        else record(t0, t1, 0);
      } else if (job.scenario === "single") {
        const size = prng.intInclusive(job.sizeMin, job.sizeMax);
        let t0 = performance.now();
        const a = await fetch(`${url}/alloc`, {
          method: "POST",
          headers: postHeaders,
          body: `{"size":${size}}`,
        });
        const allocated = await a.json();
        let t1 = performance.now();
        if (a.status !== 201 || allocated.ok !== true) {
          fail(`alloc: ${a.status} ${JSON.stringify(allocated)}`);
          break;
        }
        record(t0, t1, 1);
        t0 = performance.now();
        const f = await fetch(`${url}/free`, {
          method: "POST",
          headers: postHeaders,
          body: `{"address":${allocated.address}}`,
        });
        const freed = await f.json();
        t1 = performance.now();
        if (f.status !== 200 || freed.ok !== true) {
          fail(`free: ${f.status} ${JSON.stringify(freed)}`);
          break;
        }
        record(t0, t1, 1);
      } else {
        const t0 = performance.now();
        const res = await fetch(`${url}/batch`, {
          method: "POST",
          headers: postHeaders,
          body: bodies[n % bodies.length]!,
        });
        const out = await res.json();
        const t1 = performance.now();
        if (res.status !== 200 || out.served !== job.batchOps || out.errors.length !== 0) {
          fail(`batch: ${res.status} ${JSON.stringify(out).slice(0, 300)}`);
          break;
        }
        record(t0, t1, job.batchOps);
      }
    }
  };

  await Promise.all(job.domainIds.map((_, i) => loop(i)));
  result.windowMs = Math.min(performance.now(), windowEnd) - windowStart;
  return result;
}

// As a module worker: run the job posted, post the result back.
// deno-lint-ignore no-explicit-any
const scope = globalThis as any;
if (typeof scope.WorkerGlobalScope !== "undefined" && scope instanceof scope.WorkerGlobalScope) {
  scope.onmessage = async (e: MessageEvent<ClientJob>) => {
    try {
      scope.postMessage(await runClients(e.data));
    } catch (err) {
      scope.postMessage({ fatal: String((err as Error)?.stack ?? err) });
    }
  };
}
