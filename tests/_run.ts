/** Run a CLI as a user does: a Deno subprocess, its exit status, stdout and stderr. */

/** What a CLI run gave. */
export interface CliRun {
  /** Exit status. */
  code: number;
  /** Standard output. */
  stdout: string;
  /** Standard error. */
  stderr: string;
}

/** Run `script` with `permissions` (flags for `deno run`) and `args`, colour off. */
export async function runCli(
  script: string,
  permissions: readonly string[],
  args: readonly string[],
): Promise<CliRun> {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", ...permissions, script, ...args],
    stdout: "piped",
    stderr: "piped",
    env: { NO_COLOR: "1" },
  }).output();
  const dec = new TextDecoder();
  return { code: out.code, stdout: dec.decode(out.stdout), stderr: dec.decode(out.stderr) };
}
