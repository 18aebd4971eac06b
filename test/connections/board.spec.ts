import assert from "node:assert/strict";
import { ManualClock } from "../../src/core/clock";
import { Database } from "../../src/core/db/database";
import { ConnectionBoard } from "../../src/connections/board";
import { decide } from "../../src/connections/policy";
import { parseConnections, parseUsers } from "../../src/connections/sources";
import { TestDatabase, createTestDatabase } from "../support/pg";
import { eventually } from "../support/node-red";

describe("connection board policy", () => {
  const jimmy = { user: "Jimmy", since: 1000 };
  it("exclusive: refuses an occupied row and lets its holder release it", () => {
    assert.deepEqual(decide("exclusive", 1, [], { action: "connect", user: "Burt" }), { kind: "add", user: "Burt" });
    assert.equal(decide("exclusive", 1, [jimmy], { action: "connect", user: "Burt" }).kind, "refuse");
    assert.equal(decide("exclusive", 1, [jimmy], { action: "takeover", user: "Burt" }).kind, "refuse");
    assert.equal(decide("exclusive", 1, [jimmy], { action: "release", user: "Burt" }).kind, "refuse");
    assert.equal(decide("exclusive", 1, [jimmy], { action: "release", user: "jimmy" }).kind, "remove");
  });

  it("takeover: an occupied row asks for an explicit takeover, which displaces the holder", () => {
    const asked = decide("takeover", 1, [jimmy], { action: "connect", user: "Burt" });
    assert.deepEqual(asked, { kind: "refuse", code: "takeover-needed", holders: [jimmy] });
    assert.deepEqual(decide("takeover", 1, [jimmy], { action: "takeover", user: "Burt" }), { kind: "replace", user: "Burt", displaced: [jimmy] });
  });

  it("shared: up to N people, then full", () => {
    assert.equal(decide("shared", 2, [jimmy], { action: "connect", user: "Burt" }).kind, "add");
    assert.equal(decide("shared", 2, [jimmy, { user: "Burt", since: 2 }], { action: "connect", user: "Bart" }).kind, "refuse");
    assert.equal(decide("shared", 2, [jimmy], { action: "connect", user: "Jimmy" }).kind, "nothing");
  });
});

describe("connection lists", () => {
  it("reads the original main;sub lines and users.txt", () => {
    assert.deepEqual(parseConnections("vpn main 1;vpn sub 1\n\n# comment\nHôpital Saint-Luc; Radiologie \r\n"), [
      { main: "vpn main 1", sub: "vpn sub 1" },
      { main: "Hôpital Saint-Luc", sub: "Radiologie" },
    ]);
    assert.deepEqual(parseUsers("Burt\nBart\n\n Bort \nBurt\n"), ["Burt", "Bart", "Bort"]);
  });

  it("refuses a line without two fields, and a row named twice, by line number", () => {
    assert.throws(() => parseConnections("a;b\nonly one"), /line 2: expected "main;sub"/);
    assert.throws(() => parseConnections("a;b\nA;B"), /line 2: "A;B" is listed twice/);
  });
});

