/**
 * Text tables of a scenario run: one row per guest, one column per engine.
 *
 * @module
 */

import { type Cell, renderTable } from "../table.ts";
import type { GuestResult, ScenarioResult, SpecialisationResult } from "../../guests/scenario.ts";

/** Render `r` as the tables `deno task sim` prints. */
export function renderScenario(r: ScenarioResult, timing: boolean, workers = false): string[] {
  const out: string[] = [];
  const header = ["guest", ...r.engines];
  const rows = (cell: (g: GuestResult) => string, rank?: (g: GuestResult) => number): Cell[][] =>
    r.guests.map((spec, i) => {
      const results = r.runs.map((run) => run.guests[i]!);
      const failed = results.map((g) => Object.values(g.failures).some((n) => n > 0));
      const values = rank ? results.map(rank) : [];
      const eligible = values.filter((_, j) => !failed[j]);
      const best = Math.min(...eligible);
      const several = rank !== undefined && new Set(eligible).size > 1;
      return [
        `${spec.name} (${spec.workload}, ${spec.vcpus} vCPU${spec.vcpus > 1 ? "s" : ""})`,
        ...results.map((g, j) => {
          const mark = failed[j] ? " !" : several && values[j] === best ? " *" : "  ";
          return cell(g) + mark;
        }),
      ];
    });
  out.push("");
  out.push(
    "Footprint: peak pages of the guest: its pool, or its own heap's reservation (overhead = pages x 4 KiB / peak live bytes)",
  );
  out.push(
    renderTable(
      header,
      rows((g) => `${g.peak_pages} (${g.overhead_ratio.toFixed(2)}x)`, (g) => g.peak_pages),
    ),
  );
  if (r.runs.some((run) => run.guests.some((g) => Object.values(g.failures).some((n) => n > 0)))) {
    out.push("");
    out.push("Failures: allocations not served (quota / exhaustion / contiguity / unservable)");
    out.push(renderTable(
      header,
      rows((g) => {
        const f = g.failures;
        return `${
          f.quota + f.exhaustion + f.contiguity + f.unservable
        } (${f.quota}/${f.exhaustion}/${f.contiguity}/${f.unservable})`;
      }),
    ));
  }
  out.push("");
  out.push(
    "Latency: modelled cycles per call as the vCPU sees it, lock wait included: p50 / p99 / max",
  );
  out.push(renderTable(
    header,
    rows(
      (g) => `${g.latency_cycles.p50} / ${g.latency_cycles.p99} / ${g.latency_cycles.max}`,
      (g) => g.latency_cycles.p99,
    ),
  ));
  out.push("");
  out.push(
    "Lock wait: cycles all vCPUs waited for the pool and heap locks (contended pool-lock takes)",
  );
  out.push(
    renderTable(
      header,
      rows((g) => `${g.lock_wait_cycles} (${g.lock_contended})`, (g) => g.lock_wait_cycles),
    ),
  );
  out.push("");
  out.push(
    "False sharing: most 64-byte lines holding live objects of two vCPUs at once (allocations that made one)",
  );
  out.push(renderTable(
    header,
    rows(
      (g) => `${g.false_sharing_peak_lines} (${g.false_sharing_events})`,
      (g) => g.false_sharing_peak_lines,
    ),
  ));
  out.push("");
  out.push(
    "Cache-line transfers of the pool's shared state, and the makespan (the last vCPU's clock, cycles)",
  );
  out.push(
    renderTable(
      header,
      rows((g) => `${g.cache_line_transfers}, ${g.makespan_cycles}`, (g) => g.makespan_cycles),
    ),
  );
  if (r.runs.some((run) => run.guests.some((g) => g.boot_cycles > 0))) {
    out.push("");
    out.push(
      "Boot: cycles before the guest's vCPUs start (own heap: reserve pages, initialise the allocator)",
    );
    out.push(renderTable(header, rows((g) => String(g.boot_cycles), (g) => g.boot_cycles)));
  }
  if (timing) {
    out.push("");
    out.push(
      "Host time: wall-clock ns per allocator call, control-plane request included (this machine)",
    );
    out.push(
      renderTable(["", ...r.engines], [[
        "all guests",
        ...r.runs.map((x) => x.host_ns_per_op ?? null),
      ]]),
    );
  }
  out.push("");
  out.push(
    "* = best in its row; ! = some allocations failed, so the engine served less and is not ranked.",
  );
  out.push(
    workers
      ? "Guests ran in Workers, each on its own clock: the machine-wide heap lock is not modelled across them."
      : "Cycles are modelled (src/cost_model.ts); the same seed and flags give the same figures.",
  );
  return out;
}

/** Render the specialisation table: which own-heap allocator wins for which guest. */
export function renderSpecialisation(r: SpecialisationResult): string[] {
  const out: string[] = [];
  const header = ["guest", ...r.engines];
  const table = (
    title: string,
    cell: (g: GuestResult) => string,
    value: (g: GuestResult) => number,
  ) => {
    out.push("", title);
    const rows: Cell[][] = r.guests.map((g) => {
      const failed = g.results.map((x) => Object.values(x.failures).some((n) => n > 0));
      const values = g.results.map(value);
      const eligible = values.filter((_, i) => !failed[i]);
      const best = Math.min(...eligible);
      const several = new Set(eligible).size > 1;
      return [
        `${g.guest} (${g.workload})`,
        ...g.results.map((x, i) =>
          cell(x) + (failed[i] ? " !" : several && values[i] === best ? " *" : "  ")
        ),
      ];
    });
    out.push(renderTable(header, rows));
  };
  table(
    "Footprint: pages the machine reserved for the guest's own heap (overhead = pages x 4 KiB / peak live bytes)",
    (g) => `${g.peak_pages} (${g.overhead_ratio.toFixed(2)}x)`,
    (g) => g.peak_pages,
  );
  table(
    "Latency: modelled cycles per call, p99 (max)",
    (g) => `${g.latency_cycles.p99} (${g.latency_cycles.max})`,
    (g) => g.latency_cycles.p99,
  );
  table(
    "Boot: cycles to reserve the initial pages and initialise the allocator",
    (g) => String(g.boot_cycles),
    (g) => g.boot_cycles,
  );
  out.push("", "Which allocator wins (footprint; latency):");
  for (const g of r.guests) {
    const ok = g.results.map((x, i) => ({ x, engine: r.engines[i]! })).filter(({ x }) =>
      Object.values(x.failures).every((n) => n === 0)
    );
    const by = (f: (x: GuestResult) => number) =>
      ok.reduce((a, b) => (f(b.x) < f(a.x) ? b : a)).engine;
    out.push(
      ok.length === 0
        ? `  ${g.guest}: every allocator failed some allocations`
        : `  ${g.guest}: ${by((x) => x.peak_pages)}; ${by((x) => x.latency_cycles.p99)}`,
    );
  }
  out.push(
    "",
    "* = best in its row; ! = some allocations failed (not ranked). The hypervisor's pools run tlsf.",
  );
  return out;
}
