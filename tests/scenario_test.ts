/** Scenarios: guests' vCPUs on virtual time through the control plane. */

import assert from "node:assert/strict";
import {
  parseScenario,
  runScenario,
  runScenarioOnEngine,
  runSpecialisation,
  type Scenario,
  ScenarioSchema,
} from "../guests/scenario.ts";
import type { FetchLike } from "../guests/client.ts";

const scenario = (guests: unknown[], engines: string[], seed = 7): Scenario =>
  ScenarioSchema.parse({ name: "test", seed, machine_mib: 256, engines, guests });

Deno.test("scenario: same seed, byte-identical results; another seed differs", async () => {
  const s = scenario([
    { name: "a", vcpus: 2, max_pages: 4096, workload: "larson", scale: 0.2 },
    { name: "b", vcpus: 1, max_pages: 4096, workload: "near-page", scale: 0.2 },
  ], ["tlsf", "slub"]);
  const one = JSON.stringify(await runScenario(s, { timing: false }));
  const two = JSON.stringify(await runScenario(s, { timing: false }));
  assert.equal(one, two);
  const other = JSON.stringify(await runScenario({ ...s, seed: 8 }, { timing: false }));
  assert.notEqual(one, other);
});

Deno.test("scenario: lock wait only where vCPUs share a lock", async () => {
  // mstress: frequent calls from four vCPUs; tlsf has one pool lock, slub's fast path none.
  const s = scenario([{ name: "t", vcpus: 4, max_pages: 65536, workload: "mstress", scale: 0.3 }], [
    "tlsf",
    "slub",
  ]);
  const r = await runScenario(s, { timing: false });
  const tlsf = r.runs[0]!.guests[0]!;
  const slub = r.runs[1]!.guests[0]!;
  assert.ok(tlsf.lock_contended > 100, `tlsf contended ${tlsf.lock_contended} times`);
  assert.ok(
    slub.lock_wait_cycles * 5 < tlsf.lock_wait_cycles,
    `slub ${slub.lock_wait_cycles}, tlsf ${tlsf.lock_wait_cycles}`,
  );
  // One vCPU never waits for anybody.
  const solo = await runScenario(
    scenario([{ name: "s", vcpus: 1, max_pages: 65536, workload: "mstress", scale: 0.3 }], [
      "tlsf",
    ]),
    { timing: false },
  );
  assert.equal(solo.runs[0]!.guests[0]!.lock_wait_cycles, 0);
  assert.equal(solo.runs[0]!.guests[0]!.lock_contended, 0);
});

Deno.test("scenario: cache-thrash shares lines under tlsf, not under first-fit's aligned headers or per-CPU slabs", async () => {
  const s = scenario([{
    name: "t",
    vcpus: 4,
    max_pages: 8192,
    workload: "cache-thrash",
    scale: 0.3,
  }], [
    "first-fit",
    "tlsf",
    "slub",
  ]);
  const r = await runScenario(s, { timing: false });
  const [firstFit, tlsf, slub] = r.runs.map((run) => run.guests[0]!);
  assert.ok(
    tlsf!.false_sharing_events > 0,
    "tlsf hands neighbouring 16-byte blocks to different vCPUs",
  );
  assert.ok(tlsf!.false_sharing_peak_lines > 0);
  // Xen 3.3's struct xmalloc_hdr is __cacheline_aligned (128 bytes): blocks never share a line.
  assert.equal(firstFit!.false_sharing_events, 0);
  assert.equal(slub!.false_sharing_peak_lines, 0, "each vCPU allocates from its own slab");
  assert.equal(slub!.false_sharing_events, 0);
});

Deno.test("scenario: in process and over a loopback socket give the same figures", async () => {
  const s = scenario([{ name: "solo", vcpus: 1, max_pages: 4096, workload: "redis", scale: 0.1 }], [
    "tlsf",
  ]);
  const inProcess = await runScenarioOnEngine(s, "tlsf", { timing: false });
  const overSocket = await runScenarioOnEngine(s, "tlsf", {
    timing: false,
    transport: (app: { fetch: FetchLike }) => {
      const server = Deno.serve(
        { hostname: "127.0.0.1", port: 0, onListen: () => {} },
        (r) => app.fetch(r),
      );
      return Promise.resolve({
        send: (r: Request) => fetch(r),
        baseUrl: `http://127.0.0.1:${server.addr.port}`,
        close: () => server.shutdown(),
      });
    },
  });
  assert.deepEqual(overSocket, inProcess);
  assert.ok(inProcess.guests[0]!.ops > 100);
});

Deno.test("scenario: bad scenario files say which field is wrong", () => {
  assert.throws(() => parseScenario("{", "s.json"), /Invalid scenario s.json: not JSON/);
  assert.throws(() => parseScenario(JSON.stringify({ name: "x", guests: [] }), "s.json"), /guests/);
  assert.throws(
    () =>
      parseScenario(
        JSON.stringify({
          name: "x",
          guests: [{ name: "a", vcpus: 1, max_pages: 1, workload: "nope" }],
        }),
        "s.json",
      ),
    /guests.0.workload: expected one of/,
  );
  assert.throws(
    () =>
      parseScenario(
        JSON.stringify({
          name: "x",
          engines: ["tlsf", "tlsf"],
          guests: [{ name: "a", vcpus: 1, max_pages: 1, workload: "redis" }],
        }),
        "s.json",
      ),
    /engine is named twice/,
  );
  assert.throws(
    () =>
      parseScenario(
        JSON.stringify({
          name: "x",
          extra: 1,
          guests: [{ name: "a", vcpus: 1, max_pages: 1, workload: "redis" }],
        }),
      ),
    /extra/,
  );
});

