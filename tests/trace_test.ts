import assert from "node:assert/strict";
import { formatTrace, OP_ALLOC, OP_FREE, parseTrace, TraceError } from "../src/trace.ts";

Deno.test("trace: parses ops, comments, blank lines and reused ids", () => {
  const t = parseTrace("# c\n\na x 10\nf x\n  a x 20  \na y 4096\nf y\nf x\n", "t");
  assert.equal(t.opCount, 6);
  assert.deepEqual([...t.kinds], [OP_ALLOC, OP_FREE, OP_ALLOC, OP_ALLOC, OP_FREE, OP_FREE]);
  assert.deepEqual([...t.ids], [0, 0, 0, 1, 1, 0]);
  assert.deepEqual([...t.sizes], [10, 0, 20, 4096, 0, 0]);
  assert.equal(t.idCount, 2);
});

Deno.test("trace: every bad line names its line number and reason", async (t) => {
  const cases: [string, number, RegExp][] = [
    ["a 1 10\nx 1\n", 2, /unknown op "x"/],
    ["a 1\n", 1, /"a" takes 2 fields, found 1/],
    ["a 1 10\nf 1 2\n", 2, /"f" takes 1 field, found 2/],
    ["a 1 0\n", 1, /size "0" is not an integer/],
    ["a 1 -5\n", 1, /size "-5"/],
    ["a 1 1.5\n", 1, /size "1.5"/],
    ["a 1 1e3\n", 1, /size "1e3"/],
    ["a 1 2199023255553\n", 1, /not an integer in \[1, 2\^40\]/],
    ["a 1 10\na 1 20\n", 2, /id "1" is already live \(allocated at line 1\)/],
    ["# x\nf 7\n", 2, /free of id "7", which is not live/],
    ["a 1 10\nf 1\nf 1\n", 3, /free of id "1", which is not live/],
  ];
  for (const [text, line, why] of cases) {
    await t.step(JSON.stringify(text), () => {
      assert.throws(() => parseTrace(text, "t", "file.trace"), (e: unknown) => {
        assert.ok(e instanceof TraceError);
        assert.equal(e.line, line);
        assert.match(e.message, new RegExp(`^Invalid trace file\\.trace, line ${line}: `));
        assert.match(e.message, why);
        return true;
      });
    });
  }
});

Deno.test("trace: formatTrace round-trips", () => {
  const t = parseTrace("a a 5\na b 6\nf a\nf b\n", "t");
  const again = parseTrace(formatTrace(t, "hello\nworld"), "t");
  assert.deepEqual([...again.kinds], [...t.kinds]);
  assert.deepEqual([...again.sizes], [...t.sizes]);
  assert.deepEqual([...again.ids], [...t.ids]);
});
