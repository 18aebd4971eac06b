import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, readdirSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import pg from "pg";
import { io, Socket } from "socket.io-client";
import { launchChromium } from "../support/browser";
import { eventually } from "../support/node-red";
import { NodeRedProcess, startNodeRed } from "../support/node-red-process";
import { TestDatabase, createTestDatabase } from "../support/pg";

const FLOW = path.join(__dirname, "..", "..", "..", "flows", "support-board.json");
const USERS = ["Burt", "Bart", "Bort", "Jimmy", "Zoë"];

/** The shipped board flow, on a test database, its audit written to a folder; the reports are left unconfigured. */
function boardFlow(db: TestDatabase, auditFolder: string): unknown[] {
  const flow = JSON.parse(readFileSync(FLOW, "utf8")) as Array<Record<string, unknown>>;
  return flow.map((n) => {
    if (n.type === "postgres-database") return { ...n, mode: "server", credentials: { url: db.url } };
    if (n.id === "board-audit") return { ...n, target: "folder", folder: auditFolder };
    return n;
  });
}

/** Every audit row written so far, as "user;releasedBy;reason" lines, from all the weekly files. */
function auditRows(folder: string): string[] {
  const files = (readdirSync(folder, { recursive: true }) as string[]).filter((f) => f.endsWith(".csv"));
  return files.flatMap((f) => readFileSync(path.join(folder, f), "utf8").split("\r\n").slice(1).filter(Boolean));
}

