/**
 * `deno task sim`: compare xmalloc engines from the command line.
 *
 * Exit status: 0 done, 2 bad input (flags, trace), 1 a bug (an invariant broke).
 *
 * @module
 */

import { userPath } from "./_user_path.ts";
import { parseArgs } from "node:util";
import { deriveSeed, Prng, SEED_MAX } from "../prng.ts";
import { formatTrace, parseTrace, TraceError } from "../trace.ts";
import { type Cell, renderTable } from "../table.ts";
import { MiB } from "../units.ts";
import {
  type CompareResult,
  CURVE_MAX_BYTES,
  CURVE_STEP_BYTES,
  runComparison,
  STEP_UP_MIN_RATIO,
} from "../../hypervisor/compare.ts";
import { type ReplayResult, replayTrace } from "../../hypervisor/replay.ts";
import {
  CURVE_TABLE_SIZES,
  curveSizes,
  findStepUps,
  nearPageCurve,
  type StepUp,
} from "../../hypervisor/wastage.ts";
import { assertMachineBytes, type Hypervisor } from "../../hypervisor/hypervisor.ts";
import { ENGINE_NAMES, ENGINES } from "../../hypervisor/xmalloc/registry.ts";
import { WORKLOAD_NAMES, workloadDescriptor, WORKLOADS } from "../../guests/workloads.ts";
import {
  DEFAULT_SCENARIO,
  parseScenario,
  runScenario,
  runSpecialisation,
  type Scenario,
  ScenarioError,
} from "../../guests/scenario.ts";
import type { FetchLike } from "../../guests/client.ts";
import { SMP_WORKLOADS } from "../../guests/smp_workloads.ts";
import { renderScenario, renderSpecialisation } from "./_scenario_render.ts";
import { type FromSnapshotRun, runFromSnapshot } from "../../guests/from_snapshot.ts";
import {
  parseSnapshotDocument,
  SnapshotError,
  snapshotStateBytes,
} from "../../hypervisor/snapshot.ts";
import { PeakPageMap, sampleFootprint } from "../report/data.ts";
import { writeReport } from "../report/html.ts";

/** Default seed of every run. */
export const DEFAULT_SEED = 42;
/** Largest machine in MiB (8 TiB). */
const MACHINE_MIB_MAX = 8 * 1024 * 1024;
/** Range of --scale. */
const SCALE_MIN = 0.01;
const SCALE_MAX = 100;

