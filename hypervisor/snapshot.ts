/**
 * Snapshots of a domain's heap: what they hold, the file they are shared as, and the
 * page source a restored heap runs on.
 *
 * ## What a snapshot is (version 2)
 *
 * The heap's **state**: the engine's (`XmallocEngine.saveState`: every list, block,
 * slot and counter) and its pool's pages as the page allocator holds them: each block
 * (frame, order) and every non-zero private word of its frames ({@link savePoolPages}).
 * Its size follows the heap, not the calls that built it. A snapshot also records
 * what the heap must look like (pages by use, live blocks with their bytes and vCPU),
 * and every restore is checked against it.
 *
 * ## Restoring: same addresses, same fragmentation
 *
 * A restored domain's pool gets a private frame space the size of the source's
 * machine ({@link ForkPageSource}); the saved blocks are claimed there at the very
 * frames the source held (`BuddyPageAllocator.allocAt`) with their words, and the
 * engine is loaded on it (`EngineDescriptor.load`), so every block, free list and
 * page word is the source's, at the source's addresses. The machine then backs each
 * page block the heap holds with a real block of the same order, counted under the new
 * domain (a guest sees its heap through that map, as a Xen guest sees machine frames
 * through its physical-to-machine table). After the restore the pool's new page
 * requests are served by the machine and given a frame of the private space, so the
 * two domains' addresses never collide in their own spaces.
 *
 * A restore starts the new domain's books at the snapshot: its live blocks, bytes and
 * pages are the snapshot's; its call counts, steps, latency and lock wait count from
 * zero (they describe what happens after the fork, the figures two forks are compared
 * on).
 *
 * ## Version 1: a history
 *
 * Files written before version 2 hold the domain's **history** instead
 * ({@link OpHistory}): every pool operation in order, served or not, the reservation
 * after each change, and every answer the page allocator gave the pool (the frame of
 * each page request or why it failed, and each "largest free order" asked). The model
 * is deterministic, so an engine given the same calls and the same answers makes the
 * same heap: such a file is restored by replaying its history with a
 * {@link ForkPageSource} that answers each page request with the recorded frame.
 * Restored, a version-1 and a version-2 file of the same heap give byte-identical
 * engine states (tests/snapshot_file_test.ts).
 *
 * ## The file
 *
 * {@link SnapshotDocument} is the JSON file a snapshot is exported as and imported
 * from (`format` "heapvisor-snapshot", `version` {@link SNAPSHOT_VERSION}, 1 read
 * too); see the README's "Snapshot file format". A CRC-32 of the document guards
 * against damage in transit; the restore check guards against a state (or history)
 * that does not rebuild its heap.
 *
 * @module
 */

import { z } from "zod";
import { BuddyPageAllocator, FRAME_COUNT_MAX } from "./page_allocator.ts";
import {
  type AllocFailureCause,
  decodeLargestFreeOrder,
  decodePageFailure,
  encodeLargestFreeOrder,
  encodePageFailure,
  PageSource,
} from "./xmalloc/engine.ts";
import { ENGINE_NAMES, engineDescriptor } from "./xmalloc/registry.ts";
import { grown } from "../src/typed_array.ts";
import { crc32, deflateRawSync, inflateRawSync } from "node:zlib";
import { Buffer } from "node:buffer";
import { StateReader, StateWriter } from "../src/state_codec.ts";

/** Most bytes one state of a snapshot file may inflate to (1 GiB). */
export const SNAPSHOT_STATE_MAX_BYTES = 2 ** 30;

/** The `format` of a snapshot file. */
export const SNAPSHOT_FORMAT = "heapvisor-snapshot";
/** The version of the snapshot file format this heapvisor writes and reads. */
export const SNAPSHOT_VERSION = 2;

/** A snapshot cannot be read, or does not rebuild the heap it describes. */
export class SnapshotError extends Error {
  /** Always "SnapshotError". */
  override name = "SnapshotError";
}

