import assert from "node:assert/strict";
import { mkdtempSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { Sandbox, TEAMLEADER_DEMO_CLIENT } from "../../src/sandbox";
import { TestDatabase, createTestDatabase } from "../support/pg";
import { duplicateRefreshes, startWorker } from "../support/workers";
import type { WorkerConfig } from "../fixtures/token-worker";

const DURATION_MS = Number(process.env.GW_TOKEN_PROCESS_MS ?? 30_000);

describe("OAuth token core across OS processes", function () {
  this.timeout(DURATION_MS + 60_000);
  const sandbox = new Sandbox();
  let testDb: TestDatabase;

  before(async () => {
    await sandbox.listen();
    testDb = await createTestDatabase();
  });
  after(async () => {
    await testDb.drop();
    await sandbox.close();
  });
  beforeEach(() => sandbox.server.resetStats());

  /** Runs `count` workers on one store with single-use refresh tokens and 1 s access tokens. */
  async function race(count: number, store: WorkerConfig["store"], key: string) {
    sandbox.teamleader.oauth.accessTokenLifetime = 1;
    const base = { provider: "teamleader" as const, sandboxUrl: sandbox.url, store, ...TEAMLEADER_DEMO_CLIENT, key, durationMs: DURATION_MS };
    const seed = sandbox.teamleader.oauth.issueRefreshToken(TEAMLEADER_DEMO_CLIENT.clientId);
    const times = (sandbox.teamleader.oauth.refreshTimes.get(TEAMLEADER_DEMO_CLIENT.clientId)?.length ?? 0);
    const workers = Array.from({ length: count }, (_, i) => startWorker({ ...base, seed: i === 0 ? seed : undefined }));
    await workers[0]!.ready;
    await Promise.all(workers.map((w) => w.ready));
    workers.forEach((w) => w.go());
    const reports = await Promise.all(workers.map((w) => w.report));
    const refreshTimes = (sandbox.teamleader.oauth.refreshTimes.get(TEAMLEADER_DEMO_CLIENT.clientId) ?? []).slice(times);
    return { reports, refreshTimes };
  }

  function assertOneRefreshPerExpiry(result: Awaited<ReturnType<typeof race>>) {
    const failures = result.reports.flatMap((r) => r.failures);
    assert.deepEqual(failures, [], "no worker saw an error");
    assert.ok(result.reports.every((r) => r.calls > 0), "every worker made calls");
    assert.equal(sandbox.server.counter("teamleader refresh reused"), 0, "no spent refresh token was ever sent again");
    assert.equal(sandbox.server.counter("teamleader refresh unknown"), 0);
    const refreshes = sandbox.server.counter("teamleader refresh");
    assert.equal(refreshes, result.refreshTimes.length);
    assert.equal(duplicateRefreshes(result.refreshTimes, 1000), 0, "no token was refreshed twice");
    // 1 s tokens replaced 100 ms ahead: one refresh every 0.9 s or so, whoever makes it. The lower
    // bound only shows the token was kept fresh all along (a loaded machine makes calls slower).
    const expected = DURATION_MS / 900;
    assert.ok(refreshes >= expected * 0.5 && refreshes <= expected * 1.15 + 2, `${refreshes} refreshes for about ${expected.toFixed(1)} expiries`);
    assert.equal(result.reports.reduce((n, r) => n + r.refreshes, 0), refreshes, "the workers' own count agrees");
    assert.ok(result.reports.filter((r) => r.refreshes > 0).length > 1, "the refreshing was shared between processes");
  }

  it("4 processes on one PostgreSQL database make one refresh per expiry and never reuse a spent refresh token", async () => {
    const result = await race(4, { kind: "postgres", connection: testDb.connection as Record<string, unknown> }, "pg-race");
    assertOneRefreshPerExpiry(result);
  });

  it("2 processes on one token file make one refresh per expiry and never reuse a spent refresh token", async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), "gw-tokens-"));
    const result = await race(2, { kind: "file", dir }, "file-race");
    assertOneRefreshPerExpiry(result);
  });

  for (const kind of ["postgres", "file"] as const) {
    it(`a process killed right after a rotation comes back with the rotated token (${kind} store)`, async () => {
      sandbox.teamleader.oauth.accessTokenLifetime = 3600;
      const store: WorkerConfig["store"] =
        kind === "postgres" ? { kind, connection: testDb.connection as Record<string, unknown> } : { kind, dir: mkdtempSync(path.join(os.tmpdir(), "gw-tokens-")) };
      const key = `kill-${kind}`;
      const base = { provider: "teamleader" as const, sandboxUrl: sandbox.url, store, ...TEAMLEADER_DEMO_CLIENT, key, durationMs: 2000 };
      const doomed = startWorker({ ...base, seed: sandbox.teamleader.oauth.issueRefreshToken(TEAMLEADER_DEMO_CLIENT.clientId), dieAfterRefresh: true });
      await doomed.ready;
      doomed.go();
      assert.equal((await doomed.exit).signal, "SIGKILL");
      assert.equal(sandbox.server.counter("teamleader refresh rotated"), 1);

      sandbox.teamleader.oauth.expireAccessTokens(); // the next process must refresh, with the rotated token
      const next = startWorker(base);
      await next.ready;
      next.go();
      const report = await next.report;
      assert.deepEqual(report.failures, []);
      assert.ok(report.calls > 0);
      assert.equal(sandbox.server.counter("teamleader refresh"), 2);
      assert.equal(sandbox.server.counter("teamleader refresh reused"), 0);
    });
  }
});
