import assert from "node:assert/strict";
import { mkdtempSync, promises as fs } from "node:fs";
import os from "node:os";
import path from "node:path";
import { ContainerSASPermissions, StorageSharedKeyCredential, generateBlobSASQueryParameters } from "@azure/storage-blob";
import { parse } from "csv-parse/sync";
import { AzureStorageAccount } from "../../src/blob/azure";
import { parseColumns } from "../../src/blob/csv";
import { CsvWriter, CsvWriterOptions, DEFAULT_PATH } from "../../src/blob/csv-writer";
import { FolderTarget } from "../../src/blob/folder";
import { CALL_LOG_COLUMNS } from "../../src/goto/types";
import { AZURITE_ACCOUNT, Azurite } from "../../src/sandbox/azurite";

const format = { columns: parseColumns("", CALL_LOG_COLUMNS) };
const row = (i: number) => ({ user: `Zoë ${i}`, callerName: "ACME, Inc.", duration: "0:00:10" });

describe("CSV writer", () => {
  const azurite = new Azurite();
  let account: AzureStorageAccount;
  before(async () => {
    await azurite.start();
    account = new AzureStorageAccount({ auth: "connection-string", connectionString: azurite.connectionString });
  });
  after(() => azurite.stop());

  function writer(options: Partial<CsvWriterOptions> & { container?: string } = {}): CsvWriter {
    return new CsvWriter({ target: account.target(options.container ?? "logs"), path: DEFAULT_PATH, mode: "replace", format, timeZone: "UTC", ...options });
  }

  async function text(container: string, name: string): Promise<string> {
    return (await account.container(container).getBlobClient(name).downloadToBuffer()).toString("utf8");
  }

  it("commits the parts of a file as one blob at the last part, in index order, whatever order they came in", async () => {
    const w = writer({ container: "parts", blockBytes: 200 });
    const parts = [0, 1, 2].map((index) => ({ rows: [row(index * 2), row(index * 2 + 1)], parts: { id: "day-1", index, ...(index === 2 ? { count: 3 } : {}) }, date: "2026-11-22" }));
    const second = w.write(parts[1]!);
    const third = w.write(parts[2]!);
    const blob = account.container("parts").getBlobClient("2026/11/2026-11-22_call_logs.csv");
    assert.equal(await blob.exists(), false, "nothing before the first part");
    const first = await w.write(parts[0]!);
    assert.equal(first, undefined);
    assert.equal(await second, undefined);
    const result = await third;
    assert.deepEqual({ ...result, size: 0 }, { name: "2026/11/2026-11-22_call_logs.csv", rows: 6, mode: "replace", container: "parts", size: 0 });
    const csv = await text("parts", result!.name);
    assert.equal(result!.size, Buffer.byteLength(csv));
    const rows = parse(csv, { columns: true }) as Array<Record<string, string>>;
    assert.deepEqual(rows.map((r) => r.user), ["Zoë 0", "Zoë 1", "Zoë 2", "Zoë 3", "Zoë 4", "Zoë 5"]);
    assert.equal(rows[0]!.callerName, "ACME, Inc.");
  });

  it("shows no blob while blocks are staged, and the old blob until the new one is committed", async () => {
    const w = writer({ container: "staged", blockBytes: 10 });
    await w.write({ rows: [row(1)], date: "2026-11-23" });
    const name = "2026/11/2026-11-23_call_logs.csv";
    const before = await text("staged", name);
    await w.write({ rows: [row(7), row(8)], parts: { id: "rerun", index: 0 }, date: "2026-11-23" });
    await w.write({ rows: [row(9)], parts: { id: "rerun", index: 1 }, date: "2026-11-23" });
    assert.equal(await text("staged", name), before, "staged blocks are not visible");
    await w.write({ rows: [], parts: { id: "rerun", index: 2, count: 3 }, date: "2026-11-23" });
    const after = parse(await text("staged", name), { columns: true }) as Array<Record<string, string>>;
    assert.deepEqual(after.map((r) => r.user), ["Zoë 7", "Zoë 8", "Zoë 9"]);
    const names = [];
    for await (const b of account.container("staged").listBlobsFlat()) names.push(b.name);
    assert.deepEqual(names, [name]);
  });

  it("appends rows to an append blob and writes the header once, when it creates the blob", async () => {
    const w = writer({ container: "audit", mode: "append", path: "audit/{yyyy}/{yyyy}-W{ww}.csv", format: { columns: parseColumns("main,sub,user", []) } });
    const first = await w.write({ rows: { main: "A", sub: "1", user: "=cmd" }, date: "2029-12-31T10:00:00Z" });
    const second = await w.write({ rows: [{ main: "B", sub: "2", user: "Zoë" }], date: "2030-01-02T10:00:00Z" });
    assert.equal(first!.name, "audit/2030/2030-W01.csv");
    assert.equal(second!.name, first!.name);
    const csv = await text("audit", first!.name);
    assert.equal(csv, "main,sub,user\r\nA,1,'=cmd\r\nB,2,Zoë\r\n");
    assert.equal(second!.size, Buffer.byteLength(csv));
  });

  it("writes an empty day as a file with the header only", async () => {
    const result = await writer({ container: "empty" }).write({ rows: [], parts: { id: "none", index: 0, count: 1 }, date: "2026-11-24" });
    assert.equal(result!.rows, 0);
    assert.equal((await text("empty", result!.name)).split("\r\n")[0], CALL_LOG_COLUMNS.join(","));
  });

  it("signs in with an account name and key at an endpoint, or with a container SAS URL", async () => {
    const byKey = new AzureStorageAccount({ auth: "key", accountName: AZURITE_ACCOUNT.name, accountKey: AZURITE_ACCOUNT.key, endpoint: azurite.blobUrl });
    const written = await new CsvWriter({ target: byKey.target("keyed"), path: "k.csv", mode: "replace", format, timeZone: "UTC" }).write({ rows: [row(1)] });
    assert.equal(written!.container, "keyed");

    const sas = generateBlobSASQueryParameters(
      { containerName: "keyed", permissions: ContainerSASPermissions.parse("racw"), expiresOn: new Date(Date.now() + 3_600_000) },
      new StorageSharedKeyCredential(AZURITE_ACCOUNT.name, AZURITE_ACCOUNT.key),
    ).toString();
    const bySas = new AzureStorageAccount({ auth: "sas", sasUrl: `${azurite.blobUrl}/keyed?${sas}` });
    const viaSas = await new CsvWriter({ target: bySas.target(undefined), path: "s.csv", mode: "replace", format, timeZone: "UTC" }).write({ rows: [row(2)] });
    assert.deepEqual([viaSas!.container, (parse(await text("keyed", "s.csv"), { columns: true }) as Array<Record<string, string>>)[0]!.user], ["keyed", "Zoë 2"]);
    assert.throws(() => bySas.target("other"), /the SAS URL is for container 'keyed'/);
  });

  it("leaves the staged blocks of an abandoned file uncommitted, and the old blob as it was", async () => {
    const w = writer({ container: "abandoned", blockBytes: 10, idleMs: 60 * 60_000 });
    const name = "2026/11/2026-11-25_call_logs.csv";
    await w.write({ rows: [row(1)], date: "2026-11-25" });
    const before = await text("abandoned", name);
    await w.write({ rows: [row(2), row(3)], parts: { id: "gone", index: 0 }, date: "2026-11-25" });
    await w.write({ rows: [row(4)], parts: { id: "gone", index: 1 }, date: "2026-11-25" });
    assert.equal(await w.abandon("gone"), true);
    assert.equal(await w.write({ rows: [], parts: { id: "gone", index: 2, count: 3 }, date: "2026-11-25" }), undefined);
    assert.equal(await text("abandoned", name), before, "the blob is the one from before");
    const blocks = await account.container("abandoned").getBlockBlobClient(name).getBlockList("uncommitted");
    assert.ok((blocks.uncommittedBlocks ?? []).length >= 2, "the staged blocks are still uncommitted");
  });

  it("refuses a payload that is not rows, as invalid input", async () => {
    await assert.rejects(writer().write({ rows: "a,b,c" }), /msg.payload must be an array of rows/);
  });

  describe("to a local folder", () => {
    let dir: string;
    beforeEach(() => {
      dir = mkdtempSync(path.join(os.tmpdir(), "gw-csv-"));
    });

    const folderWriter = (options: Partial<CsvWriterOptions> = {}) => new CsvWriter({ target: new FolderTarget(dir), path: DEFAULT_PATH, mode: "replace", format, timeZone: "UTC", ...options });

    async function files(): Promise<string[]> {
      return (await fs.readdir(dir, { recursive: true, withFileTypes: true })).filter((e) => e.isFile()).map((e) => path.relative(dir, path.join(e.parentPath, e.name))).sort();
    }

    it("writes a temporary file and renames it into place at the last part", async () => {
      const w = folderWriter({ blockBytes: 10 });
      await w.write({ rows: [row(1)], parts: { id: "f", index: 0 }, date: "2026-11-22" });
      const during = await files();
      assert.equal(during.length, 1);
      assert.match(during[0]!, /^2026\/11\/\.2026-11-22_call_logs\.csv\.[0-9a-f]+\.tmp$/);
      const result = await w.write({ rows: [row(2)], parts: { id: "f", index: 1, count: 2 }, date: "2026-11-22" });
      assert.deepEqual(await files(), ["2026/11/2026-11-22_call_logs.csv"]);
      const csv = await fs.readFile(path.join(dir, result!.name), "utf8");
      assert.equal(result!.size, Buffer.byteLength(csv));
      assert.equal(result!.folder, dir);
      assert.equal((parse(csv, { columns: true }) as unknown[]).length, 2);
    });

    it("leaves nothing behind of a file abandoned half-way", async () => {
      const w = folderWriter({ blockBytes: 10 });
      await w.write({ rows: [row(1)], parts: { id: "g", index: 0 }, date: "2026-11-22" });
      await w.close();
      assert.deepEqual(await files(), []);
    });

    /** Files this process holds open under the test's folder. */
    async function openHandles(): Promise<string[]> {
      const fds = await fs.readdir("/proc/self/fd");
      const links = await Promise.all(fds.map((fd) => fs.readlink(`/proc/self/fd/${fd}`).catch(() => "")));
      return links.filter((l) => l.startsWith(dir + path.sep));
    }

    it("removes the temporary file and closes its handle at once when the source abandons the file", async () => {
      const w = folderWriter({ blockBytes: 10, idleMs: 60 * 60_000 });
      await w.write({ rows: [row(1)], parts: { id: "h", index: 0 }, date: "2026-11-22" });
      await w.write({ rows: [row(2)], parts: { id: "h", index: 1 }, date: "2026-11-22" });
      const later = w.write({ rows: [row(4)], parts: { id: "h", index: 3 }, date: "2026-11-22" });
      assert.equal((await files()).length, 1, "the temporary file is there while the file is written");
      assert.equal((await openHandles()).length, 1);
      assert.equal(await w.abandon("h"), true);
      assert.equal(await later, undefined, "a part waiting ends quietly: the source tells its own error");
      assert.deepEqual(await files(), []);
      assert.deepEqual(await openHandles(), []);
      // Parts still on their way are dropped, and nothing is written of the file.
      assert.equal(await w.write({ rows: [row(3)], parts: { id: "h", index: 2 }, date: "2026-11-22" }), undefined);
      assert.equal(await w.write({ rows: [row(5)], parts: { id: "h", index: 4, count: 5 }, date: "2026-11-22" }), undefined);
      assert.deepEqual(await files(), []);
    });

    it("drops parts of a file abandoned before its first part came", async () => {
      const w = folderWriter();
      assert.equal(await w.abandon("early"), false);
      assert.equal(await w.write({ rows: [row(1)], parts: { id: "early", index: 0, count: 1 }, date: "2026-11-22" }), undefined);
      assert.deepEqual(await files(), []);
    });

    it("removes a temporary file created while the file was being abandoned", async () => {
      const w = folderWriter({ blockBytes: 10 });
      const first = w.write({ rows: [row(1)], parts: { id: "race", index: 0 }, date: "2026-11-22" });
      await w.abandon("race"); // while the folder and the temporary file are being created
      assert.equal(await first, undefined);
      assert.deepEqual(await files(), []);
      assert.deepEqual(await openHandles(), []);
    });

    it("appends with the header once", async () => {
      const w = folderWriter({ mode: "append", path: "audit.csv", format: { columns: parseColumns("a", []) } });
      await w.write({ rows: [{ a: 1 }] });
      await w.write({ rows: [{ a: 2 }, { a: 3 }] });
      assert.equal(await fs.readFile(path.join(dir, "audit.csv"), "utf8"), "a\r\n1\r\n2\r\n3\r\n");
    });
  });
});
