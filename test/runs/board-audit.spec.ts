import assert from "node:assert/strict";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import pg from "pg";
import { endSequence } from "../../src/core/node/sequence-flow";
import blobCsvWriter from "../../src/nodes/blob-csv-writer";
import postgresDatabase from "../../src/nodes/postgres-database";
import { eventually, nodeRed } from "../support/node-red";
import { TestDatabase, createTestDatabase } from "../support/pg";
import { runsOf, waitForRuns } from "../support/runs";

const helper = nodeRed();
const COLUMNS = "main:Client,sub:Connection,user:User,reason:Reason";

describe("runs of the board's weekly audit (blob-csv-writer recording its files)", function () {
  this.timeout(30_000);
  let testDb: TestDatabase;
  let admin: pg.Client;
  let dir: string;
  let caught: any[];

  before(async () => {
    testDb = await createTestDatabase("gw_runs_audit");
    admin = new pg.Client(testDb.connection);
    await admin.connect();
    dir = mkdtempSync(path.join(os.tmpdir(), "gw-audit-"));
  });
  after(async () => {
    await admin.end();
    await testDb.drop();
    rmSync(dir, { recursive: true, force: true });
  });
  afterEach(async () => {
    await helper.unload();
    await admin.query("TRUNCATE gluework_runs, gluework_run_nodes").catch(() => undefined);
  });

  async function load(writers: Array<Record<string, unknown>>): Promise<void> {
    const flow = [
      { id: "tab", type: "tab", label: "audit" },
      { id: "db", type: "postgres-database", mode: "server", host: "127.0.0.1", port: "5432", database: testDb.name, ssl: "disable", poolSize: "3" },
      ...writers.map((w, i) => ({ type: "blob-csv-writer", z: "tab", x: 100, y: 100 + 60 * i, target: "folder", folder: dir, path: "audit/{yyyy}/{yyyy}-W{ww}.csv", mode: "append", columns: COLUMNS, header: true, timeZone: "UTC", runsDatabase: "db", pipeline: "board-audit", wires: [[]], ...w })),
      { id: "catch", type: "catch", z: "tab", x: 100, y: 400, scope: null, uncaught: false, wires: [["caught"]] },
      { id: "caught", type: "helper", z: "tab", x: 300, y: 400, wires: [] },
    ];
    await helper.load([postgresDatabase, blobCsvWriter], flow, { db: { user: "postgres" } });
    caught = [];
    helper.getNode("caught").on("input", (m: any) => caught.push(m));
  }

  const event = (user: string) => ({ main: "vpn a", sub: "one", user, reason: "released" });

  it("records each audit row appended as a run of board-audit, named by its file", async () => {
    await load([{ id: "audit" }]);
    helper.getNode("audit").receive({ payload: [event("Burt")], date: "2026-11-23" });
    helper.getNode("audit").receive({ payload: [event("Jimmy"), event("Ann")], date: "2026-11-24" });
    const runs = await waitForRuns(admin, "audit", 2);
    assert.deepEqual(runs.map((r) => [r.pipeline, r.outcome, r.run_key, r.rows]), [
      ["board-audit", "success", "audit/2026/2026-W48.csv", 1],
      ["board-audit", "success", "audit/2026/2026-W48.csv", 2],
    ]);
    assert.equal(runs[0]!.node_type, "blob-csv-writer");
    assert.ok(runs[1]!.details!.size > runs[0]!.details!.size, "the file grew");
  });

  it("records a file sent in parts as one run, and a file whose source gave up as a failure", async () => {
    await load([{ id: "daily", mode: "replace", path: "calls/{date}.csv", pipeline: "csv-export" }]);
    const writer = helper.getNode("daily");
    for (let index = 0; index < 3; index++) writer.receive({ payload: [event(`u${index}`), event(`v${index}`)], date: "2026-11-22", parts: { id: "seq-1", index, ...(index === 2 ? { count: 3 } : {}) } });
    const [whole] = await waitForRuns(admin, "daily", 1);
    assert.deepEqual([whole!.pipeline, whole!.outcome, whole!.run_key, whole!.rows], ["csv-export", "success", "calls/2026-11-22.csv", 6]);
    writer.receive({ payload: [event("x")], date: "2026-11-23", parts: { id: "seq-2", index: 0 } });
    await eventually(async () => (await runsOf(admin, "daily")).length === 1 && helper.getNode("daily").status.getCalls().length > 0, 5000, "the first part taken");
    await new Promise((resolve) => setTimeout(resolve, 100));
    endSequence("seq-2", true);
    const [, given] = await waitForRuns(admin, "daily", 2);
    assert.equal(given!.outcome, "failure");
    assert.match(given!.error_message ?? "", /the source failed half-way through the file/);
  });

  it("records a file it could not write as a failure, with the reason Catch got", async () => {
    const notAFolder = path.join(dir, "plain-file");
    writeFileSync(notAFolder, "not a folder");
    await load([{ id: "broken", folder: notAFolder }]);
    helper.getNode("broken").receive({ payload: [event("Burt")], date: "2026-11-23" });
    const [run] = await waitForRuns(admin, "broken", 1);
    await eventually(() => caught.length === 1, 5000, "the failure at Catch");
    assert.equal(run!.outcome, "failure");
    assert.equal(run!.error_message, caught[0].error.message);
  });

  it("records nothing without a database to record in", async () => {
    await load([{ id: "quiet", runsDatabase: "" }, { id: "loud" }]);
    helper.getNode("quiet").receive({ payload: [event("Burt")], date: "2026-11-23" });
    helper.getNode("loud").receive({ payload: [event("Burt")], date: "2026-11-23" });
    await waitForRuns(admin, "loud", 1);
    assert.deepEqual(await runsOf(admin, "quiet"), []);
  });
});