/** One recorded operation of a history. */
export type HistoryOp =
  | { kind: "allocate"; size: number; align: number; vcpu: number }
  | { kind: "free"; address: number; vcpu: number }
  | { kind: "reallocate"; address: number; size: number; align: number; vcpu: number }
  | { kind: "reserved"; pages: number };

const OP_ALLOCATE = 0;
const OP_FREE = 1;
const OP_REALLOCATE = 2;
const OP_RESERVED = 3;
/** vCPU numbers packed in an op's head word (VCPUS_MAX fits). */
const VCPU_SLOTS = 4096;

/** A history frozen at one moment: views on its arrays, never written again. */
export interface HistoryView {
  /** Encoded operations (a head word, then one or two operands). */
  readonly words: Float64Array;
  /** Operations in `words`. */
  readonly ops: number;
  /** The page allocator's answers, in call order. */
  readonly responses: Int32Array;
}

/**
 * A domain's history: its pool's operations and the page allocator's answers, packed
 * in growing typed arrays (16 bytes per operation, 24 for a resize, 4 per answer).
 */
export class OpHistory {
  #words = new Float64Array(64);
  #wordCount = 0;
  #ops = 0;
  #responses = new Int32Array(64);
  #responseCount = 0;

  /** Record a page allocator's answer (the sink of `PageSource.responses`). */
  push(response: number): void {
    if (this.#responseCount === this.#responses.length) {
      this.#responses = grown(this.#responses, this.#responses.length * 2);
    }
    this.#responses[this.#responseCount++] = response;
  }

  /** Record an allocation (served or not). */
  allocate(size: number, align: number, vcpu: number): void {
    this.#op(OP_ALLOCATE, vcpu, align, size);
  }

  /** Record a free. */
  free(address: number, vcpu: number): void {
    this.#op(OP_FREE, vcpu, 1, address);
  }

  /** Record a resize (served or not). */
  reallocate(address: number, size: number, align: number, vcpu: number): void {
    this.#op(OP_REALLOCATE, vcpu, align, address, size);
  }

  /** Record a reservation change: `pages` reserved after it. */
  reserved(pages: number): void {
    this.#op(OP_RESERVED, 0, 1, pages);
  }

  /** The history as it is now; later records do not change it. */
  view(): HistoryView {
    return {
      words: this.#words.subarray(0, this.#wordCount),
      ops: this.#ops,
      responses: this.#responses.subarray(0, this.#responseCount),
    };
  }

