import assert from "node:assert/strict";
import { mkdirSync, mkdtempSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { BlobServiceClient } from "@azure/storage-blob";
import azureStorageAccount from "../../src/nodes/azure-storage-account";
import blobCsvReader from "../../src/nodes/blob-csv-reader";
import { Azurite } from "../../src/sandbox/azurite";
import { eventually, nodeRed } from "../support/node-red";

const helper = nodeRed();

describe("blob-csv-reader", function () {
  this.timeout(60_000);
  const azurite = new Azurite();
  const folder = mkdtempSync(path.join(os.tmpdir(), "gw-reader-"));

  before(async () => {
    await azurite.start();
    const container = BlobServiceClient.fromConnectionString(azurite.connectionString).getContainerClient("support-audit");
    await container.createIfNotExists();
    for (const name of ["audit/2026/2026-W47.csv", "audit/2026/2026-W48.csv", "secrets/keys.csv"]) {
      await container.getBlockBlobClient(name).upload(`file,${name}\r\n`, `file,${name}\r\n`.length);
    }
    mkdirSync(path.join(folder, "audit", "2026"), { recursive: true });
    writeFileSync(path.join(folder, "audit", "2026", "2026-W48.csv"), "a,b\r\n");
    writeFileSync(path.join(folder, "outside.csv"), "no\r\n");
  });
  after(() => azurite.stop());
  afterEach(() => helper.unload());

  async function load(target: "azure" | "folder", action: "list" | "read") {
    const flow = [
      { id: "tab", type: "tab" },
      { id: "storage", type: "azure-storage-account", auth: "connection-string" },
      { id: "reader", type: "blob-csv-reader", z: "tab", x: 100, y: 100, target, storage: "storage", container: "support-audit", folder, prefix: "audit/", action, wires: [["ok"], ["refused"]] },
      { id: "ok", type: "helper", z: "tab", x: 300, y: 100, wires: [] },
      { id: "refused", type: "helper", z: "tab", x: 300, y: 140, wires: [] },
    ];
    await helper.load([azureStorageAccount, blobCsvReader], flow, { storage: { connectionString: azurite.connectionString } });
    const seen = { ok: [] as any[], refused: [] as any[] };
    helper.getNode("ok").on("input", (m: any) => seen.ok.push(m));
    helper.getNode("refused").on("input", (m: any) => seen.refused.push(m));
    return { reader: helper.getNode("reader"), seen };
  }

  it("lists only the files under its folder, newest name first", async () => {
    const { reader, seen } = await load("azure", "list");
    reader.receive({});
    await eventually(() => seen.ok.length === 1, 10_000, "the list");
    assert.deepEqual(seen.ok[0].payload.map((f: any) => f.name), ["audit/2026/2026-W48.csv", "audit/2026/2026-W47.csv"]);
  });

  it("serves a file as a download", async () => {
    const { reader, seen } = await load("azure", "read");
    reader.receive({ filename: "audit/2026/2026-W48.csv" });
    await eventually(() => seen.ok.length === 1, 10_000, "the file");
    assert.equal(seen.ok[0].payload.toString(), "file,audit/2026/2026-W48.csv\r\n");
    assert.equal(seen.ok[0].headers["content-type"], "text/csv; charset=utf-8");
    assert.match(seen.ok[0].headers["content-disposition"], /^attachment; filename="2026-W48.csv"/);
  });

  const refusals: Array<[string, number]> = [
    ["../secrets/keys.csv", 400],
    ["audit/../secrets/keys.csv", 400],
    ["/audit/2026/2026-W48.csv", 400],
    ["secrets/keys.csv", 400],
    ["audit/2026/2026-W01.csv", 404],
  ];
  for (const [name, statusCode] of refusals) {
    it(`refuses ${name} with ${statusCode} and reads nothing`, async () => {
      const { reader, seen } = await load("azure", "read");
      reader.receive({ filename: name });
      await eventually(() => seen.refused.length === 1, 10_000, "the refusal");
      assert.equal(seen.refused[0].statusCode, statusCode);
      assert.equal(seen.ok.length, 0);
    });
  }

  it("reads from a local folder the same way, and refuses what lies outside it", async () => {
    const { reader, seen } = await load("folder", "read");
    reader.receive({ filename: "audit/2026/2026-W48.csv" });
    reader.receive({ filename: "../outside.csv" });
    await eventually(() => seen.ok.length === 1 && seen.refused.length === 1, 10_000, "both answers");
    assert.equal(seen.ok[0].payload.toString(), "a,b\r\n");
    assert.equal(seen.refused[0].statusCode, 400);
  });
});