describe("connection board", () => {
  let testDb: TestDatabase;
  let db: Database;
  const clock = new ManualClock(Date.parse("2026-11-23T09:00:00Z"));

  before(async () => {
    testDb = await createTestDatabase();
    db = await Database.open({ kind: "server", connection: testDb.connection }, { warn: () => undefined });
  });
  after(async () => {
    await db.close();
    await testDb.drop();
  });

  async function board(key: string, policy: "exclusive" | "takeover" | "shared" = "takeover") {
    const b = new ConnectionBoard(db, { board: key, policy, maxPerRow: 2, clock });
    await b.setConnections([{ main: "vpn main 1", sub: "vpn sub 1" }, { main: "vpn main 1", sub: "vpn sub 2" }]);
    await b.setUsers(["Burt", "Jimmy", "<script>alert(1)</script>"]);
    return b;
  }

  it("records a connection and its release with the audit record of the stretch", async () => {
    const b = await board("audit");
    const row = { main: "vpn main 1", sub: "vpn sub 1" };
    assert.deepEqual(await b.act(row, { action: "connect", user: "Burt" }), { ok: true, changed: true, audit: [] });
    await clock.advance(3_723_000);
    const released = await b.act(row, { action: "release", user: "Burt" });
    assert.ok(released.ok);
    assert.deepEqual(released.audit, [
      { main: "vpn main 1", sub: "vpn sub 1", user: "Burt", connectedAt: Date.parse("2026-11-23T09:00:00Z"), releasedAt: Date.parse("2026-11-23T10:02:03Z"), durationSeconds: 3723, releasedBy: "Burt", reason: "released" },
    ]);
    assert.deepEqual((await b.snapshot()).rows[0]!.occupants, []);
  });

  it("never lets a takeover happen silently: it needs the explicit action and leaves an audit record", async () => {
    const b = await board("takeover");
    const row = { main: "vpn main 1", sub: "vpn sub 2" };
    await b.act(row, { action: "connect", user: "Jimmy" });
    const refused = await b.act(row, { action: "connect", user: "Burt" });
    assert.deepEqual(refused.ok ? null : refused.code, "takeover-needed");
    const taken = await b.act(row, { action: "takeover", user: "Burt" });
    assert.ok(taken.ok);
    assert.equal(taken.audit[0]!.user, "Jimmy");
    assert.equal(taken.audit[0]!.releasedBy, "Burt");
    assert.equal(taken.audit[0]!.reason, "taken over");
    assert.deepEqual((await b.snapshot()).rows[1]!.occupants.map((o) => o.user), ["Burt"]);
  });

  it("refuses users who are not on the board and rows that do not exist", async () => {
    const b = await board("unknowns");
    const nobody = await b.act({ main: "vpn main 1", sub: "vpn sub 1" }, { action: "connect", user: "Mallory" });
    assert.equal(nobody.ok ? "" : nobody.code, "unknown-user");
    const nowhere = await b.act({ main: "x", sub: "y" }, { action: "connect", user: "Burt" });
    assert.equal(nowhere.ok ? "" : nowhere.code, "unknown-row");
  });

  it("judges concurrent actions on one row one at a time: one of two connects wins under the exclusive policy", async () => {
    const b = await board("race", "exclusive");
    const row = { main: "vpn main 1", sub: "vpn sub 1" };
    const results = await Promise.all([b.act(row, { action: "connect", user: "Burt" }), b.act(row, { action: "connect", user: "Jimmy" })]);
    assert.equal(results.filter((r) => r.ok).length, 1);
    assert.equal((await b.snapshot()).rows[0]!.occupants.length, 1);
  });

  it("audits the occupant of a row removed from the list", async () => {
    const b = await board("removal");
    await b.act({ main: "vpn main 1", sub: "vpn sub 2" }, { action: "connect", user: "Jimmy" });
    const audit = await b.setConnections([{ main: "vpn main 1", sub: "vpn sub 1" }]);
    assert.deepEqual(audit.map((a) => [a.user, a.reason]), [["Jimmy", "removed from the list"]]);
    assert.equal((await b.snapshot()).rows.length, 1);
  });

  it("tells another instance's board of every change through the database", async () => {
    const other = await Database.open({ kind: "server", connection: testDb.connection }, { warn: () => undefined });
    try {
      const here = await board("shared-board");
      const there = new ConnectionBoard(other, { board: "shared-board", policy: "takeover", maxPerRow: 1, clock });
      let heard = 0;
      await there.subscribe(() => heard++);
      await here.act({ main: "vpn main 1", sub: "vpn sub 1" }, { action: "connect", user: "Burt" });
      await eventually(() => heard > 0, 5000, "the notification");
      assert.deepEqual((await there.snapshot()).rows[0]!.occupants.map((o) => o.user), ["Burt"]);
    } finally {
      await other.close();
    }
  });
});
