/**
 * Plain-text tables for the terminal: a header row and aligned columns (the first
 * column and text columns left-aligned, figure columns right-aligned).
 *
 * @module
 */

/** A cell: text or a number; null prints as `-`. */
export type Cell = string | number | null;

const FIGURE = /^[-+]?[\d.,]+(?:\s*[(x%*!].*)?$|^-$/;

/**
 * Render rows under a header as aligned text.
 *
 * @example
 * ```ts
 * import { renderTable } from "./table.ts";
 * import assert from "node:assert/strict";
 * const text = renderTable(["engine", "pages"], [["tlsf", 1834], ["first-fit", 2416]]);
 * assert.equal(text.split("\n")[2], "first-fit    2416");
 * ```
 */
export function renderTable(header: readonly string[], rows: readonly (readonly Cell[])[]): string {
  const text = rows.map((row) => header.map((_, i) => (row[i] == null ? "-" : String(row[i]))));
  const widths = header.map((h, i) => Math.max(h.length, ...text.map((r) => r[i]!.length)));
  const right = header.map((_, i) => i > 0 && text.every((r) => FIGURE.test(r[i]!)));
  const line = (cells: readonly string[]) =>
    cells.map((c, i) => (right[i] ? c.padStart(widths[i]!) : c.padEnd(widths[i]!))).join("   ")
      .trimEnd();
  return [line(header), ...text.map(line)].join("\n");
}
