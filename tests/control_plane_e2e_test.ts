/**
 * End to end over a real loopback socket: `deno run --allow-net --allow-env
 * src/cli/serve.ts --port 0` as a subprocess, driven with the typed client over HTTP
 * and with `fetch`, then stopped with SIGTERM. Every wait is bounded and the child is
 * always killed in `finally`.
 */

import assert from "node:assert/strict";
import { ControlPlaneClient, ControlPlaneError } from "../guests/client.ts";
import { parsePrometheus, parseSse, readAllWithin } from "./control_plane_harness.ts";
import { within } from "../src/within.ts";
import { PROJECT_ROOT, SERVE_TASK_FLAGS, spawnServe } from "../src/cli/_serve_process.ts";

const ADMIN_TOKEN = "e2e-admin-token-0123456789";
/** Start-up compiles the server: allow for a cold cache. */
const START_TIMEOUT_MS = 60_000;
const EXIT_TIMEOUT_MS = 10_000;

/** Text a stream has produced so far, read in the background until it ends. */
class Collected {
  text = "";
  readonly done: Promise<void>;

  constructor(stream: ReadableStream<Uint8Array>) {
    this.done = (async () => {
      for await (const chunk of stream.pipeThrough(new TextDecoderStream())) this.text += chunk;
    })();
  }

  /** Wait until `pattern` matches the text, or fail after `timeoutMs`. */
  async waitFor(pattern: RegExp, timeoutMs: number, stderr: Collected): Promise<RegExpExecArray> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const m = pattern.exec(this.text);
      if (m) return m;
      if (Date.now() > deadline) {
        assert.fail(
          `no ${pattern} within ${timeoutMs} ms; stdout: ${this.text}; stderr: ${stderr.text}`,
        );
      }
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
  }
}

/** A running `serve`: its URL, its output so far, and how to stop it. */
interface Server {
  child: Deno.ChildProcess;
  url: string;
  stdout: Collected;
  stderr: Collected;
}

/** Run `fn` against a fresh server; the child is killed and reaped whatever happens. */
async function withServer(
  adminToken: string | undefined,
  fn: (server: Server) => Promise<void>,
  storage: string[] = ["--ephemeral"],
): Promise<void> {
  const child = spawnServe({
    ...(adminToken !== undefined ? { adminToken } : {}),
    args: ["--port", "0", "--machine-mib", "64", ...storage],
  });
  const stdout = new Collected(child.stdout);
  const stderr = new Collected(child.stderr);
  let exited = false;
  child.status.then(() => (exited = true));
  try {
    const m = await stdout.waitFor(
      /heapvisor control plane on (http:\/\/[^\s]+)/,
      START_TIMEOUT_MS,
      stderr,
    );
    await fn({ child, url: m[1]!, stdout, stderr });
  } finally {
    if (!exited) child.kill("SIGKILL");
    await child.status;
    await Promise.all([stdout.done, stderr.done]);
  }
}

/** Send SIGTERM; the server must say so and exit 0 within the timeout. */
async function stop(server: Server): Promise<void> {
  server.child.kill("SIGTERM");
  const status = await within(server.child.status, EXIT_TIMEOUT_MS);
  assert.notEqual(status, "timeout", `no exit within ${EXIT_TIMEOUT_MS} ms of SIGTERM`);
  await Promise.all([server.stdout.done, server.stderr.done]);
  assert.equal((status as Deno.CommandStatus).code, 0, server.stderr.text);
  assert.match(server.stdout.text, /^shutting down$/m);
}

