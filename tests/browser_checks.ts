/**
 * Run by tests/browser_test.ts in a child `deno test --allow-all` (playwright-core needs
 * more than the test task grants); `deno test -A tests/browser_checks.ts` runs it alone.
 *
 * In a real browser: Debian's chromium (`/usr/bin/chromium`, installed by `.ci/run`)
 * driven by `playwright-core`. The HTML report opened from disk (charts rendered, one
 * series per engine, axis labels with units, table figures equal to results.json) and
 * the control plane's dashboard served over a socket (the domain list equal to
 * GET /v1/domains, live stats following an allocation, per-vCPU lock wait and latency
 * charts after allocations on two vCPUs, the experiment's table equal to
 * what the API gives for the same batch). Each test takes a screenshot into a temp dir
 * and prints its path. Without chromium the tests are skipped, saying why.
 *
 * @module
 */

import assert from "node:assert/strict";
import { type Browser, chromium, type Page } from "playwright-core";
import { runComparison } from "../hypervisor/compare.ts";
import { Hypervisor } from "../hypervisor/hypervisor.ts";
import { createControlPlane } from "../hypervisor/control_plane/app.ts";
import type { BatchResult, CreatedTenant, DomainInfo } from "../hypervisor/control_plane/types.ts";
import { parseScenario, runScenario } from "../guests/scenario.ts";
import { writeReport } from "../src/report/html.ts";
import { MiB } from "../src/units.ts";

const CHROMIUM = "/usr/bin/chromium";
const hasChromium = (() => {
  try {
    return Deno.statSync(CHROMIUM).isFile;
  } catch {
    return false;
  }
})();
const ignore = !hasChromium;
if (ignore) {
  console.warn(`browser tests skipped: no ${CHROMIUM} (.ci/run installs Debian's chromium)`);
}

/** Each browser step's limit, and the whole test's. */
const STEP_MS = 15_000;
const TEST_MS = 120_000;

async function launch(): Promise<Browser> {
  return await chromium.launch({
    executablePath: CHROMIUM,
    timeout: STEP_MS,
    args: [
      "--headless",
      "--no-sandbox",
      "--disable-gpu",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
    ],
  });
}

/** Run `body` with a fresh page; the browser is closed whatever happens, within TEST_MS. */
async function withPage(body: (page: Page) => Promise<void>): Promise<void> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const browser = await launch();
  try {
    const page = await browser.newPage({ viewport: { width: 1200, height: 900 } });
    page.setDefaultTimeout(STEP_MS);
    const errors: string[] = [];
    page.on("pageerror", (err) => errors.push(String(err)));
    await Promise.race([
      body(page),
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`browser test over ${TEST_MS} ms`)), TEST_MS);
      }),
    ]);
    assert.deepEqual(errors, [], "errors in the page's script");
  } finally {
    clearTimeout(timer);
    await browser.close();
  }
}

/** A figure as the pages print it ("1,234", "0.5", "12★ (best)") as a number. */
function figure(text: string | null): number {
  const m = /^\s*(-?[\d,]+(?:\.\d+)?)/.exec(text ?? "");
  assert.ok(m, `not a figure: ${JSON.stringify(text)}`);
  return Number(m[1]!.replaceAll(",", ""));
}

async function screenshot(page: Page, name: string): Promise<string> {
  const dir = Deno.env.get("HEAPVISOR_SCREENSHOTS") ??
    await Deno.makeTempDir({ prefix: "heapvisor-browser-" });
  await Deno.mkdir(dir, { recursive: true });
  const path = `${dir}/${name}.png`;
  await page.screenshot({ path, fullPage: true });
  assert.ok(Deno.statSync(path).size > 1000, "screenshot written");
  console.log(`screenshot: ${path}`);
  return path;
}

