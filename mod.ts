/**
 * heapvisor: a model hypervisor for choosing a memory allocator on evidence.
 *
 * A buddy page allocator over machine frames (Xen's `alloc_heap_pages`), an xmalloc
 * whose engine is chosen by name (Xen 3.3's first fit, Xen's TLSF, Linux's SLUB),
 * trace replay with the reference figures' measurements, built-in seeded workloads,
 * the near-page wastage curve, tenants and domains with pools of their own, the HTTP
 * control plane (a Hono app) with its typed client, and guests with SMP vCPUs on
 * virtual time (scenarios, SMP workloads, own heaps on reserved pages).
 *
 * @example Replay a trace on today's Xen TLSF
 * ```ts
 * import { parseTrace, replayTrace } from "./mod.ts";
 * import assert from "node:assert/strict";
 * const trace = parseTrace("a 1 4095\na 2 100\nf 1\nf 2\n", "demo");
 * const r = replayTrace(trace, { engine: "tlsf", machineBytes: 64 * 1024 * 1024 });
 * assert.equal(r.peak_whole_pages, 1); // xmalloc(PAGE_SIZE - 1) takes one page
 * assert.equal(r.end_pages, 0);
 * ```
 *
 * @example Use an engine directly
 * ```ts
 * import { Hypervisor } from "./mod.ts";
 * import assert from "node:assert/strict";
 * const hv = new Hypervisor({ engine: "first-fit", machineBytes: 64 * 1024 * 1024 });
 * const p = hv.xmalloc.allocate(4095);
 * assert.equal(hv.xmalloc.pagesHeld().wholePages, 2); // the 2008 sawtooth
 * hv.xmalloc.free(p);
 * assert.deepEqual(hv.xmalloc.check(), []);
 * ```
 *
 * @module
 */

export {
  alignUp,
  DIRECTMAP_BASE_ADDRESS,
  formatAddress,
  formatBytes,
  getOrderFromBytes,
  getOrderFromPages,
  GiB,
  KiB,
  MACHINE_BYTES_MAX,
  MiB,
  PAGE_SHIFT,
  PAGE_SIZE_BYTES,
} from "./src/units.ts";
export { deriveSeed, Prng, SEED_MAX } from "./src/prng.ts";
export { IntegerHistogram, median } from "./src/stats.ts";
export {
  formatTrace,
  OP_ALLOC,
  OP_FREE,
  type ParsedTrace,
  parseTrace,
  type Trace,
  TraceError,
} from "./src/trace.ts";
export {
  BuddyPageAllocator,
  MAX_ORDER,
  type PageAllocatorStats,
  type PageFailureCause,
  PageFreeError,
} from "./hypervisor/page_allocator.ts";
export {
  type AllocFailureCause,
  type EngineContext,
  type EngineDescriptor,
  type EnginePages,
  type EngineStats,
  InvalidFreeError,
  type InvalidFreeReason,
  PageSource,
  type XmallocEngine,
} from "./hypervisor/xmalloc/engine.ts";
export { ENGINE_NAMES, engineDescriptor, ENGINES } from "./hypervisor/xmalloc/registry.ts";
export {
  DEFAULT_MACHINE_BYTES,
  Hypervisor,
  type HypervisorOptions,
  XEN_HEAP_OWNER,
} from "./hypervisor/hypervisor.ts";
export {
  overheadRatio,
  type ReplayOptions,
  type ReplayResult,
  replayTrace,
  timeTrace,
} from "./hypervisor/replay.ts";
export {
  CURVE_OBJECT_COUNT,
  type CurvePoint,
  findStepUps,
  nearPageCurve,
  pagesPer1024,
  type StepUp,
} from "./hypervisor/wastage.ts";
export {
  type CompareOptions,
  type CompareResult,
  type CurveResult,
  runComparison,
} from "./hypervisor/compare.ts";
export {
  WORKLOAD_NAMES,
  type WorkloadDescriptor,
  workloadDescriptor,
  WORKLOADS,
} from "./guests/workloads.ts";
export {
  Domain,
  type DomainSpec,
  type DomainStats,
  MachineFullError,
  type MemoryOpResult,
  NotFoundError,
  type Percentiles,
  QuotaExceededError,
  type RestoreSpec,
  SNAPSHOTS_PER_TENANT_MAX,
  type StoredSnapshot,
  Tenancy,
  type Tenant,
  type TenantQuota,
} from "./hypervisor/domains.ts";
export { type StateArray, StateError, StateReader, StateWriter } from "./src/state_codec.ts";
export type { GrowableArray } from "./src/typed_array.ts";
export {
  claimPoolPages,
  ForkPageSource,
  type HistoryOp,
  historyOps,
  type HistoryView,
  OpHistory,
  packedPoolState,
  parseSnapshotDocument,
  type PoolState,
  poolState,
  savePoolPages,
  SNAPSHOT_FORMAT,
  SNAPSHOT_STATE_MAX_BYTES,
  SNAPSHOT_VERSION,
  type SnapshotContent,
  type SnapshotDocument,
  snapshotDocument,
  SnapshotError,
  type SnapshotHeap,
  snapshotStateBytes,
} from "./hypervisor/snapshot.ts";
export {
  type FromSnapshotOptions,
  type FromSnapshotResult,
  type FromSnapshotRun,
  runFromSnapshot,
} from "./guests/from_snapshot.ts";
export { modelledCycles } from "./src/cost_model.ts";
export {
  applyOp,
  CHECKPOINT_VERSION,
  crc32,
  Journal,
  JournalError,
  type JournalOp,
  MIGRATIONS,
  type ReplaySummary,
  SCHEMA_VERSION,
} from "./hypervisor/journal.ts";
export {
  CHECKPOINT_EVERY_OPS,
  type ControlPlane,
  type ControlPlaneApp,
  type ControlPlaneEnv,
  type ControlPlaneOptions,
  createControlPlane,
} from "./hypervisor/control_plane/app.ts";

