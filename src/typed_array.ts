/**
 * Growing typed arrays: the model keeps its metadata in typed arrays sized to what is
 * live, and grows them by copying when more is live.
 *
 * @module
 */

/** A typed array the model grows. */
export type GrowableArray =
  | Uint8Array
  | Uint16Array
  | Uint32Array
  | Int16Array
  | Int32Array
  | Float64Array;

/**
 * A copy of `array` with room for `length` elements; new elements are `fill`.
 *
 * @example
 * ```ts
 * import { grown } from "./typed_array.ts";
 * import assert from "node:assert/strict";
 * assert.deepEqual([...grown(new Int32Array([1, 2]), 4, -1)], [1, 2, -1, -1]);
 * ```
 */
export function grown<T extends GrowableArray>(array: T, length: number, fill = 0): T {
  const next = new (array.constructor as new (length: number) => T)(length);
  next.set(array);
  if (fill !== 0) next.fill(fill, array.length);
  return next;
}
