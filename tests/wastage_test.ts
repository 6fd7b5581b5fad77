import assert from "node:assert/strict";
import { findStepUps, nearPageCurve, pagesPer1024 } from "../hypervisor/wastage.ts";

Deno.test("wastage: the curve steps where each engine's code says it must", () => {
  // first-fit: 128-byte header, block >= 4096 takes 2^order whole pages.
  assert.deepEqual(
    findStepUps("first-fit", 3000, 9000, 64, 1.25).map((s) => s.size_bytes),
    [3969, 8065],
  );
  // tlsf: near-page sizes take exactly PFN_UP(size) pages.
  assert.deepEqual(findStepUps("tlsf", 3000, 9000, 64, 1.25).map((s) => s.size_bytes), [
    4097,
    8193,
  ]);
  // tlsf-2008: whole pages of order get_order(size + 16) from 4064 up.
  assert.deepEqual(
    findStepUps("tlsf-2008", 4064, 9000, 64, 1.25).map((s) => s.size_bytes),
    [4081, 8177],
  );
});

Deno.test("wastage: bytes per object and failed points", () => {
  const [p] = nearPageCurve("tlsf", [4095]);
  assert.equal(p!.pages_per_1024, 1024);
  assert.equal(p!.bytes_per_object, 4096);
  assert.equal(pagesPer1024("tlsf-2008", 4040), null, "tlsf-2008 cannot serve 4040 bytes");
  assert.equal(pagesPer1024("first-fit", 4095), 2048);
});
