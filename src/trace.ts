/**
 * The trace format shared with the reference figures:
 *
 * ```
 * # comment
 * a <id> <size>     allocate <size> bytes; the result is named <id>
 * f <id>            free the block named <id>
 * ```
 *
 * A trace is parsed and validated whole before anything runs, so a bad line stops a
 * run before it prints anything. Ids are any tokens without spaces; an id may be
 * allocated again once freed.
 *
 * @module
 */

import { grown } from "./typed_array.ts";

/** Op kind: allocate. */
export const OP_ALLOC = 0;
/** Op kind: free. */
export const OP_FREE = 1;

/** Largest request a trace may carry (1 TiB). */
export const TRACE_SIZE_MAX_BYTES = 2 ** 40;

/** A parsed trace: ops in typed arrays, ids mapped to dense indices. */
export interface Trace {
  /** Name (file name without extension, or as given). */
  name: string;
  /** Number of ops. */
  opCount: number;
  /** Per op: {@link OP_ALLOC} or {@link OP_FREE}. */
  kinds: Uint8Array;
  /** Per op: dense id index in [0, idCount). */
  ids: Int32Array;
  /** Per op: requested bytes (allocations), 0 for frees. */
  sizes: Float64Array;
  /** Distinct ids. */
  idCount: number;
}

/** A trace line that cannot be run, with where and why. */
export class TraceError extends Error {
  /** The error's name. */
  override name = "TraceError";
  /** 1-based line number. */
  readonly line: number;

  /**
   * Describe a bad line.
   *
   * @param source trace name
   * @param line 1-based line number
   * @param detail what is wrong
   */
  constructor(source: string, line: number, detail: string) {
    super(`Invalid trace ${source}, line ${line}: ${detail}`);
    this.line = line;
  }
}

/**
 * Parse and validate a whole trace.
 *
 * @param text the trace
 * @param name its name, for results
 * @param source where it came from, for errors (default: the name)
 * @returns the ops
 * @throws {TraceError} at the first bad line: unknown op, wrong field count, a size
 *   that is not an integer in [1, 2^40], an `a` of an id that is still live, an `f`
 *   of an id that is not live
 *
 * @example
 * ```ts
 * import { parseTrace } from "./trace.ts";
 * import assert from "node:assert/strict";
 * const t = parseTrace("# demo\na x 100\nf x\n", "demo");
 * assert.equal(t.opCount, 2);
 * assert.throws(() => parseTrace("f y\n", "bad"), /line 1: free of id "y"/);
 * ```
 */
export function parseTrace(text: string, name: string, source: string = name): Trace {
  let capacity = 1024;
  let kinds = new Uint8Array(capacity);
  let ids = new Int32Array(capacity);
  let sizes = new Float64Array(capacity);
  const idIndex = new Map<string, number>();
  const liveSince: number[] = []; // id index -> line it was allocated at, 0 if not live
  let n = 0;
  let lineNo = 0;
  let start = 0;
  while (start <= text.length) {
    let end = text.indexOf("\n", start);
    if (end < 0) end = text.length;
    lineNo++;
    const line = text.slice(start, end).trim();
    start = end + 1;
    if (line === "" || line.startsWith("#")) continue;
    const fields = line.split(/\s+/);
    const op = fields[0];
    if (op !== "a" && op !== "f") {
      throw new TraceError(
        source,
        lineNo,
        `unknown op "${op}": expected "a <id> <size>" or "f <id>"`,
      );
    }
    const wanted = op === "a" ? 3 : 2;
    if (fields.length !== wanted) {
      throw new TraceError(
        source,
        lineNo,
        `"${op}" takes ${wanted - 1} field${wanted === 2 ? "" : "s"}, found ${fields.length - 1}`,
      );
    }
    const id = fields[1]!;
    let index = idIndex.get(id);
    if (index === undefined) {
      index = idIndex.size;
      idIndex.set(id, index);
      liveSince.push(0);
    }
    let size = 0;
    if (op === "a") {
      const text = fields[2]!;
      size = /^[0-9]+$/.test(text) ? Number(text) : NaN;
      if (!(size >= 1 && size <= TRACE_SIZE_MAX_BYTES)) {
        throw new TraceError(source, lineNo, `size "${text}" is not an integer in [1, 2^40]`);
      }
      if (liveSince[index]! > 0) {
        throw new TraceError(
          source,
          lineNo,
          `id "${id}" is already live (allocated at line ${liveSince[index]})`,
        );
      }
      liveSince[index] = lineNo;
    } else {
      if (liveSince[index] === 0) {
        throw new TraceError(source, lineNo, `free of id "${id}", which is not live`);
      }
      liveSince[index] = 0;
    }
    if (n === capacity) {
      capacity *= 2;
      kinds = grown(kinds, capacity);
      ids = grown(ids, capacity);
      sizes = grown(sizes, capacity);
    }
    kinds[n] = op === "a" ? OP_ALLOC : OP_FREE;
    ids[n] = index;
    sizes[n] = size;
    n++;
  }
  return {
    name,
    opCount: n,
    kinds: kinds.subarray(0, n),
    ids: ids.subarray(0, n),
    sizes: sizes.subarray(0, n),
    idCount: idIndex.size,
  };
}

/** Render ops back to the trace format (ids as their dense indices). */
export function formatTrace(trace: Trace, comment?: string): string {
  const lines: string[] = [];
  if (comment) { for (const c of comment.split("\n")) lines.push(`# ${c}`); }
  for (let i = 0; i < trace.opCount; i++) {
    lines.push(
      trace.kinds[i] === OP_ALLOC ? `a ${trace.ids[i]} ${trace.sizes[i]}` : `f ${trace.ids[i]}`,
    );
  }
  return lines.join("\n") + "\n";
}
