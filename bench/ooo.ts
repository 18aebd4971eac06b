import { Database } from "../src/core/db/database";
import { HttpClient } from "../src/core/http/client";
import { EntraAppTokenSource } from "../src/graph/app-token";
import { GraphClient } from "../src/graph/client";
import { OutOfOfficeMonitor, PollResult, ThrottledCycle } from "../src/graph/monitor";
import { MonitorStatus, clockTime, monitorStatus } from "../src/graph/monitor-status";
import { WatchListStore } from "../src/graph/watch-list";
import { MICROSOFT_DEMO_APP, Sandbox } from "../src/sandbox";
import { alwaysOn } from "../src/sandbox/graph";
import { createTestDatabase } from "../test/support/pg";
import type { Benchmark } from "./support";

interface Case {
  /** Mailbox reads the sandbox lets one app have in flight (undefined: only Outlook's per-mailbox limits). */
  appReadsInFlight?: number;
  itemLatencyMs: number;
  tokenLifetimeS: number;
  /** Also time the original's one request per user, one after another. */
  naive?: boolean;
}

/**
 * The out-of-office monitor with 1,000 watched users, in two cases: a sandbox that allows 4
 * mailbox reads in flight per app and takes 20 ms per read, with 4-minute tokens (every user must be
 * read in every cycle, in about the 5 s that limit allows); and the sandbox without a per-app limit,
 * 5 ms per read and 1-hour tokens, against the original's one request per user per cycle.
 */
export const benchmark: Benchmark = {
  name: "ooo",
  async run({ quick }) {
    const users = quick ? 100 : 1000;
    const cycles = quick ? 2 : 5;
    const limited = await measure(users, cycles, { appReadsInFlight: 4, itemLatencyMs: 20, tokenLifetimeS: 240 });
    const unlimited = await measure(users, cycles, { itemLatencyMs: 5, tokenLifetimeS: 3599, naive: true });
    const replicas = await measureReplicas(users, cycles, 2);
    const storm = await measureStorm(users, quick ? 5 : 30);
    return {
      users,
      cycles,
      per_app_limit: {
        ...limited,
        bound_seconds: round((users * 20) / 4 / 1000),
        measured_bound_seconds: round((users * (limited.read_ms_measured as number)) / 4 / 1000),
      },
      no_per_app_limit: unlimited,
      replicas,
      storm,
      notes:
        "per_app_limit: the sandbox answers 429 beyond 4 mailbox reads in flight per app, 20 ms per read, tokens living 240 s (msal renews within 300 s of expiry); bound_seconds = users × 20 ms / 4; measured_bound_seconds the same with the time a read really took (read_ms_measured). " +
        "no_per_app_limit: 5 ms per read, Outlook's per-mailbox limits only, 1-hour tokens; the node still keeps at most 4 reads in flight (its default), where it used to keep 16 (4 batches of which Graph hands Outlook 4 items each). " +
        "requests_per_cycle counts the cycle that also fetched the token; steady figures are the cycles after the first. Graph hands Outlook 4 requests of a batch at a time. " +
        "replicas: two monitors of one watch list, each with its own database pool, Graph client and token, both asked to poll at every cycle as their timers would; the sandbox as for per_app_limit (4 reads in flight per app, 20 ms per read). " +
        "One takes the cycle's lease and polls, the other stands aside; users_read_per_cycle, requests_per_cycle (batches and token requests) and http_429 are both together; posts_per_change is the changes both reported over the users whose replies changed. " +
        "storm: after a cycle that read everyone, every mailbox read (each item of every batch) answers 429 with Retry-After 0.2 for storm_seconds, the sandbox otherwise as for per_app_limit, cycles of 60 s (the node's default interval) one after another; " +
        "batches_per_s counts the $batch requests that came while the throttling lasted, over its length (max_batches_in_one_second the busiest whole second); batches_before_retry_after counts batches sent before the largest Retry-After of the batch before them had passed; " +
        "cycles_to_read_all_after counts the cycles, the one running when the throttling ended included, until every user had been read again, with batches_to_read_all_after batches in seconds_to_read_all_after (a cycle of 1,000 is 50 batches and about 6.7 s here); " +
        "statuses are the node's status texts as they changed (at_s from the start of the throttling; ready is green, warn yellow, error red), with the same rules as the node.",
    };
  },
};

