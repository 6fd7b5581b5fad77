/**
 * The cost model: modelled CPU cycles of one allocator call, from the work the call
 * did. It turns the engines' steps (each engine's own unit: a list node visited, a
 * bitmap search, a list insert or removal, a freelist pop) and the page-allocator
 * calls the call made into cycles, so engines can be compared on one latency scale.
 *
 * With several vCPUs, a call that touches a pool's shared state (its lock and list
 * heads) after another vCPU did also pays a cache-line transfer; waiting for a lock
 * another vCPU holds is counted apart, as lock wait (`src/virtual_lock.ts`).
 *
 * The constants are round figures of the right magnitude for a modern x86 core with
 * the allocator's metadata in cache: a call's fixed cost (entry, argument checks, an
 * uncontended lock), a dependent pointer chase or bit scan per step, and a call into
 * the buddy allocator (Xen's `alloc_heap_pages()` takes its own heap lock and walks
 * its free lists). They are a model, not a measurement: what the comparison shows is
 * how the work of each engine grows, not absolute time. Host wall-clock time is
 * reported apart, always labelled as such.
 *
 * @module
 */

/** Fixed cycles of any allocator call. */
export const CALL_CYCLES = 20;
/** Cycles per step. */
export const STEP_CYCLES = 10;
/** Cycles per call into the page allocator. */
export const PAGE_ALLOCATOR_CALL_CYCLES = 200;
/**
 * Cycles to move a cache line from another core (a dirty line in another core's
 * cache): paid when a vCPU touches a pool's shared state that another vCPU touched
 * last (the lock word and the list heads move together).
 */
export const CACHE_LINE_TRANSFER_CYCLES = 100;

/**
 * Modelled cycles of one call.
 *
 * @param steps the engine's steps for the call
 * @param pageAllocatorCalls allocations and frees of pages the call made
 * @param lineTransfers cache lines the call pulled from another core
 *
 * @example
 * ```ts
 * import { modelledCycles } from "./cost_model.ts";
 * import assert from "node:assert/strict";
 * assert.equal(modelledCycles(5, 1), 20 + 5 * 10 + 200);
 * ```
 */
export function modelledCycles(
  steps: number,
  pageAllocatorCalls: number,
  lineTransfers = 0,
): number {
  return CALL_CYCLES + steps * STEP_CYCLES + pageAllocatorCalls * PAGE_ALLOCATOR_CALL_CYCLES +
    lineTransfers * CACHE_LINE_TRANSFER_CYCLES;
}