const USAGE = `heapvisor sim: compare hypervisor memory allocators (xmalloc engines) on evidence

Usage:
  deno task sim [scenario] [options]     guests with SMP vCPUs asking one hypervisor for
                                         memory through its control plane, once per engine
                                         (the default: a multi-tenant scenario)
  deno task sim specialise [options]     the scenario's guests on their own heaps, once per
                                         engine: which allocator wins for which guest
  deno task sim compare [options]        every engine on every single-CPU built-in workload,
                                         plus the near-page wastage curve
  deno task sim --from-snapshot FILE [options]
                                         a workload on a heap warmed up elsewhere (a snapshot
                                         file from GET /v1/snapshots/{id}/export), once per
                                         engine
  deno task sim replay --engine NAME --trace FILE [options]
                                         replay a trace file on a fresh hypervisor
  deno task sim curve [options]          the near-page wastage curve only
  deno task sim trace --workload NAME [--seed N] [--scale F]
                                         print a built-in workload as a trace file
  deno task sim engines [--json]         list the engines and what they model
  deno task sim workloads [--json]       list the built-in workloads

Options of scenario:
  --scenario FILE     a scenario JSON file (default: the built-in multi-tenant scenario;
                      --print-scenario shows it as a starting point)
  --seed N            seed of the run (default: the scenario's, 42)
  --engines A,B       engines (default: the scenario's, all)
  --machine-mib N     machine memory in MiB (default: the scenario's, 1024)
  --listen            serve the control plane on a loopback socket and run each guest in a
                      Worker of its own over HTTP: guests really run concurrently, each on
                      its own virtual clock, so the machine-wide heap lock is not modelled
                      across them and the figures are close to, not the same as, in process
  --print-scenario    print the scenario as JSON and exit
  --out DIR           also write DIR/report.html (charts as inline SVG, opens from disk),
                      DIR/results.json and DIR/results.csv (compare takes --out too)
  --no-timing, --json, --quiet   as for compare
  specialise takes --scenario, --seed, --engines (the own-heap allocators to try),
  --machine-mib, --listen, --json and --quiet.
  A scenario runs at most 5,000,000 allocator calls (lower scale or vCPUs past that).

Options of --from-snapshot:
  --workload NAME     built-in workload run on the heap (default near-page-uniform); the
                      snapshot's blocks stay live among its blocks
  --engines A,B       engines (default: all). On the snapshot's own engine the heap is
                      restored exactly (same blocks, same addresses); the others get the
                      same live blocks, each engine's own layout (allocated by address from
                      a version-2 file, by replaying the history of a version-1 file)
  --seed N, --scale F the workload's (as for compare)
  --machine-mib N     machine memory (default 1024; at least the snapshot's machine)
  --json, --quiet     as for compare

Options of compare:
  --seed N            seed of the run, 0..${SEED_MAX} (default ${DEFAULT_SEED}); printed first
  --engines A,B       engines to compare (default: all: ${ENGINE_NAMES.join(", ")})
  --workloads A,B     workloads (default: all: ${WORKLOAD_NAMES.join(", ")})
  --scale F           multiply the operations each workload runs after its warm-up (and
                      frag-ramp's phases) by F, a decimal in [${SCALE_MIN}, ${SCALE_MAX}] (default 1)
  --machine-mib N     machine memory in MiB, 1..${MACHINE_MIB_MAX} (default 1024)
  --reps N            timed replays per engine and workload for host ns/op, 1..100 (default 3)
  --no-timing         leave out wall-clock figures: output is then byte-identical per seed
  --no-curve          skip the near-page curve
  --json              one JSON object on stdout instead of tables
  --quiet             no progress display (it is shown on a terminal only, on stderr)

Options of replay:
  --engine NAME       engine (one of: ${ENGINE_NAMES.join(", ")})
  --trace FILE        trace file: lines "a <id> <size> [vcpu]", "f <id> [vcpu]", "# comment"; relative to
                      the directory you run from; "-" reads standard input
  --machine-mib N     machine memory in MiB, 1..${MACHINE_MIB_MAX} (default 1024)
  --reps N            timed replays for ns_per_op, 1..100 (default 9)
  --no-timing         leave out ns_per_op
  --json              the figures as one JSON object

Options of curve:
  --engines A,B       engines (default: all)
  --json              the full curve as JSON (the table shows the sizes where engines step)
  --step N            spacing of the JSON curve in bytes, 1..4096 (default ${CURVE_STEP_BYTES})
  --quiet             no progress display

Options of trace: --workload NAME, --seed N, --scale F (as for compare).

Options go after the command; a leading "--" (the npm habit) is ignored.
Exit status: 0 done, 2 bad input (the message says what and where), 1 internal error.
`;

/** A usage error: exit status 2. */
class UsageError extends Error {
  override name = "UsageError";
}

const OPTIONS = {
  seed: { type: "string" },
  engines: { type: "string" },
  engine: { type: "string" },
  workloads: { type: "string" },
  workload: { type: "string" },
  trace: { type: "string" },
  scale: { type: "string" },
  "machine-mib": { type: "string" },
  reps: { type: "string" },
  step: { type: "string" },
  "no-timing": { type: "boolean" },
  "no-curve": { type: "boolean" },
  json: { type: "boolean" },
  quiet: { type: "boolean" },
  scenario: { type: "string" },
  listen: { type: "boolean" },
  "print-scenario": { type: "boolean" },
  out: { type: "string" },
  "from-snapshot": { type: "string" },
  help: { type: "boolean", short: "h" },
} as const;

type Flags = ReturnType<typeof parseFlags>["values"];

function parseFlags(args: string[]) {
  try {
    return parseArgs({ args, options: OPTIONS, allowPositionals: true, strict: true });
  } catch (e) {
    throw new UsageError((e as Error).message);
  }
}

function intFlag(
  flags: Flags,
  name: keyof Flags,
  fallback: number,
  lo: number,
  hi: number,
): number {
  const raw = flags[name];
  if (raw === undefined) return fallback;
  const value = typeof raw === "string" && /^\d+$/.test(raw) ? Number(raw) : NaN;
  if (!(value >= lo && value <= hi)) {
    throw new UsageError(`Invalid --${name} "${raw}": expected an integer in [${lo}, ${hi}]`);
  }
  return value;
}

function scaleFlag(flags: Flags): number {
  const raw = flags.scale;
  if (raw === undefined) return 1;
  const value = /^\d+(\.\d+)?$/.test(raw) ? Number(raw) : NaN;
  if (!(value >= SCALE_MIN && value <= SCALE_MAX)) {
    throw new UsageError(
      `Invalid --scale "${raw}": expected a decimal in [${SCALE_MIN}, ${SCALE_MAX}]`,
    );
  }
  return value;
}

function nameFlag(raw: string, known: readonly string[], what: string): string {
  if (!known.includes(raw)) {
    throw new UsageError(`Unknown ${what} "${raw}": expected one of ${known.join(", ")}`);
  }
  return raw;
}

