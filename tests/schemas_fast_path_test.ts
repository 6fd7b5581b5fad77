/**
 * The request schemas' fast paths (schemas.ts): for any value, `safeParseAsync` (fast
 * path, then zod) gives what zod alone gives (`safeParse`): the same verdict, the same
 * data with the same keys in the same order, the same issues.
 */

import assert from "node:assert/strict";
import fc from "fast-check";
import {
  ALIGN_MAX_BYTES,
  AllocBody,
  BATCH_MAX_OPS,
  BatchBody,
  FreeBody,
  IdParam,
  ReallocBody,
  SIZE_MAX_BYTES,
} from "../hypervisor/control_plane/schemas.ts";
import { VCPUS_MAX } from "../hypervisor/domains.ts";

// Values at and around every bound the schemas check, and values of other types.
const number = fc.oneof(
  fc.constantFrom(
    0,
    -0,
    1,
    -1,
    2,
    3,
    16,
    4095,
    4096,
    4097,
    VCPUS_MAX - 1,
    VCPUS_MAX,
    ALIGN_MAX_BYTES,
    ALIGN_MAX_BYTES + 1,
    ALIGN_MAX_BYTES * 2,
    SIZE_MAX_BYTES,
    SIZE_MAX_BYTES + 1,
    2 ** 31,
    2 ** 31 + 1,
    2 ** 44 + 16,
    Number.MAX_SAFE_INTEGER,
    Number.MAX_SAFE_INTEGER + 1,
    2 ** 60,
    1.5,
    NaN,
    Infinity,
    -Infinity,
  ),
  fc.integer({ min: -10, max: 5000 }),
);
const value = fc.oneof(
  { weight: 6, arbitrary: number },
  fc.constantFrom(null, true, "1", "", [], {}, undefined),
);
const opName = fc.constantFrom("alloc", "free", "realloc", "nope", 1);
const key = fc.constantFrom("op", "size", "align", "vcpu", "address", "ref", "extra", "__proto__");

/** An object from a few of the schemas' keys (and a stranger), JSON-made or not. */
const object = fc.tuple(
  fc.option(opName, { nil: undefined }),
  fc.dictionary(key, value, { maxKeys: 5 }),
  fc.boolean(),
).map(([op, fields, viaJson]) => {
  const o: Record<string, unknown> = op === undefined ? { ...fields } : { op, ...fields };
  if (!viaJson) return o;
  // Through JSON, as a request body arrives (a "__proto__" key then is an own key).
  const text = "{" + Object.entries(o).filter(([, v]) => v !== undefined)
    .map(([k, v]) => `${JSON.stringify(k)}:${Number.isFinite(v) ? v : JSON.stringify(v)}`)
    .join(",") +
    "}";
  try {
    return JSON.parse(text);
  } catch {
    return o;
  }
});

/** Valid batch operations, so that long all-valid batches are common. */
const validOp = fc.oneof(
  fc.record({ op: fc.constant("alloc"), size: fc.integer({ min: 1, max: 9000 }) }),
  fc.record({
    op: fc.constant("alloc"),
    size: fc.integer({ min: 1, max: 9000 }),
    align: fc.constantFrom(1, 2, 64, 4096),
    vcpu: fc.integer({ min: 0, max: 3 }),
  }, { requiredKeys: ["op", "size"] }),
  fc.record({ op: fc.constant("free"), ref: fc.nat(100) }),
  fc.record({ op: fc.constant("free"), address: fc.integer({ min: 1, max: 2 ** 50 }) }),
  fc.record({
    op: fc.constant("realloc"),
    ref: fc.nat(100),
    size: fc.integer({ min: 1, max: 9000 }),
  }),
);

async function sameAsZod(
  schema: { safeParse(v: unknown): unknown; safeParseAsync(v: unknown): Promise<unknown> },
  v: unknown,
): Promise<void> {
  const zod = schema.safeParse(v) as { success: boolean; data?: unknown; error?: unknown };
  const fast = (await schema.safeParseAsync(v)) as typeof zod;
  assert.equal(fast.success, zod.success);
  if (zod.success) {
    assert.deepStrictEqual(fast.data, zod.data);
    assert.equal(JSON.stringify(fast.data), JSON.stringify(zod.data)); // key order
  } else {
    assert.deepStrictEqual(
      (fast.error as { issues: unknown }).issues,
      (zod.error as { issues: unknown }).issues,
    );
  }
}

Deno.test("schemas fast path: single-operation bodies as zod decides them", async () => {
  await fc.assert(
    fc.asyncProperty(object, async (o) => {
      await sameAsZod(AllocBody, o);
      await sameAsZod(FreeBody, o);
      await sameAsZod(ReallocBody, o);
    }),
    { numRuns: 3000 },
  );
});

Deno.test("schemas fast path: batches as zod decides them", async () => {
  await fc.assert(
    fc.asyncProperty(
      fc.array(fc.oneof({ weight: 1, arbitrary: object }, { weight: 4, arbitrary: validOp }), {
        minLength: 0,
        maxLength: 12,
      }),
      fc.constantFrom("plain", "extra", "not-array"),
      async (ops, shape) => {
        const body = shape === "plain" ? { ops } : shape === "extra" ? { ops, x: 1 } : { ops: {} };
        await sameAsZod(BatchBody, body);
        await sameAsZod(BatchBody, JSON.parse(JSON.stringify(body)));
      },
    ),
    { numRuns: 2000 },
  );
  // The length bounds, and things that are not objects.
  const alloc = { op: "alloc", size: 1 };
  for (const n of [0, 1, BATCH_MAX_OPS, BATCH_MAX_OPS + 1]) {
    await sameAsZod(BatchBody, { ops: new Array(n).fill(alloc) });
  }
  for (const v of [null, undefined, 1, "x", [], [alloc], new Map()]) await sameAsZod(BatchBody, v);
});

Deno.test("schemas fast path: the :id parameter as zod coerces it", async () => {
  const ids = [
    "1",
    "0",
    "01",
    "-1",
    "1.5",
    "1e3",
    " 7",
    "",
    "abc",
    "2147483647",
    "2147483648",
    "2147483649",
    "9999999999",
    "99999999999",
  ];
  for (const id of ids) {
    await sameAsZod(IdParam, { id });
    await sameAsZod(IdParam, { id, other: "x" });
  }
  await fc.assert(
    fc.asyncProperty(fc.oneof(fc.string({ maxLength: 12 }), fc.nat().map(String)), async (id) => {
      await sameAsZod(IdParam, { id });
    }),
    { numRuns: 1000 },
  );
});