  #op(kind: number, vcpu: number, align: number, a: number, b?: number): void {
    if (this.#wordCount + 3 > this.#words.length) {
      this.#words = grown(this.#words, this.#words.length * 2);
    }
    const w = this.#words;
    w[this.#wordCount++] = kind + 4 * (vcpu + VCPU_SLOTS * align);
    w[this.#wordCount++] = a;
    if (b !== undefined) w[this.#wordCount++] = b;
    this.#ops++;
  }
}

/** The operations of a history view, decoded, in order. */
export function* historyOps(view: HistoryView): Generator<HistoryOp> {
  const w = view.words;
  let i = 0;
  while (i < w.length) {
    const head = w[i++]!;
    const kind = head % 4;
    const vcpu = Math.floor(head / 4) % VCPU_SLOTS;
    const align = Math.floor(head / (4 * VCPU_SLOTS));
    const a = w[i++]!;
    if (kind === OP_ALLOCATE) yield { kind: "allocate", size: a, align, vcpu };
    else if (kind === OP_FREE) yield { kind: "free", address: a, vcpu };
    else if (kind === OP_REALLOCATE) {
      yield { kind: "reallocate", address: a, size: w[i++]!, align, vcpu };
    } else yield { kind: "reserved", pages: a };
  }
}

/** What a heap looks like: checked after every restore. */
export interface SnapshotHeap {
  /** Pages the pool holds. */
  pages_held: number;
  /** Pages carved into blocks. */
  pool_pages: number;
  /** Pages handed out whole. */
  whole_pages: number;
  /** Pages of the pool's control structure. */
  meta_pages: number;
  /** Pages reserved for the guest's own heap. */
  reserved_pages: number;
  /** Live blocks. */
  live_blocks: number;
  /** Bytes asked for by the live blocks. */
  requested_bytes: number;
  /** Bytes usable at the live blocks. */
  reserved_bytes: number;
}

/**
 * A version-2 snapshot's state: the pool's pages as the page allocator holds them
 * (blocks and private words, {@link savePoolPages}) and the engine's state
 * (`XmallocEngine.saveState`), each a `StateWriter` encoding.
 */
export interface PoolState {
  /** The pool's page blocks and their private words. */
  readonly pages: Uint8Array;
  /** The engine's state. */
  readonly engine: Uint8Array;
  /** Bytes of the two (as they are read, not as they are kept). */
  readonly bytes: number;
  /** The engine's state layout (`EngineDescriptor.stateLayout`). */
  readonly layout: number;
}

/** A state as read: both arrays as they are. */
export function poolState(pages: Uint8Array, engine: Uint8Array, layout: number): PoolState {
  return { pages, engine, bytes: pages.length + engine.length, layout };
}

/**
 * `state`, kept deflated: each read of `pages` or `engine` inflates a fresh copy. What
 * a kept snapshot holds (an engine's typed arrays are mostly spare capacity and zeros,
 * so they deflate to a few percent).
 */
export function packedPoolState(state: PoolState): PoolState {
  const pages = deflateRawSync(state.pages);
  const engine = deflateRawSync(state.engine);
  return {
    get pages() {
      return new Uint8Array(inflateRawSync(pages));
    },
    get engine() {
      return new Uint8Array(inflateRawSync(engine));
    },
    bytes: state.bytes,
    layout: state.layout,
  };
}

/** A snapshot's content: enough to rebuild the heap and check it. */
export interface SnapshotContent {
  /** 2: the heap's state; 1: its history (files written before version 2). */
  version: 1 | 2;
  /** The machine (the frame space) the heap's pages were in. */
  machine: { frames: number; maxOrder: number };
  /** The domain the heap belongs to. */
  domain: { name: string; engine: string; vcpus: number; maxPages: number };
  /** Version 2: the pool's pages and the engine's state. */
  state?: PoolState;
  /** Version 1: the history that builds the heap. */
  history?: HistoryView;
  /** The heap it must rebuild. */
  heap: SnapshotHeap;
  /** Its live blocks: address, requested bytes, vCPU that made it; by address. */
  blocks: [number, number, number][];
}

/**
 * The snapshot file (JSON). Version 2 (what this heapvisor writes) holds the heap's
 * state: `state.pages` (the pool's page blocks with their private words) and
 * `state.engine` (the engine's lists, blocks and counters), each a binary state
 * (src/state_codec.ts) deflated (zlib) and base64-encoded. Version 1 held the history
 * instead: `ops`, arrays led by a letter (`["a", size, align, vcpu]` allocate,
 * `["f", address, vcpu]` free, `["r", address, size, align, vcpu]` resize, `["q", pages]`
 * reserved pages after a reservation change), and `page_responses`, the page
 * allocator's answers in call order (a frame >= 0; -1 quota, -2 exhaustion,
 * -3 contiguity, -4 unservable; -17 - order for a largest-free-order answer). Both
 * are read. `crc32` is the CRC-32 of the document's JSON without it (keys in this
 * order, no spaces).
 */
export interface SnapshotDocument {
  /** Always {@link SNAPSHOT_FORMAT}. */
  format: typeof SNAPSHOT_FORMAT;
  /** {@link SNAPSHOT_VERSION} when written by this heapvisor. */
  version: number;
  /** The machine: frames and the page allocator's largest order. */
  machine: { frames: number; max_order: number };
  /** The source domain. */
  domain: { name: string; engine: string; vcpus: number; max_pages: number };
  /** The heap the state (or history) builds. */
  heap: SnapshotHeap;
  /** Live blocks: [address, requested bytes, vCPU], by address. */
  blocks: [number, number, number][];
  /**
   * Version 2: the pool's pages and the engine's state, deflated and base64-encoded,
   * and the layout of the engine's state (absent: 1).
   */
  state?: { encoding: "deflate+base64"; pages: string; engine: string; layout?: number };
  /** Version 1: operations, in order. */
  ops?: (string | number)[][];
  /** Version 1: the page allocator's answers, in order. */
  page_responses?: number[];
  /** CRC-32 of the rest. */
  crc32: number;
}

/** Bytes of a snapshot's state (version 2) or of its history's arrays (version 1). */
export function snapshotStateBytes(content: SnapshotContent): number {
  return content.state !== undefined
    ? content.state.bytes
    : content.history!.words.byteLength + content.history!.responses.byteLength;
}

/** `bytes` deflated (zlib) and base64-encoded. */
function pack(bytes: Uint8Array): string {
  return Buffer.from(deflateRawSync(bytes)).toString("base64");
}

/** What {@link pack} made, back. */
function unpack(text: string, what: string): Uint8Array {
  try {
    // Bounded: a few bytes that inflate to gigabytes are refused, not held.
    const bytes = inflateRawSync(Buffer.from(text, "base64"), {
      maxOutputLength: SNAPSHOT_STATE_MAX_BYTES,
    });
    return new Uint8Array(bytes);
  } catch (e) {
    throw new SnapshotError(`Snapshot ${what} does not inflate: ${(e as Error).message}`);
  }
}

/** The document of `content`, ready for `JSON.stringify`. */
export function snapshotDocument(content: SnapshotContent): SnapshotDocument {
  const head = {
    format: SNAPSHOT_FORMAT,
    version: content.version,
    machine: { frames: content.machine.frames, max_order: content.machine.maxOrder },
    domain: {
      name: content.domain.name,
      engine: content.domain.engine,
      vcpus: content.domain.vcpus,
      max_pages: content.domain.maxPages,
    },
    heap: { ...content.heap },
    blocks: content.blocks,
  } as const;
  let body: Omit<SnapshotDocument, "crc32">;
  if (content.state !== undefined) {
    body = {
      ...head,
      state: {
        encoding: "deflate+base64",
        pages: pack(content.state.pages),
        engine: pack(content.state.engine),
        ...(content.state.layout === 1 ? {} : { layout: content.state.layout }),
      },
    };
  } else {
    const ops: (string | number)[][] = [];
    for (const op of historyOps(content.history!)) {
      switch (op.kind) {
        case "allocate":
          ops.push(["a", op.size, op.align, op.vcpu]);
          break;
        case "free":
          ops.push(["f", op.address, op.vcpu]);
          break;
        case "reallocate":
          ops.push(["r", op.address, op.size, op.align, op.vcpu]);
          break;
        case "reserved":
          ops.push(["q", op.pages]);
      }
    }
    body = { ...head, ops, page_responses: Array.from(content.history!.responses) };
  }
  return { ...body, crc32: crc32(JSON.stringify(body)) };
}

const count = z.number().int().min(0).max(Number.MAX_SAFE_INTEGER);
const envelope = z.object({
  format: z.literal(SNAPSHOT_FORMAT),
  version: z.number().int(),
  machine: z.object({
    frames: z.number().int().min(1).max(FRAME_COUNT_MAX),
    max_order: z.number().int().min(0).max(30),
  }),
  domain: z.object({
    name: z.string().regex(/^[A-Za-z0-9._-]{1,64}$/),
    engine: z.string(),
    vcpus: z.number().int().min(1).max(VCPU_SLOTS),
    max_pages: z.number().int().min(1).max(2 ** 31),
  }),
  heap: z.object({
    pages_held: count,
    pool_pages: count,
    whole_pages: count,
    meta_pages: count,
    reserved_pages: count,
    live_blocks: count,
    requested_bytes: count,
    reserved_bytes: count,
  }),
  blocks: z.array(z.tuple([count, count, z.number().int().min(0).max(VCPU_SLOTS - 1)])),
  state: z.object({
    encoding: z.literal("deflate+base64"),
    pages: z.string(),
    engine: z.string(),
    layout: z.number().int().min(1).optional(),
  }).optional(),
  ops: z.array(z.array(z.union([z.string(), z.number()]))).optional(),
  page_responses: z.array(z.number().int().min(-(2 ** 31)).max(2 ** 31 - 1)).optional(),
  crc32: z.number().int().min(0),
});

/**
 * Read a snapshot file's parsed JSON: the envelope, the CRC, and its state (version 2)
 * or every operation of its history (version 1). It does not rebuild the heap (see
 * `Tenancy.importSnapshot`, which does, and checks it).
 *
 * @throws {SnapshotError} naming what is wrong and where (`ops[12]: ...`)
 */
export function parseSnapshotDocument(json: unknown): SnapshotContent {
  if (typeof json === "object" && json !== null && "version" in json) {
    const v = (json as { version: unknown }).version;
    if (typeof v === "number" && v > SNAPSHOT_VERSION) {
      throw new SnapshotError(
        `Snapshot format version ${v} is newer than this heapvisor's ${SNAPSHOT_VERSION}`,
      );
    }
  }
  const parsed = envelope.safeParse(json);
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    throw new SnapshotError(
      `Not a heapvisor snapshot: ${issue.path.join(".") || "document"}: ${issue.message}`,
    );
  }
  const doc = parsed.data;
  if (doc.version !== 1 && doc.version !== 2) {
    throw new SnapshotError(`Snapshot format version ${doc.version} is not supported`);
  }
  if (!ENGINE_NAMES.includes(doc.domain.engine)) {
    throw new SnapshotError(
      `Snapshot's engine "${doc.domain.engine}" is not one of ${ENGINE_NAMES.join(", ")}`,
    );
  }
  const { crc32: stated, ...body } = doc;
  const actual = crc32(JSON.stringify(body));
  if (actual !== stated) {
    throw new SnapshotError(
      `Snapshot CRC-32 mismatch: the file says ${stated}, its content gives ${actual} ` +
        `(the file was changed or damaged)`,
    );
  }
  if (doc.machine.frames / 2 ** doc.machine.max_order > 65_536) {
    // A restore builds a frame space of this shape: keep it to a sane number of blocks.
    throw new SnapshotError(
      `Snapshot machine of ${doc.machine.frames} frames in blocks of order at most ` +
        `${doc.machine.max_order} is not a machine heapvisor builds`,
    );
  }
  if (doc.heap.pages_held + doc.heap.reserved_pages > doc.domain.max_pages) {
    throw new SnapshotError(
      `Snapshot heap holds ${doc.heap.pages_held} pages and reserves ${doc.heap.reserved_pages}: ` +
        `more than its domain's max_pages ${doc.domain.max_pages}`,
    );
  }
  const common = {
    machine: { frames: doc.machine.frames, maxOrder: doc.machine.max_order },
    domain: {
      name: doc.domain.name,
      engine: doc.domain.engine,
      vcpus: doc.domain.vcpus,
      maxPages: doc.domain.max_pages,
    },
    heap: doc.heap,
    blocks: doc.blocks,
  };
  if (doc.version === 2) {
    if (doc.state === undefined) throw new SnapshotError("Snapshot version 2 has no state");
    const layout = doc.state.layout ?? 1;
    const reads = engineDescriptor(doc.domain.engine).stateLayout;
    if (layout !== reads) {
      throw new SnapshotError(
        `Snapshot's ${doc.domain.engine} state is of layout ${layout}; this heapvisor reads ` +
          `layout ${reads} (export it again from a heapvisor that reads both)`,
      );
    }
    return {
      version: 2,
      ...common,
      state: poolState(
        unpack(doc.state.pages, "state.pages"),
        unpack(doc.state.engine, "state.engine"),
        layout,
      ),
    };
  }
  if (doc.ops === undefined || doc.page_responses === undefined) {
    throw new SnapshotError("Snapshot version 1 has no ops or page_responses");
  }
  const history = new OpHistory();
  const int = (v: unknown, lo: number, hi: number) =>
    typeof v === "number" && Number.isSafeInteger(v) && v >= lo && v <= hi;
  const align = (v: unknown) => int(v, 1, 2 ** 30) && ((v as number) & ((v as number) - 1)) === 0;
  const vcpu = (v: unknown) => int(v, 0, doc.domain.vcpus - 1);
  const size = (v: unknown) => int(v, 0, Number.MAX_SAFE_INTEGER);
  doc.ops.forEach((op, i) => {
    const bad = (what: string): never => {
      throw new SnapshotError(`Snapshot ops[${i}] ${JSON.stringify(op)}: ${what}`);
    };
    switch (op[0]) {
      case "a":
        if (op.length !== 4 || !size(op[1]) || !align(op[2]) || !vcpu(op[3])) {
          bad(`expected ["a", size, align (a power of two), vcpu < ${doc.domain.vcpus}]`);
        }
        history.allocate(op[1] as number, op[2] as number, op[3] as number);
        break;
      case "f":
        if (op.length !== 3 || !size(op[1]) || !vcpu(op[2])) {
          bad(`expected ["f", address, vcpu < ${doc.domain.vcpus}]`);
        }
        history.free(op[1] as number, op[2] as number);
        break;
      case "r":
        if (op.length !== 5 || !size(op[1]) || !size(op[2]) || !align(op[3]) || !vcpu(op[4])) {
          bad(`expected ["r", address, size, align, vcpu < ${doc.domain.vcpus}]`);
        }
        history.reallocate(op[1] as number, op[2] as number, op[3] as number, op[4] as number);
        break;
      case "q":
        if (op.length !== 2 || !int(op[1], 0, doc.domain.max_pages)) {
          bad(`expected ["q", reserved pages <= max_pages ${doc.domain.max_pages}]`);
        }
        history.reserved(op[1] as number);
        break;
      default:
        bad(`unknown operation ${JSON.stringify(op[0])}: expected "a", "f", "r" or "q"`);
    }
  });
  for (const r of doc.page_responses) history.push(r);
  return { version: 1, ...common, history: history.view() };
}

/**
 * The page blocks `owner` holds in `pages`, with every non-zero private word of their
 * frames, as a state: what a version-2 snapshot keeps of a pool's pages.
 */
export function savePoolPages(pages: BuddyPageAllocator, owner: number): Uint8Array {
  const frames: number[] = [];
  const orders: number[] = [];
  const wordAt: number[] = [];
  const words: number[] = [];
  pages.forEachBlock((frame, order, o) => {
    if (o !== owner) return;
    frames.push(frame);
    orders.push(order);
    for (let f = frame; f < frame + 2 ** order; f++) {
      const word = pages.privateWord(f);
      if (word !== 0) {
        wordAt.push(f);
        words.push(word);
      }
    }
  });
  const w = new StateWriter();
  w.array(new Int32Array(frames));
  w.array(new Uint8Array(orders));
  w.array(new Int32Array(wordAt));
  w.array(new Int32Array(words));
  return w.bytes();
}

/**
 * Claim in `space` (a fresh frame space) the blocks {@link savePoolPages} saved, for
 * `owner`, and set their private words.
 *
 * @throws {SnapshotError} if the blocks do not fit the space or overlap
 */
export function claimPoolPages(space: BuddyPageAllocator, bytes: Uint8Array, owner: number): void {
  try {
    const r = new StateReader(bytes, "a snapshot's pool pages");
    const frames = r.array(Int32Array);
    const orders = r.array(Uint8Array);
    const wordAt = r.array(Int32Array);
    const words = r.array(Int32Array);
    r.done();
    if (frames.length !== orders.length || wordAt.length !== words.length) {
      throw new SnapshotError("Snapshot pool pages: lists of different lengths");
    }
    frames.forEach((frame, i) => space.allocAt(frame, orders[i]!, owner));
    wordAt.forEach((frame, i) => {
      if (space.ownerOf(space.blockHeadOf(frame)) !== owner) {
        throw new SnapshotError(`Snapshot pool pages: a word of frame ${frame}, not the pool's`);
      }
      space.setPrivateWord(frame, words[i]!);
    });
  } catch (e) {
    if (e instanceof SnapshotError) throw e;
    throw new SnapshotError(`Snapshot pool pages: ${(e as Error).message}`);
  }
}

/** A page block of the private space and the machine block that backs it. */
interface Backing {
  machineFrame: number;
  order: number;
  /** Frames of the block not freed yet (parts of a block may be freed). */
  frames: number;
}

/**
 * The page source of a restored pool: a private frame space (the source machine's
 * size) in which its blocks keep the source's frames, backed block for block by the
 * machine.
 *
 * While replaying, each page request is answered from the recorded responses and
 * claims the recorded frame in the private space (the machine is not touched). Then
 * {@link goLive} backs every block the pool holds with a machine block of the same
 * order; from then on a page request is served by the machine (its failures and
 * quota are the machine's) and given a frame of the private space.
 */
export class ForkPageSource extends PageSource {
  /** The machine that backs the pool. */
  readonly machine: BuddyPageAllocator;
  #script: Int32Array | null;
  #next = 0;
  readonly #backing = new Map<number, Backing>();

