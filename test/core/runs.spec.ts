import assert from "node:assert/strict";
import pg from "pg";
import { Database } from "../../src/core/db/database";
import { EmbeddedFault } from "../../src/core/db/fault";
import { PipelineError } from "../../src/core/errors";
import { instanceName } from "../../src/core/instance";
import { registerSecret } from "../../src/core/redact";
import { RunLog, RunRecord, RunRecorder, RunSubject, answerRunQuery, onRun, runLog } from "../../src/core/runs";
import { FaultProxy } from "../faults/proxy";
import { eventually } from "../support/node-red";
import { TestDatabase, createTestDatabase } from "../support/pg";

const DAY = 86_400_000;

describe("the run log (gluework_runs)", function () {
  this.timeout(60_000);
  let testDb: TestDatabase;
  let db: Database;
  let admin: pg.Client;
  const closing: Array<() => Promise<unknown>> = [];
  let subjects = 0;

  before(async () => {
    testDb = await createTestDatabase("gw_runs");
    db = await Database.open({ kind: "server", connection: testDb.connection }, { warn: () => undefined });
    admin = new pg.Client(testDb.connection);
    await admin.connect();
  });
  after(async () => {
    for (const close of closing.reverse()) await close().catch(() => undefined);
    await admin.end();
    await db.close();
    await testDb.drop();
  });

  const subject = (pipeline: RunSubject["pipeline"] = "call-logs"): RunSubject => ({ nodeId: `node-${++subjects}`, nodeName: `node ${subjects}`, nodeType: "goto-call-logs", pipeline });

  function recorder(s: RunSubject, database: () => Database | Promise<Database> | undefined = () => db) {
    const warnings: string[] = [];
    const writes: Array<Promise<unknown>> = [];
    const r = new RunRecorder(s, { database, warn: (line) => warnings.push(line), track: (w) => writes.push(w) });
    return { r, warnings, writes };
  }

  async function rowsOf(nodeId: string): Promise<any[]> {
    return (await admin.query("SELECT * FROM gluework_runs WHERE node_id = $1 ORDER BY started_at, id", [nodeId])).rows;
  }

  it("stores a run when it ends, with its node, key, instance, times, outcome and counts, and announces it with its id", async () => {
    const s = subject();
    const { r, warnings } = recorder(s);
    const heard: RunRecord[] = [];
    const stop = onRun((rec) => rec.nodeId === s.nodeId && heard.push(rec));
    try {
      const run = r.start("2026-11-22");
      run.counts.rows = 1200;
      run.counts.pages = 13;
      run.counts.requests = 14;
      run.details = { source: "call-reports" };
      const ended = run.end("success");
      assert.equal(ended.id, null, "measured, not yet stored");
      assert.equal(run.end("failure").outcome, "success", "the first end counts");
      const stored = await run.saved;
      assert.match(stored.id!, /^\d+$/);
      const [row] = await rowsOf(s.nodeId);
      assert.equal(String(row.id), stored.id);
      assert.equal(row.node_name, s.nodeName);
      assert.equal(row.node_type, "goto-call-logs");
      assert.equal(row.pipeline, "call-logs");
      assert.equal(row.run_key, "2026-11-22");
      assert.equal(row.instance, instanceName());
      assert.equal(row.outcome, "success");
      assert.deepEqual([Number(row.rows), row.pages, row.requests, row.http_429, row.retries, row.token_refreshes], [1200, 13, 14, 0, 0, 0]);
      assert.deepEqual(row.details, { source: "call-reports" });
      assert.equal(row.error_message, null);
      assert.ok(row.ended_at.getTime() >= row.started_at.getTime());
      await eventually(() => heard.length === 1, 5000, "the announcement");
      assert.equal(heard[0]!.id, stored.id);
      assert.deepEqual(warnings, []);
    } finally {
      stop();
    }
  });

  it("keeps a failure's message, code, cause and fix, each redacted", async () => {
    const s = subject("teamleader-sync");
    const { r } = recorder(s);
    registerSecret("s3cr3t-refresh-token-value");
    const cause = new Error("the server said: refresh_token=s3cr3t-refresh-token-value was refused");
    const err = new PipelineError("Teamleader refused the token s3cr3t-refresh-token-value (Bearer abcdefghijkl)", { code: "GW_NEEDS_AUTHORIZATION", cause });
    const run = r.start("companies");
    await assert.rejects(run.track(async () => Promise.reject(err)));
    const fault = new EmbeddedFault("the port is taken", "free port 5433 or choose a server", "GW_DB_PORT_IN_USE", "database port in use");
    const second = r.start("contacts");
    second.end("failure", fault);
    await Promise.all([run.saved, second.saved]);
    const [first, other] = await rowsOf(s.nodeId);
    assert.equal(first.outcome, "failure");
    assert.equal(first.error_code, "GW_NEEDS_AUTHORIZATION");
    assert.doesNotMatch(JSON.stringify(first), /s3cr3t|abcdefghijkl/);
    assert.match(first.error_message, /Teamleader refused the token \[redacted\]/);
    assert.match(first.error_cause, /refresh_token=\[redacted\] was refused/);
    assert.equal(first.error_fix, null);
    assert.equal(other.error_fix, "free port 5433 or choose a server");
    assert.equal(other.error_code, "GW_DB_PORT_IN_USE");
  });

  it("ends a tracked run as partial when its error says so, and leaves a run the work ended (skipped) as it is", async () => {
    const s = subject("provisioning");
    const { r } = recorder(s);
    const partial = r.start("batch-1");
    await assert.rejects(partial.track(async () => Promise.reject(new PipelineError("1 of 3 items failed", { partial: true }))));
    const skipped = r.start("batch-2");
    await skipped.track(async (run) => void run.end("skipped"));
    const judged = r.start("batch-3");
    await judged.track(async () => 3, (n) => (n > 2 ? "success" : "partial"));
    await Promise.all([partial.saved, skipped.saved, judged.saved]);
    assert.deepEqual((await rowsOf(s.nodeId)).map((row) => row.outcome), ["partial", "skipped", "success"]);
  });

  it("goes on when the database is unreachable: the run ends as it would, one warning is logged, and runs are recorded again once it answers", async () => {
    const proxy = new FaultProxy({ port: 5432 }, "proxy to PostgreSQL");
    await proxy.start();
    closing.push(() => proxy.stop());
    const behind = await Database.open({ kind: "server", connection: { ...testDb.connection, port: proxy.port, connectionTimeoutMillis: 1000 } }, { warn: () => undefined });
    closing.push(() => behind.close());
    const s = subject("mail-relay");
    const { r, warnings } = recorder(s, () => behind);
    const before = r.start("warm");
    before.end("success");
    assert.match((await before.saved).id ?? "", /^\d+$/, "stored through the proxy");
    await proxy.set("refuse");
    const during = [r.start("a"), r.start("b"), r.start("c")];
    const started = Date.now();
    const value = await during[0]!.track(async () => "done");
    during[1]!.end("failure", new Error("its own failure"));
    during[2]!.end("success");
    assert.equal(value, "done", "the run's own result");
    assert.ok(Date.now() - started < 100, "the run did not wait for the database");
    const saved = await Promise.all(during.map((run) => run.saved));
    assert.deepEqual(saved.map((rec) => rec.id), [null, null, null], "announced, not stored");
    assert.equal(warnings.length, 1, `one warning for the outage: ${JSON.stringify(warnings)}`);
    assert.match(warnings[0]!, /^a run could not be recorded \(.+\); the pipeline goes on/);
    await proxy.set("pass");
    const after = r.start("d");
    after.end("success");
    const back = await after.saved;
    assert.match(back.id ?? "", /^\d+$/);
    assert.deepEqual(warnings.slice(1), ["runs are recorded again (3 could not be)"]);
    assert.deepEqual((await rowsOf(s.nodeId)).map((row) => row.run_key), ["warm", "d"], "nothing of the outage stored");
  });

  it("announces runs without a database, and stores none", async () => {
    const s = subject();
    const { r, warnings } = recorder(s, () => undefined);
    const run = r.start("2026-01-01");
    run.end("success");
    assert.equal((await run.saved).id, null);
    assert.deepEqual(warnings, []);
    assert.deepEqual(await rowsOf(s.nodeId), []);
  });

  it("drops runs older than the days kept, once an hour across the instances on the database, and keeps each node's last success", async () => {
    const s = subject("ooo-monitor");
    const { r } = recorder(s);
    const now = Date.now();
    await r.record({ startedAt: new Date(now - 40 * DAY), endedAt: new Date(now - 40 * DAY + 500), outcome: "success", counts: { rows: 4 } });
    await r.record({ startedAt: new Date(now - 31 * DAY), endedAt: new Date(now - 31 * DAY + 500), outcome: "failure", error: new Error("old failure") });
    await r.record({ startedAt: new Date(now - 29 * DAY), endedAt: new Date(now - 29 * DAY + 500), outcome: "partial" });
    await r.record({ startedAt: new Date(now - 1000), endedAt: new Date(now), outcome: "failure" });
    // Two instances on one database prune at the same moment: one of them does it.
    const other = await Database.open({ kind: "server", connection: testDb.connection }, { warn: () => undefined });
    closing.push(() => other.close());
    const logs = [runLog(db), new RunLog(other)];
    await admin.query("UPDATE gluework_runs_pruned SET pruned_at = now() - interval '2 hours'");
    const pruned = await Promise.all(logs.map((log) => log.prune()));
    assert.equal(pruned.filter((n) => n > 0).length, 1, `one instance pruned: ${JSON.stringify(pruned)}`);
    assert.ok(pruned.reduce((a, b) => a + b, 0) >= 2);
    assert.deepEqual(await Promise.all(logs.map((log) => log.prune())), [0, 0], "not again within the hour");
    const left = await rowsOf(s.nodeId);
    assert.deepEqual(left.map((row) => row.outcome), ["partial", "failure"], "the runs of the last 30 days");
    const [node] = (await runLog(db).latestPerNode({ pipeline: "ooo-monitor" })).filter((n) => n.nodeId === s.nodeId);
    assert.equal(node!.lastSuccessAt?.getTime(), now - 40 * DAY, "the last success outlives its run");
    assert.equal(node!.lastOutcome, "failure");
    assert.equal(node!.last?.outcome, "failure");
  });

  it("keeps fewer days when the database is set so", async () => {
    const s = subject("board-audit");
    const { r } = recorder(s);
    const now = Date.now();
    await r.record({ startedAt: new Date(now - 8 * DAY), endedAt: new Date(now - 8 * DAY), outcome: "success" });
    await r.record({ startedAt: new Date(now - 6 * DAY), endedAt: new Date(now - 6 * DAY), outcome: "success" });
    const log = runLog(db);
    log.keepDays = 7;
    try {
      assert.ok((await log.prune({ force: true })) >= 1);
    } finally {
      log.keepDays = 30;
    }
    assert.equal((await rowsOf(s.nodeId)).length, 1);
  });

  it("reads each node's latest run, the runs per day and the last errors for the health page", async () => {
    const a = subject("teamleader-sync");
    const b = subject("teamleader-sync");
    const ra = recorder(a).r;
    const rb = recorder(b).r;
    const now = Date.now();
    const at = (daysAgo: number) => new Date(now - daysAgo * DAY);
    await ra.record({ key: "companies", startedAt: at(2), endedAt: at(2), outcome: "success", counts: { rows: 100, requests: 2 } });
    await ra.record({ key: "companies", startedAt: at(1), endedAt: at(1), outcome: "failure", counts: { requests: 5, http429: 2 }, error: new PipelineError("the companies sync stopped at page 3") });
    await ra.record({ key: "companies", startedAt: at(0.5), endedAt: at(0.5), outcome: "skipped" });
    await rb.record({ key: "users", startedAt: at(1), endedAt: at(1), outcome: "success", counts: { rows: 7, requests: 1 } });
    await rb.record({ key: "users", startedAt: at(40), endedAt: at(40), outcome: "success", counts: { rows: 1 } });
    const log = runLog(db);
    const latest = (await log.latestPerNode({ pipeline: "teamleader-sync" })).filter((n) => n.nodeId === a.nodeId || n.nodeId === b.nodeId);
    const byId = new Map(latest.map((n) => [n.nodeId, n]));
    assert.equal(byId.get(a.nodeId)!.last!.outcome, "failure", "a skipped run is not the latest");
    assert.equal(byId.get(a.nodeId)!.lastFailureAt!.getTime(), at(1).getTime());
    assert.equal(byId.get(a.nodeId)!.lastSuccessAt!.getTime(), at(2).getTime());
    assert.equal(byId.get(b.nodeId)!.last!.key, "users");

    const days = (await log.runsPerDay({ days: 30, nodeId: a.nodeId, by: "node" }));
    assert.equal(days.reduce((n, d) => n + d.runs, 0), 3);
    assert.equal(days.reduce((n, d) => n + d.outcomes.failure, 0), 1);
    assert.equal(days.reduce((n, d) => n + d.counts.requests, 0), 7);
    assert.equal(days.reduce((n, d) => n + d.counts.http429, 0), 2);
    assert.ok(days.every((d) => /^\d{4}-\d{2}-\d{2}$/.test(d.day) && d.nodeId === a.nodeId));
    assert.equal((await log.runsPerDay({ days: 30, nodeId: b.nodeId })).reduce((n, d) => n + d.counts.rows, 0), 7, "a run 40 days ago is outside");

    const errors = await log.lastErrors({ nodeId: a.nodeId });
    assert.deepEqual(errors.map((e) => e.error?.message), ["the companies sync stopped at page 3"]);
    const answered = (await answerRunQuery(log, "runs", { nodeId: a.nodeId, outcomes: "success,skipped" })) as Array<{ outcome: string; startedAt: string }>;
    assert.deepEqual(answered.map((x) => x.outcome), ["skipped", "success"]);
    assert.equal(typeof answered[0]!.startedAt, "string", "plain JSON for a flow");
    await assert.rejects(answerRunQuery(log, "runs", { outcomes: ["sometimes"] }), /unknown outcomes: sometimes/);
  });

  it("tells every instance on the database of a stored run", async () => {
    const other = await Database.open({ kind: "server", connection: testDb.connection }, { warn: () => undefined });
    closing.push(() => other.close());
    const heard: RunRecord[] = [];
    const stop = await new RunLog(other).subscribe((rec) => heard.push(rec));
    try {
      const s = subject("provisioning");
      const { r } = recorder(s);
      const run = r.start("req-1");
      run.counts.requests = 3;
      run.end("partial", new PipelineError("1 of 2 items failed"));
      const stored = await run.saved;
      const got = await eventually(() => heard.find((rec) => rec.nodeId === s.nodeId), 10_000, "the other instance to hear of the run");
      assert.equal(got.id, stored.id);
      assert.equal(got.outcome, "partial");
      assert.equal(got.counts.requests, 3);
      assert.equal(got.error?.message, "1 of 2 items failed");
      assert.ok(got.startedAt instanceof Date);
    } finally {
      stop();
    }
  });
});
