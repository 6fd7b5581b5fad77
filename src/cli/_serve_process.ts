/**
 * `deno task serve` as a child process, started the way the task starts it: what the
 * soak benchmark and the tests that restart, kill or refuse a server share.
 *
 * @module
 */

/** The project's root (where deno.json is). */
export const PROJECT_ROOT: string = new URL("../../", import.meta.url).pathname;

/** The serve task's flags: its permissions and runtime options (see deno.json). */
export const SERVE_TASK_FLAGS: readonly string[] = [
  "--unstable-no-legacy-abort",
  "--allow-net",
  "--allow-env=HEAPVISOR_ADMIN_TOKEN,INIT_CWD",
  "--allow-read",
  "--allow-write",
];

/** How to start one. */
export interface ServeProcessOptions {
  /** serve's own arguments (`--port 0 --data DIR`...). */
  args: readonly string[];
  /** The admin token (HEAPVISOR_ADMIN_TOKEN); none: serve makes one up. */
  adminToken?: string;
  /** `deno run` flags instead of the task's. */
  flags?: readonly string[];
  /** A command to run it under (`unshare -m ...`), its argv before deno's. */
  wrapper?: readonly string[];
}

/**
 * Start `src/cli/serve.ts` with this Deno binary from the project's root, stdin
 * closed, stdout and stderr piped, colour off, and only this process's environment
 * (no stray HEAPVISOR_ADMIN_TOKEN).
 */
export function spawnServe(options: ServeProcessOptions): Deno.ChildProcess {
  const env = Deno.env.toObject();
  delete env["HEAPVISOR_ADMIN_TOKEN"];
  if (options.adminToken !== undefined) env["HEAPVISOR_ADMIN_TOKEN"] = options.adminToken;
  env["NO_COLOR"] = "1";
  const argv = [
    ...(options.wrapper ?? []),
    Deno.execPath(),
    "run",
    ...(options.flags ?? SERVE_TASK_FLAGS),
    "src/cli/serve.ts",
    ...options.args,
  ];
  return new Deno.Command(argv[0]!, {
    args: argv.slice(1),
    cwd: PROJECT_ROOT,
    env,
    clearEnv: true,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
}
