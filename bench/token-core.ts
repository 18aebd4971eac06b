import { mkdtempSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { GOTO_DEMO_CLIENT, Sandbox } from "../src/sandbox";
import { createTestDatabase } from "../test/support/pg";
import { fileStore, manager } from "../test/support/tokens";
import { duplicateRefreshes, startWorker } from "../test/support/workers";
import type { WorkerConfig } from "../test/fixtures/token-worker";
import type { Benchmark } from "./support";

/**
 * The OAuth token core: what a cached token costs, how many refreshes 100 concurrent callers make,
 * and how many refreshes 4 processes sharing one PostgreSQL token store make per token expiry
 * (against 4 processes that each keep their own token, the naive way).
 */
export const benchmark: Benchmark = {
  name: "token-core",
  async run({ quick }) {
    const sandbox = new Sandbox({ goto: { rotateEvery: 1_000_000 } });
    await sandbox.listen();
    const testDb = await createTestDatabase("gw_bench");
    try {
      // 1. A warm getAccessToken(): the cost every API call pays.
      const tokens = manager({ provider: "goto", sandboxUrl: sandbox.url, store: fileStore(), ...GOTO_DEMO_CLIENT, key: "warm" });
      await tokens.seed(sandbox.goto.oauth.issueRefreshToken(GOTO_DEMO_CLIENT.clientId));
      await tokens.getAccessToken();
      const calls = quick ? 50_000 : 1_000_000;
      for (let i = 0; i < 10_000; i++) await tokens.getAccessToken();
      const started = process.hrtime.bigint();
      for (let i = 0; i < calls; i++) await tokens.getAccessToken();
      const warmTokenUs = Number(process.hrtime.bigint() - started) / 1000 / calls;

      // 2. 100 callers on an expired token.
      sandbox.server.resetStats();
      const cold = manager({ provider: "goto", sandboxUrl: sandbox.url, store: fileStore(), ...GOTO_DEMO_CLIENT, key: "cold" });
      await cold.seed(sandbox.goto.oauth.issueRefreshToken(GOTO_DEMO_CLIENT.clientId));
      await Promise.all(Array.from({ length: 100 }, () => cold.getAccessToken()));
      const singleFlight = sandbox.server.counter("goto refresh");

      // 3. 4 processes, 1 s tokens, one shared PostgreSQL store; then each with its own store.
      const durationMs = quick ? 4000 : 20_000;
      sandbox.goto.oauth.accessTokenLifetime = 1;
      const shared = await contention(sandbox, durationMs, () => ({ kind: "postgres", connection: testDb.connection as Record<string, unknown> }), true);
      const naive = await contention(sandbox, durationMs, () => ({ kind: "file", dir: mkdtempSync(path.join(os.tmpdir(), "gw-naive-")) }), false);

      return {
        warm_token_us: round(warmTokenUs, 3),
        single_flight_refreshes: singleFlight,
        refreshes_per_expiry: round(shared.refreshes / shared.expiries, 3),
        refresh_requests: shared.refreshes,
        expiries: shared.expiries,
        naive_refreshes_per_expiry: round(naive.refreshes / naive.expiries, 3),
        processes: 4,
        token_lifetime_s: 1,
        duration_s: durationMs / 1000,
        api_calls: shared.calls,
        failures: shared.failures,
        notes:
          "An expiry is a refresh made when the shared token needed renewing; a refresh within half a token lifetime of the previous one renewed a token that was still fresh and counts only as a request. Naive: every process keeps its own copy of the token.",
      };
    } finally {
      await testDb.drop();
      await sandbox.close();
    }
  },
};

async function contention(sandbox: Sandbox, durationMs: number, store: () => WorkerConfig["store"], shareSeed: boolean) {
  sandbox.server.resetStats();
  const before = sandbox.goto.oauth.refreshTimes.get(GOTO_DEMO_CLIENT.clientId)?.length ?? 0;
  const seed = sandbox.goto.oauth.issueRefreshToken(GOTO_DEMO_CLIENT.clientId);
  const key = `bench-${Math.random()}`;
  const workers = Array.from({ length: 4 }, (_, i) =>
    startWorker({ provider: "goto", sandboxUrl: sandbox.url, store: store(), ...GOTO_DEMO_CLIENT, key, durationMs, seed: shareSeed && i > 0 ? undefined : seed }),
  );
  await Promise.all(workers.map((w) => w.ready));
  workers.forEach((w) => w.go());
  const reports = await Promise.all(workers.map((w) => w.report));
  const times = (sandbox.goto.oauth.refreshTimes.get(GOTO_DEMO_CLIENT.clientId) ?? []).slice(before).sort((a, b) => a - b);
  const refreshes = times.length;
  return {
    refreshes,
    expiries: refreshes - duplicateRefreshes(times, 1000),
    calls: reports.reduce((n, r) => n + r.calls, 0),
    failures: reports.reduce((n, r) => n + r.failures.length, 0),
  };
}

function round(n: number, digits: number): number {
  return Number(n.toFixed(digits));
}
