/**
 * The trace format shared with the reference figures:
 *
 * ```
 * # comment
 * a <id> <size> [vcpu]    allocate <size> bytes; the result is named <id>
 * f <id> [vcpu]           free the block named <id>
 * ```
 *
 * A trace is parsed and validated whole before anything runs, so a bad line stops a
 * run before it prints anything. Ids are any tokens without spaces; an id may be
 * allocated again once freed.
 *
 * The optional last column names the vCPU that runs the op, an integer in
 * [0, {@link TRACE_VCPU_MAX}]. A trace has it on every op line or on none, and its first
 * op line decides which: the reference traces and every trace written before the
 * column (all ops on vCPU 0) parse as they always did, and a line whose field count
 * does not match the file's format is an error, as `f 1 2` in a trace without the
 * column always was. A free may name an id another vCPU allocated; the file order is
 * one valid interleaving (every free after its allocation).
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
/** Largest vCPU index the vCPU column may carry. */
export const TRACE_VCPU_MAX = 4095;

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
  /**
   * Per op: the vCPU that runs it (the optional last column). {@link parseTrace}
   * always sets it, all zeros for a trace without the column; a trace built in code
   * may leave it out, which means every op runs on vCPU 0.
   */
  vcpus?: Uint16Array;
}

/** A trace as {@link parseTrace} returns it: the vCPU of every op is known. */
export type ParsedTrace = Trace & { vcpus: Uint16Array };

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
 * @returns the ops, each with its vCPU (0 for a trace without the vCPU column)
 * @throws {TraceError} at the first bad line: unknown op, wrong field count (a line
 *   with the vCPU column in a trace whose first op line has none, or the other way
 *   round, counts as one), a size that is not an integer in [1, 2^40], a vCPU that is
 *   not an integer in [0, 4095], an `a` of an id that is still live, an `f` of an id
 *   that is not live
 *
 * @example
 * ```ts
 * import { parseTrace } from "./trace.ts";
 * import assert from "node:assert/strict";
 * const t = parseTrace("# demo\na x 100\nf x\n", "demo");
 * assert.equal(t.opCount, 2);
 * assert.deepEqual([...t.vcpus], [0, 0]);
 * assert.throws(() => parseTrace("f y\n", "bad"), /line 1: free of id "y"/);
 * const smp = parseTrace("a x 100 0\nf x 3\n", "smp"); // freed by another vCPU
 * assert.deepEqual([...smp.vcpus], [0, 3]);
 * assert.throws(() => parseTrace("a x 100 0\nf x\n", "mixed"), /line 2: "f" takes 2 fields/);
 * ```
 */
export function parseTrace(text: string, name: string, source: string = name): ParsedTrace {
  let capacity = 1024;
  let kinds = new Uint8Array(capacity);
  let ids = new Int32Array(capacity);
  let sizes = new Float64Array(capacity);
  let vcpus = new Uint16Array(capacity);
  const idIndex = new Map<string, number>();
  const liveSince: number[] = []; // id index -> line it was allocated at, 0 if not live
  let vcpuColumn = -1; // 1: every op line has the vCPU column, 0: none has, -1: no op line yet
  let formatLine = 0; // the op line that decided
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
        `unknown op "${op}": expected "a <id> <size> [vcpu]" or "f <id> [vcpu]"`,
      );
    }
    const base = op === "a" ? 3 : 2; // fields without the vCPU column
    if (vcpuColumn < 0 && (fields.length === base || fields.length === base + 1)) {
      vcpuColumn = fields.length - base;
      formatLine = lineNo;
    }
    const wanted = vcpuColumn > 0 ? base + 1 : base;
    if (fields.length !== wanted) {
      throw new TraceError(
        source,
        lineNo,
        fieldCountMismatch(op, wanted - 1, fields.length - 1, vcpuColumn, formatLine),
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
    }
    let vcpu = 0;
    if (vcpuColumn > 0) {
      const text = fields[base]!;
      vcpu = /^[0-9]+$/.test(text) ? Number(text) : NaN;
      if (!(vcpu <= TRACE_VCPU_MAX)) {
        throw new TraceError(
          source,
          lineNo,
          `vCPU "${text}" is not an integer in [0, ${TRACE_VCPU_MAX}]`,
        );
      }
    }
    if (op === "a") {
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
      vcpus = grown(vcpus, capacity);
    }
    kinds[n] = op === "a" ? OP_ALLOC : OP_FREE;
    ids[n] = index;
    sizes[n] = size;
    vcpus[n] = vcpu;
    n++;
  }
  return {
    name,
    opCount: n,
    kinds: kinds.subarray(0, n),
    ids: ids.subarray(0, n),
    sizes: sizes.subarray(0, n),
    idCount: idIndex.size,
    vcpus: vcpus.subarray(0, n),
  };
}

/** Why a line has the wrong number of fields, saying which format the trace has. */
function fieldCountMismatch(
  op: string,
  wanted: number,
  found: number,
  vcpuColumn: number,
  formatLine: number,
): string {
  const takes = `"${op}" takes ${wanted} field${wanted === 1 ? "" : "s"}`;
  if (vcpuColumn > 0) {
    return `${takes} with the vCPU column, which line ${formatLine} set, found ${found}`;
  }
  if (vcpuColumn === 0 && found === wanted + 1) {
    return `${takes}, found ${found} (line ${formatLine} set a trace without the vCPU column)`;
  }
  return `${takes}, found ${found}`;
}

/**
 * Render ops back to the trace format (ids as their dense indices). The vCPU column is
 * written only when some op runs on a vCPU other than 0, so a single-vCPU trace reads
 * as it always did.
 *
 * @example
 * ```ts
 * import { formatTrace, parseTrace } from "./trace.ts";
 * import assert from "node:assert/strict";
 * assert.equal(formatTrace(parseTrace("a x 5\nf x\n", "t")), "a 0 5\nf 0\n");
 * assert.equal(formatTrace(parseTrace("a x 5 0\nf x 2\n", "t")), "a 0 5 0\nf 0 2\n");
 * ```
 */
export function formatTrace(trace: Trace, comment?: string): string {
  const lines: string[] = [];
  if (comment) { for (const c of comment.split("\n")) lines.push(`# ${c}`); }
  const vcpus = trace.vcpus;
  const column = vcpus !== undefined && vcpus.subarray(0, trace.opCount).some((v) => v > 0);
  for (let i = 0; i < trace.opCount; i++) {
    const op = trace.kinds[i] === OP_ALLOC
      ? `a ${trace.ids[i]} ${trace.sizes[i]}`
      : `f ${trace.ids[i]}`;
    lines.push(column ? `${op} ${vcpus[i]}` : op);
  }
  return lines.join("\n") + "\n";
}
