/**
 * The browser tests (`tests/browser_checks.ts`: the HTML report and the dashboard in
 * Debian's chromium, driven by `playwright-core`), run in a child `deno test`.
 *
 * A child, because playwright-core reads what the test task's permissions do not grant
 * (the home directory, `/proc/sys/...`, which Deno only allows with `--allow-all`): the
 * child has `--allow-all`, the rest of the suite keeps its narrow permissions. Without
 * `/usr/bin/chromium` (`.ci/run` installs it) the test is skipped, saying why.
 *
 * @module
 */

import assert from "node:assert/strict";

const CHROMIUM = "/usr/bin/chromium";
let hasChromium = false;
try {
  hasChromium = Deno.statSync(CHROMIUM).isFile;
} catch {
  hasChromium = false;
}
if (!hasChromium) {
  console.warn(`browser tests skipped: no ${CHROMIUM} (.ci/run installs Debian's chromium)`);
}

Deno.test({
  name: "browser: the report and the dashboard in chromium (tests/browser_checks.ts)",
  ignore: !hasChromium,
  fn: async () => {
    const checks = decodeURIComponent(new URL("./browser_checks.ts", import.meta.url).pathname);
    const child = new Deno.Command(Deno.execPath(), {
      args: ["test", "--allow-all", "--no-prompt", checks],
      stdout: "piped",
      stderr: "piped",
      env: { NO_COLOR: "1" },
      signal: AbortSignal.timeout(300_000),
    });
    const { code, stdout, stderr } = await child.output();
    const out = new TextDecoder().decode(stdout) + new TextDecoder().decode(stderr);
    for (const line of out.split("\n")) {
      if (line.startsWith("screenshot: ")) console.log(line);
    }
    assert.equal(code, 0, `tests/browser_checks.ts failed:\n${out}`);
    assert.match(out, /ok \| 2 passed \| 0 failed/);
  },
});
