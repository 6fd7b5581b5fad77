/** The trace format's optional vCPU column: parsing, validation and formatting. */

import assert from "node:assert/strict";
import fc from "fast-check";
import {
  formatTrace,
  OP_ALLOC,
  OP_FREE,
  parseTrace,
  type Trace,
  TRACE_VCPU_MAX,
  TraceError,
} from "../src/trace.ts";

Deno.test("trace vCPU column: parsed per op, frees on other vCPUs allowed", () => {
  const t = parseTrace("# smp\n\na x 10 0\na y 20 3\nf x 3\n  f y 4095  \n", "t");
  assert.deepEqual([...t.kinds], [OP_ALLOC, OP_ALLOC, OP_FREE, OP_FREE]);
  assert.deepEqual([...t.ids], [0, 1, 0, 1]);
  assert.deepEqual([...t.sizes], [10, 20, 0, 0]);
  assert.deepEqual([...t.vcpus], [0, 3, 3, TRACE_VCPU_MAX]);
});

Deno.test("trace vCPU column: traces without it run on vCPU 0", () => {
  const t = parseTrace("a 1 10\na 2 20\nf 1\nf 2\n", "t");
  assert.equal(t.vcpus.length, 4);
  assert.ok(t.vcpus.every((v) => v === 0));
  const fixture = parseTrace(
    Deno.readTextFileSync(new URL("./fixtures/traces/frag-ramp.trace", import.meta.url)),
    "frag-ramp",
  );
  assert.equal(fixture.vcpus.length, fixture.opCount);
  assert.ok(fixture.vcpus.every((v) => v === 0));
});

Deno.test("trace vCPU column: bad fields and mixed formats name their line", async (t) => {
  const cases: [string, number, RegExp][] = [
    ["a 1 10 4096\n", 1, /vCPU "4096" is not an integer in \[0, 4095\]/],
    ["a 1 10 -1\n", 1, /vCPU "-1" is not an integer/],
    ["a 1 10 x\n", 1, /vCPU "x" is not an integer/],
    ["a 1 10 1.5\n", 1, /vCPU "1\.5" is not an integer/],
    ["a 1 10 0\nf 1 1e3\n", 2, /vCPU "1e3" is not an integer/],
    // The first op line decides: with the column, every op line has it...
    [
      "# c\na 1 10 2\nf 1\n",
      3,
      /"f" takes 2 fields with the vCPU column, which line 2 set, found 1/,
    ],
    ["f 1 0\n", 1, /free of id "1", which is not live/],
    ["a 1 10 0\na 2 20\n", 2, /"a" takes 3 fields with the vCPU column, which line 1 set, found 2/],
    // ...without it, none has.
    [
      "a 1 10\na 2 20 1\n",
      2,
      /"a" takes 2 fields, found 3 \(line 1 set a trace without the vCPU column\)/,
    ],
    ["a 1 10\nf 1 2\n", 2, /"f" takes 1 field, found 2 \(line 1 set/],
    ["a 1 10 0 5\n", 1, /"a" takes 2 fields, found 4/],
    ["f 1 2 3\n", 1, /"f" takes 1 field, found 3/],
  ];
  for (const [text, line, why] of cases) {
    await t.step(JSON.stringify(text), () => {
      assert.throws(() => parseTrace(text, "t", "smp.trace"), (e: unknown) => {
        assert.ok(e instanceof TraceError);
        assert.equal(e.line, line);
        assert.match(e.message, new RegExp(`^Invalid trace smp\\.trace, line ${line}: `));
        assert.match(e.message, why);
        return true;
      });
    });
  }
});

Deno.test("trace vCPU column: written only when some op is on a vCPU above 0", () => {
  assert.equal(formatTrace(parseTrace("a x 5 0\nf x 0\n", "t")), "a 0 5\nf 0\n");
  assert.equal(formatTrace(parseTrace("a x 5 0\nf x 2\n", "t")), "a 0 5 0\nf 0 2\n");
  const built: Trace = {
    name: "built",
    opCount: 2,
    kinds: new Uint8Array([OP_ALLOC, OP_FREE]),
    ids: new Int32Array([0, 0]),
    sizes: new Float64Array([7, 0]),
    idCount: 1,
  };
  assert.equal(formatTrace(built), "a 0 7\nf 0\n", "a trace built without vcpus");
  assert.equal(formatTrace({ ...built, vcpus: new Uint16Array([1, 0]) }), "a 0 7 1\nf 0 0\n");
});

Deno.test("trace vCPU column property: traces with vCPUs round-trip through formatTrace", () => {
  const ops = fc.array(
    fc.tuple(fc.boolean(), fc.integer({ min: 1, max: 1 << 20 }), fc.integer({ min: 0, max: 4095 })),
    { maxLength: 60 },
  );
  fc.assert(
    fc.property(ops, (spec) => {
      const lines: string[] = [];
      const live: number[] = [];
      let next = 0;
      for (const [alloc, size, vcpu] of spec) {
        if (alloc || live.length === 0) {
          lines.push(`a ${next} ${size} ${vcpu}`);
          live.push(next++);
        } else {
          lines.push(`f ${live.splice(size % live.length, 1)[0]} ${vcpu}`);
        }
      }
      const t = parseTrace(lines.join("\n"), "p");
      assert.deepEqual([...t.vcpus], spec.map(([, , vcpu]) => vcpu));
      const again = parseTrace(formatTrace(t), "p");
      assert.deepEqual([...again.kinds], [...t.kinds]);
      assert.deepEqual([...again.sizes], [...t.sizes]);
      assert.deepEqual([...again.vcpus], [...t.vcpus]);
    }),
    { seed: 11, numRuns: 300 },
  );
});
