/**
 * `deno task bench:soak`: a long run of concurrent tenants against a durable server,
 * restarted between rounds; checks that nothing is lost and reports the server's memory.
 *
 * The server is `src/cli/serve.ts` run by this Deno binary as a subprocess (no `deno
 * task` wrapper, so the child's pid is the server's) with `--data` in a fresh temporary
 * directory, `--port 0` and the admin token in HEAPVISOR_ADMIN_TOKEN. Each round:
 *
 * 1. T tenants, each with its own token, run concurrently: `--batches` batch requests
 *    each of `--batch` memory operations (allocations, frees by address and by ref,
 *    some reallocations) on their domains; a tenant keeps 1..3 domains, creating new
 *    ones (some as forks: a snapshot of one of its domains, a domain from it, the
 *    snapshot deleted; the fork's books are a copy of the source's, same addresses)
 *    and destroying each after a seeded lifetime, so live state stays bounded.
 * 2. The server's resident memory is read (VmRSS, VmHWM of /proc/<pid>/status).
 * 3. Every figure is read: the machine's stats, the tenants, and each tenant's domains
 *    (the list and every domain) with the tenant's own token; the live blocks the
 *    tenants hold by their own books must equal the server's.
 * 4. The server is stopped, by SIGTERM and by SIGKILL in turn (SIGKILL only once no
 *    request is in flight, so the comparison is exact), and started again on the
 *    same directory: it must replay its journal and print `(checked)`, and the same
 *    requests must return identical figures, every field.
 *
 * No request may ever get a 5xx. At the end every tenant is deleted and every frame
 * must be free. Exit status: 0 done (memory growth is reported, not judged by the exit
 * status), 1 an invariant broke or the server failed, 2 bad flags.
 *
 * @module
 */

import { isDeepStrictEqual, parseArgs } from "node:util";
import { deriveSeed, Prng, SEED_MAX } from "../prng.ts";
import { renderTable } from "../table.ts";
import { within } from "../within.ts";
import { spawnServe } from "./_serve_process.ts";
import { numberFlag } from "./_flags.ts";
import { type BatchOp, ControlPlaneClient, type DomainInfo } from "../../guests/client.ts";
import { BATCH_MAX_OPS } from "../../hypervisor/control_plane/schemas.ts";
import { ENGINE_NAMES } from "../../hypervisor/xmalloc/registry.ts";

const SERVE = "src/cli/serve.ts";

/** Most domains a tenant keeps at once. */
const DOMAINS_PER_TENANT = 3;
/** Page quota of each domain (16 MiB). */
const DOMAIN_MAX_PAGES = 4096;
/** Chance, per batch, that a tenant with room creates another domain. */
const CREATE_CHANCE = 0.08;
/** Chance that a new domain is a fork (snapshot + from_snapshot) of one the tenant has. */
const FORK_CHANCE = 0.3;
/**
 * A domain is destroyed after a number of its own batches, uniform in
 * [--batches / 60, --batches / 10] (at least 2..4), so domains come and go within a round
 * at any --batches.
 */
function lifetimeRange(batches: number): [number, number] {
  return [Math.max(2, Math.round(batches / 60)), Math.max(4, Math.round(batches / 10))];
}
/** Live blocks a domain's churn hovers around (uniform per domain). */
const TARGET_LIVE: [number, number] = [100, 1200];
/** Flat: the last round's RSS after load is within the larger of these of round 2's. */
const FLAT_PERCENT = 10;
const FLAT_MIB = 8;

/** Start-up may compile the server; replay adds time per operation (allowed: 100k ops/s). */
const START_TIMEOUT_MS = 120_000;
const START_TIMEOUT_MS_PER_OP = 0.01;
const EXIT_TIMEOUT_MS = 15_000;
const REQUEST_TIMEOUT_MS = 60_000;

const DEFAULTS = { rounds: 8, tenants: 4, batches: 1500, batch: 100 };
const QUICK = { rounds: 3, tenants: 2, batches: 8, batch: 40 };