async function measure(users: number, cycles: number, setup: Case) {
  const sandbox = new Sandbox();
  await sandbox.listen();
  sandbox.graph.itemLatencyMs = setup.itemLatencyMs;
  sandbox.microsoft.tokenLifetime = setup.tokenLifetimeS;
  const testDb = await createTestDatabase("gw_bench");
  const db = await Database.open({ kind: "server", connection: testDb.connection }, { warn: () => undefined });
  try {
    const generated = sandbox.graph.generateUsers(users);
    const setupGraph = new GraphClient({ baseUrl: `${sandbox.url}/microsoft/graph`, auth: new EntraAppTokenSource({ ...MICROSOFT_DEMO_APP, authorityHost: sandbox.url }) });
    await new OutOfOfficeMonitor({ graph: setupGraph, store: new WatchListStore(db, "bench") }).replace(generated.map((u) => u.mail!));
    await setupGraph.close();
    sandbox.graph.appReadsInFlight = setup.appReadsInFlight;

    // A monitor that starts as after a restart: the list from the database, no token yet.
    const tokens = new EntraAppTokenSource({ ...MICROSOFT_DEMO_APP, authorityHost: sandbox.url });
    const graph = new GraphClient({ baseUrl: `${sandbox.url}/microsoft/graph`, auth: tokens });
    const monitor = new OutOfOfficeMonitor({ graph, store: new WatchListStore(db, "bench") });

    const perCycle: Array<{ read: number; requests: number; tokens: number; seconds: number; changes: number; throttled: number; peak: number; readMs: number }> = [];
    for (let cycle = 0; cycle < cycles; cycle++) {
      // A few users change between cycles, as people do.
      for (let i = cycle; i < users; i += 97) sandbox.graph.setReplies(generated[i]!.mail!, alwaysOn(`Away, cycle ${cycle}`));
      sandbox.server.resetStats();
      sandbox.graph.resetLoad();
      const started = process.hrtime.bigint();
      const result = await monitor.poll();
      const seconds = Number(process.hrtime.bigint() - started) / 1e9;
      if (result.failure) throw result.failure;
      const tokenRequests = sandbox.server.counter("microsoft token request");
      perCycle.push({
        read: result.read,
        requests: sandbox.server.counter("graph batch") + tokenRequests,
        tokens: tokenRequests,
        seconds,
        changes: result.changes.length,
        throttled: sandbox.server.counter("graph 429"),
        peak: sandbox.graph.peakReadsInFlight,
        readMs: sandbox.graph.readTime.ms / Math.max(1, sandbox.graph.readTime.reads),
      });
    }
    const first = perCycle[0]!;
    const steady = perCycle.slice(1);

    const figures: Record<string, unknown> = {
      users_read_per_cycle: perCycle.map((c) => c.read),
      cycle_seconds: round(median(perCycle.map((c) => c.seconds))),
      max_cycle_seconds: round(Math.max(...perCycle.map((c) => c.seconds))),
      requests_per_cycle: first.requests,
      steady_requests_per_cycle: Math.max(...steady.map((c) => c.requests)),
      http_429: steady.reduce((n, c) => n + c.throttled, 0),
      first_cycle_http_429: first.throttled,
      token_requests_per_cycle: Math.max(...perCycle.map((c) => c.tokens)),
      peak_reads_in_flight: Math.max(...perCycle.map((c) => c.peak)),
      // What a read really took in the sandbox (its timers run late on a busy machine).
      read_ms_measured: round(median(perCycle.map((c) => c.readMs))),
      changes_per_cycle: round(median(steady.map((c) => c.changes))),
    };

    if (setup.naive) {
      // The original: one request per user, one after another.
      const naiveHttp = new HttpClient({ name: "Microsoft Graph", baseUrl: `${sandbox.url}/microsoft/graph/v1.0/`, auth: tokens });
      sandbox.server.resetStats();
      const naiveStarted = process.hrtime.bigint();
      for (const user of generated) await naiveHttp.json({ path: `users/${encodeURIComponent(user.mail!)}/mailboxSettings/automaticRepliesSetting` });
      figures.naive_cycle_seconds = round(Number(process.hrtime.bigint() - naiveStarted) / 1e9);
      figures.naive_requests_per_cycle = sandbox.server.counter("graph mailbox request");
      await naiveHttp.close();
    }
    await graph.close();
    return figures;
  } finally {
    await db.close();
    await testDb.drop();
    await sandbox.close();
  }
}

