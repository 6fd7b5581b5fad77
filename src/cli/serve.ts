/**
 * `deno task serve`: the control plane over a socket (loopback by default).
 *
 * The admin token comes from HEAPVISOR_ADMIN_TOKEN, or is made up and printed once.
 * SIGINT or SIGTERM stops it cleanly (in-flight requests finish). State is durable
 * in `--data DIR` (a SQLite journal, see hypervisor/journal.ts) unless `--ephemeral`:
 * on start every domain is rebuilt from it exactly and checked.
 *
 * @module
 */

import { parseArgs } from "node:util";
import { MiB } from "../units.ts";
import { assertMachineBytes, Hypervisor } from "../../hypervisor/hypervisor.ts";
import { CHECKPOINT_EVERY_OPS, createControlPlane } from "../../hypervisor/control_plane/app.ts";
import { newAdminToken, TOKEN_PATTERN } from "../../hypervisor/control_plane/auth.ts";
import { ENGINE_NAMES } from "../../hypervisor/xmalloc/registry.ts";
import { Journal } from "../../hypervisor/journal.ts";
import { userPath } from "./_user_path.ts";

const USAGE = `heapvisor serve: the control plane over HTTP

Usage: deno task serve [--host 127.0.0.1] [--port 8080] [--engine tlsf] [--machine-mib 1024]
                       [--data heapvisor-data [--data-max-mib N] [--checkpoint-ops N] | --ephemeral]

  --host H          address to listen on (default 127.0.0.1: loopback only)
  --port N          port, 0 for any free one (default 8080)
  --engine NAME     default engine of new domains: ${ENGINE_NAMES.join(", ")} (default tlsf)
  --machine-mib N   machine memory in MiB (default 1024)
  --data DIR        keep state in DIR/journal.db (default heapvisor-data): every acknowledged
                    operation is durable before its response; on start, state is rebuilt
                    from it and checked. The machine (--machine-mib, --engine) must not change.
  --data-max-mib N  cap DIR/journal.db at N MiB (default: no cap). When it is full, as when the
                    disk is, the change gets 503 journal_unavailable, later changes too, reads
                    still work; restart with more room. A journal already full does not start.
  --checkpoint-ops N
                    take a checkpoint of the journal every N journaled operations (default
                    ${CHECKPOINT_EVERY_OPS}; 0: never): the whole state is saved and the rows before it
                    deleted, so start-up time and the journal's size follow the state, not
                    the history
  --ephemeral       keep nothing: state lives in memory and ends with the process

The admin token is HEAPVISOR_ADMIN_TOKEN (16..512 letters, digits or -._~+/) if set, else a new
one printed once at start. API docs: <url>/v1/docs. Stop with Ctrl-C (SIGINT) or SIGTERM.
`;

function fail(message: string): never {
  console.error(`serve: ${message}\nRun 'deno task serve --help' for usage.`);
  Deno.exit(2);
}