const USAGE = `heapvisor bench:soak: concurrent tenants, a durable server restarted between rounds

Usage: deno task bench:soak [--rounds N] [--tenants N] [--batches N] [--batch N] [options]

  --rounds N       rounds, 1..1000 (default ${DEFAULTS.rounds}); each ends with a restart
  --tenants N      concurrent tenants, each with its own token, 1..16 (default ${DEFAULTS.tenants})
  --batches N      batch requests per tenant per round, 1..100000 (default ${DEFAULTS.batches})
  --batch N        memory operations per batch request, 2..${BATCH_MAX_OPS} (default ${DEFAULTS.batch})
  --seed N         seed of the workload, 0..${SEED_MAX} (default 42)
  --machine-mib N  the server's machine memory in MiB, 64..65536 (default 1024)
  --quick          a small run: ${QUICK.rounds} rounds, ${QUICK.tenants} tenants, ${QUICK.batches} batches of ${QUICK.batch}
                   (flags given too win)
  --keep           keep the server's data directory (printed) instead of removing it

Each round the tenants churn their domains concurrently (allocations, frees by address
and by ref, reallocations; each tenant keeps 1..${DOMAINS_PER_TENANT} domains of random engines (some
forks of a snapshot of another: same blocks, same addresses), and
destroys each after --batches/60..--batches/10 of its batches, at least 2..4), then every
figure is read, the server is stopped (SIGTERM and SIGKILL in turn, never with a
request in flight) and started again on the same journal: it must print "(checked)"
and give identical figures, every field, to every tenant's token. No request may get
a 5xx. The requests each tenant sends follow from the seed;
addresses and page figures also depend on how the tenants' requests interleave.

Memory: the server process's VmRSS and VmHWM (/proc/<pid>/status) after each restart and
after each round's load. Flat means: the last round's RSS after load is within ${FLAT_PERCENT}% or
${FLAT_MIB} MiB (the larger) of round 2's; round 1 is warm-up. It is reported, not judged by
the exit status. Deno reads /proc/<pid> only with --allow-all, which the task has.
Exit status: 0 done, 1 an invariant broke or the server failed, 2 bad flags.`;

function fail(message: string): never {
  console.error(`bench:soak: ${message}\nRun 'deno task bench:soak --help' for usage.`);
  Deno.exit(2);
}

/** `raw` as an integer in [lo, hi]; exit 2 otherwise. */
function intFlag(name: string, raw: string, lo: number, hi: number): number {
  try {
    return numberFlag(name, raw, lo, hi);
  } catch (e) {
    fail((e as Error).message);
  }
}

interface Config {
  rounds: number;
  tenants: number;
  batches: number;
  batch: number;
  seed: number;
  machineMib: number;
  keep: boolean;
}

