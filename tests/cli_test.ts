/** The sim CLI as a user runs it: a subprocess, its stdout, stderr and exit status. */

import assert from "node:assert/strict";
import { type CliRun, runCli } from "./_run.ts";

const SIM = new URL("../src/cli/sim.ts", import.meta.url).pathname;
const FIXTURES = new URL("./fixtures/", import.meta.url).pathname;

function sim(...args: string[]): Promise<CliRun> {
  return runCli(SIM, ["--allow-read", "--allow-write", "--allow-net=127.0.0.1"], args);
}

async function tempTrace(text: string): Promise<string> {
  const path = await Deno.makeTempFile({ suffix: ".trace" });
  await Deno.writeTextFile(path, text);
  return path;
}

Deno.test("cli: a bad trace line exits 2 with its line number and prints nothing on stdout", async () => {
  const path = await tempTrace("a 1 100\na 2 200\nf 3\n");
  const r = await sim("replay", "--engine", "tlsf", "--trace", path, "--json");
  assert.equal(r.code, 2);
  assert.equal(r.stdout, "");
  assert.match(r.stderr, /line 3: free of id "3", which is not live/);
  assert.ok(r.stderr.includes(path), "the error names the file");
});

Deno.test("cli: bad flags exit 2 and say what is wrong", async (t) => {
  const cases: [string[], RegExp][] = [
    [["--seed=-3"], /Invalid --seed "-3"/],
    [["--seed", "1.5"], /Invalid --seed "1.5"/],
    [["--engines", "tlsf,nope"], /Unknown engine "nope": expected one of/],
    [["compare", "--workloads", ""], /Invalid --workloads: empty list/],
    [["compare", "--scale", "0"], /Invalid --scale "0"/],
    [["--machine-mib", "0"], /Invalid --machine-mib "0"/],
    [["--frobnicate"], /Unknown option '--frobnicate'/],
    [["explode"], /Unknown command "explode"/],
    [["replay", "--trace", "x"], /Missing --engine/],
    [["replay", "--engine", "tlsf"], /Missing --trace FILE/],
    [
      ["replay", "--engine", "tlsf", "--trace", "/nonexistent.trace"],
      /Cannot read trace \/nonexistent.trace/,
    ],
    [
      ["replay", "--engine", "tlsf", "--trace", "x", "--seed", "1"],
      /Option --seed does not apply to "sim replay"/,
    ],
  ];
  for (const [args, why] of cases) {
    await t.step(args.join(" "), async () => {
      const r = await sim(...args);
      assert.equal(r.code, 2, r.stderr);
      assert.equal(r.stdout, "");
      assert.match(r.stderr, why);
    });
  }
});

Deno.test("cli: replay --json gives the reference figures", async () => {
  const r = await sim(
    "replay",
    "--engine",
    "tlsf",
    "--trace",
    `${FIXTURES}traces/frag-ramp.trace`,
    "--json",
    "--no-timing",
  );
  assert.equal(r.code, 0, r.stderr);
  const got = JSON.parse(r.stdout);
  const ref = JSON.parse(await Deno.readTextFile(`${FIXTURES}xen-tlsf/frag-ramp.json`));
  for (
    const k of [
      "ops",
      "peak_pages",
      "end_pages",
      "peak_pool_pages",
      "peak_whole_pages",
      "max_steps",
      "mean_steps",
      "p99_steps",
      "peak_live_requested_bytes",
      "overhead_ratio",
    ]
  ) {
    assert.equal(got[k], ref[k], k);
  }
  assert.equal(got.trace, "frag-ramp");
  assert.equal("ns_per_op" in got, false, "--no-timing leaves wall-clock out");
  assert.equal(
    got.page_allocator.failed_contiguity + got.page_allocator.failed_exhaustion,
    got.page_allocator.failed_calls,
  );
});

