import assert from "node:assert/strict";
import { ConfigError, InputError } from "../../src/core/errors";
import { calendarDay, daysOfRange, timeZone } from "../../src/goto/days";

const HOUR = 3_600_000;

describe("calendar days in a time zone", () => {
  it("gives the Brussels day of the spring clock change 23 hours, from 23:00 UTC the evening before", () => {
    const day = calendarDay("2026-03-29", "Europe/Brussels");
    assert.equal(day.start.toISOString(), "2026-03-28T23:00:00.000Z");
    assert.equal(day.end.toISOString(), "2026-03-29T22:00:00.000Z");
    assert.equal((day.end.getTime() - day.start.getTime()) / HOUR, 23);
  });

  it("gives the Brussels day of the autumn clock change 25 hours", () => {
    const day = calendarDay("2026-10-25", "Europe/Brussels");
    assert.equal(day.start.toISOString(), "2026-10-24T22:00:00.000Z");
    assert.equal(day.end.toISOString(), "2026-10-25T23:00:00.000Z");
  });

  it("counts startDay and days as the original did: back from yesterday, listed oldest first", () => {
    // 23:30 UTC on 22 November is already the 23rd in Brussels, so yesterday there is the 22nd.
    const now = Date.parse("2026-11-22T23:30:00Z");
    assert.deepEqual(daysOfRange({}, "Europe/Brussels", now), ["2026-11-22"]);
    assert.deepEqual(daysOfRange({}, "UTC", now), ["2026-11-21"]);
    assert.deepEqual(daysOfRange({ startDay: -1, days: 3 }, "Europe/Brussels", now), ["2026-11-20", "2026-11-21", "2026-11-22"]);
    assert.equal(daysOfRange({ startDay: -1, days: 30 }, "UTC", now).length, 30);
  });

  it("takes explicit dates, both ends included", () => {
    assert.deepEqual(daysOfRange({ from: "2026-10-30", to: "2026-11-02" }, "UTC", Date.parse("2026-12-01T00:00:00Z")), ["2026-10-30", "2026-10-31", "2026-11-01", "2026-11-02"]);
  });

  it("refuses ranges a person got wrong, as invalid input", () => {
    const now = Date.parse("2026-11-22T12:00:00Z");
    assert.throws(() => daysOfRange({ from: "2026-11-05", to: "2026-11-01" }, "UTC", now), InputError);
    assert.throws(() => daysOfRange({ from: "22/11/2026" }, "UTC", now), /must be a date such as 2026-11-22/);
    assert.throws(() => daysOfRange({ startDay: 2 }, "UTC", now), InputError);
    assert.throws(() => daysOfRange({ days: 0 }, "UTC", now), InputError);
    assert.throws(() => daysOfRange({ from: "2026-12-01" }, "UTC", now), /has not begun yet/);
    assert.throws(() => daysOfRange({ startDay: -1, days: 500 }, "UTC", now), /more than the 400/);
  });

  it("knows IANA zones and refuses others as a configuration mistake", () => {
    assert.equal(timeZone("Europe/Brussels"), "Europe/Brussels");
    assert.ok(timeZone(""));
    assert.throws(() => timeZone("Brussels/Europe"), ConfigError);
  });
});