  /**
   * A pool for `owner` in the private frame space `space`, replaying `script` (a
   * version-1 snapshot's history), or holding the blocks already claimed in `space`
   * (a version-2 snapshot's pages; `script` empty) until {@link goLive}.
   *
   * @param machine the machine that will back it
   * @param space the private frame space (the source machine's size)
   * @param owner owner id (the domain id)
   * @param maxPages the pool's quota while replaying (the source's)
   * @param script the page allocator's recorded answers
   */
  constructor(
    machine: BuddyPageAllocator,
    space: BuddyPageAllocator,
    owner: number,
    maxPages: number,
    script: Int32Array,
  ) {
    super(space, owner, maxPages);
    this.machine = machine;
    this.#script = script;
  }

  /**
   * Write the live source's state (checkpoints): its private space, the machine
   * block behind each of its blocks, its quota.
   */
  saveState(w: StateWriter): void {
    if (this.#script !== null) throw new Error("ForkPageSource: saved while replaying (a bug)");
    this.pages.saveState(w);
    const flat: number[] = [];
    for (const [head, b] of this.#backing) flat.push(head, b.machineFrame, b.order, b.frames);
    w.numbers(flat);
    w.num(this.maxPages);
  }

  /**
   * The live source `r` holds (from {@link saveState}), backed by `machine` (whose
   * state, loaded too, holds the backing blocks).
   *
   * @throws {StateError} if the state does not read back
   */
  static load(machine: BuddyPageAllocator, owner: number, r: StateReader): ForkPageSource {
    const source = new ForkPageSource(
      machine,
      BuddyPageAllocator.load(r),
      owner,
      0,
      new Int32Array(0),
    );
    const flat = r.numbers();
    for (let i = 0; i < flat.length; i += 4) {
      source.#backing.set(flat[i]!, {
        machineFrame: flat[i + 1]!,
        order: flat[i + 2]!,
        frames: flat[i + 3]!,
      });
    }
    source.maxPages = r.num();
    source.#script = null;
    return source;
  }