function listFlag(
  raw: string | undefined,
  known: readonly string[],
  what: string,
): string[] | undefined {
  if (raw === undefined) return undefined;
  const names = raw.split(",").map((s) => s.trim()).filter((s) => s !== "");
  if (names.length === 0) throw new UsageError(`Invalid --${what}: empty list`);
  names.forEach((n) => nameFlag(n, known, what.replace(/s$/, "")));
  const repeated = names.find((n, i) => names.indexOf(n) !== i);
  if (repeated) throw new UsageError(`Invalid --${what}: "${repeated}" is named twice`);
  return names;
}

function machineBytesFlag(flags: Flags): number {
  const bytes = MiB(intFlag(flags, "machine-mib", 1024, 1, MACHINE_MIB_MAX));
  assertMachineBytes(bytes);
  return bytes;
}

/** Only these flags make sense for `command`; anything else is a usage error. */
function allowOnly(flags: Flags, command: string, allowed: readonly string[]): void {
  for (const key of Object.keys(flags)) {
    if (key !== "help" && !allowed.includes(key)) {
      throw new UsageError(`Option --${key} does not apply to "sim ${command}"`);
    }
  }
}

function progressReporter(
  flags: Flags,
): ((done: number, total: number, label: string) => void) | undefined {
  if (flags.quiet || !Deno.stderr.isTerminal()) return undefined;
  const encoder = new TextEncoder();
  return (done, total, label) => {
    const text = done === total ? "" : `[${done + 1}/${total}] ${label}`;
    Deno.stderr.writeSync(encoder.encode(`\r\x1b[2K${text}`));
  };
}

// -- compare ------------------------------------------------------------------------

function compare(flags: Flags, out: string[]): void {
  allowOnly(flags, "compare", [
    "out",
    "seed",
    "engines",
    "workloads",
    "scale",
    "machine-mib",
    "reps",
    "no-timing",
    "no-curve",
    "json",
    "quiet",
  ]);
  const seed = intFlag(flags, "seed", DEFAULT_SEED, 0, SEED_MAX);
  const engines = listFlag(flags.engines, ENGINE_NAMES, "engines");
  const workloads = listFlag(flags.workloads, WORKLOAD_NAMES, "workloads");
  const scale = scaleFlag(flags);
  const machineBytes = machineBytesFlag(flags);
  const reps = intFlag(flags, "reps", 3, 1, 100);
  const timedReps = flags["no-timing"] ? 0 : reps;
  const onProgress = progressReporter(flags);
  if (!flags.json) {
    const names = (engines ?? ENGINE_NAMES).join(",");
    out.push(
      `seed=${seed}  engines=${names}  machine=${machineBytes / MiB(1)} MiB  scale=${scale}`,
    );
    flush(out);
  }
  const result = runComparison({
    seed,
    scale,
    machineBytes,
    timedReps,
    curve: !flags["no-curve"],
    ...(engines ? { engines } : {}),
    ...(workloads ? { workloads } : {}),
    ...(onProgress ? { onProgress } : {}),
  });
  if (flags.out !== undefined) {
    reportWritten = writeReportFor(flags.out, {
      command: `deno task sim ${Deno.args.join(" ")}`.trim(),
      comparison: result,
      footprint: footprintSamples(seed, result.engines),
    });
  }
  if (flags.json) out.push(JSON.stringify(result, null, 2));
  else out.push(...renderComparison(result, timedReps));
  if (reportWritten && !flags.json) out.push("", `report: ${reportWritten.join(", ")}`);
}

/**
 * Render a row of figures; with `rank`, the best (lowest) gets `*`. Engines that
 * failed some allocations (`failed[i]`) get `!` and are never best: they served less.
 */
function markRow(
  values: (number | null)[],
  render: (v: number, i: number) => string,
  failed: readonly boolean[],
  rank: boolean,
): Cell[] {
  const eligible = values.filter((v, i): v is number => v !== null && !failed[i]);
  const best = Math.min(...eligible);
  const several = rank && new Set(eligible).size > 1;
  return values.map((v, i) => {
    if (v === null) return null;
    const mark = failed[i] ? " !" : several && v === best ? " *" : "  ";
    return render(v, i) + mark;
  });
}

