import assert from "node:assert/strict";
import net from "node:net";
import pg from "pg";
import parsePrometheusTextFormat from "parse-prometheus-text-format";
import graphApp from "../../src/nodes/graph-app";
import graphOooStatus from "../../src/nodes/graph-ooo-status";
import mailRelay from "../../src/nodes/mail-relay";
import pipelineRuns from "../../src/nodes/pipeline-runs";
import postgresDatabase from "../../src/nodes/postgres-database";
import smtpConnection from "../../src/nodes/smtp-connection";
import teamleaderConnection from "../../src/nodes/teamleader-connection";
import teamleaderQuery from "../../src/nodes/teamleader-query";
import { MICROSOFT_DEMO_APP, Sandbox } from "../../src/sandbox";
import { freePort } from "../../src/sandbox/azurite";
import { alwaysOn } from "../../src/sandbox/graph";
import { eventually, nodeRed } from "../support/node-red";
import { TestDatabase, createTestDatabase } from "../support/pg";
import { RunRow, waitForRuns } from "../support/runs";
import { sandboxClient } from "../support/teamleader";

const helper = nodeRed();
const VOLUMES = { companies: 120, users: 8 };

/** One scrape, parsed: value of `name` for the series whose labels include `labels` (undefined when absent). */
interface Scrape {
  status: number;
  ms: number;
  value(name: string, labels?: Record<string, string>): number | undefined;
  text: string;
}

async function scrape(): Promise<Scrape> {
  const started = Date.now();
  const res = await helper.request().get("/gluework/metrics");
  const ms = Date.now() - started;
  const families = parsePrometheusTextFormat(res.text) as Array<{ name: string; metrics: Array<{ value: string; labels?: Record<string, string> }> }>;
  return {
    status: res.status,
    ms,
    text: res.text,
    value(name, labels = {}) {
      const family = families.find((f) => f.name === name);
      const found = family?.metrics.filter((m) => Object.entries(labels).every(([k, v]) => m.labels?.[k] === v)) ?? [];
      if (found.length > 1) throw new Error(`${found.length} series of ${name} match ${JSON.stringify(labels)}`);
      return found[0] ? Number(found[0].value) : undefined;
    },
  };
}

const sum = (runs: RunRow[], key: "rows" | "requests" | "http_429" | "token_refreshes") => runs.reduce((n, r) => n + r[key], 0);