Deno.test("e2e: serve over loopback, driven by the HTTP client, stopped by SIGTERM", async () => {
  await withServer(ADMIN_TOKEN, async (server) => {
    const { url, stdout } = server;
    assert.match(url, /^http:\/\/127\.0\.0\.1:\d+$/, "loopback by default");
    assert.match(stdout.text, /admin token: from HEAPVISOR_ADMIN_TOKEN/);
    assert.ok(!stdout.text.includes(ADMIN_TOKEN), "a token from the environment is never printed");

    const admin = ControlPlaneClient.overHttp(url, ADMIN_TOKEN);
    assert.deepEqual(await admin.health(), { status: "ok" });
    const tenant = await admin.createTenant({ name: "acme", max_domains: 2, max_pages: 4096 });
    const client = admin.withToken(tenant.token);
    const dom = await client.createDomain({ name: "web", vcpus: 2, max_pages: 1024 });
    assert.equal(dom.tenant_id, tenant.id);

    const a = await client.alloc(dom.id, { size: 4095 });
    assert.equal(a.ok, true);
    assert.ok(a.reserved_bytes >= 4095);
    const tooBig = await client.alloc(dom.id, { size: 2000 * 4096 });
    assert.deepEqual([tooBig.ok, tooBig.cause], [false, "quota"], "507 is an outcome");
    const batch = await client.batch(dom.id, [
      { op: "alloc", size: 100 },
      { op: "alloc", size: 200, vcpu: 1 },
      { op: "free", ref: 0 },
      { op: "free", address: 5 },
    ]);
    assert.equal(batch.served, 3);
    assert.deepEqual(batch.errors.map((e) => [e.index, e.code]), [[3, "unknown_address"]]);
    const freed = await client.free(dom.id, { address: a.address });
    assert.equal(freed.address, a.address);
    await assert.rejects(
      client.free(dom.id, { address: a.address + 8 }),
      (e) => e instanceof ControlPlaneError && e.status >= 400 && e.status < 500,
    );

    const stats = await admin.stats();
    assert.equal(stats.machine.frames, 16_384);
    const mine = stats.domains.find((d) => d.id === dom.id)!;
    assert.equal(mine.live_blocks, 1);
    assert.equal(mine.failures.quota, 1);
    assert.deepEqual(await client.domain(dom.id), mine);

    const samples = parsePrometheus(await admin.metrics());
    const held = samples.find((s) =>
      s.name === "heapvisor_domain_pages_held" && s.labels["domain"] === String(dom.id)
    );
    assert.equal(held?.value, mine.pages_held);

    // SSE with fetch: three stats events, then the stream ends.
    const events = await fetch(`${url}/v1/domains/${dom.id}/events?interval_ms=50&max_events=3`, {
      headers: { authorization: `Bearer ${tenant.token}` },
    });
    assert.equal(events.status, 200);
    assert.match(events.headers.get("content-type") ?? "", /^text\/event-stream/);
    const parsed = parseSse(await readAllWithin(events.body!, 5000));
    assert.deepEqual(parsed.map((e) => e.event), ["stats", "stats", "stats"]);
    assert.equal(JSON.parse(parsed[2]!.data).id, dom.id);

    // Auth and limits hold on the socket too.
    const anonymous = await fetch(`${url}/v1/domains`);
    assert.equal(anonymous.status, 401);
    assert.equal((await anonymous.json()).error.code, "unauthorized");
    const big = await fetch(`${url}/v1/domains/${dom.id}/alloc`, {
      method: "POST",
      headers: { authorization: `Bearer ${tenant.token}`, "content-type": "application/json" },
      body: `{"size": 8${" ".repeat(70 * 1024)}}`,
    });
    assert.equal(big.status, 413);
    assert.equal((await big.json()).error.code, "body_too_large");
    const other = await admin.createTenant({ name: "other", max_domains: 1, max_pages: 1 });
    await assert.rejects(
      admin.withToken(other.token).domain(dom.id),
      (e) => e instanceof ControlPlaneError && e.status === 404 && e.code === "not_found",
    );

    await client.destroyDomain(dom.id);
    assert.equal((await admin.stats()).machine.free_frames, 16_384);
    await stop(server);
  });
});

Deno.test("e2e: without HEAPVISOR_ADMIN_TOKEN a token is generated, printed once, and works", async () => {
  await withServer(undefined, async (server) => {
    const m = await server.stdout.waitFor(
      /admin token \(shown once\): (\S+)/,
      5000,
      server.stderr,
    );
    const token = m[1]!;
    assert.ok(token.length >= 16, token);
    assert.equal(server.stdout.text.split(token).length - 1, 1, "printed exactly once");
    assert.deepEqual(await ControlPlaneClient.overHttp(server.url, token).tenants(), []);
    await assert.rejects(
      ControlPlaneClient.overHttp(server.url, `${token}x`).tenants(),
      (e) => e instanceof ControlPlaneError && e.status === 401,
    );
    await stop(server);
    assert.equal(server.stdout.text.split(token).length - 1, 1, "not printed again on exit");
  });
});

Deno.test("e2e: SIGTERM with an event stream open still exits promptly and ends the stream", async () => {
  await withServer(ADMIN_TOKEN, async (server) => {
    const admin = ControlPlaneClient.overHttp(server.url, ADMIN_TOKEN);
    const tenant = await admin.createTenant({ name: "acme", max_domains: 1, max_pages: 64 });
    const dom = await ControlPlaneClient.overHttp(server.url, tenant.token).createDomain({
      name: "web",
      vcpus: 1,
      max_pages: 64,
    });
    // Defaults: an event a second for up to an hour.
    const events = await fetch(`${server.url}/v1/domains/${dom.id}/events`, {
      headers: { authorization: `Bearer ${tenant.token}` },
    });
    assert.equal(events.status, 200);
    const reader = events.body!.getReader();
    const first = await reader.read();
    assert.ok(!first.done, "the first stats event arrives");
    reader.releaseLock();
    const ended = readAllWithin(events.body!, EXIT_TIMEOUT_MS).then(() => null, (e) => e as Error);
    const stopped = await stop(server).then(() => null, (e) => e as Error);
    const stream = await ended;
    assert.equal(stopped, null, `SIGTERM with a stream open: ${stopped}`);
    assert.equal(stream, null, `the event stream outlived SIGTERM: ${stream}`);
  });
});

