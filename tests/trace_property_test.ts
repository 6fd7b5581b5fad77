/** Property tests of the trace parser: any input either parses or fails at a real line. */

import assert from "node:assert/strict";
import fc from "fast-check";
import { formatTrace, OP_ALLOC, parseTrace, TraceError } from "../src/trace.ts";

const token = fc.stringMatching(/^[a-z0-9]{1,4}$/);
const line = fc.oneof(
  fc.tuple(
    fc.constant("a"),
    token,
    fc.oneof(fc.integer({ min: -5, max: 70000 }).map(String), token),
  )
    .map((p) => p.join(" ")),
  fc.tuple(fc.constant("f"), token).map((p) => p.join(" ")),
  fc.constant("# note"),
  fc.constant(""),
  fc.string({ maxLength: 12 }),
);

Deno.test("trace property: any text parses or fails with a line number inside it", () => {
  fc.assert(
    fc.property(fc.array(line, { maxLength: 40 }), (lines) => {
      const text = lines.join("\n");
      try {
        const t = parseTrace(text, "p");
        // Parsed: every free names a live id and every size is a positive integer.
        const live = new Set<number>();
        for (let i = 0; i < t.opCount; i++) {
          const id = t.ids[i]!;
          if (t.kinds[i] === OP_ALLOC) {
            assert.ok(!live.has(id) && Number.isInteger(t.sizes[i]) && t.sizes[i]! >= 1);
            live.add(id);
          } else {
            assert.ok(live.delete(id));
          }
        }
      } catch (e) {
        assert.ok(e instanceof TraceError, String(e));
        assert.ok(e.line >= 1 && e.line <= lines.length, `line ${e.line} of ${lines.length}`);
      }
    }),
    { seed: 42, numRuns: 500 },
  );
});

Deno.test("trace property: valid traces round-trip through formatTrace", () => {
  const ops = fc.array(fc.tuple(fc.boolean(), fc.integer({ min: 1, max: 1 << 20 })), {
    maxLength: 60,
  });
  fc.assert(
    fc.property(ops, (spec) => {
      const lines: string[] = [];
      const live: number[] = [];
      let next = 0;
      for (const [alloc, size] of spec) {
        if (alloc || live.length === 0) {
          lines.push(`a ${next} ${size}`);
          live.push(next++);
        } else {
          lines.push(`f ${live.splice(size % live.length, 1)[0]}`);
        }
      }
      const t = parseTrace(lines.join("\n"), "p");
      assert.equal(t.opCount, spec.length);
      const again = parseTrace(formatTrace(t), "p");
      assert.deepEqual([...again.kinds], [...t.kinds]);
      assert.deepEqual([...again.sizes], [...t.sizes]);
    }),
    { seed: 7, numRuns: 300 },
  );
});