function renderComparison(r: CompareResult, timedReps: number): string[] {
  const out: string[] = [];
  const byWorkload = (name: string) =>
    r.engines.map((e) => r.results.find((x) => x.trace === name && x.engine === e)!);
  const rows = (
    cell: (x: ReplayResult) => number | null,
    render: (v: number, x: ReplayResult) => string,
    rank = true,
  ) =>
    r.workloads.map((w) => {
      const xs = byWorkload(w.name);
      const failed = xs.map((x) => x.failures > 0);
      return [w.name, ...markRow(xs.map(cell), (v, i) => render(v, xs[i]!), failed, rank)];
    });
  const header = ["workload", ...r.engines];
  out.push("");
  out.push(
    "Footprint: peak pages held by xmalloc (overhead = pages x 4 KiB / peak live requested bytes)",
  );
  out.push(
    renderTable(
      header,
      rows((x) => x.peak_pages, (v, x) => `${v} (${x.overhead_ratio.toFixed(2)}x)`),
    ),
  );
  out.push("");
  out.push(
    "Worst case: max steps of one call (p99 steps). Each engine counts its own unit of work:",
  );
  out.push(
    "first-fit list nodes visited; TLSF bitmap searches and list operations; SLUB freelist and",
  );
  out.push(
    "partial-list operations; buddy free lists searched, list operations, buddy tests, bitmap",
  );
  out.push(
    "words and memr nodes. Compare how steps grow, not their values across engines.",
  );
  out.push(renderTable(header, rows((x) => x.max_steps, (v, x) => `${v} (${x.p99_steps})`, false)));
  if (r.results.some((x) => x.failures > 0)) {
    out.push("");
    out.push("Failures: allocations that returned no block (exhaustion / contiguity / unservable)");
    out.push(renderTable(
      header,
      rows((x) => x.failures, (v, x) => {
        const c = x.failures_by_cause;
        return `${v} (${c.exhaustion}/${c.contiguity}/${c.unservable})`;
      }, false),
    ));
  }
  if (timedReps > 0) {
    out.push("");
    out.push(
      `Host time: wall-clock ns per op, median of ${timedReps} replays (this machine; varies run to run)`,
    );
    out.push(renderTable(header, rows((x) => x.ns_per_op ?? null, (v) => v.toFixed(1))));
  }
  if (r.curve) {
    out.push(
      ...renderCurve(r.curve.sizes_bytes, r.engines, r.curve.pages_per_1024, r.curve.step_ups),
    );
  }
  out.push("");
  out.push(
    "* = best in its row; ! = some allocations failed, so the engine served less and is not ranked.",
  );
  out.push("Same seed and flags give the same figures; --no-timing drops the host times.");
  return out;
}

function renderCurve(
  sizes: number[],
  engines: readonly string[],
  pages: Record<string, (number | null)[]>,
  stepUps: Record<string, StepUp[]>,
): string[] {
  const out: string[] = [""];
  out.push(
    "Near-page wastage: pages held with 1024 live objects of each size (bytes per object = pages x 4)",
  );
  const rows: Cell[][] = [];
  for (const size of CURVE_TABLE_SIZES) {
    const i = sizes.indexOf(size);
    if (i < 0) continue;
    const values = engines.map((e) => pages[e]![i] ?? null);
    rows.push([size, ...markRow(values, (v) => String(v), [], true)]);
  }
  out.push(renderTable(["size (B)", ...engines], rows));
  out.push("");
  out.push(
    `Where the cost per object jumps (>= ${STEP_UP_MIN_RATIO}x from one byte to the next, up to ${CURVE_MAX_BYTES} B):`,
  );
  const width = Math.max(...engines.map((x) => x.length));
  for (const e of engines) {
    const steps = stepUps[e]!.map((s) =>
      `${s.size_bytes} B (${s.pages_before} -> ${s.pages_after})`
    );
    out.push(`  ${e.padEnd(width)}  ${steps.join(", ") || "none"}`);
  }
  return out;
}

// -- reports ------------------------------------------------------------------------

/** Files the last command wrote with --out (printed after its tables). */
let reportWritten: string[] | null = null;

/** Write the report to `dir` (relative to the caller); an unwritable place is a usage error. */
function writeReportFor(dir: string, input: Parameters<typeof writeReport>[1]): string[] {
  try {
    return writeReport(userPath(dir), input);
  } catch (e) {
    throw new UsageError((e as Error).message);
  }
}

/** Footprint over time of two telling workloads, every engine (report charts). */
function footprintSamples(seed: number, engines: readonly string[]) {
  const samples = [];
  for (const name of ["frag-ramp", "compcache"]) {
    const trace = workloadDescriptor(name).generate(new Prng(deriveSeed(seed, name)), 1);
    const every = Math.max(1, Math.ceil(trace.opCount / 600));
    for (const engine of engines) {
      samples.push({
        source: name,
        engine,
        every,
        samples: sampleFootprint(trace, engine, MiB(1024), every),
      });
    }
  }
  return samples;
}

// -- scenario -----------------------------------------------------------------------