Deno.test("cli: same seed and flags give byte-identical output; another seed differs", async () => {
  const args = [
    "compare",
    "--workloads",
    "compcache,frag-ramp",
    "--scale",
    "0.1",
    "--no-timing",
    "--no-curve",
  ];
  const a = await sim(...args, "--seed", "5");
  const b = await sim(...args, "--seed", "5");
  const c = await sim(...args, "--seed", "6");
  assert.equal(a.code, 0, a.stderr);
  assert.equal(a.stdout, b.stdout);
  assert.notEqual(a.stdout, c.stdout);
  assert.match(a.stdout, /^seed=5 /, "the seed is printed first");
  const j1 = await sim(...args, "--seed", "5", "--json");
  const j2 = await sim(...args, "--seed", "5", "--json");
  assert.equal(j1.stdout, j2.stdout);
  const parsed = JSON.parse(j1.stdout);
  assert.equal(parsed.seed, 5);
  assert.equal(parsed.results.length, 2 * parsed.engines.length);
});

Deno.test("cli: --help documents every command and exits 0", async () => {
  const r = await sim("--help");
  assert.equal(r.code, 0);
  for (
    const word of [
      "compare",
      "replay",
      "curve",
      "trace",
      "engines",
      "workloads",
      "--seed",
      "--no-timing",
      "--json",
      "Exit status",
    ]
  ) {
    assert.ok(r.stdout.includes(word), word);
  }
});

Deno.test("cli: trace prints a workload that replay accepts", async () => {
  const r = await sim("trace", "--workload", "page-minus-delta", "--scale", "0.05", "--seed", "2");
  assert.equal(r.code, 0, r.stderr);
  const path = await tempTrace(r.stdout);
  const replay = await sim(
    "replay",
    "--engine",
    "first-fit",
    "--trace",
    path,
    "--json",
    "--no-timing",
  );
  assert.equal(replay.code, 0, replay.stderr);
  assert.equal(JSON.parse(replay.stdout).end_pages, 0);
});

Deno.test("cli: the default scenario command is deterministic with --no-timing and prints its seed first", async () => {
  const args = ["--engines", "tlsf,slub", "--no-timing", "--seed", "9"];
  const a = await sim(...args);
  const b = await sim(...args);
  assert.equal(a.code, 0, a.stderr);
  assert.equal(a.stdout, b.stdout);
  assert.match(a.stdout, /^seed=9 {2}scenario=multi-tenant/);
  for (const heading of ["Footprint", "Latency", "Lock wait", "False sharing"]) {
    assert.ok(a.stdout.includes(heading), heading);
  }
  const printed = await sim("--print-scenario");
  assert.equal(printed.code, 0);
  assert.equal(JSON.parse(printed.stdout).name, "multi-tenant");
  const bad = await sim("--scenario", "/nonexistent.json");
  assert.equal(bad.code, 2);
  assert.match(bad.stderr, /Cannot read scenario/);
});

Deno.test("cli: --out writes a self-contained report, results.json and results.csv", async () => {
  const dir = await Deno.makeTempDir();
  const r = await sim(
    "compare",
    "--workloads",
    "compcache",
    "--scale",
    "0.1",
    "--no-timing",
    "--out",
    dir,
  );
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /report: .*report\.html/);
  const html = await Deno.readTextFile(`${dir}/report.html`);
  assert.ok(html.includes("<svg"), "charts are inline SVG");
  assert.ok(!/(src|href)="https?:/.test(html), "nothing loaded from the network");
  const csv = (await Deno.readTextFile(`${dir}/results.csv`)).split("\n");
  assert.match(csv[0]!, /peak_pages/);
  assert.ok(JSON.parse(await Deno.readTextFile(`${dir}/results.json`)).comparison);
  const bad = await sim(
    "compare",
    "--workloads",
    "compcache",
    "--no-timing",
    "--out",
    "/proc/heapvisor-nope",
  );
  assert.equal(bad.code, 2);
  assert.match(bad.stderr, /Cannot write the report/);
});