describe("Prometheus metrics (GET /gluework/metrics)", function () {
  this.timeout(60_000);
  const sandbox = new Sandbox({ teamleader: { volumes: VOLUMES } });
  let testDb: TestDatabase;
  let admin: pg.Client;

  before(async () => {
    await sandbox.listen();
    testDb = await createTestDatabase("gw_metrics");
    admin = new pg.Client(testDb.connection);
    await admin.connect();
    sandbox.graph.addUser({ mail: "ann@contoso.test", displayName: "Ann" });
    sandbox.graph.addUser({ mail: "bob@contoso.test", displayName: "Bob", replies: alwaysOn("Bob is away") });
  });
  after(async () => {
    await admin.end();
    await testDb.drop();
    await sandbox.close();
  });
  afterEach(async () => {
    await helper.unload();
    sandbox.server.clearFaults();
  });

  function flow(smtpPort: number) {
    return [
      { id: "mtab", type: "tab", label: "metrics" },
      { id: "mdb", type: "postgres-database", name: "platform", mode: "server", host: "127.0.0.1", port: "5432", database: testDb.name, ssl: "disable", poolSize: "4" },
      { id: "mconn", type: "teamleader-connection", name: "Main", database: "mdb", redirectUri: "http://127.0.0.1:1880/teamleader/oauth", authHost: `${sandbox.url}/teamleader/auth`, apiHost: `${sandbox.url}/teamleader/api` },
      { id: "m-sync", type: "teamleader-query", name: "CRM sync", z: "mtab", x: 100, y: 100, connection: "mconn", mode: "sync", syncMode: "full", tablePrefix: "mx_", resources: "companies,users", wires: [["m-out"]] },
      { id: "m-out", type: "helper", z: "mtab", x: 300, y: 100, wires: [] },
      { id: "msmtp", type: "smtp-connection", host: "127.0.0.1", port: String(smtpPort), security: "none", auth: "none", sender: "monitoring@example.com", poolSize: "2" },
      { id: "m-relay", type: "mail-relay", name: "Alerts", z: "mtab", x: 100, y: 200, smtp: "msmtp", database: "mdb", to: "ops@example.com", allowed: "@example.com", subject: "Monitoring message", maxKiB: "64", retries: "5", retryDelay: "600", wires: [[], [], []] },
      { id: "mapp", type: "graph-app", tenantId: MICROSOFT_DEMO_APP.tenantId, clientId: MICROSOFT_DEMO_APP.clientId, authType: "secret", authorityHost: sandbox.url, graphUrl: `${sandbox.url}/microsoft/graph` },
      { id: "m-ooo", type: "graph-ooo-status", name: "Away", z: "mtab", x: 100, y: 300, app: "mapp", database: "mdb", watchedUsers: "ann@contoso.test\nbob@contoso.test", interval: "3600", readsInFlight: "4", version: 2, wires: [[], [], [], []] },
    ];
  }

  async function load(smtpPort: number): Promise<void> {
    const client = sandboxClient(sandbox);
    await helper.load([postgresDatabase, teamleaderConnection, teamleaderQuery, smtpConnection, mailRelay, graphApp, graphOooStatus, pipelineRuns], flow(smtpPort), {
      mdb: { user: "postgres" },
      mconn: { ...client, refreshToken: sandbox.teamleader.oauth.issueRefreshToken(client.clientId) },
      mapp: { clientSecret: MICROSOFT_DEMO_APP.clientSecret },
    });
  }

  it("serves what the runs did: a Teamleader sync's runs and counts, the relay's waiting mails, the monitor's unread users, the last success from the database", async () => {
    const smtpPort = await freePort(); // nothing listens there: the relay's mails wait
    // A deploy, then a redeploy: the route and the run listener stay one each.
    await load(smtpPort);
    await waitForRuns(admin, "m-ooo", 1);
    await helper.unload();
    const bob = sandbox.graph.user("bob@contoso.test")!;
    bob.mailbox = false;
    try {
      await load(smtpPort);
      helper.getNode("m-ooo").receive({ topic: "poll" });
      await waitForRuns(admin, "m-ooo", 2);
    } finally {
      bob.mailbox = true;
    }
    const before = await scrape();
    const runsBefore = (outcome: string) => before.value("gluework_pipeline_runs_total", { node_id: "m-sync", outcome }) ?? 0;
    const counterBefore = (name: string) => before.value(name, { node_id: "m-sync" }) ?? 0;

    sandbox.server.inject({ path: "/teamleader/api/companies.list", status: 429, headers: { "retry-after": "0" }, json: { errors: [{ title: "Too Many Requests" }] } });
    const outputs: unknown[] = [];
    helper.getNode("m-out").on("input", (m: unknown) => outputs.push(m));
    helper.getNode("m-sync").receive({ payload: {} });
    await eventually(() => outputs.length === 1, 30_000, "the sync");
    const syncRuns = await waitForRuns(admin, "m-sync", 2);

    const relay = helper.getNode("m-relay");
    for (let i = 0; i < 3; i++) relay.receive({ payload: { message: `alert ${i}` } });
    const queued = await eventually(async () => {
      const { rows } = await admin.query("SELECT count(*)::int AS n, extract(epoch FROM now() - min(created_at))::float8 AS age FROM gluework_mail_outbox WHERE queue = 'm-relay' AND state <> 'failed'");
      return rows[0].n === 3 ? rows[0] : undefined;
    }, 10_000, "three mails waiting");

    // Counters: this process's runs, once each (one listener across the redeploy).
    const m = await eventually(async () => {
      const s = await scrape();
      return (s.value("gluework_pipeline_runs_total", { node_id: "m-sync", outcome: "success" }) ?? 0) - runsBefore("success") === 2 ? s : undefined;
    }, 10_000, "both sync runs counted");
    assert.equal(m.status, 200);
    assert.equal(m.value("gluework_pipeline_runs_total", { node_id: "m-sync", outcome: "failure" }), runsBefore("failure"));
    assert.equal(m.value("gluework_pipeline_runs_total", { node_id: "m-sync", node_name: "CRM sync", pipeline: "teamleader-sync", outcome: "success" }), runsBefore("success") + 2);
    assert.equal(m.value("gluework_pipeline_rows_total", { node_id: "m-sync" })! - counterBefore("gluework_pipeline_rows_total"), sum(syncRuns, "rows"));
    assert.equal(sum(syncRuns, "rows"), VOLUMES.companies + VOLUMES.users);
    assert.equal(m.value("gluework_pipeline_requests_total", { node_id: "m-sync" })! - counterBefore("gluework_pipeline_requests_total"), sum(syncRuns, "requests"));
    assert.equal(m.value("gluework_pipeline_http_429_total", { node_id: "m-sync" })! - counterBefore("gluework_pipeline_http_429_total"), 1);
    assert.equal(m.value("gluework_pipeline_token_refreshes_total", { node_id: "m-sync" })! - counterBefore("gluework_pipeline_token_refreshes_total"), sum(syncRuns, "token_refreshes"));
    assert.equal(m.value("gluework_pipeline_runs_total", { node_id: "m-ooo", outcome: "partial" }), 1, "the second cycle, once");
    assert.equal(m.value("gluework_pipeline_runs_total", { node_id: "m-ooo", outcome: "success" }), 1, "the first cycle, once");

    // Gauges from the database.
    assert.equal(m.value("gluework_database_up", { database_node: "mdb", database_name: "platform" }), 1);
    const { rows: latest } = await admin.query("SELECT node_id, extract(epoch FROM last_success_at)::float8 AS s, extract(epoch FROM last_failure_at)::float8 AS f FROM gluework_run_nodes");
    const of = (id: string) => latest.find((r) => r.node_id === id);
    assert.equal(m.value("gluework_pipeline_last_success_timestamp_seconds", { node_id: "m-sync", node_name: "CRM sync", pipeline: "teamleader-sync" }), of("m-sync").s);
    assert.ok(Math.abs(of("m-sync").s - syncRuns[1]!.started_at.getTime() / 1000) < 0.001);
    assert.equal(m.value("gluework_pipeline_last_failure_timestamp_seconds", { node_id: "m-sync" }), undefined, "never failed");
    assert.equal(m.value("gluework_ooo_users_watched", { node_id: "m-ooo", node_name: "Away" }), 2);
    assert.equal(m.value("gluework_ooo_users_not_read", { node_id: "m-ooo" }), 1);
    assert.equal(m.value("gluework_relay_outbox_mails", { node_id: "m-relay", node_name: "Alerts", state: "waiting" }), 3);
    assert.equal(m.value("gluework_relay_outbox_mails", { node_id: "m-relay", state: "failed" }), 0);
    const age = m.value("gluework_relay_outbox_oldest_mail_age_seconds", { node_id: "m-relay" })!;
    assert.ok(age >= 0 && age <= queued.age + 5, `oldest mail ${age} s (the database says ${queued.age} s)`);

    // Once the Microsoft side reads everyone again, the next cycle's figure follows.
    helper.getNode("m-ooo").receive({ topic: "poll" });
    await waitForRuns(admin, "m-ooo", 3);
    await eventually(async () => (await scrape()).value("gluework_ooo_users_not_read", { node_id: "m-ooo" }) === 0, 10_000, "no unread user");
  });

  it("answers within its deadline when a database does not answer, with its counters and gluework_database_up 0", async () => {
    // One server that takes connections and never says a word, and one port nobody listens on.
    const held: net.Socket[] = [];
    const silent = net.createServer((socket) => void held.push(socket));
    await new Promise<void>((resolve) => silent.listen(0, "127.0.0.1", resolve));
    const silentPort = (silent.address() as net.AddressInfo).port;
    const closedPort = await freePort();
    // The helper's settings are replaced whole: keep its user directory.
    const settings = { ...(helper as unknown as { _settings: Record<string, unknown> })._settings };
    try {
      helper.settings({ ...settings, gluework: { metricsDatabaseTimeoutMs: 800 } });
      const flowDown = [
        { id: "dtab", type: "tab", label: "down" },
        { id: "db-hung", type: "postgres-database", name: "hung database", mode: "server", host: "127.0.0.1", port: String(silentPort), database: "x", ssl: "disable", poolSize: "2" },
        { id: "db-gone", type: "postgres-database", name: "gone database", mode: "server", host: "127.0.0.1", port: String(closedPort), database: "x", ssl: "disable", poolSize: "2" },
        { id: "d-runs1", type: "pipeline-runs", z: "dtab", x: 100, y: 100, database: "db-hung", scope: "local", wires: [[], []] },
        { id: "d-runs2", type: "pipeline-runs", z: "dtab", x: 100, y: 200, database: "db-gone", scope: "local", wires: [[], []] },
      ];
      await helper.load([postgresDatabase, pipelineRuns], flowDown, { "db-hung": { user: "postgres" }, "db-gone": { user: "postgres" } });
      for (let i = 0; i < 3; i++) {
        const s = await scrape();
        assert.equal(s.status, 200);
        assert.ok(s.ms < 3000, `answered in ${s.ms} ms`);
        assert.equal(s.value("gluework_database_up", { database_node: "db-hung" }), 0);
        assert.equal(s.value("gluework_database_up", { database_node: "db-gone" }), 0);
        assert.equal(s.value("gluework_instance_info"), 1);
      }
      // A hung database holds one read at most, however many scrapes come.
      assert.ok(held.length <= 1, `${held.length} connections to the hung database`);
    } finally {
      helper.settings(settings);
      for (const socket of held) socket.destroy();
      silent.close();
    }
  });
});
