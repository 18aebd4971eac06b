import assert from "node:assert/strict";
import pg from "pg";
import { Database } from "../../src/core/db/database";
import { PipelineError } from "../../src/core/errors";
import { RunRecorder, RunSubject, runLog } from "../../src/core/runs";
import pipelineRuns from "../../src/nodes/pipeline-runs";
import postgresDatabase from "../../src/nodes/postgres-database";
import { eventually, nodeRed } from "../support/node-red";
import { TestDatabase, createTestDatabase } from "../support/pg";

const helper = nodeRed();
const DAY = 86_400_000;

describe("pipeline-runs node", function () {
  this.timeout(30_000);
  let testDb: TestDatabase;
  let admin: pg.Client;
  let other: Database;
  let nodes = 0;

  before(async () => {
    testDb = await createTestDatabase("gw_pipeline_runs");
    admin = new pg.Client(testDb.connection);
    await admin.connect();
    // Another Node-RED instance on the same database, as far as the runs go.
    other = await Database.open({ kind: "server", connection: testDb.connection }, { warn: () => undefined });
  });
  after(async () => {
    await other.close();
    await admin.end();
    await testDb.drop();
  });
  afterEach(async () => {
    await helper.unload();
    await admin.query("TRUNCATE gluework_runs, gluework_run_nodes").catch(() => undefined);
  });

  async function load(settings: Record<string, unknown>, database: Record<string, unknown> = {}) {
    const flow = [
      { id: "tab", type: "tab", label: "runs" },
      { id: "db", type: "postgres-database", mode: "server", host: "127.0.0.1", port: "5432", database: testDb.name, ssl: "disable", poolSize: "3", ...database },
      { id: "runs", type: "pipeline-runs", z: "tab", x: 100, y: 100, database: "db", scope: "local", pipelines: "", outcomes: "", ...settings, wires: [["records"], ["answers"]] },
      { id: "records", type: "helper", z: "tab", x: 300, y: 80, wires: [] },
      { id: "answers", type: "helper", z: "tab", x: 300, y: 120, wires: [] },
      { id: "catch", type: "catch", z: "tab", x: 100, y: 200, scope: ["runs"], uncaught: false, wires: [["caught"]] },
      { id: "caught", type: "helper", z: "tab", x: 300, y: 200, wires: [] },
    ];
    await helper.load([postgresDatabase, pipelineRuns], flow, { db: { user: "postgres" } });
    const seen = { records: [] as any[], answers: [] as any[], caught: [] as any[] };
    for (const name of ["records", "answers", "caught"] as const) helper.getNode(name).on("input", (m: any) => seen[name].push(m));
    return seen;
  }

  /** A pipeline node of this instance, recording into the flow's database. */
  function localRecorder(pipeline: RunSubject["pipeline"]): RunRecorder {
    return new RunRecorder({ nodeId: `local-${++nodes}`, nodeName: "here", nodeType: "test", pipeline }, { database: () => helper.getNode("db").database(), warn: () => undefined });
  }

  /** A run another instance stored. */
  async function storedElsewhere(pipeline: RunSubject["pipeline"], outcome: "success" | "failure", startedAt = new Date()): Promise<string> {
    return runLog(other).save({
      id: null,
      nodeId: `remote-${++nodes}`,
      nodeName: "there",
      nodeType: "test",
      pipeline,
      key: null,
      instance: "replica-b pid 9",
      startedAt,
      endedAt: new Date(startedAt.getTime() + 1000),
      durationMs: 1000,
      outcome,
      counts: { rows: 5, pages: 1, requests: 2, http429: 0, retries: 0, tokenRefreshes: 0 },
      error: outcome === "failure" ? { message: "it broke", code: "GW_TEST", cause: "the cause", fix: "the fix" } : null,
      details: null,
    });
  }

  it("sends the runs of this instance that its filters let through, one message each, as plain JSON", async () => {
    const seen = await load({ pipelines: "call-logs,mail-relay", outcomes: "failure,partial" });
    const calls = localRecorder("call-logs");
    const sync = localRecorder("teamleader-sync");
    const failing = calls.start("2026-11-22");
    failing.counts.requests = 4;
    failing.end("failure", new PipelineError("GoTo answered 500"));
    calls.start("2026-11-23").end("success");
    sync.start("companies").end("failure", new Error("not this pipeline"));
    await Promise.all([failing.saved]);
    const [msg] = await eventually(() => seen.records.length >= 1 && seen.records, 5000, "the failed run");
    await storedElsewhere("call-logs", "failure");
    await new Promise((resolve) => setTimeout(resolve, 300));
    assert.equal(seen.records.length, 1, "only the failed call-log run of this instance");
    assert.equal(msg.topic, "call-logs");
    assert.equal(msg.payload.key, "2026-11-22");
    assert.equal(msg.payload.outcome, "failure");
    assert.equal(msg.payload.counts.requests, 4);
    assert.equal(msg.payload.error.message, "GoTo answered 500");
    assert.match(msg.payload.id, /^\d+$/);
    assert.equal(typeof msg.payload.startedAt, "string");
    const status = helper.getNode("runs").status.lastCall.args[0];
    assert.equal(status.fill, "yellow");
    assert.match(status.text, /^call-logs failure · \d\d:\d\d$/);
  });

  it("sends, with every instance, the runs any instance stored in the database, once each", async () => {
    const seen = await load({ scope: "all" });
    await eventually(() => helper.getNode("runs").status.getCalls().length > 0, 5000, "listening");
    // Its subscription is made asynchronously: a first run heard proves it listens.
    await eventually(async () => {
      await storedElsewhere("provisioning", "success");
      return seen.records.length > 0;
    }, 10_000, "the first run heard");
    const remote = await storedElsewhere("board-audit", "failure");
    const mine = localRecorder("ooo-monitor").start();
    mine.end("success");
    const stored = await mine.saved;
    const of = (id: string | null) => seen.records.filter((m) => m.payload.id === id);
    await eventually(() => of(remote).length && of(stored.id).length, 10_000, "both runs");
    await new Promise((resolve) => setTimeout(resolve, 300));
    assert.equal(of(stored.id).length, 1, "this instance's run once, from the database");
    assert.equal(of(remote).length, 1);
    assert.equal(of(null).length, 0);
    const heard = of(remote)[0];
    assert.equal(heard.payload.instance, "replica-b pid 9");
    assert.deepEqual(heard.payload.error, { message: "it broke", code: "GW_TEST", cause: "the cause", fix: "the fix" });
  });

  it("answers the reads of the health page: latest per node, runs per day and last errors", async () => {
    const seen = await load({});
    const now = Date.now();
    await storedElsewhere("teamleader-sync", "success", new Date(now - 3 * DAY));
    const failedId = await storedElsewhere("teamleader-sync", "failure", new Date(now - DAY));
    const node = helper.getNode("runs");
    const ask = async (topic: string, payload: unknown = {}) => {
      const before = seen.answers.length;
      node.receive({ topic, payload });
      return (await eventually(() => seen.answers.length > before && seen.answers[before], 5000, `the answer to ${topic}`)).payload;
    };
    const latest = (await ask("latest", { pipeline: "teamleader-sync" })) as any[];
    assert.ok(latest.length >= 2);
    assert.ok(latest.every((n) => n.pipeline === "teamleader-sync"));
    const failing = latest.find((n) => n.last?.id === failedId);
    assert.equal(failing.lastOutcome, "failure");
    const days = (await ask("days", { days: 30, pipeline: "teamleader-sync" })) as any[];
    assert.equal(days.reduce((n, d) => n + d.outcomes.failure, 0), 1);
    assert.equal(days.reduce((n, d) => n + d.counts.rows, 0), 10);
    const errors = (await ask("errors", { pipeline: "teamleader-sync", limit: 5 })) as any[];
    assert.deepEqual(errors.map((e) => e.id), [failedId]);
    assert.equal(errors[0].error.fix, "the fix");
    const runs = (await ask("runs", { pipeline: "teamleader-sync", outcomes: ["success"] })) as any[];
    assert.equal(runs.length, 1);

    node.receive({ topic: "everything" });
    node.receive({ topic: "days", payload: { days: -3 } });
    await eventually(() => seen.caught.length === 2, 5000, "two refusals at Catch");
    assert.match(seen.caught[0].error.message, /^msg.topic must name a read: latest, errors, days, runs/);
    assert.match(seen.caught[1].error.message, /msg.payload.days must be a whole number above 0/);
  });

  it("keeps runs for the days its database node says, pruning as runs are recorded", async () => {
    await load({}, { keepRunsDays: "7" });
    const now = Date.now();
    const oldId = await storedElsewhere("mail-relay", "success", new Date(now - 8 * DAY));
    const keptId = await storedElsewhere("mail-relay", "success", new Date(now - 6 * DAY));
    await admin.query("UPDATE gluework_runs_pruned SET pruned_at = '-infinity'");
    localRecorder("mail-relay").start().end("success");
    await eventually(async () => (await admin.query("SELECT 1 FROM gluework_runs WHERE id = $1", [oldId])).rows.length === 0, 10_000, "the old run pruned");
    assert.equal((await admin.query("SELECT 1 FROM gluework_runs WHERE id = $1", [keptId])).rows.length, 1);
    assert.equal((await admin.query("SELECT pruned_by FROM gluework_runs_pruned")).rows[0].pruned_by.length > 0, true);
  });
});