async function scenarioCommand(flags: Flags, out: string[]): Promise<void> {
  allowOnly(flags, "scenario", [
    "out",
    "scenario",
    "seed",
    "engines",
    "machine-mib",
    "listen",
    "print-scenario",
    "no-timing",
    "json",
    "quiet",
  ]);
  const scenario = scenarioFromFlags(flags);
  if (flags["print-scenario"]) {
    out.push(JSON.stringify(scenario, null, 2));
    return;
  }
  const timing = !flags["no-timing"];
  if (!flags.json) {
    out.push(
      `seed=${scenario.seed}  scenario=${scenario.name}  engines=${
        scenario.engines.join(",")
      }  machine=${scenario.machine_mib} MiB${flags.listen ? "  transport=loopback socket" : ""}`,
    );
    const guests = scenario.guests.map((g) =>
      `${g.name}: ${g.vcpus} vCPUs, ${g.workload}, max_pages ${g.max_pages}`
    );
    out.push(`guests: ${guests.join("; ")}`);
    flush(out);
  }
  const onProgress = progressReporter(flags);
  const names = new Map(scenario.guests.map((g, i) => [i + 1, g.name])); // domain ids in guest order
  const maps = new Map(scenario.engines.map((e) => [e, new PeakPageMap({ names })]));
  const result = await runScenario(scenario, {
    timing,
    ...(onProgress ? { onProgress } : {}),
    ...(flags.listen ? { transport: serveOnLoopback, workers: true } : {}),
    ...(flags.out !== undefined && !flags.listen
      ? { observe: (engine: string, hv: Hypervisor) => maps.get(engine)!.observe(hv.pages) }
      : {}),
  });
  if (flags.out !== undefined) {
    const curve = runComparison({
      seed: scenario.seed,
      engines: scenario.engines,
      workloads: [],
      timedReps: 0,
    });
    const written = writeReportFor(flags.out, {
      command: `deno task sim ${Deno.args.join(" ")}`.trim(),
      scenario: result,
      comparison: curve,
      latency: result.runs.flatMap((run) =>
        run.guests.map((g) => ({
          engine: run.engine,
          guest: g.guest,
          entries: g.latency_histogram,
        }))
      ),
      pageMaps: [...maps].filter(([, m]) => m.map !== null).map(([engine, m]) => ({
        engine,
        map: m.map!,
      })),
      footprint: footprintSamples(scenario.seed, scenario.engines),
    });
    reportWritten = written;
  }
  onProgress?.(1, 1, "done");
  if (flags.json) out.push(JSON.stringify(result, null, 2));
  else out.push(...renderScenario(result, timing, flags.listen === true));
  if (reportWritten && !flags.json) out.push("", `report: ${reportWritten.join(", ")}`);
}

/** The scenario of `--scenario`, with `--seed`, `--engines`, `--machine-mib` applied. */
function scenarioFromFlags(flags: Flags): Scenario {
  let scenario: Scenario = DEFAULT_SCENARIO;
  if (flags.scenario !== undefined) {
    const path = userPath(flags.scenario);
    let text: string;
    try {
      text = Deno.readTextFileSync(path);
    } catch (e) {
      throw new UsageError(`Cannot read scenario ${path}: ${(e as Error).message}`);
    }
    scenario = parseScenario(text, path); // the real path: trace files are relative to it
  }
  return {
    ...scenario,
    seed: intFlag(flags, "seed", scenario.seed, 0, SEED_MAX),
    engines: listFlag(flags.engines, ENGINE_NAMES, "engines") ?? scenario.engines,
    machine_mib: flags["machine-mib"] === undefined
      ? scenario.machine_mib
      : machineBytesFlag(flags) / MiB(1),
  };
}

async function specialiseCommand(flags: Flags, out: string[]): Promise<void> {
  allowOnly(flags, "specialise", [
    "scenario",
    "seed",
    "engines",
    "machine-mib",
    "listen",
    "json",
    "quiet",
  ]);
  const scenario = scenarioFromFlags(flags);
  if (!flags.json) {
    out.push(
      `seed=${scenario.seed}  scenario=${scenario.name}  own-heap engines=${
        scenario.engines.join(",")
      }`,
    );
    flush(out);
  }
  const onProgress = progressReporter(flags);
  const result = await runSpecialisation(scenario, scenario.engines, {
    timing: false, // specialise reports no host time
    ...(onProgress ? { onProgress } : {}),
    ...(flags.listen ? { transport: serveOnLoopback, workers: true } : {}),
  });
  onProgress?.(1, 1, "done");
  if (flags.json) out.push(JSON.stringify(result, null, 2));
  else out.push(...renderSpecialisation(result));
}

