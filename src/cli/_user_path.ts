/**
 * Paths as the user typed them. `deno task` runs a task in the directory of deno.json,
 * not the one the user ran it from; it puts that one in INIT_CWD.
 *
 * @module
 */

import { isAbsolute, join } from "node:path";

/**
 * `path` as the user meant it: relative to where they ran `deno task` from (INIT_CWD,
 * when the process may read it), else as it is.
 */
export function userPath(path: string): string {
  const granted =
    Deno.permissions.querySync({ name: "env", variable: "INIT_CWD" }).state === "granted";
  const from = granted ? Deno.env.get("INIT_CWD") : undefined;
  return isAbsolute(path) || !from ? path : join(from, path);
}