/** Every mailbox read refused with Retry-After 0.2 for `stormS` seconds, then cycles until everyone has been read again. */
async function measureStorm(users: number, stormS: number) {
  const sandbox = new Sandbox();
  await sandbox.listen();
  sandbox.graph.itemLatencyMs = 20;
  const testDb = await createTestDatabase("gw_bench");
  const db = await Database.open({ kind: "server", connection: testDb.connection }, { warn: () => undefined });
  try {
    const generated = sandbox.graph.generateUsers(users);
    const graph = new GraphClient({ baseUrl: `${sandbox.url}/microsoft/graph`, auth: new EntraAppTokenSource({ ...MICROSOFT_DEMO_APP, authorityHost: sandbox.url }) });
    // The status the node would show, followed as the node follows it: told during a cycle, and at its end.
    const statuses: Array<MonitorStatus & { at_s: number }> = [];
    let lastCycle: PollResult | undefined;
    let throttling: ThrottledCycle | undefined;
    let lastPoll = "";
    let stormStart = Date.now();
    const show = () => {
      const shown = monitorStatus({ watched: monitor.users.length, out: monitor.outOfOffice, cycle: lastCycle, throttling, lastPoll });
      if (statuses.at(-1)?.text !== shown.text) statuses.push({ at_s: round((Date.now() - stormStart) / 1000), ...shown });
    };
    const monitor: OutOfOfficeMonitor = new OutOfOfficeMonitor({
      graph,
      store: new WatchListStore(db, "bench"),
      cycleBudgetMs: 60_000,
      onThrottling: (now) => {
        if (!now && lastCycle?.throttling) lastCycle = undefined;
        throttling = now;
        show();
      },
    });
    await monitor.replace(generated.map((u) => u.mail!));
    sandbox.graph.appReadsInFlight = 4;
    const calm = await monitor.poll();
    if (calm.read !== users) throw new Error(`the cycle before the throttling read ${calm.read} of ${users}`);

    sandbox.server.resetStats();
    sandbox.graph.resetLoad();
    stormStart = Date.now();
    lastCycle = calm;
    lastPoll = clockTime(new Date());
    show();
    const stormEnd = stormStart + stormS * 1000;
    sandbox.graph.throttleEverything(stormS, "0.2");
    const cycles: Array<{ read: number; notRead: number; seconds: number; endedAt: number; throttled: number }> = [];
    const readAfter = new Set<string>();
    let cyclesToReadAll: number | null = null;
    let lastRead = 0;
    // Cycles one after another, as the node's timer would start them, until everyone was read after the throttling.
    while (cycles.length < 5) {
      const result = await monitor.poll();
      if (result.failure) throw result.failure;
      cycles.push({ read: result.read, notRead: result.notRead.length, seconds: round(result.seconds), endedAt: Date.now(), throttled: result.throttled });
      lastCycle = result;
      throttling = result.throttling;
      lastPoll = clockTime(new Date());
      show();
      if (Date.now() < stormEnd) continue;
      for (const mail of sandbox.graph.readLog) readAfter.add(mail);
      if (readAfter.size === users) {
        lastRead = sandbox.graph.batchLog.at(-1)!.answeredAt;
        cyclesToReadAll = cycles.filter((c) => c.endedAt >= stormEnd).length;
        break;
      }
    }
    const log = sandbox.graph.batchLog;
    const during = log.filter((b) => b.receivedAt < stormEnd);
    const after = log.filter((b) => b.receivedAt >= stormEnd);
    let early = 0;
    for (let i = 1; i < log.length; i++) {
      const previous = log[i - 1]!;
      if (previous.throttled && previous.retryAfterMs !== null && log[i]!.receivedAt - previous.answeredAt < previous.retryAfterMs) early++;
    }
    await graph.close();
    return {
      users,
      storm_seconds: stormS,
      retry_after_s: 0.2,
      batches_while_throttled: during.length,
      batches_per_s: round(during.length / stormS),
      max_batches_in_one_second: Math.max(0, ...sandbox.graph.batchesPerSecond(stormStart, stormEnd)),
      max_batches_in_flight_while_throttled: sandbox.graph.maxBatchesInFlight(stormStart, stormEnd),
      batches_before_retry_after: early,
      http_429: sandbox.server.counter("graph 429"),
      cycles: cycles.map(({ endedAt: _, ...c }) => c),
      cycles_to_read_all_after: cyclesToReadAll,
      batches_to_read_all_after: after.length,
      seconds_to_read_all_after: lastRead ? round((lastRead - stormEnd) / 1000) : null,
      first_throttled_status_after_s: statuses.find((st) => st.state === "warn" && st.text.startsWith("throttled"))?.at_s ?? null,
      statuses,
    };
  } finally {
    await db.close();
    await testDb.drop();
    await sandbox.close();
  }
}