Deno.test("e2e: kill -9 in the middle of a batched load loses nothing acknowledged and half-applies nothing", async () => {
  const dir = await Deno.makeTempDir({ prefix: "heapvisor-e2e-data-" });
  // A checkpoint every 1000 operations: the restart loads the last one and replays
  // the rows after it.
  const data = ["--data", dir, "--checkpoint-ops", "1000"];
  const batches: Parameters<ControlPlaneClient["batch"]>[1][] = [];
  for (let b = 0; b < 400; b++) {
    batches.push(
      Array.from(
        { length: 50 },
        (_, i) =>
          i % 3 === 2
            ? { op: "free" as const, ref: i - 2 }
            : { op: "alloc" as const, size: 1 + ((b * 131 + i * 977) % 5000), vcpu: i % 2 },
      ),
    );
  }
  let token = "";
  let acked = 0;
  let inFlight = -1;
  try {
    await withServer(ADMIN_TOKEN, async (server) => {
      const admin = ControlPlaneClient.overHttp(server.url, ADMIN_TOKEN);
      const tenant = await admin.createTenant({ name: "acme", max_domains: 1, max_pages: 8192 });
      token = tenant.token;
      const client = admin.withToken(token);
      await client.createDomain({ name: "web", vcpus: 2, max_pages: 8192, engine: "tlsf" });
      // After 100 acknowledged batches, kill the server from outside while the next
      // batch is on its way, as a crash would.
      try {
        for (let b = 0; b < batches.length; b++) {
          inFlight = b;
          const pending = client.batch(1, batches[b]!);
          if (b === 100) setTimeout(() => server.child.kill("SIGKILL"), 1);
          await pending;
          acked = b + 1;
        }
      } catch {
        // the connection died with the server
      }
    }, data);
    assert.ok(acked >= 100 && acked < batches.length, `killed mid-load (${acked} acknowledged)`);

    let restarted: unknown;
    await withServer(ADMIN_TOKEN, async (server) => {
      assert.match(
        server.stdout.text,
        /restored a checkpoint \(after row \d+\) and \d+ operations? after it: 1 domain, 0 snapshots from .* \(checked\)/,
      );
      const client = ControlPlaneClient.overHttp(server.url, token); // the tenant token survived
      restarted = await client.domain(1);
      await stop(server);
    }, data);

    // The same acknowledged operations, uninterrupted, in process. The batch in flight
    // at the kill may or may not have become durable, but only whole.
    const { Hypervisor } = await import("../hypervisor/hypervisor.ts");
    const { createControlPlane } = await import("../hypervisor/control_plane/app.ts");
    const expected = async (n: number) => {
      const hv = new Hypervisor({ engine: "tlsf", machineBytes: 64 * 1024 * 1024 });
      const { app } = createControlPlane(hv, { adminToken: ADMIN_TOKEN });
      const admin = ControlPlaneClient.inProcess(app, ADMIN_TOKEN);
      const t = await admin.createTenant({ name: "acme", max_domains: 1, max_pages: 8192 });
      const c = admin.withToken(t.token);
      await c.createDomain({ name: "web", vcpus: 2, max_pages: 8192, engine: "tlsf" });
      for (let b = 0; b < n; b++) await c.batch(1, batches[b]!);
      return await c.domain(1);
    };
    const candidates = [await expected(acked)];
    if (inFlight === acked && acked < batches.length) candidates.push(await expected(acked + 1));
    assert.ok(
      candidates.some((e) => JSON.stringify(e) === JSON.stringify(restarted)),
      `restarted figures match neither ${acked} nor ${acked + 1} batches`,
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("e2e: a second server on the same data directory is refused at start, saying why", async () => {
  const dir = await Deno.makeTempDir({ prefix: "heapvisor-e2e-data-" });
  try {
    await withServer(ADMIN_TOKEN, async (first) => {
      const second = spawnServe({
        adminToken: ADMIN_TOKEN,
        args: ["--port", "0", "--machine-mib", "64", "--data", dir],
      });
      const status = await within(second.status, START_TIMEOUT_MS);
      if (status === "timeout") second.kill("SIGKILL");
      const out = await second.output();
      assert.notEqual(status, "timeout", "the second server started");
      assert.equal(out.code, 2);
      assert.match(
        new TextDecoder().decode(out.stderr),
        /journal\.db: cannot open: database is locked \(another process holds it: is another heapvisor serve using this data directory\?\)/,
      );
      // The first one goes on.
      const admin = ControlPlaneClient.overHttp(first.url, ADMIN_TOKEN);
      assert.equal((await admin.createTenant({ name: "t", max_domains: 1, max_pages: 8 })).id, 1);
      await stop(first);
    }, ["--data", dir]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("e2e: the servers these tests start run with the serve task's flags", () => {
  const tasks = JSON.parse(Deno.readTextFileSync(`${PROJECT_ROOT}deno.json`)).tasks;
  assert.equal(tasks.serve, `deno run ${SERVE_TASK_FLAGS.join(" ")} src/cli/serve.ts`);
});