if (import.meta.main) {
  let values;
  try {
    values = parseArgs({
      args: Deno.args,
      options: {
        host: { type: "string", default: "127.0.0.1" },
        port: { type: "string", default: "8080" },
        engine: { type: "string", default: "tlsf" },
        "machine-mib": { type: "string", default: "1024" },
        data: { type: "string" },
        "data-max-mib": { type: "string" },
        "checkpoint-ops": { type: "string" },
        ephemeral: { type: "boolean", default: false },
        help: { type: "boolean", short: "h" },
      },
    }).values;
  } catch (e) {
    const message = (e as Error).message;
    // node's parser reads "--checkpoint-ops -1" as a flag without its value.
    const ambiguous = /option '(--[a-z-]+)[^']*' argument is ambiguous/i.exec(message);
    fail(
      ambiguous
        ? `${ambiguous[1]} takes a value, and a negative one is not valid: expected a ` +
          `non-negative integer`
        : message,
    );
  }
  if (values.help) {
    console.log(USAGE.trimEnd());
    Deno.exit(0);
  }
  const port = /^\d+$/.test(values.port) ? Number(values.port) : NaN;
  if (!(port >= 0 && port <= 65535)) {
    fail(`Invalid --port "${values.port}": expected an integer in [0, 65535]`);
  }
  if (!ENGINE_NAMES.includes(values.engine)) {
    fail(`Unknown engine "${values.engine}": expected one of ${ENGINE_NAMES.join(", ")}`);
  }
  const mib = /^\d+$/.test(values["machine-mib"]) ? Number(values["machine-mib"]) : NaN;
  try {
    assertMachineBytes(MiB(mib));
  } catch (e) {
    fail(`Invalid --machine-mib "${values["machine-mib"]}": ${(e as Error).message}`);
  }
  const fromEnv = Deno.env.get("HEAPVISOR_ADMIN_TOKEN");
  if (fromEnv !== undefined && !TOKEN_PATTERN.test(fromEnv)) {
    fail("HEAPVISOR_ADMIN_TOKEN must be 16..512 letters, digits or -._~+/ (then = padding)");
  }
  if (values.ephemeral && values.data !== undefined) {
    fail("Give --data DIR or --ephemeral, not both");
  }
  // Relative to where the user ran `deno task` from, not to the project's directory.
  const dataDir = values.ephemeral ? null : userPath(values.data ?? "heapvisor-data");
  const maxMibText = values["data-max-mib"];
  let maxBytes: number | undefined;
  if (maxMibText !== undefined) {
    if (values.ephemeral) fail("--data-max-mib caps the journal of --data: not with --ephemeral");
    maxBytes = /^\d+$/.test(maxMibText) ? MiB(Number(maxMibText)) : NaN;
    if (!(Number.isSafeInteger(maxBytes) && maxBytes > 0)) {
      fail(`Invalid --data-max-mib "${maxMibText}": expected a positive integer (MiB)`);
    }
  }
  const checkpointText = values["checkpoint-ops"];
  let checkpointEvery = CHECKPOINT_EVERY_OPS;
  if (checkpointText !== undefined) {
    if (values.ephemeral) {
      fail("--checkpoint-ops checkpoints the journal of --data: not with --ephemeral");
    }
    checkpointEvery = /^\d+$/.test(checkpointText) ? Number(checkpointText) : NaN;
    if (!(Number.isSafeInteger(checkpointEvery) && checkpointEvery >= 0)) {
      fail(`Invalid --checkpoint-ops "${checkpointText}": expected an integer >= 0 (0: never)`);
    }
  }
  const adminToken = fromEnv ?? newAdminToken();
  const hypervisor = new Hypervisor({ engine: values.engine, machineBytes: MiB(mib) });
  const shutdown = new AbortController();
  let journal: Journal | undefined;
  let restored = "";
  if (dataDir !== null) {
    const writable = "give a directory on a writable filesystem, or --ephemeral";
    let found: Deno.FileInfo | null = null;
    try {
      found = Deno.statSync(dataDir);
    } catch (e) {
      if (!(e instanceof Deno.errors.NotFound)) {
        fail(`Cannot use --data "${dataDir}": ${(e as Error).message}; ${writable}`);
      }
    }
    if (found !== null && !found.isDirectory) {
      fail(`Cannot use --data "${dataDir}": it exists and is not a directory; ${writable}`);
    }
    if (found === null) {
      try {
        Deno.mkdirSync(dataDir, { recursive: true });
      } catch (e) {
        const why = (e as Error).message;
        fail(`Cannot use --data "${dataDir}": cannot create the directory (${why}); ${writable}`);
      }
    }
    try {
      journal = new Journal(`${dataDir}/journal.db`, {
        exclusive: true,
        ...(maxBytes === undefined ? {} : { maxBytes }),
      });
      journal.bindMachine({ frames: hypervisor.pages.frameCount, defaultEngine: values.engine });
    } catch (e) {
      journal?.close(); // leaves no -wal or -shm behind
      fail((e as Error).message);
    }
  }
  const { app, tokens } = createControlPlane(hypervisor, {
    adminToken,
    signal: shutdown.signal,
    ...(journal ? { journal } : {}),
    checkpointEvery,
    onCheckpoint: ({ afterRow, bytes, ms }) =>
      console.log(
        `checkpoint after row ${afterRow}: ${(bytes / 1024).toFixed(0)} KiB in ${
          Math.round(ms)
        } ms (the rows before it deleted)`,
      ),
  });
  if (journal !== undefined) {
    try {
      const t0 = performance.now();
      const r = journal.replay(hypervisor.tenancy, hypervisor.pages, (tenant, hash) => {
        if (hash === null) tokens.revokeTenant(tenant);
        else tokens.restoreTenantTokenHash(tenant, hash);
      });
      const count = (n: number, what: string) => `${n} ${what}${n === 1 ? "" : "s"}`;
      const what = r.checkpoint === null
        ? count(r.ops, "operation")
        : `a checkpoint (after row ${r.checkpoint}) and ${count(r.ops, "operation")} after it`;
      const snapshots = hypervisor.tenancy.snapshots().length;
      restored = `restored ${what}: ${count(r.domains, "domain")}, ` +
        `${count(snapshots, "snapshot")} from ${dataDir}/journal.db ` +
        `in ${Math.round(performance.now() - t0)} ms (checked)` +
        (maxMibText === undefined ? "" : `; journal capped at ${Number(maxMibText)} MiB`);
    } catch (e) {
      console.error(`serve: ${(e as Error).message}`);
      console.error("serve: nothing was loaded; the journal is left as it is");
      journal.close(); // leaves no -wal or -shm behind
      Deno.exit(1);
    }
  }
  const server = Deno.serve({
    hostname: values.host,
    port,
    onListen: ({ hostname, port }) => {
      const host = hostname.includes(":") ? `[${hostname}]` : hostname;
      // One write, so a reader that sees the first line sees them all.
      console.log([
        `heapvisor control plane on http://${host}:${port}  (docs: /v1/docs)`,
        `machine ${mib} MiB, default engine ${values.engine}`,
        dataDir === null ? "ephemeral: nothing is kept" : restored,
        fromEnv === undefined
          ? `admin token (shown once): ${adminToken}`
          : "admin token: from HEAPVISOR_ADMIN_TOKEN",
      ].join("\n"));
    },
  }, app.fetch);
  const stop = () => {
    if (shutdown.signal.aborted) return; // a second signal (Ctrl-C twice, a task runner's relay)
    console.log("shutting down");
    shutdown.abort(); // event streams end now instead of holding the shutdown open
    server.shutdown().finally(() => journal?.close());
  };
  Deno.addSignalListener("SIGINT", stop);
  Deno.addSignalListener("SIGTERM", stop);
  await server.finished;
}
