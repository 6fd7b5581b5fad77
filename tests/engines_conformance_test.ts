/**
 * Every engine of the registry runs the one conformance suite (tests/conformance.ts).
 * An engine that cannot pass a case lists it in {@link OPTIONS} with its reason.
 */

import assert from "node:assert/strict";
import { ENGINES } from "../hypervisor/xmalloc/registry.ts";
import { MAX_POOL_BLOCK_BYTES, MEM_ALIGN_BYTES } from "../hypervisor/xmalloc/_tlsf_pool.ts";
import { type ConformanceOptions, runConformance } from "./conformance.ts";

/**
 * Largest padded request tlsf-2008's pool serves: MAPPING_SEARCH rounds sizes in
 * [2048, 4096) up to a multiple of 64, and 4032 is the last one a 4064-byte block holds.
 */
const TLSF_2008_POOL_MAX_BYTES = Math.floor(MAX_POOL_BLOCK_BYTES / 64) * 64;

/**
 * tlsf-2008 refuses what its pool cannot hold and whole pages do not take: a padded
 * request (size + max(align, 16) - 16) above 4032 but below 4064 bytes, as only sizes
 * >= 4064 go to whole pages.
 */
function tlsf2008Refuses(sizeBytes: number, alignBytes: number): boolean {
  const padded = sizeBytes + Math.max(alignBytes, MEM_ALIGN_BYTES) - MEM_ALIGN_BYTES;
  return padded > TLSF_2008_POOL_MAX_BYTES && padded < MAX_POOL_BLOCK_BYTES;
}

/** Per-engine options: refusals by design, skips with their reasons. */
const OPTIONS: Readonly<Record<string, ConformanceOptions>> = {
  "tlsf-2008": { refuses: tlsf2008Refuses },
  // Linux keeps empty slabs on per-CPU and node partial lists until kmem_cache_shrink().
  "slub": { cachesEmptyPages: true },
  // bbuddy never gives memory back (ukalloc has addmem, no removemem): a region stays
  // when its last block is freed, until shrink() returns the wholly free ones.
  "buddy": { cachesEmptyPages: true },
};

Deno.test("the registry lists engines under unique names", () => {
  assert.ok(ENGINES.length > 0);
  const names = ENGINES.map((e) => e.name);
  assert.equal(new Set(names).size, names.length, `duplicate names in ${names.join(", ")}`);
  for (const name of Object.keys(OPTIONS)) {
    assert.ok(names.includes(name), `options for unknown engine ${name}`);
  }
});

for (const descriptor of ENGINES) runConformance(descriptor, OPTIONS[descriptor.name] ?? {});
