import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import path from "node:path";
import pg from "pg";
import { io, Socket } from "socket.io-client";
import { eventually } from "../support/node-red";
import { NodeRedProcess, startNodeRed } from "../support/node-red-process";
import { TestDatabase, createTestDatabase } from "../support/pg";

const FLOW = path.join(__dirname, "..", "..", "..", "flows", "support-board.json");
const USERS = ["Burt", "Bart", "Bort", "Jimmy", "Zoë"];

/** The shipped board flow, on a test database; the audit and the reports are left unconfigured. */
function boardFlow(db: TestDatabase): unknown[] {
  const flow = JSON.parse(readFileSync(FLOW, "utf8")) as Array<Record<string, unknown>>;
  return flow.map((n) => (n.type === "postgres-database" ? { ...n, mode: "server", credentials: { url: db.url } } : n));
}

describe("security: a dashboard client can take and release connections as a listed user, nothing else", function () {
  this.timeout(180_000);
  let db: TestDatabase;
  let red: NodeRedProcess;
  let client: pg.Client;
  let socket: Socket;
  let observer: Socket;
  const observed: string[] = [];

  async function connect(): Promise<Socket> {
    const s = io(red.url, { path: "/dashboard/socket.io", reconnection: false, timeout: 20_000 });
    await new Promise<void>((resolve, reject) => {
      s.once("connect", () => resolve());
      s.once("connect_error", reject);
    });
    return s;
  }

  before(async () => {
    db = await createTestDatabase();
    red = await startNodeRed();
    await red.deploy(boardFlow(db));
    client = new pg.Client({ connectionString: db.url });
    await client.connect();
    await eventually(async () => (await users()).length === USERS.length, 30_000, "the board's users in the database");
    socket = await connect();
    // Another browser on the board: what it is shown must never be forged.
    observer = await connect();
    observer.onAny((event: string, ...args: unknown[]) => observed.push(`${event} ${JSON.stringify(args)}`));
  });
  after(async () => {
    socket?.close();
    observer?.close();
    await client?.end();
    await red?.stop();
    await db?.drop();
  });

  async function users(): Promise<string[]> {
    const { rows } = await client.query("SELECT name FROM gluework_board_users WHERE board = 'support' ORDER BY position").catch(() => ({ rows: [] as Array<{ name: string }> }));
    return rows.map((r) => r.name);
  }
  async function rows(): Promise<string[]> {
    const { rows } = await client.query("SELECT main || ';' || sub AS row FROM gluework_board_connections WHERE board = 'support' ORDER BY position");
    return rows.map((r: { row: string }) => r.row);
  }
  async function occupants(): Promise<string[]> {
    const { rows } = await client.query("SELECT user_name || '@' || main || ';' || sub AS o FROM gluework_board_occupants WHERE board = 'support' ORDER BY o");
    return rows.map((r: { o: string }) => r.o);
  }

  it("refuses every list, topic and action an anonymous socket.io client sends on every dashboard event", async () => {
    const rowsBefore = await rows();
    assert.ok(rowsBefore.length > 0);
    const topics = [undefined, "connections", "users", "reload", "board", "audit", "refused", "confirm-takeover", "outbox:list", "", 5, ["users"], { t: "users" }];
    const payloads = [
      "Evil;Row\nOther;Row",
      [{ main: "Evil", sub: "Row" }],
      ["Mallory"],
      "Mallory",
      { action: "connect", main: "Hôpital Saint-Luc", sub: "VPN main", user: "Mallory" },
      { action: "takeover", main: "Hôpital Saint-Luc", sub: "VPN main", user: "Mallory" },
      { action: "connect", main: "Evil", sub: "Row", user: "Burt" },
      { action: "explode" },
      null,
      5,
      Array.from({ length: 1000 }, (_, i) => `User${i}`),
    ];
    const events = ["widget-send", "widget-action", "widget-change", "widget-load"];
    // The board's template, and nodes that are no widget (Dashboard 2.0 would send out of any node).
    const widgets = ["board-ui", "board-node", "board-verify-list", "board-login", "board-to-reports", "board-ui-base", "ui-notification"];
    let sent = 0;
    for (const event of events) {
      for (const widget of widgets) {
        for (const topic of topics) {
          for (const payload of payloads) {
            socket.emit(event, widget, { topic, payload, _client: { user: { name: "Mallory" } }, users: ["Mallory"], connections: "Evil;Row" });
            sent++;
          }
        }
        socket.emit(event, widget, "users");
        socket.emit(event, widget, null);
        // An array is sent on the node's outputs in turn: the board's second output is the audit.
        const forged = { topic: "board", payload: { rows: [{ main: "FORGED", sub: "x", occupants: [] }], users: ["FORGED"] } };
        socket.emit(event, widget, [forged, { topic: "audit", payload: { main: "FORGED", user: "=1+1" } }, forged]);
      }
    }
    assert.ok(sent > 1000);
    // A listed user's action, sent last, proves the messages were all handled.
    socket.emit("widget-send", "board-ui", { payload: { action: "connect", main: "CHU Liège", sub: "Citrix gateway", user: "Jimmy" } });
    await eventually(async () => (await occupants()).includes("Jimmy@CHU Liège;Citrix gateway"), 30_000, "Jimmy's connection");
    assert.deepEqual(await users(), USERS, "the user list is unchanged");
    assert.deepEqual(await rows(), rowsBefore, "the connection list is unchanged");
    assert.ok(!(await occupants()).some((o) => o.startsWith("Mallory")), "no one off the list is connected");
    assert.ok(observed.some((o) => o.includes("Jimmy")), "the other browser saw the board change");
    assert.ok(!observed.some((o) => o.includes("FORGED") || o.includes("Mallory")), "the other browser was shown nothing forged");
    // Node-RED is still answering.
    const settings = await fetch(`${red.url}/settings`);
    assert.equal(settings.status, 200);
  });

  it("lets a listed user release their connection", async () => {
    socket.emit("widget-send", "board-ui", { payload: { action: "release", main: "CHU Liège", sub: "Citrix gateway", user: "Jimmy" } });
    await eventually(async () => !(await occupants()).includes("Jimmy@CHU Liège;Citrix gateway"), 30_000, "Jimmy released");
  });
});
