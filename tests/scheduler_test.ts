import assert from "node:assert/strict";
import { VcpuScheduler, VirtualLock } from "../guests/scheduler.ts";
import { Prng } from "../src/prng.ts";

Deno.test("scheduler: earliest clock runs next, lowest index on ties", () => {
  const s = new VcpuScheduler(3);
  assert.equal(s.peek(), 0);
  s.advance(0, 10);
  assert.equal(s.peek(), 1);
  s.advance(1, 10);
  assert.equal(s.peek(), 2);
  s.advance(2, 5);
  assert.equal(s.peek(), 2, "vCPU 2 at 5 is earliest");
  s.advance(2, 5);
  assert.equal(s.peek(), 0, "all at 10: the lowest index");
  s.park(0);
  assert.equal(s.peek(), 1);
  assert.equal(s.runnable, 2);
  assert.equal(s.makespan(), 10);
});

Deno.test("scheduler: the run order equals sorting every event by (time, vCPU)", () => {
  const prng = new Prng(3);
  const n = 7;
  const s = new VcpuScheduler(n);
  const costs = Array.from(
    { length: n },
    () => Array.from({ length: 50 }, () => prng.intInclusive(0, 30)),
  );
  const done = new Array(n).fill(0);
  const order: [number, number][] = [];
  for (let v = s.peek(); v >= 0; v = s.peek()) {
    order.push([s.clock(v), v]);
    if (done[v] === 50) {
      s.park(v);
      order.pop();
      continue;
    }
    s.advance(v, costs[v]![done[v]++]!);
  }
  // Expected: each vCPU's start times, merged and sorted by (time, index).
  const expected: [number, number][] = [];
  costs.forEach((c, v) => {
    let t = 0;
    for (const x of c) {
      expected.push([t, v]);
      t += x;
    }
  });
  expected.sort((a, b) => a[0] - b[0] || a[1] - b[1]);
  assert.deepEqual(order, expected);
});

Deno.test("scheduler: bad input is rejected", () => {
  assert.throws(() => new VcpuScheduler(0), RangeError);
  const s = new VcpuScheduler(2);
  assert.throws(() => s.advance(0, -1), RangeError);
  assert.throws(() => s.advance(0, NaN), RangeError);
  s.park(1);
  assert.throws(() => s.advance(1, 1), /not runnable/);
});

Deno.test("virtual lock: waits only while another holder's hold lasts", () => {
  const lock = new VirtualLock();
  assert.equal(lock.acquire(0, 100), 0);
  assert.equal(lock.acquire(100, 50), 0, "free exactly when it is released");
  assert.equal(lock.acquire(120, 10), 30);
  assert.equal(lock.acquire(1000, 1), 0);
  assert.equal(lock.acquisitions, 4);
  assert.equal(lock.contended, 1);
  assert.equal(lock.waitCycles, 30);
});
