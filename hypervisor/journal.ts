/**
 * The durable operation log behind the control plane's state, and its checkpoints.
 *
 * The model is deterministic: the same operations in the same order give the same
 * addresses, pages and figures. So the state that must survive a restart is the
 * sequence of operations the service acknowledged, not the heaps themselves. Each
 * acknowledged operation (one that returned, served or not: a refused allocation
 * still counts a failure and its steps) is appended to one machine-wide log, in the
 * order the machine saw it, before the response is sent. Operations that threw (a
 * free of no live block, a quota refusal of a domain) changed nothing and are not
 * logged.
 *
 * Storage is an embedded SQLite database (`node:sqlite`, shipped with Deno):
 * - `PRAGMA journal_mode = WAL`, so a commit is one sequential append and readers
 *   do not block the writer;
 * - `PRAGMA synchronous = FULL`: the WAL is fsynced at every commit, so an
 *   acknowledged operation survives power loss, not only a killed process (NORMAL
 *   would survive `kill -9` but may lose the last commits on power loss);
 * - the operations of one request are one row: a batch of a thousand costs one
 *   insert; the rows of several requests can be one transaction and one fsync
 *   ({@link Journal.appendRows}: the control plane's group commit).
 *
 * Each row carries a CRC-32 of its JSON, and sequence numbers must run on without a
 * gap: a corrupt or truncated log is reported with the row it broke at, never
 * half-loaded. A checkpoint ({@link Journal.checkpoint}) saves the whole state after
 * a row and deletes the rows up to it; a replay loads the latest checkpoint and
 * applies the rows after it. The schema version is SQLite's `user_version`, upgraded by
 * {@link MIGRATIONS} in order; a database from a newer heapvisor is refused.
 *
 * @module
 */
import { DatabaseSync, type StatementSync } from "node:sqlite";
import { crc32 as zlibCrc32, deflateRawSync, inflateRawSync } from "node:zlib";
import { StateReader, StateWriter } from "../src/state_codec.ts";
import type { BuddyPageAllocator } from "./page_allocator.ts";
import { MachineFullError, type MemoryOpResult, type Tenancy } from "./domains.ts";
import { parseSnapshotDocument } from "./snapshot.ts";

/** One acknowledged operation, as logged (snake_case, like the API's bodies). */
export type JournalOp =
  | { kind: "create_tenant"; name: string; max_domains: number; max_pages: number }
  | { kind: "tenant_token"; tenant: number; sha256: string }
  | { kind: "delete_tenant"; tenant: number }
  | {
    kind: "create_domain";
    tenant: number;
    name: string;
    vcpus: number;
    max_pages: number;
    engine: string;
    /** The snapshot whose heap it starts with (hypervisor/snapshot.ts). */
    from_snapshot?: number;
    /**
     * The start from the snapshot was refused (507 machine_full) after the machine was
     * asked for pages: logged because those calls count, and a replay must refuse too.
     */
    refused?: true;
  }
  | { kind: "destroy_domain"; domain: number }
  | { kind: "snapshot"; domain: number; snapshot: number }
  | { kind: "import_snapshot"; tenant: number; snapshot: number; document: unknown }
  | { kind: "delete_snapshot"; snapshot: number }
  | {
    kind: "allocate";
    domain: number;
    size: number;
    align: number;
    vcpu: number;
    at_cycles?: number;
  }
  | { kind: "free"; domain: number; address: number; vcpu: number; at_cycles?: number }
  | {
    kind: "reallocate";
    domain: number;
    address: number;
    size: number;
    align: number;
    vcpu: number;
    at_cycles?: number;
  }
  | { kind: "reserve"; domain: number; pages: number; at_cycles?: number }
  | { kind: "unreserve"; domain: number; pages: number; at_cycles?: number };

/** A log that cannot be opened or replayed as it is: what, and the row where. */
export class JournalError extends Error {
  /** Always "JournalError". */
  override name = "JournalError";
}

/** Schema migrations: entry `i` takes `user_version` from `i` to `i + 1`. */
export const MIGRATIONS: readonly string[] = [
  `CREATE TABLE ops (
     seq INTEGER PRIMARY KEY,
     op TEXT NOT NULL,
     crc INTEGER NOT NULL
   );`,
  `CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);`,
  // A checkpoint: the whole state after row `seq`, deflated (checkpointState); the
  // rows up to it are deleted in the same transaction.
  `CREATE TABLE checkpoints (seq INTEGER PRIMARY KEY, state BLOB NOT NULL, crc INTEGER NOT NULL);`,
];

