import assert from "node:assert/strict";
import { ChildProcess, fork } from "node:child_process";
import path from "node:path";
import { BlobServiceClient } from "@azure/storage-blob";
import { Azurite } from "../../src/sandbox/azurite";
import type { AppendWorkerConfig } from "../fixtures/csv-append-worker";

describe("CSV appends from two processes", function () {
  this.timeout(120_000);
  const azurite = new Azurite();
  const children: ChildProcess[] = [];

  before(() => azurite.start());
  after(async () => {
    for (const child of children) child.kill();
    await azurite.stop();
  });

  function start(config: AppendWorkerConfig): { child: ChildProcess; next(type: string): Promise<any> } {
    const child = fork(path.join(__dirname, "..", "fixtures", "csv-append-worker.js"), [], { env: { ...process.env, GW_APPEND_WORKER: JSON.stringify(config) }, stdio: ["ignore", "inherit", "inherit", "ipc"] });
    children.push(child);
    const inbox: any[] = [];
    const waiting: Array<(m: any) => void> = [];
    child.on("message", (m) => (waiting.length ? waiting.shift()!(m) : inbox.push(m)));
    return { child, next: () => (inbox.length ? Promise.resolve(inbox.shift()) : new Promise((r) => waiting.push(r))) };
  }

  it("a new weekly audit file started by two instances at once gets exactly one header", async () => {
    const container = "audit-race";
    const workers = ["a", "b"].map((instance) => start({ connectionString: azurite.connectionString, container, instance }));
    for (const w of workers) assert.equal((await w.next("ready")).type, "ready");
    const client = BlobServiceClient.fromConnectionString(azurite.connectionString).getContainerClient(container);
    for (let round = 0; round < 8; round++) {
      const filename = `2026-W${String(10 + round)}.csv`;
      const at = Date.now() + 300;
      for (const w of workers) w.child.send({ type: "write", filename, at });
      for (const w of workers) assert.equal((await w.next("written")).type, "written");
      const text = (await client.getBlobClient(`audit/${filename}`).downloadToBuffer()).toString("utf8");
      const lines = text.split("\r\n").filter(Boolean);
      assert.equal(lines.filter((l) => l === "connection,user,reason").length, 1, `one header in ${filename}:\n${text}`);
      assert.equal(lines[0], "connection,user,reason", "the header comes first");
      assert.deepEqual(lines.slice(1).sort(), ["printer,a,released", "printer,b,released"]);
    }
    for (const w of workers) w.child.send({ type: "stop" });
  });
});
