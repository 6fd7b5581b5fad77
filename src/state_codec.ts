/**
 * A binary encoding of a model's state, field after field: what checkpoints and
 * snapshots save an engine, a ledger or a page allocator as, and load it back from.
 *
 * A writer appends tagged fields in the order its owner lists them; the reader must
 * ask for the same fields in the same order, and every mismatch (another kind of
 * field, an array of another type, bytes left over or missing) is a
 * {@link StateError} naming the state and the field's index, never a silently
 * shifted load. Numbers are float64 (every integer the model uses is exact in it);
 * typed arrays are copied byte for byte, little-endian, as the machine lays them out.
 *
 * @module
 */

import type { GrowableArray } from "./typed_array.ts";

/** The typed arrays a state holds. */
export type StateArray = GrowableArray | Int8Array;

/** A state does not read back as it was written. */
export class StateError extends Error {
  /** Always "StateError". */
  override name = "StateError";
}

const TAG_NUMBER = 1;
const TAG_STRING = 2;
const TAG_ARRAY = 3;
const TAG_NUMBERS = 4;
const TAG_NAMES = ["", "a number", "a string", "a typed array", "a list of numbers"];

/** A typed array the codec stores, with its code. */
type ArrayCtor = new (length: number) => GrowableArray | Int8Array | Uint8ClampedArray;
const ARRAY_TYPES: readonly [ArrayCtor, string][] = [
  [Uint8Array, "Uint8Array"],
  [Int8Array, "Int8Array"],
  [Uint16Array, "Uint16Array"],
  [Int16Array, "Int16Array"],
  [Uint32Array, "Uint32Array"],
  [Int32Array, "Int32Array"],
  [Float64Array, "Float64Array"],
];

const LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;
if (!LITTLE_ENDIAN) throw new Error("state_codec: a big-endian host is not supported");

/** Appends fields; {@link bytes} gives the encoding. */
export class StateWriter {
  #buf = new Uint8Array(1024);
  #view = new DataView(this.#buf.buffer);
  #at = 0;

  /** A number (float64: integers up to 2^53 are exact). */
  num(value: number): void {
    this.#room(9);
    this.#buf[this.#at] = TAG_NUMBER;
    this.#view.setFloat64(this.#at + 1, value, true);
    this.#at += 9;
  }

  /** A boolean (as the number 0 or 1). */
  bool(value: boolean): void {
    this.num(value ? 1 : 0);
  }

  /** A string (UTF-8). */
  str(value: string): void {
    const bytes = new TextEncoder().encode(value);
    this.#header(TAG_STRING, bytes.length, 0);
    this.#buf.set(bytes, this.#at);
    this.#at += bytes.length;
  }

  /** A typed array: its type, its length and every element. */
  array(value: StateArray): void {
    const code = ARRAY_TYPES.findIndex(([ctor]) => value instanceof ctor);
    if (code < 0) throw new TypeError("StateWriter.array: not a supported typed array");
    const bytes = new Uint8Array(value.buffer, value.byteOffset, value.byteLength);
    this.#header(TAG_ARRAY, value.length, code);
    this.#buf.set(bytes, this.#at);
    this.#at += bytes.length;
  }

  /** A list of numbers (a plain array: free-slot stacks, small tables). */
  numbers(values: readonly number[]): void {
    this.#header(TAG_NUMBERS, values.length, 0);
    this.#room(8 * values.length);
    for (const v of values) {
      this.#view.setFloat64(this.#at, v, true);
      this.#at += 8;
    }
  }

  /** The encoding so far (a copy). */
  bytes(): Uint8Array {
    return this.#buf.slice(0, this.#at);
  }

