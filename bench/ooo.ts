import { Database } from "../src/core/db/database";
import { HttpClient } from "../src/core/http/client";
import { EntraAppTokenSource } from "../src/graph/app-token";
import { GraphClient } from "../src/graph/client";
import { OutOfOfficeMonitor } from "../src/graph/monitor";
import { WatchListStore } from "../src/graph/watch-list";
import { MICROSOFT_DEMO_APP, Sandbox } from "../src/sandbox";
import { alwaysOn } from "../src/sandbox/graph";
import { createTestDatabase } from "../test/support/pg";
import type { Benchmark } from "./support";

/**
 * The out-of-office monitor with 1,000 watched users: requests per polling cycle (batches and
 * token), how long a cycle takes under the sandbox's Outlook limits, 429s in steady state, against
 * the original's one request per user per cycle.
 */
export const benchmark: Benchmark = {
  name: "ooo",
  async run({ quick }) {
    const users = quick ? 100 : 1000;
    const cycles = quick ? 2 : 5;
    const sandbox = new Sandbox();
    await sandbox.listen();
    sandbox.graph.itemLatencyMs = 5; // Outlook's own time per mailbox read, so concurrency shows
    const testDb = await createTestDatabase("gw_bench");
    const db = await Database.open({ kind: "server", connection: testDb.connection }, { warn: () => undefined });
    try {
      const generated = sandbox.graph.generateUsers(users);
      const setup = new GraphClient({ baseUrl: `${sandbox.url}/microsoft/graph`, auth: new EntraAppTokenSource({ ...MICROSOFT_DEMO_APP, authorityHost: sandbox.url }) });
      await new OutOfOfficeMonitor({ graph: setup, store: new WatchListStore(db, "bench") }).replace(generated.map((u) => u.mail!));
      await setup.close();

      // A monitor that starts as after a restart: the list from the database, no token yet.
      const tokens = new EntraAppTokenSource({ ...MICROSOFT_DEMO_APP, authorityHost: sandbox.url });
      const graph = new GraphClient({ baseUrl: `${sandbox.url}/microsoft/graph`, auth: tokens });
      const monitor = new OutOfOfficeMonitor({ graph, store: new WatchListStore(db, "bench") });

      const perCycle: Array<{ requests: number; seconds: number; changes: number; throttled: number }> = [];
      for (let cycle = 0; cycle < cycles; cycle++) {
        // A few users change between cycles, as people do.
        for (let i = cycle; i < users; i += 97) sandbox.graph.setReplies(generated[i]!.mail!, alwaysOn(`Away, cycle ${cycle}`));
        sandbox.server.resetStats();
        const started = process.hrtime.bigint();
        const result = await monitor.poll();
        const seconds = Number(process.hrtime.bigint() - started) / 1e9;
        const requests = sandbox.server.counter("graph batch") + sandbox.server.counter("microsoft token request");
        perCycle.push({ requests, seconds, changes: result.changes.length, throttled: sandbox.server.counter("graph 429") });
        if (result.failure) throw result.failure;
      }
      // The first cycle pays for the token; later ones use msal's cache.
      const first = perCycle[0]!;
      const steady = perCycle.slice(1);

      // The original: one request per user, one after another.
      const naiveHttp = new HttpClient({ name: "Microsoft Graph", baseUrl: `${sandbox.url}/microsoft/graph/v1.0/`, auth: tokens });
      sandbox.server.resetStats();
      const naiveStarted = process.hrtime.bigint();
      for (const user of generated) await naiveHttp.json({ path: `users/${encodeURIComponent(user.mail!)}/mailboxSettings/automaticRepliesSetting` });
      const naiveSeconds = Number(process.hrtime.bigint() - naiveStarted) / 1e9;
      const naiveRequests = sandbox.server.counter("graph mailbox request");
      await naiveHttp.close();
      await graph.close();

      return {
        users,
        requests_per_cycle: first.requests,
        steady_requests_per_cycle: Math.max(...steady.map((c) => c.requests)),
        cycle_seconds: round(median(perCycle.map((c) => c.seconds))),
        http_429: steady.reduce((n, c) => n + c.throttled, 0),
        changes_per_cycle: round(median(steady.map((c) => c.changes))),
        cycles,
        naive_requests_per_cycle: naiveRequests,
        naive_cycle_seconds: round(naiveSeconds),
        notes: "requests_per_cycle counts the cycle that also fetched the token (msal's cache serves the others); http_429 counts steady-state cycles after the first. Sandbox: 5 ms per mailbox read, Graph hands Outlook 4 requests of a batch at a time, Outlook's per-mailbox limits answered with 429.",
      };
    } finally {
      await db.close();
      await testDb.drop();
      await sandbox.close();
    }
  },
};

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)]!;
}

function round(n: number): number {
  return Number(n.toFixed(3));
}
