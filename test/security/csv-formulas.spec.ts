import assert from "node:assert/strict";
import { mkdtempSync, promises as fs } from "node:fs";
import os from "node:os";
import path from "node:path";
import { parse } from "csv-parse/sync";
import { parseColumns } from "../../src/blob/csv";
import { CsvWriter, DEFAULT_PATH } from "../../src/blob/csv-writer";
import { FolderTarget } from "../../src/blob/folder";

// What a spreadsheet runs as a formula when a cell, or any line of it, starts with it.
const FORMULA = /^[=+\-@\t\r]/;
const PAYLOADS = [
  "Eve\r=1+1+cmd|calc!A0",
  "Eve\n=1+1+cmd|calc!A0",
  "Eve\r\n@SUM(A1)",
  "=HYPERLINK(\"http://x\")",
  "+cmd|' /C calc'!A0",
  "-2+3",
  "@SUM(1)",
  "\t=1",
  "\r=1",
  "a\r\r=1",
  "a\n\n+1",
  "ok\n-1+1",
  "quote \" and, comma\r=2",
];

describe("security: no CSV cell the package writes can be read as a formula", () => {
  it("quotes every cell with a line break and neutralises every line start, as a strict parser reads the file", async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), "gw-csv-sec-"));
    const columns = parseColumns("user:User,connection:=Connection,reason", []);
    const writer = new CsvWriter({ target: new FolderTarget(dir), path: DEFAULT_PATH, mode: "replace", format: { columns }, timeZone: "UTC" });
    const rows = PAYLOADS.map((p, i) => ({ user: p, connection: `c${i}\r+1`, reason: { note: p } }));
    const result = await writer.write({ rows, date: "2026-11-22" });
    const text = await fs.readFile(path.join(dir, result!.name), "utf8");

    const records = parse(text, { relax_quotes: false, relax_column_count: false, skip_empty_lines: false }) as string[][];
    assert.equal(records.length, rows.length + 1, "one record per row, plus the header");
    for (const record of records) {
      assert.equal(record.length, 3);
      for (const cell of record) {
        for (const line of cell.split(/\r\n|\r|\n/)) assert.doesNotMatch(line, FORMULA, `a line of cell ${JSON.stringify(cell)} starts a formula`);
      }
    }
    // Every physical line of the file that a lax reader would take as a row starts harmlessly too.
    for (const line of text.split(/\r\n|\r|\n/)) assert.doesNotMatch(line, /^[=+\-@\t]/, `the line ${JSON.stringify(line)} starts a formula`);
    // Nothing was lost: each cell is the value with a quote before each formula start.
    assert.equal(records[1]![0], "Eve\r'=1+1+cmd|calc!A0");
  });

  it("quotes and neutralises a formula after a vertical tab, form feed, separator, NEL or Unicode line break", async () => {
    // Python's splitlines, JavaScript and Unicode-aware importers end a line at each of these.
    const breaks = ["\v", "\f", "\x1c", "\x1d", "\x1e", "\u0085", "\u2028", "\u2029", "\r", "\n", "\r\n"];
    const splitLines = /\r\n|[\r\n\v\f\x1c\x1d\x1e\u0085\u2028\u2029]/;
    const dir = mkdtempSync(path.join(os.tmpdir(), "gw-csv-sec-"));
    const columns = parseColumns("user,connection,reason", []);
    const writer = new CsvWriter({ target: new FolderTarget(dir), path: DEFAULT_PATH, mode: "replace", format: { columns }, timeZone: "UTC" });
    const rows = breaks.flatMap((b) =>
      ["=", "+", "-", "@", "\t="].map((start) => ({ user: `Eve${b}${start}1+1+cmd|calc!A0`, connection: `${b}${start}2`, reason: `a${b}${b}${start}3` })),
    );
    const result = await writer.write({ rows, date: "2026-11-22" });
    const text = await fs.readFile(path.join(dir, result!.name), "utf8");

    const records = parse(text, { relax_quotes: false, relax_column_count: false, skip_empty_lines: false }) as string[][];
    assert.equal(records.length, rows.length + 1, "one record per row, plus the header");
    for (const record of records.slice(1)) {
      assert.equal(record.length, 3);
      for (const cell of record) {
        for (const line of cell.split(splitLines)) assert.doesNotMatch(line, FORMULA, `a line of cell ${JSON.stringify(cell)} starts a formula`);
      }
    }
    // The file split at every one of those characters, quotes and all, starts no line with a formula.
    for (const line of text.split(splitLines)) assert.doesNotMatch(line, /^[=+\-@\t]/, `the line ${JSON.stringify(line)} starts a formula`);
    assert.equal(records[1]![0], "Eve\v'=1+1+cmd|calc!A0");
  });
});