  /** Tag, element type and count (u32), then room for the payload. */
  #header(tag: number, count: number, code: number): void {
    const size = tag === TAG_ARRAY
      ? count * (new (ARRAY_TYPES[code]![0])(0) as { BYTES_PER_ELEMENT: number }).BYTES_PER_ELEMENT
      : tag === TAG_NUMBERS
      ? count * 8
      : count;
    this.#room(6 + size);
    this.#buf[this.#at] = tag;
    this.#buf[this.#at + 1] = code;
    this.#view.setUint32(this.#at + 2, count, true);
    this.#at += 6;
  }

  #room(n: number): void {
    if (this.#at + n <= this.#buf.length) return;
    let size = this.#buf.length * 2;
    while (size < this.#at + n) size *= 2;
    const next = new Uint8Array(size);
    next.set(this.#buf.subarray(0, this.#at));
    this.#buf = next;
    this.#view = new DataView(next.buffer);
  }
}

/** Reads fields back in the order they were written. */
export class StateReader {
  readonly #buf: Uint8Array;
  readonly #view: DataView;
  readonly #what: string;
  #at = 0;
  #field = 0;

  /**
   * Read `bytes`, the state of `what` (named in every error).
   *
   * @param bytes an encoding from {@link StateWriter.bytes}
   * @param what whose state it is, for messages ("the tlsf engine of domain 3")
   */
  constructor(bytes: Uint8Array, what: string) {
    this.#buf = bytes;
    this.#view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    this.#what = what;
  }

  /** A number. */
  num(): number {
    this.#expect(TAG_NUMBER, 9);
    const v = this.#view.getFloat64(this.#at + 1, true);
    this.#at += 9;
    return v;
  }

  /** A boolean. */
  bool(): boolean {
    return this.num() !== 0;
  }

  /** A string. */
  str(): string {
    const n = this.#count(TAG_STRING, 1);
    const s = new TextDecoder().decode(this.#buf.subarray(this.#at, this.#at + n));
    this.#at += n;
    return s;
  }

  /** A typed array of the type `ctor` makes (a fresh copy). */
  array<T extends StateArray>(ctor: new (length: number) => T): T {
    const code = ARRAY_TYPES.findIndex(([c]) => c === (ctor as unknown));
    const n = this.#count(
      TAG_ARRAY,
      (new ctor(0) as { BYTES_PER_ELEMENT: number }).BYTES_PER_ELEMENT,
    );
    const stored = this.#buf[this.#at - 5]!;
    if (stored !== code) {
      this.#fail(`expected a ${ARRAY_TYPES[code]?.[1]}, found a ${ARRAY_TYPES[stored]?.[1]}`);
    }
    const out = new ctor(n);
    const bytes = new Uint8Array(out.buffer, out.byteOffset, out.byteLength);
    bytes.set(this.#buf.subarray(this.#at, this.#at + bytes.length));
    this.#at += bytes.length;
    return out;
  }

  /** A list of numbers. */
  numbers(): number[] {
    const n = this.#count(TAG_NUMBERS, 8);
    const out = new Array<number>(n);
    for (let i = 0; i < n; i++) out[i] = this.#view.getFloat64(this.#at + 8 * i, true);
    this.#at += 8 * n;
    return out;
  }

  /** Assert every byte was read. */
  done(): void {
    if (this.#at !== this.#buf.length) {
      this.#fail(`${this.#buf.length - this.#at} bytes are left over`);
    }
  }

  #count(tag: number, elementBytes: number): number {
    this.#expect(tag, 6);
    const n = this.#view.getUint32(this.#at + 2, true);
    this.#at += 6;
    if (this.#at + n * elementBytes > this.#buf.length) this.#fail("it is cut short");
    return n;
  }

  #expect(tag: number, bytes: number): void {
    if (this.#at + bytes > this.#buf.length) this.#fail("it is cut short");
    const found = this.#buf[this.#at]!;
    if (found !== tag) {
      this.#fail(`expected ${TAG_NAMES[tag]}, found ${TAG_NAMES[found] ?? `tag ${found}`}`);
    }
    this.#field++;
  }

  #fail(why: string): never {
    throw new StateError(
      `The state of ${this.#what} does not read back: field ${this.#field}: ${why}`,
    );
  }
}