/** Version of the checkpoint state's layout (its first field). */
export const CHECKPOINT_VERSION = 1;

/** The schema version this heapvisor writes. */
export const SCHEMA_VERSION: number = MIGRATIONS.length;

/** CRC-32 (IEEE 802.3, the zlib polynomial) of `text`'s UTF-8 bytes (zlib's, native). */
export function crc32(text: string): number {
  return zlibCrc32(text);
}

const KINDS: Readonly<Record<JournalOp["kind"], readonly string[]>> = {
  create_tenant: ["name", "max_domains", "max_pages"],
  tenant_token: ["tenant", "sha256"],
  delete_tenant: ["tenant"],
  create_domain: ["tenant", "name", "vcpus", "max_pages", "engine"],
  destroy_domain: ["domain"],
  snapshot: ["domain", "snapshot"],
  import_snapshot: ["tenant", "snapshot"],
  delete_snapshot: ["snapshot"],
  allocate: ["domain", "size", "align", "vcpu"],
  free: ["domain", "address", "vcpu"],
  reallocate: ["domain", "address", "size", "align", "vcpu"],
  reserve: ["domain", "pages"],
  unreserve: ["domain", "pages"],
};

/** Parse one logged row (an operation, or an array of them), or say what is wrong. */
function parseRow(seq: number, text: string): JournalOp[] {
  let body: unknown;
  try {
    body = JSON.parse(text);
  } catch (e) {
    throw new JournalError(`Journal row ${seq}: not JSON (${(e as Error).message})`);
  }
  return Array.isArray(body) ? body.map((op) => checkOp(seq, op)) : [checkOp(seq, body)];
}

/** `op` if it is a well-formed operation; else say what is wrong, and in which row. */
function checkOp(seq: number, op: unknown): JournalOp {
  if (typeof op !== "object" || op === null || Array.isArray(op)) {
    throw new JournalError(`Journal row ${seq}: not an object`);
  }
  const kind = (op as { kind?: unknown }).kind;
  if (typeof kind !== "string" || !Object.hasOwn(KINDS, kind)) {
    throw new JournalError(`Journal row ${seq}: unknown kind ${JSON.stringify(kind)}`);
  }
  for (const field of KINDS[kind as JournalOp["kind"]]) {
    const v = (op as Record<string, unknown>)[field];
    const ok = field === "name" || field === "engine" || field === "sha256"
      ? typeof v === "string"
      : Number.isSafeInteger(v);
    if (!ok) throw new JournalError(`Journal row ${seq}: ${kind} has a bad ${field}`);
  }
  return op as JournalOp;
}

/** What replaying a log did. */
export interface ReplaySummary {
  /** Operations applied (after the checkpoint, if any). */
  ops: number;
  /** Domains alive after it. */
  domains: number;
  /** The row the checkpoint it started from was taken after (null: none, row 1 on). */
  checkpoint: number | null;
}

/**
 * Apply one operation to `tenancy`, as the control plane does for a request.
 *
 * @returns the memory operation's outcome, or null for tenant and domain operations
 * @throws whatever the tenancy throws for an operation it refuses
 */
