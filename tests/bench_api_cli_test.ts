/** `deno task bench:api` as a user runs it: flags, and one very short run (no rate asserted). */

import assert from "node:assert/strict";
import { type CliRun, runCli } from "./_run.ts";

const BENCH = new URL("../src/cli/bench_api.ts", import.meta.url).pathname;

function bench(...args: string[]): Promise<CliRun> {
  const permissions = ["--allow-net=127.0.0.1", "--allow-read", "--allow-write", "--allow-env"];
  return runCli(BENCH, permissions, args);
}

Deno.test("bench:api: --help prints the usage and exits 0", async () => {
  const r = await bench("--help");
  assert.equal(r.code, 0);
  assert.match(r.stdout, /Usage: deno task bench:api/);
  assert.match(r.stdout, /--clients N/);
});

Deno.test("bench:api: bad flags exit 2 and say what is wrong", async (t) => {
  const cases: [string[], RegExp][] = [
    [["--clients", "0"], /Invalid --clients "0": expected an integer in \[1, 256\]/],
    [["--clients", "1.5"], /Invalid --clients "1.5"/],
    [["--seconds", "0.1"], /Invalid --seconds "0.1": expected a number in \[0.3, 600\]/],
    [["--batch", "3"], /Invalid --batch "3": expected an even number/],
    [["--batch", "10002"], /Invalid --batch "10002"/],
    [["--engine", "nope"], /Unknown engine "nope": expected one of/],
    [["--threads=-1"], /Invalid --threads "-1"/],
    [["--bogus"], /Unknown option '--bogus'/],
    [["extra"], /positional argument/],
  ];
  for (const [args, message] of cases) {
    await t.step(args.join(" "), async () => {
      const r = await bench(...args);
      assert.equal(r.code, 2, r.stderr);
      assert.equal(r.stdout, "");
      assert.match(r.stderr, message);
      assert.match(r.stderr, /--help/);
    });
  }
});

Deno.test("bench:api: a short run prints its config, then every scenario and both targets", async () => {
  const r = await bench(
    "--seconds=0.3",
    "--warmup=0",
    "--clients=2",
    "--batch=10",
    "--threads=0",
    "--seed=7",
  );
  assert.equal(r.code, 0, r.stderr);
  const lines = r.stdout.split("\n");
  assert.match(lines[1]!, /^seed=7 {2}clients=2 {2}seconds=0.3 \(3 rounds\)/);
  for (const s of ["hello (bare Hono)", "single-op alloc/free", "batched alloc/free"]) {
    assert.ok(lines.some((l) => l.startsWith(s)), `a row for ${s}`);
  }
  assert.match(
    r.stdout,
    /single-op \/ hello: [\d.]+ \(rounds [\d., ]+\); target >= 0.50: (met|NOT met)/,
  );
  assert.match(
    r.stdout,
    /batched \(10 ops per request\): [\d,]+ simulated ops\/s; target >= 1,000,000/,
  );
});

Deno.test("bench:api: --durable journals every acknowledged change and says how many", async () => {
  const r = await bench(
    "--seconds=0.3",
    "--warmup=0",
    "--clients=1",
    "--batch=10",
    "--threads=0",
    "--durable",
  );
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /durable=yes/);
  const m = /journal: ([\d,]+) requests made durable/.exec(r.stdout);
  assert.ok(m, r.stdout);
  // at least the tenant (with its token), the domains, a few requests and the deletion
  assert.ok(Number(m[1]!.replaceAll(",", "")) > 4);
});
