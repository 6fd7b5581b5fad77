/**
 * The journal when storage fails: full (its cap, or the disk), read-only, or not a
 * directory. The in-process tests drive the control plane with a capped journal until
 * SQLite itself answers SQLITE_FULL; the serve tests run `src/cli/serve.ts` as a
 * subprocess with the serve task's permissions and check that it refuses to start,
 * says why, exits non-zero and writes nothing. Every wait is bounded and every child
 * is killed and reaped in `finally`.
 */

import assert from "node:assert/strict";
import { DatabaseSync } from "node:sqlite";
import { Hypervisor } from "../hypervisor/hypervisor.ts";
import { createControlPlane } from "../hypervisor/control_plane/app.ts";
import { BuddyPageAllocator } from "../hypervisor/page_allocator.ts";
import { Tenancy } from "../hypervisor/domains.ts";
import { applyOp, Journal, JournalError, type JournalOp } from "../hypervisor/journal.ts";
import { Prng } from "../src/prng.ts";
import { MiB } from "../src/units.ts";
import { spawnServe } from "../src/cli/_serve_process.ts";

const ADMIN = "admin-token-0123456789";
const MACHINE_MIB = 64;
/** The permissions of deno.json's serve task. */
const SERVE_PERMISSIONS = [
  "--unstable-no-legacy-abort", // as the serve task runs it
  "--allow-net",
  "--allow-env=HEAPVISOR_ADMIN_TOKEN",
  "--allow-read",
  "--allow-write",
];
/** A bound on one serve run (start-up compiles the server: allow for a cold cache). */
const RUN_TIMEOUT_MS = 60_000;

type App = ReturnType<typeof createControlPlane>["app"];

/** One request as sent: replayable against another plane. */
interface Sent {
  method: "GET" | "POST" | "DELETE";
  path: string;
  body?: unknown;
}

/** The fields of the answers this test reads. */
interface Answer {
  ok?: boolean;
  address?: number;
  addresses?: number[];
  reserved_pages?: number;
  id?: number;
  error?: { code: string; message: string };
}

/** Send `req` as the admin; the status and the parsed body. */
async function send(app: App, req: Sent): Promise<{ status: number; json: Answer }> {
  const res = await app.request(req.path, {
    method: req.method,
    headers: {
      authorization: `Bearer ${ADMIN}`,
      ...(req.body === undefined ? {} : { "content-type": "application/json" }),
    },
    ...(req.body === undefined ? {} : { body: JSON.stringify(req.body) }),
  });
  const text = await res.text();
  return { status: res.status, json: text === "" ? null : JSON.parse(text) };
}

function newMachine(): Hypervisor {
  return new Hypervisor({ engine: "tlsf", machineBytes: MiB(MACHINE_MIB) });
}

/** Everything the model's state shows: every domain's stats and reservation, free frames. */
function figures(hv: Hypervisor): unknown {
  return {
    tenants: hv.tenancy.tenants().length,
    domains: hv.tenancy.domains().map((d) => ({
      id: d.id,
      stats: d.stats(),
      reserved: d.reservedPages,
    })),
    free_frames: hv.pages.freeFrameCount,
  };
}

/**
 * The next request of a seeded mix on domain 1: single allocations and frees, batches
 * (allocations, some freed by ref in the same batch), reservations and releases.
 * `live` (addresses) and `reserved` (pages) are what the answers so far left.
 */
function nextRequest(rng: Prng, live: number[], reserved: number): Sent {
  const r = rng.nextFloat();
  if (r < 0.25) {
    const body = { size: 1 + rng.index(6_000), vcpu: rng.index(2) };
    return { method: "POST", path: "/v1/domains/1/alloc", body };
  }
  if (r < 0.4 && live.length > 0) {
    const [address] = live.splice(rng.index(live.length), 1);
    return { method: "POST", path: "/v1/domains/1/free", body: { address, vcpu: rng.index(2) } };
  }
  if (r < 0.9) {
    const ops: unknown[] = [];
    const allocs = 10 + rng.index(40);
    for (let i = 0; i < allocs; i++) ops.push({ op: "alloc", size: 1 + rng.index(3_000) });
    for (let i = 0; i < allocs; i++) if (rng.nextFloat() < 0.6) ops.push({ op: "free", ref: i });
    return { method: "POST", path: "/v1/domains/1/batch", body: { ops } };
  }
  if (r < 0.95 || reserved === 0) {
    return { method: "POST", path: "/v1/domains/1/reservation", body: { pages: 1 + rng.index(4) } };
  }
  const pages = 1 + rng.index(reserved);
  return { method: "POST", path: "/v1/domains/1/reservation/release", body: { pages } };
}