function parseConfig(args: string[]): Config {
  let values;
  try {
    values = parseArgs({
      args,
      options: {
        rounds: { type: "string" },
        tenants: { type: "string" },
        batches: { type: "string" },
        batch: { type: "string" },
        seed: { type: "string", default: "42" },
        "machine-mib": { type: "string", default: "1024" },
        quick: { type: "boolean", default: false },
        keep: { type: "boolean", default: false },
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
  const base = values.quick ? QUICK : DEFAULTS;
  return {
    rounds: intFlag("rounds", values.rounds ?? String(base.rounds), 1, 1000),
    tenants: intFlag("tenants", values.tenants ?? String(base.tenants), 1, 16),
    batches: intFlag("batches", values.batches ?? String(base.batches), 1, 100_000),
    batch: intFlag("batch", values.batch ?? String(base.batch), 2, BATCH_MAX_OPS),
    seed: intFlag("seed", values.seed, 0, SEED_MAX),
    machineMib: intFlag("machine-mib", values["machine-mib"], 64, 65536),
    keep: values.keep,
  };
}

/** An invariant broke (or the server failed): the run fails with this message. */
class SoakError extends Error {
  override name = "SoakError";
}

// ---------------------------------------------------------------------------------
// The server subprocess

/** A child's output so far, read in the background; waiters are woken on each chunk. */
class Output {
  text = "";
  readonly done: Promise<void>;
  #wake: (() => void)[] = [];

  constructor(stream: ReadableStream<Uint8Array>) {
    this.done = (async () => {
      for await (const chunk of stream.pipeThrough(new TextDecoderStream())) {
        this.text += chunk;
        for (const w of this.#wake.splice(0)) w();
      }
      for (const w of this.#wake.splice(0)) w();
    })();
  }

  /** The next chunk (or the end of the stream). */
  changed(): Promise<void> {
    return new Promise((resolve) => this.#wake.push(resolve));
  }
}

/** A running server: its process, URL, output, and an HTTP client of its own. */
interface Server {
  child: Deno.ChildProcess;
  pid: number;
  url: string;
  stdout: Output;
  stderr: Output;
  exited: boolean;
  /** An HTTP client of this server only (a later server may get the same port). */
  http: Deno.HttpClient;
  httpClosed: boolean;
  /** Spawn to the listening line, ms. */
  startMs: number;
  /** Replay time the server printed, ms (null if it printed none). */
  replayMs: number | null;
  /** Operations it said it restored. */
  restoredOps: number | null;
}

/** Requests sent to every server of the run (a 5xx among them fails the run). */
const traffic = { requests: 0 };

function tail(text: string, lines = 15): string {
  return text.trimEnd().split("\n").slice(-lines).join("\n");
}

async function startServer(
  dataDir: string,
  adminToken: string,
  machineMib: number,
  opsSoFar: number,
): Promise<Server> {
  const t0 = performance.now();
  const child = spawnServe({
    adminToken,
    args: ["--port", "0", "--machine-mib", String(machineMib), "--data", dataDir],
  });
  const server: Server = {
    child,
    pid: child.pid,
    url: "",
    stdout: new Output(child.stdout),
    stderr: new Output(child.stderr),
    exited: false,
    http: Deno.createHttpClient({}),
    httpClosed: false,
    startMs: NaN,
    replayMs: null,
    restoredOps: null,
  };
  child.status.then(() => (server.exited = true));
  const timeoutMs = START_TIMEOUT_MS + opsSoFar * START_TIMEOUT_MS_PER_OP;
  const deadline = t0 + timeoutMs;
  // serve prints its start-up lines in one write; the listening line comes first.
  for (;;) {
    const m = /heapvisor control plane on (http:\/\/\S+)/.exec(server.stdout.text);
    if (m && Number.isNaN(server.startMs)) {
      server.startMs = performance.now() - t0;
      server.url = m[1]!;
    }
    if (m && /^admin token: /m.test(server.stdout.text)) break;
    if (server.exited || performance.now() > deadline) {
      await killServer(server);
      throw new SoakError(
        `the server did not start${
          server.exited ? " (it exited)" : ` within ${Math.round(timeoutMs)} ms`
        }` +
          `\n  stdout: ${tail(server.stdout.text)}\n  stderr: ${tail(server.stderr.text)}`,
      );
    }
    await Promise.race([
      server.stdout.changed(),
      child.status,
      new Promise((resolve) => setTimeout(resolve, 100)),
    ]);
  }
  const restored =
    /^restored (?:a checkpoint \(after row \d+\) and )?(\d+) operations?(?: after it)?: .* in (\d+) ms \(checked\)$/m
      .exec(
        server.stdout.text,
      );
  if (!/\(checked\)/.test(server.stdout.text)) {
    await killServer(server);
    throw new SoakError(
      `the server did not print "(checked)" on start (its replay must verify every heap)\n` +
        `  stdout: ${tail(server.stdout.text)}`,
    );
  }
  if (restored) {
    server.restoredOps = Number(restored[1]);
    server.replayMs = Number(restored[2]);
  }
  await assertIsServer(server.pid);
  return server;
}

/** The pid must be this Deno binary running serve.ts, not a wrapper process. */
async function assertIsServer(pid: number): Promise<void> {
  let exe: string, cmdline: string[];
  try {
    exe = await Deno.realPath(`/proc/${pid}/exe`);
    cmdline = (await Deno.readTextFile(`/proc/${pid}/cmdline`)).split("\0");
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return; // no /proc: memory is not measured
    throw new SoakError(`cannot tell what pid ${pid} is: ${(e as Error).message}`);
  }
  const deno = await Deno.realPath(Deno.execPath());
  if (exe !== deno || !cmdline.includes(SERVE)) {
    throw new SoakError(
      `pid ${pid} is not the deno server process (exe ${exe}, argv ${cmdline.join(" ")})`,
    );
  }
}

function closeHttp(server: Server): void {
  if (server.httpClosed) return;
  server.httpClosed = true;
  server.http.close();
}

async function killServer(server: Server): Promise<void> {
  if (!server.exited) {
    try {
      server.child.kill("SIGKILL");
    } catch {
      // already gone
    }
  }
  await server.child.status;
  await Promise.all([server.stdout.done, server.stderr.done]);
  closeHttp(server);
}

/** Stop with `signal`; SIGTERM must end with exit 0 and "shutting down". */
async function stopServer(server: Server, signal: "SIGTERM" | "SIGKILL"): Promise<void> {
  server.child.kill(signal);
  const status = await within(server.child.status, EXIT_TIMEOUT_MS);
  if (status === "timeout") {
    await killServer(server);
    throw new SoakError(`the server did not exit within ${EXIT_TIMEOUT_MS} ms of ${signal}`);
  }
  await Promise.all([server.stdout.done, server.stderr.done]);
  closeHttp(server);
  if (signal === "SIGTERM" && (status.code !== 0 || !/^shutting down$/m.test(server.stdout.text))) {
    throw new SoakError(
      `SIGTERM: the server exited with status ${status.code}` +
        `${status.signal ? ` (${status.signal})` : ""}, not 0 after "shutting down"` +
        `\n  stderr: ${tail(server.stderr.text)}`,
    );
  }
}

/** A client of `server` with `token`; any 5xx, or a connection that fails, breaks the run. */
function clientOf(server: Server, token: string): ControlPlaneClient {
  const send = async (request: Request): Promise<Response> => {
    traffic.requests++;
    let response: Response;
    try {
      response = await fetch(request, {
        client: server.http,
        signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS),
      });
    } catch (e) {
      throw new SoakError(
        `${request.method} ${new URL(request.url).pathname}: ${(e as Error).message}` +
          (server.exited ? `\n  the server exited; stderr: ${tail(server.stderr.text)}` : ""),
      );
    }
    if (response.status >= 500) {
      throw new SoakError(
        `${request.method} ${new URL(request.url).pathname}: ${response.status} ${
          (await response.text()).slice(0, 500)
        } (no request may get a 5xx)`,
      );
    }
    return response;
  };
  return new ControlPlaneClient(send, server.url, token);
}

interface Memory {
  rssMiB: number;
  hwmMiB: number;
}

/** Why /proc cannot be read (null: it can). Deno reads /proc/<pid> only with --allow-all. */
async function procProblem(): Promise<string | null> {
  try {
    await Deno.readTextFile(`/proc/${Deno.pid}/status`);
    return null;
  } catch (e) {
    if (e instanceof Deno.errors.NotCapable) {
      return "Deno reads /proc/<pid>/status only with --allow-all (deno task bench:soak has it)";
    }
    return `no /proc/<pid>/status here (${(e as Error).message}): memory is not measured`;
  }
}

/** VmRSS and VmHWM of `pid`, in MiB (null where /proc is missing). */
async function readMemory(pid: number): Promise<Memory | null> {
  let status: string;
  try {
    status = await Deno.readTextFile(`/proc/${pid}/status`);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return null;
    throw new SoakError(`cannot read /proc/${pid}/status: ${(e as Error).message}`);
  }
  const kib = (field: string) => {
    const m = new RegExp(`^${field}:\\s+(\\d+) kB$`, "m").exec(status);
    if (!m) throw new SoakError(`no ${field} in /proc/${pid}/status`);
    return Number(m[1]) / 1024;
  };
  return { rssMiB: kib("VmRSS"), hwmMiB: kib("VmHWM") };
}

/** Bytes of every file in `dir` (the journal, its WAL and shared-memory file). */
async function dirBytes(dir: string): Promise<number> {
  let total = 0;
  for await (const e of Deno.readDir(dir)) {
    if (e.isFile) total += (await Deno.stat(`${dir}/${e.name}`)).size;
  }
  return total;
}

// ---------------------------------------------------------------------------------
// The tenants' workload

interface LiveDomain {
  id: number;
  vcpus: number;
  /** Batches it runs before it is destroyed. */
  lifetime: number;
  batches: number;
  /** Live blocks its churn hovers around. */
  target: number;
  /** Addresses of its live blocks, by the tenant's own books. */
  blocks: number[];
}

interface Tenant {
  index: number;
  id: number;
  name: string;
  token: string;
  prng: Prng;
  domains: LiveDomain[];
  made: number;
}

interface Counters {
  ops: number;
  /** Domains created as forks of a snapshot (counted in `created` too). */
  forked: number;
  served: number;
  unserved: number;
  batches: number;
  created: number;
  destroyed: number;
}

const newCounters = (): Counters => ({
  ops: 0,
  forked: 0,
  served: 0,
  unserved: 0,
  batches: 0,
  created: 0,
  destroyed: 0,
});

function size(prng: Prng): number {
  const r = prng.nextFloat();
  if (r < 0.7) return prng.intInclusive(16, 512);
  if (r < 0.9) return prng.intInclusive(513, 3000);
  if (r < 0.98) return prng.intInclusive(3001, 4200); // near a page
  return prng.intInclusive(4201, 20_000);
}

type Planned =
  | { kind: "alloc" }
  | { kind: "ref"; of: number }
  | { kind: "free"; block: number }
  | { kind: "realloc"; block: number };

/** One batch on `d`: built from the tenant's PRNG, checked against its books. */
async function churn(
  client: ControlPlaneClient,
  t: Tenant,
  d: LiveDomain,
  n: number,
  counters: Counters,
): Promise<void> {
  const { prng } = t;
  const ops: BatchOp[] = [];
  const plan: Planned[] = [];
  const untouched = d.blocks.map((_, i) => i); // blocks no op of this batch names yet
  const pending: number[] = []; // this batch's allocations not freed by ref yet
  let live = d.blocks.length;
  const take = <T>(a: T[], i: number): T => {
    const v = a[i]!;
    a[i] = a[a.length - 1]!;
    a.pop();
    return v;
  };
  for (let i = 0; i < n; i++) {
    const vcpu = prng.index(d.vcpus);
    const r = prng.nextFloat();
    const freeable = untouched.length + pending.length;
    if (r < 0.05 && untouched.length > 0) {
      const block = take(untouched, prng.index(untouched.length));
      plan.push({ kind: "realloc", block });
      ops.push({ op: "realloc", address: d.blocks[block]!, size: size(prng), vcpu });
    } else if (freeable === 0 || r < (live < d.target ? 0.7 : 0.3)) {
      plan.push({ kind: "alloc" });
      pending.push(i);
      live++;
      ops.push({ op: "alloc", size: size(prng), vcpu });
    } else {
      const k = prng.index(freeable);
      live--;
      if (k < untouched.length) {
        const block = take(untouched, k);
        plan.push({ kind: "free", block });
        ops.push({ op: "free", address: d.blocks[block]!, vcpu });
      } else {
        const of = take(pending, k - untouched.length);
        plan.push({ kind: "ref", of });
        ops.push({ op: "free", ref: of, vcpu });
      }
    }
  }
  const res = await client.batch(d.id, ops);
  const where = `tenant ${t.name}, domain ${d.id}`;
  if (res.count !== n || res.addresses.length !== n) {
    throw new SoakError(`${where}: a batch of ${n} operations answered for ${res.count}`);
  }
  const errored = new Map(res.errors.map((e) => [e.index, e]));
  const served = (i: number) => res.causes[i] === null && res.addresses[i] !== 0;
  const freedByRef = new Set<number>();
  const gone = new Set<number>();
  for (let i = 0; i < n; i++) {
    const p = plan[i]!;
    const e = errored.get(i);
    // The only refusal allowed: a free by ref of an allocation that was not served.
    const allowed = p.kind === "ref" && !served(p.of);
    if ((e !== undefined) !== allowed) {
      throw new SoakError(
        `${where}: operation ${i} (${JSON.stringify(ops[i])}) ` +
          (e
            ? `was refused: ${e.code} ${e.message}`
            : "should have been refused (its ref holds no block)"),
      );
    }
    if (p.kind === "alloc" && !served(i)) counters.unserved++;
    if (p.kind === "ref" && e === undefined) freedByRef.add(p.of);
    if (p.kind === "free") gone.add(p.block);
    if (p.kind === "realloc" && served(i)) d.blocks[p.block] = res.addresses[i]!;
    if (p.kind === "realloc" && !served(i)) counters.unserved++;
  }
  const kept = d.blocks.filter((_, i) => !gone.has(i));
  for (let i = 0; i < n; i++) {
    if (plan[i]!.kind === "alloc" && served(i) && !freedByRef.has(i)) kept.push(res.addresses[i]!);
  }
  d.blocks = kept;
  counters.ops += n;
  counters.served += res.served;
  counters.batches++;
}

async function runTenant(
  client: ControlPlaneClient,
  t: Tenant,
  batches: number,
  batchOps: number,
  counters: Counters,
  abort: { failed: boolean },
): Promise<void> {
  for (let b = 0; b < batches && !abort.failed; b++) {
    const { prng } = t;
    if (
      t.domains.length === 0 ||
      (t.domains.length < DOMAINS_PER_TENANT && prng.nextFloat() < CREATE_CHANCE)
    ) {
      const source = t.domains.length > 0 && prng.nextFloat() < FORK_CHANCE
        ? t.domains[prng.index(t.domains.length)]!
        : undefined;
      const lifetime = prng.intInclusive(...lifetimeRange(batches));
      const target = prng.intInclusive(...TARGET_LIVE);
      if (source !== undefined) {
        // A fork: the same blocks at the same addresses, so the tenant's books for it
        // are a copy of the source's. The snapshot is deleted once used.
        const snap = await client.snapshot(source.id);
        const info = await client.createDomain({
          name: `${t.name}-d${t.made++}`,
          from_snapshot: snap.id,
        });
        if (info.live_blocks !== source.blocks.length) {
          throw new SoakError(
            `tenant ${t.name}: fork ${info.id} of domain ${source.id} has ${info.live_blocks} ` +
              `live blocks, the source ${source.blocks.length}`,
          );
        }
        await client.deleteSnapshot(snap.id);
        t.domains.push({
          id: info.id,
          vcpus: source.vcpus,
          lifetime,
          batches: 0,
          target,
          blocks: [...source.blocks],
        });
        counters.forked++;
      } else {
        const engine = ENGINE_NAMES[prng.index(ENGINE_NAMES.length)]!;
        const vcpus = prng.intInclusive(1, 4);
        const info = await client.createDomain({
          name: `${t.name}-d${t.made++}`,
          vcpus,
          max_pages: DOMAIN_MAX_PAGES,
          engine,
        });
        t.domains.push({ id: info.id, vcpus, lifetime, batches: 0, target, blocks: [] });
      }
      counters.created++;
    }
    const di = prng.index(t.domains.length);
    const d = t.domains[di]!;
    await churn(client, t, d, batchOps, counters);
    if (++d.batches >= d.lifetime) {
      await client.destroyDomain(d.id);
      t.domains.splice(di, 1);
      counters.destroyed++;
    }
  }
}

// ---------------------------------------------------------------------------------
// Figures before and after a restart

interface Figures {
  stats: unknown;
  tenants: unknown;
  /** Per tenant, with its own token: its domain list, then each domain. */
  perTenant: { list: DomainInfo[]; each: DomainInfo[] }[];
}

async function readFigures(
  server: Server,
  adminToken: string,
  tenants: Tenant[],
): Promise<Figures> {
  const admin = clientOf(server, adminToken);
  const stats = await admin.stats();
  const tenantList = await admin.tenants();
  const perTenant = [];
  for (const t of tenants) {
    const c = clientOf(server, t.token);
    let list: DomainInfo[];
    try {
      list = await c.domains();
    } catch (e) {
      throw new SoakError(`tenant ${t.name}'s token did not work: ${(e as Error).message}`);
    }
    const each = [];
    for (const d of t.domains) each.push(await c.domain(d.id));
    perTenant.push({ list, each });
  }
  return { stats, tenants: tenantList, perTenant };
}

/**
 * Where the figures `a` (before a restart) and `b` (after) differ: one line per field,
 * with its path, at most `limit`.
 */
export function differences(
  a: unknown,
  b: unknown,
  path = "",
  out: string[] = [],
  limit = 8,
): string[] {
  if (out.length >= limit || isDeepStrictEqual(a, b)) return out;
  if (a !== null && b !== null && typeof a === "object" && typeof b === "object") {
    const keys = new Set([...Object.keys(a), ...Object.keys(b)]);
    for (const k of keys) {
      const sub = Array.isArray(a) ? `${path}[${k}]` : `${path}.${k}`;
      differences(
        (a as Record<string, unknown>)[k],
        (b as Record<string, unknown>)[k],
        sub,
        out,
        limit,
      );
    }
    return out;
  }
  out.push(`${path || "(root)"}: ${JSON.stringify(a)} before, ${JSON.stringify(b)} after`);
  return out;
}

/** The tenants' books must match the server's: domain ids and live blocks. */
function checkBooks(snap: Figures, tenants: Tenant[]): void {
  tenants.forEach((t, i) => {
    const { list, each } = snap.perTenant[i]!;
    const ids = list.map((d) => d.id).sort((x, y) => x - y);
    const mine = t.domains.map((d) => d.id).sort((x, y) => x - y);
    if (!isDeepStrictEqual(ids, mine)) {
      throw new SoakError(
        `tenant ${t.name}: the server lists domains ${ids}, the tenant holds ${mine}`,
      );
    }
    t.domains.forEach((d, j) => {
      if (each[j]!.live_blocks !== d.blocks.length) {
        throw new SoakError(
          `tenant ${t.name}, domain ${d.id}: the server counts ${each[j]!.live_blocks} live ` +
            `blocks, the tenant's books ${d.blocks.length}`,
        );
      }
    });
  });
}

// ---------------------------------------------------------------------------------

interface Row {
  round: number;
  stop: string | null;
  opsSoFar: number;
  liveDomains: number | null;
  liveBlocks: number | null;
  journalMiB: number;
  afterLoad: Memory | null;
  restartMs: number;
  replayMs: number | null;
  afterRestart: Memory | null;
}

const mib = (v: number | undefined) => (v === undefined ? null : v.toFixed(1));
const signed = (v: number) => `${v >= 0 ? "+" : ""}${v.toFixed(1)}`;
const int = (v: number) => Math.round(v).toLocaleString("en-US");

function randomToken(): string {
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  return `soak-${Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("")}`;
}

async function main(config: Config): Promise<number> {
  const { rounds, tenants: tenantCount, batches, batch, seed, machineMib, keep } = config;
  const proc = await procProblem();
  if (proc?.includes("--allow-all")) {
    console.error(`bench:soak: ${proc}`);
    return 1;
  }
  const dataDir = await Deno.makeTempDir({ prefix: "heapvisor-soak-" });
  console.log(
    `heapvisor bench:soak  deno ${Deno.version.deno}  ${navigator.hardwareConcurrency} CPUs`,
  );
  console.log(
    `seed=${seed}  rounds=${rounds}  tenants=${tenantCount}  batches=${batches} per tenant per round  ` +
      `batch=${batch} ops  machine=${machineMib} MiB  engines=${ENGINE_NAMES.join(",")}  ` +
      `data=${dataDir}${keep ? " (kept)" : " (removed at the end)"}`,
  );
  const adminToken = randomToken();
  let server: Server | null = null;
  const rows: Row[] = [];
  const total = newCounters();
  let loadMs = 0;
  let status = 0;
  const stops = { SIGTERM: 0, SIGKILL: 0 };
  // Ctrl-C: no server or data directory is left behind.
  let interrupting = false;
  const interrupted = async () => {
    interrupting = true;
    console.error("bench:soak: interrupted");
    if (server !== null) await killServer(server);
    if (keep) console.log(`data kept in ${dataDir}`);
    else await Deno.remove(dataDir, { recursive: true }).catch(() => {});
    Deno.exit(130);
  };
  Deno.addSignalListener("SIGINT", interrupted);
  try {
    server = await startServer(dataDir, adminToken, machineMib, total.ops);
    let memory = await readMemory(server.pid);
    console.log(
      `start: server pid ${server.pid} on ${server.url}, listening ${
        int(server.startMs)
      } ms after ` +
        `spawn (empty journal, checked), RSS ${
          memory ? `${mib(memory.rssMiB)} MiB` : "not measured (no /proc)"
        }`,
    );
    rows.push({
      round: 0,
      stop: null,
      opsSoFar: 0,
      liveDomains: 0,
      liveBlocks: 0,
      journalMiB: (await dirBytes(dataDir)) / 2 ** 20,
      afterLoad: null,
      restartMs: server.startMs,
      replayMs: server.replayMs,
      afterRestart: memory,
    });

    const admin = clientOf(server, adminToken);
    const tenants: Tenant[] = [];
    for (let i = 0; i < tenantCount; i++) {
      const name = `tenant-${i}`;
      const created = await admin.createTenant({
        name,
        max_domains: DOMAINS_PER_TENANT,
        max_pages: DOMAINS_PER_TENANT * DOMAIN_MAX_PAGES,
      });
      tenants.push({
        index: i,
        id: created.id,
        name,
        token: created.token,
        prng: new Prng(deriveSeed(seed, name)),
        domains: [],
        made: 0,
      });
    }

    for (let round = 1; round <= rounds; round++) {
      // 1. The load: every tenant at once.
      const counters = newCounters();
      const abort = { failed: false };
      const t0 = performance.now();
      const s = server;
      const results = await Promise.allSettled(
        tenants.map((t) =>
          runTenant(clientOf(s, t.token), t, batches, batch, counters, abort).catch((e) => {
            abort.failed = true;
            throw e;
          })
        ),
      );
      const ms = performance.now() - t0;
      const failed = results.find((r) => r.status === "rejected") as PromiseRejectedResult;
      if (failed) throw failed.reason;
      loadMs += ms;
      for (const k of Object.keys(total) as (keyof Counters)[]) total[k] += counters[k];

      // 2. Memory after the load; 3. every figure, and the tenants' books against them.
      const afterLoad = await readMemory(server.pid);
      const before = await readFigures(server, adminToken, tenants);
      checkBooks(before, tenants);
      const journalMiB = (await dirBytes(dataDir)) / 2 ** 20;
      const liveDomains = tenants.reduce((n, t) => n + t.domains.length, 0);
      const liveBlocks = tenants.reduce(
        (n, t) => n + t.domains.reduce((m, d) => m + d.blocks.length, 0),
        0,
      );

      // 4. Stop (nothing in flight: every request above was answered) and start again.
      const signal = round % 2 === 1 ? "SIGTERM" : "SIGKILL";
      await stopServer(server, signal);
      stops[signal]++;
      server = null;
      server = await startServer(dataDir, adminToken, machineMib, total.ops);
      memory = await readMemory(server.pid);
      const after = await readFigures(server, adminToken, tenants);
      const diff = differences(before, after);
      if (diff.length > 0) {
        throw new SoakError(
          `round ${round}: figures differ after the restart (${signal}):\n  ${diff.join("\n  ")}`,
        );
      }
      rows.push({
        round,
        stop: signal,
        opsSoFar: total.ops,
        liveDomains,
        liveBlocks,
        journalMiB,
        afterLoad,
        restartMs: server.startMs,
        replayMs: server.replayMs,
        afterRestart: memory,
      });
      console.log(
        `round ${round}/${rounds}: ${int(counters.ops)} ops in ${int(counters.batches)} batches, ` +
          `${(ms / 1000).toFixed(1)} s (${int(counters.ops / (ms / 1000))} ops/s); domains ` +
          `+${counters.created} -${counters.destroyed}, ${liveDomains} live with ${
            int(liveBlocks)
          } ` +
          `blocks; ${signal}; restarted in ${int(server.startMs)} ms (replayed ` +
          `${server.restoredOps === null ? "?" : int(server.restoredOps)} ops, checked); ` +
          `${liveDomains} domains, machine and ${tenantCount} tenant tokens identical`,
      );
    }

    // The end: every tenant deleted, every frame free, a clean SIGTERM.
    const end = clientOf(server, adminToken);
    for (const t of tenants) await end.deleteTenant(t.id);
    const machine = (await end.stats()).machine;
    if (machine.free_frames !== machine.frames) {
      throw new SoakError(
        `after deleting every tenant ${machine.frames - machine.free_frames} frames are not free`,
      );
    }
    await stopServer(server, "SIGTERM");
    server = null;
    report(rows, total, loadMs, stops);
  } catch (e) {
    if (interrupting) await new Promise(() => {}); // the SIGINT handler exits (130)
    status = 1;
    if (e instanceof SoakError) console.error(`bench:soak: FAILED: ${e.message}`);
    else console.error(`bench:soak: FAILED (unexpected error): ${(e as Error)?.stack ?? e}`);
  } finally {
    Deno.removeSignalListener("SIGINT", interrupted);
    if (server !== null) await killServer(server);
    if (keep) console.log(`data kept in ${dataDir}`);
    else await Deno.remove(dataDir, { recursive: true });
  }
  return status;
}

function report(
  rows: Row[],
  total: Counters,
  loadMs: number,
  stops: { SIGTERM: number; SIGKILL: number },
): void {
  console.log("");
  console.log(
    renderTable(
      [
        "round",
        "stop",
        "ops so far",
        "live domains",
        "live blocks",
        "journal MiB",
        "RSS after load MiB",
        "HWM after load MiB",
        "restart ms",
        "replay ms",
        "RSS after restart MiB",
      ],
      rows.map((r) => [
        r.round === 0 ? "start" : r.round,
        r.stop,
        int(r.opsSoFar),
        r.liveDomains,
        r.liveBlocks === null ? null : int(r.liveBlocks),
        r.journalMiB.toFixed(1),
        mib(r.afterLoad?.rssMiB),
        mib(r.afterLoad?.hwmMiB),
        int(r.restartMs),
        r.replayMs === null ? null : int(r.replayMs),
        mib(r.afterRestart?.rssMiB),
      ]),
    ),
  );
  console.log(
    "(restart: spawn to listening, replay included; HWM: the process's peak RSS so far, " +
      "replay included)",
  );
  console.log("");
  const seconds = loadMs / 1000;
  console.log(
    `churn: ${int(total.ops)} memory operations (${int(total.served)} served, ${
      int(total.unserved)
    } allocations or reallocations not served) in ${
      int(total.batches)
    } batch requests, ${total.created} domains ` +
      `created (${total.forked} of them forks of a snapshot) and ${total.destroyed} destroyed, over ${
        seconds.toFixed(1)
      } s of load: ` +
      `${int(total.ops / seconds)} ops/s, ${int(total.batches / seconds)} batches/s`,
  );
  console.log(
    `invariants: ${stops.SIGTERM + stops.SIGKILL} restarts (${stops.SIGTERM} SIGTERM, ` +
      `${stops.SIGKILL} SIGKILL): every replay checked, every figure identical, every tenant ` +
      `token worked, the tenants' books matched, no 5xx in ${int(traffic.requests)} requests, ` +
      `every frame free at the end`,
  );
  const loads = rows.filter((r) => r.round > 0);
  const first = loads[0]?.afterLoad;
  const last = loads[loads.length - 1]?.afterLoad;
  if (!first || !last) {
    console.log("verdict: memory not measured (no /proc/<pid>/status)");
    return;
  }
  const lastRound = loads.length;
  const growth = last.rssMiB - first.rssMiB;
  if (loads.length >= 4) {
    const mid = Math.ceil(loads.length / 2);
    const from = loads[mid - 1]!.afterLoad!.rssMiB;
    console.log(
      `trend: RSS after load, rounds 1..${mid} ${first.rssMiB.toFixed(1)} -> ${from.toFixed(1)} ` +
        `MiB (${signed(from - first.rssMiB)} MiB), rounds ${mid}..${lastRound} ${
          from.toFixed(1)
        } ` +
        `-> ${last.rssMiB.toFixed(1)} MiB (${signed(last.rssMiB - from)} MiB, ` +
        `${signed(((last.rssMiB - from) / from) * 100)}%)`,
    );
  }
  let flat: string;
  if (loads.length < 3) {
    flat = "not judged (needs --rounds >= 3: round 1 is warm-up, round 2 the baseline)";
  } else {
    const base = loads[1]!.afterLoad!.rssMiB;
    const allowed = Math.max((base * FLAT_PERCENT) / 100, FLAT_MIB);
    const ok = last.rssMiB - base <= allowed;
    flat = `${ok ? "yes" : "NO"} (round ${lastRound} is ${signed(last.rssMiB - base)} MiB ` +
      `from round 2's ${base.toFixed(1)} MiB; flat allows +${allowed.toFixed(1)} MiB, the ` +
      `larger of ${FLAT_PERCENT}% and ${FLAT_MIB} MiB; round 1 is warm-up)`;
  }
  console.log(
    `verdict: server RSS after load, round 1 ${first.rssMiB.toFixed(1)} MiB -> round ` +
      `${lastRound} ${last.rssMiB.toFixed(1)} MiB: ${signed(growth)} MiB ` +
      `(${signed((growth / first.rssMiB) * 100)}%); flat: ${flat}; churn ` +
      `${int(total.ops / seconds)} ops/s`,
  );
}

if (import.meta.main) {
  Deno.exit(await main(parseConfig(Deno.args)));
}
