/**
 * Bearer tokens of the control plane. The admin token is given at start (or made up
 * and printed once); each tenant gets a token when it is created, shown once. Only
 * SHA-256 hashes of tokens are kept, and a presented token is compared with them in
 * constant time (`timingSafeEqual` over the hashes). Tokens are never logged.
 *
 * Tenant tokens carry their tenant id (`hvt_<id>_<secret>`), so finding the hash to
 * compare with takes no search over the tokens' contents.
 *
 * Who a valid `Authorization` header names is remembered (a small map keyed by the
 * header), so a client that sends the same header again skips the hash: a
 * request costs a map lookup, not a SHA-256. Only headers that were verified the
 * constant-time way get in; unknown tokens always take the full path. The map holds
 * at most {@link IDENTIFY_CACHE_MAX} headers and is emptied whenever a tenant's
 * token is issued or revoked, so a revoked token stops working at once. (The lookup
 * is not constant-time, but it compares strings only on a hash match, and only with
 * headers that authenticated already.)
 *
 * @module
 */

import { Buffer } from "node:buffer";
import { createHash, randomBytes, timingSafeEqual } from "node:crypto";

/** Who is calling. */
export type Principal = { role: "admin" } | { role: "tenant"; tenantId: number };

function sha256(token: string): Uint8Array {
  return createHash("sha256").update(token).digest();
}

function secret(): string {
  return randomBytes(24).toString("base64url");
}

/** A fresh admin token. */
export function newAdminToken(): string {
  return `hva_${secret()}`;
}

/**
 * What a bearer token may be: RFC 6750's b64token (letters, digits, `-._~+/`, then
 * `=` padding), 16..512 characters. The admin token must be one, and so is every
 * token this store makes.
 */
export const TOKEN_PATTERN = /^[A-Za-z0-9\-._~+/]{16,512}=*$/;

/** Most `Authorization` headers {@link TokenStore.identify} remembers. */
export const IDENTIFY_CACHE_MAX = 1024;

const ADMIN: Principal = Object.freeze({ role: "admin" });

/** Hashes of the admin token and of every tenant's token. */
export class TokenStore {
  readonly #admin: Uint8Array;
  readonly #tenants = new Map<number, Uint8Array>();
  /** Verified headers and whom they name; emptied on any change of tenant tokens. */
  readonly #verified = new Map<string, Principal>();

  /**
   * Remember the admin token's hash; no tenants yet.
   *
   * @param adminToken the admin token: 16..512 characters of {@link TOKEN_PATTERN}
   * @throws {RangeError} if it is not such a token
   */
  constructor(adminToken: string) {
    if (typeof adminToken !== "string" || !TOKEN_PATTERN.test(adminToken)) {
      throw new RangeError(
        "Invalid admin token: expected 16..512 letters, digits or -._~+/ (then = padding)",
      );
    }
    this.#admin = sha256(adminToken);
  }

  /** Make, remember (hashed) and return the token of tenant `tenantId`. */
  issueTenantToken(tenantId: number): string {
    const token = `hvt_${tenantId}_${secret()}`;
    this.#tenants.set(tenantId, sha256(token));
    this.#verified.clear(); // a token the tenant had before is no longer valid
    return token;
  }

  /** The SHA-256 (hex) of tenant `tenantId`'s token, if it has one: what a journal keeps. */
  tenantTokenHash(tenantId: number): string | undefined {
    const h = this.#tenants.get(tenantId);
    return h === undefined ? undefined : Buffer.from(h).toString("hex");
  }

  /**
   * Take back a tenant's token hash from a journal (the token itself is never kept).
   *
   * @throws {RangeError} if `sha256Hex` is not 64 hex digits
   */
  restoreTenantTokenHash(tenantId: number, sha256Hex: string): void {
    if (!/^[0-9a-f]{64}$/.test(sha256Hex)) {
      throw new RangeError(`Invalid token hash of tenant ${tenantId}: expected 64 hex digits`);
    }
    this.#tenants.set(tenantId, new Uint8Array(Buffer.from(sha256Hex, "hex")));
    this.#verified.clear();
  }

  /** Forget the token of a deleted tenant. */
  revokeTenant(tenantId: number): void {
    this.#tenants.delete(tenantId);
    this.#verified.clear();
  }

  /**
   * Who an `Authorization` header names, or null if nobody (missing, malformed or
   * unknown token).
   */
  identify(authorization: string | undefined): Principal | null {
    if (authorization === undefined) return null;
    const known = this.#verified.get(authorization);
    if (known !== undefined) return known;
    const principal = this.#verify(authorization);
    if (principal !== null) {
      if (this.#verified.size >= IDENTIFY_CACHE_MAX) this.#verified.clear();
      this.#verified.set(authorization, principal);
    }
    return principal;
  }

  /** The full check: hash the presented token, compare in constant time. */
  #verify(authorization: string): Principal | null {
    // RFC 7235: the scheme name is case-insensitive.
    if (authorization.length < 7 || authorization.slice(0, 7).toLowerCase() !== "bearer ") {
      return null;
    }
    const token = authorization.slice(7);
    if (!TOKEN_PATTERN.test(token)) return null;
    const presented = sha256(token);
    if (timingSafeEqual(presented, this.#admin)) return ADMIN;
    const tenant = /^hvt_(\d{1,10})_/.exec(token);
    if (!tenant) return null;
    const tenantId = Number(tenant[1]);
    const stored = this.#tenants.get(tenantId);
    return stored && timingSafeEqual(presented, stored)
      ? Object.freeze({ role: "tenant", tenantId })
      : null;
  }
}