/** Serve `app` on a free loopback port; requests go over the socket. */
async function serveOnLoopback(app: { fetch: FetchLike }) {
  const server = Deno.serve(
    { hostname: "127.0.0.1", port: 0, onListen: () => {} },
    (r) => app.fetch(r),
  );
  const baseUrl = `http://127.0.0.1:${server.addr.port}`;
  await Promise.resolve();
  return {
    send: (r: Request) => fetch(r),
    baseUrl,
    close: async () => {
      await server.shutdown();
    },
  };
}

// -- replay -------------------------------------------------------------------------

function readTrace(path: string): { text: string; name: string; source: string } {
  if (path === "-") {
    const chunks: Uint8Array[] = [];
    const buf = new Uint8Array(65536);
    for (let n = Deno.stdin.readSync(buf); n !== null; n = Deno.stdin.readSync(buf)) {
      chunks.push(buf.slice(0, n));
    }
    const all = new Uint8Array(chunks.reduce((s, c) => s + c.length, 0));
    let at = 0;
    for (const c of chunks) {
      all.set(c, at);
      at += c.length;
    }
    return { text: new TextDecoder().decode(all), name: "stdin", source: "stdin" };
  }
  const full = userPath(path);
  try {
    return {
      text: Deno.readTextFileSync(full),
      name: path.replace(/^.*\//, "").replace(/\.trace$/, ""),
      source: path,
    };
  } catch (e) {
    throw new UsageError(`Cannot read trace ${full}: ${(e as Error).message}`);
  }
}

function replay(flags: Flags, out: string[]): void {
  allowOnly(flags, "replay", ["engine", "trace", "machine-mib", "reps", "no-timing", "json"]);
  if (!flags.engine) {
    throw new UsageError("Missing --engine: expected one of " + ENGINE_NAMES.join(", "));
  }
  if (!flags.trace) throw new UsageError("Missing --trace FILE");
  const engine = nameFlag(flags.engine, ENGINE_NAMES, "engine");
  const machineBytes = machineBytesFlag(flags);
  const reps = intFlag(flags, "reps", 9, 1, 100);
  const { text, name, source } = readTrace(flags.trace);
  const trace = parseTrace(text, name, source);
  const result = replayTrace(trace, {
    engine,
    machineBytes,
    timedReps: flags["no-timing"] ? 0 : reps,
  });
  if (flags.json) {
    out.push(JSON.stringify(result, null, 2));
    return;
  }
  const c = result.failures_by_cause;
  const pa = result.page_allocator;
  const rows: Cell[][] = [
    [
      "ops (allocs / frees / skipped frees)",
      `${result.ops} (${result.allocs} / ${result.frees} / ${result.skipped_frees})`,
    ],
    [
      "failures (exhaustion / contiguity / quota / unservable)",
      `${result.failures} (${c.exhaustion} / ${c.contiguity} / ${c.quota} / ${c.unservable})`,
    ],
    [
      "peak pages (pool / whole), meta pages",
      `${result.peak_pages} (${result.peak_pool_pages} / ${result.peak_whole_pages}), ${result.meta_pages}`,
    ],
    ["end pages", result.end_pages],
    ["peak live requested bytes", result.peak_live_requested_bytes],
    ["overhead ratio", result.overhead_ratio],
    [
      "steps max / mean / p50 / p99 / p99.9",
      `${result.max_steps} / ${result.mean_steps} / ${result.p50_steps} / ${result.p99_steps} / ${result.p999_steps}`,
    ],
    [
      "page allocator calls (alloc / free / failed)",
      `${pa.alloc_calls} / ${pa.free_calls} / ${pa.failed_calls}`,
    ],
    [
      "page allocator failures (contiguity / exhaustion)",
      `${pa.failed_contiguity} / ${pa.failed_exhaustion}`,
    ],
  ];
  if (result.ns_per_op !== undefined) {
    rows.push([`host ns per op (median of ${reps})`, result.ns_per_op]);
  }
  out.push(`replay ${result.trace} on ${result.engine}, machine ${result.machine_mib} MiB`);
  out.push(renderTable(["figure", "value"], rows));
}

// -- from a snapshot ------------------------------------------------------------------

async function fromSnapshotCommand(flags: Flags, out: string[]): Promise<void> {
  allowOnly(flags, "--from-snapshot", [
    "from-snapshot",
    "workload",
    "engines",
    "seed",
    "scale",
    "machine-mib",
    "json",
    "quiet",
  ]);
  const file = flags["from-snapshot"];
  if (file === undefined) throw new UsageError("Missing --from-snapshot FILE");
  const path = userPath(file);
  let json: unknown;
  try {
    json = JSON.parse(await Deno.readTextFile(path));
  } catch (e) {
    throw new UsageError(`Cannot read snapshot "${file}": ${(e as Error).message}`);
  }
  let content;
  try {
    content = parseSnapshotDocument(json);
  } catch (e) {
    throw new SnapshotError(`${file}: ${(e as Error).message}`);
  }
  const seed = intFlag(flags, "seed", DEFAULT_SEED, 0, SEED_MAX);
  const engines = listFlag(flags.engines, ENGINE_NAMES, "engines") ?? [...ENGINE_NAMES];
  const workload = nameFlag(flags.workload ?? "near-page-uniform", WORKLOAD_NAMES, "workload");
  const scale = scaleFlag(flags);
  const machineBytes = machineBytesFlag(flags);
  const h = content.heap;
  if (!flags.json) {
    out.push(
      `seed=${seed}  snapshot=${file}  workload=${workload}  engines=${engines.join(",")}  ` +
        `scale=${scale}`,
      `snapshot: a ${content.domain.engine} heap of ${content.domain.vcpus} vCPUs: ` +
        `${h.live_blocks} live blocks, ${h.requested_bytes} bytes, ${h.pages_held} pages, ` +
        (content.history !== undefined
          ? `after ${content.history.ops} operations (version 1: its history)`
          : `state ${(snapshotStateBytes(content) / 1024).toFixed(0)} KiB`),
    );
    flush(out);
  }
  const trace = workloadDescriptor(workload).generate(
    new Prng(deriveSeed(seed, workload)),
    scale,
  );
  const onProgress = progressReporter(flags);
  const result = runFromSnapshot({
    content,
    engines,
    trace,
    machineBytes,
    ...(onProgress ? { onProgress } : {}),
  });
  if (flags.json) {
    out.push(JSON.stringify({ seed, ...result }, null, 2));
    return;
  }
  const header = ["figure", ...result.runs.map((r) => r.engine)];
  const row = (label: string, cell: (r: FromSnapshotRun) => Cell) => [
    label,
    ...result.runs.map(cell),
  ];
  const pct = (p: { p50: number; p99: number; max: number }) => `${p.p50} / ${p.p99} / ${p.max}`;
  out.push(
    "",
    `At the start (machine ${result.machine_mib} MiB)`,
    renderTable(header, [
      row("start", (r) => r.start),
      row("start calls not served", (r) => r.start_unserved),
      row("pages held", (r) => r.start_pages),
      row("live blocks", (r) => r.start_live_blocks),
      row("overhead ratio", (r) => r.start_overhead_ratio),
    ]),
    "",
    `After ${workload} (${result.workload_ops} ops; the snapshot's blocks stay live)`,
    renderTable(header, [
      row("peak pages", (r) => r.end.peak_pages),
      row("pages held at the end", (r) => r.end.pages_held),
      row("allocations not served", (r) => {
        const causes = Object.entries(r.end.failures).filter(([, n]) => n > 0);
        return causes.length === 0
          ? 0
          : `${r.workload_unserved} (${causes.map(([c, n]) => `${c} ${n}`).join(", ")})`;
      }),
      row("steps p50 / p99 / max", (r) => pct(r.end.steps)),
      row("latency cycles p50 / p99 / max", (r) => pct(r.end.latency_cycles)),
    ]),
  );
}

// -- curve, trace, lists ------------------------------------------------------------

function curve(flags: Flags, out: string[]): void {
  allowOnly(flags, "curve", ["engines", "step", "json", "quiet"]);
  const engines = listFlag(flags.engines, ENGINE_NAMES, "engines") ?? [...ENGINE_NAMES];
  const step = intFlag(flags, "step", CURVE_STEP_BYTES, 1, 4096);
  const sizes = [...new Set([...curveSizes(CURVE_MAX_BYTES, step), ...CURVE_TABLE_SIZES])].sort((
    a,
    b,
  ) => a - b);
  const onProgress = progressReporter(flags);
  const pages: Record<string, (number | null)[]> = {};
  const stepUps: Record<string, StepUp[]> = {};
  engines.forEach((e, i) => {
    onProgress?.(i, engines.length, `near-page curve of ${e}`);
    pages[e] = nearPageCurve(e, sizes).map((p) => p.pages_per_1024);
    stepUps[e] = findStepUps(e, 1, CURVE_MAX_BYTES, 64, STEP_UP_MIN_RATIO);
  });
  onProgress?.(engines.length, engines.length, "done");
  if (flags.json) {
    const body = {
      object_count: 1024,
      sizes_bytes: sizes,
      pages_per_1024: pages,
      step_ups: stepUps,
    };
    out.push(JSON.stringify(body, null, 2));
  } else {
    out.push(...renderCurve(sizes, engines, pages, stepUps).slice(1));
  }
}

function traceCommand(flags: Flags, out: string[]): void {
  allowOnly(flags, "trace", ["workload", "seed", "scale"]);
  if (!flags.workload) {
    throw new UsageError("Missing --workload: expected one of " + WORKLOAD_NAMES.join(", "));
  }
  const workload = workloadDescriptor(nameFlag(flags.workload, WORKLOAD_NAMES, "workload"));
  const seed = intFlag(flags, "seed", DEFAULT_SEED, 0, SEED_MAX);
  const scale = scaleFlag(flags);
  const trace = workload.generate(new Prng(deriveSeed(seed, workload.name)), scale);
  const comment =
    `${workload.name}\n${workload.description}\nseed=${seed} scale=${scale} ops=${trace.opCount}`;
  out.push(formatTrace(trace, comment).trimEnd());
}

function listEngines(flags: Flags, out: string[]): void {
  allowOnly(flags, "engines", ["json"]);
  if (flags.json) {
    const list = ENGINES.map((e) => ({
      name: e.name,
      description: e.description,
      modelled_on: e.modelledOn,
      parameters: e.parameters,
    }));
    out.push(JSON.stringify(list, null, 2));
    return;
  }
  for (const e of ENGINES) {
    out.push(`${e.name}: ${e.description}`);
    out.push(`  models: ${e.modelledOn}`);
    for (const [k, v] of Object.entries(e.parameters)) out.push(`  ${k}: ${v}`);
    out.push("");
  }
}

function listWorkloads(flags: Flags, out: string[]): void {
  allowOnly(flags, "workloads", ["json"]);
  const single = WORKLOADS.map(({ name, description }) => ({
    name,
    description,
    kind: "single-cpu",
  }));
  const smp = SMP_WORKLOADS.map(({ name, description }) => ({ name, description, kind: "smp" }));
  if (flags.json) {
    out.push(JSON.stringify([...single, ...smp], null, 2));
    return;
  }
  out.push("Single-CPU workloads (sim compare, sim trace --workload):");
  for (const w of single) out.push(`  ${w.name}: ${w.description}`);
  out.push("", 'SMP workloads (a scenario guest\'s "workload"; "trace" needs "trace_file"):');
  for (const w of smp) out.push(`  ${w.name}: ${w.description}`);
}

// -- main ---------------------------------------------------------------------------

function flush(out: string[]): void {
  if (out.length === 0) return;
  const bytes = new TextEncoder().encode(out.join("\n") + "\n");
  out.length = 0;
  try {
    for (let at = 0; at < bytes.length;) at += Deno.stdout.writeSync(bytes.subarray(at));
  } catch (e) {
    if (e instanceof Deno.errors.BrokenPipe) Deno.exit(0); // the reader stopped (| head): fine
    throw e;
  }
}

/**
 * Run the CLI with `args`; returns the exit status. Output is written only when a
 * command has fully succeeded (apart from the compare header, printed at the start
 * once every flag has been checked).
 */
export async function main(args: string[]): Promise<number> {
  const out: string[] = [];
  try {
    const { values: flags, positionals } = parseFlags(args[0] === "--" ? args.slice(1) : args);
    if (flags.help) {
      out.push(USAGE.trimEnd());
      flush(out);
      return 0;
    }
    if (positionals.length > 1) throw new UsageError(`Unexpected argument "${positionals[1]}"`);
    const command = positionals[0] ??
      (flags["from-snapshot"] !== undefined ? "from-snapshot" : "scenario");
    const commands: Record<string, (f: Flags, o: string[]) => void | Promise<void>> = {
      scenario: scenarioCommand,
      "from-snapshot": fromSnapshotCommand,
      specialise: specialiseCommand,
      compare,
      replay,
      curve,
      trace: traceCommand,
      engines: listEngines,
      workloads: listWorkloads,
    };
    const run = commands[command];
    if (!run) {
      throw new UsageError(
        `Unknown command "${command}": expected one of ${Object.keys(commands).join(", ")}`,
      );
    }
    await run(flags, out);
    flush(out);
    return 0;
  } catch (e) {
    if (
      e instanceof UsageError || e instanceof TraceError || e instanceof RangeError ||
      e instanceof ScenarioError || e instanceof SnapshotError
    ) {
      console.error(`sim: ${e.message}`);
      if (!(e instanceof TraceError)) console.error("Run 'deno task sim --help' for usage.");
      return 2;
    }
    console.error(
      `sim: internal error (a bug; please report it with the command line): ${
        (e as Error).stack ?? e
      }`,
    );
    return 1;
  }
}

if (import.meta.main) Deno.exit(await main(Deno.args));
