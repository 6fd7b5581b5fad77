/**
 * `GET /metrics`: the machine and every domain in the Prometheus text format
 * (version 0.0.4), from the same figures as the JSON stats.
 *
 * @module
 */

import type { Hypervisor } from "../hypervisor.ts";

function labels(values: Record<string, string | number>): string {
  const escape = (v: string) => v.replace(/\\/g, "\\\\").replace(/"/g, '\\"').replace(/\n/g, "\\n");
  return `{${Object.entries(values).map(([k, v]) => `${k}="${escape(String(v))}"`).join(",")}}`;
}

/** Render every metric. */
export function renderMetrics(hypervisor: Hypervisor): string {
  const out: string[] = [];
  const metric = (
    name: string,
    type: "gauge" | "counter",
    help: string,
    samples: [string, number][],
  ) => {
    out.push(`# HELP ${name} ${help}`, `# TYPE ${name} ${type}`);
    for (const [l, v] of samples) out.push(`${name}${l} ${v}`);
  };
  const pa = hypervisor.pages.stats();
  metric("heapvisor_machine_frames", "gauge", "Frames (4 KiB pages) of the machine", [[
    "",
    pa.frameCount,
  ]]);
  metric("heapvisor_machine_free_frames", "gauge", "Frames on the page allocator's free lists", [[
    "",
    pa.freeFrameCount,
  ]]);
  metric(
    "heapvisor_machine_largest_free_order",
    "gauge",
    "Largest order with a free block (-1: none)",
    [[
      "",
      pa.largestFreeOrder,
    ]],
  );
  metric("heapvisor_page_allocator_calls_total", "counter", "Page allocator calls", [
    [labels({ call: "alloc" }), pa.allocCalls],
    [labels({ call: "free" }), pa.freeCalls],
  ]);
  metric("heapvisor_page_allocator_failures_total", "counter", "Failed page allocations by cause", [
    [labels({ cause: "contiguity" }), pa.failedContiguity],
    [labels({ cause: "exhaustion" }), pa.failedExhaustion],
  ]);
  const domains = hypervisor.tenancy.domains().map((d) => d.stats());
  const per = (pick: (s: (typeof domains)[number]) => number): [string, number][] =>
    domains.map((
      s,
    ) => [labels({ domain: s.id, name: s.name, tenant: s.tenant_id, engine: s.engine }), pick(s)]);
  metric(
    "heapvisor_domain_pages_held",
    "gauge",
    "Pages the domain's pool holds (Xen's tot_pages adds reserved_pages)",
    per((s) => s.pages_held),
  );
  metric("heapvisor_domain_max_pages", "gauge", "The domain's page quota", per((s) => s.max_pages));
  metric(
    "heapvisor_domain_reserved_pages",
    "gauge",
    "Pages reserved for the guest's own heap (populate_physmap)",
    per((s) => s.reserved_pages),
  );
  metric(
    "heapvisor_domain_peak_pages",
    "gauge",
    "Most pages the domain has held",
    per((s) => s.peak_pages),
  );
  metric(
    "heapvisor_domain_requested_bytes",
    "gauge",
    "Bytes asked for by live blocks",
    per((s) => s.requested_bytes),
  );
  metric(
    "heapvisor_domain_reserved_bytes",
    "gauge",
    "Bytes usable at live blocks",
    per((s) => s.reserved_bytes),
  );
  metric(
    "heapvisor_domain_overhead_ratio",
    "gauge",
    "pages_held * 4096 / requested_bytes",
    per((s) => s.overhead_ratio),
  );
  metric("heapvisor_domain_live_blocks", "gauge", "Live blocks", per((s) => s.live_blocks));
  const ops: [string, number][] = [];
  const failures: [string, number][] = [];
  const latency: [string, number][] = [];
  for (const s of domains) {
    const base = { domain: s.id, name: s.name, tenant: s.tenant_id, engine: s.engine };
    for (const [op, n] of Object.entries(s.ops)) ops.push([labels({ ...base, op }), n]);
    for (const [cause, n] of Object.entries(s.failures)) {
      failures.push([labels({ ...base, cause }), n]);
    }
    for (
      const [q, v] of [["0.5", s.latency_cycles.p50], ["0.99", s.latency_cycles.p99], [
        "0.999",
        s.latency_cycles.p999,
      ], ["1", s.latency_cycles.max]] as const
    ) {
      latency.push([labels({ ...base, quantile: q }), v]);
    }
  }
  metric(
    "heapvisor_domain_ops_total",
    "counter",
    "Memory operations by kind (failed: allocations not served)",
    ops,
  );
  metric(
    "heapvisor_domain_alloc_failures_total",
    "counter",
    "Allocations not served, by cause",
    failures,
  );
  metric(
    "heapvisor_domain_latency_cycles",
    "gauge",
    "Modelled cycles per operation, by quantile",
    latency,
  );
  return out.join("\n") + "\n";
}