export { newAdminToken, type Principal, TokenStore } from "./hypervisor/control_plane/auth.ts";
export {
  type BatchOp,
  type BatchResult,
  ControlPlaneClient,
  ControlPlaneError,
  type CreatedDomainInfo,
  type CreatedTenant,
  type DomainInfo,
  type EngineInfo,
  type FetchLike,
  type HypervisorStats,
  type OpResult,
  type ReleaseResult,
  type ReservationRequest,
  type ReservationResult,
  type SnapshotInfo,
  type TenantInfo,
} from "./guests/client.ts";
export { VcpuScheduler } from "./guests/scheduler.ts";
export { type HeapFigures, HeapLedger } from "./hypervisor/heap_ledger.ts";
export { VirtualLock } from "./src/virtual_lock.ts";
export {
  SmpAccounting,
  type SmpCost,
  type SmpPercentiles,
  type SmpStats,
} from "./hypervisor/smp.ts";
export {
  SMP_WORKLOAD_NAMES,
  SMP_WORKLOADS,
  type SmpOp,
  type SmpWorkloadDescriptor,
  smpWorkloadDescriptor,
  type SmpWorkloadRun,
  traceWorkload,
} from "./guests/smp_workloads.ts";
export {
  type EngineInitWork,
  engineInitWork,
  OwnHeap,
  OwnHeapBootError,
  type OwnHeapOpResult,
  type OwnHeapOptions,
  type OwnHeapShutdown,
  type OwnHeapStats,
} from "./guests/own_heap.ts";
export type {
  ReleaseResult as DomainReleaseResult,
  ReservationFailureCause,
  ReservationResult as DomainReservationResult,
} from "./hypervisor/domains.ts";
export {
  DEFAULT_SCENARIO,
  type EngineRunResult,
  type GuestResult,
  type GuestSpec,
  type LatencyPercentiles,
  parseScenario,
  type RunOptions,
  runScenario,
  runScenarioOnEngine,
  runSpecialisation,
  type Scenario,
  type ScenarioResult,
  type SpecialisationResult,
} from "./guests/scenario.ts";
