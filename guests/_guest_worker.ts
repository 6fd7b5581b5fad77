/**
 * A guest in a Worker of its own (`sim --listen`): boots its heap and drives its vCPUs
 * over HTTP, then posts its figures back. One message in, one message out.
 *
 * @module
 */

/// <reference lib="deno.worker" />

import { type GuestSpec, runGuestOverHttp, ScenarioError } from "./scenario.ts";

self.onmessage = async (e: MessageEvent) => {
  const { spec, seed, baseUrl, token, domainId } = e.data as {
    spec: GuestSpec;
    seed: number;
    baseUrl: string;
    token: string;
    domainId: number;
  };
  try {
    const figures = await runGuestOverHttp(spec, seed, baseUrl, token, domainId);
    self.postMessage({ figures });
  } catch (err) {
    if (err instanceof ScenarioError || err instanceof RangeError) {
      self.postMessage({ userError: err.message });
    } else {
      self.postMessage({ error: (err as Error).stack ?? String(err) });
    }
  }
};
