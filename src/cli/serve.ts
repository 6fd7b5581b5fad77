/**
 * `deno task serve`: the control plane over a socket (loopback by default).
 *
 * The admin token comes from HEAPVISOR_ADMIN_TOKEN, or is made up and printed once.
 * SIGINT or SIGTERM stops it cleanly (in-flight requests finish).
 *
 * @module
 */

import { parseArgs } from "node:util";
import { MiB } from "../units.ts";
import { assertMachineBytes, Hypervisor } from "../../hypervisor/hypervisor.ts";
import { createControlPlane } from "../../hypervisor/control_plane/app.ts";
import { newAdminToken, TOKEN_PATTERN } from "../../hypervisor/control_plane/auth.ts";
import { ENGINE_NAMES } from "../../hypervisor/xmalloc/registry.ts";

const USAGE = `heapvisor serve: the control plane over HTTP

Usage: deno task serve [--host 127.0.0.1] [--port 8080] [--engine tlsf] [--machine-mib 1024]

  --host H          address to listen on (default 127.0.0.1: loopback only)
  --port N          port, 0 for any free one (default 8080)
  --engine NAME     default engine of new domains: ${ENGINE_NAMES.join(", ")} (default tlsf)
  --machine-mib N   machine memory in MiB (default 1024)

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
        help: { type: "boolean", short: "h" },
      },
    }).values;
  } catch (e) {
    fail((e as Error).message);
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
  const adminToken = fromEnv ?? newAdminToken();
  const hypervisor = new Hypervisor({ engine: values.engine, machineBytes: MiB(mib) });
  const shutdown = new AbortController();
  const { app } = createControlPlane(hypervisor, { adminToken, signal: shutdown.signal });
  const server = Deno.serve({
    hostname: values.host,
    port,
    onListen: ({ hostname, port }) => {
      const host = hostname.includes(":") ? `[${hostname}]` : hostname;
      console.log(`heapvisor control plane on http://${host}:${port}  (docs: /v1/docs)`);
      console.log(`machine ${mib} MiB, default engine ${values.engine}`);
      if (fromEnv === undefined) console.log(`admin token (shown once): ${adminToken}`);
      else console.log("admin token: from HEAPVISOR_ADMIN_TOKEN");
    },
  }, app.fetch);
  const stop = () => {
    console.log("shutting down");
    shutdown.abort(); // event streams end now instead of holding the shutdown open
    server.shutdown();
  };
  Deno.addSignalListener("SIGINT", stop);
  Deno.addSignalListener("SIGTERM", stop);
  await server.finished;
}