export function applyOp(tenancy: Tenancy, op: JournalOp): MemoryOpResult | null {
  switch (op.kind) {
    case "create_tenant":
      tenancy.createTenant(op.name, { maxDomains: op.max_domains, maxPages: op.max_pages });
      return null;
    case "tenant_token": // the token store's business: see Journal.replay's onToken
      tenancy.tenant(op.tenant);
      return null;
    case "delete_tenant":
      tenancy.deleteTenant(op.tenant);
      return null;
    case "create_domain":
      if (op.from_snapshot === undefined) {
        tenancy.createDomain(op.tenant, {
          name: op.name,
          vcpus: op.vcpus,
          maxPages: op.max_pages,
          engine: op.engine,
        });
      } else {
        const start = () =>
          tenancy.startFromSnapshot(op.tenant, {
            name: op.name,
            fromSnapshot: op.from_snapshot!,
            vcpus: op.vcpus,
            maxPages: op.max_pages,
            engine: op.engine,
          });
        if (!op.refused) start();
        else {
          try {
            start();
          } catch (e) {
            if (e instanceof MachineFullError) return null; // refused again, as logged
            throw e;
          }
          throw new Error("the start from the snapshot was refused when logged, not on replay");
        }
      }
      return null;
    case "snapshot":
      sameSnapshotId(tenancy.takeSnapshot(op.domain).id, op.snapshot);
      return null;
    case "import_snapshot":
      sameSnapshotId(
        tenancy.importSnapshot(op.tenant, parseSnapshotDocument(op.document)).id,
        op.snapshot,
      );
      return null;
    case "delete_snapshot":
      tenancy.deleteSnapshot(op.snapshot);
      return null;
    case "destroy_domain":
      tenancy.destroyDomain(op.domain);
      return null;
    case "allocate":
      return tenancy.domain(op.domain).allocate(op.size, op.align, op.vcpu, op.at_cycles);
    case "free":
      return tenancy.domain(op.domain).free(op.address, op.vcpu, op.at_cycles);
    case "reallocate":
      return tenancy.domain(op.domain).reallocate(
        op.address,
        op.size,
        op.align,
        op.vcpu,
        op.at_cycles,
      );
    case "reserve":
      tenancy.domain(op.domain).reserve(op.pages, op.at_cycles);
      return null;
    case "unreserve":
      tenancy.domain(op.domain).unreserve(op.pages, op.at_cycles);
      return null;
  }
}

/**
 * What kind of SQLite failure `e` is, from node:sqlite's `errcode` (its primary result
 * code) or, for `exec`, which gives none, from SQLite's message.
 */
function sqliteFailure(e: unknown): "full" | "readonly" | "cantopen" | null {
  const { errcode, message } = e as { errcode?: unknown; message?: unknown };
  const code = typeof errcode === "number" ? errcode & 0xff : undefined;
  const text = typeof message === "string" ? message : "";
  if (code === 13 || text.includes("database or disk is full")) return "full"; // SQLITE_FULL
  if (code === 8 || text.includes("readonly database")) return "readonly"; // SQLITE_READONLY
  if (code === 14 || text.includes("unable to open database file")) return "cantopen";
  return null;
}

/** `bytes` for people: KiB below a MiB, MiB above, at most two decimals. */
function formatBytes(bytes: number): string {
  return bytes >= 1024 * 1024
    ? `${Number((bytes / (1024 * 1024)).toFixed(2))} MiB`
    : `${Number((bytes / 1024).toFixed(2))} KiB`;
}

/** What to do when the journal has no room: the same words at start and on a 503. */
const MORE_ROOM = "free disk space, or raise the journal's cap (serve: --data-max-mib)";

/** A snapshot made on replay must get the id it got when it was logged. */
function sameSnapshotId(made: number, logged: number): void {
  if (made !== logged) {
    throw new Error(`it made snapshot ${made}, the log says ${logged}`);
  }
}

/** The append-only log of acknowledged operations in one SQLite database. */
export class Journal {
  readonly #db: DatabaseSync;
  readonly #insert: StatementSync;
  readonly #path: string;
  /** The cap in pages (SQLite's max_page_count) and the page size; null: no cap. */
  #cap: { pages: number; pageSize: number } | null = null;
  #lastSeq: number;
  #opsSinceCheckpoint = 0;

