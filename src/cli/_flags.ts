/**
 * Number flags of the benchmark CLIs, checked one way.
 *
 * @module
 */

/**
 * `raw` as a number in [lo, hi]: an integer unless `real` (then a decimal).
 *
 * @throws {RangeError} `Invalid --name "raw": expected an integer in [lo, hi]`
 */
export function numberFlag(
  name: string,
  raw: string,
  lo: number,
  hi: number,
  real = false,
): number {
  const pattern = real ? /^\d+(\.\d+)?$/ : /^\d+$/;
  const v = pattern.test(raw) ? Number(raw) : NaN;
  if (!(v >= lo && v <= hi)) {
    throw new RangeError(
      `Invalid --${name} "${raw}": expected ${real ? "a number" : "an integer"} in [${lo}, ${hi}]`,
    );
  }
  return v;
}
