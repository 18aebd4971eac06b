import assert from "node:assert/strict";
import { ConfigError, InputError } from "../../src/core/errors";
import { DEFAULT_PATH } from "../../src/blob/csv-writer";
import { checkTemplate, dayOf, renderPath } from "../../src/blob/path-template";

describe("file path templates", () => {
  const on = (date: string, zone = "Europe/Brussels") => ({ day: dayOf(date, zone) });

  it("lays files out per year and month by default, as the original did", () => {
    assert.equal(renderPath(DEFAULT_PATH, on("2026-11-22")), "2026/11/2026-11-22_call_logs.csv");
  });

  it("keeps an ISO week in one file across a year's end", () => {
    const weekly = "audit/{yyyy}/{yyyy}-W{ww}.csv";
    // Monday 31 December 2029 is in week 1 of 2030; Friday 1 January 2027 in week 53 of 2026.
    assert.equal(renderPath(weekly, on("2029-12-31")), "audit/2030/2030-W01.csv");
    assert.equal(renderPath(weekly, on("2030-01-06")), "audit/2030/2030-W01.csv");
    assert.equal(renderPath(weekly, on("2027-01-01")), "audit/2026/2026-W53.csv");
    assert.equal(renderPath("{GGGG}-W{ww}/{date}.csv", on("2027-01-01")), "2026-W53/2027-01-01.csv");
  });

  it("takes the week of an event's timestamp in the configured zone", () => {
    // Sunday 23:30 UTC is already Monday in Brussels: the next week.
    const at = "2026-11-22T23:30:00Z";
    assert.equal(renderPath("{GGGG}-W{ww}", { day: dayOf(at, "UTC") }), "2026-W47");
    assert.equal(renderPath("{GGGG}-W{ww}", { day: dayOf(at, "Europe/Brussels") }), "2026-W48");
  });

  it("refuses unknown tokens and paths that climb out", () => {
    assert.throws(() => checkTemplate("{yyyy}/{month}.csv"), ConfigError);
    assert.throws(() => renderPath("../{filename}", { ...on("2026-11-22"), filename: "x.csv" }), InputError);
    assert.throws(() => renderPath("{filename}", { ...on("2026-11-22"), filename: "../../etc/passwd" }), InputError);
    assert.throws(() => renderPath("/abs/{date}.csv", on("2026-11-22")), InputError);
    assert.throws(() => renderPath("{filename}", on("2026-11-22")), /no msg.filename/);
  });
});
