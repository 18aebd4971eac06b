import assert from "node:assert/strict";
import { mkdtempSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { Sandbox } from "../../src/sandbox";
import { TestDatabase, createTestDatabase } from "../support/pg";
import { eventually } from "../support/node-red";
import { busiestWindow, duplicateRefreshes } from "../support/workers";
import { DatabaseKind, RunningInstance, sandboxClient, startInstance } from "../support/teamleader";

const MINUTE_MS = Number(process.env.GW_TL_PROCESS_MS ?? 60_000);

describe("Teamleader sync in separate Node-RED processes", function () {
  this.timeout(MINUTE_MS + 120_000);
  const sandbox = new Sandbox();
  let testDb: TestDatabase;
  const running: RunningInstance[] = [];

  before(async () => {
    await sandbox.listen();
    testDb = await createTestDatabase("gw_tlp");
  });
  after(async () => {
    await Promise.all(running.map((r) => (r.kill(), r.exit)));
    await testDb.drop();
    await sandbox.close();
  });
  beforeEach(() => {
    sandbox.server.resetStats();
    sandbox.teamleader.resetQuota();
    sandbox.teamleader.latencyMs = 0;
    sandbox.teamleader.oauth.accessTokenLifetime = 3600;
  });

  /** The flow every instance runs: a database, a connection to the sandbox, a query node. */
  function instanceConfig(kind: DatabaseKind, client: { clientId: string; clientSecret: string }, refreshToken: string, query: Record<string, unknown>, userDir?: string) {
    const db = kind === "server" ? { mode: "server", host: "127.0.0.1", port: "5432", database: testDb.name, poolSize: "4" } : { mode: "embedded" };
    return {
      userDir,
      flow: [
        { id: "tab", type: "tab", label: "teamleader" },
        { id: "db", type: "postgres-database", ...db },
        { id: "conn", type: "teamleader-connection", name: "Shared", database: "db", redirectUri: "http://127.0.0.1:1880/teamleader/oauth", authHost: `${sandbox.url}/teamleader/auth`, apiHost: `${sandbox.url}/teamleader/api` },
        { id: "query", type: "teamleader-query", z: "tab", x: 100, y: 100, connection: "conn", mode: "sync", syncMode: "delta", tablePrefix: "tl_", ...query, wires: [["out"]] },
        { id: "out", type: "helper", z: "tab", x: 300, y: 100, wires: [] },
        { id: "call", type: "teamleader-query", z: "tab", x: 100, y: 200, connection: "conn", mode: "call", endpoint: "users.me", wires: [["callOut"]] },
        { id: "callOut", type: "helper", z: "tab", x: 300, y: 200, wires: [] },
      ],
      credentials: { db: { user: "postgres" }, conn: { ...client, refreshToken } },
    };
  }

  function launch(config: ReturnType<typeof instanceConfig>): RunningInstance {
    const instance = startInstance(config);
    running.push(instance);
    return instance;
  }

  for (const kind of ["server", "embedded"] as DatabaseKind[]) {
    it(`a process killed mid-sync and started again ends with every row exactly once (${kind === "server" ? "PostgreSQL server" : "embedded PostgreSQL"})`, async () => {
      sandbox.teamleader.data.reset({ companies: 3000 });
      sandbox.teamleader.latencyMs = 20;
      const client = sandboxClient(sandbox);
      const userDir = kind === "embedded" ? mkdtempSync(path.join(os.tmpdir(), "gw-tl-kill-")) : undefined;
      const query = { resources: "companies", tablePrefix: `kill_${kind.slice(0, 3)}_` };
      const config = instanceConfig(kind, client, sandbox.teamleader.oauth.issueRefreshToken(client.clientId), query, userDir);

      const doomed = launch(config);
      await doomed.ready;
      void doomed.sync({});
      // Rows are written 500 at a time, two batches in flight: past 1,100, the first 500 are committed.
      await eventually(() => doomed.statuses.some((s) => /^companies (1,[1-9]\d\d|2,\d{3})$/.test(s)), 60_000, "the sync to pass 1,100 companies");
      doomed.kill();
      assert.equal((await doomed.exit).signal, "SIGKILL");
      // The embedded server stops with its Node-RED process, or the next one adopts it: no wait.

      const next = launch(config);
      await next.ready;
      const [before] = await next.query(`SELECT count(*)::int AS n FROM ${query.tablePrefix}companies`);
      assert.ok(before.n >= 500 && before.n < 3000, `the killed run left its committed rows (${before.n})`);
      const [state] = await next.query(`SELECT cursor FROM ${query.tablePrefix}sync_state WHERE resource = 'companies'`);
      assert.equal(state.cursor, null, "the cursor did not move for an unfinished run");

      const { summary, error } = await next.sync({});
      assert.equal(error, undefined);
      const companies = summary.resources.companies;
      assert.equal(companies.mode, "full", "without a cursor the delta runs as a full sweep");
      assert.equal(companies.fetched, 3000);
      assert.equal(companies.inserted, 3000 - before.n, "rows of the killed run were not inserted again");
      const [after] = await next.query(`SELECT count(*)::int AS n, count(DISTINCT id)::int AS ids, count(*) FILTER (WHERE deleted_at IS NOT NULL)::int AS deleted FROM ${query.tablePrefix}companies`);
      assert.deepEqual(after, { n: 3000, ids: 3000, deleted: 0 });
      const ids = (await next.query(`SELECT id FROM ${query.tablePrefix}companies ORDER BY id`)).map((r: { id: string }) => r.id);
      assert.deepEqual(ids, sandbox.teamleader.data.liveIds("companies").sort(), "no row missing");
      await next.stop();
    });
  }

  it("a sync running in one process answers a trigger in another with 'already running'", async () => {
    sandbox.teamleader.data.reset({ companies: 1500, users: 5 });
    sandbox.teamleader.latencyMs = 40;
    const client = sandboxClient(sandbox);
    const config = instanceConfig("server", client, sandbox.teamleader.oauth.issueRefreshToken(client.clientId), { resources: "companies,users", tablePrefix: "busy_" });
    const [a, b] = [launch(config), launch(config)];
    await Promise.all([a.ready, b.ready]);
    const first = a.sync({ mode: "full" });
    await eventually(() => a.statuses.some((s) => /^companies \d/.test(s)), 30_000, "the first process to sync");
    const second = await b.sync({ mode: "full" });
    assert.equal(second.summary.resources.companies.status, "already running");
    assert.match(second.summary.resources.companies.runningOn, /pid \d+/);
    // The process that stood aside says who runs the sync, not that something is wrong.
    const aside = `done by ${second.summary.resources.companies.runningOn}`;
    await eventually(() => b.statuses.some((s) => s.endsWith(aside)), 10_000, `b's status to say "${aside}"`);
    assert.equal(second.summary.resources.users.status, "synced");
    assert.equal((await first).summary.resources.companies.status, "synced");
    await Promise.all([a.stop(), b.stop()]);
  });

  it(`two processes sync against one database for ${MINUTE_MS / 1000} s with 5-second tokens: no refused refresh token, one refresh per expiry`, async () => {
    sandbox.teamleader.data.reset({ companies: 300, users: 10, departments: 2 });
    sandbox.teamleader.oauth.accessTokenLifetime = 5;
    const client = sandboxClient(sandbox);
    const config = instanceConfig("server", client, sandbox.teamleader.oauth.issueRefreshToken(client.clientId), { resources: "companies,departments,users", tablePrefix: "pair_" });
    const [a, b] = [launch(config), launch(config)];
    await Promise.all([a.ready, b.ready]);
    // Pauses keep the pair under Teamleader's 200 requests a minute, so tokens are wanted all along.
    const reports = await Promise.all([a.loop({}, MINUTE_MS, 1500), b.loop({}, MINUTE_MS, 1500)]);

    const errors = reports.flatMap((r) => r.errors);
    assert.deepEqual(errors.filter((e) => /refresh token is invalid/i.test(e)), [], "no process was refused its refresh token");
    assert.deepEqual(errors, [], "no sync failed");
    assert.ok(reports.every((r) => r.runs >= 5), `both processes kept syncing (${reports.map((r) => r.runs).join(", ")} runs)`);
    assert.equal(sandbox.server.counter("teamleader refresh reused"), 0, "no spent refresh token was sent again");
    assert.equal(sandbox.server.counter("teamleader refresh unknown"), 0);
    const times = [...(sandbox.teamleader.oauth.refreshTimes.get(client.clientId) ?? [])].sort((x, y) => x - y);
    assert.equal(duplicateRefreshes(times, 5000), 0, "no token was refreshed twice");
    // 5 s tokens are replaced 0.5 s ahead: about one refresh every 4.5 s while calls go on.
    const expected = MINUTE_MS / 4500;
    assert.ok(times.length >= expected * 0.5 && times.length <= expected * 1.15 + 2, `${times.length} refreshes for about ${expected.toFixed(1)} expiries`);
    const [rows] = await a.query("SELECT count(*)::int AS n, count(DISTINCT id)::int AS ids FROM pair_companies");
    assert.deepEqual(rows, { n: 300, ids: 300 });
    await Promise.all([a.stop(), b.stop()]);
  });

  for (const processes of [2, 4]) {
    it(`${processes} processes syncing and calling for ${MINUTE_MS / 1000} s share 200 requests a minute: no 429, no expired token sent, users.me quick`, async () => {
      sandbox.teamleader.data.reset({ companies: 2000, users: 10 });
      sandbox.teamleader.latencyMs = 20;
      sandbox.teamleader.requestTimes.length = 0;
      // Short tokens: a token taken before a wait in the limiter would expire on the way.
      sandbox.teamleader.oauth.accessTokenLifetime = 5;
      const client = sandboxClient(sandbox);
      const refreshToken = sandbox.teamleader.oauth.issueRefreshToken(client.clientId);
      // Each process syncs into tables of its own, so no sync waits for another's lock: all want the budget at once.
      const instances = Array.from({ length: processes }, (_, i) => launch(instanceConfig("server", client, refreshToken, { resources: "companies", syncMode: "full", tablePrefix: `rate${processes}_${i}_` })));
      await Promise.all(instances.map((p) => p.ready));
      const started = Date.now();
      const [loops, calls] = await Promise.all([
        Promise.all(instances.map((p) => p.loop({}, MINUTE_MS, 100))),
        Promise.all(instances.map((p) => p.calls(MINUTE_MS, 4000))),
      ]);
      const seconds = (Date.now() - started) / 1000;

      assert.equal(sandbox.server.counter("teamleader api 429"), 0, "the sandbox refused no request");
      assert.deepEqual([...loops.flatMap((r) => r.errors), ...calls.flatMap((r) => r.errors)], [], "no sync and no call failed");
      const times = [...sandbox.teamleader.requestTimes].sort((a, b) => a - b);
      const busiest = busiestWindow(times, 60_000);
      assert.ok(busiest <= 200, `${busiest} requests in the busiest minute`);
      const perMinute = (times.length * 60) / Math.min(seconds, 60 + seconds / 10);
      assert.ok(times.length >= (Math.min(MINUTE_MS, 60_000) / 60_000) * 150, `the budget was used: ${times.length} requests in ${seconds.toFixed(0)} s (${perMinute.toFixed(0)}/min)`);
      assert.equal(sandbox.server.counter("teamleader api 401"), 0, "no request went out with an expired token");
      const latencies = calls.flatMap((r) => r.latenciesMs).sort((a, b) => a - b);
      assert.ok(latencies.length >= processes * 3, `${latencies.length} calls answered`);
      const p99 = latencies[Math.min(latencies.length - 1, Math.ceil(latencies.length * 0.99) - 1)]!;
      assert.ok(p99 < 2000, `users.me p99 ${p99} ms while ${processes} syncs ran (${latencies.join(", ")})`);
      assert.ok(loops.every((r) => r.runs >= 1), "every process synced");
      await Promise.all(instances.map((p) => p.stop()));
    });
  }
});