describe("security: a dashboard client can take and release connections as a listed user, nothing else", function () {
  this.timeout(180_000);
  let db: TestDatabase;
  let red: NodeRedProcess;
  let client: pg.Client;
  let socket: Socket;
  let friend: Socket;
  let observer: Socket;
  const auditFolder = mkdtempSync(path.join(os.tmpdir(), "gw-board-audit-"));
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
    await red.deploy(boardFlow(db, auditFolder));
    client = new pg.Client({ connectionString: db.url });
    await client.connect();
    await eventually(async () => (await users()).length === USERS.length, 30_000, "the board's users in the database");
    socket = await connect();
    // A listed user's own browser, beside the one that floods the board.
    friend = await connect();
    // Another browser on the board: what it is shown must never be forged.
    observer = await connect();
    observer.onAny((event: string, ...args: unknown[]) => observed.push(`${event} ${JSON.stringify(args)}`));
  });
  after(async () => {
    socket?.close();
    friend?.close();
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
    // A listed user's action, sent last from their own browser, proves the messages were all handled.
    friend.emit("widget-send", "board-ui", { payload: { action: "connect", main: "CHU Liège", sub: "Citrix gateway", user: "Jimmy" } });
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
    friend.emit("widget-send", "board-ui", { payload: { action: "release", main: "CHU Liège", sub: "Citrix gateway", user: "Jimmy" } });
    await eventually(async () => !(await occupants()).includes("Jimmy@CHU Liège;Citrix gateway"), 30_000, "Jimmy released");
  });

  async function alive(): Promise<void> {
    assert.equal(red.child.exitCode, null, "Node-RED is still running");
    assert.equal((await fetch(`${red.url}/settings`)).status, 200, "Node-RED still answers");
  }

  it("drops every malformed packet on every dashboard event before Dashboard sees it, and the board keeps working in a browser", async () => {
    const fuzzer = await connect();
    const events = ["widget-load", "widget-send", "widget-action", "widget-change", "ui-control", "ui-event", "widget-sync", "widget-unknown"];
    const deep = (depth: number) => JSON.parse("[".repeat(depth) + "]".repeat(depth));
    const ids: unknown[] = [
      123, 0, -1, 1e300, true, false, null, [], ["board-ui"], [123], {}, { id: "board-ui" }, { startsWith: 1 },
      "", "x".repeat(200_000), "__proto__", "constructor", "toString", "hasOwnProperty", "board-node", "board-ui-base", "ui-", "ui-notification",
      deep(3000),
    ];
    for (const event of events) {
      for (const id of ids) {
        fuzzer.emit(event, id);
        fuzzer.emit(event, id, { payload: { action: "connect", main: "Clinique du Parc", sub: "VPN main", user: "Burt" } });
        fuzzer.emit(event, id, id, id);
      }
      // A widget's own id, with absurd arguments.
      fuzzer.emit(event, "board-ui", deep(3000));
      fuzzer.emit(event, "board-ui", Array.from({ length: 100_000 }, () => 0));
      fuzzer.emit(event, "board-ui", 1, 2, 3, 4, 5, 6, 7);
    }
    // Names the socket.io server raises itself, which socket.io-client refuses to send: as raw packets,
    // from a connection of their own (socket.io's parser closes the connection that sends most of them).
    for (const name of ["error", "connection", "disconnect", "disconnecting", "connect", "connect_error", "newListener", "removeListener"]) {
      const raw = await connect();
      for (const arg of [123, null, "x", { a: 1 }]) (raw.io.engine as unknown as { write(data: string): void }).write(`2${JSON.stringify([name, arg])}`);
      raw.emit("widget-load", 123);
      raw.close();
    }
    // Widget-load with a number, last: Dashboard's handler would throw on it.
    fuzzer.emit("widget-load", 123);
    // A listed user's action sent after all the others is carried out: they were all handled, and Node-RED is up.
    fuzzer.emit("widget-send", "board-ui", { payload: { action: "connect", main: "Clinique du Parc", sub: "VPN main", user: "Bort" } });
    await eventually(async () => red.child.exitCode !== null || (await occupants()).includes("Bort@Clinique du Parc;VPN main"), 30_000, "Bort's connection after the fuzzing");
    fuzzer.emit("widget-send", "board-ui", { payload: { action: "release", main: "Clinique du Parc", sub: "VPN main", user: "Bort" } });
    await eventually(async () => red.child.exitCode !== null || !(await occupants()).includes("Bort@Clinique du Parc;VPN main"), 30_000, "Bort's release");
    await alive();
    assert.deepEqual(await users(), USERS, "the user list is unchanged");
    assert.ok(!(await occupants()).some((o) => o.startsWith("Burt@Clinique du Parc")), "no fuzzed packet acted on the board");
    fuzzer.close();

    // A real browser still sees the board and can tick a row.
    const browser = await launchChromium();
    try {
      const page = await browser.newPage();
      await page.goto(`${red.url}/dashboard/board`);
      await page.locator("tr[data-sub='VPN radiology']").waitFor({ timeout: 30_000 });
      await page.locator(".gw-me").click();
      await page.locator(".v-overlay .v-list-item", { hasText: "Bort" }).first().click();
      await page.locator(`tr[data-main="Hôpital Saint-Luc"][data-sub="VPN radiology"] .gw-tick input`).click();
      await eventually(async () => (await occupants()).includes("Bort@Hôpital Saint-Luc;VPN radiology"), 30_000, "Bort's tick from the browser");
      await page.locator(`tr[data-main="Hôpital Saint-Luc"][data-sub="VPN radiology"] .gw-tick input`).click();
      await eventually(async () => !(await occupants()).includes("Bort@Hôpital Saint-Luc;VPN radiology"), 30_000, "Bort's release from the browser");
    } finally {
      await browser.close();
    }
    await alive();
  });

  it("writes audit rows only for real changes, and refuses a flood of actions from one browser, telling it once", async () => {
    const flooder = await connect();
    const refusals: unknown[] = [];
    flooder.onAny((event: string, msg: { payload?: { code?: string } }) => {
      if (event.startsWith("msg-input") && msg?.payload?.code === "too-many-actions") refusals.push(msg);
    });
    const before = auditRows(auditFolder).length;
    const row = { main: "Clinique du Parc", sub: "VPN main" };
    // Releases of a row no one holds change nothing: they never write a row.
    const started = Date.now();
    for (let i = 0; i < 10; i++) flooder.emit("widget-send", "board-ui", { payload: { action: "release", ...row, user: "Bart" } });
    for (let i = 0; i < 200; i++) {
      flooder.emit("widget-send", "board-ui", { payload: { action: "connect", ...row, user: "Burt" } });
      flooder.emit("widget-send", "board-ui", { payload: { action: "release", ...row, user: "Burt" } });
    }
    await eventually(() => refusals.length > 0, 30_000, "the flooding browser to be told");
    // Another browser is not held back; its release, after the flood, is audited after the flood's rows.
    friend.emit("widget-send", "board-ui", { payload: { action: "connect", main: "Acme & Sons", sub: "Jump host", user: "Zoë" } });
    await eventually(async () => (await occupants()).includes("Zoë@Acme & Sons;Jump host"), 30_000, "Zoë's connection");
    friend.emit("widget-send", "board-ui", { payload: { action: "release", main: "Acme & Sons", sub: "Jump host", user: "Zoë" } });
    await eventually(() => auditRows(auditFolder).some((r) => r.includes("Zoë")), 30_000, "Zoë's audit row");
    const rows = auditRows(auditFolder).slice(before);
    const burt = rows.filter((r) => r.includes(",Burt,"));
    // The budget's first actions were carried out (takes and releases race, so either may come last).
    assert.ok(burt.length >= 1 || (await occupants()).includes("Burt@Clinique du Parc;VPN main"), "the first actions, within the budget, were taken");
    // 20 actions at once and one a second after (a release row needs a take before it), however slow the machine.
    const allowed = 20 + Math.ceil((Date.now() - started) / 1000);
    assert.ok(burt.length <= Math.min(allowed / 2, 50), `${burt.length} audit rows from a flood of 200 releases in ${Date.now() - started} ms`);
    assert.ok(!rows.some((r) => r.includes("Bart")), "a release that changed nothing wrote no row");
    assert.equal(refusals.length, 1, "the flooding browser is told once, not once per action");
    await alive();
    flooder.close();
  });
});
