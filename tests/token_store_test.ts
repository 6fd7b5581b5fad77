/** The token store's memory of verified headers: it never outlives a token. */

import assert from "node:assert/strict";
import { IDENTIFY_CACHE_MAX, TokenStore } from "../hypervisor/control_plane/auth.ts";

const ADMIN = "admin-token-0123456789";

Deno.test("token store: a header is identified the same way every time", () => {
  const store = new TokenStore(ADMIN);
  const token = store.issueTenantToken(7);
  for (let i = 0; i < 3; i++) {
    assert.deepEqual(store.identify(`Bearer ${ADMIN}`), { role: "admin" });
    assert.deepEqual(store.identify(`Bearer ${token}`), { role: "tenant", tenantId: 7 });
    assert.equal(store.identify(`Bearer ${token}x`), null);
    assert.deepEqual(store.identify(`bearer ${token}`), { role: "tenant", tenantId: 7 }); // RFC 7235
    assert.equal(store.identify(token), null);
    assert.equal(store.identify(undefined), null);
    assert.equal(store.identify(""), null);
  }
});

Deno.test("token store: a revoked or replaced token stops working at once", () => {
  const store = new TokenStore(ADMIN);
  const first = store.issueTenantToken(1);
  const other = store.issueTenantToken(2);
  assert.deepEqual(store.identify(`Bearer ${first}`), { role: "tenant", tenantId: 1 });
  // A new token for tenant 1 replaces the one it had.
  const second = store.issueTenantToken(1);
  assert.equal(store.identify(`Bearer ${first}`), null);
  assert.deepEqual(store.identify(`Bearer ${second}`), { role: "tenant", tenantId: 1 });
  store.revokeTenant(1);
  assert.equal(store.identify(`Bearer ${second}`), null);
  assert.deepEqual(store.identify(`Bearer ${other}`), { role: "tenant", tenantId: 2 });
  assert.deepEqual(store.identify(`Bearer ${ADMIN}`), { role: "admin" });
});

Deno.test("token store: more tenants than it remembers are all still identified", () => {
  const store = new TokenStore(ADMIN);
  const tokens = Array.from(
    { length: IDENTIFY_CACHE_MAX + 5 },
    (_, i) => store.issueTenantToken(i + 1),
  );
  for (let round = 0; round < 2; round++) {
    tokens.forEach((t, i) => {
      assert.deepEqual(store.identify(`Bearer ${t}`), { role: "tenant", tenantId: i + 1 });
    });
  }
});

Deno.test("token store: a principal cannot be changed by whoever receives it", () => {
  const store = new TokenStore(ADMIN);
  const token = store.issueTenantToken(3);
  const p = store.identify(`Bearer ${token}`)!;
  assert.throws(() => {
    (p as { tenantId: number }).tenantId = 4;
  }, TypeError);
  assert.deepEqual(store.identify(`Bearer ${token}`), { role: "tenant", tenantId: 3 });
});
