/**
 * Sizes, page arithmetic and the address space of the model.
 *
 * Every size constant carries its unit in its name; no bare 4096 elsewhere.
 *
 * @module
 */

/** log2 of the machine page size. */
export const PAGE_SHIFT = 12; // 4 KiB
/** The machine page (frame) size in bytes. */
export const PAGE_SIZE_BYTES = 1 << PAGE_SHIFT;
/** Cache line size in bytes used for false-sharing measurements. */
export const CACHE_LINE_BYTES = 64;

/**
 * Bytes in `n` KiB.
 *
 * @example
 * ```ts
 * import { KiB } from "./units.ts";
 * import assert from "node:assert/strict";
 * assert.equal(KiB(4), 4096);
 * ```
 */
export function KiB(n: number): number {
  return n * 1024;
}

/** Bytes in `n` MiB. */
export function MiB(n: number): number {
  return n * 1024 * 1024;
}

/** Bytes in `n` GiB. */
export function GiB(n: number): number {
  return n * 1024 * 1024 * 1024;
}

/**
 * Machine addresses of the model: frame `f` starts at
 * `DIRECTMAP_BASE_ADDRESS + f * PAGE_SIZE_BYTES`, like Xen's direct map. The base
 * keeps address 0 free to mean "no block" (allocation failure), and every address
 * of a machine up to {@link MACHINE_BYTES_MAX} stays an exact integer in a double.
 */
export const DIRECTMAP_BASE_ADDRESS = 2 ** 44; // 16 TiB
/** The largest machine the model accepts (8 TiB = 2^31 frames, so frame links fit an Int32). */
export const MACHINE_BYTES_MAX = 2 ** 43;

/** Address of the first byte of frame `frameIndex`. */
export function frameToAddress(frameIndex: number): number {
  return DIRECTMAP_BASE_ADDRESS + frameIndex * PAGE_SIZE_BYTES;
}

/** Frame holding `address` (no range check). */
export function addressToFrame(address: number): number {
  return Math.floor((address - DIRECTMAP_BASE_ADDRESS) / PAGE_SIZE_BYTES);
}

/** Byte offset of `address` within its page. */
export function pageOffset(address: number): number {
  const rel = address - DIRECTMAP_BASE_ADDRESS;
  return rel - Math.floor(rel / PAGE_SIZE_BYTES) * PAGE_SIZE_BYTES;
}

/**
 * Smallest order with `2^order` pages >= `bytes` (Xen's `get_order_from_bytes`).
 *
 * @example
 * ```ts
 * import { getOrderFromBytes } from "./units.ts";
 * import assert from "node:assert/strict";
 * assert.equal(getOrderFromBytes(4096), 0);
 * assert.equal(getOrderFromBytes(4097), 1);
 * assert.equal(getOrderFromBytes(9000), 2);
 * ```
 */
export function getOrderFromBytes(bytes: number): number {
  return getOrderFromPages(Math.ceil(bytes / PAGE_SIZE_BYTES));
}

/** Smallest order with `2^order` >= `pages` (Xen's `get_order_from_pages`). */
export function getOrderFromPages(pages: number): number {
  let order = 0;
  while (2 ** order < pages) order++;
  return order;
}

/** Round `value` up to a multiple of `align` (a power of two). */
export function alignUp(value: number, align: number): number {
  return Math.ceil(value / align) * align;
}

/** Whether `value` is a positive power of two. */
export function isPowerOfTwo(value: number): boolean {
  return Number.isInteger(value) && value > 0 && Number.isInteger(Math.log2(value));
}

/** Format a byte count with a binary unit, e.g. `1.5 MiB`. */
export function formatBytes(bytes: number): string {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let value = bytes;
  let unit = 0;
  while (Math.abs(value) >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return unit === 0 ? `${value} B` : `${Number(value.toFixed(2))} ${units[unit]}`;
}

/** Format an address as hex, e.g. `0x100000001040`. */
export function formatAddress(address: number): string {
  return `0x${address.toString(16)}`;
}