Deno.test("scenario: own heaps boot first, serve locally, and return every page", async () => {
  const s = scenario([
    {
      name: "own",
      vcpus: 2,
      max_pages: 8192,
      workload: "redis",
      scale: 0.1,
      heap: { own: "slub" },
    },
    { name: "hv", vcpus: 1, max_pages: 8192, workload: "redis", scale: 0.1 },
  ], ["tlsf"]);
  const r = await runScenario(s, { timing: false });
  const [own, hv] = r.runs[0]!.guests;
  assert.equal(own!.heap, "own:slub");
  assert.equal(hv!.heap, "hypervisor");
  assert.ok(own!.boot_cycles > 0, "reserving and initialising the own heap costs cycles");
  assert.equal(hv!.boot_cycles, 0);
  assert.ok(own!.peak_pages >= 64, "at least the initial reservation");
  assert.ok(own!.ops > 100 && hv!.ops > 100);
  assert.ok(own!.makespan_cycles > own!.boot_cycles, "vCPUs start after boot");
});

Deno.test("scenario: specialisation tries every own-heap engine on every guest", async () => {
  const s = scenario([{ name: "r", vcpus: 2, max_pages: 16384, workload: "redis", scale: 0.1 }], [
    "tlsf",
  ]);
  const r = await runSpecialisation(s, ["tlsf", "buddy"], { timing: false });
  assert.deepEqual(r.engines, ["tlsf", "buddy"]);
  const [tlsf, buddy] = r.guests[0]!.results;
  assert.equal(tlsf!.heap, "own:tlsf");
  assert.equal(buddy!.heap, "own:buddy");
  // bbuddy's every malloc is at least a page: Redis's small objects cost it far more.
  assert.ok(
    buddy!.peak_pages > 2 * tlsf!.peak_pages,
    `${buddy!.peak_pages} vs ${tlsf!.peak_pages}`,
  );
});

Deno.test("scenario: a guest in a Worker over a real socket gets the same figures as in process", async () => {
  const s = scenario([
    { name: "w", vcpus: 2, max_pages: 8192, workload: "larson", scale: 0.1 },
  ], ["slub"]);
  const inProcess = await runScenarioOnEngine(s, "slub", { timing: false });
  const inWorker = await runScenarioOnEngine(s, "slub", {
    timing: false,
    workers: true,
    transport: (app: { fetch: FetchLike }) => {
      const server = Deno.serve(
        { hostname: "127.0.0.1", port: 0, onListen: () => {} },
        (r) => app.fetch(r),
      );
      return Promise.resolve({
        send: (r: Request) => fetch(r),
        baseUrl: `http://127.0.0.1:${server.addr.port}`,
        close: () => server.shutdown(),
      });
    },
  });
  assert.deepEqual(inWorker, inProcess);
});

Deno.test("scenario: a guest replays a per-vCPU trace file named relative to the scenario", async () => {
  const dir = await Deno.makeTempDir();
  await Deno.writeTextFile(`${dir}/t.trace`, "a 1 100 0\na 2 200 1\nf 1 1\nf 2 0\n");
  const text = JSON.stringify({
    name: "replay",
    engines: ["tlsf"],
    machine_mib: 64,
    guests: [{ name: "r", vcpus: 2, max_pages: 64, workload: "trace", trace_file: "t.trace" }],
  });
  const s = parseScenario(text, `${dir}/s.json`);
  assert.equal(s.guests[0]!.trace_file, `${dir}/t.trace`);
  const r = await runScenario(s, { timing: false });
  assert.equal(r.runs[0]!.guests[0]!.ops, 4);
  await Deno.writeTextFile(`${dir}/t.trace`, "a 1 100 0\nf 9 1\n");
  assert.throws(
    () => parseScenario(text, `${dir}/s.json`),
    /trace_file: Invalid trace .*line 2: free of id "9"/,
  );
  const wrong = JSON.stringify({
    name: "x",
    guests: [{ name: "r", vcpus: 1, max_pages: 64, workload: "redis", trace_file: "t.trace" }],
  });
  assert.throws(() => parseScenario(wrong, `${dir}/s.json`), /only with workload "trace"/);
});

Deno.test("scenario: checks that need the guest are made before the run", () => {
  const g = { name: "a", vcpus: 1, max_pages: 100, workload: "redis" };
  assert.throws(
    () =>
      parseScenario(
        JSON.stringify({
          name: "x",
          guests: [{ ...g, heap: { own: "tlsf", initial_pages: 200 } }],
        }),
      ),
    /heap.initial_pages: 200 is more than max_pages 100/,
  );
  assert.throws(
    () => parseScenario(JSON.stringify({ name: "x", guests: [{ ...g, workload: "trace" }] })),
    /trace_file: workload "trace" needs one/,
  );
});

Deno.test("scenario: a trace using more vCPUs than its guest has is refused up front", async () => {
  const dir = await Deno.makeTempDir();
  await Deno.writeTextFile(`${dir}/t.trace`, "a 1 100 3\nf 1 3\n");
  const text = JSON.stringify({
    name: "x",
    guests: [{ name: "r", vcpus: 2, max_pages: 64, workload: "trace", trace_file: "t.trace" }],
  });
  assert.throws(() => parseScenario(text, `${dir}/s.json`), /uses vCPU 3, the guest has 2/);
});
