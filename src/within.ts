/**
 * Waiting with a deadline, for the code that waits on another process (a server
 * started by a test or a benchmark) and must not hang when it does not answer.
 *
 * @module
 */

/**
 * `promise`'s value, or "timeout" if it does not settle within `ms` (the timer is
 * cleared either way, so nothing is left pending).
 *
 * @example
 * ```ts
 * import { within } from "./within.ts";
 * import assert from "node:assert/strict";
 * assert.equal(await within(Promise.resolve(7), 1000), 7);
 * assert.equal(await within(new Promise(() => {}), 1), "timeout");
 * ```
 */
export async function within<T>(promise: Promise<T>, ms: number): Promise<T | "timeout"> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    return await Promise.race([
      promise,
      new Promise<"timeout">((resolve) => {
        timer = setTimeout(() => resolve("timeout"), ms);
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}
