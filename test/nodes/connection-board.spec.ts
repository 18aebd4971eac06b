import assert from "node:assert/strict";
import { mkdtempSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import connectionBoard from "../../src/nodes/connection-board";
import postgresDatabase from "../../src/nodes/postgres-database";
import { TestDatabase, createTestDatabase } from "../support/pg";
import { DATABASE_KINDS, databaseNode, kindLabel } from "../support/databases";
import { eventually, nodeRed } from "../support/node-red";

const helper = nodeRed();

for (const kind of DATABASE_KINDS) describe(`connection-board (${kindLabel(kind)})`, function () {
  this.timeout(90_000);
  let testDb: TestDatabase;
  let seen: { board: any[]; audit: any[]; answers: any[]; caught: any[] };
  let boardNumber = 0;

  before(async () => {
    testDb = await createTestDatabase();
  });
  after(() => testDb.drop());
  afterEach(() => helper.unload());

  async function start(settings: Record<string, unknown>) {
    const flow = [
      { id: "tab", type: "tab" },
      { id: "db", ...databaseNode(kind, testDb) },
      { id: "board", type: "connection-board", z: "tab", x: 100, y: 100, database: "db", board: `b${++boardNumber}`, policy: "exclusive", timeZone: "Europe/Brussels", ...settings, wires: [["out-board"], ["out-audit"], ["out-answers"]] },
      { id: "out-board", type: "helper", z: "tab", x: 300, y: 60, wires: [] },
      { id: "out-audit", type: "helper", z: "tab", x: 300, y: 100, wires: [] },
      { id: "out-answers", type: "helper", z: "tab", x: 300, y: 140, wires: [] },
      { id: "catch", type: "catch", z: "tab", x: 100, y: 200, scope: null, uncaught: false, wires: [["caught"]] },
      { id: "caught", type: "helper", z: "tab", x: 300, y: 200, wires: [] },
    ];
    seen = { board: [], audit: [], answers: [], caught: [] };
    await helper.load([connectionBoard, postgresDatabase], flow, { db: { user: "postgres" } });
    helper.getNode("out-board").on("input", (m: any) => seen.board.push(m));
    helper.getNode("out-audit").on("input", (m: any) => seen.audit.push(m));
    helper.getNode("out-answers").on("input", (m: any) => seen.answers.push(m));
    helper.getNode("caught").on("input", (m: any) => seen.caught.push(m));
    await eventually(() => seen.board.length > 0, 60_000, "the first board"); // an embedded server may start slowly beside other work
    return helper.getNode("board");
  }

  const act = (node: any, action: string, user: string, main = "vpn main 1", sub = "vpn sub 1", client = "socket-1") =>
    node.receive({ payload: { action, main, sub, user }, _client: { socketId: client } });

  it("sends the board from its settings when it starts", async () => {
    await start({ connections: "vpn main 1;vpn sub 1\nvpn main 1;vpn sub 2", boardUsers: "Burt\nJimmy" });
    const board = seen.board.at(-1);
    assert.equal(board.topic, "board");
    assert.deepEqual(board.payload.rows.map((r: any) => r.sub), ["vpn sub 1", "vpn sub 2"]);
    assert.deepEqual(board.payload.users, ["Burt", "Jimmy"]);
  });

  it("warns in its status, instead of showing ready, while it has no users (an old flow that lost them)", async () => {
    const node = await start({ connections: "vpn main 1;vpn sub 1\nvpn main 1;vpn sub 2", boardUsers: "" });
    // The test helper keeps every status call of a node.
    const last = await eventually(() => node.status.lastCall?.args[0] as { fill?: string; text?: string } | undefined, 5000, "a status");
    assert.equal(last.fill, "yellow");
    assert.match(last.text ?? "", /^no users: list them in the node/);
  });

  it("takes the users of a version 1 flow, saved as `users`, even where an editor added an empty boardUsers", async () => {
    await start({ connections: "vpn main 1;vpn sub 1", users: "Burt\nJimmy", boardUsers: "", version: 1 });
    assert.deepEqual(seen.board.at(-1).payload.users, ["Burt", "Jimmy"]);
  });

  it("reads the connections and users from files (sessions.csv, users.txt)", async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), "gw-board-"));
    writeFileSync(path.join(dir, "sessions.csv"), "vpn main 1;vpn sub 1\r\nvpn main 2;vpn sub 2\r\n");
    writeFileSync(path.join(dir, "users.txt"), "Burt\nBart\n");
    await start({ connectionsFile: path.join(dir, "sessions.csv"), usersFile: path.join(dir, "users.txt") });
    assert.equal(seen.board.at(-1).payload.rows.length, 2);
    assert.deepEqual(seen.board.at(-1).payload.users, ["Burt", "Bart"]);
  });

  it("sends the new board after a tick, and an audit message after a release", async () => {
    const node = await start({ connections: "vpn main 1;vpn sub 1", boardUsers: "Burt" });
    act(node, "connect", "Burt");
    await eventually(() => seen.board.at(-1).payload.rows[0].occupants.length === 1, 5000, "the connected board");
    act(node, "release", "Burt");
    await eventually(() => seen.audit.length === 1, 5000, "the audit message");
    const audit = seen.audit[0];
    assert.equal(audit.topic, "audit");
    assert.match(audit.date, /^\d{4}-\d\d-\d\dT/);
    assert.deepEqual(Object.keys(audit.payload), ["main", "sub", "user", "connectedAt", "releasedAt", "duration", "releasedBy", "reason"]);
    assert.equal(audit.payload.reason, "released");
    assert.match(audit.payload.connectedAt, /^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d$/);
  });

  it("answers a refusal to the browser that asked, and only to it", async () => {
    const node = await start({ connections: "vpn main 1;vpn sub 1", boardUsers: "Burt\nJimmy" });
    act(node, "connect", "Burt", "vpn main 1", "vpn sub 1", "burt-socket");
    await eventually(() => seen.board.at(-1).payload.rows[0].occupants.length === 1, 5000, "Burt connected");
    act(node, "connect", "Jimmy", "vpn main 1", "vpn sub 1", "jimmy-socket");
    await eventually(() => seen.answers.length === 1, 5000, "the refusal");
    assert.equal(seen.answers[0].topic, "refused");
    assert.equal(seen.answers[0]._client.socketId, "jimmy-socket");
    assert.match(seen.answers[0].payload.message, /^Burt \(since \d\d:\d\d\) is connected$/);
  });

  it("asks whether to take over under the takeover policy", async () => {
    const node = await start({ connections: "vpn main 1;vpn sub 1", boardUsers: "Burt\nJimmy", policy: "takeover" });
    act(node, "connect", "Burt");
    await eventually(() => seen.board.at(-1).payload.rows[0].occupants.length === 1, 5000, "Burt connected");
    act(node, "connect", "Jimmy");
    await eventually(() => seen.answers.length === 1, 5000, "the question");
    assert.equal(seen.answers[0].topic, "confirm-takeover");
    act(node, "takeover", "Jimmy");
    await eventually(() => seen.audit.length === 1, 5000, "the takeover's audit");
    assert.deepEqual([seen.audit[0].payload.user, seen.audit[0].payload.releasedBy, seen.audit[0].payload.reason], ["Burt", "Jimmy", "taken over"]);
  });

  it("takes the user from the dashboard's login over the one the browser sent", async () => {
    const node = await start({ connections: "vpn main 1;vpn sub 1", boardUsers: "Burt\nJimmy" });
    node.receive({ payload: { action: "connect", main: "vpn main 1", sub: "vpn sub 1", user: "Burt" }, _client: { socketId: "s", user: { name: "Jimmy" } } });
    await eventually(() => seen.board.at(-1).payload.rows[0].occupants[0]?.user === "Jimmy", 5000, "Jimmy connected");
  });

  it("reads the connection list file again on reload, auditing who was connected to a removed row", async () => {
    const file = path.join(mkdtempSync(path.join(os.tmpdir(), "gw-board-")), "sessions.csv");
    writeFileSync(file, "vpn main 1;vpn sub 1\nvpn main 1;vpn sub 2\n");
    const node = await start({ connectionsFile: file, boardUsers: "Burt" });
    act(node, "connect", "Burt", "vpn main 1", "vpn sub 2");
    await eventually(() => seen.board.at(-1).payload.rows[1]?.occupants.length === 1, 5000, "Burt connected");
    writeFileSync(file, "vpn main 1;vpn sub 1\n");
    node.receive({ topic: "reload" });
    await eventually(() => seen.audit.length === 1 && seen.board.at(-1).payload.rows.length === 1, 5000, "the new list");
    assert.equal(seen.audit[0].payload.reason, "removed from the list");
  });

  it("refuses lists sent as messages: they reach Catch and change nothing", async () => {
    const node = await start({ connections: "vpn main 1;vpn sub 1", boardUsers: "Burt" });
    node.receive({ topic: "connections", payload: [{ main: "evil", sub: "row" }] });
    node.receive({ topic: "users", payload: ["Mallory"] });
    await eventually(() => seen.caught.length === 2, 5000, "two refusals");
    assert.match(seen.caught[0].error.message, /lists come from its settings or files/);
    node.receive({ payload: {} });
    await eventually(() => seen.board.length >= 2, 5000, "the board again");
    assert.deepEqual(seen.board.at(-1).payload.users, ["Burt"]);
    assert.deepEqual(seen.board.at(-1).payload.rows.map((r: any) => r.main), ["vpn main 1"]);
  });

  it("reads a flow saved before the users setting was renamed (config version 1)", async () => {
    await start({ connections: "vpn main 1;vpn sub 1", users: "Old\nTimer", version: 1 });
    assert.deepEqual(seen.board.at(-1).payload.users, ["Old", "Timer"]);
  });

  it("sends an unreadable action to Catch without stopping", async () => {
    const node = await start({ connections: "vpn main 1;vpn sub 1", boardUsers: "Burt" });
    node.receive({ payload: { action: "explode", main: "a", sub: "b" } });
    await eventually(() => seen.caught.length === 1, 5000, "the catch");
    assert.match(seen.caught[0].error.message, /unknown board action/);
    act(node, "connect", "Burt");
    await eventually(() => seen.board.at(-1).payload.rows[0].occupants.length === 1, 5000, "the board still works");
  });
});
