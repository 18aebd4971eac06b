import assert from "node:assert/strict";
import { ianaZone, zonedTimeToInstant } from "../../src/core/time";
import { atMoment, instantOf, isChange, nextBoundary, normaliseStatus, observe, plainText } from "../../src/graph/out-of-office";
import { parseWatchRequest } from "../../src/graph/requests";

describe("time in named zones", () => {
  it("reads Windows zone names as IANA zones", () => {
    assert.equal(ianaZone("Romance Standard Time"), "Europe/Paris");
    assert.equal(ianaZone("Europe/Brussels"), "Europe/Brussels");
    assert.equal(ianaZone("UTC"), "UTC");
    assert.equal(ianaZone("Nowhere Standard Time"), undefined);
  });

  it("turns a wall-clock time in a zone into the right instant in winter and in summer", () => {
    assert.equal(new Date(zonedTimeToInstant("2026-01-15T09:00:00", "Europe/Brussels")).toISOString(), "2026-01-15T08:00:00.000Z");
    assert.equal(new Date(zonedTimeToInstant("2026-07-15T09:00:00", "Europe/Brussels")).toISOString(), "2026-07-15T07:00:00.000Z");
    assert.equal(new Date(zonedTimeToInstant("2026-07-15T09:00:00.5", "America/New_York")).toISOString(), "2026-07-15T13:00:00.500Z");
  });

  it("moves a time skipped by the spring change forward, and reads a repeated one with the autumn offset", () => {
    // 29 March 2026, Brussels: 02:00 CET jumps to 03:00 CEST; 25 October 2026: 03:00 CEST falls back to 02:00 CET.
    assert.equal(new Date(zonedTimeToInstant("2026-03-29T02:30:00", "Europe/Brussels")).toISOString(), "2026-03-29T01:30:00.000Z");
    assert.equal(new Date(zonedTimeToInstant("2026-10-25T02:30:00", "Europe/Brussels")).toISOString(), "2026-10-25T01:30:00.000Z");
  });
});

describe("automatic replies", () => {
  const html = (t: string) => `<html>\n<body>\n<div>${t}</div>\n</body>\n</html>\n`;
  const window = (start: string, end: string, timeZone: string) => ({
    status: "Scheduled",
    externalAudience: "All",
    scheduledStartDateTime: { dateTime: start, timeZone },
    scheduledEndDateTime: { dateTime: end, timeZone },
    externalReplyMessage: html("Back on Monday"),
    internalReplyMessage: html("Back on Monday &amp; reachable by phone"),
  });

  it("normalises the statuses whatever their case", () => {
    assert.equal(normaliseStatus("AlwaysEnabled"), "alwaysEnabled");
    assert.equal(normaliseStatus("scheduled"), "scheduled");
    assert.equal(normaliseStatus("Disabled"), "disabled");
    assert.equal(normaliseStatus(undefined), "disabled");
  });

  it("is out of office during a scheduled window only, read in the setting's own Windows time zone", () => {
    const setting = window("2026-11-23T09:00:00.0000000", "2026-11-23T17:00:00.0000000", "Romance Standard Time");
    assert.equal(observe(setting, Date.parse("2026-11-23T07:59:00Z")).outOfOffice, false);
    assert.equal(observe(setting, Date.parse("2026-11-23T08:00:00Z")).outOfOffice, true);
    assert.equal(observe(setting, Date.parse("2026-11-23T15:59:59Z")).outOfOffice, true);
    assert.equal(observe(setting, Date.parse("2026-11-23T16:00:00Z")).outOfOffice, false);
    const o = observe(setting, 0);
    assert.equal(o.scheduledStart, "2026-11-23T08:00:00.000Z");
    assert.equal(o.audience, "all");
  });

  it("shows no window for a setting that is not scheduled, even when Graph sends its dates", () => {
    const o = observe({ ...window("2016-03-19T02:00:00.0000000", "2016-03-20T02:00:00.0000000", "UTC"), status: "alwaysEnabled" }, Date.parse("2026-01-01T00:00:00Z"));
    assert.equal(o.outOfOffice, true);
    assert.equal(o.scheduledStart, null);
    assert.equal(nextBoundary(o, 0), undefined);
  });

  it("opens and closes a window as time passes, with no new setting", () => {
    const o = observe(window("2026-11-23T09:00:00.0000000", "2026-11-23T17:00:00.0000000", "UTC"), Date.parse("2026-11-23T08:00:00Z"));
    assert.equal(nextBoundary(o, Date.parse("2026-11-23T08:00:00Z")), Date.parse("2026-11-23T09:00:00Z"));
    assert.equal(atMoment(o, Date.parse("2026-11-23T09:00:00Z")).outOfOffice, true);
    assert.equal(nextBoundary(o, Date.parse("2026-11-23T09:00:00Z")), Date.parse("2026-11-23T17:00:00Z"));
    assert.equal(atMoment(o, Date.parse("2026-11-23T17:00:00Z")).outOfOffice, false);
  });

  it("sees a change in status, in being out, or in a reply's text, but not in how Exchange wrote the HTML", () => {
    const now = Date.parse("2026-11-23T10:00:00Z");
    const base = observe({ status: "alwaysEnabled", externalReplyMessage: html("Away"), internalReplyMessage: "" }, now);
    assert.equal(isChange(base, observe({ status: "AlwaysEnabled", externalReplyMessage: "<p>Away</p>", internalReplyMessage: "" }, now)), false);
    assert.equal(isChange(base, observe({ status: "alwaysEnabled", externalReplyMessage: html("Away until Friday"), internalReplyMessage: "" }, now)), true);
    assert.equal(isChange(base, observe({ status: "disabled", externalReplyMessage: html("Away"), internalReplyMessage: "" }, now)), true);
  });

  it("gives reply messages as plain text with entities decoded", () => {
    assert.equal(plainText(html("Back on Monday &amp; reachable by <b>phone</b>")), "Back on Monday & reachable by phone");
    assert.equal(instantOf({ dateTime: "2019-04-17T16:00:00.0000000", timeZone: "UTC" }), Date.parse("2019-04-17T16:00:00Z"));
  });
});

describe("watch-list requests", () => {
  it("reads the original service's body, with booleans or the strings True and False", () => {
    assert.deepEqual(parseWatchRequest(undefined, { email: "a@b.co", status: "True" }), { kind: "watch", email: "a@b.co" });
    assert.deepEqual(parseWatchRequest(undefined, { email: "a@b.co", status: false }), { kind: "unwatch", email: "a@b.co" });
    assert.deepEqual(parseWatchRequest(undefined, '{"email":"a@b.co","status":"false"}'), { kind: "unwatch", email: "a@b.co" });
  });

  it("takes a whole list, a poll and a listing", () => {
    assert.deepEqual(parseWatchRequest(undefined, ["a@b.co", " c@d.co "]), { kind: "replace", emails: ["a@b.co", "c@d.co"] });
    assert.deepEqual(parseWatchRequest("set", { users: ["a@b.co"] }), { kind: "replace", emails: ["a@b.co"] });
    assert.deepEqual(parseWatchRequest("poll", undefined), { kind: "poll" });
  });

  it("refuses what it cannot read, saying what to send", () => {
    assert.throws(() => parseWatchRequest(undefined, { email: "a@b.co", status: "maybe" }), /must be true or false/);
    assert.throws(() => parseWatchRequest(undefined, { status: true }), /email is missing/);
    assert.throws(() => parseWatchRequest(undefined, 42), /send \{ "email"/);
  });
});