/** Two replicas of one monitor polling the same list at each cycle, as two Node-RED instances on one database would. */
async function measureReplicas(users: number, cycles: number, instances: number) {
  const sandbox = new Sandbox();
  await sandbox.listen();
  sandbox.graph.itemLatencyMs = 20;
  sandbox.microsoft.tokenLifetime = 240;
  const testDb = await createTestDatabase("gw_bench");
  const setupDb = await Database.open({ kind: "server", connection: testDb.connection }, { warn: () => undefined });
  const opened: Array<{ db: Database; graph: GraphClient }> = [];
  try {
    const generated = sandbox.graph.generateUsers(users);
    const setupGraph = new GraphClient({ baseUrl: `${sandbox.url}/microsoft/graph`, auth: new EntraAppTokenSource({ ...MICROSOFT_DEMO_APP, authorityHost: sandbox.url }) });
    await new OutOfOfficeMonitor({ graph: setupGraph, store: new WatchListStore(setupDb, "bench") }).replace(generated.map((u) => u.mail!));
    await setupGraph.close();
    sandbox.graph.appReadsInFlight = 4;

    const budgetKey = `graph:${MICROSOFT_DEMO_APP.tenantId}:${MICROSOFT_DEMO_APP.clientId}`;
    const monitors = [];
    for (let i = 0; i < instances; i++) {
      const db = await Database.open({ kind: "server", connection: testDb.connection }, { warn: () => undefined });
      const graph = new GraphClient({ baseUrl: `${sandbox.url}/microsoft/graph`, auth: new EntraAppTokenSource({ ...MICROSOFT_DEMO_APP, authorityHost: sandbox.url }) });
      opened.push({ db, graph });
      // An interval shorter than a cycle, so that each round of the bench is a cycle that is due.
      monitors.push(new OutOfOfficeMonitor({ graph, store: new WatchListStore(db, "bench"), budgetKey, intervalMs: 1000 }));
    }

    const perCycle: Array<{ read: number; requests: number; seconds: number; throttled: number; reported: number; changed: number; polled: number }> = [];
    for (let cycle = 0; cycle < cycles; cycle++) {
      const changed = new Set<string>();
      for (let i = cycle; i < users; i += 97) {
        sandbox.graph.setReplies(generated[i]!.mail!, alwaysOn(`Away, cycle ${cycle}`));
        changed.add(generated[i]!.mail!);
      }
      sandbox.server.resetStats();
      sandbox.graph.resetLoad();
      const started = process.hrtime.bigint();
      // Both timers fire within a few milliseconds of each other.
      const results = await Promise.all(monitors.map((m, i) => new Promise((r) => setTimeout(r, i * Math.random() * 20)).then(() => m.poll(undefined, { due: true }))));
      const seconds = Number(process.hrtime.bigint() - started) / 1e9;
      for (const r of results) if (r.failure) throw r.failure;
      const reported = results.flatMap((r) => r.changes.filter((c) => !c.initial && changed.has(c.email)));
      perCycle.push({
        read: results.reduce((n, r) => n + r.read, 0),
        requests: sandbox.server.counter("graph batch") + sandbox.server.counter("microsoft token request"),
        seconds,
        throttled: sandbox.server.counter("graph 429"),
        reported: reported.length,
        changed: changed.size,
        polled: results.filter((r) => !r.doneBy).length,
      });
    }
    const steady = perCycle.slice(1);
    return {
      instances,
      users,
      app_reads_in_flight: 4,
      users_read_per_cycle: perCycle.map((c) => c.read),
      instances_polling_per_cycle: perCycle.map((c) => c.polled),
      cycle_seconds: round(median(perCycle.map((c) => c.seconds))),
      max_cycle_seconds: round(Math.max(...perCycle.map((c) => c.seconds))),
      requests_per_cycle: Math.max(...perCycle.map((c) => c.requests)),
      steady_requests_per_cycle: Math.max(...steady.map((c) => c.requests)),
      http_429: steady.reduce((n, c) => n + c.throttled, 0),
      first_cycle_http_429: perCycle[0]!.throttled,
      posts_per_change: round(perCycle.reduce((n, c) => n + c.reported, 0) / perCycle.reduce((n, c) => n + c.changed, 0)),
    };
  } finally {
    for (const { db, graph } of opened) {
      await graph.close();
      await db.close();
    }
    await setupDb.close();
    await testDb.drop();
    await sandbox.close();
  }
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)]!;
}

function round(n: number): number {
  return Number(n.toFixed(3));
}
