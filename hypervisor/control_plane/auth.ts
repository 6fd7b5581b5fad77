/**
 * Bearer tokens of the control plane. The admin token is given at start (or made up
 * and printed once); each tenant gets a token when it is created, shown once. Only
 * SHA-256 hashes of tokens are kept, and a presented token is compared with them in
 * constant time (`timingSafeEqual` over the hashes). Tokens are never logged.
 *
 * Tenant tokens carry their tenant id (`hvt_<id>_<secret>`), so finding the hash to
 * compare with takes no search over the tokens' contents.
 *
 * @module
 */

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

/** Hashes of the admin token and of every tenant's token. */
export class TokenStore {
  readonly #admin: Uint8Array;
  readonly #tenants = new Map<number, Uint8Array>();

  /**
   * Remember the admin token's hash; no tenants yet.
   *
   * @param adminToken the admin token, at least 16 characters
   * @throws {RangeError} if it is shorter
   */
  constructor(adminToken: string) {
    if (typeof adminToken !== "string" || adminToken.length < 16) {
      throw new RangeError("Invalid admin token: expected at least 16 characters");
    }
    this.#admin = sha256(adminToken);
  }

  /** Make, remember (hashed) and return the token of tenant `tenantId`. */
  issueTenantToken(tenantId: number): string {
    const token = `hvt_${tenantId}_${secret()}`;
    this.#tenants.set(tenantId, sha256(token));
    return token;
  }

  /** Forget the token of a deleted tenant. */
  revokeTenant(tenantId: number): void {
    this.#tenants.delete(tenantId);
  }

  /**
   * Who an `Authorization` header names, or null if nobody (missing, malformed or
   * unknown token).
   */
  identify(authorization: string | undefined): Principal | null {
    const match = /^Bearer ([A-Za-z0-9_-]{16,200})$/.exec(authorization ?? "");
    if (!match) return null;
    const token = match[1]!;
    const presented = sha256(token);
    if (timingSafeEqual(presented, this.#admin)) return { role: "admin" };
    const tenant = /^hvt_(\d{1,10})_/.exec(token);
    if (!tenant) return null;
    const tenantId = Number(tenant[1]);
    const stored = this.#tenants.get(tenantId);
    return stored && timingSafeEqual(presented, stored) ? { role: "tenant", tenantId } : null;
  }
}