  /**
   * Open (creating if needed) the log at `path`, or an in-memory one at `":memory:"`.
   *
   * With `maxBytes`, the database may grow to that many bytes (whole pages, with
   * SQLite's `max_page_count`): an append past it fails as on a full disk, with
   * SQLite's own SQLITE_FULL, and the database stays sound. A database already at or
   * over the cap is refused here. The cap bounds the database file, not its WAL (up
   * to about 4 MiB more between checkpoints).
   *
   * If opening fails, the database is closed again before the error is thrown: it is
   * left as it was, with no `-wal` or `-shm` file beside it.
   *
   * @param path the database file
   * @param options `maxBytes`: the cap in bytes, a positive integer (default: none);
   *   `exclusive`: hold an exclusive lock on the database until closed, so no other
   *   process can open it (what a server wants; default false)
   * @throws {JournalError} if the file is not a heapvisor database, is corrupt, comes
   *   from a newer heapvisor, cannot be opened for writing, or is full
   * @throws {RangeError} if `maxBytes` is not a positive integer
   */
  constructor(path: string, options: { maxBytes?: number; exclusive?: boolean } = {}) {
    const { maxBytes } = options;
    if (maxBytes !== undefined && !(Number.isSafeInteger(maxBytes) && maxBytes > 0)) {
      throw new RangeError(`Journal maxBytes must be a positive integer, not ${maxBytes}`);
    }
    this.#path = path;
    let db: DatabaseSync | undefined;
    try {
      db = this.#db = new DatabaseSync(path);
      this.#db.exec("PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL;");
      const integrity = this.#db.prepare("PRAGMA quick_check").get() as
        | Record<string, unknown>
        | undefined;
      const verdict = integrity ? Object.values(integrity)[0] : "no answer";
      if (verdict !== "ok") {
        throw new JournalError(`Journal ${path}: SQLite integrity check failed: ${verdict}`);
      }
      if (maxBytes !== undefined) this.#setCap(maxBytes);
      this.#migrate(path);
      if (options.exclusive) {
        // Held until close (or the process's end): a second server on the same
        // directory finds the database locked at once, not a row conflict later.
        this.#db.exec("PRAGMA locking_mode = EXCLUSIVE; BEGIN EXCLUSIVE; COMMIT;");
      }
    } catch (e) {
      let error = e;
      if (!(e instanceof JournalError)) {
        const failure = sqliteFailure(e);
        const busy = /database is locked|SQLITE_BUSY/i.test((e as Error).message);
        const hint = busy
          ? " (another process holds it: is another heapvisor serve using this data directory?)"
          : failure === "readonly" || failure === "cantopen"
          ? " (it must be writable, in a writable directory on a filesystem mounted read-write)"
          : "";
        error = failure === "full"
          ? this.#fullError(e, 0, "start")
          : new JournalError(`Journal ${path}: cannot open: ${(e as Error).message}${hint}`);
      }
      if (db?.isOpen) db.close(); // leaves the file as it was, and no -wal or -shm beside it
      throw error;
    }
    this.#insert = this.#db.prepare("INSERT INTO ops (seq, op, crc) VALUES (?, ?, ?)");
    const last = this.#db.prepare(
      "SELECT max(coalesce((SELECT max(seq) FROM ops), 0), " +
        "coalesce((SELECT max(seq) FROM checkpoints), 0)) AS seq",
    ).get() as { seq: number | null };
    this.#lastSeq = last.seq ?? 0;
  }

  /**
   * Operations logged since the latest checkpoint: those a replay applied after it,
   * plus those appended since (a journal opened without a replay counts from 0).
   */
  get opsSinceCheckpoint(): number {
    return this.#opsSinceCheckpoint;
  }

  /** The row the latest checkpoint was taken after (0: none). */
  get checkpointSeq(): number {
    const row = this.#db.prepare("SELECT max(seq) AS seq FROM checkpoints").get() as {
      seq: number | null;
    };
    return row.seq ?? 0;
  }

  /**
   * Take a checkpoint: the whole state now (the machine, every tenant, domain and
   * snapshot, and the tenants' token hashes), saved after the last row, and every row
   * up to it deleted, in one transaction. A restart then loads it and replays only
   * the rows after it, so start-up time and the journal's size follow the state, not
   * the history. On failure (a full disk) nothing changes: the rows stay and the
   * error is thrown.
   *
   * @param hypervisor the machine and its tenancy
   * @param tokens each tenant's token hash (SHA-256, hex)
   * @returns the size of the checkpoint in bytes (deflated)
   */
  checkpoint(
    hypervisor: { pages: BuddyPageAllocator; tenancy: Tenancy },
    tokens: Iterable<[number, string]>,
  ): number {
    const w = new StateWriter();
    w.num(CHECKPOINT_VERSION);
    hypervisor.pages.saveState(w);
    hypervisor.tenancy.saveState(w);
    const pairs = [...tokens];
    w.num(pairs.length);
    for (const [tenant, hash] of pairs) {
      w.num(tenant);
      w.str(hash);
    }
    const state = deflateRawSync(w.bytes());
    const seq = this.#lastSeq;
    this.#db.exec("BEGIN IMMEDIATE");
    try {
      this.#db.prepare("INSERT OR REPLACE INTO checkpoints (seq, state, crc) VALUES (?, ?, ?)")
        .run(seq, state, zlibCrc32(state));
      this.#db.prepare("DELETE FROM checkpoints WHERE seq < ?").run(seq);
      this.#db.prepare("DELETE FROM ops WHERE seq <= ?").run(seq);
      this.#db.exec("COMMIT");
    } catch (e) {
      if (this.#db.isTransaction) this.#db.exec("ROLLBACK");
      if (sqliteFailure(e) === "full") throw this.#fullError(e, state.length, "append");
      throw e;
    }
    this.#opsSinceCheckpoint = 0;
    // Fold the WAL into the database and truncate it, so the -wal file stays small.
    this.#db.exec("PRAGMA wal_checkpoint(TRUNCATE)");
    return state.length;
  }

  /** Cap the database at `maxBytes` (whole pages), or refuse one already full at start. */
  #setCap(maxBytes: number): void {
    const pragma = (sql: string): number =>
      Number(Object.values(this.#db.prepare(sql).get() ?? {})[0]);
    const pageSize = pragma("PRAGMA page_size");
    const pages = Math.max(1, Math.floor(maxBytes / pageSize));
    const used = pragma("PRAGMA page_count");
    if (used > pages || (used === pages && pragma("PRAGMA freelist_count") === 0)) {
      throw new JournalError(
        `Journal ${this.#path} is full at start: it holds ${formatBytes(used * pageSize)} ` +
          `(${used} pages of ${pageSize} bytes), ${used > pages ? "more than" : "all of"} its ` +
          `cap of ${formatBytes(pages * pageSize)} (${pages} pages). Nothing was loaded or ` +
          `written; start again with more room: ${MORE_ROOM}`,
      );
    }
    const set = pragma(`PRAGMA max_page_count = ${pages}`);
    if (set !== pages) {
      throw new JournalError(
        `Journal ${this.#path}: SQLite set max_page_count ${set}, not ${pages}`,
      );
    }
    this.#cap = { pages, pageSize };
  }

  /**
   * The error for SQLite's SQLITE_FULL (`e`): the journal is full, because it reached
   * its cap or because the disk has no room, what still works, and what to do.
   * `rowBytes`: the size of the row that did not fit (0 at start).
   */
  #fullError(e: unknown, rowBytes: number, when: "start" | "append"): JournalError {
    let why = "the disk (or filesystem) holding it has no room left";
    if (this.#cap !== null) {
      const { pages, pageSize } = this.#cap;
      let used: number | null = null;
      try {
        const row = this.#db.prepare("PRAGMA page_count").get() as { page_count: number };
        used = row.page_count;
      } catch {
        // the database is unusable: say what is known
      }
      // A row needs its bytes in pages, and a B-tree split up to a few pages more.
      if (used === null || (pages - used) * pageSize < rowBytes + 3 * pageSize) {
        why = `it reached its cap of ${formatBytes(pages * pageSize)}` +
          (used === null ? "" : ` (${used} of ${pages} pages in use)`);
      }
    }
    const then = when === "append"
      ? "Reads still work; changes are refused until a restart with more room"
      : "Nothing was loaded; start again with more room";
    return new JournalError(
      `Journal ${this.#path} is full (SQLite: ${
        (e as Error).message
      }): ${why}. ${then}: ${MORE_ROOM}`,
    );
  }

  #migrate(path: string): void {
    const row = this.#db.prepare("PRAGMA user_version").get() as { user_version: number };
    const version = row.user_version;
    if (version > SCHEMA_VERSION) {
      throw new JournalError(
        `Journal ${path}: schema version ${version} is newer than this heapvisor's ${SCHEMA_VERSION}`,
      );
    }
    for (const [v, sql] of MIGRATIONS.entries()) {
      if (v < version) continue;
      this.#db.exec("BEGIN");
      try {
        this.#db.exec(sql);
        this.#db.exec(`PRAGMA user_version = ${v + 1}`);
        this.#db.exec("COMMIT");
      } catch (e) {
        // SQLite may have rolled back already (on SQLITE_FULL, say): keep the first error.
        if (this.#db.isTransaction) this.#db.exec("ROLLBACK");
        throw e;
      }
    }
  }

  /** Rows (commits) logged so far: one per acknowledged request. */
  get length(): number {
    return this.#lastSeq;
  }

  /**
   * Append `ops` as one row, in one transaction: all are durable when this returns, or
   * none. A row holds one operation as a JSON object, or several as an array: a batch
   * of a thousand is one insert, one CRC and one fsync, not a thousand.
   */
  append(ops: readonly JournalOp[]): void {
    this.appendRows([ops]);
  }

  /**
   * Append each of `rows` as a row (one request's operations each), all in one
   * transaction: one fsync for them all (group commit). All are durable when this
   * returns, or none (SQLite rolls the transaction back).
   *
   * @throws {JournalError} if the journal is full or read-only (nothing was written)
   */
  appendRows(rows: readonly (readonly JournalOp[])[]): void {
    const texts = rows.filter((ops) => ops.length > 0)
      .map((ops) => JSON.stringify(ops.length === 1 ? ops[0] : ops));
    if (texts.length === 0) return;
    let seq = this.#lastSeq;
    const several = texts.length > 1;
    try {
      if (several) this.#db.exec("BEGIN IMMEDIATE");
      for (const text of texts) this.#insert.run(++seq, text, crc32(text));
      if (several) this.#db.exec("COMMIT");
    } catch (e) {
      // Rolled back: nothing of these rows is in the database.
      if (this.#db.isTransaction) this.#db.exec("ROLLBACK");
      const failure = sqliteFailure(e);
      if (failure === "full") {
        const bytes = texts.reduce((n, t) => n + new TextEncoder().encode(t).length, 0);
        throw this.#fullError(e, bytes, "append");
      }
      if (failure === "readonly") {
        throw new JournalError(
          `Journal ${this.#path} cannot be written (SQLite: ${(e as Error).message}): is its ` +
            `filesystem read-only? Reads still work; changes are refused until a restart`,
        );
      }
      throw e;
    }
    this.#lastSeq = seq;
    this.#opsSinceCheckpoint += rows.reduce((n, ops) => n + ops.length, 0);
  }

  /**
   * Every logged operation, in order, checked.
   *
   * @throws {JournalError} at the first row with a gap in sequence, a CRC that does
   *   not match, or a body that is not an operation
   */
  *entries(): Generator<JournalOp> {
    for (const [, ops] of this.#rows()) yield* ops;
  }

  /** Every row, in order, checked: its sequence number and operations. */
  *#rows(): Generator<[number, JournalOp[]]> {
    let expected = this.checkpointSeq + 1;
    for (
      const row of this.#db.prepare("SELECT seq, op, crc FROM ops ORDER BY seq")
        .iterate() as Iterable<{ seq: number; op: string; crc: number }>
    ) {
      if (row.seq !== expected) {
        throw new JournalError(`Journal: row ${expected} is missing (next is ${row.seq})`);
      }
      if (crc32(row.op) !== row.crc) {
        throw new JournalError(`Journal row ${row.seq}: CRC mismatch (the row is corrupt)`);
      }
      yield [row.seq, parseRow(row.seq, row.op)];
      expected++;
    }
  }

  /**
   * Rebuild state: apply every logged operation to `tenancy` (new, on `pages`), then
   * verify every domain's heap and the page allocator with `check()`.
   *
   * Nothing is applied unless the whole log reads clean first. `onToken` hears each
   * tenant's token hash as it was issued (and `null` when the tenant is deleted), so
   * the caller's token store can take them back.
   *
   * The log is read twice, a row at a time, in one read transaction (both passes see
   * the same rows): first every row is checked (sequence, CRC, parse) and dropped,
   * then every row is read again and applied. Memory does not grow with the log.
   *
   * @throws {JournalError} if the log is corrupt, an operation is refused on replay,
   *   or a check fails afterwards
   */
  replay(
    tenancy: Tenancy,
    pages: BuddyPageAllocator,
    onToken?: (tenant: number, sha256: string | null) => void,
  ): ReplaySummary {
    const ownTransaction = !this.#db.isTransaction;
    if (ownTransaction) this.#db.exec("BEGIN"); // deferred: a read snapshot, no write lock
    try {
      return this.#replay(tenancy, pages, onToken);
    } finally {
      if (ownTransaction && this.#db.isTransaction) this.#db.exec("COMMIT");
    }
  }

  /** {@link replay}'s two passes, inside its read transaction. */
  #replay(
    tenancy: Tenancy,
    pages: BuddyPageAllocator,
    onToken?: (tenant: number, sha256: string | null) => void,
  ): ReplaySummary {
    const checkpoint = this.#readCheckpoint();
    for (const _ of this.#rows()) {
      // Pass 1: every row is checked by #rows() and dropped; a bad one throws here,
      // before anything is applied.
    }
    if (checkpoint !== null) {
      try {
        const r = new StateReader(checkpoint.state, `the checkpoint after row ${checkpoint.seq}`);
        const version = r.num();
        if (version !== CHECKPOINT_VERSION) {
          throw new JournalError(
            `Journal checkpoint after row ${checkpoint.seq}: layout version ${version} is not ` +
              `this heapvisor's ${CHECKPOINT_VERSION}`,
          );
        }
        pages.loadState(r);
        tenancy.loadState(r);
        for (let n = r.num(); n > 0; n--) onToken?.(r.num(), r.str());
        r.done();
      } catch (e) {
        if (e instanceof JournalError) throw e;
        throw new JournalError(
          `Journal checkpoint after row ${checkpoint.seq} does not load: ${(e as Error).message}`,
        );
      }
    }
    let count = 0;
    for (const [seq, ops] of this.#rows()) { // pass 2: the same rows, checked again
      for (const op of ops) {
        try {
          applyOp(tenancy, op);
          if (op.kind === "tenant_token") onToken?.(op.tenant, op.sha256);
          if (op.kind === "delete_tenant") onToken?.(op.tenant, null);
        } catch (e) {
          throw new JournalError(
            `Journal row ${seq}: ${op.kind} was refused on replay: ${(e as Error).message}`,
          );
        }
        count++;
      }
    }
    const problems = [...pages.check()];
    for (const d of tenancy.domains()) {
      for (const p of d.engine.check()) problems.push(`domain ${d.id}: ${p}`);
    }
    if (problems.length > 0) {
      throw new JournalError(`Journal replay left a broken heap: ${problems.join("; ")}`);
    }
    this.#opsSinceCheckpoint = count;
    return {
      ops: count,
      domains: tenancy.domains().length,
      checkpoint: checkpoint?.seq ?? null,
    };
  }

  /** The latest checkpoint, its CRC checked and inflated (null: none). */
  #readCheckpoint(): { seq: number; state: Uint8Array } | null {
    const row = this.#db.prepare(
      "SELECT seq, state, crc FROM checkpoints ORDER BY seq DESC LIMIT 1",
    ).get() as { seq: number; state: Uint8Array; crc: number } | undefined;
    if (row === undefined) return null;
    if (zlibCrc32(row.state) !== row.crc) {
      throw new JournalError(
        `Journal checkpoint after row ${row.seq}: CRC mismatch (the checkpoint is corrupt)`,
      );
    }
    try {
      return { seq: row.seq, state: new Uint8Array(inflateRawSync(row.state)) };
    } catch (e) {
      throw new JournalError(
        `Journal checkpoint after row ${row.seq} does not inflate: ${(e as Error).message}`,
      );
    }
  }

  /**
   * Bind the log to a machine: the first time, remember `machine`; after, refuse a
   * different one (replaying on another machine would not give the same heaps).
   *
   * @throws {JournalError} if the log was written for another machine
   */
  bindMachine(machine: { frames: number; defaultEngine: string }): void {
    const get = this.#db.prepare("SELECT value FROM meta WHERE key = ?");
    const put = this.#db.prepare("INSERT INTO meta (key, value) VALUES (?, ?)");
    const want: [string, string][] = [
      ["machine_frames", String(machine.frames)],
      ["default_engine", machine.defaultEngine],
    ];
    for (const [key, value] of want) {
      const row = get.get(key) as { value: string } | undefined;
      if (row === undefined) put.run(key, value);
      else if (row.value !== value) {
        throw new JournalError(
          `Journal was written for ${key} ${row.value}, not ${value}: start with the same ` +
            `machine (--machine-mib, --engine) or another data directory`,
        );
      }
    }
  }

  /** Close the database (again: nothing). */
  close(): void {
    if (this.#db.isOpen) this.#db.close();
  }
}
