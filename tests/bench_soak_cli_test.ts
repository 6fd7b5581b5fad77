/**
 * `deno task bench:soak` as a user runs it: flags, and tiny runs (a few rounds of two
 * tenants, a handful of batches) that must pass every invariant. No time is asserted.
 */

import assert from "node:assert/strict";
import { differences } from "../src/cli/bench_soak.ts";
import { type CliRun, runCli } from "./_run.ts";

const BENCH = new URL("../src/cli/bench_soak.ts", import.meta.url).pathname;

function soak(...args: string[]): Promise<CliRun> {
  // As the task runs it: Deno reads /proc/<pid> only with --allow-all.
  return runCli(BENCH, ["--allow-all"], args);
}

async function exists(path: string): Promise<boolean> {
  try {
    await Deno.stat(path);
    return true;
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return false;
    throw e;
  }
}

Deno.test("bench:soak: --help tells what it does and exits 0", async () => {
  const r = await soak("--help");
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /Usage: deno task bench:soak/);
  for (const flag of ["--rounds N", "--tenants N", "--batches N", "--batch N", "--seed N"]) {
    assert.ok(r.stdout.includes(flag), flag);
  }
  assert.match(r.stdout, /--quick/);
  assert.match(r.stdout, /--keep/);
  assert.match(r.stdout, /Flat means/);
});

Deno.test("bench:soak: bad flags exit 2 and say what is wrong", async (t) => {
  const cases: [string[], RegExp][] = [
    [["--rounds", "0"], /Invalid --rounds "0": expected an integer in \[1, 1000\]/],
    [["--tenants", "17"], /Invalid --tenants "17": expected an integer in \[1, 16\]/],
    [["--batches", "x"], /Invalid --batches "x"/],
    [["--batch", "1"], /Invalid --batch "1": expected an integer in \[2, 10000\]/],
    [["--seed=-1"], /Invalid --seed "-1"/],
    [["--machine-mib", "32"], /Invalid --machine-mib "32"/],
    [["--bogus"], /Unknown option '--bogus'/],
    [["extra"], /positional argument/],
  ];
  for (const [args, message] of cases) {
    await t.step(args.join(" "), async () => {
      const r = await soak(...args);
      assert.equal(r.code, 2, r.stderr);
      assert.equal(r.stdout, "");
      assert.match(r.stderr, message);
      assert.match(r.stderr, /--help/);
    });
  }
});

Deno.test("bench:soak: a tiny run passes every invariant and prints the table and the verdict", async () => {
  const r = await soak("--rounds=3", "--tenants=2", "--batches=6", "--batch=20", "--seed=7");
  assert.equal(r.code, 0, `${r.stdout}\n${r.stderr}`);
  const lines = r.stdout.split("\n");
  assert.match(lines[1]!, /^seed=7 {2}rounds=3 {2}tenants=2 {2}batches=6 per tenant per round/);
  const dataDir = /data=(\S+) \(removed at the end\)/.exec(lines[1]!)?.[1];
  assert.ok(dataDir, lines[1]);
  assert.match(r.stdout, /^start: server pid \d+ on http:\/\/127\.0\.0\.1:\d+/m);
  for (let round = 1; round <= 3; round++) {
    assert.match(
      r.stdout,
      new RegExp(
        `^round ${round}/3: 240 ops in 12 batches, .*; SIG(TERM|KILL); restarted in [\\d,]+ ms ` +
          `\\(replayed [\\d,]+ ops, checked\\); \\d+ domains, machine and 2 tenant tokens identical$`,
        "m",
      ),
    );
  }
  // SIGTERM and SIGKILL in turn.
  assert.match(r.stdout, /^round 1\/3: .*; SIGTERM;/m);
  assert.match(r.stdout, /^round 2\/3: .*; SIGKILL;/m);

  const header = lines.findIndex((l) => l.startsWith("round   stop"));
  assert.ok(header > 0, "the table's header");
  for (
    const column of [
      "ops so far",
      "journal MiB",
      "RSS after load MiB",
      "HWM after load MiB",
      "restart ms",
      "RSS after restart MiB",
    ]
  ) {
    assert.ok(lines[header]!.includes(column), column);
  }
  assert.match(lines[header + 1]!, /^start\s+-\s+0\s/);
  for (let round = 1; round <= 3; round++) {
    const row = lines[header + 1 + round]!.trim().split(/\s+/);
    assert.equal(row[0], String(round));
    assert.equal(row[1], round % 2 === 1 ? "SIGTERM" : "SIGKILL");
    assert.equal(row[2], String(round * 240), "ops so far");
    // journal, RSS after load, HWM, restart, replay, RSS after restart: figures
    for (const cell of row.slice(5)) assert.match(cell, /^[\d,.]+$/, lines[header + 1 + round]);
  }

  assert.match(
    r.stdout,
    /^churn: 720 memory operations \([\d,]+ served, [\d,]+ allocations or reallocations not served\) in 36 batch requests, \d+ domains created \(\d+ of them forks of a snapshot\) and \d+ destroyed, over [\d.]+ s of load: [\d,]+ ops\/s/m,
  );
  assert.match(
    r.stdout,
    /^invariants: 3 restarts \(2 SIGTERM, 1 SIGKILL\): every replay checked, every figure identical/m,
  );
  assert.match(
    r.stdout,
    /^verdict: server RSS after load, round 1 [\d.]+ MiB -> round 3 [\d.]+ MiB: [+-][\d.]+ MiB \([+-][\d.]+%\); flat: (yes|NO) \(.*round 1 is warm-up\); churn [\d,]+ ops\/s$/m,
  );
  assert.equal(await exists(dataDir), false, "the data directory is removed at the end");
});

Deno.test("bench:soak: --quick --keep keeps the journal it verified", async () => {
  const r = await soak("--quick", "--rounds=2", "--keep");
  assert.equal(r.code, 0, `${r.stdout}\n${r.stderr}`);
  assert.match(r.stdout, /rounds=2 {2}tenants=2 {2}batches=8 per tenant per round {2}batch=40 ops/);
  const dataDir = /^data kept in (\S+)$/m.exec(r.stdout)?.[1];
  assert.ok(dataDir, r.stdout);
  try {
    assert.ok(await exists(`${dataDir}/journal.db`));
    assert.match(r.stdout, /flat: not judged \(needs --rounds >= 3/);
  } finally {
    await Deno.remove(dataDir, { recursive: true });
  }
});

Deno.test("bench:soak: differences names every field that changed", () => {
  const before = { machine: { free_frames: 10 }, domains: [{ id: 1, steps: { p99: 3 } }] };
  assert.deepEqual(differences(before, structuredClone(before)), []);
  const after = { machine: { free_frames: 9 }, domains: [{ id: 1, steps: { p99: 4 } }] };
  assert.deepEqual(differences(before, after), [
    ".machine.free_frames: 10 before, 9 after",
    ".domains[0].steps.p99: 3 before, 4 after",
  ]);
  assert.deepEqual(differences({ a: 1 }, { a: 1, b: 2 }), [".b: undefined before, 2 after"]);
});