  /** Recorded answers not used yet (0 once live). */
  get unusedResponses(): number {
    return this.#script === null ? 0 : this.#script.length - this.#next;
  }

  /** Replaying: the recorded answer, its frame claimed; live: a machine block, a private frame. */
  override allocPages(order: number): number {
    if (this.#script !== null) {
      const r = this.#take("a page request");
      const cause = decodePageFailure(r);
      if (r < 0 && cause === null) {
        throw new SnapshotError(
          `Snapshot page response ${this.#next - 1} is ${r}, where a page request was made`,
        );
      }
      if (cause !== null) {
        this.lastFailureCause = cause;
        return -1;
      }
      try {
        this.pages.allocAt(r, order, this.owner);
      } catch (e) {
        throw new SnapshotError(
          `Snapshot page response ${this.#next - 1}: ${(e as Error).message}`,
        );
      }
      return r;
    }
    let frame = -1;
    let cause: AllocFailureCause | null = null;
    if (order > this.pages.maxOrder || order > this.machine.maxOrder) cause = "unservable";
    else if (this.pages.pagesOwnedBy(this.owner) + 2 ** order > this.maxPages) cause = "quota";
    else {
      const machineFrame = this.machine.alloc(order, this.owner);
      if (machineFrame < 0) cause = this.machine.failureCause(order);
      else {
        frame = this.pages.alloc(order, this.owner);
        if (frame < 0) {
          cause = this.pages.failureCause(order);
          this.machine.free(machineFrame, order);
        } else this.#backing.set(frame, { machineFrame, order, frames: 2 ** order });
      }
    }
    if (cause !== null) this.lastFailureCause = cause;
    this.responses?.push(frame >= 0 ? frame : encodePageFailure(cause!));
    return frame;
  }

