import assert from "node:assert/strict";
import { mkdtempSync, promises as fs } from "node:fs";
import os from "node:os";
import path from "node:path";
import { BlobServiceClient } from "@azure/storage-blob";
import { parse } from "csv-parse/sync";
import azureStorageAccount from "../../src/nodes/azure-storage-account";
import blobCsvWriter from "../../src/nodes/blob-csv-writer";
import gotoCallLogs from "../../src/nodes/goto-call-logs";
import gotoCredentials from "../../src/nodes/goto-credentials";
import { GOTO_DEMO_CLIENT, Sandbox } from "../../src/sandbox";
import { AZURITE_ACCOUNT, Azurite, freePort } from "../../src/sandbox/azurite";
import { CALL_LOG_COLUMNS } from "../../src/goto/types";
import { eventually, nodeRed } from "../support/node-red";

const helper = nodeRed();
const nodes = [gotoCredentials, gotoCallLogs, azureStorageAccount, blobCsvWriter];

describe("call logs pipeline: goto-call-logs → blob-csv-writer", function () {
  this.timeout(120_000);
  // Every refresh rotates the refresh token here, the harshest case of GoTo's "sometimes".
  const sandbox = new Sandbox({ goto: { rotateEvery: 1 } });
  const azuriteDir = mkdtempSync(path.join(os.tmpdir(), "gw-azurite-"));
  let azurite: Azurite;
  let refreshToken: string;
  let out: any[];
  let caught: any[];
  let completed: any[];

  before(async () => {
    await sandbox.listen();
    azurite = new Azurite({ port: await freePort(), location: azuriteDir });
    await azurite.start();
    refreshToken = sandbox.goto.oauth.issueRefreshToken(GOTO_DEMO_CLIENT.clientId);
  });
  after(async () => {
    await azurite.stop();
    await sandbox.close();
  });
  afterEach(async () => {
    await helper.unload();
    sandbox.goto.calls.rateLimit = 10;
    sandbox.goto.calls.paging = "page";
    sandbox.goto.oauth.accessTokenLifetime = 3600;
  });

  const container = () => BlobServiceClient.fromConnectionString(azurite.connectionString).getContainerClient("call-logs");

  async function load(writer: Record<string, unknown> = {}, calls: Record<string, unknown> = {}): Promise<void> {
    const flow = [
      { id: "tab", type: "tab", label: "call logs" },
      { id: "creds", type: "goto-credentials", name: "Sandbox", authHost: `${sandbox.url}/goto/auth`, apiHost: `${sandbox.url}/goto/api`, store: "file" },
      { id: "storage", type: "azure-storage-account", auth: "connection-string" },
      { id: "calls", type: "goto-call-logs", z: "tab", x: 100, y: 100, goto: "creds", timeZone: "Europe/Brussels", ...calls, wires: [["writer"]] },
      { id: "writer", type: "blob-csv-writer", z: "tab", x: 300, y: 100, target: "azure", storage: "storage", container: "call-logs", ...writer, wires: [["out"]] },
      { id: "out", type: "helper", z: "tab", x: 500, y: 100, wires: [] },
      { id: "catch", type: "catch", z: "tab", x: 100, y: 200, scope: null, uncaught: false, wires: [["caught"]] },
      { id: "caught", type: "helper", z: "tab", x: 300, y: 200, wires: [] },
      { id: "complete", type: "complete", z: "tab", x: 100, y: 300, scope: ["calls"], uncaught: false, wires: [["completed"]] },
      { id: "completed", type: "helper", z: "tab", x: 300, y: 300, wires: [] },
    ];
    await helper.load(nodes, flow, {
      creds: { clientId: GOTO_DEMO_CLIENT.clientId, clientSecret: GOTO_DEMO_CLIENT.clientSecret, refreshToken },
      storage: { connectionString: azurite.connectionString },
    });
    out = [];
    caught = [];
    completed = [];
    helper.getNode("out").on("input", (m: any) => out.push(m));
    helper.getNode("caught").on("input", (m: any) => caught.push(m));
    helper.getNode("completed").on("input", (m: any) => completed.push(m));
  }

  async function run(payload: unknown, files = 1): Promise<any[]> {
    const before = out.length;
    helper.getNode("calls").receive({ payload });
    await eventually(() => completed.length > 0 || caught.length > 0, 90_000, "the run to end");
    if (caught.length) throw new Error(`the run failed: ${caught[0].error.message}`);
    await eventually(() => out.length >= before + files, 30_000, `${files} file(s) written`);
    completed = [];
    return out.slice(before);
  }

  async function rowsOf(name: string): Promise<Array<Record<string, string>>> {
    const text = (await container().getBlobClient(name).downloadToBuffer()).toString("utf8");
    assert.equal(text.split("\r\n")[0], CALL_LOG_COLUMNS.join(","));
    return parse(text, { columns: true }) as Array<Record<string, string>>;
  }

  const startTimes = (start: string, end: string) => sandbox.goto.calls.callsBetween(new Date(start), new Date(end)).map((c) => c.startTime).sort();

  it("writes the Brussels day of the spring clock change as one CSV of its 23 hours", async () => {
    sandbox.goto.calls.setVolume("2026-03-28", 300);
    sandbox.goto.calls.setVolume("2026-03-29", 200);
    await load();
    const [msg] = await run({ from: "2026-03-29" });
    assert.equal(msg.payload.name, "2026/03/2026-03-29_call_logs.csv");
    assert.equal(msg.payload.container, "call-logs");
    const rows = await rowsOf(msg.payload.name);
    // Local midnight to local midnight: 23:00 UTC on the 28th to 22:00 UTC on the 29th.
    const expected = startTimes("2026-03-28T23:00:00Z", "2026-03-29T22:00:00Z");
    assert.equal(msg.payload.rows, expected.length);
    assert.deepEqual(rows.map((r) => r.startTime).sort(), expected);
    assert.equal((await container().getBlobClient(msg.payload.name).getProperties()).contentLength, msg.payload.size);
    assert.ok(rows.some((r) => r.user === "Dupont, Émile"), "names with commas and accents survive");
    assert.ok(rows.some((r) => r.user.startsWith(`'=HYPERLINK(`)), "a name that is a formula is neutralised");
    assert.ok(rows.every((r) => /^\d+:\d{2}:\d{2}$/.test(r.duration!)), "durations are H:MM:SS");
  });

  it("replaces the file on a re-run and leaves one blob", async () => {
    await load();
    await run({ from: "2026-03-29" });
    sandbox.goto.calls.setVolume("2026-03-29", 260);
    const [msg] = await run({ from: "2026-03-29" });
    const names = [];
    for await (const blob of container().listBlobsFlat({ prefix: "2026/03/2026-03-29" })) names.push(blob.name);
    assert.deepEqual(names, ["2026/03/2026-03-29_call_logs.csv"]);
    assert.equal((await rowsOf(msg.payload.name)).length, startTimes("2026-03-28T23:00:00Z", "2026-03-29T22:00:00Z").length);
  });

  it("writes a day without calls as a header-only file", async () => {
    sandbox.goto.calls.setVolume("2026-02-09", 0);
    sandbox.goto.calls.setVolume("2026-02-10", 0);
    await load();
    const [msg] = await run({ from: "2026-02-10" });
    assert.equal(msg.payload.rows, 0);
    assert.deepEqual(await rowsOf(msg.payload.name), []);
  });

  it("keeps a refresh token rotated mid-run: the next deploy goes on with it", async () => {
    sandbox.goto.oauth.accessTokenLifetime = 1;
    sandbox.goto.oauth.expireAccessTokens();
    await load({}, { batchSize: 50 });
    const rotated = sandbox.server.counter("goto refresh rotated");
    const refused = () => sandbox.server.counter("goto refresh reused") + sandbox.server.counter("goto refresh unknown");
    const refusedBefore = refused();
    const files = await run({ from: "2026-03-14", to: "2026-03-16" }, 3);
    assert.equal(files.length, 3);
    assert.ok(sandbox.server.counter("goto refresh rotated") - rotated >= 2, "the refresh token was replaced during the run");
    await helper.unload();

    // The credentials still hold the first refresh token, long since replaced; the store has the newest.
    sandbox.goto.oauth.accessTokenLifetime = 3600;
    sandbox.goto.oauth.expireAccessTokens();
    await load();
    await run({ from: "2026-03-17" });
    assert.equal(refused(), refusedBefore, "no refresh token was refused");
  });

  it("waits out 429s when GoTo allows fewer requests than usual", async () => {
    sandbox.goto.calls.rateLimit = 2;
    sandbox.goto.calls.setVolume("2026-03-10", 300);
    sandbox.server.resetStats();
    await load();
    const [msg] = await run({ from: "2026-03-10" });
    assert.ok(sandbox.server.counter("goto call-reports 429") > 0, "GoTo answered 429");
    assert.equal(msg.payload.rows, startTimes("2026-03-09T23:00:00Z", "2026-03-10T23:00:00Z").length);
  });

  it("leaves no partial blob when Azurite stops in the middle of a day, tells the Catch node once, and the next run succeeds", async () => {
    sandbox.goto.calls.setVolume("2026-03-04", 150);
    sandbox.goto.calls.setVolume("2026-03-05", 600);
    await load({ blockSize: "0.004" }, { batchSize: 40 });
    const name = "2026/03/2026-03-05_call_logs.csv";
    const [first] = await run({ from: "2026-03-05" });
    const complete = (await container().getBlobClient(name).downloadToBuffer()).toString("utf8");
    assert.equal(first.payload.rows, startTimes("2026-03-04T23:00:00Z", "2026-03-05T23:00:00Z").length);

    // A second run of the same day, with more calls now; storage goes away while it runs.
    sandbox.goto.calls.setVolume("2026-03-05", 900);
    const pages = sandbox.server.counter("goto call-reports call pages");
    const statuses: Array<{ fill?: string; text?: string }> = [];
    helper.getNode("writer").on("call:status", (call: any) => statuses.push(call.args[0]));
    helper.getNode("calls").receive({ payload: { from: "2026-03-05" } });
    await eventually(() => sandbox.server.counter("goto call-reports call pages") >= pages + 3, 30_000, "the run to be under way");
    await azurite.stop();
    await eventually(() => caught.length > 0, 60_000, "the error at the Catch node");
    await eventually(() => completed.length > 0, 60_000, "goto-call-logs to finish the day");
    await new Promise((r) => setTimeout(r, 500));
    assert.equal(caught.length, 1, "one error for the file, not one per part");
    assert.match(caught[0].error.message, /^Azure Storage could not be reached to (stage a block of|commit) 2026\/03\/2026-03-05_call_logs\.csv in container 'call-logs'/);
    assert.equal(caught[0].error.source.id, "writer");
    assert.ok(!caught[0].error.message.includes(AZURITE_ACCOUNT.key), "no secret in the error");
    assert.equal(out.length, 1, "no file reported for the failed run");
    assert.equal(statuses.at(-1)?.fill, "red", "the writer stays red once the file failed");

    azurite = new Azurite({ port: azurite.port, location: azuriteDir });
    await azurite.start();
    assert.equal((await container().getBlobClient(name).downloadToBuffer()).toString("utf8"), complete, "the blob is still the complete one from before");

    caught = [];
    completed = [];
    const [again] = await run({ from: "2026-03-05" });
    assert.equal(again.payload.rows, startTimes("2026-03-04T23:00:00Z", "2026-03-05T23:00:00Z").length);
    assert.equal((await rowsOf(name)).length, again.payload.rows);
  });

  describe("a server that pages otherwise", () => {
    const statusesOf = (id: string) => {
      const statuses: Array<{ fill?: string; text?: string }> = [];
      helper.getNode(id).on("call:status", (call: any) => statuses.push(call.args[0]));
      return statuses;
    };

    /** What is in the folder (hidden temporary files included), and what of it this process holds open. */
    async function leftIn(dir: string): Promise<{ files: string[]; open: string[] }> {
      const files = (await fs.readdir(dir, { recursive: true, withFileTypes: true })).filter((e) => e.isFile()).map((e) => e.name);
      const fds = await fs.readdir("/proc/self/fd");
      const links = await Promise.all(fds.map((fd) => fs.readlink(`/proc/self/fd/${fd}`).catch(() => "")));
      return { files, open: links.filter((l) => l.startsWith(dir + path.sep)) };
    }

    it("writes the whole day once from a server that pages with markers, and shows the pages read", async () => {
      sandbox.goto.calls.paging = "marker";
      sandbox.goto.calls.maxPageSize = 20;
      sandbox.goto.calls.setVolume("2026-03-11", 300);
      try {
        await load({}, { batchSize: 50 });
        const statuses = statusesOf("calls");
        const [msg] = await run({ from: "2026-03-11" });
        const expected = startTimes("2026-03-10T23:00:00Z", "2026-03-11T23:00:00Z");
        const rows = await rowsOf(msg.payload.name);
        assert.equal(rows.length, expected.length);
        assert.deepEqual(rows.map((r) => r.startTime).sort(), expected);
        assert.equal(new Set(rows.map((r) => JSON.stringify(r))).size, rows.length, "no call twice");
        assert.ok(statuses.some((s) => /^2026-03-11 · page \d+ · [\d,]+ calls$/.test(s.text ?? "")), `a status with the pages read, among ${statuses.map((s) => s.text).join(" | ")}`);
      } finally {
        sandbox.goto.calls.maxPageSize = 10_000;
      }
    });

    it("writes the whole day when GoTo ignores `page` and every list ends on a page shorter than asked", async () => {
      sandbox.goto.calls.paging = "ignore-page";
      sandbox.goto.calls.setVolume("2026-03-20", 300);
      await load({}, { batchSize: 50 });
      const [msg] = await run({ from: "2026-03-20" });
      const expected = startTimes("2026-03-19T23:00:00Z", "2026-03-20T23:00:00Z");
      const rows = await rowsOf(msg.payload.name);
      assert.deepEqual(rows.map((r) => r.startTime).sort(), expected);
      assert.equal(new Set(rows.map((r) => JSON.stringify(r))).size, rows.length, "no call twice");
    });

    it("stops a day when GoTo ignores `page` in the middle of a list: one error at Catch naming day and page, a red status, nothing committed", async () => {
      sandbox.goto.calls.paging = "ignore-page";
      // The busiest user has more calls than a page holds.
      sandbox.goto.calls.setVolume("2026-03-12", 2000);
      await load({ blockSize: "0.002" }, { batchSize: 40 });
      const statuses = statusesOf("calls");
      const writerStatuses = statusesOf("writer");
      helper.getNode("calls").receive({ payload: { from: "2026-03-12" } });
      await eventually(() => caught.length > 0, 30_000, "the error at the Catch node");
      await new Promise((r) => setTimeout(r, 300));
      assert.equal(caught.length, 1);
      assert.equal(caught[0].error.source.id, "calls");
      assert.match(caught[0].error.message, /GoTo's call data for 2026-03-12: page 2 of .+ repeated records already read, so the day was stopped there/);
      assert.equal(statuses.at(-1)?.fill, "red");
      assert.equal(completed.length, 0);
      assert.equal(out.length, 0, "no file reported");
      const blob = container().getBlockBlobClient("2026/03/2026-03-12_call_logs.csv");
      assert.equal(await blob.exists(), false, "nothing of the day was committed");
      assert.ok(((await blob.getBlockList("uncommitted")).uncommittedBlocks ?? []).length > 0, "the blocks staged stay uncommitted");
      await eventually(() => writerStatuses.at(-1)?.text === "source failed: file not written", 5_000, "the writer to say the file was dropped");
    });

    it("leaves no temporary file and no open handle in a folder when a day fails half-way", async () => {
      const dir = mkdtempSync(path.join(os.tmpdir(), "gw-calls-"));
      sandbox.goto.calls.paging = "ignore-page";
      sandbox.goto.calls.setVolume("2026-03-13", 2000);
      await load({ target: "folder", folder: dir, blockSize: "0.001" }, { batchSize: 20 });
      const writerStatuses = statusesOf("writer");
      helper.getNode("calls").receive({ payload: { from: "2026-03-13" } });
      await eventually(() => caught.length > 0, 30_000, "the error at the Catch node");
      // Within moments, not the writer's 15 minutes of idle time.
      await eventually(async () => {
        const left = await leftIn(dir);
        return left.files.length === 0 && left.open.length === 0;
      }, 5_000, "the temporary file to be removed and its handle closed");
      await new Promise((r) => setTimeout(r, 300));
      assert.equal(caught.length, 1, "the reader's error only");
      assert.ok(writerStatuses.some((s) => s.text === "writing"), "the writer had begun the file");
      assert.deepEqual(writerStatuses.at(-1), { fill: "yellow", shape: "ring", text: "source failed: file not written" });
      assert.deepEqual(await leftIn(dir), { files: [], open: [] });
    });

    it("drops the day's temporary file when goto-call-logs is closed half-way through it", async () => {
      const dir = mkdtempSync(path.join(os.tmpdir(), "gw-calls-"));
      sandbox.goto.calls.rateLimit = 3;
      sandbox.goto.calls.setVolume("2026-03-14", 600);
      await load({ target: "folder", folder: dir, blockSize: "0.001" }, { batchSize: 10 });
      helper.getNode("calls").receive({ payload: { from: "2026-03-14" } });
      await eventually(async () => (await leftIn(dir)).files.length > 0, 30_000, "the temporary file");
      await helper.getNode("calls").close(false);
      await eventually(async () => {
        const left = await leftIn(dir);
        return left.files.length === 0 && left.open.length === 0;
      }, 5_000, "the temporary file to be removed and its handle closed");
    });
  });

  it("refuses a range it cannot read with a clear error to the Catch node", async () => {
    await load();
    helper.getNode("calls").receive({ payload: { from: "2026-11-05", to: "2026-11-01" } });
    await eventually(() => caught.length > 0, 10_000, "the error");
    assert.match(caught[0].error.message, /msg.payload.to \(2026-11-01\) is before msg.payload.from/);
  });
});