Deno.test({
  name: "browser: the HTML report renders its charts and its tables match results.json",
  ignore,
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async () => {
    const comparison = runComparison({
      seed: 1,
      workloads: ["compcache"],
      scale: 0.05,
      timedReps: 0,
    });
    const scenario = await runScenario(
      parseScenario(JSON.stringify({
        name: "browser-test",
        seed: 7,
        machine_mib: 64,
        engines: ["tlsf", "slub"],
        guests: [{ name: "web", vcpus: 2, max_pages: 4096, workload: "nginx", scale: 0.05 }],
      })),
      { timing: false },
    );
    const dir = await Deno.makeTempDir({ prefix: "heapvisor-report-" });
    try {
      writeReport(dir, { command: "deno task sim (browser test)", comparison, scenario });
      const json = JSON.parse(await Deno.readTextFile(`${dir}/results.json`)) as {
        comparison: {
          engines: string[];
          results: { trace: string; engine: string; peak_pages: number; p99_steps: number }[];
        };
      };
      await withPage(async (page) => {
        await page.goto(`file://${dir}/report.html`);
        assert.ok(await page.locator("svg").count() >= 3, "SVG charts rendered");

        // The near-page chart: one series per engine, named, with axis titles in units.
        const engines = json.comparison.engines;
        const chart = page.locator("svg:has(> title#curve-page-title)");
        await chart.waitFor();
        const series = chart.locator("path.series");
        assert.equal(await series.count(), engines.length);
        const names = await chart.locator("path.series > title").allTextContents();
        assert.deepEqual([...names].sort(), [...engines].sort());
        for (const d of await series.evaluateAll((ps) => ps.map((p) => p.getAttribute("d")))) {
          assert.match(d ?? "", /^M-?[\d.]+ -?[\d.]+[HVL]/, `a drawn line: ${d?.slice(0, 40)}`);
        }
        const labels = await chart.locator("text.axis-label").allTextContents();
        assert.deepEqual(labels, ["request size (bytes)", "bytes consumed per object (bytes)"]);
        const box = await chart.boundingBox();
        assert.ok(box && box.width > 300 && box.height > 200, "the chart is laid out");

        // The compcache table: peak pages and p99 steps per engine equal results.json's.
        const table = page.locator("h3", { hasText: /^compcache/ }).locator(
          "xpath=following-sibling::table[1]",
        );
        const heads = (await table.locator("thead th").allTextContents()).map((h) => h.trim());
        const peakCol = heads.indexOf("peak held (pages)");
        const p99Col = heads.indexOf("p99 steps (steps)");
        assert.ok(peakCol > 0 && p99Col > 0, `columns: ${heads.join(" | ")}`);
        const rows = table.locator("tbody tr");
        assert.equal(await rows.count(), engines.length);
        for (let i = 0; i < engines.length; i++) {
          const cells = await rows.nth(i).locator("th, td").allTextContents();
          const engine = cells[0]!.replace(/!.*$/, "").trim();
          const expected = json.comparison.results.find((r) =>
            r.trace === "compcache" && r.engine === engine
          );
          assert.ok(expected, `an engine in results.json: ${engine}`);
          assert.equal(figure(cells[peakCol]!), expected.peak_pages, `${engine} peak pages`);
          assert.equal(
            figure(cells[p99Col]!),
            Number(expected.p99_steps.toFixed(2)),
            `${engine} p99 steps`,
          );
        }
        await screenshot(page, "report");
      });
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test({
  name: "browser: the dashboard lists domains, streams live stats and runs an experiment",
  ignore,
  sanitizeOps: false,
  sanitizeResources: false,
  fn: async () => {
    const adminToken = "admin-token-browser-0123456789";
    const hv = new Hypervisor({ engine: "tlsf", machineBytes: MiB(256) });
    const stop = new AbortController();
    const { app } = createControlPlane(hv, { adminToken, signal: stop.signal });
    const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen: () => {} }, app.fetch);
    const base = `http://127.0.0.1:${server.addr.port}`;
    const call = async <T>(token: string, method: string, path: string, body?: unknown) => {
      const res = await fetch(base + path, {
        method,
        headers: {
          authorization: `Bearer ${token}`,
          ...(body === undefined ? {} : { "content-type": "application/json" }),
        },
        ...(body === undefined ? {} : { body: JSON.stringify(body) }),
      });
      const text = await res.text();
      assert.ok(res.status < 300 || res.status === 507, `${method} ${path}: ${res.status} ${text}`);
      return (text ? JSON.parse(text) : null) as T;
    };
    try {
      const tenant = await call<CreatedTenant>(adminToken, "POST", "/v1/tenants", {
        name: "browser",
        max_domains: 16,
        max_pages: 65536,
      });
      const token = tenant.token;
      const web = await call<DomainInfo>(token, "POST", "/v1/domains", {
        name: "web",
        vcpus: 2,
        max_pages: 4096,
        engine: "tlsf",
      });
      await call(token, "POST", `/v1/domains/${web.id}/alloc`, { size: 3000 });

      await withPage(async (page) => {
        await page.goto(`${base}/`);
        assert.equal(await page.locator("#domains-section").isVisible(), false);
        await page.getByLabel("Admin or tenant token").fill(token);
        await page.getByRole("button", { name: "Use token" }).click();
        await page.locator("#role", { hasText: "tenant" }).waitFor();
        assert.equal(await page.evaluate("sessionStorage.getItem('heapvisor.token')"), token);
        assert.equal(await page.evaluate("localStorage.length"), 0);

        // The domain list is GET /v1/domains (the name shown as text, not markup).
        const listed = await call<DomainInfo[]>(token, "GET", "/v1/domains");
        const rows = page.locator("#domains-body tr");
        await rows.first().waitFor();
        assert.equal(await rows.count(), listed.length);
        const cells = (await rows.first().locator("td").allTextContents()).slice(0, 7);
        const d = listed[0]!;
        assert.deepEqual(cells, [
          String(d.id),
          d.name,
          d.engine,
          String(d.pages_held),
          String(Number(d.overhead_ratio.toFixed(2))),
          String(d.ops.failed),
          String(d.latency_cycles.p99),
        ]);

        // Live stats: the pages held follow an allocation made through the API.
        await rows.first().getByRole("button", { name: /Live stats/ }).click();
        const held = page.locator('[data-figure="pages-held"]');
        await page.waitForFunction(
          `document.querySelector('[data-figure="pages-held"]')?.textContent === "${d.pages_held}"`,
        );
        await call(token, "POST", `/v1/domains/${web.id}/alloc`, { size: 200_000 });
        const after = await call<DomainInfo>(token, "GET", `/v1/domains/${web.id}`);
        assert.ok(after.pages_held > d.pages_held);
        await page.waitForFunction(
          `document.querySelector('[data-figure="pages-held"]')?.textContent === "${
            after.pages_held.toLocaleString("en-US")
          }"`,
        );
        assert.equal(figure(await held.textContent()), after.pages_held);
        const chart = page.locator("#live-chart svg");
        assert.equal(await chart.locator("path.series").count(), 1);
        assert.deepEqual(await chart.locator("text.axis-label").allTextContents(), [
          "time since opened (s)",
          "pages held (4 KiB pages)",
        ]);

        // The per-vCPU charts: allocations on vCPUs 0 and 1 through the API, then one bar
        // (lock wait) and one group of marks (latency) per vCPU, and vCPU 1's max as the API's.
        for (let i = 0; i < 12; i++) {
          await call(token, "POST", `/v1/domains/${web.id}/alloc`, {
            size: 64 + 500 * i,
            vcpu: i % 2,
          });
        }
        const smp = (await call<DomainInfo>(token, "GET", `/v1/domains/${web.id}`)).smp;
        assert.equal(smp.per_vcpu.length, 2);
        const max1 = smp.per_vcpu[1]!.latency_cycles.max;
        assert.ok(smp.per_vcpu[1]!.ops > 0 && max1 > 0, "vCPU 1 made calls");
        const latency = page.locator("#live-latency-chart svg");
        await page.waitForFunction(
          `document.querySelector('#live-latency-chart g.vcpu[data-vcpu="1"] text.value[data-stat="max"]')?.textContent === "${
            max1.toLocaleString("en-US")
          }"`,
        );
        const lock = page.locator("#live-lock-chart svg");
        assert.equal(
          await lock.locator("title#lock-chart-title").textContent(),
          "Lock wait per vCPU",
        );
        assert.equal(await lock.locator("g.vcpu").count(), 2);
        assert.equal(await lock.locator("g.vcpu rect.bar").count(), 2);
        assert.deepEqual(await lock.locator("text.axis-label").allTextContents(), [
          "vCPU (number)",
          "lock wait (cycles)",
        ]);
        assert.deepEqual(
          await lock.locator("g.vcpu").evaluateAll((gs) =>
            gs.map((g) => Number(g.querySelector("rect.bar")?.getAttribute("data-value")))
          ),
          smp.per_vcpu.map((v) => v.lock_wait_cycles),
          "lock wait bars equal the API's",
        );
        assert.equal(await latency.locator("g.vcpu").count(), 2);
        for (const vcpu of [0, 1]) {
          const group = latency.locator(`g.vcpu[data-vcpu="${vcpu}"]`);
          assert.equal(await group.locator(".mark").count(), 3, `vCPU ${vcpu}: p50, p99, max`);
        }
        assert.deepEqual(await latency.locator("text.axis-label").allTextContents(), [
          "vCPU (number)",
          "latency (modelled cycles)",
        ]);
        const shownMax1 = await latency.locator('g.vcpu[data-vcpu="1"] text.value[data-stat="max"]')
          .textContent();
        assert.equal(figure(shownMax1), max1, "vCPU 1's max latency as the API gives it");
        const worstVcpu = smp.per_vcpu[0]!.latency_cycles.max >= max1 ? 0 : 1;
        assert.equal(
          await latency.locator('g.vcpu[data-worst="true"]').getAttribute("data-vcpu"),
          String(worstVcpu),
          "the worst case marked",
        );
        assert.equal(await latency.locator("circle.worst").count(), 1);
        await screenshot(page, "dashboard-live");
        await page.getByRole("button", { name: "Stop" }).click();

        // The experiment: its table equals what the API gives for the same batch.
        const size = 3000, count = 40;
        await page.getByLabel("size (bytes)").fill(String(size));
        await page.getByLabel("count").fill(String(count));
        const engines = await page.locator("#exp-engines input:checked").evaluateAll((inputs) =>
          inputs.map((i) => i.getAttribute("value") ?? "")
        );
        assert.ok(engines.length >= 2, `engines: ${engines.join(", ")}`);
        await page.getByRole("button", { name: "Run experiment" }).click();
        await page.locator("#exp-status", { hasText: /^Done/ }).waitFor();
        const expRows = page.locator("#exp-body tr");
        assert.equal(await expRows.count(), engines.length);
        const ops = [
          ...Array.from({ length: count }, () => ({ op: "alloc", size })),
          ...Array.from({ length: count }, (_, i) => ({ op: "free", ref: i })),
        ];
        const sum = (a: number[]) => a.reduce((s, v) => s + v, 0);
        for (let i = 0; i < engines.length; i++) {
          const shown = await expRows.nth(i).locator("th, td").allTextContents();
          const engine = shown[0]!;
          assert.equal(engine, engines[i]);
          const dom = await call<DomainInfo>(token, "POST", "/v1/domains", {
            name: `check-${engine}`,
            vcpus: 1,
            max_pages: 4096,
            engine,
          });
          const r = await call<BatchResult>(token, "POST", `/v1/domains/${dom.id}/batch`, { ops });
          const s = await call<DomainInfo>(token, "GET", `/v1/domains/${dom.id}`);
          await call(token, "DELETE", `/v1/domains/${dom.id}`);
          assert.deepEqual(shown.slice(1).map(figure), [
            r.addresses.slice(0, count).filter((a) => a !== 0).length,
            s.peak_pages,
            s.pages_held,
            sum(r.steps),
            sum(r.cycles),
            s.latency_cycles.p99,
          ], `${engine}: the page's row and the API's figures`);
        }
        // The experiment's domains are gone; the tenant's own is still listed.
        const left = await call<DomainInfo[]>(token, "GET", "/v1/domains");
        assert.deepEqual(left.map((x) => x.id), [web.id]);
        await page.locator("#domains-body tr").first().waitFor();
        assert.equal(await page.locator("#domains-body tr").count(), 1);
        await screenshot(page, "dashboard-experiment");

        // Forget: the token leaves session storage, the data leaves the page.
        await page.getByRole("button", { name: "Forget token" }).click();
        assert.equal(await page.evaluate("sessionStorage.getItem('heapvisor.token')"), null);
        assert.equal(await page.locator("#domains-section").isVisible(), false);
      });
    } finally {
      stop.abort();
      await server.shutdown();
    }
  },
});