/** What a request that answered `json` leaves live (addresses) and reserved (pages). */
function track(req: Sent, json: Answer, live: number[], reserved: number): number {
  if (req.path.endsWith("/alloc") && json.ok) live.push(json.address!);
  if (req.path.endsWith("/batch")) {
    const ops = (req.body as { ops: { op: string; ref?: number }[] }).ops;
    const addresses = json.addresses!;
    const freed = new Set(ops.flatMap((op) => op.op === "free" ? [op.ref] : []));
    ops.forEach((op, i) => {
      if (op.op === "alloc" && !freed.has(i) && addresses[i] !== 0) live.push(addresses[i]!);
    });
  }
  if (req.path.endsWith("/reservation") || req.path.endsWith("/reservation/release")) {
    return json.reserved_pages!;
  }
  return reserved;
}

Deno.test(
  "journal faults: a journal at its cap answers 503 with the reason, reads go on, and it reopens sound with exactly the acknowledged state",
  async () => {
    const dir = await Deno.makeTempDir({ prefix: "heapvisor-faults-" });
    try {
      const path = `${dir}/journal.db`;
      const cap = 64 * 1024; // 16 pages of 4 KiB: the schema and a few dozen requests
      const journal = new Journal(path, { maxBytes: cap });
      const hv = newMachine();
      const { app } = createControlPlane(hv, { adminToken: ADMIN, journal });
      const acked: { req: Sent; status: number; json: Answer }[] = [];
      let failed: { req: Sent; status: number; json: Answer } | null = null;
      const setup: Sent[] = [
        {
          method: "POST",
          path: "/v1/tenants",
          body: { name: "t", max_domains: 2, max_pages: 8192 },
        },
        {
          method: "POST",
          path: "/v1/domains",
          body: { tenant_id: 1, name: "d", vcpus: 2, max_pages: 4096, engine: "tlsf" },
        },
      ];
      for (const req of setup) {
        const res = await send(app, req);
        assert.equal(res.status, 201, JSON.stringify(res.json));
        acked.push({ req, ...res });
      }
      const rng = new Prng(20_251);
      const live: number[] = [];
      let reserved = 0;
      for (let i = 0; i < 2_000 && failed === null; i++) {
        const req = nextRequest(rng, live, reserved);
        const res = await send(app, req);
        if (res.status === 503) {
          failed = { req, ...res };
          break;
        }
        assert.ok([200, 201, 507].includes(res.status), `${req.path}: ${JSON.stringify(res)}`);
        acked.push({ req, ...res });
        reserved = track(req, res.json, live, reserved);
      }
      assert.ok(failed !== null, "the capped journal filled up within 2,000 requests");
      assert.ok(acked.length > 10, `${acked.length} requests were acknowledged before it filled`);

      // The request whose append failed: 503, and a message that says why and what to do.
      assert.equal(failed.json.error?.code, "journal_unavailable");
      const message = failed.json.error?.message ?? "";
      assert.match(message, /journal .*journal\.db is full/i);
      assert.match(message, /SQLite: database or disk is full/, "SQLite's own message");
      assert.match(message, /it reached its cap of 64 KiB \(\d+ of 16 pages in use\)/);
      assert.match(message, /Reads still work/);
      assert.match(message, /refused until a restart with more room/);
      assert.match(
        message,
        /free disk space, or raise the journal's cap \(serve: --data-max-mib\)/,
      );
      assert.equal(journal.length, acked.length, "one row per acknowledged request, none more");

      // Later changes of every kind: 503, and they do not reach the model.
      const before = figures(hv);
      const later: Sent[] = [
        { method: "POST", path: "/v1/domains/1/alloc", body: { size: 16 } },
        { method: "POST", path: "/v1/domains/1/batch", body: { ops: [{ op: "alloc", size: 8 }] } },
        { method: "POST", path: "/v1/tenants", body: { name: "u", max_domains: 1, max_pages: 64 } },
        { method: "DELETE", path: "/v1/domains/1" },
      ];
      for (const req of later) {
        const res = await send(app, req);
        assert.equal(res.status, 503, `${req.method} ${req.path}`);
        assert.equal(res.json.error?.code, "journal_unavailable");
        assert.match(res.json.error?.message ?? "", /refused until a restart/);
        assert.match(res.json.error?.message ?? "", /is full \(SQLite: database or disk is full\)/);
      }
      assert.deepEqual(figures(hv), before, "refused changes left the model as it was");
      assert.equal(journal.length, acked.length);

      // Reads still work.
      for (const path of ["/v1/domains/1", "/v1/domains", "/v1/tenants", "/v1/stats"]) {
        const res = await send(app, { method: "GET", path });
        assert.equal(res.status, 200, `GET ${path}`);
      }
      assert.equal((await send(app, { method: "GET", path: "/v1/domains/1" })).json.id, 1);
      journal.close();

      // The database is sound, and holds exactly the acknowledged rows.
      const db = new DatabaseSync(path);
      try {
        assert.deepEqual(
          db.prepare("PRAGMA integrity_check").all().map((r) => ({ ...r })),
          [{ integrity_check: "ok" }],
        );
        assert.deepEqual(
          { ...db.prepare("SELECT count(*) AS n, max(seq) AS last FROM ops").get() },
          {
            n: acked.length,
            last: acked.length,
          },
        );
      } finally {
        db.close();
      }

      // The acknowledged requests alone, in process without a journal: the reference.
      const reference = newMachine();
      const plain = createControlPlane(reference, { adminToken: ADMIN }).app;
      for (const { req, status, json } of acked) {
        const res = await send(plain, req);
        assert.equal(res.status, status, `${req.method} ${req.path} answers as it did`);
        if (req.path !== "/v1/tenants") assert.deepEqual(res.json, json); // tokens differ
      }
      assert.notDeepEqual(
        figures(hv),
        figures(reference),
        "the refused request had changed the running model, so a journal holding it would " +
          "replay to other figures: the comparison below can tell",
      );

      // Reopened without the cap: the replay gives the acknowledged state, nothing more.
      const reopened = new Journal(path);
      try {
        assert.equal(reopened.length, acked.length);
        const restored = newMachine();
        const summary = reopened.replay(restored.tenancy, restored.pages);
        assert.equal(summary.domains, 1);
        assert.deepEqual(figures(restored), figures(reference));
        // With room again, changes are durable again.
        const again = createControlPlane(restored, { adminToken: ADMIN, journal: reopened }).app;
        const res = await send(again, {
          method: "POST",
          path: "/v1/domains/1/alloc",
          body: { size: 100 },
        });
        assert.equal(res.status, 201, JSON.stringify(res.json));
        assert.equal(reopened.length, acked.length + 1);
      } finally {
        reopened.close();
      }
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
);

Deno.test("journal faults: the cap is validated, and a journal too small for its schema says it is full", async (t) => {
  const dir = await Deno.makeTempDir({ prefix: "heapvisor-faults-" });
  try {
    await t.step("maxBytes must be a positive integer", () => {
      for (const maxBytes of [0, -4096, 1.5, NaN, Infinity]) {
        assert.throws(() => new Journal(":memory:", { maxBytes }), RangeError, String(maxBytes));
      }
    });
    await t.step("one page: full at start, before anything is written", () => {
      assert.throws(
        () => new Journal(`${dir}/one.db`, { maxBytes: 4096 }),
        /one\.db is full at start: it holds 4 KiB \(1 pages of 4096 bytes\), all of its cap of 4 KiB/,
      );
    });
    await t.step("two pages: the schema does not fit, SQLite says the database is full", () => {
      assert.throws(
        () => new Journal(`${dir}/two.db`, { maxBytes: 8192 }),
        (e: unknown) => {
          assert.ok(e instanceof JournalError);
          assert.match(e.message, /two\.db is full \(SQLite: database or disk is full\)/);
          assert.match(e.message, /reached its cap of 8 KiB/);
          assert.match(e.message, /Nothing was loaded; start again with more room/);
          return true;
        },
      );
      const names = [...Deno.readDirSync(dir)].map((e) => e.name).sort();
      assert.ok(!names.some((n) => n.endsWith("-wal") || n.endsWith("-shm")), names.join(" "));
    });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("journal faults: a log whose last row is corrupt applies nothing (checked before applied)", async () => {
  const dir = await Deno.makeTempDir({ prefix: "heapvisor-faults-" });
  try {
    const path = `${dir}/j.db`;
    const frames = 16_384;
    const j = new Journal(path);
    const built = new Tenancy(new BuddyPageAllocator(frames), "tlsf");
    const ops: JournalOp[] = [
      { kind: "create_tenant", name: "t", max_domains: 2, max_pages: frames },
      { kind: "create_domain", tenant: 1, name: "d", vcpus: 1, max_pages: 1024, engine: "slub" },
    ];
    for (let i = 0; i < 200; i++) {
      ops.push({ kind: "allocate", domain: 1, size: 1 + ((i * 97) % 5000), align: 1, vcpu: 0 });
    }
    for (const op of ops) {
      applyOp(built, op);
      j.append([op]);
    }
    j.close();
    const db = new DatabaseSync(path);
    db.exec("UPDATE ops SET crc = (crc + 1) % 4294967296 WHERE seq = (SELECT max(seq) FROM ops)");
    db.close();

    const pages = new BuddyPageAllocator(frames);
    const tenancy = new Tenancy(pages, "tlsf");
    const k = new Journal(path);
    try {
      assert.throws(() => k.replay(tenancy, pages), /Journal row 202: CRC mismatch/);
    } finally {
      k.close();
    }
    assert.equal(tenancy.tenants().length, 0, "no row was applied");
    assert.equal(tenancy.domains().length, 0);
    assert.equal(pages.freeFrameCount, frames);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

// -- serve refuses to start ---------------------------------------------------------------

/** How a serve run ended. */
interface Run {
  /** Whether it got as far as listening (then it was stopped with SIGTERM). */
  started: boolean;
  code: number;
  stdout: string;
  stderr: string;
}

/**
 * Run serve with `args` (on a 64 MiB machine, any free port), `command` before it (a
 * wrapper such as `unshare`), and wait for it to exit. If it starts listening, it is
 * stopped with SIGTERM; if it neither exits nor listens in time, it is killed and the
 * test fails.
 */
async function runServe(
  args: string[],
  options: { permissions?: string[]; wrapper?: string[] } = {},
): Promise<Run> {
  const child = spawnServe({
    adminToken: "faults-admin-token-0123456789",
    args: ["--port", "0", "--machine-mib", String(MACHINE_MIB), ...args],
    flags: options.permissions ?? SERVE_PERMISSIONS,
    ...(options.wrapper ? { wrapper: options.wrapper } : {}),
  });
  let stdout = "";
  let stderr = "";
  const reading = Promise.all([
    (async () => {
      for await (const s of child.stdout.pipeThrough(new TextDecoderStream())) stdout += s;
    })(),
    (async () => {
      for await (const s of child.stderr.pipeThrough(new TextDecoderStream())) stderr += s;
    })(),
  ]);
  let exited: Deno.CommandStatus | null = null;
  child.status.then((s: Deno.CommandStatus) => (exited = s));
  let started = false;
  const deadline = Date.now() + RUN_TIMEOUT_MS;
  try {
    while (exited === null) {
      if (!started && stdout.includes("heapvisor control plane on")) {
        started = true;
        child.kill("SIGTERM");
      }
      if (Date.now() > deadline) {
        assert.fail(
          `serve neither exited nor listened in time; stdout: ${stdout}; stderr: ${stderr}`,
        );
      }
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
  } finally {
    if (exited === null) child.kill("SIGKILL");
    await child.status;
    await reading;
  }
  return { started, code: (exited as Deno.CommandStatus | null)?.code ?? -1, stdout, stderr };
}

/** Every name under `dir` (recursively) with its bytes: to show that nothing was written. */
async function contents(dir: string): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  const walk = async (d: string, prefix: string) => {
    for await (const e of Deno.readDir(d)) {
      const name = `${prefix}${e.name}`;
      if (e.isDirectory) {
        out[`${name}/`] = "";
        await walk(`${d}/${e.name}`, `${name}/`);
      } else {
        const bytes = await Deno.readFile(`${d}/${e.name}`);
        out[name] = `${bytes.length}:${await sha256(bytes)}`;
      }
    }
  };
  await walk(dir, "");
  return Object.fromEntries(Object.entries(out).sort(([a], [b]) => a < b ? -1 : 1));
}

async function sha256(bytes: Uint8Array): Promise<string> {
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", bytes as BufferSource));
  return [...digest].map((b) => b.toString(16).padStart(2, "0")).join("");
}

/**
 * Whether `path` exists, asked of a subprocess with every permission (Deno refuses
 * /proc and /sys to a process without --allow-all): "yes", "no", or the error.
 */
async function existsOutside(path: string): Promise<string> {
  const out = await new Deno.Command(Deno.execPath(), {
    args: [
      "eval",
      `try { Deno.statSync(${JSON.stringify(path)}); console.log("yes"); } catch (e) {
         console.log(e instanceof Deno.errors.NotFound ? "no" : String(e)); }`,
    ],
    stdout: "piped",
    stderr: "piped",
  }).output();
  return new TextDecoder().decode(out.stdout).trim();
}

/** Refused: did not listen, exited non-zero, and said `pattern` on stderr. */
function assertRefused(run: Run, pattern: RegExp): void {
  assert.equal(run.started, false, `it started: ${run.stdout}`);
  assert.notEqual(run.code, 0, "exit code");
  assert.match(run.stderr, pattern);
  assert.equal(run.stdout, "", "nothing on stdout (no token, no banner)");
}

const onLinux = Deno.build.os === "linux";

Deno.test("journal faults: serve refuses a --data that is a file, and a bad --data-max-mib", async (t) => {
  const dir = await Deno.makeTempDir({ prefix: "heapvisor-faults-" });
  try {
    const file = `${dir}/not-a-directory`;
    await Deno.writeTextFile(file, "a file, not a data directory\n");
    await t.step("--data names an existing regular file", async () => {
      const before = await contents(dir);
      const run = await runServe(["--data", file]);
      assertRefused(run, /Cannot use --data ".*not-a-directory": it exists and is not a directory/);
      assert.match(run.stderr, /give a directory on a writable filesystem, or --ephemeral/);
      assert.deepEqual(await contents(dir), before, "nothing was written");
    });
    await t.step("--data-max-mib must be a positive integer", async () => {
      for (const bad of ["0", "-1", "1.5", "x", "1e3"]) {
        const run = await runServe(["--data", `${dir}/d`, `--data-max-mib=${bad}`]);
        assertRefused(
          run,
          new RegExp(
            `Invalid --data-max-mib "${bad.replace(".", "\\.")}": expected a positive integer`,
          ),
        );
        assert.equal(run.code, 2);
      }
      const run = await runServe(["--ephemeral", "--data-max-mib", "4"]);
      assertRefused(run, /--data-max-mib caps the journal of --data: not with --ephemeral/);
      assert.deepEqual(Object.keys(await contents(dir)), ["not-a-directory"], "no data directory");
    });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test({
  name: "journal faults: serve refuses a --data it cannot create (/proc, /sys), writing nothing",
  ignore: !onLinux,
  fn: async (t) => {
    for (const path of ["/proc/heapvisor-test", "/sys/heapvisor-test"]) {
      await t.step(path, async () => {
        assert.equal(await existsOutside(path), "no", `${path} must not exist beforehand`);
        // With the serve task's permissions, Deno itself refuses these paths.
        const run = await runServe(["--data", path]);
        assertRefused(run, new RegExp(`Cannot use --data "${path}": .*Requires all access`));
        assert.match(run.stderr, /give a directory on a writable filesystem, or --ephemeral/);
        // With every permission, the kernel refuses: procfs and sysfs take no mkdir, even
        // from root.
        const all = await runServe(["--data", path], { permissions: ["--allow-all"] });
        assertRefused(
          all,
          new RegExp(
            `Cannot use --data "${path}": cannot create the directory \\((No such file or directory|Operation not permitted|Read-only file system|Permission denied)`,
          ),
        );
        assert.equal(await existsOutside(path), "no", "nothing was created");
      });
    }
    await t.step("/proc itself: the directory exists, journal.db cannot be created", async () => {
      const run = await runServe(["--data", "/proc"], { permissions: ["--allow-all"] });
      assertRefused(
        run,
        /Journal \/proc\/journal\.db: cannot open: unable to open database file.*\(it must be writable, in a writable directory on a filesystem mounted read-write\)/,
      );
      assert.equal(await existsOutside("/proc/journal.db"), "no");
    });
  },
});

/** Whether this process may make a private mount namespace with a read-only bind mount. */
async function canMountReadOnly(): Promise<boolean> {
  if (!onLinux) return false;
  const dir = await Deno.makeTempDir({ prefix: "heapvisor-faults-probe-" });
  try {
    const out = await new Deno.Command("unshare", {
      args: [
        "-m",
        "sh",
        "-c",
        'mount --bind "$1" "$1" && mount -o remount,ro,bind "$1" && ! touch "$1/probe" 2>/dev/null',
        "sh",
        dir,
      ],
      stdout: "null",
      stderr: "null",
    }).output();
    return out.success;
  } catch {
    return false; // no unshare
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test({
  name: "journal faults: serve refuses a data directory on a read-only filesystem, writing nothing",
  ignore: !(await canMountReadOnly()),
  fn: async (t) => {
    const dir = await Deno.makeTempDir({ prefix: "heapvisor-faults-" });
    try {
      // A journal with one tenant, then the directory is mounted read-only (in a mount
      // namespace of serve's own: the mount ends with it).
      const j = new Journal(`${dir}/journal.db`);
      const hv = newMachine();
      j.bindMachine({ frames: hv.pages.frameCount, defaultEngine: "tlsf" });
      j.append([{ kind: "create_tenant", name: "t", max_domains: 1, max_pages: 64 }]);
      j.close();
      const readOnly = [
        "unshare",
        "-m",
        "sh",
        "-c",
        'mount --bind "$1" "$1" && mount -o remount,ro,bind "$1" && shift && exec "$@"',
        "sh",
        dir,
      ];
      const before = await contents(dir);
      await t.step("an existing journal there", async () => {
        const run = await runServe(["--data", dir], { wrapper: readOnly });
        assertRefused(
          run,
          /journal\.db: cannot open: .*\(it must be writable, in a writable directory on a filesystem mounted read-write\)/,
        );
        assert.deepEqual(await contents(dir), before, "nothing was written");
      });
      await t.step("a new data directory there", async () => {
        const run = await runServe(["--data", `${dir}/new`], { wrapper: readOnly });
        assertRefused(
          run,
          /cannot create the directory \(Read-only file system \(os error 30\)/,
        );
        assert.deepEqual(await contents(dir), before, "nothing was written");
      });
      await t.step(
        "the same directory read-write starts (the refusals were the mount)",
        async () => {
          const run = await runServe(["--data", dir]);
          assert.equal(run.started, true, run.stderr);
          assert.equal(run.code, 0, run.stderr);
          assert.match(run.stdout, /restored 1 operation: 0 domains, 0 snapshots/);
        },
      );
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test("journal faults: serve refuses a journal already over its --data-max-mib, writing nothing", async () => {
  const dir = await Deno.makeTempDir({ prefix: "heapvisor-faults-" });
  try {
    // Over 1 MiB of real history, written as serve would write it.
    const journal = new Journal(`${dir}/journal.db`);
    const hv = newMachine();
    journal.bindMachine({ frames: hv.pages.frameCount, defaultEngine: "tlsf" });
    const { app } = createControlPlane(hv, { adminToken: ADMIN, journal });
    const setup: Sent[] = [
      { method: "POST", path: "/v1/tenants", body: { name: "t", max_domains: 1, max_pages: 8192 } },
      {
        method: "POST",
        path: "/v1/domains",
        body: { tenant_id: 1, name: "d", vcpus: 1, max_pages: 4096 },
      },
    ];
    for (const req of setup) assert.equal((await send(app, req)).status, 201);
    const ops: unknown[] = [];
    for (let i = 0; i < 500; i++) {
      ops.push({ op: "alloc", size: 1 + i * 7 }, { op: "free", ref: 2 * i });
    }
    for (let b = 0; b < 40; b++) {
      const res = await send(app, { method: "POST", path: "/v1/domains/1/batch", body: { ops } });
      assert.equal(res.status, 200);
    }
    const rows = journal.length;
    journal.close();
    const size = (await Deno.stat(`${dir}/journal.db`)).size;
    assert.ok(size > MiB(1) && size < MiB(8), `the journal holds ${size} bytes: over 1 MiB`);

    const before = await contents(dir);
    const run = await runServe(["--data", dir, "--data-max-mib", "1"]);
    assertRefused(
      run,
      /Journal .*journal\.db is full at start: it holds [\d.]+ MiB \(\d+ pages of 4096 bytes\), more than its cap of 1 MiB \(256 pages\)\. Nothing was loaded or written; start again with more room: free disk space, or raise the journal's cap \(serve: --data-max-mib\)/,
    );
    assert.deepEqual(await contents(dir), before, "nothing was written (no -wal or -shm left)");

    // The same journal under a larger cap starts and restores it all: only the cap refused.
    const ok = await runServe(["--data", dir, "--data-max-mib", "8"]);
    assert.equal(ok.started, true, ok.stderr);
    assert.equal(ok.code, 0, ok.stderr);
    assert.match(
      ok.stdout,
      new RegExp(`restored \\d+ operations: 1 domain, .*\\(checked\\); journal capped at 8 MiB`),
    );
    const reopened = new Journal(`${dir}/journal.db`);
    assert.equal(reopened.length, rows);
    reopened.close();
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
