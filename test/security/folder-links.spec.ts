import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync, symlinkSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { parseColumns } from "../../src/blob/csv";
import { CsvWriter } from "../../src/blob/csv-writer";
import { FolderTarget } from "../../src/blob/folder";
import blobCsvReader from "../../src/nodes/blob-csv-reader";
import { eventually, nodeRed } from "../support/node-red";

const helper = nodeRed();

describe("security: the folder target never reads or writes through a symbolic link", function () {
  this.timeout(60_000);
  const base = mkdtempSync(path.join(os.tmpdir(), "gw-links-"));
  const folder = path.join(base, "reports");
  const outside = path.join(base, "elsewhere");
  const secret = path.join(outside, "secret.csv");

  before(() => {
    mkdirSync(path.join(folder, "audit", "2026"), { recursive: true });
    mkdirSync(outside, { recursive: true });
    writeFileSync(secret, "password,hunter2\r\n");
    writeFileSync(path.join(folder, "audit", "2026", "2026-W48.csv"), "a,b\r\n");
    symlinkSync("/etc/passwd", path.join(folder, "audit", "link.csv"));
    symlinkSync(secret, path.join(folder, "audit", "secret.csv"));
    symlinkSync(outside, path.join(folder, "audit", "elsewhere"));
    // A link in a parent path component, and a relative one that stays textually inside the folder.
    symlinkSync(outside, path.join(folder, "audit", "2025"));
    symlinkSync("2026/2026-W48.csv", path.join(folder, "audit", "copy.csv"));
    execFileSync("mkfifo", [path.join(folder, "audit", "pipe.csv")]);
  });
  afterEach(() => helper.unload());

  async function reader(action: "list" | "read") {
    const flow = [
      { id: "tab", type: "tab" },
      { id: "reader", type: "blob-csv-reader", z: "tab", target: "folder", folder, prefix: "audit/", action, wires: [["ok"], ["refused"]] },
      { id: "ok", type: "helper", z: "tab", wires: [] },
      { id: "refused", type: "helper", z: "tab", wires: [] },
    ];
    await helper.load([blobCsvReader], flow);
    const seen = { ok: [] as any[], refused: [] as any[] };
    helper.getNode("ok").on("input", (m: any) => seen.ok.push(m));
    helper.getNode("refused").on("input", (m: any) => seen.refused.push(m));
    return { node: helper.getNode("reader"), seen };
  }

  for (const name of ["audit/link.csv", "audit/secret.csv", "audit/elsewhere/secret.csv", "audit/2025/secret.csv", "audit/copy.csv", "audit/pipe.csv"]) {
    it(`refuses to serve ${name}, and serves the regular file beside it`, async () => {
      const { node, seen } = await reader("read");
      node.receive({ filename: name });
      await eventually(() => seen.refused.length === 1, 10_000, "the refusal");
      assert.ok(seen.refused[0].statusCode >= 400 && seen.refused[0].statusCode < 500, `answered ${seen.refused[0].statusCode}`);
      assert.doesNotMatch(JSON.stringify(seen.refused[0].payload), /root:|hunter2|a,b/);
      node.receive({ filename: "audit/2026/2026-W48.csv" });
      await eventually(() => seen.ok.length === 1, 10_000, "the regular file");
      assert.equal(seen.ok[0].payload.toString(), "a,b\r\n");
      assert.equal(seen.ok.length, 1, "nothing else was served");
    });
  }

  it("lists only the regular files, none through a link", async () => {
    const { node, seen } = await reader("list");
    node.receive({});
    await eventually(() => seen.ok.length === 1, 10_000, "the list");
    assert.deepEqual(seen.ok[0].payload.map((f: any) => f.name), ["audit/2026/2026-W48.csv"]);
    const target = new FolderTarget(folder);
    await assert.rejects(target.list("audit/2025/"), /link/);
    await assert.rejects(target.list("audit/elsewhere/x"), /link/);
  });

  it("writes no file through a linked folder or over a linked file, in either mode", async () => {
    const target = new FolderTarget(folder);
    const format = { columns: parseColumns("user", []) };
    const attempts: Array<[string, "replace" | "append"]> = [
      ["audit/2025/secret.csv", "replace"],
      ["audit/2025/new.csv", "replace"],
      ["audit/2025/secret.csv", "append"],
      ["audit/secret.csv", "append"],
      ["audit/elsewhere/more/new.csv", "append"],
    ];
    for (const [file, mode] of attempts) {
      const writer = new CsvWriter({ target, path: file, mode, format, timeZone: "UTC" });
      await assert.rejects(writer.write({ rows: [{ user: "mallory" }], date: "2026-11-22" }), /link/, `${mode} ${file}`);
    }
    assert.equal(readFileSync(secret, "utf8"), "password,hunter2\r\n");
    assert.deepEqual(execFileSync("ls", ["-A", outside], { encoding: "utf8" }).trim().split("\n"), ["secret.csv"]);
    // A replaced link is replaced by a regular file in the folder; its target stays as it was.
    const writer = new CsvWriter({ target, path: "audit/secret.csv", mode: "replace", format, timeZone: "UTC" });
    await writer.write({ rows: [{ user: "ann" }], date: "2026-11-22" });
    assert.equal(readFileSync(secret, "utf8"), "password,hunter2\r\n");
    assert.equal(readFileSync(path.join(folder, "audit", "secret.csv"), "utf8"), "user\r\nann\r\n");
  });
});