  /** Replaying: the recorded answer; live: the machine's. */
  override largestFreeOrder(): number {
    if (this.#script !== null) {
      const r = this.#take("a largest-free-order question");
      const order = decodeLargestFreeOrder(r);
      if (order === null) {
        throw new SnapshotError(
          `Snapshot page response ${
            this.#next - 1
          } is ${r}, where the largest free order was asked`,
        );
      }
      return order;
    }
    const order = this.machine.largestFreeOrder();
    this.responses?.push(encodeLargestFreeOrder(order));
    return order;
  }

  /** Free private frames and, once live, the machine frames behind them. */
  override freePages(frame: number, order: number): void {
    this.pages.free(frame, order);
    if (this.#script !== null) return;
    for (let k = order; k <= this.pages.maxOrder; k++) {
      const head = frame - (frame % 2 ** k);
      const b = this.#backing.get(head);
      if (b === undefined || b.order !== k) continue;
      this.machine.free(b.machineFrame + (frame - head), order);
      b.frames -= 2 ** order;
      if (b.frames === 0) this.#backing.delete(head);
      return;
    }
    throw new Error(`ForkPageSource: frame ${frame} has no machine backing (a bug)`);
  }

  /** Free every block the pool holds (and, once live, its machine backing). */
  override releaseAll(): void {
    const held: [number, number][] = [];
    this.pages.forEachBlock((frame, order, owner) => {
      if (owner === this.owner) held.push([frame, order]);
    });
    for (const [frame, order] of held) this.freePages(frame, order);
  }

  /**
   * End the replay: back every block the pool holds with a machine block of its
   * order, all or none.
   *
   * @returns null, or why the machine cannot back the heap (nothing is held then)
   */
  goLive(): AllocFailureCause | null {
    const held: [number, number][] = [];
    this.pages.forEachBlock((frame, order, owner) => {
      if (owner === this.owner) held.push([frame, order]);
    });
    held.sort((a, b) => b[1] - a[1] || a[0] - b[0]); // largest first: least likely to fail late
    for (const [frame, order] of held) {
      const machineFrame = this.machine.alloc(order, this.owner);
      if (machineFrame < 0) {
        const cause = this.machine.failureCause(order) ?? "exhaustion";
        for (const b of this.#backing.values()) this.machine.free(b.machineFrame, b.order);
        this.#backing.clear();
        return cause;
      }
      this.#backing.set(frame, { machineFrame, order, frames: 2 ** order });
    }
    this.#script = null;
    return null;
  }

  #take(what: string): number {
    const script = this.#script!;
    if (this.#next >= script.length) {
      throw new SnapshotError(
        `Snapshot ran out of page responses at ${what} (it has ${script.length})`,
      );
    }
    return script[this.#next++]!;
  }
}
